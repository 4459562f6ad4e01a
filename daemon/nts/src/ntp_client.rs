//! NTS-protected NTP on the client side (RFC 8915 section 5): the keys
//! and cookies of one session, requests that spend a cookie and ask for
//! replacements, the checks of a reply, and the session as a file so that
//! a restart needs no new key exchange (chrony's `ntsdumpdir`).
//!
//! A request carries a fresh Unique Identifier, one cookie, a placeholder
//! for every further cookie wanted (to keep [`COOKIES_WANTED`]), and an
//! Authenticator over all of it under the C2S key. A reply is authentic
//! when it echoes the identifier and its Authenticator opens under the
//! S2C key; the new cookies are inside. An NTS NAK (kiss code NTSN) is
//! unauthenticated by design: it is believed only when it echoes the
//! identifier of our request.

use crate::aead::{self, Aead, Key, SessionKeys};
use crate::extension::{field_type, parse_fields, write_field, Authenticator, MIN_FIELD_LEN};
use rand::{CryptoRng, RngCore};
use std::collections::VecDeque;

/// NTP header length.
pub const HEADER_LEN: usize = 48;
/// Cookies a client keeps (as many as one key exchange gives).
pub const COOKIES_WANTED: usize = 8;
/// Length of our Unique Identifiers.
pub const UID_LEN: usize = 32;
/// Length of our nonces.
pub const NONCE_LEN: usize = 16;

/// The keys and cookies of one NTS-KE session.
#[derive(Clone, PartialEq, Eq)]
pub struct NtsSession {
    pub keys: SessionKeys,
    cookies: VecDeque<Vec<u8>>,
}

impl std::fmt::Debug for NtsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NtsSession({} cookies)", self.cookies.len())
    }
}

/// What an NTS reply was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NtsReply {
    /// Authentic; its cookies have been added.
    Authentic { new_cookies: usize },
    /// An NTS NAK answering our request: the cookies are no good.
    Nak,
}

/// Why an NTS reply is not believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NtsReplyError {
    #[error("malformed extension fields")]
    Malformed,
    #[error("no Unique Identifier, or not the one of our request")]
    WrongUid,
    #[error("no authenticator (and no NTS NAK)")]
    Unauthenticated,
    #[error("the authenticator does not verify")]
    AuthenticationFailed,
}

impl NtsSession {
    pub fn new(keys: SessionKeys, cookies: Vec<Vec<u8>>) -> Self {
        Self {
            keys,
            cookies: cookies.into(),
        }
    }

    pub fn cookies(&self) -> usize {
        self.cookies.len()
    }

    /// Length of the next cookie (chronyc authdata's CLen).
    pub fn cookie_len(&self) -> usize {
        self.cookies.front().map_or(0, Vec::len)
    }

    /// Builds a request from `header`: spends a cookie and asks for
    /// enough new ones to hold [`COOKIES_WANTED`]. Returns the packet and
    /// its Unique Identifier; `None` when no cookie is left.
    pub fn request<R: RngCore + CryptoRng>(
        &mut self,
        header: &[u8; HEADER_LEN],
        rng: &mut R,
    ) -> Option<(Vec<u8>, [u8; UID_LEN])> {
        let cookie = self.cookies.pop_front()?;
        let mut uid = [0u8; UID_LEN];
        rng.fill_bytes(&mut uid);
        // 16 bytes for AES-SIV, the 12 that AES-GCM-SIV requires.
        let mut nonce = [0u8; NONCE_LEN];
        let nonce = &mut nonce[..self.keys.aead.nonce_len().min(NONCE_LEN)];
        rng.fill_bytes(nonce);
        let placeholders = COOKIES_WANTED.saturating_sub(self.cookies.len() + 1);
        let mut out = header.to_vec();
        write_field(&mut out, field_type::UNIQUE_IDENTIFIER, &uid);
        write_field(&mut out, field_type::COOKIE, &cookie);
        for _ in 0..placeholders {
            write_field(
                &mut out,
                field_type::COOKIE_PLACEHOLDER,
                &vec![0; cookie.len()],
            );
        }
        let ciphertext = aead::seal(self.keys.aead, &self.keys.c2s, nonce, &out, &[]).ok()?;
        Authenticator {
            nonce,
            ciphertext: &ciphertext,
        }
        .write(&mut out);
        Some((out, uid))
    }

