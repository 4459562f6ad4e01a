//! The NTS-KE server: TCP listeners, TLS (tokio-rustls), one task per
//! connection, bounded in time, size and number.
//!
//! A slow or hostile client never blocks others: every connection has one
//! deadline for handshake, request and response (`ke_timeout`), requests
//! are capped (`ke_max_request`), and at `ke_max_connections` a new
//! connection makes the oldest one give way, so idle connections cannot
//! lock out a client that completes its exchange promptly. The one that
//! gives way is the oldest that has not yet sent a whole ClientHello:
//! slow clients that reconnect as soon as they are evicted (slowloris)
//! churn through the slots, and without that preference a prompt client
//! in the middle of its handshake is evicted by the churn as often as
//! they are (the benchmark's attack section measured 0.56 of honest
//! exchanges completing under 1000 such clients). A prompt client's
//! ClientHello is usually waiting in the socket already when it is
//! accepted, so that is looked at (peeked, not read) before the
//! connection is admitted: a burst of accepts cannot evict it before its
//! task first runs.

use super::counters::NtsCounters;
use super::keystore::KeyStore;
use super::tls::TlsStore;
use skytime_nts::aead::{Aead, Key, SessionKeys, KEY_LEN};
use skytime_nts::ke::{self, KePolicy, Rejection, ALPN, EXPORTER_LABEL};
use skytime_nts::record::{scan_message, ErrorCode, RecordError, Scan};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::sync::CancellationToken;

/// What every connection shares.
#[derive(Debug)]
pub struct KeContext {
    pub tls: Arc<TlsStore>,
    pub keys: Arc<KeyStore>,
    pub counters: Arc<NtsCounters>,
    pub policy: KePolicy,
    pub timeout: Duration,
    pub max_request: usize,
    pub max_connections: usize,
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    next_id: u64,
    /// Oldest first.
    active: VecDeque<Slot>,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    evict: CancellationToken,
    /// A whole ClientHello has arrived: the client is not a slow one.
    hello: bool,
}

impl KeContext {
    pub fn new(
        tls: Arc<TlsStore>,
        keys: Arc<KeyStore>,
        counters: Arc<NtsCounters>,
        policy: KePolicy,
        timeout: Duration,
        max_request: usize,
        max_connections: usize,
    ) -> Self {
        Self {
            tls,
            keys,
            counters,
            policy,
            timeout,
            max_request,
            max_connections,
            slots: Mutex::default(),
        }
    }

    /// Registers a new connection (`hello`: its whole ClientHello has
    /// arrived), evicting at the limit the oldest that has not sent a
    /// whole ClientHello (the oldest of all if every one has).
    fn admit(&self, hello: bool) -> (u64, CancellationToken) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        while slots.active.len() >= self.max_connections {
            let i = slots.active.iter().position(|s| !s.hello).unwrap_or(0);
            if let Some(victim) = slots.active.remove(i) {
                victim.evict.cancel();
                NtsCounters::inc(&self.counters.ke_evicted);
            }
        }
        slots.next_id += 1;
        let (id, evict) = (slots.next_id, CancellationToken::new());
        slots.active.push_back(Slot {
            id,
            evict: evict.clone(),
            hello,
        });
        (id, evict)
    }

    /// Connection `id` has sent a whole ClientHello.
    fn heard_hello(&self, id: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slots.active.iter_mut().rev().find(|s| s.id == id) {
            s.hello = true;
        }
    }

    fn release(&self, id: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = slots.active.iter().position(|s| s.id == id) {
            slots.active.remove(i);
        }
    }

    /// Connections being served now.
    pub fn active(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .active
            .len()
    }
}

/// Binds a TCP listener; IPv6 sockets are IPv6-only so that `0.0.0.0`
/// and `[::]` can both be listed.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, ctx: Arc<KeContext>, shutdown: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!("NTS-KE accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        NtsCounters::inc(&ctx.counters.ke_connections);
        let (id, token) = ctx.admit(hello_buffered(&stream));
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => tracing::debug!(%peer, "NTS-KE connection evicted"),
                _ = shutdown.cancelled() => {}
                r = tokio::time::timeout(ctx.timeout, session(stream, &ctx, id)) => match r {
                    Ok(()) => {}
                    Err(_) => {
                        NtsCounters::inc(&ctx.counters.ke_timeouts);
                        tracing::debug!(%peer, "NTS-KE connection timed out");
                    }
                },
            }
            ctx.release(id);
        });
        // Let the new connection's task read its ClientHello before the
        // next accept can evict it (accepts are otherwise taken in bursts).
        tokio::task::yield_now().await;
    }
}

/// Whether a whole TLS handshake record (a ClientHello) is already
/// waiting in `stream`'s receive buffer; nothing is consumed.
fn hello_buffered(stream: &TcpStream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 4096];
    recv(
        stream.as_raw_fd(),
        &mut buf,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )
    .is_ok_and(|n| whole_handshake_record(&buf[..n]))
}

