#!/usr/bin/env bash
# Build a minimal Debian 12 (bookworm) cloud image with cloud-init, for the real cloud-init guest
# test (tests/e2e/test_cloud_init_guest.py, docs/cloud-image.md).
#
#   tools/cloud-image/build.sh [--out PATH] [--force]
#
# debootstrap (minbase + cloud-init, openssh-server, the cloud kernel, ifupdown + dhclient) from
# Debian's mirror into a temp dir, the files of rootfs/ on top, then a disk built without mounts
# or loop devices: MBR (syslinux mbr.bin), partition 1 a small FAT with syslinux, the kernel and
# the initramfs, partition 2 the ext4 root (`mke2fs -d`, label kumo-rootfs). The image boots from
# its own disk as any cloud image does (SeaBIOS -> MBR -> syslinux), console on ttyS0.
#
# Result: ~/.cache/kumo/images/debian12-cloudinit-<key>.qcow2 (compressed, 2 GiB virtual), <key> a
# hash of this script and the rootfs/ files; reused when present, older ones removed. The last line
# printed on stdout is the image path (logs go to stderr). Runs as root (debootstrap chroots).
# KUMO_DEBIAN_MIRROR overrides the mirror (default http://deb.debian.org/debian).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=""
force=0
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=${2:?--out needs a path}; shift 2 ;;
	--out=*) out=${1#--out=}; shift ;;
	--force) force=1; shift ;;
	-h | --help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
	esac
done

