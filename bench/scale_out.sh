#!/usr/bin/env bash
# bench/scale_out.sh - fake-driver boots through RabbitMQ + PostgreSQL with 10 compute hosts in
# processes of their own, against the embedded mode, the same load, in one run (issue #11).
#
#   bench/scale_out.sh [--servers N] [--clients C] [--hosts H] [--out DIR] [--wait-quiet S]
#                      [--only scale-out|embedded] [--timeout S]
#
# 1. scale-out: a private PostgreSQL and RabbitMQ on loopback (tests/e2e/dbservers.py), process
#    A = `kumo serve api conductor scheduler network-agent` (`[network] dataplane = none`), H (10) processes
#    `kumo serve compute`, each its own `[DEFAULT] host` (compute-01..) and state dir, fake driver.
# 2. embedded: `kumo serve all` (what `kumo up --foreground` runs): SQLite, the in-process bus,
#    `[fake] hosts = H`.
# The same load on each: N (500) servers created by C (16) closed-loop clients on one network
# (tiny flavor, 64 KiB raw image), timed from the first POST to the last ACTIVE (GET
# /servers/detail?changes-since polled back to back); servers/s, create->ACTIVE p50/p90, errors
# (a server in ERROR is one, with its fault), RSS of every kumo process, load average; then all
# deleted and timed. One table: scale-out vs embedded, the ratio, PASS/FAIL of >= 50 servers/s
# for the scale-out side (bench/lib/scale_out_run.py; `python3 bench/lib/scale_out_run.py
# report OUT` re-prints it). --wait-quiet S: before each side's load, wait up to S s for the
# machine's CPU use over 3 s to be < 25%. Root (PostgreSQL runs as its system user).
# Exit: 0 target met, 1 missed (or errors), 2 setup error. Results stay in --out (printed).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck disable=SC2034 # used by blog in lib/common.sh
BENCH_TAG=scale_out.sh
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
SERVERS=500 CLIENTS=16 HOSTS=10 OUT="" WAIT_QUIET=0 ONLY="" TIMEOUT=300
while [[ $# -gt 0 ]]; do
  case "$1" in
    --servers) SERVERS=$2; shift 2;;
    --clients) CLIENTS=$2; shift 2;;
    --hosts) HOSTS=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --wait-quiet) WAIT_QUIET=$2; shift 2;;
    --only) ONLY=$2; shift 2;;
    --timeout) TIMEOUT=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
case "$ONLY" in ""|scale-out|embedded) ;; *) bdie "--only takes scale-out or embedded";; esac
[[ $(id -u) == 0 ]] || bdie "run as root: PostgreSQL is started as its system user"

# shellcheck disable=SC2119 # bench/lib's kumo_bin takes no argument
KUMO=$(kumo_bin)
[[ -x $KUMO ]] || bdie "no kumo binary at $KUMO (cargo build --release -p kumo, or set KUMO_BIN)"
OUT=${OUT:-$(mktemp -d /tmp/kumo-bench-scale-out.XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd -P)
WORK=$(mktemp -d /tmp/kumo-bench-scale-out-work.XXXXXX)
chmod 755 "$WORK" # PostgreSQL's user must reach its data dir inside
RUNNER_PID=""

# shellcheck disable=SC2317,SC2329 # run by the traps
cleanup() {
  local rc=$? pid name sid
  set +e
  if [[ -n $RUNNER_PID ]] && kill -0 "$RUNNER_PID" 2>/dev/null; then
    kill -TERM "$RUNNER_PID"; wait "$RUNNER_PID"
  fi
  # whatever the runner started and did not stop (it died unannounced): each is the leader of a
  # process group of its own (start_new_session); TERM the group, then KILL it
  if [[ -f $WORK/pids.txt ]]; then
    while read -r pid name; do
      sid=$(awk '{print $6}' "/proc/$pid/stat" 2>/dev/null)
      if [[ $sid == "$pid" ]]; then
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

blog "kumo: $KUMO; $SERVERS servers by $CLIENTS clients, $HOSTS compute hosts; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
ARGS=(run --kumo "$KUMO" --work "$WORK" --out "$OUT" --servers "$SERVERS" --clients "$CLIENTS"
  --hosts "$HOSTS" --wait-quiet "$WAIT_QUIET" --timeout "$TIMEOUT")
[[ -z $ONLY ]] || ARGS+=(--only "$ONLY")
# TMPDIR: the runner's PostgreSQL and RabbitMQ dirs go inside WORK too, removed with it
TMPDIR=$WORK python3 "$HERE/lib/scale_out_run.py" "${ARGS[@]}" &
RUNNER_PID=$!
rc=0
wait "$RUNNER_PID" || rc=$?
RUNNER_PID=""
blog "loadavg at the end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "results: $OUT"
exit "$rc"
