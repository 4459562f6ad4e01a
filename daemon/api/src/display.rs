//! How the API's numbers read to people, the same in skytimectl's tables
//! and the gateway's status page: offsets as chronyc prints them, Unix
//! seconds as UTC dates.

use time::OffsetDateTime;

/// Seconds as chronyc prints offsets: a number and a unit (ns, us, ms, s).
pub fn offset(seconds: f64) -> String {
    let a = seconds.abs();
    let sign = if seconds < 0.0 { "-" } else { "+" };
    if a == 0.0 {
        "+0ns".to_owned()
    } else if a < 1e-6 {
        format!("{sign}{:.0}ns", a * 1e9)
    } else if a < 1e-3 {
        format!("{sign}{:.0}us", a * 1e6)
    } else if a < 1.0 {
        format!("{sign}{:.0}ms", a * 1e3)
    } else {
        format!("{sign}{a:.0}s")
    }
}

/// Unix seconds as UTC `YYYY-MM-DD hh:mm:ss UTC` (the number itself when
/// it is outside the years -9999 to 9999).
pub fn utc(unix: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{unix} (Unix time)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_offsets() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_800_000_000), "2027-01-15 08:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(253_402_300_799), "9999-12-31 23:59:59 UTC");
        assert_eq!(utc(i64::MAX), format!("{} (Unix time)", i64::MAX));
        assert_eq!(offset(12e-9), "+12ns");
        assert_eq!(offset(-0.0026), "-3ms");
    }
}
