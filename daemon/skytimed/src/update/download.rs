//! `InstallFromUrl`'s download: an HTTPS GET streamed to the data
//! partition, bounded in size and time, hashed on the way, and kept only
//! when its SHA-256 is the one the operator gave. RAUC then installs the
//! local file like any other (signature, compatible, version policy).
//!
//! Why download rather than RAUC's streaming: streaming needs the kernel's
//! nbd module, RAUC's `[streaming]` settings and a TLS setup in RAUC; a
//! download needs none of that, is bounded by `max_bundle_mib`, and the
//! hash check refuses a damaged or substituted file before RAUC opens it.
//! The cost is the bundle's size on the data partition, once.

use super::{Notice, Updater};
use bytes::Buf;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};
use skytime_api::ApiError;
use skytime_ota::state::State;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Longest wait for the connection, the handshake, or the next piece of
/// the body.
const IDLE: Duration = Duration::from_secs(30);

/// What to fetch.
#[derive(Debug, Clone)]
pub struct Fetch<'a> {
    /// `https://host[:port]/path`.
    pub url: &'a str,
    /// The SHA-256 the file must have (64 hex digits).
    pub sha256: &'a str,
    /// Where it goes.
    pub dir: &'a Path,
    /// The most bytes accepted.
    pub max: u64,
    /// PEM file of the CAs to trust; `None`: the system's CAs.
    pub ca_file: Option<&'a Path>,
}

/// Checks the arguments before anything is fetched: an `https` URL with a
/// host, a SHA-256 of 64 hex digits. Returns (host, port, path and query).
pub fn check(url: &str, sha256: &str) -> Result<(String, u16, String), ApiError> {
    let bad = |why: &str| ApiError::InvalidArgs(format!("{url:?}: {why}"));
    let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("only https URLs are fetched"));
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::InvalidArgs(format!(
            "the SHA-256 {sha256:?} is not 64 hex digits (sha256sum prints it)"
        )));
    }
    Ok((host, uri.port_u16().unwrap_or(443), path))
}

fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, ApiError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match ca_file {
        Some(p) => {
            use rustls_pki_types::pem::PemObject;
            CertificateDer::pem_file_iter(p)
                .and_then(|i| i.collect())
                .map_err(|e| {
                    ApiError::ApplyFailed(format!("[update] url_ca_file {}: {e}", p.display()))
                })?
        }
        None => rustls_native_certs::load_native_certs().certs,
    };
    roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(ApiError::ApplyFailed(
            "no CA certificate to check the server with".into(),
        ));
    }
    Ok(roots)
}

/// Downloads `f.url` into `f.dir`; returns the file's path.
pub async fn fetch(f: &Fetch<'_>) -> Result<PathBuf, ApiError> {
    let (host, port, path) = check(f.url, f.sha256)?;
    let want = f.sha256.to_ascii_lowercase();
    let failed = |why: String| ApiError::BundleRejected(format!("downloading {}: {why}", f.url));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::ApplyFailed(e.to_string()))?
        .with_root_certificates(roots(f.ca_file)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.clone()).map_err(|e| failed(e.to_string()))?;
    let tcp = tokio::time::timeout(IDLE, tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| failed("no connection within 30 s".into()))?
        .map_err(|e| failed(e.to_string()))?;
    let tls = tokio::time::timeout(
        IDLE,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| failed("the TLS handshake timed out".into()))?
    .map_err(|e| failed(format!("TLS: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, host.as_str())
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| failed(e.to_string()))?;
    let response = tokio::time::timeout(IDLE, sender.send_request(req))
        .await
        .map_err(|_| failed("no answer within 30 s".into()))?
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        conn.abort();
        return Err(failed(format!("the server answered {}", response.status())));
    }
    let too_large = || {
        failed(format!(
            "larger than [update] max_bundle_mib ({} bytes)",
            f.max
        ))
    };
    let announced = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > f.max) {
        conn.abort();
        return Err(too_large());
    }
    std::fs::create_dir_all(f.dir)
        .map_err(|e| ApiError::PersistFailed(format!("cannot create {}: {e}", f.dir.display())))?;
    // One download at a time: any part file is an earlier one's remains.
    remove_partial(f.dir);
    let part = f
        .dir
        .join(format!("{PART_PREFIX}{}.part", std::process::id()));
    let result = receive(
        response.into_body(),
        &part,
        f.max,
        announced,
        &failed,
        &too_large,
    )
    .await;
    conn.abort();
    let got = match result {
        Ok(h) => h,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    if got != want {
        let _ = std::fs::remove_file(&part);
        return Err(failed(format!(
            "its SHA-256 is {got}, not {want}: damaged on the way or another file"
        )));
    }
    let path = f.dir.join(format!("download-{}.raucb", &want[..16]));
    std::fs::rename(&part, &path)
        .and_then(|()| std::fs::File::open(f.dir)?.sync_all())
        .map_err(|e| ApiError::PersistFailed(format!("cannot keep {}: {e}", path.display())))?;
    // Earlier downloads go once a new one is complete.
    if let Ok(entries) = std::fs::read_dir(f.dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path() != path && name.starts_with("download-") && name.ends_with(".raucb") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(path)
}

/// What a download in progress is called until its hash is checked.
const PART_PREFIX: &str = ".download-";

/// Removes the part files of downloads that never finished (a power cut,
/// a crash, a kill): they would hold the data partition's space for ever,
/// since the next download has another name. Failures are logged only.
pub fn remove_partial(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(PART_PREFIX) && name.ends_with(".part") {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    tracing::info!(file = %e.path().display(), "removed an unfinished download")
                }
                Err(err) => {
                    tracing::warn!(file = %e.path().display(), "cannot remove an unfinished download: {err}")
                }
            }
        }
    }
}

