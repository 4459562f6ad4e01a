//! Atomic writes of persistent state (keys, drift, configuration): see
//! [`skytime_persist::atomic_write`], shared with the management gateway.
//! [`off_the_runtime`] for writes made from async code.

pub use skytime_persist::atomic_write;

/// Runs `write` (disk work that ends in an fsync) from async code so that
/// the runtime's other tasks move to another worker while it waits. An
/// fsync on the appliance's SD card can wait seconds behind other I/O (an
/// update writing a slot); on one worker that would hold up, for example,
/// the D-Bus connection's reads. On a current-thread runtime (unit tests)
/// it simply runs.
pub fn off_the_runtime<T>(write: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(write)
        }
        _ => write(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_and_without_a_runtime() {
        assert_eq!(off_the_runtime(|| 1), 1);
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(current.block_on(async { off_the_runtime(|| 2) }), 2);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let spawned =
            multi.block_on(async { tokio::spawn(async { off_the_runtime(|| 3) }).await.unwrap() });
        assert_eq!(spawned, 3);
        assert_eq!(multi.block_on(async { off_the_runtime(|| 4) }), 4);
    }
}
