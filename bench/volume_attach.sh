#!/usr/bin/env bash
# bench/volume_attach.sh - volumes on a real guest, measured.
#
#   bench/volume_attach.sh [--runs N] [--mib M] [--out DIR]
#
# kumo: `$KUMO_BIN up --demo` on a free port in a fresh state dir, `compute_driver = qemu`, its
# data plane on (root) under a namespace prefix of its own, the volume service, the kumo-tiny
# image ($KUMO_TINY_IMAGE, else tools/guest-image/build.sh's cached output). One guest on the
# demo `private` network with a fresh key; bench/lib/volume_attach_run.py measures, N times (default
# 5): `POST os-volume_attachments` -> the disk in the guest (`/sys/block/vdb`, a loop in the
# guest started over SSH before the request, timed on the host) and the detach -> the volume
# `available`; then sequential write throughput of M MiB (default 256) with `dd ... conv=fsync`
# inside the guest on the attached volume vs the host on the same file system (the state dir).
# Targets: attach -> ready-in-guest p50 < 2 s; guest write >= 70 % of the host's. TCG here (KVM
# does not work on this machine). No Nova/Cinder peer in ../shared/peer: kumo's figures stand
# alone. Needs root. Cleanup (also on failure): guests killed by pid (checked), kumo stopped,
# its namespaces deleted, the temp dirs removed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck disable=SC2034 # used by blog in lib/common.sh
BENCH_TAG=volume_attach.sh
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2; }
RUNS=5 MIB=256 OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2;;
    --mib) MIB=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
[[ $(id -u) -eq 0 ]] || bdie "the data plane needs root (network namespaces)"
OUT=${OUT:-$(mktemp -d /tmp/kumo-bench-volume.XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd -P)
WORK=$(mktemp -d /tmp/kumo-bench-volume-work.XXXXXX)
STATE=$WORK/kumo
PREFIX=kv$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')-
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
# written by bench/volume_attach.sh
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
ssh-keygen -q -t ed25519 -N "" -f "$WORK/key"
blog "load average $(cut -d' ' -f1 /proc/loadavg)"
python3 "$HERE/lib/volume_attach_run.py" "http://127.0.0.1:$PORT" "$PASSWORD" "$KUMO" "$STATE" "$WORK/key" \
  "$OUT" "$RUNS" "$MIB" | tee "$OUT/table.md"
blog "results in $OUT"
