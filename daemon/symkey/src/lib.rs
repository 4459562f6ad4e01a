//! # skytime-symkey: NTP symmetric-key authentication, sans IO
//!
//! The classic way for two NTP servers to trust each other: a key both
//! hold, and a MAC after the header of every packet (RFC 5905 section
//! 7.3; AES-CMAC as RFC 8573 recommends). Keys come from a file in
//! chrony's format, so the tutorials' `keyfile` works as it is:
//!
//! ```text
//! # ID  TYPE    KEY
//! 1     SHA1    HEX:ABEF1022...
//! 2     AES128  HEX:5B4F...      (exactly 128 bits)
//! 3     ASCII:secret             (type MD5 when left out)
//! ```
//!
//! - [`keyfile`]: parsing that file (errors name the line, never the key).
//! - [`mac`]: the MAC of each type, computed and checked as chrony does
//!   (hashes over key ‖ packet, truncated to 20 bytes in NTPv4 packets;
//!   CMAC over the packet).
//! - [`packet`]: where a packet's MAC is (chrony's parsing rules, which
//!   tell a MAC from NTPv4 extension fields), appending one, and the
//!   crypto-NAK.
//!
//! ```
//! use skytime_symkey::{keyfile::KeyFile, packet};
//! let keys = KeyFile::parse("7 AES128 HEX:000102030405060708090a0b0c0d0e0f\n").unwrap();
//! let mut request = vec![0x23u8; 48];
//! packet::append_mac(&mut request, keys.get(7).unwrap());
//! match packet::parse(&request) {
//!     packet::Auth::Mac(m) => assert!(m.verify(&request, keys.get(7).unwrap())),
//!     other => panic!("{other:?}"),
//! }
//! ```

pub mod keyfile;
pub mod mac;
pub mod packet;

pub use keyfile::{Key, KeyFile, KeyFileError};
pub use mac::KeyType;
