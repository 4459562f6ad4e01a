//! The GPS fault schedule: the simulator runs in cycles of [`CYCLE_S`]
//! seconds, each a new process (stopping it unplugs the receiver, the next
//! plugs it back), with every fault it knows at a fixed second of the
//! cycle. The schedule is pure, so the summary counts what was injected.

use std::collections::BTreeMap;

/// Seconds per simulator run.
pub const CYCLE_S: u64 = 90;

/// One fault: its name in the summary, the second of the cycle it starts
/// at, and the simulator options that make it.
struct Fault {
    name: &'static str,
    at: u64,
    args: &'static [&'static str],
}

/// The one-shot faults of a cycle, in order. The fix loss outlasts the
/// source timeout plus the holdover limit of the soak's configuration, so
/// skytimed goes unsynchronized in every cycle and the synchronization
/// claim check sees both states.
const ONE_SHOT: &[Fault] = &[
    Fault {
        name: "pps_gap",
        at: 20,
        args: &["--pps-gap-at", "20", "--pps-gap-for", "4"],
    },
    Fault {
        name: "nmea_gap",
        at: 30,
        args: &["--nmea-gap-at", "30", "--nmea-gap-for", "4"],
    },
    Fault {
        name: "leap_second",
        at: 40,
        args: &["--leap-at", "40"],
    },
    Fault {
        name: "fix_loss",
        at: 48,
        args: &["--lose-fix-at", "48", "--lose-fix-for", "14"],
    },
    Fault {
        name: "unplug_replug",
        at: 75,
        args: &["--fail-after", "75", "--down-for", "5"],
    },
];

/// Faults repeated through the cycle: (name, every N seconds, the
/// second of N it falls on, options).
const PERIODIC: &[(&str, u64, u64, &[&str])] = &[
    ("garbage", 7, 0, &["--garbage-every", "7"]),
    ("bad_checksum", 11, 5, &["--bad-checksum-every", "11"]),
    (
        "pps_glitch",
        13,
        1,
        &["--pps-glitch-every", "13", "--pps-glitch", "0.25"],
    ),
];

/// Seconds of status V (no fix) at the start of every other cycle.
const STATUS_V_S: u64 = 6;

/// The simulator's options for cycle `n` lasting `len` seconds, and
/// the faults that fall inside it, counted into `injected`.
pub fn cycle(n: u64, len: u64, injected: &mut BTreeMap<&'static str, u64>) -> Vec<String> {
    let mut args: Vec<String> = ["--nmea-delay", "0.3", "--duration", &len.to_string()]
        .map(String::from)
        .to_vec();
    let mut count = |name: &'static str, times: u64| {
        if times > 0 {
            *injected.entry(name).or_default() += times;
        }
    };
    // Every cycle after the first begins with a new receiver: a replug.
    count("restart_replug", u64::from(n > 0));
    if n % 2 == 1 && len > STATUS_V_S {
        args.extend(["--fix-after".into(), STATUS_V_S.to_string()]);
        count("status_v", 1);
    }
    for f in ONE_SHOT.iter().filter(|f| f.at < len) {
        args.extend(f.args.iter().map(|a| a.to_string()));
        count(f.name, 1);
    }
    for (name, every, phase, opts) in PERIODIC {
        args.extend(opts.iter().map(|a| a.to_string()));
        // Seconds s in 0..len with s % every == phase.
        count(name, (len + every - 1 - phase) / every);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_cycle_has_every_fault_and_a_short_one_only_those_inside() {
        let mut injected = BTreeMap::new();
        let args = cycle(1, CYCLE_S, &mut injected);
        for name in [
            "status_v",
            "pps_gap",
            "nmea_gap",
            "leap_second",
            "fix_loss",
            "unplug_replug",
            "garbage",
            "bad_checksum",
            "pps_glitch",
            "restart_replug",
        ] {
            assert!(injected.contains_key(name), "{name} missing: {injected:?}");
        }
        assert_eq!(injected["garbage"], 13); // 0, 7, ..., 84
        assert_eq!(injected["bad_checksum"], 8); // 5, 16, ..., 82
        assert!(args.windows(2).any(|w| w == ["--duration", "90"]));
        let mut short = BTreeMap::new();
        cycle(0, 35, &mut short);
        assert!(short.contains_key("nmea_gap") && !short.contains_key("leap_second"));
        assert!(!short.contains_key("status_v") && !short.contains_key("restart_replug"));
        assert_eq!(short["pps_glitch"], 3); // 1, 14, 27
    }
}
