# skytime U-Boot boot script: A/B slot choice with boot attempt counters.
# Compiled to boot.scr (mkimage -T script) on the FAT boot partition.
#
# State: BOOT_ORDER ("A B": try A first), BOOT_A_LEFT, BOOT_B_LEFT (attempts
# left). Every boot costs the chosen slot one attempt; the booted system
# gives it back (mark-good) once skytimed runs. A slot with no attempts left
# is skipped; if none has any, all are reset so the device keeps trying.
#
# Where the state lives, and why a power cut cannot lose it: two redundant
# raw U-Boot environment copies of 16 KiB in the gap before the first
# partition (which starts at 4 MiB), outside any file system: copy 0 at
# 1 MiB (block 0x800), copy 1 at 1 MiB + 16 KiB (block 0x820). Each copy is
# [CRC32 of data (4)][flags (1)][data], the layout libubootenv reads for a
# redundant environment, so Linux (fw_printenv/fw_setenv, RAUC's uboot
# backend; /etc/fw_env.config) sees the same two copies. The copy with the
# newer flags counter wins (255 -> 0 wraps), a copy with a bad CRC is
# ignored, and every write goes to the OTHER copy with the counter + 1: a
# write torn by a power cut leaves a bad CRC there and the previous state
# intact in the copy that was read. No file system is written at boot.
#
# Slot layout: root file system A = partition 2, B = partition 3 (erofs,
# which U-Boot cannot read), so each slot's kernel, initramfs and DTBs live
# in slot-a/ and slot-b/ on the boot partition, written with the slot.

setenv skytime_part 1
setenv skytime_envaddr ${pxefile_addr_r}
if test "${board}" = "rpi"; then
    # U-Boot's rpi defaults put the DTB at 0x02600000, leaving 37 MiB for
    # the kernel, and its scratch (pxefile_addr_r) at 0x02500000; Debian
    # 13's arm64 Image needs 37.1 MiB (its header's image_size) and grows.
    # Kernel at 2 MiB (booti's alignment: no copy), everything else above
    # 95 MiB: 93 MiB for the kernel (image/stages/slot-boot.sh checks it).
    setenv kernel_addr_r 0x00200000
    setenv skytime_envaddr 0x05f00000
    setenv fdt_addr_r 0x06000000
    setenv ramdisk_addr_r 0x06100000
fi
if test -z "${devtype}"; then setenv devtype mmc; fi
if test -z "${devnum}"; then setenv devnum 0; fi
${devtype} dev ${devnum}

# Buffers (16 KiB each) from skytime_envaddr: the two raw copies, each
# copy's CRC + data made contiguous (U-Boot's `env import -c` and
# `env export -c` know no flags byte: [CRC (4)][data]), and the copy to
# write. Data = 0x4000 - 5 = 0x3ffb bytes, so U-Boot's image is 0x3fff.
setenv skytime_raw0 ${skytime_envaddr}
setexpr skytime_raw1 ${skytime_envaddr} + 0x4000
setexpr skytime_chk0 ${skytime_envaddr} + 0x8000
setexpr skytime_chk1 ${skytime_envaddr} + 0xc000
setexpr skytime_out ${skytime_envaddr} + 0x10000
setenv skytime_blk0 0x800
setenv skytime_blk1 0x820

# Each copy: read it raw, keep its flags byte, and check its CRC.
setenv skytime_ok0 0
setenv skytime_flags0 0
if ${devtype} read ${skytime_raw0} ${skytime_blk0} 0x20; then
    setexpr skytime_at ${skytime_raw0} + 4
    setexpr.b skytime_flags0 *${skytime_at}
    cp.b ${skytime_raw0} ${skytime_chk0} 4
    setexpr skytime_at ${skytime_raw0} + 5
    setexpr skytime_to ${skytime_chk0} + 4
    cp.b ${skytime_at} ${skytime_to} 0x3ffb
    if env import -c ${skytime_chk0} 0x3fff skytime_none; then setenv skytime_ok0 1; fi
fi
setenv skytime_ok1 0
setenv skytime_flags1 0
if ${devtype} read ${skytime_raw1} ${skytime_blk1} 0x20; then
    setexpr skytime_at ${skytime_raw1} + 4
    setexpr.b skytime_flags1 *${skytime_at}
    cp.b ${skytime_raw1} ${skytime_chk1} 4
    setexpr skytime_at ${skytime_raw1} + 5
    setexpr skytime_to ${skytime_chk1} + 4
    cp.b ${skytime_at} ${skytime_to} 0x3ffb
    if env import -c ${skytime_chk1} 0x3fff skytime_none; then setenv skytime_ok1 1; fi
fi

# The newer valid copy, as U-Boot's own redundant env and libubootenv
# choose: both valid -> the higher flags, except 255 < 0 (wrap-around),
# equal -> copy 0. (f1 + 0xff - f0) / 0x100 is 1 exactly when f1 > f0;
# setexpr computes in hex, `test -gt` would read decimal.
setenv skytime_cur none
if test "${skytime_ok0}" = 1; then setenv skytime_cur 0; fi
if test "${skytime_ok1}" = 1; then
    if test "${skytime_cur}" = none; then
        setenv skytime_cur 1
    else
        setexpr skytime_cmp ${skytime_flags1} + 0xff
        setexpr skytime_cmp ${skytime_cmp} - ${skytime_flags0}
        setexpr skytime_cmp ${skytime_cmp} / 0x100
        if test "${skytime_cmp}" = 1; then setenv skytime_cur 1; fi
        if test "${skytime_flags0}" = ff && test "${skytime_flags1}" = 0; then setenv skytime_cur 1; fi
        if test "${skytime_flags1}" = ff && test "${skytime_flags0}" = 0; then setenv skytime_cur 0; fi
    fi
