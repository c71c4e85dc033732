#!/usr/bin/env bash
# bench/guests.sh - real guests: kumo's QEMU driver against a QEMU started by hand, in one run.
#
#   bench/guests.sh [--runs N] [--out DIR] [--wait-quiet SECONDS] [--timeout SECONDS] [--hold K]
#
# kumo: `$KUMO_BIN up` on a free port in a fresh state dir with `[DEFAULT] compute_driver = qemu`
# (TCG unless KVM really works), the kumo-tiny image ($KUMO_TINY_IMAGE, else
# tools/guest-image/build.sh's cached output) uploaded, flavor bench-guest = 1 vCPU / 192 MiB /
# 1 GiB (m1.nano). bench/lib/guests_run.py then boots one warm-up guest (fills the base-image
# cache: "cold base") and N rounds (default 10) of: one kumo guest (POST /servers, GET every
# 20 ms until ACTIVE, os-getConsoleOutput every 100 ms until "kumo-tiny: ready", RSS/PSS, DELETE
# and wait until its QEMU is gone), then one QEMU started by hand with kumo's own command line
# (taken from the warm-up's /proc/PID/cmdline; own dir and overlay on the same base file; not
# daemonized, not paused) timed from exec to the marker in its serial file. Never two guests at
# once. Then --hold K guests (default 3; 0 skips) created together and kept until all show the
# marker: kumo's RSS with them against before, per guest. Targets (issue "Real guests"):
# create -> ACTIVE p50 < 1.5 s, create -> marker p50 < 6 s, kumo's overhead (its create -> marker p50 minus the hand-started exec -> marker p50) < 300 ms;
# QEMU RSS/PSS and kumo's RSS growth per guest are reported.
# Table on stdout and in OUT/table.txt; OUT/summary.json, OUT/runs.json, the command lines,
# kumo's logs. Exit: 0 all targets met, 1 a target missed or a run failed, 2 setup error.
# Cleanup (also on failure or Ctrl-C): every QEMU this bench started is killed by pid (kumo's
# from instances/<uuid>/qemu.pid after checking its command line holds the uuid; hand-started
# ones from WORK/hand-pids after checking their command line holds their dir), kumo stopped
# (`kumo down`, then by pid), the temp dir removed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck disable=SC2034 # used by blog in lib/common.sh
BENCH_TAG=guests.sh
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2; }
RUNS=10 OUT="" WAIT_QUIET=0 TIMEOUT=120 HOLD=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --wait-quiet) WAIT_QUIET=$2; shift 2;;
    --timeout) TIMEOUT=$2; shift 2;;
    --hold) HOLD=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || bdie "--runs takes a positive number"

