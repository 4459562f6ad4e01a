//! # skytime-proto: the NTP protocol core, without I/O
//!
//! This crate holds everything about NTPv4 (RFC 5905) that can be decided
//! from bytes, addresses and timestamps alone: the wire formats
//! ([`time`], [`packet`]), what the server says about its own clock
//! ([`sync_state`], and the leap [`smear`] it applies), who may ask
//! ([`access`]), what it remembers per client ([`client_log`]), the
//! whole decision for a datagram ([`server`]: access, rate limit, NTS
//! through a trait that skytime-nts implements, kiss-o'-death, smear,
//! basic or interleaved mode), and the client side: polling an upstream
//! server, checking its replies and filtering the measurements
//! ([`client`]). It reads no clock, owns no socket and allocates nothing
//! per request on the server side: callers pass the time in, own the
//! buffers and carry out the decision, which is what makes the server
//! testable exhaustively, cheap to fuzz and measurable on its own.
//!
//! Serving one request:
//! ```
//! use skytime_proto::server::{Context, Handled, Incoming, NoNts, Server};
//! use skytime_proto::{access::AccessList, sync_state::SyncState, time::NtpTimestamp};
//! let mut request = [0u8; 48];
//! request[0] = 0x23; // LI 0, version 4, mode 3 (client)
//! let acl = AccessList::allow_all();
//! let sync = SyncState::local(10, -20, NtpTimestamp::from_unix(1_800_000_000, 0));
//! let ctx = Context { acl: &acl, rate_limit: None, sync: &sync, leap_applied: false };
//! let mut server: Server<NoNts> = Server::new(64, None, false);
//! let incoming = Incoming {
//!     data: &request,
//!     remote: "127.0.0.1:40000".parse().unwrap(),
//!     received: NtpTimestamp::from_unix(1_800_000_001, 0), // kernel receive timestamp
//! };
//! let mut out = [0u8; 48];
//! let Handled::Reply(reply) = server.handle(&ctx, &incoming, &mut out) else { panic!() };
//! // Read the clock as late as possible, then:
//! let transmit = NtpTimestamp::from_unix(1_800_000_001, 20_000);
//! let (len, _) = server.finish(&reply, transmit, &mut out).unwrap();
//! assert_eq!((len, out[1]), (48, 10)); // stratum 10
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
