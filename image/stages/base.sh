#!/bin/bash
# Stage "base": the Debian arm64 root file system, with mmdebstrap.
#
#   in:  image/packages.list, image/initramfs-modules.list, image/initramfs/
#   out: $WORK/base/                  the tree (kernel, initramfs included)
#        $WORK/base/.skytime-packages every installed package and the sha256
#                                     of the .deb it came from
#
# Downloaded .debs are cached in $APT_CACHE and reused by the next build.
# The initramfs is built exactly once, with only the modules in
# image/initramfs-modules.list (mkinitramfs under qemu-user is slow:
# MODULES=most and the automatic runs from the kernel postinst and the
# trigger would take over 30 minutes). image/initramfs/ adds the script
# that grows the data partition. depmod, which the kernel's postinst runs,
# is diverted too and run once by the host's kmod instead: on Debian 13's
# 4351 xz-compressed modules it takes a minute under qemu-user and a few
# seconds natively.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
: "${SOURCE_DATE_EPOCH:?}"
export SOURCE_DATE_EPOCH

"$IMAGE/lib/binfmt.sh"
mkdir -p "$APT_CACHE"
packages=$(grep -v '^#' "$IMAGE/packages.list" | grep -v '^$' | paste -sd, -)
modules=$(grep -v '^#' "$IMAGE/initramfs-modules.list" | grep -v '^$')

# Built beside the old tree and renamed at the end: an interrupted run
# leaves no half tree that --reuse-base would take.
new=$WORK/base.new
remove_tree "$new"
mmdebstrap --architectures=arm64 --variant=minbase \
    --components=main,non-free-firmware \
    --include="$packages" \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
    --setup-hook="sync-in '$APT_CACHE' /var/cache/apt/archives/" \
    --essential-hook='mkdir -p "$1"/etc/initramfs-tools/conf.d "$1"/usr/share/initramfs-tools/modules.d' \
    --essential-hook='printf "MODULES=list\nCOMPRESS=gzip\n" > "$1"/etc/initramfs-tools/conf.d/skytime.conf' \
    --essential-hook="printf '%s\n' $(printf '%q ' $modules) > \"\$1\"/usr/share/initramfs-tools/modules.d/skytime.conf" \
    --essential-hook='for t in update-initramfs depmod; do chroot "$1" dpkg-divert --local --rename --divert /usr/sbin/$t.skytime --add /usr/sbin/$t; ln -s /bin/true "$1"/usr/sbin/$t; done' \
    --customize-hook="'$IMAGE/lib/installed-debs.sh' \"\$1\" > \"\$1\"/.skytime-packages" \
    --customize-hook="sync-out /var/cache/apt/archives '$APT_CACHE'" \
    --customize-hook='for t in update-initramfs depmod; do rm "$1"/usr/sbin/$t; chroot "$1" dpkg-divert --local --rename --remove /usr/sbin/$t; done' \
    --customize-hook='depmod -b "$1" "$(ls "$1"/usr/lib/modules)"' \
    --customize-hook="install -D -m 0755 '$IMAGE/initramfs/hook' \"\$1\"/etc/initramfs-tools/hooks/skytime" \
    --customize-hook="install -D -m 0755 '$IMAGE/initramfs/grow-data' \"\$1\"/etc/initramfs-tools/scripts/local-premount/skytime-grow-data" \
    --customize-hook='kver=$(ls "$1"/usr/lib/modules); chroot "$1" update-initramfs -c -k "$kver"' \
    "$SKYTIME_SUITE" "$new"
remove_tree "$WORK/base"
mv "$new" "$WORK/base"
