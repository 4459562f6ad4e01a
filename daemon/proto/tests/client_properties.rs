//! Properties of the sans-IO NTP client over arbitrary sequences of
//! requests, replies, losses, forgeries and kiss codes.

use proptest::prelude::*;
use skytime_proto::client::filter::{ClockFilter, STAGES};
use skytime_proto::client::poll::{PollConfig, RATE_CEILING};
use skytime_proto::client::{
    Association, AssociationState, ClientConfig, KissCode, Measurement, ReplyDrop, ReplyOutcome,
};
use skytime_proto::{LeapIndicator, Mode, NtpDuration, NtpHeader, NtpTimestamp, ReferenceId};

fn t(s: f64) -> NtpTimestamp {
    NtpTimestamp::from_unix(1_800_000_000, 0) + NtpDuration::from_seconds_f64(s)
}

/// What the network does with one request.
#[derive(Clone, Debug)]
enum Fate {
    /// Lost.
    Lost,
    /// Answered with this offset and delay.
    Answer { offset: f64, delay: f64 },
    /// Answered, and the answer arrives twice.
    Duplicate { offset: f64, delay: f64 },
    /// A forged reply with a guessed origin arrives instead.
    Forged { origin: u64 },
    /// A kiss-o'-death.
    Kiss(&'static [u8; 4], i8),
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        3 => Just(Fate::Lost),
        6 => (-1.0f64..1.0, 1e-4f64..0.2).prop_map(|(offset, delay)| Fate::Answer { offset, delay }),
        1 => (-1.0f64..1.0, 1e-4f64..0.2).prop_map(|(offset, delay)| Fate::Duplicate { offset, delay }),
        2 => any::<u64>().prop_map(|origin| Fate::Forged { origin }),
        1 => (prop_oneof![Just(b"RATE"), Just(b"DENY"), Just(b"RSTR"), Just(b"NTSN"), Just(b"XXXX")], -6i8..20)
            .prop_map(|(c, p)| Fate::Kiss(c, p)),
    ]
}

fn server_reply(request: &[u8; 48], t1: f64, offset: f64, delay: f64) -> (NtpHeader, f64) {
    let (mut h, _) = NtpHeader::parse(request).unwrap();
    h.mode = Mode::Server;
    h.leap = LeapIndicator::NoWarning;
    h.stratum = 2;
    h.precision = -20;
    h.reference_id = ReferenceId::GPS;
    h.origin_timestamp = h.transmit_timestamp;
    h.receive_timestamp = t(t1 + delay / 2.0 + offset);
    h.transmit_timestamp = h.receive_timestamp;
    (h, t1 + delay)
}

