#!/usr/bin/env bash
# Boot-test the kumo-tiny image under QEMU (TCG, q35), as kumo will boot it: from the disk, no
# -kernel. Three boots:
#   plain       no network, no config drive
#   configdrive an ISO labelled config-2 (hostname, an SSH key, a #!/bin/sh user_data printing a
#               second marker), laid out as Nova writes one
#   network     QEMU user networking that cannot reach the host's networks (restrict=on, guest
#               net 169.254.169.0/24), one virtio-net NIC: DHCP lease; the metadata service at
#               169.254.169.254:80 is a guestfwd to a Python http.server on a free loopback port
#               (hostname, key, user_data); SSH as kumo through a hostfwd from 127.0.0.1 with a
#               throwaway ed25519 key; a second NIC hot-plugged over QMP (into a pcie-root-port)
#               must get its own DHCP lease, and be unplugged again (DEVICE_DELETED); then QMP
#               system_powerdown must make QEMU exit
#
#   tools/guest-image/boot-test.sh [IMAGE.qcow2]     (default: build.sh's output)
#
# KUMO_BOOT_TESTS="plain configdrive network" picks the boots (default: all three).
# Waits up to KUMO_BOOT_TIMEOUT (60) seconds for "kumo-tiny: ready" on the serial console, prints
# the time from QEMU's start to the marker. QEMU and the HTTP server are stopped by their PIDs and
# the temp dir is removed on any exit. The guest's traffic never leaves loopback: no forwards but
# the metadata guestfwd (to 127.0.0.1) and the SSH hostfwd (from 127.0.0.1).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout_s=${KUMO_BOOT_TIMEOUT:-60}

log() { echo "boot-test: $*" >&2; }

tests=${KUMO_BOOT_TESTS:-plain configdrive network}
want() { [[ " $tests " == *" $1 "* ]]; }

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86 qemu-utils)
command -v qemu-img >/dev/null || need+=(qemu-utils)
want configdrive && ! command -v genisoimage >/dev/null && need+=(genisoimage)
if want network; then
	command -v socat >/dev/null || need+=(socat)
	command -v ssh >/dev/null || need+=(openssh-client)
	command -v python3 >/dev/null || need+=(python3)
