//! Human output: aligned tables and `Name : value` blocks, as chronyc
//! prints them.

pub use skytime_api::display::{offset, utc};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(ago(4000.0), "67m");
        assert_eq!(ago(-1.0), "-");
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
