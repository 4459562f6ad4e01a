//! What each upstream source is doing, for reports (`skytimectl
//! sources`, the authdata view, metrics, alarms): one entry per source,
//! written by its task, read as a snapshot.

use super::config::{Authentication, RoleName};
use skytime_proto::client::ClientCounters;
use skytime_proto::{NtpTimestamp, ReferenceId};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// NTS state of one source (chronyc authdata's columns, and more).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NtsStatus {
    /// When the last key exchange succeeded (local time).
    pub last_ke: Option<NtpTimestamp>,
    /// Key exchanges tried since the last success.
    pub ke_attempts: u32,
    /// Successful key exchanges in all.
    pub ke_total: u64,
    /// NTS NAKs since the last key exchange.
    pub naks: u64,
    pub cookies: usize,
    pub cookie_len: usize,
    /// Bits of the session keys (the S2C key).
    pub key_bits: u32,
    /// The AEAD algorithm's IANA number.
    pub aead: u16,
    /// Replies whose authenticator failed, or that lacked one.
    pub auth_failures: u64,
    /// The session came from the state directory (no key exchange at
    /// start).
    pub restored: bool,
    /// Why the last key exchange failed, while it keeps failing.
    pub error: Option<String>,
}

/// One upstream source.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberStatus {
    /// The configured server or pool name.
    pub name: String,
    /// The address polled (after resolution, and NTS negotiation).
    pub address: Option<SocketAddr>,
    /// Its number in the discipline's source list.
    pub index: usize,
    pub authentication: Authentication,
    pub role: RoleName,
    /// "resolving", "key exchange", "polling", "refused (DENY)", ...
    pub state: String,
    pub reach: u8,
    pub poll: i8,
    pub stratum: Option<u8>,
    /// The server's own reference ID.
    pub reference_id: Option<ReferenceId>,
    /// The last sample passed on: local time, offset, delay, error bound.
    pub last_sample: Option<(NtpTimestamp, f64, f64, f64)>,
    pub root_delay: f64,
    pub root_dispersion: f64,
    pub counters: ClientCounters,
    pub nts: Option<NtsStatus>,
    /// Key type and length (bits) of a symmetric key.
    pub key: Option<(&'static str, u32)>,
}

impl MemberStatus {
    pub fn new(name: &str, index: usize, authentication: Authentication, role: RoleName) -> Self {
        Self {
            name: name.to_owned(),
            address: None,
            index,
            authentication,
            role,
            state: "starting".into(),
            reach: 0,
            poll: 0,
            stratum: None,
            reference_id: None,
            last_sample: None,
            root_delay: 0.0,
            root_dispersion: 0.0,
            counters: ClientCounters::default(),
            nts: (authentication == Authentication::Nts).then(NtsStatus::default),
            key: None,
        }
    }
}

/// The shared table (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct StatusBoard(Arc<Mutex<Vec<MemberStatus>>>);

impl StatusBoard {
    /// Adds an entry; returns its position for [`update`](Self::update).
    pub fn add(&self, s: MemberStatus) -> usize {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.push(s);
        v.len() - 1
    }

    pub fn update(&self, slot: usize, f: impl FnOnce(&mut MemberStatus)) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = v.get_mut(slot) {
            f(s);
        }
    }

    pub fn snapshot(&self) -> Vec<MemberStatus> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
