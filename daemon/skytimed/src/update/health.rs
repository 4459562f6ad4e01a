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

/// The check's one parameter: how long a slot has to become healthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// From the start of the check (the daemon's start on the new slot).
    pub deadline: Duration,
}

impl HealthCheck {
    /// The verdict for `facts` observed `elapsed` after the check started.
    /// Healthy wins even at the deadline: a slot that serves is kept.
    pub fn decide(&self, facts: &Facts, elapsed: Duration) -> Verdict {
        let missing = facts.missing();
        if missing.is_empty() {
            Verdict::Healthy
        } else if elapsed >= self.deadline {
            Verdict::Failed(format!(
                "not serving {} s after start: {}",
                self.deadline.as_secs(),
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

    #[test]
    fn every_combination_of_facts_before_at_and_after_the_deadline() {
        let check = HealthCheck {
            deadline: Duration::from_secs(300),
        };
        for f in all_facts() {
            let serving = f.ntp_answers && f.nts_ke_accepts != Some(false) && f.bus_name_owned;
            for secs in [0, 1, 299, 300, 301, 100_000] {
                let v = check.decide(&f, Duration::from_secs(secs));
                match (serving, secs >= 300) {
                    (true, _) => assert_eq!(v, Verdict::Healthy, "{f:?} at {secs}"),
                    (false, false) => {
                        assert_eq!(v, Verdict::Wait(f.missing()), "{f:?} at {secs}");
                        assert!(!f.missing().is_empty());
                    }
                    (false, true) => {
                        let Verdict::Failed(reason) = v else {
                            panic!("{f:?} at {secs}: {v:?}")
                        };
                        assert!(reason.starts_with("not serving 300 s after start: "));
                        for m in f.missing() {
                            assert!(reason.contains(m), "{reason} lacks {m}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_reason_names_exactly_what_is_missing() {
        let check = HealthCheck {
            deadline: Duration::from_secs(60),
        };
        let f = Facts {
            ntp_answers: true,
            nts_ke_accepts: Some(false),
            bus_name_owned: true,
        };
        assert_eq!(
            check.decide(&f, Duration::from_secs(60)),
            Verdict::Failed(
                "not serving 60 s after start: NTS-KE does not accept connections".into()
            )
        );
        // NTS-KE not configured: not required.
        let f = Facts {
            nts_ke_accepts: None,
            ..f
        };
        assert_eq!(check.decide(&f, Duration::ZERO), Verdict::Healthy);
    }
}
