//! AES-SIV-CMAC-256 (RFC 5297) over the `aes` crate's block cipher, with
//! everything that depends on the key alone done once per key: both AES
//! key schedules, the CMAC subkeys and the CMAC of the zero block that
//! starts every S2V. Sealing or opening then costs the AES blocks of the
//! data and nothing more: no key expansion, no cipher state copied, no
//! allocation (the `aes-siv` crate expands the CTR key and copies its
//! cipher state for every operation, which costs about as much as the
//! encryption of an NTS reply).
//!
//! The construction follows RFC 5297 step by step (S2V with CMAC as in
//! RFC 4493, then CTR with bits 31 and 63 of the IV cleared); the tests
//! check it against the RFC's vectors and against the `aes-siv` crate.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128Enc;
use subtle::ConstantTimeEq;

/// AES block length.
const BLOCK: usize = 16;
/// Blocks of keystream made at once (AES-NI pipelines them).
const PARALLEL: usize = 8;

/// An AES-SIV-CMAC-256 key ready to use.
#[derive(Clone)]
pub struct Siv {
    /// The first half of the key: S2V (CMAC).
    mac: Aes128Enc,
    /// CMAC subkeys (RFC 4493 section 2.3).
    k1: u128,
    k2: u128,
    /// CMAC(K, 0^128): the start of every S2V.
    d0: u128,
    /// The second half: CTR.
    ctr: Aes128Enc,
}

impl std::fmt::Debug for Siv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Siv(..)")
    }
}

/// The tag did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected;

fn dbl(x: u128) -> u128 {
    (x << 1) ^ if x >> 127 == 1 { 0x87 } else { 0 }
}

fn encrypt(cipher: &Aes128Enc, x: u128) -> u128 {
    let mut block = GenericArray::from(x.to_be_bytes());
    cipher.encrypt_block(&mut block);
    u128::from_be_bytes(block.into())
}

impl Siv {
    pub fn new(key: &[u8; 32]) -> Self {
        let (mac_key, ctr_key) = key.split_at(BLOCK);
        let mut siv = Self {
            mac: Aes128Enc::new(GenericArray::from_slice(mac_key)),
            k1: 0,
            k2: 0,
            d0: 0,
            ctr: Aes128Enc::new(GenericArray::from_slice(ctr_key)),
        };
        siv.derive();
        siv
    }

    /// Takes `key` in place (no cipher state moved around: chrony re-keys
    /// one SIV instance per request the same way).
    pub fn rekey(&mut self, key: &[u8; 32]) {
        let (mac_key, ctr_key) = key.split_at(BLOCK);
        self.mac = Aes128Enc::new(GenericArray::from_slice(mac_key));
        self.ctr = Aes128Enc::new(GenericArray::from_slice(ctr_key));
        self.derive();
    }

    /// The CMAC subkeys and the CMAC of the zero block.
    fn derive(&mut self) {
        let l = encrypt(&self.mac, 0);
        self.k1 = dbl(l);
        self.k2 = dbl(self.k1);
        self.d0 = self.cmac(&[0; BLOCK], 0);
    }

    /// CMAC (RFC 4493) of `message` with `xorend` XORed into its last 16
    /// bytes (S2V's "xorend"; 0 for a plain CMAC; only for messages of at
    /// least one block when not 0).
    fn cmac(&self, message: &[u8], xorend: u128) -> u128 {
        let n = message.len();
        if n == 0 {
            // The empty message: one padded block.
            return encrypt(&self.mac, (0x80u128 << 120) ^ self.k2);
        }
        let blocks = n.div_ceil(BLOCK);
        let rem = n % BLOCK;
        // Where the xorend falls: all in the last block, or split between
        // the last two (big-endian: the first bytes of D end the block
        // before, the rest start the last one).
        let (xor_before, xor_last) = if rem == 0 {
            (0, xorend)
        } else {
            (xorend >> (8 * rem), xorend << (8 * (BLOCK - rem)))
        };
        let mut x = 0u128;
        let mut chunks = message.chunks_exact(BLOCK);
        for i in 0..blocks - 1 {
            let Some(chunk) = chunks.next() else { break };
            let mut m = u128::from_be_bytes(chunk.try_into().unwrap_or_default());
            if i + 2 == blocks {
                m ^= xor_before;
            }
            x = encrypt(&self.mac, x ^ m);
        }
        let last = if rem == 0 {
            let tail = &message[n - BLOCK..];
            u128::from_be_bytes(tail.try_into().unwrap_or_default()) ^ xor_last ^ self.k1
        } else {
            let mut b = [0u8; BLOCK];
            b[..rem].copy_from_slice(&message[n - rem..]);
            b[rem] = 0x80;
            u128::from_be_bytes(b) ^ xor_last ^ self.k2
        };
        encrypt(&self.mac, x ^ last)
    }

    /// S2V (RFC 5297 section 2.4) over `headers` and `message`.
    fn s2v(&self, headers: &[&[u8]], message: &[u8]) -> u128 {
        let mut d = self.d0;
        for h in headers {
            d = dbl(d) ^ self.cmac(h, 0);
        }
        if message.len() >= BLOCK {
            self.cmac(message, d)
        } else {
            let mut padded = [0u8; BLOCK];
            padded[..message.len()].copy_from_slice(message);
            padded[message.len()] = 0x80;
            self.cmac(&(dbl(d) ^ u128::from_be_bytes(padded)).to_be_bytes(), 0)
        }
    }

