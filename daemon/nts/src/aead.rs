//! The AEAD algorithms NTS can negotiate, sealing and opening in place.
//!
//! - AEAD_AES_SIV_CMAC_256 (IANA 15, RFC 5297): mandatory to implement
//!   (RFC 8915 section 5.1), all Debian 12's chrony 4.3 speaks, and the
//!   algorithm of the master keys that seal cookies. The AEAD output is
//!   the synthetic IV (the tag) followed by the ciphertext.
//! - AEAD_AES_128_GCM_SIV (IANA 30, RFC 8452): what chrony 4.4 and later
//!   prefer; 16-byte keys (shorter cookies) and a 12-byte nonce. The
//!   output is the ciphertext followed by the tag. Which clients get it is
//!   the key exchange's decision ([`crate::ke::decide`]).
//!
//! Everything works in place on caller buffers: no allocation on the
//! request path. A [`Cipher`] is built from a key without heap work; the
//! server keeps the master keys' ciphers per thread and builds the
//! per-session ones on the stack for each request, as chrony re-keys one
//! SIV instance per request.

use crate::siv::Siv;
use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::Aes128GcmSiv;

/// Length of an AES-SIV-CMAC-256 key (two AES-128 keys): the longest key.
pub const KEY_LEN: usize = 32;
/// Length of the authentication tag of both algorithms.
pub const TAG_LEN: usize = 16;
/// The nonce length AES-128-GCM-SIV requires.
pub const GCM_SIV_NONCE_LEN: usize = 12;

/// A key of 16 or 32 bytes. Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    bytes: [u8; KEY_LEN],
    len: u8,
}

impl Key {
    /// A key from 16 or 32 bytes; `None` for any other length.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 16 && bytes.len() != KEY_LEN {
            return None;
        }
        let mut k = [0u8; KEY_LEN];
        k[..bytes.len()].copy_from_slice(bytes);
        Some(Self {
            bytes: k,
            len: bytes.len() as u8,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl From<[u8; KEY_LEN]> for Key {
    fn from(bytes: [u8; KEY_LEN]) -> Self {
        Self {
            bytes,
            len: KEY_LEN as u8,
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} bytes)", self.len)
    }
}

/// A negotiable AEAD algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aead {
    /// AEAD_AES_SIV_CMAC_256, RFC 5297.
    AesSivCmac256,
    /// AEAD_AES_128_GCM_SIV, RFC 8452.
    AesGcmSiv128,
}

impl Aead {
    /// Every algorithm this server speaks.
    pub const SUPPORTED: [Aead; 2] = [Aead::AesGcmSiv128, Aead::AesSivCmac256];

    pub fn id(self) -> u16 {
        match self {
            Self::AesSivCmac256 => 15,
            Self::AesGcmSiv128 => 30,
        }
    }

    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            15 => Some(Self::AesSivCmac256),
            30 => Some(Self::AesGcmSiv128),
            _ => None,
        }
    }

    /// Bytes of key material to export from TLS for each direction.
    pub fn key_len(self) -> usize {
        match self {
            Self::AesSivCmac256 => KEY_LEN,
            Self::AesGcmSiv128 => 16,
        }
    }

    /// The nonce length this server uses in its replies.
    pub fn nonce_len(self) -> usize {
        match self {
            Self::AesSivCmac256 => 16,
            Self::AesGcmSiv128 => GCM_SIV_NONCE_LEN,
        }
    }

    /// Whether a request's nonce of `len` bytes is acceptable: at least 16
    /// for AES-SIV (RFC 8915 section 5.6), exactly 12 for AES-GCM-SIV.
    pub fn accepts_nonce_len(self, len: usize) -> bool {
        match self {
            Self::AesSivCmac256 => len >= 16,
            Self::AesGcmSiv128 => len == GCM_SIV_NONCE_LEN,
        }
    }

    /// Where the plaintext sits in a sealed buffer (the output is
    /// tag || ciphertext for AES-SIV, ciphertext || tag for AES-GCM-SIV).
    pub fn plaintext_offset(self) -> usize {
        match self {
            Self::AesSivCmac256 => TAG_LEN,
            Self::AesGcmSiv128 => 0,
        }
    }
}

