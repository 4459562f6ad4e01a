#!/usr/bin/env bash
# Builds, once, the kernel modules the kernel-PPS VM test
# (tests/tests/kernel_pps_vm.rs) loads into the test VM's Debian amd64
# kernel, which ships without them (no CONFIG_GPIO_SIM, IRQ_SIM,
# PPS_CLIENT_GPIO):
#   build-vm-modules.sh KERNEL_DIR OUT_DIR
# KERNEL_DIR is what fetch-vm-kernel.sh made (vmlinuz, package). OUT_DIR
# receives, uncompressed and without debug information:
#   configfs.ko       Debian's own (=m in that kernel; gpio-sim needs it)
#   irq_sim.ko        kernel/irq/irq_sim.c, the simulated interrupt domain
#   gpio-sim.ko       drivers/gpio/gpio-sim.c: a GPIO chip, made through
#                     configfs, whose input lines the guest drives through
#                     sysfs ("pull"); each change is a real interrupt, so
#                     consumers get real edge events with kernel timestamps
#   pps-gpio.ko       drivers/pps/clients/pps-gpio.c: /dev/ppsN from a GPIO
#                     edge, the driver the Pi image uses
#   pps-sim-board.ko  tests/kmod/pps-sim-board.c: binds pps-gpio to a
#                     gpio-sim line (x86 has no device tree to say so)
#   order             the load order
#
# Why pps-gpio on gpio-sim rather than pps-ktimer: pps-ktimer pulses on a
# kernel timer at whatever phase the timer happens to have, so its "second"
# is not the one the NMEA sentences name; pairing it with NMEA would either
# fail or steer the clock to a random fraction of a second. An edge on a
# gpio-sim line comes when the test makes it (at the second's boundary),
# and the same edge also feeds the GPIO line-event path.
#
# Sources come from Debian's own packages of exactly the VM kernel's
# version (linux-source-6.1, linux-headers of its ABI, linux-kbuild-6.1),
# downloaded with `apt-get download` and unpacked under
# OUT_DIR/../modules-build: nothing is installed on this machine. Each module's vermagic is checked against the
# kernel's own configfs.ko. The modules are unsigned: the kernel loads them
# (tainted E) since it does not enforce signatures.
set -euo pipefail

kdir=$(realpath -m "${1:?usage: build-vm-modules.sh KERNEL_DIR OUT_DIR}")
out=$(realpath -m "${2:?usage: build-vm-modules.sh KERNEL_DIR OUT_DIR}")  # kbuild wants absolute paths
here=$(cd "$(dirname "$0")" && pwd)
board=$here/../kmod/pps-sim-board.c

pkg=$(cat "$kdir/package")              # linux-image-6.1.0-57-amd64
kver=${pkg#linux-image-}                # 6.1.0-57-amd64
abi=${kver%-amd64}                      # 6.1.0-57
# The package version is in the kernel's banner ("... Debian 6.1.192-3 (date)").
# (Whole-input filters only: one that stops early would SIGPIPE under pipefail.)
ver=$(strings "$kdir/vmlinuz" | sed -n 's/.*#1 SMP .*Debian \([0-9][^ ]*\) .*/\1/p' | sort -u)
[[ $ver =~ ^[0-9][^[:space:]]*$ ]] || { echo "no single Debian version in $kdir/vmlinuz: '$ver'" >&2; exit 1; }

# Rebuild when the kernel, this script or the board module changes.
stamp="$pkg $ver $(cat "$0" "$board" | sha256sum | cut -c1-16)"
[ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ] && exit 0

work=$(dirname "$out")/modules-build/$kver
mkdir -p "$work"

# fetch PACKAGE: downloads the .deb of version $ver into $work/dl and
# prints its path. Each stage below keeps what it unpacked and deletes the
# .deb, so a package is downloaded once.
fetch() {
    mkdir -p "$work/dl"
    chmod 755 "$work/dl"  # apt-get download runs as _apt where it can
    (cd "$work/dl" && apt-get download -q "$1=$ver" >&2) || {
        echo "cannot download $1=$ver (is the kernel in $kdir older than the" \
            "archive's?): remove $kdir to fetch the current one" >&2
        return 1
    }
    local debs=("$work/dl/$1_"*.deb)
    echo "${debs[0]}"
}

# Stage 1: Debian's headers and kbuild tools of this ABI, unpacked.
unpack_headers() {
    [ -f "$work/tree/.done" ] && return 0
    rm -rf "$work/tree"
    mkdir -p "$work/tree"
    local p deb
    for p in "linux-headers-$kver" "linux-headers-$abi-common" linux-kbuild-6.1; do
        deb=$(fetch "$p")
        dpkg -x "$deb" "$work/tree"
        rm -f "$deb"
    done
    # The headers' Makefile includes the common part by absolute path.
    sed -i "s|^include /usr/src/|include $work/tree/usr/src/|" \
        "$work/tree/usr/src/linux-headers-$kver/Makefile"
    touch "$work/tree/.done"
}

# Stage 2: the few source files, from the linux-source tarball.
unpack_sources() {
    [ -f "$work/src/.done" ] && return 0
    rm -rf "$work/src"
    mkdir -p "$work/src"
    local files=(drivers/gpio/gpio-sim.c drivers/gpio/gpiolib.h kernel/irq/irq_sim.c
        drivers/pps/clients/pps-gpio.c)
    local deb
    deb=$(fetch linux-source-6.1)
    dpkg-deb --fsys-tarfile "$deb" |
        tar -xO ./usr/src/linux-source-6.1.tar.xz |
        tar -xJ -C "$work/src" --strip-components=1 "${files[@]/#/linux-source-6.1/}"
    rm -f "$deb"
    touch "$work/src/.done"
}

# Stage 3: the kernel's own configfs.ko (and its vermagic, the reference).
unpack_configfs() {
    [ -f "$work/configfs.ko" ] && return 0
    local deb ko
    deb=$(fetch "$pkg")
    rm -rf "$work/image"
    mkdir -p "$work/image"
    dpkg-deb --fsys-tarfile "$deb" |
        tar -x -C "$work/image" --wildcards "./lib/modules/$kver/kernel/fs/configfs/configfs.ko*"
    rm -f "$deb"
    ko=$(find "$work/image" -name 'configfs.ko*')
    case "$ko" in
    *.ko) cp "$ko" "$work/configfs.ko.new" ;;
    *.ko.xz) xz -dc "$ko" >"$work/configfs.ko.new" ;;
    *) echo "unexpected module format: $ko" >&2; return 1 ;;
    esac
    rm -rf "$work/image"
    mv "$work/configfs.ko.new" "$work/configfs.ko"
}

