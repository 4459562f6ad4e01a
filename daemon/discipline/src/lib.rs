//! skytime-discipline (in progress): samples in, clock adjustments out.

pub mod sample;

pub use sample::{Sample, SourceKind};
