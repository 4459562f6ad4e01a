//! Atomic writes of persistent state (keys, drift, configuration): see
//! [`skytime_persist::atomic_write`], shared with the management gateway.

pub use skytime_persist::atomic_write;
