//! The SD-card image in QEMU, driven only from the host (no shell in the
//! guest): qemu-system-aarch64 `-M virt -cpu cortex-a72` with U-Boot from
//! u-boot-qemu as `-bios`, so boot.scr and its A/B slot choice run.
//!
//! Boot 1 (slot A), on a card 256 MiB larger than the image: the data
//! partition grows to the end of the card; first boot imports skytime.toml
//! from the boot partition and creates the keys and a certificate naming
//! the host name from skytime-identity.conf (set before the network
//! starts) and the address DHCP gave; a real chrony on the host syncs over
//! NTS (user-mode networking forwarded to loopback), trusting the
//! certificate read from the data partition; mark-good gives the slot its
//! attempt back. Then U-Boot alone: a slot without attempts is skipped and
//! the attempt taken is saved. Boot 2 (slot B, chosen through
//! the boot state): no first boot, the same certificate (chrony trusts only
//! boot 1's), NTS again; then the host manages it over D-Bus alone (the VM
//! management channel, a virtio-serial port, which has skytimed's admin
//! rights and no more): skytimectl reads its status and the sockets open to
//! the network (only those in image/listen.allow), busctl its host name,
//! systemd refuses it a unit, and `skytimectl reboot` reboots it (skytimed
//! asks logind, which polkit lets it). Boot 2 also enrols the management
//! gateway's operators from the boot partition (an admin CA and a read CA
//! put there with mtools): the public-key pin written back there is the
//! key of the certificate the gateway presents on the forwarded port 443,
//! which names the address DHCP gave as well (re-issued with the same key
//! once the network was up), and from
//! the host `skytimectl --host` and curl read through it with the admin
//! certificate, a write is refused the read certificate, and a client
//! certificate from a rogue CA is refused at the handshake. Boot 3: a
//! wiped data partition and a skytime.toml naming another data directory:
//! first boot runs again, refuses the file (reason kept), the defaults run
//! with a new identity, and with nothing enrolled the gateway's port is
//! closed.
//! Every boot: no failed units on the console; afterwards the root
//! partitions' bytes are unchanged. QEMU is killed when each boot is done.
//!
//! Needs `make image` first (target/image/skytime-rpi4.img) and the tools
//! from `make image-deps`.

mod image_support;

use image_support::*;
use rustls::pki_types::pem::PemObject;
use skytime_tests::mgmt::{Ca, Client, Remote, Usage};
use skytime_tests::{
    free_tcp_port, free_udp_port, require_program, run_bounded, wait_until, Chronyd,
};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn nts_sync(ntp: u16, ke: u16, cert: &Path) -> String {
    let chrony = Chronyd::start(&[
        format!("server 127.0.0.1 port {ntp} nts ntsport {ke} iburst minpoll -2 maxpoll -2"),
        format!("ntstrustedcerts {}", cert.display()),
    ]);
    let tracking = chrony.wait_synchronized(Duration::from_secs(120));
    let authdata = chrony.chronyc(&["authdata"]);
    assert!(
        tracking.is_some(),
        "chrony never synchronized over NTS:\n{}\n{authdata}\n{}",
        chrony.chronyc(&["sources"]),
        chrony.log()
    );
    // authdata: "Name/IP address  Mode KeyID Type KLen Last Atmp  NAK Cook CLen"
    let line = authdata
        .lines()
        .find(|l| l.starts_with("127.0.0.1"))
        .unwrap_or_else(|| panic!("{authdata}"));
    assert_eq!(line.split_whitespace().nth(1), Some("NTS"), "{authdata}");
    let tracking = tracking.unwrap();
    assert_eq!(
        skytime_tests::field(&tracking, "Stratum"),
        Some("11"),
        "{tracking:?}"
    );
    authdata
}

