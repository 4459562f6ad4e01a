//! A throw-away x86-64 virtual machine for tests that must set a clock or
//! need kernel devices this host lacks: Debian's kernel (fetched once into
//! `target/clock-vm/kernel` by `tests/scripts/fetch-vm-kernel.sh`), with
//! out-of-tree test modules when asked (gpio-sim, pps-gpio: built once
//! into `target/clock-vm/kmod` by `tests/scripts/build-vm-modules.sh`), an
//! initramfs built here ([`Initramfs`]: busybox, the host-built binaries
//! and their shared libraries, an `/init` script), serial lines from the
//! host ([`SerialGate`] for NMEA, [`SecondTicker`] for a pulse per
//! second), and `qemu-system-x86_64` with KVM when `/dev/kvm` works, TCG
//! otherwise.
//!
//! Nothing here touches the host's clock: the guest has its own (QEMU
//! starts its RTC wherever the test says), and only the guest steers it.
//! The VM is killed on drop; every wait is bounded.

mod guest;
mod initramfs;
mod serial;

pub use guest::{
    add_skytimed_config, assert_guest_healthy, show_guest_log, skytimed_guest_config,
    skytimed_init, skytimed_initramfs,
};
pub use initramfs::{shared_libraries, stripped, Cpio, Initramfs};
pub use serial::{SecondTicker, SerialGate};

use crate::ntp::query;
use crate::{lo, require_program, run_bounded, wait_until};
use skytime_proto::ReferenceId;
use skytime_refclock::gpstime::civil_from_days;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The cargo target directory the tests run from (`target/`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "deps"))
        .and_then(|deps| deps.parent()?.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Debian's amd64 kernel and the modules the guest loads, fetched once
/// (`apt-get download` + `dpkg-deb -x`, nothing installed) and cached.
#[derive(Debug)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    /// Modules to insmod, in order (uncompressed `.ko` files).
    pub modules: Vec<PathBuf>,
    /// The Debian package it came from.
    pub package: String,
}

impl Kernel {
    pub fn fetch() -> Self {
        let dir = target_dir().join("clock-vm/kernel");
        run_script("fetch-vm-kernel.sh", &[&dir], Duration::from_secs(600));
        Self {
            vmlinuz: dir.join("vmlinuz"),
            modules: load_order(&dir.join("modules")),
            package: fs::read_to_string(dir.join("package"))
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }

    /// The out-of-tree modules for the kernel-PPS test, in load order
    /// (configfs, irq_sim, gpio-sim, pps-gpio, pps-sim-board), built once
    /// for exactly this kernel from Debian's sources and cached beside it.
    pub fn pps_test_modules(&self) -> Vec<PathBuf> {
        let kernel_dir = self.vmlinuz.parent().expect("kernel directory");
        let dir = kernel_dir.with_file_name("kmod");
        run_script(
            "build-vm-modules.sh",
            &[kernel_dir, &dir],
            Duration::from_secs(900),
        );
        load_order(&dir)
    }
}

/// Runs `tests/scripts/NAME ARGS...`; panics with its output if it fails.
fn run_script(name: &str, args: &[&Path], limit: Duration) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name);
    let out = run_bounded(Command::new(&script).args(args), limit);
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The modules listed, one a line, in `dir/order`, as paths in `dir`.
fn load_order(dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string(dir.join("order"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| dir.join(l.trim()))
        .collect()
}

/// Calendar date and time (UTC) of a Unix time, as QEMU's `-rtc base=`
/// takes it: `YYYY-MM-DDTHH:MM:SS`.
pub fn rtc_base(unix: i64) -> String {
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    let secs = unix.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Host CLOCK_REALTIME in seconds (read only).
pub fn host_unix_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Whether KVM looks usable: `/dev/kvm` opens read-write and the CPU
/// announces hardware virtualization (vmx or svm). Some nested setups
/// have the device without the flag, and KVM guests hang there.
/// `SKYTIME_VM_ACCEL=kvm|tcg` overrides the guess.
pub fn kvm_usable() -> bool {
    match std::env::var("SKYTIME_VM_ACCEL").as_deref() {
        Ok("kvm") => return true,
        Ok("tcg") => return false,
        _ => {}
    }
    let device = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let flag = fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
    });
    device && flag
}

/// One NTP exchange with a guest's server through its forwarded port,
/// seconds: the offset of the guest's clock from the host's (known to
/// +-delay/2), the round-trip delay, and what the server says of itself.
#[derive(Clone, Debug)]
pub struct GuestReading {
    pub offset: f64,
    pub delay: f64,
    pub stratum: u8,
    pub refid: ReferenceId,
    pub root_dispersion: f64,
}

impl GuestReading {
    /// Queries 127.0.0.1:`port` once; None without an answer.
    pub fn read(port: u16) -> Option<Self> {
        let x = query(lo(port))?;
        let r = &x.reply;
        let (t1, t4) = (x.sent, x.received);
        let offset = ((r.receive_timestamp - t1).to_seconds_f64()
            + (r.transmit_timestamp - t4).to_seconds_f64())
            / 2.0;
        let delay = (t4 - t1).to_seconds_f64()
            - (r.transmit_timestamp - r.receive_timestamp).to_seconds_f64();
        Some(Self {
            offset,
            delay,
            stratum: r.stratum,
            refid: r.reference_id,
            root_dispersion: r.root_dispersion.to_seconds_f64(),
        })
    }

    /// How far the guest's clock may be from the host's: the offset plus
    /// the measurement's own uncertainty.
    pub fn error_bound(&self) -> f64 {
        self.offset.abs() + self.delay / 2.0
    }
}

