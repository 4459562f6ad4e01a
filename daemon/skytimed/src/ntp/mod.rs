//! The NTP server: UDP sockets with kernel timestamps ([`io`]), the
//! server threads around `skytime-proto`'s decision ([`server`]), the
//! settings that change live (access rules and rate limit, [`policy`]),
//! the view of the per-thread client tables ([`clients`]), the counters
//! ([`stats`]) and the `[ntp]` section of the configuration ([`config`]).
//!
//! Bind each address with [`io::bind_group`] (one socket per thread),
//! then start the threads with [`spawn_threads`] over a shared
//! [`ServerContext`].

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
pub use server::{spawn_threads, threads_per_address, ServerContext, ThreadServer};
pub use stats::{ServerStats, StatsSnapshot};
