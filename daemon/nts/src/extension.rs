//! NTPv4 extension fields (RFC 7822) and the NTS ones (RFC 8915 section 5).
//!
//! A field is `type (u16) || length (u16, whole field) || body`, padded to
//! a multiple of 4. Fields outside the encrypted part must be at least 16
//! bytes (RFC 7822); those inside it are exempt (RFC 8915 5.6).

/// NTS extension field types.
pub mod field_type {
    pub const UNIQUE_IDENTIFIER: u16 = 0x0104;
    pub const COOKIE: u16 = 0x0204;
    pub const COOKIE_PLACEHOLDER: u16 = 0x0304;
    pub const AUTHENTICATOR: u16 = 0x0404;
}

/// Field header length.
pub const FIELD_HEADER_LEN: usize = 4;
/// RFC 7822 minimum length of a field outside the encrypted part.
pub const MIN_FIELD_LEN: usize = 16;

/// One field, borrowed from its packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtensionField<'a> {
    pub field_type: u16,
    /// Body including any padding.
    pub body: &'a [u8],
    /// Offset of the field's first byte in the parsed buffer.
    pub offset: usize,
}

/// Why bytes are not a sequence of extension fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FieldError {
    #[error("extension field at offset {0} runs past the end of the packet")]
    Truncated(usize),
    #[error("extension field at offset {0} has a length that is not a multiple of 4")]
    Unaligned(usize),
    #[error("extension field at offset {0} is shorter than allowed")]
    TooShort(usize),
}

/// Splits `buf` into fields, each at least `min_len` bytes long. The
/// whole buffer must be consumed.
pub fn parse_fields(buf: &[u8], min_len: usize) -> Result<Vec<ExtensionField<'_>>, FieldError> {
    fields(buf, min_len).collect()
}

/// The fields of `buf` one by one, without allocating: an error ends the
/// sequence (see [`parse_fields`]).
pub fn fields(buf: &[u8], min_len: usize) -> Fields<'_> {
    Fields {
        buf,
        offset: 0,
        min_len: min_len.max(FIELD_HEADER_LEN),
    }
}

/// Iterator over extension fields (see [`fields`]).
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    buf: &'a [u8],
    offset: usize,
    min_len: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<ExtensionField<'a>, FieldError>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.offset;
        let rest = self.buf.get(offset..).filter(|r| !r.is_empty())?;
        // After an error, nothing more.
        self.offset = self.buf.len();
        if rest.len() < FIELD_HEADER_LEN {
            return Some(Err(FieldError::Truncated(offset)));
        }
        let field_type = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        if len % 4 != 0 {
            return Some(Err(FieldError::Unaligned(offset)));
        }
        if len < self.min_len {
            return Some(Err(FieldError::TooShort(offset)));
        }
        if len > rest.len() {
            return Some(Err(FieldError::Truncated(offset)));
        }
        self.offset = offset + len;
        Some(Ok(ExtensionField {
            field_type,
            body: &rest[FIELD_HEADER_LEN..len],
            offset,
        }))
    }
}

/// Length of a field carrying `body_len` bytes, after padding.
pub fn field_len(body_len: usize) -> usize {
    FIELD_HEADER_LEN + padded(body_len)
}

/// `n` rounded up to a multiple of 4.
pub fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Appends a field, zero-padding the body to a multiple of 4.
pub fn write_field(out: &mut Vec<u8>, field_type: u16, body: &[u8]) {
    let len = field_len(body.len());
    out.extend_from_slice(&field_type.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + padded(body.len()) - body.len(), 0);
}

/// The body of an NTS Authenticator and Encrypted Extension Fields field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authenticator<'a> {
    pub nonce: &'a [u8],
    /// AES-SIV tag followed by the encrypted extension fields.
    pub ciphertext: &'a [u8],
}

