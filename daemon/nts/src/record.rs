//! NTS-KE records (RFC 8915 section 4): the wire format and a streaming
//! scanner that tells the I/O layer when a whole message has arrived.
//!
//! A record is `C|type (u16) || body length (u16) || body`; the top bit of
//! the first word is the critical bit. A message is a sequence of records
//! closed by End of Message.

/// Critical bit of the record type word.
pub const CRITICAL_BIT: u16 = 0x8000;
/// Record header: type word and body length.
pub const RECORD_HEADER_LEN: usize = 4;

/// Record types this server knows (RFC 8915 section 7.6 registry).
pub mod kind {
    pub const END_OF_MESSAGE: u16 = 0;
    pub const NEXT_PROTOCOL: u16 = 1;
    pub const ERROR: u16 = 2;
    pub const WARNING: u16 = 3;
    pub const AEAD_ALGORITHM: u16 = 4;
    pub const NEW_COOKIE: u16 = 5;
    pub const SERVER_NEGOTIATION: u16 = 6;
    pub const PORT_NEGOTIATION: u16 = 7;
}

/// Error codes of the Error record (RFC 8915 section 4.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    UnrecognizedCriticalRecord,
    BadRequest,
    InternalServerError,
    /// A code this server does not define (only seen when parsing).
    Other(u16),
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        match self {
            Self::UnrecognizedCriticalRecord => 0,
            Self::BadRequest => 1,
            Self::InternalServerError => 2,
            Self::Other(c) => c,
        }
    }

    pub fn from_code(code: u16) -> Self {
        match code {
            0 => Self::UnrecognizedCriticalRecord,
            1 => Self::BadRequest,
            2 => Self::InternalServerError,
            c => Self::Other(c),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnrecognizedCriticalRecord => "unrecognized critical record",
            Self::BadRequest => "bad request",
            Self::InternalServerError => "internal server error",
            Self::Other(_) => "unknown error",
        }
    }
}

/// One record, borrowed from the message it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub critical: bool,
    /// Record type without the critical bit.
    pub kind: u16,
    pub body: &'a [u8],
}

/// Why bytes are not a well-formed record sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record header or body runs past the end of the data")]
    Truncated,
    #[error("data follows the End of Message record")]
    TrailingData,
    #[error("End of Message record has a body")]
    EndOfMessageWithBody,
    #[error("message is longer than the limit of {limit} bytes")]
    TooLong { limit: usize },
}

impl<'a> Record<'a> {
    /// Parses one record at the start of `buf`; returns it and the rest.
    pub fn parse(buf: &'a [u8]) -> Result<(Self, &'a [u8]), RecordError> {
        if buf.len() < RECORD_HEADER_LEN {
            return Err(RecordError::Truncated);
        }
        let word = u16::from_be_bytes([buf[0], buf[1]]);
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        let rest = &buf[RECORD_HEADER_LEN..];
        if rest.len() < len {
            return Err(RecordError::Truncated);
        }
        let record = Record {
            critical: word & CRITICAL_BIT != 0,
            kind: word & !CRITICAL_BIT,
            body: &rest[..len],
        };
        Ok((record, &rest[len..]))
    }

    /// Appends the wire form of this record to `out`. Bodies longer than
    /// 65535 bytes cannot be encoded; callers only build short ones.
    pub fn write(&self, out: &mut Vec<u8>) {
        write_record(out, self.critical, self.kind, self.body);
    }

    /// The body as a list of big-endian u16 values (Next Protocol, AEAD,
    /// Error, Warning, Port records); `None` if its length is odd.
    pub fn u16_values(&self) -> Option<impl Iterator<Item = u16> + 'a> {
        if self.body.len() % 2 != 0 {
            return None;
        }
        Some(
            self.body
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]])),
        )
    }
}

/// Appends one record to `out`.
pub fn write_record(out: &mut Vec<u8>, critical: bool, kind: u16, body: &[u8]) {
    debug_assert!(body.len() <= u16::MAX as usize && kind & CRITICAL_BIT == 0);
    let word = kind | if critical { CRITICAL_BIT } else { 0 };
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// Appends a record whose body is a list of u16 values.
pub fn write_u16_record(out: &mut Vec<u8>, critical: bool, kind: u16, values: &[u16]) {
    let body: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
    write_record(out, critical, kind, &body);
}

/// How much of a message has arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// More bytes are needed.
    Incomplete,
    /// A whole message of this many bytes (ending with End of Message).
    Complete(usize),
}

/// Looks at what has been received so far. Errors on a message longer than
/// `limit` (including a partial one that can only grow past it), on an End
/// of Message record with a body, and on bytes after End of Message.
pub fn scan_message(buf: &[u8], limit: usize) -> Result<Scan, RecordError> {
    let mut offset = 0;
    loop {
        let rest = &buf[offset..];
        if rest.len() < RECORD_HEADER_LEN {
            return if buf.len() > limit {
                Err(RecordError::TooLong { limit })
            } else {
                Ok(Scan::Incomplete)
            };
        }
        let word = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let end = offset + RECORD_HEADER_LEN + len;
        if end > limit {
            return Err(RecordError::TooLong { limit });
        }
        if end > buf.len() {
            return Ok(Scan::Incomplete);
        }
        if word & !CRITICAL_BIT == kind::END_OF_MESSAGE {
            if len != 0 {
                return Err(RecordError::EndOfMessageWithBody);
            }
            if end != buf.len() {
                return Err(RecordError::TrailingData);
            }
            return Ok(Scan::Complete(end));
        }
        offset = end;
    }
}

