//! The first tutorial's Stratum-2 box: the same skytimed with another
//! configuration. skytimed A (GPS simulator, stratum 1, NTS on 127.0.0.2)
//! -> skytimed B (no GPS, A as its `[[upstream]] nts` source trusting A's
//! certificate, NTS to its clients with a certificate of its own, on
//! 127.0.0.1) -> chronyd 4.3 as B's NTS client: chrony synchronizes at
//! stratum 3 and sees B at stratum 2 with A's address as reference ID.
//! When A stops, B falls back to its local stratum after its holdover
//! limit, and chrony sees that too.

use skytime_tests::gpssim::GpsSim;
use skytime_tests::ntp::query;
use skytime_tests::upstream::{certificate, chrony_nts_client, nts_client_trusting, upstream_nts};
use skytime_tests::{field, parse_colon_fields, wait_until_every, Chronyd, Daemon};
use std::path::Path;
use std::time::{Duration, Instant};

/// `[ntp]` and `[nts]` on `host` with ports the kernel picks.
fn serving(host: &str, cert: &Path, key: &Path) -> String {
    format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"{host}:0\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n\
         [nts]\nenabled = true\nke_listen = [\"{host}:0\"]\ncertificate = \"{}\"\nprivate_key = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

/// `chronyc ntpdata` of `server` as fields.
fn ntpdata(chrony: &Chronyd, server: &str) -> Vec<(String, String)> {
    parse_colon_fields(&chrony.chronyc(&["ntpdata", server]))
}

#[test]
fn gps_box_to_stratum_2_box_to_chrony_over_nts() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (cert_a, key_a) = certificate(dir_a.path());
    let (cert_b, key_b) = certificate(dir_b.path());
    let gps = tempfile::tempdir().unwrap();
    let a = Daemon::start(
        &format!(
            "{}[clock]\nsteer = false\n[gps]\ndevice = \"{}\"\nsock = \"{}\"\n",
            serving("127.0.0.2", &cert_a, &key_a),
            GpsSim::device(gps.path()).display(),
            GpsSim::sock(gps.path()).display()
        ),
        &[],
    );
    let sim = GpsSim::start(gps.path(), 0.3, 120);
    let started = Instant::now();
    let b = Daemon::start(
        &format!(
            "{}[clock]\nsteer = false\nsource_timeout = 2.0\nholdover_limit = 5.0\n{}{}",
            serving("127.0.0.1", &cert_b, &key_b),
            upstream_nts(a.ntp_addr(), a.ke_addr()),
            nts_client_trusting(&cert_a)
        ),
        &[],
    );
    let (b_ntp, b_ke) = (b.ntp_addr(), b.ke_addr());

    // B serves stratum 2 with A's address once A is stratum 1 (PPS).
    let chained = wait_until_every(Duration::from_secs(40), Duration::from_millis(250), || {
        let x = query(b_ntp)?;
        (x.reply.stratum == 2 && x.reply.reference_id.0 == [127, 0, 0, 2]).then_some(())
    });
    assert!(
        chained.is_some(),
        "B never served stratum 2 from A: A {:?}, B {:?}\nA:\n{}\nB:\n{}",
        query(a.ntp_addr()).map(|x| x.reply),
        query(b_ntp).map(|x| x.reply),
        a.log(),
        b.log()
    );
    eprintln!(
        "B at stratum 2 {:.1} s after the GPS started",
        started.elapsed().as_secs_f64()
    );

    // chrony over NTS, trusting B's certificate only.
    let chrony = Chronyd::start(&chrony_nts_client(b_ntp, b_ke, &cert_b));
    let tracking = chrony
        .wait_synchronized(Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "chrony did not synchronize to B:\n{}\n{}\nB:\n{}",
                chrony.chronyc(&["sources"]),
                chrony.log(),
                b.log()
            )
        });
    assert_eq!(field(&tracking, "Stratum"), Some("3"), "{tracking:?}");
    let f = ntpdata(&chrony, "127.0.0.1");
    assert_eq!(field(&f, "Stratum"), Some("2"), "{f:?}");
    assert_eq!(field(&f, "Authenticated"), Some("Yes"), "{f:?}");
    assert!(
        field(&f, "Reference ID").is_some_and(|r| r.starts_with("7F000002")),
        "B's reference is A's address: {f:?}"
    );

    // A stops: B runs on in holdover, then falls back to its local
    // stratum, and chrony follows.
    drop(sim);
    let (ok, log, _) = a.stop();
    assert!(ok, "A exits cleanly:\n{log}");
    let stopped = Instant::now();
    let local = wait_until_every(Duration::from_secs(30), Duration::from_millis(250), || {
        let f = ntpdata(&chrony, "127.0.0.1");
        (field(&f, "Stratum") == Some("10")).then_some(())
    });
    assert!(
        local.is_some(),
        "chrony never saw B at its local stratum: {:?}\nB:\n{}",
        ntpdata(&chrony, "127.0.0.1"),
        b.log()
    );
    eprintln!(
        "B at its local stratum {:.1} s after A stopped",
        stopped.elapsed().as_secs_f64()
    );
    let (ok, log, _) = b.stop();
    assert!(ok, "B exits cleanly:\n{log}");
}
