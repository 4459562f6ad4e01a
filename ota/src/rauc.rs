//! The D-Bus client of RAUC's `de.pengutronix.rauc.Installer`, as Debian
//! 13's RAUC 1.13 defines it (`/usr/share/dbus-1/interfaces/
//! de.pengutronix.rauc.Installer.xml`): methods `InstallBundle`,
//! `InspectBundle`, `Mark`, `GetSlotStatus`, `GetPrimary`; properties
//! `Operation`, `LastError`, `Progress`, `Compatible`, `BootSlot`; signal
//! `Completed`. (`Install`, `Info`, `GetArtifactStatus` and `Variant` are
//! not used.)
//!
//! # Why a proxy of our own and not the `rauc` crate
//!
//! The `rauc` crate 0.1 (zbus 5) is generated from RAUC 1.15.2's XML, which
//! declares the same methods as 1.13's. Run against a real RAUC 1.13 on a
//! private bus it reads `GetSlotStatus` (after an install: status,
//! bundle, installed and activated fields), `GetPrimary`, `Mark` and the
//! properties correctly, but:
//!
//! - its `InspectBundle` fails on every bundle with hooks (ours always have
//!   one): 1.13 wraps the `hooks` list of the `hooks` dictionary in one
//!   more variant (`"hooks" v as`) where the crate expects a bare `as`
//!   ("invalid value: string \"v\", expected a value of signature `as`");
//! - its slot status enums are closed (`status` ok/failed/pending, ...):
//!   one value it does not know fails the whole `GetSlotStatus`, where a
//!   status is better shown as RAUC wrote it;
//! - during an install it has nothing to parse: RAUC 1.13 answers
//!   `GetSlotStatus` (and `GetPrimary`, `Mark`, `InspectBundle`,
//!   `InstallBundle`) with "already processing a different method", which
//!   the crate passes on as an anonymous GLib error (here:
//!   [`RaucError::Busy`]); 1.13 keeps the target's status `update` in
//!   memory meanwhile and writes `pending` first, so an interrupted install
//!   shows `pending` afterwards;
//! - its `InstallBundle` options include `require-manifest-hash`, which
//!   1.13 refuses as "Unsupported key";
//! - it needs Rust 1.87 (the workspace builds with 1.85).
//!
//! So this module is a small proxy of its own, with values read leniently
//! (one or two variant layers, unknown keys and values kept as text),
//! RAUC's errors mapped to [`RaucError`], and the members it uses listed in
//! [`CONTRACT`] (tested against RAUC 1.13's introspection). The install's
//! own progress comes from the `Progress` property and the `Completed`
//! signal.

use futures_lite::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use zbus::zvariant::{OwnedValue, Value};

/// RAUC's well-known bus name.
pub const SERVICE: &str = "de.pengutronix.rauc";

/// The members of `de.pengutronix.rauc.Installer` this client uses, as
/// (kind, name, in-signature, out-signature); a test checks them against
/// what a running RAUC 1.13 introspects.
pub const CONTRACT: &[(&str, &str, &str, &str)] = &[
    ("method", "InstallBundle", "sa{sv}", ""),
    ("method", "InspectBundle", "sa{sv}", "a{sv}"),
    ("method", "Mark", "ss", "ss"),
    ("method", "GetSlotStatus", "", "a(sa{sv})"),
    ("method", "GetPrimary", "", "s"),
    ("property", "Operation", "", "s"),
    ("property", "LastError", "", "s"),
    ("property", "Progress", "", "(isi)"),
    ("property", "Compatible", "", "s"),
    ("property", "BootSlot", "", "s"),
    ("signal", "Completed", "", "i"),
];

