//! `skytime-sim [SCENARIO...] [--out DIR]`: runs the scenarios (all by
//! default), prints a table and writes DIR/report.json (default
//! target/sim).

use skytime_sim::{run, Scenario};
use std::path::PathBuf;

fn main() {
    let mut out = PathBuf::from("target/sim");
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--out" {
            out = PathBuf::from(
                args.next()
                    .unwrap_or_else(|| die("--out needs a directory")),
            );
        } else if a == "--help" || a == "-h" {
            println!(
                "usage: skytime-sim [SCENARIO...] [--out DIR]\nscenarios: {}",
                Scenario::everything()
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            return;
        } else {
            names.push(a);
        }
    }
    let all = Scenario::everything();
    for n in &names {
        if !all.iter().any(|s| s.name == n) {
            die(&format!("unknown scenario {n:?}; try --help"));
        }
    }
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|s| names.is_empty() || names.iter().any(|n| n == s.name))
        .collect();
    println!(
        "{:<16} {:>5} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>6} {:>6} {:>10}",
        "scenario",
        "hours",
        "lock_s",
        "rms_ns",
        "p99_ns",
        "max_ns",
        "freq_ppb",
        "floor_ns",
        "pred_ns",
        "x_flr",
        "steps",
        "hold1h_us"
    );
    let mut results = Vec::new();
    for sc in &chosen {
        let o = run(sc);
        println!(
            "{:<16} {:>5.1} {:>7} {:>8.0} {:>8.0} {:>8.0} {:>9.2} {:>8.0} {:>8.0} {:>6.2} {:>6} {:>10}",
            o.name,
            o.hours,
            o.lock_time_s.map_or("never".into(), |l| format!("{l:.0}")),
            o.rms_offset_ns,
            o.p99_offset_ns,
            o.max_offset_ns,
            o.rms_freq_error_ppb,
            o.floor_ns,
            o.floor_prediction_ns,
            o.rms_over_floor,
            format!("{}/{}", o.steps_total, o.steps_after_lock),
            o.holdover_error_us_after_1h.map_or("-".into(), |e| format!("{e:.1}")),
        );
        results.push(o);
    }
    for o in &results {
        if let (Some(e), Some(b)) = (o.holdover_error_us_after_1h, o.holdover_bound_us_after_1h) {
            println!(
                "{}: error after 1 h of holdover {e:.1} us, served error bound then {b:.0} us",
                o.name
            );
        }
        if let (Some(a), Some(k)) = (o.leap_announced, o.kernel_leaps_applied) {
            println!(
                "{}: LI announced {a}, kernel leap seconds applied {k}{}",
                o.name,
                o.max_smear_rate_error_ppm
                    .map_or(String::new(), |r| format!(
                        ", served-time rate error max {r:.1} ppm"
                    ))
            );
        }
    }
    let checked: Vec<_> = results.iter().filter(|o| o.integrity.is_some()).collect();
    if !checked.is_empty() {
        println!(
            "\n{:<20} {:>9} {:>12} {:>10} {:>10} {:>6} {:>8} {:>11}  alarm",
            "integrity",
            "detect_s",
            "err_at_det",
            "max_err",
            "rms_1h_us",
            "viol",
            "stratum",
            "reference"
        );
        for o in checked {
            let i = o.integrity.as_ref().expect("filtered");
            let us = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}us"));
            println!(
                "{:<20} {:>9} {:>12} {:>10} {:>10.1} {:>6} {:>8} {:>11}  {}",
                o.name,
                i.detection_s.map_or("-".into(), |d| format!("{d:.0}")),
                us(i.error_at_detection_us),
                us(i.max_error_after_start_us),
                i.rms_error_last_hour_us,
                i.bound_violations,
                i.final_stratum,
                i.final_reference,
                i.alarm_reason
                    .clone()
                    .unwrap_or_else(|| i.alarms_raised.join(", ")),
            );
        }
        for o in results.iter() {
            if let Some((stratum, reference)) =
                o.integrity.as_ref().and_then(|i| i.beyond_holdover.clone())
            {
                println!("{}: past the holdover limit without GPS, served stratum {stratum} from {reference}", o.name);
            }
        }
        println!("detect_s: seconds from the lie (or the GPS outage) to the GPS being distrusted (or the network steering);");
        println!("err_at_det, max_err: true clock error then, and the largest after the start; viol: seconds the error exceeded the served root distance after settling.");
    }
    println!("floor_ns: steady-state RMS phase error of the optimal two-state Kalman filter for the scenario's jitter and walk;");
    println!("pred_ns: its one-step prediction error (the best a steered clock can be at the next pulse). steps: total/after lock.");
    if let Err(e) = std::fs::create_dir_all(&out).and_then(|_| {
        std::fs::write(
            out.join("report.json"),
            serde_json::to_string_pretty(&results).expect("serializable"),
        )
    }) {
        die(&format!(
            "cannot write {}: {e}",
            out.join("report.json").display()
        ));
    }
    println!("wrote {}", out.join("report.json").display());
}

fn die(msg: &str) -> ! {
    eprintln!("skytime-sim: {msg}");
    std::process::exit(2)
}
