//! The NTP server threads: receive a batch, decide (skytime-proto), reply
//! with a batch.
//!
//! Each socket (one per thread and address, see [`super::io`]) is served
//! by an OS thread of its own that blocks in `recvmmsg`: no runtime, no
//! task hand-over and no readiness round trip on the request path. The
//! decision and the per-thread state (client table, NTS ciphers) are
//! skytime-proto's [`Server`]; this file moves bytes, reads the clock for
//! each transmit timestamp as late as it can, reads back the kernel's
//! transmit timestamps for interleaved clients, and counts. What changes
//! while the server runs (access rules and rate limit, the sync state,
//! the NTS master keys) is looked up once per batch, each with one atomic
//! load when nothing changed. Requests with a symmetric-key MAC
//! (`[keys] file`) are judged here, before the decision, which sees only
//! their header; the reply gets its MAC once its header is final.

use super::clients::Clients;
use super::io::{Batch, NtpSocket, BATCH};
use super::policy::{PolicyPublisher, PolicyView};
use super::stats::{ServerStats, ThreadStats};
use crate::clock::realtime;
use crate::keys::server::{self as symmetric, Verdict as SymVerdict};
use crate::notify::Beat;
use crate::nts::keystore::KeyStore;
use crate::nts::NtsService;
use rand::SeedableRng;
use skytime_nts::server::NtsServer;
use skytime_proto::server::{
    Context, DropReason, Handled, Incoming, Prepared, ReplyKind, Server, TxTicket,
};
use skytime_proto::{NtpTimestamp, SyncState, HEADER_LEN};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The server decision with this daemon's NTS, one per thread.
pub type ThreadServer = Server<NtsServer<rand::rngs::StdRng>>;

/// What every server thread shares.
#[derive(Debug)]
pub struct ServerContext {
    /// Access list and rate limit: changed live by `Config.Apply`, so
    /// each thread reads its own copy (see [`super::policy`]).
    pub policy: Arc<PolicyPublisher>,
    pub sync: watch::Receiver<SyncState>,
    pub nts: Arc<NtsService>,
    pub stats: Arc<ServerStats>,
    pub clients: Arc<Clients>,
    /// Symmetric keys (`[keys] file`): requests with a MAC get one back.
    pub keys: Option<Arc<skytime_symkey::KeyFile>>,
}

/// How many threads serve each address: one per CPU this process may run
/// on (a process pinned to one core gets one), at most 16.
pub fn threads_per_address() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16))
}

/// Starts one thread per socket. `health` registers each as loop `ntp`.
pub fn spawn_threads(
    groups: Vec<Vec<NtpSocket>>,
    ctx: &ServerContext,
    health: Option<&crate::notify::Health>,
    max_silence: std::time::Duration,
    shutdown: &CancellationToken,
) -> io::Result<Vec<JoinHandle<()>>> {
    let threads: usize = groups.iter().map(Vec::len).sum();
    let per_thread = ctx.clients.per_thread(threads);
    let mut handles = Vec::with_capacity(threads);
    for (n, socket) in groups.into_iter().flatten().enumerate() {
        let beat = health.map(|h| h.register("ntp", max_silence));
        let mut worker = Worker::new(socket, ctx, per_thread, beat, shutdown, realtime::read);
        let name = format!("skytimed-ntp{n}");
        handles.push(
            std::thread::Builder::new()
                .name(name)
                .spawn(move || worker.run())?,
        );
    }
    Ok(handles)
}

/// Replies in flight whose kernel transmit timestamps are expected, by
/// the number the kernel gives each (it counts, per socket, the sends
/// that asked for one).
#[derive(Debug)]
struct Tickets {
    next_id: u32,
    ring: [Option<(u32, TxTicket)>; 64],
    outstanding: usize,
}

impl Default for Tickets {
    fn default() -> Self {
        Self {
            next_id: 0,
            ring: [None; 64],
            outstanding: 0,
        }
    }
}

impl Tickets {
    fn push(&mut self, ticket: TxTicket) {
        let id = self.next_id;
        self.next_id = id.wrapping_add(1);
        let slot = &mut self.ring[id as usize % 64];
        if slot.is_none() {
            self.outstanding += 1;
        }
        *slot = Some((id, ticket));
    }

