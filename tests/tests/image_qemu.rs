//! The SD-card image in QEMU, driven only from the host (no shell in the
//! guest): qemu-system-aarch64 `-M virt -cpu cortex-a72` with U-Boot from
//! u-boot-qemu as `-bios`, so boot.scr and its A/B slot choice run.
//!
//! Boot 1 (slot A): first boot creates the keys and certificate; a real
//! chrony on the host syncs over NTS (user-mode networking forwarded to
//! loopback), trusting the certificate read from the data partition.
//! Boot 2 (slot B, chosen through skytime.env): same keys, NTS again.
//! Both: no failed units on the console, the root partitions unwritten.
//!
//! Needs `make image` first (target/image/skytime-rpi4.img) and the tools
//! from `make image-deps`.

use skytime_tests::{free_tcp_port, free_udp_port, require_program, wait_until, Chronyd};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BOOT_OFFSET: u64 = 4 << 20;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Vec<u8> {
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
fn partition(img: &Path, n: usize) -> (u64, u64) {
    let mbr = read_head(img);
    let e = 446 + 16 * (n - 1);
    let lba = u32::from_le_bytes(mbr[e + 8..e + 12].try_into().unwrap()) as u64;
    let sectors = u32::from_le_bytes(mbr[e + 12..e + 16].try_into().unwrap()) as u64;
    assert!(sectors > 0, "partition {n} missing in {}", img.display());
    (lba * 512, sectors * 512)
}

fn read_head(img: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; 512];
    fs::File::open(img).unwrap().read_exact(&mut buf).unwrap();
    buf
}

fn extract(img: &Path, n: usize, to: &Path) {
    let (start, len) = partition(img, n);
    run(Command::new("dd")
        .arg(format!("if={}", img.display()))
        .arg(format!("of={}", to.display()))
        .args(["bs=1M", "iflag=skip_bytes,count_bytes", "status=none"])
        .arg(format!("skip={start}"))
        .arg(format!("count={len}")));
}

