//! Leap seconds: the IERS/tzdata `leap-seconds.list` table, when to
//! announce a leap (LI) and arm the kernel, and the smear that clients who
//! want smeared time get instead.
//!
//! NMEA does not announce leap seconds, so the table (shipped with tzdata
//! as /usr/share/zoneinfo/leap-seconds.list) is the source. Its format:
//! data lines `NTP-seconds TAI-UTC # comment`, `#$ last-update`,
//! `#@ expiry` and `#h` with a SHA-1 over the digits of the update time,
//! the expiry and every data line. An expired table is still used for the
//! leaps it lists, but it cannot rule out an announced leap we do not know
//! about: the caller should warn.

use sha1::Digest;
use skytime_proto::smear::Smear;
use skytime_proto::{LeapIndicator, NtpDuration, NtpTimestamp};

/// Seconds in a UTC day (NTP seconds count days of 86400).
const DAY: u64 = 86_400;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LeapTableError {
    #[error("leap-seconds.list line {line}: {what}")]
    Syntax { line: usize, what: String },
    #[error("leap-seconds.list has no expiry line (#@)")]
    NoExpiry,
    #[error("leap-seconds.list has no hash line (#h)")]
    NoHash,
    #[error("leap-seconds.list hash does not match its contents: the file is damaged or edited")]
    HashMismatch,
    #[error("leap-seconds.list lists no leap seconds")]
    Empty,
    #[error("leap-seconds.list line {line}: TAI-UTC changes by {step}, not by one second")]
    BadStep { line: usize, step: i64 },
}

/// One entry: from NTP second `at` (a UTC midnight) on, TAI-UTC is `tai_utc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeapEntry {
    pub at: u64,
    pub tai_utc: i32,
}

/// A parsed and verified table.
#[derive(Clone, Debug, PartialEq)]
pub struct LeapTable {
    pub entries: Vec<LeapEntry>,
    /// NTP seconds of the last update and of the expiry.
    pub updated: u64,
    pub expires: u64,
}

/// The kind of an upcoming leap second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeapKind {
    Insert,
    Delete,
}

/// A leap second at the end of the UTC day that ends at NTP second `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leap {
    pub at: u64,
    pub kind: LeapKind,
}

