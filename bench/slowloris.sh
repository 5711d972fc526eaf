#!/usr/bin/env bash
# Slowloris on loopback, before and after the connection limits (issue 12, item 7): the release
# `itinerary serve` on a fresh SQLite file, first with the limits off (what axum::serve did:
# no header timeout, no caps), then with the defaults of config/default.toml. One JSON line per
# run from bench/slowloris.py. Bounded: SECONDS per run.
#
#   bench/slowloris.sh [CONNECTIONS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-24000}
seconds=${2:-20}
out=$PWD/target/bench-slowloris
rm -rf "$out" && mkdir -p "$out"
[ "${SLOWLORIS_NO_BUILD:-}" = 1 ] || cargo build --quiet --release --bin itinerary
ulimit -n 20000 # the server's descriptors, as on the machine the review used
run() { # name, then extra settings
  local name=$1; shift
  export DATABASE_URL="sqlite://$out/$name.db?mode=rwc" ITINERARY_LISTEN=127.0.0.1:0 ITINERARY_DELIVERY_OUTBOX="$out/outbox-$name" RUST_LOG=error
  env "$@" target/release/itinerary serve >"$out/$name.out" 2>"$out/$name.log" &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$out/$name.out" 2>/dev/null && break; sleep 0.1; done
  local port; port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$out/$name.out" | head -1)
  printf '%s ' "$name"
  python3 bench/slowloris.py --port "$port" --connections "$connections" --seconds "$seconds"
  kill -TERM "$pid" 2>/dev/null || true
  sleep 2; kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}
run limits-off ITINERARY_SERVER_HEADER_READ_TIMEOUT_SECONDS=0 ITINERARY_SERVER_MAX_CONNECTIONS=0 ITINERARY_SERVER_CONNECTIONS_PER_CLIENT=0
run defaults
