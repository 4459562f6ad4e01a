//! The soak's verdicts, as pure decisions on the samples the run took:
//! resource growth from a series, counters that went backwards between
//! two snapshots, and served replies that claimed synchronization while
//! skytimed's own tracking said it was not synchronized. No I/O here, so
//! each failure mode is proven to trigger by the unit tests below.

use skytime_api::ServerReport;
use std::collections::{BTreeMap, VecDeque};

/// A resource watched for growth, with its bound.
#[derive(Clone, Copy, Debug)]
pub struct Resource {
    pub name: &'static str,
    pub unit: &'static str,
    /// Largest growth allowed from the warm-up to the end.
    pub bound: u64,
}

/// The median of `v` (the upper one of an even count); `None` if empty.
fn median(v: &[u64]) -> Option<u64> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied()
}

/// What the series says: its level just after the warm-up and at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels {
    pub warm: u64,
    pub end: u64,
}

/// The level of `samples` after the first `warmup` (median of the next
/// `window`) and at the end (median of the last `window`). Medians, so
/// that a moment of work in flight (a key exchange, a blocking-pool
/// thread) is not taken for growth. `None` if no sample follows the
/// warm-up.
pub fn levels(samples: &[u64], warmup: usize, window: usize) -> Option<Levels> {
    let after = samples.get(warmup..).filter(|s| !s.is_empty())?;
    let w = window.clamp(1, after.len());
    Some(Levels {
        warm: median(&after[..w])?,
        end: median(&after[after.len() - w..])?,
    })
}

/// The failure message when `samples` grew by more than the bound of
/// `res` from the warm-up to the end.
pub fn growth_failure(
    res: &Resource,
    samples: &[u64],
    warmup: usize,
    window: usize,
) -> Option<String> {
    let Some(l) = levels(samples, warmup, window) else {
        return Some(format!("{}: no sample after the warm-up", res.name));
    };
    (l.end > l.warm + res.bound).then(|| {
        format!(
            "{} grew from {} to {}{u} (bound: +{}{u})",
            res.name,
            l.warm,
            l.end,
            res.bound,
            u = res.unit
        )
    })
}

/// Every counter of a statistics record by name; gauges (NTS-KE
/// connections open now) are left out: they go down by design.
pub fn counters(r: &ServerReport) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::from([
        ("ntp_received".to_owned(), r.ntp_received),
        ("ntp_replied".to_owned(), r.ntp_replied),
        ("ntp_dropped".to_owned(), r.ntp_dropped),
        ("ntp_kernel_timestamps".to_owned(), r.ntp_kernel_timestamps),
        ("ntp_rate_kods".to_owned(), r.ntp_rate_kods),
        ("nts_authenticated".to_owned(), r.nts_authenticated),
        ("key_authenticated".to_owned(), r.key_authenticated),
        ("key_crypto_naks".to_owned(), r.key_crypto_naks),
        ("nts_naks".to_owned(), r.nts_naks),
        ("nts_ke_accepted".to_owned(), r.nts_ke_accepted),
        ("nts_ke_dropped".to_owned(), r.nts_ke_dropped),
    ]);
    for (k, v) in &r.ntp_dropped_by_reason {
        m.insert(format!("ntp_dropped_by_reason.{k}"), *v);
    }
    for (k, v) in &r.nts_counters {
        m.insert(format!("nts_counters.{k}"), *v);
    }
    m
}

/// The counters that went backwards from `before` to `after`, as
/// "name: a -> b". A counter that disappears went back to 0 (records
/// may leave out the zero ones, never a counted one).
pub fn backwards(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<String> {
    before
        .iter()
        .filter_map(|(k, &a)| {
            let b = after.get(k).copied().unwrap_or(0);
            (b < a).then(|| format!("{k}: {a} -> {b}"))
        })
        .collect()
}

/// Whether a reply's header claims synchronization: leap indicator not 3
/// (alarm) and a stratum of a synchronized server (1 to 15).
pub fn claims_sync(leap_indicator: u8, stratum: u8) -> bool {
    leap_indicator != 3 && (1..=15).contains(&stratum)
}

/// One reading of skytimed's tracking: the call started and ended at
/// these times (seconds since the run began, on a monotonic clock).
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub start: f64,
    pub end: f64,
    pub synchronized: bool,
}

