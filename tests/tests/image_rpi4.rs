//! The Raspberry Pi 4 boot chain of the image, on QEMU 10's `raspi4b`
//! (Debian 13's QEMU, unpacked beside the host's QEMU 7.2 by
//! tests/scripts/trixie-tools.sh), with the image as the SD card.
//!
//! The image's own U-Boot (`rpi_arm64`, taken off the boot partition) runs
//! boot.scr from the card; the script takes an attempt from slot A, saves it
//! in the raw boot-state copies, and boots slot A's kernel and initramfs at the Pi load
//! addresses with a device tree from slot-a/dtbs/; the kernel finds the card
//! on the BCM2711's SD controller and mounts the erofs root from partition
//! 2; Debian's `pps-gpio` module binds to the `skytime-pps` node of the
//! image's overlays and skytimed (configured through skytime.toml on the
//! boot partition, imported by first boot) opens the /dev/pps0 it makes;
//! mark-good gives the slot its attempt back, on the card. QEMU loads U-Boot itself, as the Pi firmware
//! (start4.elf, not emulated) would, and hands it the same device tree.
//!
//! Test-only changes, made here and never shipped:
//! - The device tree is derived from the shipped one with what QEMU's
//!   raspi4b does not model disabled (each with its reason in
//!   `qemu_device_tree`), put on the card as slot-a/dtbs/bcm2711-rpi-4-b-qemu.dtb.
//! - skytime-dtb.txt on the boot partition (CRLF line ends, as a Windows
//!   editor writes) chooses that tree and a serial console on the PL011
//!   with the journal forwarded to it (a Pi's console is tty1: its PL011
//!   is the GPS's), through the same boot-script variables a user has,
//!   and keeps the watchdog driver `bcm2835_wdt` unloaded
//!   (`modprobe.blacklist=`): QEMU's raspi4b resets the machine at once
//!   when the watchdog is started (its PM block models no timer), and
//!   systemd starts it (RuntimeWatchdogSec) as soon as the driver loads.
//!
//! raspi4b has no Ethernet (GENET) and no PCIe in QEMU, so networking is
//! checked on `virt` (image_qemu.rs). One boot: TCG emulates four
//! Cortex-A72 cores, which takes minutes on this build host.

mod image_support;

use image_support::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PPS: &str = "/skytime-pps";

/// `fdtget` of one property (`-t` type), None when it is not there.
fn fdtget(dtb: &Path, kind: &str, node: &str, prop: &str) -> Option<String> {
    let out = Command::new("fdtget")
        .args(["-t", kind])
        .arg(dtb)
        .args([node, prop])
        .output()
        .expect("fdtget (make test-deps)");
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
}

/// `fdtput OPTIONS DTB ARGS`.
fn fdtput(options: &[&str], dtb: &Path, args: &[&str]) {
    run(Command::new("fdtput").args(options).arg(dtb).args(args));
}

/// The shipped device tree with what QEMU 10's raspi4b does not model
/// turned off. Everything else (the GPIO controller, the PL011, the
/// skytime-pps node, the watchdog) stays as the Pi gets it.
fn qemu_device_tree(shipped: &Path, out: &Path) {
    fs::copy(shipped, out).unwrap();
    let disable = |node: &str| fdtput(&["-t", "s"], out, &[node, "status", "disabled"]);
    // The HDMI block's clock and reset controller (DVP): not modelled.
    // Debian 13's kernel has its driver built in, and reading its gate
    // register (clk_disable_unused at the end of boot) is a synchronous
    // external abort.
    disable("/soc/clock@7ef00000");
    // The HDMI/AON level-2 interrupt controller: not modelled; Linux's
    // probe of it ends in a synchronous external abort.
    disable("/soc/interrupt-controller@7ef00100");
    // The HDMI DDC I2C controllers: not modelled, same abort when probed.
    disable("/soc/i2c@7ef04500");
    disable("/soc/i2c@7ef09500");
    // PCIe (and the VL805 USB behind it): not modelled; U-Boot's PCIe
    // init aborts before it reaches the boot script.
    disable("/scb/pcie@7d500000");
    // Three more that QEMU does not model and whose drivers (modules the
    // image keeps) abort when they read them, taking their udev worker
    // down: the Ethernet MAC (GENET), the hardware RNG (rng200), and the
    // SoC temperature sensor in the AVS monitor.
    disable("/scb/ethernet@7d580000");
    disable("/soc/rng@7e104000");
    disable("/soc/avs-monitor@7d5d2000/thermal");
    // The SD card sits on the SDHCI at 7e300000 in QEMU (the Pi's Wi-Fi
    // slot). Its mmc-pwrseq drives the Wi-Fi chip's reset line through the
    // firmware's GPIO expander, which QEMU does not emulate: the
    // controller would wait for it forever and the card never appear. The
    // power sequence itself goes too (its probe fails on that line).
    fdtput(&["-d"], out, &["/soc/mmc@7e300000", "mmc-pwrseq"]);
    disable("/wifi-pwrseq");
}

