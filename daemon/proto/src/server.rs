//! The server's whole decision for one datagram, without I/O.
//!
//! [`Server::handle`] takes the datagram, who sent it and when the kernel
//! received it, and decides everything: access rules, the per-client rate
//! limit (serve, drop, or a RATE kiss-o'-death), the NTS verdict (through an [`NtsProcessor`]) and the NTS-only
//! policy, a normal or kiss-o'-death reply, leap smear, basic or
//! interleaved mode, and the client-log event. It writes the reply's
//! extension fields into a buffer the caller owns and returns a
//! [`Prepared`] reply, or the reason for silence. The caller reads the
//! clock as late as it can and calls [`Server::finish`], which writes the
//! header with that transmit timestamp and seals the NTS fields. Nothing
//! here reads a clock, allocates or touches a socket; the state (the
//! client table, the NTS ciphers) is owned by the `Server`, one per thread
//! (ntpd-rs's `ntp-proto` server is the model).
//!
//! Interleaved mode (chrony's `xleave`; RFC 5905 section 9 and the
//! interleaved-modes draft): a client that echoes the receive timestamp of
//! our previous reply as its origin, and whose own receive and transmit
//! fields differ, asks for the transmit timestamp of that previous reply,
//! which the daemon can replace by the kernel's after the reply has left
//! ([`Server::kernel_transmit`]). Every other client gets basic mode,
//! byte for byte as before.

use crate::access::AccessList;
use crate::client_log::{Admission, ClientLog, Event, RateLimit, Slot};
use crate::packet::{LeapIndicator, Mode, NtpHeader, ReferenceId, HEADER_LEN};
use crate::sync_state::SyncState;
use crate::time::{NtpDuration, NtpTimestamp};
use std::net::{IpAddr, SocketAddr};

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
    /// The system clock could not be read: no reply rather than a wrong
    /// (1970) timestamp.
    ClockFailed,
    /// The NTS reply could not be sealed: no reply rather than an
    /// unauthenticated one.
    SealFailed,
    /// A symmetric-key MAC that does not verify under its key.
    BadMac,
}

impl DropReason {
    pub const ALL: [DropReason; 14] = [
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
        Self::ClockFailed,
        Self::SealFailed,
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
            Self::ClockFailed => "clock_failed",
            Self::SealFailed => "seal_failed",
            Self::BadMac => "bad_mac",
        }
    }

    pub fn index(self) -> usize {
        self as usize
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

/// A reply header waiting for its transmit timestamp (the building block
/// of [`Server`]; see [`reply_header`] and [`kiss_header`]).
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
    pub fn finish(mut self, transmit: NtpTimestamp) -> [u8; HEADER_LEN] {
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

/// Builds the RATE kiss-o'-death (RFC 5905 section 7.4) for a client over
/// the rate limit: LI 3 (unsynchronized), stratum 0, reference ID "RATE",
/// the request's version, and its transmit timestamp as the origin (the
/// client matches the reply by it, and a spoofer never sees it). The poll
/// field asks for at least the limit's interval (`interval_log2`), as
/// chrony's does. chrony otherwise fills a KoD like a normal reply; here
/// root delay, root dispersion and reference timestamp are zero, since a
/// kiss-o'-death is not time to be used; the receive and transmit
/// timestamps are set as in any reply.
pub fn rate_kiss(
    request: &NtpHeader,
    receive: NtpTimestamp,
    precision: i8,
    interval_log2: i8,
) -> Reply {
    let mut kiss = kiss_header(request, receive, ReferenceId::KISS_RATE, precision);
    kiss.header.poll = request.poll.max(interval_log2);
    kiss
}

/// Why an NTS reply could not be sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the NTS reply could not be sealed")]
pub struct SealFailed;

/// What the NTS half of the decision reports (see [`NtsProcessor`]).
#[derive(Debug)]
pub enum NtsExamined<P> {
    /// Authentic: the reply's extension fields fill `out[48..len]`; they
    /// are sealed by [`NtsProcessor::seal`] once the header is final.
    Authentic { len: usize, pending: P },
    /// The cookie is unusable: an NTS NAK (kiss code NTSN), whose
    /// extension fields fill `out[48..len]` and need no sealing.
    Nak { len: usize },
    /// No NTS fields at all: a plain request with other extensions.
    NotNts,
    /// No reply (RFC 8915 requires silence), for this reason.
    Drop(DropReason),
}

/// NTS (RFC 8915) as the server decision needs it; skytime-nts implements
/// it. One instance per server thread, so it may keep its ciphers.
pub trait NtsProcessor {
    /// What sealing the reply needs to know (keys, where the fields are).
    type Pending;

    /// Examines `request` (the whole datagram, extension fields present)
    /// and, for a reply, writes its extension fields after the header in
    /// `out`. Never writes more than `request.len()` bytes in all.
    fn examine(&mut self, request: &[u8], out: &mut [u8]) -> NtsExamined<Self::Pending>;

    /// Seals the reply in `out` (header final) in place.
    fn seal(&mut self, pending: &Self::Pending, out: &mut [u8]) -> Result<(), SealFailed>;
}

/// A server without NTS: extension fields are ignored (RFC 7822) and the
/// request answered as plain NTP, as chrony does.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNts;

impl NtsProcessor for NoNts {
    type Pending = ();
    fn examine(&mut self, _: &[u8], _: &mut [u8]) -> NtsExamined<()> {
        NtsExamined::NotNts
    }
    fn seal(&mut self, _: &(), _: &mut [u8]) -> Result<(), SealFailed> {
        Ok(())
    }
}

/// What the server knows for a whole batch of requests.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// Who may query (changed live by the operator).
    pub acl: &'a AccessList,
    /// Per-client response rate limit; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    pub sync: &'a SyncState,
    /// Whether the kernel has already applied a leap second in progress
    /// (it settles the repeated second while smearing).
    pub leap_applied: bool,
}

/// One received datagram.
#[derive(Clone, Copy, Debug)]
pub struct Incoming<'a> {
    pub data: &'a [u8],
    pub remote: SocketAddr,
    /// When it arrived (the kernel's timestamp where there is one).
    pub received: NtpTimestamp,
}

