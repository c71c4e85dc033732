#!/usr/bin/env bash
# bench/testing/fake-kumo.sh - TEST DOUBLE for validating bench/ and tests/tempest/ before kumo
# exists. It is NOT kumo: it speaks kumo's CLI contract (up/down, --state-dir, --listen,
# kumo.conf, ADMIN_PASSWORD, kumo.pid, openrc, logs/) but serves the real Keystone, started by
# ../shared/peer/keystone.sh in STATE/peer. Run a bench or Tempest with KUMO_BIN pointing here:
# the kumo-side figures must then match the peer's (ratios ~1.0) and Tempest must match
# `--target keystone-peer`.
#
#   fake-kumo.sh up [--state-dir DIR] [--listen 127.0.0.1:PORT] [--config FILE] [--foreground ignored]
#   fake-kumo.sh down [--state-dir DIR]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
BENCH_TAG=fake-kumo
. "$HERE/../lib/common.sh"

cmd=${1:-}; shift || true
STATE=$HOME/.kumo LISTEN=127.0.0.1:5000 CONFIG=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --state-dir) STATE=$2; shift 2;;
    --listen) LISTEN=$2; shift 2;;
    --config) CONFIG=$2; shift 2;;
    --demo|--foreground) shift;;
    *) echo "fake-kumo: unknown argument $1" >&2; exit 2;;
  esac
done
mkdir -p "$STATE"; STATE=$(cd "$STATE" && pwd -P)
CONFIG=${CONFIG:-$STATE/kumo.conf}

# ini_get SECTION KEY: value from the oslo-style config (empty if absent).
ini_get() {
  [[ -f $CONFIG ]] || return 0
  awk -v s="[$1]" -v k="$2" '
    /^[[:space:]]*[#;]/ {next}
    /^[[:space:]]*\[/ {sec=$0; gsub(/[[:space:]]/, "", sec); next}
    sec==s { split($0, a, "="); key=a[1]; gsub(/[[:space:]]/, "", key)
             if (key==k) { v=substr($0, index($0, "=")+1); gsub(/^[[:space:]]+|[[:space:]]+$/, "", v); print v } }' "$CONFIG"
}

case "$cmd" in
  up)
    port=${LISTEN##*:}
    [[ $port == 0 ]] && port=$(free_port)
    mkdir -p "$STATE/logs"
    peer_ensure_venv
    peer_prepare_dir "$STATE/peer"
    rounds=$(ini_get identity password_hash_rounds)
    [[ -n $rounds ]] && export KEYSTONE_PASSWORD_HASH_ROUNDS=$rounds
    # oslo.config reads OS_<GROUP>__<OPTION> from the environment (before the config files)
    for opt in lockout_failure_attempts lockout_duration unique_last_password_count minimum_password_age; do
      v=$(ini_get security_compliance "$opt")
      [[ -n $v ]] && export "OS_SECURITY_COMPLIANCE__${opt^^}=$v"
    done
    pw=${ADMIN_PASSWORD:-}
    if [[ -z $pw ]]; then
      [[ -f $STATE/admin-password ]] || { python3 -c 'import secrets; print(secrets.token_urlsafe(12))' > "$STATE/admin-password"; chmod 600 "$STATE/admin-password"; }
      pw=$(cat "$STATE/admin-password")
    else
      (umask 077; echo "$pw" > "$STATE/admin-password")
    fi
    ADMIN_PASSWORD=$pw peer_cmd "$STATE/peer" start --port "$port" 2>>"$STATE/logs/kumo.log"
    cp "$STATE/peer/keystone/keystone.pid" "$STATE/kumo.pid"
    cat > "$STATE/openrc" <<EOF
export OS_AUTH_URL=http://127.0.0.1:$port/v3
export OS_USERNAME=admin
export OS_PASSWORD=$pw
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=RegionOne
export OS_IDENTITY_API_VERSION=3
EOF
    echo "kumo is up at http://127.0.0.1:$port/ (pid $(cat "$STATE/kumo.pid")) [FAKE: real Keystone behind]"
    ;;
  down)
    if [[ -d $STATE/peer ]]; then peer_cleanup "$STATE/peer" 2>>"$STATE/logs/kumo.log"; fi
    rm -f "$STATE/kumo.pid"
    ;;
  *) echo "usage: fake-kumo.sh up|down [--state-dir DIR] [--listen HOST:PORT]" >&2; exit 2;;
esac