    fn take(&mut self, id: u32) -> Option<TxTicket> {
        let slot = &mut self.ring[id as usize % 64];
        match *slot {
            Some((i, t)) if i == id => {
                *slot = None;
                self.outstanding -= 1;
                Some(t)
            }
            _ => None,
        }
    }
}

/// A reply between decision and transmit timestamp: (slot, reply,
/// destination, source address, symmetric-key trailer).
type PreparedReply = (
    usize,
    Prepared<skytime_nts::server::Pending>,
    SocketAddr,
    Option<IpAddr>,
    Option<Trailer>,
);

/// What a reply to a request with a symmetric-key MAC ends with.
#[derive(Clone, Copy, Debug)]
enum Trailer {
    /// The key's ID and the MAC of the reply under it.
    Mac(u32),
    /// A crypto-NAK (a key ID of zero, RFC 5905 7.4): the key is unknown.
    CryptoNak,
}

impl Trailer {
    /// Appends the trailer to the reply in `out[..len]`; the new length.
    /// Never longer than the request: the same key and version give a
    /// MAC of the same length.
    fn append(
        self,
        keys: &skytime_symkey::KeyFile,
        out: &mut [u8],
        len: usize,
    ) -> Result<usize, DropReason> {
        let tail: Vec<u8> = match self {
            Trailer::CryptoNak => vec![0; 4],
            Trailer::Mac(id) => {
                let key = keys.get(id).ok_or(DropReason::BadMac)?;
                let version = (out[0] >> 3) & 0b111;
                let mut tail = id.to_be_bytes().to_vec();
                tail.extend(key.generate(&out[..len], version));
                tail
            }
        };
        let end = len + tail.len();
        out.get_mut(len..end)
            .ok_or(DropReason::SealFailed)?
            .copy_from_slice(&tail);
        Ok(end)
    }
}

/// How a server thread reads the system clock (a test makes it fail).
type ReadClock = fn() -> nix::Result<NtpTimestamp>;

struct Worker {
    clock: ReadClock,
    socket: NtpSocket,
    server: Arc<Mutex<ThreadServer>>,
    stats: Arc<ThreadStats>,
    policy: PolicyView,
    sync: watch::Receiver<SyncState>,
    sync_now: SyncState,
    keys: Option<Arc<KeyStore>>,
    key_generation: u64,
    batch: Batch,
    symmetric_keys: Option<Arc<skytime_symkey::KeyFile>>,
    /// The batch's replies between decision and transmit timestamp.
    prepared: Vec<PreparedReply>,
    slot_tickets: [Option<TxTicket>; BATCH],
    ticket_order: Vec<usize>,
    tickets: Tickets,
    health: Option<Beat>,
    shutdown: CancellationToken,
}

impl Worker {
    fn new(
        socket: NtpSocket,
        ctx: &ServerContext,
        table_size: usize,
        health: Option<Beat>,
        shutdown: &CancellationToken,
        clock: ReadClock,
    ) -> Self {
        let nts = ctx.nts.ntp_processor(rand::rngs::StdRng::from_entropy());
        let keys = nts.as_ref().and(ctx.nts.key_store().cloned());
        let server = Arc::new(Mutex::new(Server::new(table_size, nts, ctx.nts.required())));
        ctx.clients.register(server.clone());
        Self {
            clock,
            socket,
            server,
            stats: ctx.stats.add_thread(),
            policy: ctx.policy.view(),
            sync_now: *ctx.sync.borrow(),
            sync: ctx.sync.clone(),
            key_generation: keys.as_ref().map_or(0, |k| k.generation()),
            keys,
            symmetric_keys: ctx.keys.clone(),
            batch: Batch::default(),
            prepared: Vec::with_capacity(BATCH),
            slot_tickets: [None; BATCH],
            ticket_order: Vec::with_capacity(BATCH),
            tickets: Tickets::default(),
            health,
            shutdown: shutdown.clone(),
        }
    }