/// What kind of reply a prepared one is, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    Ntp,
    Nts,
    /// NTS NAK (kiss-o'-death NTSN).
    NtsNak,
    /// RATE kiss-o'-death to a client over its rate limit (plain, or
    /// NTS-authenticated to an NTS client).
    RateKod,
}

/// The decision for one datagram.
#[derive(Debug)]
pub enum Handled<P> {
    /// No reply, for this reason.
    Dropped(DropReason),
    /// A reply: finish it with [`Server::finish`].
    Reply(Prepared<P>),
}

/// A reply waiting for its transmit timestamp.
#[derive(Debug)]
pub struct Prepared<P> {
    header: NtpHeader,
    len: usize,
    nts: Option<P>,
    offset: NtpDuration,
    kind: ReplyKind,
    /// The saved transmit timestamp to serve (interleaved mode).
    interleaved: Option<u64>,
    /// Where to remember this exchange for the client's next request, and
    /// whether the client asks for interleaved mode.
    slot: Option<(Slot, bool)>,
    address: IpAddr,
}

impl<P> Prepared<P> {
    pub fn kind(&self) -> ReplyKind {
        self.kind
    }

    /// Whether this reply carries the previous reply's transmit timestamp.
    pub fn is_interleaved(&self) -> bool {
        self.interleaved.is_some()
    }

    /// Whether the kernel's transmit timestamp of this reply is worth
    /// asking for: the client uses interleaved mode, so its next request
    /// gets it.
    pub fn wants_kernel_transmit(&self) -> bool {
        self.slot.is_some_and(|(_, candidate)| candidate)
    }
}

/// Which reply a kernel transmit timestamp belongs to (see
/// [`Server::kernel_transmit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxTicket {
    address: IpAddr,
    rx: u64,
    offset: NtpDuration,
}

/// The server's decision and per-thread state.
#[derive(Debug)]
pub struct Server<N> {
    clients: Option<ClientLog>,
    nts: Option<N>,
    nts_required: bool,
}

impl<N: NtsProcessor> Server<N> {
    /// A server with a client table for about `client_log_size` clients
    /// (0: none, which also means no rate limit and no interleaved mode),
    /// NTS through `nts` if given, refusing plain NTP if `nts_required`.
    pub fn new(client_log_size: usize, nts: Option<N>, nts_required: bool) -> Self {
        Self {
            clients: (client_log_size > 0).then(|| ClientLog::new(client_log_size)),
            nts_required: nts_required && nts.is_some(),
            nts,
        }
    }

    /// The client table (for reports).
    pub fn clients(&self) -> Option<&ClientLog> {
        self.clients.as_ref()
    }

