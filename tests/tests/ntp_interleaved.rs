//! Interleaved mode against chrony 4.3 as an `xleave` client: skytimed
//! answers with the kernel's transmit timestamp of its previous reply,
//! chrony reports interleaved mode, and the delay it measures is no
//! larger than in basic mode; a basic client beside it stays basic.

use skytime_tests::{field, parse_colon_fields, wait_until, Chronyd, Daemon};
use std::time::Duration;

/// One measurement chrony logged: (source address, interleaved, delay s,
/// offset s, transmit timestamp source).
type Sample = (String, bool, f64, f64, String);

/// chrony's measurements.log lines (see chrony's ntp_core.c): ... IP ...
/// offset, peer delay ... "4I K K" (mode, B/I, TX and RX timestamp source).
fn samples(chrony: &Chronyd) -> Vec<Sample> {
    let text =
        std::fs::read_to_string(chrony.dir.path().join("measurements.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 20 || !f[2].starts_with("127.") {
                return None;
            }
            let mode = f[17];
            Some((
                f[2].to_owned(),
                mode.ends_with('I'),
                f[12].parse().ok()?,
                f[11].parse().ok()?,
                f[18].to_owned(),
            ))
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn chrony_xleave_gets_interleaved_mode_and_no_larger_delay() {
    // Two addresses of one daemon: chrony uses one in interleaved mode,
    // the other in basic mode, at the same time.
    let daemon = Daemon::start(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:0\", \"127.0.0.2:0\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n",
        &[],
    );
    let served = daemon.serving("NTP");
    assert_eq!(served.len(), 2, "{served:?}");
    let chrony = Chronyd::start(&[
        format!(
            "server {} port {} xleave minpoll -4 maxpoll -4 iburst",
            served[0].ip(),
            served[0].port()
        ),
        format!(
            "server {} port {} minpoll -4 maxpoll -4 iburst",
            served[1].ip(),
            served[1].port()
        ),
        "log measurements".into(),
    ]);
    let (xleave_ip, basic_ip) = (served[0].ip().to_string(), served[1].ip().to_string());
    let enough = wait_until(Duration::from_secs(90), || {
        let s = samples(&chrony);
        let inter = s.iter().filter(|x| x.0 == xleave_ip && x.1).count();
        let basic = s.iter().filter(|x| x.0 == basic_ip && !x.1).count();
        (inter >= 30 && basic >= 30).then_some(s)
    });
    let s = enough.unwrap_or_else(|| {
        panic!(
            "not enough samples:\n{:?}\n{}\n{}",
            samples(&chrony),
            chrony.chronyc(&["sources"]),
            daemon.log()
        )
    });

    // chrony says so itself.
    let ntpdata = |ip: &str| parse_colon_fields(&chrony.chronyc(&["ntpdata", ip]));
    let x = ntpdata(&xleave_ip);
    assert_eq!(field(&x, "Interleaved"), Some("Yes"), "{x:?}");
    let b = ntpdata(&basic_ip);
    assert_eq!(field(&b, "Interleaved"), Some("No"), "{b:?}");

    // Every sample of the basic source is basic; the interleaved source
    // is interleaved from its third exchange on (the first two have no
    // earlier reply to report).
    assert!(s.iter().filter(|x| x.0 == basic_ip).all(|x| !x.1));
    let inter: Vec<&Sample> = s.iter().filter(|x| x.0 == xleave_ip).collect();
    assert!(
        inter.iter().skip(2).all(|x| x.1),
        "interleaved source fell back to basic: {inter:?}"
    );
    // Same host, same clock: the offsets are tiny either way, so the
    // transmit timestamps served are the right ones.
    for (_, _, delay, offset, _) in s.iter().filter(|x| x.0 == xleave_ip && x.1) {
        assert!(offset.abs() < 0.001, "offset {offset} (delay {delay})");
    }
    let delays = |ip: &str, interleaved: bool| {
        median(
            s.iter()
                .filter(|x| x.0 == ip && x.1 == interleaved)
                .map(|x| x.2)
                .collect(),
        )
    };
    let (d_inter, d_basic) = (delays(&xleave_ip, true), delays(&basic_ip, false));
    // The server's own send path no longer counts: the delay does not
    // grow (on a shared machine both vary, hence the margin of 50 us).
    assert!(
        d_inter <= d_basic + 50e-6,
        "interleaved median delay {d_inter} s against basic {d_basic} s"
    );

    let (ok, log, _) = daemon.stop();
    assert!(ok, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("skytimed stopped"))
        .unwrap_or_else(|| panic!("{log}"));
    let stat = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.trim_end_matches(';').parse().ok())
            .unwrap_or_else(|| panic!("no {key}: {line}"))
    };
    assert!(stat("interleaved") >= 28, "{line}");
    assert!(
        stat("kernel_tx_timestamps") >= 28,
        "kernel transmit timestamps came back: {line}"
    );
    eprintln!(
        "median delay: interleaved {:.1} us, basic {:.1} us",
        d_inter * 1e6,
        d_basic * 1e6
    );
}
