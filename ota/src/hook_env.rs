//! RAUC's hook interface: the command argument and the environment.
//!
//! RAUC runs the bundle's hook executable (`[hooks] filename`) as
//! `hook COMMAND` with a fixed set of variables (RAUC 1.13,
//! `src/install.c` and `src/update_handler.c`):
//!
//! - `install-check` (a *bundle* hook, before anything is written):
//!   `RAUC_SYSTEM_COMPATIBLE`, `RAUC_SYSTEM_VARIANT`, `RAUC_MF_COMPATIBLE`,
//!   `RAUC_MF_VERSION`, `RAUC_MF_BUILD`, `RAUC_MOUNT_PREFIX`. The bundle's
//!   other files are beside the hook (it runs from the mounted bundle).
//! - `slot-pre-install`, `slot-install`, `slot-post-install` (*slot*
//!   hooks, per image): `RAUC_SLOT_{NAME,STATE,CLASS,TYPE,DEVICE,BOOTNAME,
//!   PARENT}`, `RAUC_SLOT_MOUNT_POINT` when RAUC mounted the slot,
//!   `RAUC_IMAGE_{NAME,SIZE,DIGEST,CLASS}`, `RAUC_MOUNT_PREFIX`,
//!   `RAUC_BUNDLE_MOUNT_POINT`. A child slot's `RAUC_SLOT_BOOTNAME` is
//!   its parent's. RAUC sets absent values to the empty string.
//!
//! [`parse`] turns them into [`HookEnv`]; every error names the variable
//! (or the argument) and what is wrong with it.

use std::ffi::OsString;
use std::path::PathBuf;

/// Why the hook's invocation cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookEnvError {
    /// No command argument.
    #[error("no hook command given (expected install-check, slot-pre-install, slot-install or slot-post-install)")]
    NoCommand,
    /// An argument RAUC does not pass.
    #[error("unknown hook command {0:?} (expected install-check, slot-pre-install, slot-install or slot-post-install)")]
    UnknownCommand(String),
    /// A variable RAUC always sets is missing or empty.
    #[error("{var} is not set (is this running as a RAUC hook?)")]
    Missing {
        /// The variable.
        var: &'static str,
    },
    /// A variable with a value that cannot be right.
    #[error("{var}={value:?}: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value (lossy if it was not UTF-8).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The command RAUC runs the hook with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookCommand {
    /// Bundle hook, may refuse the bundle (exit code >= 10).
    InstallCheck,
    /// Before the slot is written.
    SlotPreInstall,
    /// Instead of RAUC writing the slot (`hooks=install;`).
    SlotInstall,
    /// After the slot is written.
    SlotPostInstall,
}

impl HookCommand {
    /// The argument RAUC passes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InstallCheck => "install-check",
            Self::SlotPreInstall => "slot-pre-install",
            Self::SlotInstall => "slot-install",
            Self::SlotPostInstall => "slot-post-install",
        }
    }
}

/// The environment of `install-check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEnv {
    /// `RAUC_SYSTEM_COMPATIBLE`: system.conf's compatible.
    pub system_compatible: String,
    /// `RAUC_SYSTEM_VARIANT`, if any.
    pub system_variant: Option<String>,
    /// `RAUC_MF_COMPATIBLE`: the bundle's compatible.
    pub manifest_compatible: String,
    /// `RAUC_MF_VERSION`, if the manifest has one.
    pub manifest_version: Option<String>,
    /// `RAUC_MF_BUILD`, if the manifest has one.
    pub manifest_build: Option<String>,
    /// `RAUC_MOUNT_PREFIX`.
    pub mount_prefix: PathBuf,
}

/// The target slot of a slot hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// `RAUC_SLOT_NAME`, e.g. `bootfiles.1`.
    pub name: String,
    /// `RAUC_SLOT_CLASS`, e.g. `bootfiles`.
    pub class: String,
    /// `RAUC_SLOT_TYPE`, e.g. `raw`, `vfat`.
    pub slot_type: String,
    /// `RAUC_SLOT_DEVICE`.
    pub device: PathBuf,
    /// `RAUC_SLOT_BOOTNAME` (the parent's for a child slot).
    pub bootname: Option<String>,
    /// `RAUC_SLOT_PARENT`.
    pub parent: Option<String>,
    /// `RAUC_SLOT_MOUNT_POINT`, when RAUC mounted the slot.
    pub mount_point: Option<PathBuf>,
}

