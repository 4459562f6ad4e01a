//! From sentences to named seconds.
//!
//! A receiver sends, once per second, a burst of sentences (RMC, GGA, ZDA
//! ...) that all carry the time of the same fix: the second that began at
//! the preceding PPS edge. [`NmeaClock`] groups sentences by that time of
//! day into an epoch, stamps the epoch with the arrival time given with its
//! first sentence (the daemon passes the start of the sentence burst, see
//! [`crate::line::Line::burst_start`]), and names the second once the epoch has a valid fix (RMC
//! status A or GGA quality 1-5) and a date. It guards against GPS week
//! rollovers (a date far before the build date gains 1024 weeks) and
//! two-digit years.
//!
//! An arrival time is trusted only when it is spaced from the previous
//! named second's as the seconds themselves are. Bytes that waited in a
//! buffer upstream of the port (a USB adapter, a host pty behind an
//! emulated one) arrive all at once, seconds late, and would otherwise
//! give samples off by as much; so would a port opened in the middle of
//! a burst. Such fixes are named but marked untimed.

use crate::sentence::{quality_is_fix, Date, Sentence, TimeOfDay, Year};
use skytime_proto::NtpTimestamp;

/// A GPS week-number rollover: 1024 weeks.
pub const ROLLOVER_SECS: i64 = 1024 * 7 * 86_400;

/// The build time of this crate (Unix seconds): no valid GPS date is older.
pub const BUILD_UNIX: i64 = match i64::from_str_radix(env!("SKYTIME_BUILD_UNIX"), 10) {
    Ok(v) => v,
    Err(_) => 0,
};

/// Days from 1970-01-01 to a proleptic Gregorian date (Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a Unix day number.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if month <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        month,
        day,
    )
}

/// A second named by a valid fix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NmeaFix {
    /// Unix time of the start of the named second. During a leap second
    /// (23:59:60) this is the Unix time of the following midnight.
    pub unix_second: i64,
    /// Arrival of the first byte of the epoch's first sentence (local clock).
    pub arrival: NtpTimestamp,
    /// The second was 23:59:60.
    pub leap_second: bool,
    /// A rollover correction was applied to get this date.
    pub rollover_corrected: bool,
    pub quality: Option<u8>,
    pub satellites: Option<u8>,
    /// The arrival is spaced from the previous named second's as the
    /// seconds are, so it can time a sample (see the module notes).
    pub timed: bool,
}

/// Largest disagreement between the arrival spacing of two named seconds
/// and their distance that still counts as timed, seconds. Receivers vary
/// their output delay by up to about a tenth of a second; a backlog
/// drains at line rate, a few tenths of a second per epoch or less.
pub const SPACING_TOLERANCE_S: f64 = 0.5;
/// Named seconds further apart than this are not compared (the local
/// clock may have drifted or been stepped in between).
const MAX_SPACING_S: i64 = 16;

/// Fix status as last reported, for status displays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FixStatus {
    /// The last epoch had a valid fix.
    pub valid: bool,
    pub quality: Option<u8>,
    pub satellites: Option<u8>,
}

#[derive(Clone, Copy, Debug)]
struct Epoch {
    time: TimeOfDay,
    arrival: NtpTimestamp,
    date: Option<Date>,
    valid: Option<bool>,
    quality: Option<u8>,
    satellites: Option<u8>,
    named: bool,
}

/// Counters kept by [`NmeaClock`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NmeaClockStats {
    pub fixes: u64,
    /// Epochs that ended without naming a second (no fix or no date).
    pub unnamed_epochs: u64,
    pub rollover_corrections: u64,
    pub leap_seconds: u64,
    /// Named seconds whose arrival could not time a sample.
    pub untimed: u64,
}

/// The last named second: Unix second, arrival, and whether it was 23:59:60.
#[derive(Clone, Copy, Debug)]
struct Named {
    unix_second: i64,
    arrival: NtpTimestamp,
    leap_second: bool,
}

