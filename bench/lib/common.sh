# shellcheck shell=bash
# bench/lib/common.sh - helpers shared by bench/*.sh and tests/tempest/run.sh.
# Source it; it does nothing on its own.
#
# Caches (all reused between runs, never inside the repository):
#   KUMO_CACHE       ~/.cache/kumo
#   KUMO_TOOLS       $KUMO_CACHE/tools          (oha built by cargo install --root)
#   KUMO_PEER_CACHE  $KUMO_CACHE/peer           (venvs of the real Keystone, Glance, Nova: peer_*_ensure_venv*)

KUMO_CACHE=${KUMO_CACHE:-$HOME/.cache/kumo}
KUMO_TOOLS=${KUMO_TOOLS:-$KUMO_CACHE/tools}
KUMO_PEER_CACHE=${KUMO_PEER_CACHE:-$KUMO_CACHE/peer}

# Repository root (works from a worktree too) and the shared/ folder beside it.
BENCH_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(git -C "$BENCH_LIB_DIR" rev-parse --show-toplevel 2>/dev/null || (cd "$BENCH_LIB_DIR/../.." && pwd -P))
SHARED_DIR=${KUMO_SHARED_DIR:-$REPO_ROOT/../shared}
[[ -d $SHARED_DIR ]] && SHARED_DIR=$(cd "$SHARED_DIR" && pwd -P)
PEER_DIR=$SHARED_DIR/peer

blog() { printf '[%s] %s\n' "${BENCH_TAG:-bench}" "$*" >&2; }
bdie() { blog "ERROR: $*"; exit 2; }