/// Why sealing or opening failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    #[error("the key has the wrong length for the algorithm")]
    KeyLength,
    #[error("the nonce has the wrong length for the algorithm")]
    NonceLength,
    #[error("the ciphertext is shorter than a tag")]
    TooShort,
    #[error("the ciphertext does not verify")]
    Rejected,
    #[error("the cipher refused the input")]
    Failed,
}

/// The two keys an NTS-KE session establishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKeys {
    pub aead: Aead,
    /// Client to server: authenticates requests.
    pub c2s: Key,
    /// Server to client: authenticates and encrypts replies.
    pub s2c: Key,
}

/// A key ready to seal and open: built once per key without heap work.
// Not boxed: the server keeps its ciphers in place and re-keys them, and
// a box would put heap work back on the request path.
#[allow(clippy::large_enum_variant)]
pub enum Cipher {
    Siv(Siv),
    GcmSiv(Aes128GcmSiv),
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Siv(_) => "Cipher(AES-SIV-CMAC-256)",
            Self::GcmSiv(_) => "Cipher(AES-128-GCM-SIV)",
        })
    }
}

impl Cipher {
    pub fn new(aead: Aead, key: &Key) -> Result<Self, AeadError> {
        let bytes = key.as_bytes();
        if bytes.len() != aead.key_len() {
            return Err(AeadError::KeyLength);
        }
        Ok(match aead {
            Aead::AesSivCmac256 => Self::Siv(Siv::new(
                bytes.try_into().map_err(|_| AeadError::KeyLength)?,
            )),
            Aead::AesGcmSiv128 => {
                Self::GcmSiv(Aes128GcmSiv::new_from_slice(bytes).map_err(|_| AeadError::KeyLength)?)
            }
        })
    }

    /// Takes `key` for `aead`, in place where the algorithm stays the same
    /// (no cipher state built elsewhere and moved: the server re-keys one
    /// session cipher per request).
    pub fn rekey(&mut self, aead: Aead, key: &Key) -> Result<(), AeadError> {
        match (self, aead) {
            (Self::Siv(siv), Aead::AesSivCmac256) => {
                siv.rekey(
                    key.as_bytes()
                        .try_into()
                        .map_err(|_| AeadError::KeyLength)?,
                );
                Ok(())
            }
            (this, _) => {
                *this = Self::new(aead, key)?;
                Ok(())
            }
        }
    }

    pub fn aead(&self) -> Aead {
        match self {
            Self::Siv(_) => Aead::AesSivCmac256,
            Self::GcmSiv(_) => Aead::AesGcmSiv128,
        }
    }

    /// Seals in place: `buf` is `TAG_LEN` bytes longer than the plaintext,
    /// which sits at [`Aead::plaintext_offset`]; afterwards `buf` holds
    /// the algorithm's output. The associated data is `associated_data`,
    /// then the nonce (RFC 5116's interface, as RFC 8915 uses it).
    pub fn seal_in_place(
        &mut self,
        nonce: &[u8],
        associated_data: &[u8],
        buf: &mut [u8],
    ) -> Result<(), AeadError> {
        if buf.len() < TAG_LEN {
            return Err(AeadError::TooShort);
        }
        match self {
            Self::Siv(siv) => {
                let (tag, plaintext) = buf.split_at_mut(TAG_LEN);
                tag.copy_from_slice(&siv.seal_in_place(&[associated_data, nonce], plaintext));
            }
            Self::GcmSiv(gcm) => {
                if nonce.len() != GCM_SIV_NONCE_LEN {
                    return Err(AeadError::NonceLength);
                }
                let split = buf.len() - TAG_LEN;
                let (plaintext, tag) = buf.split_at_mut(split);
                let t = gcm
                    .encrypt_in_place_detached(nonce.into(), associated_data, plaintext)
                    .map_err(|_| AeadError::Failed)?;
                tag.copy_from_slice(&t);
            }
        }
        Ok(())
    }

