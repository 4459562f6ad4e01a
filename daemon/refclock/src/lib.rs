//! # skytime-refclock: GPS reference clocks, sans-IO
//!
//! Everything here takes bytes and timestamps as arguments and returns
//! decisions; the daemon (`skytimed::refclock`) does the reading of serial
//! ports, PPS devices, GPIO lines and sockets.
//!
//! The path of an NMEA byte stream:
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
//! PPS edges come from the kernel PPS API ([`pps_uapi`]), a GPIO line
//! ([`gpio_uapi`]) or chrony's SOCK protocol ([`sock`]). [`stats`] keeps
//! the per-source figures that status reports show.

pub mod gpio_uapi;
pub mod gpstime;
pub mod line;
pub mod pairing;
pub mod pps_uapi;
pub mod sentence;
pub mod sock;
pub mod stats;

pub use gpstime::{FixStatus, NmeaClock, NmeaFix};
pub use line::{Line, LineAssembler};
pub use pairing::{Accepted, DelayReport, Pairing, PairingConfig, PulseDecision, Reject};
pub use sentence::{Sentence, SentenceError};
pub use sock::{SockSample, SOCK_MAGIC};
pub use stats::SourceStats;
