//! The appliance's network settings on the image in QEMU, seen from the
//! other end of its Ethernet cable: the guest's port is a tap device in a
//! network namespace this test makes (192.168.77.1/24 on the test's side;
//! nothing leaves the namespace, and there is no DHCP server in it).
//!
//! One first boot, with a skytime.toml on the boot partition whose
//! `[network]` gives a static address (192.168.77.2/24) and the host name
//! `skytime-lab`:
//! - the appliance answers NTP at that address, and systemd-resolved's
//!   responder answers an mDNS query for `skytime-lab.local` with it;
//! - `skytimectl network show` (over the VM management channel) reports
//!   the settings, and the sockets open include mDNS's;
//! - a change to 192.168.77.3 applied with a 40-second window and never
//!   confirmed: the new address answers during the window, and after it
//!   the appliance is back on 192.168.77.2 alone, with nothing pending;
//! - afterwards, on the data partition: the confirmed settings are the
//!   first ones, and the certificate
//!   (re-issued when the settings were seeded) names `skytime-lab`,
//!   `skytime-lab.local` and 192.168.77.2.
//!
//! Needs root (`ip netns`, a tap device), `make image` and `make image-deps`.

mod image_support;

use image_support::*;
use skytime_tests::{require_program, wait_until};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const HOST_SIDE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const STATIC: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const CHANGED: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 3);
const NAME: &str = "skytime-lab";
const TAP: &str = "tap0";

