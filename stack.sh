#!/usr/bin/env bash
# stack.sh - build kumo and bring it up, with devstack's habits.
#
#   ./stack.sh            installs missing Debian packages, builds (release), runs `kumo up --demo`
#
# Reads ./local.conf when present (devstack format), section [[local|localrc]]:
#   ADMIN_PASSWORD=secret          admin password on first bootstrap (else asked on a terminal, or generated)
#   enable_service / disable_service NAME...   devstack or kumo names (key, n-api, g-api, q-svc, c-api,
#                                   placement-api, horizon / identity, compute, image, network, volume,
#                                   placement, dashboard) -> kumo up --services
#   KUMO_STATE_DIR=~/.kumo         state dir;  KUMO_LISTEN=127.0.0.1:5000  listen address
# Safe to run again: a running kumo is left running. ./unstack.sh stops it, ./clean.sh removes its data.
set -euo pipefail

T0=$(date +%s)
cd "$(dirname "$0")"
ROOT=$PWD
# shellcheck source=tests/lib/common.sh
source "$ROOT/tests/lib/common.sh"
KUMO_LOG_TAG=stack.sh

kumo_read_local_conf "$ROOT/local.conf"
[[ -f $ROOT/local.conf ]] || kumo_read_local_conf "$ROOT/localrc"

STATE_DIR=$(kumo_state_dir)
KUMO=$(kumo_bin "$ROOT")

kumo_ensure_packages build tools
kumo_require_cargo

kumo_log "building kumo (cargo build --release)"
cargo build --release

args=(up --demo)
[[ -n ${KUMO_STATE_DIR:-} ]] && args+=(--state-dir "$STATE_DIR")
[[ -n ${KUMO_LISTEN:-} ]] && args+=(--listen "$KUMO_LISTEN")
[[ -n $KUMO_SERVICES ]] && args+=(--services "$KUMO_SERVICES")

# Like devstack, ask for a missing admin password, but only on a terminal and only before the first
# bootstrap; an empty answer lets kumo generate one (kept in STATE_DIR/admin-password).
if [[ -z ${ADMIN_PASSWORD:-} && ! -f $STATE_DIR/admin-password && -t 0 ]]; then
  read -r -s -p "Admin password for kumo (empty: generate one): " ADMIN_PASSWORD; echo
fi
if [[ -n ${ADMIN_PASSWORD:-} ]]; then export ADMIN_PASSWORD; else unset ADMIN_PASSWORD; fi

kumo_log "$KUMO ${args[*]}"
"$KUMO" "${args[@]}"

echo
echo "Use it:  source $STATE_DIR/openrc      # or: export OS_CLIENT_CONFIG_FILE=$STATE_DIR/clouds.yaml"
echo "         openstack --os-cloud kumo token issue"
echo "stack.sh completed in $(( $(date +%s) - T0 )) seconds"
