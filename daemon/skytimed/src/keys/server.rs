//! The NTP server and symmetric keys: a request with a MAC (as chrony's
//! parsing rules find it) is answered with a reply MAC'd by the same key
//! when the MAC verifies, with a crypto-NAK when the key is unknown
//! (RFC 5905 7.4), and not at all when the MAC is wrong (chrony's choice:
//! no oracle for forgers). The reply is never longer than the request:
//! the same key and version give a MAC of the same length.

use skytime_symkey::packet::{self, Auth};
use skytime_symkey::{Key, KeyFile};

/// What to do with a request.
#[derive(Debug)]
pub enum Verdict<'k> {
    /// No MAC: not for this module.
    NotSymmetric,
    /// Authentic under this key: MAC the reply with it.
    Authentic(&'k Key),
    /// A key this server does not have: answer with a crypto-NAK.
    UnknownKey(u32),
    /// The MAC does not verify: no reply.
    BadMac(u32),
}

/// Looks at `request` (the whole datagram).
pub fn verdict<'k>(request: &[u8], keys: &'k KeyFile) -> Verdict<'k> {
    match packet::parse(request) {
        Auth::Mac(m) => match keys.get(m.key_id) {
            Some(key) if m.verify(request, key) => Verdict::Authentic(key),
            Some(_) => Verdict::BadMac(m.key_id),
            None => Verdict::UnknownKey(m.key_id),
        },
        _ => Verdict::NotSymmetric,
    }
}

/// The reply to an authentic request: `header` and its MAC under `key`.
pub fn reply(header: &[u8; packet::HEADER_LEN], key: &Key) -> Vec<u8> {
    let mut out = header.to_vec();
    packet::append_mac(&mut out, key);
    out
}

/// The reply to a request with an unknown key.
pub fn crypto_nak(header: &[u8; packet::HEADER_LEN]) -> Vec<u8> {
    packet::crypto_nak(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_judged_by_their_mac() {
        let keys = KeyFile::parse("1 SHA1 HEX:00112233445566778899aabbccddeeff00112233\n").unwrap();
        let mut req = vec![0x23u8; 48];
        assert!(matches!(verdict(&req, &keys), Verdict::NotSymmetric));
        packet::append_mac(&mut req, keys.get(1).unwrap());
        let Verdict::Authentic(k) = verdict(&req, &keys) else {
            panic!()
        };
        let mut header = [0u8; 48];
        header[0] = 0x24;
        let r = reply(&header, k);
        assert!(r.len() <= req.len());
        assert!(matches!(packet::parse(&r), Auth::Mac(m) if m.verify(&r, k)));
        let mut bad = req.clone();
        bad[10] ^= 1;
        assert!(matches!(verdict(&bad, &keys), Verdict::BadMac(1)));
        let other =
            KeyFile::parse("9 SHA1 HEX:00112233445566778899aabbccddeeff00112233\n").unwrap();
        let mut unknown = vec![0x23u8; 48];
        packet::append_mac(&mut unknown, other.get(9).unwrap());
        assert!(matches!(verdict(&unknown, &keys), Verdict::UnknownKey(9)));
        assert_eq!(crypto_nak(&header).len(), 52);
    }
}
