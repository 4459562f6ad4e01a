//! NTS cookies: the session keys, sealed under a server master key, so the
//! server keeps no per-client state.
//!
//! Format (a multiple of 4, so it needs no padding in an NTP extension
//! field): 104 bytes for an AES-SIV-CMAC-256 session, 72 for an
//! AES-128-GCM-SIV one (16-byte keys):
//!
//! ```text
//! key id (u32, big endian)          4   which master key sealed it
//! nonce                            16   random per cookie
//! AES-SIV tag                      16   } AES-SIV-CMAC-256 under the master key,
//! sealed: AEAD id (u16), 0 (u16),  68   } associated data = key id
//!         C2S key, S2C key     (or 36)
//! ```
//!
//! Every cookie is fresh random bytes to an observer (new nonce), so a
//! client cannot be tracked by the cookies it presents (RFC 8915 section 6).

use crate::aead::{Aead, AeadError, Cipher, Key, SessionKeys, KEY_LEN, TAG_LEN};
use crate::keyset::{KeySet, MasterKey};
use rand::{CryptoRng, RngCore};

const NONCE_LEN: usize = 16;
/// Where the sealed part starts (after key id and nonce).
const SEALED_AT: usize = 4 + NONCE_LEN;
/// Length of a cookie for an AES-SIV-CMAC-256 session (the longest).
pub const COOKIE_LEN: usize = cookie_len(Aead::AesSivCmac256);

/// Length of the cookies of a session with `aead`.
pub const fn cookie_len(aead: Aead) -> usize {
    let key_len = match aead {
        Aead::AesSivCmac256 => KEY_LEN,
        Aead::AesGcmSiv128 => 16,
    };
    SEALED_AT + TAG_LEN + 4 + 2 * key_len
}

/// Why a cookie could not be opened. Each earns the client an NTS NAK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("cookie has the wrong length")]
    WrongLength,
    #[error("cookie was sealed with a master key this server no longer (or never) had")]
    UnknownKey,
    #[error("cookie does not decrypt under its master key")]
    Undecryptable,
    #[error("cookie names an AEAD algorithm this server does not support")]
    UnknownAead,
}

/// The master keys' ciphers, built once per key set and kept by whoever
/// opens and seals many cookies (each NTP server thread keeps its own).
#[derive(Debug)]
pub struct CookieCiphers {
    /// (key id, cipher); the first is the current key.
    ciphers: Vec<(u32, Cipher)>,
}

impl CookieCiphers {
    pub fn new(keys: &KeySet) -> Self {
        let ciphers = std::iter::once(keys.current())
            .chain(keys.keys().iter().skip(1))
            .chain(keys.next())
            .filter_map(|k| Some((k.id, master_cipher(k)?)))
            .collect();
        Self { ciphers }
    }

    fn get(&mut self, id: u32) -> Option<&mut Cipher> {
        self.ciphers
            .iter_mut()
            .find(|(i, _)| *i == id)
            .map(|(_, c)| c)
    }

    /// The current key's id and cipher (it seals new cookies).
    fn current(&mut self) -> Option<(u32, &mut Cipher)> {
        self.ciphers.first_mut().map(|(id, c)| (*id, c))
    }
}

fn master_cipher(key: &MasterKey) -> Option<Cipher> {
    Cipher::new(Aead::AesSivCmac256, key.key()).ok()
}

/// Seals `keys` into a new cookie in `out` (exactly
/// [`cookie_len`]`(keys.aead)` bytes) under the current master key.
pub fn seal_into<R: RngCore + CryptoRng>(
    keys: &SessionKeys,
    ciphers: &mut CookieCiphers,
    rng: &mut R,
    out: &mut [u8],
) -> Result<(), AeadError> {
    if out.len() != cookie_len(keys.aead) {
        return Err(AeadError::TooShort);
    }
    let (id, cipher) = ciphers.current().ok_or(AeadError::KeyLength)?;
    let id = id.to_be_bytes();
    out[..4].copy_from_slice(&id);
    rng.fill_bytes(&mut out[4..SEALED_AT]);
    let (head, sealed) = out.split_at_mut(SEALED_AT);
    let plain = &mut sealed[TAG_LEN..];
    let (c2s, s2c) = (keys.c2s.as_bytes(), keys.s2c.as_bytes());
    if c2s.len() != keys.aead.key_len() || s2c.len() != c2s.len() {
        return Err(AeadError::KeyLength);
    }
    plain[..2].copy_from_slice(&keys.aead.id().to_be_bytes());
    plain[2..4].fill(0);
    plain[4..4 + c2s.len()].copy_from_slice(c2s);
    plain[4 + c2s.len()..].copy_from_slice(s2c);
    cipher.seal_in_place(&head[4..], &id, sealed)
}

/// Seals `keys` into a new cookie under `master` (building its cipher: for
/// NTS-KE, which seals a few cookies per TLS handshake).
pub fn seal<R: RngCore + CryptoRng>(
    keys: &SessionKeys,
    master: &MasterKey,
    rng: &mut R,
) -> Result<Vec<u8>, AeadError> {
    let cipher = master_cipher(master).ok_or(AeadError::KeyLength)?;
    let mut ciphers = CookieCiphers {
        ciphers: vec![(master.id, cipher)],
    };
    let mut out = vec![0u8; cookie_len(keys.aead)];
    seal_into(keys, &mut ciphers, rng, &mut out)?;
    Ok(out)
}

