//! The upstream servers in the management records: a source report per
//! server (the task's view joined with the discipline's), the authdata
//! view, and what the alarms see of them and of the GPS integrity check.
//! Pure functions of snapshots.

use crate::clock::ClockSnapshot;
use crate::upstream::{Authentication, MemberStatus};
use skytime_alarms::{GpsDistrust, IntegrityObservation, UpstreamObservation};
use skytime_api::{SourceAuthReport, SourceReport};
use skytime_discipline::{Distrust, SelectState};
use skytime_proto::{NtpTimestamp, SyncState};

fn auth_name(a: Authentication) -> &'static str {
    match a {
        Authentication::None => "none",
        Authentication::Nts => "nts",
        Authentication::Key(_) => "symmetric",
    }
}

/// One upstream server as `skytimectl sources` shows it.
pub fn source_report(
    m: &MemberStatus,
    clock: Option<&ClockSnapshot>,
    state_name: fn(SelectState) -> &'static str,
) -> SourceReport {
    let disc = clock.and_then(|c| c.sources.iter().find(|s| s.index == m.index));
    let at = clock.map(|c| c.at);
    let (last_offset, last_error, last_ago) = match (m.last_sample, at) {
        (Some((t, offset, _, err)), Some(now)) => {
            (offset, err, (now - t).to_seconds_f64().max(0.0))
        }
        (Some((_, offset, _, err)), None) => (offset, err, -1.0),
        (None, _) => (0.0, 0.0, -1.0),
    };
    let mut r = SourceReport {
        name: m.name.clone(),
        kind: "ntp".into(),
        state: disc.map_or("unusable", |d| state_name(d.state)).into(),
        stratum: m.stratum.unwrap_or(0),
        poll: m.poll,
        reach: m.reach,
        last_sample_ago: last_ago,
        last_offset,
        last_offset_adjusted: disc.map_or(last_offset, |d| d.last_offset_s),
        last_error,
        address: m.address.map(|a| a.to_string()),
        authentication: Some(auth_name(m.authentication).into()),
        role: Some(m.role.name().into()),
        reference: m.reference_id.map(|r| r.to_string()),
        delay: m.last_sample.map(|s| s.2),
        root_delay: m.stratum.map(|_| m.root_delay),
        root_dispersion: m.stratum.map(|_| m.root_dispersion),
        status: Some(m.state.clone()),
        ..SourceReport::default()
    };
    if let Some(d) = disc {
        super::reports::add_statistics(&mut r, d);
    }
    r
}

/// One upstream server as chronyc authdata shows it.
pub fn auth_report(m: &MemberStatus, now: NtpTimestamp) -> SourceAuthReport {
    let mut r = SourceAuthReport {
        name: m.name.clone(),
        address: m.address.map(|a| a.to_string()),
        mode: "-".into(),
        last_ke_ago: -1.0,
        ..SourceAuthReport::default()
    };
    match (m.authentication, &m.nts, m.key) {
        (Authentication::Nts, Some(n), _) => {
            r.mode = "NTS".into();
            if n.aead != 0 {
                r.key_type = Some(match n.aead {
                    15 => "AES-SIV-CMAC-256".to_owned(),
                    other => format!("AEAD {other}"),
                });
            }
            r.key_bits = n.key_bits;
            r.last_ke_ago = n
                .last_ke
                .map_or(-1.0, |t| (now - t).to_seconds_f64().max(0.0));
            r.ke_attempts = n.ke_attempts;
            r.ke_total = n.ke_total;
            r.naks = n.naks;
            r.cookies = n.cookies as u32;
            r.cookie_length = n.cookie_len as u32;
            r.auth_failures = n.auth_failures;
            r.restored = n.restored;
            r.error = n.error.clone();
        }
        (Authentication::Key(id), _, key) => {
            r.mode = "SK".into();
            r.key_id = Some(id);
            if let Some((kind, bits)) = key {
                r.key_type = Some(kind.into());
                r.key_bits = bits;
            }
            r.auth_failures = m
                .counters
                .dropped_for(skytime_proto::client::ReplyDrop::NotAuthenticated);
        }
        _ => {}
    }
    r
}

/// What the alarms see of the upstream servers.
pub fn upstream_observation(
    members: &[MemberStatus],
    clock: Option<&ClockSnapshot>,
) -> UpstreamObservation {
    let state = |i: usize| {
        clock
            .and_then(|c| c.sources.iter().find(|s| s.index == i))
            .map(|s| s.state)
    };
    UpstreamObservation {
        configured: members.len(),
        reachable: members.iter().filter(|m| m.reach != 0).count(),
        falsetickers: members
            .iter()
            .filter(|m| state(m.index) == Some(SelectState::Falseticker))
            .map(|m| match m.address {
                Some(a) if a.ip().to_string() != m.name => format!("{} ({})", m.name, a.ip()),
                _ => m.name.clone(),
            })
            .collect(),
    }
}

/// The integrity check as the alarms see it.
pub fn integrity_observation(
    members: &[MemberStatus],
    clock: Option<&ClockSnapshot>,
    sync: &SyncState,
) -> IntegrityObservation {
    let Some(report) = clock.map(|c| c.integrity) else {
        return IntegrityObservation::default();
    };
    let ns = |s: f64| (s * 1e9).clamp(i64::MIN as f64, i64::MAX as f64) as i64;
    // How the witnesses are authenticated, in the reason's words.
    let kinds: Vec<Authentication> = members
        .iter()
        .map(|m| m.authentication)
        .filter(|a| *a != Authentication::None)
        .collect();
    let witness_kind = if !kinds.is_empty() && kinds.iter().all(|a| *a == Authentication::Nts) {
        "NTS"
    } else if !kinds.is_empty() && kinds.iter().all(|a| matches!(a, Authentication::Key(_))) {
        "symmetric-key"
    } else {
        "authenticated"
    };
    IntegrityObservation {
        distrust: report.distrust.map(|d| match d {
            Distrust::Disagrees {
                witnesses,
                against,
                by_s,
            } => GpsDistrust::Disagrees {
                witnesses,
                against,
                by_ns: ns(by_s),
                witness_kind: witness_kind.into(),
            },
            Distrust::Jumped { by_s } => GpsDistrust::Jumped { by_ns: ns(by_s) },
        }),
        since: report.since.map_or(0, |t| t.to_unix(0).0),
        serving: if sync.is_synchronized() {
            format!("stratum {} ({})", sync.stratum, sync.reference_id)
        } else {
            "unsynchronized".into()
        },
    }
}
