#!/usr/bin/env bash
# bench/dashboard.sh - the dashboard (Horizon's job), measured.
#
#   bench/dashboard.sh [--servers N] [--runs R] [--out DIR] [--wait-quiet S]
#
# `$KUMO_BIN up` on a free port in a fresh state dir (ADMIN_PASSWORD=secret, bcrypt cost 4, the
# fake compute driver on 4 hosts, no network data plane), N (default 200) servers booted in one
# request (`min_count`) and waited ACTIVE, then as a browser does: GET the login page (its CSRF
# token and session cookie), POST the login form, and R (default 30) GETs of the instances page,
# each timed on the client over loopback (the page's server time: kumo's dashboard calling the
# compute, image and network APIs with the user's token, then rendering), p50/p90/max; the page
# must list all N servers. Also the login page's first paint weight: the HTML plus every script
# and stylesheet it links, as transferred (gzip offered). Targets (issue #10): instances page with
# 200 instances p50 < 100 ms; login page < 200 KB. No Horizon peer in ../shared/peer, so kumo's
# figures stand alone. Writes OUT/summary.json, prints a table. Cleanup (also on failure):
# kumo stopped (`kumo down`, then by its pid if still a kumo), the temp dir removed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck disable=SC2034 # used by blog in lib/common.sh
BENCH_TAG=dashboard.sh
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2; }
SERVERS=200 RUNS=30 OUT="" WAIT_QUIET=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --servers) SERVERS=$2; shift 2;;
    --runs) RUNS=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --wait-quiet) WAIT_QUIET=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
[[ $SERVERS =~ ^[1-9][0-9]*$ ]] || bdie "--servers needs a positive number"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || bdie "--runs needs a positive number"
[[ $WAIT_QUIET =~ ^[0-9]+$ ]] || bdie "--wait-quiet needs a number of seconds"
command -v qemu-img >/dev/null || bdie "qemu-img is missing (Debian: qemu-utils)"
bench_kumo_setup dashboard
(( WAIT_QUIET > 0 )) && wait_quiet "$WAIT_QUIET"
cat > "$STATE/kumo.conf" <<CONF
# written by bench/dashboard.sh
[identity]
password_hash_rounds = 4
[demo]
guest_image = none
network = false
[fake]
hosts = 4
[network]
dataplane = none
[compute]
network_hook = none
[quota]
instances = $((SERVERS + 10))
cores = $((SERVERS + 10))
ram = -1
CONF
qemu-img create -q -f qcow2 "$WORK/tiny.qcow2" 64M
bench_kumo_up /dashboard/login
python3 "$HERE/lib/dashboard_run.py" --base "$BASE" --password "$PASSWORD" --servers "$SERVERS" \
  --runs "$RUNS" --image "$WORK/tiny.qcow2" --out "$OUT/summary.json"
blog "summary: $OUT/summary.json"
