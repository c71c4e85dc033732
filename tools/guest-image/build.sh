#!/usr/bin/env bash
# Build the kumo-tiny guest image (a CirrOS-like demo/CI image) from Debian packages only.
#
#   tools/guest-image/build.sh [--out PATH] [--force]
#
# The guest packages (kernel, busybox, dropbear and its libraries) are fetched with
# `apt-get download` and unpacked with dpkg-deb: nothing is installed on the host for the guest.
# The host only gets the build tools (qemu-utils, syslinux, mtools, dosfstools, fdisk, cpio, kmod)
# when they are missing. No loop mounts, no root-only steps besides apt-get.
#
# Disk layout: MBR (syslinux mbr.bin) + one bootable FAT partition holding syslinux, the kernel
# and an initramfs that is the whole root filesystem (busybox init, see rootfs/).
#
# Result: ~/.cache/kumo/images/kumo-tiny-<key>.qcow2 (compressed), <key> a hash of this script,
# the rootfs files and the exact package versions. Reused when present. The last line printed on
# stdout is the image path (logs go to stderr).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=""
force=0
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=${2:?--out needs a path}; shift 2 ;;
	--out=*) out=${1#--out=}; shift ;;
	--force) force=1; shift ;;
	-h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
	esac
done

cache=${KUMO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kumo}
images=$cache/images
debs=$cache/debs
# Fixed timestamp for every file in the image (reproducible builds).
epoch=${SOURCE_DATE_EPOCH:-1700000000}

log() { echo "build.sh: $*" >&2; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
	log "installing from Debian: $*"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
		install -y --no-install-recommends "$@" >&2
}

