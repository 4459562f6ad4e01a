//! NTS-protected NTP on the server side (RFC 8915 section 5): check a
//! request's NTS fields, and build the NTS part of the reply.
//!
//! [`process`] runs before the reply header exists; it returns a plan
//! ([`AuthenticReply`] or [`NakReply`]) that [`AuthenticReply::write`] /
//! [`NakReply::write`] finish once the header, with its transmit
//! timestamp, is final (the header is authenticated too).

use crate::aead::{self, Key, TAG_LEN};
use crate::cookie::{self, CookieError};
use crate::extension::{
    field_len, field_type, parse_fields, write_field, Authenticator, FieldError, MIN_FIELD_LEN,
};
use crate::keyset::KeySet;
use rand::{CryptoRng, RngCore};

/// NTP header length: extension fields start here.
pub const HEADER_LEN: usize = 48;
/// Shortest Unique Identifier body a request may carry (RFC 8915 5.3).
pub const MIN_UID_LEN: usize = 32;
/// Shortest nonce accepted in a request's authenticator, and the length
/// of the nonce in replies.
pub const NONCE_LEN: usize = 16;

/// What to do with a request that carries extension fields.
#[derive(Debug)]
pub enum Outcome {
    /// Verified: reply, then add the NTS fields with [`AuthenticReply::write`].
    Authentic(AuthenticReply),
    /// The cookie is unusable: send an NTS NAK (kiss code NTSN).
    Nak(NakReply),
    /// No NTS fields at all (some other extension): a plain request.
    NotNts,
    /// No reply (RFC 8915 requires silence), for this reason.
    Drop(DropCause),
}

/// Why an NTS request gets no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropCause {
    /// Extension fields are not well formed (length, alignment).
    MalformedField(FieldError),
    /// A Unique Identifier, Cookie or Authenticator is missing.
    MissingField,
    /// A Unique Identifier, Cookie or Authenticator appears twice.
    DuplicateField,
    /// Fields follow the Authenticator (they would be unauthenticated).
    AuthenticatorNotLast,
    /// Unique Identifier shorter than 32 bytes or nonce shorter than 16.
    TooShort,
    /// The Authenticator body is malformed.
    MalformedAuthenticator,
    /// The authenticator did not verify under the cookie's C2S key.
    AuthenticationFailed,
    /// The decrypted fields are malformed.
    MalformedEncryptedFields,
}

impl DropCause {
    /// True for failures of the cryptographic check (as opposed to
    /// malformed or incomplete NTS fields).
    pub fn is_auth_failure(self) -> bool {
        matches!(self, Self::AuthenticationFailed)
    }
}

/// An authentic request's reply-to-be.
#[derive(Debug)]
pub struct AuthenticReply {
    uid: Vec<u8>,
    s2c: Key,
    cookies: Vec<Vec<u8>>,
    nonce: [u8; NONCE_LEN],
    /// The request's length: the reply never exceeds it.
    limit: usize,
}

/// A NAK's reply-to-be.
#[derive(Debug)]
pub struct NakReply {
    uid: Vec<u8>,
    /// Why the cookie was refused.
    pub cause: CookieError,
}

impl AuthenticReply {
    /// Number of fresh cookies the reply will carry.
    pub fn cookie_count(&self) -> usize {
        self.cookies.len()
    }

    /// Writes `header`, the Unique Identifier and the Authenticator with
    /// the fresh cookies encrypted under the S2C key into `out`.
    pub fn write(&self, header: &[u8; HEADER_LEN], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(header);
        write_field(out, field_type::UNIQUE_IDENTIFIER, &self.uid);
        let mut plaintext = Vec::with_capacity(self.cookies.len() * field_len(cookie::COOKIE_LEN));
        for c in &self.cookies {
            write_field(&mut plaintext, field_type::COOKIE, c);
        }
        let ciphertext = aead::seal(&self.s2c, &self.nonce, out, &plaintext);
        Authenticator {
            nonce: &self.nonce,
            ciphertext: &ciphertext,
        }
        .write(out);
        debug_assert!(out.len() <= self.limit);
    }
}

impl NakReply {
    /// Writes the kiss `header` and the request's Unique Identifier.
    pub fn write(&self, header: &[u8; HEADER_LEN], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(header);
        write_field(out, field_type::UNIQUE_IDENTIFIER, &self.uid);
    }
}