#[zbus::proxy(
    interface = "de.pengutronix.rauc.Installer",
    default_service = "de.pengutronix.rauc",
    default_path = "/",
    gen_blocking = false
)]
pub trait Installer {
    /// Starts an install of a bundle (path or URL).
    fn install_bundle(&self, source: &str, args: HashMap<&str, Value<'_>>) -> zbus::Result<()>;

    /// Checks a bundle's signature and returns its manifest.
    fn inspect_bundle(
        &self,
        source: &str,
        args: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<HashMap<String, OwnedValue>>;

    /// Marks a slot good, bad or active.
    fn mark(&self, state: &str, slot_identifier: &str) -> zbus::Result<(String, String)>;

    /// Every slot's status.
    fn get_slot_status(&self) -> zbus::Result<Vec<(String, HashMap<String, OwnedValue>)>>;

    /// The bootloader's primary slot.
    fn get_primary(&self) -> zbus::Result<String>;

    /// "idle" or "installing".
    #[zbus(property)]
    fn operation(&self) -> zbus::Result<String>;

    /// The last error's message.
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;

    /// (percent, message, nesting depth).
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<(i32, String, i32)>;

    /// The system's compatible.
    #[zbus(property)]
    fn compatible(&self) -> zbus::Result<String>;

    /// The booted slot's bootname.
    #[zbus(property)]
    fn boot_slot(&self) -> zbus::Result<String>;

    /// An install finished: 0 on success.
    #[zbus(signal)]
    fn completed(&self, result: i32) -> zbus::Result<()>;
}

/// What went wrong talking to RAUC.
#[derive(Debug, thiserror::Error)]
pub enum RaucError {
    /// RAUC is installing and answers nothing else.
    #[error("RAUC is busy with another operation (an install is running)")]
    Busy,
    /// RAUC refused the call; its message.
    #[error("RAUC: {0}")]
    Rejected(String),
    /// The reply does not have the expected shape.
    #[error("RAUC's {method} reply: {reason}")]
    Decode {
        /// The method or property.
        method: &'static str,
        /// What is missing or wrong.
        reason: String,
    },
    /// The install ran and failed.
    #[error("install failed (RAUC code {code}): {last_error}")]
    InstallFailed {
        /// `Completed`'s result.
        code: i32,
        /// RAUC's `LastError`.
        last_error: String,
    },
    /// The install did not finish in time.
    #[error("RAUC did not finish the install within {0:?}")]
    Timeout(Duration),
    /// The bus itself failed (RAUC not running, no permission, ...).
    #[error("D-Bus: {0}")]
    Bus(zbus::Error),
}

impl RaucError {
    /// RAUC's error message as a [`RaucError`]: its "already processing"
    /// refusal is [`RaucError::Busy`].
    fn from_message(msg: String) -> Self {
        if msg.to_ascii_lowercase().starts_with("already processing") {
            Self::Busy
        } else {
            Self::Rejected(msg)
        }
    }
}

impl From<zbus::Error> for RaucError {
    fn from(e: zbus::Error) -> Self {
        match e {
            zbus::Error::MethodError(_, Some(msg), _) => Self::from_message(msg),
            zbus::Error::FDO(fdo) => match *fdo {
                zbus::fdo::Error::Failed(msg) => Self::from_message(msg),
                other => Self::Bus(zbus::Error::FDO(Box::new(other))),
            },
            other => Self::Bus(other),
        }
    }
}

/// `Mark`'s states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkState {
    /// Keep booting the slot.
    Good,
    /// Never boot it again.
    Bad,
    /// Boot it next.
    Active,
}

impl MarkState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Bad => "bad",
            Self::Active => "active",
        }
    }
}

/// `InstallBundle` options RAUC 1.13 accepts (besides the TLS ones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallOptions {
    /// Skip RAUC's compatible check (our install-check hook makes its own).
    pub ignore_compatible: bool,
    /// Install below `min-bundle-version` (the hard floor; skytime does not
    /// set it for an operator's "force").
    pub ignore_version_limit: bool,
    /// Transaction id, recorded as the slot's `installed.transaction`.
    pub transaction_id: Option<String>,
}

