//! Shared by the image tests: the SD-card image's partitions (read and
//! written from the host with dd, mtools, debugfs and fw_setenv, never
//! mounted), and QEMU booting it through U-Boot, killed on drop.
#![allow(dead_code)]

use skytime_tests::{require_program, wait_until};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BOOT_OFFSET: u64 = 4 << 20;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// (first byte, length) of MBR partition `n` (1-based).
pub fn partition(img: &Path, n: usize) -> (u64, u64) {
    let mbr = read_head(img);
    let e = 446 + 16 * (n - 1);
    let lba = u32::from_le_bytes(mbr[e + 8..e + 12].try_into().unwrap()) as u64;
    let sectors = u32::from_le_bytes(mbr[e + 12..e + 16].try_into().unwrap()) as u64;
    assert!(sectors > 0, "partition {n} missing in {}", img.display());
    (lba * 512, sectors * 512)
}

pub fn read_head(img: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; 512];
    fs::File::open(img).unwrap().read_exact(&mut buf).unwrap();
    buf
}

/// Overwrites partition `n` with zeros (as a new or wiped card would have).
pub fn blank(img: &Path, n: usize) {
    let (start, len) = partition(img, n);
    run(Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", img.display()))
        .args([
            "bs=1M",
            "oflag=seek_bytes",
            "iflag=count_bytes",
            "conv=notrunc",
            "status=none",
        ])
        .arg(format!("seek={start}"))
        .arg(format!("count={len}")));
}

pub fn extract(img: &Path, n: usize, to: &Path) {
    let (start, len) = partition(img, n);
    run(Command::new("dd")
        .arg(format!("if={}", img.display()))
        .arg(format!("of={}", to.display()))
        .args(["bs=1M", "iflag=skip_bytes,count_bytes", "status=none"])
        .arg(format!("skip={start}"))
        .arg(format!("count={len}")));
}

pub fn sha256(path: &Path) -> String {
    String::from_utf8(run(Command::new("sha256sum").arg(path)))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Copies `src` to `name` on the boot partition (mtools, no mounting).
pub fn put_boot_file(img: &Path, src: &Path, name: &str) {
    run(Command::new("mcopy")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{BOOT_OFFSET}", img.display()))
        .arg(src)
        .arg(format!("::{name}")));
}

pub fn get_boot_file(img: &Path, name: &str, to: &Path) {
    run(Command::new("mcopy")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{BOOT_OFFSET}", img.display()))
        .arg(format!("::{name}"))
        .arg(to));
}

/// A copy of the data partition as `dir/name`, its journal replayed in
/// the copy (the guest may still have it mounted), as the appliance's
/// next mount would see it.
pub fn data_snapshot(img: &Path, dir: &Path, name: &str) -> PathBuf {
    let part = dir.join(name);
    extract(img, 4, &part);
    let _ = Command::new("e2fsck")
        .args(["-fy"])
        .arg(&part)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    part
}

/// A snapshot of the data partition with its journal replayed, and a file from it.
pub fn data_file(img: &Path, dir: &Path, file: &str) -> (Vec<u8>, String) {
    let part = data_snapshot(img, dir, "data.ext4");
    let out = dir.join("extracted");
    let _ = fs::remove_file(&out);
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump -p /{file} {}", out.display()))
        .arg(&part)
        .stderr(Stdio::null()));
    let stat = String::from_utf8(run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat /{file}"))
        .arg(&part)
        .stderr(Stdio::null())))
    .unwrap();
    (fs::read(&out).unwrap_or_default(), stat)
}

pub struct Qemu {
    child: Child,
    console: PathBuf,
}

impl Qemu {
    /// Boots `img` (U-Boot as firmware, the image as a virtio disk), with
    /// the guest's UDP 123 and TCP 4460 forwarded to 127.0.0.1:`ntp` and
    /// `ke`, the console in DIR/NAME-console.log, and `extra` arguments.
    pub fn boot(img: &Path, dir: &Path, name: &str, ntp: u16, ke: u16) -> Qemu {
        Self::boot_with(img, dir, name, ntp, ke, &[])
    }

    pub fn boot_with(
        img: &Path,
        dir: &Path,
        name: &str,
        ntp: u16,
        ke: u16,
        extra: &[String],
    ) -> Qemu {
        Self::boot_forwarding(img, dir, name, ntp, ke, None, extra)
    }

