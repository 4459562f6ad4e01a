use super::client::{check_reply, request, ReplyCheck};
use super::*;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

struct Fixture {
    server: NtsServer<StdRng>,
    rng: StdRng,
    session: SessionKeys,
    cookie: Vec<u8>,
    header: [u8; 48],
}

fn fixture_with(seed: u64, aead: Aead) -> Fixture {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = Arc::new(KeySet::generate(0, &mut rng));
    let n = aead.key_len();
    let session = SessionKeys {
        aead,
        c2s: Key::new(&vec![0x11; n]).unwrap(),
        s2c: Key::new(&vec![0x22; n]).unwrap(),
    };
    let cookie = cookie::seal(&session, keys.current(), &mut rng).unwrap();
    let mut header = [0u8; 48];
    header[0] = 0x23;
    header[40..48].copy_from_slice(&[9; 8]);
    Fixture {
        server: NtsServer::new(keys, StdRng::seed_from_u64(seed + 1000)),
        rng,
        session,
        cookie,
        header,
    }
}

fn fixture(seed: u64) -> Fixture {
    fixture_with(seed, Aead::AesSivCmac256)
}

const UID: [u8; 32] = [0xab; 32];

impl Fixture {
    fn nonce(&self) -> Vec<u8> {
        vec![0x5a; self.session.aead.nonce_len()]
    }

    fn request(&self, placeholders: usize, encrypted: &[u8]) -> Vec<u8> {
        let s = &self.session;
        request(
            &self.header,
            &UID,
            &self.cookie,
            placeholders,
            s.aead,
            &s.c2s,
            &self.nonce(),
            encrypted,
        )
    }

    fn detail(&mut self, packet: &[u8]) -> (Detail, Vec<u8>) {
        let mut out = vec![0u8; packet.len().max(HEADER_LEN)];
        let d = self.server.examine_detail(packet, &mut out);
        (d, out)
    }

    /// The reply as the daemon sends it: header written, then sealed.
    fn reply_for(&mut self, packet: &[u8]) -> Vec<u8> {
        match self.detail(packet) {
            (Detail::Authentic { len, pending }, mut out) => {
                out[..48].copy_from_slice(&[0x24; 48]);
                self.server.seal_reply(&pending, &mut out[..len]).unwrap();
                out.truncate(len);
                out
            }
            (other, _) => panic!("expected authentic, got {other:?}"),
        }
    }
}

#[test]
fn authentic_request_gets_cookies_per_placeholder_and_no_bigger_reply() {
    for aead in [Aead::AesSivCmac256, Aead::AesGcmSiv128] {
        let mut f = fixture_with(1, aead);
        for placeholders in 0..4 {
            let req = f.request(placeholders, &[]);
            let reply = f.reply_for(&req);
            assert!(reply.len() <= req.len(), "{} > {}", reply.len(), req.len());
            let Some(ReplyCheck::Authentic(cookies)) = check_reply(&reply, &UID, &f.session) else {
                panic!("{aead:?}: reply does not verify")
            };
            assert_eq!(cookies.len(), 1 + placeholders);
            for c in &cookies {
                assert_eq!(cookie::open(c, f.server.keys()), Ok(f.session.clone()));
                assert_ne!(c, &f.cookie);
            }
            // The header is covered: a change to it breaks the reply.
            let mut tampered = reply.clone();
            tampered[47] ^= 1;
            assert_eq!(check_reply(&tampered, &UID, &f.session), None);
        }
    }
}

#[test]
fn placeholders_inside_the_encrypted_part_count_too() {
    let mut f = fixture(2);
    let mut inner = Vec::new();
    write_field(
        &mut inner,
        field_type::COOKIE_PLACEHOLDER,
        &[0; cookie::COOKIE_LEN],
    );
    // Padding for the reply: the outer request must be big enough.
    let req = f.request(1, &inner);
    let reply = f.reply_for(&req);
    let Some(ReplyCheck::Authentic(cookies)) = check_reply(&reply, &UID, &f.session) else {
        panic!()
    };
    assert_eq!(cookies.len(), 3);
}

