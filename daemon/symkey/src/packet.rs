//! Where a packet's MAC is, by chrony's rules, and writing one.
//!
//! After the 48-byte header an NTPv4 packet may carry extension fields
//! (RFC 7822) and then a MAC: key ID (4 bytes) and digest. What is a MAC
//! is decided as chrony 4.3 decides it (ntp_core.c, `parse_packet`): in
//! NTPv3 and older everything after the header is the MAC; in NTPv4 four
//! zero bytes alone are a crypto-NAK, 20 to 24 remaining bytes are a MAC,
//! and anything else must be well-formed extension fields, optionally
//! followed by such a MAC.

use crate::keyfile::Key;
use crate::mac::MIN_MAC;

/// Length of the NTP header.
pub const HEADER_LEN: usize = 48;
/// Key ID plus the shortest MAC.
pub const MIN_MAC_FIELD: usize = 4 + MIN_MAC;
/// Key ID plus the longest MAC an NTPv4 packet carries.
pub const MAX_V4_MAC_FIELD: usize = 4 + crate::mac::MAX_V4_MAC;
/// Shortest extension field (RFC 7822).
const MIN_EXTENSION_FIELD: usize = 16;

/// A MAC found in a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacField<'a> {
    pub key_id: u32,
    /// The digest, after the key ID.
    pub mac: &'a [u8],
    /// Where the MAC field starts: the MAC covers the bytes before it.
    pub start: usize,
    /// The packet's NTP version (truncation rules depend on it).
    pub version: u8,
}

impl MacField<'_> {
    /// Whether the MAC is `key`'s MAC of `packet`'s bytes before it.
    pub fn verify(&self, packet: &[u8], key: &Key) -> bool {
        key.id == self.key_id
            && packet.len() >= self.start
            && key.verify(&packet[..self.start], self.mac, self.version)
    }
}

/// What follows the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth<'a> {
    /// Nothing: a plain packet.
    None,
    /// A MAC (possibly after extension fields).
    Mac(MacField<'a>),
    /// A crypto-NAK: key ID 0 and no digest.
    CryptoNak,
    /// Extension fields only (NTS, or others).
    ExtensionFields,
    /// Neither: shorter than a header, not a multiple of 4, or bytes that
    /// are no field and no MAC.
    Malformed,
}

/// Classifies what follows `packet`'s header.
pub fn parse(packet: &[u8]) -> Auth<'_> {
    if packet.len() < HEADER_LEN || packet.len() % 4 != 0 {
        return Auth::Malformed;
    }
    let version = (packet[0] >> 3) & 0b111;
    let rest = &packet[HEADER_LEN..];
    if rest.is_empty() {
        return Auth::None;
    }
    let key_id = |at: usize| -> u32 {
        u32::from_be_bytes([packet[at], packet[at + 1], packet[at + 2], packet[at + 3]])
    };
    if version <= 3 {
        return Auth::Mac(MacField {
            key_id: key_id(HEADER_LEN),
            mac: &rest[4..],
            start: HEADER_LEN,
            version,
        });
    }
    if rest.len() == 4 && key_id(HEADER_LEN) == 0 {
        return Auth::CryptoNak;
    }
    let mut at = HEADER_LEN;
    loop {
        let remainder = packet.len() - at;
        if remainder == 0 {
            return Auth::ExtensionFields;
        }
        if (MIN_MAC_FIELD..=MAX_V4_MAC_FIELD).contains(&remainder) {
            return Auth::Mac(MacField {
                key_id: key_id(at),
                mac: &packet[at + 4..],
                start: at,
                version,
            });
        }
        if !is_field(&packet[at..]) {
            return Auth::Malformed;
        }
        at += usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]]));
    }
}