    /// As `boot_with`, and with `mgmt`, the guest's TCP 443 (the management
    /// gateway) forwarded to 127.0.0.1:`mgmt`.
    pub fn boot_forwarding(
        img: &Path,
        dir: &Path,
        name: &str,
        ntp: u16,
        ke: u16,
        mgmt: Option<u16>,
        extra: &[String],
    ) -> Qemu {
        let gateway = mgmt
            .map(|p| format!(",hostfwd=tcp:127.0.0.1:{p}-:443"))
            .unwrap_or_default();
        // Only these loopback forwards lead in. The image has no client of
        // anything outside (no NTP client; the resolver is asked nothing
        // unless a configuration names a host; mDNS is multicast, which
        // user networking does not carry), so the guest sends nothing
        // beyond QEMU's own DHCP server. (restrict=on would
        // guarantee it, but with it no NTP reply from the guest reached
        // the host here, QEMU 7.2.)
        let netdev = format!(
            "user,id=n0,hostfwd=udp:127.0.0.1:{ntp}-:123,hostfwd=tcp:127.0.0.1:{ke}-:4460{gateway}"
        );
        let console = dir.join(format!("{name}-console.log"));
        let args = Self::virt_args(img, &console, &netdev, extra);
        Self::start(&args, console, &dir.join(format!("{name}-qemu.log")))
    }

    /// Boots `img` as `boot_with` does, its Ethernet port on the tap
    /// device `tap` of the network namespace `ns` (QEMU runs in that
    /// namespace; nothing is forwarded from the host's).
    pub fn boot_on_tap(
        img: &Path,
        dir: &Path,
        name: &str,
        ns: &str,
        tap: &str,
        extra: &[String],
    ) -> Qemu {
        let console = dir.join(format!("{name}-console.log"));
        let netdev = format!("tap,id=n0,ifname={tap},script=no,downscript=no");
        let args = Self::virt_args(img, &console, &netdev, extra);
        let mut cmd = Command::new(require_program("ip"));
        cmd.args(["netns", "exec", ns])
            .arg(require_program("qemu-system-aarch64"));
        Self::spawn(cmd, &args, console, &dir.join(format!("{name}-qemu.log")))
    }

    /// QEMU's `virt` board booting `img` through U-Boot, one virtio-net
    /// port on `netdev`, the console into `console`, then `extra`.
    fn virt_args(img: &Path, console: &Path, netdev: &str, extra: &[String]) -> Vec<String> {
        let mut args: Vec<String> = [
            "-M",
            "virt",
            "-cpu",
            "cortex-a72",
            "-m",
            "1024",
            "-smp",
            "2",
            "-bios",
            "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
            "-drive",
            &format!("file={},format=raw,if=virtio", img.display()),
            "-netdev",
            netdev,
            "-device",
            "virtio-net-pci,netdev=n0,romfile=",
            "-serial",
            &format!("file:{}", console.display()),
        ]
        .map(String::from)
        .to_vec();
        args.extend_from_slice(extra);
        args
    }

    /// Starts the host's `qemu-system-aarch64` headless with `args`;
    /// `console` is the file the serial console of interest goes to (named
    /// in `args`).
    pub fn start(args: &[String], console: PathBuf, stderr: &Path) -> Qemu {
        Self::start_program(
            &require_program("qemu-system-aarch64"),
            args,
            console,
            stderr,
        )
    }

    /// As `start`, with another QEMU binary (Debian 13's: `trixie_qemu()`).
    pub fn start_program(program: &Path, args: &[String], console: PathBuf, stderr: &Path) -> Qemu {
        Self::spawn(Command::new(program), args, console, stderr)
    }

