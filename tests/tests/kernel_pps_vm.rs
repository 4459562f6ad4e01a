//! skytimed reads real kernel pulses, inside a virtual machine: the
//! kernel PPS API on /dev/pps0 (PPS_FETCH) and GPIO v2 line events, each
//! paired with NMEA into stratum 1 / reference ID `PPS`.
//!
//! The guest is Debian's amd64 kernel (as in clock_vm.rs) with modules it
//! lacks, built out of tree from Debian's own sources
//! (tests/scripts/build-vm-modules.sh): gpio-sim, a simulated GPIO chip
//! whose input lines the guest drives through sysfs, each change a real
//! interrupt; and pps-gpio, bound to line 0 of that chip by a small board
//! module, which offers /dev/pps0 (and echoes each pulse on line 2, as
//! pps-gpio does when it has an echo line). Line 1 is left for skytimed to
//! request through /dev/gpiochipN.
//!
//! The pulse is the host's: at each whole second of the host clock (the GPS
//! simulator's truth) the test sends a mark over a serial line (the guest's
//! ttyS2), and a busybox loop in the guest raises both lines on it and
//! lowers them 200 ms later. The kernel timestamps the rising edge (in
//! pps-gpio's interrupt handler, or in gpiolib's for the line event) at
//! the second the NMEA sentences name, late by the serial line's latency
//! like a cable delay. A pulse made from the guest's own clock instead
//! would agree with whatever clock skytimed steers, and prove nothing.
//! NMEA comes from the simulator over ttyS1 as in clock_vm.rs.
//!
//! Two boots of the same initramfs, one per path (`skytime_pps=kernel` or
//! `gpio` on the kernel command line picks the configuration; pps-gpio is
//! loaded only for the kernel path). From the host only, over NTP, each
//! asserts that the guest first serves stratum 1 / `GPS` from NMEA alone
//! while no pulse comes (so nothing else can make it `PPS`), and then, once
//! the pulses start, stratum 1 / `PPS` within 20 ms of the host clock for 5
//! readings in a row. (Stopping the pulses afterwards would prove nothing
//! quickly: skytimed holds over on the disciplined clock, still `PPS`, until
//! it is worse than NMEA.) The guest's console (skytimed's log, the
//! kernel's messages about the devices) is shown for diagnosis.

use skytime_proto::ReferenceId;
use skytime_tests::gpssim::GpsSim;
use skytime_tests::vm::{
    add_skytimed_config, assert_guest_healthy, host_unix_secs, rtc_base, show_guest_log,
    skytimed_guest_config, skytimed_init, skytimed_initramfs, start_guest, GuestReading, Kernel,
    Qemu, QemuConfig, SecondTicker, SerialGate,
};
use skytime_tests::{free_udp_port, wait_until};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// NMEA sentences start this long after the second they name (simulator
/// and guest config agree, as an installer sets `nmea_delay` for the
/// receiver): NMEA alone is then good to a few milliseconds, and the pulse
/// need not first slew away a wrong guess.
const NMEA_DELAY_S: f64 = 0.3;
/// The guest's clock must be this close to the host's.
const TOLERANCE_S: f64 = 0.020;
/// Readings in a row that must show stratum 1 / GPS (before the pulses)
/// and then stratum 1 / PPS, within tolerance.
const GPS_READINGS: u32 = 3;
const PPS_READINGS: u32 = 5;

/// The two guests take turns: each wants a core for its emulated CPU.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Which way the pulse reaches skytimed.
#[derive(Clone, Copy, Debug)]
enum PulsePath {
    /// pps-gpio on line 0, read with PPS_FETCH on /dev/pps0.
    KernelPps,
    /// Line 1 requested by skytimed, read as GPIO v2 line events.
    GpioLine,
}

impl PulsePath {
    /// The `skytime_pps=` value on the kernel command line.
    fn name(self) -> &'static str {
        match self {
            Self::KernelPps => "kernel",
            Self::GpioLine => "gpio",
        }
    }

    /// What skytimed logs when it has opened the pulse device.
    fn opened(self) -> &'static str {
        match self {
            Self::KernelPps => "PPS /dev/pps0 open, capturing the Assert edge",
            Self::GpioLine => "PPS GPIO /dev/gpiochip-sim line 1 open",
        }
    }
}

