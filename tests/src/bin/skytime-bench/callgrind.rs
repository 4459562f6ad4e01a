//! Instructions per reply, a figure noise does not move: each server runs
//! under valgrind's callgrind twice, once answering `n` requests and once
//! answering none (the same start-up, key exchange and shutdown), and the
//! difference of the user-space instruction counts is divided by `n`.
//! (This kernel gives `perf` no hardware counters here; callgrind counts
//! exactly, but only instructions executed in user space: the kernel's
//! share of each reply, the socket calls, is not in it.)

use super::servers::{Kind, Launch, Server, Setup};
use skytime_tests::nts_client::{self, KeOutcome};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

/// The workload whose instructions are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Plain,
    Nts,
}

/// User-space instructions per reply of `kind` for `workload`, over `n`
/// requests; `None` if a run failed (the reason is printed). The
/// callgrind files go to `keep` (for `callgrind_annotate`) if given.
pub fn instructions_per_reply(
    kind: Kind,
    setup: &Setup,
    workload: Workload,
    n: usize,
    keep: Option<&Path>,
) -> Option<f64> {
    let tmp = tempfile::tempdir().ok()?;
    let dir = keep.unwrap_or(tmp.path());
    std::fs::create_dir_all(dir).ok()?;
    let name = |run: &str| dir.join(format!("{}-{workload:?}-{run}", kind.name()));
    let base = count(kind, setup, workload, 0, &name("zero"))?;
    let loaded = count(kind, setup, workload, n, &name("load"))?;
    Some((loaded.saturating_sub(base)) as f64 / n as f64)
}

/// Total instructions of one run answering `n` requests.
fn count(kind: Kind, setup: &Setup, workload: Workload, n: usize, out: &Path) -> Option<u64> {
    let launch = Launch {
        cpu: None,
        callgrind: Some(out.to_owned()),
    };
    let server = Server::start(kind, setup, &launch);
    // The same key exchange in both runs.
    let ke = nts_client::key_exchange(server.ke, "localhost", &setup.tls).ok()?;
    let request = match workload {
        Workload::Plain => skytime_tests::ntp::request(4, skytime_tests::ntp::now()).to_vec(),
        Workload::Nts => nts_request(&ke),
    };
    let answered = closed_loop(server.ntp, &request, n);
    let log = server.stop();
    if answered < n {
        eprintln!(
            "{} under callgrind answered {answered} of {n}:\n{log}",
            kind.name()
        );
        return None;
    }
    total_instructions(out)
}

fn nts_request(ke: &KeOutcome) -> Vec<u8> {
    nts_client::ntp_request(ke, &[7; 32])
}

/// Sends `n` requests, eight in flight, and counts the replies.
fn closed_loop(server: SocketAddr, request: &[u8], n: usize) -> usize {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return 0;
    };
    if sock.connect(server).is_err() || sock.set_read_timeout(Some(Duration::from_secs(5))).is_err()
    {
        return 0;
    }
    let mut sent = 0;
    while sent < n.min(8) {
        let _ = sock.send(request);
        sent += 1;
    }
    let mut got = 0;
    let mut buf = [0u8; 2048];
    while got < n {
        if sock.recv(&mut buf).is_err() {
            break;
        }
        got += 1;
        if sent < n {
            let _ = sock.send(request);
            sent += 1;
        }
    }
    got
}

/// The sum of the `summary:` (or `totals:`) lines of every callgrind file
/// `<out>.<pid>` (chronyd forks an NTS-KE helper).
fn total_instructions(out: &Path) -> Option<u64> {
    let dir = out.parent()?;
    let prefix = format!("{}.", out.file_name()?.to_str()?);
    let mut total = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| n.starts_with(&prefix)) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("summary:"))
            .or_else(|| text.lines().find(|l| l.starts_with("totals:")))?;
        total += line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
        files += 1;
    }
    (files > 0).then_some(total)
}
