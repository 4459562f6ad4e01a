//! Per-client statistics in bounded memory (what `chronyc clients` shows).
//!
//! A fixed table of buckets, each holding a few clients; an address hashes
//! to one bucket, and a new client takes the slot of the longest-silent one
//! in that bucket when it is full (chrony's clientlog does the same). Memory
//! never grows with the number of addresses seen, and a flood of spoofed
//! sources only recycles slots: it cannot make the server allocate.

use crate::time::NtpTimestamp;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;

/// Slots per bucket.
const BUCKET_SLOTS: usize = 8;

/// What happened to one packet from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Answered with plain NTP.
    Ntp,
    /// Answered with authenticated NTS.
    Nts,
    /// Not answered (invalid, refused, failed authentication).
    Dropped,
}

/// Response rate limiting per client (chrony's `ratelimit`): a token
/// bucket that holds `burst` requests and refills one request every
/// 2^`interval_log2` seconds. A client over its rate gets no reply, except
/// one in 2^`leak_log2`, so that a client whose address is spoofed by an
/// attacker still gets some answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub interval_log2: i8,
    pub burst: u16,
    pub leak_log2: u8,
}

/// One client's counters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClientEntry {
    pub address: IpAddr,
    pub ntp_replies: u64,
    pub nts_replies: u64,
    pub dropped: u64,
    pub first_seen: NtpTimestamp,
    pub last_seen: NtpTimestamp,
    /// Exponentially averaged interval between packets, as log2 seconds
    /// (chronyc's "Int" column); `None` until a second packet arrives.
    pub interval_log2: Option<f64>,
    /// Requests the rate limit would still let through now.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    tokens_at: NtpTimestamp,
    /// Requests refused by the rate limit (a subset of `dropped`).
    pub rate_limited: u64,
}

impl ClientEntry {
    pub fn total(&self) -> u64 {
        self.ntp_replies + self.nts_replies + self.dropped
    }
}

/// The bounded table. Not synchronized: callers shard and lock it.
#[derive(Debug)]
pub struct ClientLog {
    buckets: Vec<[Option<ClientEntry>; BUCKET_SLOTS]>,
    hasher: RandomState,
}

