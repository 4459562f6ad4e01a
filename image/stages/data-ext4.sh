#!/bin/bash
# Stage "data-ext4": the data partition, formatted and empty (first boot
# fills it; the initramfs grows it to the end of the card).
#
#   out: $WORK/data.ext4
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"

rm -f "$WORK/data.ext4"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -L skytime-data -U "$DATA_UUID" \
    -E "hash_seed=$DATA_UUID,root_owner=0:0" "$WORK/data.ext4" "${DATA_MIB}M"
