//! One upstream source's task: resolve the name, get an NTS session
//! (from the state directory, or a key exchange), then poll as the
//! sans-IO association says, authenticate every reply (NTS, or a
//! symmetric key), and hand the clock filter's samples to the
//! discipline. A NAK, an empty cookie jar or a silent server starts over
//! with a new key exchange; failures back off from 2 s to 17 minutes.

use super::config::{Authentication, UpstreamConfig};
use super::cookies;
use super::ke::{self, KeOutcome};
use super::socket::{ClientSocket, MAX_REPLY};
use super::status::StatusBoard;
use crate::clock::now;
use rand::rngs::OsRng;
use rand::RngCore;
use skytime_discipline::{Sample, SourceKind, Upstream};
use skytime_nts::ntp_client::{NtsReply, NtsSession, SavedSession, UID_LEN};
use skytime_proto::client::poll::PollConfig;
use skytime_proto::client::{
    Association, AssociationState, ClientConfig, KissCode, ReplyDrop, ReplyOutcome, SourceSample,
};
use skytime_proto::{NtpDuration, NtpHeader, ReferenceId};
use skytime_symkey::packet::{self, Auth};
use skytime_symkey::{Key, KeyFile};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First wait after a failure, and the longest.
const RETRY_MIN: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(1024);
/// Requests without an answer after which the name is resolved again
/// (and, with NTS, keys exchanged again).
const SILENT_REQUESTS: u64 = 8;

pub use crate::clock::NetworkSample;

/// What every source task shares.
#[derive(Debug)]
pub struct Shared {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub keys: Option<Arc<KeyFile>>,
    pub state_dir: PathBuf,
    pub ke_timeout: Duration,
    pub precision: i8,
    pub samples: mpsc::Sender<NetworkSample>,
    pub board: StatusBoard,
}

/// One source: a server, or one server of a pool.
#[derive(Debug)]
pub struct Member {
    pub config: UpstreamConfig,
    /// Its number in the discipline's source list.
    pub index: usize,
    /// Its entry on the status board.
    pub slot: usize,
    /// Which of the pool's addresses (0 for a server).
    pub pool_member: usize,
}

/// The reference ID replies carry while following `ip` (RFC 5905: the
/// IPv4 address, or the first four bytes of the MD5 hash of the IPv6
/// address).
pub fn reference_id(ip: IpAddr) -> ReferenceId {
    match ip {
        IpAddr::V4(a) => ReferenceId(a.octets()),
        IpAddr::V6(a) => {
            let h = skytime_symkey::mac::compute(skytime_symkey::KeyType::Md5, &[], &a.octets());
            ReferenceId([h[0], h[1], h[2], h[3]])
        }
    }
}

/// How this source's packets are authenticated, with its state.
enum AuthState {
    None,
    Key(Key),
    Nts(Box<NtsState>),
}

struct NtsState {
    session: Option<NtsSession>,
    /// "host:port" of the NTS-KE server (and the pool address).
    ke_server: String,
    ntp_server: Option<String>,
    ntp_port: Option<u16>,
    pending_uid: Option<[u8; UID_LEN]>,
}

/// Why the polling loop ended.
enum End {
    Shutdown,
    /// Start over: resolve again and, with NTS, exchange keys again.
    Restart,
}

impl Member {
    fn status(&self, shared: &Shared, f: impl FnOnce(&mut super::status::MemberStatus)) {
        shared.board.update(self.slot, f);
    }

