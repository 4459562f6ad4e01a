//! Per-client state in bounded memory: what `chronyc clients` shows, the
//! rate limit's token bucket, and the timestamps interleaved mode needs.
//!
//! A fixed table of buckets, each holding a few clients; an address hashes
//! (with a key chosen at random per table) to one bucket, and a new client
//! takes the slot of the longest-silent one in that bucket when it is full
//! (chrony's clientlog does the same). Memory never grows with the number
//! of addresses seen, and a flood of spoofed sources only recycles slots:
//! it cannot make the server allocate.
//!
//! One lookup per request serves logging, rate limiting and interleaving
//! together ([`ClientLog::lookup`] returns a [`Slot`] the caller keeps for
//! the rest of the request). The table is not synchronized: the server
//! keeps one per thread and steers each client address to one thread.
//! Everything per request is integer arithmetic; the averaged interval
//! is kept as a fixed-point log2.

use crate::time::NtpTimestamp;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};

/// Slots per bucket (one tag byte each in a `u64`).
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
/// attacker still gets some answers; of the requests left unanswered, one
/// in 2^`kod_log2` (0: none) gets a RATE kiss-o'-death instead, asking the
/// client to poll less often (chrony's `kod`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub interval_log2: i8,
    pub burst: u16,
    pub leak_log2: u8,
    pub kod_log2: u8,
}

/// What the rate limit decides for one request (see [`ClientLog::admit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Within the limit, or let through by the leak: serve it.
    Serve,
    /// Over the limit: answer with a RATE kiss-o'-death.
    Kod,
    /// Over the limit: no reply.
    Drop,
}

/// The decision for a client's `refused`-th request over its limit
/// (counting from 1): every 2^`leak_log2`-th is served (the leak; 0: none),
/// and of the others every 2^`kod_log2`-th gets a kiss-o'-death (0: none).
///
/// chrony draws both at random; counting instead makes the outcome exact
/// for a client that keeps sending (the same shares on average), and an
/// attacker spoofing the client's address gains nothing from knowing it:
/// it only decides which of the requests it sent itself are answered.
pub fn over_limit(refused: u64, leak_log2: u8, kod_log2: u8) -> Admission {
    let leak = leak_log2.min(16);
    if leak > 0 && refused % (1u64 << leak) == 0 {
        return Admission::Serve;
    }
    // The position of this request among those the leak did not serve.
    let unserved = if leak > 0 {
        refused - refused / (1u64 << leak)
    } else {
        refused
    };
    let kod = kod_log2.min(16);
    if kod > 0 && unserved % (1u64 << kod) == 0 {
        Admission::Kod
    } else {
        Admission::Drop
    }
}

/// One client's counters, as reported.
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
    /// Requests over the rate limit: dropped, answered with a RATE
    /// kiss-o'-death (both also counted in `dropped`) or let through by
    /// the leak.
    pub rate_limited: u64,
}

impl ClientEntry {
    pub fn total(&self) -> u64 {
        self.ntp_replies + self.nts_replies + self.dropped
    }
}

/// Fixed-point log2 seconds (8 fractional bits) meaning "no interval yet".
const NO_INTERVAL: i16 = i16::MIN;
/// Token bucket fill in 2^-32 requests (the timestamp's own unit, so the
/// refill is a shift of the elapsed time and loses nothing).
const TOKEN_ONE: u64 = 1 << 32;

/// One stored client. All-zero is an empty slot's content.
#[derive(Clone, Copy, Debug, Default)]
struct Stored {
    /// IPv4 clients as IPv4-mapped IPv6, so both families share a key.
    address: [u8; 16],
    ntp_replies: u64,
    nts_replies: u64,
    dropped: u64,
    rate_limited: u64,
    first_seen: NtpTimestamp,
    last_seen: NtpTimestamp,
    /// Receive timestamp of the last reply, as it was sent (the origin an
    /// interleaved request echoes), and that reply's transmit timestamp as
    /// served: read by the daemon, or the kernel's when it came back.
    last_rx: u64,
    last_tx: u64,
    tokens: u64,
    interval_q8: i16,
}

/// A client's place in the table for the duration of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot(u32);

/// The bounded table.
#[derive(Debug)]
pub struct ClientLog {
    /// One tag byte per slot, eight per bucket; 0 marks an empty slot.
    tags: Box<[u64]>,
    slots: Box<[Stored]>,
    keys: [u64; 3],
    occupied: usize,
}

