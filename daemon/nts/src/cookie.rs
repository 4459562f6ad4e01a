//! NTS cookies: the session keys, sealed under a server master key, so the
//! server keeps no per-client state.
//!
//! Format (104 bytes, a multiple of 4 so it needs no padding in an NTP
//! extension field):
//!
//! ```text
//! key id (u32, big endian)          4   which master key sealed it
//! nonce                            16   random per cookie
//! AES-SIV tag                      16   } AES-SIV-CMAC-256 under the master key,
//! sealed: AEAD id (u16), 0 (u16),  68   } associated data = key id
//!         C2S key (32), S2C key (32)
//! ```
//!
//! Every cookie is fresh random bytes to an observer (new nonce), so a
//! client cannot be tracked by the cookies it presents (RFC 8915 section 6).

use crate::aead::{Aead, Key, SessionKeys, KEY_LEN, TAG_LEN};
use crate::keyset::{KeySet, MasterKey};
use rand::{CryptoRng, RngCore};

const NONCE_LEN: usize = 16;
const PLAINTEXT_LEN: usize = 4 + 2 * KEY_LEN;
/// Length of every cookie this server issues.
pub const COOKIE_LEN: usize = 4 + NONCE_LEN + TAG_LEN + PLAINTEXT_LEN;

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

/// Seals `keys` into a new cookie under `master`.
pub fn seal<R: RngCore + CryptoRng>(
    keys: &SessionKeys,
    master: &MasterKey,
    rng: &mut R,
) -> Vec<u8> {
    let mut plaintext = [0u8; PLAINTEXT_LEN];
    plaintext[..2].copy_from_slice(&keys.aead.id().to_be_bytes());
    plaintext[4..4 + KEY_LEN].copy_from_slice(&keys.c2s.0);
    plaintext[4 + KEY_LEN..].copy_from_slice(&keys.s2c.0);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let id = master.id.to_be_bytes();
    let sealed = master.cipher().seal(&nonce, &id, &plaintext);
    let mut cookie = Vec::with_capacity(COOKIE_LEN);
    cookie.extend_from_slice(&id);
    cookie.extend_from_slice(&nonce);
    cookie.extend_from_slice(&sealed);
    debug_assert_eq!(cookie.len(), COOKIE_LEN);
    cookie
}

/// Opens a cookie with whichever key of `keys` sealed it.
pub fn open(cookie: &[u8], keys: &KeySet) -> Result<SessionKeys, CookieError> {
    if cookie.len() != COOKIE_LEN {
        return Err(CookieError::WrongLength);
    }
    let id = u32::from_be_bytes([cookie[0], cookie[1], cookie[2], cookie[3]]);
    let master = keys.get(id).ok_or(CookieError::UnknownKey)?;
    let nonce = &cookie[4..4 + NONCE_LEN];
    let plaintext = master
        .cipher()
        .open(nonce, &cookie[..4], &cookie[4 + NONCE_LEN..])
        .ok_or(CookieError::Undecryptable)?;
    let aead = Aead::from_id(u16::from_be_bytes([plaintext[0], plaintext[1]]))
        .ok_or(CookieError::UnknownAead)?;
    let mut c2s = [0u8; KEY_LEN];
    let mut s2c = [0u8; KEY_LEN];
    c2s.copy_from_slice(&plaintext[4..4 + KEY_LEN]);
    s2c.copy_from_slice(&plaintext[4 + KEY_LEN..]);
    Ok(SessionKeys {
        aead,
        c2s: Key(c2s),
        s2c: Key(s2c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn session(a: u8, b: u8) -> SessionKeys {
        SessionKeys {
            aead: Aead::AesSivCmac256,
            c2s: Key([a; KEY_LEN]),
            s2c: Key([b; KEY_LEN]),
        }
    }

    #[test]
    fn round_trip_and_fresh_each_time() {
        let mut rng = StdRng::seed_from_u64(1);
        let keys = KeySet::generate(1000, &mut rng);
        let s = session(1, 2);
        let c1 = seal(&s, keys.current(), &mut rng);
        let c2 = seal(&s, keys.current(), &mut rng);
        assert_eq!(c1.len(), COOKIE_LEN);
        assert_eq!(COOKIE_LEN % 4, 0);
        assert_ne!(c1, c2, "cookies for the same keys must not be linkable");
        assert_eq!(open(&c1, &keys), Ok(s.clone()));
        assert_eq!(open(&c2, &keys), Ok(s));
    }

    #[test]
    fn every_error_path() {
        let mut rng = StdRng::seed_from_u64(2);
        let keys = KeySet::generate(1000, &mut rng);
        let other = KeySet::generate(1000, &mut rng);
        let c = seal(&session(3, 4), keys.current(), &mut rng);
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
        fn any_keys_round_trip(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let keys = KeySet::generate(5, &mut rng);
            let s = SessionKeys { aead: Aead::AesSivCmac256, c2s: Key(a), s2c: Key(b) };
            let c = seal(&s, keys.current(), &mut rng);
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
