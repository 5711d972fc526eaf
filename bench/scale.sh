#!/usr/bin/env bash
# The scale-out benchmark (issue 15, item 5): on one PostgreSQL database over TCP, P `serve`
# processes (clients taken round-robin, as a balancer would) and P `itinerary worker` processes
# book and deliver at once, for P = 1 and then P = 2. Each booking's confirmation and invites are
# due at once (update grace 0, test clock at 01:00 UTC, daytime in Tokyo and Kuala Lumpur), so
# the workers deliver to the tests' SMTP server (aiosmtpd) while the bookings go on; then the
# script waits until every due message is sent. It reports bookings/s and their p99, messages
# delivered/s, and counts what must never happen: an escort or a chair booked twice, a message
# received twice (by Message-ID at the SMTP server), a due message not delivered.
#
#   bench/scale.sh [ITINERARIES] [CONCURRENCY]     (release build; PostgreSQL at 127.0.0.1:5432)
#
# SCALE_RUST_LOG sets the processes' log filter (`warn,itinerary_store=debug` logs each booking
# group, and each group planned again under the lock, to target/bench-scale/*.log).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
c=${2:-16}
out=$PWD/target/bench-scale
rm -rf "$out" && mkdir -p "$out"
scripts/interop-setup >&2
cargo build --quiet --release --bin itinerary --example load
bin=$PWD/target/release/itinerary
py=$PWD/target/interop-venv/bin/python
if ! psql -h 127.0.0.1 -U postgres -d test -qc 'select 1' >/dev/null 2>&1; then
  echo "bench/scale.sh needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust)" >&2
  exit 2
fi
export RUST_LOG=${SCALE_RUST_LOG:-warn} ITINERARY_LISTEN=127.0.0.1:0 ITINERARY_CLOCK_MODE=test ITINERARY_DELIVERY_UPDATE_GRACE_SECONDS=0 \
  ITINERARY_WORKER_POLL_MS=100 ITINERARY_SERVER_WORKER=false ITINERARY_SMTP_SECURITY=none

pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

q() { psql "$DATABASE_URL" -tAc "$1"; }

