# Shared by the skytime boot scripts (firstboot, identity);
# sourced, not run.

# The FAT boot partition (the image's fixed MBR disk signature).
SKYTIME_BOOTDEV=PARTUUID=5c7e0001-01

# mount_boot DIR ro|rw: the boot partition at DIR, nothing executable.
mount_boot() {
    mkdir -p "$1"
    mount -t vfat -o "$2,nodev,nosuid,noexec,umask=0077" "$SKYTIME_BOOTDEV" "$1"
}

# write_atomic DST MODE GROUP < content: a power cut leaves the old file or
# the new one, never half of one (temp file, fsync, rename).
write_atomic() {
    cat > "$1.new"
    chmod "$2" "$1.new"
    chgrp "$3" "$1.new"
    sync "$1.new"
    mv -f "$1.new" "$1"
}
