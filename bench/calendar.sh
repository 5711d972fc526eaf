#!/usr/bin/env bash
# The calendar benchmark (issue 3): one whole-itinerary calendar of EVENTS events (default
# 10,000) rendered by our crate, by Python icalendar and by npm ical-generator, in one run, each
# with a VTIMEZONE per zone; then every output strictly checked and read by ical.js.
#
#   bench/calendar.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-10000}
out=target/bench-calendar
mkdir -p "$out"

scripts/interop-setup
cargo build --quiet --release -p itinerary-calendar --example race
python=target/interop-venv/bin/python

echo "machine: $(nproc) cores, $(uname -srm); node $(node --version); $($python --version)"
target/release/examples/race "$out" "$events" 20 > "$out/ours.json"
$python bench/peer-icalendar.py "$out/events.json" "$out/python-icalendar.ics" 3 > "$out/python-icalendar.json"
node bench/peer-ical-generator.mjs "$out/events.json" "$out/ical-generator.ics" 10 > "$out/ical-generator.json"
$python bench/calendar-report.py "$out"
