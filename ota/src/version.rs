//! Bundle and system versions, and the version policy.
//!
//! # Format
//!
//! `MAJOR.MINOR.PATCH[-PRERELEASE]+YYYYMMDD.HHMMSS`, for example
//! `0.2.0+20250301.143000` or `1.0.0-rc.1+20250610.090000`:
//!
//! - the semantic version is the workspace's (`Cargo.toml`), with the
//!   usual rules: no leading zeros in numbers; pre-release identifiers are
//!   dot-separated `[0-9A-Za-z]+` (no `-` inside them: RAUC's own parser
//!   splits the pre-release at the *last* hyphen, so `rc-1` would mean
//!   something else to it);
//! - the build part is the build's UTC date and time (from
//!   `SOURCE_DATE_EPOCH`, so a rebuild of the same sources names the same
//!   version), and it is required.
//!
//! # Order
//!
//! Semantic-version precedence first (a pre-release sorts before its
//! release, identifiers compare numerically or in ASCII order, numeric
//! before alphanumeric, a longer list after its prefix), then the build
//! time: of two builds of the same semantic version the later one is newer.
//! Semver itself ignores build metadata; RAUC does too, so RAUC's
//! `min-bundle-version` (a hard floor in `system.conf`) compares the
//! semantic part only.
//!
//! # Policy
//!
//! [`check_upgrade`]: a bundle must be newer than the running system. An
//! equal version is refused as well: reinstalling what runs gains nothing,
//! and a request that repeats the last one (a retry, a double click) then
//! costs a clear message instead of a reboot. The operator can force both
//! (to downgrade after a bad release, or to rewrite the other slot with
//! the same version); the floor in `system.conf` cannot be forced.

use skytime_refclock::gpstime::{civil_from_days, days_from_civil};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a version string is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("version {input:?}: {reason} (expected MAJOR.MINOR.PATCH[-PRE]+YYYYMMDD.HHMMSS, e.g. 0.2.0+20250301.143000)")]
pub struct VersionError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One pre-release identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PreRelease {
    /// Digits only: compared as numbers.
    Numeric(u64),
    /// Letters or mixed: compared in ASCII order.
    Alpha(String),
}

impl Ord for PreRelease {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Numeric(a), Self::Numeric(b)) => a.cmp(b),
            (Self::Numeric(_), Self::Alpha(_)) => Ordering::Less,
            (Self::Alpha(_), Self::Numeric(_)) => Ordering::Greater,
            (Self::Alpha(a), Self::Alpha(b)) => a.as_bytes().cmp(b.as_bytes()),
        }
    }
}

impl PartialOrd for PreRelease {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A build's UTC date and time, to the second. Fields in order of
/// significance, so the derived order is chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildStamp {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl BuildStamp {
    /// The stamp of a Unix time (seconds, UTC), for years 1970..=9999.
    pub fn from_unix(secs: i64) -> Option<Self> {
        if !(0..=253_402_300_799).contains(&secs) {
            return None;
        }
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400);
        Some(Self {
            year: y as u16,
            month: m as u8,
            day: d as u8,
            hour: (s / 3600) as u8,
            minute: (s / 60 % 60) as u8,
            second: (s % 60) as u8,
        })
    }

    /// Unix seconds of this stamp.
    pub fn unix(&self) -> i64 {
        days_from_civil(i64::from(self.year), self.month.into(), self.day.into()) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    fn parse(s: &str) -> Result<Self, String> {
        let (date, time) = s
            .split_once('.')
            .ok_or_else(|| format!("build part {s:?} is not YYYYMMDD.HHMMSS"))?;
        if date.len() != 8
            || time.len() != 6
            || !(date.bytes().chain(time.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(format!("build part {s:?} is not YYYYMMDD.HHMMSS"));
        }
        let n = |t: &str| t.parse::<u16>().unwrap_or(0);
        let stamp = Self {
            year: n(&date[0..4]),
            month: n(&date[4..6]) as u8,
            day: n(&date[6..8]) as u8,
            hour: n(&time[0..2]) as u8,
            minute: n(&time[2..4]) as u8,
            second: n(&time[4..6]) as u8,
        };
        // A real date and time: the round trip through Unix time keeps it.
        let valid = stamp.year >= 1970
            && (1..=12).contains(&stamp.month)
            && (1..=31).contains(&stamp.day)
            && stamp.hour < 24
            && stamp.minute < 60
            && stamp.second < 60
            && Self::from_unix(stamp.unix()) == Some(stamp);
        if valid {
            Ok(stamp)
        } else {
            Err(format!(
                "build part {s:?} is not a real UTC date and time (1970 or later)"
            ))
        }
    }
}

impl fmt::Display for BuildStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}{:02}{:02}.{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// A bundle's or system's version; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// MAJOR, MINOR, PATCH.
    pub core: [u64; 3],
    /// Pre-release identifiers; empty for a release.
    pub pre: Vec<PreRelease>,
    /// When it was built.
    pub build: BuildStamp,
}

