//! Property tests: the server core takes any bytes from anyone without
//! panicking, and what it answers is always consistent with the request.

use proptest::prelude::*;
use skytime_proto::access::AccessList;
use skytime_proto::server::{classify, reply_header, DropReason};
use skytime_proto::{Mode, NtpHeader, NtpTimestamp, SyncState};
use std::net::SocketAddr;

fn from() -> SocketAddr {
    "192.0.2.1:123".parse().unwrap()
}

proptest! {
    #[test]
    fn any_bytes_are_classified_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let acl = AccessList::allow_all();
        match classify(&bytes, from(), &acl) {
            Ok(req) => {
                prop_assert!(bytes.len() >= 48);
                prop_assert_eq!(req.header.mode, Mode::Client);
                prop_assert_eq!(req.extensions.len(), bytes.len() - 48);
            }
            Err(DropReason::TooShort) => prop_assert!(bytes.len() < 48),
            Err(DropReason::BadVersion) => prop_assert!(!(1..=4).contains(&((bytes[0] >> 3) & 7))),
            Err(DropReason::NotClientMode) => prop_assert_ne!(bytes[0] & 7, 3),
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn header_round_trips(bytes in proptest::array::uniform32(any::<u8>()), tail in proptest::array::uniform16(any::<u8>())) {
        let mut raw = [0u8; 48];
        raw[..32].copy_from_slice(&bytes);
        raw[32..].copy_from_slice(&tail);
        let (h, _) = NtpHeader::parse(&raw).unwrap();
        prop_assert_eq!(h.serialize(), raw);
    }

    #[test]
    fn replies_echo_request_and_follow_state(
        first in any::<u8>(), poll in any::<i8>(), xmt in any::<u64>(), rx in any::<u64>(),
        stratum in 1u8..16, synced in any::<bool>(),
    ) {
        let mut raw = [0u8; 48];
        raw[0] = (first & 0b1100_0000) | (4 << 3) | 3;
        raw[2] = poll as u8;
        raw[40..48].copy_from_slice(&xmt.to_be_bytes());
        let req = classify(&raw, from(), &AccessList::allow_all()).unwrap();
        let rx = NtpTimestamp::from_bits(rx);
        let state = if synced { SyncState::local(stratum, -20, rx) } else { SyncState::unsynchronized(-20) };
        let reply = reply_header(&req.header, rx, &state).header;
        prop_assert_eq!(reply.mode, Mode::Server);
        prop_assert_eq!(reply.version, 4);
        prop_assert_eq!(reply.poll, poll);
        prop_assert_eq!(reply.origin_timestamp.to_bits(), xmt);
        prop_assert_eq!(reply.receive_timestamp, rx);
        prop_assert_eq!(reply.stratum, if synced { stratum } else { 16 });
    }
}

mod decision {
    use super::*;
    use skytime_proto::client_log::RateLimit;
    use skytime_proto::server::{Context, Handled, Incoming, NoNts, Server};

    proptest! {
        /// Whatever arrives, from whoever, the whole decision never panics
        /// and a reply is never larger than its request.
        #[test]
        fn any_datagram_gets_a_reply_no_larger_or_a_reason(
            datagrams in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..120), any::<u8>(), any::<u16>()), 1..40),
            limited in any::<bool>(),
            kod_log2 in 0u8..3,
        ) {
            let mut server: Server<NoNts> = Server::new(16, None, false);
            let acl = AccessList::allow_all();
            let rate_limit = limited.then_some(RateLimit { interval_log2: 0, burst: 2, leak_log2: 1, kod_log2 });
            let sync = SyncState::local(3, -20, NtpTimestamp::from_unix(1_800_000_000, 0));
            let ctx = Context { acl: &acl, rate_limit, sync: &sync, leap_applied: false };
            let mut out = [0u8; 256];
            for (i, (data, host, port)) in datagrams.iter().enumerate() {
                let remote = SocketAddr::from(([192, 0, 2, *host], *port));
                let received = NtpTimestamp::from_unix(1_800_000_000 + i as i64, 0);
                let incoming = Incoming { data, remote, received };
                match server.handle(&ctx, &incoming, &mut out) {
                    Handled::Reply(p) => {
                        let (len, _) = server.finish(&p, received, &mut out).unwrap();
                        prop_assert!(len <= data.len());
                        let (h, _) = NtpHeader::parse(&out[..len]).unwrap();
                        prop_assert_eq!(h.mode, Mode::Server);
                    }
                    Handled::Dropped(_) => {}
                }
            }
            let log = server.clients().unwrap();
            prop_assert_eq!(log.entries().count(), log.len());
        }
    }
}
