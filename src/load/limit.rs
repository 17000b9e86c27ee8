//! The rate budget: the pipeline's hourly and spike quotas (governor), tightened by what Procore
//! says on every response (`X-Rate-Limit-Remaining` / `X-Rate-Limit-Reset`).
//!
//! The headers are authoritative: a request is let through only while the last reported
//! `Remaining` exceeds the requests already in flight; at zero the gate waits until `Reset`.
//! Failed requests count against the budget too, so every response updates the gate.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Quotas from the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuotas {
    pub hourly: u32,
    pub spike: u32,
    pub spike_window: Duration,
}

#[derive(Debug, Default)]
struct HeaderState {
    remaining: Option<u64>,
    reset_at: Option<SystemTime>,
    in_flight: u64,
}

/// Rate-limit headers of one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Unix seconds.
    pub reset: Option<u64>,
}

impl RateHeaders {
    /// Read the `X-Rate-Limit-*` headers.
    pub fn from_headers(h: &reqwest::header::HeaderMap) -> RateHeaders {
        let num = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        RateHeaders {
            limit: num("x-rate-limit-limit"),
            remaining: num("x-rate-limit-remaining"),
            reset: num("x-rate-limit-reset"),
        }
    }

    /// Time until the reset, from now.
    pub fn reset_in(&self) -> Option<Duration> {
        let reset = UNIX_EPOCH + Duration::from_secs(self.reset?);
        Some(
            reset
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    }
}

/// Gate every request passes before it is sent.
pub struct RateGate {
    hourly: Option<DefaultDirectRateLimiter>,
    spike: Option<DefaultDirectRateLimiter>,
    headers: Mutex<HeaderState>,
    waited: Mutex<Duration>,
}

/// A slot taken by [`RateGate::acquire`]; give it back with [`RateGate::settle`].
#[derive(Debug)]
#[must_use]
pub struct Slot(());

fn quota(limit: u32, window: Duration) -> Option<Quota> {
    let n = NonZeroU32::new(limit)?;
    let period = window.checked_div(limit)?;
    Quota::with_period(period).map(|q| q.allow_burst(n))
}

impl RateGate {
    /// A gate for the given quotas (`None`: only the headers limit).
    pub fn new(quotas: Option<RateQuotas>) -> RateGate {
        RateGate {
            hourly: quotas
                .and_then(|q| quota(q.hourly, Duration::from_secs(3600)))
                .map(RateLimiter::direct),
            spike: quotas
                .and_then(|q| quota(q.spike, q.spike_window))
                .map(RateLimiter::direct),
            headers: Mutex::new(HeaderState::default()),
            waited: Mutex::new(Duration::ZERO),
        }
    }

    /// Wait until a request may be sent.
    pub async fn acquire(&self) -> Slot {
        let started = Instant::now();
        if let Some(l) = &self.hourly {
            l.until_ready().await;
        }
        if let Some(l) = &self.spike {
            l.until_ready().await;
        }
        loop {
            let wait = {
                let mut s = self.headers.lock().unwrap_or_else(|p| p.into_inner());
                if s.reset_at.is_some_and(|r| SystemTime::now() >= r) {
                    // The window rolled over: the next response will tell the new budget.
                    s.remaining = None;
                    s.reset_at = None;
                }
                match s.remaining {
                    Some(r) if r <= s.in_flight => {
                        s.reset_at
                            .map(|r| {
                                r.duration_since(SystemTime::now())
                                    .unwrap_or(Duration::ZERO)
                            })
                            .unwrap_or(Duration::from_millis(200))
                            + Duration::from_millis(50)
                    }
                    _ => {
                        s.in_flight += 1;
                        break;
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
        *self.waited.lock().unwrap_or_else(|p| p.into_inner()) += started.elapsed();
        Slot(())
    }

    /// Return a slot with what the response said (all absent for a transport error).
    pub fn settle(&self, _slot: Slot, headers: RateHeaders) {
        let mut s = self.headers.lock().unwrap_or_else(|p| p.into_inner());
        s.in_flight = s.in_flight.saturating_sub(1);
        if let Some(remaining) = headers.remaining {
            let reset_at = headers.reset.map(|r| UNIX_EPOCH + Duration::from_secs(r));
            // Answers arrive out of order: a later reset is a newer window; within one window
            // keep the smaller remaining.
            let newer_window = match (reset_at, s.reset_at) {
                (Some(new), Some(old)) => new > old,
                _ => true,
            };
            if newer_window {
                s.reset_at = reset_at;
                s.remaining = Some(remaining);
            } else {
                s.remaining = Some(s.remaining.map_or(remaining, |r| r.min(remaining)));
            }
        }
    }

    /// Time requests spent waiting at this gate.
    pub fn waited(&self) -> Duration {
        *self.waited.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(remaining: u64, reset_in_secs: u64) -> RateHeaders {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        RateHeaders {
            limit: Some(10),
            remaining: Some(remaining),
            reset: Some(now + reset_in_secs),
        }
    }

    #[tokio::test]
    async fn exhausted_budget_waits_for_the_reset() {
        let gate = RateGate::new(None);
        let slot = gate.acquire().await;
        gate.settle(slot, headers(0, 1));
        let started = Instant::now();
        let slot = gate.acquire().await;
        gate.settle(slot, headers(5, 10));
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "waited {:?}",
            started.elapsed()
        );
        assert!(gate.waited() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn remaining_budget_lets_requests_through_at_once() {
        let gate = RateGate::new(None);
        let slot = gate.acquire().await;
        gate.settle(slot, headers(50, 10));
        let started = Instant::now();
        for _ in 0..20 {
            let slot = gate.acquire().await;
            gate.settle(slot, headers(40, 10));
        }
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn headers_parse() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("X-Rate-Limit-Limit", "100".parse().expect("v"));
        h.insert("X-Rate-Limit-Remaining", "7".parse().expect("v"));
        h.insert("X-Rate-Limit-Reset", "1700000000".parse().expect("v"));
        assert_eq!(
            RateHeaders::from_headers(&h),
            RateHeaders {
                limit: Some(100),
                remaining: Some(7),
                reset: Some(1_700_000_000)
            }
        );
    }
}