/// skytimed's configuration for `path` (see `skytimed_guest_config`).
fn guest_config(path: PulsePath) -> String {
    let pulse = match path {
        PulsePath::KernelPps => "pps = \"/dev/pps0\"\n",
        PulsePath::GpioLine => "pps_gpio = { chip = \"/dev/gpiochip-sim\", line = 1 }\n",
    };
    skytimed_guest_config(NMEA_DELAY_S, pulse)
}

/// What /init does between loading /lib/modules and starting skytimed
/// with /etc/skytime-$path.toml: a gpio-sim chip with three lines (through
/// configfs), pps-gpio on line 0 for the kernel path, the pulse loop on
/// ttyS2.
const SETUP: &str = r#"
path=$(sed -n 's/.*skytime_pps=\([a-z]*\).*/\1/p' /proc/cmdline)
echo "skytime-vm: pulse path '$path'"

# A simulated GPIO chip: one bank of three lines (0: pps-gpio's pulse,
# 1: skytimed's line request, 2: pps-gpio's echo output).
mount -t configfs configfs /sys/kernel/config || fail "mount configfs"
sim=/sys/kernel/config/gpio-sim/skytime
mkdir $sim $sim/bank0 && echo 3 >$sim/bank0/num_lines && echo skytime-sim >$sim/bank0/label &&
    echo 1 >$sim/live || fail "gpio-sim setup"
chip=$(cat $sim/bank0/chip_name)
lines=/sys/devices/platform/$(cat $sim/dev_name)/$chip
ln -s $chip /dev/gpiochip-sim
echo "skytime-vm: gpio-sim chip $chip (label skytime-sim), lines in $lines"

if [ "$path" = kernel ]; then
    for m in $(cat /lib/modules/pps/order); do insmod /lib/modules/pps/$m || fail "insmod $m"; done
    [ -c /dev/pps0 ] || fail "no /dev/pps0"
    echo "skytime-vm: /dev/pps0 is $(cat /sys/class/pps/pps0/name)"
fi
dmesg | grep -iE 'pps|gpio' | sed 's/^/skytime-vm: kernel: /'

# The pulse: "H" from the host raises both lines (line 0: pps-gpio, line 1:
# skytimed's line request), "L" lowers them. Each change is an interrupt.
pulse() {
    exec 3</dev/ttyS2
    stty -F /dev/ttyS2 raw -echo 115200
    # Interrupt on every byte, not after the FIFO's timeout.
    echo 1 >/sys/class/tty/ttyS2/rx_trig_bytes 2>/dev/null
    while read -r -u 3 c; do
        case $c in
        H) echo pull-up >$lines/sim_gpio0/pull; echo pull-up >$lines/sim_gpio1/pull ;;
        L) echo pull-down >$lines/sim_gpio0/pull; echo pull-down >$lines/sim_gpio1/pull ;;
        esac
    done
    echo "skytime-vm: pulse line closed"
}
pulse &
"#;

/// One initramfs for both paths: the VM kernel's modules and gpio-sim in
/// /lib/modules, pps-gpio and its board module in /lib/modules/pps.
fn build_initramfs(kernel: &Kernel, scratch: &Path) -> Vec<u8> {
    let (pps, base): (Vec<PathBuf>, Vec<PathBuf>) =
        kernel.pps_test_modules().into_iter().partition(|m| {
            m.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("pps-"))
        });
    assert_eq!(pps.len(), 2, "pps-gpio and pps-sim-board: {pps:?}");
    let init = skytimed_init(SETUP, "/etc/skytime-$path.toml");
    let applets = ["sed", "mkdir", "ln", "stty", "dmesg", "grep"];
    let mut fs = skytimed_initramfs(&init, &applets, scratch);
    fs.modules("/lib/modules", &[kernel.modules.clone(), base].concat());
    fs.modules("/lib/modules/pps", &pps);
    for path in [PulsePath::KernelPps, PulsePath::GpioLine] {
        let name = format!("/etc/skytime-{}.toml", path.name());
        add_skytimed_config(&mut fs, &name, &guest_config(path), scratch);
    }
    fs.finish()
}

