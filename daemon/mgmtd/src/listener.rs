//! The accept loop: TCP connections in, TLS 1.3 handshakes with client
//! certificates, HTTP/1.1 out through hyper. Each connection costs a slot
//! of `max_connections` (more are closed at once, so a flood cannot queue
//! up behind the ones being served); the handshake must finish within
//! `handshake_timeout`, a request's header within `request_timeout`, and
//! a connection that carries nothing either way for `idle_timeout`, while
//! none of its requests is being answered, is closed. A slow or silent client thus holds one slot for a bounded time
//! and never the others.

use crate::server::{Client, Gateway};
use crate::trust::ClientVerifier;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use skytime_persist::identity::fingerprint;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The TLS settings in force; replaced when the enrolled operators are
/// reloaded (SIGHUP), for connections from then on.
#[derive(Debug)]
pub struct TlsState(RwLock<(Arc<ServerConfig>, Arc<ClientVerifier>)>);

impl TlsState {
    pub fn new(config: Arc<ServerConfig>, verifier: Arc<ClientVerifier>) -> Self {
        Self(RwLock::new((config, verifier)))
    }

    pub fn replace(&self, config: Arc<ServerConfig>, verifier: Arc<ClientVerifier>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = (config, verifier);
    }

    fn current(&self) -> (Arc<ServerConfig>, Arc<ClientVerifier>) {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Serves every listener until `shutdown`; then lets the connections
/// being served finish their request (bounded by the idle timeout).
pub async fn serve(
    listeners: Vec<TcpListener>,
    tls: Arc<TlsState>,
    gateway: Arc<Gateway>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(
        gateway.config.limits.max_connections as usize,
    ));
    let mut loops = tokio::task::JoinSet::new();
    for l in listeners {
        loops.spawn(accept_loop(
            l,
            tls.clone(),
            gateway.clone(),
            slots.clone(),
            shutdown.clone(),
        ));
    }
    while loops.join_next().await.is_some() {}
    // Every connection holds a slot: all slots back means all done.
    let all = gateway.config.limits.max_connections;
    let _ = tokio::time::timeout(gateway.config.limits.idle(), slots.acquire_many(all)).await;
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<TlsState>,
    gateway: Arc<Gateway>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached; closed");
            continue;
        };
        let (tls, gateway, shutdown) = (tls.clone(), gateway.clone(), shutdown.clone());
        tokio::spawn(async move {
            connection(stream, peer, &tls, gateway, shutdown).await;
            drop(slot);
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    tls: &TlsState,
    gateway: Arc<Gateway>,
    shutdown: CancellationToken,
) {
    let limits = gateway.config.limits.clone();
    let (config, verifier) = tls.current();
    let accepted =
        tokio::time::timeout(limits.handshake(), TlsAcceptor::from(config).accept(stream)).await;
    let tls_stream = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, "TLS handshake refused: {e}");
            // A refused certificate is audited by the verifier, with its
            // fingerprint; a client that brought none is audited here.
            let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
            if matches!(inner, Some(rustls::Error::NoCertificatesPresented)) {
                gateway.audit.record(&crate::audit::Entry {
                    client: "-",
                    role: None,
                    peer: Some(peer),
                    action: "TLS handshake",
                    result: "refused",
                    detail: Some("no client certificate"),
                });
            }
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake not finished within {} s; closed", limits.handshake_timeout);
            return;
        }
    };
    let chain = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .map(<[_]>::to_vec);
    let client = Arc::new(Client {
        peer,
        fingerprint: chain
            .as_ref()
            .and_then(|c| c.first())
            .map(|c| fingerprint(c)),
        role: chain.as_deref().and_then(|c| verifier.role_of(c)),
    });
    tracing::debug!(%peer, client = ?client.fingerprint, role = ?client.role, "connection");
    let activity = Activity::new();
    let io = TokioIo::new(Watched {
        inner: tls_stream,
        activity: activity.clone(),
    });
    let busy = activity.clone();
    let service = service_fn(move |req| {
        // A request being answered (a D-Bus call under way) is not idle.
        let guard = busy.begin();
        let gateway = gateway.clone();
        let client = client.clone();
        async move {
            let reply = gateway.handle(client, req).await;
            drop(guard);
            reply
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request())
        .serve_connection(io, service);
    tokio::pin!(conn);
    let idle = limits.idle();
    let mut check = tokio::time::interval((idle / 4).max(Duration::from_millis(50)));
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            _ = check.tick() => {
                if activity.in_flight() == 0 && activity.idle() >= idle {
                    tracing::info!(%peer, "no traffic for {} s; closed", limits.idle_timeout);
                    return;
                }
            }
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// When a connection last moved bytes, and how many of its requests are
/// being answered.
#[derive(Clone, Debug)]
struct Activity {
    epoch: Instant,
    last_ms: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
}

/// A request being answered; counts until dropped.
struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
            in_flight: Arc::new(AtomicU64::new(0)),
        }
    }

    fn begin(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// An I/O stream that notes every byte moved.
struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Sockets systemd passed (socket activation: `LISTEN_PID` is this
/// process and `LISTEN_FDS` says how many, from fd 3 on), or `None`.
pub fn from_systemd() -> std::io::Result<Option<Vec<std::net::TcpListener>>> {
    use std::os::fd::FromRawFd;
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count: i32 = match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(n) if ours && n > 0 => n,
        _ => return Ok(None),
    };
    // Children must not take the sockets for theirs.
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let mut out = Vec::new();
    for fd in 3..3 + count {
        // SAFETY: systemd's protocol hands these descriptors to this
        // process (LISTEN_PID checked above), open, and nothing else in
        // the process owns them; each is wrapped exactly once.
        let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        l.set_nonblocking(true)?;
        out.push(l);
    }
    Ok(Some(out))
}
