//! What /proc says of a running process: the numeric fields of
//! `/proc/PID/status` (resident memory, threads), its open descriptors,
//! and whether it is still running. For the benchmark's memory figures
//! and the soak's growth checks.

/// A numeric field of `/proc/PID/status` ("VmRSS" in KiB, "Threads");
/// `None` once the process is gone.
pub fn status_field(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let prefix = format!("{name}:");
    status
        .lines()
        .find(|l| l.starts_with(&prefix))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Open file descriptors of `pid`; `None` once it is gone.
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Whether `pid` still runs (a child that exited but was not reaped yet
/// is a zombie: not running).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit_once(')')?.1.split_whitespace().next()?.to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_not_a_gone_one() {
        let me = std::process::id();
        assert!(status_field(me, "VmRSS").is_some_and(|k| k > 0));
        assert!(status_field(me, "Threads").is_some_and(|t| t >= 1));
        assert!(fd_count(me).is_some_and(|n| n >= 3));
        assert!(running(me));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!running(pid));
        assert_eq!(status_field(pid, "VmRSS"), None);
    }
}
