//! The NTP server's settings that change while it runs: who may query
//! (`[ntp] allow`/`deny`) and how fast (`[ntp] ratelimit`).
//!
//! The management API publishes a new [`ServePolicy`] through a
//! `tokio::sync::watch` channel; each server thread keeps its own `Arc` of
//! the current one ([`PolicyView`]) and looks for a newer one once per
//! receive batch. A watch channel rather than `arc-swap`: the per-batch
//! check is a single atomic load of the channel's version (no lock, no
//! reference-count traffic on a shared `Arc`), the per-packet path reads
//! only the thread's own copy, and it needs no new dependency. The lock
//! behind the channel is taken only when a change was published.

use super::config::NtpConfig;
use skytime_proto::access::AccessList;
use skytime_proto::client_log::RateLimit;
use std::sync::Arc;
use tokio::sync::watch;

/// What the server checks for every request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServePolicy {
    pub acl: AccessList,
    /// Per-client response rate limit; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
}

impl ServePolicy {
    pub fn from_config(ntp: &NtpConfig) -> Self {
        Self {
            acl: ntp.access_list(),
            rate_limit: ntp.ratelimit.map(|r| r.to_limit()),
        }
    }
}

/// The publishing side, held by whoever applies configurations.
#[derive(Debug)]
pub struct PolicyPublisher {
    tx: watch::Sender<Arc<ServePolicy>>,
}

impl PolicyPublisher {
    /// A publisher starting with `initial`.
    pub fn new(initial: ServePolicy) -> Self {
        Self {
            tx: watch::Sender::new(Arc::new(initial)),
        }
    }

    /// Puts `policy` into effect for every server thread; returns whether it
    /// differs from the one in effect (an unchanged policy wakes nobody).
    /// Takes effect even when no thread is subscribed yet.
    pub fn publish(&self, policy: ServePolicy) -> bool {
        self.tx.send_if_modified(|current| {
            if **current == policy {
                return false;
            }
            *current = Arc::new(policy);
            true
        })
    }

    /// The policy in effect now (the server threads read theirs through a
    /// [`PolicyView`]).
    #[cfg(test)]
    pub fn current(&self) -> Arc<ServePolicy> {
        self.tx.borrow().clone()
    }

    /// A view for one server thread.
    pub fn view(&self) -> PolicyView {
        let mut rx = self.tx.subscribe();
        let current = rx.borrow_and_update().clone();
        PolicyView { rx, current }
    }
}

/// One server thread's copy of the policy.
#[derive(Debug)]
pub struct PolicyView {
    rx: watch::Receiver<Arc<ServePolicy>>,
    current: Arc<ServePolicy>,
}

impl PolicyView {
    /// Takes a newer policy if one was published. Called once per receive
    /// batch, before the batch is read: a request that arrives after a
    /// change was published is judged by the new policy.
    pub fn refresh(&mut self) {
        // Err: the publisher is gone (shutdown); keep the last policy.
        if self.rx.has_changed().unwrap_or(false) {
            self.current = self.rx.borrow_and_update().clone();
        }
    }

    /// The policy as of the last [`refresh`](Self::refresh).
    pub fn get(&self) -> &ServePolicy {
        &self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn policy(allow: &str, rate_limit: Option<RateLimit>) -> ServePolicy {
        ServePolicy {
            acl: AccessList::new(&[allow.parse().unwrap()], &[]),
            rate_limit,
        }
    }

    #[test]
    fn a_view_sees_a_published_policy_at_its_next_refresh_only() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let publisher = PolicyPublisher::new(policy("127.0.0.0/8", None));
        let mut view = publisher.view();
        assert!(view.get().acl.is_allowed(loopback));
        let limit = RateLimit {
            interval_log2: 3,
            burst: 2,
            leak_log2: 0,
            kod_log2: 0,
        };
        assert!(publisher.publish(policy("192.0.2.0/24", Some(limit))));
        // Mid-batch the thread keeps what it started the batch with.
        assert!(view.get().acl.is_allowed(loopback));
        view.refresh();
        assert!(!view.get().acl.is_allowed(loopback));
        assert_eq!(view.get().rate_limit, Some(limit));
        // A view made later starts with the current policy.
        assert_eq!(*publisher.view().get(), *publisher.current());
    }

    #[test]
    fn an_unchanged_policy_is_not_republished() {
        let publisher = PolicyPublisher::new(policy("127.0.0.0/8", None));
        let view = publisher.view();
        assert!(!publisher.publish(policy("127.0.0.0/8", None)));
        assert!(!view.rx.has_changed().unwrap());
    }

    #[test]
    fn the_last_policy_stays_when_the_publisher_is_gone() {
        let publisher = PolicyPublisher::new(policy("127.0.0.0/8", None));
        let mut view = publisher.view();
        drop(publisher);
        view.refresh();
        assert!(view.get().acl.is_allowed("127.0.0.1".parse().unwrap()));
    }
}