/// Starts a guest with `start(kvm, console_file_name)`: under KVM when
/// [`kvm_usable`] says so, but if that guest has not printed `first_line`
/// on its console within 30 s (nested KVM that hangs), under TCG instead.
pub fn start_guest(first_line: &str, start: impl Fn(bool, &str) -> Qemu) -> Qemu {
    let mut vm = start(kvm_usable(), "console.log");
    if vm.kvm && !vm.wait_console(first_line, Duration::from_secs(30)) {
        eprintln!(
            "vm: no {first_line:?} under KVM in 30 s, falling back to TCG:\n{}",
            vm.console()
        );
        vm.kill();
        vm = start(false, "console-tcg.log");
    }
    vm
}

/// A running `qemu-system-x86_64`, killed on drop.
#[derive(Debug)]
pub struct Qemu {
    child: Option<Child>,
    pub console: PathBuf,
    pub kvm: bool,
    /// When this QEMU was started.
    pub started: Instant,
}

/// How to start the VM.
#[derive(Debug)]
pub struct QemuConfig<'a> {
    pub kernel: &'a Kernel,
    pub initramfs: &'a Path,
    pub append: &'a str,
    pub memory_mb: u32,
    /// Guest serial console (ttyS0) goes to this file.
    pub console: &'a Path,
    /// Host serial device connected to the guest's ttyS1, if any.
    pub ttys1: Option<&'a Path>,
    /// `-rtc base=` value (`YYYY-MM-DDTHH:MM:SS`, UTC) or "utc".
    pub rtc_base: &'a str,
    /// UDP forwards from 127.0.0.1:host to the guest (10.0.2.15:guest).
    pub udp_forwards: &'a [(u16, u16)],
}

impl Qemu {
    /// Starts the VM, with KVM if `kvm`, else with TCG (emulation).
    pub fn start(c: &QemuConfig, kvm: bool) -> Self {
        Self::start_with_serials(c, &[], kvm)
    }

    /// [`Qemu::start`], with more host serial devices as the guest's
    /// ttyS2, ttyS3 (the PC has four ports).
    pub fn start_with_serials(c: &QemuConfig, more: &[&Path], kvm: bool) -> Self {
        assert!(more.len() <= 2, "a PC has four serial ports");
        let qemu = require_program("qemu-system-x86_64");
        let mut netdev = "user,id=n,net=10.0.2.0/24".to_owned();
        for (host, guest) in c.udp_forwards {
            netdev.push_str(&format!(",hostfwd=udp:127.0.0.1:{host}-10.0.2.15:{guest}"));
        }
        let mut cmd = Command::new(qemu);
        cmd.args(["-M", "pc", "-m", &c.memory_mb.to_string(), "-smp", "1"])
            .args(["-nodefaults", "-display", "none", "-no-reboot"])
            .args(if kvm {
                ["-accel", "kvm", "-cpu", "host"]
            } else {
                ["-accel", "tcg", "-cpu", "max"]
            })
            .arg("-kernel")
            .arg(&c.kernel.vmlinuz)
            .arg("-initrd")
            .arg(c.initramfs)
            .arg("-append")
            .arg(c.append)
            .arg("-rtc")
            .arg(format!("base={},clock=host", c.rtc_base))
            .arg("-chardev")
            .arg(format!("file,id=con,path={}", c.console.display()))
            .args(["-serial", "chardev:con"]);
        if let Some(dev) = c.ttys1 {
            cmd.arg("-chardev")
                .arg(format!("serial,id=s1,path={}", dev.display()))
                .args(["-serial", "chardev:s1"]);
        } else if !more.is_empty() {
            // Keep ttyS1 in its place so that the others are ttyS2, ttyS3.
            cmd.args(["-serial", "null"]);
        }
        for (i, dev) in more.iter().enumerate() {
            let id = format!("s{}", i + 2);
            cmd.arg("-chardev")
                .arg(format!("serial,id={id},path={}", dev.display()))
                .args(["-serial", &format!("chardev:{id}")]);
        }
        cmd.args(["-netdev", &netdev, "-device", "e1000,netdev=n,romfile="]);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                fs::File::create(c.console.with_extension("qemu-stderr"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("start qemu-system-x86_64");
        Self {
            child: Some(child),
            console: c.console.to_path_buf(),
            kvm,
            started: Instant::now(),
        }
    }

    /// The guest's serial console so far, and QEMU's own messages.
    pub fn console(&self) -> String {
        let text = fs::read(&self.console).unwrap_or_default();
        let err =
            fs::read_to_string(self.console.with_extension("qemu-stderr")).unwrap_or_default();
        let mut s = String::from_utf8_lossy(&text).into_owned();
        if !err.is_empty() {
            s.push_str("\n[qemu stderr]\n");
            s.push_str(&err);
        }
        s
    }

    /// Stops the VM now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Panics with the console if QEMU has exited.
    pub fn check_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Some(status) = c.try_wait().unwrap() {
                panic!("the VM stopped ({status}):\n{}", self.console());
            }
        }
    }

    /// Waits until the console contains `text`.
    pub fn wait_console(&mut self, text: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.check_running();
            self.console().contains(text).then_some(())
        })
        .is_some()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtc_base_formats_utc() {
        assert_eq!(rtc_base(0), "1970-01-01T00:00:00");
        assert_eq!(rtc_base(1_700_000_000), "2023-11-14T22:13:20");
        assert_eq!(rtc_base(951_782_400), "2000-02-29T00:00:00");
    }
}
