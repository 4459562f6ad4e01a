//! Safe apply, as network appliances do it: a new network configuration
//! is put into effect at once but only kept when it is confirmed before a
//! deadline; otherwise it is reverted by itself, so a change that cuts
//! the operator off undoes itself. Sans-IO: time is an argument, and the
//! caller does what the returned decisions say.

use super::settings::NetworkSettings;
use std::time::{Duration, Instant};

/// Shortest and longest confirmation window accepted.
pub const MIN_CONFIRM: Duration = Duration::from_secs(2);
pub const MAX_CONFIRM: Duration = Duration::from_secs(3600);

/// A change waiting for its confirmation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// What is in effect now, on probation.
    pub candidate: NetworkSettings,
    /// The last confirmed settings, which come back on a revert (`None`:
    /// none were ever set: the image's default DHCP).
    pub previous: Option<NetworkSettings>,
    pub deadline: Instant,
}

/// Why a step was refused (nothing changed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SafeApplyError {
    #[error("confirm_seconds {0} is out of range: give {min} to {max} seconds", min = MIN_CONFIRM.as_secs(), max = MAX_CONFIRM.as_secs())]
    Window(u64),
    #[error("no network change is waiting for confirmation")]
    NothingPending,
    #[error("the confirmation came too late: the change is being reverted")]
    TooLate,
}

/// The confirmed settings and, during a probation, the pending change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SafeApply {
    confirmed: Option<NetworkSettings>,
    pending: Option<Pending>,
}

/// What the caller must do after [`SafeApply::tick`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Nothing to do (no change pending, or its deadline is still ahead).
    Wait,
    /// The deadline passed: put `previous` back into effect.
    Revert { previous: Option<NetworkSettings> },
}

impl SafeApply {
    /// Starts with `confirmed` in effect (the persisted settings).
    pub fn new(confirmed: Option<NetworkSettings>) -> Self {
        Self {
            confirmed,
            pending: None,
        }
    }

    pub fn confirmed(&self) -> Option<&NetworkSettings> {
        self.confirmed.as_ref()
    }

    pub fn pending(&self) -> Option<&Pending> {
        self.pending.as_ref()
    }

    /// What is in effect: the pending candidate, else the confirmed.
    pub fn in_effect(&self) -> Option<&NetworkSettings> {
        self.pending
            .as_ref()
            .map(|p| &p.candidate)
            .or(self.confirmed.as_ref())
    }

    /// Puts `new` on probation until `now + confirm_within`. A second
    /// apply during a probation replaces the candidate and the deadline;
    /// a revert still goes back to the last *confirmed* settings.
    pub fn apply(
        &mut self,
        new: NetworkSettings,
        now: Instant,
        confirm_within: Duration,
    ) -> Result<&Pending, SafeApplyError> {
        if !(MIN_CONFIRM..=MAX_CONFIRM).contains(&confirm_within) {
            return Err(SafeApplyError::Window(confirm_within.as_secs()));
        }
        Ok(self.pending.insert(Pending {
            candidate: new,
            previous: self.confirmed.clone(),
            deadline: now + confirm_within,
        }))
    }

    /// Keeps the pending change; returns the now confirmed settings. At or
    /// after the deadline it is too late, even before a tick reverted it.
    pub fn confirm(&mut self, now: Instant) -> Result<&NetworkSettings, SafeApplyError> {
        let p = self
            .pending
            .as_ref()
            .ok_or(SafeApplyError::NothingPending)?;
        if now >= p.deadline {
            return Err(SafeApplyError::TooLate);
        }
        let p = self.pending.take().ok_or(SafeApplyError::NothingPending)?;
        Ok(self.confirmed.insert(p.candidate))
    }

    /// Checks the deadline.
    pub fn tick(&mut self, now: Instant) -> Tick {
        match &self.pending {
            Some(p) if now >= p.deadline => {
                let p = self.pending.take();
                Tick::Revert {
                    previous: p.and_then(|p| p.previous),
                }
            }
            _ => Tick::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::settings::{Hostname, NetworkSettings};
    use proptest::prelude::*;

    fn named(n: &str) -> NetworkSettings {
        NetworkSettings {
            hostname: Some(Hostname::try_from(n.to_owned()).unwrap()),
            ..NetworkSettings::default()
        }
    }

    const W: Duration = Duration::from_secs(30);

    #[test]
    fn confirmed_in_time_is_kept() {
        let t0 = Instant::now();
        let mut s = SafeApply::new(Some(named("a")));
        s.apply(named("b"), t0, W).unwrap();
        assert_eq!(s.in_effect(), Some(&named("b")));
        assert_eq!(s.tick(t0 + W / 2), Tick::Wait);
        assert_eq!(s.confirm(t0 + W / 2).unwrap(), &named("b"));
        assert_eq!(s.tick(t0 + W * 2), Tick::Wait);
        assert_eq!(s.confirmed(), Some(&named("b")));
        assert_eq!(s.confirm(t0 + W), Err(SafeApplyError::NothingPending));
    }

    #[test]
    fn unconfirmed_reverts_to_the_last_confirmed_even_after_two_applies() {
        let t0 = Instant::now();
        let mut s = SafeApply::new(Some(named("a")));
        s.apply(named("b"), t0, W).unwrap();
        s.apply(named("c"), t0 + W / 2, W).unwrap();
        assert_eq!(
            s.tick(t0 + W),
            Tick::Wait,
            "the second apply moved the deadline"
        );
        assert_eq!(
            s.tick(t0 + W * 3 / 2),
            Tick::Revert {
                previous: Some(named("a"))
            }
        );
        assert_eq!(s.in_effect(), Some(&named("a")));
        assert_eq!(s.tick(t0 + W * 5), Tick::Wait, "reverted once");
    }

    #[test]
    fn too_late_and_bad_windows_change_nothing() {
        let t0 = Instant::now();
        let mut s = SafeApply::new(None);
        assert_eq!(
            s.apply(named("b"), t0, Duration::from_secs(1)).unwrap_err(),
            SafeApplyError::Window(1)
        );
        assert_eq!(s, SafeApply::new(None));
        s.apply(named("b"), t0, W).unwrap();
        assert_eq!(s.confirm(t0 + W), Err(SafeApplyError::TooLate));
        assert_eq!(s.tick(t0 + W), Tick::Revert { previous: None });
        assert_eq!(s.in_effect(), None);
    }

    proptest! {
        /// Any sequence of applies, confirms and ticks: what is in effect
        /// is always the candidate or the last confirmed settings, and a
        /// revert always returns the last confirmed ones.
        #[test]
        fn revert_always_returns_the_last_confirmed(
            steps in proptest::collection::vec((0u8..3, 0u64..100, 2u64..60), 1..40)
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut s = SafeApply::new(None);
            let mut last_confirmed: Option<NetworkSettings> = None;
            for (i, (op, advance, window)) in steps.into_iter().enumerate() {
                now += Duration::from_secs(advance);
                match op {
                    0 => {
                        s.apply(named(&format!("h{i}")), now, Duration::from_secs(window)).unwrap();
                    }
                    1 => {
                        if let Ok(c) = s.confirm(now) {
                            last_confirmed = Some(c.clone());
                        }
                    }
                    _ => {
                        if let Tick::Revert { previous } = s.tick(now) {
                            prop_assert_eq!(&previous, &last_confirmed);
                        }
                    }
                }
                prop_assert_eq!(s.confirmed(), last_confirmed.as_ref());
                if let Some(p) = s.pending() {
                    prop_assert_eq!(p.previous.as_ref(), last_confirmed.as_ref());
                }
            }
        }
    }
}
