//! The image build is reproducible: a second `image/build.sh` from the same
//! tree (same packages, same SOURCE_DATE_EPOCH) gives the same bytes as the
//! image `make image` made.
//!
//! The second build is honest: it runs mmdebstrap again into its own
//! directory, installs every package, rebuilds the initramfs, the module
//! tree, both file systems, the boot partition and the disk image. What it
//! shares with the first build are only download caches (the .debs under
//! target/image/apt-cache and target/image/debs, crates) and cargo's target
//! directory (so the skytime binary is not compiled twice). If the Debian
//! archive published an update between the two builds, the manifests show
//! which package moved.
//!
//! Needs `make image` first; takes about as long as one image build without
//! the compile (4-6 minutes on 2 cores).

use skytime_tests::wait_until;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make image` first)", path.display()))
}

/// Runs `image/build.sh --out DIR` in its own process group, killed as a
/// whole (mmdebstrap, dpkg under qemu-user) if it overruns `limit`. Returns
/// its log; panics with it when the build fails.
fn build(out: &Path, limit: Duration) -> String {
    std::fs::create_dir_all(out).unwrap();
    let log_path = out.with_extension("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(repo().join("image/build.sh"))
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("image/build.sh");
    let status = wait_until(limit, || child.try_wait().unwrap());
    if status.is_none() {
        // SAFETY: plain kill(2) of the process group this test created.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "image build into {} failed or overran {limit:?} ({status:?}):\n{text}",
        out.display()
    );
    let _ = std::fs::remove_file(&log_path);
    text
}

#[test]
fn second_build_is_bit_identical() {
    let first = repo().join("target/image");
    let checksum = read(&first.join("skytime-rpi4.img.sha256"));
    let second = repo().join("target/image-repro");
    let _ = std::fs::remove_dir_all(&second);
    let log = build(&second, Duration::from_secs(30 * 60));
    // It really built a root file system of its own (no --reuse-base).
    assert!(
        log.contains("base: mmdebstrap (Debian trixie arm64 packages")
            && log.contains("I: success in"),
        "the second build did not run mmdebstrap:\n{log}"
    );
    // Compare the parts first, so a failure says where the difference is.
    let manifest = |dir: &Path| read(&dir.join("skytime-rpi4.manifest"));
    let (m1, m2) = (manifest(&first), manifest(&second));
    let differing: Vec<_> = m1.lines().zip(m2.lines()).filter(|(a, b)| a != b).collect();
    assert!(differing.is_empty(), "manifests differ: {differing:#?}");
    assert_eq!(m1.lines().count(), m2.lines().count(), "manifests differ");
    for part in ["rootfs.erofs", "boot.vfat"] {
        let a = std::fs::read(first.join(part)).unwrap();
        let b = std::fs::read(second.join(part)).unwrap();
        assert!(
            a == b,
            "{part} differs between builds (kept in {} for comparison)",
            second.display()
        );
    }
    assert_eq!(read(&second.join("skytime-rpi4.img.sha256")), checksum);
    // Same bytes: the second copy (1.4 GB image, 0.6 GB of work) can go.
    std::fs::remove_dir_all(&second).unwrap();
}