/// Whether `data` starts with a well-formed extension field.
fn is_field(data: &[u8]) -> bool {
    if data.len() < 4 {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    len >= MIN_EXTENSION_FIELD && len % 4 == 0 && len <= data.len()
}

/// Appends `key`'s ID and MAC of `packet` (its version decides
/// truncation).
pub fn append_mac(packet: &mut Vec<u8>, key: &Key) {
    let version = packet.first().map_or(4, |b| (b >> 3) & 0b111);
    let mac = key.generate(packet, version);
    packet.extend_from_slice(&key.id.to_be_bytes());
    packet.extend_from_slice(&mac);
}

/// A crypto-NAK reply: `header` and a key ID of zero (RFC 5905 7.4).
pub fn crypto_nak(header: &[u8; HEADER_LEN]) -> Vec<u8> {
    let mut out = header.to_vec();
    out.extend_from_slice(&[0; 4]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::KeyType;
    use proptest::prelude::*;

    fn header(version: u8) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[0] = (version << 3) | 3;
        h
    }

    fn key(kind: KeyType, n: usize) -> Key {
        Key::new(5, kind, vec![0x42; n]).unwrap()
    }

    #[test]
    fn every_key_type_round_trips_in_v4_and_v3() {
        for kind in KeyType::ALL {
            let k = key(kind, kind.cipher_key_len().unwrap_or(20));
            for version in [3, 4] {
                let mut p = header(version);
                append_mac(&mut p, &k);
                let want = 4 + if version == 4 {
                    kind.output_len().min(20)
                } else {
                    kind.output_len()
                };
                assert_eq!(p.len(), HEADER_LEN + want, "{kind:?} v{version}");
                let Auth::Mac(m) = parse(&p) else {
                    panic!("{kind:?} v{version}: {:?}", parse(&p))
                };
                assert_eq!((m.key_id, m.start), (5, HEADER_LEN));
                assert!(m.verify(&p, &k), "{kind:?} v{version}");
                let mut tampered = p.clone();
                tampered[40] ^= 1;
                assert!(!m.verify(&tampered, &k));
                let other =
                    Key::new(6, kind, vec![0x42; kind.cipher_key_len().unwrap_or(20)]).unwrap();
                assert!(!m.verify(&p, &other), "another key ID");
            }
        }
    }

    #[test]
    fn classification_follows_chrony() {
        assert_eq!(parse(&header(4)), Auth::None);
        assert_eq!(parse(&header(4)[..47]), Auth::Malformed);
        let mut nak = header(4);
        nak.extend_from_slice(&[0; 4]);
        assert_eq!(parse(&nak), Auth::CryptoNak);
        assert_eq!(crypto_nak(&[0; 48]).len(), 52);
        // An NTS-like field alone.
        let mut ef = header(4);
        ef.extend_from_slice(&[0x01, 0x04, 0x00, 0x24]);
        ef.extend_from_slice(&[0; 32]);
        assert_eq!(parse(&ef), Auth::ExtensionFields);
        // A field, then a SHA-1 MAC.
        let mut efmac = ef.clone();
        efmac.extend_from_slice(&[0, 0, 0, 9]);
        efmac.extend_from_slice(&[7; 20]);
        let Auth::Mac(m) = parse(&efmac) else {
            panic!()
        };
        assert_eq!((m.key_id, m.start, m.mac.len()), (9, ef.len(), 20));
        // A whole SHA-512 MAC is NTPv3's: in NTPv4 it is no field.
        let mut long = header(4);
        long.extend_from_slice(&[0, 0, 0, 9]);
        long.extend_from_slice(&[7; 64]);
        assert_eq!(parse(&long), Auth::Malformed);
        // Garbage that is neither.
        let mut junk = header(4);
        junk.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3, 4]);
        assert_eq!(parse(&junk), Auth::Malformed);
        // In NTPv3 whatever follows is the MAC.
        let mut v3 = header(3);
        v3.extend_from_slice(&[0, 0, 0, 1, 1, 2, 3, 4]);
        assert!(matches!(parse(&v3), Auth::Mac(MacField { key_id: 1, .. })));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&data);
        }

        #[test]
        fn a_flipped_bit_never_verifies(bit in 0usize..(68 * 8)) {
            let k = key(KeyType::Sha1, 20);
            let mut p = header(4);
            append_mac(&mut p, &k);
            prop_assert_eq!(p.len(), 72);
            let bit = bit % (p.len() * 8);
            p[bit / 8] ^= 1 << (bit % 8);
            let ok = match parse(&p) {
                Auth::Mac(m) => m.verify(&p, &k),
                _ => false,
            };
            prop_assert!(!ok);
        }
    }
}
