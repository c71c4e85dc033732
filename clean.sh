#!/usr/bin/env bash
# clean.sh - stop kumo, its guests (QEMU) and volume exports (qemu-storage-daemon) and remove its state dir (~/.kumo: databases, keys,
# images, instances, logs, credentials).
#
#   ./clean.sh        asks first (on a terminal only)
#   ./clean.sh -f     no question
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
# shellcheck source=tests/lib/common.sh
source "$ROOT/tests/lib/common.sh"
KUMO_LOG_TAG=clean.sh

force=0
case "${1:-}" in
  -f|--force) force=1;;
  "") ;;
  *) echo "usage: $0 [-f]" >&2; exit 2;;
esac

kumo_read_local_conf "$ROOT/local.conf"
STATE_DIR=$(kumo_state_dir)
KUMO=$(kumo_bin "$ROOT")

"$ROOT/unstack.sh"

if [[ ! -e $STATE_DIR ]]; then kumo_log "nothing to remove ($STATE_DIR does not exist)"; exit 0; fi
case "$(cd "$STATE_DIR" && pwd -P)" in
  /|"$HOME"|"$(cd "$HOME" && pwd -P)") kumo_log "refusing to remove $STATE_DIR"; exit 1;;
esac
if ((!force)); then
  if [[ ! -t 0 ]]; then
    kumo_log "not a terminal: run '$0 -f' to remove $STATE_DIR"; exit 1
  fi
  read -r -p "Remove $STATE_DIR and everything kumo keeps there? [y/N] " answer
  [[ $answer == [yY]* ]] || { kumo_log "kept $STATE_DIR"; exit 0; }
fi
kumo_stop_guests "$STATE_DIR"
kumo_stop_exports "$STATE_DIR"
# the network data plane: kumo's namespaces (bridges, taps, dnsmasqs, rules)
if [[ -x ${KUMO:-} ]]; then "$KUMO" down --purge --state-dir "$STATE_DIR" || true; fi
rm -rf -- "$STATE_DIR"
kumo_log "removed $STATE_DIR"
