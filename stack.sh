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
#   VIRT_DRIVER=qemu               compute driver: qemu (default; devstack's libvirt means the same) or
#                                   fake. qemu needs QEMU (installed here); when it cannot be installed,
#                                   stack.sh says so and uses fake.
# Real guests: the kumo-tiny image is built (tools/guest-image/build.sh, cached) and `kumo up --demo`
# uploads it as the public image kumo-tiny. Both settings go into STATE_DIR/kumo.conf
# ([DEFAULT] compute_driver, [demo] guest_image); its other options are kept.
# Safe to run again: a running kumo is left running (`./unstack.sh && ./stack.sh` applies a changed
# kumo.conf). ./unstack.sh stops it, ./clean.sh removes its data.
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

# network: the data plane (bridges, namespaces, nftables, dnsmasq; kumo runs it as root)
kumo_ensure_packages build tools network
kumo_require_cargo

kumo_log "building kumo (cargo build --release)"
cargo build --release

# Real guests: QEMU and the kumo-tiny image, else the fake driver.
VIRT_DRIVER=${VIRT_DRIVER:-qemu}
case $VIRT_DRIVER in
  libvirt|qemu|kvm) VIRT_DRIVER=qemu;;
  fake) ;;
  *) kumo_log "VIRT_DRIVER=$VIRT_DRIVER: expected qemu or fake; using fake"; VIRT_DRIVER=fake;;
esac
if [[ $VIRT_DRIVER == qemu ]]; then
  if ! kumo_ensure_packages guest || ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-img >/dev/null
  then
    kumo_log "QEMU could not be installed (qemu-system-x86, qemu-utils): using the fake compute driver" \
      "(servers are records, no guests boot). Install both, then ./unstack.sh && ./stack.sh for real guests."
    VIRT_DRIVER=fake
  fi
fi
GUEST_IMAGE=""
if GUEST_IMAGE=$(kumo_guest_image "$ROOT"); then
  kumo_log "guest image: $GUEST_IMAGE (uploaded by kumo up --demo as kumo-tiny)"
else
  GUEST_IMAGE=""
  kumo_log "the kumo-tiny guest image could not be built: the demo cloud will have no image"
fi
mkdir -p "$STATE_DIR"
chmod 700 "$STATE_DIR"
CONF=$STATE_DIR/kumo.conf
pid=$(cat "$STATE_DIR/kumo.pid" 2>/dev/null || true)
if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
  # left running as it is: its kumo.conf stays what it runs with
  VIRT_DRIVER=$(awk -F' *= *' '/^\[/ { s = $0 } s == "[DEFAULT]" && $1 == "compute_driver" { print $2 }' "$CONF" 2>/dev/null)
  VIRT_DRIVER=${VIRT_DRIVER:-fake}
else
  kumo_iniset "$CONF" DEFAULT compute_driver "$VIRT_DRIVER"
  [[ -n $GUEST_IMAGE ]] && kumo_iniset "$CONF" demo guest_image "$GUEST_IMAGE"
fi

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

kumo_log "$KUMO ${args[*]} (config $CONF: compute_driver = $VIRT_DRIVER)"
"$KUMO" "${args[@]}"

echo
echo "Use it:  source $STATE_DIR/openrc      # or: export OS_CLIENT_CONFIG_FILE=$STATE_DIR/clouds.yaml"
echo "         openstack --os-cloud kumo token issue"
echo "stack.sh completed in $(( $(date +%s) - T0 )) seconds"