cache=${KUMO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kumo}
images=$cache/images
mirror=${KUMO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# What debootstrap installs on top of minbase. python3-cffi-backend: without it cloud-init's
# postinst fails and the package stays unconfigured (measured). ifupdown + isc-dhcp-client: the
# renderer (ENI) cloud-init picks on Debian and the DHCP client of its ephemeral lease; net-tools:
# ENI's routes are `post-up route add ...` lines; resolvconf: applies ENI's `dns-nameservers`.
include=python3-cffi-backend,dbus,systemd-sysv,udev,linux-image-cloud-amd64,initramfs-tools
include+=,cloud-init,ifupdown,isc-dhcp-client,net-tools,resolvconf,iproute2,netbase
include+=,openssh-server,sudo,ca-certificates
disk_mib=2048 # virtual size; a flavor's disk must be at least 2 GB
boot_mib=48   # the FAT partition (kernel ~8 MB + initramfs)

log() { echo "build.sh: $*" >&2; }
elapsed() { local ms=$((($(date +%s%N) - start) / 1000000)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }

# The cache key: this script and every file (content and mode) of rootfs/. Package versions are
# not in it: they come from the mirror at build time (--force rebuilds with the current ones).
key=$(
	{
		sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
		(cd "$here/rootfs" && find . \( -type f -o -type l \) -print0 | LC_ALL=C sort -z |
			xargs -0 sha256sum)
		(cd "$here/rootfs" && find . -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %a')
	} | sha256sum | cut -c1-16
)
name=debian12-cloudinit-$key
image=$images/$name.qcow2

finish() {
	if [ -n "$out" ]; then
		mkdir -p "$(dirname "$out")"
		cp "$image" "$out"
		log "copied to $out"
	fi
	echo "$image"
}

if [ -f "$image" ] && [ "$force" = 0 ]; then
	log "cached: $image"
	finish
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	log "debootstrap needs root: run as root (or sudo $0)"
	exit 1
fi

# Host tools: install only the missing ones.
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v mke2fs >/dev/null || need+=(e2fsprogs)
command -v syslinux >/dev/null || need+=(syslinux)
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || need+=(syslinux-common)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v mcopy >/dev/null || need+=(mtools)
command -v sfdisk >/dev/null || need+=(fdisk)
if [ ${#need[@]} -gt 0 ]; then
	log "installing from Debian: ${need[*]}"
	env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
		install -y --no-install-recommends "${need[@]}" >&2
fi

start=$(date +%s%N)
mkdir -p "$images"
tmp=$(mktemp -d /tmp/kumo-cloud-image.XXXXXX)
r=$tmp/root
cleanup() {
	# debootstrap mounts proc and sys in the target; a failed run can leave them there, and rm
	# must never walk into them.
	local m
	{ findmnt -rn -o TARGET | grep -F "$tmp/" || true; } | LC_ALL=C sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

log "debootstrap $suite from $mirror (takes a few minutes)"
if ! debootstrap --variant=minbase --components=main --include="$include" \
	"$suite" "$r" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
	tail -n 30 "$tmp/debootstrap.log" >&2
	[ -f "$r/debootstrap/debootstrap.log" ] && tail -n 30 "$r/debootstrap/debootstrap.log" >&2
	log "debootstrap failed"
	exit 1
fi
log "debootstrap done after $(elapsed) s"
if findmnt -rn -o TARGET | grep -qF "$r/"; then
	log "debootstrap left mounts under $r"
	exit 1
fi
if chroot "$r" dpkg -l | awk 'NR > 5 && $1 != "ii" { bad = 1; print } END { exit !bad }' >&2; then
	log "packages not fully installed (above)"
	exit 1
fi

cp -a "$here/rootfs/." "$r/"
# Nothing of this machine or of the build may reach the instances: each boot makes its own
# machine id, SSH host keys (cloud-init) and cloud-init state.
: >"$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id" "$r"/etc/ssh/ssh_host_*
rm -rf "$r/var/lib/cloud"/* "$r/var/log/cloud-init"*
rm -rf "$r/var/cache/apt"/*.bin "$r/var/cache/apt/archives"/*.deb "$r/var/lib/apt/lists"/*
# debootstrap copied the host's resolv.conf; resolvconf makes it a link into /run, never written
# through (an absolute link would point at the host's file).
if [ -L "$r/etc/resolv.conf" ]; then rm -f "$r/run/resolvconf/resolv.conf"; else : >"$r/etc/resolv.conf"; fi
chroot "$r" passwd -l root >/dev/null
# Apt's timers would start downloads and unattended work within the first minutes of every boot.
ln -sf /dev/null "$r/etc/systemd/system/apt-daily.timer"
ln -sf /dev/null "$r/etc/systemd/system/apt-daily-upgrade.timer"
# e2scrub_reap looks for LVM snapshots (there is no LVM) and costs ~20 s of boot under TCG.
ln -sf /dev/null "$r/etc/systemd/system/e2scrub_reap.service"

kver=$(basename "$(ls -d "$r"/lib/modules/*)")
if [ ! -f "$r/boot/vmlinuz-$kver" ] || [ ! -f "$r/boot/initrd.img-$kver" ]; then
	log "no kernel or initramfs for $kver in /boot"
	exit 1
fi

# Boot partition: syslinux, kernel, initramfs (FAT, no mounts: mtools). Kernel updates inside a
# guest do not reach it: this is a test image, rebuilt rather than upgraded.
cat >"$tmp/syslinux.cfg" <<EOF
DEFAULT debian
PROMPT 0
TIMEOUT 0
LABEL debian
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND root=LABEL=kumo-rootfs ro console=tty0 console=ttyS0,115200n8
EOF
fat=$tmp/boot.fat
export MTOOLS_SKIP_CHECK=1
mkfs.vfat -C -n KUMOBOOT "$fat" $(((boot_mib - 1) * 1024)) >/dev/null
cp "$r/boot/vmlinuz-$kver" "$tmp/vmlinuz"
cp "$r/boot/initrd.img-$kver" "$tmp/initrd.img"
mcopy -i "$fat" "$tmp/vmlinuz" "$tmp/initrd.img" "$tmp/syslinux.cfg" ::/
syslinux --install "$fat"

# The disk: MBR, FAT at 1 MiB (bootable), ext4 root after it to the end.
raw=$tmp/disk.raw
truncate -s $((disk_mib * 1024 * 1024)) "$raw"
root_start=$((boot_mib * 2048)) # sectors
printf 'label: dos\nstart=2048, size=%d, type=c, bootable\nstart=%d, type=83\n' \
	$(((boot_mib - 1) * 2048)) "$root_start" | sfdisk --quiet "$raw" >/dev/null
dd if="$fat" of="$raw" bs=1M seek=1 conv=notrunc status=none
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
# mke2fs writes the root file system straight into partition 2 of the disk file.
mke2fs -q -F -t ext4 -L kumo-rootfs -E offset=$((root_start * 512)) -d "$r" "$raw" \
	$(((disk_mib - boot_mib) * 1024))k

qemu-img convert -c -f raw -O qcow2 "$raw" "$tmp/image.qcow2"
# shellcheck disable=SC2016 # dpkg-query's own ${...} fields
chroot "$r" dpkg-query -W -f '${Package}=${Version}\n' >"$images/$name.manifest"
mv "$tmp/image.qcow2" "$image.part"
mv "$image.part" "$image"
# Older builds are not needed any more.
for f in "$images"/debian12-cloudinit-*; do
	case "$f" in "$images/$name".*) ;; *) rm -f "$f" ;; esac
done
log "built in $(elapsed) s: $(du -h --apparent-size "$image" | cut -f1)" \
	"qcow2, $disk_mib MiB virtual, kernel $kver, $(grep -c . "$images/$name.manifest") packages"
finish
