#!/usr/bin/env bash
# tests/tempest/run.sh - upstream Tempest against a kumo that this script starts (and stops).
#
#   tests/tempest/run.sh SERVICE [--target kumo|keystone-peer] [--concurrency N] [--keep]
#   (--concurrency: tempest workers, default 2 for kumo, 1 for the peer: see below)
#
# SERVICE: identity (17 tests, ../shared/tempest/lists/identity.txt), image (23), network (82), volume (65),
# compute (95; with kumo's image, network and volume services, and isolated networks per
# test project). Others are listed in SERVICES below and come with their issues.
# --target kumo           (default) $KUMO_BIN (default target/release/kumo) `up` on a free loopback
#                         port in a temp state dir, with a kumo.conf that turns on what Tempest's
#                         security-compliance tests expect.
# --target keystone-peer  the real Keystone (../shared/peer/keystone.sh, venv cached in
#                         ~/.cache/kumo/peer), same security-compliance settings: validates this
#                         wrapper and gives the reference result.
# --keep                  keep the temp dir (state, logs, tempest workspace) and print it.
# Tempest venv: $TEMPEST_VENV (default ~/.cache/kumo/tempest-venv-47.0.0).
# The last line is the runner's "N passed, N failed, N skipped"; exit 0 only if >=1 passed and
# none failed. If ../shared is missing the run is skipped (whole list counted as skipped, exit 0).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
BENCH_TAG=tempest
. "$HERE/../../bench/lib/common.sh"

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# service -> "list file|TEMPEST_SERVICES|number of tests (for the skipped line without shared/)"
# TEMPEST_SERVICES marks the non-identity services available (identity always is); "none" = none.
declare -A SERVICES=(
  [identity]="identity.txt|none|17"
  [image]="image.txt|glance|23"
  [compute]="compute.txt|nova,glance,cinder,neutron|95"
  [network]="network.txt|neutron|82"
  [volume]="volume.txt|cinder,glance,neutron|65"
)
# Values shared by kumo.conf / the peer's keystone config and tempest.conf (must agree:
# tempest's [identity] user_* options mirror keystone's [security_compliance]).
LOCKOUT_FAILURE_ATTEMPTS=2 LOCKOUT_DURATION=5 UNIQUE_LAST_PASSWORD_COUNT=2

SERVICE="" TARGET=kumo CONCURRENCY="" KEEP=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --target) TARGET=$2; shift 2;;
    --target=*) TARGET=${1#*=}; shift;;
    --concurrency) CONCURRENCY=$2; shift 2;;
    --keep) KEEP=1; shift;;
    -h|--help) usage;;
    -*) blog "unknown option $1"; usage;;
    *) [[ -z $SERVICE ]] || usage; SERVICE=$1; shift;;
  esac
done
[[ -n $SERVICE ]] || usage
[[ -n ${SERVICES[$SERVICE]:-} ]] || bdie "unknown or not yet supported service '$SERVICE' (supported: ${!SERVICES[*]})"
IFS='|' read -r LIST_NAME SVC_AVAILABLE LIST_COUNT <<<"${SERVICES[$SERVICE]}"
case "$TARGET" in kumo|keystone-peer) ;; *) bdie "--target takes kumo or keystone-peer";; esac
[[ $SERVICE != compute || $TARGET == kumo ]] || bdie "compute runs against kumo only (the peer is Keystone)"
# The peer keeps its data in SQLite with 2 uWSGI processes: two tests writing at the same time
# can get "database is locked" (a 500, seen as a dropped connection). One worker avoids that.
[[ -n $CONCURRENCY ]] || { [[ $TARGET == keystone-peer ]] && CONCURRENCY=1 || CONCURRENCY=2; }

RUNNER=$SHARED_DIR/tempest/run-tempest.sh
LIST=$SHARED_DIR/tempest/lists/$LIST_NAME
if [[ ! -x $RUNNER || ! -f $LIST ]]; then
  echo "tempest: $SHARED_DIR/tempest not found (shared/ is expected beside the repository): not run"
  echo "0 passed, 0 failed, $LIST_COUNT skipped"
  exit 0
fi

