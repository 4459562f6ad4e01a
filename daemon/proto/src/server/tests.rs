use super::*;
use crate::smear::{Smear, SmearShape};

const CLIENT: &str = "192.0.2.10:40000";

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

fn t(secs: f64) -> NtpTimestamp {
    NtpTimestamp::from_unix(1_800_000_000, 0) + NtpDuration::from_seconds_f64(secs)
}

#[test]
fn smeared_reply_shifts_every_served_timestamp_by_the_offset() {
    let t = NtpTimestamp::from_unix(1_800_000_000, 0);
    let state = SyncState::local(1, -20, t);
    let bytes = request(4, 3);
    let req = classify(&bytes, CLIENT.parse().unwrap(), &allow_all()).unwrap();
    let off = NtpDuration::from_seconds_f64(-0.25);
    let plain = NtpHeader::parse(&reply_header(&req.header, t, &state).finish(t))
        .unwrap()
        .0;
    let smeared = NtpHeader::parse(&reply_header(&req.header, t, &state).smeared(off).finish(t))
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
fn drop_reason_names_are_unique_and_indexed() {
    let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), DropReason::ALL.len());
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(r.index(), i);
    }
}

/// A stand-in NTS processor: requests whose first extension byte is 1
/// are authentic (the reply carries the 8 bytes after the header, and
/// sealing writes `S` over them), 2 is a NAK, 3 a drop; anything else is
/// not NTS.
#[derive(Debug, Default)]
struct FakeNts {
    fail_seal: bool,
}

impl NtsProcessor for FakeNts {
    type Pending = usize;
    fn examine(&mut self, request: &[u8], out: &mut [u8]) -> NtsExamined<usize> {
        match request.get(HEADER_LEN) {
            Some(1) => {
                out[HEADER_LEN..HEADER_LEN + 8]
                    .copy_from_slice(&request[HEADER_LEN..HEADER_LEN + 8]);
                NtsExamined::Authentic {
                    len: HEADER_LEN + 8,
                    pending: HEADER_LEN + 8,
                }
            }
            Some(2) => NtsExamined::Nak {
                len: HEADER_LEN + 4,
            },
            Some(3) => NtsExamined::Drop(DropReason::NtsAuthFailed),
            _ => NtsExamined::NotNts,
        }
    }
    fn seal(&mut self, pending: &usize, out: &mut [u8]) -> Result<(), SealFailed> {
        if self.fail_seal {
            return Err(SealFailed);
        }
        out[HEADER_LEN..*pending].fill(b'S');
        Ok(())
    }
}

struct Bench {
    server: Server<FakeNts>,
    acl: AccessList,
    rate_limit: Option<RateLimit>,
    sync: SyncState,
    out: [u8; 256],
}

impl Bench {
    fn new(nts_required: bool) -> Self {
        Self {
            server: Server::new(64, Some(FakeNts::default()), nts_required),
            acl: allow_all(),
            rate_limit: None,
            sync: SyncState::local(2, -20, t(0.0)),
            out: [0; 256],
        }
    }

    /// Handles `data` from `from` received at `rx`; finishes with `tx`.
    fn ask(
        &mut self,
        data: &[u8],
        from: &str,
        rx: NtpTimestamp,
        tx: NtpTimestamp,
    ) -> Result<(Vec<u8>, Prepared<usize>), DropReason> {
        let ctx = Context {
            acl: &self.acl,
            rate_limit: self.rate_limit,
            sync: &self.sync,
            leap_applied: false,
        };
        let incoming = Incoming {
            data,
            remote: from.parse().unwrap(),
            received: rx,
        };
        match self.server.handle(&ctx, &incoming, &mut self.out) {
            Handled::Dropped(r) => Err(r),
            Handled::Reply(p) => {
                let (len, _) = self.server.finish(&p, tx, &mut self.out)?;
                Ok((self.out[..len].to_vec(), p))
            }
        }
    }

    fn client(&self, from: &str) -> crate::client_log::ClientEntry {
        let ip: SocketAddr = from.parse().unwrap();
        self.server
            .clients()
            .unwrap()
            .entries()
            .find(|e| e.address == ip.ip())
            .unwrap()
    }
}

fn with_ext(first: u8) -> Vec<u8> {
    let mut b = request(4, 3).to_vec();
    b.extend_from_slice(&[first, 0, 0, 8, 9, 9, 9, 9]);
    b
}