/// A file from the built boot partition (target/image/boot.vfat).
fn boot_file(name: &str, to: &Path) {
    let vfat = repo().join("target/image/boot.vfat");
    assert!(
        vfat.exists(),
        "{} is missing: run `make image`",
        vfat.display()
    );
    run(Command::new("mcopy")
        .arg("-o")
        .arg("-i")
        .arg(&vfat)
        .arg(format!("::{name}"))
        .arg(to));
}

#[test]
fn the_image_ships_device_trees_with_the_overlays_and_symbols() {
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let get = |name: &str| -> PathBuf {
        let to = dir.path().join(name.replace('/', "_"));
        boot_file(name, &to);
        to
    };
    // The firmware hands the boot partition's tree to U-Boot; Linux boots
    // with the slot's: they are the same bytes.
    let firmware = get("bcm2711-rpi-4-b.dtb");
    for slot in ["slot-a", "slot-b"] {
        let linux = get(&format!("{slot}/dtbs/bcm2711-rpi-4-b.dtb"));
        assert_eq!(
            fs::read(&linux).unwrap(),
            fs::read(&firmware).unwrap(),
            "{slot}'s device tree is not the firmware's"
        );
    }
    for (name, pin, falling) in [
        ("bcm2711-rpi-4-b.dtb", 4, false),
        ("bcm2711-rpi-4-b-pps4-falling.dtb", 4, true),
        ("bcm2711-rpi-4-b-pps18.dtb", 18, false),
        ("bcm2711-rpi-4-b-pps18-falling.dtb", 18, true),
    ] {
        let dtb = get(&format!("slot-a/dtbs/{name}"));
        let gpio = fdtget(&dtb, "u", "/soc/gpio@7e200000", "phandle").expect("GPIO phandle");
        assert_eq!(
            fdtget(&dtb, "s", PPS, "compatible").as_deref(),
            Some("pps-gpio"),
            "{name}"
        );
        assert_eq!(
            fdtget(&dtb, "u", PPS, "gpios"),
            Some(format!("{gpio} {pin} 0")),
            "{name}: PPS pin"
        );
        let props =
            String::from_utf8(run(Command::new("fdtget").arg("-p").arg(&dtb).arg(PPS))).unwrap();
        assert_eq!(
            props.lines().any(|p| p == "assert-falling-edge"),
            falling,
            "{name}: edge"
        );
        // The GPS UART: the PL011 on, Bluetooth and the mini UART off.
        assert_eq!(
            fdtget(&dtb, "s", "/soc/serial@7e201000", "status").as_deref(),
            Some("okay")
        );
        assert_eq!(
            fdtget(&dtb, "s", "/soc/serial@7e215040", "status").as_deref(),
            Some("disabled")
        );
        assert_eq!(
            fdtget(&dtb, "s", "/soc/serial@7e201000/bluetooth", "status").as_deref(),
            Some("disabled")
        );
        // Debian 13's __symbols__ survive the merge, with skytime's labels
        // added: a firmware dtoverlay= line still finds its targets.
        for (label, node) in [("gpio", "/soc/gpio@7e200000"), ("skytime_pps", PPS)] {
            assert_eq!(
                fdtget(&dtb, "s", "/__symbols__", label).as_deref(),
                Some(node),
                "{name}: label {label}"
            );
        }
    }
}

