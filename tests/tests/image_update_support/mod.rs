//! What `image_update.rs` needs besides the QEMU helpers of
//! `image_support`: the bundles of every case, made once from the build
//! `make image` left, the data partition they are put on, and an HTTPS
//! path for `InstallFromUrl` that stops forwarding part-way, so that a
//! power cut lands in the middle of a download every time.

use crate::image_support::{data_snapshot, extract, partition, repo, run};
use skytime_tests::require_program;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The image's version, as its manifest records it (= IMAGE_VERSION).
pub fn image_version() -> String {
    let manifest = fs::read_to_string(repo().join("target/image/skytime-rpi4.manifest")).unwrap();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("image_version "))
        .unwrap_or_else(|| panic!("no image_version in the manifest: run make image"))
        .to_owned()
}

fn ota_build() -> PathBuf {
    repo().join("target/image/cargo/release/skytime-ota-build")
}

/// A version `seconds` newer than `v` (same semantic version).
pub fn newer_version(v: &str, seconds: u64) -> String {
    let epoch = String::from_utf8(run(Command::new(ota_build()).args(["epoch", v]))).unwrap();
    let epoch: u64 = epoch.trim().parse().unwrap();
    let semver = v.split('+').next().unwrap();
    String::from_utf8(run(Command::new(ota_build()).args([
        "version",
        semver,
        &(epoch + seconds).to_string(),
    ])))
    .unwrap()
    .trim()
    .to_owned()
}

/// Every bundle the cases install or have refused.
pub struct Bundles {
    /// The image's own version.
    pub running: String,
    /// One second newer: the update.
    pub newer: String,
    /// Two seconds newer: the release that cannot serve.
    pub broken_version: String,
    /// `newer`, as `make bundle` makes it.
    pub update: PathBuf,
    /// The running version (the hook's version policy refuses it).
    pub same: PathBuf,
    /// `update` with one bit of its signature flipped.
    pub tampered_signature: PathBuf,
    /// `update` with one bit of its payload flipped (dm-verity's part).
    pub tampered_payload: PathBuf,
    /// The first half of `update`.
    pub truncated: PathBuf,
    /// A text file.
    pub not_a_bundle: PathBuf,
    /// `newer`'s content signed by a CA the image does not trust.
    pub other_ca: PathBuf,
    /// `newer`'s content for another device family.
    pub other_board: PathBuf,
    /// `broken_version`: a root whose skytimed runs but reaches no socket.
    pub broken: PathBuf,
}

impl Bundles {
    pub fn make(dir: &Path) -> Self {
        let running = image_version();
        let newer = newer_version(&running, 1);
        let broken_version = newer_version(&running, 2);
        let update = image_bundle(dir, &newer, "update.raucb");
        let same = image_bundle(dir, &running, "same.raucb");
        let bytes = fs::read(&update).unwrap();
        let flipped = |name: &str, at: usize| {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            let p = dir.join(name);
            fs::write(&p, &b).unwrap();
            p
        };
        // The CMS signature sits before the bundle's last 8 bytes (its
        // size); the payload (squashfs) starts the file.
        let tampered_signature = flipped("tampered-signature.raucb", bytes.len() - 8 - 200);
        let tampered_payload = flipped("tampered-payload.raucb", 1 << 20);
        let truncated = dir.join("truncated.raucb");
        fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let not_a_bundle = dir.join("notes.raucb");
        fs::write(&not_a_bundle, "release notes, not a bundle\n").unwrap();
        let rootfs = repo().join("target/image/rootfs.erofs");
        let other_ca = ota_bundle(
            &rootfs,
            &newer,
            "skytime-rpi4",
            &dir.join("other-ca.raucb"),
            Some(skytime_tests::rauc::untrusted()),
        );
        let other_board = ota_bundle(
            &rootfs,
            &newer,
            "skytime-cm4",
            &dir.join("other-board.raucb"),
            None,
        );
        let broken = ota_bundle(
            &cannot_serve_rootfs(dir),
            &broken_version,
            "skytime-rpi4",
            &dir.join("broken.raucb"),
            None,
        );
        Self {
            running,
            newer,
            broken_version,
            update,
            same,
            tampered_signature,
            tampered_payload,
            truncated,
            not_a_bundle,
            other_ca,
            other_board,
            broken,
        }
    }

