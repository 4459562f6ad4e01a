//! The 48-byte NTP header (RFC 5905 section 7.3) and its fields.
//!
//! Parsing is total: any 48 bytes form a header, and `parse` only fails on
//! length. Whether a header is an acceptable request is the server's
//! decision (see `server`), so that every refusal is counted in one place.

use crate::time::{NtpDuration, NtpTimestamp};
use std::fmt;

/// Length of the fixed NTP header.
pub const HEADER_LEN: usize = 48;

/// Leap indicator: warns of a leap second at the end of the current UTC day,
/// or says the server is not synchronized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeapIndicator {
    NoWarning = 0,
    InsertSecond = 1,
    DeleteSecond = 2,
    Unsynchronized = 3,
}

impl LeapIndicator {
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => Self::NoWarning,
            1 => Self::InsertSecond,
            2 => Self::DeleteSecond,
            _ => Self::Unsynchronized,
        }
    }
}

/// NTP association mode (RFC 5905 figure 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Reserved = 0,
    SymmetricActive = 1,
    SymmetricPassive = 2,
    Client = 3,
    Server = 4,
    Broadcast = 5,
    Control = 6,
    Private = 7,
}

impl Mode {
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0b111 {
            0 => Self::Reserved,
            1 => Self::SymmetricActive,
            2 => Self::SymmetricPassive,
            3 => Self::Client,
            4 => Self::Server,
            5 => Self::Broadcast,
            6 => Self::Control,
            _ => Self::Private,
        }
    }
}

/// The reference identifier: for stratum 1 a four-character ASCII code of
/// the reference clock ("GPS", "PPS"), for stratum 0 a kiss code ("RATE",
/// "NTSN"), otherwise the IPv4 address or an IPv6 hash of the upstream server.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ReferenceId(pub [u8; 4]);

impl ReferenceId {
    /// The ID of an unsynchronized server. chrony uses 0 as well.
    pub const NONE: Self = Self([0; 4]);
    /// Local-clock fallback: 127.127.1.1, the ID chrony's `local` directive
    /// uses, so monitoring that knows chrony reads it the same way.
    pub const LOCAL: Self = Self([127, 127, 1, 1]);
    pub const GPS: Self = Self(*b"GPS\0");
    pub const PPS: Self = Self(*b"PPS\0");
    /// Kiss code sent when an NTS cookie cannot be used (RFC 8915 section 5.7).
    pub const KISS_NTSN: Self = Self(*b"NTSN");
    /// Kiss code for rate limiting (RFC 5905 section 7.4).
    pub const KISS_RATE: Self = Self(*b"RATE");
    /// Kiss code for access denied.
    pub const KISS_DENY: Self = Self(*b"DENY");

    /// An ASCII reference ID, NUL-padded to four bytes (at most four bytes
    /// are used).
    pub fn ascii(code: &str) -> Self {
        let mut id = [0u8; 4];
        for (dst, src) in id.iter_mut().zip(code.bytes()) {
            *dst = src;
        }
        Self(id)
    }

    pub fn to_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }
}

impl fmt::Debug for ReferenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReferenceId({self})")
    }
}

impl fmt::Display for ReferenceId {
    /// Printable ASCII codes print as text, anything else as hex (like
    /// chronyc's "Reference ID" column).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trimmed: Vec<u8> = self.0.iter().copied().take_while(|&b| b != 0).collect();
        if !trimmed.is_empty() && trimmed.iter().all(|b| b.is_ascii_graphic()) {
            f.write_str(&String::from_utf8_lossy(&trimmed))
        } else {
            write!(f, "{:08X}", self.to_u32())
        }
    }
}

/// A decoded NTP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtpHeader {
    pub leap: LeapIndicator,
    /// Version number, 0..=7 as on the wire.
    pub version: u8,
    pub mode: Mode,
    pub stratum: u8,
    /// log2 of the poll interval in seconds.
    pub poll: i8,
    /// log2 of the clock precision in seconds.
    pub precision: i8,
    pub root_delay: NtpDuration,
    pub root_dispersion: NtpDuration,
    pub reference_id: ReferenceId,
    pub reference_timestamp: NtpTimestamp,
    pub origin_timestamp: NtpTimestamp,
    pub receive_timestamp: NtpTimestamp,
    pub transmit_timestamp: NtpTimestamp,
}

/// The input was shorter than an NTP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("NTP packet of {0} bytes is shorter than the 48-byte header")]
pub struct TooShort(pub usize);