fi
if [ ${#need[@]} -gt 0 ]; then
	log "installing from Debian: ${need[*]}"
	sudo_=()
	[ "$(id -u)" = 0 ] || sudo_=(sudo)
	"${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
		install -y --no-install-recommends "${need[@]}" >&2
fi

image=${1:-}
if [ -z "$image" ]; then
	image=$("$here/build.sh" | tail -n1)
fi
[ -f "$image" ] || { log "no image at $image"; exit 1; }

tmp=$(mktemp -d /tmp/kumo-tiny-boot.XXXXXX)
qemu_pid=""
http_pid=""
stop_pid() { # stop_pid PID: TERM, then KILL after 2 s; reaps it
	local pid=$1 i=0
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 40 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	stop_pid "$qemu_pid"
	stop_pid "$http_pid"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failures=0
fail() {
	log "$*"
	failures=$((failures + 1))
}

# start NAME [extra qemu args...]: boot an overlay of the image, wait for the marker and then the
# login prompt. QEMU keeps running ($qemu_pid); console log in $tmp/NAME.log. QMP on $tmp/NAME.qmp.
start() {
	local name=$1
	shift
	local overlay=$tmp/$name.qcow2 serial=$tmp/$name.log
	qemu-img create -q -f qcow2 -b "$image" -F qcow2 "$overlay"
	: >"$serial"
	local t0
	t0=$(date +%s%N)
	qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nographic -monitor none \
		-serial "file:$serial" -qmp "unix:$tmp/$name.qmp,server=on,wait=off" \
		-drive "file=$overlay,if=virtio" -nic none "$@" \
		</dev/null >"$tmp/$name.qemu.out" 2>&1 &
	qemu_pid=$!
	local ok=0
	while :; do
		if grep -q '^kumo-tiny: ready' "$serial"; then
			ok=1
			break
		fi
		kill -0 "$qemu_pid" 2>/dev/null || break
		[ $(($(date +%s%N) - t0)) -lt $((timeout_s * 1000000000)) ] || break
		sleep 0.05
	done
	local ms=$((($(date +%s%N) - t0) / 1000000))
	# Then the login prompt on the serial console (getty starts after the boot script).
	local i=0
	while [ "$ok" = 1 ] && [ $i -lt 200 ] && ! grep -q 'login:' "$serial"; do
		sleep 0.05
		i=$((i + 1))
	done
	if [ "$ok" = 1 ]; then
		printf 'boot-test: %s: kumo-tiny: ready after %d.%03d s\n' "$name" $((ms / 1000)) $((ms % 1000))
		return 0
	fi
	log "$name: no 'kumo-tiny: ready' within ${timeout_s}s; console:"
	sed 's/^/    /' "$serial" | cat -v >&2
	sed 's/^/    qemu: /' "$tmp/$name.qemu.out" >&2
	stop_pid "$qemu_pid"
	qemu_pid=""
	return 1
}

stop() {
	stop_pid "$qemu_pid"
	qemu_pid=""
}

# boot NAME [extra qemu args...]: start, then stop QEMU.
boot() {
	local rc=0
	start "$@" || rc=1
	stop
	return $rc
}

expect() { # expect NAME REGEX: the console log of boot NAME has a line matching REGEX
	if grep -Eq "$2" "$tmp/$1.log"; then
		log "$1: ok: $2"
	else
		fail "$1: MISSING: $2; console:"
		sed 's/^/    /' "$tmp/$1.log" | cat -v >&2
	fi
}

# free_port: a TCP port free on 127.0.0.1 right now.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# qmp SOCKET COMMAND: send one QMP command (after qmp_capabilities), print its reply line.
qmp() {
	python3 - "$1" "$2" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()  # greeting
for cmd in ("qmp_capabilities", sys.argv[2]):
    f.write(json.dumps({"execute": cmd}) + "\n")
    f.flush()
    while True:  # events may come before the reply
        line = f.readline()
        if not line:
            sys.exit("QMP: connection closed")
        msg = json.loads(line)
        if "return" in msg or "error" in msg:
            break
print(line.strip())
sys.exit(1 if "error" in msg else 0)
EOF
}

# qmp_do SOCKET JSON [DEVICE]: send one QMP command given as JSON (after qmp_capabilities),
# print its reply; with DEVICE, then wait (30 s) for the DEVICE_DELETED event naming it.
qmp_do() {
	python3 - "$@" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()  # greeting
device = sys.argv[3] if len(sys.argv) > 3 else None
deleted = False
for cmd in ({"execute": "qmp_capabilities"}, json.loads(sys.argv[2])):
    f.write(json.dumps(cmd) + "\n")
    f.flush()
    while True:  # events may come before the reply
        line = f.readline()
        if not line:
            sys.exit("QMP: connection closed")
        msg = json.loads(line)
        if msg.get("event") == "DEVICE_DELETED" and msg.get("data", {}).get("device") == device:
            deleted = True
        if "return" in msg or "error" in msg:
            break
print(line.strip())
if "error" in msg:
    sys.exit(1)
while device and not deleted:
    line = f.readline()
    if not line:
        sys.exit("QMP: closed before DEVICE_DELETED")
    msg = json.loads(line)
    deleted = msg.get("event") == "DEVICE_DELETED" and msg.get("data", {}).get("device") == device
EOF
}

# wait_console NAME REGEX [SECONDS]: wait (default 30 s) for a console line of boot NAME
# matching REGEX, then check it as expect does.
wait_console() {
	local i=0 n=$((${3:-30} * 20))
	while [ $i -lt $n ] && ! grep -Eq "$2" "$tmp/$1.log"; do
		sleep 0.05
		i=$((i + 1))
	done
	expect "$1" "$2"
}

# 1. Plain boot: no network, no config drive.
if want plain; then
	if boot plain; then
		expect plain '^kumo-tiny: no config drive and no metadata service'
		expect plain '^kumo-tiny: dropbear listening on port 22'
		expect plain 'login:'
	else
		failures=$((failures + 1))
	fi
fi

# 2. With a config drive, laid out as Nova writes one.
if want configdrive; then
	cd_dir=$tmp/configdrive
	mkdir -p "$cd_dir/openstack/latest"
	key='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKumoTinyBootTestKeyBootTestKeyBootTest0 boot-test@kumo'
	cat >"$cd_dir/openstack/latest/meta_data.json" <<EOF
{"uuid": "0b9f3a8e-0000-4000-8000-000000000001", "meta": {}, "public_keys": {"demo": "$key\\n"}, "keys": [{"name": "demo", "type": "ssh", "data": "$key\\n"}], "hostname": "tiny-test.novalocal", "name": "tiny-test", "launch_index": 0, "availability_zone": "nova", "random_seed": "cmFuZG9t", "project_id": "6f70656e737461636b", "devices": [], "dedicated_cpus": []}
EOF
	cat >"$cd_dir/openstack/latest/user_data" <<'EOF'
#!/bin/sh
echo "kumo-tiny-user-data: hello from $(hostname) as $(id -un), keys: $(wc -l < /home/kumo/.ssh/authorized_keys)"
EOF
	genisoimage -quiet -o "$tmp/config.iso" -V config-2 -r -J "$cd_dir"
	if boot configdrive -drive "file=$tmp/config.iso,if=virtio,format=raw,readonly=on"; then
		expect configdrive '^kumo-tiny: metadata from config drive /dev/vd[a-z]+: hostname tiny-test, 1 key\(s\)'
		expect configdrive '^kumo-tiny-user-data: hello from tiny-test as root, keys: 1'
		expect configdrive '^tiny-test login:'
	else
		failures=$((failures + 1))
	fi
fi

# 3. Network: DHCP, the metadata service, SSH, the ACPI power button.
if want network; then
	md=$tmp/metadata
	mkdir -p "$md/openstack/latest"
	ssh-keygen -q -t ed25519 -N '' -C boot-test@kumo -f "$tmp/id_ed25519"
	netkey=$(cat "$tmp/id_ed25519.pub")
	cat >"$md/openstack/latest/meta_data.json" <<EOF
{"uuid": "0b9f3a8e-0000-4000-8000-000000000002", "meta": {"role": "boot-test"}, "public_keys": {"boot-test": "$netkey"}, "keys": [{"name": "boot-test", "type": "ssh", "data": "$netkey"}], "hostname": "tiny-net.novalocal", "name": "tiny-net", "launch_index": 0, "availability_zone": "nova", "project_id": "6f70656e737461636b", "devices": []}
EOF
	cat >"$md/openstack/latest/user_data" <<'EOF'
#!/bin/sh
echo "kumo-tiny-user-data: from the metadata service on $(hostname), keys: $(wc -l < /home/kumo/.ssh/authorized_keys)"
EOF
	# The metadata service: an http.server on a free loopback port, which it writes to a file.
	python3 - "$md" "$tmp/http.port" >"$tmp/http.log" 2>&1 <<'EOF' &
import functools, http.server, os, sys
root, portfile = sys.argv[1:3]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(portfile + ".tmp", portfile)
sys.stderr.flush()
srv.serve_forever()
EOF
	http_pid=$!
	i=0
	while [ ! -s "$tmp/http.port" ] && [ $i -lt 100 ] && kill -0 "$http_pid" 2>/dev/null; do
		sleep 0.05
		i=$((i + 1))
	done
	http_port=$(cat "$tmp/http.port" 2>/dev/null || true)
	ssh_port=$(free_port)
	if [ -z "$http_port" ]; then
		fail "network: the metadata HTTP server did not start: $(cat "$tmp/http.log")"
	# guestfwd: cmd: spawns socat per guest connection (a chardev target is one TCP connection
	# for QEMU's whole life: a second HTTP request hangs).
	elif start network \
		-netdev "user,id=n0,restrict=on,net=169.254.169.0/24,guestfwd=tcp:169.254.169.254:80-cmd:socat - TCP:127.0.0.1:$http_port,hostfwd=tcp:127.0.0.1:$ssh_port-:22" \
		-device virtio-net-pci,netdev=n0 -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1; then
		expect network '^kumo-tiny: eth0 169\.254\.169\.[0-9]+ by DHCP'
		expect network '^kumo-tiny: metadata from metadata service: hostname tiny-net, 1 key\(s\)'
		expect network '^kumo-tiny-user-data: from the metadata service on tiny-net, keys: 1'
		expect network '^tiny-net login:'
		for p in meta_data.json user_data; do
			if grep -q "\"GET /openstack/latest/$p HTTP" "$tmp/http.log"; then
				log "network: ok: the guest fetched $p from the metadata service"
			else
				fail "network: the metadata service never saw GET $p: $(cat "$tmp/http.log")"
			fi
		done
		# SSH as kumo with the key from the metadata (dropbear makes its host key on this first
		# connection, so allow a few tries).
		t0=$(date +%s%N)
		got=""
		for _ in 1 2 3; do
			got=$(ssh -i "$tmp/id_ed25519" -p "$ssh_port" -o StrictHostKeyChecking=no \
				-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=10 \
				-o LogLevel=ERROR kumo@127.0.0.1 'echo "$(id -un)@$(hostname)"' 2>"$tmp/ssh.err") && break
			sleep 1
		done
		ms=$((($(date +%s%N) - t0) / 1000000))
		if [ "$got" = kumo@tiny-net ]; then
			log "network: ok: ssh kumo@127.0.0.1:$ssh_port (ed25519) -> $got in $ms ms"
		else
			fail "network: ssh gave '$got': $(cat "$tmp/ssh.err")"
		fi
		# Hot-plug: a second NIC (its own restricted slirp) into the free root port gets a
		# lease through the guest's mdev hook; unplugging it waits for the guest to let go.
		t0=$(date +%s%N)
		if qmp_do "$tmp/network.qmp" '{"execute": "netdev_add", "arguments": {"type": "user", "id": "n1", "restrict": true, "net": "10.0.2.0/24"}}' >"$tmp/qmp.out" 2>&1 &&
			qmp_do "$tmp/network.qmp" '{"execute": "device_add", "arguments": {"driver": "virtio-net-pci", "id": "nic1", "netdev": "n1", "bus": "rp1", "mac": "fa:16:3e:00:00:01"}}' >>"$tmp/qmp.out" 2>&1; then
			wait_console network '^kumo-tiny: eth1 10\.0\.2\.15 by DHCP'
			log "network: hot-plugged NIC handled after $((($(date +%s%N) - t0) / 1000000)) ms"
			t0=$(date +%s%N)
			if qmp_do "$tmp/network.qmp" '{"execute": "device_del", "arguments": {"id": "nic1"}}' nic1 >>"$tmp/qmp.out" 2>&1; then
				log "network: ok: DEVICE_DELETED after $((($(date +%s%N) - t0) / 1000000)) ms"
				wait_console network '^kumo-tiny: eth1 removed' 5
			else
				fail "network: unplug failed: $(cat "$tmp/qmp.out")"
			fi
		else
			fail "network: hot-plug failed: $(cat "$tmp/qmp.out")"
		fi
		# The ACPI power button: QEMU must exit by itself (acpid -> poweroff).
		t0=$(date +%s%N)
		if qmp "$tmp/network.qmp" system_powerdown >"$tmp/qmp.out" 2>&1; then
			i=0
			while kill -0 "$qemu_pid" 2>/dev/null && [ $i -lt 200 ]; do
				sleep 0.05
				i=$((i + 1))
			done
			ms=$((($(date +%s%N) - t0) / 1000000))
			if kill -0 "$qemu_pid" 2>/dev/null; then
				fail "network: QEMU still running 10 s after system_powerdown"
			else
				wait "$qemu_pid" 2>/dev/null || true
				qemu_pid=""
				log "network: ok: system_powerdown -> QEMU exited after $ms ms"
				expect network '^kumo-tiny: shutting down'
			fi
		else
			fail "network: QMP system_powerdown failed: $(cat "$tmp/qmp.out")"
		fi
		stop
	else
		failures=$((failures + 1))
	fi
	stop_pid "$http_pid"
	http_pid=""
fi

if [ "$failures" -gt 0 ]; then
	log "FAILED ($failures)"
	exit 1
fi
log "all passed"
