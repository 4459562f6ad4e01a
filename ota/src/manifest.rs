//! RAUC's bundle manifest (`manifest.raucm`), parsed and written.
//!
//! The file is a GLib key file: `[section]` headers, `key=value` lines,
//! `#` comments, values with `\s \n \t \r \\` escapes, lists separated by
//! `;`. The sections skytime uses, as RAUC 1.13 reads and writes them:
//!
//! ```text
//! [update]            compatible (required), version, description, build
//! [bundle]            format = plain | verity | crypt,
//!                     verity-hash, verity-salt, verity-size (written by RAUC)
//! [hooks]             filename, hooks = install-check;
//! [image.<class>]     filename, sha256, size (written by RAUC),
//!                     hooks = pre-install; install; post-install;
//! [meta.<label>]      free key=value pairs (passed to hooks by RAUC)
//! ```
//!
//! The parser is strict: an unknown section or key, a repeated one, a
//! malformed line is an error naming the line. [`Manifest::to_string`]
//! writes a canonical form that parses back to the same value; the bundle
//! tool renders `ota/manifest.raucm.in` through it, and rewrites the
//! signed manifest's verity fields the same way.

use std::collections::BTreeMap;
use std::fmt;

/// What is wrong with a manifest, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// A line that is neither a section, a key=value pair, a comment nor
    /// blank; or a value that breaks the key file rules.
    #[error("manifest line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A section this parser does not know.
    #[error("manifest line {line}: unknown section [{section}]")]
    UnknownSection {
        /// 1-based line number.
        line: usize,
        /// The section's name.
        section: String,
    },
    /// A key the section does not have.
    #[error("manifest line {line}: unknown key {key:?} in [{section}]")]
    UnknownKey {
        /// 1-based line number.
        line: usize,
        /// The section.
        section: String,
        /// The key.
        key: String,
    },
    /// A section or key given twice.
    #[error("manifest line {line}: {what} given twice")]
    Duplicate {
        /// 1-based line number of the second one.
        line: usize,
        /// The section or key.
        what: String,
    },
    /// A required section or key is absent, or a value is invalid.
    #[error("manifest [{section}] {key}: {reason}")]
    Invalid {
        /// The section.
        section: String,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// `[bundle] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleFormat {
    /// Signature over the whole squashfs; RAUC 1.13 refuses plain bundles
    /// on the appliance (`bundle-formats=-plain`).
    Plain,
    /// dm-verity protected payload, signed manifest carries the root hash.
    Verity,
    /// Verity plus encryption.
    Crypt,
}

impl BundleFormat {
    /// The manifest's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Verity => "verity",
            Self::Crypt => "crypt",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "plain" => Some(Self::Plain),
            "verity" => Some(Self::Verity),
            "crypt" => Some(Self::Crypt),
            _ => None,
        }
    }
}

/// `[update]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// Must equal the system's compatible string.
    pub compatible: String,
    /// The bundle's version (see [`crate::version`]).
    pub version: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Free text (RAUC shows it; skytime writes the build's git describe).
    pub build: Option<String>,
}

/// The verity fields RAUC writes into the signed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verity {
    /// Root hash, 64 hex digits.
    pub hash: String,
    /// Salt, 64 hex digits.
    pub salt: String,
    /// Size of the hash tree in bytes.
    pub size: u64,
}

/// `[hooks]`: the bundle's hook executable and its bundle-wide hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    /// Path of the executable inside the bundle.
    pub filename: String,
    /// Whether RAUC runs it with `install-check` (the only bundle hook).
    pub install_check: bool,
}

/// The per-image hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImageHooks {
    /// `slot-pre-install` before the slot is written.
    pub pre_install: bool,
    /// `slot-install` instead of RAUC's own writer.
    pub install: bool,
    /// `slot-post-install` after it is written.
    pub post_install: bool,
}

/// `[image.<class>]` or `[image.<class>.<variant>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The slot class it is written to.
    pub slot_class: String,
    /// The variant it is for, if any.
    pub variant: Option<String>,
    /// File name inside the bundle.
    pub filename: String,
    /// SHA-256 of the file (written by `rauc bundle`).
    pub sha256: Option<String>,
    /// Size in bytes (written by `rauc bundle`).
    pub size: Option<u64>,
    /// Hooks for this image.
    pub hooks: ImageHooks,
}