/// Waits until `n` readings in a row show stratum 1 / `refid` within
/// tolerance; the last of them, or the last reading seen as the error.
fn hold(vm: &mut Qemu, port: u16, refid: ReferenceId, n: u32) -> Result<GuestReading, String> {
    let mut good = 0;
    let mut last = None;
    wait_until(Duration::from_secs(120), || {
        vm.check_running();
        std::thread::sleep(Duration::from_millis(950));
        let r = GuestReading::read(port)?;
        let ok = r.stratum == 1 && r.refid == refid && r.error_bound() < TOLERANCE_S;
        good = if ok { good + 1 } else { 0 };
        last = Some(r.clone());
        (good >= n).then_some(r)
    })
    .ok_or_else(|| format!("last reading {last:?}"))
}

fn run(path: PulsePath) {
    let _turn = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let t0 = Instant::now();
    let tag = format!("kernel_pps_vm[{}]", path.name());
    let kernel = Kernel::fetch();
    let dir = tempfile::tempdir().unwrap();
    let initramfs = dir.path().join("initramfs.cpio");
    std::fs::write(&initramfs, build_initramfs(&kernel, dir.path())).unwrap();

    let gps_link = dir.path().join("gps");
    let _sim = GpsSim::nmea_only(&gps_link, NMEA_DELAY_S, 300);
    assert!(
        wait_until(Duration::from_secs(10), || gps_link.exists().then_some(())).is_some(),
        "skytime-gpssim made no pty"
    );
    let gps = SerialGate::new(&gps_link);
    gps.set_open(true);
    // No pulses until NMEA alone has been seen to give GPS, not PPS.
    let pulses = SecondTicker::new(false);

    let port = free_udp_port();
    let append = format!(
        "console=ttyS0,115200 panic=-1 loglevel=4 skytime_pps={}",
        path.name()
    );
    let mut vm = start_guest("skytime-vm: init", |kvm, name| {
        // The guest's clock starts at the host's whole second: skytimed
        // steps it by the fraction, and steers from there.
        let base = rtc_base(host_unix_secs() as i64);
        Qemu::start_with_serials(
            &QemuConfig {
                kernel: &kernel,
                initramfs: &initramfs,
                append: &append,
                memory_mb: 512,
                console: &dir.path().join(name),
                ttys1: Some(gps.device()),
                rtc_base: &base,
                udp_forwards: &[(port, 123)],
            },
            &[pulses.device()],
            kvm,
        )
    });
    let accel = if vm.kvm { "KVM" } else { "TCG" };

    let first = wait_until(Duration::from_secs(150), || {
        vm.check_running();
        GuestReading::read(port)
    })
    .unwrap_or_else(|| panic!("{tag}: the guest never answered NTP:\n{}", vm.console()));
    eprintln!(
        "{tag}: first reply {:.1} s after QEMU started ({accel}): {first:?}",
        vm.started.elapsed().as_secs_f64()
    );

    // NMEA alone: stratum 1 / GPS, never PPS.
    let gps_only = hold(&mut vm, port, ReferenceId::GPS, GPS_READINGS).unwrap_or_else(|e| {
        panic!(
            "{tag}: no stratum 1 / GPS from NMEA alone ({e}):\n{}",
            vm.console()
        )
    });
    eprintln!("{tag}: NMEA alone: {gps_only:?}");

    // The pulses start: the kernel's edges make it PPS.
    pulses.set_running(true);
    let pps_start = Instant::now();
    let locked = hold(&mut vm, port, ReferenceId::PPS, PPS_READINGS);
    let log = vm.console();
    show_guest_log("kernel_pps_vm", &log, &["PPS", "NMEA", "stepping"]);
    let locked = locked.unwrap_or_else(|e| {
        panic!(
            "{tag}: the guest never held stratum 1 / PPS within {} ms ({e}, {} pulses sent):\n{log}",
            TOLERANCE_S * 1e3,
            pulses.sent()
        )
    });
    eprintln!(
        "{tag}: stratum 1 / PPS held {:.1} s after the pulses started: {locked:?}",
        pps_start.elapsed().as_secs_f64()
    );

    assert!(
        log.contains(path.opened()),
        "{tag}: skytimed did not log {:?}:\n{log}",
        path.opened()
    );
    assert_guest_healthy(&tag, &log);
    eprintln!(
        "{tag}: done in {:.1} s ({accel})",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn skytimed_pairs_kernel_pps_from_dev_pps0_with_nmea() {
    run(PulsePath::KernelPps);
}

#[test]
fn skytimed_pairs_gpio_line_events_with_nmea() {
    run(PulsePath::GpioLine);
}
