//! # skytime-proto: the NTP protocol core, without I/O
//!
//! This crate holds everything about NTPv4 (RFC 5905) that can be decided
//! from bytes, addresses and timestamps alone: the wire formats
//! ([`time`], [`packet`]), what the server says about its own clock
//! ([`sync_state`], and the leap [`smear`] it applies), who may ask ([`access`]), and the reply decision for a
//! datagram ([`server`]), and the client side: polling an upstream
//! server, checking its replies and filtering the measurements
//! ([`client`]). It reads no clock and owns no socket: callers pass
//! the time in and carry out the decision, which is what makes the server
//! testable exhaustively and cheap to fuzz.
//!
//! Serving one request:
//! ```
//! use skytime_proto::{access::AccessList, server, sync_state::SyncState, time::NtpTimestamp};
//! let mut request = [0u8; 48];
//! request[0] = 0x23; // LI 0, version 4, mode 3 (client)
//! let acl = AccessList::allow_all();
//! let state = SyncState::local(10, -20, NtpTimestamp::from_unix(1_800_000_000, 0));
//! let req = server::classify(&request, "127.0.0.1:40000".parse().unwrap(), &acl).unwrap();
//! let rx = NtpTimestamp::from_unix(1_800_000_001, 0); // kernel receive timestamp
//! let reply = server::reply_header(&req.header, rx, &state);
//! let bytes = reply.finish(NtpTimestamp::from_unix(1_800_000_001, 20_000));
//! assert_eq!(bytes[1], 10); // stratum
//! ```

pub mod access;
pub mod client;
pub mod client_log;
pub mod packet;
pub mod server;
pub mod smear;
pub mod sync_state;
pub mod time;

pub use packet::{LeapIndicator, Mode, NtpHeader, ReferenceId, HEADER_LEN};
pub use sync_state::SyncState;
pub use time::{NtpDuration, NtpTimestamp};
