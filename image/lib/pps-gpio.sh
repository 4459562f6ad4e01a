#!/bin/bash
# Build pps-gpio.ko out of tree for Debian's arm64 kernel, which ships
# without CONFIG_PPS_CLIENT_GPIO (the PPS core is built in).
#
#   image/lib/pps-gpio.sh KERNEL-VERSION OUT.ko      (e.g. 6.1.0-56-arm64)
#
# Uses Debian's own build inputs, fetched once into target/image/debs: the
# driver source from linux-source-6.1, the arm64 headers of exactly that
# kernel ABI, and the amd64 kbuild host tools; cross-compiled with
# gcc-aarch64-linux-gnu. The module's vermagic matches the in-tree modules;
# it is unsigned (the kernel loads it, tainted E).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/apt-private.sh"
kver=$1 out=$2
abi=${kver%-arm64}                  # 6.1.0-56
work=$root/target/image/pps-gpio/$kver
apt_private_update

# The kernel package version (6.1.NNN-N) names the matching sources.
pkgver=$(apt_private_version "linux-image-$kver" arm64)
if [ ! -s "$work/pps-gpio.c" ]; then
    rm -rf "$work"; mkdir -p "$work/tree"
    for spec in "linux-headers-$kver arm64" "linux-headers-$abi-common all" "linux-kbuild-6.1 amd64"; do
        set -- $spec
        dpkg -x "$(apt_private_fetch "$1" "$2" "$pkgver")" "$work/tree"
    done
    src=$(apt_private_fetch linux-source-6.1 all "$pkgver")
    dpkg-deb --fsys-tarfile "$src" | tar -xO ./usr/src/linux-source-6.1.tar.xz |
        tar -xJ -O linux-source-6.1/drivers/pps/clients/pps-gpio.c > "$work/pps-gpio.c.new"
    mv "$work/pps-gpio.c.new" "$work/pps-gpio.c"
fi

hdr=$work/tree/usr/src/linux-headers-$kver
# The arm64 headers' Makefile includes the common headers by absolute path.
# (anchored on "include /usr", so a second run changes nothing)
sed -i "s|include /usr/src/linux-headers-$abi-common|include $work/tree/usr/src/linux-headers-$abi-common|" "$hdr/Makefile"
mkdir -p "$work/m"
cp "$work/pps-gpio.c" "$work/m/pps-gpio.c"
echo 'obj-m := pps-gpio.o' > "$work/m/Kbuild"
make -s -C "$hdr" M="$work/m" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- \
    KBUILD_BUILD_TIMESTAMP="@${SOURCE_DATE_EPOCH:-0}" modules >&2
aarch64-linux-gnu-strip --strip-debug -o "$out" "$work/m/pps-gpio.ko"
strings "$out" | grep "^vermagic=" >&2
