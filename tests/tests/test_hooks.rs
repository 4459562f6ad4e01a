//! Test-only triggers stay out of the appliance: skytimed's `test-hooks`
//! feature (the `SKYTIME_TEST_HANG` trigger) is on in the builds the tests
//! run and off in the image's release build.
//!
//! Proved three ways: the image stage builds skytimed alone (no
//! `--features`, no `--workspace`); cargo's own feature resolution for
//! exactly that selection leaves `test-hooks` off, while the workspace
//! build the tests use has it on (so the check can fail); and the trigger's
//! name is in the test binary but not in an image binary when one is built.

use skytime_tests::{bin, run_bounded};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const HOOK: &str = "SKYTIME_TEST_HANG";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// skytimed's enabled features, as cargo resolves them for `selection`
/// (normal edges only: what a build of the binaries uses).
fn features(selection: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root())
        .args(["tree", "--locked", "--offline", "-e", "features,normal"])
        .args(["-i", "skytimed", "--prefix", "none"])
        .args(selection);
    let out = run_bounded(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_image_build_has_no_test_hooks_and_the_test_build_has_them() {
    let stage = std::fs::read_to_string(root().join("image/stages/binaries.sh")).unwrap();
    let build = stage
        .lines()
        .skip_while(|l| !l.contains("cargo build"))
        .take_while(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(build.contains("-p skytimed"), "image build: {build}");
    for widening in ["--features", "--all-features", "--workspace", "-F "] {
        assert!(
            !build.contains(widening),
            "the image build turns on more than skytimed alone ({widening}): {build}"
        );
    }
    let image = features(&["-p", "skytimed"]);
    assert!(image.contains("skytimed v"), "{image}");
    assert!(
        !image.contains("\"test-hooks\""),
        "`cargo build -p skytimed` enables test-hooks:\n{image}"
    );
    let tests = features(&["--workspace"]);
    assert!(
        tests.contains("skytimed feature \"test-hooks\""),
        "the workspace build the tests run lacks test-hooks:\n{tests}"
    );
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn the_trigger_is_compiled_into_test_builds_only() {
    let test_build = std::fs::read(bin("skytimed")).unwrap();
    assert!(
        contains(&test_build, HOOK),
        "the tests' skytimed lacks {HOOK}: built without test-hooks?"
    );
    // Present only after `make image`; then it must not know the trigger.
    let image = root().join("target/image/cargo/aarch64-unknown-linux-musl/release/skytimed");
    if let Ok(bytes) = std::fs::read(&image) {
        assert!(
            !contains(&bytes, HOOK),
            "{} carries the test trigger {HOOK}",
            image.display()
        );
    }
}