WORK=$(mktemp -d /tmp/kumo-tempest-$SERVICE.XXXXXX)
STATE=$WORK/state
KUMO=$(kumo_bin)
SERVER_UP=0
stop_server() {
  [[ $SERVER_UP == 1 ]] || return 0
  SERVER_UP=0
  if [[ $TARGET == keystone-peer ]]; then
    peer_cleanup "$STATE" >>"$WORK/server.log" 2>&1
  else
    "$KUMO" down --state-dir "$STATE" >>"$WORK/server.log" 2>&1 || true
    local p; p=$(cat "$STATE/kumo.pid" 2>/dev/null || true)
    if [[ -n $p ]] && kill -0 "$p" 2>/dev/null; then   # kumo down did not stop it: by pid file
      kill -TERM "$p"; sleep 2; kill -0 "$p" 2>/dev/null && kill -KILL "$p"
    fi
  fi
}
cleanup() {
  local rc=$?
  set +e
  stop_server
  if [[ $KEEP == 1 ]]; then blog "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail_setup() { # the run could not start: say why, end with a counted failure
  blog "ERROR: $*"
  [[ -f $WORK/server.log ]] && tail -20 "$WORK/server.log" >&2
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
}

PORT=$(free_port)
ADMIN_PW=kumo-$(python3 -c 'import secrets; print(secrets.token_hex(8))')
if [[ $TARGET == keystone-peer ]]; then
  peer_ensure_venv
  ensure_deb memcached memcached || true
  SERVER_UP=1
  peer_prepare_dir "$STATE"
  blog "starting the real Keystone on 127.0.0.1:$PORT (state $STATE)"
  # keystone.sh writes keystone.conf itself; oslo.config also reads OS_<GROUP>__<OPTION> from
  # the environment, which is how [security_compliance] is set for the peer.
  OS_SECURITY_COMPLIANCE__LOCKOUT_FAILURE_ATTEMPTS=$LOCKOUT_FAILURE_ATTEMPTS \
  OS_SECURITY_COMPLIANCE__LOCKOUT_DURATION=$LOCKOUT_DURATION \
  OS_SECURITY_COMPLIANCE__UNIQUE_LAST_PASSWORD_COUNT=$UNIQUE_LAST_PASSWORD_COUNT \
  ADMIN_PASSWORD=$ADMIN_PW peer_cmd "$STATE" start --port "$PORT" >"$WORK/server.log" 2>&1 \
    || fail_setup "the peer Keystone did not start"
  AUTH_URL=http://127.0.0.1:$PORT/v3
else
  [[ -x $KUMO ]] || fail_setup "kumo binary not found at $KUMO (cargo build --release, or set KUMO_BIN)"
  mkdir -p "$STATE"
  cat > "$STATE/kumo.conf" <<EOF
# written by tests/tempest/run.sh
[identity]
# tempest creates many users; a low bcrypt cost keeps the run short (kumo's default is 12)
password_hash_rounds = 4

