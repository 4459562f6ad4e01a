# skytime U-Boot boot script: A/B slot choice with boot attempt counters.
# Compiled to boot.scr (mkimage -T script) on the FAT boot partition.
#
# State: BOOT_ORDER ("A B": try A first), BOOT_A_LEFT, BOOT_B_LEFT (attempts
# left), kept as a U-Boot binary environment with CRC (env export -c) in the
# file skytime.env on the boot partition, not in the board's own env store:
# that works the same on the Pi (FAT) and in QEMU (where the board env is in
# flash), and Linux edits it with fw_setenv (libubootenv, fw_env.config).
# Every boot costs the chosen slot one attempt; the booted system gives it
# back (mark-good) once skytimed runs. A slot with no attempts left is
# skipped; if none has any, all are reset so the device keeps trying.
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
setenv skytime_envfile skytime.env
if test -z "${devtype}"; then setenv devtype mmc; fi
if test -z "${devnum}"; then setenv devnum 0; fi

setenv BOOT_ORDER
setenv BOOT_A_LEFT
setenv BOOT_B_LEFT
if load ${devtype} ${devnum}:${skytime_part} ${skytime_envaddr} ${skytime_envfile}; then
    env import -c ${skytime_envaddr} ${filesize} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
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
    env export -c -s 0x4000 ${skytime_envaddr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
    fatwrite ${devtype} ${devnum}:${skytime_part} ${skytime_envaddr} ${skytime_envfile} 0x4000
    reset
fi
env export -c -s 0x4000 ${skytime_envaddr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
fatwrite ${devtype} ${devnum}:${skytime_part} ${skytime_envaddr} ${skytime_envfile} 0x4000
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