    /// Opens in place; on success returns the plaintext (a part of `buf`).
    /// On failure `buf` is left scrambled, never half-decrypted.
    pub fn open_in_place<'b>(
        &mut self,
        nonce: &[u8],
        associated_data: &[u8],
        buf: &'b mut [u8],
    ) -> Result<&'b [u8], AeadError> {
        if buf.len() < TAG_LEN {
            return Err(AeadError::TooShort);
        }
        match self {
            Self::Siv(siv) => {
                let (tag, ciphertext) = buf.split_at_mut(TAG_LEN);
                let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| AeadError::TooShort)?;
                siv.open_in_place(&[associated_data, nonce], ciphertext, &tag)
                    .map_err(|_| AeadError::Rejected)?;
                Ok(ciphertext)
            }
            Self::GcmSiv(gcm) => {
                if nonce.len() != GCM_SIV_NONCE_LEN {
                    return Err(AeadError::NonceLength);
                }
                let split = buf.len() - TAG_LEN;
                let (ciphertext, tag) = buf.split_at_mut(split);
                let tag = aes_gcm_siv::Tag::clone_from_slice(tag);
                gcm.decrypt_in_place_detached(nonce.into(), associated_data, ciphertext, &tag)
                    .map_err(|_| AeadError::Rejected)?;
                Ok(ciphertext)
            }
        }
    }
}

