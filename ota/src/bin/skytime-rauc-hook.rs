//! skytime's RAUC hook, shipped in every bundle as `hook`.
//!
//! - `install-check`: refuses a bundle for another device, without both
//!   images, or older than (or as old as) the running system unless the
//!   operator forced that version (see `skytime_ota::install_check`).
//!   Refusal: exit code 10 and the reason as the last line on stderr,
//!   which RAUC reports as "Bundle rejected: Hook returned: '<reason>'".
//! - `slot-install` for slot class `bootfiles`: writes the slot's boot
//!   files into `slot-a/` or `slot-b/` on the boot partition
//!   (`skytime_ota::bootfiles`). The partition is `RAUC_SLOT_DEVICE`:
//!   mounted here (vfat) when it is a block device, used as it is when it
//!   is a directory.
//! - `slot-pre-install`, `slot-post-install`: nothing to do.
//!
//! Settings (environment; RAUC passes its own environment to hooks, the
//! appliance sets none of them):
//! - `SKYTIME_OTA_OS_RELEASE`: os-release with the running
//!   `IMAGE_VERSION` (default `/etc/os-release`);
//! - `SKYTIME_OTA_STATE`: the update state with a forced version
//!   (default `/var/lib/skytime/ota/state.json`);
//! - `SKYTIME_OTA_BUNDLE_DIR`: the bundle's files (default: this
//!   executable's directory, the mounted bundle).
//!
//! Exit codes: 0 done, 10 bundle refused, 1 anything else (RAUC then
//! fails the install with this program's last stderr line).

use skytime_ota::bootfiles::{self, RealFs};
use skytime_ota::hook_env::{self, HookCommand, HookEnv, SlotEnv};
use skytime_ota::install_check;
use skytime_ota::manifest::Manifest;
use skytime_ota::store::{self, Store};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// RAUC's threshold for a refusal (as opposed to a failure).
const REFUSED: u8 = 10;

enum Failure {
    Refused(String),
    Error(String),
}

fn setting(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

fn bundle_dir() -> Result<PathBuf, Failure> {
    if let Some(d) = std::env::var_os("SKYTIME_OTA_BUNDLE_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe()
        .map_err(|e| Failure::Error(format!("cannot find the hook's own path: {e}")))?;
    exe.parent()
        .map(Path::to_owned)
        .ok_or_else(|| Failure::Error(format!("{} has no directory", exe.display())))
}

fn install_check(env: &hook_env::BundleEnv) -> Result<(), Failure> {
    let dir = bundle_dir()?;
    let manifest_path = dir.join("manifest.raucm");
    let manifest: Manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|e| Failure::Error(format!("{}: {e}", manifest_path.display())))?
        .parse()
        .map_err(|e| Failure::Error(format!("{}: {e}", manifest_path.display())))?;

    let os_release = setting("SKYTIME_OTA_OS_RELEASE", "/etc/os-release");
    let running = std::fs::read_to_string(&os_release)
        .map_err(|e| format!("{}: {e}", os_release.display()))
        .and_then(|t| install_check::running_version(&t));

    // The state is only consulted for a force; an unreadable one means no
    // force (the plain policy), and a refusal says so.
    let store = Store::new(setting("SKYTIME_OTA_STATE", store::DEFAULT_PATH));
    let (forced, unreadable) = match store.load() {
        Ok(state) => (state.forced_version().map(str::to_owned), None),
        Err(e) => (None, Some(e)),
    };

    let version = install_check::check(
        env,
        &manifest,
        running.as_ref().map_err(String::as_str),
        forced.as_deref(),
    )
    .map_err(|r| match (&r, unreadable) {
        (install_check::Rejection::Version(_), Some(e)) => {
            Failure::Refused(format!("{r} (no force applies: {e})"))
        }
        _ => Failure::Refused(r.to_string()),
    })?;
    eprintln!(
        "skytime-rauc-hook: bundle {version} accepted{}",
        if forced.is_some() { " (forced)" } else { "" }
    );
    Ok(())
}

fn install_bootfiles(env: &SlotEnv) -> Result<(), Failure> {
    let err = |e: &dyn std::fmt::Display| Failure::Error(e.to_string());
    let bootname = env.slot.bootname.as_deref().ok_or_else(|| {
        Failure::Error(format!(
            "slot {} has no bootname (RAUC_SLOT_BOOTNAME)",
            env.slot.name
        ))
    })?;
    let slot_dir = bootfiles::slot_dir_name(bootname).map_err(|e| err(&e))?;
    let archive = &env.image.path;
    let open = || {
        std::fs::File::open(archive)
            .map_err(|e| Failure::Error(format!("{}: {e}", archive.display())))
    };
    let digest = bootfiles::sha256_copy(open()?, None).map_err(|e| err(&e))?;
    if digest != env.image.digest {
        return Err(Failure::Error(format!(
            "{}: SHA-256 {digest}, RAUC says {}",
            archive.display(),
            env.image.digest
        )));
    }
    let mut count = 0;
    let mut write = |root: &Path| {
        let list =
            bootfiles::install(&mut RealFs, root, &slot_dir, open()?).map_err(|e| err(&e))?;
        count = list.entries().len();
        Ok(())
    };
    let device = &env.slot.device;
    if device.is_dir() {
        write(device)?;
    } else {
        mount::with_vfat(device, &env.mount_prefix, &mut write)?;
    }
    eprintln!("skytime-rauc-hook: {count} boot files written to {slot_dir}/");
    Ok(())
}

mod mount {
    use super::Failure;
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use std::path::Path;

    /// Mounts the FAT boot partition `device` under RAUC's mount prefix,
    /// runs `f` on it, syncs and unmounts.
    pub fn with_vfat(
        device: &Path,
        prefix: &Path,
        f: &mut dyn FnMut(&Path) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let at = prefix.join("skytime-boot");
        std::fs::create_dir_all(&at)
            .map_err(|e| Failure::Error(format!("{}: {e}", at.display())))?;
        mount(
            Some(device),
            &at,
            Some("vfat"),
            MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| {
            Failure::Error(format!(
                "mount {} on {}: {e}",
                device.display(),
                at.display()
            ))
        })?;
        let result = f(&at);
        nix::unistd::sync();
        let unmounted = umount2(&at, MntFlags::empty());
        let _ = std::fs::remove_dir(&at);
        result?;
        unmounted.map_err(|e| Failure::Error(format!("umount {}: {e}", at.display())))
    }
}

fn run() -> Result<(), Failure> {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    match hook_env::parse(&args, |k| std::env::var_os(k))
        .map_err(|e| Failure::Error(e.to_string()))?
    {
        HookEnv::InstallCheck(env) => install_check(&env),
        HookEnv::Slot {
            command: HookCommand::SlotInstall,
            env,
        } if env.slot.class == "bootfiles" => install_bootfiles(&env),
        HookEnv::Slot {
            command: HookCommand::SlotInstall,
            env,
        } => Err(Failure::Error(format!(
            "no slot-install for slot class {:?} (only bootfiles)",
            env.slot.class
        ))),
        HookEnv::Slot { .. } => Ok(()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(reason)) => {
            eprintln!("{reason}");
            ExitCode::from(REFUSED)
        }
        Err(Failure::Error(reason)) => {
            eprintln!("skytime-rauc-hook: {reason}");
            ExitCode::FAILURE
        }
    }
}
