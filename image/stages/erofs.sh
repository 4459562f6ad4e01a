#!/bin/bash
# Stage "erofs": the root file system image, what RAUC writes to a slot.
#
#   in:  $WORK/rootfs (complete: skytime installed, modules pruned, no /boot)
#   out: $STAGING/rootfs.erofs  (lz4, fixed UUID and timestamps)
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"

clamp_mtimes "$WORK/rootfs"
rm -f "$STAGING/rootfs.erofs"
mkfs.erofs --quiet -zlz4 -T "$SOURCE_DATE_EPOCH" -U "$ROOTFS_UUID" \
    "$STAGING/rootfs.erofs" "$WORK/rootfs" >&2
size=$(stat -c %s "$STAGING/rootfs.erofs")
[ "$size" -lt $((SLOT_MIB * 1024 * 1024)) ] ||
    die "rootfs.erofs ($size bytes) does not fit a $SLOT_MIB MiB slot"