/// The sockets open to the network on the booted appliance, as skytimed
/// reports them from the kernel's tables (`skytimectl network show`), are
/// all in image/listen.allow, and NTP and NTS-KE are among them. A port
/// marked `enrolled` there (the management gateway's) is allowed, and
/// required, only when an operator is `enrolled`.
fn assert_only_allowed_sockets_open(bus: &Path, enrolled: bool) {
    let out = on_guest_bus(
        bus,
        &skytime_tests::bin("skytimectl"),
        &["--json", "network", "show"],
    );
    assert!(out.status.success(), "skytimectl network show: {out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let open: Vec<(String, u16)> = report["Listening"]
        .as_array()
        .unwrap_or_else(|| panic!("no Listening list: {report}"))
        .iter()
        .map(|v| {
            let s = v.as_str().unwrap();
            let (proto, addr) = s.split_once(' ').unwrap();
            let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
            (proto.to_owned(), port)
        })
        .collect();
    let list = fs::read_to_string(repo().join("image/listen.allow")).unwrap();
    let mut allowed: Vec<(String, u16)> = Vec::new();
    let mut when_enrolled: Vec<(String, u16)> = Vec::new();
    for line in list
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        let entry = (words[0].to_owned(), words[1].parse().unwrap());
        match words.get(2) {
            None => allowed.push(entry),
            Some(&"enrolled") => when_enrolled.push(entry),
            Some(other) => panic!("image/listen.allow: unknown condition {other:?} in {line:?}"),
        }
    }
    if enrolled {
        allowed.extend(when_enrolled.iter().cloned());
    }
    eprintln!(
        "open to the network on the appliance: {}",
        report["Listening"]
    );
    let unexpected: Vec<_> = open.iter().filter(|o| !allowed.contains(o)).collect();
    assert!(
        unexpected.is_empty(),
        "open but not in image/listen.allow: {unexpected:?} (all open: {report})"
    );
    let mut required = vec![("udp".to_owned(), 123), ("tcp".to_owned(), 4460)];
    if enrolled {
        required.extend(when_enrolled);
    }
    for want in required {
        assert!(open.contains(&want), "{want:?} is not open: {report}");
    }
}

/// The operators' CAs (admin and read) on the boot partition, as an
/// operator drops them there with the card in a laptop.
fn put_operator_cas(img: &Path, dir: &Path, admin: &Ca, read: &Ca) {
    for (ca, name) in [
        (admin, "skytime-admin-ca.pem"),
        (read, "skytime-read-ca.pem"),
    ] {
        let path = dir.join(name);
        fs::write(&path, &ca.pem.cert).unwrap();
        put_boot_file(img, &path, name);
    }
}