#[test]
fn the_whole_decision_for_plain_and_nts_requests() {
    let mut b = Bench::new(false);
    // Plain: a 48-byte reply, counted for the client.
    let (reply, p) = b.ask(&request(4, 3), CLIENT, t(1.0), t(1.001)).unwrap();
    assert_eq!(reply.len(), HEADER_LEN);
    assert_eq!(p.kind(), ReplyKind::Ntp);
    let h = NtpHeader::parse(&reply).unwrap().0;
    assert_eq!((h.stratum, h.mode), (2, Mode::Server));
    assert_eq!(h.receive_timestamp, t(1.0));
    assert_eq!(h.transmit_timestamp, t(1.001));
    // Authentic NTS: fields after the header, sealed after it was written.
    let (reply, p) = b.ask(&with_ext(1), CLIENT, t(2.0), t(2.001)).unwrap();
    assert_eq!(p.kind(), ReplyKind::Nts);
    assert_eq!(&reply[HEADER_LEN..], b"SSSSSSSS");
    // NAK: kiss NTSN, fields unsealed.
    let (reply, p) = b.ask(&with_ext(2), CLIENT, t(3.0), t(3.001)).unwrap();
    assert_eq!(p.kind(), ReplyKind::NtsNak);
    let h = NtpHeader::parse(&reply).unwrap().0;
    assert_eq!((h.stratum, h.reference_id), (0, ReferenceId::KISS_NTSN));
    assert_eq!(reply.len(), HEADER_LEN + 4);
    // Dropped by NTS, and not-NTS extensions answered as plain NTP.
    assert_eq!(
        b.ask(&with_ext(3), CLIENT, t(4.0), t(4.0)).unwrap_err(),
        DropReason::NtsAuthFailed
    );
    let (reply, p) = b.ask(&with_ext(7), CLIENT, t(5.0), t(5.0)).unwrap();
    assert_eq!((reply.len(), p.kind()), (HEADER_LEN, ReplyKind::Ntp));
    let c = b.client(CLIENT);
    assert_eq!((c.ntp_replies, c.nts_replies, c.dropped), (2, 1, 2));
    // Bad input is dropped with its reason and counted for its sender.
    assert_eq!(
        b.ask(&[0; 20], CLIENT, t(6.0), t(6.0)).unwrap_err(),
        DropReason::TooShort
    );
    assert_eq!(b.client(CLIENT).dropped, 3);
    b.acl = AccessList::default();
    assert_eq!(
        b.ask(&request(4, 3), CLIENT, t(7.0), t(7.0)).unwrap_err(),
        DropReason::AccessDenied
    );
}

#[test]
fn nts_required_refuses_plain_and_foreign_extensions_only() {
    let mut b = Bench::new(true);
    assert_eq!(
        b.ask(&request(4, 3), CLIENT, t(1.0), t(1.0)).unwrap_err(),
        DropReason::NtsRequired
    );
    assert_eq!(
        b.ask(&with_ext(7), CLIENT, t(1.0), t(1.0)).unwrap_err(),
        DropReason::NtsRequired
    );
    assert!(b.ask(&with_ext(1), CLIENT, t(1.0), t(1.0)).is_ok());
    // Without NTS, "required" cannot apply and extensions are ignored.
    let mut plain: Server<NoNts> = Server::new(8, None, true);
    let acl = allow_all();
    let sync = SyncState::local(2, -20, t(0.0));
    let ctx = Context {
        acl: &acl,
        rate_limit: None,
        sync: &sync,
        leap_applied: false,
    };
    let data = with_ext(1);
    let incoming = Incoming {
        data: &data,
        remote: CLIENT.parse().unwrap(),
        received: t(1.0),
    };
    let mut out = [0u8; 64];
    let Handled::Reply(p) = plain.handle(&ctx, &incoming, &mut out) else {
        panic!("not answered")
    };
    assert_eq!(plain.finish(&p, t(1.0), &mut out).unwrap().0, HEADER_LEN);
}

#[test]
fn a_seal_that_fails_is_never_sent() {
    let mut b = Bench::new(false);
    b.server.nts_mut().unwrap().fail_seal = true;
    assert_eq!(
        b.ask(&with_ext(1), CLIENT, t(1.0), t(1.0)).unwrap_err(),
        DropReason::SealFailed
    );
}

