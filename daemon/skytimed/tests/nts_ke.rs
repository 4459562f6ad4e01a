//! NTS-KE server over real sockets and real TLS (rustls client), against
//! `skytimed::nts::NtsService`, and the NTP side of NTS through the server
//! decision each NTP thread runs (skytime-proto's `Server` with the
//! service's NTS processor).

use rand::SeedableRng;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use skytime_nts::aead::{Key, SessionKeys};
use skytime_nts::ke::{exporter_context, EXPORTER_LABEL};
use skytime_nts::record::{kind, records, write_record, write_u16_record};
use skytime_nts::server::client::{check_reply, request, ReplyCheck};
use skytime_proto::access::AccessList;
use skytime_proto::server::{self as decision, Context, DropReason, Handled, Incoming, ReplyKind};
use skytime_proto::{NtpTimestamp, SyncState};
use skytime_tests::wait_until_async;
use skytimed::nts::{generate_identity, NtsConfig, NtsService};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Server {
    service: NtsService,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Server {
    /// Stops the service and hands back its directory (for a restart).
    fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn config(edit: impl FnOnce(&mut NtsConfig)) -> NtsConfig {
    let mut c = NtsConfig {
        enabled: true,
        ..NtsConfig::default()
    };
    edit(&mut c);
    c
}

async fn start_in(dir: tempfile::TempDir, config: &NtsConfig) -> Server {
    if !dir.path().join("cert.pem").exists() {
        generate_identity(config, dir.path(), "localhost", &[LOCALHOST]).unwrap();
    }
    let shutdown = CancellationToken::new();
    let service = NtsService::start(
        config,
        dir.path(),
        &[SocketAddr::from((LOCALHOST, 0))],
        shutdown.clone(),
    )
    .await
    .unwrap();
    let addr = service.ke_addresses()[0];
    Server {
        service,
        dir,
        addr,
        shutdown,
    }
}

async fn start(config: &NtsConfig) -> Server {
    start_in(tempfile::tempdir().unwrap(), config).await
}

fn client_config(
    cert: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

fn good_request() -> Vec<u8> {
    let mut m = Vec::new();
    write_u16_record(&mut m, true, kind::NEXT_PROTOCOL, &[0]);
    write_u16_record(&mut m, true, kind::AEAD_ALGORITHM, &[15]);
    write_record(&mut m, true, kind::END_OF_MESSAGE, &[]);
    m
}

/// Runs one NTS-KE exchange; returns the response and the exported keys.
async fn exchange(
    addr: SocketAddr,
    cert: &Path,
    request: &[u8],
) -> std::io::Result<(Vec<u8>, SessionKeys)> {
    exchange_with(
        addr,
        client_config(cert, &[&rustls::version::TLS13], &[b"ntske/1"]),
        request,
    )
    .await
}

async fn exchange_with(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    request: &[u8],
) -> std::io::Result<(Vec<u8>, SessionKeys)> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let mut tls = tokio::time::timeout(
        Duration::from_secs(20),
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await??;
    tls.write_all(request).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut response)).await??;
    let conn = tls.get_ref().1;
    let aead = skytime_nts::aead::Aead::AesSivCmac256;
    let c2s = conn
        .export_keying_material(
            [0u8; 32],
            EXPORTER_LABEL,
            Some(&exporter_context(aead, false)),
        )
        .unwrap();
    let s2c = conn
        .export_keying_material(
            [0u8; 32],
            EXPORTER_LABEL,
            Some(&exporter_context(aead, true)),
        )
        .unwrap();
    Ok((
        response,
        SessionKeys {
            aead,
            c2s: Key::from(c2s),
            s2c: Key::from(s2c),
        },
    ))
}

fn cookies(response: &[u8]) -> Vec<Vec<u8>> {
    records(response)
        .map(Result::unwrap)
        .filter(|r| r.kind == kind::NEW_COOKIE)
        .map(|r| r.body.to_vec())
        .collect()
}

fn error_code(response: &[u8]) -> Option<u16> {
    records(response)
        .map(Result::unwrap)
        .find(|r| r.kind == kind::ERROR)
        .map(|r| u16::from_be_bytes([r.body[0], r.body[1]]))
}

fn ntp_header() -> [u8; 48] {
    let mut h = [0u8; 48];
    h[0] = 0x23; // v4, client
    h[40..48].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    h
}

const UID: [u8; 32] = [0x42; 32];

fn nts_request(keys: &SessionKeys, cookie: &[u8], placeholders: usize) -> Vec<u8> {
    let nonce: [u8; 16] = rand::random();
    request(
        &ntp_header(),
        &UID,
        cookie,
        placeholders,
        keys.aead,
        &keys.c2s,
        &nonce,
        &[],
    )
}

/// What an NTP server thread decides for `packet` (as 127.0.0.1): the
/// kind of reply and its bytes, or the drop reason. A new thread state
/// each time, so it starts with the service's current master keys.
fn reply(service: &NtsService, packet: &[u8]) -> Result<(ReplyKind, Vec<u8>), DropReason> {
    let nts = service.ntp_processor(rand::rngs::StdRng::from_entropy());
    let mut server = decision::Server::new(0, nts, service.required());
    let acl = AccessList::allow_all();
    let now = NtpTimestamp::from_unix(1_800_000_000, 0);
    let sync = SyncState::local(2, -20, now);
    let ctx = Context {
        acl: &acl,
        rate_limit: None,
        sync: &sync,
        leap_applied: false,
    };
    let incoming = Incoming {
        data: packet,
        remote: SocketAddr::new(LOCALHOST, 40_000),
        received: now,
    };
    let mut out = vec![0u8; 2048];
    match server.handle(&ctx, &incoming, &mut out) {
        Handled::Dropped(d) => Err(d),
        Handled::Reply(p) => {
            let (len, _) = server.finish(&p, now, &mut out)?;
            out.truncate(len);
            Ok((p.kind(), out))
        }
    }
}

/// [`reply`] as (authentic, bytes).
fn answer(service: &NtsService, packet: &[u8]) -> Result<(bool, Vec<u8>), DropReason> {
    reply(service, packet).map(|(kind, bytes)| (kind == ReplyKind::Nts, bytes))
}

fn cert(s: &Server) -> PathBuf {
    s.dir.path().join("cert.pem")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_exchange_gives_eight_cookies_that_authenticate_ntp() {
    let s = start(&config(|c| {
        c.ntp_server = Some("127.0.0.1".into());
        c.ntp_port = Some(11123);
    }))
    .await;
    let (response, keys) = exchange(s.addr, &cert(&s), &good_request()).await.unwrap();
    let recs: Vec<_> = records(&response).map(Result::unwrap).collect();
    assert_eq!(recs.last().unwrap().kind, kind::END_OF_MESSAGE);
    assert!(recs
        .iter()
        .any(|r| r.kind == kind::PORT_NEGOTIATION && r.body == 11123u16.to_be_bytes()));
    assert!(recs
        .iter()
        .any(|r| r.kind == kind::SERVER_NEGOTIATION && r.body == b"127.0.0.1"));
    let cookies = cookies(&response);
    assert_eq!(cookies.len(), 8);

    // The keys this client exported are the ones sealed in the cookies.
    for placeholders in [0, 2] {
        let req = nts_request(&keys, &cookies[placeholders], placeholders);
        let (authentic, reply) = answer(&s.service, &req).unwrap();
        assert!(authentic);
        assert!(reply.len() <= req.len());
        match check_reply(&reply, &UID, &keys) {
            Some(ReplyCheck::Authentic(new)) => assert_eq!(new.len(), 1 + placeholders),
            other => panic!("reply does not verify: {other:?}"),
        }
    }
    let st = s.service.stats();
    assert_eq!(
        (st.ke_sessions, st.ntp_authentic, st.ntp_cookies_issued),
        (1, 2, 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_and_missing_or_wrong_alpn_are_refused() {
    let s = start(&config(|_| {})).await;
    let tls12 = client_config(&cert(&s), &[&rustls::version::TLS12], &[b"ntske/1"]);
    assert!(
        exchange_with(s.addr, tls12, &good_request()).await.is_err(),
        "TLS 1.2 must be refused"
    );
    let no_alpn = client_config(&cert(&s), &[&rustls::version::TLS13], &[]);
    assert!(
        exchange_with(s.addr, no_alpn, &good_request())
            .await
            .is_err(),
        "a client without ALPN must be refused"
    );
    let http = client_config(&cert(&s), &[&rustls::version::TLS13], &[b"http/1.1"]);
    assert!(
        exchange_with(s.addr, http, &good_request()).await.is_err(),
        "a client with another ALPN must be refused"
    );
    let st = s.service.stats();
    assert_eq!(st.ke_tls_failed, 1, "{st}");
    assert_eq!(st.ke_no_alpn, 2, "{st}");
    assert_eq!(st.ke_sessions, 0);
    // And the server still works.
    assert_eq!(
        cookies(
            &exchange(s.addr, &cert(&s), &good_request())
                .await
                .unwrap()
                .0
        )
        .len(),
        8
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_error_records() {
    let s = start(&config(|c| {
        c.ke_max_request = skytimed::nts::config::Count(256)
    }))
    .await;
    let mut unknown_critical = Vec::new();
    write_u16_record(&mut unknown_critical, true, kind::NEXT_PROTOCOL, &[0]);
    write_record(&mut unknown_critical, true, 0x4321, &[1, 2]);
    write_u16_record(&mut unknown_critical, true, kind::AEAD_ALGORITHM, &[15]);
    write_record(&mut unknown_critical, true, kind::END_OF_MESSAGE, &[]);
    let (r, _) = exchange(s.addr, &cert(&s), &unknown_critical)
        .await
        .unwrap();
    assert_eq!(error_code(&r), Some(0));
    assert!(cookies(&r).is_empty());

    let mut oversized = Vec::new();
    write_u16_record(&mut oversized, true, kind::NEXT_PROTOCOL, &[0]);
    write_record(&mut oversized, false, 0x4321, &[0; 300]);
    write_record(&mut oversized, true, kind::END_OF_MESSAGE, &[]);
    let (r, _) = exchange(s.addr, &cert(&s), &oversized).await.unwrap();
    assert_eq!(error_code(&r), Some(1));

    let mut no_aead = Vec::new();
    write_u16_record(&mut no_aead, true, kind::NEXT_PROTOCOL, &[0]);
    write_record(&mut no_aead, true, kind::END_OF_MESSAGE, &[]);
    let (r, _) = exchange(s.addr, &cert(&s), &no_aead).await.unwrap();
    assert_eq!(error_code(&r), Some(1));

    // AES-SIV-CMAC-512 (17) only: no common algorithm.
    let mut aead17 = Vec::new();
    write_u16_record(&mut aead17, true, kind::NEXT_PROTOCOL, &[0]);
    write_u16_record(&mut aead17, true, kind::AEAD_ALGORITHM, &[17]);
    write_record(&mut aead17, true, kind::END_OF_MESSAGE, &[]);
    let (r, _) = exchange(s.addr, &cert(&s), &aead17).await.unwrap();
    let aead_rec = records(&r)
        .map(Result::unwrap)
        .find(|r| r.kind == kind::AEAD_ALGORITHM)
        .unwrap();
    assert!(
        aead_rec.body.is_empty(),
        "no common algorithm: empty AEAD record"
    );
    assert!(cookies(&r).is_empty());
    assert_eq!(s.service.stats().ke_no_aead, 1);

    // Truncated: part of a record, then the client stops writing.
    let cfg = client_config(&cert(&s), &[&rustls::version::TLS13], &[b"ntske/1"]);
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(&good_request()[..5]).await.unwrap();
    tls.shutdown().await.unwrap();
    let mut r = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut r))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(error_code(&r), Some(1));

    let st = s.service.stats();
    assert_eq!(
        (
            st.ke_unrecognized_critical,
            st.ke_bad_request,
            st.ke_too_large,
            st.ke_no_aead,
            st.ke_truncated
        ),
        (1, 3, 1, 1, 1),
        "{st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_block_a_good_client() {
    let s = start(&config(|c| {
        c.ke_max_connections = skytimed::nts::config::Count(20);
        c.ke_timeout = skytimed::nts::config::Seconds(120);
    }))
    .await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // Some idle ones also start TLS and stall mid-way.
    for c in idle.iter_mut().take(10) {
        c.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.unwrap();
    }
    let (r, _) = tokio::time::timeout(
        Duration::from_secs(60),
        exchange(s.addr, &cert(&s), &good_request()),
    )
    .await
    .expect("good client served")
    .unwrap();
    assert_eq!(cookies(&r).len(), 8);
    assert!(s.service.ke_active_connections() <= 20);
    let st = s.service.stats();
    assert!(st.ke_evicted >= 980, "{st}");
    assert_eq!(st.ke_sessions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_time_out() {
    let s = start(&config(|c| {
        c.ke_timeout = skytimed::nts::config::Seconds(1)
    }))
    .await;
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(30), idle.read(&mut buf))
        .await
        .expect("server closes a silent client")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(eventually(|| s.service.stats().ke_timeouts == 1).await);
}

/// A slowloris client: connects, sends the header of a 512-byte
/// ClientHello and nothing more, and connects again whenever the server
/// closes it, until `stop`.
async fn slow_client(addr: SocketAddr, stop: CancellationToken) {
    let mut buf = [0u8; 64];
    while !stop.is_cancelled() {
        let Ok(mut c) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if c.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.is_err() {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = c.read(&mut buf) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_reconnecting_over_the_limit_do_not_starve_a_prompt_client() {
    // Ten slots and two hundred slow clients that come back as soon as
    // they are evicted: connections churn through the slots, and a client
    // that has sent its ClientHello must not be the one that gives way.
    let s = start(&config(|c| {
        c.ke_max_connections = skytimed::nts::config::Count(10);
        c.ke_timeout = skytimed::nts::config::Seconds(60);
    }))
    .await;
    let stop = CancellationToken::new();
    let slow: Vec<_> = (0..200)
        .map(|_| tokio::spawn(slow_client(s.addr, stop.clone())))
        .collect();
    assert!(
        eventually(|| s.service.stats().ke_evicted >= 1000).await,
        "the slow clients churn through the slots: {}",
        s.service.stats()
    );
    // The good client is a thread of its own, as a client elsewhere is:
    // its ClientHello follows its connect at once.
    let (addr, tls) = (s.addr, skytime_tests::nts_client::tls_config(&cert(&s)));
    let served = tokio::task::spawn_blocking(move || {
        (0..20)
            .filter(|_| {
                skytime_tests::nts_client::key_exchange(addr, "localhost", &tls)
                    .is_ok_and(|ke| ke.cookies.len() == 8)
            })
            .count()
    })
    .await
    .unwrap();
    let evicted = s.service.stats().ke_evicted;
    stop.cancel();
    for t in slow {
        t.await.unwrap();
    }
    assert_eq!(
        served, 20,
        "good clients served out of 20 ({evicted} evicted)"
    );
}

/// Whether `f` holds within 10 s.
async fn eventually(f: impl Fn() -> bool) -> bool {
    wait_until_async(Duration::from_secs(10), || f().then_some(()))
        .await
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_problems_nak_and_tampering_is_silent() {
    let s = start(&config(|_| {})).await;
    let (response, keys) = exchange(s.addr, &cert(&s), &good_request()).await.unwrap();
    let cookies = cookies(&response);

    // Tampered cookie: NAK carrying the unique identifier, no authenticator.
    let mut bad_cookie = cookies[0].clone();
    bad_cookie[40] ^= 1;
    let (authentic, nak) = answer(&s.service, &nts_request(&keys, &bad_cookie, 0)).unwrap();
    assert!(!authentic);
    assert_eq!(check_reply(&nak, &UID, &keys), Some(ReplyCheck::Nak));
    // Unknown key id.
    let mut unknown = cookies[0].clone();
    unknown[0] ^= 0xff;
    assert!(
        !answer(&s.service, &nts_request(&keys, &unknown, 0))
            .unwrap()
            .0
    );

    // Tampered authenticator or header: no reply.
    let good = nts_request(&keys, &cookies[1], 0);
    for i in [1, 45, good.len() - 2] {
        let mut t = good.clone();
        t[i] ^= 0x10;
        assert_eq!(
            answer(&s.service, &t).unwrap_err(),
            DropReason::NtsAuthFailed,
            "byte {i}"
        );
    }
    // Wrong key (another session's C2S).
    let (_, other_keys) = exchange(s.addr, &cert(&s), &good_request()).await.unwrap();
    assert_eq!(
        answer(&s.service, &nts_request(&other_keys, &cookies[2], 0)).unwrap_err(),
        DropReason::NtsAuthFailed
    );
    // Duplicated unique identifier.
    let mut dup = ntp_header().to_vec();
    skytime_nts::extension::write_field(
        &mut dup,
        skytime_nts::extension::field_type::UNIQUE_IDENTIFIER,
        &UID,
    );
    dup.extend_from_slice(&good[48..]);
    assert_eq!(
        answer(&s.service, &dup).unwrap_err(),
        DropReason::NtsAuthFailed
    );
    // Malformed framing.
    let mut framing = good.clone();
    framing[50] = 0xff;
    framing[51] = 0xf3;
    assert_eq!(
        answer(&s.service, &framing).unwrap_err(),
        DropReason::BadExtensionField
    );

    // Replay: the server is stateless and answers again, with new cookies.
    let (_, a) = answer(&s.service, &good).unwrap();
    let (_, b) = answer(&s.service, &good).unwrap();
    let (Some(ReplyCheck::Authentic(ca)), Some(ReplyCheck::Authentic(cb))) =
        (check_reply(&a, &UID, &keys), check_reply(&b, &UID, &keys))
    else {
        panic!("replies must verify")
    };
    assert_ne!(ca, cb);

    // Non-NTS extension fields: plain unless NTS is required.
    let mut foreign = ntp_header().to_vec();
    skytime_nts::extension::write_field(&mut foreign, 0x2005, &[0; 12]);
    assert_eq!(
        reply(&s.service, &foreign).map(|r| (r.0, r.1.len())),
        Ok((ReplyKind::Ntp, 48))
    );

    let st = s.service.stats();
    assert_eq!(
        (
            st.ntp_nak_bad_cookie,
            st.ntp_nak_unknown_key,
            st.ntp_auth_failed,
            st.ntp_malformed,
            st.ntp_authentic,
            st.ntp_not_nts
        ),
        (1, 1, 4, 2, 2, 1),
        "{st}"
    );

    let r = start(&config(|c| c.require = true)).await;
    assert!(r.service.required());
    assert_eq!(
        reply(&r.service, &foreign).unwrap_err(),
        DropReason::NtsRequired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_survive_restart_and_rotation_window() {
    let cfg = config(|c| {
        c.rotation_interval = skytimed::nts::config::Seconds(1);
        c.previous_keys = skytimed::nts::config::Count(2);
    });
    let s = start(&cfg).await;
    let (response, keys) = exchange(s.addr, &cert(&s), &good_request()).await.unwrap();
    let cookies = cookies(&response);
    let dir = s.stop();
    let s = start_in(dir, &cfg).await;
    // Wait for at least one rotation; the cookie is still good.
    assert!(eventually(|| s.service.stats().key_rotations >= 1).await);
    assert!(
        answer(&s.service, &nts_request(&keys, &cookies[0], 0))
            .unwrap()
            .0,
        "cookie valid after restart and one rotation"
    );
    // After more rotations than previous_keys, it is NAKed as unknown.
    assert!(eventually(|| s.service.stats().key_rotations >= 4).await);
    let (authentic, nak) = answer(&s.service, &nts_request(&keys, &cookies[1], 0)).unwrap();
    assert!(!authentic);
    assert_eq!(check_reply(&nak, &UID, &keys), Some(ReplyCheck::Nak));
    assert!(s.service.stats().ntp_nak_unknown_key >= 1);
    let text = std::fs::read_to_string(s.dir.path().join("nts-master-keys")).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("key ")).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_refuses_bad_files_and_takes_good_ones() {
    let s = start(&config(|_| {})).await;
    let old_cert = s.dir.path().join("old-cert.pem");
    std::fs::copy(cert(&s), &old_cert).unwrap();
    let key_path = s.dir.path().join("key.pem");
    let old_key = std::fs::read(&key_path).unwrap();

    // Garbage certificate: refused, old one keeps serving.
    std::fs::write(cert(&s), "not a certificate").unwrap();
    let e = s.service.reload().unwrap_err().to_string();
    assert!(e.contains("cert.pem"), "{e}");
    assert!(exchange(s.addr, &old_cert, &good_request()).await.is_ok());
    // A valid certificate for another key: refused too.
    let (other_cert, _) = skytimed::nts::identity::self_signed("localhost", &[LOCALHOST]).unwrap();
    std::fs::write(cert(&s), other_cert).unwrap();
    let e = s.service.reload().unwrap_err().to_string();
    assert!(e.contains("does not fit"), "{e}");
    assert!(exchange(s.addr, &old_cert, &good_request()).await.is_ok());

    // A new matching pair: taken; clients trusting only the old one now fail.
    let (new_cert, new_key) =
        skytimed::nts::identity::self_signed("localhost", &[LOCALHOST]).unwrap();
    std::fs::write(&key_path, new_key).unwrap();
    std::fs::write(cert(&s), new_cert).unwrap();
    s.service.reload().unwrap();
    assert!(exchange(s.addr, &cert(&s), &good_request()).await.is_ok());
    assert!(exchange(s.addr, &old_cert, &good_request()).await.is_err());
    assert_ne!(std::fs::read(&key_path).unwrap(), old_key);
    let st = s.service.stats();
    assert_eq!((st.cert_reloads, st.cert_reload_failures), (1, 2));
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_ecdsa_and_rsa_keys_all_serve() {
    for alg in ["ed25519", "ecdsa", "rsa"] {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let d = |p: &Path| p.display().to_string();
        match alg {
            "ed25519" => openssl(&["genpkey", "-algorithm", "ed25519", "-out", &d(&key)]),
            "ecdsa" => openssl(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &d(&key),
            ]),
            _ => openssl(&["genrsa", "-traditional", "-out", &d(&key), "2048"]),
        }
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            &d(&key),
            "-out",
            &d(&cert),
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ]);
        let s = start_in(dir, &config(|_| {})).await;
        let (r, _) = exchange(s.addr, &cert, &good_request())
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(cookies(&r).len(), 8, "{alg}");
    }
}

#[test]
fn identity_is_end_entity_0600_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = NtsConfig::default();
    let r = generate_identity(
        &cfg,
        dir.path(),
        "skytime",
        &[LOCALHOST, "::1".parse().unwrap()],
    )
    .unwrap();
    assert_eq!(r.created.len(), 3);
    for f in ["cert.pem", "key.pem", "nts-master-keys"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.path().join("cert.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("CA:FALSE"), "{text}");
    for san in [
        "DNS:skytime",
        "DNS:skytime.local",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
    ] {
        assert!(text.contains(san), "{san} missing:\n{text}");
    }
    let before: Vec<_> = ["cert.pem", "key.pem", "nts-master-keys"]
        .iter()
        .map(|f| std::fs::read(dir.path().join(f)).unwrap())
        .collect();
    let r = generate_identity(&cfg, dir.path(), "other", &[]).unwrap();
    assert!(r.created.is_empty());
    let after: Vec<_> = ["cert.pem", "key.pem", "nts-master-keys"]
        .iter()
        .map(|f| std::fs::read(dir.path().join(f)).unwrap())
        .collect();
    assert_eq!(before, after);
    // Half an identity is an error, and nothing is written.
    std::fs::remove_file(dir.path().join("key.pem")).unwrap();
    let e = generate_identity(&cfg, dir.path(), "skytime", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("refusing"), "{e}");
    assert!(!dir.path().join("key.pem").exists());
}
