//! The NTS-KE server: TCP listeners, TLS (tokio-rustls), one task per
//! connection, bounded in time, size and number.
//!
//! A slow or hostile client never blocks others: every connection has one
//! deadline for handshake, request and response (`ke_timeout`), requests
//! are capped (`ke_max_request`), and at `ke_max_connections` a new
//! connection makes the oldest one give way, so idle connections cannot
//! lock out a client that completes its exchange promptly.

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
    active: VecDeque<(u64, CancellationToken)>,
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

    /// Registers a new connection, evicting the oldest at the limit.
    fn admit(&self) -> (u64, CancellationToken) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        while slots.active.len() >= self.max_connections {
            if let Some((_, oldest)) = slots.active.pop_front() {
                oldest.cancel();
                NtsCounters::inc(&self.counters.ke_evicted);
            }
        }
        slots.next_id += 1;
        let entry = (slots.next_id, CancellationToken::new());
        slots.active.push_back(entry.clone());
        entry
    }

    fn release(&self, id: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = slots.active.iter().position(|(x, _)| *x == id) {
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
        let (id, token) = ctx.admit();
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => tracing::debug!(%peer, "NTS-KE connection evicted"),
                _ = shutdown.cancelled() => {}
                r = tokio::time::timeout(ctx.timeout, session(stream, &ctx)) => match r {
                    Ok(()) => {}
                    Err(_) => {
                        NtsCounters::inc(&ctx.counters.ke_timeouts);
                        tracing::debug!(%peer, "NTS-KE connection timed out");
                    }
                },
            }
            ctx.release(id);
        });
    }
}

/// One NTS-KE exchange.
async fn session(stream: TcpStream, ctx: &KeContext) {
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