    fn run(&mut self) {
        loop {
            if let Some(h) = &self.health {
                h.beat();
            }
            if self.shutdown.is_cancelled() {
                return;
            }
            let n = match self.batch.recv(&self.socket) {
                Ok(n) => n,
                Err(e) => {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) {
                        // ICMP errors from earlier replies surface here;
                        // they say nothing about the next datagram.
                        tracing::debug!(local = %self.socket.local_addr(), "recvmmsg: {e}");
                    }
                    continue;
                }
            };
            self.refresh();
            if self.tickets.outstanding > 0 {
                self.read_tx_timestamps();
            }
            self.serve_batch(n);
            let (sent, failed) = self.batch.send(&self.socket, &mut self.ticket_order);
            self.stats.replied(sent as u64);
            for _ in 0..failed {
                self.stats.dropped(DropReason::SendFailed);
            }
            for slot in self.ticket_order.drain(..) {
                if let Some(t) = self.slot_tickets[slot].take() {
                    self.tickets.push(t);
                }
            }
            if self.tickets.outstanding > 0 {
                self.read_tx_timestamps();
            }
        }
    }

    /// Takes what changed since the last batch.
    fn refresh(&mut self) {
        self.policy.refresh();
        if self.sync.has_changed().unwrap_or(false) {
            self.sync_now = *self.sync.borrow_and_update();
        }
    }

    fn serve_batch(&mut self, n: usize) {
        // One reference count per batch, so the keys outlive the borrows
        // of the batch below.
        let symmetric_keys = self.symmetric_keys.clone();
        let symmetric_keys = symmetric_keys.as_deref();
        let mut server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = &self.keys {
            let generation = store.generation();
            if generation != self.key_generation {
                self.key_generation = generation;
                if let Some(nts) = server.nts_mut() {
                    nts.set_keys(store.current());
                }
            }
        }
        let sync = self.sync_now;
        // Only near a leap in smear mode; the kernel's leap state settles
        // the repeated second.
        let leap_applied = sync.smear.is_some() && crate::clock::KernelClock::leap_in_progress();
        let policy = self.policy.get();
        let ctx = Context {
            acl: &policy.acl,
            rate_limit: policy.rate_limit,
            sync: &sync,
            leap_applied,
        };
        for i in 0..n {
            let Some((data, rx, out)) = self.batch.datagram(i) else {
                continue;
            };
            self.stats.received(rx.timestamp.is_some());
            // Where the kernel gave no timestamp, the clock now; where the
            // clock cannot be read either, no reply (never 1970).
            let Some(received) = rx.timestamp.or_else(|| (self.clock)().ok()) else {
                self.stats.dropped(DropReason::ClockFailed);
                continue;
            };
            // A MAC is not an extension field: the decision sees the
            // header only, and the trailer is added to its reply.
            let (data, trailer) = match symmetric_keys.map(|k| symmetric::verdict(data, k)) {
                Some(SymVerdict::BadMac(_)) => {
                    self.stats.dropped(DropReason::BadMac);
                    continue;
                }
                Some(SymVerdict::Authentic(key)) => {
                    (&data[..HEADER_LEN], Some(Trailer::Mac(key.id)))
                }
                Some(SymVerdict::UnknownKey(_)) => (&data[..HEADER_LEN], Some(Trailer::CryptoNak)),
                Some(SymVerdict::NotSymmetric) | None => (data, None),
            };
            let incoming = Incoming {
                data,
                remote: rx.remote,
                received,
            };
            match server.handle(&ctx, &incoming, out) {
                Handled::Dropped(reason) => self.stats.dropped(reason),
                Handled::Reply(p) => self.prepared.push((i, p, rx.remote, rx.local_ip, trailer)),
            }
        }
        for (slot, reply, to, from, trailer) in self.prepared.drain(..) {
            // The transmit timestamp is read as late as possible: after
            // every decision, just before the header (and the NTS seal
            // that covers it) is written.
            let Ok(transmit) = (self.clock)() else {
                self.stats.dropped(DropReason::ClockFailed);
                continue;
            };
            let out = self.batch.reply_buffer(slot);
            let finished = server
                .finish(&reply, transmit, out)
                .and_then(|(len, ticket)| match (trailer, symmetric_keys) {
                    (Some(t), Some(keys)) => Ok((t.append(keys, out, len)?, ticket)),
                    _ => Ok((len, ticket)),
                });
            match finished {
                Ok((len, ticket)) => {
                    match reply.kind() {
                        ReplyKind::Nts => self.stats.nts_replied(),
                        ReplyKind::NtsNak => self.stats.nts_nak(),
                        ReplyKind::RateKod => self.stats.rate_kod(),
                        ReplyKind::Ntp => {}
                    }
                    match trailer {
                        Some(Trailer::Mac(_)) => self.stats.key_replied(),
                        Some(Trailer::CryptoNak) => self.stats.crypto_nak(),
                        None => {}
                    }
                    if reply.is_interleaved() {
                        self.stats.interleaved();
                    }
                    self.slot_tickets[slot] = ticket;
                    self.batch.queue(slot, len, to, from, ticket.is_some());
                }
                Err(reason) => self.stats.dropped(reason),
            }
        }
        self.stats
            .set_clients(server.clients().map_or(0, |c| c.len()));
    }

    /// Hands the kernel's transmit timestamps to the decision, for the
    /// clients' next interleaved replies.
    fn read_tx_timestamps(&mut self) {
        let Worker {
            batch,
            socket,
            server,
            tickets,
            stats,
            ..
        } = self;
        let mut server = server.lock().unwrap_or_else(|e| e.into_inner());
        let n = batch.read_tx_timestamps(socket, |t| {
            if let Some(ticket) = tickets.take(t.id) {
                server.kernel_transmit(&ticket, t.timestamp);
            }
        });
        stats.kernel_tx_timestamps(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::{io, Clients, PolicyPublisher, ServePolicy};
    use skytime_proto::access::AccessList;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// A server thread whose clock cannot be read answers nothing (never
    /// a 1970 timestamp) and counts why; with the clock back, it answers.
    #[tokio::test]
    async fn a_clock_that_cannot_be_read_is_never_served() {
        let nts = crate::nts::NtsService::start(
            &crate::nts::NtsConfig::default(),
            std::path::Path::new("/nonexistent"),
            &[],
            CancellationToken::new(),
        )
        .await
        .unwrap();
        let stats = Arc::new(ServerStats::default());
        let (_tx, sync) = watch::channel(SyncState::local(3, -20, realtime::read().unwrap()));
        let ctx = ServerContext {
            policy: Arc::new(PolicyPublisher::new(ServePolicy {
                acl: AccessList::allow_all(),
                rate_limit: None,
            })),
            sync,
            nts: Arc::new(nts),
            stats: stats.clone(),
            clients: Arc::new(Clients::new(64, stats.clone())),
            keys: None,
        };
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut request = [0u8; 48];
        request[0] = 0x23;
        let mut buf = [0u8; 64];
        let broken: ReadClock = || Err(nix::errno::Errno::EINVAL);
        for (clock, answered) in [(broken, false), (realtime::read as ReadClock, true)] {
            let socket = io::bind_group("127.0.0.1:0".parse().unwrap(), 1)
                .unwrap()
                .remove(0);
            let to = socket.local_addr();
            let shutdown = CancellationToken::new();
            let mut worker = Worker::new(socket, &ctx, 64, None, &shutdown, clock);
            let thread = std::thread::spawn(move || worker.run());
            client.send_to(&request, to).unwrap();
            let reply = client.recv(&mut buf);
            shutdown.cancel();
            thread.join().unwrap();
            assert_eq!(reply.is_ok(), answered, "{reply:?}");
            if answered {
                assert_eq!(buf[1], 3, "stratum");
                let tx = u32::from_be_bytes([buf[40], buf[41], buf[42], buf[43]]);
                assert!(tx > 3_900_000_000, "a transmit timestamp of today");
            }
        }
        let snap = stats.snapshot();
        let failed = snap
            .dropped
            .iter()
            .find(|(n, _)| *n == "clock_failed")
            .unwrap()
            .1;
        assert_eq!((failed, snap.replied), (1, 1), "{snap}");
    }
}