impl Named {
    /// Whether `next` arrived spaced from this one as their seconds are.
    fn spaced_like(&self, next: &Named) -> bool {
        // After 23:59:60 the Unix count repeats midnight: one more
        // second has passed than it says.
        let seconds = next.unix_second - self.unix_second + i64::from(self.leap_second);
        if !(1..=MAX_SPACING_S).contains(&seconds) {
            return false;
        }
        let spacing = (next.arrival - self.arrival).to_seconds_f64();
        (spacing - seconds as f64).abs() <= SPACING_TOLERANCE_S
    }
}

/// Groups sentences into epochs and names seconds.
#[derive(Debug)]
pub struct NmeaClock {
    floor_unix: i64,
    epoch: Option<Epoch>,
    /// Last date seen (day number) and the time of day it went with, to
    /// carry a date into epochs whose sentences have none (GGA-only).
    last_day: Option<(i64, u32)>,
    /// The last named second, to check the next one's spacing.
    last_named: Option<Named>,
    status: FixStatus,
    stats: NmeaClockStats,
}

impl NmeaClock {
    /// `floor_unix`: no genuine date lies before it (use [`BUILD_UNIX`]).
    pub fn new(floor_unix: i64) -> Self {
        Self {
            floor_unix,
            epoch: None,
            last_day: None,
            last_named: None,
            status: FixStatus::default(),
            stats: NmeaClockStats::default(),
        }
    }

    pub fn status(&self) -> FixStatus {
        self.status
    }

    pub fn stats(&self) -> NmeaClockStats {
        self.stats
    }

    /// Feeds one sentence that arrived at `arrival`; returns the named
    /// second when this sentence completes a valid epoch.
    pub fn on_sentence(&mut self, sentence: &Sentence, arrival: NtpTimestamp) -> Option<NmeaFix> {
        let (time, date, valid, quality, satellites) = match *sentence {
            Sentence::Rmc { time, valid, date } => (time, date, Some(valid), None, None),
            Sentence::Gga {
                time,
                quality,
                satellites,
            } => (
                time,
                None,
                Some(quality_is_fix(quality)),
                Some(quality),
                satellites,
            ),
            Sentence::Zda { time, date } => (time, date, None, None, None),
            Sentence::Other => return None,
        };
        let time = time?;
        let same_epoch = self.epoch.is_some_and(|e| e.time == time);
        if !same_epoch {
            if let Some(old) = self.epoch.take() {
                if !old.named {
                    self.stats.unnamed_epochs += 1;
                }
            }
            self.epoch = Some(Epoch {
                time,
                arrival,
                date: None,
                valid: None,
                quality: None,
                satellites: None,
                named: false,
            });
        }
        let epoch = self.epoch.as_mut().expect("epoch was just set");
        if date.is_some() {
            // ZDA's four-digit year beats RMC's two digits.
            if epoch.date.is_none()
                || matches!(
                    date,
                    Some(Date {
                        year: Year::Full(_),
                        ..
                    })
                )
            {
                epoch.date = date;
            }
        }
        if let Some(v) = valid {
            // Any sentence saying "no fix" spoils the epoch.
            epoch.valid = Some(epoch.valid.unwrap_or(true) && v);
        }
        epoch.quality = quality.or(epoch.quality);
        epoch.satellites = satellites.or(epoch.satellites);
        self.status = FixStatus {
            valid: epoch.valid.unwrap_or(false),
            quality: epoch.quality.or(self.status.quality),
            satellites: epoch.satellites.or(self.status.satellites),
        };
        if quality.is_some() {
            self.status.quality = quality;
        }
        let epoch = *epoch;
        if epoch.named || epoch.valid != Some(true) {
            return None;
        }
        let (day, corrected) = match epoch.date {
            Some(d) => self.resolve_date(d)?,
            None => (self.carried_day(epoch.time)?, false),
        };
        self.last_day = Some((day, epoch.time.seconds_of_day()));
        let unix_second = day * 86_400 + epoch.time.seconds_of_day() as i64;
        self.epoch.as_mut().expect("epoch").named = true;
        self.stats.fixes += 1;
        if corrected {
            self.stats.rollover_corrections += 1;
        }
        let leap_second = epoch.time.second == 60;
        if leap_second {
            self.stats.leap_seconds += 1;
        }
        let named = Named {
            unix_second,
            arrival: epoch.arrival,
            leap_second,
        };
        let timed = self.last_named.is_some_and(|last| last.spaced_like(&named));
        self.last_named = Some(named);
        if !timed {
            self.stats.untimed += 1;
        }
        Some(NmeaFix {
            unix_second,
            arrival: epoch.arrival,
            leap_second,
            rollover_corrected: corrected,
            quality: epoch.quality,
            satellites: epoch.satellites,
            timed,
        })
    }

