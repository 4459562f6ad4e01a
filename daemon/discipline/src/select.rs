//! Source selection: which sources are truetickers, which one(s) steer.
//!
//! Each usable source offers an interval `offset +- distance` that should
//! contain the true time. The intersection algorithm (Marzullo, as in
//! chrony's sources.c and RFC 5905) finds the region most intervals agree
//! on; sources whose interval misses it are falsetickers. Without a
//! majority (two sources that disagree) a trusted source decides: PPS is
//! trusted by default, since its second is named by the receiver and its
//! edge is microsecond-exact, while NMEA-only time is millisecond-class.
//! Among truetickers the best tier is selected (PPS, then SOCK, then
//! NMEA) and all selected sources are combined by the estimator, each
//! sample weighted by its own noise.
//!
//! The discipline runs this twice: over the GPS receiver's sources and
//! over the network sources, separately, since the receiver's PPS and
//! NMEA are one witness, not two. Whether the GPS may steer, judged by
//! the network sources, is [`crate::integrity`]'s.

use crate::sample::SourceKind;

/// What selection decided about a source (chronyc's `*`, `+`, `x`, `?`, `-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectState {
    /// Steers the clock.
    Selected,
    /// Steers the clock together with the selected source, which names the
    /// reference (network sources other than the best one: chronyc's `+`).
    Combined,
    /// Agrees with the selected sources but is not used to steer (a worse
    /// tier, such as NMEA while PPS is good).
    Candidate,
    /// Disagrees with the majority (or with the trusted source).
    Falseticker,
    /// No samples recently.
    Unreachable,
    /// Reachable but not usable yet: too few samples or too large an
    /// error bound.
    Rejected,
}

impl SelectState {
    pub fn as_str(self) -> &'static str {
        match self {
            SelectState::Selected => "selected",
            SelectState::Combined => "combined",
            SelectState::Candidate => "candidate",
            SelectState::Falseticker => "falseticker",
            SelectState::Unreachable => "unreachable",
            SelectState::Rejected => "rejected",
        }
    }
}

/// Selection input for one source.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub kind: SourceKind,
    pub reachable: bool,
    /// Enough samples and a sane error bound.
    pub usable: bool,
    pub offset: f64,
    /// Half-width of the interval (root distance), seconds.
    pub distance: f64,
    pub trusted: bool,
}

pub fn tier(kind: SourceKind) -> u8 {
    match kind {
        SourceKind::Pps => 0,
        SourceKind::Sock => 1,
        SourceKind::Nmea => 2,
        SourceKind::Ntp => 3,
    }
}

/// Decides a state for every candidate (same order).
pub fn select(cands: &[Candidate]) -> Vec<SelectState> {
    let mut out: Vec<SelectState> = cands
        .iter()
        .map(|c| {
            if !c.reachable {
                SelectState::Unreachable
            } else if !c.usable {
                SelectState::Rejected
            } else {
                SelectState::Candidate
            }
        })
        .collect();
    let idx: Vec<usize> = (0..cands.len())
        .filter(|&i| out[i] == SelectState::Candidate)
        .collect();
    if idx.is_empty() {
        return out;
    }
    // Sweep the interval endpoints for the deepest overlap.
    let mut ev: Vec<(f64, i32)> = Vec::with_capacity(idx.len() * 2);
    for &i in &idx {
        ev.push((cands[i].offset - cands[i].distance, 1));
        ev.push((cands[i].offset + cands[i].distance, -1));
    }
    // Starts before ends at equal points, so touching intervals overlap.
    ev.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let (mut depth, mut best, mut lo, mut hi) = (0, 0, 0.0, 0.0);
    for (k, &(x, d)) in ev.iter().enumerate() {
        depth += d;
        if d > 0 && depth > best {
            best = depth;
            lo = x;
            // The region ends at the next endpoint.
            hi = ev.get(k + 1).map_or(x, |e| e.0);
        }
    }
    let overlaps = |i: usize, lo: f64, hi: f64| {
        cands[i].offset - cands[i].distance <= hi && cands[i].offset + cands[i].distance >= lo
    };
    let majority = best as usize * 2 > idx.len();
    let region = if majority {
        Some((lo, hi))
    } else {
        // No majority: a trusted source's interval decides, if there is
        // exactly one tier of trust to follow (the best-tier trusted one).
        idx.iter()
            .filter(|&&i| cands[i].trusted)
            .min_by(|&&a, &&b| {
                tier(cands[a].kind)
                    .cmp(&tier(cands[b].kind))
                    .then(cands[a].distance.total_cmp(&cands[b].distance))
            })
            .map(|&i| {
                (
                    cands[i].offset - cands[i].distance,
                    cands[i].offset + cands[i].distance,
                )
            })
    };
    let Some((lo, hi)) = region else {
        for &i in &idx {
            out[i] = SelectState::Falseticker;
        }
        return out;
    };
    let true_tickers: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| overlaps(i, lo, hi))
        .collect();
    for &i in &idx {
        if !true_tickers.contains(&i) {
            out[i] = SelectState::Falseticker;
        }
    }
    if let Some(best_tier) = true_tickers.iter().map(|&i| tier(cands[i].kind)).min() {
        for &i in &true_tickers {
            if tier(cands[i].kind) == best_tier {
                out[i] = SelectState::Selected;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{select, Candidate as C, SelectState, SourceKind};
    use SelectState::*;

    fn c(kind: SourceKind, offset: f64, distance: f64) -> C {
        C {
            kind,
            reachable: true,
            usable: true,
            offset,
            distance,
            trusted: kind == SourceKind::Pps,
        }
    }

    #[test]
    fn pps_is_selected_and_nmea_is_a_candidate() {
        let s = select(&[
            c(SourceKind::Pps, 1e-6, 5e-6),
            c(SourceKind::Nmea, 0.02, 0.1),
        ]);
        assert_eq!(s, vec![Selected, Candidate]);
    }

    #[test]
    fn disagreeing_nmea_is_a_falseticker_thanks_to_trusted_pps() {
        let s = select(&[
            c(SourceKind::Pps, 1e-6, 5e-6),
            c(SourceKind::Nmea, 1.0, 0.1),
        ]);
        assert_eq!(s, vec![Selected, Falseticker]);
    }

    #[test]
    fn majority_outvotes_a_lone_pps() {
        let s = select(&[
            c(SourceKind::Pps, 0.5, 5e-6),
            c(SourceKind::Nmea, 0.0, 0.1),
            c(SourceKind::Sock, 0.0, 1e-3),
        ]);
        assert_eq!(s, vec![Falseticker, Candidate, Selected]);
    }

    #[test]
    fn two_pps_are_combined_and_states_cover_unusable() {
        let mut u = c(SourceKind::Nmea, 0.0, 0.1);
        u.usable = false;
        let mut gone = c(SourceKind::Pps, 0.0, 1e-6);
        gone.reachable = false;
        let s = select(&[
            c(SourceKind::Pps, 1e-6, 5e-6),
            c(SourceKind::Pps, 2e-6, 5e-6),
            u,
            gone,
        ]);
        assert_eq!(s, vec![Selected, Selected, Rejected, Unreachable]);
    }

    #[test]
    fn nmea_alone_without_trust_and_disagreement_selects_nothing() {
        let s = select(&[
            c(SourceKind::Nmea, 0.0, 0.01),
            c(SourceKind::Nmea, 1.0, 0.01),
        ]);
        assert_eq!(s, vec![Falseticker, Falseticker]);
        assert_eq!(select(&[c(SourceKind::Nmea, 0.3, 0.01)]), vec![Selected]);
    }
}
