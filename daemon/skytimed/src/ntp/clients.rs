//! The per-client table of the NTP server, shared by the socket tasks.
//!
//! The table itself is skytime-proto's bounded `ClientLog`; this wrapper
//! splits it into shards under separate locks so that tasks on different
//! cores rarely wait for each other.

use skytime_proto::access::canonical;
use skytime_proto::client_log::{ClientEntry, ClientLog, Event, RateLimit};
use skytime_proto::NtpTimestamp;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;

const SHARDS: usize = 8;

/// Per-client statistics (`skytimectl clients`).
#[derive(Debug)]
pub struct Clients {
    shards: Vec<Mutex<ClientLog>>,
    hasher: RandomState,
}

impl Clients {
    /// A table for about `capacity` clients; 0 keeps no per-client data.
    pub fn new(capacity: usize) -> Self {
        let shards = if capacity == 0 {
            Vec::new()
        } else {
            (0..SHARDS)
                .map(|_| Mutex::new(ClientLog::new(capacity.div_ceil(SHARDS))))
                .collect()
        };
        Self {
            shards,
            hasher: RandomState::new(),
        }
    }

    pub fn record(&self, address: IpAddr, now: NtpTimestamp, event: Event) {
        if self.shards.is_empty() {
            return;
        }
        let address = canonical(address);
        let hash = self.hasher.hash_one(address);
        let shard = (hash % SHARDS as u64) as usize;
        if let Ok(mut log) = self.shards[shard].lock() {
            log.record_hashed(address, hash / SHARDS as u64, now, event);
        }
    }

    /// Whether `address` is within `limit` (see skytime-proto's
    /// `ClientLog::admit`). Without a client table nothing is limited.
    pub fn admit(&self, address: IpAddr, now: NtpTimestamp, limit: &RateLimit) -> bool {
        if self.shards.is_empty() {
            return true;
        }
        let address = canonical(address);
        let hash = self.hasher.hash_one(address);
        let shard = (hash % SHARDS as u64) as usize;
        match self.shards[shard].lock() {
            Ok(mut log) => log.admit(address, hash / SHARDS as u64, now, limit),
            Err(_) => true,
        }
    }

    /// Every known client, most recently seen first.
    pub fn snapshot(&self) -> Vec<ClientEntry> {
        let mut all: Vec<ClientEntry> = self
            .shards
            .iter()
            .filter_map(|s| s.lock().ok())
            .flat_map(|log| log.entries().copied().collect::<Vec<_>>())
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
        all
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok())
            .map(|log| log.entries().count())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_count_as_their_ipv4_client() {
        let c = Clients::new(64);
        let t = NtpTimestamp::from_unix(1_800_000_000, 0);
        c.record("::ffff:192.0.2.1".parse().unwrap(), t, Event::Ntp);
        c.record("192.0.2.1".parse().unwrap(), t, Event::Ntp);
        let s = c.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].ntp_replies, 2);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let c = Clients::new(0);
        c.record("192.0.2.1".parse().unwrap(), NtpTimestamp::ZERO, Event::Ntp);
        assert!(c.is_empty());
    }
}
