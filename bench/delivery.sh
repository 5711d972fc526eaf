#!/usr/bin/env bash
# The delivery benchmark (issue 5). Itineraries are booked with no worker running; their
# confirmations and invites (>= 10,000 messages for 640 itineraries) are then due at once.
# `itinerary worker` (release build) delivers them, and the script reports messages per second
# and the worker's peak memory. Each transport runs on a fresh database, on SQLite and on
# PostgreSQL:
#   - the file outbox;
#   - the local SMTP server of the tests (aiosmtpd). postfix's `smtp-source` sends the same
#     number of messages of the same average size to that server in the same run, as the
#     yardstick.
# The messages/s figure counts from the first delivery record to the last. "wall" adds the
# worker's start-up and the final poll.
#
#   bench/delivery.sh [ITINERARIES] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-640}
concurrency=${2:-8}
out=$PWD/target/bench-delivery
rm -rf "$out" && mkdir -p "$out"
scripts/interop-setup >&2
if ! command -v smtp-source >/dev/null && ! [ -x /usr/sbin/smtp-source ]; then
  echo "installing postfix for smtp-source" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null
fi
smtp_source=$(command -v smtp-source || echo /usr/sbin/smtp-source)
cargo build --quiet --release --bin itinerary --example load
bin=$PWD/target/release/itinerary
py=$PWD/target/interop-venv/bin/python
export RUST_LOG=warn ITINERARY_LISTEN=127.0.0.1:0 ITINERARY_CLOCK_MODE=test ITINERARY_DELIVERY_UPDATE_GRACE_SECONDS=0 \
  ITINERARY_WORKER_CONCURRENCY=$concurrency ITINERARY_WORKER_POLL_MS=100

q() { # sql: runs on $DATABASE_URL
  case $DATABASE_URL in
    sqlite://*) local f=${DATABASE_URL#sqlite://}; sqlite3 "${f%%\?*}" "$1" ;;
    *) psql "$DATABASE_URL" -tAc "$1" ;;
  esac
}
span() { # seconds from the first sent delivery to the last
  case $DATABASE_URL in
    sqlite://*) q "select (julianday(max(at)) - julianday(min(at))) * 86400 from delivery where status = 'sent'" ;;
    *) q "select extract(epoch from max(at) - min(at)) from delivery where status = 'sent'" ;;
  esac
}

# Books $n itineraries on a fresh database with the worker off; prints how many messages are due.
prepare() { # name (DATABASE_URL and ITINERARY_DELIVERY_OUTBOX set by the caller)
  local token
  token=$($bin admin create-coordinator "Bench $1" 2>/dev/null)
  ITINERARY_SERVER_WORKER=false $bin serve > "$out/$1.addr" 2> "$out/$1.serve.log" &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$out/$1.addr" 2>/dev/null && break; sleep 0.1; done
  local base
  base=$(sed -n 's/^listening on //p' "$out/$1.addr")
  # Daytime in Tokyo and Kuala Lumpur, so nothing waits for the morning.
  curl -sf -X PUT -H "authorization: Bearer $token" -H 'content-type: application/json' \
    "$base/clock" -d "{\"now\": \"$(date -u +%F)T01:00:00Z\"}" >/dev/null
  target/release/examples/load "$base" "$token" "$n" 8 0 > "$out/$1.load.json"
  kill -TERM $pid; wait $pid || true
  q "select count(*) from scheduled_message where status = 'pending' and (kind like 'calendar_%' or kind = 'booking_confirmation')"
}

# Runs `itinerary worker` until the due messages are sent; prints a JSON line.
deliver() { # name due transport
  local name=$1 due=$2 transport=$3
  export ITINERARY_SERVER_WORKER=true
  local t0 t1
  t0=$(date +%s.%N)
  # At the default log level: every send logs a line, with its duplicate window (window_us).
  RUST_LOG=info /usr/bin/time -v -o "$out/$name.time" $bin worker > /dev/null 2> "$out/$name.worker.log" &
  local pid=$!
  for _ in $(seq 6000); do
    [ "$(q "select count(*) from scheduled_message where status = 'sent'")" -ge "$due" ] && break
    sleep 0.1
  done
  t1=$(date +%s.%N)
  # Stop the worker itself, so that `time` reports its peak memory.
  pkill -TERM -P $pid 2>/dev/null || true; wait $pid || true
  local sent secs rss
  sent=$(q "select count(*) from scheduled_message where status = 'sent'")
  secs=$(span)
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/$name.time")
  python3 - "$out/$name.worker.log" <<EOF | tee -a "$out/results.jsonl"
import json, re, sys
w = sorted(int(m) for m in re.findall(r"window_us\\S*?=\\S*?(\\d+)", re.sub(r"\\x1b\\[[0-9;]*m", "", open(sys.argv[1]).read())))
pct = lambda p: w[min(len(w) - 1, int(len(w) * p))] if w else None
print(json.dumps({'run': '$name', 'transport': '$transport', 'due': $due, 'sent': $sent, 'seconds': round($secs, 2),
  'per_second': round($sent / $secs), 'wall_seconds': round($t1 - $t0, 2), 'worker_peak_rss_mib': round($rss / 1024, 1),
  'concurrency': $concurrency, 'window_us_p50': pct(0.5), 'window_us_p99': pct(0.99), 'window_us_max': pct(1.0)}))
EOF
}

