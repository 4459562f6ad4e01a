//! When to poll: the poll exponent between minpoll and maxpoll, the
//! initial burst, the reachability register, and backing off.
//!
//! - `iburst`: the first [`BURST`] requests go [`BURST_INTERVAL`] apart (or
//!   one poll interval, if that is shorter), so a source is usable within
//!   seconds of start.
//! - The exponent starts at minpoll and climbs one step after every
//!   [`CLIMB_AFTER`] good replies in a row, up to maxpoll: a steady
//!   source is asked less often.
//! - The reachability register shifts at every request and takes a 1
//!   for every good reply (chronyc's octal "Reach").
//! - Backoff: a source that stays silent for 8 requests (register 0) is
//!   polled one step less often each time, up to maxpoll; a RATE kiss
//!   raises the exponent at once, to at least what the server asks for.
//! - A DENY or RSTR kiss stops polling.

/// Requests in the initial burst.
pub const BURST: u8 = 6;
/// Seconds between burst requests.
pub const BURST_INTERVAL: f64 = 2.0;
/// Good replies in a row before the poll exponent climbs.
pub const CLIMB_AFTER: u32 = 8;
/// Lowest and highest poll exponents allowed (chrony's range).
pub const MIN_POLL: i8 = -6;
pub const MAX_POLL: i8 = 24;
/// Highest exponent a RATE kiss can push us to (36 hours).
pub const RATE_CEILING: i8 = 17;

/// The poll settings of one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollConfig {
    pub minpoll: i8,
    pub maxpoll: i8,
    pub iburst: bool,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            minpoll: 6,
            maxpoll: 10,
            iburst: true,
        }
    }
}

/// The schedule of one association. Times are monotonic seconds.
#[derive(Clone, Debug)]
pub struct PollState {
    config: PollConfig,
    poll: i8,
    burst_left: u8,
    good_in_row: u32,
    reach: u8,
    sent: u64,
    last_sent: Option<f64>,
    next: f64,
    stopped: bool,
}

impl PollState {
    pub fn new(config: PollConfig, mono: f64) -> Self {
        let minpoll = config.minpoll.clamp(MIN_POLL, MAX_POLL);
        let config = PollConfig {
            minpoll,
            maxpoll: config.maxpoll.clamp(minpoll, MAX_POLL),
            iburst: config.iburst,
        };
        Self {
            config,
            poll: config.minpoll,
            burst_left: if config.iburst { BURST } else { 0 },
            good_in_row: 0,
            reach: 0,
            sent: 0,
            last_sent: None,
            next: mono,
            stopped: false,
        }
    }

    /// The poll exponent now (log2 seconds).
    pub fn poll(&self) -> i8 {
        self.poll
    }

    /// The poll interval now, seconds.
    pub fn interval(&self) -> f64 {
        2f64.powi(self.poll.into())
    }

    pub fn reach(&self) -> u8 {
        self.reach
    }

    pub fn requests_sent(&self) -> u64 {
        self.sent
    }

    pub fn in_burst(&self) -> bool {
        self.burst_left > 0
    }