/// Whether `bytes` start with a whole TLS handshake record.
fn whole_handshake_record(bytes: &[u8]) -> bool {
    match bytes {
        [0x16, _, _, hi, lo, body @ ..] => {
            body.len() >= usize::from(u16::from_be_bytes([*hi, *lo]))
        }
        _ => false,
    }
}

/// One NTS-KE exchange on connection `id`.
async fn session(stream: TcpStream, ctx: &KeContext, id: u64) {
    let c = &ctx.counters;
    let _ = stream.set_nodelay(true);
    let start = match LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await {
        Ok(s) => s,
        Err(e) => {
            NtsCounters::inc(&c.ke_tls_failed);
            tracing::debug!("NTS-KE: bad ClientHello: {e}");
            return;
        }
    };
    ctx.heard_hello(id);
    // RFC 8915 section 4: NTS-KE is only spoken under ALPN ntske/1.
    let offers_ntske = start
        .client_hello()
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == ALPN));
    if !offers_ntske {
        NtsCounters::inc(&c.ke_no_alpn);
        tracing::debug!("NTS-KE: client did not offer ALPN ntske/1");
        return;
    }
    let mut tls = match start.into_stream(ctx.tls.current()).await {
        Ok(s) => s,
        Err(e) => {
            NtsCounters::inc(&c.ke_tls_failed);
            tracing::debug!("NTS-KE: TLS handshake failed: {e}");
            return;
        }
    };

    let mut request = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let decision = loop {
        match scan_message(&request, ctx.max_request) {
            Ok(Scan::Complete(_)) => break ke::decide(&request),
            Ok(Scan::Incomplete) => {}
            Err(e) => {
                if matches!(e, RecordError::TooLong { .. }) {
                    NtsCounters::inc(&c.ke_too_large);
                }
                break Err(Rejection::Error(ErrorCode::BadRequest));
            }
        }
        match tls.read(&mut chunk).await {
            Ok(0) => {
                NtsCounters::inc(&c.ke_truncated);
                // The client may still read: tell it why.
                break Err(Rejection::Error(ErrorCode::BadRequest));
            }
            Ok(n) => request.extend_from_slice(&chunk[..n]),
            Err(e) => {
                NtsCounters::inc(&c.ke_truncated);
                tracing::debug!("NTS-KE: read failed: {e}");
                return;
            }
        }
    };

    let decision = decision.and_then(|agreement| {
        let aead = agreement.aead;
        let conn = tls.get_ref().1;
        let export = |s2c| {
            let mut key = [0u8; KEY_LEN];
            let bytes = conn
                .export_keying_material(
                    &mut key[..aead.key_len()],
                    EXPORTER_LABEL,
                    Some(&ke::exporter_context(aead, s2c)),
                )
                .map_err(|e| e.to_string())?;
            Key::new(bytes).ok_or_else(|| format!("{} exported bytes", bytes.len()))
        };
        match (export(false), export(true)) {
            (Ok(c2s), Ok(s2c)) => Ok((SessionKeys { aead, c2s, s2c }, agreement)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("NTS-KE: TLS key export failed: {e}");
                Err(Rejection::Error(ErrorCode::InternalServerError))
            }
        }
    });
    let response = match decision.and_then(|(session, agreement)| {
        ke::accept_response(
            &session,
            &agreement,
            &ctx.keys.current(),
            &ctx.policy,
            &mut rand::thread_rng(),
        )
        .map(|r| (r, session.aead))
        .map_err(|e| {
            tracing::error!("NTS-KE: cannot seal cookies: {e}");
            Rejection::Error(ErrorCode::InternalServerError)
        })
    }) {
        Ok((response, aead)) => {
            NtsCounters::inc(&c.ke_sessions);
            NtsCounters::inc(match aead {
                Aead::AesSivCmac256 => &c.ke_aead_15,
                Aead::AesGcmSiv128 => &c.ke_aead_30,
            });
            response
        }
        Err(rejection) => {
            NtsCounters::inc(match rejection {
                Rejection::Error(ErrorCode::UnrecognizedCriticalRecord) => {
                    &c.ke_unrecognized_critical
                }
                Rejection::Error(ErrorCode::InternalServerError) => &c.ke_internal_error,
                Rejection::Error(_) => &c.ke_bad_request,
                Rejection::NoProtocol => &c.ke_no_protocol,
                Rejection::NoAead => &c.ke_no_aead,
            });
            ke::rejection_response(rejection)
        }
    };
    if let Err(e) = tls.write_all(&response).await {
        tracing::debug!("NTS-KE: write failed: {e}");
        return;
    }
    // close_notify; the client closes too.
    let _ = tls.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::whole_handshake_record;

    #[test]
    fn a_handshake_record_is_whole_only_with_all_its_bytes() {
        let mut record = vec![0x16, 0x03, 0x01, 0x00, 0x03, 1, 2, 3];
        assert!(whole_handshake_record(&record));
        record.push(4); // the next record's first byte
        assert!(whole_handshake_record(&record));
        assert!(!whole_handshake_record(&record[..7]));
        assert!(!whole_handshake_record(&record[..4]));
        assert!(!whole_handshake_record(&[]));
        record[0] = 0x17; // application data, not a handshake
        assert!(!whole_handshake_record(&record));
    }
}