    /// The NTS processor (for its counters).
    pub fn nts(&self) -> Option<&N> {
        self.nts.as_ref()
    }

    /// The NTS processor, to refresh its keys between batches.
    pub fn nts_mut(&mut self) -> Option<&mut N> {
        self.nts.as_mut()
    }

    /// Decides what to do with `incoming`. A reply's extension fields are
    /// written to `out` (which must hold at least as many bytes as the
    /// request); its header follows in [`Server::finish`].
    pub fn handle(
        &mut self,
        ctx: &Context<'_>,
        incoming: &Incoming<'_>,
        out: &mut [u8],
    ) -> Handled<N::Pending> {
        let address = incoming.remote.ip();
        let now = incoming.received;
        let request = match classify(incoming.data, incoming.remote, ctx.acl) {
            Ok(r) => r,
            Err(reason) => return self.drop(address, now, reason),
        };
        let slot = self.clients.as_mut().map(|log| log.lookup(address, now));
        let mut rate_kod = false;
        if let (Some(limit), Some(log), Some(slot)) = (&ctx.rate_limit, &mut self.clients, slot) {
            match log.admit(slot, now, limit) {
                Admission::Serve => {}
                Admission::Kod => rate_kod = true,
                Admission::Drop => {
                    log.record(slot, now, Event::Dropped);
                    return Handled::Dropped(DropReason::RateLimited);
                }
            }
        }
        // An NTS request gets its RATE kiss-o'-death only after its
        // authenticator verified, and sealed like any NTS reply, as chrony
        // does: RFC 8915 section 5.7 has the client ignore an
        // unauthenticated kiss-o'-death (chrony's client requires
        // authentication before it honours RATE), so a plain one would be
        // wasted on it, and anyone could forge it.
        let examined = match (&mut self.nts, request.extensions.is_empty()) {
            (Some(nts), false) => nts.examine(incoming.data, out),
            _ => NtsExamined::NotNts,
        };
        let (kind, len, pending) = match examined {
            NtsExamined::Authentic { len, pending } if rate_kod => {
                (ReplyKind::RateKod, len, Some(pending))
            }
            NtsExamined::Authentic { len, pending } => (ReplyKind::Nts, len, Some(pending)),
            // A cookie we cannot open leaves no keys to authenticate a
            // RATE with, and one NAK reply per request: chrony drops it.
            NtsExamined::Nak { .. } if rate_kod => {
                return self.drop_in(slot, now, DropReason::RateLimited)
            }
            NtsExamined::Nak { len } => (ReplyKind::NtsNak, len, None),
            NtsExamined::NotNts if self.nts_required => {
                return self.drop_in(slot, now, DropReason::NtsRequired)
            }
            NtsExamined::NotNts if rate_kod => (ReplyKind::RateKod, HEADER_LEN, None),
            NtsExamined::NotNts => (ReplyKind::Ntp, HEADER_LEN, None),
            NtsExamined::Drop(reason) => return self.drop_in(slot, now, reason),
        };
        debug_assert!(
            len <= incoming.data.len(),
            "a reply is never larger than its request"
        );
        let state = ctx.sync;
        let (reply, interleaved, candidate) = if kind == ReplyKind::NtsNak {
            let kiss = kiss_header(
                &request.header,
                now,
                ReferenceId::KISS_NTSN,
                state.precision,
            );
            (kiss, None, false)
        } else if kind == ReplyKind::RateKod {
            let interval = ctx.rate_limit.map_or(i8::MIN, |l| l.interval_log2);
            (
                rate_kiss(&request.header, now, state.precision, interval),
                None,
                false,
            )
        } else {
            let offset = state
                .smear
                .filter(|s| s.is_active(now))
                .map_or(NtpDuration::ZERO, |s| s.offset(now, ctx.leap_applied));
            let mut reply = reply_header(&request.header, now, state);
            if offset != NtpDuration::ZERO {
                reply = reply.smeared(offset);
            }
            let (interleaved, candidate) = match (&self.clients, slot) {
                (Some(log), Some(slot)) => interleaving(&request.header, log.last_exchange(slot)),
                _ => (None, false),
            };
            if interleaved.is_some() {
                // The client matches this reply to its previous request
                // by the receive timestamp it saw then.
                reply.header.origin_timestamp = request.header.receive_timestamp;
            }
            (reply, interleaved, candidate)
        };
        if let (Some(log), Some(slot)) = (&mut self.clients, slot) {
            let event = match kind {
                ReplyKind::Ntp => Event::Ntp,
                ReplyKind::Nts => Event::Nts,
                // Neither carries time: the client is not served.
                ReplyKind::NtsNak | ReplyKind::RateKod => Event::Dropped,
            };
            log.record(slot, now, event);
        }
        Handled::Reply(Prepared {
            header: reply.header,
            len,
            nts: pending,
            offset: reply.offset,
            kind,
            interleaved,
            // A kiss-o'-death is not an exchange to build on.
            slot: slot
                .filter(|_| !matches!(kind, ReplyKind::NtsNak | ReplyKind::RateKod))
                .map(|s| (s, candidate)),
            address,
        })
    }

