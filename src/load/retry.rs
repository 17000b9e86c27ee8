//! Which outcomes are retried, and how long to wait before the next attempt.
//!
//! Retry 408, 409, 429, 5xx except 501, timeouts and connection errors; never another 4xx (a 401
//! is handled by renewing the token once). A 409 is Procore refusing concurrent writes to one
//! direct cost (someone else is writing it): transient, and safe to send again, as every write
//! jcsync sends is an upsert by origin_id. Backoff is capped and fully jittered; a 503's
//! `Retry-After` and a 429's `X-Rate-Limit-Reset` are honoured (the wait is at least what the
//! server asked for).

use std::time::Duration;

use rand::Rng;

/// What to do with an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// 2xx.
    Success,
    /// Try again after a backoff (at least `min_wait` when the server said so).
    Retry { min_wait: Option<Duration> },
    /// The token was refused: renew it, then try again.
    RenewToken,
    /// Final: retrying cannot help.
    Fail,
}

/// Classify an HTTP status. `retry_after` is the `Retry-After` header (seconds) and
/// `reset_in` the time until `X-Rate-Limit-Reset`, when present.
pub fn classify_status(
    status: u16,
    retry_after: Option<Duration>,
    reset_in: Option<Duration>,
) -> RetryDecision {
    match status {
        200..=299 => RetryDecision::Success,
        401 => RetryDecision::RenewToken,
        429 => RetryDecision::Retry {
            min_wait: retry_after.max(reset_in),
        },
        408 | 409 | 500 | 502..=599 => RetryDecision::Retry {
            min_wait: retry_after,
        },
        _ => RetryDecision::Fail,
    }
}

/// Classify a transport error: timeouts and connection failures are retried.
pub fn classify_transport(e: &reqwest::Error) -> RetryDecision {
    if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
        RetryDecision::Retry { min_wait: None }
    } else {
        RetryDecision::Fail
    }
}

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The wait before attempt `attempt` (1 = the first retry): uniform in [0, min(cap, base·2^(attempt-1))],
    /// and never less than `min_wait`.
    pub fn wait(&self, attempt: u32, min_wait: Option<Duration>) -> Duration {
        let exp = self.base.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1).min(20))
                .unwrap_or(u32::MAX),
        );
        let ceiling = exp.min(self.cap);
        let jitter = Duration::from_secs_f64(rand::rng().random_range(0.0..=ceiling.as_secs_f64()));
        match min_wait {
            // A little jitter on top, so that clients told the same time do not return together.
            Some(m) => m + jitter.min(Duration::from_millis(250)),
            None => jitter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_statuses_are_retried() {
        for s in [408, 409, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify_status(s, None, None), RetryDecision::Retry { .. }),
                "{s}"
            );
        }
        for s in [400, 403, 404, 422, 501] {
            assert_eq!(classify_status(s, None, None), RetryDecision::Fail, "{s}");
        }
        assert_eq!(classify_status(401, None, None), RetryDecision::RenewToken);
        assert_eq!(classify_status(200, None, None), RetryDecision::Success);
    }

    #[test]
    fn retry_after_is_honoured_on_503_and_reset_on_429() {
        let s = Duration::from_secs;
        assert_eq!(
            classify_status(503, Some(s(7)), None),
            RetryDecision::Retry {
                min_wait: Some(s(7))
            }
        );
        assert_eq!(
            classify_status(429, None, Some(s(4))),
            RetryDecision::Retry {
                min_wait: Some(s(4))
            }
        );
        assert_eq!(
            classify_status(429, Some(s(9)), Some(s(4))),
            RetryDecision::Retry {
                min_wait: Some(s(9))
            }
        );
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        for attempt in 1..10 {
            let w = b.wait(attempt, Some(s(7)));
            assert!(w >= s(7) && w <= s(7) + Duration::from_millis(250), "{w:?}");
        }
    }

    #[test]
    fn a_409_is_retried_like_a_503_honouring_retry_after() {
        let s = Duration::from_secs;
        assert_eq!(
            classify_status(409, None, None),
            RetryDecision::Retry { min_wait: None }
        );
        assert_eq!(
            classify_status(409, Some(s(3)), Some(s(60))),
            classify_status(503, Some(s(3)), Some(s(60))),
            "a 409's wait is the server's Retry-After, never the rate-limit reset"
        );
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let waits: Vec<Duration> = (0..200).map(|_| b.wait(30, None)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 100, "full jitter spreads the waits");
        assert!(b.wait(1, None) <= Duration::from_millis(100));
    }
}
