//! Device-tree overlays: builds overlays/ with the real dtc/fdtoverlay
//! against Debian's Raspberry Pi 4 DTB and inspects the merged DTBs with
//! fdtget, the way the Pi's kernel will see them.
//!
//! Needs `make overlays-deps` (device-tree-compiler, cpp, and Debian's
//! bcm2711-rpi-4-b.dtb cached in target/overlays/base/).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const GPIO: &str = "/soc/gpio@7e200000";
const UART0: &str = "/soc/serial@7e201000";
const UART1: &str = "/soc/serial@7e215040";
const BT: &str = "/soc/serial@7e201000/bluetooth";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn base_dtb() -> PathBuf {
    let p = repo().join("target/overlays/base/bcm2711-rpi-4-b.dtb");
    assert!(
        p.exists(),
        "{} is missing: run `make overlays-deps`",
        p.display()
    );
    p
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run `make overlays-deps`)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Builds all overlays once per test binary into a private directory.
fn built() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new(repo().join("overlays/build.sh"))
            .arg("--base-dtb")
            .arg(base_dtb())
            .arg("--out")
            .arg(dir.path()));
        dir
    })
    .path()
}

fn dtb(name: &str) -> PathBuf {
    built().join("dtbs").join(name)
}

/// A property as numbers (`fdtget -t u`), or None if the node or property is absent.
fn cells(dtb: &Path, node: &str, prop: &str) -> Option<Vec<u32>> {
    let out = Command::new("fdtget")
        .args(["-t", "u"])
        .arg(dtb)
        .args([node, prop])
        .output()
        .expect("fdtget (make overlays-deps)");
    out.status.success().then(|| {
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect()
    })
}

fn string(dtb: &Path, node: &str, prop: &str) -> Option<String> {
    let out = Command::new("fdtget")
        .args(["-t", "s"])
        .arg(dtb)
        .args([node, prop])
        .output()
        .expect("fdtget (make overlays-deps)");
    out.status.success().then(|| {
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    })
}

fn has_prop(dtb: &Path, node: &str, prop: &str) -> bool {
    let props = run(Command::new("fdtget").arg("-p").arg(dtb).arg(node));
    props.lines().any(|l| l == prop)
}

/// Path of the node whose phandle is `ph`, searching the GPIO controller's
/// pin groups (where every pinctrl state of these DTBs lives).
fn pin_group(dtb: &Path, ph: u32) -> String {
    let groups = run(Command::new("fdtget").arg("-l").arg(dtb).arg(GPIO));
    groups
        .lines()
        .map(|g| format!("{GPIO}/{g}"))
        .find(|node| cells(dtb, node, "phandle") == Some(vec![ph]))
        .unwrap_or_else(|| panic!("no pin group with phandle {ph} in {}", dtb.display()))
}

fn check_pps(dtb: &Path, gpio: u32, falling: bool) {
    let gpio_phandle = cells(dtb, GPIO, "phandle").expect("GPIO controller phandle")[0];
    assert_eq!(
        string(dtb, "/skytime-pps", "compatible").as_deref(),
        Some("pps-gpio"),
        "{}",
        dtb.display()
    );
    assert_eq!(
        string(dtb, "/skytime-pps", "status").as_deref(),
        Some("okay")
    );
    assert_eq!(
        cells(dtb, "/skytime-pps", "gpios"),
        Some(vec![gpio_phandle, gpio, 0]),
        "pps gpios in {}",
        dtb.display()
    );
    assert_eq!(
        has_prop(dtb, "/skytime-pps", "assert-falling-edge"),
        falling,
        "edge in {}",
        dtb.display()
    );
    let pins = pin_group(
        dtb,
        cells(dtb, "/skytime-pps", "pinctrl-0").expect("pps pinctrl-0")[0],
    );
    assert_eq!(cells(dtb, &pins, "brcm,pins"), Some(vec![gpio]), "{pins}");
    assert_eq!(
        cells(dtb, &pins, "brcm,function"),
        Some(vec![0]),
        "{pins} is an input"
    );
}

fn check_uart(dtb: &Path) {
    assert_eq!(string(dtb, UART0, "status").as_deref(), Some("okay"));
    let pinctrl = cells(dtb, UART0, "pinctrl-0").expect("uart0 pinctrl-0");
    assert_eq!(
        pinctrl.len(),
        1,
        "uart0 uses exactly one pin group, not the Bluetooth pins 30-33: {pinctrl:?}"
    );
    let pins = pin_group(dtb, pinctrl[0]);
    assert_eq!(cells(dtb, &pins, "brcm,pins"), Some(vec![14, 15]), "{pins}");
    assert_eq!(
        cells(dtb, &pins, "brcm,function"),
        Some(vec![4]),
        "{pins} must be ALT0 (TXD0/RXD0)"
    );
    assert_eq!(
        string(dtb, BT, "status").as_deref(),
        Some("disabled"),
        "Bluetooth must be off"
    );
    assert_eq!(
        string(dtb, UART1, "status").as_deref(),
        Some("disabled"),
        "mini UART must release GPIO 14/15"
    );
    assert_eq!(string(dtb, "/aliases", "serial0").as_deref(), Some(UART0));
}

