//! `skytimed init --current-addresses`, the first-boot identity as the
//! image runs it, in a network namespace of its own (unshare, root) with a
//! veth carrying documentation addresses: the certificate names the host
//! name, NAME.local, the given and the current addresses, and never
//! loopback or link-local ones.

use std::path::Path;
use std::process::Command;

fn sans(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn init_names_the_current_addresses_in_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let script = format!(
        "set -e
ip link add v0 type veth peer name v1
ip addr add 192.0.2.7/24 dev v0
ip -6 addr add 2001:db8::7/64 dev v0 nodad
ip -6 addr add fe80::7/64 dev v0 nodad
ip link set lo up
{} init --hostname clock1 --address 198.51.100.1 --current-addresses --data-dir {}",
        env!("CARGO_BIN_EXE_skytimed"),
        data.display()
    );
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux)");
    assert!(
        out.status.success(),
        "skytimed init in a namespace failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sans = sans(&data.join("cert.pem"));
    for want in [
        "DNS:clock1",
        "DNS:clock1.local",
        "IP Address:198.51.100.1",
        "IP Address:192.0.2.7",
        "IP Address:2001:DB8:0:0:0:0:0:7",
    ] {
        assert!(sans.contains(want), "{want} missing: {sans}");
    }
    for unwanted in ["127.0.0.1", "0:0:0:0:0:0:0:1", "FE80"] {
        assert!(!sans.contains(unwanted), "{unwanted} named: {sans}");
    }

    // A second run (as every boot may do) keeps the identity, whatever
    // the addresses are now.
    let before = std::fs::read(data.join("cert.pem")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skytimed"))
        .args(["init", "--hostname", "other", "--current-addresses"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept"));
    assert_eq!(std::fs::read(data.join("cert.pem")).unwrap(), before);
}
