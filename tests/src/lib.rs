//! # skytime-tests: the one support crate of every test
//!
//! System tests run the real binaries (`skytimed`, `skytime-gpssim`) and
//! real third-party clients (Debian's chrony 4.3, ntpsec's ntpdig) on
//! loopback or in a private network namespace; skytimed's and
//! skytimectl's own integration tests use the same pieces. This crate
//! holds what they share: locating the built binaries, starting and
//! stopping the daemon with a config (and learning the addresses it
//! bound), driving chronyd in a mode that never touches the host clock
//! (`-x`), bounded commands and polls ([`run_bounded`], [`wait_until`]),
//! the private D-Bus and its users ([`dbus`]), a stand-in for the
//! daemon behind the management interfaces ([`standin`]), and RAUC 1.13
//! on the host with file-backed slots and test bundles ([`rauc`]).
//!
//! Of the daemon's crates it uses only the API vocabulary (`skytime-api`),
//! so that skytimed's own tests may use it; its dependency on skytimed is
//! there only to turn on skytimed's `test-hooks` feature in every build
//! the tests run (tests/tests/test_hooks.rs).
//!
//! The binaries must be built first (`make test` does it):
//! `cargo build --workspace --bins`.
//!
//! Everything started here stops by itself: children are killed on drop,
//! and every wait is bounded.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod dbus;
pub mod gpssim;
pub mod mgmt;
pub mod ntp;
pub mod nts_client;
pub mod procfs;
pub mod rauc;
pub mod standin;
pub mod systemd;
pub mod upstream;
pub mod vm;
pub mod vm_bus;

/// Path of a binary built in this workspace, next to the test executable's
/// profile directory (`target/<profile>/NAME`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps/, tools from target/<profile>/.
    let mut profile_dir = exe.parent().expect("target/<profile> directory");
    if profile_dir.ends_with("deps") {
        profile_dir = profile_dir.parent().expect("target/<profile> directory");
    }
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// Whether a system program is installed; tests that need one fail with
/// this message rather than skipping, since `make test` installs them.
pub fn require_program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run `make test-deps` (make test does)");
}

/// A UDP port on 127.0.0.1 that was free a moment ago. Another process
/// may take it before the caller binds it: prefer port 0 and
/// [`Daemon::ntp_addr`] where the port need not be known beforehand.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (see
/// [`free_udp_port`]).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    wait_until_every(timeout, Duration::from_millis(50), f)
}

/// Polls `f` every `every` (for polls that start a process) until it
/// returns `Some` or `timeout` passes; `f` runs at least once.
pub fn wait_until_every<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every.min(deadline - Instant::now()));
    }
}

/// [`wait_until`] for async tests: polls `f` every 50 ms without blocking
/// the runtime, until it returns `Some` or `timeout` passes.
pub async fn wait_until_async<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Forces `[clock] steer = false` into a test configuration: nothing a
/// test starts may steer the host's clock. A config with its own `[clock]`
/// section must say `steer = false` itself (checked here).
pub fn measure_only(config: &str) -> String {
    if config.contains("[clock]") {
        assert!(
            config.contains("steer = false"),
            "test configs must not steer the host clock:\n{config}"
        );
        config.to_owned()
    } else {
        format!("{config}\n[clock]\nsteer = false\n")
    }
}

/// A running skytimed with its own directory (config, data, log).
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
}