#[test]
fn debian_base_dtb_needs_the_overlays() {
    // Guards the other tests: the base really starts elsewhere.
    let base = base_dtb();
    assert!(
        !has_prop(&base, "/", "__symbols__")
            && string(&base, "/skytime-pps", "compatible").is_none()
    );
    assert_eq!(
        string(&base, BT, "status"),
        None,
        "Bluetooth is on in the base (no status = okay)"
    );
    assert_eq!(string(&base, UART1, "status").as_deref(), Some("okay"));
    assert_eq!(
        cells(&base, UART0, "pinctrl-0").map(|v| v.len()),
        Some(2),
        "base uart0 sits on the BT pins"
    );
}

#[test]
fn default_dtb_has_pps_on_gpio4_rising_and_gps_uart() {
    check_pps(&dtb("bcm2711-rpi-4-b.dtb"), 4, false);
    check_uart(&dtb("bcm2711-rpi-4-b.dtb"));
}

#[test]
fn variants_select_gpio_and_edge() {
    for (name, gpio, falling) in [
        ("pps4", 4, false),
        ("pps4-falling", 4, true),
        ("pps18", 18, false),
        ("pps18-falling", 18, true),
    ] {
        let d = dtb(&format!("bcm2711-rpi-4-b-{name}.dtb"));
        check_pps(&d, gpio, falling);
        check_uart(&d);
    }
}

#[test]
fn merged_dtb_keeps_the_rest_of_the_board() {
    let base = base_dtb();
    let merged = dtb("bcm2711-rpi-4-b.dtb");
    for (node, prop) in [
        ("/", "compatible"),
        ("/", "model"),
        ("/emmc2bus/mmc@7e340000", "status"),
        ("/scb/ethernet@7d580000", "status"),
    ] {
        assert_eq!(
            string(&merged, node, prop),
            string(&base, node, prop),
            "{node} {prop}"
        );
        assert!(
            string(&merged, node, prop).is_some(),
            "{node} {prop} present"
        );
    }
}

#[test]
fn pi_os_overlays_target_labels_and_apply_on_a_symbols_dtb() {
    let pps = built().join("pios/skytime-pps.dtbo");
    let uart = built().join("pios/skytime-uart.dtbo");
    // Label references must be left for the firmware to resolve.
    for (dtbo, label) in [
        (&pps, "gpio"),
        (&uart, "uart0"),
        (&uart, "uart1"),
        (&uart, "bt"),
        (&uart, "gpio"),
    ] {
        assert!(
            has_prop(dtbo, "/__fixups__", label),
            "{} must reference &{label}",
            dtbo.display()
        );
    }
    assert!(
        string(&pps, "/__overrides__", "gpiopin").is_some(),
        "gpiopin parameter"
    );
    assert!(has_prop(&pps, "/__overrides__", "assert_falling_edge"));

    // Raspberry Pi OS's DTB has __symbols__ and a phandle on every
    // labelled node (dtc -@). Debian 13's has them too: then its labels
    // must name the nodes the overlays are meant for. A base without them
    // gets them added, as the firmware's DTB would have them.
    let dir = tempfile::tempdir().unwrap();
    let sym = dir.path().join("sym.dtb");
    std::fs::copy(base_dtb(), &sym).unwrap();
    let has_symbols = Command::new("fdtget")
        .arg("-l")
        .arg(&sym)
        .arg("/__symbols__")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_symbols {
        run(Command::new("fdtput")
            .arg("-c")
            .arg(&sym)
            .arg("/__symbols__"));
    }
    for (i, (label, node)) in [
        ("gpio", GPIO),
        ("uart0", UART0),
        ("uart1", UART1),
        ("bt", BT),
    ]
    .into_iter()
    .enumerate()
    {
        if has_symbols {
            assert_eq!(
                string(&sym, "/__symbols__", label).as_deref(),
                Some(node),
                "the base's label {label}"
            );
        } else {
            run(Command::new("fdtput").args(["-t", "s"]).arg(&sym).args([
                "/__symbols__",
                label,
                node,
            ]));
        }
        if cells(&sym, node, "phandle").is_none() {
            run(Command::new("fdtput").args(["-t", "u"]).arg(&sym).args([
                node,
                "phandle",
                &(0x1000 + i).to_string(),
            ]));
        }
    }
    let merged = dir.path().join("merged.dtb");
    run(Command::new("fdtoverlay")
        .arg("-i")
        .arg(&sym)
        .arg("-o")
        .arg(&merged)
        .arg(&uart)
        .arg(&pps));
    check_pps(&merged, 4, false);
    check_uart(&merged);
}
