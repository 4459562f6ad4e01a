//! Writes per client certificate, as a token bucket, sans IO (the time is
//! an argument): a burst of `burst` writes, then one every `interval`
//! seconds. The table of clients is bounded; when full, the clients whose
//! buckets are full again (idle ones) are forgotten first.

use std::collections::HashMap;

/// Clients remembered at most.
const MAX_CLIENTS: usize = 1024;

/// The rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    interval: f64,
    /// Tokens left and when they were counted, per client.
    buckets: HashMap<String, (f64, f64)>,
}

impl RateLimiter {
    pub fn new(burst: u32, interval_s: f64) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            interval: interval_s.max(1e-3),
            buckets: HashMap::new(),
        }
    }

    /// Takes one write for `client` at `now` (seconds on any monotonic
    /// scale): `Ok`, or `Err(seconds)` until the next write is allowed.
    pub fn check(&mut self, client: &str, now: f64) -> Result<(), f64> {
        if !self.buckets.contains_key(client) && self.buckets.len() >= MAX_CLIENTS {
            self.forget_idle(now);
        }
        let (burst, interval) = (self.burst, self.interval);
        let (tokens, at) = self
            .buckets
            .entry(client.to_owned())
            .or_insert((burst, now));
        *tokens = (*tokens + (now - *at).max(0.0) / interval).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - *tokens) * interval)
        }
    }

    fn forget_idle(&mut self, now: f64) {
        let (burst, interval) = (self.burst, self.interval);
        self.buckets
            .retain(|_, (tokens, at)| *tokens + (now - *at) / interval < burst);
        if self.buckets.len() >= MAX_CLIENTS {
            // Everyone is busy: forget the one seen longest ago.
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                .map(|(k, _)| k.clone())
            {
                self.buckets.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval_per_client() {
        let mut r = RateLimiter::new(3, 10.0);
        for _ in 0..3 {
            assert!(r.check("a", 0.0).is_ok());
        }
        let wait = r.check("a", 0.0).unwrap_err();
        assert!((wait - 10.0).abs() < 1e-9, "{wait}");
        assert!(r.check("b", 0.0).is_ok(), "another client has its own");
        assert!(r.check("a", 5.0).is_err());
        assert!(r.check("a", 10.0).is_ok());
        assert!(r.check("a", 10.0).is_err());
        // A long pause refills the burst, no more.
        for _ in 0..3 {
            assert!(r.check("a", 1000.0).is_ok());
        }
        assert!(r.check("a", 1000.0).is_err());
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut r = RateLimiter::new(2, 1.0);
        for i in 0..(MAX_CLIENTS * 3) {
            let _ = r.check(&format!("c{i}"), i as f64 * 1e-3);
            assert!(r.clients() <= MAX_CLIENTS);
        }
    }
}
