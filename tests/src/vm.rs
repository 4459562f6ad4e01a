//! A throw-away x86-64 virtual machine for tests that must set a clock:
//! Debian's kernel (fetched once into `target/clock-vm/kernel` by
//! `tests/scripts/fetch-vm-kernel.sh`), an initramfs built here (busybox,
//! the host-built binaries and their shared libraries, an `/init` script),
//! and `qemu-system-x86_64` with KVM when `/dev/kvm` works, TCG otherwise.
//!
//! Nothing here touches the host's clock: the guest has its own (QEMU
//! starts its RTC wherever the test says), and only the guest steers it.
//! The VM is killed on drop; every wait is bounded.

use crate::{require_program, run_bounded, wait_until};
use skytime_refclock::gpstime::civil_from_days;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-vm-kernel.sh");
        let out = run_bounded(Command::new(&script).arg(&dir), Duration::from_secs(600));
        assert!(
            out.status.success(),
            "{} failed:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let moddir = dir.join("modules");
        let modules = fs::read_to_string(moddir.join("order"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| moddir.join(l.trim()))
            .collect();
        Self {
            vmlinuz: dir.join("vmlinuz"),
            modules,
            package: fs::read_to_string(dir.join("package"))
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }
}

/// An initramfs in the kernel's "newc" cpio format, uncompressed.
#[derive(Debug, Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let name = name.trim_start_matches('/');
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    pub fn dir(&mut self, path: &str) {
        self.entry(path, 0o040755, (0, 0), &[]);
    }

    pub fn file(&mut self, path: &str, data: &[u8], perm: u32) {
        self.entry(path, 0o100000 | perm, (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, 0o120777, (0, 0), target.as_bytes());
    }

    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, 0o020600, (major, minor), &[]);
    }

    /// Adds every directory on the way to `path` that is not there yet.
    pub fn parents(&mut self, path: &str, made: &mut Vec<String>) {
        let mut cur = String::new();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            cur.push('/');
            cur.push_str(part);
            if !made.contains(&cur) {
                self.dir(&cur);
                made.push(cur.clone());
            }
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.buf
    }
}

/// The shared libraries and dynamic loader `ldd` lists for `exe` (none
/// for a static executable).
pub fn shared_libraries(exe: &Path) -> Vec<PathBuf> {
    let out = run_bounded(
        Command::new(require_program("ldd")).arg(exe),
        Duration::from_secs(30),
    );
    if !out.status.success() {
        // "not a dynamic executable": nothing to add.
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso has no path.
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A copy of `exe` without debug information (a debug skytimed is over
/// 100 MB; the guest holds its initramfs in RAM). Falls back to the file
/// itself if `strip` is missing or fails.
pub fn stripped(exe: &Path, dir: &Path) -> Vec<u8> {
    let out_path = dir.join(format!(
        "{}.stripped",
        exe.file_name().unwrap().to_string_lossy()
    ));
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out_path)
        .arg(exe)
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let data = fs::read(if ok { &out_path } else { exe }).unwrap();
    let _ = fs::remove_file(&out_path);
    data
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

/// A serial line the test can switch on: bytes from `source` (a serial
/// device such as the GPS simulator's pty) are copied, as they come, to a
/// new pty whose slave [`SerialGate::device`] QEMU opens, but only while
/// the gate is open; while it is closed they are read and dropped, like a
/// receiver whose cable is unplugged. Stopped on drop.
#[derive(Debug)]
pub struct SerialGate {
    device: PathBuf,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _slave: OwnedFd,
}

impl SerialGate {
    /// Starts copying from `source` (closed gate).
    pub fn new(source: &Path) -> Self {
        let input = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(source)
            .unwrap_or_else(|e| panic!("open {}: {e}", source.display()));
        make_raw(input.as_raw_fd());
        let (mut m, mut s) = (-1, -1);
        // SAFETY: openpty writes two descriptors; the name, termios and
        // window-size pointers may be null.
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two fresh descriptors we now own.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        // A guest that stops reading must not block the copier: excess
        // bytes are dropped, as on a real line.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        make_raw(slave.as_raw_fd());
        let device = fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).unwrap();
        let open = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, st) = (open.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut input = input;
            let mut output = fs::File::from(master);
            let mut buf = [0u8; 256];
            while !st.load(Ordering::SeqCst) {
                let mut pfd = libc::pollfd {
                    fd: input.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                    continue;
                }
                match input.read(&mut buf) {
                    Ok(0) => std::thread::sleep(Duration::from_millis(50)),
                    Ok(n) => {
                        if o.load(Ordering::SeqCst) {
                            let _ = output.write_all(&buf[..n]);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        Self {
            device,
            open,
            stop,
            thread: Some(thread),
            _slave: slave,
        }
    }

    /// The pty QEMU should open.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Lets bytes through (true) or drops them (false).
    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }
}

impl Drop for SerialGate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Raw mode (no echo, no line editing, no translation) on a tty.
fn make_raw(fd: i32) {
    // SAFETY: termios is plain old data; fd is a valid open tty.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
    }
}

/// A running `qemu-system-x86_64`, killed on drop.
#[derive(Debug)]
pub struct Qemu {
    child: Option<Child>,
    pub console: PathBuf,
    pub kvm: bool,
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

    #[test]
    fn cpio_is_newc_with_a_trailer() {
        let mut c = Cpio::new();
        c.file("/init", b"#!/bin/sh\n", 0o755);
        let b = c.finish();
        assert!(b.starts_with(b"070701"));
        assert_eq!(b.len() % 4, 0);
        assert!(b.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