/// A whole manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `[update]`.
    pub update: Update,
    /// `[bundle] format`; RAUC's default is plain.
    pub format: BundleFormat,
    /// `[bundle] verity-*`, present in a signed verity manifest.
    pub verity: Option<Verity>,
    /// `[hooks]`.
    pub hooks: Option<Hooks>,
    /// The images, in file order.
    pub images: Vec<Image>,
    /// `[meta.<label>]` sections.
    pub meta: BTreeMap<String, BTreeMap<String, String>>,
}

impl Manifest {
    /// The image for slot class `class` (any variant).
    pub fn image(&self, class: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.slot_class == class)
    }
}

/// Undoes GLib's value escapes.
fn unescape(raw: &str, line: usize) -> Result<String, ManifestError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                return Err(ManifestError::Syntax {
                    line,
                    reason: format!("unknown escape \\{other}"),
                })
            }
            None => {
                return Err(ManifestError::Syntax {
                    line,
                    reason: "value ends in a lone backslash".into(),
                })
            }
        }
    }
    Ok(out)
}

/// GLib's value escapes: a leading space, control characters, backslash.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            ' ' if i == 0 => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    // Trailing spaces would be trimmed by some readers: keep them.
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\s");
    }
    out
}

/// One `[section]` with its `key=value` pairs in order.
struct Section {
    name: String,
    line: usize,
    entries: Vec<(String, String, usize)>,
}

fn split_sections(text: &str) -> Result<Vec<Section>, ManifestError> {
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(rest) = l.strip_prefix('[') {
            let name = rest
                .trim_end()
                .strip_suffix(']')
                .filter(|n| !n.is_empty() && !n.contains(['[', ']']))
                .ok_or_else(|| ManifestError::Syntax {
                    line,
                    reason: format!("malformed section header {l:?}"),
                })?;
            if sections.iter().any(|s| s.name == name) {
                return Err(ManifestError::Duplicate {
                    line,
                    what: format!("section [{name}]"),
                });
            }
            sections.push(Section {
                name: name.to_owned(),
                line,
                entries: Vec::new(),
            });
            continue;
        }
        let (key, value) = l.split_once('=').ok_or_else(|| ManifestError::Syntax {
            line,
            reason: format!("expected key=value, found {l:?}"),
        })?;
        let key = key.trim_end();
        if key.is_empty() {
            return Err(ManifestError::Syntax {
                line,
                reason: "empty key".into(),
            });
        }
        let section = sections.last_mut().ok_or_else(|| ManifestError::Syntax {
            line,
            reason: format!("key {key:?} before any [section]"),
        })?;
        if section.entries.iter().any(|(k, _, _)| k == key) {
            return Err(ManifestError::Duplicate {
                line,
                what: format!("key {key:?} in [{}]", section.name),
            });
        }
        let value = unescape(value.trim_start(), line)?;
        section.entries.push((key.to_owned(), value, line));
    }
    Ok(sections)
}

/// Takes the known keys of a section out, refusing the rest.
struct Fields {
    section: String,
    values: BTreeMap<String, (String, usize)>,
}

impl Fields {
    fn new(s: Section, known: &[&str]) -> Result<Self, ManifestError> {
        let mut values = BTreeMap::new();
        for (k, v, line) in s.entries {
            if !known.contains(&k.as_str()) {
                return Err(ManifestError::UnknownKey {
                    line,
                    section: s.name.clone(),
                    key: k,
                });
            }
            values.insert(k, (v, line));
        }
        Ok(Self {
            section: s.name,
            values,
        })
    }

    fn take(&mut self, key: &str) -> Option<String> {
        self.values.remove(key).map(|(v, _)| v)
    }

