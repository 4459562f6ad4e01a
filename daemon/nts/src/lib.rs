//! # skytime-nts: Network Time Security (RFC 8915), sans I/O
//!
//! Everything NTS decides, with no sockets, no TLS library, no clock and no
//! async runtime: bytes, keys and times in, decisions and bytes out. The
//! daemon (`skytimed::nts`) does the I/O around it.
//!
//! - [`record`]: NTS-KE record wire format and message framing.
//! - [`ke`]: the NTS-KE server's request check and response
//!   ([`ke::decide`], [`ke::accept_response`]), the exporter context.
//! - [`aead`]: the negotiable AEAD algorithms (AES-SIV-CMAC-256, and
//!   AES-128-GCM-SIV), the session keys, sealing and opening in place.
//! - [`siv`]: AES-SIV-CMAC-256 with its per-key work done once.
//! - [`cookie`]: cookie format and sealing under a master key.
//! - [`keyset`]: master keys, rotation schedule, key file format.
//! - [`extension`]: NTPv4 extension fields and the NTS ones.
//! - [`server`]: verifying an NTS-protected request and building the
//!   reply or NAK in place ([`server::NtsServer`], skytime-proto's
//!   `NtsProcessor`, one per server thread).
//! - [`ke_client`]: the NTS-KE client's request and the checks of a
//!   server's response.
//! - [`ntp_client`]: an upstream session's keys and cookies, requests,
//!   reply checks (NAKs included), and the session as a file.
//!
//! Randomness is passed in (`rand::RngCore + CryptoRng`); the daemon uses
//! the OS generator, tests a seeded one.

pub mod aead;
pub mod cookie;
pub mod extension;
pub mod ke;
pub mod ke_client;
pub mod keyset;
pub mod ntp_client;
pub mod record;
pub mod server;
pub mod siv;