#[test]
fn short_placeholders_cannot_amplify() {
    let mut f = fixture(3);
    let mut req = f.header.to_vec();
    write_field(&mut req, field_type::UNIQUE_IDENTIFIER, &UID);
    write_field(&mut req, field_type::COOKIE, &f.cookie);
    for _ in 0..5 {
        write_field(&mut req, field_type::COOKIE_PLACEHOLDER, &[0; 12]);
    }
    let nonce = f.nonce();
    let ct = crate::aead::seal(f.session.aead, &f.session.c2s, &nonce, &req, &[]).unwrap();
    Authenticator {
        nonce: &nonce,
        ciphertext: &ct,
    }
    .write(&mut req);
    let reply = f.reply_for(&req);
    assert!(reply.len() <= req.len());
    let Some(ReplyCheck::Authentic(cookies)) = check_reply(&reply, &UID, &f.session) else {
        panic!()
    };
    assert!(cookies.len() < 6);
}

#[test]
fn cookie_problems_are_naked_with_the_uid() {
    let mut f = fixture(4);
    let other = KeySet::generate(0, &mut f.rng);
    let foreign = cookie::seal(&f.session, other.current(), &mut f.rng).unwrap();
    let mut tampered = f.cookie.clone();
    tampered[30] ^= 4;
    for (cookie, cause) in [
        (foreign, CookieError::UnknownKey),
        (tampered, CookieError::Undecryptable),
        (vec![0; 40], CookieError::WrongLength),
    ] {
        let s = &f.session;
        let req = request(&f.header, &UID, &cookie, 0, s.aead, &s.c2s, &f.nonce(), &[]);
        let (Detail::Nak { len, cause: got }, out) = f.detail(&req) else {
            panic!("expected NAK for {cause:?}")
        };
        assert_eq!(got, cause);
        assert_eq!(
            check_reply(&out[..len], &UID, &f.session),
            Some(ReplyCheck::Nak)
        );
        assert!(len <= req.len());
    }
}

#[test]
fn every_drop_path() {
    let mut f = fixture(5);
    let good = f.request(0, &[]);
    let auth_at = good.len() - Authenticator::field_len(16, TAG_LEN);
    let s = f.session.clone();
    let nonce = f.nonce();
    let with = |uid: &[u8], c2s: &Key, nonce: &[u8], enc: &[u8]| {
        request(&f.header, uid, &f.cookie, 0, s.aead, c2s, nonce, enc)
    };
    let mut cases: Vec<(Vec<u8>, DropCause)> = Vec::new();
    // Tampered header, uid, cookie-ef-region outside the cookie, authenticator.
    for i in [0usize, 40, 60, good.len() - 1, auth_at + 10] {
        let mut t = good.clone();
        t[i] ^= 1;
        cases.push((t, DropCause::AuthenticationFailed));
    }
    // Wrong key.
    cases.push((
        with(&UID, &Key::from([0x33; 32]), &nonce, &[]),
        DropCause::AuthenticationFailed,
    ));
    // Duplicate UID.
    let mut dup = f.header.to_vec();
    write_field(&mut dup, field_type::UNIQUE_IDENTIFIER, &UID);
    dup.extend_from_slice(&good[48..]);
    cases.push((dup, DropCause::DuplicateField));
    // Missing authenticator.
    cases.push((good[..auth_at].to_vec(), DropCause::MissingField));
    // Field after the authenticator.
    let mut after = good.clone();
    write_field(&mut after, 0x2000, &[0; 12]);
    cases.push((after, DropCause::AuthenticatorNotLast));
    // Truncated packet.
    cases.push((
        good[..good.len() - 4].to_vec(),
        DropCause::MalformedField(FieldError::Truncated(auth_at - 48)),
    ));
    // Short UID, short nonce, and a nonce the algorithm refuses.
    cases.push((with(&[1; 16], &s.c2s, &nonce, &[]), DropCause::TooShort));
    cases.push((with(&UID, &s.c2s, &[1; 8], &[]), DropCause::TooShort));
    cases.push((with(&UID, &s.c2s, &[1; 12], &[]), DropCause::TooShort));
    // Malformed encrypted fields.
    cases.push((
        with(&UID, &s.c2s, &nonce, &[0, 1, 0, 9]),
        DropCause::MalformedEncryptedFields,
    ));
    for (i, (packet, cause)) in cases.into_iter().enumerate() {
        match f.detail(&packet).0 {
            Detail::Drop(c) => assert_eq!(c, cause, "case {i}"),
            other => panic!("case {i}: expected drop {cause:?}, got {other:?}"),
        }
    }
    // Only foreign fields: not an NTS request.
    let mut foreign = f.header.to_vec();
    write_field(&mut foreign, 0x2000, &[0; 12]);
    assert!(matches!(f.detail(&foreign).0, Detail::NotNts));
}

