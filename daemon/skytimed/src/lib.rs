//! # skytimed: the skytime daemon
//!
//! The I/O shell around the sans-IO cores. It reads the configuration
//! ([`config`], with the managed file's apply and reload), serves NTP
//! ([`ntp`]: sockets with kernel receive timestamps, the decisions of
//! `skytime-proto`, the live access list and rate limit, client table and
//! counters), runs NTS ([`nts`]), the reference clocks ([`refclock`]) and
//! the clock discipline ([`clock`], which also reads the system clock),
//! the upstream NTP and NTS servers it checks its GPS against and falls
//! back to ([`upstream`]), symmetric keys for clients and servers
//! ([`keys`]),
//! offers the management API of `skytime-api` on D-Bus ([`dbus`] over
//! [`appliance`]), keeps alarms and history ([`monitor`]), talks to
//! systemd ([`notify`]), manages the appliance's network settings
//! ([`network`]), and ties them together
//! with signals and shutdown ([`daemon`]).
//!
//! The binary is a thin `main` over [`daemon::run`]; tests and tools use
//! the modules directly.

pub mod appliance;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dbus;
pub mod keys;
pub mod logging;
pub mod monitor;
pub mod network;
pub mod notify;
pub mod ntp;
pub mod nts;
pub mod persist;
pub mod refclock;
pub mod update;
pub mod upstream;