/// The certificate the gateway on 127.0.0.1:`port` presents (PEM), as
/// openssl sees it in a handshake with the admin certificate.
fn presented_certificate(port: u16, cert: &Path, key: &Path) -> String {
    let out = run_bounded(
        Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let begin = text.find("-----BEGIN CERTIFICATE-----");
    let end = text
        .find("-----END CERTIFICATE-----")
        .map(|e| e + "-----END CERTIFICATE-----".len());
    match (begin, end) {
        (Some(b), Some(e)) => format!("{}\n", &text[b..e]),
        _ => panic!(
            "no certificate from the gateway: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Boot 2's gateway, from the host: enrolment from the boot partition
/// (files renamed, the pin written back matching the key the gateway
/// presents, its certificate naming the DHCP address), reads with the
/// admin certificate through `skytimectl --host`
/// and curl, a write refused the read certificate and done with the admin
/// one, a rogue CA's and an expired certificate refused at the handshake,
/// configurations applied with effect at once (and a bad one refused by
/// line).
fn manage_through_gateway(
    img: &Path,
    dir: &Path,
    port: u16,
    ntp: u16,
    admin_ca: &Ca,
    read_ca: &Ca,
) {
    // The enrolment unit has unmounted the boot partition again: mtools
    // reads what it wrote there.
    let back = dir.join("fingerprint.txt");
    get_boot_file(img, "skytime-mgmt-fingerprint.txt", &back);
    let back = fs::read_to_string(&back).unwrap();
    for (name, ca) in [
        ("skytime-admin-ca.pem", admin_ca),
        ("skytime-read-ca.pem", read_ca),
    ] {
        let imported = dir.join("imported.pem");
        get_boot_file(img, &format!("{name}.imported"), &imported);
        assert_eq!(
            fs::read_to_string(&imported).unwrap(),
            ca.pem.cert,
            "{name} not renamed .imported"
        );
    }

    let (ac, ak) = admin_ca
        .client("admin", 2100, Usage::ClientAuth)
        .write(dir, "admin");
    let (rc, rk) = read_ca
        .client("reader", 2100, Usage::ClientAuth)
        .write(dir, "reader");
    // Enrolment ran before the network had its address; the gateway
    // re-issues its certificate, with the same key, to name the address
    // DHCP gave (10.0.2.15) as well as the identity's.
    let gateway_cert = dir.join("gateway-cert.pem");
    let named = wait_until(Duration::from_secs(120), || {
        let presented = presented_certificate(port, &ac, &ak);
        fs::write(&gateway_cert, &presented).unwrap();
        let sans = subject_alt_names(&gateway_cert);
        sans.contains("IP Address:10.0.2.15")
            .then_some((presented, sans))
    });
    let Some((presented, sans)) = named else {
        panic!(
            "the gateway's certificate never named the DHCP address: {}",
            subject_alt_names(&gateway_cert)
        );
    };
    for want in [
        "IP Address:127.0.0.1",
        "DNS:skytime-qemu",
        "DNS:skytime-qemu.local",
    ] {
        assert!(
            sans.contains(want),
            "the gateway's certificate lacks {want}: {sans}"
        );
    }
    // Its public key is the one whose pin was written back, so the pin
    // on the boot partition holds.
    let der = rustls::pki_types::CertificateDer::from_pem_slice(presented.as_bytes()).unwrap();
    let spki = skytime_mgmtd::identity::spki_sha256(&der).unwrap();
    assert!(
        back.lines().any(|l| l == format!("pubkey sha256//{spki}")),
        "the pin on the boot partition is not the presented key's ({spki}):\n{back}"
    );
    assert!(
        back.lines().any(|l| l.starts_with("sha256 ")),
        "no certificate fingerprint on the boot partition:\n{back}"
    );

    // skytimectl --host, trusting the presented certificate (it names the
    // address from skytime-identity.conf, 127.0.0.1).
    let host = format!("127.0.0.1:{port}");
    let admin = Remote::new(&host, &ac, &ak, &gateway_cert);
    let reader = Remote::new(&host, &rc, &rk, &gateway_cert);
    let r = admin.run(&["status"]);
    assert!(
        r.ok() && r.stdout.contains("stratum 10") && r.stdout.contains("skytime-qemu"),
        "skytimectl --host status: {}",
        r.all()
    );
    // curl, pinning the public key from the boot partition.
    let pin = back
        .lines()
        .find_map(|l| l.strip_prefix("pubkey "))
        .unwrap_or_else(|| panic!("no pubkey line: {back}"));
    let out = run_bounded(
        Command::new("curl")
            .args(["-sS", "--max-time", "30", "-k", "--pinnedpubkey", pin])
            .arg("--cert")
            .arg(&ac)
            .arg("--key")
            .arg(&ak)
            .args(["-w", "\nHTTP %{http_code}"])
            .arg(format!("https://{host}/metrics")),
        Duration::from_secs(60),
    );
    let metrics = String::from_utf8_lossy(&out.stdout);
    assert!(
        metrics.ends_with("HTTP 200") && metrics.contains("skytime_build_info"),
        "curl /metrics: {metrics}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A write: refused the read certificate (exit 4), done with the admin one.
    skytime_tests::mgmt::assert_only_admin_writes(&reader, &admin);

    // A certificate from a CA the appliance never saw: refused at the
    // handshake (the same request goes through with the admin one).
    let addr = host.parse().unwrap();
    let rogue = Ca::new("rogue operators").client("admin", 2100, Usage::ClientAuth);
    let r = Client::new(addr, &presented, Some(&rogue)).get("/api/v1/Tracking/properties");
    assert!(r.is_err(), "a rogue CA's certificate got in: {r:?}");
    // Nor one from the enrolled CA that has expired.
    let expired = admin_ca.client("admin", 2020, Usage::ClientAuth);
    let r = Client::new(addr, &presented, Some(&expired)).get("/api/v1/Tracking/properties");
    assert!(r.is_err(), "an expired certificate got in: {r:?}");

    // A configuration applied through the gateway takes effect at once:
    // one that denies the address the host's NTP requests arrive from
    // (QEMU's 10.0.2.2) stops the answers, the first one back brings them
    // back. A bad one is refused naming its line, and changes nothing.
    let served = fs::read_to_string(dir.join("skytime.toml")).unwrap();
    let apply = |name: &str, text: &str| {
        let file = dir.join(name);
        fs::write(&file, text).unwrap();
        admin.run(&["config", "apply", file.to_str().unwrap()])
    };
    let answered =
        || skytime_tests::ntp::query(skytime_tests::lo(ntp)).is_some_and(|x| x.reply.stratum == 10);
    let denying = served.replace(
        "local_stratum = 10",
        "local_stratum = 10\ndeny = [\"10.0.2.2/32\"]",
    );
    let r = apply("deny.toml", &denying);
    assert!(r.ok(), "config apply through the gateway: {}", r.all());
    assert!(
        wait_until(Duration::from_secs(30), || (!answered()).then_some(())).is_some(),
        "NTP still answered after a configuration denying it was applied"
    );
    let r = apply("bad.toml", &format!("{served}[ntp]\nlocal_stratum = 9\n"));
    assert!(
        !r.ok() && r.all().contains("line"),
        "a bad configuration through the gateway: {}",
        r.all()
    );
    let r = apply("served.toml", &served);
    assert!(r.ok(), "config apply through the gateway: {}", r.all());
    assert!(
        wait_until(Duration::from_secs(30), || answered().then_some(())).is_some(),
        "NTP not answered again after the first configuration was applied back"
    );
    let admin_pem = skytime_tests::mgmt::Pem {
        cert: fs::read_to_string(&ac).unwrap(),
        key: fs::read_to_string(&ak).unwrap(),
    };
    let r = Client::new(addr, &presented, Some(&admin_pem))
        .get("/api/v1/Tracking/properties")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

fn wait_first_boot(vm: &mut Qemu) {
    vm.wait_for(
        "Finished skytime-firstboot.service",
        Duration::from_secs(600),
    );
    vm.wait_for("Started skytimed.service", Duration::from_secs(300));
}

#[test]
fn image_boots_creates_keys_serves_nts_and_keeps_them_across_slots() {
    require_program("chronyd");
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let img = copy_image(dir.path());
    grow_card(&img, 256 << 20);
    let (ntp, ke) = (free_udp_port(), free_tcp_port());

    // What a user drops on the boot partition: a config serving the local
    // clock (QEMU has no GPS) and an identity naming the address chrony uses.
    let config = put_local_clock_nts_files(&img, dir.path(), ntp);
    let roots_before = root_hashes(&img, dir.path());

    // Boot 1: slot A, first boot.
    let mut vm = Qemu::boot(&img, dir.path(), "boot1", ntp, ke);
    vm.wait_for(
        "skytime: booting slot A (attempts left: A=2 B=3",
        Duration::from_secs(120),
    );
    vm.wait_for("root=PARTUUID=5c7e0001-02", Duration::from_secs(120));
    wait_first_boot(&mut vm);
    let (cert, _) = data_file(&img, dir.path(), "cert.pem");
    assert!(
        String::from_utf8_lossy(&cert).contains("BEGIN CERTIFICATE"),
        "no certificate on the data partition"
    );
    let (_, key_stat) = data_file(&img, dir.path(), "key.pem");
    assert!(
        key_stat.contains("Mode:  0600"),
        "key.pem must be 0600:\n{key_stat}"
    );
    let (marker, _) = data_file(&img, dir.path(), ".initialized");
    assert!(marker.is_empty());
    // The configuration from the boot partition was validated and imported
    // as the managed configuration.
    let (imported, _) = data_file(&img, dir.path(), "skytime.toml");
    assert_eq!(
        imported,
        fs::read(&config).unwrap(),
        "skytime.toml not imported"
    );
    let cert_path = dir.path().join("cert1.pem");
    fs::write(&cert_path, &cert).unwrap();
    // The names from skytime-identity.conf, and the address QEMU's DHCP
    // server gave the appliance (first boot waits for it).
    let sans = subject_alt_names(&cert_path);
    for want in [
        "DNS:skytime-qemu",
        "DNS:skytime-qemu.local",
        "IP Address:127.0.0.1",
        "IP Address:10.0.2.15",
    ] {
        assert!(sans.contains(want), "{want} not in the certificate: {sans}");
    }
    nts_sync(ntp, ke, &cert_path);
    vm.wait_for(
        "Finished skytime-mark-good.service",
        Duration::from_secs(300),
    );
    let console1 = vm.stop();
    // erofs has no write support in the kernel at all: a mounted erofs root
    // refuses every write (and the partitions' hashes are checked below).
    assert!(
        console1.contains("erofs: (device vda2): mounted with root inode"),
        "root is not slot A's erofs:\n{console1}"
    );
    assert_no_failed_units(&console1);
    // The name was set before the network (and its DHCP client) started.
    let named = console1.find("Finished skytime-identity.service");
    let networked = console1.find("Started systemd-networkd.service");
    assert!(
        matches!((named, networked), (Some(a), Some(b)) if a < b),
        "the host name was not set before the network started:\n{console1}"
    );

    // The data partition now ends where the card ends, and its file system
    // fills it; the host name is kept there.
    let card = fs::metadata(&img).unwrap().len();
    let (start, len) = partition(&img, 4);
    assert_eq!(
        start + len,
        card,
        "data partition not grown to the card's end"
    );
    let (hostname, _) = data_file(&img, dir.path(), "hostname");
    assert_eq!(hostname, b"skytime-qemu\n");
    let fs_bytes = ext4_bytes(&dir.path().join("data.ext4"));
    assert!(
        len - fs_bytes < 4096,
        "ext4 not grown: {fs_bytes} bytes in a {len}-byte partition"
    );

    // mark-good gave slot A its attempt back.
    let env = boot_env(&img, dir.path());
    assert!(
        env.contains("BOOT_A_LEFT=3") && env.contains("BOOT_ORDER=A B"),
        "{env}"
    );

    // U-Boot alone: a slot with no attempts left is skipped, and the
    // attempt the boot script takes is written back to the boot state.
    set_boot_env(
        &img,
        dir.path(),
        &[("BOOT_ORDER", "B A"), ("BOOT_B_LEFT", "0")],
    );
    let mut vm = Qemu::boot(&img, dir.path(), "uboot", ntp, ke);
    vm.wait_for(
        "skytime: booting slot A (attempts left: A=2 B=0, order B A)",
        Duration::from_secs(120),
    );
    vm.stop();
    let env = boot_env(&img, dir.path());
    assert!(
        env.contains("BOOT_A_LEFT=2") && env.contains("BOOT_B_LEFT=0"),
        "the boot script did not save its attempt count:\n{env}"
    );

    // Boot 2: the boot state says B first (as an update would), and the
    // operators' CAs are on the boot partition, to be enrolled.
    let admin_ca = Ca::new("skytime qemu operators");
    let read_ca = Ca::new("skytime qemu readers");
    put_operator_cas(&img, dir.path(), &admin_ca, &read_ca);
    set_boot_env(
        &img,
        dir.path(),
        &[("BOOT_A_LEFT", "3"), ("BOOT_B_LEFT", "3")],
    );
    let bus = dir.path().join("bus.sock");
    let mgmt = free_tcp_port();
    let mut vm = Qemu::boot_forwarding(
        &img,
        dir.path(),
        "boot2",
        ntp,
        ke,
        Some(mgmt),
        &bus_channel_args(&bus),
    );
    vm.wait_for(
        "skytime: booting slot B (attempts left: A=3 B=2, order B A)",
        Duration::from_secs(120),
    );
    vm.wait_for("root=PARTUUID=5c7e0001-03", Duration::from_secs(120));
    vm.wait_for("Started skytimed.service", Duration::from_secs(600));
    // chrony trusts the certificate from boot 1 only: NTS works only if the
    // appliance still serves that certificate and key.
    nts_sync(ntp, ke, &cert_path);
    vm.wait_for(
        "Finished skytime-mark-good.service",
        Duration::from_secs(300),
    );
    // Managed from the host over D-Bus alone.
    let skytimectl = skytime_tests::bin("skytimectl");
    let status = on_guest_bus(&bus, &skytimectl, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success() && text.contains("stratum 10") && text.contains("skytime-qemu"),
        "skytimectl status over the VM channel: {status:?}\n{text}"
    );
    vm.wait_for(
        "Finished skytime-mgmt-enrol.service",
        Duration::from_secs(300),
    );
    manage_through_gateway(&img, dir.path(), mgmt, ntp, &admin_ca, &read_ca);
    assert_only_allowed_sockets_open(&bus, true);
    let name = on_guest_bus(
        &bus,
        &require_program("busctl"),
        &[
            "--system",
            "get-property",
            "org.freedesktop.hostname1",
            "/org/freedesktop/hostname1",
            "org.freedesktop.hostname1",
            "Hostname",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&name.stdout).trim(),
        "s \"skytime-qemu\"",
        "the host name from first boot is not set: {name:?}"
    );
    // The channel is an administrator of skytimed, not root: systemd
    // refuses it a unit (an already active one, harmless if it were not).
    let start = on_guest_bus(
        &bus,
        &require_program("busctl"),
        &[
            "--system",
            "call",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "StartUnit",
            "ss",
            "tmp.mount",
            "replace",
        ],
    );
    let why = String::from_utf8_lossy(&start.stderr);
    assert!(
        !start.status.success()
            && (why.contains("denied") || why.contains("authentication required")),
        "the VM channel may start units: {start:?}"
    );
    let reboot = on_guest_bus(&bus, &skytimectl, &["reboot"]);
    assert!(
        reboot.status.success(),
        "skytimectl reboot: {reboot:?}\n{}",
        vm.log()
    );
    // -no-reboot: the guest's reboot ends QEMU.
    let console2 = vm.wait_exit(Duration::from_secs(180));
    assert!(
        console2.contains("reboot: Restarting system"),
        "no reboot after skytimectl reboot:\n{console2}"
    );
    assert!(
        console2.contains("erofs: (device vda3): mounted with root inode"),
        "root is not slot B's erofs:\n{console2}"
    );
    assert_no_failed_units(&console2);
    assert!(
        !console2.contains("skytime-firstboot.service"),
        "first boot ran again:\n{console2}"
    );
    let (cert2, _) = data_file(&img, dir.path(), "cert.pem");
    assert_eq!(cert2, cert, "the certificate changed across a reboot");
    let env = boot_env(&img, dir.path());
    assert!(
        env.contains("BOOT_B_LEFT=3"),
        "slot B not marked good:\n{env}"
    );

    // Boot 3: a wiped data partition and a skytime.toml that names another
    // data directory (skytimed would refuse to start on it as its managed
    // configuration): first boot runs again, refuses the file with the
    // reason, and the appliance comes up on its defaults with a new identity.
    blank(&img, 4);
    let wrong = dir.path().join("wrong.toml");
    fs::write(
        &wrong,
        "data_dir = \"/elsewhere\"\n[ntp]\nlocal_stratum = 10\n",
    )
    .unwrap();
    put_boot_file(&img, &wrong, "skytime.toml");
    let bus3 = dir.path().join("bus3.sock");
    let mut vm = Qemu::boot_with(&img, dir.path(), "boot3", ntp, ke, &bus_channel_args(&bus3));
    wait_first_boot(&mut vm);
    vm.wait_for(
        "Finished skytime-mark-good.service",
        Duration::from_secs(300),
    );
    // The CAs on the boot partition were imported at boot 2 (renamed), and
    // the wiped data partition enrols nothing: the gateway's port is closed.
    assert_only_allowed_sockets_open(&bus3, false);
    let console3 = vm.stop();
    assert_no_failed_units(&console3);
    let (rejected, _) = data_file(&img, dir.path(), "skytime.toml.rejected");
    assert!(
        String::from_utf8_lossy(&rejected).contains("data_dir must be"),
        "no reason kept for the refused skytime.toml: {:?}",
        String::from_utf8_lossy(&rejected)
    );
    let (managed, _) = data_file(&img, dir.path(), "skytime.toml");
    assert!(managed.is_empty(), "a refused skytime.toml was imported");
    let (cert3, _) = data_file(&img, dir.path(), "cert.pem");
    assert!(
        String::from_utf8_lossy(&cert3).contains("BEGIN CERTIFICATE") && cert3 != cert,
        "no new certificate on the wiped data partition"
    );

    // Nothing wrote to either root file system.
    assert_roots_unwritten(&img, dir.path(), &roots_before);
}