    /// Runs `cmd` (QEMU, or a command that runs it) headless with `args`.
    fn spawn(mut cmd: Command, args: &[String], console: PathBuf, stderr: &Path) -> Qemu {
        let child = cmd
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?} (make image-deps): {e}"));
        Qemu { child, console }
    }

    /// The console so far, without systemd's colour escapes.
    pub fn log(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &fs::read(&self.console).unwrap_or_default(),
        ))
    }

    /// Waits for `needle` on the console; panics with the log on timeout or exit.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let found = wait_until(timeout, || {
            if self.log().contains(needle) {
                return Some(true);
            }
            self.child.try_wait().ok().flatten().map(|_| false)
        });
        assert_eq!(
            found,
            Some(true),
            "no {needle:?} on the console (qemu exited or timed out):\n{}",
            self.log()
        );
    }

    /// Waits for QEMU to exit by itself (with `-no-reboot`, a guest reboot
    /// ends it); the console, or a panic with it on timeout.
    pub fn wait_exit(mut self, timeout: Duration) -> String {
        let exited = wait_until(timeout, || self.child.try_wait().ok().flatten());
        assert!(
            exited.is_some(),
            "QEMU still runs after {timeout:?}:\n{}",
            self.log()
        );
        self.log()
    }

    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Where the boot state lives on the card (ota/boot.cmd,
/// image/rootfs/etc/fw_env.config): two redundant 16 KiB U-Boot env copies
/// before the first partition, at these byte offsets of the whole disk.
pub const BOOT_ENV_COPIES: [u64; 2] = [1 << 20, (1 << 20) + 0x4000];

/// The boot state on the card, `NAME=value` lines: the newer valid copy,
/// as U-Boot picks it (libubootenv's fw_printenv, the appliance's reader).
pub fn boot_env(img: &Path, dir: &Path) -> String {
    String::from_utf8(run(Command::new("fw_printenv")
        .arg("-c")
        .arg(fw_config(img, dir))))
    .unwrap()
}

/// Sets `NAME=value` pairs in the boot state on the card, as Linux does
/// (fw_setenv: each call writes the older copy, with the newer flags).
pub fn set_boot_env(img: &Path, dir: &Path, vars: &[(&str, &str)]) {
    let config = fw_config(img, dir);
    for (name, value) in vars {
        run(Command::new("fw_setenv")
            .arg("-c")
            .arg(&config)
            .args([name, value]));
    }
}

/// An fw_env.config naming the two copies in the disk image `img`.
pub fn fw_config(img: &Path, dir: &Path) -> PathBuf {
    let config = dir.join("fw_env.config");
    let lines: String = BOOT_ENV_COPIES
        .iter()
        .map(|offset| format!("{} {offset:#x} 0x4000\n", img.display()))
        .collect();
    fs::write(&config, lines).unwrap();
    config
}

pub fn assert_no_failed_units(console: &str) {
    for bad in [
        "[FAILED]",
        "Failed to start",
        "Dependency failed",
        "Kernel panic",
        "emergency mode",
    ] {
        assert!(!console.contains(bad), "console shows {bad:?}:\n{console}");
    }
}

/// A sparse copy of the built image in `dir` (which the test owns), so the
/// boots never write target/image/skytime-rpi4.img itself.
pub fn copy_image(dir: &Path) -> PathBuf {
    let built = repo().join("target/image/skytime-rpi4.img");
    assert!(
        built.exists(),
        "{} is missing: run `make image` first",
        built.display()
    );
    for tool in ["mcopy", "debugfs", "e2fsck", "fw_printenv", "fw_setenv"] {
        require_program(tool);
    }
    let img = dir.join("sd.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&built)
        .arg(&img));
    img
}

/// QEMU arguments for the appliance's D-Bus management channel: a
/// virtio-serial port named org.skytime.bus whose host end is the unix
/// socket `sock` (QEMU listens; skytime-vm-bus.service bridges the guest
/// end to its system bus).
pub fn bus_channel_args(sock: &Path) -> Vec<String> {
    vec![
        "-device".into(),
        "virtio-serial-pci,romfile=".into(),
        "-chardev".into(),
        format!(
            "socket,id=skybus,path={},server=on,wait=off",
            sock.display()
        ),
        "-device".into(),
        "virtserialport,chardev=skybus,name=org.skytime.bus".into(),
    ]
}

/// The relay to the guest's bus at `sock` (QEMU's chardev), on a socket
/// of its own beside it. Each client gets its own session (a handshake on
/// the port), so clients need no spacing and see no earlier client's bytes.
pub struct GuestBus;

impl GuestBus {
    pub fn start(sock: &Path) -> skytime_tests::vm_bus::VmBus {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        skytime_tests::vm_bus::VmBus::start(sock, sock.with_extension(format!("host{n}")), &[])
    }
}

/// Runs `program` against the guest's system bus through the channel at
/// `sock` (bounded: a channel that never answers fails the test, it does
/// not hang it).
pub fn on_guest_bus(sock: &Path, program: &Path, args: &[&str]) -> std::process::Output {
    on_guest_bus_within(sock, program, args, Duration::from_secs(60))
}

/// As [`on_guest_bus`], allowed `limit` (an update install takes minutes).
pub fn on_guest_bus_within(
    sock: &Path,
    program: &Path,
    args: &[&str],
    limit: Duration,
) -> std::process::Output {
    let bus = GuestBus::start(sock);
    skytime_tests::run_bounded(
        Command::new(program)
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address),
        limit,
    )
}