fn sha256(path: &Path) -> String {
    String::from_utf8(run(Command::new("sha256sum").arg(path)))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Copies `src` to `name` on the boot partition (mtools, no mounting).
fn put_boot_file(img: &Path, src: &Path, name: &str) {
    run(Command::new("mcopy")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{BOOT_OFFSET}", img.display()))
        .arg(src)
        .arg(format!("::{name}")));
}

fn get_boot_file(img: &Path, name: &str, to: &Path) {
    run(Command::new("mcopy")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{BOOT_OFFSET}", img.display()))
        .arg(format!("::{name}"))
        .arg(to));
}

/// A snapshot of the data partition with its journal replayed, and a file from it.
fn data_file(img: &Path, dir: &Path, file: &str) -> (Vec<u8>, String) {
    let part = dir.join("data.ext4");
    extract(img, 4, &part);
    // The guest may still have it mounted: replay the journal in the copy.
    let _ = Command::new("e2fsck")
        .args(["-fy"])
        .arg(&part)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
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

struct Qemu {
    child: Child,
    console: PathBuf,
}

impl Qemu {
    fn boot(img: &Path, dir: &Path, name: &str, ntp: u16, ke: u16) -> Qemu {
        let console = dir.join(format!("{name}-console.log"));
        let child = Command::new(require_program("qemu-system-aarch64"))
            .args([
                "-M",
                "virt",
                "-cpu",
                "cortex-a72",
                "-m",
                "1024",
                "-smp",
                "2",
                "-display",
                "none",
                "-monitor",
                "none",
                "-no-reboot",
            ])
            .args(["-bios", "/usr/lib/u-boot/qemu_arm64/u-boot.bin"])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=virtio", img.display()))
            .args([
                "-netdev",
                &format!(
                    "user,id=n0,hostfwd=udp:127.0.0.1:{ntp}-:123,hostfwd=tcp:127.0.0.1:{ke}-:4460"
                ),
                "-device",
                "virtio-net-pci,netdev=n0,romfile=",
            ])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join(format!("{name}-qemu.log"))).unwrap())
            .spawn()
            .expect("start qemu-system-aarch64 (make image-deps)");
        Qemu { child, console }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// Waits for `needle` on the console; panics with the log on timeout or exit.
    fn wait_for(&mut self, needle: &str, timeout: Duration) {
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

    fn stop(mut self) -> String {
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

fn assert_no_failed_units(console: &str) {
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

fn nts_sync(ntp: u16, ke: u16, cert: &Path) -> String {
    let chrony = Chronyd::start(&[
        format!("server 127.0.0.1 port {ntp} nts ntsport {ke} iburst minpoll -2 maxpoll -2"),
        format!("ntstrustedcerts {}", cert.display()),
    ]);
    let tracking = chrony.wait_synchronized(Duration::from_secs(120));
    let authdata = chrony.chronyc(&["authdata"]);
    assert!(
        tracking.is_some(),
        "chrony never synchronized over NTS:\n{}\n{authdata}\n{}",
        chrony.chronyc(&["sources"]),
        chrony.log()
    );
    // authdata: "Name/IP address  Mode KeyID Type KLen Last Atmp  NAK Cook CLen"
    let line = authdata
        .lines()
        .find(|l| l.starts_with("127.0.0.1"))
        .unwrap_or_else(|| panic!("{authdata}"));
    assert_eq!(line.split_whitespace().nth(1), Some("NTS"), "{authdata}");
    let tracking = tracking.unwrap();
    assert_eq!(
        skytime_tests::field(&tracking, "Stratum"),
        Some("11"),
        "{tracking:?}"
    );
    authdata
}

#[test]
fn image_boots_creates_keys_serves_nts_and_keeps_them_across_slots() {
    let built = repo().join("target/image/skytime-rpi4.img");
    assert!(
        built.exists(),
        "{} is missing: run `make image` first",
        built.display()
    );
    for tool in [
        "mcopy",
        "debugfs",
        "e2fsck",
        "mkenvimage",
        "fw_printenv",
        "chronyd",
    ] {
        require_program(tool);
    }
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let img = dir.path().join("sd.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&built)
        .arg(&img));
    let (ntp, ke) = (free_udp_port(), free_tcp_port());

    // What a user drops on the boot partition: a config serving the local
    // clock (QEMU has no GPS) and an identity naming the address chrony uses.
    let config = dir.path().join("skytime.toml");
    fs::write(&config, format!("data_dir = \"/var/lib/skytime\"\n[ntp]\nlisten = [\"0.0.0.0:123\"]\nallow = [\"0.0.0.0/0\", \"::/0\"]\nlocal_stratum = 10\n[nts]\nenabled = true\nke_listen = [\"0.0.0.0:4460\"]\nntp_port = {ntp}\n")).unwrap();
    put_boot_file(&img, &config, "skytime.toml");
    let identity = dir.path().join("identity");
    fs::write(&identity, "hostname = skytime-qemu\naddress = 127.0.0.1\n").unwrap();
    put_boot_file(&img, &identity, "skytime-identity.conf");
    let roots_before = [2, 3].map(|n| {
        let p = dir.path().join(format!("root{n}"));
        extract(&img, n, &p);
        sha256(&p)
    });

    // Boot 1: slot A, first boot.
    let mut vm = Qemu::boot(&img, dir.path(), "boot1", ntp, ke);
    vm.wait_for(
        "skytime: booting slot A (attempts left: A=2 B=3",
        Duration::from_secs(120),
    );
    vm.wait_for("root=PARTUUID=5c7e0001-02", Duration::from_secs(120));
    vm.wait_for(
        "Finished skytime-firstboot.service",
        Duration::from_secs(900),
    );
    vm.wait_for("Started skytimed.service", Duration::from_secs(300));
    let (cert, _) = data_file(&img, dir.path(), "cert.pem");
    assert!(
        String::from_utf8_lossy(&cert).contains("BEGIN CERTIFICATE"),
        "no certificate on the data partition"
    );
    let (_, key_stat) = data_file(&img, dir.path(), "key.pem");
    assert!(
        key_stat.contains("Mode:  0600"),
        "key.pem must be 0600:\n{key_stat}"
    );
    let (marker, _) = data_file(&img, dir.path(), ".initialized");
    assert!(marker.is_empty());
    let cert_path = dir.path().join("cert1.pem");
    fs::write(&cert_path, &cert).unwrap();
    nts_sync(ntp, ke, &cert_path);
    vm.wait_for(
        "Finished skytime-mark-good.service",
        Duration::from_secs(300),
    );
    let console1 = vm.stop();
    // erofs has no write support in the kernel at all: a mounted erofs root
    // refuses every write.
    assert!(
        console1.contains("mounted with root inode"),
        "root is not erofs:\n{console1}"
    );
    assert_no_failed_units(&console1);

    // mark-good gave slot A its attempt back.
    let env = dir.path().join("skytime.env");
    let fw_config = dir.path().join("fw_env.config");
    fs::write(&fw_config, format!("{} 0x0 0x4000\n", env.display())).unwrap();
    get_boot_file(&img, "skytime.env", &env);
    let printenv =
        String::from_utf8(run(Command::new("fw_printenv").arg("-c").arg(&fw_config))).unwrap();
    assert!(
        printenv.contains("BOOT_A_LEFT=3") && printenv.contains("BOOT_ORDER=A B"),
        "{printenv}"
    );

    // Boot 2: the boot state says B first (as an update would).
    run(Command::new("fw_setenv")
        .arg("-c")
        .arg(&fw_config)
        .args(["BOOT_ORDER", "B A"]));
    put_boot_file(&img, &env, "skytime.env");
    let mut vm = Qemu::boot(&img, dir.path(), "boot2", ntp, ke);
    vm.wait_for(
        "skytime: booting slot B (attempts left: A=3 B=2",
        Duration::from_secs(120),
    );
    vm.wait_for("root=PARTUUID=5c7e0001-03", Duration::from_secs(120));
    vm.wait_for("Started skytimed.service", Duration::from_secs(900));
    nts_sync(ntp, ke, &cert_path);
    vm.wait_for(
        "Finished skytime-mark-good.service",
        Duration::from_secs(300),
    );
    let console2 = vm.stop();
    assert_no_failed_units(&console2);
    assert!(
        !console2.contains("Finished skytime-firstboot.service"),
        "first boot ran again:\n{console2}"
    );
    let (cert2, _) = data_file(&img, dir.path(), "cert.pem");
    assert_eq!(cert2, cert, "the certificate changed across a reboot");

    // Nothing wrote to either root file system.
    for (i, n) in [2, 3].into_iter().enumerate() {
        let p = dir.path().join(format!("root{n}"));
        extract(&img, n, &p);
        assert_eq!(
            sha256(&p),
            roots_before[i],
            "root partition {n} was written"
        );
    }
}
