//! The Raspberry Pi half of the boot script (`board=rpi` in ota/boot.cmd),
//! run by the image's own U-Boot (`rpi_arm64` from u-boot-rpi, taken off the
//! boot partition) on the host QEMU 7.2's Raspberry Pi 3B, a board the same
//! U-Boot binary supports. The image sits on the emulated SD card, as on
//! the Pi. The whole Pi 4 chain, up to Linux and skytimed, runs on QEMU
//! 10's raspi4b in image_rpi4.rs; this test covers the DTB choices the
//! boot script offers (default, a shipped variant, a missing name).
//!
//! What it proves, from the host only: U-Boot finds boot.scr on the SD
//! card's FAT partition, reads and writes the raw boot-state copies (the attempt it
//! takes is saved), picks slot A, loads the slot's kernel, initramfs and
//! Pi 4 DTB at the Pi load addresses the script sets (kernel at 2 MiB, DTB
//! at 0x06000000, initramfs above it: no overlap, the DTB passes U-Boot's
//! checks) and hands over to the kernel; `skytime-dtb.txt` on the boot
//! partition picks another of the slot's DTBs, and a name that is not there
//! falls back to the default. It stops at the handover: the DTB is the Pi
//! 4's, so Linux is not expected to run on the emulated Pi 3. The Pi
//! firmware (start4.elf, config.txt) is not emulated: QEMU loads U-Boot
//! itself, with the Pi 3's DTB from the kernel package, as the firmware
//! would.

mod image_support;

use image_support::*;
use std::fs;
use std::time::Duration;

#[test]
fn pi_uboot_runs_the_boot_script_and_starts_the_slot_kernel() {
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let img = copy_image(dir.path());
    let uboot = dir.path().join("u-boot.bin");
    get_boot_file(&img, "u-boot.bin", &uboot);
    // The Pi 3B's device tree from the kernel package the image was built
    // from (mmdebstrap's tree, kept by `make image`).
    let base = repo().join("target/image/work/base/usr/lib");
    let kernel_dir = fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make image` first)", base.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("linux-image-"))
        })
        .expect("no linux-image-* in the image's base tree");
    let dtb = kernel_dir.join("broadcom/bcm2837-rpi-3-b.dtb");
    assert!(dtb.exists(), "{} missing", dtb.display());

    // Boot 1: defaults. Boot 2: skytime-dtb.txt (CRLF, as Windows editors
    // write it) picks the GPIO 18 variant. Boot 3: it names a file that is
    // not there, and the default is used rather than resetting.
    let dtb_txt = dir.path().join("skytime-dtb.txt");
    let cases = [
        (None, "skytime: device tree bcm2711-rpi-4-b.dtb"),
        (
            Some("skytime_dtb=bcm2711-rpi-4-b-pps18.dtb\r\n"),
            "skytime: device tree bcm2711-rpi-4-b-pps18.dtb",
        ),
        (
            Some("skytime_dtb=no-such.dtb\n"),
            "skytime: no slot-a/dtbs/no-such.dtb, using bcm2711-rpi-4-b.dtb",
        ),
    ];
    for (i, (choice, expect)) in cases.into_iter().enumerate() {
        if let Some(text) = choice {
            fs::write(&dtb_txt, text).unwrap();
            put_boot_file(&img, &dtb_txt, "skytime-dtb.txt");
        }
        // Every boot takes one attempt from slot A (nothing marks it good).
        let attempts = format!(
            "skytime: booting slot A (attempts left: A={} B=3, order A B)",
            2 - i
        );
        // The Pi's first UART (PL011) only carries U-Boot's banner; its
        // console is the mini UART, QEMU's second serial port.
        let name = format!("rpi{i}");
        let console = dir.path().join(format!("{name}-console.log"));
        let mut args = raspi_args("raspi3b", &uboot, &dtb, &img);
        args.extend([
            "-serial".into(),
            format!(
                "file:{}",
                dir.path().join(format!("{name}-uart0.log")).display()
            ),
            "-serial".into(),
            format!("file:{}", console.display()),
        ]);
        let mut vm = Qemu::start(&args, console, &dir.path().join(format!("{name}-qemu.log")));
        // U-Boot's boot flow found boot.scr on the card's first partition.
        vm.wait_for("bootdev.part_1' with script", Duration::from_secs(120));
        vm.wait_for(&attempts, Duration::from_secs(60));
        vm.wait_for(expect, Duration::from_secs(120));
        vm.wait_for(
            "Booting using the fdt blob at 0x6000000",
            Duration::from_secs(60),
        );
        vm.wait_for("Starting kernel ...", Duration::from_secs(60));
        let log = vm.stop();
        for bad in ["ERROR", "overlap", "reset", "booting slot A failed"] {
            assert!(!log.contains(bad), "U-Boot said {bad:?}:\n{log}");
        }
    }
    // The attempt it took is on the SD card.
    let env = boot_env(&img, dir.path());
    assert!(
        env.contains("BOOT_A_LEFT=0") && env.contains("BOOT_B_LEFT=3"),
        "the boot script did not save its attempt on the SD card:\n{env}"
    );
}
