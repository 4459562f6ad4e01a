//! NTS-protected NTP on the server side (RFC 8915 section 5): check a
//! request's NTS fields and build the reply's, in place.
//!
//! [`NtsServer`] is skytime-proto's [`NtsProcessor`]: the server decision
//! calls [`examine`](NtsProcessor::examine) for a request with extension
//! fields, which verifies it and writes the reply's Unique Identifier and
//! Authenticator (fresh cookies inside, still in plain text) after the
//! header, and [`seal`](NtsProcessor::seal) once the header, with its
//! transmit timestamp, is final (the header is authenticated too). One
//! per server thread: it keeps the master keys' ciphers, a random number
//! generator and a scratch buffer, so a request costs no allocation.

use crate::aead::{Aead, AeadError, Cipher, Key, SessionKeys, GCM_SIV_NONCE_LEN, TAG_LEN};
use crate::cookie::{self, CookieCiphers, CookieError};
use crate::extension::{
    field_len, field_type, fields, parse_fields, write_field, Authenticator, ExtensionField,
    FieldError, FIELD_HEADER_LEN, MIN_FIELD_LEN,
};
use crate::keyset::KeySet;
use rand::{CryptoRng, RngCore};
use skytime_proto::server::{DropReason, NtsExamined, NtsProcessor, SealFailed};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// NTP header length: extension fields start here.
pub const HEADER_LEN: usize = 48;
/// Shortest Unique Identifier body a request may carry (RFC 8915 5.3).
pub const MIN_UID_LEN: usize = 32;
/// Largest request examined (the daemon's receive buffer).
pub const MAX_REQUEST: usize = 2048;

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
    /// Unique Identifier shorter than 32 bytes or nonce too short for the
    /// algorithm.
    TooShort,
    /// The Authenticator body is malformed.
    MalformedAuthenticator,
    /// The authenticator did not verify under the cookie's C2S key.
    AuthenticationFailed,
    /// The decrypted fields are malformed.
    MalformedEncryptedFields,
}

/// What [`NtsServer::examine_detail`] found, with the reasons spelled out.
#[derive(Debug)]
pub enum Detail {
    Authentic { len: usize, pending: Pending },
    Nak { len: usize, cause: CookieError },
    NotNts,
    Drop(DropCause),
}

/// What sealing an authentic reply needs.
#[derive(Debug)]
pub struct Pending {
    aead: Aead,
    s2c: Key,
    /// Where the Authenticator field starts (the associated data ends).
    auth_at: usize,
    nonce_at: usize,
    /// The AEAD output: tag and ciphertext.
    body_at: usize,
    body_len: usize,
    cookies: usize,
}

impl Pending {
    /// Fresh cookies in the reply.
    pub fn cookie_count(&self) -> usize {
        self.cookies
    }

    pub fn aead(&self) -> Aead {
        self.aead
    }
}

/// What the NTP path of NTS did, counted by the thread that owns an
/// [`NtsServer`] (plain stores, no shared cache-line traffic); anyone
/// may read them.
#[derive(Debug, Default)]
pub struct NtpCounts {
    pub authentic: AtomicU64,
    pub cookies_issued: AtomicU64,
    pub nak_unknown_key: AtomicU64,
    pub nak_bad_cookie: AtomicU64,
    pub auth_failed: AtomicU64,
    pub malformed: AtomicU64,
    pub not_nts: AtomicU64,
}

/// Adds `n` to a counter only its owner writes.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// The NTS part of one server thread.
#[derive(Debug)]
pub struct NtsServer<R> {
    keys: Arc<KeySet>,
    ciphers: CookieCiphers,
    /// Re-keyed for each request's session keys (C2S, then S2C).
    session: Cipher,
    rng: R,
    scratch: Box<[u8]>,
    counts: Arc<NtpCounts>,
}

impl<R: RngCore + CryptoRng> NtsServer<R> {
    pub fn new(keys: Arc<KeySet>, rng: R) -> Self {
        Self {
            ciphers: CookieCiphers::new(&keys),
            session: Cipher::Siv(crate::siv::Siv::new(&[0; 32])),
            keys,
            rng,
            scratch: vec![0; MAX_REQUEST].into_boxed_slice(),
            counts: Arc::default(),
        }
    }

    /// Takes a new set of master keys (after a rotation or reload).
    pub fn set_keys(&mut self, keys: Arc<KeySet>) {
        if !Arc::ptr_eq(&keys, &self.keys) {
            self.ciphers = CookieCiphers::new(&keys);
            self.keys = keys;
        }
    }

    pub fn keys(&self) -> &Arc<KeySet> {
        &self.keys
    }

    /// This thread's counters.
    pub fn counts(&self) -> &Arc<NtpCounts> {
        &self.counts
    }

    /// Examines `request` (header and extension fields) and writes the
    /// reply's fields into `out`, telling why when there is no reply.
    pub fn examine_detail(&mut self, request: &[u8], out: &mut [u8]) -> Detail {
        match self.examine_inner(request, out) {
            Ok(d) => d,
            Err(cause) => Detail::Drop(cause),
        }
    }

