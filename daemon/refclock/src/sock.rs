//! chrony's refclock SOCK protocol: one `struct sock_sample` per datagram.
//!
//! ```c
//! struct sock_sample {
//!   struct timeval tv;  /* system time of the measurement */
//!   double offset;      /* true time - system time, seconds */
//!   int pulse;          /* non-zero: a PPS edge, the second is unknown */
//!   int leap;           /* 0 normal, 1 insert, 2 delete */
//!   int _pad;
//!   int magic;          /* 0x534f434b */
//! };
//! ```
//! Native byte order. With 64-bit `time_t` (every 64-bit Linux, and 32-bit
//! builds with `_TIME_BITS=64`) it is 40 bytes; with 32-bit `time_t` it is
//! 32 bytes. Both are accepted, as chrony does on 32-bit hosts.
//!
//! chrony hands a pulse's `offset` to its pulse code as the position of
//! the edge in the local second, so the phase offset it uses is `-offset`
//! taken modulo one second. We read it the same way, so a tool written
//! against chrony behaves the same here.

use skytime_proto::{NtpDuration, NtpTimestamp};

pub const SOCK_MAGIC: u32 = 0x534f_434b;
/// Size with a 64-bit `time_t`.
pub const SOCK_SAMPLE_LEN: usize = 40;
/// Size with a 32-bit `time_t`.
pub const SOCK_SAMPLE_LEN_TIME32: usize = 32;

/// The leap field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockLeap {
    Normal,
    Insert,
    Delete,
}