# Stage 4: compile. irq_sim.c is built-in code: as a module it must not call
# irq_to_desc(), which 6.1 no longer exports; generic_handle_irq() does the
# same (looks the descriptor up and runs its flow handler, handle_simple_irq).
build() {
    rm -rf "$work/m"
    mkdir -p "$work/m"
    cp "$work/src/drivers/gpio/gpio-sim.c" "$work/src/drivers/gpio/gpiolib.h" \
        "$work/src/kernel/irq/irq_sim.c" "$work/src/drivers/pps/clients/pps-gpio.c" \
        "$board" "$work/m/"
    local call='handle_simple_irq(irq_to_desc(irqnum));'
    grep -qF "$call" "$work/m/irq_sim.c" || { echo "irq_sim.c: '$call' not found" >&2; return 1; }
    sed -i "s|$call|generic_handle_irq(irqnum);|" "$work/m/irq_sim.c"
    printf '\n#include <linux/module.h>\nMODULE_DESCRIPTION("Interrupt simulator");\nMODULE_LICENSE("GPL");\n' \
        >>"$work/m/irq_sim.c"
    echo 'obj-m := irq_sim.o gpio-sim.o pps-gpio.o pps-sim-board.o' >"$work/m/Kbuild"
    if ! make -s -C "$work/tree/usr/src/linux-headers-$kver" M="$work/m" \
        KBUILD_BUILD_TIMESTAMP=@0 modules >"$work/build.log" 2>&1; then
        cat "$work/build.log" >&2
        return 1
    fi
    # No vmlinux here, so no BTF for the modules: expected, not worth a line each.
    grep -v 'Skipping BTF generation' "$work/build.log" >&2 || true
}

# Stage 5: check, strip, and replace OUT_DIR as a whole.
vermagic() { strings "$1" | sed -n 's/^vermagic=//p'; }
install_modules() {
    local want new=$out.new.$$ m
    want=$(vermagic "$work/configfs.ko")
    rm -rf "$new"
    mkdir -p "$new"
    cp "$work/configfs.ko" "$new/"
    for m in irq_sim gpio-sim pps-gpio pps-sim-board; do
        [ -f "$work/m/$m.ko" ] || { echo "$m.ko was not built" >&2; return 1; }
        local got
        got=$(vermagic "$work/m/$m.ko")
        [ "$got" = "$want" ] || { echo "$m.ko: $got, the kernel wants $want" >&2; return 1; }
        strip --strip-debug -o "$new/$m.ko" "$work/m/$m.ko"
    done
    printf '%s\n' configfs.ko irq_sim.ko gpio-sim.ko pps-gpio.ko pps-sim-board.ko >"$new/order"
    echo "$stamp" >"$new/stamp"
    rm -rf "$out"
    mv "$new" "$out"
    echo "built modules for $kver ($ver): $want" >&2
}

trap 'rm -rf "$out.new.$$"' EXIT
unpack_headers
unpack_sources
unpack_configfs
build
install_modules