impl<'a> Authenticator<'a> {
    /// Parses the body: nonce length, ciphertext length, nonce and
    /// ciphertext each padded to 4, then any padding.
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        if body.len() < 4 {
            return None;
        }
        let nonce_len = u16::from_be_bytes([body[0], body[1]]) as usize;
        let ct_len = u16::from_be_bytes([body[2], body[3]]) as usize;
        let ct_start = 4 + padded(nonce_len);
        if ct_start + padded(ct_len) > body.len() {
            return None;
        }
        Some(Self {
            nonce: &body[4..4 + nonce_len],
            ciphertext: &body[ct_start..ct_start + ct_len],
        })
    }

    /// Appends a whole Authenticator field.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut body =
            Vec::with_capacity(4 + padded(self.nonce.len()) + padded(self.ciphertext.len()));
        body.extend_from_slice(&(self.nonce.len() as u16).to_be_bytes());
        body.extend_from_slice(&(self.ciphertext.len() as u16).to_be_bytes());
        body.extend_from_slice(self.nonce);
        body.resize(4 + padded(self.nonce.len()), 0);
        body.extend_from_slice(self.ciphertext);
        write_field(out, field_type::AUTHENTICATOR, &body);
    }

    /// Length of the field for these sizes.
    pub fn field_len(nonce_len: usize, ciphertext_len: usize) -> usize {
        FIELD_HEADER_LEN + 4 + padded(nonce_len) + padded(ciphertext_len)
    }

    /// Writes the header of an Authenticator field at the start of `out`
    /// (field header, nonce and ciphertext lengths) and zeroes the padding
    /// after nonce and ciphertext. Returns the offsets of the nonce and
    /// the ciphertext in `out`, which the caller fills; `None` if `out`
    /// is too short.
    pub fn write_header(
        out: &mut [u8],
        nonce_len: usize,
        ciphertext_len: usize,
    ) -> Option<(usize, usize)> {
        let len = Self::field_len(nonce_len, ciphertext_len);
        let out = out.get_mut(..len)?;
        out[..2].copy_from_slice(&field_type::AUTHENTICATOR.to_be_bytes());
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        out[4..6].copy_from_slice(&(nonce_len as u16).to_be_bytes());
        out[6..8].copy_from_slice(&(ciphertext_len as u16).to_be_bytes());
        let nonce_at = FIELD_HEADER_LEN + 4;
        let ct_at = nonce_at + padded(nonce_len);
        out[nonce_at + nonce_len..ct_at].fill(0);
        out[ct_at + ciphertext_len..].fill(0);
        Some((nonce_at, ct_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn padding_and_offsets() {
        let mut buf = Vec::new();
        write_field(&mut buf, field_type::UNIQUE_IDENTIFIER, &[1; 32]);
        write_field(&mut buf, 0x1234, &[2; 13]);
        assert_eq!(buf.len(), 36 + 20);
        let f = parse_fields(&buf, MIN_FIELD_LEN).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].field_type, f[0].offset, f[0].body.len()),
            (0x0104, 0, 32)
        );
        assert_eq!(
            (f[1].field_type, f[1].offset, f[1].body.len()),
            (0x1234, 36, 16)
        );
        assert_eq!(&f[1].body[13..], &[0, 0, 0]);
    }

    #[test]
    fn malformed_fields() {
        assert_eq!(
            parse_fields(&[1, 4, 0, 16, 0, 0], 16),
            Err(FieldError::Truncated(0))
        );
        assert_eq!(parse_fields(&[1, 4, 0], 16), Err(FieldError::Truncated(0)));
        assert_eq!(
            parse_fields(&[1, 4, 0, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 16),
            Err(FieldError::Unaligned(0))
        );
        assert_eq!(
            parse_fields(&[1, 4, 0, 8, 0, 0, 0, 0], 16),
            Err(FieldError::TooShort(0))
        );
        assert!(parse_fields(&[1, 4, 0, 8, 0, 0, 0, 0], 4).is_ok());
        assert_eq!(parse_fields(&[1, 4, 0, 0], 0), Err(FieldError::TooShort(0)));
    }

    #[test]
    fn authenticator_parse_bounds() {
        let mut out = Vec::new();
        Authenticator {
            nonce: &[9; 16],
            ciphertext: &[7; 33],
        }
        .write(&mut out);
        let f = parse_fields(&out, MIN_FIELD_LEN).unwrap();
        assert_eq!(out.len(), Authenticator::field_len(16, 33));
        let a = Authenticator::parse(f[0].body).unwrap();
        assert_eq!((a.nonce, a.ciphertext), (&[9u8; 16][..], &[7u8; 33][..]));
        // Lengths that point past the body.
        assert!(Authenticator::parse(&[0, 16, 0, 16, 0, 0]).is_none());
        assert!(Authenticator::parse(&[0, 2]).is_none());
    }

    proptest! {
        #[test]
        fn round_trip(fields in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 12..80)), 0..8)) {
            let mut buf = Vec::new();
            for (t, b) in &fields {
                write_field(&mut buf, *t, b);
            }
            let parsed = parse_fields(&buf, MIN_FIELD_LEN).unwrap();
            prop_assert_eq!(parsed.len(), fields.len());
            for ((t, b), p) in fields.iter().zip(&parsed) {
                prop_assert_eq!(*t, p.field_type);
                prop_assert_eq!(&p.body[..b.len()], &b[..]);
                prop_assert!(p.body[b.len()..].iter().all(|&x| x == 0));
            }
        }

        #[test]
        fn authenticator_round_trip(nonce in proptest::collection::vec(any::<u8>(), 0..40), ct in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut out = Vec::new();
            Authenticator { nonce: &nonce, ciphertext: &ct }.write(&mut out);
            let f = parse_fields(&out, 4).unwrap();
            prop_assert_eq!(f.len(), 1);
            let a = Authenticator::parse(f[0].body).unwrap();
            prop_assert_eq!(a.nonce, &nonce[..]);
            prop_assert_eq!(a.ciphertext, &ct[..]);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_fields(&data, MIN_FIELD_LEN);
            let _ = Authenticator::parse(&data);
        }
    }
}