impl ClientLog {
    /// A table for about `capacity` clients (rounded up to whole buckets).
    /// Its memory is written once here, so the resident size does not
    /// grow as clients arrive.
    pub fn new(capacity: usize) -> Self {
        let buckets = capacity.div_ceil(BUCKET_SLOTS).max(1);
        let random = std::collections::hash_map::RandomState::new();
        Self {
            tags: vec![0; buckets].into_boxed_slice(),
            slots: vec![Stored::default(); buckets * BUCKET_SLOTS].into_boxed_slice(),
            keys: [
                random.hash_one(1u8),
                random.hash_one(2u8),
                random.hash_one(3u8),
            ],
            occupied: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Clients in the table now (kept up to date, not counted).
    pub fn len(&self) -> usize {
        self.occupied
    }

    pub fn is_empty(&self) -> bool {
        self.occupied == 0
    }

    /// A keyed hash of the address: the key is random per table, so which
    /// addresses share a bucket cannot be chosen from outside.
    fn hash(&self, address: &[u8; 16]) -> u64 {
        let hi = u64::from_be_bytes(address[..8].try_into().unwrap_or_default());
        let lo = u64::from_be_bytes(address[8..].try_into().unwrap_or_default());
        let h = fold_mul(hi ^ self.keys[0], lo ^ self.keys[1]);
        fold_mul(h ^ self.keys[2], 0x9e37_79b9_7f4a_7c15)
    }

    /// The slot of `address`, made if it is new (in a free slot, else the
    /// one of the client silent for longest in its bucket). A new client
    /// starts with a full token bucket.
    pub fn lookup(&mut self, address: IpAddr, now: NtpTimestamp) -> Slot {
        let key = key_of(address);
        let hash = self.hash(&key);
        let bucket = (hash % self.tags.len() as u64) as usize;
        // Never 0, which marks an empty slot.
        let tag = ((hash >> 56) as u8) | 1;
        let tags = self.tags[bucket];
        let base = bucket * BUCKET_SLOTS;
        let mut candidates = matching_bytes(tags, tag);
        while candidates != 0 {
            let i = candidates.trailing_zeros() as usize / 8;
            if self.slots[base + i].address == key {
                return Slot((base + i) as u32);
            }
            candidates &= candidates - 1;
        }
        let empty = matching_bytes(tags, 0);
        let i = if empty != 0 {
            self.occupied += 1;
            empty.trailing_zeros() as usize / 8
        } else {
            (0..BUCKET_SLOTS)
                .min_by_key(|&i| self.slots[base + i].last_seen)
                .unwrap_or(0)
        };
        self.tags[bucket] = (tags & !(0xff << (8 * i))) | (u64::from(tag) << (8 * i));
        self.slots[base + i] = Stored {
            address: key,
            first_seen: now,
            last_seen: now,
            tokens: u64::MAX,
            interval_q8: NO_INTERVAL,
            ..Stored::default()
        };
        Slot((base + i) as u32)
    }

    /// Whether the client in `slot` is within `limit` at `now` (spending
    /// one request if so), and if not, what it gets ([`over_limit`]). A
    /// request over the limit is counted here as rate-limited (the caller
    /// still records what it did with it). Call before
    /// [`record`](Self::record), which moves the client's clock on.
    pub fn admit(&mut self, slot: Slot, now: NtpTimestamp, limit: &RateLimit) -> Admission {
        let s = &mut self.slots[slot.0 as usize];
        let burst = u64::from(limit.burst.max(1)) * TOKEN_ONE;
        // A bucket not used yet is full; a client never seen before also
        // gets its first request free (chrony's log starts it that way).
        if s.tokens == u64::MAX {
            s.tokens = burst;
            if s.ntp_replies + s.nts_replies + s.dropped == 0 {
                return Admission::Serve;
            }
        }
        // Refill: elapsed seconds * 2^-interval requests (the timestamp
        // counts 2^-32 s, the bucket 2^-32 requests).
        let elapsed = (now - s.last_seen).to_bits().max(0) as u64;
        let interval = i32::from(limit.interval_log2).clamp(-4, 31);
        let refill = if interval >= 0 {
            elapsed >> interval
        } else {
            // Faster than one a second: `burst` seconds refill it all.
            elapsed.min(burst) << -interval
        };
        s.tokens = s.tokens.min(burst).saturating_add(refill).min(burst);
        if s.tokens >= TOKEN_ONE {
            s.tokens -= TOKEN_ONE;
            return Admission::Serve;
        }
        s.rate_limited += 1;
        over_limit(s.rate_limited, limit.leak_log2, limit.kod_log2)
    }

    /// Counts `event` for the client in `slot` at `now`.
    pub fn record(&mut self, slot: Slot, now: NtpTimestamp, event: Event) {
        let s = &mut self.slots[slot.0 as usize];
        if s.ntp_replies + s.nts_replies + s.dropped > 0 {
            let interval = log2_q8((now - s.last_seen).to_bits());
            // Weight 1/4 for the new interval: steady within a few packets,
            // and one burst does not erase a client's history.
            s.interval_q8 = if s.interval_q8 == NO_INTERVAL {
                interval
            } else {
                let avg = i32::from(s.interval_q8);
                (avg + (i32::from(interval) - avg) / 4) as i16
            };
        }
        s.last_seen = now;
        match event {
            Event::Ntp => s.ntp_replies += 1,
            Event::Nts => s.nts_replies += 1,
            Event::Dropped => s.dropped += 1,
        }
    }

    /// The receive and transmit timestamps (wire bits) of the last reply
    /// to the client in `slot`; zero where there was none.
    pub fn last_exchange(&self, slot: Slot) -> (u64, u64) {
        let s = &self.slots[slot.0 as usize];
        (s.last_rx, s.last_tx)
    }

    /// Remembers the receive and transmit timestamps of the reply just
    /// sent to the client in `slot` (the pair an interleaved request asks
    /// for next).
    pub fn save_exchange(&mut self, slot: Slot, rx: u64, tx: u64) {
        let s = &mut self.slots[slot.0 as usize];
        s.last_rx = rx;
        s.last_tx = tx;
    }

    /// Replaces the transmit timestamp of the last reply to `address` with
    /// a better one (the kernel's), if that reply (known by its receive
    /// timestamp `rx`) is still the last one. Returns whether it did.
    pub fn update_transmit(&mut self, address: IpAddr, rx: u64, tx: u64) -> bool {
        let key = key_of(address);
        let hash = self.hash(&key);
        let bucket = (hash % self.tags.len() as u64) as usize;
        let base = bucket * BUCKET_SLOTS;
        for s in &mut self.slots[base..base + BUCKET_SLOTS] {
            if s.address == key && s.last_rx == rx && rx != 0 {
                s.last_tx = tx;
                return true;
            }
        }
        false
    }

    /// Every client currently in the table.
    pub fn entries(&self) -> impl Iterator<Item = ClientEntry> + '_ {
        self.tags.iter().enumerate().flat_map(move |(b, tags)| {
            (0..BUCKET_SLOTS)
                .filter(move |i| (tags >> (8 * i)) & 0xff != 0)
                .map(move |i| self.report(&self.slots[b * BUCKET_SLOTS + i]))
        })
    }

    fn report(&self, s: &Stored) -> ClientEntry {
        let v6 = Ipv6Addr::from(s.address);
        ClientEntry {
            address: v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            ntp_replies: s.ntp_replies,
            nts_replies: s.nts_replies,
            dropped: s.dropped,
            first_seen: s.first_seen,
            last_seen: s.last_seen,
            interval_log2: (s.interval_q8 != NO_INTERVAL).then(|| f64::from(s.interval_q8) / 256.0),
            rate_limited: s.rate_limited,
        }
    }
}

/// The table key: IPv4 (and IPv4-mapped IPv6) as IPv4-mapped IPv6.
fn key_of(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// 64x64 -> 128 bit multiply, folded: a fast mixing step.
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// A bit set at the top of every byte of `word` equal to `byte`.
fn matching_bytes(word: u64, byte: u8) -> u64 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = word ^ (LOW * u64::from(byte));
    // Exact for every byte (no borrow between bytes): a byte is zero iff
    // adding 0x7f to its low seven bits leaves the top bit clear and its
    // own top bit is clear.
    !(((x & !HIGH) + !HIGH) | x) & HIGH
}

/// log2 of a duration in 2^-32 s units as log2 seconds with 8 fractional
/// bits (the fraction linear between powers of two: within 0.09). At
/// least 2^-20 s (chrony's floor for the interval column is a microsecond).
fn log2_q8(bits: i64) -> i16 {
    let d = (bits.max(1) as u64).max(1 << 12);
    let top = 63 - d.leading_zeros() as i32;
    let frac = if top >= 8 {
        ((d >> (top - 8)) & 0xff) as i32
    } else {
        ((d << (8 - top)) & 0xff) as i32
    };
    (((top - 32) << 8) + frac) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::NtpDuration;

    fn at(secs: f64) -> NtpTimestamp {
        NtpTimestamp::from_unix(1_800_000_000, 0) + NtpDuration::from_seconds_f64(secs)
    }

    fn record(log: &mut ClientLog, a: IpAddr, t: NtpTimestamp, e: Event) {
        let slot = log.lookup(a, t);
        log.record(slot, t, e);
    }

    fn entry(log: &ClientLog, a: IpAddr) -> ClientEntry {
        log.entries().find(|e| e.address == a).unwrap()
    }

    #[test]
    fn counts_events_per_client() {
        let mut log = ClientLog::new(64);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        record(&mut log, a, at(0.0), Event::Ntp);
        record(&mut log, a, at(1.0), Event::Nts);
        record(&mut log, a, at(2.0), Event::Dropped);
        record(&mut log, b, at(2.0), Event::Ntp);
        let ea = entry(&log, a);
        assert_eq!((ea.ntp_replies, ea.nts_replies, ea.dropped), (1, 1, 1));
        assert_eq!(ea.first_seen, at(0.0));
        assert_eq!(ea.last_seen, at(2.0));
        assert_eq!(log.entries().count(), 2);
        assert_eq!(log.len(), 2);
        assert_eq!(entry(&log, b).ntp_replies, 1);
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_client() {
        let mut log = ClientLog::new(64);
        record(
            &mut log,
            "::ffff:192.0.2.1".parse().unwrap(),
            at(0.0),
            Event::Ntp,
        );
        record(&mut log, "192.0.2.1".parse().unwrap(), at(1.0), Event::Ntp);
        let all: Vec<_> = log.entries().collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].address, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(all[0].ntp_replies, 2);
    }

    #[test]
    fn interval_converges_to_the_polling_interval() {
        for (period, want) in [(64.0, 6.0), (1.0, 0.0), (0.25, -2.0), (1024.0, 10.0)] {
            let mut log = ClientLog::new(8);
            let a: IpAddr = "192.0.2.1".parse().unwrap();
            for i in 0..40 {
                record(&mut log, a, at(i as f64 * period), Event::Ntp);
            }
            let got = entry(&log, a).interval_log2.unwrap();
            assert!((got - want).abs() < 0.02, "{period}: {got}");
        }
        // Between powers of two the fixed-point log2 is within 0.09.
        for x in [1.5f64, 3.0, 100.0, 0.3] {
            let q = log2_q8(NtpDuration::from_seconds_f64(x).to_bits());
            assert!((f64::from(q) / 256.0 - x.log2()).abs() < 0.09, "{x}");
        }
        assert_eq!(log2_q8(0), log2_q8(1));
    }

    #[test]
    fn rate_limit_allows_burst_then_the_configured_rate() {
        let mut log = ClientLog::new(8);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let limit = RateLimit {
            interval_log2: 1,
            burst: 4,
            leak_log2: 0,
            kod_log2: 0,
        };
        let mut allowed = 0;
        // 100 requests in 10 s: the first, the burst of 4, then one per 2 s.
        for i in 0..100 {
            let t = at(i as f64 * 0.1);
            let slot = log.lookup(a, t);
            if log.admit(slot, t, &limit) == Admission::Serve {
                allowed += 1;
                log.record(slot, t, Event::Ntp);
            } else {
                log.record(slot, t, Event::Dropped);
            }
        }
        assert!((1 + 4 + 4..=1 + 4 + 5).contains(&allowed), "{allowed}");
        let e = entry(&log, a);
        assert_eq!(e.rate_limited, 100 - allowed);
        assert_eq!(e.dropped, 100 - allowed);
        // A client known from before the limit (answered while there was
        // none) starts with a full bucket: exactly the burst passes.
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        record(&mut log, c, at(0.0), Event::Ntp);
        let passed = (0..10)
            .filter(|_| {
                let slot = log.lookup(c, at(0.0));
                log.admit(slot, at(0.0), &limit) == Admission::Serve
            })
            .count();
        assert_eq!(passed, 4);
        // A polite client (one request per 2 s) is never limited.
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for i in 0..50 {
            let t = at(100.0 + i as f64 * 2.0);
            let slot = log.lookup(b, t);
            assert_eq!(log.admit(slot, t, &limit), Admission::Serve, "request {i}");
            log.record(slot, t, Event::Ntp);
        }
    }

    #[test]
    fn rate_limit_intervals_from_sixteen_per_second_to_an_hour() {
        for interval_log2 in [-4i8, 0, 3, 12] {
            let mut log = ClientLog::new(8);
            let a: IpAddr = "192.0.2.1".parse().unwrap();
            let limit = RateLimit {
                interval_log2,
                burst: 1,
                leak_log2: 0,
                kod_log2: 0,
            };
            let period = 2f64.powi(interval_log2.into());
            // 3.5 times the allowed rate: with a burst of one, every
            // fourth request passes (the bucket holds no more than one),
            // besides the first two.
            let mut allowed = 0;
            for i in 0..400 {
                let t = at(i as f64 * period / 3.5);
                let slot = log.lookup(a, t);
                if log.admit(slot, t, &limit) == Admission::Serve {
                    allowed += 1;
                }
                log.record(slot, t, Event::Ntp);
            }
            assert!((100..=102).contains(&allowed), "{interval_log2}: {allowed}");
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
            kod_log2: 0,
        };
        let slot = log.lookup(a, at(0.0));
        assert_eq!(
            log.admit(slot, at(0.0), &limit),
            Admission::Serve,
            "the first"
        );
        log.record(slot, at(0.0), Event::Ntp);
        assert_eq!(
            log.admit(slot, at(0.0), &limit),
            Admission::Serve,
            "the burst"
        );
        let leaked = (0..400)
            .filter(|i| {
                let t = at(*i as f64 * 0.001);
                let ok = log.admit(slot, t, &limit) == Admission::Serve;
                log.record(slot, t, Event::Dropped);
                ok
            })
            .count();
        assert_eq!(leaked, 100);
    }

    #[test]
    fn over_limit_serves_the_leak_and_kisses_one_in_2_to_the_kod_of_the_rest() {
        let share = |leak, kod| {
            let mut n = [0usize; 3];
            for refused in 1..=1024 {
                n[over_limit(refused, leak, kod) as usize] += 1;
            }
            n
        };
        // [served, kod, dropped] of 1024 requests over the limit.
        assert_eq!(share(0, 0), [0, 0, 1024]);
        assert_eq!(share(2, 0), [256, 0, 768]);
        assert_eq!(share(0, 1), [0, 512, 512]);
        assert_eq!(share(0, 4), [0, 64, 960]);
        // chrony's defaults with kod 1: a quarter leaks, half of the rest
        // is kissed.
        assert_eq!(share(2, 1), [256, 384, 384]);
        assert_eq!(share(1, 2), [512, 128, 384]);
        // The first request over the limit is dropped unless kod would
        // kiss every one; the 2^kod-th unserved one is kissed.
        assert_eq!(over_limit(1, 2, 1), Admission::Drop);
        assert_eq!(over_limit(2, 2, 1), Admission::Kod);
        assert_eq!(over_limit(4, 2, 1), Admission::Serve);
        assert_eq!(over_limit(1, 0, 0), Admission::Drop);
        // Out-of-range values are clamped, never a shift overflow.
        assert_eq!(over_limit(1 << 16, 200, 0), Admission::Serve);
        assert_eq!(over_limit(1 << 16, 0, 200), Admission::Kod);
    }

    #[test]
    fn admit_counts_kissed_requests_as_rate_limited() {
        let mut log = ClientLog::new(8);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let limit = RateLimit {
            interval_log2: 10,
            burst: 1,
            leak_log2: 0,
            kod_log2: 2,
        };
        let slot = log.lookup(a, at(0.0));
        let mut got = Vec::new();
        for i in 0..10 {
            let t = at(f64::from(i) * 0.001);
            got.push(log.admit(slot, t, &limit));
            log.record(slot, t, Event::Dropped);
        }
        use Admission::{Drop as D, Kod as K, Serve as S};
        // The first request and the burst of one, then every fourth of
        // the eight over the limit.
        assert_eq!(got, [S, S, D, D, D, K, D, D, D, K]);
        assert_eq!(entry(&log, a).rate_limited, 8);
    }

    #[test]
    fn memory_is_bounded_and_silent_clients_are_replaced_first() {
        let mut log = ClientLog::new(16);
        let keep: IpAddr = "192.0.2.200".parse().unwrap();
        for i in 0..10_000u32 {
            let ip = IpAddr::V4((0x0a00_0000 + i).into());
            record(&mut log, ip, at(i as f64), Event::Dropped);
            // A client that keeps talking keeps its slot.
            record(&mut log, keep, at(i as f64 + 0.5), Event::Ntp);
        }
        assert!(log.entries().count() <= log.capacity());
        assert_eq!(log.entries().count(), log.len());
        assert_eq!(log.len(), log.capacity());
        let kept = entry(&log, keep);
        assert_eq!(kept.ntp_replies, 10_000);
    }

    /// Slots holding a client, counted the slow way: every tag byte.
    fn brute_count(log: &ClientLog) -> usize {
        log.tags
            .iter()
            .map(|t| {
                (0..BUCKET_SLOTS)
                    .filter(|i| (t >> (8 * i)) & 0xff != 0)
                    .count()
            })
            .sum()
    }

    proptest::proptest! {
        /// The count kept as clients arrive and replace each other equals
        /// a full scan of the table after every step, for small tables
        /// (many evictions) and repeated addresses alike.
        #[test]
        fn the_kept_count_equals_a_scan(
            capacity in 1usize..64,
            steps in proptest::collection::vec((0u32..200, proptest::prelude::any::<bool>(), 0u32..1000), 1..400),
        ) {
            let mut log = ClientLog::new(capacity);
            for (i, (n, v6, dt)) in steps.into_iter().enumerate() {
                let ip = if v6 {
                    IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n as u16))
                } else {
                    IpAddr::V4((0xc000_0200 + n).into())
                };
                record(&mut log, ip, at(i as f64 + f64::from(dt) / 1000.0), Event::Ntp);
                let entries: Vec<_> = log.entries().map(|e| e.address).collect();
                let distinct: std::collections::HashSet<_> = entries.iter().collect();
                proptest::prop_assert_eq!(log.len(), brute_count(&log));
                proptest::prop_assert_eq!(log.len(), entries.len());
                proptest::prop_assert_eq!(distinct.len(), entries.len());
                proptest::prop_assert!(log.len() <= log.capacity());
                proptest::prop_assert!(entries.contains(&ip), "{} just seen, not in the table", ip);
            }
        }
    }

    #[test]
    fn interleaving_timestamps_follow_the_last_reply_only() {
        let mut log = ClientLog::new(64);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let slot = log.lookup(a, at(0.0));
        assert_eq!(log.last_exchange(slot), (0, 0));
        log.save_exchange(slot, 10, 11);
        assert_eq!(log.last_exchange(slot), (10, 11));
        // The kernel's timestamp of that reply replaces the daemon's...
        assert!(log.update_transmit(a, 10, 12));
        assert_eq!(log.last_exchange(slot), (10, 12));
        // ...but not once a newer reply went out, nor for another client.
        log.save_exchange(slot, 20, 21);
        assert!(!log.update_transmit(a, 10, 13));
        assert!(!log.update_transmit("192.0.2.2".parse().unwrap(), 20, 13));
        assert_eq!(log.last_exchange(slot), (20, 21));
    }

    #[test]
    fn tag_matching_finds_exactly_the_equal_bytes() {
        let word = u64::from_le_bytes([0, 5, 0x85, 5, 0xff, 0, 1, 5]);
        let hits = |b| {
            let m = matching_bytes(word, b);
            (0..8)
                .filter(|i| m & (0x80 << (8 * i)) != 0)
                .collect::<Vec<_>>()
        };
        assert_eq!(hits(5), vec![1, 3, 7]);
        assert_eq!(hits(0), vec![0, 5]);
        assert_eq!(hits(0x85), vec![2]);
        assert_eq!(hits(0xff), vec![4]);
        assert_eq!(hits(2), Vec::<usize>::new());
    }
}
