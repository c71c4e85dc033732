#!/usr/bin/env bash
# bench/volume.sh - the volume service (Cinder v3, file backend), measured.
#
#   bench/volume.sh [--count N] [--size-gib G] [--out DIR] [--wait-quiet S]
#
# `$KUMO_BIN up` on a free port in a fresh state dir (ADMIN_PASSWORD=secret, bcrypt cost 4), an
# admin token, then N (default 50) sequential volume creates of G GiB (default 1) on the file
# backend (qcow2): each one timed from the POST to the first GET that shows it `available`
# (polled every 2 ms, client side), then N deletes timed until the volume answers 404; the same
# for N snapshots of one volume. p50/p90/max per step. Target (SPECIFICATION.md): create p50
# < 50 ms to available. No Cinder peer exists in ../shared/peer, so kumo's figures stand alone.
# Writes OUT/summary.json, prints a table. Cleanup (also on failure or Ctrl-C): kumo stopped
# (`kumo down`, then by its pid if that is still a kumo), the temp dir removed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck disable=SC2034 # used by blog in lib/common.sh
BENCH_TAG=volume.sh
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2; }
COUNT=50 SIZE_GIB=1 OUT="" WAIT_QUIET=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --count) COUNT=$2; shift 2;;
    --size-gib) SIZE_GIB=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --wait-quiet) WAIT_QUIET=$2; shift 2;;
    -h|--help) usage;;
    *) blog "unknown argument: $1"; usage;;
  esac
done
[[ $COUNT =~ ^[1-9][0-9]*$ ]] || bdie "--count needs a positive number"
[[ $SIZE_GIB =~ ^[1-9][0-9]*$ ]] || bdie "--size-gib needs a positive number"
[[ $WAIT_QUIET =~ ^[0-9]+$ ]] || bdie "--wait-quiet needs a number of seconds"
command -v qemu-img >/dev/null || bdie "qemu-img is missing (Debian: qemu-utils)"
bench_kumo_setup volume
(( WAIT_QUIET > 0 )) && wait_quiet "$WAIT_QUIET"
printf '# written by bench/volume.sh\n[identity]\npassword_hash_rounds = 4\n[demo]\nguest_image = none\nnetwork = false\n' > "$STATE/kumo.conf"
bench_kumo_up /volume/v3
python3 "$HERE/lib/volume_run.py" --base "$BASE" --password "$PASSWORD" --count "$COUNT" \
  --size-gib "$SIZE_GIB" --out "$OUT/summary.json"
blog "summary: $OUT/summary.json"
