//! The NTP server loop: receive, decide (skytime-proto), reply.
//!
//! One task per socket drains every queued datagram before waiting again,
//! so a burst costs one wake-up. The decision is the sans-IO core's; this
//! file only moves bytes, reads the clock for the transmit timestamp as late
//! as it can, and counts.

use super::clients::Clients;
use super::io::{NtpSocket, Received, RecvBatch, RECV_BUFFER};
use super::policy::{PolicyPublisher, ServePolicy};
use super::stats::ServerStats;
use crate::keys::server::{self as symmetric, Verdict as SymVerdict};
use crate::notify::Beat;
use crate::nts::{NtsService, NtsVerdict};
use skytime_proto::client_log::Event;
use skytime_proto::server::{self, DropReason};
use skytime_proto::{ReferenceId, SyncState};
use std::io;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What every socket task shares.
#[derive(Debug)]
pub struct ServerContext {
    /// Access list and rate limit: changed live by `Config.Apply`, so
    /// each task reads its own copy (see [`super::policy`]).
    pub policy: Arc<PolicyPublisher>,
    pub sync: watch::Receiver<SyncState>,
    pub nts: Arc<NtsService>,
    pub stats: Arc<ServerStats>,
    pub clients: Arc<Clients>,
    /// Symmetric keys (`[keys] file`): requests with a MAC get one back.
    pub keys: Option<Arc<skytime_symkey::KeyFile>>,
}

impl ServerContext {
    fn drop_packet(&self, rx: &Received, reason: DropReason) {
        self.stats.dropped(reason);
        self.clients
            .record(rx.remote.ip(), rx.timestamp, Event::Dropped);
    }
}

/// How often an idle serve loop tells the watchdog it is alive.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves `socket` until `shutdown` is cancelled. Several tasks may serve
/// the same socket: each wakes on readiness and drains what it can.
/// `health` is beaten after every wake-up and at least every
/// [`HEARTBEAT`], so the watchdog notices a loop that stops.
pub async fn serve(
    socket: Arc<NtpSocket>,
    ctx: Arc<ServerContext>,
    health: Option<Beat>,
    shutdown: CancellationToken,
) {
    let mut batch = RecvBatch::default();
    let mut out = Vec::with_capacity(RECV_BUFFER);
    let mut policy = ctx.policy.view();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Some(h) = &health {
            h.beat();
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = heartbeat.tick() => continue,
            r = socket.readable() => if let Err(e) = r {
                tracing::error!(local = %socket.local_addr(), "NTP socket failed: {e}");
                return;
            },
        }
        loop {
            policy.refresh();
            match socket.try_recv_batch(&mut batch) {
                Ok(n) => {
                    for i in 0..n {
                        if let Some((packet, rx)) = batch.get(i) {
                            handle(&socket, &ctx, policy.get(), packet, rx, &mut out);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors from earlier replies surface here; they say
                // nothing about the next datagram.
                Err(e) => {
                    tracing::debug!(local = %socket.local_addr(), "recvmsg: {e}");
                    break;
                }
            }
        }
    }
}

fn handle(
    socket: &NtpSocket,
    ctx: &ServerContext,
    policy: &ServePolicy,
    packet: &[u8],
    rx: Received,
    out: &mut Vec<u8>,
) {
    ctx.stats.received(rx.kernel_timestamp);
    let request = match server::classify(packet, rx.remote, &policy.acl) {
        Ok(r) => r,
        Err(reason) => return ctx.drop_packet(&rx, reason),
    };
    if let Some(limit) = &policy.rate_limit {
        if !ctx.clients.admit(rx.remote.ip(), rx.timestamp, limit) {
            return ctx.drop_packet(&rx, DropReason::RateLimited);
        }
    }
    let state = *ctx.sync.borrow();
    // Symmetric keys first: a MAC is not an NTS field (keys::server).
    let sym = match ctx.keys.as_deref().map(|k| symmetric::verdict(packet, k)) {
        Some(SymVerdict::BadMac(_)) => return ctx.drop_packet(&rx, DropReason::BadMac),
        Some(v @ (SymVerdict::Authentic(_) | SymVerdict::UnknownKey(_))) => Some(v),
        _ => None,
    };
    let nts = if request.extensions.is_empty() || sym.is_some() {
        if ctx.nts.required() {
            return ctx.drop_packet(&rx, DropReason::NtsRequired);
        }
        None
    } else if ctx.nts.enabled() {
        match ctx.nts.verdict(packet, request.extensions) {
            NtsVerdict::Drop(reason) => return ctx.drop_packet(&rx, reason),
            verdict => Some(verdict),
        }
    } else {
        // RFC 7822: a server ignores extension fields it does not
        // implement and answers the plain request (chrony does the same).
        None
    };
    let reply = match &nts {
        Some(NtsVerdict::Nak(_)) => server::kiss_header(
            &request.header,
            rx.timestamp,
            ReferenceId::KISS_NTSN,
            state.precision,
        ),
        _ => {
            let reply = server::reply_header(&request.header, rx.timestamp, &state);
            match state.smear {
                // Only near a leap in smear mode; the kernel's leap state
                // settles the repeated second.
                Some(smear) => reply.smeared(smear.offset(
                    rx.timestamp,
                    crate::clock::kernel::KernelClock::leap_in_progress(),
                )),
                None => reply,
            }
        }
    };
    // The transmit timestamp is read as late as possible: after every
    // decision, before the (NTS) serialization that covers it.
    let header = reply.finish(crate::clock::now());
    let event = match (nts, sym) {
        (_, Some(SymVerdict::Authentic(key))) => {
            *out = symmetric::reply(&header, key);
            Event::Ntp
        }
        (_, Some(_)) => {
            *out = symmetric::crypto_nak(&header);
            Event::Dropped
        }
        (nts, None) => match nts {
            Some(NtsVerdict::Authentic(r)) => {
                r.finish(&header, out);
                ctx.stats.nts_replied();
                Event::Nts
            }
            Some(NtsVerdict::Nak(r)) => {
                r.finish(&header, out);
                ctx.stats.nts_nak();
                Event::Dropped
            }
            _ => {
                out.clear();
                out.extend_from_slice(&header);
                Event::Ntp
            }
        },
    };
    debug_assert!(
        out.len() <= packet.len(),
        "a reply is never larger than its request"
    );
    // Record the client before the reply leaves: its next request (sent
    // as soon as this reply arrives) must find this one counted, or a rate
    // limit could be passed by a fast client.
    ctx.clients.record(rx.remote.ip(), rx.timestamp, event);
    match socket.send(out, rx.remote, rx.local_ip) {
        Ok(()) => ctx.stats.replied(),
        Err(e) => {
            tracing::debug!(remote = %rx.remote, "send failed: {e}");
            ctx.stats.dropped(DropReason::SendFailed);
        }
    }
}