/// A decoded sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SockSample {
    /// The system time of the measurement.
    pub local: NtpTimestamp,
    /// Whole sample: reference - local. Pulse: the phase, reference - local
    /// modulo one second, in [-0.5, 0.5).
    pub offset: NtpDuration,
    pub pulse: bool,
    pub leap: SockLeap,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SockError {
    #[error("SOCK datagram of {0} bytes: a sock_sample is 40 bytes (32 with a 32-bit time_t)")]
    Length(usize),
    #[error("SOCK magic is {0:#010x}, expected 0x534f434b")]
    Magic(u32),
    #[error("SOCK sample has an invalid timestamp or offset")]
    Invalid,
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes one datagram.
pub fn decode(b: &[u8]) -> Result<SockSample, SockError> {
    let (sec, usec, rest) = match b.len() {
        SOCK_SAMPLE_LEN => (i64_at(b, 0), i64_at(b, 8), &b[16..]),
        SOCK_SAMPLE_LEN_TIME32 => (i32_at(b, 0) as i64, i32_at(b, 4) as i64, &b[8..]),
        n => return Err(SockError::Length(n)),
    };
    let offset = f64::from_ne_bytes(rest[0..8].try_into().expect("8 bytes"));
    let (pulse, leap, magic) = (i32_at(rest, 8), i32_at(rest, 12), i32_at(rest, 20) as u32);
    if magic != SOCK_MAGIC {
        return Err(SockError::Magic(magic));
    }
    // Normalise the timeval as chrony does, then refuse what makes no sense.
    let total_usec = (sec as i128) * 1_000_000 + usec as i128;
    let (sec, usec) = (
        total_usec.div_euclid(1_000_000) as i64,
        total_usec.rem_euclid(1_000_000) as u32,
    );
    // Past 2106 (u32 seconds) a timestamp would wrap silently into another
    // NTP era: no clock sample is that far out, so it is garbage.
    if !offset.is_finite() || offset.abs() > 1e9 || sec <= 0 || sec > i64::from(u32::MAX) {
        return Err(SockError::Invalid);
    }
    let leap = match leap {
        1 => SockLeap::Insert,
        2 => SockLeap::Delete,
        _ => SockLeap::Normal,
    };
    let local = NtpTimestamp::from_unix(sec, usec * 1000);
    let offset = if pulse != 0 {
        let mut phase = -offset - (-offset).trunc();
        if phase < -0.5 {
            phase += 1.0;
        } else if phase >= 0.5 {
            phase -= 1.0;
        }
        NtpDuration::from_seconds_f64(phase)
    } else {
        NtpDuration::from_seconds_f64(offset)
    };
    Ok(SockSample {
        local,
        offset,
        pulse: pulse != 0,
        leap,
    })
}

/// Encodes a 40-byte sample (64-bit `time_t`), as a sender does.
/// `offset_field` goes on the wire as is (see the module note for pulses).
pub fn encode(
    unix_sec: i64,
    usec: i64,
    offset_field: f64,
    pulse: bool,
    leap: SockLeap,
) -> [u8; SOCK_SAMPLE_LEN] {
    let mut b = [0u8; SOCK_SAMPLE_LEN];
    b[0..8].copy_from_slice(&unix_sec.to_ne_bytes());
    b[8..16].copy_from_slice(&usec.to_ne_bytes());
    b[16..24].copy_from_slice(&offset_field.to_ne_bytes());
    b[24..28].copy_from_slice(&i32::from(pulse).to_ne_bytes());
    let leap = match leap {
        SockLeap::Normal => 0i32,
        SockLeap::Insert => 1,
        SockLeap::Delete => 2,
    };
    b[28..32].copy_from_slice(&leap.to_ne_bytes());
    b[36..40].copy_from_slice(&(SOCK_MAGIC as i32).to_ne_bytes());
    b
}

/// The `offset` field a sender puts in a pulse sample for an edge seen at
/// local time `local_frac` seconds past a true second (chrony's reading).
pub fn pulse_offset_field(local_frac: f64) -> f64 {
    local_frac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C layout, checked against libc's timeval.
    #[repr(C)]
    struct CSample {
        tv: libc::timeval,
        offset: f64,
        pulse: libc::c_int,
        leap: libc::c_int,
        pad: libc::c_int,
        magic: libc::c_int,
    }

    #[test]
    fn layout_matches_the_c_struct() {
        assert_eq!(std::mem::size_of::<CSample>(), SOCK_SAMPLE_LEN);
        assert_eq!(std::mem::offset_of!(CSample, offset), 16);
        assert_eq!(std::mem::offset_of!(CSample, pulse), 24);
        assert_eq!(std::mem::offset_of!(CSample, magic), 36);
        let c = CSample {
            tv: libc::timeval {
                tv_sec: 1_800_000_000,
                tv_usec: 250_000,
            },
            offset: -0.125,
            pulse: 0,
            leap: 1,
            pad: 0,
            magic: SOCK_MAGIC as i32,
        };
        // SAFETY: CSample is plain old data without padding (asserted above).
        let bytes: &[u8] = unsafe {
            std::slice::from_raw_parts((&c as *const CSample).cast::<u8>(), SOCK_SAMPLE_LEN)
        };
        assert_eq!(
            bytes,
            encode(1_800_000_000, 250_000, -0.125, false, SockLeap::Insert)
        );
        let s = decode(bytes).unwrap();
        assert_eq!(s.local, NtpTimestamp::from_unix(1_800_000_000, 250_000_000));
        assert_eq!(s.offset, NtpDuration::from_seconds_f64(-0.125));
        assert_eq!(s.leap, SockLeap::Insert);
        assert!(!s.pulse);
    }

    #[test]
    fn pulses_are_read_as_chrony_reads_them() {
        // Edge seen 0.2 ms after the local second began: the local clock is
        // 0.2 ms ahead, the phase offset is -0.2 ms.
        let s = decode(&encode(
            1_800_000_000,
            200,
            pulse_offset_field(0.0002),
            true,
            SockLeap::Normal,
        ))
        .unwrap();
        assert!(s.pulse);
        assert!((s.offset.to_seconds_f64() + 0.0002).abs() < 1e-9);
        // An edge late in the local second (clock behind): positive phase.
        let s = decode(&encode(
            1_800_000_000,
            999_700,
            pulse_offset_field(0.9997),
            true,
            SockLeap::Normal,
        ))
        .unwrap();
        assert!(
            (s.offset.to_seconds_f64() - 0.0003).abs() < 1e-9,
            "{:?}",
            s.offset
        );
    }

    #[test]
    fn bad_datagrams_are_refused() {
        let good = encode(1_800_000_000, 0, 0.0, false, SockLeap::Normal);
        assert_eq!(decode(&good[..39]), Err(SockError::Length(39)));
        let mut bad = good;
        bad[36] ^= 1;
        assert!(matches!(decode(&bad), Err(SockError::Magic(_))));
        let nan = encode(1_800_000_000, 0, f64::NAN, false, SockLeap::Normal);
        assert_eq!(decode(&nan), Err(SockError::Invalid));
        let zero = encode(0, 0, 0.0, false, SockLeap::Normal);
        assert_eq!(decode(&zero), Err(SockError::Invalid));
        // Found by the fuzzer: a huge tv_usec normalises to centuries ahead.
        let far = encode(1_800_000_000, i64::MAX / 2, 0.0, false, SockLeap::Normal);
        assert_eq!(decode(&far), Err(SockError::Invalid));
        let year_2200 = encode(7_258_118_400, 0, 0.0, false, SockLeap::Normal);
        assert_eq!(decode(&year_2200), Err(SockError::Invalid));
    }

    #[test]
    fn the_32_bit_time_layout_is_accepted() {
        let mut b = [0u8; SOCK_SAMPLE_LEN_TIME32];
        b[0..4].copy_from_slice(&1_700_000_000i32.to_ne_bytes());
        b[4..8].copy_from_slice(&(-1i32).to_ne_bytes()); // normalised like chrony
        b[8..16].copy_from_slice(&0.5f64.to_ne_bytes());
        b[28..32].copy_from_slice(&(SOCK_MAGIC as i32).to_ne_bytes());
        let s = decode(&b).unwrap();
        assert_eq!(s.local, NtpTimestamp::from_unix(1_699_999_999, 999_999_000));
        assert_eq!(s.offset, NtpDuration::from_seconds_f64(0.5));
    }
}
