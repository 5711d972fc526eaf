#!/usr/bin/env python3
"""The fault campaign of bench/faults.sh (issue 12, item 15). Python 3 standard library only;
the SMTP server is tests/smtp/server.py under target/interop-venv.

Each scenario runs on a fresh database, with the release `itinerary` on the test clock (set to
today 01:00Z, daytime in Tokyo and Kuala Lumpur, so confirmations and invites fall due right
after booking with update_grace_seconds = 0) and a local SMTP server (aiosmtpd) that writes each
message it accepts to a directory:

  serve-kill           `serve` with its worker, kill -9 at a random moment (0.5-4 s), restarted
  worker-kill-sqlite   `serve` without worker books; `itinerary worker` kill -9'd, a fresh one started
  worker-kill-postgres the same on a private PostgreSQL cluster
  smtp-outage          the SMTP server stopped (SIGTERM or SIGKILL) for 3-6 s, then 451 bursts
  postgres-restart     `pg_ctl stop -m immediate` on the private cluster, started 3-10 s later
  sqlite-io            `chattr +i` on the database and its -wal for 2-10 s

Booking clients (3 threads) book all along: a new patient, then a single infusion for them, three
patients a week on the same flights (tests/common/mod.rs `request`). Every id answered 2xx is
kept. After the faults the surviving processes get up to LIVE_SETTLE seconds to settle what is
due by themselves (a message held by a live process is stuck too); then everything stops, a
clean `serve` with worker drains (up to DRAIN seconds), and the database and the mailbox are
counted:

  due        messages due (confirmations and invites, and anything whose due_at has passed)
  stuck      due, but still pending/queued/sending after the drain (or held by the live process)
  lost       recorded `sent` but its Message-ID never reached the SMTP server
  duplicated Message-IDs received more than once; each extra copy is charged to the fault
             between it and the copy before (or that ended just before both; none: unexplained).
             The documented window is at most max_sends_in_flight per crash.
  failed     no 5xx is injected, so a message failed for good is a problem too

    faults.py [--quick] [--only a,b] [--seed N] [--out target/faults]
"""
import argparse
import atexit
import collections
import datetime as dt
import email.parser
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/itinerary")
PY = os.path.join(ROOT, "target/interop-venv/bin/python")
SMTP_SERVER = os.path.join(ROOT, "tests/smtp/server.py")

# Bounds: every wait below is bounded by one of these, and the campaign by CAMPAIGN.
CAMPAIGN = 40 * 60  # faults.sh's timeout is 60 min
START = 30  # a process printing its first line
LIVE_SETTLE = 60  # surviving processes settling what is due after the faults
DRAIN = 120  # the clean serve settling what is due
LEASE = 20  # worker.lease_seconds: a queued message whose job died comes back after this
BOOKING_THREADS = 3
BOOKING_PACE = 0.2  # seconds each booking thread waits between bookings

AT_BOOKING = ("booking_confirmation",)  # and calendar_*: due at booking with no grace
UNSETTLED = ("pending", "queued", "sending")

T0 = time.monotonic()
PROCS = set()  # every process started here, to stop on exit (by pid)
IMMUTABLE = set()  # every file given +i, to restore on exit
CLUSTER = None


def log(*a):
    print(f"[{time.monotonic() - T0:7.1f}s]", *a, file=sys.stderr, flush=True)


def campaign_left():
    return CAMPAIGN - (time.monotonic() - T0)


class CampaignOver(Exception):
    pass


def check_time():
    if campaign_left() <= 0:
        raise CampaignOver(f"the campaign's {CAMPAIGN} s are up")


def max_sends_in_flight():
    v = os.environ.get("ITINERARY_DELIVERY_MAX_SENDS_IN_FLIGHT")
    if v:
        return int(v)
    text = open(os.path.join(ROOT, "config/default.toml")).read()
    return int(re.search(r"^max_sends_in_flight\s*=\s*(\d+)", text, re.M).group(1))


