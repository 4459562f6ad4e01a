//! NMEA 0183 sentences that carry time: RMC, ZDA and GGA.
//!
//! The checksum is verified here (a sentence without one is refused: a
//! timing source cannot trust an unprotected line). GGA's fix quality and
//! satellite count come from the `nmea` crate; times and dates are parsed
//! by our own code, because `nmea` 0.7 refuses the leap second 23:59:60.

use nmea::sentences::FixType;
use nmea::SentenceType;

/// A UTC time of day; `second` is 60 during an inserted leap second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanos: u32,
}

impl TimeOfDay {
    /// Seconds since midnight, the leap second counting as 86400.
    pub fn seconds_of_day(&self) -> u32 {
        self.hour as u32 * 3600 + self.minute as u32 * 60 + self.second as u32
    }
}

/// A calendar year as sent: RMC has two digits, ZDA four.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Year {
    TwoDigit(u8),
    Full(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date {
    pub year: Year,
    pub month: u8,
    pub day: u8,
}

/// One parsed sentence, reduced to what timing needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sentence {
    /// Recommended minimum: time, status A (valid) or V (warning), date.
    Rmc {
        time: Option<TimeOfDay>,
        valid: bool,
        date: Option<Date>,
    },
    /// Fix data: time, fix quality (0 = none), satellites in use.
    Gga {
        time: Option<TimeOfDay>,
        quality: u8,
        satellites: Option<u8>,
    },
    /// Time and date with a four-digit year.
    Zda {
        time: Option<TimeOfDay>,
        date: Option<Date>,
    },
    /// A well-formed sentence of another kind (GSV, GSA, TXT, proprietary).
    Other,
}

/// Why a line is not a usable sentence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SentenceError {
    #[error("not an NMEA sentence (no '$' start or no '*hh' checksum)")]
    Framing,
    #[error("checksum mismatch: sentence says {stated:02X}, content gives {computed:02X}")]
    Checksum { stated: u8, computed: u8 },
    #[error("{kind} sentence has a malformed {field} field")]
    Field {
        kind: &'static str,
        field: &'static str,
    },
}

/// Parses one line (without CR/LF).
pub fn parse(line: &[u8]) -> Result<Sentence, SentenceError> {
    let body = verify_checksum(line)?;
    let text = std::str::from_utf8(body).map_err(|_| SentenceError::Framing)?;
    // "GPRMC,..." : a two-letter talker and a three-letter type.
    let (head, data) = text.split_once(',').unwrap_or((text, ""));
    if head.len() != 5 || !head.is_ascii() {
        return Ok(Sentence::Other);
    }
    let fields: Vec<&str> = data.split(',').collect();
    match &head[2..] {
        "RMC" => parse_rmc(&fields),
        "ZDA" => parse_zda(&fields),
        "GGA" => parse_gga(text, &fields),
        _ => Ok(Sentence::Other),
    }
}

/// Checks `$...*hh` and returns what lies between `$` and `*`.
fn verify_checksum(line: &[u8]) -> Result<&[u8], SentenceError> {
    let line = line.strip_prefix(b"$").ok_or(SentenceError::Framing)?;
    let star = line
        .iter()
        .rposition(|&b| b == b'*')
        .ok_or(SentenceError::Framing)?;
    let (body, tail) = (&line[..star], &line[star + 1..]);
    let hex = tail
        .get(..2)
        .filter(|_| tail.len() == 2)
        .ok_or(SentenceError::Framing)?;
    let stated = std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u8::from_str_radix(h, 16).ok())
        .ok_or(SentenceError::Framing)?;
    let computed = body.iter().fold(0u8, |c, b| c ^ b);
    if stated != computed {
        return Err(SentenceError::Checksum { stated, computed });
    }
    if body.iter().any(|&b| !(0x20..0x7f).contains(&b)) {
        return Err(SentenceError::Framing);
    }
    Ok(body)
}