/// Opens a cookie with whichever master key sealed it, without
/// allocating (the cookie is copied to the stack to be opened in place).
pub fn open_with(cookie: &[u8], ciphers: &mut CookieCiphers) -> Result<SessionKeys, CookieError> {
    let aead = match cookie.len() {
        n if n == cookie_len(Aead::AesSivCmac256) => Aead::AesSivCmac256,
        n if n == cookie_len(Aead::AesGcmSiv128) => Aead::AesGcmSiv128,
        _ => return Err(CookieError::WrongLength),
    };
    let id = u32::from_be_bytes([cookie[0], cookie[1], cookie[2], cookie[3]]);
    let cipher = ciphers.get(id).ok_or(CookieError::UnknownKey)?;
    let mut buf = [0u8; COOKIE_LEN];
    let sealed = &mut buf[..cookie.len() - SEALED_AT];
    sealed.copy_from_slice(&cookie[SEALED_AT..]);
    let plain = cipher
        .open_in_place(&cookie[4..SEALED_AT], &cookie[..4], sealed)
        .map_err(|_| CookieError::Undecryptable)?;
    // The length told the algorithm; the sealed id must agree.
    if Aead::from_id(u16::from_be_bytes([plain[0], plain[1]])) != Some(aead) {
        return Err(CookieError::UnknownAead);
    }
    let n = aead.key_len();
    let key = |at: usize| Key::new(&plain[at..at + n]).ok_or(CookieError::UnknownAead);
    Ok(SessionKeys {
        aead,
        c2s: key(4)?,
        s2c: key(4 + n)?,
    })
}

/// Opens a cookie with the keys of `keys` (building their ciphers: for
/// tests and tools; the server keeps [`CookieCiphers`]).
pub fn open(cookie: &[u8], keys: &KeySet) -> Result<SessionKeys, CookieError> {
    open_with(cookie, &mut CookieCiphers::new(keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn session(aead: Aead, a: u8, b: u8) -> SessionKeys {
        let n = aead.key_len();
        SessionKeys {
            aead,
            c2s: Key::new(&vec![a; n]).unwrap(),
            s2c: Key::new(&vec![b; n]).unwrap(),
        }
    }

    #[test]
    fn round_trip_and_fresh_each_time_for_both_algorithms() {
        let mut rng = StdRng::seed_from_u64(1);
        let keys = KeySet::generate(1000, &mut rng);
        for (aead, len) in [(Aead::AesSivCmac256, 104), (Aead::AesGcmSiv128, 72)] {
            let s = session(aead, 1, 2);
            let c1 = seal(&s, keys.current(), &mut rng).unwrap();
            let c2 = seal(&s, keys.current(), &mut rng).unwrap();
            assert_eq!((c1.len(), cookie_len(aead)), (len, len));
            assert_eq!(len % 4, 0);
            assert_ne!(c1, c2, "cookies for the same keys must not be linkable");
            assert_eq!(open(&c1, &keys), Ok(s.clone()));
            assert_eq!(open(&c2, &keys), Ok(s));
        }
    }

    #[test]
    fn kept_ciphers_seal_and_open_like_fresh_ones() {
        let mut rng = StdRng::seed_from_u64(3);
        let keys = KeySet::generate(1000, &mut rng);
        let mut ciphers = CookieCiphers::new(&keys);
        let s = session(Aead::AesSivCmac256, 5, 6);
        for _ in 0..10 {
            let mut c = [0u8; COOKIE_LEN];
            seal_into(&s, &mut ciphers, &mut rng, &mut c).unwrap();
            assert_eq!(open(&c, &keys), Ok(s.clone()));
            assert_eq!(open_with(&c, &mut ciphers), Ok(s.clone()));
        }
        let mut short = [0u8; 10];
        assert!(seal_into(&s, &mut ciphers, &mut rng, &mut short).is_err());
    }

    #[test]
    fn every_error_path() {
        let mut rng = StdRng::seed_from_u64(2);
        let keys = KeySet::generate(1000, &mut rng);
        let other = KeySet::generate(1000, &mut rng);
        let c = seal(
            &session(Aead::AesSivCmac256, 3, 4),
            keys.current(),
            &mut rng,
        )
        .unwrap();
        assert_eq!(
            open(&c[..COOKIE_LEN - 1], &keys),
            Err(CookieError::WrongLength)
        );
        assert_eq!(open(&c, &other), Err(CookieError::UnknownKey));
        // Same id, different key material: a forged or foreign cookie.
        let mut forged_set = other.clone();
        forged_set.force_id_for_test(keys.current().id);
        assert_eq!(open(&c, &forged_set), Err(CookieError::Undecryptable));
        for i in [4, 20, 40, COOKIE_LEN - 1] {
            let mut t = c.clone();
            t[i] ^= 1;
            assert_eq!(
                open(&t, &keys),
                Err(CookieError::Undecryptable),
                "flip at {i}"
            );
        }
        let mut t = c.clone();
        t[0] ^= 0x80;
        assert_eq!(open(&t, &keys), Err(CookieError::UnknownKey));
    }

    proptest! {
        #[test]
        fn any_keys_round_trip(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), seed in any::<u64>(), gcm in any::<bool>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let keys = KeySet::generate(5, &mut rng);
            let aead = if gcm { Aead::AesGcmSiv128 } else { Aead::AesSivCmac256 };
            let n = aead.key_len();
            let s = SessionKeys { aead, c2s: Key::new(&a[..n]).unwrap(), s2c: Key::new(&b[..n]).unwrap() };
            let c = seal(&s, keys.current(), &mut rng).unwrap();
            prop_assert_eq!(open(&c, &keys), Ok(s));
        }

        #[test]
        fn random_bytes_never_open(data in proptest::collection::vec(any::<u8>(), 0..200), seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let keys = KeySet::generate(5, &mut rng);
            prop_assert!(open(&data, &keys).is_err());
        }
    }
}