#[test]
fn rate_limit_drops_and_counts_then_lets_the_client_back() {
    let mut b = Bench::new(false);
    b.rate_limit = Some(RateLimit {
        interval_log2: 0,
        burst: 2,
        leak_log2: 0,
        kod_log2: 0,
    });
    let results: Vec<_> = (0..6)
        .map(|i| {
            b.ask(
                &request(4, 3),
                CLIENT,
                t(i as f64 * 0.01),
                t(i as f64 * 0.01),
            )
            .is_ok()
        })
        .collect();
    assert_eq!(results, [true, true, true, false, false, false]);
    let c = b.client(CLIENT);
    assert_eq!((c.ntp_replies, c.dropped, c.rate_limited), (3, 3, 3));
    // Another client is not affected, and a second later one more passes.
    assert!(b
        .ask(&request(4, 3), "192.0.2.11:1", t(0.05), t(0.05))
        .is_ok());
    assert!(b.ask(&request(4, 3), CLIENT, t(1.1), t(1.1)).is_ok());
}

/// A client over `kod_limit()` after its first two requests: of the
/// requests over the limit, every second gets a RATE kiss-o'-death.
fn kod_limit() -> Option<RateLimit> {
    Some(RateLimit {
        interval_log2: 4,
        burst: 1,
        leak_log2: 0,
        kod_log2: 1,
    })
}

#[test]
fn rate_kod_reply_has_exactly_the_rfc_5905_fields() {
    let mut b = Bench::new(false);
    b.rate_limit = kod_limit();
    let mut req = request(4, 3);
    req[2] = 2; // polls every 4 s, faster than the limit's 16 s
    let ask = |b: &mut Bench, i: u32| {
        let at = t(f64::from(i) * 0.01);
        b.ask(&req, CLIENT, at, at + NtpDuration::from_seconds_f64(0.001))
    };
    assert_eq!(ask(&mut b, 0).unwrap().1.kind(), ReplyKind::Ntp);
    assert_eq!(ask(&mut b, 1).unwrap().1.kind(), ReplyKind::Ntp);
    assert_eq!(ask(&mut b, 2).unwrap_err(), DropReason::RateLimited);
    let (reply, p) = ask(&mut b, 3).unwrap();
    assert_eq!(p.kind(), ReplyKind::RateKod);
    assert!(!p.wants_kernel_transmit() && !p.is_interleaved());
    assert_eq!(reply.len(), HEADER_LEN, "never larger than the request");
    let mut want = [0u8; HEADER_LEN];
    want[0] = (3 << 6) | (4 << 3) | 4; // LI 3, version 4, mode 4
    want[1] = 0; // stratum 0: a kiss-o'-death
    want[2] = 4; // poll: at least the limit's interval
    want[3] = (-20i8) as u8; // precision
                             // root delay, root dispersion: zero
    want[12..16].copy_from_slice(b"RATE");
    // reference timestamp: zero; origin: the client's transmit timestamp
    want[24..32].copy_from_slice(&req[40..48]);
    want[32..40].copy_from_slice(&t(0.03).to_bits().to_be_bytes());
    want[40..48].copy_from_slice(
        &(t(0.03) + NtpDuration::from_seconds_f64(0.001))
            .to_bits()
            .to_be_bytes(),
    );
    assert_eq!(reply, want);
    // A client polling slower than the limit keeps its own poll.
    let mut slow = request(4, 3);
    slow[2] = 10;
    let results: Vec<_> = (0..4)
        .map(|_| b.ask(&slow, "192.0.2.12:123", t(1.0), t(1.0)))
        .collect();
    let (kod, _) = results[3].as_ref().unwrap();
    assert_eq!((kod[1], kod[2]), (0, 10));
    // The version is echoed.
    for i in 0..4 {
        let r = b.ask(&request(3, 3), "192.0.2.13:123", t(2.0), t(2.0));
        if i == 3 {
            assert_eq!(r.unwrap().0[0], (3 << 6) | (3 << 3) | 4);
        }
    }
}

#[test]
fn rate_kod_is_counted_as_not_served_and_kod_off_only_drops() {
    let mut b = Bench::new(false);
    b.rate_limit = kod_limit();
    let kinds: Vec<_> = (0..10)
        .map(|i| {
            b.ask(&request(4, 3), CLIENT, t(f64::from(i) * 0.01), t(1.0))
                .map(|(_, p)| p.kind())
        })
        .collect();
    use ReplyKind::{Ntp, RateKod};
    let limited = Err(DropReason::RateLimited);
    assert_eq!(
        kinds,
        [
            Ok(Ntp),
            Ok(Ntp),
            limited,
            Ok(RateKod),
            limited,
            Ok(RateKod),
            limited,
            Ok(RateKod),
            limited,
            Ok(RateKod)
        ]
    );
    let c = b.client(CLIENT);
    // Eight over the limit, four of them kissed: none served time.
    assert_eq!((c.ntp_replies, c.dropped, c.rate_limited), (2, 8, 8));
    // With kod 0 (the default) the same client only gets drops.
    b.rate_limit = kod_limit().map(|l| RateLimit { kod_log2: 0, ..l });
    for i in 0..8 {
        let at = t(0.1 + f64::from(i) * 0.01);
        assert_eq!(
            b.ask(&request(4, 3), CLIENT, at, at).unwrap_err(),
            DropReason::RateLimited
        );
    }
}

