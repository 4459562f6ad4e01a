//! The whole server decision for NTS-protected NTP (skytime-nts's
//! processor inside skytime-proto's server), under the master keys the
//! seed corpus's chrony request was made with. Every reply is at most the
//! size of its request (checked in `serve`), and an authentic reply
//! verifies, as a client checks it, under the session keys in the
//! request's cookie and with its Unique Identifier.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;
use skytime_fuzz::{fixture_keys, now, selector, serve, synchronized};
use skytime_nts::cookie;
use skytime_nts::extension::{field_type, parse_fields, MIN_FIELD_LEN};
use skytime_nts::server::client::{check_reply, ReplyCheck};
use skytime_nts::server::NtsServer;
use skytime_proto::access::AccessList;
use skytime_proto::server::{Context, ReplyKind, Server};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let (choice, request) = selector(data);
    let keys = Arc::new(fixture_keys());
    let nts = NtsServer::new(keys.clone(), StdRng::seed_from_u64(u64::from(choice)));
    let mut server = Server::new(16, Some(nts), choice & 1 != 0);
    let acl = AccessList::allow_all();
    let sync = synchronized();
    let ctx = Context {
        acl: &acl,
        rate_limit: None,
        sync: &sync,
        leap_applied: false,
    };
    let remote = "192.0.2.7:40000".parse().unwrap();
    let Some((kind, reply)) = serve(&mut server, &ctx, request, remote, now()) else {
        return;
    };
    if kind != ReplyKind::Nts {
        return;
    }
    let fields = parse_fields(&request[48..], MIN_FIELD_LEN).expect("an authentic request parses");
    let body = |t| fields.iter().find(|f| f.field_type == t).map(|f| f.body);
    let uid = body(field_type::UNIQUE_IDENTIFIER).expect("authentic: has a Unique Identifier");
    let cookie = body(field_type::COOKIE).expect("authentic: has a cookie");
    let session = cookie::open(cookie, &keys).expect("authentic: its cookie opens");
    assert!(
        matches!(
            check_reply(&reply, uid, &session),
            Some(ReplyCheck::Authentic(_))
        ),
        "the reply to an authentic request verifies as the client checks it"
    );
});
