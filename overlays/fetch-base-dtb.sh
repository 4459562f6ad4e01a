#!/bin/bash
# Fetch the image's Debian release's (13, trixie) arm64 kernel package
# (cached under target/image/debs) and extract its Raspberry Pi 4 DTB to
# target/overlays/base/.
#
#   overlays/fetch-base-dtb.sh [KERNEL-PACKAGE]
#
# KERNEL-PACKAGE defaults to what linux-image-arm64 depends on today
# (linux-image-6.12.NN+deb13-arm64): the DTB the overlay tests merge into.
# The image build itself merges into the DTB of the kernel its root file
# system got (image/stages/slot-boot.sh), so DTB and kernel always match.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=../image/lib/apt-private.sh
. "$root/image/lib/apt-private.sh"

apt_private_update
pkg=${1:-$(apt_private_dep linux-image-arm64 arm64 '^linux-image-6')}
deb=$(apt_private_fetch "$pkg" arm64)
dest=$root/target/overlays/base
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './usr/lib/linux-image-*/broadcom/bcm2711-rpi-4-b.dtb'
cp "$tmp"/usr/lib/linux-image-*/broadcom/bcm2711-rpi-4-b.dtb "$dest/bcm2711-rpi-4-b.dtb.new"
mv "$dest/bcm2711-rpi-4-b.dtb.new" "$dest/bcm2711-rpi-4-b.dtb"
echo "$pkg $(basename "$deb")" > "$dest/SOURCE"
echo "$dest/bcm2711-rpi-4-b.dtb from $(basename "$deb")"
