//! skytime-gpssim
fn main() {}