impl LeapTable {
    pub fn parse(text: &str) -> Result<Self, LeapTableError> {
        let mut entries = Vec::new();
        let (mut updated, mut expires, mut hash) = (None, None, None);
        let mut digest_input = String::new();
        let mut data_digits = String::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let syntax = |what: &str| LeapTableError::Syntax {
                line,
                what: what.to_string(),
            };
            let l = raw.trim();
            if let Some(rest) = l.strip_prefix("#$") {
                updated = Some(
                    rest.trim()
                        .parse::<u64>()
                        .map_err(|_| syntax("bad last-update time"))?,
                );
            } else if let Some(rest) = l.strip_prefix("#@") {
                expires = Some(
                    rest.trim()
                        .parse::<u64>()
                        .map_err(|_| syntax("bad expiry time"))?,
                );
            } else if let Some(rest) = l.strip_prefix("#h") {
                let words: Result<Vec<u32>, _> = rest
                    .split_whitespace()
                    .map(|w| u32::from_str_radix(w, 16))
                    .collect();
                let words = words.map_err(|_| syntax("bad hash"))?;
                if words.len() != 5 {
                    return Err(syntax("hash must have five words"));
                }
                hash = Some([words[0], words[1], words[2], words[3], words[4]]);
            } else if l.is_empty() || l.starts_with('#') {
                continue;
            } else {
                let data = l.split('#').next().unwrap_or("");
                let mut it = data.split_whitespace();
                let at = it
                    .next()
                    .and_then(|w| w.parse::<u64>().ok())
                    .ok_or_else(|| syntax("expected NTP seconds"))?;
                let tai_utc = it
                    .next()
                    .and_then(|w| w.parse::<i32>().ok())
                    .ok_or_else(|| syntax("expected TAI-UTC"))?;
                if it.next().is_some() {
                    return Err(syntax("unexpected text after TAI-UTC"));
                }
                if at % DAY != 0 {
                    return Err(syntax("leap time is not a UTC midnight"));
                }
                if let Some(prev) = entries.last() {
                    let prev: &LeapEntry = prev;
                    if at <= prev.at {
                        return Err(syntax("entries are not in time order"));
                    }
                    let step = tai_utc as i64 - prev.tai_utc as i64;
                    if step.abs() != 1 {
                        return Err(LeapTableError::BadStep { line, step });
                    }
                }
                data_digits.push_str(&at.to_string());
                data_digits.push_str(&tai_utc.to_string());
                entries.push(LeapEntry { at, tai_utc });
            }
        }
        let expires = expires.ok_or(LeapTableError::NoExpiry)?;
        let hash = hash.ok_or(LeapTableError::NoHash)?;
        let updated = updated.unwrap_or(0);
        if entries.is_empty() {
            return Err(LeapTableError::Empty);
        }
        digest_input.push_str(&updated.to_string());
        digest_input.push_str(&expires.to_string());
        digest_input.push_str(&data_digits);
        if sha1(digest_input.as_bytes()) != hash {
            return Err(LeapTableError::HashMismatch);
        }
        Ok(Self {
            entries,
            updated,
            expires,
        })
    }

    /// Renders a table (with a correct hash) in the list's format; the
    /// simulator and tests use it to make tables with future leaps.
    pub fn render(entries: &[LeapEntry], updated: u64, expires: u64) -> String {
        let mut out = String::from("# leap-seconds.list (generated)\n");
        let mut digits = format!("{updated}{expires}");
        out.push_str(&format!("#$\t{updated}\n#@\t{expires}\n"));
        for e in entries {
            out.push_str(&format!("{}\t{}\n", e.at, e.tai_utc));
            digits.push_str(&format!("{}{}", e.at, e.tai_utc));
        }
        let h = sha1(digits.as_bytes());
        out.push_str(&format!(
            "#h\t{:08x} {:08x} {:08x} {:08x} {:08x}\n",
            h[0], h[1], h[2], h[3], h[4]
        ));
        out
    }

    pub fn is_expired(&self, now: NtpTimestamp) -> bool {
        now.seconds() as u64 >= self.expires
    }

    /// TAI-UTC at `now` (NTP seconds within the current era).
    pub fn tai_utc(&self, now: NtpTimestamp) -> i32 {
        let s = now.seconds() as u64;
        self.entries
            .iter()
            .take_while(|e| e.at <= s)
            .last()
            .map_or(self.entries[0].tai_utc, |e| e.tai_utc)
    }

    /// The first leap strictly after `now`, if the table lists one.
    pub fn next_leap(&self, now: NtpTimestamp) -> Option<Leap> {
        let s = now.seconds() as u64;
        let i = self.entries.iter().position(|e| e.at > s)?;
        if i == 0 {
            return None;
        }
        let kind = if self.entries[i].tai_utc > self.entries[i - 1].tai_utc {
            LeapKind::Insert
        } else {
            LeapKind::Delete
        };
        Some(Leap {
            at: self.entries[i].at,
            kind,
        })
    }

    /// The leap to announce and arm at `now`: one that happens at the end
    /// of the current UTC day. Announcing during the last day is what
    /// NTP servers do and what the kernel's STA_INS/STA_DEL expect (the
    /// kernel applies them at the next midnight).
    pub fn pending(&self, now: NtpTimestamp) -> Option<Leap> {
        let leap = self.next_leap(now)?;
        (now.seconds() as u64 + DAY >= leap.at).then_some(leap)
    }
}

impl Leap {
    pub fn indicator(self) -> LeapIndicator {
        match self.kind {
            LeapKind::Insert => LeapIndicator::InsertSecond,
            LeapKind::Delete => LeapIndicator::DeleteSecond,
        }
    }
}

/// How the daemon handles a leap second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LeapMode {
    /// The kernel inserts or deletes the second; replies announce it (LI).
    Step,
    /// The kernel still steps the system clock (so it stays UTC), but
    /// served timestamps carry a smear offset that spreads the second over
    /// `duration_s` centred on the leap, and replies announce nothing (a
    /// smearing server must not, or clients would apply it twice).
    Smear { shape: SmearShape, duration_s: f64 },
}

pub use skytime_proto::smear::SmearShape;

/// SHA-1 as the list's `#h` line writes it: five 32-bit words.
fn sha1(data: &[u8]) -> [u32; 5] {
    let d = sha1::Sha1::digest(data);
    std::array::from_fn(|i| {
        u32::from_be_bytes([d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]])
    })
}

impl Leap {
    /// The smear of this leap over `duration_s`, centred on it.
    pub fn smear(self, shape: SmearShape, duration_s: f64) -> Smear {
        Smear {
            leap_at: NtpTimestamp::from_seconds_fraction(self.at as u32, 0),
            insert: self.kind == LeapKind::Insert,
            shape,
            duration_s,
        }
    }
}

