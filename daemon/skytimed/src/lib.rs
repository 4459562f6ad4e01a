//! # skytimed: the skytime daemon
//!
//! The I/O shell around the sans-IO cores: it reads the configuration,
//! opens the sockets and devices, and carries out what the protocol,
//! reference-clock and discipline crates decide.

pub mod clock;
pub mod nts;
pub mod persist;
pub mod refclock;