    fn drop(
        &mut self,
        address: IpAddr,
        now: NtpTimestamp,
        reason: DropReason,
    ) -> Handled<N::Pending> {
        if let Some(log) = &mut self.clients {
            let slot = log.lookup(address, now);
            log.record(slot, now, Event::Dropped);
        }
        Handled::Dropped(reason)
    }

    fn drop_in(
        &mut self,
        slot: Option<Slot>,
        now: NtpTimestamp,
        reason: DropReason,
    ) -> Handled<N::Pending> {
        if let (Some(log), Some(slot)) = (&mut self.clients, slot) {
            log.record(slot, now, Event::Dropped);
        }
        Handled::Dropped(reason)
    }

    /// Writes the reply's header with the transmit timestamp `transmit`
    /// (read from the clock just now) into `out` and seals its NTS fields.
    /// Returns the reply's length, and the ticket to pass to
    /// [`Server::kernel_transmit`] with the kernel's transmit timestamp if
    /// the reply [wants one](Prepared::wants_kernel_transmit).
    pub fn finish(
        &mut self,
        reply: &Prepared<N::Pending>,
        transmit: NtpTimestamp,
        out: &mut [u8],
    ) -> Result<(usize, Option<TxTicket>), DropReason> {
        let mut header = reply.header;
        let rx = header.receive_timestamp.to_bits();
        let mut tx = (transmit + reply.offset).to_bits();
        // An interleaved request is recognised by its origin matching a
        // receive timestamp of ours: a transmit timestamp must never look
        // like one (chrony ensures the same).
        if tx == rx {
            tx = tx.wrapping_add(1);
        }
        header.transmit_timestamp = NtpTimestamp::from_bits(reply.interleaved.unwrap_or(tx));
        let Some(head) = out.get_mut(..HEADER_LEN) else {
            return Err(DropReason::SendFailed);
        };
        head.copy_from_slice(&header.serialize());
        if let (Some(pending), Some(nts)) = (&reply.nts, &mut self.nts) {
            nts.seal(pending, &mut out[..reply.len])
                .map_err(|SealFailed| DropReason::SealFailed)?;
        }
        let mut ticket = None;
        if let (Some((slot, candidate)), Some(log)) = (reply.slot, &mut self.clients) {
            log.save_exchange(slot, rx, tx);
            if candidate {
                ticket = Some(TxTicket {
                    address: reply.address,
                    rx,
                    offset: reply.offset,
                });
            }
        }
        Ok((reply.len, ticket))
    }

    /// The kernel's timestamp of when the reply of `ticket` left: it
    /// replaces the daemon's in the client's next interleaved reply, if
    /// that reply is still the client's last one. Returns whether it did.
    pub fn kernel_transmit(&mut self, ticket: &TxTicket, kernel: NtpTimestamp) -> bool {
        let mut tx = (kernel + ticket.offset).to_bits();
        if tx == ticket.rx {
            tx = tx.wrapping_add(1);
        }
        self.clients
            .as_mut()
            .is_some_and(|log| log.update_transmit(ticket.address, ticket.rx, tx))
    }
}

/// Whether `request` asks for interleaved mode, given the receive and
/// transmit timestamps of our last reply to this client: the transmit
/// timestamp to serve (when we have it), and whether the client uses
/// interleaved mode at all.
fn interleaving(request: &NtpHeader, (last_rx, last_tx): (u64, u64)) -> (Option<u64>, bool) {
    let origin = request.origin_timestamp.to_bits();
    let candidate = request.version == 4
        && origin != 0
        && origin == last_rx
        && request.receive_timestamp != request.transmit_timestamp;
    ((candidate && last_tx != 0).then_some(last_tx), candidate)
}

#[cfg(test)]
mod tests;
