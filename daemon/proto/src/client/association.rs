//! One upstream server: the schedule, the request in flight, the reply
//! checks and the clock filter, with counters for reports.

use super::exchange::{self, Checked, KissCode, Pending, ReplyDrop};
use super::filter::{ClockFilter, Filtered};
use super::poll::{PollConfig, PollState};
use crate::packet::{NtpHeader, HEADER_LEN};
use crate::time::NtpTimestamp;

/// A measurement the clock filter chose, ready for the discipline.
pub type SourceSample = Filtered;

/// Settings of one association.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    pub poll: PollConfig,
    /// NTP version of requests (4; 3 for servers that want it).
    pub version: u8,
    /// log2 seconds of the local clock's precision.
    pub local_precision: i8,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            poll: PollConfig::default(),
            version: 4,
            local_precision: -20,
        }
    }
}

/// Where the association stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssociationState {
    /// Polling normally.
    Polling,
    /// The server refused service (DENY, RSTR): no more requests.
    Refused(KissCode),
}

/// Counters of one association.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounters {
    pub requests: u64,
    /// Replies that gave a measurement.
    pub accepted: u64,
    /// Replies dropped, by [`ReplyDrop::ALL`] index.
    pub dropped: [u64; ReplyDrop::ALL.len()],
    pub rate_kisses: u64,
    /// DENY and RSTR.
    pub refusals: u64,
    pub nts_naks: u64,
    /// Kisses with a code we do not act on.
    pub other_kisses: u64,
}

impl ClientCounters {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub fn dropped_for(&self, reason: ReplyDrop) -> u64 {
        ReplyDrop::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.dropped[i])
    }
}

/// What a reply did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReplyOutcome {
    /// A measurement; the clock filter's choice when it passes one on.
    Accepted(Option<SourceSample>),
    /// A kiss-o'-death for our request; the association acted on it
    /// (RATE, DENY, RSTR) or the caller must (NTSN: a new key exchange).
    Kiss(KissCode),
    /// Not used, for this reason.
    Dropped(ReplyDrop),
}

/// One upstream server's client state.
#[derive(Clone, Debug)]
pub struct Association {
    config: ClientConfig,
    poll: PollState,
    filter: ClockFilter,
    pending: Option<Pending>,
    state: AssociationState,
    counters: ClientCounters,
    last: Option<SourceSample>,
}

impl Association {
    /// A new association; the first request is due at `mono` (monotonic
    /// seconds, the clock all scheduling uses).
    pub fn new(config: ClientConfig, mono: f64) -> Self {
        Self {
            poll: PollState::new(config.poll, mono),
            config,
            filter: ClockFilter::new(),
            pending: None,
            state: AssociationState::Polling,
            counters: ClientCounters::default(),
            last: None,
        }
    }

    /// When [`poll`](Self::poll) is due next; `None` when polling ended.
    pub fn next_poll(&self) -> Option<f64> {
        match self.state {
            AssociationState::Polling => self.poll.next(),
            AssociationState::Refused(_) => None,
        }
    }

    /// Builds the next request at monotonic `mono`, local time `now` (T1:
    /// read it just before sending), with `cookie` (64 random bits) as
    /// its transmit timestamp. The request before it, if unanswered, is
    /// given up. `None` once the server refused service.
    pub fn poll(&mut self, mono: f64, now: NtpTimestamp, cookie: u64) -> Option<[u8; HEADER_LEN]> {
        self.next_poll()?;
        // Zero means "no timestamp" on the wire: never use it as a cookie.
        let cookie = NtpTimestamp::from_bits(cookie.max(1));
        self.pending = Some(Pending { cookie, t1: now });
        self.poll.sent(mono);
        self.counters.requests += 1;
        Some(exchange::request(cookie, self.poll.poll(), self.config.version).serialize())
    }