run() { # processes
  local p=$1 name=scale-$1
  local db=itinerary_bench_$name
  db=${db//-/_}
  psql -h 127.0.0.1 -U postgres -d test -qc "drop database if exists $db with (force)" -c "create database $db" 2>/dev/null
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
  mkdir -p "$out/$name.mail"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$py" tests/smtp/server.py --port "$port" --dir "$out/$name.mail" > "$out/$name.smtp.ready" &
  local smtp=$!
  pids+=("$smtp")
  for _ in $(seq 100); do grep -q ready "$out/$name.smtp.ready" 2>/dev/null && break; sleep 0.1; done
  export ITINERARY_SMTP_HOST=127.0.0.1 ITINERARY_SMTP_PORT=$port
  $bin migrate >/dev/null 2>&1
  local token
  token=$($bin admin create-coordinator "Bench $name" 2>/dev/null)
  local bases=() serves=() workers=()
  for i in $(seq "$p"); do
    $bin serve > "$out/$name.serve$i.addr" 2> "$out/$name.serve$i.log" &
    serves+=($!) && pids+=($!)
    for _ in $(seq 100); do grep -q listening "$out/$name.serve$i.addr" 2>/dev/null && break; sleep 0.1; done
    bases+=("$(sed -n 's/^listening on //p' "$out/$name.serve$i.addr")")
  done
  curl -sf -X PUT -H "authorization: Bearer $token" -H 'content-type: application/json' \
    "${bases[0]}/clock" -d "{\"now\": \"$(date -u +%F)T01:00:00Z\"}" >/dev/null
  for i in $(seq "$p"); do
    $bin worker > /dev/null 2> "$out/$name.worker$i.log" &
    workers+=($!) && pids+=($!)
  done
  echo "== $p serve + $p worker processes ($(nproc) cores), PostgreSQL over TCP: $n + $((n / 2)) itineraries, $c clients" >&2
  local t0 t1
  t0=$(date +%s.%N)
  target/release/examples/load "$(IFS=,; echo "${bases[*]}")" "$token" "$n" "$c" 0 > "$out/$name.load.json"
  t1=$(date +%s.%N)
  local due sent_during
  due=$(q "select count(*) from scheduled_message where kind like 'calendar_%' or kind = 'booking_confirmation'")
  sent_during=$(q "select count(*) from scheduled_message where status = 'sent'")
  for _ in $(seq 3000); do
    [ "$(q "select count(*) from scheduled_message where status = 'sent'")" -ge "$due" ] && break
    sleep 0.1
  done
  sleep 1 # anything sent twice would arrive now
  for w in "${workers[@]}" "${serves[@]}"; do kill -TERM "$w" 2>/dev/null || true; wait "$w" 2>/dev/null || true; done
  kill -TERM "$smtp"; wait "$smtp" 2>/dev/null || true
  local sent failed span by_worker escorts chairs labs chair_cap lab_cap received distinct
  sent=$(q "select count(*) from scheduled_message where status = 'sent'")
  failed=$(q "select count(*) from scheduled_message where status = 'failed'")
  span=$(q "select coalesce(extract(epoch from max(at) - min(at)), 0) from delivery where status = 'sent'")
  by_worker=$(q "select string_agg(n::text, '+' order by n desc) from (select count(*) n from scheduled_message where status = 'sent' group by claimed_by) x")
  # An escort's duties overlapping (unless the same shared airport run); chairs and lab draws
  # above capacity at the start of any booking.
  escorts=$(q "select count(*) from booking a join booking b on a.id < b.id and a.kind = 'escort' and b.kind = 'escort'
    and a.resource = b.resource and a.starts_at < b.ends_at and b.starts_at < a.ends_at
    and (a.shared is null or a.shared is distinct from b.shared)")
  peak() { q "select coalesce(max(k), 0) from (select count(*) k from booking a join booking b on a.kind = '$1' and b.kind = '$1'
    and b.starts_at <= a.starts_at and b.ends_at > a.starts_at group by a.id) x"; }
  chairs=$(peak chair)
  labs=$(peak lab)
  chair_cap=$(q "select capacity from resource where id = 'chairs'")
  lab_cap=$(q "select capacity from resource where id = 'lab_draws_per_slot'")
  received=$(ls "$out/$name.mail" | wc -l)
  distinct=$(cat "$out/$name.mail"/* 2>/dev/null | grep -i '^message-id:' | sort -u | wc -l)
  python3 - "$out/$name.load.json" <<EOF | tee -a "$out/results.jsonl"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
alone, mixed = lines[0], lines[2]
print(json.dumps({'processes': $p, 'itineraries': alone['requests'] + mixed['requests'],
  'bookings_per_second': alone['ok_per_second'], 'booking_p50_ms': alone['p50_ms'], 'booking_p99_ms': alone['p99_ms'],
  'bookings_per_second_with_feeds': mixed['ok_per_second'], 'booking_p99_ms_with_feeds': mixed['p99_ms'],
  'booking_status': alone['status'], 'due_messages': $due, 'sent_while_booking': $sent_during,
  'sent': $sent, 'failed': $failed, 'delivered_per_second': round($sent / $span) if $span else None,
  'sent_by_each_worker': '$by_worker', 'booking_seconds': round($t1 - $t0, 1),
  'escort_overlaps': $escorts, 'chair_peak': $chairs, 'chairs': $chair_cap, 'lab_peak': $labs, 'lab_capacity': $lab_cap,
  'smtp_received': $received, 'smtp_distinct_message_ids': $distinct,
  'broken': $escorts > 0 or $chairs > $chair_cap or $labs > $lab_cap or $received != $distinct or $sent < $due or $failed > 0}))
EOF
}

run 1
run 2
python3 - "$out/results.jsonl" <<'EOF'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
print("| processes | bookings/s | p99 | bookings/s with feeds (p99) | messages delivered/s | sent (by worker) | double bookings | duplicate / lost messages |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for x in r:
    double = x['escort_overlaps'] + max(0, x['chair_peak'] - x['chairs']) + max(0, x['lab_peak'] - x['lab_capacity'])
    print(f"| {x['processes']} serve + {x['processes']} worker | {x['bookings_per_second']:.0f} | {x['booking_p99_ms']} ms | "
          f"{x['bookings_per_second_with_feeds']:.0f} ({x['booking_p99_ms_with_feeds']} ms) | {x['delivered_per_second']} | "
          f"{x['sent']} of {x['due_messages']} ({x['sent_by_each_worker']}) | {double} | "
          f"{x['smtp_received'] - x['smtp_distinct_message_ids']} / {x['due_messages'] - x['sent']} |")
sys.exit(1 if any(x['broken'] for x in r) else 0)
EOF
