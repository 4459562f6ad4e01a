//! Host test support: the shared RAUC rig of `skytime-tests`
//! (`skytime_tests::rauc`), which skytimed's update tests use too.
#![allow(dead_code, unused_imports)]

pub use skytime_tests::rauc::*;
pub use skytime_tests::run_bounded;