    /// Every bundle file, with the name it gets on the data partition.
    pub fn files(&self) -> Vec<(&Path, &'static str)> {
        vec![
            (&self.update, "update.raucb"),
            (&self.same, "same.raucb"),
            (&self.tampered_signature, "tampered-signature.raucb"),
            (&self.tampered_payload, "tampered-payload.raucb"),
            (&self.truncated, "truncated.raucb"),
            (&self.not_a_bundle, "notes.raucb"),
            (&self.other_ca, "other-ca.raucb"),
            (&self.other_board, "other-board.raucb"),
            (&self.broken, "broken.raucb"),
        ]
    }
}

/// `image/bundle.sh --version VERSION --to DIR/NAME`: the bundle's path.
fn image_bundle(dir: &Path, version: &str, name: &str) -> PathBuf {
    let bundle = dir.join(name);
    let made = skytime_tests::run_bounded(
        Command::new(repo().join("image/bundle.sh"))
            .args(["--version", version, "--to"])
            .arg(&bundle),
        Duration::from_secs(900),
    );
    assert!(made.status.success(), "image/bundle.sh: {}", output(&made));
    bundle
}

/// `ota/bundle.sh` on the image build's boot files and hook with another
/// root, compatible or signer (`None`: the development CA the image
/// trusts).
fn ota_bundle(
    rootfs: &Path,
    version: &str,
    compatible: &str,
    out: &Path,
    signer: Option<&skytime_tests::rauc::Signer>,
) -> PathBuf {
    let image = repo().join("target/image");
    let mut cmd = Command::new(repo().join("ota/bundle.sh"));
    cmd.arg("--rootfs")
        .arg(rootfs)
        .arg("--bootfiles")
        .arg(image.join("slot-boot"))
        .arg("--hook")
        .arg(image.join("skytime-rauc-hook"))
        .args(["--version", version, "--compatible", compatible, "--out"])
        .arg(out)
        .env("SKYTIME_OTA_BUILD", ota_build())
        .env("RAUC", repo().join("target/trixie-tools/bin/rauc"));
    if let Some(s) = signer {
        cmd.env("SKYTIME_SIGNING_CERT", &s.cert)
            .env("SKYTIME_SIGNING_KEY", &s.key)
            .env("SKYTIME_SIGNING_KEYRING", &s.keyring);
    }
    let made = skytime_tests::run_bounded(&mut cmd, Duration::from_secs(900));
    assert!(made.status.success(), "ota/bundle.sh: {}", output(&made));
    out.to_owned()
}

/// The image's root with one drop-in more for skytimed: no IP traffic at
/// all (`IPAddressDeny=any`, systemd's BPF filter), as a release with a
/// firewall mistake would ship. skytimed starts, owns its bus name and
/// answers D-Bus, but neither NTP nor NTS-KE reaches it, so its health
/// check cannot pass.
fn cannot_serve_rootfs(dir: &Path) -> PathBuf {
    let tree = dir.join("cannot-serve-root");
    let _ = fs::remove_dir_all(&tree);
    run(Command::new(require_program("fsck.erofs"))
        .arg(format!("--extract={}", tree.display()))
        .arg("--preserve")
        .arg(repo().join("target/image/rootfs.erofs")));
    let dropin = tree.join("usr/lib/systemd/system/skytimed.service.d/90-test-cannot-serve.conf");
    fs::write(
        &dropin,
        "# Test-only (tests/tests/image_update.rs): skytimed reaches no socket.\n\
         [Service]\nIPAddressAllow=\nIPAddressDeny=any\n",
    )
    .unwrap();
    let erofs = dir.join("cannot-serve.erofs");
    run(Command::new(require_program("mkfs.erofs"))
        .args(["--quiet", "-zlz4"])
        .arg(&erofs)
        .arg(&tree));
    fs::remove_dir_all(&tree).unwrap();
    erofs
}