impl ClientLog {
    /// A table for about `capacity` clients (rounded up to whole buckets).
    pub fn new(capacity: usize) -> Self {
        let buckets = capacity.div_ceil(BUCKET_SLOTS).max(1);
        Self {
            buckets: vec![[None; BUCKET_SLOTS]; buckets],
            hasher: RandomState::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.buckets.len() * BUCKET_SLOTS
    }

    /// Counts `event` from `address` at `now`.
    pub fn record(&mut self, address: IpAddr, now: NtpTimestamp, event: Event) {
        let hash = self.hasher.hash_one(address);
        self.record_hashed(address, hash, now, event);
    }

    /// Like [`record`](Self::record) with the address's hash computed by
    /// the caller (a sharded wrapper hashes once for shard and bucket).
    pub fn record_hashed(&mut self, address: IpAddr, hash: u64, now: NtpTimestamp, event: Event) {
        let index = (hash % self.buckets.len() as u64) as usize;
        let bucket = &mut self.buckets[index];
        let slot = match bucket
            .iter()
            .position(|s| s.is_some_and(|e| e.address == address))
        {
            Some(i) => i,
            None => {
                // A free slot, else the one silent for longest.
                let i = bucket.iter().position(Option::is_none).unwrap_or_else(|| {
                    (0..BUCKET_SLOTS)
                        .min_by_key(|&i| bucket[i].map(|e| e.last_seen))
                        .unwrap_or(0)
                });
                bucket[i] = Some(ClientEntry {
                    address,
                    ntp_replies: 0,
                    nts_replies: 0,
                    dropped: 0,
                    first_seen: now,
                    last_seen: now,
                    interval_log2: None,
                    tokens: f64::INFINITY,
                    tokens_at: now,
                    rate_limited: 0,
                });
                i
            }
        };
        let Some(entry) = bucket[slot].as_mut() else {
            return;
        };
        if entry.total() > 0 {
            let interval = (now - entry.last_seen).to_seconds_f64().max(1e-6).log2();
            // Weight 1/4 for the new interval: steady within a few packets,
            // and one burst does not erase a client's history.
            entry.interval_log2 = Some(match entry.interval_log2 {
                None => interval,
                Some(avg) => avg + (interval - avg) / 4.0,
            });
        }
        entry.last_seen = now;
        match event {
            Event::Ntp => entry.ntp_replies += 1,
            Event::Nts => entry.nts_replies += 1,
            Event::Dropped => entry.dropped += 1,
        }
    }

    /// Whether a request from `address` at `now` is within `limit`; spends
    /// one token if so. A refused request is counted here as rate-limited
    /// (the caller still records it as dropped).
    pub fn admit(
        &mut self,
        address: IpAddr,
        hash: u64,
        now: NtpTimestamp,
        limit: &RateLimit,
    ) -> bool {
        let index = (hash % self.buckets.len() as u64) as usize;
        let Some(entry) = self.buckets[index]
            .iter_mut()
            .flatten()
            .find(|e| e.address == address)
        else {
            // Unknown clients start with a full bucket.
            return true;
        };
        let burst = f64::from(limit.burst.max(1));
        let per_second = 2f64.powi(-i32::from(limit.interval_log2));
        let elapsed = (now - entry.tokens_at).to_seconds_f64().max(0.0);
        entry.tokens = (entry.tokens.min(burst) + elapsed * per_second).min(burst);
        entry.tokens_at = now;
        if entry.tokens >= 1.0 {
            entry.tokens -= 1.0;
            return true;
        }
        entry.rate_limited += 1;
        // Let one refused request in 2^leak through.
        limit.leak_log2 > 0 && entry.rate_limited % (1u64 << limit.leak_log2.min(16)) == 0
    }

    /// Every client currently in the table.
    pub fn entries(&self) -> impl Iterator<Item = &ClientEntry> {
        self.buckets.iter().flat_map(|b| b.iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::NtpDuration;

    fn at(secs: f64) -> NtpTimestamp {
        NtpTimestamp::from_unix(1_800_000_000, 0) + NtpDuration::from_seconds_f64(secs)
    }

    #[test]
    fn counts_events_per_client() {
        let mut log = ClientLog::new(64);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        log.record(a, at(0.0), Event::Ntp);
        log.record(a, at(1.0), Event::Nts);
        log.record(a, at(2.0), Event::Dropped);
        log.record(b, at(2.0), Event::Ntp);
        let ea = *log.entries().find(|e| e.address == a).unwrap();
        assert_eq!((ea.ntp_replies, ea.nts_replies, ea.dropped), (1, 1, 1));
        assert_eq!(ea.first_seen, at(0.0));
        assert_eq!(ea.last_seen, at(2.0));
        assert_eq!(log.entries().count(), 2);
    }

    #[test]
    fn interval_converges_to_the_polling_interval() {
        let mut log = ClientLog::new(8);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..40 {
            log.record(a, at(i as f64 * 64.0), Event::Ntp);
        }
        let e = log.entries().next().unwrap();
        assert!(
            (e.interval_log2.unwrap() - 6.0).abs() < 1e-6,
            "{:?}",
            e.interval_log2
        );
    }

    #[test]
    fn rate_limit_allows_burst_then_the_configured_rate() {
        let mut log = ClientLog::new(8);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let limit = RateLimit {
            interval_log2: 1,
            burst: 4,
            leak_log2: 0,
        };
        let mut allowed = 0;
        // 100 requests in 10 s: the burst of 4, then one per 2 s.
        for i in 0..100 {
            let t = at(i as f64 * 0.1);
            if log.admit(a, 0, t, &limit) {
                allowed += 1;
                log.record_hashed(a, 0, t, Event::Ntp);
            } else {
                log.record_hashed(a, 0, t, Event::Dropped);
            }
        }
        // The first packet is unknown (admitted without a bucket) and creates it.
        assert!((1 + 4 + 4..=1 + 4 + 6).contains(&allowed), "{allowed}");
        let e = log.entries().next().unwrap();
        assert_eq!(e.rate_limited, 100 - allowed);
        // A polite client (one request per 2 s) is never limited.
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for i in 0..50 {
            let t = at(100.0 + i as f64 * 2.0);
            assert!(log.admit(b, 1, t, &limit), "request {i}");
            log.record_hashed(b, 1, t, Event::Ntp);
        }
    }

    #[test]
    fn leak_lets_one_in_2_to_the_leak_through() {
        let mut log = ClientLog::new(8);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let limit = RateLimit {
            interval_log2: 10,
            burst: 1,
            leak_log2: 2,
        };
        log.record_hashed(a, 0, at(0.0), Event::Ntp);
        assert!(log.admit(a, 0, at(0.0), &limit), "the burst");
        let leaked = (0..400)
            .filter(|i| log.admit(a, 0, at(*i as f64 * 0.001), &limit))
            .count();
        assert_eq!(leaked, 100);
    }

    #[test]
    fn memory_is_bounded_and_silent_clients_are_replaced_first() {
        let mut log = ClientLog::new(16);
        let keep: IpAddr = "192.0.2.200".parse().unwrap();
        for i in 0..10_000u32 {
            let ip = IpAddr::V4((0x0a00_0000 + i).into());
            log.record(ip, at(i as f64), Event::Dropped);
            // A client that keeps talking keeps its slot.
            log.record(keep, at(i as f64 + 0.5), Event::Ntp);
        }
        assert!(log.entries().count() <= log.capacity());
        let kept = log
            .entries()
            .find(|e| e.address == keep)
            .expect("an active client survives a flood");
        assert_eq!(kept.ntp_replies, 10_000);
    }
}
