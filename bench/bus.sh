#!/usr/bin/env bash
# bench/bus.sh - the bus's own cost, in-process and over RabbitMQ, in one run.
#
#   bench/bus.sh [--wait-quiet SECONDS]
#
# Runs the ignored test `bench_bus` of crates/bus/tests/rabbitmq.rs (release build): for each
# transport, 2000 sequential calls to an echo server (after 100 warm-up calls) give the call round
# trip p50/p99, then 5000 casts from 16 concurrent senders give the cast throughput (each cast
# confirmed by the broker and handled by the server). RabbitMQ is a private node of Debian's
# rabbitmq-server on free loopback ports in a temp dir, stopped by its pid at the end (also on
# failure) by the test's harness. Exit: 0 measured, 2 setup or build error.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
ROOT=$(cd "$HERE/.." && pwd -P)
BENCH_TAG=bus.sh
. "$HERE/lib/common.sh"

WAIT_QUIET=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wait-quiet) WAIT_QUIET=$2; shift 2;;
    *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2;;
  esac
done

[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server || -n ${KUMO_RABBITMQ_SERVER:-} ]] ||
  bdie "no RabbitMQ: apt-get install rabbitmq-server (tests/lib/common.sh lists it under tests)"
cd "$ROOT"
blog "building the bus tests (release)"
cargo test --release -p bus --test rabbitmq --no-run >/dev/null 2>&1 || bdie "cargo build failed"
if ((WAIT_QUIET > 0)); then wait_quiet "$WAIT_QUIET" >/dev/null; fi
blog "machine busy: $(cpu_busy_pct)% CPU over 3 s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! cargo test --release -p bus --test rabbitmq -- --ignored --exact bench_bus --nocapture \
  >"$out" 2>&1; then
  tail -40 "$out" >&2
  bdie "the bench failed"
fi
grep -E '^(bus bench|rabbitmq:)' "$out"
