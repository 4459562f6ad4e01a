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
use std::sync::Mutex;

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
    seal_with(
        &mut Aes128Siv::new(&key.0.into()),
        nonce,
        associated_data,
        plaintext,
    )
}

/// Decrypts and verifies tag || ciphertext; `None` if it does not verify.
pub fn open(key: &Key, nonce: &[u8], associated_data: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
    if ciphertext.len() < TAG_LEN {
        return None;
    }
    open_with(
        &mut Aes128Siv::new(&key.0.into()),
        nonce,
        associated_data,
        ciphertext,
    )
}

fn seal_with(
    siv: &mut Aes128Siv,
    nonce: &[u8],
    associated_data: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    // Only fails for more than 126 headers.
    siv.encrypt([associated_data, nonce], plaintext)
        .unwrap_or_default()
}

/// `None` also for input shorter than a tag (aes-siv checks).
fn open_with(
    siv: &mut Aes128Siv,
    nonce: &[u8],
    associated_data: &[u8],
    ciphertext: &[u8],
) -> Option<Vec<u8>> {
    siv.decrypt([associated_data, nonce], ciphertext).ok()
}

/// A key whose cipher is built once, for the master keys, which seal and
/// open a cookie in every NTS request: building an AES-SIV cipher (CMAC
/// subkeys, two key schedules, a large struct moved around) costs about as
/// much as the sealing itself. Sealing mutates the cipher's MAC state,
/// hence the mutex; each NTP socket is read by one task, so it is
/// uncontended but for NTS-KE sealing new cookies at the same moment.
pub struct PreparedKey {
    key: Key,
    siv: Mutex<Aes128Siv>,
}

impl PreparedKey {
    pub fn new(key: Key) -> Self {
        let siv = Mutex::new(Aes128Siv::new(&key.0.into()));
        Self { key, siv }
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    /// [`seal`] with this key.
    pub fn seal(&self, nonce: &[u8], associated_data: &[u8], plaintext: &[u8]) -> Vec<u8> {
        // A panic while sealing leaves the MAC state reset by its next use
        // (every S2V starts with a finalize_reset), so a poisoned lock is
        // still usable.
        let mut siv = self.siv.lock().unwrap_or_else(|e| e.into_inner());
        seal_with(&mut siv, nonce, associated_data, plaintext)
    }

    /// [`open`] with this key.
    pub fn open(&self, nonce: &[u8], associated_data: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        let mut siv = self.siv.lock().unwrap_or_else(|e| e.into_inner());
        open_with(&mut siv, nonce, associated_data, ciphertext)
    }
}

impl Clone for PreparedKey {
    fn clone(&self) -> Self {
        Self::new(self.key.clone())
    }
}

impl PartialEq for PreparedKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for PreparedKey {}

impl std::fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedKey(..)")
    }
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
    fn a_prepared_key_agrees_with_the_one_shot_functions_every_time() {
        let key = Key([9; KEY_LEN]);
        let prepared = PreparedKey::new(key.clone());
        // Reused many times: its state must not carry over between uses.
        for i in 0..20u8 {
            let pt = vec![i; usize::from(i) * 3];
            let nonce = [i; 16];
            let sealed = prepared.seal(&nonce, b"ad", &pt);
            assert_eq!(sealed, seal(&key, &nonce, b"ad", &pt), "{i}");
            assert_eq!(
                prepared.open(&nonce, b"ad", &sealed).as_deref(),
                Some(&pt[..])
            );
            assert_eq!(open(&key, &nonce, b"ad", &sealed).as_deref(), Some(&pt[..]));
            let mut bad = sealed.clone();
            bad[0] ^= 1;
            assert!(prepared.open(&nonce, b"ad", &bad).is_none());
            // A failed open leaves it as good as new.
            assert_eq!(
                prepared.open(&nonce, b"ad", &sealed).as_deref(),
                Some(&pt[..])
            );
        }
        assert!(prepared.open(b"n", b"ad", &[0; TAG_LEN - 1]).is_none());
        assert_eq!(prepared.clone(), prepared);
        assert_ne!(PreparedKey::new(Key([1; KEY_LEN])), prepared);
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