OUT=${OUT:-$(mktemp -d /tmp/kumo-bench-guests.XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd -P)
WORK=$(mktemp -d /tmp/kumo-bench-guests-work.XXXXXX)
KUMO_STATE=$WORK/kumo
# shellcheck disable=SC2119
KUMO=$(kumo_bin)
PASSWORD=secret

# cmdline_has PID TEXT: the process runs and its command line contains TEXT.
# shellcheck disable=SC2317,SC2329 # run by the EXIT trap
cmdline_has() {
  [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

# kill_guests: every QEMU of this run, by pid (checked against its command line first).
# shellcheck disable=SC2317,SC2329 # run by the EXIT trap
kill_guests() {
  local f pid tag uuid killed=()
  if [[ -d $KUMO_STATE/instances ]]; then
    for f in "$KUMO_STATE"/instances/*/qemu.pid; do
      [[ -f $f ]] || continue
      uuid=$(basename "$(dirname "$f")")
      pid=$(head -c 32 "$f" | tr -dc 0-9)
      if [[ -n $pid ]] && cmdline_has "$pid" "$uuid"; then kill -KILL "$pid" 2>/dev/null && killed+=("$pid"); fi
    done
  fi
  if [[ -f $WORK/hand-pids ]]; then
    while read -r pid tag; do
      if [[ $pid =~ ^[0-9]+$ && -n $tag ]] && cmdline_has "$pid" "$tag"; then
        kill -KILL "$pid" 2>/dev/null && killed+=("$pid")
      fi
    done < "$WORK/hand-pids"
  fi
  (( ${#killed[@]} == 0 )) || blog "killed leftover QEMU processes: ${killed[*]}"
  for pid in "${killed[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  return 0
}

# shellcheck disable=SC2317,SC2329 # run by the EXIT trap
kumo_stop() {
  [[ -f $KUMO_STATE/kumo.pid ]] || return 0
  local p; p=$(cat "$KUMO_STATE/kumo.pid" 2>/dev/null || true)
  "$KUMO" down --state-dir "$KUMO_STATE" >/dev/null 2>&1 || true
  if [[ -n $p ]] && kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p"; sleep 1; kill -0 "$p" 2>/dev/null && kill -KILL "$p"
  fi
  return 0
}

# shellcheck disable=SC2317,SC2329 # run by the EXIT trap
cleanup() {
  local rc=$?
  set +e
  [[ -n ${RUN_PID:-} ]] && kill -0 "$RUN_PID" 2>/dev/null && { kill -TERM "$RUN_PID"; wait "$RUN_PID"; }
  kill_guests
  kumo_stop
  kill_guests  # anything that started while kumo was stopping
  [[ -d $KUMO_STATE/logs ]] && cp -r "$KUMO_STATE/logs" "$OUT/kumo-logs"
  for d in "$WORK"/hand-*/; do
    [[ -f $d/qemu.err && -s $d/qemu.err ]] && cp "$d/qemu.err" "$OUT/$(basename "$d").qemu.err"
  done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -x $KUMO ]] || bdie "kumo binary not found at $KUMO (cargo build --release -p kumo, or set KUMO_BIN)"
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-img >/dev/null; then
  bdie "QEMU is not installed (apt-get install qemu-system-x86 qemu-utils)"
fi
python3 -c 'import requests' 2>/dev/null || bdie "python3 requests is missing (apt-get install python3-requests)"

IMAGE=${KUMO_TINY_IMAGE:-}
if [[ -z $IMAGE || ! -f $IMAGE ]]; then
  blog "building (or reusing) kumo-tiny: tools/guest-image/build.sh"
  IMAGE=$(bash "$REPO_ROOT/tools/guest-image/build.sh" 2>"$OUT/image-build.log" | tail -1) \
    || { tail -20 "$OUT/image-build.log" >&2; bdie "tools/guest-image/build.sh failed"; }
  [[ -f $IMAGE ]] || bdie "tools/guest-image/build.sh printed no image path"
fi
blog "image: $IMAGE"

mkdir -p "$KUMO_STATE"
cat > "$KUMO_STATE/kumo.conf" <<EOF
# written by bench/guests.sh
[DEFAULT]
compute_driver = qemu

[identity]
password_hash_rounds = 4

[quota]
instances = -1
cores = -1
ram = -1
EOF
KUMO_PORT=$(free_port)
BASE=http://127.0.0.1:$KUMO_PORT
blog "kumo: $KUMO up --state-dir $KUMO_STATE --listen 127.0.0.1:$KUMO_PORT"
ADMIN_PASSWORD=$PASSWORD "$KUMO" up --state-dir "$KUMO_STATE" --listen "127.0.0.1:$KUMO_PORT" \
  >"$OUT/kumo-start.log" 2>&1 || { tail -20 "$OUT/kumo-start.log" >&2; bdie "kumo up failed"; }
wait_http_200 "$BASE/identity/v3" 30 || bdie "$BASE/identity/v3 does not answer 200"
grep -rh 'QEMU accelerator chosen' "$KUMO_STATE/logs" "$OUT/kumo-start.log" 2>/dev/null | head -1 > "$OUT/accel.txt" || true

busy=$(wait_quiet "$WAIT_QUIET")
echo "$busy" > "$OUT/cpu_busy_before.txt"
blog "machine ${busy}% busy before the runs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
(( busy < 25 )) || blog "WARNING: the machine is busy (${busy}% CPU): times are noisy"

set +e
python3 "$HERE/lib/guests_run.py" run --base "$BASE" --password "$PASSWORD" --image "$IMAGE" \
  --state-dir "$KUMO_STATE" --work "$WORK" --out "$OUT" --runs "$RUNS" --timeout "$TIMEOUT" --hold "$HOLD" &
RUN_PID=$!
wait "$RUN_PID"
rc=$?
RUN_PID=""
set -e
echo "machine CPU use before the runs: ${busy}%" >> "$OUT/table.txt"
echo "results: $OUT"
exit "$rc"
