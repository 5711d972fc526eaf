#!/usr/bin/env bash
# A bounded Schemathesis run against the real service: a fresh SQLite database, `itinerary serve`
# on a free loopback port, one patient and one itinerary created so that ids exist, then
# property-based requests generated from /openapi.json. Fails on any 5xx, any response whose
# status or body the document does not describe, or a run that outlives its time limit.
#
#   tests/schemathesis/run.sh [ITINERARY_BINARY] [VENV] [SCHEMATHESIS_RUN_OPTIONS...]
#
# ITINERARY_BINARY defaults to target/debug/itinerary, VENV to target/schemathesis-venv (made by
# scripts/interop-setup from tests/schemathesis/requirements.txt). Knobs, with their defaults:
# SCHEMATHESIS_MAX_EXAMPLES=100 (test cases per operation and phase), SCHEMATHESIS_SEED=20261130,
# SCHEMATHESIS_CHECKS=not_a_server_error,status_code_conformance,response_schema_conformance,
# SCHEMATHESIS_TIME_LIMIT=240 (seconds for the whole run), SCHEMATHESIS_REPORT_DIR (keep the
# JUnit and NDJSON reports there; a temporary directory otherwise).
# Ends with `schemathesis: N passed, M failed` (per API operation, plus the stateful suite) and
# exits with Schemathesis's status (124 when the time limit stopped it).
set -euo pipefail

absolute() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$(pwd)" "$(basename "$1")"); }
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(absolute "${1:-$root/target/debug/itinerary}")
venv=$(absolute "${2:-$root/target/schemathesis-venv}")
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-100}
seed=${SCHEMATHESIS_SEED:-20261130}
time_limit=${SCHEMATHESIS_TIME_LIMIT:-240}
checks=${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,response_schema_conformance}
cd "$root" # the service reads config/

if [ ! -x "$bin" ]; then
  echo "schemathesis: no itinerary binary at $bin" >&2
  exit 2
fi
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "schemathesis: not installed in $venv (run scripts/interop-setup)" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/itinerary-schemathesis.XXXXXX")
report=${SCHEMATHESIS_REPORT_DIR:-$work/report}
mkdir -p "$report"
report=$(cd "$report" && pwd)
server=
cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

export DATABASE_URL="sqlite://$work/itinerary.db?mode=rwc"
export ITINERARY_LISTEN=127.0.0.1:0
export ITINERARY_PUBLIC_URL=http://feed.example
export ITINERARY_DELIVERY_OUTBOX="$work/outbox"
# Schemathesis tries every route without a token and with wrong ones: past the default burst of
# failed attempts it would meet only 429s (the limit has its own test in tests/service.rs).
export ITINERARY_SERVER_FAILED_AUTH_BURST=1000000

token=$("$bin" admin create-coordinator "Schemathesis" 2>"$work/admin.log") || {
  cat "$work/admin.log" >&2
  exit 2
}
token=$(printf '%s' "$token" | tr -d '[:space:]')

"$bin" serve >"$work/server.out" 2>"$work/server.log" &
server=$!
base=
for _ in $(seq 1 300); do
  line=$(head -n 1 "$work/server.out" 2>/dev/null || true)
  case $line in
    "listening on "*)
      base=${line#listening on }
      break
      ;;
  esac
  if ! kill -0 "$server" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$base" ]; then
  echo "schemathesis: the server did not start" >&2
  tail -n 40 "$work/server.log" >&2
  exit 2
fi
echo "schemathesis: itinerary serve at $base (seed $seed, $max_examples examples per operation)"

# Data for the generated ids to find: patient 1 and its itinerary 1 (the tests' red-eye trip,
# a year ahead: out Sunday night, landing Monday, home Thursday night).
call() { # METHOD PATH [JSON] -> the body; fails unless 2xx
  curl -sS --fail-with-body --max-time 30 -X "$1" -H "Authorization: Bearer $token" \
    ${3:+-H 'Content-Type: application/json' --data "$3"} "$base$2"
}
patient=$(call POST /patients '{"name":"Taro Yamada","email":"taro.yamada@example.jp","birth_date":"1978-05-14","home_zone":"Asia/Tokyo","language":"ja","passport_expiry":"2031-03-31"}')
patient_id=$(printf '%s' "$patient" | sed -n 's/^{"id":\([0-9]*\).*/\1/p')
read -r out arrive back home < <("$venv/bin/python" -c '
import datetime as d
t = d.date.today() + d.timedelta(days=365)
s = t - d.timedelta(days=(t.weekday() + 1) % 7)
print(*[(s + d.timedelta(days=n)).isoformat() for n in (0, 1, 4, 5)])')
flight() { printf '{"flight":"%s","from":"%s","depart":"%s","to":"%s","arrive":"%s"}' "$@"; }
trip="{\"outbound\":$(flight MH71 NRT "$out 21:40" KUL "$arrive 04:30"),\"return\":$(flight MH88 KUL "$back 23:35" NRT "$home 07:15")}"
if ! call POST /itineraries "{\"patient_id\":${patient_id:-1},\"protocol\":\"single-infusion\",\"trips\":[$trip]}" >"$work/itinerary.json"; then
  echo "schemathesis: warning: could not book the seed itinerary: $(head -c 300 "$work/itinerary.json")" >&2
fi

# From the temporary directory, so that Hypothesis's and Schemathesis's caches stay out of the tree.
status=0
(cd "$work" && exec timeout -k 15 "$time_limit" "$venv/bin/schemathesis" run "$base/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks "$checks" \
  --max-examples "$max_examples" \
  --seed "$seed" \
  --generation-database none \
  --suppress-health-check all \
  --request-timeout 10 \
  --workers 1 \
  --no-color \
  --report junit,ndjson --report-dir "$report" \
  --report-junit-path "$report/junit.xml" --report-ndjson-path "$report/events.ndjson" \
  "${@:3}") || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "schemathesis: stopped after ${time_limit}s" >&2
fi
if [ "$status" -ne 0 ]; then
  echo "== server log (last 40 lines)" >&2
  tail -n 40 "$work/server.log" >&2
fi

# One closing line, from the JUnit report: each API operation (and the stateful suite) is a case.
if [ -s "$report/junit.xml" ]; then
  "$venv/bin/python" - "$report/junit.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
failed = passed = 0
for case in cases:
    if case.find("failure") is not None or case.find("error") is not None:
        failed += 1
    elif case.find("skipped") is None:
        passed += 1
print(f"schemathesis: {passed} passed, {failed} failed")
EOF
elif [ "$status" -ne 0 ]; then
  echo "schemathesis: 0 passed, 1 failed"
fi
exit "$status"