impl InstallOptions {
    fn to_args(&self) -> HashMap<&'static str, Value<'_>> {
        let mut a = HashMap::new();
        if self.ignore_compatible {
            a.insert("ignore-compatible", Value::from(true));
        }
        if self.ignore_version_limit {
            a.insert("ignore-version-limit", Value::from(true));
        }
        if let Some(t) = &self.transaction_id {
            a.insert("transaction-id", Value::from(t.as_str()));
        }
        a
    }
}

/// `Progress`: RAUC's percent, current step and nesting depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// 0..=100.
    pub percent: i32,
    /// The step's message.
    pub message: String,
    /// How deep the step is nested.
    pub depth: i32,
}

/// One image of an inspected bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Target slot class.
    pub slot_class: String,
    /// File name in the bundle.
    pub filename: Option<String>,
    /// SHA-256.
    pub checksum: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// Slot hooks (pre-install, install, post-install).
    pub hooks: Vec<String>,
}

/// What `InspectBundle` reports (after checking the signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInfo {
    /// SHA-256 of the manifest.
    pub manifest_hash: String,
    /// `[update] compatible`.
    pub compatible: String,
    /// `[update] version`.
    pub version: Option<String>,
    /// `[update] description`.
    pub description: Option<String>,
    /// `[update] build`.
    pub build: Option<String>,
    /// `plain`, `verity` or `crypt`.
    pub format: String,
    /// Bundle hooks (install-check).
    pub hooks: Vec<String>,
    /// The images.
    pub images: Vec<ImageInfo>,
}

/// One slot as `GetSlotStatus` reports it. Enumerated values (state,
/// boot status, status) are kept as RAUC's text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotStatus {
    /// e.g. `rootfs.1`.
    pub name: String,
    /// e.g. `rootfs`.
    pub class: String,
    /// The device.
    pub device: String,
    /// `raw`, `vfat`, ...
    pub slot_type: String,
    /// Bootname (A, B) for bootable slots.
    pub bootname: Option<String>,
    /// `booted`, `active` or `inactive`.
    pub state: Option<String>,
    /// The parent slot.
    pub parent: Option<String>,
    /// Where it is mounted.
    pub mountpoint: Option<String>,
    /// `good` or `bad` (bootable slots only).
    pub boot_status: Option<String>,
    /// Last install's outcome: `ok`, `pending` (interrupted), `failed`.
    pub status: Option<String>,
    /// SHA-256 of the last installed image.
    pub sha256: Option<String>,
    /// Its size.
    pub size: Option<u64>,
    /// When it was installed (ISO 8601).
    pub installed_timestamp: Option<String>,
    /// How often.
    pub installed_count: Option<u32>,
    /// The transaction id of the last install.
    pub installed_transaction: Option<String>,
    /// When it was last activated.
    pub activated_timestamp: Option<String>,
    /// How often.
    pub activated_count: Option<u32>,
    /// The bundle's compatible.
    pub bundle_compatible: Option<String>,
    /// The bundle's version.
    pub bundle_version: Option<String>,
    /// The bundle's description.
    pub bundle_description: Option<String>,
    /// The bundle's build.
    pub bundle_build: Option<String>,
    /// The bundle's manifest hash.
    pub bundle_hash: Option<String>,
}

/// Strips variant layers (RAUC nests some values in two).
fn peel<'a>(mut v: &'a Value<'a>) -> &'a Value<'a> {
    while let Value::Value(inner) = v {
        v = inner;
    }
    v
}

struct Dict<'a> {
    method: &'static str,
    entries: HashMap<&'a str, &'a Value<'a>>,
}

impl<'a> Dict<'a> {
    fn from_map(method: &'static str, m: &'a HashMap<String, OwnedValue>) -> Self {
        Self {
            method,
            entries: m.iter().map(|(k, v)| (k.as_str(), peel(v))).collect(),
        }
    }