/// The image being installed by a slot hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `RAUC_IMAGE_NAME`: its path in the mounted bundle.
    pub path: PathBuf,
    /// `RAUC_IMAGE_SIZE` in bytes.
    pub size: u64,
    /// `RAUC_IMAGE_DIGEST`: SHA-256, lower-case hex.
    pub digest: String,
    /// `RAUC_IMAGE_CLASS`.
    pub class: String,
}

/// The environment of a slot hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotEnv {
    /// `RAUC_SYSTEM_COMPATIBLE`.
    pub system_compatible: String,
    /// The slot.
    pub slot: Slot,
    /// The image (RAUC passes one for every slot hook of an image).
    pub image: Image,
    /// `RAUC_MOUNT_PREFIX`.
    pub mount_prefix: PathBuf,
    /// `RAUC_BUNDLE_MOUNT_POINT`.
    pub bundle_mount_point: PathBuf,
}

/// One hook invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEnv {
    /// `install-check`.
    InstallCheck(BundleEnv),
    /// A slot hook.
    Slot {
        /// Which one.
        command: HookCommand,
        /// Its environment.
        env: SlotEnv,
    },
}

/// Reads the invocation: `args` without the program name, `var` looks up
/// one environment variable (`std::env::var_os` in the hook).
pub fn parse(
    args: &[OsString],
    var: impl Fn(&str) -> Option<OsString>,
) -> Result<HookEnv, HookEnvError> {
    let command = match args.first().map(|a| a.to_string_lossy().into_owned()) {
        None => return Err(HookEnvError::NoCommand),
        Some(a) => match a.as_str() {
            "install-check" => HookCommand::InstallCheck,
            "slot-pre-install" => HookCommand::SlotPreInstall,
            "slot-install" => HookCommand::SlotInstall,
            "slot-post-install" => HookCommand::SlotPostInstall,
            _ => return Err(HookEnvError::UnknownCommand(a)),
        },
    };
    let env = Reader { var: &var };
    if command == HookCommand::InstallCheck {
        return Ok(HookEnv::InstallCheck(BundleEnv {
            system_compatible: env.required("RAUC_SYSTEM_COMPATIBLE")?,
            system_variant: env.optional("RAUC_SYSTEM_VARIANT")?,
            manifest_compatible: env.required("RAUC_MF_COMPATIBLE")?,
            manifest_version: env.optional("RAUC_MF_VERSION")?,
            manifest_build: env.optional("RAUC_MF_BUILD")?,
            mount_prefix: env.path("RAUC_MOUNT_PREFIX")?,
        }));
    }
    let size_text = env.required("RAUC_IMAGE_SIZE")?;
    let size = size_text
        .parse()
        .ok()
        .filter(|_| size_text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(HookEnvError::Invalid {
            var: "RAUC_IMAGE_SIZE",
            value: size_text.clone(),
            reason: "not a byte count",
        })?;
    let digest = env.required("RAUC_IMAGE_DIGEST")?;
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HookEnvError::Invalid {
            var: "RAUC_IMAGE_DIGEST",
            value: digest,
            reason: "not a SHA-256 (64 hex digits)",
        });
    }
    let slot = Slot {
        name: env.required("RAUC_SLOT_NAME")?,
        class: env.required("RAUC_SLOT_CLASS")?,
        slot_type: env.required("RAUC_SLOT_TYPE")?,
        device: env.path("RAUC_SLOT_DEVICE")?,
        bootname: env.optional("RAUC_SLOT_BOOTNAME")?,
        parent: env.optional("RAUC_SLOT_PARENT")?,
        mount_point: match env.optional("RAUC_SLOT_MOUNT_POINT")? {
            Some(_) => Some(env.path("RAUC_SLOT_MOUNT_POINT")?),
            None => None,
        },
    };
    if !slot.name.starts_with(&format!("{}.", slot.class)) {
        return Err(HookEnvError::Invalid {
            var: "RAUC_SLOT_NAME",
            value: slot.name,
            reason: "does not start with RAUC_SLOT_CLASS and a dot",
        });
    }
    Ok(HookEnv::Slot {
        command,
        env: SlotEnv {
            system_compatible: env.required("RAUC_SYSTEM_COMPATIBLE")?,
            slot,
            image: Image {
                path: env.path("RAUC_IMAGE_NAME")?,
                size,
                digest: digest.to_ascii_lowercase(),
                class: env.required("RAUC_IMAGE_CLASS")?,
            },
            mount_prefix: env.path("RAUC_MOUNT_PREFIX")?,
            bundle_mount_point: env.path("RAUC_BUNDLE_MOUNT_POINT")?,
        },
    })
}