#[test]
fn aes_gcm_siv_sessions_need_a_12_byte_nonce() {
    let mut f = fixture_with(11, Aead::AesGcmSiv128);
    let s = f.session.clone();
    let req = request(&f.header, &UID, &f.cookie, 0, s.aead, &s.c2s, &[1; 16], &[]);
    assert!(matches!(
        f.detail(&req).0,
        Detail::Drop(DropCause::TooShort)
    ));
    let good = f.request(0, &[]);
    assert!(matches!(f.detail(&good).0, Detail::Authentic { .. }));
}

#[test]
fn replayed_request_is_answered_with_fresh_unlinkable_cookies() {
    // The server is stateless (RFC 8915): a replay gets a reply, which
    // only the original client could use, and nothing in it repeats.
    let mut f = fixture(6);
    let req = f.request(0, &[]);
    let a = f.reply_for(&req);
    let b = f.reply_for(&req);
    assert_ne!(a, b);
    let (Some(ReplyCheck::Authentic(ca)), Some(ReplyCheck::Authentic(cb))) = (
        check_reply(&a, &UID, &f.session),
        check_reply(&b, &UID, &f.session),
    ) else {
        panic!()
    };
    assert_ne!(ca, cb);
}

#[test]
fn counts_go_to_the_threads_counters_and_new_keys_are_taken() {
    let mut f = fixture(9);
    let req = f.request(1, &[]);
    let mut out = [0u8; 1024];
    assert!(matches!(
        f.server.examine(&req, &mut out),
        NtsExamined::Authentic { .. }
    ));
    let mut bad = req.clone();
    bad[60] ^= 1;
    assert!(matches!(
        f.server.examine(&bad, &mut out),
        NtsExamined::Drop(DropReason::NtsAuthFailed)
    ));
    let c = f.server.counts().clone();
    assert_eq!(c.authentic.load(Relaxed), 1);
    assert_eq!(c.cookies_issued.load(Relaxed), 2);
    assert_eq!(c.auth_failed.load(Relaxed), 1);
    // New keys (another set): the old cookie is unknown, so NAKed.
    let other = Arc::new(KeySet::generate(0, &mut f.rng));
    f.server.set_keys(other);
    assert!(matches!(
        f.server.examine(&req, &mut out),
        NtsExamined::Nak { .. }
    ));
    assert_eq!(c.nak_unknown_key.load(Relaxed), 1);
}

#[test]
fn a_reply_with_a_short_unique_identifier_is_refused_by_the_client_without_panic() {
    let f = fixture(10);
    let mut reply = f.header.to_vec();
    write_field(&mut reply, field_type::UNIQUE_IDENTIFIER, &[0xab; 16]);
    assert_eq!(check_reply(&reply, &UID, &f.session), None);
    assert_eq!(check_reply(&[0; 20], &UID, &f.session), None);
}

