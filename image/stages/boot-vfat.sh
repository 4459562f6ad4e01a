#!/bin/bash
# Stage "boot-vfat": the FAT boot partition.
#
#   in:  $WORK/slot-boot, image/boot/, ota/boot.cmd, raspi-firmware and
#        u-boot-rpi (Debian arm64 packages, fetched with apt-private.sh)
#   out: $STAGING/boot.vfat   Pi firmware, U-Boot, config.txt, boot.scr,
#                             slot-a/ and slot-b/ (both = slot-boot), the
#                             files a user may edit
#        $WORK/bootenv.img    the initial A/B boot state: two redundant
#                             16 KiB env copies (genimage puts them at 1 MiB,
#                             before partition 1)
#        $WORK/boot-debs.txt  the two packages used (name version arch sha256)
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$IMAGE/lib/apt-private.sh"

bootdir=$WORK/boot
rm -rf "$bootdir" "$WORK/raspi-firmware" "$WORK/u-boot-rpi"
mkdir -p "$bootdir"
apt_private_update
: > "$WORK/boot-debs.txt"
for spec in "raspi-firmware all" "u-boot-rpi arm64"; do
    set -- $spec
    deb=$(apt_private_fetch "$1" "$2")
    dpkg -x "$deb" "$WORK/$1"
    echo "$(dpkg-deb -f "$deb" Package Version Architecture | sed 's/^[^:]*: //' | paste -sd' ') $(sha256_of "$deb")" \
        >> "$WORK/boot-debs.txt"
done

fw=$WORK/raspi-firmware/usr/lib/raspi-firmware
cp "$fw/"{start4.elf,fixup4.dat,bootcode.bin} "$bootdir/"
cp "$WORK/raspi-firmware/usr/share/doc/raspi-firmware/copyright" "$bootdir/LICENCE.raspi-firmware"
cp "$WORK/u-boot-rpi/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$bootdir/u-boot.bin"
# The firmware hands this tree to U-Boot (config.txt: device_tree=); Linux
# gets its slot's copy from boot.scr.
cp "$WORK/slot-boot/dtbs/bcm2711-rpi-4-b.dtb" "$bootdir/bcm2711-rpi-4-b.dtb"
cp "$IMAGE/boot/config.txt" "$IMAGE/boot/skytime.toml.example" \
    "$IMAGE/boot/skytime-identity.conf.example" "$IMAGE/boot/README.txt" "$bootdir/"
# mkimage stamps SOURCE_DATE_EPOCH into the header.
mkimage -A arm64 -O linux -T script -C none \
    -n "skytime A/B boot" -d "$ROOT/ota/boot.cmd" "$bootdir/boot.scr" >&2
# Redundant format (-r): [CRC32][flags][data], as libubootenv and boot.scr
# read it. Both copies hold the same state; copy 0 has the newer flags
# (1 > 0), so every reader starts from it and the first write goes to copy 1.
printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n' > "$WORK/bootenv.txt"
mkenvimage -r -s 0x4000 -o "$WORK/bootenv0.bin" "$WORK/bootenv.txt"
cp "$WORK/bootenv0.bin" "$WORK/bootenv1.bin"
printf '\0' | dd of="$WORK/bootenv1.bin" bs=1 seek=4 conv=notrunc status=none
cat "$WORK/bootenv0.bin" "$WORK/bootenv1.bin" > "$WORK/bootenv.img.new"
mv -f "$WORK/bootenv.img.new" "$WORK/bootenv.img"
rm -f "$WORK/bootenv0.bin" "$WORK/bootenv1.bin"
cp -a "$WORK/slot-boot" "$bootdir/slot-a"
cp -a "$WORK/slot-boot" "$bootdir/slot-b"
find "$bootdir" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

vfat=$STAGING/boot.vfat
rm -f "$vfat"
mkfs.vfat -C -F 32 -n SKYTIME -i "$FAT_VOLID" --invariant "$vfat" $((BOOT_MIB * 1024)) >&2
# mtools: fixed order (sorted), fixed times (-m keeps the epoch mtimes).
(cd "$bootdir" && find . -mindepth 1 -type d | sort | sed 's|^\./||') | while read -r d; do
    mmd -i "$vfat" "::$d"
done
(cd "$bootdir" && find . -type f | sort | sed 's|^\./||') | while read -r f; do
    mcopy -m -i "$vfat" "$bootdir/$f" "::$f"
done