/// Examines `packet` (header and extension fields) against the master
/// keys in `keys`.
pub fn process<R: RngCore + CryptoRng>(packet: &[u8], keys: &KeySet, rng: &mut R) -> Outcome {
    let Some(extensions) = packet.get(HEADER_LEN..) else {
        return Outcome::Drop(DropCause::MalformedField(FieldError::Truncated(0)));
    };
    let fields = match parse_fields(extensions, MIN_FIELD_LEN) {
        Ok(f) => f,
        Err(e) => return Outcome::Drop(DropCause::MalformedField(e)),
    };
    let (mut uid, mut cookie_body, mut auth) = (None, None, None);
    let mut placeholders = 0usize;
    for (i, f) in fields.iter().enumerate() {
        let slot = match f.field_type {
            field_type::UNIQUE_IDENTIFIER => &mut uid,
            field_type::COOKIE => &mut cookie_body,
            field_type::AUTHENTICATOR => {
                if i + 1 != fields.len() {
                    return Outcome::Drop(DropCause::AuthenticatorNotLast);
                }
                &mut auth
            }
            field_type::COOKIE_PLACEHOLDER => {
                placeholders += 1;
                continue;
            }
            // RFC 7822: unknown fields are ignored (they are still covered
            // by the authenticator as associated data).
            _ => continue,
        };
        if slot.replace(*f).is_some() {
            return Outcome::Drop(DropCause::DuplicateField);
        }
    }
    let (uid, cookie_field, auth_field) = match (uid, cookie_body, auth) {
        (Some(u), Some(c), Some(a)) => (u, c, a),
        (None, None, None) if placeholders == 0 => return Outcome::NotNts,
        _ => return Outcome::Drop(DropCause::MissingField),
    };
    if uid.body.len() < MIN_UID_LEN {
        return Outcome::Drop(DropCause::TooShort);
    }
    let Some(authenticator) = Authenticator::parse(auth_field.body) else {
        return Outcome::Drop(DropCause::MalformedAuthenticator);
    };
    if authenticator.nonce.len() < NONCE_LEN {
        return Outcome::Drop(DropCause::TooShort);
    }
    // Cookie bodies carry no padding of their own: ours are a multiple of 4.
    let session = match cookie::open(cookie_field.body, keys) {
        Ok(s) => s,
        Err(cause) => {
            return Outcome::Nak(NakReply {
                uid: uid.body.to_vec(),
                cause,
            })
        }
    };
    let associated = &packet[..HEADER_LEN + auth_field.offset];
    let Some(plaintext) = aead::open(
        &session.c2s,
        authenticator.nonce,
        associated,
        authenticator.ciphertext,
    ) else {
        return Outcome::Drop(DropCause::AuthenticationFailed);
    };
    match parse_fields(&plaintext, 0) {
        Ok(inner) => {
            placeholders += inner
                .iter()
                .filter(|f| f.field_type == field_type::COOKIE_PLACEHOLDER)
                .count()
        }
        Err(_) => return Outcome::Drop(DropCause::MalformedEncryptedFields),
    }

    // One cookie for the one used and one per placeholder, as many as fit
    // in a reply no longer than the request (no amplification).
    let base = HEADER_LEN + field_len(uid.body.len());
    let reply_len = |n: usize| {
        base + Authenticator::field_len(NONCE_LEN, TAG_LEN + n * field_len(cookie::COOKIE_LEN))
    };
    let mut n = 1 + placeholders;
    while n > 0 && reply_len(n) > packet.len() {
        n -= 1;
    }
    let cookies = (0..n)
        .map(|_| cookie::seal(&session, keys.current(), rng))
        .collect();
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    Outcome::Authentic(AuthenticReply {
        uid: uid.body.to_vec(),
        s2c: session.s2c,
        cookies,
        nonce,
        limit: packet.len(),
    })
}

/// The client side of the exchange, for tests and tools: builds an NTS
/// request and checks a reply the way a client would.
pub mod client {
    use super::*;

    /// Builds a request: `header`, Unique Identifier `uid`, `cookie`,
    /// `placeholders` placeholders, and an Authenticator under `c2s` with
    /// `encrypted` fields inside.
    pub fn request(
        header: &[u8; HEADER_LEN],
        uid: &[u8],
        cookie: &[u8],
        placeholders: usize,
        c2s: &Key,
        nonce: &[u8],
        encrypted: &[u8],
    ) -> Vec<u8> {
        let mut out = header.to_vec();
        write_field(&mut out, field_type::UNIQUE_IDENTIFIER, uid);
        write_field(&mut out, field_type::COOKIE, cookie);
        for _ in 0..placeholders {
            write_field(
                &mut out,
                field_type::COOKIE_PLACEHOLDER,
                &vec![0; cookie.len()],
            );
        }
        let ct = aead::seal(c2s, nonce, &out, encrypted);
        Authenticator {
            nonce,
            ciphertext: &ct,
        }
        .write(&mut out);
        out
    }