/// Streams the body to `part`; returns its SHA-256 (hex).
async fn receive(
    mut body: hyper::body::Incoming,
    part: &Path,
    max: u64,
    announced: Option<u64>,
    failed: &impl Fn(String) -> ApiError,
    too_large: &impl Fn() -> ApiError,
) -> Result<String, ApiError> {
    let io = |e: std::io::Error| ApiError::PersistFailed(format!("{}: {e}", part.display()));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(part)
        .await
        .map_err(io)?;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut size = 0u64;
    loop {
        let frame = match tokio::time::timeout(IDLE, body.frame()).await {
            Err(_) => {
                return Err(failed(format!(
                    "nothing arrived for 30 s after {size} bytes"
                )))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(failed(format!("after {size} bytes: {e}"))),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        size += data.remaining() as u64;
        if size > max {
            return Err(too_large());
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            hash.update(chunk);
            file.write_all(chunk).await.map_err(io)?;
            let n = chunk.len();
            data.advance(n);
        }
    }
    if announced.is_some_and(|n| n != size) {
        return Err(failed(format!(
            "it ended after {size} bytes, shorter than announced"
        )));
    }
    file.sync_all().await.map_err(io)?;
    Ok(hash
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl Updater {
    /// `InstallFromUrl(url, sha256, options)`: checks the arguments and
    /// RAUC's presence, then downloads in the background (Operation
    /// "downloading") and installs the file as `Install` does; a failure
    /// is reported with `Completed(false, reason)`.
    pub async fn install_from_url(
        self: &Arc<Self>,
        url: &str,
        sha256: &str,
        force: bool,
        reboot: bool,
    ) -> Result<(), ApiError> {
        check(url, sha256)?;
        self.rauc_looked_for().await?;
        let _t = self.transition.lock().await;
        if matches!(
            self.state(),
            State::Staged { .. } | State::Installing { .. }
        ) || self.with_view(|v| std::mem::replace(&mut v.downloading, true))
        {
            return Err(ApiError::UpdateInProgress(
                "an update is already in progress".into(),
            ));
        }
        self.with_view(|v| {
            v.operation = "downloading".into();
            v.percent = 0;
            v.step = format!("downloading {url}");
        });
        self.notify(Notice::Changed);
        tracing::info!(url, "downloading a bundle to install");
        let (me, url, sha256) = (self.clone(), url.to_owned(), sha256.to_owned());
        tokio::spawn(async move {
            let fetched = fetch(&Fetch {
                url: &url,
                sha256: &sha256,
                dir: &me.config.download_dir,
                max: me.config.max_bundle_bytes(),
                ca_file: me.config.url_ca_file.as_deref(),
            })
            .await;
            // "downloading" lasts until RAUC has the file (or refused it),
            // so that a follower never sees a gap between the two.
            let result = match fetched {
                Ok(path) => {
                    me.install_file(&path.to_string_lossy(), force, reboot)
                        .await
                }
                Err(e) => Err(e),
            };
            me.with_view(|v| {
                v.downloading = false;
                if v.operation == "downloading" {
                    v.operation = "idle".into();
                }
            });
            me.notify(Notice::Changed);
            if let Err(e) = result {
                tracing::error!(url, "install from URL failed: {e}");
                me.with_view(|v| v.step = format!("failed: {}", e.message()));
                me.notify(Notice::Completed(
                    false,
                    format!("{} [{}]", e.message(), e.name()),
                ));
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_with_a_host_and_a_sha256() {
        let h = "ab".repeat(32);
        assert_eq!(
            check("https://updates.example:8443/b.raucb?x=1", &h).unwrap(),
            ("updates.example".into(), 8443, "/b.raucb?x=1".into())
        );
        assert_eq!(check("https://[::1]/b", &h).unwrap().0, "::1");
        assert_eq!(check("https://h/b", &h).unwrap().1, 443);
        for bad in ["http://h/b", "ftp://h/b", "/local/b.raucb", "not a url"] {
            let e = check(bad, &h).unwrap_err();
            assert_eq!(e.name(), "org.freedesktop.DBus.Error.InvalidArgs", "{bad}");
        }
        for bad in ["", "ab", &"zz".repeat(32)] {
            assert!(check("https://h/b", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unfinished_downloads_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            ".download-4242.part",
            ".download-17.part",
            "download-0123456789abcdef.raucb",
            "operator.raucb",
            ".download-notes",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        remove_partial(dir.path());
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".download-notes",
                "download-0123456789abcdef.raucb",
                "operator.raucb"
            ]
        );
        // A directory that does not exist yet is not an error.
        remove_partial(&dir.path().join("absent"));
    }
}