    /// Forgets the last named second (after the port was reopened: bytes
    /// that waited meanwhile must not time a sample against it).
    pub fn reset_spacing(&mut self) {
        self.last_named = None;
    }

    /// A date for an epoch without one: the last date seen, a day later if
    /// the time of day has wrapped past midnight since.
    fn carried_day(&self, time: TimeOfDay) -> Option<i64> {
        let (day, sod) = self.last_day?;
        Some(if time.seconds_of_day() < sod {
            day + 1
        } else {
            day
        })
    }

    /// Day number of `date`, with century and rollover guards.
    fn resolve_date(&self, date: Date) -> Option<(i64, bool)> {
        let floor_year = civil_from_days(self.floor_unix.div_euclid(86_400)).0;
        let year = match date.year {
            Year::Full(y) => y as i64,
            // The century that puts the year within 40 years before to 60
            // years after the build year: a receiver that missed one or two
            // rollovers reports up to 39 years back, and the rollover guard
            // below then corrects it.
            Year::TwoDigit(yy) => {
                let base = (floor_year - 40).div_euclid(100) * 100;
                let y = base + yy as i64;
                if y < floor_year - 40 {
                    y + 100
                } else {
                    y
                }
            }
        };
        let day = days_from_civil(year, date.month as u32, date.day as u32);
        // Reject impossible dates such as 31 February.
        if civil_from_days(day) != (year, date.month as u32, date.day as u32) {
            return None;
        }
        let mut secs = day * 86_400;
        let mut corrected = false;
        // A date more than a day before the build: a receiver that lost
        // count of GPS weeks. Move it forward by whole rollovers.
        while secs < self.floor_unix - 86_400 {
            secs += ROLLOVER_SECS;
            corrected = true;
        }
        Some((secs / 86_400, corrected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentence::parse;
    use skytime_proto::NtpDuration;

    const FLOOR: i64 = 1_767_225_600; // 2026-01-01

    fn s(body: &str) -> Sentence {
        parse(format!("${body}*{:02X}", crate::sentence::checksum(body.as_bytes())).as_bytes())
            .unwrap()
    }

    fn at(x: f64) -> NtpTimestamp {
        NtpTimestamp::from_unix(FLOOR, 0) + NtpDuration::from_seconds_f64(x)
    }

    #[test]
    fn calendar_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 1, 1) * 86_400, FLOOR);
        for d in (-800_000..800_000).step_by(997) {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn rmc_with_fix_names_the_second_at_the_first_sentence() {
        let mut c = NmeaClock::new(FLOOR);
        let gga = s("GPGGA,120000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,");
        assert_eq!(c.on_sentence(&gga, at(0.30)), None, "no date yet");
        let fix = c
            .on_sentence(
                &s("GPRMC,120000.00,A,4807.038,N,01131.000,E,0.0,0.0,150326,,"),
                at(0.35),
            )
            .unwrap();
        assert_eq!(
            fix.unix_second,
            days_from_civil(2026, 3, 15) * 86_400 + 12 * 3600
        );
        assert_eq!(
            fix.arrival,
            at(0.30),
            "stamped at the epoch's first sentence"
        );
        assert_eq!((fix.quality, fix.satellites), (Some(1), Some(8)));
        assert!(!fix.rollover_corrected && !fix.leap_second);
        // The same epoch is not named twice.
        assert_eq!(
            c.on_sentence(&s("GPZDA,120000.00,15,03,2026,00,00"), at(0.40)),
            None
        );
        // The next epoch can be named from GGA alone with the carried date.
        let fix2 = c
            .on_sentence(
                &s("GPGGA,120001.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
                at(1.3),
            )
            .unwrap();
        assert_eq!(fix2.unix_second, fix.unix_second + 1);
    }

    #[test]
    fn status_v_or_quality_zero_names_nothing() {
        let mut c = NmeaClock::new(FLOOR);
        assert_eq!(
            c.on_sentence(&s("GPRMC,120000.00,V,,,,,,,150326,,"), at(0.3)),
            None
        );
        assert_eq!(
            c.on_sentence(&s("GPZDA,120000.00,15,03,2026,00,00"), at(0.4)),
            None
        );
        assert_eq!(
            c.on_sentence(&s("GPGGA,120001.00,,,,,0,00,,,M,,M,,"), at(1.3)),
            None
        );
        assert_eq!(
            c.on_sentence(&s("GPZDA,120001.00,15,03,2026,00,00"), at(1.4)),
            None,
            "ZDA alone is no fix"
        );
        assert!(!c.status().valid);
        // A GGA without fix spoils an RMC A in the same epoch.
        assert_eq!(
            c.on_sentence(&s("GPGGA,120002.00,,,,,0,00,,,M,,M,,"), at(2.3)),
            None
        );
        assert_eq!(
            c.on_sentence(&s("GPRMC,120002.00,A,,,,,,,150326,,"), at(2.4)),
            None
        );
        assert_eq!(c.stats().fixes, 0);
    }

    #[test]
    fn gga_after_midnight_moves_the_carried_date() {
        let mut c = NmeaClock::new(FLOOR);
        let first = c
            .on_sentence(&s("GPRMC,235959.00,A,,,,,,,150326,,"), at(0.3))
            .unwrap();
        let next = c
            .on_sentence(
                &s("GPGGA,000000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
                at(1.3),
            )
            .unwrap();
        assert_eq!(next.unix_second, first.unix_second + 1);
    }

    #[test]
    fn leap_second_is_named_and_flagged() {
        let mut c = NmeaClock::new(FLOOR);
        let a = c
            .on_sentence(&s("GPRMC,235959.00,A,,,,,,,300626,,"), at(0.3))
            .unwrap();
        let leap = c
            .on_sentence(&s("GPRMC,235960.00,A,,,,,,,300626,,"), at(1.3))
            .unwrap();
        let b = c
            .on_sentence(&s("GPRMC,000000.00,A,,,,,,,010726,,"), at(2.3))
            .unwrap();
        assert!(leap.leap_second && !a.leap_second && !b.leap_second);
        // POSIX has no 23:59:60: it shares its Unix second with the midnight after it.
        assert_eq!(leap.unix_second, a.unix_second + 1);
        assert_eq!(b.unix_second, a.unix_second + 1);
        assert_eq!(c.stats().leap_seconds, 1);
        // 23:59:60 lasted a second: the seconds around it stay timed.
        assert!(!a.timed && leap.timed && b.timed);
    }

    /// RMC naming 12:00:00 + `k` on 15 March 2026.
    fn rmc(k: u32) -> Sentence {
        s(&format!(
            "GPRMC,12{:02}{:02}.00,A,,,,,,,150326,,",
            k / 60,
            k % 60
        ))
    }

    #[test]
    fn only_seconds_spaced_as_they_arrived_are_timed() {
        let mut c = NmeaClock::new(FLOOR);
        let mut timed = |k: u32, arrival: f64| c.on_sentence(&rmc(k), at(arrival)).unwrap().timed;
        assert!(
            !timed(0, 0.3),
            "the first second has nothing to be checked against"
        );
        assert!(timed(1, 1.3));
        assert!(timed(2, 2.35), "receiver jitter is tolerated");
        assert!(timed(4, 4.3), "a missed second is fine");
        // A backlog: seconds 5 to 9 waited in a buffer and arrive at line
        // rate, a sixth of a second apart.
        for k in 5..10 {
            assert!(
                !timed(k, 9.0 + (k - 5) as f64 / 6.0),
                "backlogged second {k}"
            );
        }
        // The first fresh second is checked against the last stale one
        // (stale by less than half a second here), then all is timed again.
        assert!(timed(10, 10.3));
        assert!(timed(11, 11.3));
        // More than half a second away from the expected spacing is untimed,
        // and so is a second long after the last one.
        assert!(!timed(12, 11.7));
        assert!(timed(13, 12.9));
        assert!(!timed(40, 39.9), "27 s apart: the clock may have moved");
        assert!(timed(41, 40.9));
        c.reset_spacing();
        assert!(
            !c.on_sentence(&rmc(42), at(41.9)).unwrap().timed,
            "after a reopen"
        );
        assert!(c.on_sentence(&rmc(43), at(42.9)).unwrap().timed);
        assert_eq!(c.stats().untimed, 9);
    }

    #[test]
    fn rollover_dates_are_moved_forward_by_1024_weeks() {
        let mut c = NmeaClock::new(FLOOR);
        // 2026-03-15 minus 1024 weeks is 2006-07-30.
        let (y, m, d) = civil_from_days(days_from_civil(2026, 3, 15) - 7168);
        assert_eq!((y, m, d), (2006, 7, 30));
        let fix = c.on_sentence(
            &s(&format!("GPZDA,120000.00,{d:02},{m:02},{y},00,00")),
            at(0.1),
        );
        assert_eq!(fix, None, "ZDA alone is no fix");
        let fix = c
            .on_sentence(&s("GPRMC,120000.00,A,,,,,,,300706,,"), at(0.2))
            .unwrap();
        assert!(fix.rollover_corrected);
        assert_eq!(
            fix.unix_second,
            days_from_civil(2026, 3, 15) * 86_400 + 43_200
        );
        assert_eq!(c.stats().rollover_corrections, 1);
        // Two rollovers back (1987 via 4-digit ZDA, 1024 weeks before 2006).
        let (y, m, d) = civil_from_days(days_from_civil(2026, 3, 15) - 2 * 7168);
        let mut c = NmeaClock::new(FLOOR);
        c.on_sentence(
            &s(&format!("GPZDA,120000.00,{d:02},{m:02},{y},00,00")),
            at(0.1),
        );
        let fix = c
            .on_sentence(
                &s("GPGGA,120000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
                at(0.2),
            )
            .unwrap();
        assert_eq!(
            fix.unix_second,
            days_from_civil(2026, 3, 15) * 86_400 + 43_200
        );
    }

    #[test]
    fn two_digit_years_pick_the_century_near_the_build() {
        let mut c = NmeaClock::new(FLOOR);
        // "06" for a 2026 build is 2006, which is a rollover: 2026.
        let fix = c
            .on_sentence(&s("GPRMC,120000.00,A,,,,,,,300706,,"), at(0.1))
            .unwrap();
        assert_eq!(
            civil_from_days(fix.unix_second.div_euclid(86_400)),
            (2026, 3, 15)
        );
        assert!(fix.rollover_corrected);
        // Whatever the two digits, the result never lies before the build.
        for yy in 0..100 {
            let mut c = NmeaClock::new(FLOOR);
            let fix = c
                .on_sentence(
                    &s(&format!("GPRMC,120000.00,A,,,,,,,0101{yy:02},,")),
                    at(0.1),
                )
                .unwrap();
            assert!(fix.unix_second >= FLOOR - 86_400, "{yy}");
        }
        let fix = c
            .on_sentence(&s("GPRMC,120001.00,A,,,,,,,010127,,"), at(1.1))
            .unwrap();
        assert_eq!(civil_from_days(fix.unix_second.div_euclid(86_400)).0, 2027);
        assert!(!fix.rollover_corrected);
        // 31 February is refused.
        assert_eq!(
            c.on_sentence(&s("GPRMC,120002.00,A,,,,,,,310227,,"), at(2.1)),
            None
        );
    }
}
