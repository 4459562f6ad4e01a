//! # skytime-persist: the appliance's files
//!
//! Shared by skytimed and the management gateway (`skytime-mgmtd`), which
//! both keep state and a TLS identity of their own on the data partition
//! of a read-only appliance:
//!
//! - [`atomic_write`]: replace a file so that a crash leaves the old or
//!   the new contents, never a mix (temporary file, fsync, rename, fsync
//!   of the directory), with an exact mode (0600 for keys); every state
//!   file of skytimed, the gateway and the update store is written this
//!   way, and [`atomic_write_steps`] lets tests fail or crash the
//!   sequence at each [`Step`].
//! - [`pair`]: two files that change together (certificate and key):
//!   both old or both new after a crash, once a reader has called
//!   [`pair::recover_pair`].
//! - [`toml_file`]: configuration files, with errors that name the file
//!   and line.
//! - [`identity`]: a self-signed end-entity TLS certificate for the
//!   appliance's names and addresses (`CA:FALSE`, valid 2000 to 9999: an
//!   appliance without RTC may make it while its clock says 1970), the
//!   addresses the machine has now, and certificate fingerprints.
//!
//! ```no_run
//! let (cert_pem, key_pem) =
//!     skytime_persist::identity::self_signed("ntp1", &[], "skytime NTS").unwrap();
//! skytime_persist::atomic_write("/var/lib/skytime/key.pem".as_ref(), key_pem.as_bytes(), 0o600).unwrap();
//! ```

pub mod atomic;
pub mod identity;
pub mod pair;
pub mod toml_file;

pub use atomic::{
    atomic_write, atomic_write_modeless, atomic_write_steps, Fault, FaultAt, FaultAtCall, Step,
    Steps,
};
