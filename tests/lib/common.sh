# shellcheck shell=bash
# shellcheck disable=SC2034 # the KUMO_PKGS_* lists and KUMO_SERVICES are used by the scripts that source this
# Shared helpers for stack.sh, run_tests.sh and friends. Source it; it defines functions only.
#
#   kumo_ensure_packages LIST...   install the Debian packages of the named lists that are missing
#   kumo_require_cargo             exit 1 with install instructions when cargo is missing
#   kumo_test_venv                 create (once) and print the path of the test venv
#   kumo_guest_image [ROOT]        build (or reuse the cached) kumo-tiny guest image, print its path
#   kumo_iniset FILE SECTION NAME VALUE   set one option of an INI file (devstack's iniset)
#
# The Debian packages the project needs, in one place. Lists by purpose:
#   build : what `cargo build` of the workspace needs (C compiler for bundled SQLite, ring, ...)
#   tools : what the scripts and kumo itself use (qemu-utils: qemu-img checks image data;
#           qemu-system-common: qemu-storage-daemon, the NBD exports of volumes to other hosts)
#   tests : what the tests need: memcached (the real Keystone "peer" caches with it);
#           PostgreSQL and MariaDB (throwaway servers under every service, tests/e2e/dbservers.py);
#           rabbitmq-server (crates/bus/tests/rabbitmq.rs runs a private node of it on free
#           loopback ports); the system services are not used; chromium (the browser the
#           dashboard tests drive with Playwright, never a downloaded one)
#   guest : real guests (compute_driver = qemu): QEMU (qemu-system-x86 and qemu-utils of one
#           release, see kumo_apt_args), noVNC (the console proxy serves it), what
#           tools/guest-image/build.sh, boot-test.sh and tools/cloud-image/build.sh use
#   network : the network data plane (crates/dataplane): ip, nft, dnsmasq in namespaces; its tests
#           also use busybox's udhcpc and ping
#   peer_compute : what ../shared/peer/nova.sh (the real Nova, bench/compute.sh) needs: private
#           RabbitMQ and MariaDB instances (their system services are not used), a C compiler
#           for the uWSGI that pip builds, python3-venv for the venvs
KUMO_PKGS_build=(build-essential pkg-config)
KUMO_PKGS_tools=(curl qemu-utils qemu-system-common)
KUMO_PKGS_tests=(memcached postgresql mariadb-server rabbitmq-server chromium)
KUMO_PKGS_guest=(qemu-system-x86 qemu-utils novnc syslinux syslinux-common dosfstools mtools fdisk cpio kmod
  genisoimage socat openssh-client debootstrap e2fsprogs)
KUMO_PKGS_network=(iproute2 nftables dnsmasq-base radvd busybox-static iputils-ping)
KUMO_PKGS_peer_compute=(build-essential curl python3-venv memcached rabbitmq-server mariadb-server)

kumo_log() { printf '%s\n' "[${KUMO_LOG_TAG:-kumo}] $*" >&2; }

# True when the Debian package is installed.
kumo_pkg_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# kumo_apt_args PKG...: the apt-get install arguments for these missing packages, one a line.
# qemu-system-x86 and qemu-utils must be of one QEMU release: installing Debian's qemu-system-x86
# alone removes a qemu-utils from another release (backports). So qemu-system-x86 comes with
# qemu-utils pinned to its candidate version, in the same call; a missing qemu-utils alone is pinned
# to the installed qemu-system-x86's version. A pin is dropped when apt has no such qemu-utils.
kumo_apt_args() {
  local p sys=0 utils=0 v=""
  for p in "$@"; do
    case $p in
      qemu-system-x86) sys=1;;
      qemu-utils) utils=1;;
      *) echo "$p";;
    esac
  done
  ((sys || utils)) || return 0
  if ((sys)); then
    v=$(apt-cache policy qemu-system-x86 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }')
    echo "qemu-system-x86${v:+=$v}"
  else
    v=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
  fi
  if [[ -n $v ]] && apt-cache show "qemu-utils=$v" >/dev/null 2>&1; then
    echo "qemu-utils=$v"
  else
    echo qemu-utils
  fi
}