smtp_up() { # dir; prints the port
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$py" tests/smtp/server.py --port "$port" --dir "$1" > "$1.ready" &
  echo $! > "$1.pid"
  for _ in $(seq 100); do grep -q ready "$1.ready" 2>/dev/null && break; sleep 0.1; done
  echo "$port"
}

# smtp-source against the same server: as many messages, of our average size, as many sessions.
yardstick() { # name port count size
  local dir=$out/$1.smtp-source t0 t1
  local port
  mkdir -p "$dir"
  port=$(smtp_up "$dir")
  t0=$(date +%s.%N)
  "$smtp_source" -s "$concurrency" -m "$3" -l "$4" -f bench@klregen.example.my -t patient@example.jp "127.0.0.1:$port"
  t1=$(date +%s.%N)
  kill -TERM "$(cat "$dir.pid")"; wait "$(cat "$dir.pid")" 2>/dev/null || true
  python3 -c "import json; print(json.dumps({'run': '$1', 'transport': 'smtp-source', 'sent': $3, 'seconds': round($t1 - $t0, 2), 'per_second': round($3 / ($t1 - $t0)), 'message_bytes': $4, 'sessions': $concurrency}))" | tee -a "$out/results.jsonl"
}

run() { # name database-url fresh-db-command
  local name=$1 url=$2
  $3 outbox
  local due
  export DATABASE_URL=${url//@DB@/outbox} ITINERARY_DELIVERY_OUTBOX=$out/$name-outbox.outbox
  due=$(prepare "$name-outbox")
  echo "== $name: $due due messages to the file outbox ($(nproc) cores)" >&2
  ITINERARY_SMTP_HOST='' deliver "$name-outbox" "$due" outbox
  local size
  size=$(python3 -c "import os,glob; f=glob.glob('$out/$name-outbox.outbox/*.eml'); print(sum(os.path.getsize(x) for x in f)//len(f))")

  $3 smtp
  export DATABASE_URL=${url//@DB@/smtp}
  due=$(prepare "$name-smtp")
  echo "== $name: $due due messages to the local SMTP server (aiosmtpd), then smtp-source" >&2
  mkdir -p "$out/$name.mail"
  local port
  port=$(smtp_up "$out/$name.mail")
  ITINERARY_SMTP_HOST=127.0.0.1 ITINERARY_SMTP_PORT=$port ITINERARY_SMTP_SECURITY=none deliver "$name-smtp" "$due" smtp
  kill -TERM "$(cat "$out/$name.mail.pid")"; wait "$(cat "$out/$name.mail.pid")" 2>/dev/null || true
  echo "   received by the server: $(ls "$out/$name.mail" | wc -l) messages, average $size bytes" >&2
  yardstick "$name" "$port" "$due" "$size"
}

fresh_sqlite() { rm -f "$out"/sqlite-"$1".db*; }
run sqlite "sqlite://$out/sqlite-@DB@.db?mode=rwc" fresh_sqlite

if psql -h 127.0.0.1 -U postgres -d test -qc 'select 1' >/dev/null 2>&1; then
  fresh_pg() { psql -h 127.0.0.1 -U postgres -d test -qc "drop database if exists itinerary_bench_$1 with (force)" -c "create database itinerary_bench_$1" 2>/dev/null; }
  # Over the Unix socket: see bench/load.sh for sqlx 0.9.0 and TCP_NODELAY.
  run postgres "postgres://postgres@localhost/itinerary_bench_@DB@?host=/var/run/postgresql" fresh_pg
else
  echo "== postgres: skipped, no server at 127.0.0.1:5432" >&2
fi
python3 bench/delivery-report.py "$out/results.jsonl"
