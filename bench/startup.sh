#!/usr/bin/env bash
# bench/startup.sh - how fast `kumo up` brings every API up, and kumo's idle memory.
#
#   bench/startup.sh [--runs N] [--warmup N] [--out DIR]
#
# Times `$KUMO_BIN up --state-dir DIR --listen 127.0.0.1:PORT` (KUMO_BIN defaults to
# target/release/kumo of this tree; build it first) followed by a check that GET /v3 and
# GET /identity/v3 answer 200 (KUMO_PROBE_PATHS="/v3 /identity/v3" by default), i.e. the figure
# ends when the API really answers, whatever `kumo up` claims. Two cases, N runs each (default 10):
#   fresh  - a new, empty state dir every run (first start: database, keys, bootstrap)
#   reused - the same state dir every run (a restart: `kumo down` before each run)
# With hyperfine (Debian package, installed if missing) it reports mean ± sd, min, max, median;
# without it, a loop timed with date +%s%N. Then, for each case, kumo is started once more and
# left idle 2 s: idle RSS = VmRSS of the kumo process from /proc/PID/status (and the summed RSS of
# its process tree, in case it forks). kumo.conf sets [identity] password_hash_rounds = 4, like
# bench/identity.sh. Targets (issue 3): up < 3 s, idle RSS < 60 MB. Exit 1 if a target is missed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
BENCH_TAG=startup.sh
. "$HERE/lib/common.sh"

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
RUNS=10 WARMUP=1 OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2;;
    --warmup) WARMUP=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
