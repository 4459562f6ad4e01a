//! `skytimectl vm-bus` run by a test: the host's end of a VM's management
//! channel (QEMU's chardev socket for the virtio-serial port
//! org.skytime.bus), serving the guest's system bus to host D-Bus clients
//! at [`VmBus::address`]; stopped on drop.

use crate::{bin, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Debug)]
pub struct VmBus {
    relay: Child,
    /// The unix socket the relay serves on.
    pub listen: PathBuf,
    /// Its D-Bus address (`unix:path=...`).
    pub address: String,
}

impl VmBus {
    /// Starts the relay for `channel` on `listen` with `extra` options and
    /// waits until it listens.
    pub fn start(channel: &Path, listen: PathBuf, extra: &[&str]) -> Self {
        let mut relay = Command::new(bin("skytimectl"))
            .arg("vm-bus")
            .arg(channel)
            .arg("--listen")
            .arg(&listen)
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("skytimectl vm-bus");
        let up = wait_until(Duration::from_secs(10), || listen.exists().then_some(()));
        if up.is_none() {
            let _ = relay.kill();
            let _ = relay.wait();
            panic!("skytimectl vm-bus did not listen on {}", listen.display());
        }
        Self {
            relay,
            address: format!("unix:path={}", listen.display()),
            listen,
        }
    }
}

impl Drop for VmBus {
    fn drop(&mut self) {
        let _ = self.relay.kill();
        let _ = self.relay.wait();
    }
}