kumo_ensure_packages() {
  local list pkg missing=()
  if ! command -v dpkg-query >/dev/null; then
    local all=()
    for list in "$@"; do local -n l="KUMO_PKGS_$list"; all+=("${l[@]}"); unset -n l; done
    kumo_log "not a Debian-like system (no dpkg-query): install by hand: ${all[*]}"
    return 0
  fi
  for list in "$@"; do
    local -n pkgs="KUMO_PKGS_$list"
    for pkg in "${pkgs[@]}"; do
      kumo_pkg_installed "$pkg" || missing+=("$pkg")
    done
    unset -n pkgs
  done
  # python3 -m venv needs ensurepip; Debian's python3 has it only with python3-venv.
  if [[ " $* " == *" tests "* ]] && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    missing+=(python3-venv)
  fi
  ((${#missing[@]})) || return 0
  local sudo=()
  if ((EUID != 0)); then
    if command -v sudo >/dev/null; then sudo=(sudo); else
      kumo_log "missing Debian packages: ${missing[*]}; run as root: apt-get install -y ${missing[*]}"
      return 1
    fi
  fi
  kumo_log "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  local args=()
  mapfile -t args < <(kumo_apt_args "${missing[@]}")
  # --allow-downgrades: a pinned qemu-utils may be older than the installed one (backports)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    --allow-downgrades "${args[@]}" >/dev/null
}

kumo_require_cargo() {
  if ! command -v cargo >/dev/null; then
    [[ -x $HOME/.cargo/bin/cargo ]] && export PATH=$HOME/.cargo/bin:$PATH
  fi
  if ! command -v cargo >/dev/null; then
    cat >&2 <<'EOF'
cargo (the Rust toolchain) is not installed, and kumo is built from source with it.
Install Rust with rustup, then run this script again:

    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    source "$HOME/.cargo/env"

(or see https://rustup.rs ; kumo needs Rust 1.95 or newer)
EOF
    return 1
  fi
}

# Path of the test venv for tests/requirements.txt and the current python3. The name carries a hash
# of both, so a changed pin or interpreter gets a fresh venv; an existing complete one is reused.
kumo_test_venv_path() {
  local root=$1 py=${KUMO_PYTHON:-python3} hash
  hash=$({ cat "$root/tests/requirements.txt"; "$py" -c 'import sys, platform; print(platform.python_implementation(), sys.version)'; } \
    | sha256sum | cut -c1-12)
  echo "${KUMO_CACHE_DIR:-$HOME/.cache/kumo}/venv-$hash"
}

kumo_test_venv() {
  local root=$1 py=${KUMO_PYTHON:-python3} venv
  venv=$(kumo_test_venv_path "$root")
  if [[ -f $venv/.complete ]] && "$venv/bin/python" -c 'import openstack, pytest' 2>/dev/null; then
    echo "$venv"; return 0
  fi
  kumo_log "creating test venv $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$py" -m venv "$venv" >&2
  "$venv/bin/pip" install -q --upgrade pip >&2 || true
  if ! "$venv/bin/pip" install -q -r "$root/tests/requirements.txt" >&2; then
    rm -rf "$venv"; kumo_log "pip install -r tests/requirements.txt failed"; return 1
  fi
  touch "$venv/.complete"
  echo "$venv"
}

# ---------------------------------------------------------------- devstack's local.conf
# kumo_read_local_conf FILE: source the [[local|localrc]] section of FILE (devstack's format; a plain
# `localrc` file is read whole) with enable_service/disable_service/disable_all_services defined.
# Sets KUMO_SERVICES (comma list) when the file changed the service set, else leaves it empty.
KUMO_ALL_SERVICES=(identity compute image network volume placement dashboard)
KUMO_SERVICES=""
_kumo_services=("${KUMO_ALL_SERVICES[@]}")
_kumo_services_changed=0

# devstack service name -> kumo service name ("" = nothing to do in kumo)
kumo_service_name() {
  case "$1" in
    identity|compute|image|network|volume|placement|dashboard) echo "$1";;
    key|keystone|key-*) echo identity;;
    n-*|nova|nova-*) echo compute;;
    g-*|glance|glance-*) echo image;;
    q-*|neutron|neutron-*) echo network;;
    c-*|cinder|cinder-*) echo volume;;
    placement-*) echo placement;;
    horizon) echo dashboard;;
    *) echo "";;
  esac
}