# A free TCP port on 127.0.0.1 (bind to port 0, read it back, release it).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Path of the kumo binary: $KUMO_BIN, else target/release/kumo of this tree.
kumo_bin() {
  local b=${KUMO_BIN:-$REPO_ROOT/target/release/kumo}
  [[ $b == /* ]] || b=$(cd "$(dirname "$b")" 2>/dev/null && pwd -P)/$(basename "$b")
  echo "$b"
}

# wait_http_200 URL SECONDS: poll until GET URL answers 200 (returns 1 on timeout).
wait_http_200() {
  local url=$1 deadline=$(( $(date +%s) + ${2:-30} ))
  while (( $(date +%s) < deadline )); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null) == 200 ]] && return 0
    sleep 0.05
  done
  return 1
}

# bench_stop_kumo KUMO STATE: `kumo down` of the kumo serving STATE, then SIGKILL by the pid in
# STATE/kumo.pid if that process is still a kumo 10 s later (never by name). For EXIT traps.
bench_stop_kumo() {
  local kumo=$1 state=$2 pid="" exe
  if [[ -f $state/kumo.pid ]]; then pid=$(head -c 32 "$state/kumo.pid" | tr -dc 0-9); fi
  "$kumo" down --state-dir "$state" >/dev/null 2>&1
  [[ -n $pid ]] || return 0
  for _ in $(seq 100); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null)
  if [[ -n $exe && $(basename "$exe") == kumo* ]]; then
    blog "kumo (pid $pid) still running after kumo down: killing it"
    kill -KILL "$pid"
  fi
  return 0
}

# For benches of one kumo on a free port in a temp state dir (ADMIN_PASSWORD=secret):
#   bench_kumo_setup NAME   sets OUT (--out or a temp dir), WORK, STATE, KUMO, PASSWORD and an EXIT
#                           trap that stops that kumo and removes WORK
#   bench_kumo_up PATH      starts `kumo up` with STATE/kumo.conf (which the caller wrote
#                           first), waits for BASE/PATH to answer 200; sets PORT and BASE
bench_kumo_setup() {
  local name=$1
  OUT=${OUT:-$(mktemp -d "/tmp/kumo-bench-$name.XXXXXX")}
  mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd -P)
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/kumo-bench-$name-work.XXXXXX")
  STATE=$WORK/kumo
  KUMO=$(kumo_bin)
  PASSWORD=secret
  trap bench_kumo_cleanup EXIT INT TERM
  [[ -x $KUMO ]] || bdie "no kumo binary at $KUMO (cargo build --release -p kumo)"
  mkdir -p "$STATE"
}

# shellcheck disable=SC2317,SC2329 # run by the EXIT trap of bench_kumo_setup
bench_kumo_cleanup() {
  local rc=$?
  set +e
  bench_stop_kumo "$KUMO" "$STATE"
  rm -rf "$WORK"
  exit "$rc"
}

bench_kumo_up() {
  PORT=$(free_port)
  blog "kumo: $KUMO up --state-dir $STATE --listen 127.0.0.1:$PORT"
  ADMIN_PASSWORD=$PASSWORD "$KUMO" up --state-dir "$STATE" --listen "127.0.0.1:$PORT" \
    --config "$STATE/kumo.conf" >"$OUT/kumo-start.log" 2>&1 \
    || { tail -20 "$OUT/kumo-start.log" >&2; bdie "kumo up failed"; }
  BASE=http://127.0.0.1:$PORT
  wait_http_200 "$BASE$1" 30 || bdie "$BASE$1 does not answer 200"
}

# Install a Debian package if the given command is missing (idempotent; root + apt only).
ensure_deb() { # ensure_deb COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || { blog "$1 missing and no apt-get: install $2 by hand"; return 1; }
  local sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo -n"
  blog "installing Debian package $2"
  { $sudo apt-get install -y -qq "$2" || { $sudo apt-get update -qq && $sudo apt-get install -y -qq "$2"; }; } >&2 \
    || { blog "could not install $2"; return 1; }
  command -v "$1" >/dev/null 2>&1
}

# --- oha (HTTP load generator used by ../shared/peer/bench-*.sh) -------------------------
# oha_path: prints the oha to use, or nothing.
oha_path() {
  if [[ -n ${OHA:-} && -x ${OHA:-} ]]; then echo "$OHA"; return; fi
  if command -v oha >/dev/null 2>&1; then command -v oha; return; fi
  if [[ -x $KUMO_TOOLS/bin/oha ]]; then echo "$KUMO_TOOLS/bin/oha"; return; fi
}
# oha_install_start: if oha is missing, start `cargo install oha` in the background (it compiles
# for minutes) and set OHA_INSTALL_PID; call oha_install_wait before using it.
OHA_INSTALL_PID=""
oha_install_start() {
  [[ -n $(oha_path) ]] && return 0
  command -v cargo >/dev/null 2>&1 || bdie "oha is not installed and cargo is missing (install Rust, or put oha on PATH)"
  mkdir -p "$KUMO_TOOLS"
  blog "oha not found: cargo install oha --locked --root $KUMO_TOOLS (background; log $KUMO_TOOLS/oha-install.log)"
  # flock: two runs at once build it only once.
  ( flock 9; [[ -x $KUMO_TOOLS/bin/oha ]] || cargo install oha --locked --root "$KUMO_TOOLS" ) \
    9>"$KUMO_TOOLS/.oha-install.lock" >"$KUMO_TOOLS/oha-install.log" 2>&1 &
  OHA_INSTALL_PID=$!
}
oha_install_wait() {
  if [[ -n $OHA_INSTALL_PID ]]; then
    blog "waiting for the oha build to finish"
    wait "$OHA_INSTALL_PID" || { tail -20 "$KUMO_TOOLS/oha-install.log" >&2; bdie "cargo install oha failed"; }
    OHA_INSTALL_PID=""
  fi
  OHA=$(oha_path)
  [[ -n $OHA ]] || { oha_install_start; oha_install_wait; return; }
  export OHA
}

# --- is the machine quiet? ---------------------------------------------------------------
# cpu_busy_pct [SECONDS]: percent of all CPU time not idle over SECONDS (default 3), from /proc/stat.
cpu_busy_pct() {
  local a b; a=$(head -1 /proc/stat); sleep "${1:-3}"; b=$(head -1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { n=split(a, x); split(b, y); t=0
    for (i=2; i<=n; i++) t += y[i]-x[i]; idle = (y[5]-x[5]) + (y[6]-x[6])
    printf "%d", (t > 0 ? 100*(t-idle)/t : 0) }'
}
# wait_quiet MAX_SECONDS [THRESHOLD]: wait until cpu_busy_pct < THRESHOLD (default 25) or
# MAX_SECONDS passed; prints the last busy percent.
wait_quiet() {
  local deadline=$(( $(date +%s) + ${1:-0} )) busy
  while :; do
    busy=$(cpu_busy_pct 3)
    (( busy < ${2:-25} )) && break
    (( $(date +%s) >= deadline )) && break
    blog "machine busy (${busy}% CPU over 3 s): waiting"
  done
  echo "$busy"
}

# --- memory --------------------------------------------------------------------------------
# rss_kib PID: VmRSS of one process (KiB).
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# rss_tree_kib PID: summed RSS (KiB) of PID and all its descendants.
rss_tree_kib() {
  ps -e -o pid=,ppid=,rss= | awk -v root="$1" '
    { pp[$1]=$2; rss[$1]=$3 }
    END { t=0; for (p in pp) { q=p; n=0; while (q != "" && n < 64) { if (q == root) { t += rss[p]; break } q = pp[q]; n++ } } print t }'
}

# --- the peer Keystone (../shared/peer/keystone.sh) ----------------------------------------
# The venv (pip install keystone + a uWSGI built from source: minutes) is kept once in
# $KUMO_PEER_CACHE/keystone/venv. Every run gets a fresh state dir (database, keys, config,
# logs) whose keystone/venv is a symlink to that venv, so the database starts empty each time,
# like kumo's fresh state dir. keystone.sh is always run from an empty working directory:
# uWSGI puts the cwd on sys.path, and a stray *.py there (e.g. in /tmp) breaks the import.
PEER_KEYSTONE_VERSION=${KEYSTONE_VERSION:-30.0.0}
peer_venv_ready() {
  local stamp=$KUMO_PEER_CACHE/keystone/venv/.kumo-peer-installed
  [[ -f $stamp ]] && grep -q "^keystone==$PEER_KEYSTONE_VERSION " "$stamp"
}
peer_ensure_venv() {
  [[ -x $PEER_DIR/keystone.sh ]] || bdie "peer scripts not found at $PEER_DIR (expected shared/ beside the repository)"
  peer_venv_ready && return 0
  blog "installing the peer Keystone venv into $KUMO_PEER_CACHE (first time only; takes minutes)"
  mkdir -p "$KUMO_PEER_CACHE/run"
  local port; port=$(free_port)
  ( cd "$KUMO_PEER_CACHE/run" && KEYSTONE_CACHE=none "$PEER_DIR/keystone.sh" start --port "$port" --dir "$KUMO_PEER_CACHE" ) >&2 \
    || { ( cd "$KUMO_PEER_CACHE/run" && "$PEER_DIR/keystone.sh" stop --dir "$KUMO_PEER_CACHE" ) >&2 || true
         bdie "the peer Keystone did not start once; see $KUMO_PEER_CACHE/keystone/keystone.log"; }
  ( cd "$KUMO_PEER_CACHE/run" && "$PEER_DIR/keystone.sh" stop --dir "$KUMO_PEER_CACHE" ) >&2 || true
  peer_venv_ready || bdie "peer venv not ready after install"
}
# peer_prepare_dir DIR: a fresh peer state dir using the cached venv, with its own memcached.
# keystone.sh points Keystone at memcached on the fixed port 11211 (and starts one there if none
# listens). Other Keystones on this machine (other sessions, other runs) may share that port, and
# then they read each other's cached entries (e.g. project "admin" by name in domain "default"),
# which gives wrong answers (401 on a correct password), and one run's `stop` kills the memcached
# another run uses. So each peer gets the same cache settings as keystone.sh's (dogpile.cache.
# memcached, 64 MB) on a memcached of its own on a free port: KEYSTONE_CACHE=none keeps keystone.sh
# away from 11211, and oslo.config's environment source (OS_<GROUP>__<OPTION>, read before the
# config files) turns the cache back on. The memcached outlives keystone.sh stop/start (as a
# separate service in devstack); peer_cleanup stops it.
peer_prepare_dir() {
  local dir=$1
  mkdir -p "$dir/keystone" "$dir/cwd"
  ln -sfn "$KUMO_PEER_CACHE/keystone/venv" "$dir/keystone/venv"
  : > "$dir/peer.env"
  if [[ ${KEYSTONE_CACHE:-memcache} == memcache ]] && command -v memcached >/dev/null 2>&1; then
    local port; port=$(free_port)
    memcached -d -l 127.0.0.1 -p "$port" -m 64 -u "$(id -un)" -P "$dir/memcached.pid" \
      || bdie "could not start memcached on 127.0.0.1:$port"
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    printf '%s\n' KEYSTONE_CACHE=none OS_CACHE__ENABLED=true OS_CACHE__BACKEND=dogpile.cache.memcached \
      "OS_CACHE__MEMCACHE_SERVERS=127.0.0.1:$port" > "$dir/peer.env"
  else
    echo KEYSTONE_CACHE=none > "$dir/peer.env"
    blog "no memcached: the peer runs without its cache (not devstack-like)"
  fi
}
# peer_cleanup DIR: stop the peer Keystone and its memcached (by pid files).
peer_cleanup() {
  local dir=$1
  [[ -f $dir/keystone/keystone.pid ]] && peer_cmd "$dir" stop >/dev/null 2>&1
  if [[ -f $dir/memcached.pid ]]; then
    local p; p=$(cat "$dir/memcached.pid")
    if [[ -n $p ]] && kill "$p" 2>/dev/null; then
      for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$dir/memcached.pid"
  fi
  return 0
}
# peer_cmd DIR start|stop [--port N]: keystone.sh run from DIR/cwd (empty) with PYTHONPATH unset
# and DIR/peer.env in its environment.
peer_cmd() {
  local dir=$1; shift
  local envs=(); [[ -f $dir/peer.env ]] && mapfile -t envs < "$dir/peer.env"
  ( cd "$dir/cwd" && env -u PYTHONPATH "${envs[@]}" "$PEER_DIR/keystone.sh" "$@" --dir "$dir" )
}
# The same, as a one-line command string (for bench-identity.sh --start-cmd/--stop-cmd).
peer_cmd_string() {
  local dir=$1; shift
  local envs=(); [[ -f $dir/peer.env ]] && mapfile -t envs < "$dir/peer.env"
  printf 'cd %q && env -u PYTHONPATH' "$dir/cwd"
  printf ' %q' "${envs[@]}" "$PEER_DIR/keystone.sh" "$@" --dir "$dir"
}

# free_port_block N: the first of N consecutive free TCP ports on 127.0.0.1 (each bound once
# to check, then released); for servers that take port, port+1, ... (RabbitMQ: AMQP, Erlang
# distribution, epmd). Keeps clear of 35672-35682 (rabbitmqctl's own distribution ports).
free_port_block() {
  python3 - "${1:-1}" <<'PY'
import socket, sys
n = int(sys.argv[1])
for _ in range(200):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); base = s.getsockname()[1]; s.close()
    if base + n > 65535 or (base <= 35682 and base + n > 35672):
        continue
    held, ok = [], True
    for p in range(base, base + n):
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", p)); held.append(t)
        except OSError:
            ok = False; t.close(); break
    for t in held:
        t.close()
    if ok:
        print(base); sys.exit(0)
sys.exit("no block of %d free ports found" % n)
PY
}

# --- the peer Glance (../shared/peer/glance.sh) ---------------------------------------------
# Its venv (pip install glance + uWSGI built from source) is made once in
# $KUMO_PEER_CACHE/glance/venv by starting glance.sh there once; runs link to it.
peer_glance_ensure_venv() {
  local stamp=$KUMO_PEER_CACHE/glance/venv/.kumo-peer-installed
  [[ -f $stamp ]] && grep -q '^glance==' "$stamp" && return 0
  [[ -x $PEER_DIR/glance.sh ]] || bdie "peer scripts not found at $PEER_DIR (expected shared/ beside the repository)"
  blog "installing the peer Glance venv into $KUMO_PEER_CACHE (first time only; takes minutes)"
  mkdir -p "$KUMO_PEER_CACHE/run"
  local port; port=$(free_port)
  ( cd "$KUMO_PEER_CACHE/run" && "$PEER_DIR/glance.sh" start --port "$port" --dir "$KUMO_PEER_CACHE" ) >&2 \
    || bdie "the peer Glance did not start once; see $KUMO_PEER_CACHE/glance/glance.log"
  ( cd "$KUMO_PEER_CACHE/run" && "$PEER_DIR/glance.sh" stop --dir "$KUMO_PEER_CACHE" ) >&2 || true
}

# --- the peer Nova (../shared/peer/nova.sh) -------------------------------------------------
# nova.sh keeps its venvs in DIR/nova/venv (nova + openstack-placement + uWSGI + PyMySQL) and
# DIR/client/venv (openstackclient, for its `smoke`), and skips pip when the venv's
# .kumo-peer-installed stamp holds exactly the line it wants. The two venvs are made once at
# their final paths in $KUMO_PEER_CACHE/nova/ (pip runs here, with the same pins and stamp
# lines as nova.sh; a venv's scripts carry its absolute path, so it cannot be made elsewhere
# and moved). Each run's fresh DIR links to them, and to the cached Keystone and Glance venvs
# (nova.sh starts keystone.sh and glance.sh into the same DIR). Should nova.sh come to want
# other packages, it pip-installs them into the linked venv itself, which stays valid.
PEER_NOVA_VERSION=${NOVA_VERSION:-34.0.0}
PEER_PLACEMENT_VERSION=${PLACEMENT_VERSION:-16.0.0}
PEER_NOVA_CACHE=$KUMO_PEER_CACHE/nova
# _peer_venv VENV STAMP_LINE PACKAGE...: make VENV (once), pip install, write the stamp.
_peer_venv() {
  local venv=$1 want=$2; shift 2
  [[ -f $venv/.kumo-peer-installed ]] && grep -qx "$want" "$venv/.kumo-peer-installed" && return 0
  [[ -x $venv/bin/python ]] || "${PYTHON:-python3}" -m venv "$venv" || return 1
  # shellcheck disable=SC2086 # PIP_EXTRA is a list of pip options, as in the peer scripts
  "$venv/bin/pip" install -q ${PIP_EXTRA:-} "$@" || return 1
  echo "$want" > "$venv/.kumo-peer-installed"
}
peer_nova_venvs_ready() {
  grep -qx "nova==$PEER_NOVA_VERSION openstack-placement==$PEER_PLACEMENT_VERSION uwsgi PyMySQL" \
      "$PEER_NOVA_CACHE/venv/.kumo-peer-installed" 2>/dev/null &&
    grep -qx "python-openstackclient openstacksdk" "$PEER_NOVA_CACHE/client-venv/.kumo-peer-installed" 2>/dev/null
}
peer_nova_ensure_venvs() {
  peer_nova_venvs_ready && return 0
  mkdir -p "$PEER_NOVA_CACHE"
  blog "installing the peer Nova venvs into $PEER_NOVA_CACHE (first time only; pip builds uWSGI: minutes; log $PEER_NOVA_CACHE/pip.log)"
  # flock: two runs at once install only once.
  ( flock 9
    _peer_venv "$PEER_NOVA_CACHE/venv" \
      "nova==$PEER_NOVA_VERSION openstack-placement==$PEER_PLACEMENT_VERSION uwsgi PyMySQL" \
      "nova==$PEER_NOVA_VERSION" "openstack-placement==$PEER_PLACEMENT_VERSION" uwsgi PyMySQL &&
    _peer_venv "$PEER_NOVA_CACHE/client-venv" "python-openstackclient openstacksdk" \
      python-openstackclient openstacksdk
  ) 9>"$PEER_NOVA_CACHE/.install.lock" >>"$PEER_NOVA_CACHE/pip.log" 2>&1 \
    || { tail -20 "$PEER_NOVA_CACHE/pip.log" >&2; bdie "pip install of the peer Nova failed; see $PEER_NOVA_CACHE/pip.log"; }
  peer_nova_venvs_ready || bdie "peer Nova venvs not ready after install"
}
# peer_nova_prepare_dir DIR: a fresh nova.sh state dir whose venvs link to the cached ones.
peer_nova_prepare_dir() {
  local dir=$1
  mkdir -p "$dir/nova" "$dir/client" "$dir/keystone" "$dir/glance" "$dir/cwd"
  ln -sfn "$PEER_NOVA_CACHE/venv" "$dir/nova/venv"
  ln -sfn "$PEER_NOVA_CACHE/client-venv" "$dir/client/venv"
  ln -sfn "$KUMO_PEER_CACHE/keystone/venv" "$dir/keystone/venv"
  ln -sfn "$KUMO_PEER_CACHE/glance/venv" "$dir/glance/venv"
}
