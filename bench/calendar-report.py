"""Judges and compares the three renderings `bench/calendar.sh` produced in OUT_DIR.

Strict checking, per INTEROP.md: CRLF line ends only, no physical line over 75 octets, no fold
inside a UTF-8 character, CRLF after END:VCALENDAR, a VTIMEZONE for every TZID used, no UID or
DTSTAMP in a VTIMEZONE, no multi-valued RDATE in one; then Mozilla ical.js must read every event
at the UTC instants of events.json. Prints a table and exits non-zero if ours fails.

python calendar-report.py OUT_DIR"""
import json
import pathlib
import subprocess
import sys

out = pathlib.Path(sys.argv[1])
root = pathlib.Path(__file__).resolve().parent.parent
expected = {e["uid"]: e for e in json.loads((out / "events.json").read_text(encoding="utf-8"))["events"]}


def framing(data: bytes) -> list[str]:
    problems = []
    if not data.endswith(b"END:VCALENDAR\r\n"):
        problems.append("no CRLF after END:VCALENDAR")
    body = data[:-2] if data.endswith(b"\r\n") else data
    lines = body.split(b"\r\n")
    if any(b"\n" in l or b"\r" in l for l in lines):
        problems.append("bare LF or CR line ends")
    long = sum(1 for l in lines if len(l) > 75)
    if long:
        problems.append(f"{long} lines over 75 octets")
    split = 0
    for l in lines:
        try:
            l.decode("utf-8")
        except UnicodeDecodeError:
            split += 1
    if split:
        problems.append(f"{split} folds inside a UTF-8 character")
    logical = []
    for l in lines:
        if l.startswith((b" ", b"\t")) and logical:
            logical[-1] += l[1:]
        else:
            logical.append(l)
    defined, used, in_tz, rdate_lists, tz_ids = set(), set(), False, 0, 0
    for l in logical:
        if l == b"BEGIN:VTIMEZONE":
            in_tz = True
        elif l == b"END:VTIMEZONE":
            in_tz = False
        elif in_tz:
            if l.startswith(b"TZID:"):
                defined.add(l[5:].decode())
            if l.startswith((b"UID", b"DTSTAMP")):
                tz_ids += 1
            if l.startswith(b"RDATE") and b"," in l:
                rdate_lists += 1
        elif b";TZID=" in l:
            rest = l.split(b";TZID=", 1)[1]
            used.add(rest.split(b":", 1)[0].split(b";", 1)[0].decode())
    if used - defined:
        problems.append(f"TZID without VTIMEZONE: {sorted(used - defined)}")
    if tz_ids:
        problems.append(f"{tz_ids} UID/DTSTAMP lines inside VTIMEZONE")
    if rdate_lists:
        problems.append(f"{rdate_lists} multi-valued RDATE in VTIMEZONE (ical.js and vobject read the first value only)")
    return problems


def instants(path: pathlib.Path) -> list[str]:
    judge = root / "tests/interop/judge-icaljs.mjs"
    r = subprocess.run(["node", str(judge), str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        return ["ical.js rejected it: " + r.stderr.strip().splitlines()[-1][:200]]
    got = json.loads(r.stdout)
    wrong = missing = 0
    seen = set()
    for ev in got["events"]:
        want = expected.get(ev["uid"])
        if want is None:
            continue
        seen.add(ev["uid"])
        for k in ("start", "end"):
            w, g = want[k], ev[k]
            if "date" in w:
                ok = g.get("date", "").replace("-", "") == w["date"].replace("-", "")
            else:
                ok = g.get("utc") == w["utc"]
            wrong += not ok
    missing = len(expected) - len(seen)
    problems = []
    if wrong:
        problems.append(f"ical.js reads {wrong} start/end instants differently from the plan")
    if missing:
        problems.append(f"{missing} events missing")
    return problems


rows = []
for name in ("ours", "python-icalendar", "ical-generator"):
    timing = json.loads((out / f"{name}.json").read_text())
    ics = out / f"{name}.ics"
    problems = framing(ics.read_bytes()) + instants(ics)
    rows.append((name, timing, problems))

ours = rows[0][1]
print(f"{'renderer':34} {'events/s (median)':>18} {'events/s (first)':>17} {'ours is ×':>10}  strict check")
for name, t, problems in rows:
    per_s = t["events"] / t["median_s"]
    first = t["events"] / t["first_s"]
    ratio = t["median_s"] / ours["median_s"]
    verdict = "PASS" if not problems else "FAIL: " + "; ".join(problems)
    print(f"{t['peer']:34} {per_s:>18,.0f} {first:>17,.0f} {ratio:>10.1f}  {verdict}")
if rows[0][2]:
    sys.exit(1)
