//! What the monitor sees of the running daemon: the alarm logic's
//! observation (the discipline's mode and steps, the receiver's counters,
//! the served stratum, the served certificate's expiry, the leap table)
//! and one history
//! sample, from the same snapshots the reports are made of.

use super::Appliance;
use crate::clock::now;
use crate::monitor::{Observe, Sample};
use crate::refclock::SourceId;
use skytime_alarms::{ClockMode, ClockObservation, GpsObservation, Observation, PpsCounters};
use skytime_api::ApplianceBackend;
use skytime_discipline::Mode;
use skytime_proto::NtpTimestamp;

fn unix(t: NtpTimestamp) -> i64 {
    t.to_unix(0).0
}

impl Observe for Appliance {
    fn observation(&self) -> Observation {
        let at = now();
        let clock = self.clock.snapshot();
        let sync = *self.sync.borrow();
        let mode = match clock.as_ref().map(|c| c.tracking.mode) {
            None | Some(Mode::Startup) => ClockMode::Startup,
            Some(Mode::Tracking) => ClockMode::Tracking,
            Some(Mode::Holdover { since }) => ClockMode::Holdover { since: unix(since) },
            Some(Mode::Lost) => ClockMode::Lost,
        };
        let gps_config = self.running_config().gps;
        let gps = (!gps_config.is_empty()).then(|| {
            let status = self.refclocks.status();
            // A SOCK socket without NMEA carries whole samples, not pulses.
            let pps_input = gps_config.pps.is_some()
                || gps_config.pps_gpio.is_some()
                || (gps_config.sock.is_some() && gps_config.device.is_some());
            let accepted = status.source(SourceId::Pps).map_or(0, |s| s.stats.samples);
            GpsObservation {
                nmea_lines: gps_config.device.as_ref().map(|_| status.lines.lines),
                fix_valid: status.fix.valid,
                satellites: status.fix.satellites,
                pps: pps_input.then_some(PpsCounters {
                    pulses: status.pairing.pulses,
                    accepted,
                }),
                pps_device: status.source(SourceId::Pps).map(|s| s.name.clone()),
                nmea_device: gps_config.device.as_ref().map(|d| d.display().to_string()),
            }
        });
        let mut o = Observation {
            now: unix(at),
            gps,
            clock: ClockObservation {
                mode,
                served_stratum: sync.stratum,
                steps: clock.as_ref().map_or(0, |c| c.tracking.counters.steps),
            },
            certificate_not_after: *self
                .served_not_after
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            leap_table_expired: clock.as_ref().and_then(|c| c.leap_table_expired),
            update: None,
            integrity: None,
            upstream: None,
        };
        if self.upstreams.configured() > 0 {
            let members = self.upstreams.status();
            o.integrity = Some(super::upstream::integrity_observation(
                &members,
                clock.as_ref(),
                &sync,
            ));
            o.upstream = Some(super::upstream::upstream_observation(
                &members,
                clock.as_ref(),
            ));
        }
        o
    }

    fn sample(&self) -> Sample {
        let at = now();
        let clock = self.clock.snapshot();
        let tracking = self.tracking();
        let following = matches!(
            clock.as_ref().map(|c| c.tracking.mode),
            Some(Mode::Tracking | Mode::Holdover { .. })
        ) && tracking.stratum < 16;
        let pps_jitter = clock.as_ref().and_then(|c| {
            c.sources
                .iter()
                .find(|s| s.index == SourceId::Pps.index() && s.samples > 1)
                .map(|s| s.stddev_s)
        });
        let status = (!self.running_config().gps.is_empty()).then(|| self.refclocks.status());
        let satellites = status
            .as_ref()
            .filter(|s| s.fix.valid)
            .and_then(|s| s.fix.satellites)
            .map(u32::from);
        let (secs, nanos) = at.to_unix(0);
        Sample {
            at: secs as f64 + f64::from(nanos) * 1e-9,
            synchronized: following,
            offset: tracking.system_time_offset,
            frequency: tracking.frequency,
            pps_jitter,
            satellites,
            requests: self.stats.snapshot().received,
        }
    }
}
