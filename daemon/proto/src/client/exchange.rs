//! One request and the reply that may answer it.
//!
//! A request carries a random transmit timestamp (the "cookie"): the
//! server copies it into the reply's origin timestamp, so a reply whose
//! origin differs answers no request of ours (an old one, a replay, or an
//! off-path forgery that had to guess 64 random bits). The real send time
//! (T1) stays here and never leaves the client, so requests also tell the
//! network nothing about the local clock. Once a reply has been matched
//! the request is spent: a second copy is a duplicate.

use crate::packet::{LeapIndicator, Mode, NtpHeader, ReferenceId};
use crate::sync_state::STRATUM_UNSYNCHRONIZED;
use crate::time::{NtpDuration, NtpTimestamp};

/// RFC 5905's PHI: how fast a measurement's error bound grows, s/s.
pub const PHI: f64 = 15e-6;

/// A request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The transmit timestamp sent: the reply's origin must equal it.
    pub cookie: NtpTimestamp,
    /// Local time the request was sent (T1).
    pub t1: NtpTimestamp,
}

/// A client request header: NTPv4, mode 3, the poll exponent, and the
/// cookie as transmit timestamp (every other field zero, as RFC 5905
/// permits and chrony sends).
pub fn request(cookie: NtpTimestamp, poll: i8, version: u8) -> NtpHeader {
    NtpHeader {
        leap: LeapIndicator::Unsynchronized,
        version,
        mode: Mode::Client,
        stratum: 0,
        poll,
        precision: 0,
        root_delay: NtpDuration::ZERO,
        root_dispersion: NtpDuration::ZERO,
        reference_id: ReferenceId::NONE,
        reference_timestamp: NtpTimestamp::ZERO,
        origin_timestamp: NtpTimestamp::ZERO,
        receive_timestamp: NtpTimestamp::ZERO,
        transmit_timestamp: cookie,
    }
}

/// A kiss-o'-death code (stratum 0 reply; RFC 5905 section 7.4, RFC 8915
/// section 5.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KissCode {
    /// Slow down: the poll interval is raised.
    Rate,
    /// Access denied: polling stops.
    Deny,
    /// Access restricted: polling stops.
    Rstr,
    /// The NTS cookie was not accepted: a new key exchange is needed.
    Ntsn,
    /// Any other code: the reply is ignored.
    Other(ReferenceId),
}

impl KissCode {
    pub fn from_reference_id(id: ReferenceId) -> Self {
        match &id.0 {
            b"RATE" => Self::Rate,
            b"DENY" => Self::Deny,
            b"RSTR" => Self::Rstr,
            b"NTSN" => Self::Ntsn,
            _ => Self::Other(id),
        }
    }

    pub fn as_str(self) -> String {
        match self {
            Self::Rate => "RATE".into(),
            Self::Deny => "DENY".into(),
            Self::Rstr => "RSTR".into(),
            Self::Ntsn => "NTSN".into(),
            Self::Other(id) => id.to_string(),
        }
    }
}

/// Why a reply was not used. Each is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyDrop {
    /// Not a mode-4 (server) packet.
    NotServerMode,
    /// Version outside 1..=4.
    BadVersion,
    /// No request is waiting for a reply (none sent, already answered, or
    /// given up), or its origin timestamp is not the one we sent: a
    /// replay, a duplicate, a late reply or a forgery.
    UnknownRequest,
    /// The server says it is not synchronized (LI 3, stratum 16 or more)
    /// or its stratum would make ours 16.
    Unsynchronized,
    /// Zero receive or transmit timestamp, or a negative round trip.
    BogusTimestamps,
    /// The authentication this source requires is missing or wrong (set
    /// by the caller's authentication layer).
    NotAuthenticated,
}

impl ReplyDrop {
    pub const ALL: [ReplyDrop; 6] = [
        Self::NotServerMode,
        Self::BadVersion,
        Self::UnknownRequest,
        Self::Unsynchronized,
        Self::BogusTimestamps,
        Self::NotAuthenticated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotServerMode => "not_server_mode",
            Self::BadVersion => "bad_version",
            Self::UnknownRequest => "unknown_request",
            Self::Unsynchronized => "unsynchronized",
            Self::BogusTimestamps => "bogus_timestamps",
            Self::NotAuthenticated => "not_authenticated",
        }
    }
}