/// The XOR checksum of a sentence body (between `$` and `*`).
pub fn checksum(body: &[u8]) -> u8 {
    body.iter().fold(0u8, |c, b| c ^ b)
}

fn field<'a>(fields: &[&'a str], i: usize) -> &'a str {
    fields.get(i).copied().unwrap_or("")
}

/// `hhmmss` or `hhmmss.f...`; empty means "not known yet" (None).
fn parse_time(s: &str, kind: &'static str) -> Result<Option<TimeOfDay>, SentenceError> {
    let err = SentenceError::Field {
        kind,
        field: "time",
    };
    if s.is_empty() {
        return Ok(None);
    }
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    if hms.len() != 6
        || !hms.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(err);
    }
    let n = |r: std::ops::Range<usize>| hms[r].parse::<u8>().unwrap_or(99);
    let (hour, minute, second) = (n(0..2), n(2..4), n(4..6));
    let nanos = if frac.is_empty() {
        0
    } else {
        frac.parse::<u32>().map_err(|_| err.clone())? * 10u32.pow(9 - frac.len() as u32)
    };
    // 60 only as a leap second at the end of a UTC day.
    let leap_ok = second == 60 && hour == 23 && minute == 59;
    if hour > 23 || minute > 59 || (second > 59 && !leap_ok) {
        return Err(err);
    }
    Ok(Some(TimeOfDay {
        hour,
        minute,
        second,
        nanos,
    }))
}

