#!/bin/bash
# Stage "manifest": what the image is made of.
#
#   in:  the other stages' outputs and notes ($WORK/packages.txt,
#        $WORK/boot-debs.txt, $WORK/kernel-layout, $WORK/modules-kept.txt,
#        $WORK/ota.txt)
#   out: $STAGING/skytime-rpi4.manifest
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"

# Not "git status | grep -q .": under pipefail, grep quitting at the first
# line can fail git with SIGPIPE and turn a dirty tree into a clean one.
status=$(git -C "$ROOT" status --porcelain 2>/dev/null || echo unknown)
if [ -z "$status" ]; then dirty=no; elif [ "$status" = unknown ]; then dirty=unknown; else dirty=yes; fi
rootfs=$WORK/rootfs
kver=$(kernel_version "$rootfs")

{
    echo "# skytime-rpi4.img manifest"
    echo "debian_suite $SKYTIME_SUITE"
    echo "source_date_epoch $SOURCE_DATE_EPOCH"
    echo "skytime_commit $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "skytime_tree_dirty $dirty"
    echo "kernel $kver"
    # the version bundles are compared with, the device family, and the
    # keyring the image trusts (development or release, its sha256)
    cat "$WORK/ota.txt"
    # the kernel's image_size and the room ota/boot.cmd gives it on the Pi
    cat "$WORK/kernel-layout"
    echo "image_sha256 $(cut -d' ' -f1 "$STAGING/skytime-rpi4.img.sha256")"
    echo "rootfs_sha256 $(sha256_of "$STAGING/rootfs.erofs")"
    echo "boot_sha256 $(sha256_of "$STAGING/boot.vfat")"
    echo
    echo "# skytime binaries (aarch64-unknown-linux-musl, stripped)"
    echo "binary /usr/bin/skytimed $(sha256_of "$rootfs/usr/bin/skytimed")"
    echo "binary /usr/bin/skytime-mgmtd $(sha256_of "$rootfs/usr/bin/skytime-mgmtd")"
    echo "binary skytime-rauc-hook $(sha256_of "$WORK/bin/skytime-rauc-hook")"
    echo "binary /usr/libexec/skytime/skytime-update-guard $(sha256_of "$rootfs/usr/libexec/skytime/skytime-update-guard")"
    echo
    echo "# kernel modules kept (image/keep-modules.list and their dependencies)"
    sed 's/^/module /' "$WORK/modules-kept.txt"
    echo
    echo "# build inputs from this repository (sha256 of each file)"
    (cd "$ROOT" && find image ota overlays daemon/skytimed/dist daemon/mgmtd/dist -type f ! -name '*~' | sort |
        xargs sha256sum | sed 's/^/input /')
    echo "input Cargo.lock $(sha256_of "$ROOT/Cargo.lock")"
    echo
    echo "# Debian packages: name version arch source source-version sha256-of-.deb"
    sed 's/^/package /' "$WORK/packages.txt"
    echo "# on the boot partition: name version arch sha256-of-.deb"
    sed 's/^/boot-package /' "$WORK/boot-debs.txt"
} > "$STAGING/skytime-rpi4.manifest"