/// One-shot sealing for clients and tests: returns the AEAD output.
pub fn seal(
    aead: Aead,
    key: &Key,
    nonce: &[u8],
    associated_data: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, AeadError> {
    let mut buf = vec![0u8; plaintext.len() + TAG_LEN];
    let at = aead.plaintext_offset();
    buf[at..at + plaintext.len()].copy_from_slice(plaintext);
    Cipher::new(aead, key)?.seal_in_place(nonce, associated_data, &mut buf)?;
    Ok(buf)
}

/// One-shot opening for clients and tests: the plaintext, or `None` if it
/// does not verify.
pub fn open(
    aead: Aead,
    key: &Key,
    nonce: &[u8],
    associated_data: &[u8],
    ciphertext: &[u8],
) -> Option<Vec<u8>> {
    let mut buf = ciphertext.to_vec();
    let plain = Cipher::new(aead, key)
        .ok()?
        .open_in_place(nonce, associated_data, &mut buf)
        .ok()?
        .to_vec();
    Some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIV: Aead = Aead::AesSivCmac256;
    const GCM: Aead = Aead::AesGcmSiv128;

    #[test]
    fn seal_open_round_trip_and_tamper_for_both_algorithms() {
        for (aead, key, nonce) in [
            (SIV, Key::from([7; KEY_LEN]), &b"nonce-nonce-nonc"[..]),
            (GCM, Key::new(&[7; 16]).unwrap(), &b"nonce-nonce-"[..]),
        ] {
            let ct = seal(aead, &key, nonce, b"ad", b"secret").unwrap();
            assert_eq!(ct.len(), TAG_LEN + 6);
            assert_eq!(
                open(aead, &key, nonce, b"ad", &ct).as_deref(),
                Some(&b"secret"[..])
            );
            let mut other_nonce = nonce.to_vec();
            other_nonce[0] ^= 1;
            assert!(open(aead, &key, &other_nonce, b"ad", &ct).is_none());
            assert!(open(aead, &key, nonce, b"aX", &ct).is_none());
            let mut other_key = key.as_bytes().to_vec();
            other_key[0] ^= 1;
            let other_key = Key::new(&other_key).unwrap();
            assert!(open(aead, &other_key, nonce, b"ad", &ct).is_none());
            assert!(open(aead, &key, nonce, b"ad", &ct[..10]).is_none());
            for i in 0..ct.len() {
                let mut t = ct.clone();
                t[i] ^= 0x10;
                assert!(
                    open(aead, &key, nonce, b"ad", &t).is_none(),
                    "{aead:?} byte {i}"
                );
            }
        }
    }

    #[test]
    fn wrong_key_and_nonce_lengths_are_errors_not_panics() {
        let short = Key::new(&[1; 16]).unwrap();
        let long = Key::from([1; KEY_LEN]);
        assert_eq!(Cipher::new(SIV, &short).unwrap_err(), AeadError::KeyLength);
        assert_eq!(Cipher::new(GCM, &long).unwrap_err(), AeadError::KeyLength);
        assert!(Key::new(&[0; 17]).is_none());
        let mut c = Cipher::new(GCM, &short).unwrap();
        let mut buf = [0u8; 20];
        assert_eq!(
            c.seal_in_place(&[0; 16], b"", &mut buf),
            Err(AeadError::NonceLength)
        );
        assert_eq!(
            c.seal_in_place(&[0; 12], b"", &mut buf[..15]),
            Err(AeadError::TooShort)
        );
        assert_eq!(format!("{long:?}"), "Key(32 bytes)");
    }

    #[test]
    fn a_reused_cipher_agrees_with_fresh_ones_every_time() {
        for aead in [SIV, GCM] {
            let key = Key::new(&vec![9; aead.key_len()]).unwrap();
            let mut cipher = Cipher::new(aead, &key).unwrap();
            // Used many times: its state must not carry over between uses.
            for i in 0..20u8 {
                let pt = vec![i; usize::from(i) * 3];
                let nonce = vec![i; aead.nonce_len()];
                let mut buf = vec![0u8; pt.len() + TAG_LEN];
                let at = aead.plaintext_offset();
                buf[at..at + pt.len()].copy_from_slice(&pt);
                cipher.seal_in_place(&nonce, b"ad", &mut buf).unwrap();
                assert_eq!(buf, seal(aead, &key, &nonce, b"ad", &pt).unwrap(), "{i}");
                let mut bad = buf.clone();
                bad[0] ^= 1;
                assert!(cipher.open_in_place(&nonce, b"ad", &mut bad).is_err());
                // A failed open leaves it as good as new.
                assert_eq!(
                    cipher.open_in_place(&nonce, b"ad", &mut buf).unwrap(),
                    &pt[..]
                );
            }
        }
    }

    #[test]
    fn matches_rfc5297_deterministic_vector() {
        // RFC 5297 appendix A.1 (AES-SIV-CMAC-256, one header, no nonce):
        // checks that our header order and tag placement are the standard ones.
        let mut key = [0u8; 32];
        key.copy_from_slice(&hex(
            "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
        ));
        let ad = hex("101112131415161718191a1b1c1d1e1f2021222324252627");
        let pt = hex("112233445566778899aabbccddee");
        let mut siv = <aes_siv::siv::Aes128Siv as aes_siv::KeyInit>::new(&key.into());
        let out = siv.encrypt([&ad[..]], &pt).unwrap();
        assert_eq!(
            out,
            hex("85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c")
        );
        // Our in-place form with the nonce as the second header gives
        // RFC 5297 A.2's layout: tag || ciphertext.
        let sealed = seal(SIV, &Key::from(key), b"n", &ad, &pt).unwrap();
        assert_eq!(open(SIV, &Key::from(key), b"n", &ad, &sealed).unwrap(), pt);
    }

    #[test]
    fn matches_rfc8452_aes_128_gcm_siv_vectors() {
        // RFC 8452 appendix C.1: AEAD_AES_128_GCM_SIV, key 01 00.., nonce
        // 03 00..; (plaintext, AAD, result = ciphertext || tag).
        let key = Key::new(&hex("01000000000000000000000000000000")).unwrap();
        let nonce = hex("030000000000000000000000");
        for (pt, ad, result) in [
            ("", "", "dc20e2d83f25705bb49e439eca56de25"),
            (
                "0100000000000000",
                "",
                "b5d839330ac7b786578782fff6013b815b287c22493a364c",
            ),
            (
                "0200000000000000",
                "01",
                "1e6daba35669f4273b0a1a2560969cdf790d99759abd1508",
            ),
        ] {
            let out = seal(GCM, &key, &nonce, &hex(ad), &hex(pt)).unwrap();
            assert_eq!(out, hex(result), "pt {pt} ad {ad}");
            assert_eq!(open(GCM, &key, &nonce, &hex(ad), &out).unwrap(), hex(pt));
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