#[test]
fn nts_clients_get_an_authenticated_rate_kod_and_never_a_plain_one() {
    let mut b = Bench::new(false);
    b.rate_limit = kod_limit();
    let nts = with_ext(1);
    let ask = |b: &mut Bench, data: &[u8], i: u32| {
        let at = t(f64::from(i) * 0.01);
        b.ask(data, CLIENT, at, at)
    };
    assert_eq!(ask(&mut b, &nts, 0).unwrap().1.kind(), ReplyKind::Nts);
    assert_eq!(ask(&mut b, &nts, 1).unwrap().1.kind(), ReplyKind::Nts);
    assert_eq!(ask(&mut b, &nts, 2).unwrap_err(), DropReason::RateLimited);
    let (reply, p) = ask(&mut b, &nts, 3).unwrap();
    assert_eq!(p.kind(), ReplyKind::RateKod);
    let h = NtpHeader::parse(&reply).unwrap().0;
    assert_eq!((h.stratum, h.reference_id), (0, ReferenceId::KISS_RATE));
    // Sealed like any NTS reply, and no larger than the request.
    assert_eq!(&reply[HEADER_LEN..], b"SSSSSSSS");
    assert!(reply.len() <= nts.len());
    // Where the KoD would go to a cookie we cannot open (no keys to
    // authenticate it), or to a request that fails authentication, no
    // reply at all.
    assert_eq!(
        ask(&mut b, &with_ext(2), 4).unwrap_err(),
        DropReason::RateLimited
    );
    assert_eq!(
        ask(&mut b, &with_ext(2), 5).unwrap_err(),
        DropReason::RateLimited
    );
    assert_eq!(
        ask(&mut b, &with_ext(3), 6).unwrap_err(),
        DropReason::RateLimited
    );
    assert_eq!(
        ask(&mut b, &with_ext(3), 7).unwrap_err(),
        DropReason::NtsAuthFailed
    );
    // With NTS required, a plain client over the limit gets no KoD.
    let mut r = Bench::new(true);
    r.rate_limit = kod_limit();
    for i in 0..4 {
        assert!(ask(&mut r, &request(4, 3), i).is_err());
    }
}

#[test]
fn leap_smear_is_applied_to_served_timestamps() {
    let mut b = Bench::new(false);
    let leap_at = t(1000.0);
    b.sync.smear = Some(Smear {
        leap_at,
        insert: true,
        shape: SmearShape::Linear,
        duration_s: 100.0,
    });
    // Half-way through the window: half a second smeared.
    let (reply, _) = b.ask(&request(4, 3), CLIENT, t(999.5), t(999.5)).unwrap();
    let h = NtpHeader::parse(&reply).unwrap().0;
    assert!(((h.receive_timestamp - t(999.5)).to_seconds_f64() + 0.5).abs() < 0.01);
    assert!(((h.transmit_timestamp - t(999.5)).to_seconds_f64() + 0.5).abs() < 0.01);
    // Outside it, nothing.
    let (reply, _) = b.ask(&request(4, 3), CLIENT, t(10.0), t(10.0)).unwrap();
    assert_eq!(
        NtpHeader::parse(&reply).unwrap().0.receive_timestamp,
        t(10.0)
    );
}

/// A request as chrony's `xleave` client forms it: origin = the server's
/// receive timestamp of the previous exchange, receive = when the client
/// received that reply, transmit = now.
fn xleave_request(origin: u64, receive: u64, transmit: u64) -> [u8; HEADER_LEN] {
    let mut b = request(4, 3);
    b[24..32].copy_from_slice(&origin.to_be_bytes());
    b[32..40].copy_from_slice(&receive.to_be_bytes());
    b[40..48].copy_from_slice(&transmit.to_be_bytes());
    b
}