proptest! {
    #[test]
    fn any_single_bit_flip_is_dropped_or_naked(bit in 0usize..(8 * 400), gcm in any::<bool>()) {
        let aead = if gcm { Aead::AesGcmSiv128 } else { Aead::AesSivCmac256 };
        let mut f = fixture_with(7, aead);
        let good = f.request(1, &[]);
        let bit = bit % (8 * good.len());
        let mut t = good.clone();
        t[bit / 8] ^= 1 << (bit % 8);
        match f.detail(&t).0 {
            Detail::Authentic { .. } => prop_assert!(false, "flipped bit {bit} still authentic"),
            Detail::NotNts => prop_assert!(false, "flipped bit {bit} turned into plain"),
            Detail::Nak { .. } | Detail::Drop(_) => {}
        }
    }

    #[test]
    fn garbage_never_panics_and_replies_stay_small(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut f = fixture(8);
        let mut out = vec![0u8; data.len().max(HEADER_LEN)];
        match f.server.examine(&data, &mut out) {
            NtsExamined::Authentic { len, .. } | NtsExamined::Nak { len } => prop_assert!(len <= data.len()),
            _ => {}
        }
    }
}

proptest! {
    /// The test and benchmark client's reply check: any bytes as a reply,
    /// with or without our identifier (of any length) in front, are
    /// answered without a panic and never taken as authentic.
    #[test]
    fn client_check_of_any_reply_never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        uid_len in 0usize..80,
        gcm in any::<bool>(),
    ) {
        let aead = if gcm { Aead::AesGcmSiv128 } else { Aead::AesSivCmac256 };
        let f = fixture_with(9, aead);
        let uid = vec![0xab; uid_len];
        let mut reply = data;
        if reply.len() >= HEADER_LEN + 8 {
            // A Unique Identifier field whose length the peer chose.
            reply[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&field_type::UNIQUE_IDENTIFIER.to_be_bytes());
        }
        let r = check_reply(&reply, &uid, &f.session);
        prop_assert!(!matches!(r, Some(ReplyCheck::Authentic(_))));
    }

    /// A real reply cut short anywhere or with one byte changed: never a
    /// panic, never authentic; our identifier longer than the echoed one
    /// is simply not ours.
    #[test]
    fn client_check_of_cut_or_changed_real_replies(cut in 0usize..400, at in 0usize..400, xor in 1u8..=255) {
        let mut f = fixture(10);
        let reply = f.reply_for(&f.request(1, &[]));
        let cut = cut.min(reply.len() - 1);
        prop_assert!(!matches!(check_reply(&reply[..cut], &UID, &f.session), Some(ReplyCheck::Authentic(_))));
        let mut changed = reply.clone();
        let i = at % changed.len();
        changed[i] ^= xor;
        prop_assert!(!matches!(check_reply(&changed, &UID, &f.session), Some(ReplyCheck::Authentic(_))), "byte {} changed", i);
        let long_uid = [0xab; 100];
        prop_assert_eq!(check_reply(&reply, &long_uid, &f.session), None);
    }
}

/// The real processor's seal failing (here: a buffer too short for the
/// reply it examined) is an error the server core drops and counts as
/// `seal_failed`, never an empty or unsealed authenticator sent out.
#[test]
fn a_real_seal_failure_is_an_error_not_a_reply() {
    let mut f = fixture(11);
    let req = f.request(1, &[]);
    let (Detail::Authentic { len, pending }, mut out) = f.detail(&req) else {
        panic!("not authentic")
    };
    assert_eq!(
        NtsProcessor::seal(&mut f.server, &pending, &mut out[..len - 1]),
        Err(SealFailed)
    );
    NtsProcessor::seal(&mut f.server, &pending, &mut out[..len]).unwrap();
}
