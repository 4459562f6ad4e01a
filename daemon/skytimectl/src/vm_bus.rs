//! `skytimectl vm-bus CHANNEL --listen PATH`: the host's end of a virtual
//! machine's management channel. The guest's end is
//! `skytime-vm-bus.service`, on a virtio-serial port named
//! `org.skytime.bus` whose host end is QEMU's chardev socket CHANNEL. Any
//! D-Bus client on the host (skytimectl, busctl) then reaches the guest's
//! system bus at `unix:path=PATH`.
//!
//! Why a relay, and not CHANNEL itself as the bus address: a virtio port is
//! one byte stream for the life of the VM, without connection boundaries.
//! The guest cannot tell one host client from the next, a bridge still
//! writing the last client's replies hands them to the next one, and a
//! bridge that has not yet seen the last client leave swallows the next
//! one's greeting: the new client then waits for ever. So each client gets
//! a session that a handshake opens ([`Handshake`]): the relay connects to
//! CHANNEL and sends `skytime-bus-hello N` (N fresh and random) each
//! second until the guest answers `skytime-bus-ready N`; whatever came
//! before that answer is an earlier session's leftovers and is dropped. The
//! relay then sends `skytime-bus-go N`, and the guest's end becomes a
//! `systemd-stdio-bridge`: from there on the stream is the client's D-Bus
//! connection. When the client leaves, the relay closes CHANNEL, which ends
//! the guest's bridge. Clients are served one at a time (the port carries
//! one connection); the next waits in the listen queue.

use crate::bus::{exit, CtlError};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;

/// How often the greeting is repeated while the guest is silent (its end
/// is restarted every 2 s while no host is connected).
const HELLO_EVERY: Duration = Duration::from_secs(1);
/// One connection's handshake; past it the relay connects again (which
/// ends whatever the guest was running for an earlier one).
const ATTEMPT: Duration = Duration::from_secs(15);

const HELLO: &str = "skytime-bus-hello ";
const READY: &str = "skytime-bus-ready ";
const GO: &str = "skytime-bus-go ";

/// The host's side of opening one session: what to send, and whether the
/// bytes read so far hold the guest's answer. Sans-IO.
#[derive(Debug)]
pub struct Handshake {
    nonce: String,
    /// The guest's answer to this session's greeting.
    ready: Vec<u8>,
    /// The tail of what was read, as long as an answer could still be
    /// completed by the next bytes.
    tail: Vec<u8>,
}

impl Handshake {
    /// `nonce`: this session's, lower-case hex (the guest checks).
    pub fn new(nonce: String) -> Self {
        Self {
            ready: format!("{READY}{nonce}\n").into_bytes(),
            nonce,
            tail: Vec::new(),
        }
    }

    pub fn hello(&self) -> Vec<u8> {
        format!("{HELLO}{}\n", self.nonce).into_bytes()
    }

    pub fn go(&self) -> Vec<u8> {
        format!("{GO}{}\n", self.nonce).into_bytes()
    }

    /// Feeds bytes read from the channel; true once they hold the answer
    /// to this session's greeting (the guest says nothing more until it
    /// gets `go`).
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        self.tail.extend_from_slice(bytes);
        if self.tail.windows(self.ready.len()).any(|w| w == self.ready) {
            return true;
        }
        let keep = self.ready.len() - 1;
        if self.tail.len() > keep {
            self.tail.drain(..self.tail.len() - keep);
        }
        false
    }
}

fn nonce() -> Result<String, CtlError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CtlError::new(exit::FAILED, "no randomness for the session's nonce"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// One attempt, of at most `within`: connect to the channel and run the
/// handshake.
async fn attempt(channel: &Path, within: Duration) -> Result<UnixStream, String> {
    let mut guest = UnixStream::connect(channel)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", channel.display()))?;
    let mut hs = Handshake::new(nonce().map_err(|e| e.message)?);
    let end = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        guest
            .write_all(&hs.hello())
            .await
            .map_err(|e| format!("writing to {}: {e}", channel.display()))?;
        let round = Instant::now() + HELLO_EVERY;
        while let Ok(read) = tokio::time::timeout_at(round, guest.read(&mut buf)).await {
            match read {
                Ok(0) => return Err(format!("{} closed", channel.display())),
                Ok(n) if hs.feed(&buf[..n]) => {
                    guest
                        .write_all(&hs.go())
                        .await
                        .map_err(|e| format!("writing to {}: {e}", channel.display()))?;
                    return Ok(guest);
                }
                Ok(_) => {}
                Err(e) => return Err(format!("reading {}: {e}", channel.display())),
            }
        }
    }
    Err(format!(
        "the guest did not answer within {} s",
        within.as_secs()
    ))
}

/// Opens a session on the channel, connecting again after a failed
/// attempt, within `limit`.
async fn open_session(channel: &Path, limit: Duration) -> Result<UnixStream, String> {
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match attempt(channel, left.min(ATTEMPT)).await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() + HELLO_EVERY >= end => return Err(e),
            Err(e) => {
                eprintln!("skytimectl vm-bus: {e}; trying again");
                tokio::time::sleep(HELLO_EVERY).await;
            }
        }
    }
}

