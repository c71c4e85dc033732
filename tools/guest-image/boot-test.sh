#!/usr/bin/env bash
# Boot-test the kumo-tiny image under QEMU (TCG, q35, no network), as kumo will boot it: from
# the disk, no -kernel. Two boots: a plain one, then one with a config drive (ISO labelled
# config-2: hostname, an SSH key, a #!/bin/sh user_data printing a second marker).
#
#   tools/guest-image/boot-test.sh [IMAGE.qcow2]     (default: build.sh's output)
#
# Waits up to KUMO_BOOT_TIMEOUT (60) seconds for "kumo-tiny: ready" on the serial console, prints
# the time from QEMU's start to the marker. QEMU is stopped by its PID; temp files are removed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout_s=${KUMO_BOOT_TIMEOUT:-60}

log() { echo "boot-test: $*" >&2; }

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86 qemu-utils)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v genisoimage >/dev/null || need+=(genisoimage)
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
cleanup() {
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

failures=0

# boot NAME [extra qemu args...]: boot an overlay of the image, wait for the marker.
# Leaves the console log in $tmp/NAME.log.
boot() {
	local name=$1
	shift
	local overlay=$tmp/$name.qcow2 serial=$tmp/$name.log
	qemu-img create -q -f qcow2 -b "$image" -F qcow2 "$overlay"
	: >"$serial"
	local t0
	t0=$(date +%s%N)
	qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nographic -monitor none \
		-serial "file:$serial" -drive "file=$overlay,if=virtio" -nic none "$@" \
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
	kill "$qemu_pid" 2>/dev/null || true
	wait "$qemu_pid" 2>/dev/null || true
	qemu_pid=""
	if [ "$ok" = 1 ]; then
		printf 'boot-test: %s: kumo-tiny: ready after %d.%03d s\n' "$name" $((ms / 1000)) $((ms % 1000))
		return 0
	fi
	log "$name: no 'kumo-tiny: ready' within ${timeout_s}s; console:"
	sed 's/^/    /' "$serial" >&2
	sed 's/^/    qemu: /' "$tmp/$name.qemu.out" >&2
	return 1
}

expect() { # expect NAME REGEX: the console log of boot NAME has a line matching REGEX
	if grep -Eq "$2" "$tmp/$1.log"; then
		log "$1: ok: $2"
	else
		log "$1: MISSING: $2; console:"
		sed 's/^/    /' "$tmp/$1.log" | cat -v >&2
		failures=$((failures + 1))
	fi
}

# 1. Plain boot: no network, no config drive.
if boot plain; then
	expect plain '^kumo-tiny: no config drive and no metadata service'
	expect plain '^kumo-tiny: dropbear listening on port 22'
	expect plain 'login:'
else
	failures=$((failures + 1))
fi

# 2. With a config drive, laid out as Nova writes one.
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

if [ "$failures" -gt 0 ]; then
	log "FAILED ($failures)"
	exit 1
fi
log "all passed"