struct Reader<'a, F: Fn(&str) -> Option<OsString>> {
    var: &'a F,
}

impl<F: Fn(&str) -> Option<OsString>> Reader<'_, F> {
    fn optional(&self, name: &'static str) -> Result<Option<String>, HookEnvError> {
        match (self.var)(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => v
                .into_string()
                .map(Some)
                .map_err(|v| HookEnvError::Invalid {
                    var: name,
                    value: v.to_string_lossy().into_owned(),
                    reason: "not UTF-8",
                }),
        }
    }

    fn required(&self, name: &'static str) -> Result<String, HookEnvError> {
        let v = self
            .optional(name)?
            .ok_or(HookEnvError::Missing { var: name })?;
        if v.contains(['\n', '\0']) {
            return Err(HookEnvError::Invalid {
                var: name,
                value: v,
                reason: "contains a line break",
            });
        }
        Ok(v)
    }

    fn path(&self, name: &'static str) -> Result<PathBuf, HookEnvError> {
        let v = self.required(name)?;
        if !v.starts_with('/') {
            return Err(HookEnvError::Invalid {
                var: name,
                value: v,
                reason: "not an absolute path",
            });
        }
        Ok(PathBuf::from(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn slot_vars() -> HashMap<&'static str, String> {
        // As RAUC 1.13 set them for the boot files of slot B (recorded
        // from a host install).
        [
            ("RAUC_SYSTEM_COMPATIBLE", "skytime-rpi4"),
            ("RAUC_SYSTEM_VARIANT", ""),
            ("RAUC_SLOT_NAME", "bootfiles.1"),
            ("RAUC_SLOT_STATE", "inactive"),
            ("RAUC_SLOT_CLASS", "bootfiles"),
            ("RAUC_SLOT_TYPE", "vfat"),
            ("RAUC_SLOT_DEVICE", "/dev/disk/by-partuuid/5c7e0001-01"),
            ("RAUC_SLOT_BOOTNAME", "B"),
            ("RAUC_SLOT_PARENT", "rootfs.1"),
            ("RAUC_IMAGE_NAME", "/run/rauc/bundle/bootfiles.sha256"),
            ("RAUC_IMAGE_SIZE", "10240"),
            (
                "RAUC_IMAGE_DIGEST",
                "b602b50da7079207e30f96abd29c279433c4a44ca35f14d0155f2bb684447cb5",
            ),
            ("RAUC_IMAGE_CLASS", "bootfiles"),
            ("RAUC_MOUNT_PREFIX", "/run/rauc/"),
            ("RAUC_BUNDLE_MOUNT_POINT", "/run/rauc/bundle"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect()
    }

    fn run(cmd: &str, vars: &HashMap<&'static str, String>) -> Result<HookEnv, HookEnvError> {
        parse(&[OsString::from(cmd)], |k| vars.get(k).map(OsString::from))
    }

    #[test]
    fn slot_install_of_the_boot_files() {
        let HookEnv::Slot { command, env } = run("slot-install", &slot_vars()).unwrap() else {
            panic!("not a slot hook")
        };
        assert_eq!(command, HookCommand::SlotInstall);
        assert_eq!(env.slot.name, "bootfiles.1");
        assert_eq!(env.slot.bootname.as_deref(), Some("B"));
        assert_eq!(env.slot.parent.as_deref(), Some("rootfs.1"));
        assert_eq!(env.slot.mount_point, None);
        assert_eq!(env.image.size, 10240);
        assert_eq!(env.bundle_mount_point, PathBuf::from("/run/rauc/bundle"));
    }

    #[test]
    fn install_check() {
        let vars: HashMap<&str, String> = [
            ("RAUC_SYSTEM_COMPATIBLE", "skytime-rpi4"),
            ("RAUC_SYSTEM_VARIANT", ""),
            ("RAUC_MF_COMPATIBLE", "skytime-rpi4"),
            ("RAUC_MF_VERSION", "0.1.0+20250301.143000"),
            ("RAUC_MF_BUILD", ""),
            ("RAUC_MOUNT_PREFIX", "/run/rauc/"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
        let HookEnv::InstallCheck(env) = run("install-check", &vars).unwrap() else {
            panic!("not install-check")
        };
        assert_eq!(
            env.manifest_version.as_deref(),
            Some("0.1.0+20250301.143000")
        );
        assert_eq!(env.manifest_build, None);
        assert_eq!(env.system_variant, None);
        let mut v = vars.clone();
        v.remove("RAUC_MF_COMPATIBLE");
        assert_eq!(
            run("install-check", &v).unwrap_err().to_string(),
            "RAUC_MF_COMPATIBLE is not set (is this running as a RAUC hook?)"
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "RAUC_IMAGE_SIZE",
                "12k",
                "RAUC_IMAGE_SIZE=\"12k\": not a byte count",
            ),
            (
                "RAUC_IMAGE_SIZE",
                "+12",
                "RAUC_IMAGE_SIZE=\"+12\": not a byte count",
            ),
            (
                "RAUC_IMAGE_DIGEST",
                "abc",
                "RAUC_IMAGE_DIGEST=\"abc\": not a SHA-256",
            ),
            (
                "RAUC_SLOT_DEVICE",
                "disk",
                "RAUC_SLOT_DEVICE=\"disk\": not an absolute path",
            ),
            (
                "RAUC_SLOT_NAME",
                "rootfs.1",
                "does not start with RAUC_SLOT_CLASS",
            ),
            ("RAUC_SLOT_CLASS", "", "RAUC_SLOT_CLASS is not set"),
            (
                "RAUC_SLOT_CLASS",
                "a\nb",
                "RAUC_SLOT_CLASS=\"a\\nb\": contains a line break",
            ),
            (
                "RAUC_BUNDLE_MOUNT_POINT",
                "",
                "RAUC_BUNDLE_MOUNT_POINT is not set",
            ),
        ];
        for (var, value, want) in cases {
            let mut v = slot_vars();
            v.insert(var, (*value).to_owned());
            let e = run("slot-install", &v).unwrap_err().to_string();
            assert!(e.contains(want), "{var}={value:?}: {e}");
        }
        assert_eq!(parse(&[], |_| None).unwrap_err(), HookEnvError::NoCommand);
        assert!(run("slot-frobnicate", &slot_vars())
            .unwrap_err()
            .to_string()
            .contains("unknown hook command \"slot-frobnicate\""));
    }

    #[test]
    fn not_utf8_is_named() {
        use std::os::unix::ffi::OsStringExt;
        let vars = slot_vars();
        let e = parse(&[OsString::from("slot-install")], |k| {
            if k == "RAUC_SLOT_DEVICE" {
                Some(OsString::from_vec(vec![b'/', 0xff]))
            } else {
                vars.get(k).map(OsString::from)
            }
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("RAUC_SLOT_DEVICE="), "{e}");
        assert!(e.to_string().ends_with("not UTF-8"), "{e}");
    }

    proptest! {
        /// Any subset of the variables, with any values: a result or an
        /// error that names a RAUC variable, never a panic.
        #[test]
        fn garbage_env_gives_named_errors(
            drop in proptest::collection::vec(any::<bool>(), 15),
            junk in proptest::collection::vec(proptest::option::of("\\PC{0,12}"), 15),
            cmd in prop_oneof![Just("install-check"), Just("slot-install"), Just("slot-post-install")],
        ) {
            let mut vars = slot_vars();
            vars.insert("RAUC_MF_COMPATIBLE", "x".into());
            let keys: Vec<&'static str> = {
                let mut k: Vec<_> = slot_vars().keys().copied().collect();
                k.sort();
                k
            };
            for (i, k) in keys.iter().enumerate() {
                if drop[i] {
                    vars.remove(k);
                } else if let Some(j) = &junk[i] {
                    vars.insert(k, j.clone());
                }
            }
            match run(cmd, &vars) {
                Ok(HookEnv::Slot { env, .. }) => {
                    prop_assert!(env.image.digest.len() == 64);
                    prop_assert!(env.slot.device.is_absolute());
                }
                Ok(HookEnv::InstallCheck(env)) => prop_assert!(!env.manifest_compatible.is_empty()),
                Err(e) => {
                    let s = e.to_string();
                    prop_assert!(s.starts_with("RAUC_"), "{}", s);
                }
            }
        }
    }
}