fn two_digits(s: &str) -> Option<u8> {
    (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn check_date(date: Date, kind: &'static str) -> Result<Date, SentenceError> {
    if !(1..=12).contains(&date.month) || !(1..=31).contains(&date.day) {
        return Err(SentenceError::Field {
            kind,
            field: "date",
        });
    }
    Ok(date)
}

fn parse_rmc(f: &[&str]) -> Result<Sentence, SentenceError> {
    const K: &str = "RMC";
    let time = parse_time(field(f, 0), K)?;
    let valid = match field(f, 1) {
        "A" => true,
        "V" | "" => false,
        _ => {
            return Err(SentenceError::Field {
                kind: K,
                field: "status",
            })
        }
    };
    // NMEA 2.3+ adds a mode indicator (field 11); 'N' (no fix) overrides A.
    let mode_ok = !matches!(field(f, 11), "N" | "E" | "M" | "S");
    let d = field(f, 8);
    let date = if d.is_empty() {
        None
    } else {
        let bad = SentenceError::Field {
            kind: K,
            field: "date",
        };
        if d.len() != 6 {
            return Err(bad);
        }
        let (day, month, yy) = (
            two_digits(&d[0..2]),
            two_digits(&d[2..4]),
            two_digits(&d[4..6]),
        );
        match (day, month, yy) {
            (Some(day), Some(month), Some(yy)) => Some(check_date(
                Date {
                    year: Year::TwoDigit(yy),
                    month,
                    day,
                },
                K,
            )?),
            _ => return Err(bad),
        }
    };
    Ok(Sentence::Rmc {
        time,
        valid: valid && mode_ok,
        date,
    })
}

fn parse_zda(f: &[&str]) -> Result<Sentence, SentenceError> {
    const K: &str = "ZDA";
    let time = parse_time(field(f, 0), K)?;
    let (d, m, y) = (field(f, 1), field(f, 2), field(f, 3));
    let date = if d.is_empty() && m.is_empty() && y.is_empty() {
        None
    } else {
        let bad = SentenceError::Field {
            kind: K,
            field: "date",
        };
        let year = (y.len() == 4)
            .then(|| y.parse::<u16>().ok())
            .flatten()
            .ok_or(bad.clone())?;
        let (day, month) = (two_digits(d).ok_or(bad.clone())?, two_digits(m).ok_or(bad)?);
        Some(check_date(
            Date {
                year: Year::Full(year),
                month,
                day,
            },
            K,
        )?)
    };
    Ok(Sentence::Zda { time, date })
}

fn parse_gga(text: &str, f: &[&str]) -> Result<Sentence, SentenceError> {
    const K: &str = "GGA";
    let time = parse_time(field(f, 0), K)?;
    // nmea 0.7 cannot read second 60: hand it 59 for the fields it does read.
    let patched;
    let for_crate = if time.is_some_and(|t| t.second == 60) {
        patched = text.replacen(",235960", ",235959", 1);
        patched.as_str()
    } else {
        text
    };
    let sentence = nmea::NmeaSentence {
        talker_id: &for_crate[..2],
        message_id: SentenceType::GGA,
        data: for_crate.split_once(',').map(|(_, d)| d).unwrap_or(""),
        checksum: 0,
    };
    let data = nmea::sentences::parse_gga(sentence).map_err(|_| SentenceError::Field {
        kind: K,
        field: "fix",
    })?;
    let quality = match data.fix_type {
        None | Some(FixType::Invalid) => 0,
        Some(FixType::Gps) => 1,
        Some(FixType::DGps) => 2,
        Some(FixType::Pps) => 3,
        Some(FixType::Rtk) => 4,
        Some(FixType::FloatRtk) => 5,
        Some(FixType::Estimated) => 6,
        Some(FixType::Manual) => 7,
        Some(FixType::Simulation) => 8,
    };
    let satellites = data.fix_satellites.map(|n| n.min(255) as u8);
    Ok(Sentence::Gga {
        time,
        quality,
        satellites,
    })
}

/// True for fix qualities that come from satellites (not estimated,
/// manual or simulated).
pub fn quality_is_fix(quality: u8) -> bool {
    matches!(quality, 1..=5)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds `$body*hh` with a correct checksum.
    fn s(body: &str) -> Vec<u8> {
        format!("${body}*{:02X}", checksum(body.as_bytes())).into_bytes()
    }

    fn tod(hour: u8, minute: u8, second: u8, nanos: u32) -> TimeOfDay {
        TimeOfDay {
            hour,
            minute,
            second,
            nanos,
        }
    }

    #[test]
    fn rmc_valid_and_warning() {
        let r = parse(&s(
            "GPRMC,123519.00,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W",
        ))
        .unwrap();
        assert_eq!(
            r,
            Sentence::Rmc {
                time: Some(tod(12, 35, 19, 0)),
                valid: true,
                date: Some(Date {
                    year: Year::TwoDigit(94),
                    month: 3,
                    day: 23
                })
            }
        );
        let r = parse(&s("GNRMC,000001.50,V,,,,,,,010126,,,N")).unwrap();
        assert!(
            matches!(r, Sentence::Rmc { valid: false, time: Some(t), .. } if t == tod(0, 0, 1, 500_000_000))
        );
        // Status A but mode N (no fix) is not a fix.
        let r = parse(&s("GNRMC,000001,A,,,,,,,010126,,,N")).unwrap();
        assert!(matches!(r, Sentence::Rmc { valid: false, .. }));
    }

    #[test]
    fn zda_has_a_four_digit_year() {
        let r = parse(&s("GPZDA,201530.00,04,07,2002,00,00")).unwrap();
        assert_eq!(
            r,
            Sentence::Zda {
                time: Some(tod(20, 15, 30, 0)),
                date: Some(Date {
                    year: Year::Full(2002),
                    month: 7,
                    day: 4
                })
            }
        );
        assert!(matches!(
            parse(&s("GPZDA,201530.00,04,07,02,00,00")),
            Err(SentenceError::Field {
                kind: "ZDA",
                field: "date"
            })
        ));
    }

    #[test]
    fn gga_gives_quality_and_satellites() {
        let r = parse(&s(
            "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        ))
        .unwrap();
        assert_eq!(
            r,
            Sentence::Gga {
                time: Some(tod(12, 35, 19, 0)),
                quality: 1,
                satellites: Some(8)
            }
        );
        let r = parse(&s("GPGGA,123520,,,,,0,00,,,M,,M,,")).unwrap();
        assert_eq!(
            r,
            Sentence::Gga {
                time: Some(tod(12, 35, 20, 0)),
                quality: 0,
                satellites: Some(0)
            }
        );
        assert!(quality_is_fix(2) && !quality_is_fix(0) && !quality_is_fix(6));
    }

    #[test]
    fn leap_second_is_accepted_only_at_the_end_of_a_day() {
        let r = parse(&s(
            "GPRMC,235960.00,A,4807.038,N,01131.000,E,0.0,0.0,311216,,",
        ))
        .unwrap();
        assert!(
            matches!(r, Sentence::Rmc { time: Some(t), valid: true, .. } if t.second == 60 && t.seconds_of_day() == 86400)
        );
        let r = parse(&s(
            "GPGGA,235960.00,4807.038,N,01131.000,E,1,09,0.9,545.4,M,46.9,M,,",
        ))
        .unwrap();
        assert!(
            matches!(r, Sentence::Gga { time: Some(t), quality: 1, satellites: Some(9) } if t.second == 60)
        );
        assert!(parse(&s("GPZDA,235960,31,12,2016,00,00")).is_ok());
        assert!(parse(&s("GPRMC,120060.00,A,,,,,,,311216,,")).is_err());
        assert!(parse(&s("GPRMC,235961.00,A,,,,,,,311216,,")).is_err());
    }

    #[test]
    fn checksums_are_enforced() {
        let mut line = s("GPZDA,201530.00,04,07,2002,00,00");
        let n = line.len();
        line[n - 1] = if line[n - 1] == b'0' { b'1' } else { b'0' };
        assert!(matches!(parse(&line), Err(SentenceError::Checksum { .. })));
        // A flipped data bit with the old checksum.
        let mut line = s("GPZDA,201530.00,04,07,2002,00,00");
        line[8] ^= 0x01;
        assert!(matches!(parse(&line), Err(SentenceError::Checksum { .. })));
        assert_eq!(
            parse(b"$GPZDA,201530.00,04,07,2002,00,00"),
            Err(SentenceError::Framing)
        );
        assert_eq!(parse(b"GPZDA*00"), Err(SentenceError::Framing));
        assert_eq!(parse(b"$GPZDA*0"), Err(SentenceError::Framing));
        assert_eq!(parse(b"$GPZDA*0G"), Err(SentenceError::Framing));
    }

    #[test]
    fn malformed_fields_are_named() {
        assert_eq!(
            parse(&s("GPRMC,12a519,A,,,,,,,230394,,")),
            Err(SentenceError::Field {
                kind: "RMC",
                field: "time"
            })
        );
        assert_eq!(
            parse(&s("GPRMC,123519,X,,,,,,,230394,,")),
            Err(SentenceError::Field {
                kind: "RMC",
                field: "status"
            })
        );
        assert_eq!(
            parse(&s("GPRMC,123519,A,,,,,,,231394,,")),
            Err(SentenceError::Field {
                kind: "RMC",
                field: "date"
            })
        );
        assert_eq!(
            parse(&s("GPRMC,123519,A,,,,,,,2394,,")),
            Err(SentenceError::Field {
                kind: "RMC",
                field: "date"
            })
        );
        assert_eq!(
            parse(&s("GPRMC,253519,A,,,,,,,230394,,")),
            Err(SentenceError::Field {
                kind: "RMC",
                field: "time"
            })
        );
    }

    #[test]
    fn other_sentences_and_empty_times() {
        assert_eq!(
            parse(&s("GPGSV,3,1,11,03,03,111,00")).unwrap(),
            Sentence::Other
        );
        assert_eq!(parse(&s("PMTK001,314,3")).unwrap(), Sentence::Other);
        assert_eq!(
            parse(&s("GPRMC,,V,,,,,,,,,")).unwrap(),
            Sentence::Rmc {
                time: None,
                valid: false,
                date: None
            }
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 7;
        for len in 0..200usize {
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                v.push((x >> 56) as u8);
            }
            let _ = parse(&v);
            v.insert(0, b'$');
            let _ = parse(&v);
        }
    }
}
