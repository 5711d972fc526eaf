#!/usr/bin/env bash
# The fault campaign (issue 12, item 15): the release `itinerary` killed with SIGKILL (`serve`
# and `worker`, at random moments, >= 20 times each), the SMTP relay stopped and answering 451
# in bursts, the private PostgreSQL cluster stopped and started, the SQLite file made immutable,
# all while bookings and deliveries go on. Prints one table (also target/faults/report.md):
# bookings answered 2xx against stored, messages due against sent, received and duplicated.
# Exits non-zero when a 2xx booking is missing, a message is stuck (also: held by a live
# process) or lost or failed for good, or duplicates leave the documented window (more than
# trials x max_sends_in_flight, more than max_sends_in_flight for one fault, or with no fault
# between their copies). Everything listens on 127.0.0.1 (or a Unix socket); the machine's own
# PostgreSQL is not touched: a throwaway cluster is. Run as root (chattr, runuser).
#
#   bench/faults.sh [--quick] [--only serve-kill,worker-kill-sqlite,...] [--seed N]
#
# FAULTS_NO_BUILD=1 skips `cargo build`. Logs and mailboxes: target/faults/<scenario>/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "bench/faults.sh: run as root (chattr +i, and runuser for the private PostgreSQL cluster)" >&2
  exit 2
fi
scripts/interop-setup >&2
if [ "${FAULTS_NO_BUILD:-}" != 1 ]; then
  cargo build --quiet --release --bin itinerary
fi
# The whole campaign is bounded: faults.py stops itself well before this (SIGTERM lets it
# restore file flags, stop the cluster and its processes).
exec timeout --kill-after=30 3600 python3 bench/faults.py "$@"