    /// Runs until `shutdown`, then saves the NTS session.
    pub async fn run(self, shared: Arc<Shared>, shutdown: CancellationToken) {
        let start = Instant::now();
        let mut auth = match self.config.authentication {
            Authentication::None => AuthState::None,
            Authentication::Key(id) => match shared.keys.as_ref().and_then(|k| k.get(id)) {
                Some(k) => {
                    let (kind, bits) = (k.kind.name(), k.bits());
                    self.status(&shared, |s| s.key = Some((kind, bits)));
                    AuthState::Key(k.clone())
                }
                // Checked at start-up; kept total.
                None => return,
            },
            Authentication::Nts => AuthState::Nts(Box::new(NtsState {
                session: None,
                ke_server: String::new(),
                ntp_server: None,
                ntp_port: None,
                pending_uid: None,
            })),
        };
        let mut retry = RETRY_MIN;
        loop {
            let target = tokio::select! {
                _ = shutdown.cancelled() => break,
                t = self.target(&shared, &mut auth) => t,
            };
            let end = match target {
                Ok(addr) => match ClientSocket::connect(addr) {
                    Ok(socket) => {
                        retry = RETRY_MIN;
                        self.status(&shared, |s| {
                            s.address = Some(addr);
                            s.state = "polling".into();
                        });
                        self.poll_loop(&shared, &socket, &mut auth, start, &shutdown)
                            .await
                    }
                    Err(e) => Err(format!("cannot open a socket to {addr}: {e}")),
                },
                Err(e) => Err(e),
            };
            match end {
                Ok(End::Shutdown) => break,
                Ok(End::Restart) => {}
                Err(why) => {
                    tracing::warn!(
                        upstream = %self.config.address,
                        "{why}; retrying in {} s",
                        retry.as_secs()
                    );
                    self.status(&shared, |s| s.state = format!("retrying: {why}"));
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
        if let AuthState::Nts(st) = &auth {
            save(&shared, st);
        }
    }

    /// Where to send NTP: the resolved address, after a key exchange for
    /// NTS when no session is at hand.
    async fn target(&self, shared: &Shared, auth: &mut AuthState) -> Result<SocketAddr, String> {
        let c = &self.config;
        let host = c.host();
        let AuthState::Nts(st) = auth else {
            self.status(shared, |s| s.state = "resolving".into());
            return self.resolve(host, c.port).await;
        };
        self.status(shared, |s| s.state = "resolving".into());
        let ke_addr = self.resolve(host, c.nts_port).await?;
        let ke_server = if self.pool_member > 0 || c.kind == super::config::UpstreamKind::Pool {
            format!("{host}:{}@{}", c.nts_port, ke_addr.ip())
        } else {
            format!("{host}:{}", c.nts_port)
        };
        if st.session.is_none() || st.ke_server != ke_server {
            if let Some(saved) = cookies::load(&shared.state_dir, &ke_server) {
                tracing::info!(
                    upstream = %c.address,
                    cookies = saved.session.cookies(),
                    "NTS session restored from the state directory"
                );
                st.ke_server = ke_server.clone();
                st.ntp_server = saved.ntp_server;
                st.ntp_port = saved.ntp_port;
                st.session = Some(saved.session);
                self.status(shared, |s| {
                    if let Some(n) = s.nts.as_mut() {
                        n.restored = true;
                    }
                });
            }
        }
        if st.session.as_ref().is_none_or(|s| s.cookies() == 0) || st.ke_server != ke_server {
            self.status(shared, |s| {
                s.state = "key exchange".into();
                if let Some(n) = s.nts.as_mut() {
                    n.ke_attempts += 1;
                }
            });
            let tls = shared
                .tls
                .clone()
                .ok_or_else(|| "no TLS configuration for NTS".to_owned())?;
            let outcome = ke::exchange(tls, host, &[ke_addr], shared.ke_timeout)
                .await
                .map_err(|e| {
                    let msg = format!("NTS key exchange failed: {e}");
                    self.status(shared, |s| {
                        if let Some(n) = s.nts.as_mut() {
                            n.error = Some(e.to_string());
                        }
                    });
                    msg
                })?;
            self.took_keys(shared, st, ke_server, &outcome);
        }
        let port = st.ntp_port.unwrap_or(c.port);
        match &st.ntp_server {
            Some(name) => self.resolve(name, port).await,
            None => Ok(SocketAddr::new(ke_addr.ip(), port)),
        }
    }

    fn took_keys(&self, shared: &Shared, st: &mut NtsState, ke_server: String, o: &KeOutcome) {
        let session = NtsSession::new(o.keys.clone(), o.response.cookies.clone());
        tracing::info!(
            upstream = %self.config.address,
            address = %o.addr,
            cookies = session.cookies(),
            ntp_server = ?o.response.server,
            ntp_port = ?o.response.port,
            "NTS key exchange done"
        );
        let (cookies, cookie_len, aead) = (
            session.cookies(),
            session.cookie_len(),
            o.response.aead.id(),
        );
        st.ke_server = ke_server;
        st.ntp_server = o.response.server.clone();
        st.ntp_port = o.response.port;
        st.session = Some(session);
        save(shared, st);
        self.status(shared, |s| {
            if let Some(n) = s.nts.as_mut() {
                n.last_ke = Some(now());
                n.ke_attempts = 0;
                n.ke_total += 1;
                n.naks = 0;
                n.cookies = cookies;
                n.cookie_len = cookie_len;
                n.key_bits = 8 * skytime_nts::aead::KEY_LEN as u32;
                n.aead = aead;
                n.error = None;
                n.restored = false;
            }
        });
    }

    /// `host`'s address for this member (the pool's `pool_member`th).
    async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .fold(Vec::new(), |mut v, a| {
                if !v.contains(&a) {
                    v.push(a);
                }
                v
            });
        addrs.get(self.pool_member).copied().ok_or_else(|| {
            format!(
                "{host} resolves to {} address(es); this pool member needs a {}th",
                addrs.len(),
                self.pool_member + 1
            )
        })
    }

    async fn poll_loop(
        &self,
        shared: &Shared,
        socket: &ClientSocket,
        auth: &mut AuthState,
        start: Instant,
        shutdown: &CancellationToken,
    ) -> Result<End, String> {
        let c = &self.config;
        let mono = || start.elapsed().as_secs_f64();
        let mut assoc = Association::new(
            ClientConfig {
                poll: PollConfig {
                    minpoll: c.minpoll,
                    maxpoll: c.maxpoll,
                    iburst: c.iburst,
                },
                version: 4,
                local_precision: shared.precision,
            },
            mono(),
        );
        let refid = reference_id(socket.server().ip());
        let mut buf = [0u8; MAX_REPLY];
        loop {
            let due = assoc
                .next_poll()
                .map(|d| start + Duration::from_secs_f64(d.max(0.0)));
            let end = tokio::select! {
                _ = shutdown.cancelled() => return Ok(End::Shutdown),
                _ = tokio::time::sleep_until(due.unwrap_or(start)), if due.is_some() => {
                    self.send_request(shared, socket, &mut assoc, auth, mono()).await
                }
                r = socket.recv(&mut buf) => match r {
                    Ok((n, t4)) => self.take_reply(shared, &buf[..n], t4, &mut assoc, auth, refid, mono()),
                    Err(e) => {
                        tracing::debug!(upstream = %c.address, "receive: {e}");
                        None
                    }
                },
            };
            let counters = assoc.counters();
            let (reach, poll) = (assoc.reach(), assoc.poll_exponent());
            let cookies = match &*auth {
                AuthState::Nts(st) => st.session.as_ref().map(|s| (s.cookies(), s.cookie_len())),
                _ => None,
            };
            self.status(shared, |s| {
                s.reach = reach;
                s.poll = poll;
                s.counters = counters;
                if let (Some(n), Some((k, len))) = (s.nts.as_mut(), cookies) {
                    n.cookies = k;
                    if len > 0 {
                        n.cookie_len = len;
                    }
                }
            });
            if let Some(end) = end {
                return Ok(end);
            }
            // A server silent for eight requests: maybe it moved, or
            // forgot our cookies without saying so.
            if reach == 0 && counters.requests >= SILENT_REQUESTS && counters.accepted == 0 {
                if let AuthState::Nts(st) = auth {
                    st.session = None;
                }
                return Err(format!(
                    "no reply from {} to {SILENT_REQUESTS} requests",
                    socket.server()
                ));
            }
        }
    }

    /// Sends the next request; `Some(Restart)` when the NTS cookies ran
    /// out.
    async fn send_request(
        &self,
        shared: &Shared,
        socket: &ClientSocket,
        assoc: &mut Association,
        auth: &mut AuthState,
        mono: f64,
    ) -> Option<End> {
        if let AuthState::Nts(st) = &*auth {
            if st.session.as_ref().is_none_or(|s| s.cookies() == 0) {
                return Some(End::Restart);
            }
        }
        let cookie = OsRng.next_u64();
        let header = assoc.poll(mono, now(), cookie)?;
        let packet = match auth {
            AuthState::None => header.to_vec(),
            AuthState::Key(k) => {
                let mut p = header.to_vec();
                packet::append_mac(&mut p, k);
                p
            }
            AuthState::Nts(st) => {
                let session = st.session.as_mut()?;
                let (p, uid) = session.request(&header, &mut OsRng)?;
                st.pending_uid = Some(uid);
                p
            }
        };
        if let Err(e) = socket.send(&packet).await {
            tracing::debug!(upstream = %self.config.address, "send: {e}");
            self.status(shared, |s| s.state = format!("send failed: {e}"));
        }
        None
    }

    /// Checks and uses one reply.
    #[allow(clippy::too_many_arguments)]
    fn take_reply(
        &self,
        shared: &Shared,
        packet: &[u8],
        t4: skytime_proto::NtpTimestamp,
        assoc: &mut Association,
        auth: &mut AuthState,
        refid: ReferenceId,
        mono: f64,
    ) -> Option<End> {
        let Ok((header, _)) = NtpHeader::parse(packet) else {
            assoc.drop_reply(ReplyDrop::BogusTimestamps);
            return None;
        };
        let authenticated = match auth {
            AuthState::None => true,
            AuthState::Key(k) => {
                !assoc.answers_pending(&header)
                    || matches!(packet::parse(packet), Auth::Mac(m) if m.verify(packet, k))
            }
            AuthState::Nts(st) => {
                // Replies to no request of ours are counted as such by
                // the association, without NTS work.
                !assoc.answers_pending(&header)
                    || match (st.session.as_mut(), st.pending_uid) {
                        (Some(session), Some(uid)) => match session.check_reply(packet, &uid) {
                            Ok(NtsReply::Authentic { .. }) => true,
                            // The kiss code says NTSN; the association
                            // counts it and the caller starts over.
                            Ok(NtsReply::Nak) => header.stratum == 0,
                            Err(e) => {
                                tracing::debug!(upstream = %self.config.address, "NTS reply refused: {e}");
                                self.status(shared, |s| {
                                    if let Some(n) = s.nts.as_mut() {
                                        n.auth_failures += 1;
                                    }
                                });
                                false
                            }
                        },
                        _ => false,
                    }
            }
        };
        if !authenticated {
            assoc.drop_reply(ReplyDrop::NotAuthenticated);
            return None;
        }
        let outcome = assoc.handle_reply(&header, t4, mono);
        tracing::trace!(upstream = %self.config.address, ?outcome, "reply");
        match outcome {
            ReplyOutcome::Accepted(Some(f)) => {
                self.pass_on(shared, &f, assoc, auth, refid);
                None
            }
            ReplyOutcome::Accepted(None) | ReplyOutcome::Dropped(_) => None,
            ReplyOutcome::Kiss(KissCode::Ntsn) => match auth {
                AuthState::Nts(st) => {
                    tracing::info!(upstream = %self.config.address, "NTS NAK: the server refused our cookie; new key exchange");
                    st.session = None;
                    self.status(shared, |s| {
                        if let Some(n) = s.nts.as_mut() {
                            n.naks += 1;
                        }
                    });
                    Some(End::Restart)
                }
                _ => None,
            },
            ReplyOutcome::Kiss(code) => {
                if let AssociationState::Refused(_) = assoc.state() {
                    tracing::warn!(upstream = %self.config.address, "the server refused service ({}): no more requests", code.as_str());
                    self.status(shared, |s| s.state = format!("refused ({})", code.as_str()));
                } else {
                    tracing::info!(upstream = %self.config.address, poll = assoc.poll_exponent(), "kiss-o'-death {}", code.as_str());
                }
                None
            }
        }
    }

    /// Hands a filtered sample to the discipline.
    fn pass_on(
        &self,
        shared: &Shared,
        f: &SourceSample,
        assoc: &Association,
        auth: &AuthState,
        refid: ReferenceId,
    ) {
        let m = &f.measurement;
        let upstream = Upstream {
            stratum: m.stratum,
            reference_id: refid,
            root_delay: m.root_delay,
            root_dispersion: m.root_dispersion,
            delay: m.delay,
            jitter: f.jitter.max(m.dispersion),
            authenticated: !matches!(auth, AuthState::None),
            role: self.config.role.role(),
            poll_interval_s: assoc.poll_interval(),
        };
        let sample = Sample {
            source: self.index,
            kind: SourceKind::Ntp,
            local_time: m.local_time,
            offset: NtpDuration::from_seconds_f64(m.offset),
            dispersion: NtpDuration::from_seconds_f64(
                upstream.root_distance() + f.dispersion + f.jitter,
            ),
        };
        // A full channel means the discipline is behind: a network sample
        // every few seconds at most is no loss.
        let _ = shared.samples.try_send(NetworkSample { sample, upstream });
        let (stratum, server_refid, rd, rdisp) =
            (m.stratum, m.reference_id, m.root_delay, m.root_dispersion);
        let last = (m.local_time, m.offset, m.delay, f.dispersion + f.jitter);
        self.status(shared, |s| {
            s.stratum = Some(stratum);
            s.reference_id = Some(server_refid);
            s.root_delay = rd;
            s.root_dispersion = rdisp;
            s.last_sample = Some(last);
            s.state = "polling".into();
        });
    }
}

fn save(shared: &Shared, st: &NtsState) {
    let Some(session) = &st.session else { return };
    if st.ke_server.is_empty() {
        return;
    }
    let saved = SavedSession {
        ke_server: st.ke_server.clone(),
        ntp_server: st.ntp_server.clone(),
        ntp_port: st.ntp_port,
        session: session.clone(),
    };
    if let Err(e) = cookies::save(&shared.state_dir, &saved) {
        tracing::warn!(
            "cannot save the NTS session in {}: {e}",
            shared.state_dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_ids_follow_rfc5905() {
        assert_eq!(
            reference_id("192.0.2.7".parse().unwrap()),
            ReferenceId([192, 0, 2, 7])
        );
        // MD5 of ::1's 16 bytes begins 0x... (the same ID chrony uses).
        let v6 = reference_id("::1".parse().unwrap());
        let h = skytime_symkey::mac::compute(
            skytime_symkey::KeyType::Md5,
            &[],
            &std::net::Ipv6Addr::LOCALHOST.octets(),
        );
        assert_eq!(v6.0, [h[0], h[1], h[2], h[3]]);
    }
}