fn output(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Grows partition 4 (data) to the end of the card and its ext4 with it,
/// then writes each (file, NAME) into it as /NAME (root, 0644).
pub fn put_data_files(img: &Path, dir: &Path, files: &[(&Path, &str)]) {
    // The MBR's fourth entry: its sector count (bytes 12..16) to the end
    // of the card, as the appliance's initramfs would grow it.
    use std::io::{Seek, SeekFrom};
    let (start, _) = partition(img, 4);
    let sectors = (fs::metadata(img).unwrap().len() - start) / 512;
    let mut f = fs::OpenOptions::new().write(true).open(img).unwrap();
    f.seek(SeekFrom::Start(446 + 16 * 3 + 12)).unwrap();
    f.write_all(&u32::try_from(sectors).unwrap().to_le_bytes())
        .unwrap();
    f.sync_all().unwrap();
    drop(f);
    let part = dir.join("data.ext4");
    extract(img, 4, &part);
    run(Command::new("e2fsck").args(["-fy"]).arg(&part));
    run(Command::new(require_program("resize2fs")).arg(&part));
    for (file, name) in files {
        run(Command::new("debugfs")
            .arg("-w")
            .arg("-R")
            .arg(format!("write {} {name}", file.display()))
            .arg(&part));
    }
    write_data_partition(img, &part);
}

fn write_data_partition(img: &Path, part: &Path) {
    let (start, _) = partition(img, 4);
    run(Command::new("dd")
        .arg(format!("if={}", part.display()))
        .arg(format!("of={}", img.display()))
        .args([
            "bs=1M",
            "oflag=seek_bytes",
            "conv=notrunc,fsync",
            "status=none",
        ])
        .arg(format!("seek={start}")));
}

/// The names in directory `path` of the data partition (journal replayed
/// in a copy, as the appliance would at its next mount).
pub fn data_dir_names(img: &Path, dir: &Path, path: &str) -> Vec<String> {
    let part = data_snapshot(img, dir, "data-list.ext4");
    let listing = String::from_utf8(run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("ls -p /{path}"))
        .arg(&part)
        .stderr(std::process::Stdio::null())))
    .unwrap();
    fs::remove_file(&part).unwrap();
    // `ls -p`: /inode/mode/uid/gid/name/size/ per entry.
    listing
        .lines()
        .filter_map(|l| l.split('/').nth(5).map(str::to_owned))
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .collect()
}

/// A TCP forwarder from a loopback port to `to` that passes the server's
/// bytes only up to `cap`, then holds the connection open without
/// forwarding more: the client sees a download stall part-way.
pub struct StallingProxy {
    pub port: u16,
    forwarded: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl StallingProxy {
    pub fn start(to: u16, cap: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let forwarded = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (forwarded.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let h = halt.clone();
                std::thread::spawn(move || pump(c2, s2, u64::MAX, &AtomicU64::new(0), &h));
                let (count, h) = (count.clone(), halt.clone());
                std::thread::spawn(move || pump(server, client, cap, &count, &h));
            }
        });
        Self {
            port,
            forwarded,
            stop,
        }
    }

    /// The server's bytes passed on so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies `from` to `to` until `cap` bytes, then keeps both open (reading
/// nothing more) until `stop`; ends when either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, cap: u64, count: &AtomicU64, stop: &AtomicBool) {
    let mut buf = vec![0; 64 << 10];
    let mut sent = 0u64;
    while sent < cap && !stop.load(Ordering::Relaxed) {
        let want = usize::try_from((cap - sent).min(buf.len() as u64)).unwrap();
        let n = match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
        sent += n as u64;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
    // Stalled: the sockets stay open (the client waits for more) until
    // the test ends.
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
}
