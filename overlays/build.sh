#!/bin/bash
# Build skytime's device-tree overlays and the merged Pi 4 DTBs.
#
#   overlays/build.sh [--base-dtb FILE] [--out DIR]
#
# Outputs (DIR defaults to target/overlays):
#   pios/skytime-pps.dtbo, pios/skytime-uart.dtbo
#       label-targeted, with __symbols__ and parameters: for Raspberry Pi OS
#       (copy to /boot/firmware/overlays/, then dtoverlay= lines).
#   variants/skytime-pps-gpio{4,18}[-falling].dtbo
#       the PPS overlay with each pin and edge built in (fdtoverlay, unlike
#       the Pi firmware, takes no parameters).
#   dtbs/bcm2711-rpi-4-b-pps{4,18}[-falling].dtb
#       the base DTB with the UART overlay and one PPS variant applied;
#   dtbs/bcm2711-rpi-4-b.dtb = the default (PPS on GPIO 4, rising edge).
#
# The base DTB defaults to Debian's (overlays/fetch-base-dtb.sh puts it in
# target/overlays/base/). Debian 13's DTBs carry __symbols__, so fdtoverlay
# resolves the overlays' labels (&gpio, &uart0, ...) in them exactly as the
# Pi firmware does. Needs: cpp, dtc, fdtoverlay, fdtget (device-tree-compiler).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=$root/target/overlays
base=$root/target/overlays/base/bcm2711-rpi-4-b.dtb
while [ $# -gt 0 ]; do
    case $1 in
    --base-dtb) base=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--base-dtb FILE] [--out DIR]" >&2; exit 2 ;;
    esac
done
for tool in cpp dtc fdtoverlay fdtget; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: run make test-deps" >&2; exit 1; }
done
[ -s "$base" ] || { echo "base DTB $base is missing: run overlays/fetch-base-dtb.sh (make test-deps)" >&2; exit 1; }

mkdir -p "$out/pios" "$out/variants" "$out/dtbs"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# compile SRC OUT [cpp flags...]: C preprocessor (for the variants) then dtc
# (-@: keep the labels, so fdtoverlay and the firmware resolve them).
compile() {
    local src=$1 dst=$2; shift 2
    cpp -nostdinc -undef -P -x assembler-with-cpp -I "$here" "$@" "$here/$src" > "$tmp/pre.dts"
    dtc -q -@ -I dts -O dtb -o "$dst" "$tmp/pre.dts"
}

compile skytime-pps.dts "$out/pios/skytime-pps.dtbo"
compile skytime-uart.dts "$out/pios/skytime-uart.dtbo"

# The labels the overlays target must be in the base's __symbols__.
for label in gpio uart0 uart1 bt; do
    fdtget "$base" /__symbols__ "$label" >/dev/null 2>&1 ||
        { echo "$base has no label '$label' in /__symbols__: not a BCM2711 DTB built with symbols (dtc -@)?" >&2; exit 1; }
done

for gpio in 4 18; do
    for edge in "" -falling; do
        flags=("-DPPS_GPIO=$gpio")
        [ -z "$edge" ] || flags+=(-DPPS_FALLING)
        name=pps$gpio$edge
        compile skytime-pps.dts "$out/variants/skytime-pps-gpio$gpio$edge.dtbo" "${flags[@]}"
        fdtoverlay -i "$base" -o "$out/dtbs/bcm2711-rpi-4-b-$name.dtb" \
            "$out/pios/skytime-uart.dtbo" "$out/variants/skytime-pps-gpio$gpio$edge.dtbo"
    done
done
cp "$out/dtbs/bcm2711-rpi-4-b-pps4.dtb" "$out/dtbs/bcm2711-rpi-4-b.dtb"
echo "overlays and DTBs in $out"