    /// Checks `packet` (a reply to the request with `uid`) and takes its
    /// cookies.
    pub fn check_reply(
        &mut self,
        packet: &[u8],
        uid: &[u8; UID_LEN],
    ) -> Result<NtsReply, NtsReplyError> {
        let rest = packet.get(HEADER_LEN..).ok_or(NtsReplyError::Malformed)?;
        let fields = parse_fields(rest, MIN_FIELD_LEN).map_err(|_| NtsReplyError::Malformed)?;
        let mut uids = fields
            .iter()
            .filter(|f| f.field_type == field_type::UNIQUE_IDENTIFIER);
        match (uids.next(), uids.next()) {
            (Some(f), None) if f.body == uid => {}
            _ => return Err(NtsReplyError::WrongUid),
        }
        let auth = fields
            .iter()
            .position(|f| f.field_type == field_type::AUTHENTICATOR);
        let Some(i) = auth else {
            let (stratum, refid) = (packet[1], &packet[12..16]);
            return if stratum == 0 && refid == b"NTSN" {
                Ok(NtsReply::Nak)
            } else {
                Err(NtsReplyError::Unauthenticated)
            };
        };
        // Fields after the authenticator would be unauthenticated.
        if i + 1 != fields.len() {
            return Err(NtsReplyError::AuthenticationFailed);
        }
        let a = Authenticator::parse(fields[i].body).ok_or(NtsReplyError::Malformed)?;
        let associated = &packet[..HEADER_LEN + fields[i].offset];
        let plain = aead::open(
            self.keys.aead,
            &self.keys.s2c,
            a.nonce,
            associated,
            a.ciphertext,
        )
        .ok_or(NtsReplyError::AuthenticationFailed)?;
        let inner = parse_fields(&plain, 0).map_err(|_| NtsReplyError::Malformed)?;
        let mut new_cookies = 0;
        // A cookie of no or absurd length is a hostile or broken server's:
        // never kept (it would make requests the server cannot take, and
        // a session file that does not read back).
        let usable = |f: &&crate::extension::ExtensionField<'_>| {
            f.field_type == field_type::COOKIE
                && !f.body.is_empty()
                && f.body.len() <= crate::ke_client::MAX_COOKIE
        };
        for f in inner.iter().filter(usable) {
            if self.cookies.len() < COOKIES_WANTED {
                self.cookies.push_back(f.body.to_vec());
                new_cookies += 1;
            }
        }
        Ok(NtsReply::Authentic { new_cookies })
    }

    /// Forgets every cookie (after a NAK).
    pub fn clear_cookies(&mut self) {
        self.cookies.clear();
    }
}

/// A session saved to a file, with where it belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedSession {
    /// The NTS-KE server it came from ("name:port").
    pub ke_server: String,
    /// Where NTP goes, as the key exchange said (absent: the KE host).
    pub ntp_server: Option<String>,
    pub ntp_port: Option<u16>,
    pub session: NtsSession,
}

/// Why a saved session cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct SavedSessionError {
    pub line: usize,
    pub reason: String,
}

const MAGIC: &str = "skytime-nts-client 1";

impl SavedSession {
    /// The file's text: one item per line, keys and cookies in hex.
    pub fn render(&self) -> String {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut out = format!(
            "{MAGIC}\n# NTS keys and cookies of one upstream server: secret, keep 0600\n\
             ke-server {}\n",
            self.ke_server
        );
        if let Some(s) = &self.ntp_server {
            out.push_str(&format!("ntp-server {s}\n"));
        }
        if let Some(p) = self.ntp_port {
            out.push_str(&format!("ntp-port {p}\n"));
        }
        let k = &self.session.keys;
        out.push_str(&format!("aead {}\n", k.aead.id()));
        out.push_str(&format!(
            "c2s {}\ns2c {}\n",
            hex(k.c2s.as_bytes()),
            hex(k.s2c.as_bytes())
        ));
        for c in &self.session.cookies {
            out.push_str(&format!("cookie {}\n", hex(c)));
        }
        out
    }

