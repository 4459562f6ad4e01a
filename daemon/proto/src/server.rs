//! The server's reply decision for one incoming datagram.
//!
//! [`classify`] turns bytes and the sender's address into either a
//! [`ClientRequest`] or a [`DropReason`]; [`reply_header`] builds the
//! mode-4 header from the request, the kernel receive timestamp and the
//! current [`SyncState`]. The transmit timestamp is left for the I/O layer to
//! set at the last moment ([`Reply::finish`]). Nothing here reads a clock or
//! touches a socket.

use crate::access::AccessList;
use crate::packet::{LeapIndicator, Mode, NtpHeader, ReferenceId};
use crate::sync_state::SyncState;
use crate::time::{NtpDuration, NtpTimestamp};
use std::net::SocketAddr;

/// NTP versions the server answers. Version 0 and 5..=7 are not defined;
/// versions 1 and 2 are answered as chrony does, echoing their number.
pub const SUPPORTED_VERSIONS: std::ops::RangeInclusive<u8> = 1..=4;

/// Why a datagram got no reply. Every dropped datagram is counted under one
/// of these, so an operator can see what is arriving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than the 48-byte header.
    TooShort,
    /// Version 0 or 5..=7.
    BadVersion,
    /// Not a client (mode 3) request: server replies, broadcasts, control
    /// (mode 6, ntpq) and private (mode 7, ntpdc) queries are not served.
    NotClientMode,
    /// Sent from UDP port 0, which cannot be answered.
    SourcePortZero,
    /// Refused by the allow/deny rules.
    AccessDenied,
    /// Extension fields present but malformed (length not a multiple of 4,
    /// shorter than its own header, running past the packet).
    BadExtensionField,
    /// An NTS request whose authenticator did not verify, or whose fields
    /// are duplicated or missing: RFC 8915 requires silence.
    NtsAuthFailed,
    /// An NTS request on a server without NTS.
    NtsDisabled,
    /// A plain request on a server configured to require NTS.
    NtsRequired,
    /// The reply could not be sent (socket error).
    SendFailed,
    /// The client sent faster than the configured rate limit allows.
    RateLimited,
    /// A symmetric-key MAC that does not verify under its key.
    BadMac,
}

impl DropReason {
    pub const ALL: [DropReason; 12] = [
        Self::TooShort,
        Self::BadVersion,
        Self::NotClientMode,
        Self::SourcePortZero,
        Self::AccessDenied,
        Self::BadExtensionField,
        Self::NtsAuthFailed,
        Self::NtsDisabled,
        Self::NtsRequired,
        Self::SendFailed,
        Self::RateLimited,
        Self::BadMac,
    ];

    /// A stable snake_case name for statistics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::BadVersion => "bad_version",
            Self::NotClientMode => "not_client_mode",
            Self::SourcePortZero => "source_port_zero",
            Self::AccessDenied => "access_denied",
            Self::BadExtensionField => "bad_extension_field",
            Self::NtsAuthFailed => "nts_auth_failed",
            Self::NtsDisabled => "nts_disabled",
            Self::NtsRequired => "nts_required",
            Self::SendFailed => "send_failed",
            Self::RateLimited => "rate_limited",
            Self::BadMac => "bad_mac",
        }
    }

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// A datagram that passed the checks every request must pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientRequest<'a> {
    pub header: NtpHeader,
    /// Bytes after the header: NTPv4 extension fields (NTS) or a legacy
    /// MAC. Empty for a plain request.
    pub extensions: &'a [u8],
}

/// Checks a datagram from `remote` against what a client request must be,
/// in the order a packet is cheapest to refuse.
pub fn classify<'a>(
    buf: &'a [u8],
    remote: SocketAddr,
    acl: &AccessList,
) -> Result<ClientRequest<'a>, DropReason> {
    if remote.port() == 0 {
        return Err(DropReason::SourcePortZero);
    }
    // Access control comes before parsing so that refused senders cost as
    // little as possible.
    if !acl.is_allowed(remote.ip()) {
        return Err(DropReason::AccessDenied);
    }
    let (header, extensions) = NtpHeader::parse(buf).map_err(|_| DropReason::TooShort)?;
    if !SUPPORTED_VERSIONS.contains(&header.version) {
        return Err(DropReason::BadVersion);
    }
    if header.mode != Mode::Client {
        return Err(DropReason::NotClientMode);
    }
    Ok(ClientRequest { header, extensions })
}

/// A reply waiting for its transmit timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub header: NtpHeader,
    /// Added to the transmit timestamp too (a leap smear).
    offset: NtpDuration,
}

