#!/usr/bin/env bash
# bench/remote_auth.sh - a second API host's token validation at the identity of another process.
#
#   bench/remote_auth.sh [--tokens N] [--requests M] [--out DIR]
#
# Root (PostgreSQL runs as its system user). A private PostgreSQL and RabbitMQ on loopback
# (tests/e2e/dbservers.py); A = `kumo serve api conductor scheduler`, D = `kumo serve api` with
# `[keystone_authtoken] auth_url` = A's identity (docs/scale-out.md). GET /compute/v2.1/flavors on
# one keep-alive connection each: on D with N (default 100) fresh tokens (each validated at A), M
# (default 1000) times on D with one cached token, M times on A (in-process validation); p50/p90/max,
# and the validations A served (must be one per fresh token). Writes OUT/summary.json, prints a
# table. Cleanup (also on failure or Ctrl-C): the processes stopped by their pids, the temp dir removed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck disable=SC2034 # used by blog in lib/common.sh
BENCH_TAG=remote_auth.sh
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2; }
TOKENS=100 REQUESTS=1000 OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tokens) TOKENS=$2; shift 2;;
    --requests) REQUESTS=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
[[ $TOKENS =~ ^[1-9][0-9]*$ && $TOKENS -ge 2 ]] || bdie "--tokens needs a number >= 2"
[[ $REQUESTS =~ ^[1-9][0-9]*$ ]] || bdie "--requests needs a positive number"
[[ $(id -u) == 0 ]] || bdie "run as root: PostgreSQL is started as its system user"

# shellcheck disable=SC2119 # bench/lib's kumo_bin takes no argument
KUMO=$(kumo_bin)
[[ -x $KUMO ]] || bdie "no kumo binary at $KUMO (cargo build --release, or set KUMO_BIN)"
OUT=${OUT:-$(mktemp -d /tmp/kumo-bench-remote-auth.XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd -P)
WORK=$(mktemp -d /tmp/kumo-bench-remote-auth-work.XXXXXX)
chmod 755 "$WORK" # PostgreSQL's user must reach its data dir inside
RUNNER_PID=""

# shellcheck disable=SC2317,SC2329 # run by the traps
cleanup() {
  local rc=$? pid name
  set +e
  if [[ -n $RUNNER_PID ]] && kill -0 "$RUNNER_PID" 2>/dev/null; then
    kill -TERM "$RUNNER_PID"; wait "$RUNNER_PID"
  fi
  # what the runner started and did not stop: each leads a process group of its own
  if [[ -f $WORK/pids.txt ]]; then
    while read -r pid name; do
      if [[ $(awk '{print $6}' "/proc/$pid/stat" 2>/dev/null) == "$pid" ]]; then
        blog "still running: $name (pid $pid): stopping its process group"
        kill -TERM -- "-$pid" 2>/dev/null; sleep 3; kill -KILL -- "-$pid" 2>/dev/null
      fi
    done < "$WORK/pids.txt"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

blog "kumo: $KUMO; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
TMPDIR=$WORK python3 "$HERE/lib/remote_auth_run.py" --kumo "$KUMO" --work "$WORK" --out "$OUT" \
  --tokens "$TOKENS" --requests "$REQUESTS" &
RUNNER_PID=$!
rc=0
wait "$RUNNER_PID" || rc=$?
RUNNER_PID=""
echo "results: $OUT"
exit "$rc"
