#!/usr/bin/env bash
# bench/network-dataplane.sh - how long the network data plane's nftables transactions take.
#
#   bench/network-dataplane.sh        (root)
#
# Builds and runs crates/dataplane/examples/dataplane_bench.rs (cargo run --release --example),
# which, in its own kt<6 hex>-rtr and kt<6 hex>-host network namespaces, measures
# (1) nft::apply_table of a router NAT table: 100 floating IPs + 3 SNAT rules + the metadata
#     redirect, 30 applies, p50/p90 (target p50 < 100 ms);
# (2) filter::apply (security groups) of 50 ports with 5 rules each, 20 applies, p50/p90.
# Prints a markdown table. The namespaces are removed at the end, also on failure or Ctrl-C
# (by the example's guard and by this script's trap). Nothing is sent on any network.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
ROOT=$(cd "$HERE/.." && pwd -P)

if [[ $(id -u) -ne 0 ]]; then
  echo "network-dataplane.sh: needs root (network namespaces)" >&2
  exit 2
fi
command -v nft >/dev/null || { echo "network-dataplane.sh: install the Debian package nftables" >&2; exit 2; }

PREFIX=kt$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
cleanup() {
  local ns
  for ns in "$PREFIX-rtr" "$PREFIX-host"; do
    if ip netns list | grep -qw -- "$ns"; then ip netns del "$ns" || true; fi
  done
}
trap cleanup EXIT INT TERM

cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build -q --release -p dataplane --example dataplane_bench
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); nft $(nft --version | awk '{print $2}'); kernel $(uname -r)"
cargo run -q --release -p dataplane --example dataplane_bench -- "$PREFIX"
