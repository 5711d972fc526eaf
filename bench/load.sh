#!/usr/bin/env bash
# The service's load benchmark (issue 4): `itinerary serve` (release build) on a fresh SQLite
# file, then on a fresh PostgreSQL database. CONCURRENCY clients create ITINERARIES itineraries,
# then fetch feeds for FEED_SECONDS, then create ITINERARIES/2 more while as many clients fetch
# feeds (examples/load.rs); throughput and latency percentiles for each.
#
#   bench/load.sh [ITINERARIES] [CONCURRENCY] [FEED_SECONDS]
#
# LOAD_DATABASES (default "sqlite postgres-socket postgres-tcp") picks the runs. LOAD_RUST_LOG sets
# the service's log filter (`warn,itinerary_store=debug` logs each booking group's phases to
# target/bench-load/NAME.log).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
c=${2:-16}
secs=${3:-10}
out=target/bench-load
mkdir -p "$out"
bin=target/release/itinerary

run() { # name database-url
  local name=$1 url=$2
  export DATABASE_URL=$url ITINERARY_LISTEN=127.0.0.1:0 RUST_LOG=${LOAD_RUST_LOG:-warn} ITINERARY_DELIVERY_OUTBOX=$PWD/$out/$name.outbox
  local token
  token=$($bin admin create-coordinator "Load $name" 2>/dev/null)
  $bin serve > "$out/$name.addr" 2> "$out/$name.log" &
  local pid=$!
  for _ in $(seq 50); do grep -q listening "$out/$name.addr" 2>/dev/null && break; sleep 0.1; done
  local base
  base=$(sed -n 's/^listening on //p' "$out/$name.addr")
  echo "== $name ($(nproc) cores): $n itineraries, $c concurrent clients, feeds for ${secs}s"
  target/release/examples/load "$base" "$token" "$n" "$c" "$secs" | tee "$out/$name.json"
  kill -TERM $pid; wait $pid || true
}

dbs=" ${LOAD_DATABASES:-sqlite postgres-socket postgres-tcp} "
for d in $dbs; do
  case $d in
    sqlite | postgres-socket | postgres-tcp) ;;
    *) echo "LOAD_DATABASES: unknown run '$d' (sqlite, postgres-socket, postgres-tcp, separated by spaces)" >&2; exit 2 ;;
  esac
done
cargo build --quiet --release --bin itinerary --example load
if [[ $dbs == *" sqlite "* ]]; then
  rm -f "$out"/sqlite.db*
  run sqlite "sqlite://$PWD/$out/sqlite.db?mode=rwc"
fi

# PostgreSQL twice: over its Unix socket, and over TCP, where sqlx 0.9.0 (which does not set
# TCP_NODELAY: transact-rs/sqlx#4335, fixed by #4336, not yet released) stalls ~40 ms on every
# statement larger than its write buffer (a stored Plan is ~30 KB).
fresh() {
  psql -h 127.0.0.1 -U postgres -d test -qc "drop database if exists $1 with (force)" -c "create database $1" 2>/dev/null
}
if [[ $dbs != *" postgres-"* ]]; then
  :
elif psql -h 127.0.0.1 -U postgres -d test -qc 'select 1' >/dev/null 2>&1; then
  if [[ $dbs == *" postgres-socket "* ]]; then
    fresh itinerary_load_socket
    run postgres-socket "postgres://postgres@localhost/itinerary_load_socket?host=/var/run/postgresql"
  fi
  if [[ $dbs == *" postgres-tcp "* ]]; then
    fresh itinerary_load_tcp
    run postgres-tcp "postgres://postgres@127.0.0.1:5432/itinerary_load_tcp"
  fi
else
  echo "== postgres: skipped, no server at 127.0.0.1:5432"
fi
