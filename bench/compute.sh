#!/usr/bin/env bash
# bench/compute.sh - kumo's compute API side by side with the real Nova (fake driver), in one run.
#
#   bench/compute.sh [--runs N] [--only peer|kumo] [--out DIR] [--wait-quiet SECONDS]
#                    [--seq N] [--count N] [--concurrency C] [--large N] [--fake-hosts N]
#
# Both sides go through ../shared/peer/bench-compute.sh (plain HTTP, microversion 2.37, servers
# with networks "none"): (a) --seq servers (20) created one after the other, create -> ACTIVE
# timed; (b) --count servers (100) by --concurrency clients (16); (d) GET /servers/detail with
# them present; (c) delete all; (e) RSS of the control plane (idle, peak during (b), with the
# servers). Image "tiny-raw" (64 KiB raw), flavor "tiny" (1 vCPU, 64 MiB, 1 GiB).
#
# 1. the peer: ../shared/peer/nova.sh (Nova 34 with fake.FakeDriverWithoutFakeNodes: nova-api
#    under uWSGI, conductor, scheduler, compute; its own placement on a private MariaDB, a private
#    RabbitMQ node, Keystone and Glance from keystone.sh/glance.sh, a Neutron stub) in a fresh dir
#    whose venvs link to the cached ones ($KUMO_PEER_CACHE/{nova,keystone,glance}), every port
#    free on loopback; Debian packages installed when missing (tests/lib/common.sh, list
#    peer_compute). RSS = every process tree of its pids.txt. Stopped by pid after its run.
# 2. kumo: `$KUMO_BIN up` on a free port in a fresh state dir (ADMIN_PASSWORD=secret, bcrypt
#    cost 4, `[fake] hosts = --fake-hosts`), image and flavor made through the APIs
#    (bench/lib/compute_fixture.py; the flavor with POST /compute/v2.1/flavors), the same bench
#    with --pids kumo=PID; then --large servers (1000) created by the same clients and deleted
#    (bench-compute.sh --seq 0 --count N), with kumo's RSS.
# 3. one table with ratios and PASS/FAIL against the targets (bench/lib/compare_compute.py).
# The two sides never run at the same time. Exit: 0 all targets met (or only the peer ran),
# 1 some target missed or a phase had errors, 2 setup error (e.g. kumo has no compute endpoint).
# Results (bench output, per-run JSON, setup times, logs) stay in --out.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck disable=SC2034 # used by blog in lib/common.sh
BENCH_TAG=compute.sh
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
RUNS=1 ONLY="" OUT="" WAIT_QUIET=0 SEQ=20 COUNT=100 CONC=16 LARGE=1000 FAKE_HOSTS=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2;;
    --only) ONLY=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --wait-quiet) WAIT_QUIET=$2; shift 2;;
    --seq) SEQ=$2; shift 2;;
    --count) COUNT=$2; shift 2;;
    --concurrency) CONC=$2; shift 2;;
    --large) LARGE=$2; shift 2;;
    --fake-hosts) FAKE_HOSTS=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
case "$ONLY" in ""|peer|kumo) ;; *) bdie "--only takes peer or kumo";; esac
want() { [[ -z $ONLY || $ONLY == "$1" ]]; }