    fn examine_inner(&mut self, request: &[u8], out: &mut [u8]) -> Result<Detail, DropCause> {
        let extensions = request
            .get(HEADER_LEN..)
            .ok_or(DropCause::MalformedField(FieldError::Truncated(0)))?;
        let found = Found::scan(extensions)?;
        let (uid, cookie_field, auth_field) = match (found.uid, found.cookie, found.auth) {
            (Some(u), Some(c), Some(a)) => (u, c, a),
            (None, None, None) if found.placeholders == 0 => return Ok(Detail::NotNts),
            _ => return Err(DropCause::MissingField),
        };
        if uid.body.len() < MIN_UID_LEN {
            return Err(DropCause::TooShort);
        }
        let authenticator =
            Authenticator::parse(auth_field.body).ok_or(DropCause::MalformedAuthenticator)?;
        if authenticator.nonce.len() < GCM_SIV_NONCE_LEN {
            return Err(DropCause::TooShort);
        }
        // The Unique Identifier field goes back as it came.
        let uid_field = &extensions[uid.offset..uid.offset + FIELD_HEADER_LEN + uid.body.len()];
        let uid_end = HEADER_LEN + uid_field.len();
        let session = match cookie::open_with(cookie_field.body, &mut self.ciphers) {
            Ok(s) => s,
            Err(cause) => {
                out.get_mut(HEADER_LEN..uid_end)
                    .ok_or(DropCause::TooShort)?
                    .copy_from_slice(uid_field);
                return Ok(Detail::Nak {
                    len: uid_end,
                    cause,
                });
            }
        };
        let aead = session.aead;
        if !aead.accepts_nonce_len(authenticator.nonce.len()) {
            return Err(DropCause::TooShort);
        }
        let associated = &request[..HEADER_LEN + auth_field.offset];
        let ct = authenticator.ciphertext;
        let scratch = self
            .scratch
            .get_mut(..ct.len())
            .ok_or(DropCause::MalformedAuthenticator)?;
        scratch.copy_from_slice(ct);
        self.session
            .rekey(aead, &session.c2s)
            .map_err(|_| DropCause::AuthenticationFailed)?;
        let inner = self
            .session
            .open_in_place(authenticator.nonce, associated, scratch)
            .map_err(|_| DropCause::AuthenticationFailed)?;
        let mut placeholders = found.placeholders;
        for f in fields(inner, 0) {
            let f = f.map_err(|_| DropCause::MalformedEncryptedFields)?;
            placeholders += usize::from(f.field_type == field_type::COOKIE_PLACEHOLDER);
        }

        // One cookie for the one used and one per placeholder, as many as
        // fit in a reply no longer than the request (no amplification).
        let cookie_field_len = field_len(cookie::cookie_len(aead));
        let nonce_len = aead.nonce_len();
        let reply_len = |n: usize| {
            uid_end + Authenticator::field_len(nonce_len, TAG_LEN + n * cookie_field_len)
        };
        let mut n = 1 + placeholders;
        while n > 0 && reply_len(n) > request.len() {
            n -= 1;
        }
        let len = reply_len(n);
        let out = out.get_mut(..len).ok_or(DropCause::TooShort)?;
        out[HEADER_LEN..uid_end].copy_from_slice(uid_field);
        let body_len = TAG_LEN + n * cookie_field_len;
        let (nonce_at, body_at) =
            Authenticator::write_header(&mut out[uid_end..], nonce_len, body_len)
                .ok_or(DropCause::TooShort)?;
        let (nonce_at, body_at) = (uid_end + nonce_at, uid_end + body_at);
        self.rng
            .fill_bytes(&mut out[nonce_at..nonce_at + nonce_len]);
        let cookie_len = cookie::cookie_len(aead);
        let mut at = body_at + aead.plaintext_offset();
        for _ in 0..n {
            out[at..at + 2].copy_from_slice(&field_type::COOKIE.to_be_bytes());
            out[at + 2..at + 4].copy_from_slice(&(cookie_field_len as u16).to_be_bytes());
            let c = &mut out[at + FIELD_HEADER_LEN..at + FIELD_HEADER_LEN + cookie_len];
            cookie::seal_into(&session, &mut self.ciphers, &mut self.rng, c)
                .map_err(|_| DropCause::MalformedAuthenticator)?;
            at += cookie_field_len;
        }
        Ok(Detail::Authentic {
            len,
            pending: Pending {
                aead,
                s2c: session.s2c,
                auth_at: uid_end,
                nonce_at,
                body_at,
                body_len,
                cookies: n,
            },
        })
    }

    /// Seals an authentic reply in `out` (header and fields as
    /// [`examine_detail`](Self::examine_detail) left them, header final).
    pub fn seal_reply(&mut self, p: &Pending, out: &mut [u8]) -> Result<(), AeadError> {
        if out.len() < p.body_at + p.body_len {
            return Err(AeadError::TooShort);
        }
        let (head, body) = out.split_at_mut(p.body_at);
        let nonce = &head[p.nonce_at..p.nonce_at + p.aead.nonce_len()];
        self.session.rekey(p.aead, &p.s2c)?;
        self.session
            .seal_in_place(nonce, &head[..p.auth_at], &mut body[..p.body_len])
    }
}

