#!/bin/bash
# Stage "disk": the SD-card image from the partition images (genimage).
#
#   in:  $STAGING/boot.vfat, $STAGING/rootfs.erofs (both slots),
#        $WORK/data.ext4, $WORK/bootenv.img (boot-vfat), image/genimage.cfg
#   out: $STAGING/skytime-rpi4.img, $STAGING/skytime-rpi4.img.sha256
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"

gen=$WORK/genimage
rm -rf "$gen"
mkdir -p "$gen/input" "$gen/tmp" "$gen/root"
sed -e "s/@DISK_SIGNATURE@/$DISK_SIGNATURE/" -e "s/@SLOT_MIB@/$SLOT_MIB/" \
    -e "s/@BOOT_MIB@/$BOOT_MIB/" -e "s/@DATA_MIB@/$DATA_MIB/" \
    "$IMAGE/genimage.cfg" > "$gen/genimage.cfg"
# genimage reads its inputs from one directory; hard links cost nothing.
ln "$STAGING/boot.vfat" "$STAGING/rootfs.erofs" "$WORK/data.ext4" "$WORK/bootenv.img" "$gen/input/"
rm -f "$STAGING/skytime-rpi4.img"
genimage --config "$gen/genimage.cfg" --inputpath "$gen/input" --outputpath "$STAGING" \
    --tmppath "$gen/tmp" --rootpath "$gen/root" >&2
(cd "$STAGING" && sha256sum skytime-rpi4.img > skytime-rpi4.img.sha256)
rm -rf "$gen"