/// One served reply: the request left at `sent`, the reply came back at
/// `received` (same clock as [`Reading`]).
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub sent: f64,
    pub received: f64,
    pub claims_sync: bool,
}

/// How long readings are kept to judge replies that come late to the
/// checker (they come from other threads through channels): far more
/// than a request's timeout.
const KEEP_READINGS_S: f64 = 60.0;

/// The synchronization-claim check, fed readings (from one thread, in
/// order) and replies (in any order).
///
/// The rule: a reply that claims synchronization fails the soak when
/// tracking said "not synchronized" in the last reading that ended
/// before its request was sent, in the first reading that started after
/// it came back, and in every reading between them. The server's state
/// may change between a reading and the reply (the race), so a claim
/// with a synchronized reading on either side, or any in between, is
/// allowed. What the rule cannot see is a state that goes unsynchronized
/// -> synchronized -> unsynchronized between two readings (a quarter of
/// a second apart); skytimed does not do that: losing synchronization
/// takes its source timeout plus the holdover limit.
#[derive(Debug, Default)]
pub struct SyncClaims {
    readings: VecDeque<Reading>,
    pending: Vec<Reply>,
    /// Replies judged, and of them the ones that claimed synchronization.
    pub judged: u64,
    pub claims: u64,
    /// Replies with no reading before them (the first moments, or later
    /// than the readings kept): not judged.
    pub unjudged: u64,
    /// Replies judged while tracking said synchronized on at least one
    /// side, and while it said unsynchronized throughout.
    pub while_synchronized: u64,
    pub while_unsynchronized: u64,
    pub violations: Vec<String>,
}