    fn from_value(method: &'static str, v: &'a Value<'a>) -> Result<Self, RaucError> {
        let Value::Dict(d) = peel(v) else {
            return Err(RaucError::Decode {
                method,
                reason: format!("expected a dictionary, got {}", peel(v).value_signature()),
            });
        };
        let mut entries = HashMap::new();
        for (k, v) in d.iter() {
            if let Value::Str(k) = peel(k) {
                entries.insert(k.as_str(), peel(v));
            }
        }
        Ok(Self { method, entries })
    }

    fn str(&self, key: &str) -> Option<String> {
        match self.entries.get(key) {
            Some(Value::Str(s)) => Some(s.as_str().to_owned()),
            _ => None,
        }
    }

    fn required(&self, key: &str) -> Result<String, RaucError> {
        self.str(key).ok_or_else(|| RaucError::Decode {
            method: self.method,
            reason: format!("no string {key:?}"),
        })
    }

    fn u64(&self, key: &str) -> Option<u64> {
        match self.entries.get(key) {
            Some(Value::U64(n)) => Some(*n),
            Some(Value::U32(n)) => Some(u64::from(*n)),
            _ => None,
        }
    }

    fn u32(&self, key: &str) -> Option<u32> {
        self.u64(key).and_then(|n| u32::try_from(n).ok())
    }

