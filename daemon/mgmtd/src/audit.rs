//! The audit log: one JSON line per write and per refusal (the client
//! certificate's fingerprint, its role and address, what was asked, the
//! result), on the data partition as `<data_dir>/audit.log`.
//!
//! Lines never carry request bodies, so no key material or configuration
//! reaches the log; results are HTTP statuses and error names. Each line
//! is one `write` to a file opened for appending, then synced, so a power
//! cut can lose at most the line being written. A torn last line is cut
//! off when the file is next opened, before anything is appended, so it
//! never runs into the next line ([`read_lines`] skips one meanwhile).
//! When the file would grow past its bound it is renamed to
//! `audit.log.1` (replacing the previous one, atomically) and a new file
//! begins: the log never takes more than twice the bound.
//!
//! This is the one persistent file not replaced through
//! `skytime_persist::atomic_write`: rewriting up to `audit_max_bytes` for
//! every line would cost the gateway more than the line is worth, and an
//! append of whole lines with a repaired tail gives the same guarantee
//! per line (every line on disk is one complete record).

use crate::role::Role;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const AUDIT_FILE: &str = "audit.log";

/// What one line says.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// The client certificate's SHA-256, or "-" without one.
    pub client: &'a str,
    pub role: Option<Role>,
    pub peer: Option<SocketAddr>,
    /// What was asked ("POST /api/v1/Config/Apply", "TLS handshake").
    pub action: &'a str,
    /// "200", an error name, "refused".
    pub result: &'a str,
    /// More about the result (an upload's size and hash, a handshake
    /// error); never a request body.
    pub detail: Option<&'a str>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    unix: i64,
    client: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    action: &'a str,
    result: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

/// The log, shared by every connection.
#[derive(Debug)]
pub struct Audit {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<Option<File>>,
}

impl Audit {
    /// The log in `dir`, rotated at `max_bytes`. The file is created with
    /// mode 0600 on the first line.
    pub fn new(dir: &Path, max_bytes: u64) -> Self {
        Self {
            path: dir.join(AUDIT_FILE),
            max_bytes,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one line. Failures are logged, never fatal: the gateway
    /// keeps serving (and saying so) when the log cannot be written.
    pub fn record(&self, e: &Entry<'_>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let line = Line {
            time: skytime_api::display::utc(now),
            unix: now,
            client: e.client,
            role: e.role.map(Role::name),
            peer: e.peer.map(|p| p.to_string()),
            action: e.action,
            result: e.result,
            detail: e.detail,
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = self.append(&mut file, text.as_bytes()) {
            *file = None;
            tracing::error!(path = %self.path.display(), "cannot write the audit log: {err}");
        }
    }

    fn append(&self, file: &mut Option<File>, line: &[u8]) -> std::io::Result<()> {
        if file.is_none() {
            *file = Some(self.open()?);
        }
        let size = file
            .as_ref()
            .map_or(Ok(0), |f| f.metadata().map(|m| m.len()))?;
        if size > 0 && size + line.len() as u64 > self.max_bytes {
            // The rename replaces audit.log.1 atomically; the directory is
            // synced so that the rotation itself survives a power cut.
            std::fs::rename(&self.path, self.rotated())?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            *file = Some(self.open()?);
        }
        let f = file.as_mut().expect("opened above");
        f.write_all(line)?;
        f.sync_data()
    }

    fn open(&self) -> std::io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        cut_torn_tail(&file)?;
        Ok(file)
    }

    /// Where the previous file goes.
    pub fn rotated(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }
}

/// Cuts a line left unfinished by a crash off the end of `file`, so the
/// next line starts on a line of its own.
fn cut_torn_tail(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end != len {
        tracing::warn!(
            "audit log: cutting {} bytes of a line torn by a crash",
            len - end
        );
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(())
}

/// The complete lines of an audit file (a torn last line is left out).
pub fn read_lines(path: &Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read(path)?;
    let complete = match text.iter().rposition(|&b| b == b'\n') {
        Some(i) => &text[..=i],
        None => &[][..],
    };
    Ok(String::from_utf8_lossy(complete)
        .lines()
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(action: &'a str) -> Entry<'a> {
        Entry {
            client: "AB:CD",
            role: Some(Role::Admin),
            peer: Some("127.0.0.1:4000".parse().unwrap()),
            action,
            result: "200",
            detail: None,
        }
    }

    #[test]
    fn lines_are_json_and_the_log_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::new(dir.path(), 4096);
        for i in 0..200 {
            audit.record(&entry(&format!("POST /api/v1/Nts/RotateKeys #{i}")));
        }
        let now = std::fs::read_to_string(audit.path()).unwrap();
        let before = std::fs::read_to_string(audit.rotated()).unwrap();
        assert!(now.len() as u64 <= 4096 && before.len() as u64 <= 4096);
        let last: serde_json::Value = serde_json::from_str(now.lines().last().unwrap()).unwrap();
        assert_eq!(last["action"], "POST /api/v1/Nts/RotateKeys #199");
        assert_eq!(last["client"], "AB:CD");
        assert_eq!(last["role"], "admin");
        assert_eq!(last["peer"], "127.0.0.1:4000");
        assert!(last["time"].as_str().unwrap().ends_with(" UTC"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(audit.path()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    /// A crash in the middle of a line, at every byte: the next start
    /// keeps every complete line, drops the torn one, and its own lines
    /// are whole records.
    #[test]
    fn a_line_torn_anywhere_never_spoils_the_next() {
        let probe = tempfile::tempdir().unwrap();
        Audit::new(probe.path(), 1 << 20).record(&entry("torn"));
        let torn = std::fs::read(probe.path().join(AUDIT_FILE)).unwrap();
        for cut in 0..torn.len() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(AUDIT_FILE);
            Audit::new(dir.path(), 1 << 20).record(&entry("before"));
            let mut f = OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(&torn[..cut]).unwrap();
            drop(f);
            let lines = read_lines(&path).unwrap();
            assert_eq!(lines.len(), 1, "cut {cut}: the torn line is not read");
            Audit::new(dir.path(), 1 << 20).record(&entry("after"));
            let lines = read_lines(&path).unwrap();
            let actions: Vec<String> = lines
                .iter()
                .map(|l| {
                    let v: serde_json::Value =
                        serde_json::from_str(l).unwrap_or_else(|e| panic!("cut {cut}: {l:?}: {e}"));
                    v["action"].as_str().unwrap().to_owned()
                })
                .collect();
            assert_eq!(actions, ["before", "after"], "cut {cut}");
            assert!(std::fs::read(&path).unwrap().ends_with(b"\n"));
        }
    }

    #[test]
    fn a_new_audit_appends_to_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        Audit::new(dir.path(), 1 << 20).record(&entry("first"));
        Audit::new(dir.path(), 1 << 20).record(&entry("second"));
        let text = std::fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