#[test]
fn the_pi4_boot_chain_reaches_skytimed_and_mark_good_on_raspi4b() {
    let qemu = trixie_qemu();
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let img = copy_image(dir.path());
    let uboot = dir.path().join("u-boot.bin");
    get_boot_file(&img, "u-boot.bin", &uboot);
    let shipped = dir.path().join("shipped.dtb");
    get_boot_file(&img, "slot-a/dtbs/bcm2711-rpi-4-b.dtb", &shipped);
    let dtb = dir.path().join("bcm2711-rpi-4-b-qemu.dtb");
    qemu_device_tree(&shipped, &dtb);
    put_boot_file(&img, &dtb, "slot-a/dtbs/bcm2711-rpi-4-b-qemu.dtb");
    // The console: the PL011, with the journal forwarded to it (skytimed
    // logs what it opens there); no watchdog driver (QEMU's raspi4b resets
    // when one is started: see above).
    let options = dir.path().join("skytime-dtb.txt");
    fs::write(
        &options,
        "skytime_dtb=bcm2711-rpi-4-b-qemu.dtb\r\n\
         skytime_console=console=ttyAMA0,115200 systemd.journald.forward_to_console=1 \
         modprobe.blacklist=bcm2835_wdt\r\n",
    )
    .unwrap();
    put_boot_file(&img, &options, "skytime-dtb.txt");
    // skytimed reads the kernel PPS device that pps-gpio makes from the
    // skytime-pps node (no NMEA: nothing drives the pin in QEMU).
    let config = dir.path().join("skytime.toml");
    fs::write(
        &config,
        "data_dir = \"/var/lib/skytime\"\n[gps]\npps = \"/dev/pps0\"\n",
    )
    .unwrap();
    put_boot_file(&img, &config, "skytime.toml");
    let roots_before = root_hashes(&img, dir.path());

    // QEMU's first serial port is the PL011: U-Boot's banner, then, with
    // the console chosen above, the kernel and systemd. U-Boot's own
    // console is the mini UART, the second port. Both append to one log.
    let console = dir.path().join("pi4-console.log");
    let port = |id: &str| {
        [
            "-chardev".to_string(),
            format!("file,id={id},path={},append=on", console.display()),
            "-serial".to_string(),
            format!("chardev:{id}"),
        ]
    };
    // The initramfs grows the data partition into the larger card.
    let mut args = raspi_args("raspi4b", &uboot, &dtb, &img);
    args.extend(port("pl011"));
    args.extend(port("miniuart"));
    let started = std::time::Instant::now();
    let mut vm = Qemu::start_program(&qemu, &args, console, &dir.path().join("pi4-qemu.log"));
    // U-Boot's boot flow found boot.scr on the card's first partition.
    vm.wait_for("bootdev.part_1' with script", Duration::from_secs(300));
    vm.wait_for(
        "skytime: booting slot A (attempts left: A=2 B=3, order A B)",
        Duration::from_secs(120),
    );
    vm.wait_for(
        "skytime: device tree bcm2711-rpi-4-b-qemu.dtb",
        Duration::from_secs(300),
    );
    vm.wait_for("Starting kernel ...", Duration::from_secs(300));
    // The attempt U-Boot took is on the card before Linux runs.
    let env = boot_env(&img, dir.path());
    assert!(
        env.contains("BOOT_A_LEFT=2") && env.contains("BOOT_B_LEFT=3"),
        "U-Boot did not save the attempt it took on the card:\n{env}"
    );
    vm.wait_for(
        "Machine model: Raspberry Pi 4 Model B",
        Duration::from_secs(300),
    );
    vm.wait_for("root=PARTUUID=5c7e0001-02", Duration::from_secs(300));
    vm.wait_for("Started skytimed.service", Duration::from_secs(1500));
    vm.wait_for(
        "Finished skytime-mark-good.service",
        Duration::from_secs(600),
    );
    let log = vm.stop();
    eprintln!(
        "image_rpi4: U-Boot to mark-good in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // The root is slot A's erofs, read from the SD card (mmcblk), and the
    // distribution's pps-gpio bound to the image's skytime-pps node.
    assert!(
        log.lines()
            .any(|l| l.contains("(device mmcblk") && l.contains("p2): mounted with root inode")),
        "root is not slot A's erofs on the SD card:\n{log}"
    );
    assert!(
        log.contains("PPS /dev/pps0 open, capturing the Assert edge"),
        "skytimed did not open /dev/pps0 (pps-gpio on the skytime-pps node):\n{log}"
    );
    for bad in ["ERROR", "overlap", "booting slot A failed"] {
        assert!(!log.contains(bad), "the boot said {bad:?}:\n{log}");
    }
    assert_no_failed_units(&log);

    // mark-good gave the attempt back, on the SD card.
    let env = boot_env(&img, dir.path());
    assert!(
        env.contains("BOOT_A_LEFT=3") && env.contains("BOOT_B_LEFT=3"),
        "slot A not marked good on the card:\n{env}"
    );
    // Nothing wrote to either root file system.
    assert_roots_unwritten(&img, dir.path(), &roots_before);
}