    fn strings(&self, key: &str) -> Vec<String> {
        match self.entries.get(key) {
            Some(Value::Array(a)) => a
                .inner()
                .iter()
                .filter_map(|v| match peel(v) {
                    Value::Str(s) => Some(s.as_str().to_owned()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn dict(&self, key: &str) -> Result<Dict<'a>, RaucError> {
        let v = self.entries.get(key).ok_or_else(|| RaucError::Decode {
            method: self.method,
            reason: format!("no {key:?}"),
        })?;
        Dict::from_value(self.method, v)
    }
}

/// Parses `InspectBundle`'s reply.
pub fn bundle_info(reply: &HashMap<String, OwnedValue>) -> Result<BundleInfo, RaucError> {
    let top = Dict::from_map("InspectBundle", reply);
    let update = top.dict("update")?;
    let bundle = top.dict("bundle")?;
    let hooks = match top.entries.get("hooks") {
        Some(v) => Dict::from_value("InspectBundle", v)?.strings("hooks"),
        None => Vec::new(),
    };
    let mut images = Vec::new();
    if let Some(Value::Array(a)) = top.entries.get("images") {
        for v in a.inner() {
            let d = Dict::from_value("InspectBundle", v)?;
            images.push(ImageInfo {
                slot_class: d.required("slot-class")?,
                filename: d.str("filename"),
                checksum: d.str("checksum"),
                size: d.u64("size"),
                hooks: d.strings("hooks"),
            });
        }
    }
    Ok(BundleInfo {
        manifest_hash: top.required("manifest-hash")?,
        compatible: update.required("compatible")?,
        version: update.str("version"),
        description: update.str("description"),
        build: update.str("build"),
        format: bundle.required("format")?,
        hooks,
        images,
    })
}

/// Parses one `GetSlotStatus` entry.
pub fn slot_status(name: &str, m: &HashMap<String, OwnedValue>) -> Result<SlotStatus, RaucError> {
    let d = Dict::from_map("GetSlotStatus", m);
    Ok(SlotStatus {
        name: name.to_owned(),
        class: d.required("class")?,
        device: d.required("device")?,
        slot_type: d.required("type")?,
        bootname: d.str("bootname"),
        state: d.str("state"),
        parent: d.str("parent"),
        mountpoint: d.str("mountpoint"),
        boot_status: d.str("boot-status"),
        status: d.str("status"),
        sha256: d.str("sha256"),
        size: d.u64("size"),
        installed_timestamp: d.str("installed.timestamp"),
        installed_count: d.u32("installed.count"),
        installed_transaction: d.str("installed.transaction"),
        activated_timestamp: d.str("activated.timestamp"),
        activated_count: d.u32("activated.count"),
        bundle_compatible: d.str("bundle.compatible"),
        bundle_version: d.str("bundle.version"),
        bundle_description: d.str("bundle.description"),
        bundle_build: d.str("bundle.build"),
        bundle_hash: d.str("bundle.hash"),
    })
}

/// RAUC on a bus connection.
#[derive(Debug, Clone)]
pub struct Rauc {
    /// Caches properties: what property-change streams need.
    proxy: InstallerProxy<'static>,
    /// Reads properties afresh. RAUC emits `Completed` before the
    /// `PropertiesChanged` of `LastError`, `Operation` and the last
    /// `Progress`, so a cache read right after `Completed` is stale.
    fresh: InstallerProxy<'static>,
}

impl Rauc {
    /// The client for RAUC on `conn` (the system bus on the appliance).
    pub async fn new(conn: &zbus::Connection) -> Result<Self, RaucError> {
        Ok(Self {
            proxy: InstallerProxy::new(conn).await?,
            fresh: InstallerProxy::builder(conn)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?,
        })
    }

    /// The proxy for property-change and signal streams.
    pub fn proxy(&self) -> &InstallerProxy<'static> {
        &self.proxy
    }

    /// Checks a bundle (signature against the keyring, format) and reads
    /// its manifest. Does not run the install-check hook.
    pub async fn inspect(&self, source: &str) -> Result<BundleInfo, RaucError> {
        let reply = self.proxy.inspect_bundle(source, HashMap::new()).await?;
        bundle_info(&reply)
    }

    /// Starts an install; returns once RAUC accepted it. Follow it with
    /// [`Rauc::progress`] and the `Completed` signal, or use
    /// [`Rauc::install_and_wait`].
    pub async fn install(&self, source: &str, options: &InstallOptions) -> Result<(), RaucError> {
        Ok(self.proxy.install_bundle(source, options.to_args()).await?)
    }

    /// Installs and waits for `Completed`, bounded by `limit`, calling
    /// `on_progress` for every `Progress` change. A failed install is
    /// [`RaucError::InstallFailed`] with RAUC's `LastError`.
    pub async fn install_and_wait(
        &self,
        source: &str,
        options: &InstallOptions,
        limit: Duration,
        mut on_progress: impl FnMut(&Progress),
    ) -> Result<(), RaucError> {
        // Subscribe first: a small bundle can complete before the call
        // returns.
        let mut completed = self.proxy.receive_completed().await?;
        let mut progress = self.proxy.receive_progress_changed().await;
        self.install(source, options).await?;
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = None;
        let mut report = |p: Progress| {
            if last.as_ref() != Some(&p) {
                on_progress(&p);
                last = Some(p);
            }
        };
        loop {
            tokio::select! {
                signal = completed.next() => {
                    let Some(signal) = signal else {
                        return Err(RaucError::Bus(zbus::Error::Failure("the Completed signal stream ended".into())));
                    };
                    let code = *signal.args()?.result();
                    // The final Progress may follow Completed: read it.
                    if let Ok(Some(p)) = self.progress().await {
                        report(p);
                    }
                    if code == 0 {
                        return Ok(());
                    }
                    let last_error = self.last_error().await.unwrap_or_default();
                    return Err(RaucError::InstallFailed { code, last_error });
                }
                Some(p) = progress.next() => {
                    if let Ok((percent, message, depth)) = p.get().await {
                        report(Progress { percent, message, depth });
                    }
                }
                () = tokio::time::sleep_until(deadline) => return Err(RaucError::Timeout(limit)),
            }
        }
    }

    /// Every slot's status.
    pub async fn slot_status(&self) -> Result<Vec<SlotStatus>, RaucError> {
        let reply = self.proxy.get_slot_status().await?;
        let mut slots = reply
            .iter()
            .map(|(name, m)| slot_status(name, m))
            .collect::<Result<Vec<_>, _>>()?;
        slots.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(slots)
    }

    /// The primary slot's name (e.g. `rootfs.1`).
    pub async fn primary(&self) -> Result<String, RaucError> {
        Ok(self.proxy.get_primary().await?)
    }

    /// Marks `slot` (`booted`, `other`, or a slot name); returns the slot
    /// name RAUC marked and its message.
    pub async fn mark(&self, state: MarkState, slot: &str) -> Result<(String, String), RaucError> {
        Ok(self.proxy.mark(state.as_str(), slot).await?)
    }

    /// `Operation`: "idle" or "installing".
    pub async fn operation(&self) -> Result<String, RaucError> {
        Ok(self.fresh.operation().await?)
    }

    /// `LastError`.
    pub async fn last_error(&self) -> Result<String, RaucError> {
        Ok(self.fresh.last_error().await?)
    }

    /// `Progress`; `None` before the first operation (RAUC leaves the
    /// property unset).
    pub async fn progress(&self) -> Result<Option<Progress>, RaucError> {
        match self.fresh.progress().await {
            Ok((percent, message, depth)) => Ok(Some(Progress {
                percent,
                message,
                depth,
            })),
            Err(zbus::Error::Variant(_)) | Err(zbus::Error::InvalidReply) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `Compatible`.
    pub async fn compatible(&self) -> Result<String, RaucError> {
        Ok(self.fresh.compatible().await?)
    }

    /// `BootSlot`: the booted slot's bootname.
    pub async fn boot_slot(&self) -> Result<String, RaucError> {
        Ok(self.fresh.boot_slot().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(v: Value<'_>) -> OwnedValue {
        v.try_into_owned().unwrap()
    }

    #[test]
    fn busy_and_rejections_are_told_apart() {
        let err = |m: &str| RaucError::from_message(m.to_owned());
        assert!(matches!(
            err("already processing a different method"),
            RaucError::Busy
        ));
        assert!(matches!(
            err("Already processing a different method"),
            RaucError::Busy
        ));
        let e =
            err("Invalid bundle format: Signature size (7957698292319088138) exceeds bundle size");
        assert_eq!(
            e.to_string(),
            "RAUC: Invalid bundle format: Signature size (7957698292319088138) exceeds bundle size"
        );
    }

    #[test]
    fn install_options_use_rauc_113_keys_only() {
        assert!(InstallOptions::default().to_args().is_empty());
        let o = InstallOptions {
            ignore_compatible: true,
            ignore_version_limit: true,
            transaction_id: Some("t".into()),
        };
        let mut keys: Vec<_> = o.to_args().into_keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "ignore-compatible",
                "ignore-version-limit",
                "transaction-id"
            ]
        );
    }

    #[test]
    fn slot_status_keeps_unknown_values_and_names_missing_keys() {
        let mut m = HashMap::new();
        m.insert("class".to_owned(), owned(Value::from("rootfs")));
        m.insert("device".to_owned(), owned(Value::from("/dev/mmcblk0p3")));
        m.insert("type".to_owned(), owned(Value::from("raw")));
        m.insert("status".to_owned(), owned(Value::from("something-new")));
        m.insert("size".to_owned(), owned(Value::from(7u64)));
        m.insert("installed.count".to_owned(), owned(Value::from(2u32)));
        let s = slot_status("rootfs.1", &m).unwrap();
        assert_eq!(s.status.as_deref(), Some("something-new"));
        assert_eq!((s.size, s.installed_count), (Some(7), Some(2)));
        m.remove("device");
        let e = slot_status("rootfs.1", &m).unwrap_err();
        assert_eq!(
            e.to_string(),
            "RAUC's GetSlotStatus reply: no string \"device\""
        );
    }
}
