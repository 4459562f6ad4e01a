//! The MAC of each key type, as chrony computes and checks it.
//!
//! Hash types (MD5, SHA-1, SHA-2, SHA-3) are the classic NTP MAC: the
//! digest of key ‖ packet. In NTPv4 packets a MAC longer than 20 bytes is
//! truncated to 20, so that it cannot be mistaken for an extension field
//! (RFC 7822; chrony does the same, and sends NTPv3 with a whole MAC when
//! truncation would shorten it). AES128 and AES256 are AES-CMAC over the
//! packet (RFC 8573), 16 bytes.

use cmac::Cmac;
use digest::Digest;
use subtle::ConstantTimeEq;

/// Longest MAC in an NTPv4 packet (the key ID not counted).
pub const MAX_V4_MAC: usize = 20;
/// Longest MAC at all (SHA-512, SHA3-512).
pub const MAX_MAC: usize = 64;
/// Shortest MAC (MD5, CMAC).
pub const MIN_MAC: usize = 16;

/// A key type of chrony's key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
    Sha3_224,
    Sha3_256,
    Sha3_384,
    Sha3_512,
    Aes128,
    Aes256,
}

impl KeyType {
    pub const ALL: [KeyType; 11] = [
        Self::Md5,
        Self::Sha1,
        Self::Sha256,
        Self::Sha384,
        Self::Sha512,
        Self::Sha3_224,
        Self::Sha3_256,
        Self::Sha3_384,
        Self::Sha3_512,
        Self::Aes128,
        Self::Aes256,
    ];

    /// The name in the key file (chrony's spelling, case-sensitive).
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
            Self::Sha3_224 => "SHA3-224",
            Self::Sha3_256 => "SHA3-256",
            Self::Sha3_384 => "SHA3-384",
            Self::Sha3_512 => "SHA3-512",
            Self::Aes128 => "AES128",
            Self::Aes256 => "AES256",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Bytes of the full MAC.
    pub fn output_len(self) -> usize {
        match self {
            Self::Md5 | Self::Aes128 | Self::Aes256 => 16,
            Self::Sha1 => 20,
            Self::Sha3_224 => 28,
            Self::Sha256 | Self::Sha3_256 => 32,
            Self::Sha384 | Self::Sha3_384 => 48,
            Self::Sha512 | Self::Sha3_512 => 64,
        }
    }

    /// The exact key length a cipher type needs; `None` for hashes.
    pub fn cipher_key_len(self) -> Option<usize> {
        match self {
            Self::Aes128 => Some(16),
            Self::Aes256 => Some(32),
            _ => None,
        }
    }
}

