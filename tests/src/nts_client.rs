//! A minimal NTS client for benchmarks and system tests: one NTS-KE
//! exchange over TLS 1.3 (rustls, blocking), then authenticated NTP
//! requests built and checked with skytime-nts's client helpers.
//!
//! It speaks to any RFC 8915 server (skytimed, chronyd, ntpd-rs), so the
//! benchmark loads them all with the same code. It offers
//! AES-SIV-CMAC-256 by default, which every server speaks; tests offer
//! AES-128-GCM-SIV too, with or without chrony's record 1024.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use skytime_nts::aead::{Aead, Key, SessionKeys};
use skytime_nts::ke::{exporter_context, COMPLIANT_128GCM_EXPORT, EXPORTER_LABEL};
use skytime_nts::record::{kind, records, write_record, write_u16_record};
use skytime_nts::server::client::{check_reply, request, ReplyCheck};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// skytimed serving NTS on loopback, its identity made by `skytimed
/// init` (as on the appliance), telling clients where its NTP port is;
/// `ntp_extra` goes at the end of its `[ntp]` table (subtables such as
/// `[ntp.ratelimit]` included). Returns it and its certificate file.
pub fn nts_daemon(ntp_extra: &str) -> (crate::Daemon, std::path::PathBuf) {
    let dir = crate::dbus::initialized_dir();
    let cert = dir.path().join("data/cert.pem");
    let port = crate::free_udp_port();
    let config = format!(
        "data_dir = \"@DATA@\"\n[ntp]\nlisten = [\"127.0.0.1:{port}\"]\nallow = [\"127.0.0.0/8\"]\nlocal_stratum = 10\n{ntp_extra}[nts]\nenabled = true\nke_listen = [\"127.0.0.1:0\"]\nntp_server = \"127.0.0.1\"\nntp_port = {port}\n"
    );
    (crate::Daemon::start_in(dir, &config, &[]), cert)
}

/// What one key exchange gave.
#[derive(Clone, Debug)]
pub struct KeOutcome {
    pub keys: SessionKeys,
    pub cookies: Vec<Vec<u8>>,
    /// The server answered with chrony's record 1024.
    pub compliant_export: bool,
}

/// What a client offers in its key exchange.
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    /// AEAD ids, most preferred first.
    pub aeads: &'a [u16],
    /// Send chrony's record 1024 (RFC 8915 exporter context for 30).
    pub compliant_export: bool,
}

impl Offer<'static> {
    /// AES-SIV-CMAC-256 only, as chrony 4.3 offers.
    pub const AES_SIV: Self = Self {
        aeads: &[15],
        compliant_export: false,
    };
}

/// A TLS 1.3 client configuration with ALPN `ntske/1` that trusts only the
/// certificate(s) in `cert` (PEM).
pub fn tls_config(cert: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("read certificate") {
        roots
            .add(c.expect("PEM certificate"))
            .expect("trust anchor");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"ntske/1".to_vec()];
    // Each exchange is a full handshake, as a client's first contact is.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

/// The key exchange request for `offer`: NTPv4 and its algorithms.
pub fn ke_request(offer: Offer<'_>) -> Vec<u8> {
    let mut m = Vec::new();
    write_u16_record(&mut m, true, kind::NEXT_PROTOCOL, &[0]);
    write_u16_record(&mut m, true, kind::AEAD_ALGORITHM, offer.aeads);
    if offer.compliant_export {
        write_record(&mut m, false, COMPLIANT_128GCM_EXPORT, &[]);
    }
    write_record(&mut m, true, kind::END_OF_MESSAGE, &[]);
    m
}

/// One NTS-KE exchange with `addr`, verifying the server as `name`,
/// offering AES-SIV-CMAC-256 only.
pub fn key_exchange(
    addr: SocketAddr,
    name: &str,
    cfg: &Arc<rustls::ClientConfig>,
) -> std::io::Result<KeOutcome> {
    key_exchange_offering(addr, name, cfg, Offer::AES_SIV)
}

/// One NTS-KE exchange offering `offer`. Keys for AES-128-GCM-SIV are
/// derived with RFC 8915's context, which a server must only choose for a
/// client that sent record 1024 or offered nothing else.
pub fn key_exchange_offering(
    addr: SocketAddr,
    name: &str,
    cfg: &Arc<rustls::ClientConfig>,
    offer: Offer<'_>,
) -> std::io::Result<KeOutcome> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    key_exchange_on(tcp, name, cfg, offer, Duration::from_secs(5))
}

