#!/bin/bash
# Stage 1 of the image: Debian arm64 root file system with mmdebstrap.
#
#   image/lib/rootfs-base.sh OUTDIR
#
# Package list: image/packages.list. Downloaded .debs are cached in
# target/image/apt-cache and reused on the next build. The initramfs is
# built exactly once, with only the modules in image/initramfs-modules.list
# (mkinitramfs under qemu-user is slow: MODULES=most and the automatic runs
# from the kernel postinst and the trigger would take over 30 minutes).
# image/initramfs/ adds the script that grows the data partition.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image=$(cd "$here/.." && pwd)
root=$(cd "$image/.." && pwd)
out=$1
cache=$root/target/image/apt-cache
mkdir -p "$cache"
: "${SOURCE_DATE_EPOCH:?set SOURCE_DATE_EPOCH}"
export SOURCE_DATE_EPOCH

"$here/binfmt.sh"
packages=$(grep -v '^#' "$image/packages.list" | grep -v '^$' | paste -sd, -)
modules=$(grep -v '^#' "$image/initramfs-modules.list" | grep -v '^$')

rm -rf "$out"
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
    --setup-hook="sync-in '$cache' /var/cache/apt/archives/" \
    --essential-hook='mkdir -p "$1"/etc/initramfs-tools/conf.d "$1"/usr/share/initramfs-tools/modules.d' \
    --essential-hook='printf "MODULES=list\nCOMPRESS=gzip\n" > "$1"/etc/initramfs-tools/conf.d/skytime.conf' \
    --essential-hook="printf '%s\n' $(printf '%q ' $modules) > \"\$1\"/usr/share/initramfs-tools/modules.d/skytime.conf" \
    --essential-hook='chroot "$1" dpkg-divert --local --rename --divert /usr/sbin/update-initramfs.skytime --add /usr/sbin/update-initramfs' \
    --essential-hook='ln -s /bin/true "$1"/usr/sbin/update-initramfs' \
    --customize-hook="sync-out /var/cache/apt/archives '$cache'" \
    --customize-hook='rm "$1"/usr/sbin/update-initramfs' \
    --customize-hook='chroot "$1" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs' \
    --customize-hook="install -D -m 0755 '$image/initramfs/hook' \"\$1\"/etc/initramfs-tools/hooks/skytime" \
    --customize-hook="install -D -m 0755 '$image/initramfs/grow-data' \"\$1\"/etc/initramfs-tools/scripts/local-premount/skytime-grow-data" \
    --customize-hook='kver=$(ls "$1"/lib/modules); chroot "$1" update-initramfs -c -k "$kver"' \
    --customize-hook='chroot "$1" dpkg-query -W -f="\${Package} \${Version} \${Architecture} \${source:Package} \${source:Version}\n" | LC_ALL=C sort > "$1"/.skytime-packages' \
    bookworm "$out"