/// One exchange's result (RFC 5905 section 8), before the clock filter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// Server minus local clock, seconds (theta).
    pub offset: f64,
    /// Round-trip delay, seconds (delta), never below the precisions.
    pub delay: f64,
    /// Error bound of this measurement: both precisions and PHI over the
    /// round trip, seconds (epsilon).
    pub dispersion: f64,
    /// Local time in the middle of the exchange: when `offset` held.
    pub local_time: NtpTimestamp,
    pub stratum: u8,
    pub reference_id: ReferenceId,
    pub root_delay: f64,
    pub root_dispersion: f64,
    pub leap: LeapIndicator,
    /// The server's poll exponent (it may ask for a longer one).
    pub poll: i8,
}

/// What a reply is, once its origin matched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Checked {
    Measurement(Measurement),
    Kiss(KissCode),
}

/// Checks `reply`, received at local time `t4`, against `pending` (the
/// request it may answer). `local_precision` is log2 s of our clock.
pub fn check_reply(
    pending: Option<&Pending>,
    reply: &NtpHeader,
    t4: NtpTimestamp,
    local_precision: i8,
) -> Result<Checked, ReplyDrop> {
    if reply.mode != Mode::Server {
        return Err(ReplyDrop::NotServerMode);
    }
    if !(1..=4).contains(&reply.version) {
        return Err(ReplyDrop::BadVersion);
    }
    let pending = pending.ok_or(ReplyDrop::UnknownRequest)?;
    if reply.origin_timestamp != pending.cookie {
        return Err(ReplyDrop::UnknownRequest);
    }
    if reply.stratum == 0 {
        return Ok(Checked::Kiss(KissCode::from_reference_id(
            reply.reference_id,
        )));
    }
    if reply.leap == LeapIndicator::Unsynchronized || reply.stratum >= STRATUM_UNSYNCHRONIZED - 1 {
        return Err(ReplyDrop::Unsynchronized);
    }
    if reply.receive_timestamp == NtpTimestamp::ZERO
        || reply.transmit_timestamp == NtpTimestamp::ZERO
    {
        return Err(ReplyDrop::BogusTimestamps);
    }
    let (t1, t2, t3) = (
        pending.t1,
        reply.receive_timestamp,
        reply.transmit_timestamp,
    );
    let round_trip = (t4 - t1).to_seconds_f64();
    let server_time = (t3 - t2).to_seconds_f64();
    // A server that held the request for longer than the round trip, or a
    // reply "before" its request, is not a measurement.
    if round_trip < 0.0 || server_time < 0.0 || server_time > round_trip + 1e-3 {
        return Err(ReplyDrop::BogusTimestamps);
    }
    let offset = ((t2 - t1).to_seconds_f64() + (t3 - t4).to_seconds_f64()) / 2.0;
    let precision = 2f64.powi(reply.precision.into()) + 2f64.powi(local_precision.into());
    let delay = (round_trip - server_time).max(precision);
    Ok(Checked::Measurement(Measurement {
        offset,
        delay,
        dispersion: precision + PHI * round_trip,
        local_time: t1 + NtpDuration::from_seconds_f64(round_trip / 2.0),
        stratum: reply.stratum,
        reference_id: reply.reference_id,
        root_delay: reply.root_delay.to_seconds_f64(),
        root_dispersion: reply.root_dispersion.to_seconds_f64(),
        leap: reply.leap,
        poll: reply.poll,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> NtpTimestamp {
        NtpTimestamp::from_unix(1_800_000_000, 0) + NtpDuration::from_seconds_f64(s)
    }

    fn reply(p: &Pending, t2: f64, t3: f64) -> NtpHeader {
        let mut h = request(p.cookie, 6, 4);
        h.mode = Mode::Server;
        h.leap = LeapIndicator::NoWarning;
        h.stratum = 2;
        h.precision = -20;
        h.origin_timestamp = p.cookie;
        h.receive_timestamp = t(t2);
        h.transmit_timestamp = t(t3);
        h
    }

    fn pending() -> Pending {
        Pending {
            cookie: NtpTimestamp::from_bits(0xdead_beef_1234_5678),
            t1: t(0.0),
        }
    }

    #[test]
    fn offset_and_delay_follow_rfc5905() {
        let p = pending();
        // Server 0.5 s ahead, 10 ms each way, 1 ms inside the server.
        let h = reply(&p, 0.51, 0.511);
        let Ok(Checked::Measurement(m)) = check_reply(Some(&p), &h, t(0.021), -20) else {
            panic!()
        };
        assert!((m.offset - 0.5).abs() < 1e-9, "{}", m.offset);
        assert!((m.delay - 0.020).abs() < 1e-9, "{}", m.delay);
        assert_eq!(m.local_time, t(0.0105));
        assert!(
            m.dispersion > 2e-6 && m.dispersion < 3e-6,
            "{}",
            m.dispersion
        );
    }

    #[test]
    fn the_origin_must_be_our_cookie() {
        let p = pending();
        let mut h = reply(&p, 0.0, 0.0);
        h.origin_timestamp = NtpTimestamp::from_bits(1);
        assert_eq!(
            check_reply(Some(&p), &h, t(0.01), -20),
            Err(ReplyDrop::UnknownRequest)
        );
        assert_eq!(
            check_reply(None, &reply(&p, 0.0, 0.0), t(0.01), -20),
            Err(ReplyDrop::UnknownRequest)
        );
    }

    #[test]
    fn kiss_codes_and_bad_replies() {
        let p = pending();
        for (code, want) in [
            (b"RATE", KissCode::Rate),
            (b"DENY", KissCode::Deny),
            (b"RSTR", KissCode::Rstr),
            (b"NTSN", KissCode::Ntsn),
            (b"XXXX", KissCode::Other(ReferenceId(*b"XXXX"))),
        ] {
            let mut h = reply(&p, 0.0, 0.0);
            h.stratum = 0;
            h.reference_id = ReferenceId(*code);
            assert_eq!(
                check_reply(Some(&p), &h, t(0.01), -20),
                Ok(Checked::Kiss(want))
            );
        }
        let mut h = reply(&p, 0.0, 0.0);
        h.leap = LeapIndicator::Unsynchronized;
        assert_eq!(
            check_reply(Some(&p), &h, t(0.01), -20),
            Err(ReplyDrop::Unsynchronized)
        );
        let mut h = reply(&p, 0.0, 0.0);
        h.stratum = 15;
        assert_eq!(
            check_reply(Some(&p), &h, t(0.01), -20),
            Err(ReplyDrop::Unsynchronized)
        );
        let mut h = reply(&p, 0.0, 0.0);
        h.mode = Mode::Client;
        assert_eq!(
            check_reply(Some(&p), &h, t(0.01), -20),
            Err(ReplyDrop::NotServerMode)
        );
        let mut h = reply(&p, 0.0, 0.0);
        h.receive_timestamp = NtpTimestamp::ZERO;
        assert_eq!(
            check_reply(Some(&p), &h, t(0.01), -20),
            Err(ReplyDrop::BogusTimestamps)
        );
        // The server claims to have held the request for a second of a
        // 10 ms round trip.
        assert_eq!(
            check_reply(Some(&p), &reply(&p, 0.0, 1.0), t(0.01), -20),
            Err(ReplyDrop::BogusTimestamps)
        );
        // A reply received before its request was sent.
        assert_eq!(
            check_reply(Some(&p), &reply(&p, 0.0, 0.0), t(-1.0), -20),
            Err(ReplyDrop::BogusTimestamps)
        );
        let mut h = reply(&p, 0.0, 0.0);
        h.version = 5;
        assert_eq!(
            check_reply(Some(&p), &h, t(0.01), -20),
            Err(ReplyDrop::BadVersion)
        );
    }
}