impl Version {
    /// The version of a build of semantic version `semver` (no build part)
    /// at Unix time `epoch`: what the bundle script names a bundle.
    pub fn from_semver_and_epoch(semver: &str, epoch: i64) -> Result<Self, VersionError> {
        let build = BuildStamp::from_unix(epoch).ok_or_else(|| VersionError {
            input: semver.to_owned(),
            reason: format!("build time {epoch} is outside 1970..9999"),
        })?;
        if semver.contains('+') {
            return Err(VersionError {
                input: semver.to_owned(),
                reason: "give the semantic version without a build part".into(),
            });
        }
        let (core, pre) = parse_semver(semver).map_err(|reason| VersionError {
            input: semver.to_owned(),
            reason,
        })?;
        Ok(Self { core, pre, build })
    }

    /// The semantic version without the build part (what RAUC compares
    /// with `min-bundle-version`).
    pub fn semver(&self) -> String {
        let mut s = format!("{}.{}.{}", self.core[0], self.core[1], self.core[2]);
        for (i, p) in self.pre.iter().enumerate() {
            s.push(if i == 0 { '-' } else { '.' });
            match p {
                PreRelease::Numeric(n) => s.push_str(&n.to_string()),
                PreRelease::Alpha(a) => s.push_str(a),
            }
        }
        s
    }
}

fn parse_number(s: &str, what: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {s:?} is not a number"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!("{what} {s:?} has a leading zero"));
    }
    s.parse().map_err(|_| format!("{what} {s:?} is too large"))
}

fn parse_semver(s: &str) -> Result<([u64; 3], Vec<PreRelease>), String> {
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (s, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 {
        return Err(format!("{core:?} is not MAJOR.MINOR.PATCH"));
    }
    let mut nums = [0u64; 3];
    for (n, (part, what)) in nums
        .iter_mut()
        .zip(parts.iter().zip(["major", "minor", "patch"]))
    {
        *n = parse_number(part, what)?;
    }
    let mut ids = Vec::new();
    if let Some(pre) = pre {
        for id in pre.split('.') {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!(
                    "pre-release identifier {id:?} must be letters and digits only"
                ));
            }
            if id.bytes().all(|b| b.is_ascii_digit()) {
                ids.push(PreRelease::Numeric(parse_number(id, "pre-release number")?));
            } else {
                ids.push(PreRelease::Alpha(id.to_owned()));
            }
        }
    }
    Ok((nums, ids))
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| VersionError {
            input: s.to_owned(),
            reason,
        };
        let (semver, build) = s
            .split_once('+')
            .ok_or_else(|| err("no build part (+YYYYMMDD.HHMMSS)".into()))?;
        let (core, pre) = parse_semver(semver).map_err(err)?;
        let build = BuildStamp::parse(build).map_err(err)?;
        Ok(Self { core, pre, build })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.semver(), self.build)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core
            .cmp(&other.core)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                // Vec's order is the semver rule: element-wise, then a
                // longer list after its prefix.
                (false, false) => self.pre.cmp(&other.pre),
            })
            .then_with(|| self.build.cmp(&other.build))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Why the version policy refuses a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The bundle is older than the running system.
    #[error("bundle version {bundle} is older than the running system's {running}; force the install to downgrade")]
    Older {
        /// The bundle's version.
        bundle: Version,
        /// The running system's version.
        running: Version,
    },
    /// The bundle has the running system's version.
    #[error("bundle version {bundle} is the version already running; force the install to write it again")]
    Same {
        /// The bundle's (and running system's) version.
        bundle: Version,
    },
    /// The bundle's version cannot be read.
    #[error("bundle has no valid version: {0}")]
    BadBundleVersion(VersionError),
    /// The running system's version cannot be read, so nothing can be
    /// compared with it.
    #[error("the running system's version is unknown ({0}); force the install to proceed anyway")]
    UnknownRunning(String),
}