    /// Takes the reply header `reply`, received at local time `t4`
    /// (monotonic `mono`). The caller has already checked what its
    /// authentication demands (see [`drop_reply`](Self::drop_reply)).
    pub fn handle_reply(&mut self, reply: &NtpHeader, t4: NtpTimestamp, mono: f64) -> ReplyOutcome {
        let checked = exchange::check_reply(
            self.pending.as_ref(),
            reply,
            t4,
            self.config.local_precision,
        );
        // Whatever a reply with our origin says, it answers the request:
        // another copy of it is a duplicate.
        if !matches!(
            checked,
            Err(ReplyDrop::UnknownRequest | ReplyDrop::NotServerMode | ReplyDrop::BadVersion)
        ) {
            self.pending = None;
        }
        match checked {
            Err(reason) => self.drop_reply(reason),
            Ok(Checked::Kiss(code)) => {
                match code {
                    KissCode::Rate => {
                        self.counters.rate_kisses += 1;
                        self.poll.rate_kiss(reply.poll);
                    }
                    KissCode::Deny | KissCode::Rstr => {
                        self.counters.refusals += 1;
                        self.poll.stop();
                        self.state = AssociationState::Refused(code);
                    }
                    KissCode::Ntsn => self.counters.nts_naks += 1,
                    KissCode::Other(_) => self.counters.other_kisses += 1,
                }
                ReplyOutcome::Kiss(code)
            }
            Ok(Checked::Measurement(m)) => {
                self.counters.accepted += 1;
                self.poll.good_reply();
                let out = self.filter.add(m, mono);
                if out.is_some() {
                    self.last = out;
                }
                ReplyOutcome::Accepted(out)
            }
        }
    }

    /// Counts a reply dropped for `reason` (also for the caller's own
    /// reasons, such as a failed authenticator).
    pub fn drop_reply(&mut self, reason: ReplyDrop) -> ReplyOutcome {
        if let Some(i) = ReplyDrop::ALL.iter().position(|r| *r == reason) {
            self.counters.dropped[i] += 1;
        }
        ReplyOutcome::Dropped(reason)
    }

    /// Whether `reply` (origin timestamp) answers the request in flight:
    /// lets an authentication layer find its per-request state.
    pub fn answers_pending(&self, reply: &NtpHeader) -> bool {
        self.pending
            .is_some_and(|p| p.cookie == reply.origin_timestamp)
    }

    /// Starts over at minpoll with a burst, forgetting measurements (new
    /// keys, a new address). Counters stay.
    pub fn restart(&mut self, mono: f64) {
        self.poll.restart(mono);
        self.filter.clear();
        self.pending = None;
        self.state = AssociationState::Polling;
    }

    /// The local clock was stepped: old measurements are void.
    pub fn clock_stepped(&mut self) {
        self.filter.clear();
        self.pending = None;
    }

    pub fn state(&self) -> AssociationState {
        self.state
    }

    pub fn counters(&self) -> ClientCounters {
        self.counters
    }

    pub fn reach(&self) -> u8 {
        self.poll.reach()
    }

    /// The poll exponent now.
    pub fn poll_exponent(&self) -> i8 {
        self.poll.poll()
    }

    pub fn poll_interval(&self) -> f64 {
        self.poll.interval()
    }

