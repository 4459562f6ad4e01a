//! NTS sessions on disk (chrony's `ntsdumpdir`): one file per NTS-KE
//! server in the state directory, mode 0600, replaced atomically, so a
//! restart goes on with the keys and cookies it had instead of a new key
//! exchange. A file that cannot be read is logged and ignored (a new
//! exchange replaces it).

use skytime_nts::ntp_client::SavedSession;
use skytime_persist::atomic_write;
use std::path::{Path, PathBuf};

/// The file for the NTS-KE server `ke_server` ("host:port").
pub fn path(dir: &Path, ke_server: &str) -> PathBuf {
    let name: String = ke_server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}.nts"))
}

/// The saved session for `ke_server`, if there is a usable one.
pub fn load(dir: &Path, ke_server: &str) -> Option<SavedSession> {
    let file = path(dir, ke_server);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(
                "cannot read NTS session {}: {e}; a new key exchange replaces it",
                file.display()
            );
            return None;
        }
    };
    match SavedSession::parse(&text) {
        Ok(s) if s.ke_server == ke_server && s.session.cookies() > 0 => Some(s),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(
                "NTS session {}: {e}; a new key exchange replaces it",
                file.display()
            );
            None
        }
    }
}

/// Saves `session` (0600, atomically), creating the directory (0700).
pub fn save(dir: &Path, session: &SavedSession) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    atomic_write(
        &path(dir, &session.ke_server),
        session.render().as_bytes(),
        0o600,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use skytime_nts::aead::{Aead, Key, SessionKeys};
    use skytime_nts::ntp_client::NtsSession;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sessions_survive_and_stay_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nts-client");
        let s = SavedSession {
            ke_server: "time.example:4460".into(),
            ntp_server: None,
            ntp_port: Some(123),
            session: NtsSession::new(
                SessionKeys {
                    aead: Aead::AesSivCmac256,
                    c2s: Key::from([1; 32]),
                    s2c: Key::from([2; 32]),
                },
                vec![vec![7; 100]; 3],
            ),
        };
        assert!(load(&state, "time.example:4460").is_none());
        save(&state, &s).unwrap();
        let file = path(&state, "time.example:4460");
        assert_eq!(file.file_name().unwrap(), "time.example_4460.nts");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(load(&state, "time.example:4460"), Some(s));
        assert!(load(&state, "other:4460").is_none());
        std::fs::write(&file, "garbage").unwrap();
        assert!(load(&state, "time.example:4460").is_none());
    }
}
