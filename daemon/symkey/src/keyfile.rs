//! chrony's key file: one key per line, `ID [TYPE] KEY`.
//!
//! - `ID`: 1 to 4294967295 (0 is the crypto-NAK's key ID).
//! - `TYPE`: MD5 (the default), SHA1, SHA256, SHA384, SHA512, SHA3-224,
//!   SHA3-256, SHA3-384, SHA3-512, AES128 or AES256, spelt as chrony does.
//! - `KEY`: `HEX:` and hex digits, or `ASCII:` and the text, or the text
//!   alone. AES128 and AES256 keys must be exactly 128 and 256 bits.
//! - Lines starting with `!`, `;`, `#` or `%` are comments.
//!
//! Where chrony warns and skips a bad line, this parser refuses the whole
//! file (a key a peer relies on must not vanish silently), naming the line
//! and what is wrong, never the key itself.

use crate::mac::{self, KeyType};
use std::collections::BTreeMap;
use std::fmt;

/// One key. Its secret is never shown by `Debug`, and wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub id: u32,
    pub kind: KeyType,
    secret: Vec<u8>,
}

impl Key {
    /// A key from its parts (tests, tools); `None` if a cipher key has the
    /// wrong length or the secret is empty.
    pub fn new(id: u32, kind: KeyType, secret: Vec<u8>) -> Option<Self> {
        let ok = !secret.is_empty() && kind.cipher_key_len().is_none_or(|n| n == secret.len());
        ok.then_some(Self { id, kind, secret })
    }

    /// Length of the secret, bits (chronyc authdata's KLen).
    pub fn bits(&self) -> u32 {
        8 * self.secret.len() as u32
    }

    /// The MAC to send after `data` in a packet of NTP `version`.
    pub fn generate(&self, data: &[u8], version: u8) -> Vec<u8> {
        mac::generate(self.kind, &self.secret, data, version)
    }

    /// Whether `mac` is the MAC of `data` in a packet of `version`.
    pub fn verify(&self, data: &[u8], mac: &[u8], version: u8) -> bool {
        mac::verify(self.kind, &self.secret, data, mac, version)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Key({} {} {} bits)",
            self.id,
            self.kind.name(),
            self.bits()
        )
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // Best effort: the secret does not linger in freed memory.
        for b in &mut self.secret {
            // SAFETY: `b` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// A key file that could not be used: the line and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct KeyFileError {
    pub line: usize,
    pub reason: String,
}

/// The keys of one file, by ID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyFile {
    keys: BTreeMap<u32, Key>,
}

impl KeyFile {
    /// Parses the whole file.
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let mut keys: BTreeMap<u32, (usize, Key)> = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |reason: String| KeyFileError { line, reason };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with(['!', ';', '#', '%']) {
                continue;
            }
            let words: Vec<&str> = trimmed.split_whitespace().collect();
            let (id, kind, value) = match words[..] {
                [id, value] => (id, "MD5", value),
                [id, kind, value] => (id, kind, value),
                _ => {
                    return Err(err(format!(
                        "expected `ID [TYPE] KEY` (2 or 3 words), found {} words",
                        words.len()
                    )))
                }
            };
            let id: u32 = id.parse().ok().filter(|&n| n != 0).ok_or_else(|| {
                err(format!(
                    "key ID {id:?} is not a number from 1 to 4294967295"
                ))
            })?;
            let kind = KeyType::from_name(kind).ok_or_else(|| {
                err(format!(
                    "key {id}: unknown type {kind:?}; use one of {}",
                    KeyType::ALL.map(KeyType::name).join(", ")
                ))
            })?;
            let secret = decode(value).map_err(|why| err(format!("key {id}: {why}")))?;
            if let Some(n) = kind.cipher_key_len() {
                if secret.len() != n {
                    return Err(err(format!(
                        "key {id}: a {} key must be {} bits, this one has {}",
                        kind.name(),
                        8 * n,
                        8 * secret.len()
                    )));
                }
            }
            if let Some((first, _)) = keys.get(&id) {
                return Err(err(format!(
                    "key ID {id} is defined twice (first on line {first})"
                )));
            }
            keys.insert(id, (line, Key { id, kind, secret }));
        }
        Ok(Self {
            keys: keys.into_iter().map(|(id, (_, k))| (id, k)).collect(),
        })
    }

    pub fn get(&self, id: u32) -> Option<&Key> {
        self.keys.get(&id)
    }

    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// `HEX:...`, `ASCII:...` or plain text, to bytes.
fn decode(value: &str) -> Result<Vec<u8>, String> {
    let bytes = if let Some(hex) = value.strip_prefix("HEX:") {
        if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a HEX: key needs an even number of hex digits".into());
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
            .collect()
    } else {
        value
            .strip_prefix("ASCII:")
            .unwrap_or(value)
            .as_bytes()
            .to_vec()
    };
    if bytes.is_empty() {
        return Err("the key is empty".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chrony_examples_parse() {
        let f = KeyFile::parse(
            "# comment\n\n1 MD5 HEX:0123456789ABCDEF\n2 ASCII:secret\n  3   SHA256   plainsecret  \n\
             ; another comment\n4 AES128 HEX:000102030405060708090a0b0c0d0e0f\n\
             5 AES256 HEX:000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f\n\
             6 SHA3-512 ASCII:x\n",
        )
        .unwrap();
        assert_eq!(f.len(), 6);
        assert_eq!(f.ids().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
        let k = f.get(1).unwrap();
        assert_eq!((k.kind, k.bits()), (KeyType::Md5, 64));
        assert_eq!(f.get(2).unwrap().kind, KeyType::Md5, "MD5 by default");
        assert_eq!(f.get(2).unwrap().bits(), 48);
        assert_eq!(f.get(3).unwrap().kind, KeyType::Sha256);
        assert_eq!(f.get(5).unwrap().bits(), 256);
        assert!(f.get(7).is_none());
    }

    #[test]
    fn errors_name_the_line_and_hide_the_key() {
        let cases = [
            ("1 MD5 a b\n", 1, "2 or 3 words"),
            ("\n0 MD5 abc\n", 2, "1 to 4294967295"),
            ("x MD5 abc\n", 1, "not a number"),
            ("1 md5 abc\n", 1, "unknown type"),
            ("1 SHA1 HEX:abc\n", 1, "even number"),
            ("1 SHA1 HEX:zz\n", 1, "hex digits"),
            (
                "1 AES128 HEX:0011\n",
                1,
                "must be 128 bits, this one has 16",
            ),
            ("1 SHA1 ASCII:\n", 1, "empty"),
            (
                "1 MD5 topsecret\n#\n1 SHA1 topsecret\n",
                3,
                "defined twice (first on line 1)",
            ),
        ];
        for (text, line, want) in cases {
            let e = KeyFile::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(want), "{text:?}: {e}");
            assert!(!e.to_string().contains("topsecret"), "{e}");
        }
        let f = KeyFile::parse("9 SHA1 HEX:0011223344\n").unwrap();
        let shown = format!("{f:?}");
        assert!(!shown.contains("0011") && shown.contains("SHA1"), "{shown}");
    }

    #[test]
    fn keys_made_directly_are_checked() {
        assert!(Key::new(1, KeyType::Aes128, vec![0; 15]).is_none());
        assert!(Key::new(1, KeyType::Md5, vec![]).is_none());
        let k = Key::new(1, KeyType::Aes128, vec![0; 16]).unwrap();
        let mac = k.generate(b"data", 4);
        assert!(k.verify(b"data", &mac, 4));
    }
}
