//! What an operator sees of a GPS-fed appliance through the gateway:
//! `/metrics` parsed by real parsers (the Python Prometheus client's
//! strict OpenMetrics parser, and `promtool check metrics` on the older
//! text format) and compared with what skytimectl reads over D-Bus; and
//! the status page loaded in headless Chromium, its DOM checked and a
//! screenshot taken (kept as `status-page.png` in Cargo's test temporary
//! directory, to look at).

use skytime_tests::dbus::ctl;
use skytime_tests::mgmt::{Appliance, Ca, Gateway, Usage};
use skytime_tests::{require_program, run_bounded, wait_until_every};
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

/// Every sample of an OpenMetrics text, by `name{labels}`, as the Python
/// client's parser reads it (it refuses anything malformed).
fn parse_openmetrics(text: &str) -> HashMap<String, f64> {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
print(json.dumps(out))
"#;
    let dir = tempfile::tempdir().unwrap();
    let (input, parser) = (dir.path().join("metrics.txt"), dir.path().join("parse.py"));
    std::fs::write(&input, text).unwrap();
    std::fs::write(&parser, script).unwrap();
    // Debian's python3, where python3-prometheus-client is installed.
    let out = run_bounded(
        Command::new("sh").arg("-c").arg(format!(
            "/usr/bin/python3 {} < {}",
            parser.display(),
            input.display()
        )),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused it: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(require_program("chromium"));
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(url)
    // Chromium would talk to the test's private bus otherwise.
    .env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    run_bounded(&mut cmd, Duration::from_secs(90))
}

#[test]
fn metrics_agree_with_skytimectl_and_the_status_page_renders() {
    require_program("promtool");
    let a = Appliance::start("");
    let ca = Ca::new("skytime test operators");
    let reader = ca.client("reader", 2100, Usage::ClientAuth);
    let dir = Gateway::prepare(
        &a.bus.address,
        "anonymous_read = true\n",
        &[("skytime-read-ca.pem", ca.pem.cert.as_str())],
    );
    let gw = Gateway::start(dir);
    // Stratum 1 from PPS, and some history to plot.
    let synced = wait_until_every(Duration::from_secs(120), Duration::from_millis(500), || {
        let t = ctl(&a.bus, None, &["--json", "tracking"]).json();
        (t["Stratum"] == 1 && t["ReferenceId"] == "PPS").then_some(())
    });
    assert!(synced.is_some(), "not synchronized:\n{}", a.daemon.log());
    let ntp = a.daemon.ntp_addr();
    for _ in 0..20 {
        skytime_tests::ntp::query(ntp).expect("an NTP answer");
    }
    let points = wait_until_every(Duration::from_secs(30), Duration::from_millis(500), || {
        let h = ctl(&a.bus, None, &["--json", "history"]).json();
        let n = h.as_array()?.len();
        (n >= 8).then_some(n)
    });
    assert!(points.is_some(), "no history");
    // Every source's reach register full: it then stays 377 (255) while
    // the source keeps answering, so the metrics and skytimectl, read a
    // moment apart, see the same value (a register still filling shifts
    // between the two reads).
    let full = wait_until_every(Duration::from_secs(30), Duration::from_millis(500), || {
        let s = ctl(&a.bus, None, &["--json", "sources"]).json();
        s.as_array()?
            .iter()
            .all(|s| s["Reach"] == 255)
            .then_some(())
    });
    assert!(full.is_some(), "a source's reach did not fill");

    // OpenMetrics, as Prometheus asks for it.
    let client = gw.client(Some(&reader));
    let r = client
        .request(
            "GET",
            "/metrics",
            &[("Accept", "application/openmetrics-text; version=1.0.0")],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r
        .header("Content-Type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let before = ctl(&a.bus, None, &["--json", "status"]).json();
    let m = parse_openmetrics(&r.text());
    let after = ctl(&a.bus, None, &["--json", "status"]).json();
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("{k} missing: {m:?}"));
    assert_eq!(get("skytime_tracking_stratum"), 1.0);
    assert_eq!(get("skytime_tracking_synchronized"), 1.0);
    let freq = before["tracking"]["Frequency"].as_f64().unwrap() * 1e-6;
    assert!(
        get("skytime_tracking_frequency_ratio").abs() <= freq.abs() + 1e-6,
        "ratio, not ppm"
    );
    for s in before["sources"].as_array().unwrap() {
        let name = s["Name"].as_str().unwrap();
        let key = format!("skytime_source_reach{{source=\"{name}\"}}");
        assert_eq!(get(&key), s["Reach"].as_f64().unwrap(), "{name}");
    }
    assert_eq!(get("skytime_source_selected{source=\"PPS\"}"), 1.0);
    assert_eq!(
        get("skytime_gps_satellites"),
        before["sources"][0]["GpsSatellitesUsed"].as_f64().unwrap()
    );
    let delay = get("skytime_gps_nmea_pps_delay_seconds");
    assert!((delay - 0.45).abs() < 0.02, "NMEA-to-PPS delay {delay}");
    assert_eq!(
        get("skytime_certificate_expiry_timestamp_seconds"),
        before["nts"]["Certificate"]["NotAfter"].as_f64().unwrap()
    );
    let requests = get("skytime_ntp_requests_total");
    let (lo, hi) = (
        before["server"]["NtpReceived"].as_f64().unwrap(),
        after["server"]["NtpReceived"].as_f64().unwrap(),
    );
    assert!(
        lo >= 20.0 && lo <= requests && requests <= hi,
        "{lo} <= {requests} <= {hi}"
    );
    for alarm in skytime_alarms::AlarmKind::ALL {
        let key = format!(
            "skytime_alarm_active{{alarm=\"{}\",severity=\"{}\"}}",
            alarm.name(),
            alarm.severity().name()
        );
        let active = |s: &serde_json::Value| {
            s["alarms"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["Name"] == alarm.name())
        };
        if active(&before) == active(&after) {
            assert_eq!(get(&key), f64::from(u8::from(active(&before))), "{key}");
        }
    }
    assert!(get("skytime_build_info{gateway_version=\"0.1.0\",version=\"0.1.0\"}") == 1.0);
    assert!(
        m.keys().all(|k| !k.contains("127.0.0.1")),
        "no client addresses as labels"
    );

    // The older text format, without a certificate, checked by promtool.
    let out = run_bounded(
        Command::new("sh").arg("-c").arg(format!(
            "curl -sS --fail --cacert {} https://127.0.0.1:{}/metrics | promtool check metrics",
            gw.server_cert().display(),
            gw.addr.port()
        )),
        Duration::from_secs(60),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool: {text}"
    );

    // The page in a browser, which trusts only the gateway's key.
    let pin = std::fs::read_to_string(gw.dir.path().join("boot/skytime-mgmt-fingerprint.txt"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("pubkey sha256//").map(str::to_owned))
        .unwrap();
    let url = format!("https://127.0.0.1:{}/", gw.addr.port());
    let spki = format!("--ignore-certificate-errors-spki-list={pin}");
    let out = chromium(&[&spki, "--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict = dom
        .split("id=\"verdict\"")
        .nth(1)
        .and_then(|r| r.split('>').nth(1))
        .and_then(|r| r.split('<').next())
        .unwrap_or_else(|| panic!("no verdict:\n{dom}"));
    assert!(
        ["OK", "DEGRADED", "FAIL"]
            .iter()
            .any(|w| verdict.starts_with(w)),
        "{verdict}"
    );
    for id in [
        "clock",
        "alarms",
        "sources",
        "server",
        "certificate",
        "system",
        "history",
    ] {
        assert!(
            dom.contains(&format!("<section id=\"{id}\">")),
            "section {id} missing"
        );
    }
    assert!(
        dom.contains("<td>PPS</td>") && dom.contains("<td>selected</td>"),
        "{dom}"
    );
    assert_eq!(dom.matches("<svg").count(), 5);
    for plot in [
        "plot-offset",
        "plot-frequency",
        "plot-pps-jitter",
        "plot-satellites",
        "plot-request-rate",
    ] {
        let svg = dom
            .split(&format!("id=\"{plot}\""))
            .nth(1)
            .unwrap()
            .split("</svg>")
            .next()
            .unwrap();
        assert!(svg.contains("<polyline"), "{plot} has no line: {svg}");
    }
    assert!(!dom.contains("<script"), "no JavaScript");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let out = chromium(&[&spki, "--window-size=1100,2600", &arg], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}
