#!/usr/bin/env bash
# bench/identity.sh - kumo's Keystone v3 side by side with the real Keystone, in one run.
#
#   bench/identity.sh [--duration S] [--runs N] [--conc "1 8"] [--only peer|kumo] [--out DIR]
#                     [--wait-quiet SECONDS]
#
# 1. the peer: ../shared/peer/keystone.sh on a free loopback port in a fresh state dir (cached
#    venv, devstack layout: 2 uWSGI workers, memcached, bcrypt cost 4), measured with
#    ../shared/peer/bench-identity.sh (cold start, idle RSS, token issue / validate / project list
#    at each concurrency), then stopped;
# 2. kumo: `$KUMO_BIN up` on another free port in a fresh state dir whose kumo.conf sets
#    [identity] password_hash_rounds = 4 (same bcrypt cost), ADMIN_PASSWORD=secret, the same
#    bench, then `kumo down`;
# 3. one table: peer vs kumo per scenario and concurrency with the ratio, idle RSS, cold start,
#    each line marked PASS/FAIL against the targets of issue 3.
# The two servers never run at the same time. Exit: 0 all targets met (or nothing to judge),
# 1 some target missed, 2 setup error. Results (raw oha JSON, bench output, logs) stay in --out.
# Before each side the CPU use of the whole machine is sampled for 3 s and reported (a busy
# machine makes the figures meaningless); --wait-quiet S waits up to S seconds for it to be < 25%.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
BENCH_TAG=identity.sh
. "$HERE/lib/common.sh"

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
DURATION=10 RUNS=3 CONCS="1 8" ONLY="" OUT="" WAIT_QUIET=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION=$2; shift 2;;
    --runs) RUNS=$2; shift 2;;
    --conc) CONCS=$2; shift 2;;
    --only) ONLY=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --wait-quiet) WAIT_QUIET=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
case "$ONLY" in ""|peer|kumo) ;; *) bdie "--only takes peer or kumo";; esac
want() { [[ -z $ONLY || $ONLY == "$1" ]]; }

OUT=${OUT:-$(mktemp -d /tmp/kumo-bench-identity.XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd -P)
WORK=$(mktemp -d /tmp/kumo-bench-identity-work.XXXXXX)
PEER_STATE=$WORK/peer KUMO_STATE=$WORK/kumo
KUMO=$(kumo_bin)
PASSWORD=secret

cleanup() {
  local rc=$?
  set +e
  [[ -d $PEER_STATE ]] && peer_cleanup "$PEER_STATE"
  if [[ -f $KUMO_STATE/kumo.pid ]]; then
    "$KUMO" down --state-dir "$KUMO_STATE" >/dev/null 2>&1
    # kumo down failed or is not there: stop it by its pid file.
    local p; p=$(cat "$KUMO_STATE/kumo.pid" 2>/dev/null)
    if [[ -n $p ]] && kill -0 "$p" 2>/dev/null; then kill -TERM "$p"; sleep 1; kill -0 "$p" 2>/dev/null && kill -KILL "$p"; fi
  fi
  [[ -n $OHA_INSTALL_PID ]] && kill "$OHA_INSTALL_PID" 2>/dev/null
  # keep the server logs with the results
  [[ -f $PEER_STATE/keystone/keystone.log ]] && cp "$PEER_STATE/keystone/keystone.log" "$OUT/peer-keystone.log"
  [[ -d $KUMO_STATE/logs ]] && cp -r "$KUMO_STATE/logs" "$OUT/kumo-logs"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if want kumo; then
  [[ -x $KUMO ]] || bdie "kumo binary not found at $KUMO (cargo build --release, or set KUMO_BIN)"
fi
[[ -x $PEER_DIR/bench-identity.sh ]] || bdie "bench scripts not found at $PEER_DIR"

oha_install_start   # compiles in the background while the peer is prepared
BENCH_ARGS=(--duration "$DURATION" --runs "$RUNS" --conc "$CONCS" --password "$PASSWORD")

run_bench() { # run_bench NAME URL [bench-identity.sh args...]; output in $OUT/NAME/
  local name=$1 url=$2; shift 2
  mkdir -p "$OUT/$name"
  wait_quiet "$WAIT_QUIET" > "$OUT/$name/cpu_busy_before.txt"
  blog "$name: bench-identity.sh against $url (machine $(cat "$OUT/$name/cpu_busy_before.txt")% busy before, loadavg $(cut -d' ' -f1-3 /proc/loadavg))"
  # run from an empty directory: the start command inherits the cwd
  ( cd "$WORK" && "$PEER_DIR/bench-identity.sh" --url "$url" "${BENCH_ARGS[@]}" --out "$OUT/$name" "$@" ) \
    2>"$OUT/$name/bench.err" | tee "$OUT/$name/bench.txt" >&2
  [[ ${PIPESTATUS[0]} == 0 ]] || { tail -5 "$OUT/$name/bench.err" >&2; bdie "$name: bench-identity.sh failed"; }
}

if want peer; then
  ADMIN_PASSWORD=$PASSWORD peer_ensure_venv
  ensure_deb memcached memcached || true
  peer_prepare_dir "$PEER_STATE"
  PEER_PORT=$(free_port)
  export ADMIN_PASSWORD=$PASSWORD
  blog "peer: starting Keystone on 127.0.0.1:$PEER_PORT"
  peer_cmd "$PEER_STATE" start --port "$PEER_PORT" 2>"$OUT/peer-first-start.log" \
    || { tail -20 "$OUT/peer-first-start.log" >&2; bdie "the peer did not start"; }
  oha_install_wait
  run_bench peer "http://127.0.0.1:$PEER_PORT" --pidfile "$PEER_STATE/keystone/keystone.pid" \
    --start-cmd "$(peer_cmd_string "$PEER_STATE" start --port "$PEER_PORT")" \
    --stop-cmd "$(peer_cmd_string "$PEER_STATE" stop)"
  peer_cleanup "$PEER_STATE"
  unset ADMIN_PASSWORD
fi

if want kumo; then
  oha_install_wait
  mkdir -p "$KUMO_STATE"
  cat > "$KUMO_STATE/kumo.conf" <<'EOF'
# written by bench/identity.sh: the same bcrypt cost as the peer (devstack's 4)
[identity]
password_hash_rounds = 4
EOF
  KUMO_PORT=$(free_port)
  UP=$(printf 'ADMIN_PASSWORD=%q %q up --state-dir %q --listen 127.0.0.1:%s' "$PASSWORD" "$KUMO" "$KUMO_STATE" "$KUMO_PORT")
  DOWN=$(printf '%q down --state-dir %q' "$KUMO" "$KUMO_STATE")
  blog "kumo: $UP"
  bash -c "$UP" >"$OUT/kumo-first-start.log" 2>&1 || { tail -20 "$OUT/kumo-first-start.log" >&2; bdie "kumo up failed"; }
  wait_http_200 "http://127.0.0.1:$KUMO_PORT/v3" 30 \
    || { tail -20 "$OUT/kumo-first-start.log" >&2; bdie "kumo up returned but GET http://127.0.0.1:$KUMO_PORT/v3 does not answer 200"; }
  # --pidfile (not --pid): the bench restarts the server for the cold start, and re-reads the file.
  run_bench kumo "http://127.0.0.1:$KUMO_PORT" --pidfile "$KUMO_STATE/kumo.pid" --start-cmd "$UP" --stop-cmd "$DOWN"
  bash -c "$DOWN" >/dev/null 2>&1 || true
fi

set +e
python3 "$HERE/lib/compare_identity.py" "$OUT"
rc=$?
set -e
echo "results: $OUT"
exit "$rc"
