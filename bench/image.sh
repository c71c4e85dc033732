#!/usr/bin/env bash
# bench/image.sh - kumo's Glance v2 side by side with the real Glance, in one run.
#
#   bench/image.sh [--duration S] [--runs N] [--conc "1 8"] [--only peer|kumo] [--out DIR]
#                  [--wait-quiet SECONDS] [--size-gib G] [--list-images N]
#
# For each side (the peer first, then kumo; never both at once):
#   1. ../shared/peer/bench-image.sh: 10 x (create, upload 10 MiB, download + byte check) per
#      run, then GET /v2/images under oha at each concurrency;
#   2. list: N images (default 1000) registered, then GET /v2/images?limit=20 under oha (c=1);
#   3. transfer: a G GiB (default 1) file uploaded and downloaded (bench/lib/image_transfer.py),
#      interleaved with `cp` on the same disk: of the uploaded file (against the upload) and of the
#      image's stored data file (against the download); every run starts after `sync` and stops
#      its clock when the copy is flushed (fsync), on every side; the server's RSS is sampled.
# The peer: ../shared/peer/glance.sh (Glance 33, uWSGI 2 workers, file store, no keystone) on a
# free loopback port in a fresh dir whose glance/venv links to the cached venv
# ($KUMO_PEER_CACHE/glance/venv, made on first use). kumo: `$KUMO_BIN up` on a free port in a fresh
# state dir, ADMIN_PASSWORD=secret, bcrypt cost 4 (as the identity bench), real tokens.
# Then one table with ratios and PASS/FAIL against issue 4's targets (bench/lib/compare_image.py).
# Exit: 0 all targets met, 1 some target missed, 2 setup error. Results stay in --out.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
BENCH_TAG=image.sh
. "$HERE/lib/common.sh"

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
DURATION=10 RUNS=3 CONCS="1 8" ONLY="" OUT="" WAIT_QUIET=0 SIZE_GIB=1 LIST_IMAGES=1000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION=$2; shift 2;;
    --runs) RUNS=$2; shift 2;;
    --conc) CONCS=$2; shift 2;;
    --only) ONLY=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --wait-quiet) WAIT_QUIET=$2; shift 2;;
    --size-gib) SIZE_GIB=$2; shift 2;;
    --list-images) LIST_IMAGES=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
case "$ONLY" in ""|peer|kumo) ;; *) bdie "--only takes peer or kumo";; esac
want() { [[ -z $ONLY || $ONLY == "$1" ]]; }

OUT=${OUT:-$(mktemp -d /tmp/kumo-bench-image.XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd -P)
# The work dir holds the big files, cp's copies and both servers' stores: one disk for all.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kumo-bench-image-work.XXXXXX")
PEER_STATE=$WORK/peer KUMO_STATE=$WORK/kumo
KUMO=$(kumo_bin)
PASSWORD=secret
GLANCE_SH=$PEER_DIR/glance.sh

cleanup() {
  local rc=$?
  set +e
  [[ -f $PEER_STATE/glance/glance.pid ]] && (cd "$WORK" && "$GLANCE_SH" stop --dir "$PEER_STATE") >/dev/null 2>&1
  if [[ -f $KUMO_STATE/kumo.pid ]]; then
    "$KUMO" down --state-dir "$KUMO_STATE" >/dev/null 2>&1
    local p; p=$(cat "$KUMO_STATE/kumo.pid" 2>/dev/null)
    if [[ -n $p ]] && kill -0 "$p" 2>/dev/null; then kill -TERM "$p"; sleep 1; kill -0 "$p" 2>/dev/null && kill -KILL "$p"; fi
  fi
  [[ -n $OHA_INSTALL_PID ]] && kill "$OHA_INSTALL_PID" 2>/dev/null
  [[ -f $PEER_STATE/glance/glance.log ]] && cp "$PEER_STATE/glance/glance.log" "$OUT/peer-glance.log"
  [[ -d $KUMO_STATE/logs ]] && cp -r "$KUMO_STATE/logs" "$OUT/kumo-logs"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -x $PEER_DIR/bench-image.sh ]] || bdie "bench scripts not found at $PEER_DIR"
if want kumo; then
  [[ -x $KUMO ]] || bdie "kumo binary not found at $KUMO (cargo build --release, or set KUMO_BIN)"
fi
oha_install_start

