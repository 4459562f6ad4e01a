//! Following an install that RAUC accepted until it completes, also
//! across a restart of skytimed: RAUC keeps writing the slot when
//! skytimed crashes or is restarted, and skytimed resumes the install's
//! state when it starts again. So "skytimed is gone" is not the end of
//! the install: it is followed again once skytimed is back, within a
//! bounded wait ([`RESTART_WAIT_S`] unless `--restart-wait` says otherwise).
//!
//! [`Follower::decide`] is the sans-IO part: one observation (skytimed's
//! update properties and bus name owner, or that it could not be reached)
//! and the time in, what to say and whether the follow ends out.
//! [`follow`] does the looking and the printing.

use crate::bus::{exit, CtlError};
use crate::transport::{Target, Transport};
use skytime_api::UpdateProperties;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a running install is looked at.
const POLL: Duration = Duration::from_millis(500);
/// The longest one look may take: reading two properties is instant, so
/// a look this slow means the connection is dead, and a new one is made.
const LOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest an install is followed.
const FOLLOW_LIMIT: Duration = Duration::from_secs(3600);
/// How long (s) skytimed may be away during an install before the follow
/// gives up (systemd restarts it within seconds; its start reads RAUC).
pub const RESTART_WAIT_S: u32 = 60;

/// One look at skytimed.
#[derive(Debug)]
pub enum Seen {
    /// skytimed answered; `owner` is its unique bus name when the
    /// transport knows it (D-Bus; the gateway does not say).
    Answer {
        props: Box<UpdateProperties>,
        owner: Option<String>,
    },
    /// skytimed could not be reached: not on the bus, no reply, the
    /// connection cut (the error as `bus::classify` words it).
    Unreachable(CtlError),
}

/// What the follower has to say.
#[derive(Debug, PartialEq, Eq)]
pub enum Say {
    Progress(u32, String),
    /// skytimed went away (why), waiting for it.
    Away(String),
    /// skytimed is back (a new process) and the install is followed on.
    Restarted,
}

/// The decision on one look.
#[derive(Debug, Default)]
pub struct Step {
    pub say: Vec<Say>,
    /// The follow ends: the final properties, or the failure.
    pub end: Option<Result<UpdateProperties, CtlError>>,
}

/// The follow's memory between looks.
#[derive(Debug)]
pub struct Follower {
    restart_wait: Duration,
    /// The last progress shown.
    last: (u32, String),
    /// skytimed's unique bus name when last seen.
    owner: Option<String>,
    /// Since when (and why) skytimed has been unreachable.
    away: Option<(Duration, String)>,
}

impl Follower {
    pub fn new(restart_wait: Duration) -> Self {
        Self {
            restart_wait,
            last: (u32::MAX, String::new()),
            owner: None,
            away: None,
        }
    }

    /// Decides on `seen`, `now` after the follow started.
    pub fn decide(&mut self, seen: Seen, now: Duration) -> Step {
        let mut step = Step::default();
        let (p, owner) = match seen {
            Seen::Unreachable(e) => {
                let since = match &self.away {
                    Some((since, _)) => *since,
                    None => {
                        step.say.push(Say::Away(e.message.clone()));
                        self.away = Some((now, e.message.clone()));
                        now
                    }
                };
                if now.saturating_sub(since) >= self.restart_wait {
                    let why = self.away.as_ref().map_or("", |(_, w)| w.as_str());
                    step.end = Some(Err(CtlError::new(
                        exit::NOT_RUNNING,
                        format!(
                            "skytimed went away during the install and did not come back within \
                             {} s ({why}); RAUC may still be writing the slot: check \
                             `systemctl status skytimed` and `journalctl -u skytimed`, then \
                             `skytimectl update status`",
                            self.restart_wait.as_secs()
                        ),
                    )));
                }
                return step;
            }
            Seen::Answer { props, owner } => (*props, owner),
        };
        let new_owner = matches!((&self.owner, &owner), (Some(a), Some(b)) if a != b);
        if self.away.take().is_some() || new_owner {
            step.say.push(Say::Restarted);
        }
        if owner.is_some() {
            self.owner = owner;
        }
        let now_progress = (p.progress_percent, p.progress_step.clone());
        let downloading = p.operation == "downloading";
        let running = matches!(p.state.as_str(), "staged" | "installing");
        if now_progress != self.last && (downloading || running) {
            step.say
                .push(Say::Progress(now_progress.0, now_progress.1.clone()));
            self.last = now_progress.clone();
        }
        if downloading || running {
            // A failure RAUC reported before skytimed's state moved on.
            if let Some(why) = p.progress_step.strip_prefix("failed: ") {
                if !downloading {
                    step.end = Some(Err(failed(why)));
                    return step;
                }
            }
            if now > FOLLOW_LIMIT {
                step.end = Some(Err(CtlError::new(
                    exit::FAILED,
                    format!(
                        "the install is still running after {} s; see skytimectl update status",
                        FOLLOW_LIMIT.as_secs()
                    ),
                )));
            }
            return step;
        }
        if let Some(why) = p.progress_step.strip_prefix("failed: ") {
            step.end = Some(Err(failed(why)));
            return step;
        }
        if p.state == "failed" {
            step.end = Some(Err(failed(&p.state_reason)));
            return step;
        }
        // The last step, which a short install may pass between two looks.
        if now_progress != self.last {
            step.say.push(Say::Progress(now_progress.0, now_progress.1));
        }
        step.end = Some(Ok(p));
        step
    }
}

