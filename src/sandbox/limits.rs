//! Procore's two rate limits: an hourly window and a short spike window, counted per app and
//! company. Every request admitted counts, whatever its outcome; a refused request (429) does not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::config::RateLimitConfig;
use super::faults::lock;

/// What the `X-Rate-Limit-*` headers say about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// `X-Rate-Limit-Limit` of the reported window.
    pub limit: u32,
    /// `X-Rate-Limit-Remaining` after this request.
    pub remaining: u32,
    /// `X-Rate-Limit-Reset`: Unix seconds when the reported window resets.
    pub reset_unix: u64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    started_wall: SystemTime,
    used: u32,
}

impl Window {
    fn new(now: Instant, wall: SystemTime) -> Self {
        Self {
            started: now,
            started_wall: wall,
            used: 0,
        }
    }

    fn roll(&mut self, length: Duration, now: Instant, wall: SystemTime) {
        if now.duration_since(self.started) >= length {
            *self = Window::new(now, wall);
        }
    }

    fn reset_unix(&self, length: Duration) -> u64 {
        let end = self.started_wall + length;
        let d = end.duration_since(UNIX_EPOCH).unwrap_or_default();
        // Round up: a client that waits until Reset must find the window rolled over.
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }
}

#[derive(Debug, Clone, Copy)]
struct Buckets {
    hourly: Window,
    spike: Window,
}

/// Counts requests per (app, company) key.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    buckets: Mutex<HashMap<String, Buckets>>,
}

impl RateLimiter {
    /// A limiter with empty windows.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Admits or refuses one request for `key`, and says which window to report: the exhausted
    /// one when refused, otherwise the one with fewer requests left (ties: the later reset).
    pub fn admit(&self, key: &str) -> RateDecision {
        let now = Instant::now();
        let wall = SystemTime::now();
        let c = &self.config;
        let mut buckets = lock(&self.buckets);
        let b = buckets.entry(key.to_owned()).or_insert(Buckets {
            hourly: Window::new(now, wall),
            spike: Window::new(now, wall),
        });
        b.hourly.roll(c.hourly_window, now, wall);
        b.spike.roll(c.spike_window, now, wall);

        let hourly_left = c.hourly_limit.saturating_sub(b.hourly.used);
        let spike_left = c.spike_limit.saturating_sub(b.spike.used);
        let allowed = hourly_left > 0 && spike_left > 0;
        if allowed {
            b.hourly.used += 1;
            b.spike.used += 1;
        }
        let hourly = (
            c.hourly_limit,
            c.hourly_limit.saturating_sub(b.hourly.used),
            b.hourly.reset_unix(c.hourly_window),
        );
        let spike = (
            c.spike_limit,
            c.spike_limit.saturating_sub(b.spike.used),
            b.spike.reset_unix(c.spike_window),
        );
        let (limit, remaining, reset_unix) = if allowed {
            pick_closer(hourly, spike)
        } else {
            match (hourly_left == 0, spike_left == 0) {
                (true, true) => {
                    if hourly.2 >= spike.2 {
                        hourly
                    } else {
                        spike
                    }
                }
                (true, false) => hourly,
                _ => spike,
            }
        };
        RateDecision {
            allowed,
            limit,
            remaining,
            reset_unix,
        }
    }
}

fn pick_closer(a: (u32, u32, u64), b: (u32, u32, u64)) -> (u32, u32, u64) {
    match a.1.cmp(&b.1) {
        std::cmp::Ordering::Less => a,
        std::cmp::Ordering::Greater => b,
        std::cmp::Ordering::Equal => {
            if a.2 >= b.2 {
                a
            } else {
                b
            }
        }
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spike_window_is_reported_until_the_hourly_one_has_fewer_left() {
        let limiter = RateLimiter::new(RateLimitConfig {
            hourly_limit: 5,
            spike_limit: 3,
            hourly_window: Duration::from_secs(3600),
            spike_window: Duration::from_secs(3600),
        });
        let d = limiter.admit("k");
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (3, 2));
        limiter.admit("k");
        limiter.admit("k");
        let refused = limiter.admit("k");
        assert!(!refused.allowed);
        assert_eq!((refused.limit, refused.remaining), (3, 0));
        // Another key has its own windows.
        assert!(limiter.admit("other").allowed);
    }
}