/// The full MAC of `data` under `secret`.
pub fn compute(kind: KeyType, secret: &[u8], data: &[u8]) -> Vec<u8> {
    fn hash<D: Digest>(secret: &[u8], data: &[u8]) -> Vec<u8> {
        let mut d = D::new();
        d.update(secret);
        d.update(data);
        d.finalize().to_vec()
    }
    fn cmac<C: cmac::Mac + cmac::digest::KeyInit>(secret: &[u8], data: &[u8]) -> Vec<u8> {
        // The key file parser only admits keys of the cipher's length.
        match <C as cmac::digest::KeyInit>::new_from_slice(secret) {
            Ok(mut m) => {
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match kind {
        KeyType::Md5 => hash::<md5::Md5>(secret, data),
        KeyType::Sha1 => hash::<sha1::Sha1>(secret, data),
        KeyType::Sha256 => hash::<sha2::Sha256>(secret, data),
        KeyType::Sha384 => hash::<sha2::Sha384>(secret, data),
        KeyType::Sha512 => hash::<sha2::Sha512>(secret, data),
        KeyType::Sha3_224 => hash::<sha3::Sha3_224>(secret, data),
        KeyType::Sha3_256 => hash::<sha3::Sha3_256>(secret, data),
        KeyType::Sha3_384 => hash::<sha3::Sha3_384>(secret, data),
        KeyType::Sha3_512 => hash::<sha3::Sha3_512>(secret, data),
        KeyType::Aes128 => cmac::<Cmac<aes::Aes128>>(secret, data),
        KeyType::Aes256 => cmac::<Cmac<aes::Aes256>>(secret, data),
    }
}

/// The MAC to send in a packet of NTP `version`: truncated to 20 bytes
/// in NTPv4.
pub fn generate(kind: KeyType, secret: &[u8], data: &[u8], version: u8) -> Vec<u8> {
    let mut mac = compute(kind, secret, data);
    mac.truncate(if version == 4 { MAX_V4_MAC } else { MAX_MAC });
    mac
}

/// Whether `mac` (without the key ID) is the MAC of `data` as a packet
/// of `version` may carry it: exactly the full MAC, or in NTPv4 the MAC
/// truncated to 20 bytes. Constant time in the MAC's bytes.
pub fn verify(kind: KeyType, secret: &[u8], data: &[u8], mac: &[u8], version: u8) -> bool {
    let full = compute(kind, secret, data);
    let trunc = if version == 4 && mac.len() <= MAX_V4_MAC {
        MAX_V4_MAC
    } else {
        MAX_MAC
    };
    let want = full.len().min(trunc);
    want == mac.len() && mac.len() >= MIN_MAC && bool::from(full[..want].ct_eq(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn hashes_are_over_key_then_packet() {
        // MD5("abc") split as key "a" and data "bc".
        assert_eq!(
            compute(KeyType::Md5, b"a", b"bc"),
            hex("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(
            compute(KeyType::Sha1, b"ab", b"c"),
            hex("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(
            compute(KeyType::Sha256, b"", b"abc"),
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            compute(KeyType::Sha3_256, b"abc", b""),
            hex("3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532")
        );
        for t in KeyType::ALL
            .into_iter()
            .filter(|t| t.cipher_key_len().is_none())
        {
            assert_eq!(compute(t, b"k", b"d").len(), t.output_len(), "{t:?}");
        }
    }

    #[test]
    fn aes_cmac_matches_rfc4493() {
        // RFC 4493 example 2: AES-128 key, 16-byte message.
        let key = hex("2b7e151628aed2a6abf7158809cf4f3c");
        let msg = hex("6bc1bee22e409f96e93d7e117393172a");
        assert_eq!(
            compute(KeyType::Aes128, &key, &msg),
            hex("070a16b46b4d4144f79bdd9dd04a287c")
        );
        assert_eq!(compute(KeyType::Aes256, &[7; 32], b"x").len(), 16);
        assert!(compute(KeyType::Aes128, b"short", b"x").is_empty());
    }

    #[test]
    fn ntpv4_truncates_to_20_and_ntpv3_does_not() {
        let (k, d) = (b"secret-key", b"packet");
        let v4 = generate(KeyType::Sha256, k, d, 4);
        let v3 = generate(KeyType::Sha256, k, d, 3);
        assert_eq!((v4.len(), v3.len()), (20, 32));
        assert!(verify(KeyType::Sha256, k, d, &v4, 4));
        assert!(verify(KeyType::Sha256, k, d, &v3, 3));
        assert!(verify(KeyType::Sha256, k, d, &v3, 4), "a whole MAC in v4");
        assert!(
            !verify(KeyType::Sha256, k, d, &v4, 3),
            "truncated only in v4"
        );
        assert!(!verify(KeyType::Sha256, k, d, &v3[..24], 3));
        let mut bad = v4.clone();
        bad[0] ^= 1;
        assert!(!verify(KeyType::Sha256, k, d, &bad, 4));
        assert!(!verify(KeyType::Sha256, b"other", d, &v4, 4));
        assert!(!verify(KeyType::Md5, k, d, &[], 4));
    }
}
