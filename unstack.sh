#!/usr/bin/env bash
# unstack.sh - stop kumo (its data stays; ./stack.sh brings it back, ./clean.sh removes it).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
# shellcheck source=tests/lib/common.sh
source "$ROOT/tests/lib/common.sh"
KUMO_LOG_TAG=unstack.sh

kumo_read_local_conf "$ROOT/local.conf"
STATE_DIR=$(kumo_state_dir)
KUMO=$(kumo_bin "$ROOT")

guests=$(kumo_guest_pids "$STATE_DIR" | wc -l)
if ((guests)); then
  kumo_log "$guests guest(s) keep running (as libvirt's do); ./stack.sh finds them again, ./clean.sh stops them"
fi
if [[ -x $KUMO ]]; then
  "$KUMO" down --state-dir "$STATE_DIR"
  exit 0
fi

# No binary (e.g. `cargo clean`): do what `kumo down` does, by the pid file.
pidfile=$STATE_DIR/kumo.pid
if [[ ! -f $pidfile ]]; then kumo_log "kumo is not running (no $pidfile)"; exit 0; fi
pid=$(head -1 "$pidfile" | tr -dc 0-9)
exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
if [[ -z $pid || ! -d /proc/$pid || $(basename "${exe%% (deleted)}") != kumo* ]]; then
  kumo_log "kumo is not running (stale $pidfile)"; rm -f "$pidfile"; exit 0
fi
kill -TERM "$pid"
for _ in $(seq 1 300); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
if [[ -d /proc/$pid ]]; then kumo_log "kumo (pid $pid) did not stop within 30 s"; exit 1; fi
rm -f "$pidfile"
kumo_log "kumo stopped (pid $pid)"