    /// Reads what [`render`](Self::render) wrote.
    pub fn parse(text: &str) -> Result<Self, SavedSessionError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        let err = |line: usize, reason: &str| SavedSessionError {
            line,
            reason: reason.to_owned(),
        };
        match lines.next() {
            Some((_, MAGIC)) => {}
            _ => return Err(err(1, "not a skytime NTS client file")),
        }
        let unhex = |line: usize, s: &str| -> Result<Vec<u8>, SavedSessionError> {
            if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(line, "bad hex"));
            }
            Ok((0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
                .collect())
        };
        let key = |line: usize, s: &str| -> Result<Key, SavedSessionError> {
            Key::new(&unhex(line, s)?).ok_or_else(|| err(line, "a key of the wrong length"))
        };
        let (mut ke_server, mut ntp_server, mut ntp_port) = (None, None, None);
        let (mut aead_id, mut c2s, mut s2c) = (None, None, None);
        let mut cookies = Vec::new();
        for (n, l) in lines {
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (word, value) = l.split_once(' ').ok_or_else(|| err(n, "no value"))?;
            match word {
                "ke-server" => ke_server = Some(value.to_owned()),
                "ntp-server" => ntp_server = Some(value.to_owned()),
                "ntp-port" => ntp_port = Some(value.parse().map_err(|_| err(n, "bad port"))?),
                "aead" => {
                    let id: u16 = value.parse().map_err(|_| err(n, "bad AEAD id"))?;
                    aead_id = Some(Aead::from_id(id).ok_or_else(|| err(n, "unsupported AEAD"))?);
                }
                "c2s" => c2s = Some(key(n, value)?),
                "s2c" => s2c = Some(key(n, value)?),
                "cookie" => {
                    let c = unhex(n, value)?;
                    if c.is_empty() || c.len() > crate::ke_client::MAX_COOKIE {
                        return Err(err(n, "a cookie of an unusable length"));
                    }
                    cookies.push(c);
                }
                _ => return Err(err(n, "unknown item")),
            }
        }
        let last = text.lines().count();
        let (Some(ke_server), Some(aead), Some(c2s), Some(s2c)) = (ke_server, aead_id, c2s, s2c)
        else {
            return Err(err(
                last,
                "incomplete: ke-server, aead, c2s and s2c are needed",
            ));
        };
        if [&c2s, &s2c]
            .iter()
            .any(|k| k.as_bytes().len() != aead.key_len())
        {
            return Err(err(
                last,
                "the keys' length does not fit the AEAD algorithm",
            ));
        }
        Ok(Self {
            ke_server,
            ntp_server,
            ntp_port,
            session: NtsSession::new(SessionKeys { aead, c2s, s2c }, cookies),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyset::KeySet;
    use crate::server::{Detail, NtsServer};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn setup(seed: u64, cookies: usize) -> (StdRng, KeySet, NtsSession) {
        let mut rng = StdRng::seed_from_u64(seed);
        let keys = KeySet::generate(0, &mut rng);
        let session = SessionKeys {
            aead: Aead::AesSivCmac256,
            c2s: Key::from([3; 32]),
            s2c: Key::from([4; 32]),
        };
        let jar = (0..cookies)
            .map(|_| crate::cookie::seal(&session, keys.current(), &mut rng).unwrap())
            .collect();
        (rng, keys, NtsSession::new(session, jar))
    }

    fn header() -> [u8; 48] {
        let mut h = [0u8; 48];
        h[0] = 0x23;
        h[40..48].copy_from_slice(&[5; 8]);
        h
    }

    /// The server's reply to `request`: its header with mode 4.
    fn serve(request: &[u8], keys: &KeySet, rng: &mut StdRng) -> Vec<u8> {
        let mut reply_header = header();
        reply_header[0] = 0x24;
        reply_header[1] = 1;
        let mut server = NtsServer::new(
            std::sync::Arc::new(keys.clone()),
            StdRng::seed_from_u64(rng.next_u64()),
        );
        let mut out = vec![0u8; request.len()];
        match server.examine_detail(request, &mut out) {
            Detail::Authentic { len, pending } => {
                out[..48].copy_from_slice(&reply_header);
                server.seal_reply(&pending, &mut out[..len]).unwrap();
                out.truncate(len);
            }
            Detail::Nak { len, .. } => {
                reply_header[1] = 0;
                reply_header[12..16].copy_from_slice(b"NTSN");
                out[..48].copy_from_slice(&reply_header);
                out.truncate(len);
            }
            other => panic!("{other:?}"),
        }
        out
    }

    #[test]
    fn our_server_accepts_our_requests_and_refills_the_jar() {
        let (mut rng, keys, mut s) = setup(1, 8);
        for _ in 0..20 {
            let (req, uid) = s.request(&header(), &mut rng).unwrap();
            assert!(s.cookies() < COOKIES_WANTED);
            let reply = serve(&req, &keys, &mut rng);
            assert!(reply.len() <= req.len());
            assert_eq!(
                s.check_reply(&reply, &uid),
                Ok(NtsReply::Authentic { new_cookies: 1 })
            );
            assert_eq!(s.cookies(), COOKIES_WANTED);
        }
        // Lost replies: the jar runs down, and placeholders bring it back.
        for _ in 0..5 {
            s.request(&header(), &mut rng).unwrap();
        }
        assert_eq!(s.cookies(), 3);
        let (req, uid) = s.request(&header(), &mut rng).unwrap();
        let reply = serve(&req, &keys, &mut rng);
        assert_eq!(
            s.check_reply(&reply, &uid),
            Ok(NtsReply::Authentic { new_cookies: 6 })
        );
        assert_eq!(s.cookies(), COOKIES_WANTED);
    }

    #[test]
    fn forged_replayed_and_nak_replies() {
        let (mut rng, keys, mut s) = setup(2, 8);
        let (req, uid) = s.request(&header(), &mut rng).unwrap();
        let reply = serve(&req, &keys, &mut rng);
        // Another request's identifier: a replay or a mix-up.
        assert_eq!(
            s.clone().check_reply(&reply, &[0; 32]),
            Err(NtsReplyError::WrongUid)
        );
        let mut forged = reply.clone();
        forged[20] ^= 1; // a header byte covered by the authenticator
        assert_eq!(
            s.clone().check_reply(&forged, &uid),
            Err(NtsReplyError::AuthenticationFailed)
        );
        // Stripped of its authenticator: not believed, unless it is a NAK.
        let stripped = &reply[..48 + 36];
        assert_eq!(
            s.clone().check_reply(stripped, &uid),
            Err(NtsReplyError::Unauthenticated)
        );
        // The server lost its keys: a NAK that echoes our identifier.
        let other_keys = KeySet::generate(0, &mut rng);
        let (req, uid) = s.request(&header(), &mut rng).unwrap();
        let nak = serve(&req, &other_keys, &mut rng);
        assert_eq!(s.check_reply(&nak, &uid), Ok(NtsReply::Nak));
        assert_eq!(s.check_reply(&nak, &[1; 32]), Err(NtsReplyError::WrongUid));
        s.clear_cookies();
        assert!(s.request(&header(), &mut rng).is_none());
    }

    /// A reply sealed by the server's S2C key with `inner` as its
    /// encrypted fields and `uid` echoed: what a hostile but keyed server
    /// (or a bug) could send.
    fn sealed_reply(s: &NtsSession, uid: &[u8], inner: &[u8]) -> Vec<u8> {
        let mut out = header().to_vec();
        out[0] = 0x24;
        write_field(&mut out, field_type::UNIQUE_IDENTIFIER, uid);
        let nonce = [7u8; NONCE_LEN];
        let ct = aead::seal(s.keys.aead, &s.keys.s2c, &nonce, &out, inner).unwrap();
        Authenticator {
            nonce: &nonce,
            ciphertext: &ct,
        }
        .write(&mut out);
        out
    }

    #[test]
    fn cookies_of_no_or_absurd_length_are_not_kept() {
        let (mut rng, _, mut s) = setup(4, 8);
        let (_, uid) = s.request(&header(), &mut rng).unwrap();
        let mut inner = Vec::new();
        write_field(&mut inner, field_type::COOKIE, &[]);
        write_field(
            &mut inner,
            field_type::COOKIE,
            &[1; crate::ke_client::MAX_COOKIE + 4],
        );
        write_field(&mut inner, field_type::COOKIE, &[2; 100]);
        let reply = sealed_reply(&s, &uid, &inner);
        assert_eq!(
            s.check_reply(&reply, &uid),
            Ok(NtsReply::Authentic { new_cookies: 1 })
        );
        // The jar still saves and reads back.
        let saved = SavedSession {
            ke_server: "k:4460".into(),
            ntp_server: None,
            ntp_port: None,
            session: s,
        };
        assert_eq!(SavedSession::parse(&saved.render()), Ok(saved));
    }

    proptest::proptest! {
        /// Any bytes at all as a reply: an answer, never a panic, and no
        /// cookie taken from something that is not authentic.
        #[test]
        fn any_reply_is_checked_without_panic(
            reply in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            echo_uid in proptest::prelude::any::<bool>(),
        ) {
            let (mut rng, _, mut s) = setup(5, 8);
            let (_, uid) = s.request(&header(), &mut rng).unwrap();
            let mut reply = reply;
            if echo_uid && reply.len() >= 48 + 36 {
                // Our identifier in the right place, to get past that check.
                reply[48..52].copy_from_slice(&[0x01, 0x04, 0, 36]);
                reply[52..84].copy_from_slice(&uid);
            }
            let before = s.cookies();
            if let Ok(NtsReply::Authentic { .. }) = s.check_reply(&reply, &uid) {
                proptest::prop_assert!(false, "random bytes authenticated");
            }
            proptest::prop_assert_eq!(s.cookies(), before);
        }

        /// A real reply truncated anywhere, or with any byte changed, or
        /// with bytes appended: never a panic, never authentic unless it
        /// is the reply unchanged.
        #[test]
        fn truncated_and_mutated_real_replies_are_checked_without_panic(
            cut in 0usize..400,
            at in 0usize..400,
            xor in 1u8..=255,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let (mut rng, keys, s) = setup(6, 8);
            let mut s = s;
            let (req, uid) = s.request(&header(), &mut rng).unwrap();
            let reply = serve(&req, &keys, &mut rng);
            let cut = cut.min(reply.len());
            let truncated = &reply[..cut];
            let r = s.clone().check_reply(truncated, &uid);
            proptest::prop_assert!(cut == reply.len() || !matches!(r, Ok(NtsReply::Authentic { .. })), "cut at {}", cut);
            let mut mutated = reply.clone();
            let i = at % mutated.len();
            mutated[i] ^= xor;
            // Only the cookie inside padding could change unnoticed; the
            // header, fields and authenticator are all covered.
            let r = s.clone().check_reply(&mutated, &uid);
            proptest::prop_assert!(!matches!(r, Ok(NtsReply::Authentic { .. })), "byte {} changed", i);
            let mut longer = reply.clone();
            longer.extend_from_slice(&tail);
            let r = s.clone().check_reply(&longer, &uid);
            proptest::prop_assert!(tail.is_empty() || !matches!(r, Ok(NtsReply::Authentic { .. })), "{} bytes appended", tail.len());
        }
    }

    #[test]
    fn a_saved_session_reads_back_and_bad_files_are_named() {
        let (_, _, s) = setup(3, 5);
        let saved = SavedSession {
            ke_server: "time.example:4460".into(),
            ntp_server: Some("ntp.example".into()),
            ntp_port: Some(123),
            session: s,
        };
        let text = saved.render();
        assert_eq!(SavedSession::parse(&text), Ok(saved.clone()));
        let minimal = SavedSession {
            ntp_server: None,
            ntp_port: None,
            ..saved
        };
        assert_eq!(SavedSession::parse(&minimal.render()), Ok(minimal));
        for (bad, line) in [
            ("something else\n", 1),
            ("skytime-nts-client 1\nke-server x\naead 15\nc2s 00\n", 4),
            ("skytime-nts-client 1\ncolour blue\n", 2),
            ("skytime-nts-client 1\naead 30\n", 2),
            ("skytime-nts-client 1\ncookie zz\n", 2),
            ("skytime-nts-client 1\nke-server x\n", 2),
        ] {
            let e = SavedSession::parse(bad).unwrap_err();
            assert_eq!(e.line, line, "{bad:?}: {e}");
        }
    }
}