enable_service() {
  local s k; _kumo_services_changed=1
  # shellcheck disable=SC2048 # split "a,b c" into words on purpose
  for s in ${*//,/ }; do
    k=$(kumo_service_name "$s")
    if [[ -z $k ]]; then kumo_log "local.conf: service '$s' has no kumo counterpart; ignored"; continue; fi
    [[ " ${_kumo_services[*]} " == *" $k "* ]] || _kumo_services+=("$k")
  done
}

disable_service() {
  local s k keep x; _kumo_services_changed=1
  # shellcheck disable=SC2048 # split "a,b c" into words on purpose
  for s in ${*//,/ }; do
    k=$(kumo_service_name "$s")
    [[ -n $k ]] || continue
    keep=()
    for x in "${_kumo_services[@]}"; do [[ $x == "$k" ]] || keep+=("$x"); done
    _kumo_services=("${keep[@]}")
  done
}

disable_all_services() { _kumo_services_changed=1; _kumo_services=(); }

kumo_read_local_conf() {
  local file=$1 section
  [[ -f $file ]] || return 0
  section=$(mktemp)
  if [[ $(basename "$file") == localrc ]]; then
    cat "$file" > "$section"
  else
    awk '/^\[\[/ { on = ($0 ~ /^\[\[ *local *\| *localrc *\]\]/); next } on' "$file" > "$section"
  fi
  # devstack sources this section as shell; so do we (it is the user's own file)
  # shellcheck disable=SC1090
  source "$section"
  rm -f "$section"
  if ((_kumo_services_changed)); then
    KUMO_SERVICES=$(IFS=,; echo "${_kumo_services[*]}")
  fi
}

# kumo_guest_image [ROOT]: build the kumo-tiny guest image with tools/guest-image/build.sh (cached in
# ~/.cache/kumo/images by a content key: ~1 s when cached) and print its path.
kumo_guest_image() {
  local root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)} out
  out=$("$root/tools/guest-image/build.sh") || { kumo_log "tools/guest-image/build.sh failed"; return 1; }
  out=$(tail -n1 <<<"$out")
  if [[ ! -f $out ]]; then
    kumo_log "tools/guest-image/build.sh printed no image path"
    return 1
  fi
  echo "$out"
}

# kumo_iniset FILE SECTION NAME VALUE: set NAME in [SECTION] of FILE (created if missing), keeping
# everything else; the first `NAME =` line of the section is replaced, else one is added.
kumo_iniset() {
  local file=$1 section=$2 name=$3 value=$4 tmp
  [[ -f $file ]] || : >"$file"
  tmp=$(mktemp "$file.XXXXXX")
  awk -v sec="$section" -v name="$name" -v val="$value" '
    function flush() { if (insec && !done) { print name " = " val; done = 1 } }
    /^[ \t]*\[[^]]*\][ \t]*$/ {
      s = $0; gsub(/^[ \t]*\[|\][ \t]*$/, "", s)
      flush(); insec = (s == sec); if (insec) seen = 1
      print; next
    }
    insec && !done && $0 ~ "^[ \t]*" name "[ \t]*=" { print name " = " val; done = 1; next }
    { print }
    END { flush(); if (!seen) { print ""; print "[" sec "]"; print name " = " val } }
  ' "$file" >"$tmp" && chmod --reference="$file" "$tmp" && mv "$tmp" "$file"
}

# kumo_state_dir: where kumo keeps its state (KUMO_STATE_DIR, else ~/.kumo)
kumo_state_dir() { echo "${KUMO_STATE_DIR:-$HOME/.kumo}"; }

# kumo_bin ROOT: the kumo binary (KUMO_BIN, else the release build)
kumo_bin() { echo "${KUMO_BIN:-${CARGO_TARGET_DIR:-$1/target}/release/kumo}"; }

# kumo_guest_pids STATE_DIR: the pids of the QEMU guests of that state dir that run (each checked
# against its command line, which names the instance uuid: a reused pid is never taken).
kumo_guest_pids() {
  local dir pid uuid
  for dir in "$1"/instances/*/; do
    [[ -f $dir/qemu.pid ]] || continue
    uuid=$(basename "$dir")
    pid=$(tr -dc 0-9 <"$dir/qemu.pid")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || continue
    tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "$uuid" && echo "$pid"
  done
  return 0
}

# kumo_stop_guests STATE_DIR: stop the state dir's QEMU guests (SIGTERM: QEMU shuts down at once;
# SIGKILL after 10 s), by pid. Guests outlive `kumo down` by design; this is for ./clean.sh.
kumo_stop_guests() {
  local pids pid
  mapfile -t pids < <(kumo_guest_pids "$1")
  ((${#pids[@]})) || return 0
  kumo_log "stopping ${#pids[@]} guest(s) of $1"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 100); do
    mapfile -t pids < <(kumo_guest_pids "$1")
    ((${#pids[@]})) || return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

# kumo_export_pids STATE_DIR: pids of the state dir's NBD export daemons (qemu-storage-daemon
# started with a pid file in volume-exports/), checked against /proc/PID/cmdline.
kumo_export_pids() {
  local f pid
  for f in "$1"/volume-exports/*.pid; do
    [[ -f $f ]] || continue
    pid=$(tr -dc 0-9 <"$f")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || continue
    tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "$f" && echo "$pid"
  done
  return 0
}

# kumo_stop_exports STATE_DIR: stop the state dir's NBD export daemons by pid (they outlive
# `kumo down` by design, as guests do: guests of other hosts read them); for ./clean.sh.
kumo_stop_exports() {
  local pids
  mapfile -t pids < <(kumo_export_pids "$1")
  ((${#pids[@]})) || return 0
  kumo_log "stopping ${#pids[@]} NBD export(s) of $1"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    mapfile -t pids < <(kumo_export_pids "$1")
    ((${#pids[@]})) || return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}
