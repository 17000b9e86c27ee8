//! Procore's two rate limits: an hourly window and a short spike window, counted per app and
//! company. Every request admitted counts, whatever its outcome; a refused request (429) does not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::config::RateLimitConfig;
use super::faults::lock;

/// One window as the `X-Rate-Limit-*` headers describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowReport {
    /// `X-Rate-Limit-Limit`: the window's limit (it tells the windows apart).
    pub limit: u32,
    /// `X-Rate-Limit-Remaining`.
    pub remaining: u32,
    /// `X-Rate-Limit-Reset`: Unix seconds when the window resets.
    pub reset_unix: u64,
}

/// What the limiter decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The window the headers report: the exhausted one when refused, otherwise the one closer
    /// to exhaustion (as Procore does).
    pub reported: WindowReport,
    /// The spike window, whichever is reported.
    pub spike: WindowReport,
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

    fn report(&self, limit: u32, length: Duration) -> WindowReport {
        WindowReport {
            limit,
            remaining: limit.saturating_sub(self.used),
            reset_unix: self.reset_unix(length),
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
        let c = &self.config;
        let mut buckets = lock(&self.buckets);
        let b = self.buckets_of(&mut buckets, key);
        let allowed = b.hourly.used < c.hourly_limit && b.spike.used < c.spike_limit;
        if allowed {
            b.hourly.used += 1;
            b.spike.used += 1;
        }
        let hourly = b.hourly.report(c.hourly_limit, c.hourly_window);
        let spike = b.spike.report(c.spike_limit, c.spike_window);
        let reported = match (hourly.remaining == 0, spike.remaining == 0) {
            _ if allowed => pick_closer(hourly, spike),
            (true, true) => later_reset(hourly, spike),
            (true, false) => hourly,
            _ => spike,
        };
        RateDecision {
            allowed,
            reported,
            spike,
        }
    }

    /// Spends what is left of `key`'s spike window (an injected spike 429), and reports it.
    pub fn exhaust_spike(&self, key: &str) -> WindowReport {
        let c = &self.config;
        let mut buckets = lock(&self.buckets);
        let b = self.buckets_of(&mut buckets, key);
        b.spike.used = b.spike.used.max(c.spike_limit);
        b.spike.report(c.spike_limit, c.spike_window)
    }

    /// The windows of `key`, rolled over if their time is up.
    fn buckets_of<'a>(
        &self,
        buckets: &'a mut HashMap<String, Buckets>,
        key: &str,
    ) -> &'a mut Buckets {
        let now = Instant::now();
        let wall = SystemTime::now();
        let c = &self.config;
        let b = buckets.entry(key.to_owned()).or_insert_with(|| {
            let mut hourly = Window::new(now, wall);
            hourly.used = c.hourly_spent_at_start.min(c.hourly_limit);
            Buckets {
                hourly,
                spike: Window::new(now, wall),
            }
        });
        b.hourly.roll(c.hourly_window, now, wall);
        b.spike.roll(c.spike_window, now, wall);
        b
    }
}

fn later_reset(a: WindowReport, b: WindowReport) -> WindowReport {
    if a.reset_unix >= b.reset_unix {
        a
    } else {
        b
    }
}

fn pick_closer(a: WindowReport, b: WindowReport) -> WindowReport {
    match a.remaining.cmp(&b.remaining) {
        std::cmp::Ordering::Less => a,
        std::cmp::Ordering::Greater => b,
        std::cmp::Ordering::Equal => later_reset(a, b),
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
            hourly_spent_at_start: 0,
        });
        let d = limiter.admit("k");
        assert!(d.allowed);
        assert_eq!((d.reported.limit, d.reported.remaining), (3, 2));
        limiter.admit("k");
        limiter.admit("k");
        let refused = limiter.admit("k");
        assert!(!refused.allowed);
        assert_eq!((refused.reported.limit, refused.reported.remaining), (3, 0));
        // Another key has its own windows.
        assert!(limiter.admit("other").allowed);
    }

    #[test]
    fn an_hour_mostly_spent_reports_the_hourly_window_and_a_spent_spike_refuses() {
        let limiter = RateLimiter::new(RateLimitConfig {
            hourly_spent_at_start: 3550,
            ..RateLimitConfig::default()
        });
        let d = limiter.admit("k");
        assert_eq!((d.reported.limit, d.reported.remaining), (3600, 49));
        assert!(d.reported.reset_unix > unix_now() + 3500);
        assert_eq!((d.spike.limit, d.spike.remaining), (100, 99));
        let spent = limiter.exhaust_spike("k");
        assert_eq!((spent.limit, spent.remaining), (100, 0));
        // Reset is rounded up to whole seconds.
        assert!(spent.reset_unix <= unix_now() + 11);
        let refused = limiter.admit("k");
        assert!(!refused.allowed);
        assert_eq!(refused.reported, spent);
    }
}