/// A network namespace with a tap device for the guest, removed on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn new() -> NetNs {
        let name = format!("skytime-imgnet-{}", std::process::id());
        let ip = require_program("ip");
        let _ = Command::new(&ip).args(["netns", "del", &name]).output();
        run(Command::new(&ip).args(["netns", "add", &name]));
        let ns = NetNs { name };
        let host = format!("{HOST_SIDE}/24");
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["tuntap", "add", "dev", TAP, "mode", "tap"],
            vec!["addr", "add", &host, "dev", TAP],
            vec!["link", "set", TAP, "up"],
            // mDNS queries go to 224.0.0.251 on this link.
            vec!["route", "add", "224.0.0.0/4", "dev", TAP],
        ] {
            run(Command::new(&ip).args(["-n", &ns.name]).args(&args));
        }
        ns
    }

    /// Runs `f` on a thread inside the namespace (sockets made there stay
    /// there).
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = fs::File::open(&path).unwrap();
                // SAFETY: setns on a valid namespace fd; it changes only
                // this thread's network namespace.
                let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Whether the appliance answers NTP at `addr` (from the namespace).
    fn answers_ntp(&self, addr: Ipv4Addr) -> bool {
        self.enter(|| {
            let server = SocketAddr::V4(SocketAddrV4::new(addr, 123));
            let t = skytime_tests::ntp::now();
            skytime_tests::ntp::exchange(
                server,
                &skytime_tests::ntp::request(4, t),
                Duration::from_secs(2),
            )
            .is_some()
        })
    }

    /// The IPv4 address an mDNS responder gives for `name`, asked the
    /// standard way (from port 5353 to 224.0.0.251, answers read from the
    /// group) for up to `wait`.
    fn mdns_lookup(&self, name: &str, wait: Duration) -> Option<Ipv4Addr> {
        self.enter(|| {
            let group = Ipv4Addr::new(224, 0, 0, 251);
            let sock = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )
            .unwrap();
            sock.set_reuse_address(true).unwrap();
            sock.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 5353)).into())
                .unwrap();
            let sock: UdpSocket = sock.into();
            sock.join_multicast_v4(&group, &HOST_SIDE).unwrap();
            // RFC 6762 section 11: mDNS packets carry IP TTL 255.
            sock.set_multicast_ttl_v4(255).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let query = mdns::query_a(name);
            let deadline = Instant::now() + wait;
            let mut buf = [0u8; 1500];
            while Instant::now() < deadline {
                sock.send_to(&query, (group, 5353)).unwrap();
                let resend = Instant::now() + Duration::from_secs(1);
                while Instant::now() < resend {
                    let Ok((n, _)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some(a) = mdns::answer_a(&buf[..n], name) {
                        return Some(a);
                    }
                }
            }
            None
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Just enough DNS (RFC 1035) for one mDNS question and its A answer.
mod mdns {
    use std::net::Ipv4Addr;

    /// A standard query (id 0, as mDNS uses) for `name`'s A record.
    pub fn query_a(name: &str) -> Vec<u8> {
        let mut q = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    /// The domain name at `pos` (following compression pointers, bounded)
    /// and the position after it in the record.
    fn name_at(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
        let mut labels = Vec::new();
        let mut end = None;
        for _ in 0..64 {
            let len = *msg.get(pos)? as usize;
            if len == 0 {
                return Some((labels.join("."), end.unwrap_or(pos + 1)));
            }
            if len & 0xc0 == 0xc0 {
                let target = ((len & 0x3f) << 8) | *msg.get(pos + 1)? as usize;
                end.get_or_insert(pos + 2);
                pos = target;
                continue;
            }
            let label = msg.get(pos + 1..pos + 1 + len)?;
            labels.push(String::from_utf8_lossy(label).into_owned());
            pos += 1 + len;
        }
        None
    }

    /// The address in an A record for `name` among a response's answers
    /// and additional records.
    pub fn answer_a(msg: &[u8], name: &str) -> Option<Ipv4Addr> {
        let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]) as usize;
        if msg.len() < 12 || msg[2] & 0x80 == 0 {
            return None; // not a response (our own query, looped back)
        }
        let mut pos = 12;
        for _ in 0..count(4) {
            pos = name_at(msg, pos)?.1 + 4;
        }
        for _ in 0..count(6) + count(8) + count(10) {
            let (owner, at) = name_at(msg, pos)?;
            let head = msg.get(at..at + 10)?;
            let rtype = u16::from_be_bytes([head[0], head[1]]);
            let rdlen = u16::from_be_bytes([head[8], head[9]]) as usize;
            let rdata = msg.get(at + 10..at + 10 + rdlen)?;
            if rtype == 1 && rdlen == 4 && owner.eq_ignore_ascii_case(name) {
                return Some(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
            }
            pos = at + 10 + rdlen;
        }
        None
    }

    #[test]
    fn a_compressed_answer_is_read() {
        // A response: the question, then an answer whose name points at it.
        let mut r = query_a("box.local");
        r[2] = 0x84;
        r[7] = 1; // one answer
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4, 10, 1, 2, 3]);
        assert_eq!(answer_a(&r, "BOX.local"), Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(answer_a(&r, "other.local"), None);
        assert_eq!(answer_a(&query_a("box.local"), "box.local"), None);
    }
}

