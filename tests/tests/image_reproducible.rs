//! The image build is reproducible: a second `image/build.sh` from the same
//! tree (same packages, same SOURCE_DATE_EPOCH) gives the same bytes as the
//! image `make image` made.
//!
//! Needs `make image` first; takes as long as one image build.

use std::path::{Path, PathBuf};
use std::process::Command;

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

#[test]
fn second_build_is_bit_identical() {
    let first = repo().join("target/image");
    let checksum = read(&first.join("skytime-rpi4.img.sha256"));
    let second = repo().join("target/image-repro");
    let status = Command::new(repo().join("image/build.sh"))
        .arg("--out")
        .arg(&second)
        .status()
        .expect("image/build.sh");
    assert!(status.success(), "second image build failed");
    // Compare the parts first, so a failure says where the difference is.
    let manifest = |dir: &Path| read(&dir.join("skytime-rpi4.manifest"));
    let (m1, m2) = (manifest(&first), manifest(&second));
    let differing: Vec<_> = m1.lines().zip(m2.lines()).filter(|(a, b)| a != b).collect();
    assert!(differing.is_empty(), "manifests differ: {differing:#?}");
    for part in ["rootfs.erofs", "boot.vfat"] {
        let a = std::fs::read(first.join(part)).unwrap();
        let b = std::fs::read(second.join(part)).unwrap();
        assert!(a == b, "{part} differs between builds");
    }
    assert_eq!(read(&second.join("skytime-rpi4.img.sha256")), checksum);
}
