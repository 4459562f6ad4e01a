//! # skytimed: the skytime daemon
//!
//! The I/O shell around the sans-IO cores. It reads the configuration
//! ([`config`]), opens the NTP sockets with kernel receive timestamps
//! ([`ntp_io`]), answers requests with the decisions of `skytime-proto`
//! ([`ntp_server`]) under the live access list and rate limit
//! ([`ntp_policy`]), runs NTS ([`nts`]), the reference clocks
//! ([`refclock`]) and the clock discipline ([`clock`]), offers the
//! management API on D-Bus ([`dbus`] over [`appliance`]), talks to systemd
//! ([`notify`]), and ties them together with signals and shutdown
//! ([`daemon`]).
//!
//! The binary is a thin `main` over [`daemon::run`]; tests and tools use
//! the modules directly.

pub mod appliance;
pub mod clients;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dbus;
pub mod logging;
pub mod notify;
pub mod ntp_io;
pub mod ntp_policy;
pub mod ntp_server;
pub mod nts;
pub mod persist;
pub mod refclock;
pub mod stats;
