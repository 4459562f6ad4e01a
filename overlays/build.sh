#!/bin/bash
# Build skytime's device-tree overlays and the merged Pi 4 DTBs.
#
#   overlays/build.sh [--base-dtb FILE] [--out DIR]
#
# Outputs (DIR defaults to target/overlays):
#   pios/skytime-pps.dtbo, pios/skytime-uart.dtbo
#       label-targeted, with __symbols__ and parameters: for Raspberry Pi OS
#       (copy to /boot/firmware/overlays/, then dtoverlay= lines).
#   path/skytime-pps-gpio{4,18}[-falling].dtbo, path/skytime-uart.dtbo
#       path-targeted variants for fdtoverlay on DTBs without __symbols__.
#   dtbs/bcm2711-rpi-4-b-pps{4,18}[-falling].dtb
#       the base DTB with the UART overlay and one PPS variant applied;
#   dtbs/bcm2711-rpi-4-b.dtb = the default (PPS on GPIO 4, rising edge).
#
# The base DTB defaults to Debian's (overlays/fetch-base-dtb.sh puts it in
# target/overlays/base/). Needs: cpp, dtc, fdtoverlay, fdtget
# (make overlays-deps).
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
    command -v "$tool" >/dev/null || { echo "$tool is missing: run make overlays-deps" >&2; exit 1; }
done
[ -s "$base" ] || { echo "base DTB $base is missing: run overlays/fetch-base-dtb.sh (make overlays-deps)" >&2; exit 1; }

mkdir -p "$out/pios" "$out/path" "$out/dtbs"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# compile SRC OUT [cpp flags...]: C preprocessor (for the variants) then dtc.
compile() {
    local src=$1 dst=$2; shift 2
    cpp -nostdinc -undef -P -x assembler-with-cpp -I "$here" "$@" "$here/$src" > "$tmp/pre.dts"
    dtc -q -@ -I dts -O dtb -o "$dst" "$tmp/pre.dts"
}

compile skytime-pps.dts "$out/pios/skytime-pps.dtbo"
compile skytime-uart.dts "$out/pios/skytime-uart.dtbo"

# The pps node refers to the GPIO controller, which only a label could name
# across trees; without __symbols__ we pass the base DTB's phandle instead.
gpio_node=/soc/gpio@7e200000
phandle=$(fdtget -t x "$base" "$gpio_node" phandle) ||
    { echo "$base has no $gpio_node with a phandle: not a BCM2711 DTB?" >&2; exit 1; }
path_flags=(-DSKYTIME_PATH_TARGETS "-DSKYTIME_GPIO_PHANDLE=0x$phandle")
compile skytime-uart.dts "$out/path/skytime-uart.dtbo" "${path_flags[@]}"

for gpio in 4 18; do
    for edge in "" -falling; do
        flags=("${path_flags[@]}" "-DPPS_GPIO=$gpio")
        [ -z "$edge" ] || flags+=(-DPPS_FALLING)
        name=pps$gpio$edge
        compile skytime-pps.dts "$out/path/skytime-pps-gpio$gpio$edge.dtbo" "${flags[@]}"
        fdtoverlay -i "$base" -o "$out/dtbs/bcm2711-rpi-4-b-$name.dtb" \
            "$out/path/skytime-uart.dtbo" "$out/path/skytime-pps-gpio$gpio$edge.dtbo"
    done
done
cp "$out/dtbs/bcm2711-rpi-4-b-pps4.dtb" "$out/dtbs/bcm2711-rpi-4-b.dtb"
echo "overlays and DTBs in $out"
