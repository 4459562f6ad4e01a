//! The AEAD algorithms NTS can negotiate, and sealing/opening with them.
//!
//! Only AEAD_AES_SIV_CMAC_256 (IANA id 15) is offered: it is mandatory to
//! implement (RFC 8915 section 5.1), and it is all Debian 12's chrony 4.3
//! speaks. AES-128-GCM-SIV (30) is deliberately left out: chrony 4.4+
//! derives its keys with id 15 in the exporter context unless both sides
//! exchange chrony's private record 1024, while RFC-following clients use
//! 30; a server cannot tell which convention a client that omits record
//! 1024 follows, so offering 30 would break one kind of client or the
//! other. Every client offers 15.

use aes_siv::siv::Aes128Siv;
use aes_siv::KeyInit;

/// Length of an AES-SIV-CMAC-256 key (two AES-128 keys).
pub const KEY_LEN: usize = 32;
/// Length of the synthetic IV that AES-SIV prepends to the ciphertext.
pub const TAG_LEN: usize = 16;

/// A 256-bit key. Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// A negotiable AEAD algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aead {
    /// AEAD_AES_SIV_CMAC_256, RFC 5297.
    AesSivCmac256,
}

impl Aead {
    /// Every algorithm this server offers, most preferred first.
    pub const SUPPORTED: [Aead; 1] = [Aead::AesSivCmac256];

    pub fn id(self) -> u16 {
        match self {
            Self::AesSivCmac256 => 15,
        }
    }

    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            15 => Some(Self::AesSivCmac256),
            _ => None,
        }
    }

    /// Bytes of key material to export from TLS for each direction.
    pub fn key_len(self) -> usize {
        match self {
            Self::AesSivCmac256 => KEY_LEN,
        }
    }
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

/// Encrypts `plaintext` (RFC 5116 AEAD interface: AD then nonce as the
/// SIV header vector). Returns tag || ciphertext.
pub fn seal(key: &Key, nonce: &[u8], associated_data: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut siv = Aes128Siv::new(&key.0.into());
    // Only fails for more than 126 headers.
    siv.encrypt([associated_data, nonce], plaintext)
        .unwrap_or_default()
}

/// Decrypts and verifies tag || ciphertext; `None` if it does not verify.
pub fn open(key: &Key, nonce: &[u8], associated_data: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
    if ciphertext.len() < TAG_LEN {
        return None;
    }
    let mut siv = Aes128Siv::new(&key.0.into());
    siv.decrypt([associated_data, nonce], ciphertext).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = Key([7; KEY_LEN]);
        let ct = seal(&key, b"nonce-nonce-nonc", b"ad", b"secret");
        assert_eq!(ct.len(), TAG_LEN + 6);
        assert_eq!(
            open(&key, b"nonce-nonce-nonc", b"ad", &ct).as_deref(),
            Some(&b"secret"[..])
        );
        assert!(open(&key, b"nonce-nonce-nonX", b"ad", &ct).is_none());
        assert!(open(&key, b"nonce-nonce-nonc", b"aX", &ct).is_none());
        assert!(open(&Key([8; KEY_LEN]), b"nonce-nonce-nonc", b"ad", &ct).is_none());
        assert!(open(&key, b"nonce-nonce-nonc", b"ad", &ct[..10]).is_none());
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
        let mut siv = Aes128Siv::new(&key.into());
        let out = siv.encrypt([&ad[..]], &pt).unwrap();
        assert_eq!(
            out,
            hex("85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c")
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