# ---------------------------------------------------------------- HTTP (loopback only)

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, url, token=None, body=None, timeout=15):
    """(status, parsed body), or (None, error) when nothing was answered."""
    assert url.startswith("http://127.0.0.1:"), url
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _opener.open(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        try:
            raw = e.read()
        except Exception:  # noqa: BLE001 - the connection died mid-answer
            raw = b""
        status = e.code
    except Exception as e:  # noqa: BLE001 - refused, reset, timed out: no answer
        return None, f"{type(e).__name__}: {e}"
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


# ---------------------------------------------------------------- processes


def base_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ITINERARY_") and k != "DATABASE_URL"}
    env.update(
        RUST_LOG="info",
        NO_COLOR="1",
        ITINERARY_LISTEN="127.0.0.1:0",
        ITINERARY_PUBLIC_URL="http://127.0.0.1:9",
        ITINERARY_CLOCK_MODE="test",
        ITINERARY_DELIVERY_UPDATE_GRACE_SECONDS="0",
        ITINERARY_DELIVERY_FIRST_RETRY_SECONDS="1",
        ITINERARY_DELIVERY_MAX_RETRY_SECONDS="2",
        ITINERARY_WORKER_POLL_MS="100",
        ITINERARY_WORKER_HEARTBEAT_SECONDS="1",
        ITINERARY_WORKER_LEASE_SECONDS=str(LEASE),
        ITINERARY_SMTP_SECURITY="none",
        # A whole send is bounded at twice this: under the lease.
        ITINERARY_SMTP_TIMEOUT_SECONDS="5",
        ITINERARY_SERVER_FAILED_AUTH_BURST="1000000",
    )
    env.update(extra)
    return env


def spawn(args, env, name, ready, timeout=START):
    """Starts a process with stdout and stderr in files under the scenario's directory; waits for
    its first stdout line to match `ready`. Returns (process, match)."""
    out_path, err_path = name + ".out", name + ".log"
    out, err = open(out_path, "wb"), open(err_path, "ab")
    p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    out.close()
    err.close()
    PROCS.add(p)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(out_path, "rb") as f:
            m = re.search(ready, f.read().decode(errors="replace"))
        if m:
            return p, m
        if p.poll() is not None:
            raise RuntimeError(f"{args[0]} {args[1] if len(args) > 1 else ''} exited {p.returncode} before starting: see {err_path}")
        time.sleep(0.05)
    kill(p)
    raise RuntimeError(f"{args} did not start within {timeout} s: see {err_path}")


def kill(p, sig=signal.SIGKILL, wait=20):
    """Signals one process we started (by its pid) and reaps it; SIGKILL if it outlives `wait`."""
    if p.poll() is None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            log(f"pid {p.pid} ignored signal {sig}; SIGKILL")
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
    PROCS.discard(p)
    return p.returncode


def cleanup():
    for p in list(PROCS):
        try:
            kill(p, signal.SIGKILL, wait=5)
        except Exception:  # noqa: BLE001
            pass
    for f in list(IMMUTABLE):
        subprocess.run(["chattr", "-i", f], stderr=subprocess.DEVNULL, check=False)
        IMMUTABLE.discard(f)
    if CLUSTER:
        CLUSTER.destroy()


def on_signal(sig, _frame):
    log(f"signal {sig}: cleaning up")
    cleanup()
    sys.exit(128 + sig)


def free_port(first=None):
    """A port on 127.0.0.1 that can be listened on again after a restart: below the ephemeral
    range (32768-60999 on Linux), so that no outgoing connection takes it meanwhile."""
    candidates = range(first, first + 200) if first else random.Random().sample(range(20000, 32000), 200)
    for port in candidates:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port")


# ---------------------------------------------------------------- databases


def parse_ts(s):
    """An RFC 3339 instant as SQLite holds it (nanoseconds, +00:00) to epoch seconds."""
    s = s.strip().replace(" ", "T").replace("Z", "+00:00")
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?([+-]\d\d(?::?\d\d)?)?$", s)
    if not m:
        raise ValueError(f"timestamp {s!r}")
    frac = float(m.group(2) or 0)
    tz = m.group(3) or "+00:00"
    if re.fullmatch(r"[+-]\d\d", tz):
        tz += ":00"
    return dt.datetime.fromisoformat(m.group(1) + tz).timestamp() + frac


class SqliteDb:
    kind = "sqlite"

    def __init__(self, directory):
        self.path = os.path.join(directory, "itinerary.db")
        self.url = f"sqlite://{self.path}?mode=rwc"

    def fresh(self):
        for suffix in ("", "-wal", "-shm"):
            f = self.path + suffix
            if os.path.exists(f):
                subprocess.run(["chattr", "-i", f], stderr=subprocess.DEVNULL, check=False)
                os.remove(f)

    def files(self):
        return [self.path + s for s in ("", "-wal") if os.path.exists(self.path + s)]

    def query(self, sql):
        # Read-write (a read-only open of a WAL file needs its -shm), but it only reads.
        c = sqlite3.connect(self.path, timeout=30)
        try:
            return c.execute(sql).fetchall()
        finally:
            c.close()

    def messages(self):
        return [(i, k, s, parse_ts(d)) for i, k, s, d in self.query("SELECT id, kind, status, due_at FROM scheduled_message")]


class Cluster:
    """A throwaway PostgreSQL cluster: its own data directory, port and socket directory, run as
    the postgres user. The machine's own server is never touched."""

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
        if not bins:
            raise RuntimeError("no /usr/lib/postgresql/*/bin/pg_ctl")
        self.bindir = os.path.dirname(bins[-1])
        self.dir = tempfile.mkdtemp(prefix="itinerary-faults-pg-")
        shutil.chown(self.dir, "postgres", "postgres")
        os.chmod(self.dir, 0o700)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.port = free_port(25432)
        self.pg("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.started = False
        self.start()

    def pg(self, tool, *args, timeout=120):
        r = subprocess.run(
            ["runuser", "-u", "postgres", "--", os.path.join(self.bindir, tool), *args],
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if r.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {r.stdout}{r.stderr}")
        return r.stdout

    def start(self):
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} -c max_connections=200"
        self.pg("pg_ctl", "-D", self.data, "-l", self.log, "-o", opts, "-w", "-t", "60", "start")
        self.started = True

    def stop(self, mode="immediate"):
        self.pg("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")
        self.started = False

    def psql(self, db, sql):
        r = subprocess.run(
            ["psql", "-X", "-q", "-h", self.dir, "-p", str(self.port), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-tA", "-F", "\x1f", "-c", sql],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {r.stderr}")
        return [tuple(line.split("\x1f")) for line in r.stdout.splitlines() if line]

    def destroy(self):
        try:
            if self.started:
                self.stop("fast")
        except Exception as e:  # noqa: BLE001
            log(f"stopping the private cluster: {e}")
        try:
            os.makedirs(os.path.join(ROOT, "target/faults"), exist_ok=True)
            shutil.copy(self.log, os.path.join(ROOT, "target/faults/postgres.log"))
        except OSError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class PgDb:
    kind = "postgres"

    def __init__(self, cluster, name):
        self.cluster, self.name = cluster, name
        # Its Unix socket: see README "At scale" on sqlx 0.9.0 and TCP_NODELAY.
        self.url = f"postgres://postgres@localhost:{cluster.port}/{name}?host={cluster.dir}"

    def fresh(self):
        self.cluster.psql("postgres", f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        self.cluster.psql("postgres", f"CREATE DATABASE {self.name}")

    def files(self):
        return []

    def query(self, sql):
        return self.cluster.psql(self.name, sql)

    def messages(self):
        rows = self.query("SELECT id, kind, status, extract(epoch from due_at) FROM scheduled_message")
        return [(int(i), k, s, float(d)) for i, k, s, d in rows]


def ints(rows):
    return {int(r[0]) for r in rows}


def service_now(db):
    """The service's test clock: the system clock plus the offset the database holds."""
    rows = db.query("SELECT offset_ms FROM clock WHERE id = 1")
    return time.time() + (int(rows[0][0]) / 1000 if rows else 0)


def due_unsettled(db):
    """(due messages, those of them not settled) by the service's clock."""
    now = service_now(db)
    due = [(i, s) for i, k, s, d in db.messages() if k in AT_BOOKING or k.startswith("calendar_") or d <= now]
    return due, [(i, s) for i, s in due if s in UNSETTLED]


# ---------------------------------------------------------------- SMTP


class Smtp:
    def __init__(self, directory):
        self.dir = os.path.join(directory, "mail")
        os.makedirs(self.dir, exist_ok=True)
        self.busy = os.path.join(directory, "smtp-busy")
        self.port = free_port()
        self.proc = None
        self.starts = 0
        self.up()

    def up(self):
        self.starts += 1
        name = os.path.join(os.path.dirname(self.dir), f"smtp-{self.starts}")
        for attempt in range(20):  # the port may take a moment to be free again
            try:
                self.proc, _ = spawn(
                    [PY, SMTP_SERVER, "--port", str(self.port), "--dir", self.dir, "--busy-file", self.busy],
                    dict(os.environ),
                    name,
                    r"ready \d+",
                )
                return
            except RuntimeError:
                if attempt == 19:
                    raise
                time.sleep(0.5)

    def down(self, sig=signal.SIGTERM):
        if self.proc:
            kill(self.proc, sig, wait=3)
            self.proc = None

    def env(self):
        return {"ITINERARY_SMTP_HOST": "127.0.0.1", "ITINERARY_SMTP_PORT": str(self.port)}

    def received(self):
        """[(Message-ID's message id or None, arrival time in s)] for every message received."""
        out = []
        parser = email.parser.BytesHeaderParser()
        for f in os.listdir(self.dir):
            if not f.endswith(".eml") or f.startswith("."):
                continue
            with open(os.path.join(self.dir, f), "rb") as fh:
                head = fh.read(16384)
            mid = parser.parsebytes(head).get("Message-ID", "")
            m = re.search(r"\.m(\d+)@", mid)
            out.append((int(m.group(1)) if m else None, int(f.split("-")[0]) / 1e9))
        return out


# ---------------------------------------------------------------- booking clients


def request(patient_id, week):
    """tests/common/mod.rs `request`: Sunday night out on MH71, back Thursday night on MH88, a
    year and `week` weeks ahead."""
    today = dt.datetime.now(dt.timezone.utc).date()
    d = today + dt.timedelta(days=365 + 7 * week - today.weekday() - 1)
    f = lambda n: (d + dt.timedelta(days=n)).isoformat()  # noqa: E731
    return {
        "patient_id": patient_id,
        "protocol": "single-infusion",
        "trips": [
            {
                "outbound": {"flight": "MH71", "from": "NRT", "depart": f"{f(0)} 21:40", "to": "KUL", "arrive": f"{f(1)} 04:30"},
                "return": {"flight": "MH88", "from": "KUL", "depart": f"{f(4)} 23:35", "to": "NRT", "arrive": f"{f(5)} 07:15"},
            }
        ],
    }


class Booker:
    """BOOKING_THREADS clients booking until stopped, against whichever server is up."""

    def __init__(self, token, stop_after):
        self.token = token
        self.base = None
        self.lock = threading.Lock()
        self.slot = 0
        self.stop_ev = threading.Event()
        self.itineraries = set()  # ids answered 2xx
        self.patients = set()
        self.status = collections.Counter()
        self.deadline = time.monotonic() + stop_after
        # Passports valid a year past the last trip this many bookings could reach.
        self.expiry = (dt.date.today() + dt.timedelta(days=365 * 30)).isoformat()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(BOOKING_THREADS)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop_ev.is_set() and time.monotonic() < self.deadline:
            base = self.base
            if base is None:
                time.sleep(0.05)
                continue
            with self.lock:
                slot = self.slot
                self.slot += 1
            patient = {
                "name": f"Fault {slot}",
                "email": f"fault{slot}@example.jp",
                "birth_date": "1980-01-01",
                "home_zone": "Asia/Tokyo",
                "language": "ja",
                "passport_expiry": self.expiry,
            }
            st, body = http("POST", base + "/patients", self.token, patient)
            if st is None or not 200 <= st < 300:
                with self.lock:
                    self.status[f"patient {st or 'no answer'}"] += 1
                time.sleep(0.2)
                continue
            with self.lock:
                self.patients.add(body["id"])
            # Three patients a week on the same flights (examples/load.rs).
            st, body = http("POST", base + "/itineraries", self.token, request(body["id"], slot // 3))
            with self.lock:
                self.status[f"itinerary {st or 'no answer'}"] += 1
                if st is not None and 200 <= st < 300:
                    self.itineraries.add(body["id"])
            time.sleep(BOOKING_PACE)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=30)


# ---------------------------------------------------------------- a scenario


class Scenario:
    def __init__(self, name, db, out, rng, trials):
        self.name, self.db, self.rng, self.n = name, db, rng, trials
        self.dir = os.path.join(out, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.events = []  # [start, end, what] in epoch seconds: the faults, to charge duplicates to
        self.notes = []
        self.procs = 0
        self.serve = None
        self.workers = []
        self.live_stuck = []
        self.t0 = time.monotonic()
        db.fresh()
        self.smtp = Smtp(self.dir)
        env = self.env()
        r = subprocess.run([BIN, "admin", "create-coordinator", "Faults"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"create-coordinator: {r.stderr}")
        self.token = r.stdout.strip()
        self.booker = None

    def env(self, **extra):
        return base_env({"DATABASE_URL": self.db.url, "ITINERARY_DELIVERY_OUTBOX": os.path.join(self.dir, "outbox"), **self.smtp.env(), **extra})

    def start_serve(self, worker=True, tag="serve"):
        self.procs += 1
        p, m = spawn([BIN, "serve"], self.env(ITINERARY_SERVER_WORKER="true" if worker else "false"), os.path.join(self.dir, f"{tag}-{self.procs}"), r"listening on (http://\S+)")
        return p, m.group(1)

    def start_worker(self):
        self.procs += 1
        p, _ = spawn([BIN, "worker"], self.env(), os.path.join(self.dir, f"worker-{self.procs}"), r"worker \S+ started")
        return p

    def set_clock(self, base):
        today = dt.datetime.now(dt.timezone.utc).date().isoformat()
        st, body = http("PUT", base + "/clock", self.token, {"now": f"{today}T01:00:00Z"})
        if st != 200:
            raise RuntimeError(f"PUT /clock: {st} {body}")

    def fault(self, what):
        """A fault begins now; `done()` marks its end (a kill ends at once)."""
        e = [time.time(), None, what]
        self.events.append(e)
        log(f"{self.name}: {what}")

        def done():
            e[1] = time.time()

        return done

    def sleep(self, secs):
        check_time()
        time.sleep(max(0.0, min(secs, campaign_left())))

    def book(self, base):
        self.booker = Booker(self.token, stop_after=max(60, campaign_left()))
        self.booker.base = base

    def settle_live(self):
        """The processes that survived the faults settle what is due by themselves."""
        if self.booker:
            self.booker.stop()
        t = time.monotonic()
        left = []
        while time.monotonic() - t < LIVE_SETTLE:
            check_time()
            _, left = due_unsettled(self.db)
            if not left:
                break
            time.sleep(1)
        self.live_settle_s = round(time.monotonic() - t, 1)
        if left:
            self.live_stuck = left
            rows = self.db.query(
                "SELECT id, status, claimed_by, claimed_at, attempts, last_error FROM scheduled_message WHERE status IN ('pending','queued','sending') AND id IN (%s)"
                % ",".join(str(i) for i, _ in left[:20])
            )
            self.notes.append(f"{len(left)} due messages not settled by the surviving processes within {LIVE_SETTLE} s, e.g. {rows[:5]}")
            log(f"{self.name}: {len(left)} due messages still unsettled by the live processes: {collections.Counter(s for _, s in left)}")

    def stop_all(self):
        if self.booker:
            self.booker.stop()
        for w in self.workers:
            kill(w, signal.SIGTERM)
        self.workers = []
        if self.serve:
            kill(self.serve, signal.SIGTERM)
            self.serve = None

    def drain_and_count(self):
        self.stop_all()
        if not self.smtp.proc:
            self.smtp.up()
        if os.path.exists(self.smtp.busy):
            os.remove(self.smtp.busy)
        serve, base = self.start_serve(worker=True, tag="drain")
        t = time.monotonic()
        left = []
        while time.monotonic() - t < DRAIN:
            check_time()
            _, left = due_unsettled(self.db)
            if not left:
                break
            time.sleep(1)
        drain_s = round(time.monotonic() - t, 1)
        log(f"{self.name}: drained in {drain_s} s, {len(left)} left")
        # Every itinerary answered 2xx answers 200 now (a sample over HTTP; all of them below).
        booked = sorted(self.booker.itineraries) if self.booker else []
        sample = self.rng.sample(booked, min(50, len(booked)))
        http_missing = [i for i in sample if http("GET", f"{base}/itineraries/{i}", self.token)[0] != 200]
        kill(serve, signal.SIGTERM)
        time.sleep(0.5)
        return self.count(drain_s, left, http_missing)

    def count(self, drain_s, left, http_missing):
        db = self.db
        stored_it = ints(db.query("SELECT id FROM itinerary"))
        stored_pt = ints(db.query("SELECT id FROM patient"))
        b = self.booker
        missing_it = sorted(b.itineraries - stored_it)
        missing_pt = sorted(b.patients - stored_pt)
        due, unsettled = due_unsettled(db)
        status = {i: s for i, _, s, _ in db.messages()}
        due_status = collections.Counter(status[i] for i, _ in due)
        sent = {i for i, s in status.items() if s == "sent"}
        received = self.smtp.received()
        by_id = collections.defaultdict(list)
        for mid, at in received:
            by_id[mid].append(at)
        unparsed = len(by_id.pop(None, []))
        lost = sorted(sent - set(by_id))
        not_sent = sorted(i for i in by_id if status.get(i) != "sent")
        dups = {i: sorted(ts) for i, ts in by_id.items() if len(ts) > 1}
        deliveries = {s: int(n) for s, n in db.query("SELECT status, count(*) FROM delivery GROUP BY status")}
        abandoned = ints(db.query("SELECT DISTINCT message_id FROM delivery WHERE status = 'abandoned'"))
        # Each extra copy is charged to the fault between it and the copy before it; or, when both
        # came after a fault had ended (a claim that lapsed during it), to the last fault that
        # ended within a minute before the earlier copy. None: unexplained.
        per_fault = collections.Counter()
        unexplained, after, dup_ids = set(), set(), {}
        for i, ts in dups.items():
            for t1, t2 in zip(ts, ts[1:]):
                fault = next((k for k, (a, b, _) in enumerate(self.events) if (b or a) >= t1 - 0.05 and a <= t2 + 0.05), None)
                if fault is None:
                    ended = [k for k, (a, b, _) in enumerate(self.events) if 0 <= t1 - (b or a) <= 60]
                    if ended:
                        fault = ended[-1]
                        after.add(i)
                if fault is None:
                    unexplained.add(i)
                else:
                    per_fault[fault] += 1
                    dup_ids.setdefault(self.events[fault][2], []).append([i, round(t1, 3), round(t2, 3)])
        dup_without_abandoned = sorted(i for i in dups if i not in abandoned)
        return {
            "scenario": self.name,
            "database": db.kind,
            "trials": self.n,
            "faults": len(self.events),
            "bookings_2xx": len(b.itineraries),
            "patients_2xx": len(b.patients),
            "itineraries_stored": len(stored_it),
            "missing_itineraries": missing_it,
            "missing_patients": missing_pt,
            "http_missing": http_missing,
            "booking_status": dict(sorted(b.status.items())),
            "due": len(due),
            "due_status": dict(due_status),
            "sent": len(sent),
            "received": len(received),
            "received_distinct": len(by_id),
            "unparsed_received": unparsed,
            "duplicated": len(dups),
            "extra_copies": sum(len(ts) - 1 for ts in dups.values()),
            "max_per_fault": max(per_fault.values(), default=0),
            "copies_max": max((len(ts) for ts in dups.values()), default=1),
            "dups_per_fault": {self.events[k][2]: n for k, n in sorted(per_fault.items())},
            "dup_ids_per_fault": dup_ids,
            "faults_at": [(round(a, 3), round(b, 3) if b else None, w) for a, b, w in self.events],
            "unexplained_duplicates": sorted(unexplained),
            "duplicates_after_fault_ended": sorted(after),
            "duplicates_without_abandoned_record": dup_without_abandoned,
            "stuck": len(unsettled),
            "stuck_ids": sorted(i for i, _ in unsettled)[:50],
            "live_stuck": len(self.live_stuck),
            "live_stuck_ids": sorted(i for i, _ in self.live_stuck)[:50],
            "live_settle_s": getattr(self, "live_settle_s", None),
            "lost": len(lost),
            "lost_ids": lost[:50],
            "received_not_sent": not_sent[:50],
            "failed": status_count(status, "failed"),
            "failed_reasons": [tuple(x) for x in db.query("SELECT id, kind, last_error FROM scheduled_message WHERE status = 'failed'")][:20],
            "skipped": status_count(status, "skipped"),
            "deliveries": dict(deliveries),
            "abandoned_messages": len(abandoned),
            "drain_s": drain_s,
            "wall_s": round(time.monotonic() - self.t0, 1),
            "notes": self.notes,
        }


def status_count(status, s):
    return sum(1 for v in status.values() if v == s)


# ---------------------------------------------------------------- the scenarios


def serve_kill(sc):
    """`serve` with its worker, kill -9 at a random moment, restarted: trials times."""
    sc.serve, base = sc.start_serve()
    sc.set_clock(base)
    sc.book(base)
    for n in range(sc.n):
        sc.sleep(sc.rng.uniform(0.5, 4.0))
        sending = sc.db.query("SELECT count(*) FROM scheduled_message WHERE status = 'sending'")[0][0]
        sc.booker.base = None
        done = sc.fault(f"kill -9 serve #{n + 1} ({sending} sending)")
        kill(sc.serve)
        done()
        sc.serve = None
        if n + 1 < sc.n:
            sc.serve, base = sc.start_serve()
            sc.booker.base = base
    return sc.drain_and_count()


def worker_kill(sc):
    """`serve` without worker books; separate workers kill -9'd at random moments."""
    sc.serve, base = sc.start_serve(worker=False)
    sc.set_clock(base)
    sc.book(base)
    sc.sleep(1)
    w = sc.start_worker()
    for n in range(sc.n):
        sc.sleep(sc.rng.uniform(0.5, 4.0))
        sending = sc.db.query("SELECT count(*) FROM scheduled_message WHERE status = 'sending'")[0][0]
        done = sc.fault(f"kill -9 worker #{n + 1} ({sending} sending)")
        kill(w)
        done()
        w = sc.start_worker()
    sc.workers = [w]
    sc.settle_live()
    return sc.drain_and_count()


def smtp_outage(sc, outages, bursts):
    """The SMTP server stopped (SIGTERM, then SIGKILL, alternately) for 3-6 s, then 451 bursts."""
    sc.serve, base = sc.start_serve()
    sc.set_clock(base)
    sc.book(base)
    for n in range(outages):
        sc.sleep(sc.rng.uniform(2, 4))
        sig = signal.SIGTERM if n % 2 == 0 else signal.SIGKILL
        done = sc.fault(f"SMTP down #{n + 1} ({signal.Signals(sig).name})")
        sc.smtp.down(sig)
        sc.sleep(sc.rng.uniform(3, 6))
        sc.smtp.up()
        done()
        log(f"{sc.name}: SMTP up")
    for n in range(bursts):
        sc.sleep(sc.rng.uniform(2, 4))
        done = sc.fault(f"451 burst #{n + 1}")
        open(sc.smtp.busy, "w").close()
        sc.sleep(sc.rng.uniform(3, 6))
        os.remove(sc.smtp.busy)
        done()
    sc.settle_live()
    return sc.drain_and_count()


def postgres_restart(sc, cluster):
    """`pg_ctl stop -m immediate` mid-run, started again after 3-10 s."""
    sc.serve, base = sc.start_serve()
    sc.set_clock(base)
    sc.book(base)
    for n in range(sc.n):
        sc.sleep(sc.rng.uniform(2, 4))
        done = sc.fault(f"PostgreSQL stopped #{n + 1} (immediate)")
        cluster.stop("immediate")
        sc.sleep(sc.rng.uniform(3, 10))
        cluster.start()
        done()
        log(f"{sc.name}: PostgreSQL started")
    sc.sleep(3)
    sc.settle_live()
    return sc.drain_and_count()


def sqlite_io(sc):
    """`chattr +i` on the database file and its -wal for 2-10 s, then writable again."""
    sc.serve, base = sc.start_serve()
    sc.set_clock(base)
    sc.book(base)
    # Longest first: the last cut is the shortest, so that the check of the surviving process
    # sees what a brief outage (under the three heartbeats of the sending lease) leaves behind.
    # One more, brief cut (1 s) ends the scenario, under the sending lease's three heartbeats.
    holds = sorted((sc.rng.uniform(2, 10) for _ in range(sc.n)), reverse=True) + [1.0]
    for n, hold in enumerate(holds):
        sc.sleep(sc.rng.uniform(2, 4))
        files = sc.db.files()
        done = sc.fault(f"chattr +i #{n + 1} ({hold:.1f} s)")
        IMMUTABLE.update(files)
        try:
            for f in files:
                subprocess.run(["chattr", "+i", f], check=True)
            sc.sleep(hold)
        finally:
            for f in files:
                subprocess.run(["chattr", "-i", f], check=True)
                IMMUTABLE.discard(f)
        done()
        log(f"{sc.name}: writable again")
    sc.sleep(3)
    sc.settle_live()
    return sc.drain_and_count()


# ---------------------------------------------------------------- the report


def judge(r, limit):
    problems = []
    if r.get("error"):
        return [f"did not complete: {r['error']}"]
    if r["missing_itineraries"] or r["missing_patients"] or r["http_missing"]:
        problems.append(f"answered 2xx and missing: itineraries {r['missing_itineraries'][:10]}, patients {r['missing_patients'][:10]}, GET != 200 {r['http_missing'][:10]}")
    if r["stuck"]:
        problems.append(f"{r['stuck']} due messages stuck after the drain: {r['stuck_ids'][:10]}")
    if r["live_stuck"]:
        problems.append(f"{r['live_stuck']} due messages not settled by the surviving processes in {LIVE_SETTLE} s (settled only after a restart): {r['live_stuck_ids'][:10]}")
    if r["lost"]:
        problems.append(f"{r['lost']} messages recorded sent and never received: {r['lost_ids'][:10]}")
    if r["failed"]:
        problems.append(f"{r['failed']} messages failed for good, though no permanent (5xx) refusal was injected: {r['failed_reasons']}")
    if r["received_not_sent"]:
        problems.append(f"received but not recorded sent: {r['received_not_sent'][:10]}")
    if r["extra_copies"] > r["faults"] * limit:
        problems.append(f"{r['extra_copies']} extra copies > {r['faults']} faults x {limit}")
    if r["max_per_fault"] > limit:
        problems.append(f"{r['max_per_fault']} duplicates from one fault > max_sends_in_flight {limit}")
    if r["unexplained_duplicates"]:
        problems.append(f"duplicates with no fault between their copies: {r['unexplained_duplicates'][:10]}")
    if r["bookings_2xx"] == 0:
        problems.append("no booking answered 2xx: the scenario tested nothing")
    return problems


def table(results, limit):
    head = "| scenario | trials (faults) | bookings 2xx | 2xx missing | messages due | sent | received | duplicated (count, max per fault) | stuck | lost | failed | wall time |"
    rows = [head, "|" + " --- |" * 12]
    for r in results:
        if r.get("error"):
            rows.append(f"| {r['scenario']} | {r.get('trials', '')} | — | — | — | — | — | — | — | — | — | error: {r['error'][:80]} |")
            continue
        missing = len(r["missing_itineraries"]) + len(r["missing_patients"]) + len(r["http_missing"])
        stuck = f"{r['stuck']}" + (f" (+{r['live_stuck']} held live)" if r["live_stuck"] else "")
        rows.append(
            f"| {r['scenario']} | {r['trials']} ({r['faults']}) | {r['bookings_2xx']} (stored {r['itineraries_stored']}) | {missing} | {r['due']} | {r['sent']} "
            f"| {r['received']} | {r['duplicated']} ({r['extra_copies']} extra), max {r['max_per_fault']} | {stuck} | {r['lost']} | {r['failed']} | {r['wall_s']} s |"
        )
    return "\n".join(rows)


def main():
    global CLUSTER, BOOKING_PACE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about 5 trials each: a smoke run")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=os.path.join(ROOT, "target/faults"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("faults.py: run as root (chattr, runuser)")
    if not os.path.exists(BIN) or not os.path.exists(PY):
        sys.exit(f"faults.py: needs {BIN} and {PY} (bench/faults.sh builds and installs them)")
    seed = a.seed if a.seed is not None else int(time.time())
    rng = random.Random(seed)
    limit = max_sends_in_flight()
    kills = 5 if a.quick else 20
    few = 2 if a.quick else 4
    plan = [
        ("serve-kill", "sqlite", kills, serve_kill),
        ("worker-kill-sqlite", "sqlite", kills, worker_kill),
        ("worker-kill-postgres", "postgres", kills, worker_kill),
        ("smtp-outage", "sqlite", 2 * few, lambda sc: smtp_outage(sc, few, few)),
        ("postgres-restart", "postgres", few, None),
        ("sqlite-io", "sqlite", few, sqlite_io),  # few cuts of 2-10 s, and a brief one
    ]
    only = {s for s in a.only.split(",") if s}
    unknown = only - {p[0] for p in plan}
    if unknown:
        sys.exit(f"--only: unknown scenario(s) {sorted(unknown)}")
    plan = [p for p in plan if not only or p[0] in only]
    os.makedirs(a.out, exist_ok=True)
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log(f"fault campaign: seed {seed}, max_sends_in_flight {limit}, {os.cpu_count()} cores, scenarios {[p[0] for p in plan]}")
    started = time.monotonic()
    results = []
    for name, kind, trials, fn in plan:
        try:
            check_time()
            if kind == "postgres" and CLUSTER is None:
                CLUSTER = Cluster()
                log(f"private PostgreSQL cluster on 127.0.0.1:{CLUSTER.port} and {CLUSTER.dir} ({CLUSTER.bindir})")
            d = os.path.join(a.out, name)
            db = SqliteDb(d) if kind == "sqlite" else PgDb(CLUSTER, "itinerary_" + name.replace("-", "_"))
            os.makedirs(d, exist_ok=True)
            sc = Scenario(name, db, a.out, rng, trials)
            try:
                r = postgres_restart(sc, CLUSTER) if name == "postgres-restart" else fn(sc)
            finally:
                sc.stop_all()
                sc.smtp.down()
                if CLUSTER and not CLUSTER.started:
                    CLUSTER.start()
            r["server_log"] = log_summary(sc.dir)
        except CampaignOver as e:
            r = {"scenario": name, "trials": trials, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - one scenario's failure is reported, the rest go on
            traceback.print_exc()
            r = {"scenario": name, "trials": trials, "error": f"{type(e).__name__}: {e}"}
        r["problems"] = judge(r, limit)
        results.append(r)
        log(f"{name}: {json.dumps({k: v for k, v in r.items() if k not in ('server_log',)})}")
    wall = round(time.monotonic() - started, 1)
    md = [
        f"Fault campaign: seed {seed}, max_sends_in_flight {limit}, {os.cpu_count()} cores, {wall} s"
        + (" (--quick)" if a.quick else ""),
        "",
        table(results, limit),
        "",
    ]
    for r in results:
        for p in r["problems"]:
            md.append(f"- **{r['scenario']}**: {p}")
    md += ["", "Details (results.json has every id):", ""]
    for r in results:
        if r.get("error"):
            continue
        md.append(
            f"- {r['scenario']} ({r['database']}): bookings {r['booking_status']}; due by status {r['due_status']}; deliveries {r['deliveries']}; "
            f"duplicates per fault {r['dups_per_fault'] or '{}'} ({len(r['duplicates_after_fault_ended'])} after the fault ended); "
            f"surviving processes settled in {r['live_settle_s']} s, clean serve drained in {r['drain_s']} s; log lines {r['server_log']['counts']}"
        )
    if not any(r["problems"] for r in results):
        md.append("No problem: every 2xx booking stored, nothing stuck or lost, duplicates within the window.")
    text = "\n".join(md) + "\n"
    print(text)
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"seed": seed, "max_sends_in_flight": limit, "wall_s": wall, "results": results}, f, indent=1, default=str)
    sys.exit(1 if any(r["problems"] for r in results) else 0)


def log_summary(directory):
    """Counts of the log lines that matter, and a few examples, from every process's log."""
    patterns = {
        "taken back": r"taken back",
        "could not be recorded": r"could not be recorded",
        "late send": r"claim had lapsed",
        "consumer restarted": r"job consumer stopped",
        "dispatch failed": r"dispatching due messages failed",
        "will retry": r"will retry",
        "ERROR": r"\bERROR\b",
        "panic": r"panicked",
    }
    counts = collections.Counter()
    examples = {}
    for f in sorted(glob.glob(os.path.join(directory, "*.log"))):
        with open(f, errors="replace") as fh:
            for line in fh:
                line = re.sub(r"\x1b\[[0-9;]*m", "", line)
                for k, p in patterns.items():
                    if re.search(p, line):
                        counts[k] += 1
                        examples.setdefault(k, f"{os.path.basename(f)}: {line.strip()[:300]}")
    return {"counts": dict(counts), "examples": examples}


if __name__ == "__main__":
    main()