/// Relays one client until either side closes.
async fn relay(mut client: UnixStream, mut guest: UnixStream) {
    let (mut cr, mut cw) = client.split();
    let (mut gr, mut gw) = guest.split();
    tokio::select! {
        _ = tokio::io::copy(&mut cr, &mut gw) => {}
        _ = tokio::io::copy(&mut gr, &mut cw) => {}
    }
}

/// Binds `listen` (0600: the channel carries an administrator's rights),
/// replacing a socket left by an earlier relay but nothing else. The
/// socket is made under a temporary name, restricted and then renamed, so
/// the path appears only once it listens with its final mode: a client
/// that waits for the path is never refused, nor let in too early.
fn bind(listen: &Path) -> Result<UnixListener, CtlError> {
    let invalid = |what: String| CtlError::new(exit::INVALID_INPUT, what);
    if let Ok(meta) = std::fs::symlink_metadata(listen) {
        if !meta.file_type().is_socket() {
            return Err(invalid(format!(
                "{} exists and is not a socket; choose another --listen path",
                listen.display()
            )));
        }
        std::fs::remove_file(listen)
            .map_err(|e| invalid(format!("cannot replace {}: {e}", listen.display())))?;
    }
    let name = listen.file_name().unwrap_or_default().to_string_lossy();
    let staging = listen.with_file_name(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging)
        .map_err(|e| invalid(format!("cannot listen on {}: {e}", staging.display())))?;
    let placed = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&staging, listen));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&staging);
        return Err(invalid(format!("cannot place {}: {e}", listen.display())));
    }
    Ok(listener)
}

/// Serves host clients on `listen`, one session on `channel` each, until
/// killed; a client the guest has not answered within `wait` is closed.
pub async fn serve(channel: &Path, listen: &Path, wait: Duration) -> Result<(), CtlError> {
    let listener = bind(listen)?;
    loop {
        let (client, _) = listener.accept().await.map_err(|e| {
            CtlError::new(
                exit::FAILED,
                format!("accepting on {}: {e}", listen.display()),
            )
        })?;
        match open_session(channel, wait).await {
            Ok(guest) => relay(client, guest).await,
            // The client sees its connection closed.
            Err(e) => eprintln!("skytimectl vm-bus: no session with the guest: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn messages_carry_the_nonce_on_one_line() {
        let hs = Handshake::new(N.into());
        assert_eq!(hs.hello(), format!("skytime-bus-hello {N}\n").into_bytes());
        assert_eq!(hs.go(), format!("skytime-bus-go {N}\n").into_bytes());
    }

    #[test]
    fn the_answer_is_found_after_leftovers_and_across_reads() {
        let mut hs = Handshake::new(N.into());
        // An earlier session's D-Bus bytes, then the answer in pieces.
        assert!(!hs.feed(b"l\x01\x00\x01\x10\x00\x00\x00junk\n\0"));
        assert!(!hs.feed(b"skytime-bus-rea"));
        assert!(!hs.feed(format!("dy {}", &N[..10]).as_bytes()));
        assert!(hs.feed(format!("{}\n", &N[10..]).as_bytes()));
    }

    #[test]
    fn another_sessions_answer_or_a_partial_one_is_not_taken() {
        let mut hs = Handshake::new(N.into());
        assert!(!hs.feed(b"skytime-bus-ready ffffffffffffffffffffffffffffffff\n"));
        // Without its newline the nonce could still go on.
        assert!(!hs.feed(format!("skytime-bus-ready {N}").as_bytes()));
        assert!(!hs.feed(b"0\n"));
        assert!(hs.feed(format!("skytime-bus-ready {N}\n").as_bytes()));
    }

    #[test]
    fn the_tail_kept_is_bounded() {
        let mut hs = Handshake::new(N.into());
        for _ in 0..1000 {
            assert!(!hs.feed(&[b'x'; 4096]));
        }
        assert!(hs.tail.len() < 64, "{}", hs.tail.len());
    }

    #[test]
    fn nonces_are_fresh_hex() {
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn a_path_that_is_not_a_socket_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "keep").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt.block_on(async { bind(&file).map(|_| ()) }).unwrap_err();
        assert_eq!(e.code, exit::INVALID_INPUT);
        assert!(e.message.contains("not a socket"), "{}", e.message);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    }

    /// The path appears listening, 0600, with nothing else left beside it;
    /// an earlier relay's socket is replaced.
    #[tokio::test]
    async fn the_socket_appears_listening_and_restricted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus");
        drop(bind(&path).unwrap());
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["bus"]);
        let client = tokio::net::UnixStream::connect(&path).await;
        assert!(client.is_ok(), "{client:?}");
        assert!(listener.accept().await.is_ok());
    }

    /// A channel whose far end never answers (a VM that died): the attempt
    /// ends, it does not hang.
    #[tokio::test]
    async fn a_silent_guest_fails_the_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let chan = dir.path().join("chan");
        let listener = UnixListener::bind(&chan).unwrap();
        let held = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        });
        let within = Duration::from_secs(2);
        let tried = tokio::time::timeout(within * 3, attempt(&chan, within)).await;
        let e = tried.expect("the attempt is bounded").unwrap_err();
        assert!(e.contains("did not answer"), "{e}");
        held.abort();
    }
}
