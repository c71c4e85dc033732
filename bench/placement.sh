#!/usr/bin/env bash
# bench/placement.sh - kumo's Placement side by side with the real placement service, in one run.
#
#   bench/placement.sh [--duration S] [--runs N] [--conc "1 8"] [--providers N] [--large N]
#                      [--only peer|kumo] [--out DIR] [--wait-quiet SECONDS]
#
# 1. the peer: ../shared/peer/placement.sh (openstack-placement 16, uWSGI 2 workers, SQLite,
#    noauth2) on a free loopback port in a fresh state dir (cached venv); started, stopped and
#    started again, so its two workers do not race each other for the fresh SQLite file;
#    --providers providers (VCPU=16, MEMORY_MB=32768; 10 of them made by the bench), then
#    ../shared/peer/bench-placement.sh (rp_list, alloc_candidates for VCPU:1,MEMORY_MB:512 at
#    microversion 1.39, at each concurrency), then stopped;
# 2. kumo: `$KUMO_BIN up` on another free port in a fresh state dir (ADMIN_PASSWORD=secret),
#    the same providers through the API with a real token, the same bench with --auth-url;
#    then --large providers in all and alloc_candidates alone with oha (p50 latency);
# 3. one table: peer vs kumo per scenario and concurrency with the ratio, PASS/FAIL against
#    issue 4's targets (alloc_candidates >= 10x the peer's rate on 100 providers; p50 < 5 ms
#    over 1000 providers, one client).
# The two servers never run at the same time. Exit: 0 all targets met (or nothing to judge),
# 1 some target missed, 2 setup error. Results (raw oha JSON, bench output, logs) stay in --out.
# Before each side the machine's CPU use is sampled for 3 s and reported; --wait-quiet S waits up
# to S seconds for it to be < 25%.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
BENCH_TAG=placement.sh
. "$HERE/lib/common.sh"

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
DURATION=10 RUNS=3 CONCS="1 8" ONLY="" OUT="" WAIT_QUIET=0 PROVIDERS=100 LARGE=1000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION=$2; shift 2;;
    --runs) RUNS=$2; shift 2;;
    --conc) CONCS=$2; shift 2;;
    --providers) PROVIDERS=$2; shift 2;;
    --large) LARGE=$2; shift 2;;
    --only) ONLY=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --wait-quiet) WAIT_QUIET=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
case "$ONLY" in ""|peer|kumo) ;; *) bdie "--only takes peer or kumo";; esac
want() { [[ -z $ONLY || $ONLY == "$1" ]]; }
(( PROVIDERS >= 10 )) || bdie "--providers must be at least 10 (bench-placement.sh makes 10)"