/// Offset to add to a system-clock timestamp `now` to get smeared time,
/// around `leap` (see [`Smear::offset`]).
pub fn smear_offset(
    leap: Leap,
    shape: SmearShape,
    duration_s: f64,
    now: NtpTimestamp,
    kernel_applied: bool,
) -> NtpDuration {
    leap.smear(shape, duration_s).offset(now, kernel_applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_2017: u64 = 3_692_217_600;

    fn table() -> LeapTable {
        let text = LeapTable::render(
            &[
                LeapEntry {
                    at: 3_644_697_600,
                    tai_utc: 36,
                },
                LeapEntry {
                    at: JAN_2017,
                    tai_utc: 37,
                },
            ],
            3_676_924_800,
            3_707_596_800,
        );
        LeapTable::parse(&text).unwrap()
    }

    #[test]
    fn system_tzdata_file_verifies() {
        // Debian ships it in tzdata; skip quietly only where it is absent.
        if let Ok(text) = std::fs::read_to_string("/usr/share/zoneinfo/leap-seconds.list") {
            let t = LeapTable::parse(&text).expect("the system table must parse and verify");
            assert_eq!(t.entries.first().unwrap().tai_utc, 10);
            assert!(t.entries.len() >= 28);
        }
    }

    #[test]
    fn damaged_table_is_refused() {
        let text = LeapTable::render(
            &[
                LeapEntry {
                    at: 3_644_697_600,
                    tai_utc: 36,
                },
                LeapEntry {
                    at: JAN_2017,
                    tai_utc: 37,
                },
            ],
            1,
            3_707_596_800,
        );
        let edited = text.replace("\t37", "\t38");
        assert!(matches!(
            LeapTable::parse(&edited),
            Err(LeapTableError::BadStep { .. }) | Err(LeapTableError::HashMismatch)
        ));
        let edited = text.replace("3707596800", "3707596801");
        assert_eq!(LeapTable::parse(&edited), Err(LeapTableError::HashMismatch));
        assert!(matches!(
            LeapTable::parse("garbage here\n"),
            Err(LeapTableError::Syntax { line: 1, .. })
        ));
        assert_eq!(
            LeapTable::parse(&text.replace("#@", "# ")),
            Err(LeapTableError::NoExpiry)
        );
    }

    #[test]
    fn pending_only_on_the_last_day() {
        let t = table();
        let two_days_before = NtpTimestamp::from_seconds_fraction((JAN_2017 - 2 * DAY) as u32, 0);
        assert_eq!(t.pending(two_days_before), None);
        assert_eq!(
            t.next_leap(two_days_before),
            Some(Leap {
                at: JAN_2017,
                kind: LeapKind::Insert
            })
        );
        let noon = NtpTimestamp::from_seconds_fraction((JAN_2017 - DAY / 2) as u32, 0);
        assert_eq!(
            t.pending(noon).map(|l| l.indicator()),
            Some(LeapIndicator::InsertSecond)
        );
        let after = NtpTimestamp::from_seconds_fraction(JAN_2017 as u32, 0);
        assert_eq!(t.pending(after), None);
        assert_eq!(t.tai_utc(after), 37);
        assert!(!t.is_expired(after));
    }

    #[test]
    fn smear_is_continuous_across_the_kernel_step() {
        let leap = Leap {
            at: JAN_2017,
            kind: LeapKind::Insert,
        };
        let w = 86_400.0;
        for shape in [SmearShape::Linear, SmearShape::Cosine] {
            let at = |s: f64| {
                NtpTimestamp::from_seconds_fraction(JAN_2017 as u32, 0)
                    + NtpDuration::from_seconds_f64(s)
            };
            // Just before midnight (not applied) and the repeated second
            // (applied, system clock set back by one): served time equal.
            let before = at(-0.001) + smear_offset(leap, shape, w, at(-0.001), false);
            let after = at(-1.0) + smear_offset(leap, shape, w, at(-1.0), true);
            let gap = (after - before).to_seconds_f64();
            assert!(gap > 0.0 && gap < 0.01, "{shape:?}: {gap}");
            // Window edges: no offset before, the full second after.
            assert_eq!(
                smear_offset(leap, shape, w, at(-w), false),
                NtpDuration::ZERO
            );
            assert!(
                smear_offset(leap, shape, w, at(w), true)
                    .to_seconds_f64()
                    .abs()
                    < 1e-9
            );
            let mid = smear_offset(leap, shape, w, at(-w / 4.0), false).to_seconds_f64();
            assert!(mid < -0.1 && mid > -0.5, "{shape:?}: {mid}");
        }
    }
}