fn failed(why: &str) -> CtlError {
    CtlError::new(exit::FAILED, format!("the install failed: {why}"))
}

/// One look: skytimed's owner (on D-Bus) and its update properties. An
/// error that means "skytimed is not there" is an observation; others
/// end the follow.
async fn look(t: &Transport) -> Result<Seen, CtlError> {
    let seen = async {
        let owner = t.daemon_owner().await?;
        let props = t.update_properties().await?;
        Ok::<_, CtlError>(Seen::Answer {
            props: Box::new(props),
            owner,
        })
    };
    match tokio::time::timeout(LOOK_TIMEOUT, seen).await {
        Err(_) => Ok(Seen::Unreachable(CtlError::new(
            exit::NOT_RUNNING,
            format!("no answer within {} s", LOOK_TIMEOUT.as_secs()),
        ))),
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) if e.code == exit::NOT_RUNNING => Ok(Seen::Unreachable(e)),
        Ok(Err(e)) => Err(e),
    }
}

/// Follows an install until it has completed; shows progress on stderr
/// and says so when skytimed went away and came back. The final
/// properties, or an error when it failed.
pub async fn follow(
    t: &mut Transport,
    target: &Target,
    restart_wait: Duration,
) -> Result<UpdateProperties, CtlError> {
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut follower = Follower::new(restart_wait);
    loop {
        let seen = look(t).await?;
        let unreachable = matches!(seen, Seen::Unreachable(_));
        let step = follower.decide(seen, start.elapsed());
        for say in &step.say {
            match say {
                Say::Progress(percent, what) => show(tty, *percent, what),
                Say::Away(why) => {
                    end_line(tty);
                    eprintln!(
                        "skytimectl: skytimed went away during the install ({why}); \
                         waiting up to {} s for it to come back",
                        restart_wait.as_secs()
                    );
                }
                Say::Restarted => {
                    end_line(tty);
                    eprintln!("skytimectl: skytimed restarted; still following the install");
                }
            }
        }
        if let Some(end) = step.end {
            end_line(tty);
            return end;
        }
        tokio::time::sleep(POLL).await;
        if unreachable {
            // A connection the bus (or gateway) closed, or one that went
            // dead, does not come back by itself; a new one is cheap. One
            // that fails is the next observation of an absent skytimed.
            t.reconnect(target).await;
        }
    }
}

fn show(tty: bool, percent: u32, step: &str) {
    let mut err = std::io::stderr().lock();
    if tty {
        let filled = (percent.min(100) / 5) as usize;
        let _ = write!(
            err,
            "\r[{}{}] {percent:>3}% {:<40.40}",
            "#".repeat(filled),
            " ".repeat(20 - filled),
            step
        );
    } else {
        let _ = writeln!(err, "{percent}% {step}");
    }
    let _ = err.flush();
}

