#!/usr/bin/env bash
# bench/metadata.sh - the metadata service and the config drive, measured.
#
#   bench/metadata.sh [--requests N] [--out DIR] [--wait-quiet S]
#
# First crates/metadata/examples/config_drive_bench.rs (cargo run --release --example): the
# config drive of a server with a key, 4 KiB of user_data and one VIF, built 50 times per
# format (iso9660, vfat), p50/p90. Then kumo: `$KUMO_BIN up` on a free port in a fresh state dir,
# `compute_driver = fake`, its data plane on (root) under a namespace prefix of its own
# (kb<6 hex>-); bench/lib/metadata_run.py makes a network + subnet, a key pair and a server with
# user_data on it (the fake driver still gets its port a tap and the network a DHCP namespace,
# where kumo serves 169.254.169.254:80), plugs a stand-in guest namespace of its own into the
# network's bridge with the port's MAC, takes the port's address by DHCP with the option 121
# routes applied, and from inside it times N (default 2000) sequential GETs of
# /openstack/latest/meta_data.json over one keep-alive connection and N over a new connection
# each, the same for /latest/meta-data/hostname (p50/p90/p99, client side); kumo's RSS before
# and after. Targets (issue 8): meta_data.json p50 < 2 ms, config drive built < 100 ms.
# No Nova/Neutron metadata peer exists in ../shared/peer, so kumo's figures stand alone.
# --wait-quiet S: first wait up to S s until the machine's CPU use over 3 s is < 25%.
# Writes OUT/summary.json, prints a table. Needs root. Cleanup (also on failure or Ctrl-C): the
# stand-in namespace and its veth removed, kumo stopped (`kumo down`, then by its pid if that is
# still a kumo), its namespaces deleted, the temp dir removed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck disable=SC2034 # used by blog in lib/common.sh
BENCH_TAG=metadata.sh
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2; }
REQUESTS=2000 OUT="" WAIT_QUIET=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --requests) REQUESTS=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --wait-quiet) WAIT_QUIET=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
[[ $REQUESTS =~ ^[1-9][0-9]*$ ]] || bdie "--requests needs a positive number"
[[ $WAIT_QUIET =~ ^[0-9]+$ ]] || bdie "--wait-quiet needs a number of seconds"
[[ $(id -u) -eq 0 ]] || bdie "the data plane needs root (network namespaces)"
for tool in ip nft dnsmasq busybox genisoimage mkfs.vfat mcopy cargo; do
  command -v "$tool" >/dev/null || bdie "$tool is missing (Debian: iproute2 nftables dnsmasq-base busybox genisoimage dosfstools mtools)"
done
OUT=${OUT:-$(mktemp -d /tmp/kumo-bench-metadata.XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd -P)
WORK=$(mktemp -d /tmp/kumo-bench-metadata-work.XXXXXX)
STATE=$WORK/kumo
HEX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
PREFIX=kb$HEX-
STANDIN_NS=${PREFIX}standin
STANDIN_VETH=vb${HEX}g
# shellcheck disable=SC2119
KUMO=$(kumo_bin)
PASSWORD=secret

# shellcheck disable=SC2317,SC2329 # run by the EXIT trap
cleanup() {
  local rc=$? ns pid
  set +e
  ip -n "${PREFIX}kumo-host" link del "$STANDIN_VETH" 2>/dev/null
  ip netns del "$STANDIN_NS" 2>/dev/null
  bench_stop_kumo "$KUMO" "$STATE"
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

if (( WAIT_QUIET > 0 )); then
  busy=$(wait_quiet "$WAIT_QUIET")
  blog "machine CPU use over 3 s before the bench: ${busy}%$( (( busy >= 25 )) && echo ' (busy: figures may be noisy)')"
fi

# The config drive first, before kumo runs (the build would compete with the server).
blog "config drive: cargo run --release -p metadata --example config_drive_bench (load average $(cut -d' ' -f1 /proc/loadavg))"
( cd "$REPO_ROOT" && cargo build -q --release -p metadata --example config_drive_bench ) \
  || bdie "building config_drive_bench failed"
( cd "$REPO_ROOT" && cargo run -q --release -p metadata --example config_drive_bench -- \
  --runs 50 --json "$OUT/config_drive.json" ) | tee "$OUT/config_drive.md" \
  || bdie "config_drive_bench failed"

mkdir -p "$STATE"
cat > "$STATE/kumo.conf" <<EOF2
# written by bench/metadata.sh
[DEFAULT]
compute_driver = fake

[identity]
password_hash_rounds = 4

[network]
dataplane = linux
namespace_prefix = $PREFIX
EOF2
PORT=$(free_port)
blog "kumo up on 127.0.0.1:$PORT (namespaces $PREFIX*)"
ADMIN_PASSWORD=$PASSWORD "$KUMO" up --state-dir "$STATE" --listen "127.0.0.1:$PORT" \
  --config "$STATE/kumo.conf" >"$OUT/up.log" 2>&1 || { tail -20 "$OUT/up.log" >&2; bdie "kumo up failed"; }
KUMO_PID=$(head -c 32 "$STATE/kumo.pid" | tr -dc 0-9)
[[ -n $KUMO_PID ]] || bdie "no pid in $STATE/kumo.pid"
blog "kumo pid $KUMO_PID; stand-in $STANDIN_NS; $REQUESTS requests per series; load average $(cut -d' ' -f1 /proc/loadavg)"
rm -f "$OUT/summary.json" "$OUT/table.txt"
rc=0
python3 "$HERE/lib/metadata_run.py" run "http://127.0.0.1:$PORT" "$PASSWORD" "$PREFIX" "$STANDIN_NS" \
  "$STANDIN_VETH" "$KUMO_PID" "$OUT" "$REQUESTS" "$OUT/config_drive.json" || rc=$?
[[ -f $OUT/summary.json ]] || bdie "no summary (see $OUT/kumo-logs after cleanup)"
blog "results in $OUT"
exit "$rc"