/// Iterates over the records of a complete message (as validated by
/// [`scan_message`]), End of Message included.
pub fn records(mut buf: &[u8]) -> impl Iterator<Item = Result<Record<'_>, RecordError>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        match Record::parse(buf) {
            Ok((r, rest)) => {
                buf = rest;
                Some(Ok(r))
            }
            Err(e) => {
                buf = &[];
                Some(Err(e))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn critical_bit_and_body_parse() {
        let mut buf = Vec::new();
        write_u16_record(&mut buf, true, kind::NEXT_PROTOCOL, &[0]);
        write_record(&mut buf, false, kind::NEW_COOKIE, b"abc");
        write_record(&mut buf, true, kind::END_OF_MESSAGE, &[]);
        assert_eq!(&buf[..6], &[0x80, 0x01, 0x00, 0x02, 0x00, 0x00]);
        let rs: Vec<_> = records(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(rs.len(), 3);
        assert!(rs[0].critical && rs[0].kind == kind::NEXT_PROTOCOL);
        assert!(!rs[1].critical && rs[1].body == b"abc");
        assert_eq!(scan_message(&buf, 1024), Ok(Scan::Complete(buf.len())));
    }

    #[test]
    fn scan_reports_incomplete_too_long_and_trailing() {
        let mut buf = Vec::new();
        write_u16_record(&mut buf, true, kind::NEXT_PROTOCOL, &[0]);
        assert_eq!(scan_message(&buf, 1024), Ok(Scan::Incomplete));
        assert_eq!(scan_message(&buf[..3], 1024), Ok(Scan::Incomplete));
        // A header announcing a body past the limit fails before the body arrives.
        let big = [0x00, 0x05, 0xff, 0xff];
        assert_eq!(
            scan_message(&big, 1024),
            Err(RecordError::TooLong { limit: 1024 })
        );
        write_record(&mut buf, true, kind::END_OF_MESSAGE, &[]);
        let mut trailing = buf.clone();
        trailing.push(0);
        assert_eq!(
            scan_message(&trailing, 1024),
            Err(RecordError::TrailingData)
        );
        let mut eom_body = Vec::new();
        write_record(&mut eom_body, true, kind::END_OF_MESSAGE, &[1, 2]);
        assert_eq!(
            scan_message(&eom_body, 1024),
            Err(RecordError::EndOfMessageWithBody)
        );
        assert_eq!(Record::parse(&[0, 1, 0, 4, 0]), Err(RecordError::Truncated));
    }

    #[test]
    fn odd_u16_body_is_refused() {
        let (r, _) = Record::parse(&[0x80, 0x04, 0x00, 0x03, 0, 15, 0]).unwrap();
        assert!(r.u16_values().is_none());
        let (r, _) = Record::parse(&[0x80, 0x04, 0x00, 0x04, 0, 15, 0, 30]).unwrap();
        assert_eq!(r.u16_values().unwrap().collect::<Vec<_>>(), vec![15, 30]);
    }

    proptest! {
        #[test]
        fn round_trip(recs in proptest::collection::vec((any::<bool>(), 1u16..0x7fff, proptest::collection::vec(any::<u8>(), 0..64)), 0..12)) {
            let mut buf = Vec::new();
            for (c, k, b) in &recs {
                write_record(&mut buf, *c, *k, b);
            }
            write_record(&mut buf, true, kind::END_OF_MESSAGE, &[]);
            prop_assert_eq!(scan_message(&buf, 1 << 20), Ok(Scan::Complete(buf.len())));
            let parsed: Vec<_> = records(&buf).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(parsed.len(), recs.len() + 1);
            for ((c, k, b), r) in recs.iter().zip(&parsed) {
                prop_assert_eq!(*c, r.critical);
                prop_assert_eq!(*k, r.kind);
                prop_assert_eq!(&b[..], r.body);
            }
        }

        #[test]
        fn scanning_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256), limit in 0usize..300) {
            let _ = scan_message(&data, limit);
            for r in records(&data) {
                let _ = r;
            }
        }

        #[test]
        fn every_prefix_of_a_message_is_incomplete(cut in 0usize..20) {
            let mut buf = Vec::new();
            write_u16_record(&mut buf, true, kind::NEXT_PROTOCOL, &[0]);
            write_u16_record(&mut buf, true, kind::AEAD_ALGORITHM, &[15]);
            write_record(&mut buf, true, kind::END_OF_MESSAGE, &[]);
            let cut = cut.min(buf.len() - 1);
            prop_assert_eq!(scan_message(&buf[..cut], 1024), Ok(Scan::Incomplete));
        }
    }
}
