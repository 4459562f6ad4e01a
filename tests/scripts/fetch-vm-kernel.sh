#!/usr/bin/env bash
# Fetches Debian's amd64 kernel for the clock VM test (tests/tests/clock_vm.rs)
# into a cache directory, once:
#   fetch-vm-kernel.sh DIR
# leaves DIR/vmlinuz (the kernel) and DIR/modules/ (the few modules the
# guest needs, uncompressed, with the order to load them in
# DIR/modules/order). Nothing is installed on this machine: the package is
# downloaded with `apt-get download` and unpacked with `dpkg-deb -x`.
set -euo pipefail

dir=${1:?usage: fetch-vm-kernel.sh DIR}
[ -f "$dir/vmlinuz" ] && [ -f "$dir/modules/order" ] && exit 0

mkdir -p "$dir"
work=$(mktemp -d "$dir/fetch.XXXXXX")
chmod 755 "$work"  # apt-get download runs as _apt where it can
trap 'rm -rf "$work"' EXIT

# The metapackage names the current kernel package.
resolve() {
    apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
download() {
    [ -n "$pkg" ] && (cd "$work" && apt-get download -q "$pkg" >&2)
}
pkg=$(resolve)
if ! download; then
    # No package lists yet, or they name a kernel the archive has replaced.
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    pkg=$(resolve)
    [ -n "$pkg" ] || { echo "cannot resolve linux-image-amd64" >&2; exit 1; }
    download
fi
echo "fetched $pkg" >&2
dpkg-deb -x "$work"/"$pkg"_*.deb "$work/root"

kver=${pkg#linux-image-}
vmlinuz=$(ls "$work/root/boot/vmlinuz-$kver"* | head -n1)
config=$(ls "$work/root/boot/config-$kver"* | head -n1)
moddir=$(ls -d "$work/root/lib/modules/$kver"* | head -n1)

# The guest needs a serial console (8250, built in) and a network card:
# e1000 (QEMU's default for -M pc), a module without dependencies.
grep -q '^CONFIG_SERIAL_8250_CONSOLE=y' "$config" || { echo "$pkg: no 8250 console" >&2; exit 1; }
mkdir -p "$work/modules"
: >"$work/modules/order"
for m in e1000; do
    if grep -q "^CONFIG_$(echo "$m" | tr a-z A-Z)=y" "$config"; then
        continue
    fi
    ko=$(find "$moddir" -name "$m.ko*" | head -n1)
    [ -n "$ko" ] || { echo "$pkg: module $m not found" >&2; exit 1; }
    case "$ko" in
    *.ko) cp "$ko" "$work/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$ko" >"$work/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$ko" >"$work/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$ko" >"$work/modules/$m.ko" ;;
    *) echo "unknown module format: $ko" >&2; exit 1 ;;
    esac
    echo "$m.ko" >>"$work/modules/order"
done

cp "$vmlinuz" "$work/vmlinuz.new"
cp "$config" "$dir/config"
echo "$pkg" >"$dir/package"
rm -rf "$dir/modules"
mv "$work/modules" "$dir/modules"
mv "$work/vmlinuz.new" "$dir/vmlinuz"
