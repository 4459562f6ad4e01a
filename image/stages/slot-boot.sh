#!/bin/bash
# Stage "slot-boot": one slot's boot files, taken out of the root file
# system (U-Boot cannot read erofs, so they live on the boot partition in
# slot-a/ and slot-b/, and an update writes them with the slot).
#
#   in:  $WORK/rootfs (/boot, the kernel package's DTBs), overlays/
#   out: $WORK/slot-boot/vmlinuz      Debian's arm64 Image (booti loads it as is)
#        $WORK/slot-boot/initrd.img
#        $WORK/slot-boot/dtbs/*.dtb   bcm2711-rpi-4-b.dtb with skytime's overlays
#                                     applied, and its PPS variants
#        $WORK/rootfs without /boot and the kernel package's DTBs
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"

rootfs=$WORK/rootfs
kver=$(kernel_version "$rootfs")
new=$WORK/slot-boot.new
rm -rf "$new"
mkdir -p "$new/dtbs"
cp "$rootfs/boot/vmlinuz-$kver" "$new/vmlinuz"
cp "$rootfs/boot/initrd.img-$kver" "$new/initrd.img"

# The kernel must fit below what ota/boot.cmd loads after it on the Pi: the
# arm64 Image header's image_size (bytes 16-23, little endian) is the memory
# it needs from its load address, BSS included.
[ "$(od -An -t x4 -j 56 -N 4 "$new/vmlinuz" | tr -d ' ')" = 644d5241 ] ||
    die "$rootfs/boot/vmlinuz-$kver is not an uncompressed arm64 Image (no ARM\\x64 magic): booti cannot load it"
image_size=$(od -An -t u8 -j 16 -N 8 "$new/vmlinuz" | tr -d ' ')
# The Pi block of ota/boot.cmd: the kernel's address, and the lowest address
# loaded after it (the scratch used for the boot-state copies).
pi_addr() { sed -n "s/^ *setenv $1 \(0x[0-9a-fA-F]*\)\$/\1/p" "$ROOT/ota/boot.cmd"; }
kernel_addr=$(pi_addr kernel_addr_r)
next_addr=$(pi_addr skytime_envaddr)
[ -n "$kernel_addr" ] && [ -n "$next_addr" ] || die "no Pi load addresses in ota/boot.cmd"
room=$((next_addr - kernel_addr))
[ "$image_size" -le "$room" ] ||
    die "kernel image_size $image_size does not fit ota/boot.cmd's Pi layout ($room bytes from $kernel_addr)"
echo "kernel $kver: image_size $((image_size / 1024)) KiB of $((room / 1024)) KiB (ota/boot.cmd)" >&2
# For the manifest and the build's summary.
printf 'kernel_image_size %s\nkernel_room %s\n' "$image_size" "$room" > "$WORK/kernel-layout"

"$ROOT/overlays/build.sh" --base-dtb "$rootfs/usr/lib/linux-image-$kver/broadcom/bcm2711-rpi-4-b.dtb" \
    --out "$WORK/overlays" >&2
cp "$WORK/overlays/dtbs/"*.dtb "$new/dtbs/"

rm -rf "$WORK/slot-boot"
mv "$new" "$WORK/slot-boot"
rm -rf "$rootfs/boot/"* "$rootfs/usr/lib/linux-image-$kver" "$rootfs/"{vmlinuz,initrd.img}{,.old}