fn network_show(bus: &Path) -> serde_json::Value {
    let out = on_guest_bus(
        bus,
        &skytime_tests::bin("skytimectl"),
        &["--json", "network", "show"],
    );
    assert!(out.status.success(), "skytimectl network show: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn static_address_mdns_name_and_an_unconfirmed_change_reverted() {
    for tool in ["mcopy", "debugfs", "openssl"] {
        require_program(tool);
    }
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let img = copy_image(dir.path());
    let config = dir.path().join("skytime.toml");
    fs::write(
        &config,
        format!(
            "data_dir = \"/var/lib/skytime\"\n\
             [ntp]\nlisten = [\"0.0.0.0:123\"]\nallow = [\"0.0.0.0/0\"]\nlocal_stratum = 10\n\
             [network]\nmode = \"static\"\nhostname = \"{NAME}\"\n\
             [network.ipv4]\naddress = \"{STATIC}/24\"\ngateway = \"{HOST_SIDE}\"\n"
        ),
    )
    .unwrap();
    put_boot_file(&img, &config, "skytime.toml");
    let ns = NetNs::new();
    let bus = dir.path().join("bus.sock");
    let mut vm = Qemu::boot_on_tap(
        &img,
        dir.path(),
        "net",
        &ns.name,
        TAP,
        &bus_channel_args(&bus),
    );
    vm.wait_for(
        "Finished skytime-firstboot.service",
        Duration::from_secs(600),
    );
    vm.wait_for("Started skytimed.service", Duration::from_secs(300));

    // The static address from the boot partition, and the name over mDNS.
    let served = wait_until(Duration::from_secs(120), || {
        ns.answers_ntp(STATIC).then_some(())
    });
    assert!(served.is_some(), "no NTP answer at {STATIC}:\n{}", vm.log());
    let name = format!("{NAME}.local");
    assert_eq!(
        ns.mdns_lookup(&name, Duration::from_secs(60)),
        Some(STATIC),
        "no mDNS answer for {name} with {STATIC}:\n{}",
        vm.log()
    );
    let report = network_show(&bus);
    assert_eq!(report["Mode"], "static", "{report}");
    assert_eq!(report["Hostname"], NAME, "{report}");
    assert_eq!(report["Ipv4Address"], format!("{STATIC}/24"), "{report}");
    assert_eq!(report["Pending"], false, "{report}");
    let listening = report["Listening"].to_string();
    assert!(listening.contains(":5353"), "mDNS is not open: {report}");

    // A change nobody confirms: in effect during its window, then undone.
    let change = dir.path().join("change.toml");
    fs::write(
        &change,
        format!(
            "mode = \"static\"\nhostname = \"{NAME}\"\n\
             [ipv4]\naddress = \"{CHANGED}/24\"\ngateway = \"{HOST_SIDE}\"\n"
        ),
    )
    .unwrap();
    let applied = Instant::now();
    let out = on_guest_bus(
        &bus,
        &skytime_tests::bin("skytimectl"),
        &[
            "network",
            "apply",
            change.to_str().unwrap(),
            "--confirm-within",
            "40",
        ],
    );
    assert!(out.status.success(), "skytimectl network apply: {out:?}");
    let moved = wait_until(Duration::from_secs(35), || {
        ns.answers_ntp(CHANGED).then_some(())
    });
    assert!(
        moved.is_some(),
        "the change to {CHANGED} never answered:\n{}",
        vm.log()
    );
    assert_eq!(network_show(&bus)["Pending"], true);
    let reverted = wait_until(Duration::from_secs(120), || {
        (ns.answers_ntp(STATIC) && !ns.answers_ntp(CHANGED)).then_some(())
    });
    assert!(
        reverted.is_some(),
        "not back on {STATIC} alone after the window:\n{}",
        vm.log()
    );
    assert!(
        applied.elapsed() >= Duration::from_secs(40),
        "reverted before the 40 s window ended"
    );
    let report = network_show(&bus);
    assert_eq!(report["Pending"], false, "{report}");
    assert_eq!(report["Ipv4Address"], format!("{STATIC}/24"), "{report}");
    let console = vm.stop();
    assert_no_failed_units(&console);

    // What the next boot starts from: the first settings. (Whether the
    // probation's file is still there depends on the journal's last
    // commit before QEMU was killed; a start drops it either way.)
    let (confirmed, _) = data_file(&img, dir.path(), "network.toml");
    let confirmed = String::from_utf8(confirmed).unwrap();
    assert!(
        confirmed.contains(&format!("{STATIC}/24")) && !confirmed.contains(&CHANGED.to_string()),
        "network.toml: {confirmed}"
    );
    let (cert, _) = data_file(&img, dir.path(), "cert.pem");
    let cert_path = dir.path().join("cert.pem");
    fs::write(&cert_path, cert).unwrap();
    let sans = subject_alt_names(&cert_path);
    for want in [
        format!("DNS:{NAME}"),
        format!("DNS:{NAME}.local"),
        format!("IP Address:{STATIC}"),
    ] {
        assert!(sans.contains(&want), "the certificate lacks {want}: {sans}");
    }
}