impl Reply {
    fn new(header: NtpHeader) -> Self {
        Self {
            header,
            offset: NtpDuration::ZERO,
        }
    }

    /// Serves smeared time: `offset` is added to the receive, reference
    /// and transmit timestamps (see [`crate::smear`]). Over the
    /// microseconds between receive and transmit the smear moves by less
    /// than a nanosecond, so one offset serves all three.
    pub fn smeared(mut self, offset: NtpDuration) -> Self {
        self.header.receive_timestamp = self.header.receive_timestamp + offset;
        if self.header.reference_timestamp != NtpTimestamp::ZERO {
            self.header.reference_timestamp = self.header.reference_timestamp + offset;
        }
        self.offset = offset;
        self
    }

    /// Sets the transmit timestamp and returns the wire bytes. Call it
    /// immediately before sending.
    pub fn finish(mut self, transmit: NtpTimestamp) -> [u8; crate::packet::HEADER_LEN] {
        self.header.transmit_timestamp = transmit + self.offset;
        self.header.serialize()
    }
}

/// Builds the mode-4 reply to `request`, received at `receive`.
pub fn reply_header(request: &NtpHeader, receive: NtpTimestamp, state: &SyncState) -> Reply {
    let synchronized = state.is_synchronized();
    let header = NtpHeader {
        leap: if synchronized {
            state.leap
        } else {
            LeapIndicator::Unsynchronized
        },
        // RFC 5905: the server echoes the request's version.
        version: request.version,
        mode: Mode::Server,
        stratum: state.stratum,
        // chrony echoes the client's poll; it tells the client nothing new
        // and keeps the reply deterministic.
        poll: request.poll,
        precision: state.precision,
        root_delay: state.root_delay,
        root_dispersion: state.root_dispersion_at(receive),
        reference_id: state.reference_id,
        reference_timestamp: state.reference_time,
        origin_timestamp: request.transmit_timestamp,
        receive_timestamp: receive,
        transmit_timestamp: NtpTimestamp::ZERO,
    };
    Reply::new(header)
}