/// One NTS-KE exchange over `tcp`, already connected (from whatever
/// source address the caller bound), each read and write bounded by
/// `timeout`.
pub fn key_exchange_on(
    tcp: TcpStream,
    name: &str,
    cfg: &Arc<rustls::ClientConfig>,
    offer: Offer<'_>,
    timeout: Duration,
) -> std::io::Result<KeOutcome> {
    let io_err = |e: String| std::io::Error::other(e);
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    tcp.set_nodelay(true)?;
    let server = ServerName::try_from(name.to_owned()).map_err(|e| io_err(e.to_string()))?;
    let conn =
        rustls::ClientConnection::new(cfg.clone(), server).map_err(|e| io_err(e.to_string()))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(&ke_request(offer))?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // Servers close without close_notify; what arrived is complete
        // when it ends with End of Message, checked below.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e),
    }
    let mut cookies = Vec::new();
    let mut ended = false;
    let mut aead = None;
    let mut compliant_export = false;
    for r in records(&response) {
        let r = r.map_err(|e| io_err(format!("bad NTS-KE response: {e}")))?;
        match r.kind {
            kind::NEW_COOKIE => cookies.push(r.body.to_vec()),
            kind::ERROR => return Err(io_err(format!("NTS-KE error record {:?}", r.body))),
            kind::AEAD_ALGORITHM if r.body.len() == 2 => {
                aead = Aead::from_id(u16::from_be_bytes([r.body[0], r.body[1]]));
            }
            COMPLIANT_128GCM_EXPORT => compliant_export = true,
            kind::END_OF_MESSAGE => ended = true,
            _ => {}
        }
    }
    let aead = aead.ok_or_else(|| io_err("no usable AEAD algorithm in the response".into()))?;
    let export = |s2c: bool| {
        let mut key = [0u8; 32];
        tls.conn
            .export_keying_material(
                &mut key[..aead.key_len()],
                EXPORTER_LABEL,
                Some(&exporter_context(aead, s2c)),
            )
            .map_err(|e| io_err(e.to_string()))
            .and_then(|k| Key::new(k).ok_or_else(|| io_err("bad key length".into())))
    };
    let keys = SessionKeys {
        aead,
        c2s: export(false)?,
        s2c: export(true)?,
    };
    if !ended || cookies.is_empty() {
        return Err(io_err(format!(
            "incomplete NTS-KE response ({} bytes, {} cookies)",
            response.len(),
            cookies.len()
        )));
    }
    Ok(KeOutcome {
        keys,
        cookies,
        compliant_export,
    })
}

/// An authenticated NTP client request with a fixed Unique Identifier
/// (a server keeps no per-request state, so it may be sent many times).
pub fn ntp_request(ke: &KeOutcome, uid: &[u8; 32]) -> Vec<u8> {
    let mut header = [0u8; 48];
    header[0] = 0x23; // NTPv4, client
    header[40..48].copy_from_slice(&crate::ntp::now().to_bits().to_be_bytes());
    let nonce: [u8; 16] = rand::random();
    let nonce = &nonce[..ke.keys.aead.nonce_len()];
    request(
        &header,
        uid,
        &ke.cookies[0],
        0,
        ke.keys.aead,
        &ke.keys.c2s,
        nonce,
        &[],
    )
}

/// Whether `reply` is an authentic answer to a request with `uid`.
pub fn is_authentic(reply: &[u8], uid: &[u8; 32], ke: &KeOutcome) -> bool {
    matches!(
        check_reply(reply, uid, &ke.keys),
        Some(ReplyCheck::Authentic(c)) if !c.is_empty()
    )
}