fn end_line(tty: bool) {
    if tty {
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(60);

    fn props(state: &str, percent: u32, step: &str) -> Seen {
        Seen::Answer {
            props: Box::new(UpdateProperties {
                state: state.into(),
                operation: if state == "installing" {
                    "installing".into()
                } else {
                    "idle".into()
                },
                progress_percent: percent,
                progress_step: step.into(),
                primary_slot: "B".into(),
                ..Default::default()
            }),
            owner: Some(":1.7".into()),
        }
    }

    fn gone() -> Seen {
        Seen::Unreachable(CtlError::new(
            exit::NOT_RUNNING,
            "skytimed is not running (no owner of org.skytime.Appliance1 on the bus)",
        ))
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn progress_is_said_once_per_change_and_the_end_is_the_installed_state() {
        let mut f = Follower::new(WAIT);
        let s = f.decide(props("installing", 10, "Checking"), secs(0));
        assert_eq!(s.say, vec![Say::Progress(10, "Checking".into())]);
        assert!(s.end.is_none());
        let s = f.decide(props("installing", 10, "Checking"), secs(1));
        assert!(s.say.is_empty() && s.end.is_none(), "{s:?}");
        let s = f.decide(props("installed", 100, "Installing done."), secs(2));
        assert_eq!(s.say, vec![Say::Progress(100, "Installing done.".into())]);
        assert_eq!(s.end.unwrap().unwrap().state, "installed");
    }

    #[test]
    fn a_failure_ends_with_rauc_s_reason() {
        let mut f = Follower::new(WAIT);
        let e = f
            .decide(props("installing", 40, "failed: no space"), secs(0))
            .end
            .unwrap()
            .unwrap_err();
        assert_eq!(e.code, exit::FAILED);
        assert_eq!(e.message, "the install failed: no space");
        let mut f = Follower::new(WAIT);
        let Seen::Answer { mut props, owner } = props("failed", 0, "") else {
            unreachable!()
        };
        props.state_reason = "signature invalid".into();
        let e = f
            .decide(Seen::Answer { props, owner }, secs(0))
            .end
            .unwrap()
            .unwrap_err();
        assert_eq!(e.message, "the install failed: signature invalid");
    }

    #[test]
    fn a_restart_during_the_install_is_said_and_followed_to_the_result() {
        let mut f = Follower::new(WAIT);
        assert!(f
            .decide(props("installing", 20, "Copying"), secs(0))
            .end
            .is_none());
        let s = f.decide(gone(), secs(1));
        assert!(
            matches!(&s.say[..], [Say::Away(why)] if why.contains("not running")),
            "{s:?}"
        );
        assert!(s.end.is_none());
        // Said once while away.
        let s = f.decide(gone(), secs(30));
        assert!(s.say.is_empty() && s.end.is_none(), "{s:?}");
        let s = f.decide(props("installing", 20, "Copying"), secs(31));
        assert_eq!(s.say, vec![Say::Restarted]);
        assert!(s.end.is_none());
        let s = f.decide(props("installed", 100, "done"), secs(40));
        assert_eq!(s.end.unwrap().unwrap().primary_slot, "B");
    }

    #[test]
    fn a_new_owner_between_two_looks_is_a_restart_too() {
        let mut f = Follower::new(WAIT);
        let _ = f.decide(props("installing", 20, "Copying"), secs(0));
        let Seen::Answer { props, .. } = props("installing", 20, "Copying") else {
            unreachable!()
        };
        let s = f.decide(
            Seen::Answer {
                props,
                owner: Some(":1.9".into()),
            },
            secs(1),
        );
        assert_eq!(s.say, vec![Say::Restarted]);
        // The gateway does not name the owner: that is not a restart.
        let Seen::Answer { props, .. } = super::tests::props("installing", 30, "Copying") else {
            unreachable!()
        };
        let s = f.decide(Seen::Answer { props, owner: None }, secs(2));
        assert_eq!(s.say, vec![Say::Progress(30, "Copying".into())]);
    }

    #[test]
    fn a_daemon_that_stays_away_ends_the_follow_at_the_bound_naming_what_to_check() {
        let mut f = Follower::new(secs(5));
        let _ = f.decide(props("installing", 20, "Copying"), secs(0));
        assert!(f.decide(gone(), secs(10)).end.is_none());
        assert!(f.decide(gone(), secs(14)).end.is_none());
        let e = f.decide(gone(), secs(15)).end.unwrap().unwrap_err();
        assert_eq!(e.code, exit::NOT_RUNNING);
        assert!(
            e.message.contains("did not come back within 5 s")
                && e.message.contains("not running")
                && e.message.contains("journalctl -u skytimed"),
            "{}",
            e.message
        );
    }

    #[test]
    fn being_away_is_measured_from_the_last_absence_not_the_first() {
        let mut f = Follower::new(secs(5));
        let _ = f.decide(gone(), secs(0));
        let _ = f.decide(props("installing", 20, "Copying"), secs(4));
        let s = f.decide(gone(), secs(8));
        assert!(matches!(&s.say[..], [Say::Away(_)]), "{s:?}");
        assert!(f.decide(gone(), secs(12)).end.is_none());
        assert!(f.decide(gone(), secs(13)).end.is_some());
    }
}
