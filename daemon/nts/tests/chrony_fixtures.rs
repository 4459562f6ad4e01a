//! What Debian's chrony 4.3 really sends, recorded by
//! `tests/scripts/capture-chrony-nts.py` into `tests/fixtures/chrony-4.3/`:
//! its NTS-KE request (TLS plaintext), its first NTS-protected NTP request
//! to skytimed with skytimed's reply, and the master keys skytimed used (a
//! throw-away test key). Opening the cookie in the request with those keys
//! yields the session keys, so the authenticator and the recorded reply can
//! be checked without the TLS session.

use skytime_nts::aead::Aead;
use skytime_nts::cookie;
use skytime_nts::extension::{field_type, parse_fields};
use skytime_nts::ke;
use skytime_nts::keyset::KeySet;
use skytime_nts::server::client::{check_reply, ReplyCheck};
use skytime_nts::server::{Detail, DropCause, NtsServer};
use std::sync::Arc;

const HEADER_LEN: usize = 48;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/chrony-4.3/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn keys() -> KeySet {
    KeySet::parse(&String::from_utf8(fixture("master-keys.txt")).unwrap()).unwrap()
}

/// What the server decides for `request` with `keys`.
fn examine(request: &[u8], keys: KeySet) -> (Detail, Vec<u8>) {
    let mut server = NtsServer::new(Arc::new(keys), rand::rngs::OsRng);
    let mut out = vec![0u8; request.len().max(HEADER_LEN)];
    let d = server.examine_detail(request, &mut out);
    (d, out)
}

/// (unique identifier, cookie) of a request.
fn uid_and_cookie(request: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let fields = parse_fields(&request[HEADER_LEN..], 16).unwrap();
    let body = |t| {
        fields
            .iter()
            .find(|f| f.field_type == t)
            .map(|f| f.body.to_vec())
            .unwrap()
    };
    (
        body(field_type::UNIQUE_IDENTIFIER),
        body(field_type::COOKIE),
    )
}

#[test]
fn chrony_key_exchange_request_is_accepted_with_aes_siv() {
    let request = fixture("ke-request.bin");
    // chrony 4.3 offers AES-SIV-CMAC-256 only, without record 1024.
    let agreed = ke::decide(&request).unwrap();
    assert_eq!(agreed.aead, Aead::AesSivCmac256);
    assert!(!agreed.compliant_export);
}

#[test]
fn chrony_ntp_request_authenticates_and_gets_a_reply_no_larger() {
    let request = fixture("ntp-request.bin");
    let keys = keys();
    let (Detail::Authentic { len, pending }, _) = examine(&request, keys.clone()) else {
        panic!("chrony's request did not authenticate");
    };
    // chrony held eight cookies and asked for none extra.
    assert_eq!(pending.cookie_count(), 1);
    assert!(len <= request.len(), "{len} > {}", request.len());

    // The reply skytimed sent chrony verifies under the session's keys,
    // and its new cookie opens to the same session.
    let (uid, cookie) = uid_and_cookie(&request);
    let session = cookie::open(&cookie, &keys).expect("the cookie opens");
    match check_reply(&fixture("ntp-reply.bin"), &uid, &session) {
        Some(ReplyCheck::Authentic(cookies)) => {
            assert_eq!(cookies.len(), 1);
            assert_eq!(cookie::open(&cookies[0], &keys), Ok(session));
        }
        other => panic!("recorded reply does not verify: {other:?}"),
    }
}

#[test]
fn chrony_request_altered_anywhere_it_is_covered_is_dropped_or_naked() {
    let request = fixture("ntp-request.bin");
    let keys = keys();
    // Every byte of the header and of the fields before the authenticator
    // is covered; flipping any one must not yield an authentic reply.
    let auth_start = HEADER_LEN
        + parse_fields(&request[HEADER_LEN..], 16)
            .unwrap()
            .iter()
            .find(|f| f.field_type == field_type::AUTHENTICATOR)
            .unwrap()
            .offset;
    for i in 0..auth_start {
        let mut bad = request.clone();
        bad[i] ^= 0x01;
        match examine(&bad, keys.clone()).0 {
            Detail::Authentic { .. } => panic!("byte {i} is not authenticated"),
            Detail::Drop(_) | Detail::Nak { .. } | Detail::NotNts => {}
        }
    }
    // With the keys rotated out entirely, the cookie gets a NAK.
    let other = KeySet::generate(0, &mut rand::thread_rng());
    assert!(matches!(examine(&request, other).0, Detail::Nak { .. }));
    let mut truncated = request.clone();
    truncated.truncate(request.len() - 3);
    assert!(matches!(
        examine(&truncated, keys).0,
        Detail::Drop(DropCause::MalformedField(_))
    ));
}