KUMO=$(kumo_bin)
[[ -x $KUMO ]] || bdie "kumo binary not found at $KUMO (cargo build --release, or set KUMO_BIN)"
OUT=${OUT:-$(mktemp -d /tmp/kumo-bench-startup.XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd -P)
WORK=$(mktemp -d /tmp/kumo-bench-startup-work.XXXXXX)
PORT=$(free_port)
export ADMIN_PASSWORD=secret

stop_kumo() { # stop_kumo STATE: kumo down, then by pid file if it is still there
  local st=$1 p
  [[ -f $st/kumo.pid ]] || return 0
  "$KUMO" down --state-dir "$st" >/dev/null 2>&1 || true
  p=$(cat "$st/kumo.pid" 2>/dev/null || true)
  if [[ -n $p ]] && kill -0 "$p" 2>/dev/null; then kill -TERM "$p"; sleep 1; kill -0 "$p" 2>/dev/null && kill -KILL "$p"; fi
  rm -f "$st/kumo.pid"
  return 0
}
cleanup() {
  local rc=$?
  set +e
  for st in "$WORK"/fresh "$WORK"/reused; do [[ -d $st ]] && stop_kumo "$st"; done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

write_conf() { mkdir -p "$1"; printf '[identity]\npassword_hash_rounds = 4\n' > "$1/kumo.conf"; }
# The timed command: up, then every API root must answer 200 (KUMO_PROBE_PATHS, default the
# identity roots; add a service's root here when kumo serves it).
PROBES=${KUMO_PROBE_PATHS:-/v3 /identity/v3}
UP_CMD=$(printf '%q up --state-dir %%s --listen 127.0.0.1:%s >/dev/null' "$KUMO" "$PORT")
for path in $PROBES; do UP_CMD+=" && curl -fsS -o /dev/null http://127.0.0.1:$PORT$path"; done
# Helper script for hyperfine --prepare (runs before every timed run, not timed).
cat > "$WORK/prepare.sh" <<EOF
#!/usr/bin/env bash
# prepare.sh MODE STATE: stop kumo; for "fresh" also empty the state dir.
st=\$2
if [[ -f \$st/kumo.pid ]]; then
  $(printf '%q' "$KUMO") down --state-dir "\$st" >/dev/null 2>&1
  p=\$(cat "\$st/kumo.pid" 2>/dev/null); [[ -n \$p ]] && kill -0 "\$p" 2>/dev/null && { kill -TERM "\$p"; sleep 1; }
  rm -f "\$st/kumo.pid"
fi
if [[ \$1 == fresh ]]; then rm -rf "\$st"; mkdir -p "\$st"; printf '[identity]\npassword_hash_rounds = 4\n' > "\$st/kumo.conf"; fi
# wait until the port is free again
for i in \$(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null || exit 0; sleep 0.05; done
echo "port $PORT still busy" >&2; exit 1
EOF
chmod +x "$WORK/prepare.sh"

ensure_deb hyperfine hyperfine || blog "no hyperfine: timing with a date +%s%N loop"

# time_case MODE: writes $OUT/MODE.json (hyperfine) or $OUT/MODE.times (ms per run)
time_case() {
  local mode=$1 st=$WORK/$1
  write_conf "$st"
  # shellcheck disable=SC2059
  local cmd; cmd=$(printf "$UP_CMD" "$(printf '%q' "$st")")
  blog "$mode: $RUNS runs of: $cmd"
  if [[ $mode == reused ]]; then   # the state dir must exist before the first timed run
    "$WORK/prepare.sh" "$mode" "$st"; bash -c "$cmd" >&2 || bdie "kumo up ($mode, first) failed"
  fi
  if command -v hyperfine >/dev/null 2>&1; then
    hyperfine --style basic --runs "$RUNS" --warmup "$WARMUP" --shell bash \
      --prepare "$WORK/prepare.sh $mode $st" --cleanup "$WORK/prepare.sh $mode $st" \
      --export-json "$OUT/$mode.json" -n "kumo up ($mode state dir)" "$cmd" >&2 \
      || bdie "$mode: kumo up or a probe of $PROBES failed (run the command above by hand to see why)"
  else
    local i t0 t1
    : > "$OUT/$mode.times"
    for i in $(seq 1 $(( WARMUP + RUNS ))); do
      "$WORK/prepare.sh" "$mode" "$st"
      t0=$(date +%s%N)
      bash -c "$cmd" || bdie "$mode run $i failed"
      t1=$(date +%s%N)
      (( i > WARMUP )) && echo $(( (t1 - t0) / 1000000 )) >> "$OUT/$mode.times"
    done
  fi
  "$WORK/prepare.sh" "$mode" "$st"
}
# idle_rss MODE: start once more, wait 2 s, read the memory; writes $OUT/MODE.rss
idle_rss() {
  local mode=$1 st=$WORK/$1
  "$WORK/prepare.sh" "$mode" "$st"
  # shellcheck disable=SC2059
  bash -c "$(printf "$UP_CMD" "$(printf '%q' "$st")")" || bdie "kumo up ($mode) failed"
  sleep 2
  local pid; pid=$(cat "$st/kumo.pid")
  echo "$(rss_kib "$pid") $(rss_tree_kib "$pid")" > "$OUT/$mode.rss"
  stop_kumo "$st"
}

echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg) nproc=$(nproc)" > "$OUT/env.txt"
time_case fresh
time_case reused
idle_rss fresh
idle_rss reused
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/env.txt"

set +e
python3 - "$OUT" <<'EOF'
import json, os, statistics as st, sys
out = sys.argv[1]
UP_MAX_MS, RSS_MAX_MB = 3000, 60.0
failed = False
print()
print("== kumo startup: `kumo up` until GET " + os.environ.get("KUMO_PROBE_PATHS", "/v3 /identity/v3") + " answer 200")
print(f"{'case':<8}{'runs':>5}{'mean ms':>10}{'sd':>8}{'median':>9}{'min':>8}{'max':>8}{'target':>9}  result")
for mode in ("fresh", "reused"):
    times = None
    if os.path.exists(os.path.join(out, mode + ".json")):
        times = [t * 1000 for t in json.load(open(os.path.join(out, mode + ".json")))["results"][0]["times"]]
    elif os.path.exists(os.path.join(out, mode + ".times")):
        times = [float(x) for x in open(os.path.join(out, mode + ".times")).read().split()]
    if not times:
        print(f"{mode:<8} no data  FAIL"); failed = True; continue
    mean = st.mean(times); sd = st.stdev(times) if len(times) > 1 else 0.0
    ok = max(times) < UP_MAX_MS
    failed |= not ok
    print(f"{mode:<8}{len(times):>5}{mean:>10.0f}{sd:>8.0f}{st.median(times):>9.0f}{min(times):>8.0f}{max(times):>8.0f}{'<%d' % UP_MAX_MS:>9}  {'PASS' if ok else 'FAIL'} (every run)")
print()
print(f"{'idle, 2 s after up':<22}{'VmRSS MiB':>10}{'MB':>8}{'tree MiB':>10}{'target':>9}  result")
for mode in ("fresh", "reused"):
    try:
        kib, tree = (int(x) for x in open(os.path.join(out, mode + ".rss")).read().split())
    except (OSError, ValueError):
        print(f"{mode:<22} no data  FAIL"); failed = True; continue
    mb = max(kib, tree) * 1024 / 1e6
    ok = mb < RSS_MAX_MB
    failed |= not ok
    print(f"{mode + ' state dir':<22}{kib/1024:>10.1f}{kib*1024/1e6:>8.1f}{tree/1024:>10.1f}{'<%g MB' % RSS_MAX_MB:>9}  {'PASS' if ok else 'FAIL'}")
print("  " + " ".join(open(os.path.join(out, "env.txt")).read().split()))
print("RESULT: " + ("FAIL (some target missed)" if failed else "PASS"))
sys.exit(1 if failed else 0)
EOF
rc=$?
set -e
echo "results: $OUT"
exit "$rc"