    /// The last sample the filter passed on.
    pub fn last_sample(&self) -> Option<&SourceSample> {
        self.last.as_ref()
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{LeapIndicator, Mode, ReferenceId};
    use crate::time::NtpDuration;

    fn t(s: f64) -> NtpTimestamp {
        NtpTimestamp::from_unix(1_800_000_000, 0) + NtpDuration::from_seconds_f64(s)
    }

    /// A server `offset` ahead answering `request` sent at `t1` with
    /// `delay` of round trip.
    fn answer(request: &[u8; 48], t1: f64, offset: f64, delay: f64) -> (NtpHeader, NtpTimestamp) {
        let (mut h, _) = NtpHeader::parse(request).unwrap();
        h.mode = Mode::Server;
        h.leap = LeapIndicator::NoWarning;
        h.stratum = 1;
        h.precision = -20;
        h.reference_id = ReferenceId::GPS;
        h.origin_timestamp = h.transmit_timestamp;
        h.receive_timestamp = t(t1 + delay / 2.0 + offset);
        h.transmit_timestamp = h.receive_timestamp;
        (h, t(t1 + delay))
    }

    #[test]
    fn a_reply_is_used_once_and_a_late_one_is_unknown() {
        let mut a = Association::new(ClientConfig::default(), 0.0);
        let req = a.poll(0.0, t(0.0), 42).unwrap();
        let (h, t4) = answer(&req, 0.0, 0.25, 0.01);
        let ReplyOutcome::Accepted(Some(s)) = a.handle_reply(&h, t4, 0.01) else {
            panic!()
        };
        assert!((s.measurement.offset - 0.25).abs() < 1e-9);
        assert_eq!(
            a.handle_reply(&h, t4, 0.02),
            ReplyOutcome::Dropped(ReplyDrop::UnknownRequest),
            "a duplicate"
        );
        // A reply to the previous request after a new one went out.
        let old = a.poll(2.0, t(2.0), 43).unwrap();
        let _new = a.poll(4.0, t(4.0), 44).unwrap();
        let (h, t4) = answer(&old, 2.0, 0.25, 0.01);
        assert_eq!(
            a.handle_reply(&h, t4, 4.1),
            ReplyOutcome::Dropped(ReplyDrop::UnknownRequest)
        );
        let c = a.counters();
        assert_eq!((c.requests, c.accepted), (3, 1));
        assert_eq!(c.dropped_for(ReplyDrop::UnknownRequest), 2);
    }

    #[test]
    fn deny_stops_rate_slows_and_ntsn_goes_to_the_caller() {
        let mut a = Association::new(ClientConfig::default(), 0.0);
        let kiss = |a: &mut Association, code: &[u8; 4], at: f64| {
            let req = a.poll(at, t(at), 7).unwrap();
            let (mut h, t4) = answer(&req, at, 0.0, 0.01);
            h.stratum = 0;
            h.reference_id = ReferenceId(*code);
            h.poll = 12;
            a.handle_reply(&h, t4, at)
        };
        assert_eq!(
            kiss(&mut a, b"NTSN", 0.0),
            ReplyOutcome::Kiss(KissCode::Ntsn)
        );
        assert_eq!(a.state(), AssociationState::Polling);
        assert_eq!(
            kiss(&mut a, b"RATE", 2.0),
            ReplyOutcome::Kiss(KissCode::Rate)
        );
        assert_eq!(a.poll_exponent(), 12);
        assert_eq!(a.next_poll(), Some(2.0 + 4096.0));
        assert_eq!(
            kiss(&mut a, b"DENY", 3.0),
            ReplyOutcome::Kiss(KissCode::Deny)
        );
        assert_eq!(a.state(), AssociationState::Refused(KissCode::Deny));
        assert_eq!(a.next_poll(), None);
        assert!(a.poll(5000.0, t(5000.0), 8).is_none());
        let c = a.counters();
        assert_eq!((c.nts_naks, c.rate_kisses, c.refusals), (1, 1, 1));
        a.restart(6000.0);
        assert_eq!(a.next_poll(), Some(6000.0), "a new start polls again");
    }

    #[test]
    fn requests_carry_the_cookie_and_hide_the_clock() {
        let mut a = Association::new(ClientConfig::default(), 0.0);
        let req = a.poll(0.0, t(0.0), 0).unwrap();
        let (h, _) = NtpHeader::parse(&req).unwrap();
        assert_eq!((h.mode, h.version), (Mode::Client, 4));
        assert_eq!(
            h.transmit_timestamp,
            NtpTimestamp::from_bits(1),
            "never zero"
        );
        assert_eq!(h.origin_timestamp, NtpTimestamp::ZERO);
        assert_eq!(h.receive_timestamp, NtpTimestamp::ZERO);
        assert!(a.answers_pending(&{
            let mut r = h;
            r.origin_timestamp = h.transmit_timestamp;
            r
        }));
    }
}
