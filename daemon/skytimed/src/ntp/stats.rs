//! Server counters: what arrived, what was answered, what was dropped and
//! why.
//!
//! Each server thread counts in its own [`ThreadStats`], which only that
//! thread writes (a plain load and store, no locked instruction, no cache
//! line shared between cores); [`ServerStats`] adds them up when asked.

use skytime_proto::server::DropReason;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// One server thread's counters. Written by that thread only.
#[derive(Debug, Default)]
pub struct ThreadStats {
    received: AtomicU64,
    replied: AtomicU64,
    nts_replied: AtomicU64,
    nts_naks: AtomicU64,
    /// RATE kiss-o'-death replies to clients over the rate limit.
    rate_kods: AtomicU64,
    /// Replies MAC'd with a symmetric key, and crypto-NAKs (unknown key).
    key_replied: AtomicU64,
    crypto_naks: AtomicU64,
    kernel_timestamps: AtomicU64,
    interleaved: AtomicU64,
    kernel_tx_timestamps: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    /// Clients in the thread's table (kept current after every batch).
    clients: AtomicUsize,
}

/// Adds `n` to a counter that only its owner thread writes.
fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl ThreadStats {
    pub fn received(&self, kernel_timestamp: bool) {
        add(&self.received, 1);
        if kernel_timestamp {
            add(&self.kernel_timestamps, 1);
        }
    }

    pub fn replied(&self, n: u64) {
        add(&self.replied, n);
    }

    pub fn nts_replied(&self) {
        add(&self.nts_replied, 1);
    }

    pub fn nts_nak(&self) {
        add(&self.nts_naks, 1);
    }

    pub fn rate_kod(&self) {
        add(&self.rate_kods, 1);
    }

    pub fn key_replied(&self) {
        add(&self.key_replied, 1);
    }

    pub fn crypto_nak(&self) {
        add(&self.crypto_naks, 1);
    }

    pub fn interleaved(&self) {
        add(&self.interleaved, 1);
    }

    pub fn kernel_tx_timestamps(&self, n: u64) {
        add(&self.kernel_tx_timestamps, n);
    }

    pub fn dropped(&self, reason: DropReason) {
        add(&self.dropped[reason.index()], 1);
    }

    pub fn set_clients(&self, n: usize) {
        self.clients.store(n, Relaxed);
    }
}

/// NTP server counters: the sum over every server thread.
#[derive(Debug, Default)]
pub struct ServerStats {
    threads: Mutex<Vec<Arc<ThreadStats>>>,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub received: u64,
    pub replied: u64,
    pub nts_replied: u64,
    pub nts_naks: u64,
    /// RATE kiss-o'-death replies (`[ntp.ratelimit] kod`): requests over
    /// the rate limit answered, not dropped.
    pub rate_kods: u64,
    /// Replies MAC'd with a symmetric key of the key file.
    pub key_replied: u64,
    /// Crypto-NAKs: requests MAC'd with a key the key file lacks.
    pub crypto_naks: u64,
    pub kernel_timestamps: u64,
    /// Replies in interleaved mode (with an earlier reply's transmit
    /// timestamp).
    pub interleaved: u64,
    /// Kernel transmit timestamps read back for interleaved clients.
    pub kernel_tx_timestamps: u64,
    pub dropped: Vec<(&'static str, u64)>,
}

impl ServerStats {
    /// Counters for one more server thread.
    pub fn add_thread(&self) -> Arc<ThreadStats> {
        let t = Arc::new(ThreadStats::default());
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(t.clone());
        t
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        let sum = |f: fn(&ThreadStats) -> &AtomicU64| -> u64 {
            threads.iter().map(|t| f(t).load(Relaxed)).sum()
        };
        StatsSnapshot {
            received: sum(|t| &t.received),
            replied: sum(|t| &t.replied),
            nts_replied: sum(|t| &t.nts_replied),
            nts_naks: sum(|t| &t.nts_naks),
            rate_kods: sum(|t| &t.rate_kods),
            key_replied: sum(|t| &t.key_replied),
            crypto_naks: sum(|t| &t.crypto_naks),
            kernel_timestamps: sum(|t| &t.kernel_timestamps),
            interleaved: sum(|t| &t.interleaved),
            kernel_tx_timestamps: sum(|t| &t.kernel_tx_timestamps),
            dropped: DropReason::ALL
                .iter()
                .map(|r| {
                    let n = threads
                        .iter()
                        .map(|t| t.dropped[r.index()].load(Relaxed))
                        .sum();
                    (r.as_str(), n)
                })
                .collect(),
        }
    }

    /// Clients in every thread's table: no table is scanned or locked.
    pub fn clients(&self) -> usize {
        let threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.iter().map(|t| t.clients.load(Relaxed)).sum()
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
            "received={} replied={} nts_replied={} nts_naks={} rate_kods={} key_replied={} crypto_naks={} kernel_timestamps={} interleaved={} kernel_tx_timestamps={} dropped={}",
            self.received,
            self.replied,
            self.nts_replied,
            self.nts_naks,
            self.rate_kods,
            self.key_replied,
            self.crypto_naks,
            self.kernel_timestamps,
            self.interleaved,
            self.kernel_tx_timestamps,
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
    fn counts_by_reason_over_threads_and_prints_nonzero_ones() {
        let s = ServerStats::default();
        let (a, b) = (s.add_thread(), s.add_thread());
        a.received(true);
        b.received(false);
        a.dropped(DropReason::TooShort);
        b.dropped(DropReason::TooShort);
        b.dropped(DropReason::AccessDenied);
        a.replied(1);
        b.interleaved();
        a.key_replied();
        b.crypto_nak();
        a.set_clients(3);
        b.set_clients(4);
        let snap = s.snapshot();
        assert_eq!(snap.received, 2);
        assert_eq!(snap.kernel_timestamps, 1);
        assert_eq!(snap.total_dropped(), 3);
        assert_eq!((snap.replied, snap.interleaved), (1, 1));
        assert_eq!(s.clients(), 7);
        let line = snap.to_string();
        assert!(line.contains("dropped_too_short=2"), "{line}");
        assert!(line.contains("dropped_access_denied=1"), "{line}");
        assert!(line.contains(" kernel_timestamps=1 "), "{line}");
        assert!(line.contains(" key_replied=1 crypto_naks=1 "), "{line}");
        assert!(!line.contains("dropped_bad_version"), "{line}");
    }
}