OUT=${OUT:-$(mktemp -d /tmp/kumo-bench-compute.XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd -P)
WORK=$(mktemp -d /tmp/kumo-bench-compute-work.XXXXXX)
PEER_STATE=$WORK/peer KUMO_STATE=$WORK/kumo
# shellcheck disable=SC2119 # bench/lib's kumo_bin takes no argument (tests/lib's, sourced in a subshell below, does)
KUMO=$(kumo_bin)
PASSWORD=secret
NOVA_SH=$PEER_DIR/nova.sh
BENCH=$PEER_DIR/bench-compute.sh
BENCH_ARGS=(--flavor tiny --runs "$RUNS" --seq "$SEQ" --count "$COUNT" --concurrency "$CONC")
KUMO_FAILED=""

nova_peer() { # nova_peer start|stop|status: nova.sh on PEER_STATE, from an empty cwd
  ( cd "$PEER_STATE/cwd" && env -u PYTHONPATH "$NOVA_SH" "$@" --dir "$PEER_STATE" )
}

# peer_leftovers: the pids of pids.txt (the peer's process-tree roots) still alive.
peer_leftovers() {
  [[ -f $PEER_STATE/pids.txt ]] || return 0
  local name pid
  while read -r name pid; do
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$name=$pid"
  done < "$PEER_STATE/pids.txt"
  return 0
}

peer_stop() {
  [[ -d $PEER_STATE/nova/run || -d $PEER_STATE/keystone || -d $PEER_STATE/glance ]] || return 0
  nova_peer stop >>"$OUT/peer-stop.log" 2>&1 || true
  local left p
  left=$(peer_leftovers)
  if [[ -n $left ]]; then
    blog "peer: still alive after nova.sh stop: $left; killing them by pid"
    for p in $left; do
      p=${p#*=}
      kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    done
    sleep 2
    for p in $left; do
      p=${p#*=}
      kill -0 "$p" 2>/dev/null && { kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true; }
    done
  fi
  return 0
}

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
  peer_stop
  kumo_stop
  if [[ -d $PEER_STATE/nova/log ]]; then
    mkdir -p "$OUT/peer-logs"
    cp "$PEER_STATE"/nova/log/*.log "$PEER_STATE"/nova/log/*.err "$OUT/peer-logs/" 2>/dev/null
    [[ -f $PEER_STATE/keystone/keystone.log ]] && cp "$PEER_STATE/keystone/keystone.log" "$OUT/peer-logs/"
    [[ -f $PEER_STATE/glance/glance.log ]] && cp "$PEER_STATE/glance/glance.log" "$OUT/peer-logs/"
  fi
  [[ -d $KUMO_STATE/logs ]] && cp -r "$KUMO_STATE/logs" "$OUT/kumo-logs"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -x $BENCH ]] || bdie "bench-compute.sh not found at $PEER_DIR"
if want kumo; then
  [[ -x $KUMO ]] || bdie "kumo binary not found at $KUMO (cargo build --release, or set KUMO_BIN)"
fi

# run_bench NAME [bench-compute.sh args...]: the OS_* environment must be set by the caller.
# Output in OUT/NAME/ (bench.txt, bench.err, run-N.json, summary.json). Returns its status
# (1 = some phase had errors: the figures are kept and the table marks them).
run_bench() {
  local name=$1; shift
  local d=$OUT/$name rc=0
  mkdir -p "$d"
  wait_quiet "$WAIT_QUIET" > "$d/cpu_busy_before.txt"
  blog "$name: bench-compute.sh (machine $(cat "$d/cpu_busy_before.txt")% busy before, loadavg $(cut -d' ' -f1-3 /proc/loadavg))"
  ( cd "$WORK" && "$BENCH" --out "$d" --label "$name" "$@" ) 2>"$d/bench.err" | tee "$d/bench.txt" >&2 \
    || rc=${PIPESTATUS[0]}
  if (( rc != 0 )); then
    tail -8 "$d/bench.err" >&2
    blog "$name: bench-compute.sh exited $rc"
  fi
  return "$rc"
}

# elapsed T0: seconds since T0 (from now), one decimal
now() { date +%s.%N; }
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN{printf "%.1f", e-s}'; }

if want peer; then
  mkdir -p "$OUT/peer"
  SETUP=$OUT/peer/setup.txt; : > "$SETUP"
  t0=$(now)
  # the project's package helper, in a subshell: tests/lib/common.sh has its own kumo_bin
  ( # shellcheck source=tests/lib/common.sh
    . "$REPO_ROOT/tests/lib/common.sh"; KUMO_LOG_TAG=compute.sh kumo_ensure_packages peer_compute ) \
    || bdie "Debian packages for the peer are missing (tests/lib/common.sh, list peer_compute)"
  echo "debian packages (install when missing)  $(elapsed "$t0") s" | tee -a "$SETUP" >&2
  t0=$(now); cold=no
  { peer_venv_ready && [[ -f $KUMO_PEER_CACHE/glance/venv/.kumo-peer-installed ]] && peer_nova_venvs_ready; } || cold=yes
  peer_ensure_venv
  peer_glance_ensure_venv
  peer_nova_ensure_venvs
  echo "venvs (cold=$cold)                       $(elapsed "$t0") s" | tee -a "$SETUP" >&2
  peer_nova_prepare_dir "$PEER_STATE"
  RABBIT=$(free_port_block 3) || bdie "no 3 consecutive free ports for RabbitMQ"
  PEER_ENV=(ADMIN_PASSWORD="$PASSWORD" NOVA_VERSION="$PEER_NOVA_VERSION" PLACEMENT_VERSION="$PEER_PLACEMENT_VERSION"
    NOVA_PORT="$(free_port)" KEYSTONE_PORT="$(free_port)" GLANCE_PORT="$(free_port)" PLACEMENT_PORT="$(free_port)"
    NEUTRON_STUB_PORT="$(free_port)" NOVA_RABBIT_PORT="$RABBIT" NOVA_MYSQL_PORT="$(free_port)")
  printf '%s\n' "${PEER_ENV[@]}" | grep -v PASSWORD > "$OUT/peer/ports.txt"
  blog "peer: nova.sh start --dir $PEER_STATE ($(tr '\n' ' ' < "$OUT/peer/ports.txt"))"
  t0=$(now)
  ( export "${PEER_ENV[@]}"; nova_peer start ) >"$OUT/peer-start.log" 2>&1 \
    || { tail -25 "$OUT/peer-start.log" >&2; bdie "the peer did not start (log: $OUT/peer-start.log)"; }
  echo "nova.sh start (venvs cached)             $(elapsed "$t0") s" | tee -a "$SETUP" >&2
  cp "$PEER_STATE/setup-times.txt" "$OUT/peer/setup-times.txt"
  cp "$PEER_STATE/pids.txt" "$OUT/peer/pids.txt"
  rc=0
  ( for v in $(compgen -e); do if [[ $v == OS_* ]]; then unset "$v"; fi; done
    # shellcheck disable=SC1091 # written by nova.sh
    . "$PEER_STATE/openrc"
    run_bench peer "${BENCH_ARGS[@]}" --image "$(cat "$PEER_STATE/image-id")" --pid-file "$PEER_STATE/pids.txt"
  ) || rc=$?
  (( rc <= 1 )) || bdie "peer: bench-compute.sh failed (see $OUT/peer/bench.err)"
  peer_stop
  left=$(peer_leftovers)
  [[ -z $left ]] || blog "peer: WARNING processes left after stop: $left"
  blog "peer: stopped"
fi

if want kumo; then
  mkdir -p "$KUMO_STATE" "$OUT/kumo"
  cat > "$KUMO_STATE/kumo.conf" <<EOF
# written by bench/compute.sh
[identity]
password_hash_rounds = 4

[fake]
hosts = $FAKE_HOSTS

[quota]
# as the peer's nova.conf: the bench keeps 100 (1000) servers of one project alive
instances = -1
cores = -1
ram = -1
EOF
  KUMO_PORT=$(free_port)
  BASE=http://127.0.0.1:$KUMO_PORT
  blog "kumo: $KUMO up --state-dir $KUMO_STATE --listen 127.0.0.1:$KUMO_PORT"
  t0=$(now)
  ADMIN_PASSWORD=$PASSWORD "$KUMO" up --state-dir "$KUMO_STATE" --listen "127.0.0.1:$KUMO_PORT" \
    >"$OUT/kumo-start.log" 2>&1 || { tail -20 "$OUT/kumo-start.log" >&2; bdie "kumo up failed"; }
  wait_http_200 "$BASE/identity/v3" 30 || bdie "$BASE/identity/v3 does not answer 200"
  echo "kumo up (fresh state dir)  $(elapsed "$t0") s" > "$OUT/kumo/setup.txt"
  KUMO_PID=$(cat "$KUMO_STATE/kumo.pid")
  set +e
  IMAGE=$(python3 "$HERE/lib/compute_fixture.py" "$BASE" "$PASSWORD" tiny-raw tiny 2>"$OUT/kumo/fixture.err")
  frc=$?
  set -e
  cat "$OUT/kumo/fixture.err" >&2
  if (( frc == 3 )); then
    KUMO_FAILED="kumo has no compute endpoint in its catalog"
  elif (( frc != 0 )) || [[ -z $IMAGE ]]; then
    KUMO_FAILED="kumo: image/flavor setup failed (see $OUT/kumo/fixture.err)"
  fi
  if [[ -z $KUMO_FAILED ]]; then
    export OS_AUTH_URL=$BASE/identity/v3 OS_USERNAME=admin OS_PASSWORD=$PASSWORD OS_PROJECT_NAME=admin \
      OS_USER_DOMAIN_ID=default OS_PROJECT_DOMAIN_ID=default OS_INTERFACE=public
    unset OS_REGION_NAME OS_CLOUD OS_CLIENT_CONFIG_FILE
    rc=0
    run_bench kumo "${BENCH_ARGS[@]}" --image "$IMAGE" --pids "kumo=$KUMO_PID" || rc=$?
    (( rc <= 1 )) || KUMO_FAILED="kumo: bench-compute.sh failed (see $OUT/kumo/bench.err)"
    if [[ -z $KUMO_FAILED ]] && (( LARGE > 0 )); then
      # kumo alone: LARGE servers by the same clients, then all deleted; RSS with them present
      rc=0
      run_bench kumo-large --flavor tiny --image "$IMAGE" --runs 1 --seq 0 --count "$LARGE" \
        --concurrency "$CONC" --pids "kumo=$KUMO_PID" --deadline 1800 || rc=$?
      (( rc <= 1 )) || KUMO_FAILED="kumo: bench-compute.sh --count $LARGE failed (see $OUT/kumo-large/bench.err)"
    fi
  fi
  [[ -z $KUMO_FAILED ]] || { blog "ERROR: $KUMO_FAILED"; echo "$KUMO_FAILED" > "$OUT/kumo/ERROR"; }
  kumo_stop
fi

set +e
python3 "$HERE/lib/compare_compute.py" "$OUT"
rc=$?
set -e
echo "results: $OUT"
[[ -z $KUMO_FAILED ]] || exit 2
exit "$rc"