# side NAME URL TOKEN PIDFILE STOREDIR [bench-image.sh auth args...]
run_side() {
  local name=$1 url=$2 token=$3 pidfile=$4 storedir=$5; shift 5
  local d=$OUT/$name; mkdir -p "$d"
  wait_quiet "$WAIT_QUIET" > "$d/cpu_busy_before.txt"
  blog "$name: bench-image.sh against $url (machine $(cat "$d/cpu_busy_before.txt")% busy before, loadavg $(cut -d' ' -f1-3 /proc/loadavg))"
  ( cd "$WORK" && "$PEER_DIR/bench-image.sh" --url "$url" --duration "$DURATION" --runs "$RUNS" --conc "$CONCS" \
      --pidfile "$pidfile" --out "$d" "$@" ) 2>"$d/bench.err" | tee "$d/bench.txt" >&2 \
    || { tail -5 "$d/bench.err" >&2; bdie "$name: bench-image.sh failed"; }
  blog "$name: registering $LIST_IMAGES images for the list scenario"
  python3 "$HERE/lib/image_transfer.py" fill "$url" "$token" "$LIST_IMAGES" || bdie "$name: fill failed"
  local r
  for r in $(seq 1 "$RUNS"); do
    timeout $(( DURATION + 30 )) "$OHA" --no-tui --output-format json -z "${DURATION}s" -c 1 \
      --wait-ongoing-requests-after-deadline -H "X-Auth-Token: $token" "$url/v2/images?limit=20" \
      > "$d/list1000.c1.r$r.json" 2>"$d/list1000.err" || true
  done
  blog "$name: ${SIZE_GIB} GiB transfers against cp (runs: $RUNS)"
  mkdir -p "$WORK/xfer"
  python3 "$HERE/lib/image_transfer.py" transfer "$url" "$token" "$(cat "$pidfile")" "$WORK/xfer" \
    "$SIZE_GIB" "$RUNS" "$d/transfer.json" "$storedir" | tee "$d/transfer.txt" >&2 || bdie "$name: transfer failed"
  rm -rf "$WORK/xfer"
}

if want peer; then
  peer_glance_ensure_venv
  mkdir -p "$PEER_STATE/glance" "$WORK/cwd"
  ln -sfn "$KUMO_PEER_CACHE/glance/venv" "$PEER_STATE/glance/venv"
  PEER_PORT=$(free_port)
  blog "peer: starting Glance on 127.0.0.1:$PEER_PORT"
  ( cd "$WORK/cwd" && env -u PYTHONPATH "$GLANCE_SH" start --port "$PEER_PORT" --dir "$PEER_STATE" ) \
    2>"$OUT/peer-start.log" || { tail -20 "$OUT/peer-start.log" >&2; bdie "the peer did not start"; }
  oha_install_wait
  # no keystone in front of the peer: any token is accepted (every request is admin)
  run_side peer "http://127.0.0.1:$PEER_PORT" admin "$PEER_STATE/glance/glance.pid" \
    "$PEER_STATE/glance/images/fast"
  (cd "$WORK/cwd" && "$GLANCE_SH" stop --dir "$PEER_STATE") >/dev/null 2>&1 || true
fi

if want kumo; then
  oha_install_wait
  mkdir -p "$KUMO_STATE"
  printf '# written by bench/image.sh\n[identity]\npassword_hash_rounds = 4\n' > "$KUMO_STATE/kumo.conf"
  KUMO_PORT=$(free_port)
  blog "kumo: $KUMO up --state-dir $KUMO_STATE --listen 127.0.0.1:$KUMO_PORT"
  ADMIN_PASSWORD=$PASSWORD "$KUMO" up --state-dir "$KUMO_STATE" --listen "127.0.0.1:$KUMO_PORT" \
    >"$OUT/kumo-start.log" 2>&1 || { tail -20 "$OUT/kumo-start.log" >&2; bdie "kumo up failed"; }
  BASE=http://127.0.0.1:$KUMO_PORT
  wait_http_200 "$BASE/image/versions" 30 || bdie "$BASE/image/versions does not answer 200"
  TOKEN=$(curl -s -D - -o /dev/null -H 'Content-Type: application/json' \
    -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"},\"password\":\"$PASSWORD\"}}},\"scope\":{\"project\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"}}}}}" \
    "$BASE/identity/v3/auth/tokens" | awk 'tolower($1)=="x-subject-token:" {print $2}' | tr -d '\r')
  [[ -n $TOKEN ]] || bdie "no token from kumo"
  run_side kumo "$BASE/image" "$TOKEN" "$KUMO_STATE/kumo.pid" "$KUMO_STATE/images" \
    --auth-url "$BASE/identity" --password "$PASSWORD"
  "$KUMO" down --state-dir "$KUMO_STATE" >/dev/null 2>&1 || true
fi

set +e
python3 "$HERE/lib/compare_image.py" "$OUT"
rc=$?
set -e
echo "results: $OUT"
exit "$rc"