# Host build tools: install only the missing ones.
need=()
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v syslinux >/dev/null || need+=(syslinux)
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || need+=(syslinux-common)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v mcopy >/dev/null || need+=(mtools)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || need+=(kmod)
command -v gzip >/dev/null || need+=(gzip)
if [ ${#need[@]} -gt 0 ]; then
	apt_install "${need[@]}"
fi

# Exact versions of the guest packages: the apt candidates of the host's apt lists, or overrides.
# KUMO_TINY_KERNEL=linux-image-6.1.0-NN-cloud-amd64 picks another kernel package.
kernel_pkg=${KUMO_TINY_KERNEL:-}
if [ -z "$kernel_pkg" ]; then
	kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ && !n++ { print $2 }')
	if [ -z "$kernel_pkg" ]; then
		log "no apt lists for linux-image-cloud-amd64: apt-get update"
		as_root apt-get -o DPkg::Lock::Timeout=600 update >&2
		kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 |
			awk '/Depends: linux-image-[0-9]/ && !n++ { print $2 }')
	fi
fi
kver=${kernel_pkg#linux-image-}
guest_pkgs=("$kernel_pkg" busybox-static dropbear-bin libc6 libcrypt1 zlib1g libtomcrypt1 libtommath1 libgmp10)
# One apt-cache call for all of them (each call costs ~0.5 s of cache loading).
manifest=$(apt-cache show --no-all-versions "${guest_pkgs[@]}" 2>/dev/null |
	awk '/^Package:/ { p = $2 } /^Version:/ && p != "" { print p "=" $2; p = "" }' |
	LC_ALL=C sort)$'\n'
for p in "${guest_pkgs[@]}"; do
	grep -q "^$p=" <<<"$manifest" || { log "no version of $p in the apt lists"; exit 1; }
done
# Files from host packages that end up in the image (bootloader).
for p in syslinux syslinux-common; do
	manifest+="$p=$(dpkg-query -W -f '${Version}' "$p")"$'\n'
done

key=$(
	{
		sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
		(cd "$here/rootfs" && find . \( -type f -o -type l \) -print0 | LC_ALL=C sort -z |
			xargs -0 sha256sum)
		(cd "$here/rootfs" && find . -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %a')
		printf '%s' "$manifest"
	} | sha256sum | cut -c1-16
)
image=$images/kumo-tiny-$key.qcow2

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

start=$(date +%s.%N)
mkdir -p "$images" "$debs"
tmp=$(mktemp -d /tmp/kumo-tiny-build.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# Fetch the guest packages into the cache (never installed on the host).
while IFS='=' read -r p v; do
	[ -n "$p" ] || continue
	case "$p" in syslinux | syslinux-common) continue ;; esac
	d=$debs/$p/$v
	if ! compgen -G "$d/*.deb" >/dev/null; then
		log "apt-get download $p=$v"
		mkdir -p "$d"
		chmod 777 "$d" 2>/dev/null || true # lets apt's _apt user write there
		(cd "$d" && apt-get download "$p=$v" >&2 2>/dev/null) ||
			(cd "$d" && apt-get download "$p=$v" >&2)
	fi
	dpkg-deb -x "$d"/*.deb "$tmp/pkgs"
done <<<"$manifest"
pk=$tmp/pkgs

# Root filesystem (becomes the initramfs).
r=$tmp/root
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,home/kumo/.ssh,var/log,mnt/config}
mkdir -p "$r/lib/x86_64-linux-gnu" "$r/lib64" "$r/lib/modules/$kver"
chmod 1777 "$r/tmp"
chmod 700 "$r/root"
cp "$pk/bin/busybox" "$r/bin/busybox"
# ping for the unprivileged user (busybox 1.35 has no ICMP datagram sockets): a set-uid
# copy of busybox that only `ping` links to; busybox drops root for every applet that is
# not marked as needing it.
mkdir -p "$r/usr/lib/kumo-tiny/suid"
cp "$pk/bin/busybox" "$r/usr/lib/kumo-tiny/suid/busybox"
chmod 4755 "$r/usr/lib/kumo-tiny/suid/busybox"
ln -s /usr/lib/kumo-tiny/suid/busybox "$r/bin/ping"
"$pk/bin/busybox" --list-full | while read -r applet; do
	[ -e "$r/$applet" ] || [ -L "$r/$applet" ] || ln -s /bin/busybox "$r/$applet"
done
cp "$pk/usr/sbin/dropbear" "$r/usr/sbin/"
cp "$pk/usr/bin/dropbearkey" "$pk/usr/bin/dbclient" "$r/usr/bin/"
# Shared libraries of the dynamic binaries, resolved by the guest's own ld.so against the
# unpacked packages (a library missing from guest_pkgs fails the build).
libpath=$pk/lib/x86_64-linux-gnu:$pk/usr/lib/x86_64-linux-gnu
for bin in "$r/usr/sbin/dropbear" "$r/usr/bin/dropbearkey" "$r/usr/bin/dbclient"; do
	"$pk/lib64/ld-linux-x86-64.so.2" --library-path "$libpath" --list "$bin"
done >"$tmp/libs"
if grep -q 'not found' "$tmp/libs"; then
	log "missing shared libraries:"
	grep 'not found' "$tmp/libs" >&2
	exit 1
fi
awk '$2 == "=>" && $3 ~ /^\// { print $3 }' "$tmp/libs" | LC_ALL=C sort -u | while read -r f; do
	cp -L "$f" "$r/lib/x86_64-linux-gnu/$(basename "$f")"
done
ln -s /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$r/lib64/ld-linux-x86-64.so.2"

# Kernel modules the guest needs, with their dependencies (resolved by the host's kmod against
# the unpacked package, then depmod for the guest's own modules.dep).
mods=(virtio_pci virtio_blk virtio_net virtio_console virtio_rng isofs vfat nls_cp437
	nls_iso8859_1 nls_utf8 button evdev crc32c_intel)
depmod -b "$pk" "$kver"
for m in "${mods[@]}"; do
	modprobe -d "$pk" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }' ||
		log "module $m not found"
done | LC_ALL=C sort -u | while read -r f; do
	rel=${f#"$pk"}
	mkdir -p "$r$(dirname "$rel")"
	cp "$f" "$r$rel"
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
	[ -f "$pk/lib/modules/$kver/$f" ] && cp "$pk/lib/modules/$kver/$f" "$r/lib/modules/$kver/"
done
depmod -b "$r" "$kver"

cp -a "$here/rootfs/." "$r/"
chmod 600 "$r/etc/shadow"
find "$r" -exec touch -h -d "@$epoch" {} +
(cd "$r" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
	gzip -9n >"$tmp/initrd.gz"

# Boot disk: FAT partition with syslinux, kernel, initramfs; built without mounts (mtools).
cat >"$tmp/syslinux.cfg" <<EOF
DEFAULT kumo
PROMPT 0
TIMEOUT 0
LABEL kumo
  LINUX /vmlinuz
  INITRD /initrd.gz
  APPEND console=tty0 console=ttyS0,115200n8 quiet
EOF
cp "$pk/boot/vmlinuz-$kver" "$tmp/vmlinuz"
touch -d "@$epoch" "$tmp/vmlinuz" "$tmp/initrd.gz" "$tmp/syslinux.cfg"
payload_kib=$(du -k --apparent-size -c "$tmp/vmlinuz" "$tmp/initrd.gz" | tail -n1 | cut -f1)
fat_mib=$(((payload_kib / 1024) + 4))
fat=$tmp/fat.img
export MTOOLS_SKIP_CHECK=1 SOURCE_DATE_EPOCH=$epoch # mkfs.fat, mtools: fixed FAT timestamps
mkfs.vfat -C -n KUMOTINY -i 4b554d4f "$fat" $((fat_mib * 1024)) >/dev/null
mcopy -m -i "$fat" "$tmp/vmlinuz" "$tmp/initrd.gz" "$tmp/syslinux.cfg" ::/
syslinux --install "$fat"
raw=$tmp/disk.raw
truncate -s $(((fat_mib + 1) * 1024 * 1024)) "$raw"
printf 'label: dos\nlabel-id: 0x4b554d4f\nstart=2048, type=c, bootable\n' | sfdisk --quiet "$raw" >/dev/null
dd if="$fat" of="$raw" bs=1M seek=1 conv=notrunc status=none
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none

# One coroutine: the compressed clusters are then written in order, the qcow2 is bit-for-bit
# reproducible (the raw disk already is).
qemu-img convert -c -m 1 -f raw -O qcow2 "$raw" "$tmp/image.qcow2"
mv "$tmp/image.qcow2" "$image.part"
mv "$image.part" "$image"
printf '%s' "$manifest" >"$images/kumo-tiny-$key.manifest"
# Older builds are not needed any more (kumo uploads the image into Glance).
for f in "$images"/kumo-tiny-*; do
	case "$f" in "$images/kumo-tiny-$key".*) ;; *) rm -f "$f" ;; esac
done
log "built in $(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo '?') s:" \
	"$(du -h --apparent-size "$image" | cut -f1) qcow2, $((fat_mib + 1)) MiB virtual, kernel $kver"
finish
