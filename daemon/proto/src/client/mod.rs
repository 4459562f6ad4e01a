//! The NTP client, sans IO: one [`Association`] per upstream server.
//!
//! The association decides when to poll ([`poll`]: iburst, minpoll to
//! maxpoll, backoff while unreachable or told to slow down), builds each
//! request with a random transmit timestamp that identifies it
//! ([`exchange`]), checks every reply against the one request it may
//! answer (origin timestamp, mode, timestamps, kiss codes: anything else
//! is dropped, counted by reason), and passes the measurements through a
//! clock filter that prefers low-delay samples ([`filter`], RFC 5905
//! section 10). The caller owns the socket, the clock and the randomness:
//!
//! ```
//! use skytime_proto::client::{Association, ClientConfig, ReplyOutcome};
//! use skytime_proto::{NtpDuration, NtpHeader, NtpTimestamp};
//! let mut a = Association::new(ClientConfig::default(), 0.0);
//! let t1 = NtpTimestamp::from_unix(1_800_000_000, 0);
//! // When a.next_poll() is due: send these bytes.
//! let request = a.poll(0.0, t1, 0x1234_5678_9abc_def0).unwrap();
//! // A server's reply (here made up from the request).
//! let (mut h, _) = NtpHeader::parse(&request).unwrap();
//! h.mode = skytime_proto::Mode::Server;
//! h.stratum = 1;
//! h.leap = skytime_proto::LeapIndicator::NoWarning;
//! h.origin_timestamp = h.transmit_timestamp;
//! h.receive_timestamp = t1 + NtpDuration::from_seconds_f64(0.0105);
//! h.transmit_timestamp = h.receive_timestamp;
//! let t4 = t1 + NtpDuration::from_seconds_f64(0.001);
//! match a.handle_reply(&h, t4, 0.001) {
//!     ReplyOutcome::Accepted(Some(s)) => assert!((s.measurement.offset - 0.010).abs() < 1e-6),
//!     other => panic!("{other:?}"),
//! }
//! ```

mod association;
pub mod exchange;
pub mod filter;
pub mod poll;

pub use association::{
    Association, AssociationState, ClientConfig, ClientCounters, ReplyOutcome, SourceSample,
};
pub use exchange::{KissCode, Measurement, ReplyDrop};
