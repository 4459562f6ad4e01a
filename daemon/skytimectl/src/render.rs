//! Human output: aligned tables and `Name : value` blocks, as chronyc
//! prints them.

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

/// Seconds ago as chronyc's LastRx column (s, m, h, d).
pub fn ago(seconds: f64) -> String {
    if seconds < 0.0 {
        "-".to_owned()
    } else if seconds < 1000.0 {
        format!("{seconds:.0}")
    } else if seconds < 60_000.0 {
        format!("{:.0}m", seconds / 60.0)
    } else if seconds < 360_000.0 {
        format!("{:.0}h", seconds / 3600.0)
    } else {
        format!("{:.0}d", seconds / 86400.0)
    }
}

/// Columns, left-aligned text and right-aligned numbers.
pub fn table(header: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if right.get(i).copied().unwrap_or(false) {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.push("=".repeat(widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1)));
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// `Name   : value` lines with aligned colons.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<w$} : {v}"))
        .collect::<Vec<_>>()
        .join("\n")
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
        assert_eq!(ago(4000.0), "67m");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["Name", "N"],
            &[
                vec!["a".into(), "100".into()],
                vec!["long".into(), "1".into()],
            ],
            &[false, true],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "Name    N");
        assert_eq!(lines[2], "a     100");
        assert_eq!(lines[3], "long    1");
    }
}
