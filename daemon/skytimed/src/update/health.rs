//! The health check of a newly booted slot, sans I/O: given what skytimed
//! observed about itself and how long the slot has been up, is it good,
//! bad, or not decided yet?
//!
//! A slot is good once skytimed serves: an NTP request on its own socket
//! is answered, NTS-KE accepts connections (when NTS-KE is configured)
//! and the management bus name is owned. A GPS fix is not required: the
//! antenna may be disconnected during an update. Past the deadline
//! without all three, the slot is bad and the reason names what was
//! missing. The I/O that gathers the facts is in [`super::probe`].
//!
//! The deadline counts from the kernel's boot, not from skytimed's start:
//! a daemon that crashes and is restarted by systemd must not start the
//! clock again, or a slot whose skytimed never stays up would never be
//! judged. Each start still gets [`HealthCheck::grace`] to bring its
//! sockets up, so a slow boot is not judged before skytimed could serve.

use std::time::Duration;

/// What skytimed observed about itself at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Facts {
    /// An NTP request to its own socket was answered.
    pub ntp_answers: bool,
    /// NTS-KE accepted a connection; `None` when NTS-KE is not served.
    pub nts_ke_accepts: Option<bool>,
    /// skytimed owns `org.skytime.Appliance1` on the bus.
    pub bus_name_owned: bool,
}

impl Facts {
    /// What is still missing, in a fixed order.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if !self.ntp_answers {
            m.push("NTP does not answer");
        }
        if self.nts_ke_accepts == Some(false) {
            m.push("NTS-KE does not accept connections");
        }
        if !self.bus_name_owned {
            m.push("the bus name is not owned");
        }
        m
    }
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Everything serves: mark the slot good.
    Healthy,
    /// Not yet; look again (what is missing, for the log).
    Wait(Vec<&'static str>),
    /// The deadline passed: mark the slot bad and reboot.
    Failed(String),
}

/// The check's parameters: how long a slot has to become healthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// From the kernel's boot of the new slot.
    pub deadline: Duration,
    /// The least time each start of skytimed is given, even past the
    /// deadline.
    pub grace: Duration,
}

/// How long the slot and this start of skytimed have been up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uptime {
    /// Since the kernel booted (CLOCK_BOOTTIME).
    pub boot: Duration,
    /// Since this health check (this start of skytimed) began.
    pub check: Duration,
}

impl HealthCheck {
    /// The verdict for `facts` observed at `up`. Healthy wins even at the
    /// deadline: a slot that serves is kept.
    pub fn decide(&self, facts: &Facts, up: Uptime) -> Verdict {
        let missing = facts.missing();
        if missing.is_empty() {
            Verdict::Healthy
        } else if up.boot >= self.deadline && up.check >= self.grace {
            Verdict::Failed(format!(
                "not serving {} s after boot ({} s after skytimed's start): {}",
                up.boot.as_secs(),
                up.check.as_secs(),
                missing.join(", ")
            ))
        } else {
            Verdict::Wait(missing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_facts() -> Vec<Facts> {
        let mut v = Vec::new();
        for ntp_answers in [false, true] {
            for nts_ke_accepts in [None, Some(false), Some(true)] {
                for bus_name_owned in [false, true] {
                    v.push(Facts {
                        ntp_answers,
                        nts_ke_accepts,
                        bus_name_owned,
                    });
                }
            }
        }
        v
    }

    fn at(boot: u64, check: u64) -> Uptime {
        Uptime {
            boot: Duration::from_secs(boot),
            check: Duration::from_secs(check),
        }
    }

    #[test]
    fn every_combination_of_facts_before_at_and_after_the_deadline_and_grace() {
        let check = HealthCheck {
            deadline: Duration::from_secs(300),
            grace: Duration::from_secs(30),
        };
        for f in all_facts() {
            let serving = f.ntp_answers && f.nts_ke_accepts != Some(false) && f.bus_name_owned;
            for boot in [0, 1, 299, 300, 301, 100_000] {
                for started in [0, 29, 30, 31, 100_000] {
                    // skytimed cannot have run longer than the kernel.
                    let started = started.min(boot);
                    let v = check.decide(&f, at(boot, started));
                    let judged = boot >= 300 && started >= 30;
                    match (serving, judged) {
                        (true, _) => assert_eq!(v, Verdict::Healthy, "{f:?} at {boot}/{started}"),
                        (false, false) => {
                            assert_eq!(v, Verdict::Wait(f.missing()), "{f:?} at {boot}/{started}");
                            assert!(!f.missing().is_empty());
                        }
                        (false, true) => {
                            let Verdict::Failed(reason) = v else {
                                panic!("{f:?} at {boot}/{started}: {v:?}")
                            };
                            assert!(
                                reason.starts_with(&format!(
                                    "not serving {boot} s after boot ({started} s after skytimed's start): "
                                )),
                                "{reason}"
                            );
                            for m in f.missing() {
                                assert!(reason.contains(m), "{reason} lacks {m}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn restarts_do_not_stretch_the_deadline() {
        // A skytimed restarted again and again (each start lives 40 s) on
        // a slot that never serves: the first start that is both past the
        // deadline from boot and past its grace fails the slot.
        let check = HealthCheck {
            deadline: Duration::from_secs(120),
            grace: Duration::from_secs(30),
        };
        let broken = Facts::default();
        let mut failed_at = None;
        'starts: for start in (0..1000).step_by(40) {
            for lived in 0..40 {
                if let Verdict::Failed(_) = check.decide(&broken, at(start + lived, lived)) {
                    failed_at = Some(start + lived);
                    break 'starts;
                }
            }
        }
        assert_eq!(failed_at, Some(150));
    }

    #[test]
    fn the_reason_names_exactly_what_is_missing() {
        let check = HealthCheck {
            deadline: Duration::from_secs(60),
            grace: Duration::from_secs(30),
        };
        let f = Facts {
            ntp_answers: true,
            nts_ke_accepts: Some(false),
            bus_name_owned: true,
        };
        assert_eq!(
            check.decide(&f, at(95, 40)),
            Verdict::Failed(
                "not serving 95 s after boot (40 s after skytimed's start): NTS-KE does not accept connections".into()
            )
        );
        // NTS-KE not configured: not required.
        let f = Facts {
            nts_ke_accepts: None,
            ..f
        };
        assert_eq!(check.decide(&f, at(0, 0)), Verdict::Healthy);
    }
}