impl SyncClaims {
    pub fn reading(&mut self, r: Reading) {
        self.readings.push_back(r);
        while self
            .readings
            .front()
            .is_some_and(|f| f.end < r.start - KEEP_READINGS_S)
        {
            self.readings.pop_front();
        }
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            self.reply(p);
        }
    }

    pub fn reply(&mut self, p: Reply) {
        let before = self.readings.iter().rposition(|r| r.end <= p.sent);
        let after = self.readings.iter().position(|r| r.start >= p.received);
        match (before, after) {
            (None, _) => self.unjudged += 1,
            (Some(_), None) => self.pending.push(p),
            (Some(a), Some(b)) => {
                self.judged += 1;
                let synced = self.readings.range(a..=b).any(|r| r.synchronized);
                if synced {
                    self.while_synchronized += 1;
                } else {
                    self.while_unsynchronized += 1;
                }
                if p.claims_sync {
                    self.claims += 1;
                    if !synced {
                        self.violations.push(format!(
                            "a reply received at {:.3} s (request sent at {:.3} s) claimed synchronization; tracking said not synchronized from {:.3} s to {:.3} s",
                            p.received, p.sent, self.readings[a].start, self.readings[b].end
                        ));
                    }
                }
            }
        }
    }

    /// Replies still waiting for a reading after them when the run ends.
    pub fn finish(&mut self) {
        self.unjudged += self.pending.len() as u64;
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSS: Resource = Resource {
        name: "RSS",
        unit: " KiB",
        bound: 100,
    };

    #[test]
    fn growth_within_the_bound_passes_and_beyond_it_fails() {
        // Warm-up (ignored), then flat with a spike at the end.
        let flat = [1, 5, 1000, 1010, 990, 1005, 5000, 1020, 1000];
        assert_eq!(growth_failure(&RSS, &flat, 2, 3), None);
        assert_eq!(
            levels(&flat, 2, 3),
            Some(Levels {
                warm: 1000,
                end: 1020
            })
        );
        let leak = [1, 5, 1000, 1010, 1050, 1080, 1101, 1150, 1200];
        let msg = growth_failure(&RSS, &leak, 2, 3).expect("a leak fails");
        assert!(msg.contains("1010 to 1150 KiB"), "{msg}");
        // Exactly at the bound passes; one more fails.
        assert_eq!(growth_failure(&RSS, &[0, 1000, 1100], 1, 1), None);
        assert!(growth_failure(&RSS, &[0, 1000, 1101], 1, 1).is_some());
        // Nothing after the warm-up is a failure, not a pass.
        assert!(growth_failure(&RSS, &[1, 2], 2, 3).is_some());
    }

    #[test]
    fn counters_going_backwards_are_named_and_gauges_ignored() {
        let mut r = ServerReport {
            ntp_received: 10,
            nts_ke_active: 5,
            ..ServerReport::default()
        };
        r.ntp_dropped_by_reason.insert("too_short".into(), 3);
        r.nts_counters.insert("key_rotations".into(), 2);
        let before = counters(&r);
        assert!(!before.contains_key("nts_ke_active"));
        r.nts_ke_active = 0;
        r.ntp_received = 11;
        assert!(backwards(&before, &counters(&r)).is_empty());
        r.nts_counters.insert("key_rotations".into(), 1);
        r.ntp_dropped_by_reason.clear();
        assert_eq!(
            backwards(&before, &counters(&r)),
            vec![
                "ntp_dropped_by_reason.too_short: 3 -> 0".to_owned(),
                "nts_counters.key_rotations: 2 -> 1".to_owned(),
            ]
        );
    }

    #[test]
    fn claims_are_leap_indicator_not_3_and_a_synchronized_stratum() {
        assert!(claims_sync(0, 1));
        assert!(claims_sync(1, 1));
        assert!(claims_sync(0, 10));
        assert!(!claims_sync(3, 1));
        assert!(!claims_sync(0, 16));
        assert!(!claims_sync(3, 16));
        // A kiss-o'-death is stratum 0.
        assert!(!claims_sync(0, 0));
    }

    fn reading(start: f64, synchronized: bool) -> Reading {
        Reading {
            start,
            end: start + 0.01,
            synchronized,
        }
    }

    fn reply(sent: f64, claims_sync: bool) -> Reply {
        Reply {
            sent,
            received: sent + 0.001,
            claims_sync,
        }
    }

    #[test]
    fn a_claim_while_unsynchronized_on_both_sides_fails() {
        let mut c = SyncClaims::default();
        c.reading(reading(0.0, false));
        c.reply(reply(0.1, true));
        c.reading(reading(0.25, false));
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        assert_eq!((c.judged, c.claims, c.while_unsynchronized), (1, 1, 1));
    }

    #[test]
    fn the_race_at_a_transition_is_allowed_either_way() {
        let mut c = SyncClaims::default();
        // Synchronized before, not after: the reply may predate the loss.
        c.reading(reading(0.0, true));
        c.reply(reply(0.1, true));
        c.reading(reading(0.25, false));
        // Not before, synchronized after: it may follow the lock.
        c.reply(reply(0.3, true));
        c.reading(reading(0.5, true));
        // An honest "unsynchronized" reply is never a violation.
        c.reply(reply(0.6, false));
        c.reading(reading(0.75, false));
        c.finish();
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        assert_eq!((c.judged, c.claims), (3, 2));
    }

    #[test]
    fn a_synchronized_reading_inside_a_long_exchange_allows_it() {
        let mut c = SyncClaims::default();
        c.reading(reading(0.0, false));
        c.reading(reading(0.25, true));
        c.reading(reading(0.5, false));
        c.reply(Reply {
            sent: 0.1,
            received: 0.45,
            claims_sync: true,
        });
        assert!(c.violations.is_empty());
        assert_eq!(c.judged, 1);
    }

    #[test]
    fn replies_wait_for_a_later_reading_and_unjudged_ones_are_counted() {
        let mut c = SyncClaims::default();
        // Before any reading: cannot be judged.
        c.reply(reply(0.0, true));
        c.reading(reading(1.0, false));
        // No reading after it yet: judged when one comes.
        c.reply(reply(1.1, true));
        assert_eq!((c.judged, c.unjudged), (0, 1));
        c.reading(reading(1.25, false));
        assert_eq!(c.judged, 1);
        assert_eq!(c.violations.len(), 1);
        // One left waiting at the end is unjudged.
        c.reply(reply(1.3, true));
        c.finish();
        assert_eq!((c.judged, c.unjudged), (1, 2));
    }

    #[test]
    fn old_readings_are_dropped_and_memory_stays_bounded() {
        let mut c = SyncClaims::default();
        for i in 0..10_000 {
            c.reading(reading(i as f64 * 0.25, true));
        }
        assert!(c.readings.len() <= (KEEP_READINGS_S / 0.25) as usize + 2);
    }
}