#[test]
fn interleaved_mode_serves_the_previous_replys_kernel_transmit_timestamp() {
    let mut b = Bench::new(false);
    // First exchange: basic (origin zero).
    let first = xleave_request(0, 0, t(0.9).to_bits());
    let (r1, p1) = b.ask(&first, CLIENT, t(1.0), t(1.001)).unwrap();
    assert!(!p1.is_interleaved() && !p1.wants_kernel_transmit());
    let h1 = NtpHeader::parse(&r1).unwrap().0;
    assert_eq!(
        h1.origin_timestamp,
        t(0.9),
        "basic: origin is the client's transmit"
    );
    // Second: the client echoes our receive timestamp: interleaved, with
    // the daemon's transmit timestamp of the first reply.
    let second = xleave_request(
        h1.receive_timestamp.to_bits(),
        t(1.002).to_bits(),
        t(1.9).to_bits(),
    );
    let acl = b.acl.clone();
    let sync = b.sync;
    let ctx = Context {
        acl: &acl,
        rate_limit: None,
        sync: &sync,
        leap_applied: false,
    };
    let incoming = Incoming {
        data: &second,
        remote: CLIENT.parse().unwrap(),
        received: t(2.0),
    };
    let Handled::Reply(p2) = b.server.handle(&ctx, &incoming, &mut b.out) else {
        panic!()
    };
    assert!(p2.is_interleaved() && p2.wants_kernel_transmit());
    let (len, ticket) = b.server.finish(&p2, t(2.001), &mut b.out).unwrap();
    let h2 = NtpHeader::parse(&b.out[..len]).unwrap().0;
    assert_eq!(
        h2.transmit_timestamp,
        t(1.001),
        "the previous reply's transmit"
    );
    assert_eq!(h2.origin_timestamp, t(1.002), "the client's receive of it");
    assert_eq!(h2.receive_timestamp, t(2.0));
    // The kernel says the second reply left at 2.0015: the third gets that.
    assert!(b.server.kernel_transmit(&ticket.unwrap(), t(2.0015)));
    let third = xleave_request(
        h2.receive_timestamp.to_bits(),
        t(2.003).to_bits(),
        t(2.9).to_bits(),
    );
    let (r3, p3) = b.ask(&third, CLIENT, t(3.0), t(3.001)).unwrap();
    assert!(p3.is_interleaved());
    assert_eq!(
        NtpHeader::parse(&r3).unwrap().0.transmit_timestamp,
        t(2.0015)
    );
    // A basic client (origin = our transmit, as ntpd sends) stays basic,
    // and so does a replayed old request.
    let basic = xleave_request(t(3.001).to_bits(), t(3.002).to_bits(), t(3.5).to_bits());
    let (_, p4) = b.ask(&basic, CLIENT, t(4.0), t(4.001)).unwrap();
    assert!(!p4.is_interleaved() && !p4.wants_kernel_transmit());
    let (_, p5) = b.ask(&third, CLIENT, t(5.0), t(5.001)).unwrap();
    assert!(!p5.is_interleaved());
    // Another client echoing this client's receive timestamp gets nothing.
    let (_, p6) = b
        .ask(
            &xleave_request(t(5.0).to_bits(), 1, 2),
            "192.0.2.77:5",
            t(6.0),
            t(6.0),
        )
        .unwrap();
    assert!(!p6.is_interleaved());
}

#[test]
fn interleaved_mode_needs_version_4_and_distinct_client_timestamps() {
    let mut b = Bench::new(false);
    let (r1, _) = b
        .ask(&xleave_request(0, 0, 5), CLIENT, t(1.0), t(1.001))
        .unwrap();
    let rx = NtpHeader::parse(&r1).unwrap().0.receive_timestamp.to_bits();
    // receive == transmit: basic mode (chrony's rule).
    let (r2, p2) = b
        .ask(&xleave_request(rx, 7, 7), CLIENT, t(2.0), t(2.001))
        .unwrap();
    assert!(!p2.is_interleaved());
    let rx = NtpHeader::parse(&r2).unwrap().0.receive_timestamp.to_bits();
    let mut v3 = xleave_request(rx, 7, 8);
    v3[0] = (3 << 3) | 3;
    let (_, p3) = b.ask(&v3, CLIENT, t(3.0), t(3.001)).unwrap();
    assert!(!p3.is_interleaved());
}

#[test]
fn a_transmit_timestamp_never_equals_the_receive_timestamp() {
    let mut b = Bench::new(false);
    let (r, _) = b.ask(&request(4, 3), CLIENT, t(1.0), t(1.0)).unwrap();
    let h = NtpHeader::parse(&r).unwrap().0;
    assert_ne!(h.transmit_timestamp, h.receive_timestamp);
    assert!(
        (h.transmit_timestamp - h.receive_timestamp)
            .to_nanos()
            .abs()
            < 2
    );
}