OUT=${OUT:-$(mktemp -d /tmp/kumo-bench-placement.XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd -P)
WORK=$(mktemp -d /tmp/kumo-bench-placement-work.XXXXXX)
PEER_STATE=$WORK/peer KUMO_STATE=$WORK/kumo
KUMO=$(kumo_bin)
PASSWORD=secret
PEER_PLACEMENT=$PEER_DIR/placement.sh
QUERY="resources=VCPU:1,MEMORY_MB:512"

placement_peer() { # placement_peer DIR start|stop [--port N]: placement.sh from an empty cwd
  local dir=$1; shift
  ( cd "$dir/cwd" && env -u PYTHONPATH "$PEER_PLACEMENT" "$@" --dir "$dir" )
}

cleanup() {
  local rc=$?
  set +e
  [[ -f $PEER_STATE/placement/placement.pid ]] && placement_peer "$PEER_STATE" stop >/dev/null 2>&1
  if [[ -f $KUMO_STATE/kumo.pid ]]; then
    "$KUMO" down --state-dir "$KUMO_STATE" >/dev/null 2>&1
    local p; p=$(cat "$KUMO_STATE/kumo.pid" 2>/dev/null)
    if [[ -n $p ]] && kill -0 "$p" 2>/dev/null; then kill -TERM "$p"; sleep 1; kill -0 "$p" 2>/dev/null && kill -KILL "$p"; fi
  fi
  [[ -n $OHA_INSTALL_PID ]] && kill "$OHA_INSTALL_PID" 2>/dev/null
  [[ -f $PEER_STATE/placement/placement.log ]] && cp "$PEER_STATE/placement/placement.log" "$OUT/peer-placement.log"
  [[ -d $KUMO_STATE/logs ]] && cp -r "$KUMO_STATE/logs" "$OUT/kumo-logs"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if want kumo; then
  [[ -x $KUMO ]] || bdie "kumo binary not found at $KUMO (cargo build --release, or set KUMO_BIN)"
fi
[[ -x $PEER_DIR/bench-placement.sh ]] || bdie "bench scripts not found at $PEER_DIR"

oha_install_start   # compiles in the background while the peer is prepared
BENCH_ARGS=(--duration "$DURATION" --runs "$RUNS" --conc "$CONCS")

run_bench() { # run_bench NAME URL [bench-placement.sh args...]; output in $OUT/NAME/
  local name=$1 url=$2; shift 2
  mkdir -p "$OUT/$name"
  wait_quiet "$WAIT_QUIET" > "$OUT/$name/cpu_busy_before.txt"
  blog "$name: bench-placement.sh against $url (machine $(cat "$OUT/$name/cpu_busy_before.txt")% busy before, loadavg $(cut -d' ' -f1-3 /proc/loadavg))"
  ( cd "$WORK" && OHA=$OHA "$PEER_DIR/bench-placement.sh" --url "$url" "${BENCH_ARGS[@]}" --out "$OUT/$name" "$@" ) \
    2>"$OUT/$name/bench.err" | tee "$OUT/$name/bench.txt" >&2
  [[ ${PIPESTATUS[0]} == 0 ]] || { tail -5 "$OUT/$name/bench.err" >&2; bdie "$name: bench-placement.sh failed"; }
}

# fixture URL TOKEN COUNT: providers besides bench-placement.sh's 10
fixture() {
  local n
  n=$(python3 "$HERE/lib/placement_fixture.py" "$1" "$2" "$3") || bdie "creating $3 providers at $1 failed"
  blog "created $n providers at $1"
}

if want peer; then
  # The venv (pip install openstack-placement + uWSGI) is kept once in the cache; each run
  # gets a fresh state dir (empty database) whose placement/venv links to it.
  VENV_HOME=$KUMO_PEER_CACHE
  if [[ ! -f $VENV_HOME/placement/venv/.kumo-peer-installed ]]; then
    blog "installing the peer placement venv into $VENV_HOME (first time only; takes minutes)"
    mkdir -p "$VENV_HOME/cwd"
    placement_peer "$VENV_HOME" start --port "$(free_port)" >&2 || bdie "the peer placement did not start once"
    placement_peer "$VENV_HOME" stop >&2 || true
  fi
  mkdir -p "$PEER_STATE/placement" "$PEER_STATE/cwd"
  ln -sfn "$VENV_HOME/placement/venv" "$PEER_STATE/placement/venv"
  PEER_PORT=$(free_port)
  blog "peer: starting placement on 127.0.0.1:$PEER_PORT"
  # Twice: on a fresh SQLite file both uWSGI workers sync the standard traits at once and
  # one of them dies with "database is locked"; the second start finds them synced.
  for _ in 1 2; do
    placement_peer "$PEER_STATE" stop >/dev/null 2>&1 || true
    placement_peer "$PEER_STATE" start --port "$PEER_PORT" 2>>"$OUT/peer-start.log" \
      || { tail -20 "$OUT/peer-start.log" >&2; bdie "the peer did not start"; }
  done
  for _ in $(seq 1 10); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' -H 'X-Auth-Token: admin' "http://127.0.0.1:$PEER_PORT/resource_providers") == 200 ]] \
      || bdie "the peer answers errors (a worker failed to load; see $OUT/peer-placement.log)"
  done
  oha_install_wait
  fixture "http://127.0.0.1:$PEER_PORT" admin $((PROVIDERS - 10))
  run_bench peer "http://127.0.0.1:$PEER_PORT" --pidfile "$PEER_STATE/placement/placement.pid"
  placement_peer "$PEER_STATE" stop >/dev/null 2>&1 || true
fi

if want kumo; then
  oha_install_wait
  mkdir -p "$KUMO_STATE"
  cat > "$KUMO_STATE/kumo.conf" <<'EOF'
# written by bench/placement.sh: cheap bcrypt for the one token the bench issues
[identity]
password_hash_rounds = 4
EOF
  KUMO_PORT=$(free_port)
  BASE="http://127.0.0.1:$KUMO_PORT"
  UP=$(printf 'ADMIN_PASSWORD=%q %q up --state-dir %q --listen 127.0.0.1:%s' "$PASSWORD" "$KUMO" "$KUMO_STATE" "$KUMO_PORT")
  blog "kumo: $UP"
  bash -c "$UP" >"$OUT/kumo-first-start.log" 2>&1 || { tail -20 "$OUT/kumo-first-start.log" >&2; bdie "kumo up failed"; }
  wait_http_200 "$BASE/placement" 30 || bdie "kumo up returned but GET $BASE/placement does not answer 200"
  TOKEN=$(curl -s -D - -o /dev/null -H 'Content-Type: application/json' \
    -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"},\"password\":\"$PASSWORD\"}}},\"scope\":{\"project\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"}}}}}" \
    "$BASE/identity/v3/auth/tokens" | awk 'tolower($1)=="x-subject-token:" {print $2}' | tr -d '\r')
  [[ -n $TOKEN ]] || bdie "could not get a token from kumo"
  fixture "$BASE/placement" "$TOKEN" $((PROVIDERS - 10))
  run_bench kumo "$BASE/placement" --pidfile "$KUMO_STATE/kumo.pid" --auth-url "$BASE/identity" --password "$PASSWORD"

  # p50 over many providers: the bench's 10 plus fixture ones up to --large.
  mkdir -p "$OUT/kumo-large"
  fixture "$BASE/placement" "$TOKEN" $((LARGE - 10))
  wait_quiet "$WAIT_QUIET" > "$OUT/kumo-large/cpu_busy_before.txt"
  H=(-H "X-Auth-Token: $TOKEN" -H "OpenStack-API-Version: placement 1.39" -H "Accept: application/json")
  "$OHA" --no-tui -z 2s -c 1 "${H[@]}" "$BASE/placement/allocation_candidates?$QUERY" >/dev/null 2>&1 || true
  for run in $(seq 1 "$RUNS"); do
    for c in $CONCS; do
      timeout $((DURATION + 30)) "$OHA" --no-tui --output-format json -z "${DURATION}s" -c "$c" \
        --wait-ongoing-requests-after-deadline "${H[@]}" "$BASE/placement/allocation_candidates?$QUERY" \
        > "$OUT/kumo-large/alloc_candidates_${LARGE}.c$c.r$run.json" 2>/dev/null || true
    done
  done
  curl -s "${H[@]}" "$BASE/placement/allocation_candidates?$QUERY" \
    | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["allocation_requests"]))' > "$OUT/kumo-large/candidates.txt"
  "$KUMO" down --state-dir "$KUMO_STATE" >/dev/null 2>&1 || true
fi

set +e
python3 "$HERE/lib/compare_placement.py" "$OUT" "$PROVIDERS" "$LARGE"
rc=$?
set -e
echo "results: $OUT"
exit "$rc"
