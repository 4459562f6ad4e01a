//! Server counters: what arrived, what was answered, what was dropped and
//! why. Lock-free so that counting costs nothing on the request path.

use skytime_proto::server::DropReason;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// NTP server counters, shared by every socket task.
#[derive(Debug, Default)]
pub struct ServerStats {
    received: AtomicU64,
    replied: AtomicU64,
    nts_replied: AtomicU64,
    nts_naks: AtomicU64,
    kernel_timestamps: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub received: u64,
    pub replied: u64,
    pub nts_replied: u64,
    pub nts_naks: u64,
    pub kernel_timestamps: u64,
    pub dropped: Vec<(&'static str, u64)>,
}

impl ServerStats {
    pub fn received(&self, kernel_timestamp: bool) {
        self.received.fetch_add(1, Relaxed);
        if kernel_timestamp {
            self.kernel_timestamps.fetch_add(1, Relaxed);
        }
    }

    pub fn replied(&self) {
        self.replied.fetch_add(1, Relaxed);
    }

    pub fn nts_replied(&self) {
        self.nts_replied.fetch_add(1, Relaxed);
    }

    pub fn nts_nak(&self) {
        self.nts_naks.fetch_add(1, Relaxed);
    }

    pub fn dropped(&self, reason: DropReason) {
        self.dropped[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            received: self.received.load(Relaxed),
            replied: self.replied.load(Relaxed),
            nts_replied: self.nts_replied.load(Relaxed),
            nts_naks: self.nts_naks.load(Relaxed),
            kernel_timestamps: self.kernel_timestamps.load(Relaxed),
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), self.dropped[r.index()].load(Relaxed)))
                .collect(),
        }
    }
}

impl StatsSnapshot {
    pub fn total_dropped(&self) -> u64 {
        self.dropped.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for StatsSnapshot {
    /// One line, `key=value` pairs, so logs stay greppable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} replied={} nts_replied={} nts_naks={} kernel_timestamps={} dropped={}",
            self.received,
            self.replied,
            self.nts_replied,
            self.nts_naks,
            self.kernel_timestamps,
            self.total_dropped()
        )?;
        for (name, n) in &self.dropped {
            if *n > 0 {
                write!(f, " dropped_{name}={n}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_and_prints_nonzero_ones() {
        let s = ServerStats::default();
        s.received(true);
        s.received(false);
        s.dropped(DropReason::TooShort);
        s.dropped(DropReason::TooShort);
        s.dropped(DropReason::AccessDenied);
        s.replied();
        let snap = s.snapshot();
        assert_eq!(snap.received, 2);
        assert_eq!(snap.kernel_timestamps, 1);
        assert_eq!(snap.total_dropped(), 3);
        let line = snap.to_string();
        assert!(line.contains("dropped_too_short=2"), "{line}");
        assert!(line.contains("dropped_access_denied=1"), "{line}");
        assert!(!line.contains("dropped_bad_version"), "{line}");
    }
}