fi

setenv BOOT_ORDER
setenv BOOT_A_LEFT
setenv BOOT_B_LEFT
# The state is written to the other copy with the flags counter + 1.
if test "${skytime_cur}" = 0; then
    env import -c ${skytime_chk0} 0x3fff BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
    setenv skytime_flags ${skytime_flags0}
    setenv skytime_wblk ${skytime_blk1}
    echo "skytime: boot state from copy 0 (flags ${skytime_flags0})"
elif test "${skytime_cur}" = 1; then
    env import -c ${skytime_chk1} 0x3fff BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
    setenv skytime_flags ${skytime_flags1}
    setenv skytime_wblk ${skytime_blk0}
    echo "skytime: boot state from copy 1 (flags ${skytime_flags1})"
else
    echo "skytime: no valid boot state copy; using the defaults"
    setenv skytime_flags 0
    setenv skytime_wblk ${skytime_blk0}
fi
if test -z "${BOOT_ORDER}"; then setenv BOOT_ORDER "A B"; fi
if test -z "${BOOT_A_LEFT}"; then setenv BOOT_A_LEFT 3; fi
if test -z "${BOOT_B_LEFT}"; then setenv BOOT_B_LEFT 3; fi

setenv skytime_slot
for s in ${BOOT_ORDER}; do
    if test -z "${skytime_slot}"; then
        if test "${s}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
            setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
            setenv skytime_slot A
            setenv skytime_rootpart 2
            setenv skytime_dir slot-a
        fi
        if test "${s}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
            setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
            setenv skytime_slot B
            setenv skytime_rootpart 3
            setenv skytime_dir slot-b
        fi
    fi
done
if test -z "${skytime_slot}"; then
    echo "skytime: no slot has boot attempts left; resetting the counters"
    setenv BOOT_A_LEFT 3
    setenv BOOT_B_LEFT 3
fi

# Write the other copy: U-Boot's image ([CRC][data]) exported to a scratch
# buffer, then laid out as [CRC][flags][data].
setexpr skytime_flags ${skytime_flags} + 1
setexpr skytime_flags ${skytime_flags} % 0x100
env export -c -s 0x3fff ${skytime_chk0} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
cp.b ${skytime_chk0} ${skytime_out} 4
setexpr skytime_at ${skytime_chk0} + 4
setexpr skytime_to ${skytime_out} + 5
cp.b ${skytime_at} ${skytime_to} 0x3ffb
setexpr skytime_at ${skytime_out} + 4
mw.b ${skytime_at} ${skytime_flags}
${devtype} write ${skytime_out} ${skytime_wblk} 0x20
if test -z "${skytime_slot}"; then reset; fi
echo "skytime: booting slot ${skytime_slot} (attempts left: A=${BOOT_A_LEFT} B=${BOOT_B_LEFT}, order ${BOOT_ORDER})"

# The GPS owns the Pi's PL011 (ttyAMA0), so the Pi's console is HDMI only;
# QEMU's virt board has its PL011 free for the serial log.
# On the Pi, skytime-dtb.txt on the boot partition may choose the slot's
# DTB (skytime_dtb, e.g. "bcm2711-rpi-4-b-pps18.dtb") and the console
# (skytime_console, e.g. "console=ttyAMA0,115200": the raspi4b test's
# serial log). -r: the file may come from an editor that ends lines with
# CRLF. Without the file a Pi gets the defaults.
if test "${board}" = "rpi"; then
    setenv skytime_console "console=tty1"
    setenv skytime_dtb bcm2711-rpi-4-b.dtb
    if load ${devtype} ${devnum}:${skytime_part} ${skytime_envaddr} skytime-dtb.txt; then
        env import -t -r ${skytime_envaddr} ${filesize} skytime_dtb skytime_console
    fi
else
    setenv skytime_console "console=ttyAMA0,115200"
fi
# rauc.slot= tells RAUC the booted slot by its bootname (system.conf).
setenv bootargs "root=PARTUUID=5c7e0001-0${skytime_rootpart} rootfstype=erofs ro rootwait ${skytime_console} panic=10 skytime.slot=${skytime_slot} rauc.slot=${skytime_slot}"

load ${devtype} ${devnum}:${skytime_part} ${kernel_addr_r} ${skytime_dir}/vmlinuz || reset
load ${devtype} ${devnum}:${skytime_part} ${ramdisk_addr_r} ${skytime_dir}/initrd.img || reset
setenv skytime_initrd_size ${filesize}
if test "${board}" = "rpi"; then
    # bcm2711-rpi-4-b.dtb = PPS on GPIO 4, or the skytime_dtb chosen above.
    # A name that is not there falls back to the default rather than
    # resetting (which would loop).
    if load ${devtype} ${devnum}:${skytime_part} ${fdt_addr_r} ${skytime_dir}/dtbs/${skytime_dtb}; then
        echo "skytime: device tree ${skytime_dtb}"
    else
        echo "skytime: no ${skytime_dir}/dtbs/${skytime_dtb}, using bcm2711-rpi-4-b.dtb"
        load ${devtype} ${devnum}:${skytime_part} ${fdt_addr_r} ${skytime_dir}/dtbs/bcm2711-rpi-4-b.dtb || reset
    fi
    booti ${kernel_addr_r} ${ramdisk_addr_r}:${skytime_initrd_size} ${fdt_addr_r}
else
    # QEMU virt: the machine's own device tree.
    booti ${kernel_addr_r} ${ramdisk_addr_r}:${skytime_initrd_size} ${fdtcontroladdr}
fi
echo "skytime: booting slot ${skytime_slot} failed"
reset