    /// What a client learns from a reply.
    #[derive(Debug, PartialEq, Eq)]
    pub enum ReplyCheck {
        /// Authentic, with these new cookies.
        Authentic(Vec<Vec<u8>>),
        /// An NTS NAK (no authenticator, the Unique Identifier echoed).
        Nak,
    }

    /// Checks `reply` against the request's `uid` and the `s2c` key.
    pub fn check_reply(reply: &[u8], uid: &[u8], s2c: &Key) -> Option<ReplyCheck> {
        let fields = parse_fields(reply.get(HEADER_LEN..)?, MIN_FIELD_LEN).ok()?;
        let uid_field = fields
            .iter()
            .find(|f| f.field_type == field_type::UNIQUE_IDENTIFIER)?;
        if &uid_field.body[..uid.len()] != uid {
            return None;
        }
        let Some(auth) = fields
            .iter()
            .find(|f| f.field_type == field_type::AUTHENTICATOR)
        else {
            return Some(ReplyCheck::Nak);
        };
        let a = Authenticator::parse(auth.body)?;
        let plain = aead::open(
            s2c,
            a.nonce,
            &reply[..HEADER_LEN + auth.offset],
            a.ciphertext,
        )?;
        let cookies = parse_fields(&plain, 0)
            .ok()?
            .iter()
            .filter(|f| f.field_type == field_type::COOKIE)
            .map(|f| f.body.to_vec())
            .collect();
        Some(ReplyCheck::Authentic(cookies))
    }
}

#[cfg(test)]
mod tests {
    use super::client::{check_reply, request, ReplyCheck};
    use super::*;
    use crate::aead::{Aead, SessionKeys};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    struct Fixture {
        rng: StdRng,
        keys: KeySet,
        session: SessionKeys,
        cookie: Vec<u8>,
        header: [u8; 48],
    }

    fn fixture(seed: u64) -> Fixture {
        let mut rng = StdRng::seed_from_u64(seed);
        let keys = KeySet::generate(0, &mut rng);
        let session = SessionKeys {
            aead: Aead::AesSivCmac256,
            c2s: Key([0x11; 32]),
            s2c: Key([0x22; 32]),
        };
        let cookie = cookie::seal(&session, keys.current(), &mut rng);
        let mut header = [0u8; 48];
        header[0] = 0x23;
        header[40..48].copy_from_slice(&[9; 8]);
        Fixture {
            rng,
            keys,
            session,
            cookie,
            header,
        }
    }

    const UID: [u8; 32] = [0xab; 32];
    const NONCE: [u8; 16] = [0x5a; 16];

    fn reply_for(f: &mut Fixture, packet: &[u8]) -> Option<Vec<u8>> {
        match process(packet, &f.keys, &mut f.rng) {
            Outcome::Authentic(r) => {
                let mut out = Vec::new();
                let mut h = [0u8; 48];
                h[0] = 0x24;
                r.write(&h, &mut out);
                Some(out)
            }
            other => panic!("expected authentic, got {other:?}"),
        }
    }

