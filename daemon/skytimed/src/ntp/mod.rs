//! The NTP server: UDP sockets with kernel receive timestamps ([`io`]),
//! the serve loop around `skytime-proto`'s decisions ([`server`]), the
//! settings that change live (access rules and rate limit, [`policy`]),
//! the per-client table ([`clients`]), the counters ([`stats`]) and the
//! `[ntp]` section of the configuration ([`config`]).
//!
//! Bind sockets with [`NtpSocket::bind`], then run one [`serve`] task per
//! socket over a shared [`ServerContext`].

pub mod clients;
pub mod config;
pub mod io;
pub mod policy;
pub mod server;
pub mod stats;

pub use clients::Clients;
pub use config::NtpConfig;
pub use io::NtpSocket;
pub use policy::{PolicyPublisher, ServePolicy};
pub use server::{serve, ServerContext};
pub use stats::{ServerStats, StatsSnapshot};
