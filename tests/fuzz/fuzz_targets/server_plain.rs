//! The whole server decision for plain NTP: access list, rate limit,
//! client table, interleaved mode, kiss-o'-death. The datagram is sent,
//! then sent again as the client's follow-up (its origin set to our
//! receive timestamp, as an interleaved client does), then once more at
//! once. Every reply is at most the size of its request (checked in
//! `serve`); a first reply echoes the request's transmit timestamp.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skytime_fuzz::{now, selector, serve, synchronized};
use skytime_proto::access::AccessList;
use skytime_proto::client_log::RateLimit;
use skytime_proto::server::{Context, NoNts, ReplyKind, Server};
use skytime_proto::sync_state::SyncState;
use skytime_proto::time::NtpTimestamp;
use std::net::SocketAddr;

fuzz_target!(|data: &[u8]| {
    let (choice, request) = selector(data);
    let acl = AccessList::allow_all();
    let sync = if choice & 1 == 0 {
        synchronized()
    } else {
        SyncState::unsynchronized(-20)
    };
    let ctx = Context {
        acl: &acl,
        rate_limit: (choice & 2 != 0).then_some(RateLimit {
            interval_log2: (choice >> 4) as i8 - 4,
            burst: u16::from(choice >> 6),
            leak_log2: 1,
            // Half of the unanswered get a RATE kiss-o'-death.
            kod_log2: 1,
        }),
        sync: &sync,
        leap_applied: choice & 4 != 0,
    };
    let mut server: Server<NoNts> = Server::new(if choice & 8 != 0 { 0 } else { 16 }, None, false);
    let remote: SocketAddr = if choice & 32 != 0 {
        "[2001:db8::1]:40000".parse().unwrap()
    } else {
        "192.0.2.1:40000".parse().unwrap()
    };
    let Some((kind, first)) = serve(&mut server, &ctx, request, remote, now()) else {
        return;
    };
    if kind == ReplyKind::Ntp {
        assert_eq!(
            &first[24..32],
            &request[40..48],
            "origin = request's transmit"
        );
    }
    let mut follow_up = request.to_vec();
    follow_up[24..32].copy_from_slice(&first[32..40]);
    let later = NtpTimestamp::from_unix(1_800_000_001, 0);
    serve(&mut server, &ctx, &follow_up, remote, later);
    serve(&mut server, &ctx, &follow_up, remote, later);
});