    /// When the next request is due; `None` once stopped.
    pub fn next(&self) -> Option<f64> {
        (!self.stopped).then_some(self.next)
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// A request goes out at `mono`: shift the register and schedule the
    /// next one.
    pub fn sent(&mut self, mono: f64) {
        self.reach <<= 1;
        self.sent += 1;
        self.last_sent = Some(mono);
        if self.reach == 0 && self.sent >= 8 && self.poll < self.config.maxpoll {
            // Silent for eight requests: ask less often.
            self.poll += 1;
            self.good_in_row = 0;
        }
        let wait = if self.burst_left > 0 {
            self.burst_left -= 1;
            BURST_INTERVAL.min(self.interval())
        } else {
            self.interval()
        };
        self.next = mono + wait;
    }

    /// A good reply arrived.
    pub fn good_reply(&mut self) {
        self.reach |= 1;
        self.good_in_row += 1;
        if self.good_in_row >= CLIMB_AFTER && self.poll < self.config.maxpoll {
            self.poll += 1;
            self.good_in_row = 0;
            self.reschedule();
        }
    }

    /// The server asked us to slow down (RATE), suggesting `server_poll`.
    pub fn rate_kiss(&mut self, server_poll: i8) {
        let ceiling = RATE_CEILING.max(self.config.maxpoll);
        self.poll = (self.poll + 1).max(server_poll).min(ceiling);
        self.burst_left = 0;
        self.good_in_row = 0;
        self.reschedule();
    }

    /// Polling ends (DENY, RSTR).
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Starts again at minpoll with a burst (a new key exchange, a new
    /// address for the server).
    pub fn restart(&mut self, mono: f64) {
        let reach = self.reach;
        *self = Self::new(self.config, mono);
        self.reach = reach;
    }

    /// The next request is one (current) interval after the last one.
    fn reschedule(&mut self) {
        if let Some(last) = self.last_sent {
            let wait = if self.burst_left > 0 {
                BURST_INTERVAL.min(self.interval())
            } else {
                self.interval()
            };
            self.next = self.next.max(last + wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(minpoll: i8, maxpoll: i8, iburst: bool) -> PollConfig {
        PollConfig {
            minpoll,
            maxpoll,
            iburst,
        }
    }

    #[test]
    fn burst_then_minpoll_then_climbing() {
        let mut p = PollState::new(cfg(6, 8, true), 100.0);
        assert_eq!(p.next(), Some(100.0), "the first request goes at once");
        let mut t = 100.0;
        for _ in 0..BURST {
            p.sent(t);
            p.good_reply();
            assert_eq!(p.next(), Some(t + 2.0));
            t += 2.0;
        }
        p.sent(t);
        p.good_reply();
        assert_eq!(p.next(), Some(t + 64.0));
        // The eighth good reply in a row: the exponent climbs, and the
        // request already scheduled waits for the longer interval.
        t += 64.0;
        p.sent(t);
        p.good_reply();
        assert_eq!(p.poll(), 7);
        assert_eq!(p.next(), Some(t + 128.0));
        for _ in 0..40 {
            t = p.next().unwrap();
            p.sent(t);
            p.good_reply();
        }
        assert_eq!(p.poll(), 8, "never beyond maxpoll");
        assert_eq!(p.reach(), 0o377);
    }

    #[test]
    fn silence_backs_off_and_rate_raises_the_poll() {
        let mut p = PollState::new(cfg(4, 7, false), 0.0);
        let mut t = 0.0;
        for _ in 0..8 {
            p.sent(t);
            t = p.next().unwrap();
        }
        assert_eq!(p.reach(), 0);
        assert_eq!(p.poll(), 5, "silent for eight requests: one step up");
        for _ in 0..20 {
            p.sent(t);
            t = p.next().unwrap();
        }
        assert_eq!(p.poll(), 7, "up to maxpoll");
        let mut p = PollState::new(cfg(4, 7, true), 0.0);
        p.sent(0.0);
        p.rate_kiss(10);
        assert_eq!(p.poll(), 10, "at least what the server asks");
        assert!(!p.in_burst());
        assert_eq!(p.next(), Some(1024.0));
        p.rate_kiss(0);
        assert_eq!(p.poll(), 11);
        for _ in 0..20 {
            p.rate_kiss(0);
        }
        assert_eq!(p.poll(), RATE_CEILING);
        p.stop();
        assert_eq!(p.next(), None);
    }

    #[test]
    fn short_polls_and_out_of_range_settings() {
        let mut p = PollState::new(cfg(-2, -2, true), 0.0);
        p.sent(0.0);
        assert_eq!(p.next(), Some(0.25), "the burst is no slower than the poll");
        let p = PollState::new(cfg(-20, 99, false), 0.0);
        assert_eq!(p.poll(), MIN_POLL);
        let p = PollState::new(cfg(10, 4, false), 0.0);
        assert_eq!(p.interval(), 1024.0, "maxpoll below minpoll is raised");
    }
}