/// The version policy: may a bundle with version `bundle` replace a system
/// running `running` (or whose version could not be read: `Err(why)`)?
/// `force` lifts every refusal but a bundle version that does not parse.
pub fn check_upgrade(
    bundle: &str,
    running: Result<&Version, &str>,
    force: bool,
) -> Result<Version, Refusal> {
    let bundle: Version = bundle.parse().map_err(Refusal::BadBundleVersion)?;
    if force {
        return Ok(bundle);
    }
    let running = running.map_err(|why| Refusal::UnknownRunning(why.to_owned()))?;
    match bundle.cmp(running) {
        Ordering::Greater => Ok(bundle),
        Ordering::Equal => Err(Refusal::Same { bundle }),
        Ordering::Less => Err(Refusal::Older {
            bundle,
            running: running.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_the_documented_examples() {
        for s in [
            "0.2.0+20250301.143000",
            "1.0.0-rc.1+20250610.090000",
            "10.20.30-alpha.beta.7+19700101.000000",
        ] {
            assert_eq!(v(s).to_string(), s);
        }
        let x = v("1.0.0-rc.1+20250610.090000");
        assert_eq!(x.core, [1, 0, 0]);
        assert_eq!(
            x.pre,
            vec![PreRelease::Alpha("rc".into()), PreRelease::Numeric(1)]
        );
        assert_eq!(x.semver(), "1.0.0-rc.1");
    }

    #[test]
    fn semver_precedence_then_build_time() {
        // The semver.org example chain, all built at the same time.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
        ];
        for w in chain.windows(2) {
            let a = v(&format!("{}+20250101.000000", w[0]));
            let b = v(&format!("{}+20250101.000000", w[1]));
            assert!(a < b, "{a} < {b}");
        }
        // Same semver: the later build is newer; semver beats build time.
        assert!(v("0.1.0+20250101.000000") < v("0.1.0+20250101.000001"));
        assert!(v("0.1.0+20991231.235959") < v("0.1.1+19700101.000000"));
        assert!(v("0.2.0-rc.1+20260101.000000") < v("0.2.0+20250101.000000"));
        assert_eq!(
            v("0.1.0+20250101.000000").cmp(&v("0.1.0+20250101.000000")),
            Ordering::Equal
        );
    }

    #[test]
    fn rejects_what_is_not_the_format_with_the_reason() {
        for (s, why) in [
            ("0.1.0", "no build part"),
            ("0.1+20250101.000000", "MAJOR.MINOR.PATCH"),
            ("0.1.0.1+20250101.000000", "MAJOR.MINOR.PATCH"),
            ("01.1.0+20250101.000000", "leading zero"),
            ("0.1.0-rc-1+20250101.000000", "letters and digits only"),
            ("0.1.0-+20250101.000000", "letters and digits only"),
            ("0.1.0-rc.01+20250101.000000", "leading zero"),
            ("0.1.0+20250230.000000", "real UTC date"),
            ("0.1.0+20251301.000000", "real UTC date"),
            ("0.1.0+20250101.240000", "real UTC date"),
            ("0.1.0+20250101.000060", "real UTC date"),
            ("0.1.0+19691231.235959", "real UTC date"),
            ("0.1.0+2025010.1000000", "YYYYMMDD.HHMMSS"),
            ("0.1.0+20250101", "YYYYMMDD.HHMMSS"),
            ("a.b.c+20250101.000000", "not a number"),
            ("", "no build part"),
            ("99999999999999999999.0.0+20250101.000000", "too large"),
        ] {
            let e = s.parse::<Version>().unwrap_err();
            assert!(e.reason.contains(why), "{s:?}: {e}");
            assert!(e.to_string().contains("expected MAJOR.MINOR.PATCH"));
        }
        assert!(
            "0.1.0+20240229.120000".parse::<Version>().is_ok(),
            "leap day"
        );
    }

    #[test]
    fn version_from_semver_and_epoch() {
        let x = Version::from_semver_and_epoch("0.1.0", 1_740_839_400).unwrap();
        assert_eq!(x.to_string(), "0.1.0+20250301.143000");
        assert_eq!(x.build.unix(), 1_740_839_400);
        assert!(Version::from_semver_and_epoch("0.1.0+x", 0).is_err());
        assert!(Version::from_semver_and_epoch("0.1.0", -1).is_err());
        assert!(Version::from_semver_and_epoch("0.1", 0).is_err());
    }

    #[test]
    fn policy_refuses_older_and_equal_unless_forced() {
        let running = v("0.2.0+20250301.000000");
        let r = Ok(&running);
        assert!(check_upgrade("0.2.1+20250101.000000", r, false).is_ok());
        assert!(check_upgrade("0.2.0+20250301.000001", r, false).is_ok());
        let e = check_upgrade("0.1.9+20260101.000000", r, false).unwrap_err();
        assert!(matches!(e, Refusal::Older { .. }));
        assert!(e
            .to_string()
            .contains("older than the running system's 0.2.0+20250301.000000"));
        assert!(matches!(
            check_upgrade("0.2.0+20250301.000000", r, false),
            Err(Refusal::Same { .. })
        ));
        assert!(check_upgrade("0.1.9+20260101.000000", r, true).is_ok());
        assert!(check_upgrade("0.2.0+20250301.000000", r, true).is_ok());
        // Unknown running version: refused unless forced.
        assert!(matches!(
            check_upgrade("0.3.0+20250301.000000", Err("no IMAGE_VERSION"), false),
            Err(Refusal::UnknownRunning(_))
        ));
        assert!(check_upgrade("0.3.0+20250301.000000", Err("no IMAGE_VERSION"), true).is_ok());
        // A bundle version that does not parse is refused even when forced.
        assert!(matches!(
            check_upgrade("latest", r, true),
            Err(Refusal::BadBundleVersion(_))
        ));
    }

    fn arb_version() -> impl Strategy<Value = Version> {
        let pre = prop_oneof![
            (0u64..20).prop_map(PreRelease::Numeric),
            "[a-z][a-z0-9]{0,3}".prop_map(PreRelease::Alpha),
        ];
        (
            [0u64..4, 0u64..4, 0u64..4],
            proptest::collection::vec(pre, 0..3),
            0i64..4_102_444_800,
        )
            .prop_map(|(core, pre, secs)| Version {
                core,
                pre,
                build: BuildStamp::from_unix(secs).unwrap(),
            })
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(x in arb_version()) {
            let s = x.to_string();
            prop_assert_eq!(s.parse::<Version>().unwrap(), x);
        }

        #[test]
        fn order_is_total_and_consistent(a in arb_version(), b in arb_version(), c in arb_version()) {
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a.cmp(&b) == Ordering::Equal, a == b);
            if a <= b && b <= c {
                prop_assert!(a <= c);
            }
        }

        #[test]
        fn build_stamp_unix_round_trip(secs in 0i64..253_402_300_800) {
            let s = BuildStamp::from_unix(secs).unwrap();
            prop_assert_eq!(s.unix(), secs);
            prop_assert_eq!(BuildStamp::parse(&s.to_string()).unwrap(), s);
        }

        #[test]
        fn garbage_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Version>();
        }
    }
}