    /// XORs `data` with the CTR keystream for the synthetic IV `v`.
    fn apply_ctr(&self, v: u128, data: &mut [u8]) {
        // RFC 5297 section 2.5: clear the top bit of the last two words.
        let mut counter = v & !(1u128 << 63) & !(1u128 << 31);
        let mut blocks = [GenericArray::default(); PARALLEL];
        for chunk in data.chunks_mut(BLOCK * PARALLEL) {
            let n = chunk.len().div_ceil(BLOCK);
            for b in &mut blocks[..n] {
                *b = GenericArray::from(counter.to_be_bytes());
                counter = counter.wrapping_add(1);
            }
            self.ctr.encrypt_blocks(&mut blocks[..n]);
            for (d, k) in chunk.chunks_mut(BLOCK).zip(&blocks[..n]) {
                if let Ok(d) = <&mut [u8; BLOCK]>::try_from(&mut *d) {
                    let x = u128::from_ne_bytes(*d) ^ u128::from_ne_bytes((*k).into());
                    *d = x.to_ne_bytes();
                } else {
                    for (d, k) in d.iter_mut().zip(k.iter()) {
                        *d ^= k;
                    }
                }
            }
        }
    }

    /// Encrypts `plaintext` in place; returns the tag (the synthetic IV),
    /// which goes before the ciphertext.
    pub fn seal_in_place(&self, headers: &[&[u8]], plaintext: &mut [u8]) -> [u8; BLOCK] {
        let v = self.s2v(headers, plaintext);
        self.apply_ctr(v, plaintext);
        v.to_be_bytes()
    }

    /// Decrypts `ciphertext` in place and checks `tag`; on failure the
    /// buffer is encrypted again, so no unverified plain text is left.
    pub fn open_in_place(
        &self,
        headers: &[&[u8]],
        ciphertext: &mut [u8],
        tag: &[u8; BLOCK],
    ) -> Result<(), Rejected> {
        let v = u128::from_be_bytes(*tag);
        self.apply_ctr(v, ciphertext);
        let computed = self.s2v(headers, ciphertext);
        // Constant time: the whole tag is compared whatever its bytes.
        if bool::from(computed.to_be_bytes().ct_eq(tag)) {
            Ok(())
        } else {
            self.apply_ctr(v, ciphertext);
            Err(Rejected)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn key(s: &str) -> [u8; 32] {
        hex(s).try_into().unwrap()
    }

    #[test]
    fn rfc5297_a1_deterministic() {
        let siv = Siv::new(&key(
            "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
        ));
        let ad = hex("101112131415161718191a1b1c1d1e1f2021222324252627");
        let mut data = hex("112233445566778899aabbccddee");
        let tag = siv.seal_in_place(&[&ad], &mut data);
        assert_eq!(tag.to_vec(), hex("85632d07c6e8f37f950acd320a2ecc93"));
        assert_eq!(data, hex("40c02b9690c4dc04daef7f6afe5c"));
        siv.open_in_place(&[&ad], &mut data, &tag).unwrap();
        assert_eq!(data, hex("112233445566778899aabbccddee"));
    }

    #[test]
    fn rfc5297_a2_nonce_based() {
        let siv = Siv::new(&key(
            "7f7e7d7c7b7a79787776757473727170 404142434445464748494a4b4c4d4e4f",
        ));
        let ad1 = hex(
            "00112233445566778899aabbccddeeff deaddadadeaddadaffeeddccbbaa9988 7766554433221100",
        );
        let ad2 = hex("102030405060708090a0");
        let nonce = hex("09f911029d74e35bd84156c5635688c0");
        let mut data = hex("7468697320697320736f6d6520706c61 696e7465787420746f20656e63727970 74207573696e67205349562d414553");
        let tag = siv.seal_in_place(&[&ad1, &ad2, &nonce], &mut data);
        assert_eq!(tag.to_vec(), hex("7bdb6e3b432667eb06f4d14bff2fbd0f"));
        assert_eq!(
            data,
            hex("cb900f2fddbe404326601965c889bf17 dba77ceb094fa663b7a3f748ba8af829 ea64ad544a272e9c485b62a3fd5c0d")
        );
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        let before = data.clone();
        assert_eq!(
            siv.open_in_place(&[&ad1, &ad2, &nonce], &mut data, &bad_tag),
            Err(Rejected)
        );
        assert_eq!(data, before, "a failed open leaves the ciphertext");
    }

    proptest! {
        /// The same results as the aes-siv crate, for every length around
        /// the block boundaries.
        #[test]
        fn agrees_with_the_aes_siv_crate(
            k in any::<[u8; 32]>(),
            ad in proptest::collection::vec(any::<u8>(), 0..70),
            nonce in proptest::collection::vec(any::<u8>(), 0..40),
            pt in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut reference = <aes_siv::siv::Aes128Siv as aes_siv::KeyInit>::new(&k.into());
            let want = reference.encrypt([&ad[..], &nonce[..]], &pt).unwrap();
            let siv = Siv::new(&k);
            let mut data = pt.clone();
            let tag = siv.seal_in_place(&[&ad, &nonce], &mut data);
            prop_assert_eq!(&want[..16], &tag[..]);
            prop_assert_eq!(&want[16..], &data[..]);
            siv.open_in_place(&[&ad, &nonce], &mut data, &tag).unwrap();
            prop_assert_eq!(data, pt);
        }
    }
}
