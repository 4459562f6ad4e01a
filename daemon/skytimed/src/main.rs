//! skytimed entry point (in progress).
fn main() {}