proptest! {
    #[test]
    fn only_the_answer_to_the_request_in_flight_is_used_and_only_once(
        fates in proptest::collection::vec(fate(), 1..80),
        cookies in proptest::collection::vec(any::<u64>(), 80),
        minpoll in -2i8..6,
        span in 0i8..6,
    ) {
        let config = ClientConfig {
            poll: PollConfig { minpoll, maxpoll: minpoll + span, iburst: true },
            ..ClientConfig::default()
        };
        let mut a = Association::new(config, 0.0);
        let mut mono = 0.0;
        let mut accepted = 0u64;
        let mut outcomes: Vec<bool> = Vec::new();
        for (i, fate) in fates.iter().enumerate() {
            let Some(due) = a.next_poll() else {
                prop_assert!(matches!(a.state(), AssociationState::Refused(_)));
                break;
            };
            prop_assert!(due >= mono - 1e-9, "time runs forward");
            mono = due;
            let poll_before = a.poll_exponent();
            let cookie = cookies[i].max(1);
            let req = a.poll(mono, t(mono), cookie).unwrap();
            let (h, _) = NtpHeader::parse(&req).unwrap();
            prop_assert_eq!(h.transmit_timestamp.to_bits(), cookie);
            let mut answered = false;
            match fate {
                Fate::Lost => {}
                Fate::Answer { offset, delay } | Fate::Duplicate { offset, delay } => {
                    let (reply, t4) = server_reply(&req, mono, *offset, *delay);
                    match a.handle_reply(&reply, t(t4), mono + delay) {
                        ReplyOutcome::Accepted(out) => {
                            accepted += 1;
                            answered = true;
                            if let Some(s) = out {
                                // The filter's choice is never slower than this one.
                                prop_assert!(s.measurement.delay <= delay + 1e-6);
                            }
                        }
                        other => prop_assert!(false, "a genuine answer: {:?}", other),
                    }
                    if matches!(fate, Fate::Duplicate { .. }) {
                        prop_assert_eq!(
                            a.handle_reply(&reply, t(t4), mono + delay),
                            ReplyOutcome::Dropped(ReplyDrop::UnknownRequest)
                        );
                    }
                }
                Fate::Forged { origin } => {
                    let (mut reply, t4) = server_reply(&req, mono, 0.3, 0.01);
                    reply.origin_timestamp = NtpTimestamp::from_bits(*origin);
                    let out = a.handle_reply(&reply, t(t4), mono + 0.01);
                    if *origin == cookie {
                        prop_assert!(matches!(out, ReplyOutcome::Accepted(_)));
                        accepted += 1;
                        answered = true;
                    } else {
                        prop_assert_eq!(out, ReplyOutcome::Dropped(ReplyDrop::UnknownRequest));
                    }
                }
                Fate::Kiss(code, server_poll) => {
                    let (mut reply, t4) = server_reply(&req, mono, 0.0, 0.01);
                    reply.stratum = 0;
                    reply.reference_id = ReferenceId(**code);
                    reply.poll = *server_poll;
                    let out = a.handle_reply(&reply, t(t4), mono + 0.01);
                    let kiss = KissCode::from_reference_id(ReferenceId(**code));
                    prop_assert_eq!(out, ReplyOutcome::Kiss(kiss));
                    match kiss {
                        KissCode::Deny | KissCode::Rstr => {
                            prop_assert_eq!(a.next_poll(), None);
                            prop_assert!(a.poll(mono + 1e6, t(mono), 5).is_none());
                        }
                        KissCode::Rate => {
                            prop_assert!(a.poll_exponent() >= (poll_before + 1).min(RATE_CEILING));
                            prop_assert!(a.poll_exponent() >= (*server_poll).min(RATE_CEILING));
                        }
                        _ => {}
                    }
                    // The kiss answered the request: a copy is a duplicate.
                    prop_assert_eq!(
                        a.handle_reply(&reply, t(t4), mono + 0.01),
                        ReplyOutcome::Dropped(ReplyDrop::UnknownRequest)
                    );
                }
            }
            outcomes.push(answered);
            // The reachability register is the last eight outcomes.
            let reach = outcomes
                .iter()
                .rev()
                .take(8)
                .enumerate()
                .fold(0u8, |r, (k, ok)| r | (u8::from(*ok) << k));
            prop_assert_eq!(a.reach(), reach);
            prop_assert!(a.poll_exponent() >= minpoll);
            prop_assert!(a.poll_exponent() <= (minpoll + span).max(RATE_CEILING));
        }
        prop_assert_eq!(a.counters().accepted, accepted);
    }

    #[test]
    fn the_filter_passes_on_the_lowest_delay_of_the_last_eight_once(
        samples in proptest::collection::vec((-0.1f64..0.1, 1e-4f64..0.5), 1..60),
    ) {
        let mut f = ClockFilter::new();
        let mut window: Vec<(usize, f64)> = Vec::new();
        let mut last_out: Option<NtpTimestamp> = None;
        for (i, (offset, delay)) in samples.iter().enumerate() {
            let m = Measurement {
                offset: *offset,
                delay: *delay,
                dispersion: 1e-6,
                local_time: t(i as f64 * 16.0),
                stratum: 1,
                reference_id: ReferenceId::GPS,
                root_delay: 0.0,
                root_dispersion: 0.0,
                leap: LeapIndicator::NoWarning,
                poll: 4,
            };
            window.push((i, *delay));
            if window.len() > STAGES {
                window.remove(0);
            }
            let best = window
                .iter()
                .copied()
                .fold(None::<(usize, f64)>, |b, x| match b {
                    Some(b) if b.1 <= x.1 && !(b.1 == x.1 && x.0 > b.0) => Some(b),
                    _ => Some(x),
                })
                .unwrap();
            match f.add(m, i as f64 * 16.0) {
                Some(out) => {
                    prop_assert_eq!(out.measurement.local_time, t(best.0 as f64 * 16.0));
                    prop_assert!(last_out.is_none_or(|l| out.measurement.local_time > l));
                    last_out = Some(out.measurement.local_time);
                }
                None => {
                    // Nothing newer to pass on: the best was passed on before.
                    prop_assert!(last_out.is_some_and(|l| t(best.0 as f64 * 16.0) <= l));
                }
            }
        }
    }
}