impl NtpHeader {
    /// Parses the first 48 bytes of `buf` and returns the header and the
    /// bytes after it (extension fields or a legacy MAC).
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8]), TooShort> {
        let Some((head, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
            return Err(TooShort(buf.len()));
        };
        let u32_at =
            |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let u64_at = |i: usize| ((u32_at(i) as u64) << 32) | u32_at(i + 4) as u64;
        let header = Self {
            leap: LeapIndicator::from_bits(head[0] >> 6),
            version: (head[0] >> 3) & 0b111,
            mode: Mode::from_bits(head[0]),
            stratum: head[1],
            poll: head[2] as i8,
            precision: head[3] as i8,
            root_delay: NtpDuration::from_short(u32_at(4)),
            root_dispersion: NtpDuration::from_short(u32_at(8)),
            reference_id: ReferenceId([head[12], head[13], head[14], head[15]]),
            reference_timestamp: NtpTimestamp::from_bits(u64_at(16)),
            origin_timestamp: NtpTimestamp::from_bits(u64_at(24)),
            receive_timestamp: NtpTimestamp::from_bits(u64_at(32)),
            transmit_timestamp: NtpTimestamp::from_bits(u64_at(40)),
        };
        Ok((header, rest))
    }

    /// Writes the header in wire format.
    pub fn serialize(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = ((self.leap as u8) << 6) | ((self.version & 0b111) << 3) | self.mode as u8;
        out[1] = self.stratum;
        out[2] = self.poll as u8;
        out[3] = self.precision as u8;
        out[4..8].copy_from_slice(&self.root_delay.to_short().to_be_bytes());
        out[8..12].copy_from_slice(&self.root_dispersion.to_short().to_be_bytes());
        out[12..16].copy_from_slice(&self.reference_id.0);
        out[16..24].copy_from_slice(&self.reference_timestamp.to_bits().to_be_bytes());
        out[24..32].copy_from_slice(&self.origin_timestamp.to_bits().to_be_bytes());
        out[32..40].copy_from_slice(&self.receive_timestamp.to_bits().to_be_bytes());
        out[40..48].copy_from_slice(&self.transmit_timestamp.to_bits().to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NtpHeader {
        NtpHeader {
            leap: LeapIndicator::InsertSecond,
            version: 4,
            mode: Mode::Server,
            stratum: 1,
            poll: 6,
            precision: -23,
            root_delay: NtpDuration::from_short(0x0001_8000),
            root_dispersion: NtpDuration::from_short(0x0000_0042),
            reference_id: ReferenceId::GPS,
            reference_timestamp: NtpTimestamp::from_bits(0x0102_0304_0506_0708),
            origin_timestamp: NtpTimestamp::from_bits(0x1112_1314_1516_1718),
            receive_timestamp: NtpTimestamp::from_bits(0x2122_2324_2526_2728),
            transmit_timestamp: NtpTimestamp::from_bits(0x3132_3334_3536_3738),
        }
    }

    #[test]
    fn round_trip_preserves_every_field() {
        let h = sample();
        let bytes = h.serialize();
        let (back, rest) = NtpHeader::parse(&bytes).unwrap();
        assert_eq!(back, h);
        assert!(rest.is_empty());
    }

    #[test]
    fn wire_layout_matches_rfc5905() {
        let b = sample().serialize();
        assert_eq!(b[0], 0b01_100_100);
        assert_eq!(&b[1..4], &[1, 6, (-23i8) as u8]);
        assert_eq!(&b[4..8], &[0, 1, 0x80, 0]);
        assert_eq!(&b[8..12], &[0, 0, 0, 0x42]);
        assert_eq!(&b[12..16], b"GPS\0");
        assert_eq!(&b[16..24], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            &b[40..48],
            &[0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38]
        );
    }

    #[test]
    fn short_input_is_refused_with_its_length() {
        for len in 0..HEADER_LEN {
            assert_eq!(NtpHeader::parse(&vec![0u8; len]), Err(TooShort(len)));
        }
    }

    #[test]
    fn trailing_bytes_are_returned_untouched() {
        let mut bytes = sample().serialize().to_vec();
        bytes.extend_from_slice(&[9, 8, 7, 6]);
        let (_, rest) = NtpHeader::parse(&bytes).unwrap();
        assert_eq!(rest, &[9, 8, 7, 6]);
    }

    #[test]
    fn reference_id_displays_like_chronyc() {
        assert_eq!(ReferenceId::GPS.to_string(), "GPS");
        assert_eq!(ReferenceId::ascii("PPS").to_string(), "PPS");
        assert_eq!(ReferenceId([127, 0, 0, 1]).to_string(), "7F000001");
        assert_eq!(ReferenceId::NONE.to_string(), "00000000");
    }
}
