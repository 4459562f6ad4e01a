//! The VM management channel's session protocol on the host: the real
//! relay (`skytimectl vm-bus`), the guest's real session script
//! (image/rootfs/usr/libexec/skytime/vm-bus-session) exec'ing the real
//! systemd-stdio-bridge, and a real dbus-daemon. The virtio port itself
//! only exists in a VM (image_qemu, image_update use it there); here a
//! socket stands in for QEMU's chardev and is made to misbehave the ways a
//! port does: a connection that ends at once, an earlier session's bytes
//! still in the stream, a greeting swallowed by a bridge that was still
//! running.

use skytime_tests::dbus::PrivateBus;
use skytime_tests::vm_bus::VmBus;
use skytime_tests::{bin, require_program, run_bounded, wait_until};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn session_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../image/rootfs/usr/libexec/skytime/vm-bus-session")
}

/// Reads one line from `s` a byte at a time (what a bridge still running
/// from an earlier session does to the next greeting: it takes it).
fn swallow_line(s: &mut UnixStream) {
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {}
}

/// The guest's end for connection `i`: the first is closed at once (a
/// port nobody serves yet); later ones get leftovers first, lose their
/// first greeting, then run the session script. systemd-stdio-bridge
/// always takes the system bus at /run/dbus/system_bus_socket: the script
/// runs in a mount namespace of its own where that is `bus_dir`'s.
fn guest(i: usize, mut conn: UnixStream, bus_dir: &Path) -> Option<Child> {
    if i == 0 {
        return None;
    }
    conn.write_all(b"l\x02\x01\x01\x08\x00\x00\x00stale reply\nskytime-bus-ready 0123456789abcdef0123456789abcdef\n")
        .unwrap();
    swallow_line(&mut conn);
    let fd: OwnedFd = conn.into();
    let out = fd.try_clone().unwrap();
    Some(
        Command::new(require_program("unshare"))
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs skytime-test /run && mkdir /run/dbus && \
                 mount --bind {} /run/dbus && exec sh {}",
                bus_dir.display(),
                session_script().display()
            ))
            .stdin(Stdio::from(fd))
            .stdout(Stdio::from(out))
            .spawn()
            .expect("sh vm-bus-session"),
    )
}

fn busctl_get_id(address: &str) -> std::process::Output {
    run_bounded(
        Command::new(require_program("busctl"))
            .args([
                "--system",
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "GetId",
            ])
            .env("DBUS_SYSTEM_BUS_ADDRESS", address),
        Duration::from_secs(60),
    )
}

#[test]
fn each_client_gets_a_clean_session_through_leftovers_and_lost_greetings() {
    require_program("systemd-stdio-bridge");
    let bus = PrivateBus::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let chan = dir.path().join("chan");
    let listener = UnixListener::bind(&chan).unwrap();
    // Four connections: a dead one, then one per session below.
    let bus_dir = bus.dir.path().to_path_buf();
    let port = std::thread::spawn(move || {
        let mut children = Vec::new();
        for i in 0..4 {
            let (conn, _) = listener.accept().unwrap();
            children.extend(guest(i, conn, &bus_dir));
        }
        children
    });
    let relay = VmBus::start(&chan, dir.path().join("host.sock"), &[]);
    let mode = std::fs::metadata(&relay.listen).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let host = relay.address.clone();

    // The bus's own id, asked directly and through the channel: the
    // channel's client reached that bus, with the leftovers and the lost
    // greeting kept out of its stream.
    let direct = busctl_get_id(&bus.address);
    assert!(direct.status.success(), "{direct:?}");
    let first = busctl_get_id(&host);
    assert!(first.status.success(), "through the channel: {first:?}");
    assert_eq!(first.stdout, direct.stdout);

    // Two clients at once: served one after the other, each in its own
    // session.
    let second = std::thread::spawn({
        let host = host.clone();
        move || busctl_get_id(&host)
    });
    let third = busctl_get_id(&host);
    let second = second.join().unwrap();
    for (n, out) in [(2, &second), (3, &third)] {
        assert!(out.status.success(), "client {n}: {out:?}");
        assert_eq!(out.stdout, direct.stdout, "client {n}");
    }

    // Each session's bridge ended with its client.
    let mut children = port.join().unwrap();
    assert_eq!(children.len(), 3);
    for c in &mut children {
        let ended = wait_until(Duration::from_secs(20), || c.try_wait().unwrap());
        if ended.is_none() {
            let _ = c.kill();
            panic!("a session's bridge outlived its client");
        }
    }
}

/// A guest that never answers fails the client (the relay gives up and
/// closes it); the client does not wait for ever.
#[test]
fn a_guest_that_never_answers_fails_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let chan = dir.path().join("chan");
    let listener = UnixListener::bind(&chan).unwrap();
    listener.set_nonblocking(true).unwrap();
    // Accepts and holds every connection, says nothing; ends with the test.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holder = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((c, _)) = listener.accept() {
                    held.push(c);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    let relay = VmBus::start(
        &chan,
        dir.path().join("host.sock"),
        &["--session-wait", "5"],
    );
    let out = run_bounded(
        Command::new(bin("skytimectl"))
            .arg("status")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &relay.address),
        Duration::from_secs(120),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    holder.join().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}
