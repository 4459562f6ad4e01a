# Shared by image/build.sh and its stages (sourced, not run): where things
# are, the image's fixed identities, and small helpers.
#
# build.sh exports OUT (the published outputs), WORK (intermediate trees),
# STAGING (this run's outputs until they are published) and
# SOURCE_DATE_EPOCH; a stage run on its own needs them too.

: "${ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
IMAGE=$ROOT/image

# The Debian release the image is built from (see image/README.md, "Why
# Debian 13"). Also the suite of the boot-partition packages fetched with
# image/lib/apt-private.sh.
SKYTIME_SUITE=trixie
export SKYTIME_SUITE

# Download caches shared by every build (and by the reproducibility test's
# second build): the root file system's .debs (mmdebstrap) and single .debs
# (apt-private.sh). The image's own cargo target directory (an own lock: no
# fight with the workspace's builds).
APT_CACHE=$ROOT/target/image/apt-cache
CARGO_TARGET=$ROOT/target/image/cargo

# Fixed identities, so two builds agree byte for byte.
DISK_SIGNATURE=0x5c7e0001 # MBR: PARTUUIDs are 5c7e0001-0N
FAT_VOLID=5C7E0001
ROOTFS_UUID=5c7e0002-0000-4000-8000-000000000001
DATA_UUID=5c7e0003-0000-4000-8000-000000000001
BOOT_MIB=256
SLOT_MIB=512
DATA_MIB=64

export LC_ALL=C TZ=UTC

die() {
    echo "image: $*" >&2
    exit 1
}

# The one kernel version installed in root file system tree $1.
kernel_version() {
    local v
    v=$(ls "$1/usr/lib/modules")
    [ "$(echo "$v" | wc -w)" = 1 ] || die "expected one kernel in $1, found: ${v:-none}"
    echo "$v"
}

# remove_tree DIR: deletes a root file system tree, first unmounting what
# an interrupted mmdebstrap or chroot call may have left mounted in it (a
# plain rm -rf would descend into a mounted /proc or /dev).
remove_tree() {
    [ -e "$1" ] || return 0
    local dir
    dir=$(realpath "$1")
    awk -v d="$dir/" 'index($5 "/", d) == 1 && $5 != d { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$dir"
}

# Every file and directory in tree $1 newer than SOURCE_DATE_EPOCH gets it.
clamp_mtimes() {
    find "$1" -xdev -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# sha256 of file $1 (hex only).
sha256_of() {
    local sum
    sum=$(sha256sum < "$1")
    echo "${sum%% *}"
}
