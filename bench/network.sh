#!/usr/bin/env bash
# bench/network.sh - the network service and its data plane, measured.
#
#   bench/network.sh [--runs N] [--out DIR]
#
# kumo: `$KUMO_BIN up --demo` on a free port in a fresh state dir, `compute_driver = qemu`, its
# data plane on (root) under a namespace prefix of its own, devstack's demo networks; the
# kumo-tiny image ($KUMO_TINY_IMAGE, else tools/guest-image/build.sh's cached output).
# bench/lib/network_run.py measures: 200 sequential port creates (client side), then N guests
# (default 5) one at a time on the demo `private` network: create -> ACTIVE (ports made, bound,
# network-vif-plugged) and create -> the guest's console line "eth0 <its port's IP> by DHCP".
# Then bench/network-dataplane.sh (the nftables transactions: a router with 100 floating IPs,
# security groups of 50 ports). Targets (issue "Networking"): port create p50 < 10 ms, DHCP
# p50 < 8 s on TCG, 100 floating IPs applied < 100 ms. No Neutron peer exists in
# ../shared/peer, so kumo's figures stand alone. Needs root. Cleanup (also on failure): guests
# killed by pid (checked), kumo stopped, its namespaces deleted, the temp dir removed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck disable=SC2034 # used by blog in lib/common.sh
BENCH_TAG=network.sh
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2; }
RUNS=5 OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
[[ $(id -u) -eq 0 ]] || bdie "the data plane needs root (network namespaces)"
OUT=${OUT:-$(mktemp -d /tmp/kumo-bench-network.XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd -P)
WORK=$(mktemp -d /tmp/kumo-bench-network-work.XXXXXX)
STATE=$WORK/kumo
PREFIX=kb$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')-
# shellcheck disable=SC2119
KUMO=$(kumo_bin)
PASSWORD=secret

# shellcheck disable=SC2317,SC2329 # run by the EXIT trap
cleanup() {
  local rc=$? f pid uuid ns
  set +e
  for f in "$STATE"/instances/*/qemu.pid; do
    [[ -f $f ]] || continue
    uuid=$(basename "$(dirname "$f")"); pid=$(head -c 32 "$f" | tr -dc 0-9)
    [[ -n $pid ]] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$uuid" && kill -KILL "$pid"
  done
  "$KUMO" down --state-dir "$STATE" >/dev/null 2>&1
  for ns in /run/netns/"$PREFIX"*; do
    [[ -e $ns ]] || continue
    ns=$(basename "$ns")
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "/run/kumo/${PREFIX}network"
  [[ -d $STATE/logs ]] && cp -r "$STATE/logs" "$OUT/kumo-logs"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -x $KUMO ]] || bdie "kumo binary not found at $KUMO (cargo build --release -p kumo, or set KUMO_BIN)"
IMAGE=${KUMO_TINY_IMAGE:-}
if [[ -z $IMAGE || ! -f $IMAGE ]]; then
  IMAGE=$(bash "$REPO_ROOT/tools/guest-image/build.sh" 2>"$OUT/image-build.log" | tail -1) \
    || bdie "tools/guest-image/build.sh failed"
fi
mkdir -p "$STATE"
cat > "$STATE/kumo.conf" <<EOF2
# written by bench/network.sh
[DEFAULT]
compute_driver = qemu
shutdown_timeout = 5

[identity]
password_hash_rounds = 4

[network]
dataplane = linux
namespace_prefix = $PREFIX

[demo]
guest_image = $IMAGE
EOF2
PORT=$(free_port)
blog "kumo up on 127.0.0.1:$PORT (namespaces $PREFIX*)"
ADMIN_PASSWORD=$PASSWORD "$KUMO" up --demo --state-dir "$STATE" --listen "127.0.0.1:$PORT" \
  --config "$STATE/kumo.conf" >"$OUT/up.log" 2>&1 || { tail -20 "$OUT/up.log" >&2; bdie "kumo up failed"; }
BASE=http://127.0.0.1:$PORT
read -r IMAGE_ID NET_ID < <(python3 - "$BASE" "$PASSWORD" <<'PY'
import sys, requests
base, pw = sys.argv[1:3]
r = requests.post(base + "/identity/v3/auth/tokens", json={"auth": {"identity": {"methods": ["password"],
    "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": pw}}},
    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
h = {"X-Auth-Token": r.headers["X-Subject-Token"]}
img = requests.get(base + "/image/v2/images?name=kumo-tiny", headers=h).json()["images"][0]["id"]
net = requests.get(base + "/network/v2.0/networks?name=private", headers=h).json()["networks"][0]["id"]
# the admin's own default group: ICMP and SSH as in the demo project (guests boot as admin here)
print(img, net)
PY
)
blog "image $IMAGE_ID, network private $NET_ID; load average $(cut -d' ' -f1 /proc/loadavg)"
rc=0
python3 "$HERE/lib/network_run.py" "$BASE" "$PASSWORD" "$IMAGE_ID" "$NET_ID" "$OUT" "$RUNS" | tee "$OUT/table.md" || rc=1
blog "the nftables transactions: bench/network-dataplane.sh"
bash "$HERE/network-dataplane.sh" | tee "$OUT/dataplane.md" || rc=1
blog "results in $OUT"
exit "$rc"
