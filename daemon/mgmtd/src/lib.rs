//! # skytime-mgmtd: the management gateway
//!
//! The appliance's D-Bus management API (`org.skytime.Appliance1`) over
//! HTTPS for operators elsewhere on the network, with a status page and
//! metrics. It is only a D-Bus client of skytimed: a fault here never
//! stops time service, and skytimed checks the gateway as any caller.
//!
//! - TLS 1.3 only with client certificates ([`tls`], [`trust`]): the
//!   operator CAs or pinned certificates [`enrol`]led from the boot
//!   partition, each with a role, read or admin. With nothing enrolled
//!   the gateway does not listen.
//! - The JSON API ([`routes`]): one route per D-Bus member, the records
//!   of `skytime-api` as bodies, D-Bus error names kept and mapped to
//!   HTTP statuses ([`http`]); update bundles streamed to the data
//!   partition ([`upload`]).
//! - `GET /` ([`status_page`], with [`svg`] plots) and `GET /metrics`
//!   ([`metrics`]), from one [`snapshot`] of the appliance.
//! - Limits ([`listener`]: connection cap, handshake and idle timeouts;
//!   [`http`]: body caps; [`ratelimit`]: writes per client) and the
//!   [`audit`] log of every write and refusal.
//! - [`server`] ties a request to all of that; [`config`] is the file;
//!   [`appliance`] the D-Bus connection; [`identity`] the gateway's own
//!   certificate.
//!
//! The binary (`skytime-mgmtd`) serves on sockets systemd passes (socket
//! activation on port 443, so it needs no capability) or on `listen`, and
//! `skytime-mgmtd enrol --from DIR` imports operators.

pub mod appliance;
pub mod audit;
pub mod config;
pub mod enrol;
pub mod http;
pub mod identity;
pub mod listener;
pub mod metrics;
pub mod ratelimit;
pub mod role;
pub mod routes;
pub mod server;
pub mod snapshot;
pub mod status_page;
pub mod svg;
pub mod tls;
pub mod trust;
pub mod upload;
