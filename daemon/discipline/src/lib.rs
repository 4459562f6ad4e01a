//! # skytime-discipline: samples in, clock adjustments out
//!
//! The sans-IO core of skytime's clock discipline. Time sources deliver
//! [`Sample`]s (offset = reference - local, NTP's theta sign); the
//! [`Discipline`] selects sources ([`select`]; network sources judge the
//! GPS, [`integrity`]), estimates offset and
//! frequency with a bank of two-state Kalman filters ([`kalman`]), steers
//! through [`Actions`] that a [`Clock`] applies (frequency and slews, steps
//! only under the makestep rule), runs holdover when the sources go away,
//! arms leap seconds from the tzdata table ([`leap`]) and publishes the
//! [`skytime_proto::SyncState`] that NTP replies carry.
//!
//! Nothing here reads a clock or touches a file: every call takes `now`.
//! skytimed's `clock` module is the I/O (adjtimex, drift file, leap file);
//! `skytime-sim` drives the same code against [`clock::SimClock`].
//!
//! ```text
//! let (mut d, first) = Discipline::new(cfg, clock.now()?, clock.frequency_ppm()?, drift);
//! first.apply(&mut clock)?;
//! for each sample: d.handle_sample(clock.now()?, &sample).apply(&mut clock)?;
//! (network sources: d.handle_network_sample(now, &sample, &upstream))
//! every second or at Actions::wakeup: d.tick(clock.now()?).apply(&mut clock)?;
//! publish d.sync_state(now); save d.drift() now and then.
//! ```

pub mod clock;
pub mod discipline;
pub mod drift;
pub mod integrity;
pub mod kalman;
pub mod leap;
pub mod sample;
pub mod select;
pub mod sourcestats;

pub use clock::{Actions, Clock, KernelLeap, KernelStatus, SimClock};
pub use discipline::{Discipline, DisciplineConfig, Mode, SourceReport, Tracking};
pub use drift::Drift;
pub use integrity::{Distrust, IntegrityConfig, IntegrityReport};
pub use leap::{LeapMode, LeapTable, SmearShape};
pub use sample::{NetRole, Sample, SourceKind, Upstream};
pub use select::SelectState;