/// What a user drops on the boot partition for an appliance without a GPS
/// in QEMU: a skytime.toml serving the local clock at stratum 10 with NTS
/// (its NTP port for cookies: `ntp`, the host's end of the forward) and an
/// identity naming the address chrony uses. Returns the skytime.toml put.
pub fn put_local_clock_nts_files(img: &Path, dir: &Path, ntp: u16) -> PathBuf {
    let config = dir.join("skytime.toml");
    fs::write(&config, format!("data_dir = \"/var/lib/skytime\"\n[ntp]\nlisten = [\"0.0.0.0:123\"]\nallow = [\"0.0.0.0/0\", \"::/0\"]\nlocal_stratum = 10\n[nts]\nenabled = true\nke_listen = [\"0.0.0.0:4460\"]\nntp_port = {ntp}\n")).unwrap();
    put_boot_file(img, &config, "skytime.toml");
    let identity = dir.join("identity");
    fs::write(&identity, "hostname = skytime-qemu\naddress = 127.0.0.1\n").unwrap();
    put_boot_file(img, &identity, "skytime-identity.conf");
    config
}

/// The sha256 of the root partitions (2 and 3), to show later that no boot
/// wrote them.
pub fn root_hashes(img: &Path, dir: &Path) -> [String; 2] {
    [2, 3].map(|n| {
        let p = dir.join(format!("root{n}"));
        extract(img, n, &p);
        sha256(&p)
    })
}

pub fn assert_roots_unwritten(img: &Path, dir: &Path, before: &[String; 2]) {
    let after = root_hashes(img, dir);
    for (i, n) in [2, 3].into_iter().enumerate() {
        assert_eq!(after[i], before[i], "root partition {n} was written");
    }
}

/// QEMU arguments for a Raspberry Pi board (`raspi3b`, `raspi4b`) that
/// starts `uboot` as the Pi firmware would, handing it the device tree
/// `dtb`, with `img` as its SD card. QEMU's SD card must be a power of two
/// in size: the card grows to the next one (sparse), as a larger card would.
/// The caller adds the serial ports.
pub fn raspi_args(machine: &str, uboot: &Path, dtb: &Path, img: &Path) -> Vec<String> {
    let len = fs::metadata(img).unwrap().len();
    grow_card(img, len.next_power_of_two() - len);
    vec![
        "-M".into(),
        machine.into(),
        "-kernel".into(),
        uboot.display().to_string(),
        "-dtb".into(),
        dtb.display().to_string(),
        "-drive".into(),
        format!("file={},format=raw,if=sd", img.display()),
    ]
}

/// Makes the card `extra` bytes larger (sparse), as a bigger SD card is.
pub fn grow_card(img: &Path, extra: u64) {
    let f = fs::OpenOptions::new().write(true).open(img).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len + extra).unwrap();
}

/// `openssl x509 -ext subjectAltName` of a PEM certificate.
pub fn subject_alt_names(cert: &Path) -> String {
    String::from_utf8(run(Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(cert)))
    .unwrap()
}

/// Block count times block size of the ext4 file system in `part`.
pub fn ext4_bytes(part: &Path) -> u64 {
    let head = String::from_utf8(run(Command::new("dumpe2fs")
        .arg("-h")
        .arg(part)
        .stderr(Stdio::null())))
    .unwrap();
    let field = |name: &str| -> u64 {
        head.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in dumpe2fs -h:\n{head}"))
    };
    field("Block count:") * field("Block size:")
}

/// Debian 13's `qemu-system-aarch64` (QEMU 10, which has the `raspi4b`
/// machine), unpacked under target/trixie-tools beside the host's Debian 12
/// QEMU by tests/scripts/trixie-tools.sh (cached: the second call does
/// nothing). Bounded: a stuck download fails the test.
pub fn trixie_qemu() -> PathBuf {
    let dir = repo().join("target/trixie-tools");
    let out = skytime_tests::run_bounded(
        Command::new(repo().join("tests/scripts/trixie-tools.sh")).arg(&dir),
        Duration::from_secs(15 * 60),
    );
    assert!(
        out.status.success(),
        "tests/scripts/trixie-tools.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("bin/qemu-system-aarch64")
}
