//! # skytime-refclock: GPS reference clocks, sans-IO
//!
//! Everything here takes bytes and timestamps as arguments and returns
//! samples and decisions; the daemon (`skytimed::refclock`) reads the
//! serial ports, PPS devices, GPIO lines and sockets, and says what time
//! each read was taken at.
//!
//! [`Pipeline`] is the whole path in one state machine: serial bytes,
//! pulse edges and SOCK datagrams in, [`RefSample`]s, [`Note`]s for the
//! log and a [`RefclockStatus`] out. Its stages:
//! 1. [`line::LineAssembler`] cuts the serial chunks into lines and stamps
//!    each at the arrival of its first byte.
//! 2. [`sentence::parse`] checks the checksum and reads RMC, ZDA and GGA.
//! 3. [`gpstime::NmeaClock`] groups a second's sentences into an epoch and
//!    names the second when the fix is valid (leap second, GPS week
//!    rollover and two-digit years handled).
//! 4. [`pairing::Pairing`] pairs named seconds with PPS edges: PPS gives
//!    the phase, NMEA the second. It estimates the NMEA-to-PPS delay and
//!    derives the coarse NMEA-only sample.
//!
//! PPS edges come from the kernel PPS API or a GPIO line (read by the
//! daemon) or from chrony's SOCK protocol ([`sock`], decoded here).
//! [`stats`] keeps the per-source figures that status reports show.
//!
//! ```text
//! let mut p = Pipeline::new(config, sources);
//! let mut out = Output::default();
//! on serial bytes read at t:   p.serial_bytes(&bytes, t, &mut out);
//! on a PPS edge at t:          p.pulse(t, missed, synchronized, &mut out);
//! on a SOCK datagram:          p.sock_datagram(&bytes, synchronized, &mut out);
//! a few times a second:        p.poll(now, synchronized, &mut out);
//! once a second:               p.reach_tick(now);
//! then hand out.samples to the discipline, log out.notes, out.clear().
//! ```

pub mod gpstime;
pub mod line;
pub mod pairing;
pub mod pipeline;
pub mod sentence;
pub mod sock;
pub mod stats;
pub mod status;

pub use gpstime::{FixStatus, NmeaClock, NmeaFix};
pub use line::{Line, LineAssembler};
pub use pairing::{Accepted, DelayReport, Pairing, PairingConfig, PulseDecision, Reject};
pub use pipeline::{Note, Output, Pipeline, PipelineConfig, RefSample};
pub use sentence::{Sentence, SentenceError};
pub use sock::{SockSample, SOCK_MAGIC};
pub use stats::SourceStats;
pub use status::{RefclockStatus, SourceId, SourceStatus};
