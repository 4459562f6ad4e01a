//! Line plots as inline SVG, drawn on the appliance (the status page has
//! no JavaScript): one series over a time window, the line broken where
//! values are missing, the range and the window's ends labelled.

use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 150.0;
/// Room for labels.
const LEFT: f64 = 78.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// One plot.
pub struct Plot<'a> {
    /// Element id and accessible title.
    pub id: &'a str,
    pub title: &'a str,
    /// (Unix seconds, value); `None` where there is no value.
    pub points: Vec<(i64, Option<f64>)>,
    /// The window: Unix seconds.
    pub from: i64,
    pub to: i64,
    /// Points further apart than this are not joined (seconds).
    pub max_gap: i64,
    /// The value axis spans at least this much (a flat line sits in the
    /// middle of it rather than filling the plot with noise).
    pub min_span: f64,
    /// How a value reads on the axis.
    pub label: &'a dyn Fn(f64) -> String,
}

impl std::fmt::Debug for Plot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plot")
            .field("id", &self.id)
            .field("points", &self.points.len())
            .finish_non_exhaustive()
    }
}

/// Escapes text for HTML and SVG.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl Plot<'_> {
    /// The `<svg>` element.
    pub fn render(&self) -> String {
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg id="{id}" class="plot" role="img" aria-label="{title}" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" style="max-width:{WIDTH}px" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>"#,
            id = escape(self.id),
            title = escape(self.title),
        );
        let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
        let _ = write!(
            svg,
            r##"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="#fafafa" stroke="#bbb"/>"##,
            w = x1 - x0,
            h = y1 - y0
        );
        let values: Vec<f64> = self
            .points
            .iter()
            .filter(|(t, _)| *t >= self.from && *t <= self.to)
            .filter_map(|(_, v)| *v)
            .filter(|v| v.is_finite())
            .collect();
        let span = (self.to - self.from).max(1) as f64;
        let _ = write!(
            svg,
            r##"<text x="{x0}" y="{ty}" font-size="11" fill="#555">{left}</text><text x="{x1}" y="{ty}" font-size="11" fill="#555" text-anchor="end">now</text>"##,
            ty = HEIGHT - 6.0,
            left = escape(&window_label(self.to - self.from)),
        );
        if values.is_empty() {
            let _ = write!(
                svg,
                r##"<text class="nodata" x="{x}" y="{y}" font-size="13" fill="#888" text-anchor="middle">no data yet</text></svg>"##,
                x = (x0 + x1) / 2.0,
                y = (y0 + y1) / 2.0
            );
            return svg;
        }
        let (mut lo, mut hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        if hi - lo < self.min_span {
            let pad = (self.min_span - (hi - lo)) / 2.0;
            lo -= pad;
            hi += pad;
        }
        let x = |t: i64| x0 + (t - self.from) as f64 / span * (x1 - x0);
        let y = |v: f64| y1 - (v - lo) / (hi - lo) * (y1 - y0);
        for (v, at) in [(hi, y0 + 11.0), (lo, y1 - 2.0)] {
            let _ = write!(
                svg,
                r##"<text x="{lx}" y="{at}" font-size="11" fill="#555" text-anchor="end">{label}</text>"##,
                lx = x0 - 4.0,
                label = escape(&(self.label)(v)),
            );
        }
        if lo < 0.0 && hi > 0.0 {
            let _ = write!(
                svg,
                r##"<line x1="{x0}" x2="{x1}" y1="{z}" y2="{z}" stroke="#ccc" stroke-dasharray="3,3"/>"##,
                z = y(0.0)
            );
        }
        for segment in self.segments() {
            let pts: Vec<String> = segment
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                .collect();
            if pts.len() == 1 {
                let (t, v) = segment[0];
                let _ = write!(
                    svg,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="2" fill="#1f5fa8"/>"##,
                    x(t),
                    y(v)
                );
            } else {
                let _ = write!(
                    svg,
                    r##"<polyline fill="none" stroke="#1f5fa8" stroke-width="1.5" points="{}"/>"##,
                    pts.join(" ")
                );
            }
        }
        svg.push_str("</svg>");
        svg
    }

    /// Runs of points to join: broken by missing values and long gaps.
    fn segments(&self) -> Vec<Vec<(i64, f64)>> {
        let mut out: Vec<Vec<(i64, f64)>> = Vec::new();
        let mut last: Option<i64> = None;
        for (t, v) in &self.points {
            if *t < self.from || *t > self.to {
                continue;
            }
            match v.filter(|v| v.is_finite()) {
                Some(v) => {
                    let joined = last.is_some_and(|l| t - l <= self.max_gap);
                    if !joined || out.is_empty() {
                        out.push(Vec::new());
                    }
                    out.last_mut().expect("pushed").push((*t, v));
                    last = Some(*t);
                }
                None => last = None,
            }
        }
        out
    }
}

/// "-24 h", "-15 min": how far back the window reaches.
fn window_label(seconds: i64) -> String {
    if seconds >= 7200 {
        format!("-{} h", seconds / 3600)
    } else {
        format!("-{} min", (seconds / 60).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_break_at_gaps_and_text_is_escaped() {
        let label = |v: f64| format!("{v:.0}<x>");
        let p = Plot {
            id: "p",
            title: "a & b",
            points: vec![
                (0, Some(1.0)),
                (60, Some(2.0)),
                (120, None),
                (180, Some(3.0)),
                (240, Some(2.0)),
                (1000, Some(1.0)),
            ],
            from: 0,
            to: 1200,
            max_gap: 120,
            min_span: 1.0,
            label: &label,
        };
        let svg = p.render();
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        assert!(
            svg.contains("a &amp; b") && svg.contains("3&lt;x&gt;"),
            "{svg}"
        );
        let empty = Plot {
            points: vec![],
            ..p
        };
        assert!(empty.render().contains("no data yet"));
    }
}
