//! The per-client tables of the NTP server, for the management API.
//!
//! Each server thread owns the table of the clients steered to it (inside
//! its [`ThreadServer`], behind a mutex that thread takes once per batch);
//! this view reads them all when an operator asks (`skytimectl clients`)
//! and counts clients without reading any table (the threads keep the
//! count current in their statistics).

use super::stats::ServerStats;
use super::ThreadServer;
use skytime_proto::client_log::ClientEntry;
use std::sync::{Arc, Mutex};

/// Per-client statistics of every server thread.
#[derive(Debug)]
pub struct Clients {
    capacity: usize,
    servers: Mutex<Vec<Arc<Mutex<ThreadServer>>>>,
    stats: Arc<ServerStats>,
}

impl Clients {
    /// Room for about `capacity` clients in all (0 keeps no per-client
    /// data), counted in `stats`.
    pub fn new(capacity: usize, stats: Arc<ServerStats>) -> Self {
        Self {
            capacity,
            servers: Mutex::default(),
            stats,
        }
    }

    /// The table size of each of `threads` server threads.
    pub fn per_thread(&self, threads: usize) -> usize {
        self.capacity.div_ceil(threads.max(1))
    }

    pub fn register(&self, server: Arc<Mutex<ThreadServer>>) {
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(server);
    }

    /// Every known client, most recently seen first.
    pub fn snapshot(&self) -> Vec<ClientEntry> {
        let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = Vec::new();
        for s in servers.iter() {
            let server = s.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(log) = server.clients() {
                all.extend(log.entries());
            }
        }
        all.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
        all
    }

    /// How many clients the tables hold.
    pub fn len(&self) -> usize {
        self.stats.clients()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
