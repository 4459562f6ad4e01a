#!/bin/bash
# Build the skytime Raspberry Pi 4 SD-card image (`make image`).
#
#   image/build.sh [--out DIR] [--reuse-base]
#
# Outputs in DIR (default target/image), published together at the end:
#   skytime-rpi4.img          the SD-card image (MBR: boot, rootfs A, rootfs B, data)
#   skytime-rpi4.img.sha256   its checksum, written last: it seals the set
#   skytime-rpi4.manifest     every Debian package (version, source, .deb
#                             sha256), the kernel and its modules, the skytime
#                             binary, every input file of this repository
#   rootfs.erofs              the erofs root: what an update writes to a slot
#   slot-boot/                the slot's boot files (vmlinuz, initrd.img,
#                             dtbs/): what an update writes to slot-a/ or slot-b/
#   boot.vfat                 the boot partition
#   skytime-rauc-hook         the hook every bundle carries (aarch64): with
#                             rootfs.erofs and slot-boot/, what `make bundle`
#                             (image/bundle.sh) packs
# DIR/work/ keeps the intermediate trees (base/ is mmdebstrap's root).
#
# Debian 13 (trixie) arm64 packages (mmdebstrap, image/packages.list), the
# skytime binary (cargo, aarch64-unknown-linux-musl), overlays/, ota/,
# image/rootfs/. Needs only the Debian archive and crates.io; .debs are
# cached under target/image/.
#
# Each stage is a short script in image/stages/, run in the order below;
# its header says what it reads and writes. Reproducible: the same sources,
# package versions and SOURCE_DATE_EPOCH (default: the last git commit's
# time) give a bit-identical image. --reuse-base skips mmdebstrap when
# DIR/work/base exists (development only).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export ROOT
. "$ROOT/image/lib/common.sh"

OUT=$ROOT/target/image
reuse_base=no
while [ $# -gt 0 ]; do
    case $1 in
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    --reuse-base) reuse_base=yes; shift ;;
    *) echo "usage: $0 [--out DIR] [--reuse-base]" >&2; exit 2 ;;
    esac
done
WORK=$OUT/work
mkdir -p "$OUT" "$WORK"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 1700000000)
fi
# This run's outputs, until all of them are there.
STAGING=$(mktemp -d "$OUT/.staging.XXXXXX")
export OUT WORK STAGING SOURCE_DATE_EPOCH

current=setup
t0=$(date +%s)
cleanup() {
    local rc=$?
    remove_tree "$WORK/base.new"
    rm -rf "$STAGING" "$WORK/slot-boot.new" "$WORK/genimage"
    [ "$rc" = 0 ] || echo "image: stage '$current' failed (exit $rc); $OUT keeps the previous build's outputs" >&2
}
trap cleanup EXIT

# stage NAME DESCRIPTION: runs image/stages/NAME.sh.
stage() {
    current=$1
    echo "== [$(($(date +%s) - t0))s] $1: $2" >&2
    "$IMAGE/stages/$1.sh"
}

missing=
for tool in mmdebstrap mkfs.erofs mkfs.vfat mcopy mmd genimage mkimage mkenvimage \
    aarch64-linux-gnu-gcc aarch64-linux-gnu-strip qemu-aarch64-static dtc fdtoverlay fdtget cpp mkfs.ext4 \
    depmod dpkg-query chroot cargo rustup; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -z "$missing" ] || die "missing build tools:$missing (run make image-deps)"
rustup target list --installed | grep -qx aarch64-unknown-linux-musl ||
    die "rust target aarch64-unknown-linux-musl missing (run make image-deps)"

stage binaries "skytimed, skytime-mgmtd and the RAUC hook for aarch64-unknown-linux-musl"
if [ "$reuse_base" = yes ] && [ -d "$WORK/base/usr" ]; then
    echo "== reusing $WORK/base" >&2
else
    stage base "mmdebstrap (Debian $SKYTIME_SUITE arm64 packages, initramfs)"
fi
stage rootfs "the root file system tree"
stage slot-boot "kernel, initramfs and device trees of a slot"
stage ota "RAUC: system.conf, keyring, D-Bus policy, the image's version"
stage modules "kernel modules pruned"
stage erofs "rootfs.erofs"
stage boot-vfat "boot.vfat (firmware, U-Boot, boot script, both slots' boot files)"
stage data-ext4 "data.ext4 (empty: first boot fills it)"
stage disk "skytime-rpi4.img (genimage)"
stage manifest "skytime-rpi4.manifest"

# Publish: each file is renamed into place (atomic), the old checksum goes
# first and the new one comes last, so DIR never holds a checksum beside
# parts of another build.
current=publish
cp -a "$WORK/slot-boot" "$STAGING/slot-boot"
cp -a "$WORK/bin/skytime-rauc-hook" "$STAGING/skytime-rauc-hook"
rm -f "$OUT/skytime-rpi4.img.sha256"
rm -rf "$OUT/slot-boot"
for f in rootfs.erofs boot.vfat slot-boot skytime-rauc-hook skytime-rpi4.img skytime-rpi4.manifest skytime-rpi4.img.sha256; do
    mv -fT "$STAGING/$f" "$OUT/$f"
done

rootfs_size=$(stat -c %s "$OUT/rootfs.erofs")
echo "== [$(($(date +%s) - t0))s] done: $OUT/skytime-rpi4.img ($(du -h --apparent-size "$OUT/skytime-rpi4.img" | cut -f1), rootfs.erofs $((rootfs_size / 1024)) KiB)" >&2
cat "$OUT/skytime-rpi4.img.sha256"
