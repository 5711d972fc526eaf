#!/usr/bin/env bash
# The console's page benchmark (issue 13): `itinerary serve` (release build, no worker) on a
# fresh SQLite file, a season of ITINERARIES booked itineraries, then each console page
# requested REPEAT times in a row (examples/console_bench.rs); latency percentiles per page.
#
#   bench/console.sh [ITINERARIES] [REPEAT]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500}
repeat=${2:-200}
out=target/bench-console
mkdir -p "$out"
rm -f "$out"/console.db*
bin=target/release/itinerary
cargo build --quiet --release --bin itinerary --example console_bench
export DATABASE_URL="sqlite://$PWD/$out/console.db?mode=rwc" ITINERARY_LISTEN=127.0.0.1:0 RUST_LOG=warn ITINERARY_SERVER_WORKER=false
token=$($bin admin create-coordinator "Bench" 2>/dev/null)
$bin serve > "$out/addr" 2> "$out/log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening "$out/addr" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^listening on //p' "$out/addr")
echo "== console pages ($(nproc) cores): $n itineraries, each page $repeat times"
target/release/examples/console_bench "$base" "$token" "$n" "$repeat" | tee "$out/result.json"