impl Daemon {
    /// Starts skytimed with `config` (TOML; `@DATA@` is replaced by the
    /// daemon's data directory) and extra arguments, and waits until it logs
    /// that it is ready.
    pub fn start(config: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, config, args)
    }

    /// Like [`Daemon::start`] in an existing directory (to restart a
    /// daemon on the same data).
    pub fn start_in(dir: tempfile::TempDir, config: &str, args: &[&str]) -> Self {
        Self::start_in_env(dir, config, args, &[])
    }

    /// Like [`Daemon::start_in`] with extra environment variables (a
    /// D-Bus address, NOTIFY_SOCKET, ...). Configs without a `[dbus]`
    /// section get `enabled = false`: there is no system bus here, and
    /// tests that want the management API start their own bus.
    pub fn start_in_env(
        dir: tempfile::TempDir,
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let data = dir.path().join("data");
        let config_path = dir.path().join("skytime.toml");
        let mut config = measure_only(config);
        if !config.contains("[dbus]") {
            config.push_str("\n[dbus]\nenabled = false\n");
        }
        fs::write(
            &config_path,
            config.replace("@DATA@", &data.display().to_string()),
        )
        .unwrap();
        let log_path = dir.path().join(format!(
            "skytimed-{}.log",
            Instant::now().elapsed().as_nanos() ^ std::process::id() as u128
        ));
        let log = fs::File::create(&log_path).unwrap();
        let child = Command::new(bin("skytimed"))
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .env_remove("SKYTIME_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skytimed");
        let mut d = Self {
            child: Some(child),
            dir,
            log_path,
            config_path,
        };
        let ready = wait_until(Duration::from_secs(20), || {
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("skytimed exited during start-up ({status}):\n{}", d.log());
            }
            d.log().contains("skytimed ready").then_some(())
        });
        assert!(
            ready.is_some(),
            "skytimed did not become ready:\n{}",
            d.log()
        );
        d
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The addresses the daemon says it serves `what` on ("NTP",
    /// "NTS-KE"), in its log at start-up: the bound ones, so that tests
    /// can configure port 0 and leave the choice to the kernel.
    pub fn serving(&self, what: &str) -> Vec<SocketAddr> {
        let needle = format!("serving {what} address=");
        self.log()
            .lines()
            .filter_map(|l| l.split(&needle).nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// The (first) NTP address the daemon bound.
    pub fn ntp_addr(&self) -> SocketAddr {
        self.serving("NTP")
            .first()
            .copied()
            .unwrap_or_else(|| panic!("skytimed logged no NTP address:\n{}", self.log()))
    }

    /// The (first) NTS-KE address the daemon bound.
    pub fn ke_addr(&self) -> SocketAddr {
        self.serving("NTS-KE")
            .first()
            .copied()
            .unwrap_or_else(|| panic!("skytimed logged no NTS-KE address:\n{}", self.log()))
    }

    /// A `key=value` counter from the daemon's latest statistics line,
    /// which SIGUSR1 asks for; `None` (a failure for the caller) until one
    /// appears. Counters that are zero may be left out of the line
    /// (`dropped_REASON`): ask [`Daemon::stat_or_zero`] for those.
    pub fn stat(&self, key: &str) -> Option<u64> {
        let line = self.stats_line()?;
        let needle = format!(" {key}=");
        line.split(&needle)
            .nth(1)
            .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|v| v.parse().ok())
    }

    /// [`Daemon::stat`] for a counter the line leaves out while it is 0.
    pub fn stat_or_zero(&self, key: &str) -> u64 {
        let line = self
            .stats_line()
            .unwrap_or_else(|| panic!("no statistics line after SIGUSR1:\n{}", self.log()));
        let needle = format!(" {key}=");
        line.split(&needle)
            .nth(1)
            .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The daemon's counter `key`, asked for until it is non-zero.
    pub fn nonzero_stat(&self, key: &str) -> u64 {
        wait_until_every(Duration::from_secs(20), Duration::from_millis(200), || {
            self.stat(key).filter(|v| *v > 0)
        })
        .unwrap_or_else(|| panic!("{key} stayed 0 or was never logged:\n{}", self.log()))
    }

    /// Asks for a statistics line (SIGUSR1) and returns it.
    fn stats_line(&self) -> Option<String> {
        const NEEDLE: &str = " received=";
        let before = self.log().matches(NEEDLE).count();
        self.signal("USR1");
        let log = wait_until(Duration::from_secs(5), || {
            let log = self.log();
            (log.matches(NEEDLE).count() > before).then_some(log)
        })?;
        log.lines()
            .rev()
            .find(|l| l.contains(NEEDLE))
            .map(str::to_owned)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Sends a signal (by name, as `kill -s` takes it) to the daemon.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name}");
    }

    /// Kills the daemon with SIGKILL (a power cut, as far as its files
    /// know) and returns its directory, to start it again on what is on
    /// disk.
    pub fn kill(mut self) -> tempfile::TempDir {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    /// Stops the daemon with SIGTERM and returns its exit success and log.
    pub fn stop(mut self) -> (bool, String, tempfile::TempDir) {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let status = wait_until(Duration::from_secs(15), || child.try_wait().unwrap());
        let ok = match status {
            Some(s) => s.success(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                false
            }
        };
        let log = self.log();
        let dir = tempfile::tempdir().unwrap();
        let dir = std::mem::replace(&mut self.dir, dir);
        (ok, log, dir)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A chronyd that never touches the host clock (`-x`), with its own
/// configuration, command socket and files in a private directory.
#[derive(Debug)]
pub struct Chronyd {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Chronyd {
    /// Starts chronyd with `directives` (one per line, such as
    /// `server 127.0.0.1 port 11123 iburst`).
    pub fn start(directives: &[String]) -> Self {
        let chronyd = require_program("chronyd");
        let dir = tempfile::tempdir().unwrap();
        // chronyd refuses a command socket in a directory others can read.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let socket = dir.path().join("chronyd.sock");
        let mut conf = directives.join("\n");
        conf.push_str(&format!(
            "\npidfile {d}/chronyd.pid\nbindcmdaddress {s}\ncmdport 0\nntsdumpdir {d}\nlogdir {d}\n",
            d = dir.path().display(),
            s = socket.display()
        ));
        let conf_path = dir.path().join("chrony.conf");
        fs::write(&conf_path, conf).unwrap();
        let log = fs::File::create(dir.path().join("chronyd.log")).unwrap();
        let child = Command::new(chronyd)
            .args(["-x", "-d", "-u", "root", "-L", "0", "-f"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chronyd");
        let c = Self {
            child: Some(child),
            dir,
            socket,
        };
        let up = wait_until(Duration::from_secs(10), || c.socket.exists().then_some(()));
        assert!(
            up.is_some(),
            "chronyd did not open its command socket:\n{}",
            c.log()
        );
        c
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("chronyd.log")).unwrap_or_default()
    }

    /// Runs `chronyc -n ARGS` against this chronyd.
    pub fn chronyc(&self, args: &[&str]) -> String {
        let out = Command::new(require_program("chronyc"))
            .arg("-h")
            .arg(&self.socket)
            .arg("-n")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// What `chronyc ntpdata` says of `server`: authenticated, and how
    /// many of its replies passed every test.
    pub fn ntpdata(&self, server: std::net::SocketAddr) -> (bool, u64) {
        let out = self.chronyc(&["ntpdata", &server.ip().to_string()]);
        let f = parse_colon_fields(&out);
        let good = field(&f, "Total good RX")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unexpected chronyc ntpdata: {out}"));
        (field(&f, "Authenticated") == Some("Yes"), good)
    }

    /// `chronyc tracking` as field name -> value.
    pub fn tracking(&self) -> Vec<(String, String)> {
        parse_colon_fields(&self.chronyc(&["tracking"]))
    }

    /// Waits until chronyd has selected a source (`tracking` shows a stratum
    /// below 16 and a non-zero reference) and returns the tracking fields.
    pub fn wait_synchronized(&self, timeout: Duration) -> Option<Vec<(String, String)>> {
        wait_until(timeout, || {
            let t = self.tracking();
            let stratum: u32 = field(&t, "Stratum")?.parse().ok()?;
            (stratum < 16 && !field(&t, "Reference ID")?.starts_with("00000000")).then_some(t)
        })
    }
}

impl Drop for Chronyd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Splits `Name : value` lines (chronyc's tracking layout).
pub fn parse_colon_fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Runs a one-shot `chronyd -Q` (measure only, never set the clock) with
/// `directives` and returns the offset it measured, if it got one, and its
/// output.
pub fn chronyd_query(directives: &[String], timeout_s: u32) -> (Option<f64>, String) {
    chronyd_query_with(&require_program("chronyd"), directives, timeout_s)
}

/// [`chronyd_query`] with another chronyd (Debian 13's, for one).
pub fn chronyd_query_with(
    chronyd: &Path,
    directives: &[String],
    timeout_s: u32,
) -> (Option<f64>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut conf = directives.join("\n");
    conf.push_str(&format!(
        "\npidfile {d}/chronyd.pid\ncmdport 0\nntsdumpdir {d}\n",
        d = dir.path().display()
    ));
    let conf_path = dir.path().join("chrony.conf");
    fs::write(&conf_path, conf).unwrap();
    let out = run_bounded(
        Command::new(chronyd)
            .args(["-Q", "-u", "root", "-t", &timeout_s.to_string(), "-f"])
            .arg(&conf_path),
        Duration::from_secs(timeout_s as u64 + 20),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // "System clock wrong by -0.000008 seconds (ignored)"
    let offset = text
        .lines()
        .find_map(|l| l.split("System clock wrong by ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok());
    (offset, text)
}

/// Runs a command with a time limit, killing it if it overruns.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let status = match wait_until(limit, || child.try_wait().unwrap()) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            child.wait().unwrap()
        }
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// Address helper for configs: `127.0.0.1:PORT`.
pub fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