    fn invalid(&self, key: &str, reason: impl Into<String>) -> ManifestError {
        ManifestError::Invalid {
            section: self.section.clone(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    fn required(&mut self, key: &str) -> Result<String, ManifestError> {
        match self.take(key) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(self.invalid(key, "required, and missing or empty")),
        }
    }

    fn number(&mut self, key: &str) -> Result<Option<u64>, ManifestError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| self.invalid(key, format!("{v:?} is not a byte count"))),
        }
    }

    fn list(&mut self, key: &str) -> Vec<String> {
        self.take(key)
            .map(|v| {
                v.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn hex64(f: &Fields, key: &str, v: String) -> Result<String, ManifestError> {
    if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(v)
    } else {
        Err(f.invalid(key, format!("{v:?} is not 64 hex digits")))
    }
}

impl std::str::FromStr for Manifest {
    type Err = ManifestError;

    fn from_str(text: &str) -> Result<Self, ManifestError> {
        let mut update = None;
        let mut format = BundleFormat::Plain;
        let mut verity = None;
        let mut hooks = None;
        let mut images = Vec::new();
        let mut meta = BTreeMap::new();
        for s in split_sections(text)? {
            let line = s.line;
            let name = s.name.clone();
            if name == "update" {
                let mut f = Fields::new(s, &["compatible", "version", "description", "build"])?;
                update = Some(Update {
                    compatible: f.required("compatible")?,
                    version: f.take("version"),
                    description: f.take("description"),
                    build: f.take("build"),
                });
            } else if name == "bundle" {
                let mut f =
                    Fields::new(s, &["format", "verity-hash", "verity-salt", "verity-size"])?;
                if let Some(v) = f.take("format") {
                    format = BundleFormat::parse(&v).ok_or_else(|| {
                        f.invalid("format", format!("{v:?} is not plain, verity or crypt"))
                    })?;
                }
                let hash = f.take("verity-hash");
                let salt = f.take("verity-salt");
                let size = f.number("verity-size")?;
                verity = match (hash, salt, size) {
                    (None, None, None) => None,
                    (Some(h), Some(s), Some(size)) => Some(Verity {
                        hash: hex64(&f, "verity-hash", h)?,
                        salt: hex64(&f, "verity-salt", s)?,
                        size,
                    }),
                    _ => {
                        return Err(f.invalid(
                            "verity-hash",
                            "verity-hash, verity-salt and verity-size go together",
                        ))
                    }
                };
            } else if name == "hooks" {
                let mut f = Fields::new(s, &["filename", "hooks"])?;
                let filename = f.required("filename")?;
                let mut install_check = false;
                for h in f.list("hooks") {
                    match h.as_str() {
                        "install-check" => install_check = true,
                        other => {
                            return Err(f.invalid(
                                "hooks",
                                format!("{other:?} is not a bundle hook (install-check)"),
                            ))
                        }
                    }
                }
                hooks = Some(Hooks {
                    filename,
                    install_check,
                });
            } else if let Some(rest) = name.strip_prefix("image.") {
                let (class, variant) = match rest.split_once('.') {
                    Some((c, v)) => (c.to_owned(), Some(v.to_owned())),
                    None => (rest.to_owned(), None),
                };
                if class.is_empty() || variant.as_deref() == Some("") {
                    return Err(ManifestError::Syntax {
                        line,
                        reason: format!("[{name}] names no slot class"),
                    });
                }
                let mut f = Fields::new(s, &["filename", "sha256", "size", "hooks"])?;
                let filename = f.required("filename")?;
                let sha256 = match f.take("sha256") {
                    Some(v) => Some(hex64(&f, "sha256", v)?),
                    None => None,
                };
                let size = f.number("size")?;
                let mut ih = ImageHooks::default();
                for h in f.list("hooks") {
                    match h.as_str() {
                        "pre-install" => ih.pre_install = true,
                        "install" => ih.install = true,
                        "post-install" => ih.post_install = true,
                        other => {
                            return Err(f.invalid(
                                "hooks",
                                format!(
                                "{other:?} is not a slot hook (pre-install, install, post-install)"
                            ),
                            ))
                        }
                    }
                }
                images.push(Image {
                    slot_class: class,
                    variant,
                    filename,
                    sha256,
                    size,
                    hooks: ih,
                });
            } else if let Some(label) = name.strip_prefix("meta.") {
                if label.is_empty() {
                    return Err(ManifestError::Syntax {
                        line,
                        reason: "[meta.] names no label".into(),
                    });
                }
                meta.insert(
                    label.to_owned(),
                    s.entries.into_iter().map(|(k, v, _)| (k, v)).collect(),
                );
            } else {
                return Err(ManifestError::UnknownSection {
                    line,
                    section: name,
                });
            }
        }
        let update = update.ok_or_else(|| ManifestError::Invalid {
            section: "update".into(),
            key: "compatible".into(),
            reason: "the [update] section is missing".into(),
        })?;
        Ok(Self {
            update,
            format,
            verity,
            hooks,
            images,
            meta,
        })
    }
}

impl fmt::Display for Manifest {
    /// The canonical form: sections in a fixed order, one key per line,
    /// lists with a trailing `;` as RAUC writes them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kv = |f: &mut fmt::Formatter<'_>, k: &str, v: &str| writeln!(f, "{k}={}", escape(v));
        writeln!(f, "[update]")?;
        kv(f, "compatible", &self.update.compatible)?;
        for (k, v) in [
            ("version", &self.update.version),
            ("description", &self.update.description),
            ("build", &self.update.build),
        ] {
            if let Some(v) = v {
                kv(f, k, v)?;
            }
        }
        writeln!(f, "\n[bundle]")?;
        kv(f, "format", self.format.as_str())?;
        if let Some(v) = &self.verity {
            kv(f, "verity-hash", &v.hash)?;
            kv(f, "verity-salt", &v.salt)?;
            kv(f, "verity-size", &v.size.to_string())?;
        }
        if let Some(h) = &self.hooks {
            writeln!(f, "\n[hooks]")?;
            kv(f, "filename", &h.filename)?;
            if h.install_check {
                kv(f, "hooks", "install-check;")?;
            }
        }
        for i in &self.images {
            match &i.variant {
                Some(v) => writeln!(f, "\n[image.{}.{v}]", i.slot_class)?,
                None => writeln!(f, "\n[image.{}]", i.slot_class)?,
            }
            kv(f, "filename", &i.filename)?;
            if let Some(s) = &i.sha256 {
                kv(f, "sha256", s)?;
            }
            if let Some(s) = i.size {
                kv(f, "size", &s.to_string())?;
            }
            let hooks: String = [
                (i.hooks.pre_install, "pre-install;"),
                (i.hooks.install, "install;"),
                (i.hooks.post_install, "post-install;"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, s)| *s)
            .collect();
            if !hooks.is_empty() {
                kv(f, "hooks", &hooks)?;
            }
        }
        for (label, pairs) in &self.meta {
            writeln!(f, "\n[meta.{label}]")?;
            for (k, v) in pairs {
                kv(f, k, v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The signed manifest of a verity bundle as RAUC 1.13's `rauc bundle`
    /// wrote it (extracted with `openssl cms -verify`).
    const RAUC_WRITTEN: &str = "[update]
compatible=skytime-rpi4
version=1.0.0

[bundle]
format=verity
verity-hash=a6c3379d1b17981fb7d003ac12af03ee3944af2e1082a59fc0bcb70dc46a5947
verity-salt=40b2da1ea5b4ee2029e13652c7edd69a2f016ea526511ef61e41b13411808997
verity-size=16384

[hooks]
filename=hook
hooks=install-check;

[image.rootfs]
sha256=4ff7e2fc1d7a988a232bafd94e70a2da08251c1be2a23954ed454ae2d2accb77
size=1048576
filename=rootfs.img

[image.bootfiles]
sha256=b602b50da7079207e30f96abd29c279433c4a44ca35f14d0155f2bb684447cb5
size=10240
filename=bootfiles.sha256
hooks=install;
";

    #[test]
    fn parses_what_rauc_writes() {
        let m: Manifest = RAUC_WRITTEN.parse().unwrap();
        assert_eq!(m.update.compatible, "skytime-rpi4");
        assert_eq!(m.update.version.as_deref(), Some("1.0.0"));
        assert_eq!(m.format, BundleFormat::Verity);
        assert_eq!(m.verity.as_ref().unwrap().size, 16384);
        assert!(m.hooks.as_ref().unwrap().install_check);
        assert_eq!(m.images.len(), 2);
        let b = m.image("bootfiles").unwrap();
        assert!(b.hooks.install && !b.hooks.post_install);
        assert_eq!(b.size, Some(10240));
        assert_eq!(m.image("rootfs").unwrap().filename, "rootfs.img");
        // Round trip through the canonical form.
        assert_eq!(m.to_string().parse::<Manifest>().unwrap(), m);
    }

    #[test]
    fn template_parses_once_rendered() {
        let t = include_str!("../manifest.raucm.in")
            .replace("@COMPATIBLE@", "skytime-rpi4")
            .replace("@VERSION@", "0.1.0+20250301.143000")
            .replace("@FORMAT@", "verity")
            .replace("@BUILD@", "v0.1.0-3-gabcdef");
        let m: Manifest = t.parse().unwrap();
        assert_eq!(m.update.compatible, "skytime-rpi4");
        assert!(m.image("rootfs").is_some() && m.image("bootfiles").is_some());
        assert!(m.hooks.unwrap().install_check);
    }

    #[test]
    fn errors_name_the_line_section_and_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[update]\ncompatible=x\nfoo=1\n",
                "line 3: unknown key \"foo\" in [update]",
            ),
            (
                "[update]\ncompatible=x\n[strange]\n",
                "line 3: unknown section [strange]",
            ),
            (
                "[update]\ncompatible=x\ncompatible=y\n",
                "line 3: key \"compatible\" in [update] given twice",
            ),
            (
                "[update]\ncompatible=x\n[update]\n",
                "line 3: section [update] given twice",
            ),
            (
                "compatible=x\n",
                "line 1: key \"compatible\" before any [section]",
            ),
            ("[update]\njust words\n", "line 2: expected key=value"),
            ("[update\n", "line 1: malformed section header"),
            ("[update]\ncompatible=a\\qb\n", "line 2: unknown escape \\q"),
            ("[update]\n", "[update] compatible: required"),
            (
                "[bundle]\nformat=plain\n",
                "the [update] section is missing",
            ),
            (
                "[update]\ncompatible=x\n[bundle]\nformat=zip\n",
                "[bundle] format: \"zip\" is not plain",
            ),
            (
                "[update]\ncompatible=x\n[bundle]\nverity-size=1\n",
                "go together",
            ),
            (
                "[update]\ncompatible=x\n[image.rootfs]\nfilename=r\nsize=big\n",
                "[image.rootfs] size: \"big\" is not a byte count",
            ),
            (
                "[update]\ncompatible=x\n[image.rootfs]\nfilename=r\nsha256=abc\n",
                "not 64 hex digits",
            ),
            (
                "[update]\ncompatible=x\n[image.rootfs]\nfilename=r\nhooks=install;later\n",
                "\"later\" is not a slot hook",
            ),
            (
                "[update]\ncompatible=x\n[image.rootfs]\nsize=1\n",
                "[image.rootfs] filename: required",
            ),
            (
                "[update]\ncompatible=x\n[hooks]\nfilename=h\nhooks=slot-install\n",
                "not a bundle hook",
            ),
            (
                "[update]\ncompatible=x\n[image.]\nfilename=r\n",
                "names no slot class",
            ),
        ];
        for (text, want) in cases {
            let e = text.parse::<Manifest>().unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn comments_blank_lines_variants_and_meta() {
        let m: Manifest = "# a comment\n\n[update]\n  compatible = x\n\n[image.rootfs.rpi4]\nfilename=r.img\n[meta.skytime]\nchannel=stable\n"
            .parse()
            .unwrap();
        assert_eq!(m.update.compatible, "x");
        assert_eq!(m.images[0].variant.as_deref(), Some("rpi4"));
        assert_eq!(m.meta["skytime"]["channel"], "stable");
        assert_eq!(m.to_string().parse::<Manifest>().unwrap(), m);
    }

    fn text() -> impl Strategy<Value = String> {
        "[ -~\\t\\n\\\\]{1,30}"
    }

    fn arb_manifest() -> impl Strategy<Value = Manifest> {
        let image = (
            "[a-z]{1,8}",
            proptest::option::of("[a-z0-9]{1,5}"),
            "[a-z0-9._-]{1,12}",
            proptest::option::of("[0-9a-f]{64}"),
            proptest::option::of(any::<u64>()),
            any::<(bool, bool, bool)>(),
        )
            .prop_map(
                |(slot_class, variant, filename, sha256, size, (a, b, c))| Image {
                    slot_class,
                    variant,
                    filename,
                    sha256,
                    size,
                    hooks: ImageHooks {
                        pre_install: a,
                        install: b,
                        post_install: c,
                    },
                },
            );
        (
            "[a-z0-9-]{1,20}",
            proptest::option::of(text()),
            proptest::option::of(text()),
            prop_oneof![
                Just(BundleFormat::Plain),
                Just(BundleFormat::Verity),
                Just(BundleFormat::Crypt)
            ],
            proptest::option::of(("[0-9a-f]{64}", "[0-9a-f]{64}", any::<u64>())),
            proptest::option::of(("[a-z]{1,8}", any::<bool>())),
            proptest::collection::vec(image, 0..4),
            proptest::collection::btree_map(
                "[a-z]{1,6}",
                proptest::collection::btree_map("[a-z]{1,6}", text(), 0..3),
                0..2,
            ),
        )
            .prop_map(
                |(compatible, version, description, format, verity, hooks, mut images, meta)| {
                    // Section names must be unique.
                    let mut seen = std::collections::BTreeSet::new();
                    images.retain(|i| seen.insert((i.slot_class.clone(), i.variant.clone())));
                    Manifest {
                        update: Update {
                            compatible,
                            version,
                            description,
                            build: None,
                        },
                        format,
                        verity: verity.map(|(hash, salt, size)| Verity { hash, salt, size }),
                        hooks: hooks.map(|(filename, install_check)| Hooks {
                            filename,
                            install_check,
                        }),
                        images,
                        meta,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn written_manifests_parse_back_unchanged(m in arb_manifest()) {
            let text = m.to_string();
            prop_assert_eq!(text.parse::<Manifest>().unwrap(), m);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(s in "\\PC{0,200}") {
            let _ = s.parse::<Manifest>();
        }
    }
}