impl<R: RngCore + CryptoRng> NtsProcessor for NtsServer<R> {
    type Pending = Pending;

    fn examine(&mut self, request: &[u8], out: &mut [u8]) -> NtsExamined<Pending> {
        let detail = self.examine_detail(request, out);
        let c = &*self.counts;
        match detail {
            Detail::Authentic { len, pending } => {
                bump(&c.authentic, 1);
                bump(&c.cookies_issued, pending.cookies as u64);
                NtsExamined::Authentic { len, pending }
            }
            Detail::Nak { len, cause } => {
                let counter = match cause {
                    CookieError::UnknownKey => &c.nak_unknown_key,
                    _ => &c.nak_bad_cookie,
                };
                bump(counter, 1);
                NtsExamined::Nak { len }
            }
            Detail::NotNts => {
                bump(&c.not_nts, 1);
                NtsExamined::NotNts
            }
            Detail::Drop(cause) => {
                let (counter, reason) = match cause {
                    DropCause::MalformedField(_) => (&c.malformed, DropReason::BadExtensionField),
                    DropCause::AuthenticationFailed => (&c.auth_failed, DropReason::NtsAuthFailed),
                    _ => (&c.malformed, DropReason::NtsAuthFailed),
                };
                bump(counter, 1);
                NtsExamined::Drop(reason)
            }
        }
    }

    fn seal(&mut self, pending: &Pending, out: &mut [u8]) -> Result<(), SealFailed> {
        self.seal_reply(pending, out).map_err(|_| SealFailed)
    }
}

/// The NTS fields found in a request's extension fields.
#[derive(Default)]
struct Found<'a> {
    uid: Option<ExtensionField<'a>>,
    cookie: Option<ExtensionField<'a>>,
    auth: Option<ExtensionField<'a>>,
    placeholders: usize,
}

impl<'a> Found<'a> {
    fn scan(extensions: &'a [u8]) -> Result<Self, DropCause> {
        let mut found = Self::default();
        let mut after_auth = false;
        let mut duplicate = false;
        for f in fields(extensions, MIN_FIELD_LEN) {
            let f = f.map_err(DropCause::MalformedField)?;
            after_auth |= found.auth.is_some();
            let slot = match f.field_type {
                field_type::UNIQUE_IDENTIFIER => &mut found.uid,
                field_type::COOKIE => &mut found.cookie,
                field_type::AUTHENTICATOR => &mut found.auth,
                field_type::COOKIE_PLACEHOLDER => {
                    found.placeholders += 1;
                    continue;
                }
                // RFC 7822: unknown fields are ignored (they are still
                // covered by the authenticator as associated data).
                _ => continue,
            };
            duplicate |= slot.replace(f).is_some();
        }
        if after_auth {
            return Err(DropCause::AuthenticatorNotLast);
        }
        if duplicate {
            return Err(DropCause::DuplicateField);
        }
        Ok(found)
    }
}

/// The client side of the exchange, for tests and tools: builds an NTS
/// request and checks a reply the way a client would (never trusting
/// the reply's lengths).
pub mod client {
    use super::*;

    /// Builds a request: `header`, Unique Identifier `uid`, `cookie`,
    /// `placeholders` placeholders, and an Authenticator under the
    /// session's C2S key with `encrypted` fields inside.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        header: &[u8; HEADER_LEN],
        uid: &[u8],
        cookie: &[u8],
        placeholders: usize,
        aead: Aead,
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
        // A key or nonce that does not fit the algorithm gives an empty
        // ciphertext, which no server accepts (tests build such requests).
        let ct = crate::aead::seal(aead, c2s, nonce, &out, encrypted).unwrap_or_default();
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

    /// Checks `reply` against the request's `uid` and the session keys;
    /// `None` for anything that is not an authentic reply or a NAK to it.
    pub fn check_reply(reply: &[u8], uid: &[u8], keys: &SessionKeys) -> Option<ReplyCheck> {
        let fields = parse_fields(reply.get(HEADER_LEN..)?, MIN_FIELD_LEN).ok()?;
        let uid_field = fields
            .iter()
            .find(|f| f.field_type == field_type::UNIQUE_IDENTIFIER)?;
        // The body may carry padding after the identifier; a shorter one
        // is simply not ours.
        if uid_field.body.get(..uid.len())? != uid {
            return None;
        }
        let Some(auth) = fields
            .iter()
            .find(|f| f.field_type == field_type::AUTHENTICATOR)
        else {
            return Some(ReplyCheck::Nak);
        };
        let a = Authenticator::parse(auth.body)?;
        let plain = crate::aead::open(
            keys.aead,
            &keys.s2c,
            a.nonce,
            reply.get(..HEADER_LEN + auth.offset)?,
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
mod tests;