/// Builds a kiss-o'-death reply (stratum 0, LI 3) carrying `code`, for
/// example `NTSN` when an NTS cookie cannot be decrypted.
pub fn kiss_header(
    request: &NtpHeader,
    receive: NtpTimestamp,
    code: ReferenceId,
    precision: i8,
) -> Reply {
    let header = NtpHeader {
        leap: LeapIndicator::Unsynchronized,
        version: request.version,
        mode: Mode::Server,
        stratum: 0,
        poll: request.poll,
        precision,
        root_delay: NtpDuration::ZERO,
        root_dispersion: NtpDuration::ZERO,
        reference_id: code,
        reference_timestamp: NtpTimestamp::ZERO,
        origin_timestamp: request.transmit_timestamp,
        receive_timestamp: receive,
        transmit_timestamp: NtpTimestamp::ZERO,
    };
    Reply::new(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::HEADER_LEN;

    const CLIENT: &str = "192.0.2.10:40000";

    #[test]
    fn smeared_reply_shifts_every_served_timestamp_by_the_offset() {
        let t = NtpTimestamp::from_unix(1_800_000_000, 0);
        let state = SyncState::local(1, -20, t);
        let bytes = request(4, 3);
        let req = classify(&bytes, CLIENT.parse().unwrap(), &AccessList::allow_all()).unwrap();
        let off = NtpDuration::from_seconds_f64(-0.25);
        let plain = NtpHeader::parse(&reply_header(&req.header, t, &state).finish(t))
            .unwrap()
            .0;
        let smeared =
            NtpHeader::parse(&reply_header(&req.header, t, &state).smeared(off).finish(t))
                .unwrap()
                .0;
        for (a, b) in [
            (plain.receive_timestamp, smeared.receive_timestamp),
            (plain.transmit_timestamp, smeared.transmit_timestamp),
            (plain.reference_timestamp, smeared.reference_timestamp),
        ] {
            assert_eq!((b - a).to_seconds_f64(), -0.25);
        }
        // The client's own timestamp comes back untouched.
        assert_eq!(plain.origin_timestamp, smeared.origin_timestamp);
    }

    fn request(version: u8, mode: u8) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = (version << 3) | mode;
        b[2] = 6; // poll
        b[40..48].copy_from_slice(&0xDEAD_BEEF_0000_0001u64.to_be_bytes());
        b
    }

    fn allow_all() -> AccessList {
        AccessList::allow_all()
    }

    #[test]
    fn accepts_v4_and_v3_client_requests() {
        for v in [3, 4] {
            let b = request(v, 3);
            let req = classify(&b, CLIENT.parse().unwrap(), &allow_all()).unwrap();
            assert_eq!(req.header.version, v);
            assert!(req.extensions.is_empty());
        }
    }

    #[test]
    fn drops_every_invalid_kind_with_its_reason() {
        let from = CLIENT.parse().unwrap();
        assert_eq!(
            classify(&[0u8; 47], from, &allow_all()),
            Err(DropReason::TooShort)
        );
        assert_eq!(classify(&[], from, &allow_all()), Err(DropReason::TooShort));
        for v in [0, 5, 6, 7] {
            assert_eq!(
                classify(&request(v, 3), from, &allow_all()),
                Err(DropReason::BadVersion),
                "v{v}"
            );
        }
        for m in [0, 1, 2, 4, 5, 6, 7] {
            assert_eq!(
                classify(&request(4, m), from, &allow_all()),
                Err(DropReason::NotClientMode),
                "mode {m}"
            );
        }
        let port0 = "192.0.2.10:0".parse().unwrap();
        assert_eq!(
            classify(&request(4, 3), port0, &allow_all()),
            Err(DropReason::SourcePortZero)
        );
        assert_eq!(
            classify(&request(4, 3), from, &AccessList::default()),
            Err(DropReason::AccessDenied)
        );
    }

    #[test]
    fn extension_bytes_are_passed_on() {
        let mut b = request(4, 3).to_vec();
        b.extend_from_slice(&[0x01, 0x04, 0x00, 0x08, 1, 2, 3, 4]);
        let req = classify(&b, CLIENT.parse().unwrap(), &allow_all()).unwrap();
        assert_eq!(req.extensions.len(), 8);
    }

    #[test]
    fn reply_fills_every_field_from_request_and_state() {
        let b = request(3, 3);
        let req = classify(&b, CLIENT.parse().unwrap(), &allow_all()).unwrap();
        let rx = NtpTimestamp::from_unix(1_800_000_000, 1_000);
        let mut state = SyncState::local(1, -20, NtpTimestamp::from_unix(1_799_999_990, 0));
        state.reference_id = ReferenceId::PPS;
        state.root_delay = NtpDuration::from_nanos(0);
        state.root_dispersion = NtpDuration::from_nanos(10_000);
        state.dispersion_rate_ppm = 15.0;
        let tx = NtpTimestamp::from_unix(1_800_000_000, 5_000);
        let bytes = reply_header(&req.header, rx, &state).finish(tx);
        let (h, _) = NtpHeader::parse(&bytes).unwrap();
        assert_eq!(h.leap, LeapIndicator::NoWarning);
        assert_eq!(h.version, 3, "version echoes the request");
        assert_eq!(h.mode, Mode::Server);
        assert_eq!(h.stratum, 1);
        assert_eq!(h.poll, 6);
        assert_eq!(h.precision, -20);
        assert_eq!(h.reference_id, ReferenceId::PPS);
        assert_eq!(h.reference_timestamp, state.reference_time);
        assert_eq!(h.origin_timestamp, req.header.transmit_timestamp);
        assert_eq!(h.receive_timestamp, rx);
        assert_eq!(h.transmit_timestamp, tx);
        // 10 us + 10 s * 15 ppm = 160 us, in 16.16 short format (15.3 us steps).
        let disp = h.root_dispersion.to_nanos();
        assert!((160_000..160_000 + 15_300).contains(&disp), "{disp}");
    }

    #[test]
    fn unsynchronized_state_gives_li3_stratum16() {
        let b = request(4, 3);
        let req = classify(&b, CLIENT.parse().unwrap(), &allow_all()).unwrap();
        let reply = reply_header(
            &req.header,
            NtpTimestamp::from_unix(1_800_000_000, 0),
            &SyncState::unsynchronized(-20),
        );
        assert_eq!(reply.header.leap, LeapIndicator::Unsynchronized);
        assert_eq!(reply.header.stratum, 16);
    }

    #[test]
    fn kiss_reply_is_stratum_zero_with_code() {
        let b = request(4, 3);
        let req = classify(&b, CLIENT.parse().unwrap(), &allow_all()).unwrap();
        let k = kiss_header(
            &req.header,
            NtpTimestamp::from_unix(1_800_000_000, 0),
            ReferenceId::KISS_NTSN,
            -20,
        );
        assert_eq!(k.header.stratum, 0);
        assert_eq!(k.header.reference_id.0, *b"NTSN");
        assert_eq!(k.header.origin_timestamp, req.header.transmit_timestamp);
    }

    #[test]
    fn drop_reason_names_are_unique() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
