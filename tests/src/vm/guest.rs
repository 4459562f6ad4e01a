//! What a guest that runs skytimed holds: its `/init` script, skytimed's
//! configuration, and the initramfs with both.

use super::Initramfs;
use crate::{bin, run_bounded};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The busybox applets [`skytimed_init`] uses.
const INIT_APPLETS: &[&str] = &[
    "sh", "mount", "cat", "date", "insmod", "ip", "poweroff", "sleep", "echo",
];

/// `/init` for a guest that runs skytimed: mounts /proc, /sys and /dev,
/// prints `skytime-vm: init, guest clock ...`, loads the modules listed
/// in /lib/modules/order, runs `setup` (shell), brings up QEMU's user
/// network (the guest is 10.0.2.15), then runs `skytimed --config
/// CONFIG` with its log on the console. Lines it prints start with
/// `skytime-vm:`; a failed step prints `skytime-vm: FAILED: ...` and
/// powers off. When skytimed exits, so does the guest.
pub fn skytimed_init(setup: &str, config: &str) -> String {
    format!(
        r#"#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
echo "skytime-vm: init, guest clock $(date -u '+%Y-%m-%dT%H:%M:%S')"
fail() {{ echo "skytime-vm: FAILED: $*"; poweroff -f; }}
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m || fail "insmod $m"; done
{setup}
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip route add default via 10.0.2.2
echo "skytime-vm: network up, starting skytimed"
# Through a pipe: skytimed colours its log only on a terminal.
skytimed --config {config} 2>&1 | cat
echo "skytime-vm: skytimed exited"
poweroff -f
"#
    )
}

/// skytimed's configuration in a guest: steering on (only ever inside a
/// VM), NTP on the guest's port 123, NMEA from ttyS1 at 9600 baud with
/// the given NMEA-to-PPS delay, no D-Bus; `gps_extra` is added to `[gps]`.
pub fn skytimed_guest_config(nmea_delay: f64, gps_extra: &str) -> String {
    format!(
        "data_dir = \"/var/lib/skytime\"\n\
         [log]\nlevel = \"info\"\n\
         [ntp]\nlisten = [\"0.0.0.0:123\"]\n\
         [clock]\nsteer = true\n\
         [gps]\ndevice = \"/dev/ttyS1\"\nbaud = 9600\nnmea_delay = {nmea_delay}\n\
         reopen_max_backoff = 1\n{gps_extra}\
         [dbus]\nenabled = false\n"
    )
}

/// An initramfs with `init` (from [`skytimed_init`]), busybox with the
/// applets it needs and `more_applets`, the built skytimed, its data
/// directory and the host's leap-second table. Add the configuration and
/// the modules (`/lib/modules`), then finish it.
pub fn skytimed_initramfs(init: &str, more_applets: &[&str], scratch: &Path) -> Initramfs {
    let applets = [INIT_APPLETS, more_applets].concat();
    let mut fs = Initramfs::new(init, &applets, scratch);
    fs.program("/bin/skytimed", &bin("skytimed"));
    fs.file("/var/lib/skytime/.keep", b"", 0o644);
    // The host's leap-second table (tzdata), where skytimed looks for it.
    fs.host_file("/usr/share/zoneinfo/leap-seconds.list");
    fs
}

/// Adds skytimed's configuration `text` at `path`, checked first by the
/// built skytimed (`--check-config`, in `scratch`): a bad one fails here
/// with the daemon's message, not as a guest whose skytimed stops.
pub fn add_skytimed_config(fs: &mut Initramfs, path: &str, text: &str, scratch: &Path) {
    let copy = scratch.join("check-config.toml");
    std::fs::write(&copy, text).unwrap();
    let out = run_bounded(
        Command::new(bin("skytimed"))
            .arg("--check-config")
            .arg(&copy),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "guest configuration {path} refused:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs.file(path, text.as_bytes(), 0o644);
}

/// Prints the lines of a guest's console `log` worth reading: the
/// `skytime-vm:` ones, skytimed's warnings and errors, and those with any
/// of `words`.
pub fn show_guest_log(tag: &str, log: &str, words: &[&str]) {
    let worth = |l: &str| {
        ["skytime-vm:", "WARN", "ERROR"]
            .iter()
            .chain(words)
            .any(|w| l.contains(w))
    };
    for line in log.lines().filter(|l| worth(l)) {
        eprintln!("{tag}: guest: {line}");
    }
}

/// Panics with the console `log` of a guest from [`skytimed_init`] if a
/// setup step failed, skytimed or the kernel panicked, or skytimed exited.
pub fn assert_guest_healthy(tag: &str, log: &str) {
    assert!(
        !log.contains("skytime-vm: FAILED"),
        "{tag}: guest setup failed:\n{log}"
    );
    assert!(
        !log.contains("panicked") && !log.contains("Kernel panic"),
        "{tag}: panic in the guest:\n{log}"
    );
    assert!(
        !log.contains("skytime-vm: skytimed exited"),
        "{tag}: skytimed stopped in the guest:\n{log}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_runs_the_setup_before_skytimed() {
        let init = skytimed_init("echo SETUP", "/etc/x.toml");
        let setup = init.find("echo SETUP").unwrap();
        let run = init.find("skytimed --config /etc/x.toml").unwrap();
        assert!(setup < run);
        assert!(init.starts_with("#!/bin/sh\n"));
    }
}