[security_compliance]
# what tempest's identity tests expect ([identity] user_lockout_* / user_unique_* in tempest.conf)
lockout_failure_attempts = $LOCKOUT_FAILURE_ATTEMPTS
lockout_duration = $LOCKOUT_DURATION
unique_last_password_count = $UNIQUE_LAST_PASSWORD_COUNT
EOF
  if [[ $SERVICE == image ]]; then
    # Tempest's image list tests upload random bytes as qcow2, vhd, ... and skip themselves when
    # the cloud checks data against disk_format (Glance's default, and kumo's). Glance's own
    # switch turns that check off for this run; tempest.conf says so below.
    printf '\n[image_format]\nrequire_image_format_match = false\n' >> "$STATE/kumo.conf"
  fi
  # the network API only (no bridges or namespaces: Tempest's API tests send no packets); a
  # namespace prefix of its own all the same, should the data plane be switched on
  printf '\n[network]\ndataplane = none\nnamespace_prefix = kt%s-\n' "$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')" >> "$STATE/kumo.conf"
  UP_ARGS=()
  if [[ $SERVICE == compute ]]; then
    # the fake driver with two hosts (instant spawns); --demo adds devstack's m1.* flavors, but
    # not the kumo-tiny image (Tempest uploads its own image_ref; the run must not depend on the
    # cache of tools/guest-image/build.sh)
    printf '\n[fake]\nhosts = 2\n\n[demo]\nguest_image = none\n' >> "$STATE/kumo.conf"
    UP_ARGS=(--demo)
  fi
  blog "starting kumo: $KUMO up --state-dir $STATE --listen 127.0.0.1:$PORT ${UP_ARGS[*]}"
  SERVER_UP=1
  ADMIN_PASSWORD=$ADMIN_PW timeout 120 "$KUMO" up --state-dir "$STATE" --listen "127.0.0.1:$PORT" \
    "${UP_ARGS[@]}" >"$WORK/server.log" 2>&1 || fail_setup "kumo up failed"
  cat "$WORK/server.log" >&2
  # kumo writes the URL it serves into openrc; fall back to the contract's /identity/v3
  AUTH_URL=$(sed -n 's/^\(export \)\{0,1\}OS_AUTH_URL=["'\'']\{0,1\}\([^"'\'' ]*\).*/\2/p' "$STATE/openrc" 2>/dev/null | tail -1 || true)
  AUTH_URL=${AUTH_URL:-http://127.0.0.1:$PORT/identity/v3}
fi
# upload_image V3_URL NAME FILE: a 1 MiB qcow2 (made once at FILE) uploaded as a public image,
# as the admin; prints its id. curl and the APIs only: no client needed.
upload_image() {
  local v3=$1 name=$2 file=$3 token image base
  [[ -f $file ]] || qemu-img create -q -f qcow2 "$file" 1M || return 1
  token=$(curl -sf -D - -o /dev/null -H 'Content-Type: application/json' "$v3/auth/tokens" -d @- <<JSON | tr -d '\r' | sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: //p'
{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin",
 "domain": {"id": "default"}, "password": "$ADMIN_PW"}}},
 "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
JSON
  ) || return 1
  [[ -n $token ]] || return 1
  base=${v3%/identity/v3}; base=${base%/v3}
  image=$(curl -sf -H "X-Auth-Token: $token" -H 'Content-Type: application/json' "$base/image/v2/images" \
    -d "{\"name\": \"$name\", \"disk_format\": \"qcow2\", \"container_format\": \"bare\", \"visibility\": \"public\"}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])') || return 1
  curl -sf -X PUT -H "X-Auth-Token: $token" -H 'Content-Type: application/octet-stream' \
    --data-binary "@$file" "$base/image/v2/images/$image/file" >/dev/null || return 1
  echo "$image"
}

# create_public_network V3_URL: devstack's `public` (external, 172.24.4.0/24, no DHCP) as the
# admin; prints its id.
create_public_network() {
  local v3=$1 token base net
  token=$(curl -sf -D - -o /dev/null -H 'Content-Type: application/json' "$v3/auth/tokens" -d @- <<JSON | tr -d '\r' | sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: //p'
{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin",
 "domain": {"id": "default"}, "password": "$ADMIN_PW"}}},
 "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
JSON
  ) || return 1
  [[ -n $token ]] || return 1
  base=${v3%/identity/v3}; base=${base%/v3}
  net=$(curl -sf -H "X-Auth-Token: $token" -H 'Content-Type: application/json' "$base/network/v2.0/networks" \
    -d '{"network": {"name": "public", "router:external": true}}' \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["network"]["id"])') || return 1
  curl -sf -H "X-Auth-Token: $token" -H 'Content-Type: application/json' "$base/network/v2.0/subnets" \
    -d "{\"subnet\": {\"network_id\": \"$net\", \"ip_version\": 4, \"cidr\": \"172.24.4.0/24\", \"enable_dhcp\": false}}" \
    >/dev/null || return 1
  echo "$net"
}

# The auth URL may be versionless (kumo's /identity, devstack's): its version list is a 300.
# Wait for the v3 document, which is a 200 on every target.
V3_URL=${AUTH_URL%/}; [[ $V3_URL == */v3 ]] || V3_URL=$V3_URL/v3
wait_http_200 "$V3_URL" 30 || fail_setup "$V3_URL does not answer 200"

export OS_AUTH_URL=$AUTH_URL OS_USERNAME=admin OS_PASSWORD=$ADMIN_PW OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default OS_REGION_NAME=RegionOne
if [[ $SERVICE == volume ]]; then
  # the image volume-from-image tests copy (a 1 MiB qcow2)
  command -v qemu-img >/dev/null || fail_setup "qemu-img (qemu-utils) is needed for the volume tests"
  IMAGE_REF=$(upload_image "$V3_URL" "tempest-volume-image" "$WORK/disk.qcow2") || fail_setup "image upload failed"
  export IMAGE_REF
  blog "image $IMAGE_REF"