    #[test]
    fn authentic_request_gets_cookies_per_placeholder_and_no_bigger_reply() {
        let mut f = fixture(1);
        for placeholders in 0..4 {
            let req = request(
                &f.header,
                &UID,
                &f.cookie,
                placeholders,
                &f.session.c2s,
                &NONCE,
                &[],
            );
            let reply = reply_for(&mut f, &req).unwrap();
            assert!(reply.len() <= req.len(), "{} > {}", reply.len(), req.len());
            let Some(ReplyCheck::Authentic(cookies)) = check_reply(&reply, &UID, &f.session.s2c)
            else {
                panic!("reply does not verify")
            };
            assert_eq!(cookies.len(), 1 + placeholders);
            for c in &cookies {
                assert_eq!(cookie::open(c, &f.keys), Ok(f.session.clone()));
                assert_ne!(c, &f.cookie);
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
        let req = request(
            &f.header,
            &UID,
            &f.cookie,
            1,
            &f.session.c2s,
            &NONCE,
            &inner,
        );
        let reply = reply_for(&mut f, &req).unwrap();
        let Some(ReplyCheck::Authentic(cookies)) = check_reply(&reply, &UID, &f.session.s2c) else {
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
        let ct = aead::seal(&f.session.c2s, &NONCE, &req, &[]);
        Authenticator {
            nonce: &NONCE,
            ciphertext: &ct,
        }
        .write(&mut req);
        let reply = reply_for(&mut f, &req).unwrap();
        assert!(reply.len() <= req.len());
        let Some(ReplyCheck::Authentic(cookies)) = check_reply(&reply, &UID, &f.session.s2c) else {
            panic!()
        };
        assert!(cookies.len() < 6);
    }

    #[test]
    fn cookie_problems_are_naked_with_the_uid() {
        let mut f = fixture(4);
        let other = KeySet::generate(0, &mut f.rng);
        let foreign = cookie::seal(&f.session, other.current(), &mut f.rng);
        let mut tampered = f.cookie.clone();
        tampered[30] ^= 4;
        for (cookie, cause) in [
            (foreign, CookieError::UnknownKey),
            (tampered, CookieError::Undecryptable),
            (vec![0; 40], CookieError::WrongLength),
        ] {
            let req = request(&f.header, &UID, &cookie, 0, &f.session.c2s, &NONCE, &[]);
            let Outcome::Nak(nak) = process(&req, &f.keys, &mut f.rng) else {
                panic!("expected NAK for {cause:?}")
            };
            assert_eq!(nak.cause, cause);
            let mut out = Vec::new();
            nak.write(&[0; 48], &mut out);
            assert_eq!(
                check_reply(&out, &UID, &f.session.s2c),
                Some(ReplyCheck::Nak)
            );
            assert!(out.len() <= req.len());
        }
    }

    #[test]
    fn every_drop_path() {
        let mut f = fixture(5);
        let good = request(&f.header, &UID, &f.cookie, 0, &f.session.c2s, &NONCE, &[]);
        let auth_at = good.len() - Authenticator::field_len(16, TAG_LEN);
        let mut cases: Vec<(Vec<u8>, DropCause)> = Vec::new();
        // Tampered header, uid, cookie-ef-region outside the cookie, authenticator.
        for i in [0usize, 40, 60, good.len() - 1, auth_at + 10] {
            let mut t = good.clone();
            t[i] ^= 1;
            cases.push((t, DropCause::AuthenticationFailed));
        }
        // Wrong key.
        cases.push((
            request(&f.header, &UID, &f.cookie, 0, &Key([0x33; 32]), &NONCE, &[]),
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
        // Short UID and short nonce.
        cases.push((
            request(
                &f.header,
                &[1; 16],
                &f.cookie,
                0,
                &f.session.c2s,
                &NONCE,
                &[],
            ),
            DropCause::TooShort,
        ));
        cases.push((
            request(&f.header, &UID, &f.cookie, 0, &f.session.c2s, &[1; 8], &[]),
            DropCause::TooShort,
        ));
        // Malformed encrypted fields.
        cases.push((
            request(
                &f.header,
                &UID,
                &f.cookie,
                0,
                &f.session.c2s,
                &NONCE,
                &[0, 1, 0, 9],
            ),
            DropCause::MalformedEncryptedFields,
        ));
        for (i, (packet, cause)) in cases.into_iter().enumerate() {
            match process(&packet, &f.keys, &mut f.rng) {
                Outcome::Drop(c) => assert_eq!(c, cause, "case {i}"),
                other => panic!("case {i}: expected drop {cause:?}, got {other:?}"),
            }
        }
        // Only foreign fields: not an NTS request.
        let mut foreign = f.header.to_vec();
        write_field(&mut foreign, 0x2000, &[0; 12]);
        assert!(matches!(
            process(&foreign, &f.keys, &mut f.rng),
            Outcome::NotNts
        ));
    }

    #[test]
    fn replayed_request_is_answered_with_fresh_unlinkable_cookies() {
        // The server is stateless (RFC 8915): a replay gets a reply, which
        // only the original client could use, and nothing in it repeats.
        let mut f = fixture(6);
        let req = request(&f.header, &UID, &f.cookie, 0, &f.session.c2s, &NONCE, &[]);
        let a = reply_for(&mut f, &req).unwrap();
        let b = reply_for(&mut f, &req).unwrap();
        assert_ne!(a, b);
        let (Some(ReplyCheck::Authentic(ca)), Some(ReplyCheck::Authentic(cb))) = (
            check_reply(&a, &UID, &f.session.s2c),
            check_reply(&b, &UID, &f.session.s2c),
        ) else {
            panic!()
        };
        assert_ne!(ca, cb);
    }

    proptest! {
        #[test]
        fn any_single_bit_flip_is_dropped_or_naked(bit in 0usize..(8 * 400)) {
            let mut f = fixture(7);
            let good = request(&f.header, &UID, &f.cookie, 1, &f.session.c2s, &NONCE, &[]);
            let bit = bit % (8 * good.len());
            let mut t = good.clone();
            t[bit / 8] ^= 1 << (bit % 8);
            match process(&t, &f.keys, &mut f.rng) {
                Outcome::Authentic(_) => prop_assert!(false, "flipped bit {bit} still authentic"),
                Outcome::NotNts => prop_assert!(false, "flipped bit {bit} turned into plain"),
                Outcome::Nak(_) | Outcome::Drop(_) => {}
            }
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut f = fixture(8);
            let _ = process(&data, &f.keys, &mut f.rng);
        }
    }
}