elif [[ $SERVICE == compute ]]; then
  # two small bootable images (the alt one for rebuild) and two flavors (the alt one for resize)
  command -v qemu-img >/dev/null || fail_setup "qemu-img (qemu-utils) is needed for the compute images"
  IMAGE_REF=$(upload_image "$V3_URL" "tempest-cirros" "$WORK/disk.qcow2") || fail_setup "image upload failed"
  IMAGE_REF_ALT=$(upload_image "$V3_URL" "tempest-cirros-alt" "$WORK/disk.qcow2") \
    || fail_setup "image upload failed"
  export IMAGE_REF IMAGE_REF_ALT FLAVOR_REF=${FLAVOR_REF:-42} FLAVOR_REF_ALT=${FLAVOR_REF_ALT:-84}
  blog "images $IMAGE_REF, $IMAGE_REF_ALT; flavors $FLAVOR_REF (m1.nano), $FLAVOR_REF_ALT (m1.micro)"
  export COMPUTE_MIN_MICROVERSION=2.1 COMPUTE_MAX_MICROVERSION=2.72
  # Neutron and Cinder are kumo's too: Tempest makes a network, subnet and router per test
  # project (the router's gateway on the public network below), as on devstack
  export TEMPEST_CREATE_ISOLATED_NETWORKS=true
  # what kumo's compute has (the runner already turns off migration, consoles, change_password,
  # personality, volume multiattach/swap/encryption)
  TEMPEST_CONF_OVERRIDES+=" compute-feature-enabled.pause=True compute-feature-enabled.suspend=True"
  TEMPEST_CONF_OVERRIDES+=" compute-feature-enabled.shelve=True compute-feature-enabled.snapshot=True"
  TEMPEST_CONF_OVERRIDES+=" compute-feature-enabled.rescue=False compute-feature-enabled.interface_attach=False"
  TEMPEST_CONF_OVERRIDES+=" compute-feature-enabled.console_output=True compute-feature-enabled.resize=True"
  TEMPEST_CONF_OVERRIDES+=" compute-feature-enabled.config_drive=False compute-feature-enabled.metadata_service=False"
else
  export IMAGE_REF=${IMAGE_REF:-00000000-0000-0000-0000-000000000000}   # not used by these tests
fi
if [[ $SERVICE == network || $SERVICE == volume || $SERVICE == compute ]]; then
  # the external network Tempest's router and floating IP tests put gateways on (devstack's public)
  PUBLIC_NETWORK_ID=$(create_public_network "$V3_URL") || fail_setup "creating the public network failed"
  export PUBLIC_NETWORK_ID PUBLIC_NETWORK_NAME=public
  # kumo's subnets take ipv6_ra_mode/ipv6_address_mode (the DHCPv6 test class runs)
  TEMPEST_CONF_OVERRIDES+=" network-feature-enabled.ipv6_subnet_attributes=True"
  blog "public network $PUBLIC_NETWORK_ID (172.24.4.0/24)"
fi
export TEMPEST_SERVICES=$SVC_AVAILABLE
export IDENTITY_SECURITY_COMPLIANCE=true
export TEMPEST_CONF_OVERRIDES="identity.user_lockout_failure_attempts=$LOCKOUT_FAILURE_ATTEMPTS identity.user_lockout_duration=$LOCKOUT_DURATION identity.user_unique_last_password_count=$UNIQUE_LAST_PASSWORD_COUNT${TEMPEST_CONF_OVERRIDES:+ $TEMPEST_CONF_OVERRIDES}"
if [[ $SERVICE == image ]]; then
  TEMPEST_CONF_OVERRIDES+=" image-feature-enabled.image_format_enforcement=False"
  export IMAGE_IMPORT=${IMAGE_IMPORT:-true}
fi
export TEMPEST_VENV=${TEMPEST_VENV:-$KUMO_CACHE/tempest-venv-47.0.0}
export TEMPEST_WORKSPACE=$WORK/workspace
blog "target=$TARGET auth=$OS_AUTH_URL list=$LIST"

# Stream the runner's output but hold its summary line back: it is printed last, after the
# server has been stopped, so that it stays the last line.
set +e
(cd "$WORK" && "$RUNNER" "$LIST" --concurrency "$CONCURRENCY") 2>&1 | tee "$WORK/tempest.out" \
  | grep --line-buffered -vE '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$'
rc=${PIPESTATUS[0]}
set -e
SUMMARY=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$WORK/tempest.out" | tail -1 || true)
if [[ $rc -ne 0 || -z $SUMMARY ]] && [[ -f $TEMPEST_WORKSPACE/logs/tempest.log ]]; then
  KEEP_LOG=$(mktemp /tmp/kumo-tempest-$SERVICE-log.XXXXXX)
  cp "$TEMPEST_WORKSPACE/logs/tempest.log" "$KEEP_LOG"; blog "tempest log kept: $KEEP_LOG"
fi
stop_server
[[ -n $SUMMARY ]] || { SUMMARY="0 passed, 1 failed, 0 skipped"; rc=1; }
echo "$SUMMARY"
exit "$rc"
