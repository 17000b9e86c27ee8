//! The rate budget: the pipeline's hourly and spike quotas (governor), tightened by what Procore
//! says on every response (`X-Rate-Limit-Limit` / `-Remaining` / `-Reset`).
//!
//! Procore has two limits at once (hourly and a 10-second spike) and each response describes
//! whichever is closer to exhaustion, so consecutive responses can describe different windows.
//! The gate keeps one record per window, keyed by `X-Rate-Limit-Limit`: a spike 429 then blocks
//! until the spike reset, never the hourly one. A window is forgotten when its reset passes (the
//! next response tells the new budget). A request is let through only while every known window's
//! last reported `Remaining` exceeds the requests in flight (each request counts against every
//! window). A window nobody reports any more keeps its last value, which can only be too high:
//! Procore reports the window closest to exhaustion, so an unreported one has at least as much
//! left. Failed requests count against the budget too, so every response updates the gate. No
//! wait is unbounded: [`RateGate::acquire`] gives up at its deadline, or at once when a window
//! will not reset before it.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Notify;

/// Quotas from the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuotas {
    pub hourly: u32,
    pub spike: u32,
    pub spike_window: Duration,
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

/// Which of Procore's windows a response describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WindowKey {
    /// Named by its `X-Rate-Limit-Limit`.
    Limit(u64),
    /// No `Limit` header: told apart by how far away `Reset` is, as Procore's own guide does
    /// (a reset within the spike window is the spike limit).
    Unnamed { short: bool },
}

impl std::fmt::Display for WindowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowKey::Limit(n) => write!(f, "the window of {n} requests"),
            WindowKey::Unnamed { short: true } => f.write_str("a short window (no Limit header)"),
            WindowKey::Unnamed { short: false } => f.write_str("a long window (no Limit header)"),
        }
    }
}

/// What the headers last said about one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    remaining: u64,
    reset_at: SystemTime,
}

/// What the gate knows, apart from the clock: every function takes `now`, so the bookkeeping
/// is tested with any clock.
#[derive(Debug, Default)]
struct Windows {
    windows: BTreeMap<WindowKey, Window>,
    /// Requests let through and not answered yet: they count against every window.
    in_flight: u64,
}

/// When the window a response describes resets. Without a Reset, assume the shortest window,
/// so that the value is soon forgotten.
fn reset_at(h: &RateHeaders, now: SystemTime, short_window: Duration) -> SystemTime {
    h.reset
        .map_or(now + short_window, |r| UNIX_EPOCH + Duration::from_secs(r))
}

/// The window a response describes: by its Limit, else by how far away its reset is.
fn window_key(h: &RateHeaders, now: SystemTime, short_window: Duration) -> WindowKey {
    match h.limit {
        Some(limit) => WindowKey::Limit(limit),
        None => WindowKey::Unnamed {
            short: reset_at(h, now, short_window)
                .duration_since(now)
                .unwrap_or_default()
                <= short_window + Duration::from_secs(1),
        },
    }
}

/// What [`Windows::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Send now (counted in flight).
    Send,
    /// A window is exhausted: nothing may be sent before `until` (the latest reset of the
    /// exhausted windows).
    Exhausted {
        window: WindowKey,
        until: SystemTime,
    },
    /// What a window has left is all in flight: wait for an answer, at most until `until`.
    AwaitAnswers {
        window: WindowKey,
        until: SystemTime,
    },
}

impl Windows {
    /// Forget the windows whose reset has passed.
    fn expire(&mut self, now: SystemTime) {
        self.windows.retain(|_, w| w.reset_at > now);
    }

    fn admit(&mut self, now: SystemTime) -> Admission {
        self.expire(now);
        let exhausted = self
            .windows
            .iter()
            .filter(|(_, w)| w.remaining == 0)
            .max_by_key(|(_, w)| w.reset_at);
        if let Some((window, w)) = exhausted {
            return Admission::Exhausted {
                window: *window,
                until: w.reset_at,
            };
        }
        let busy = self
            .windows
            .iter()
            .filter(|(_, w)| w.remaining <= self.in_flight)
            .min_by_key(|(_, w)| w.reset_at);
        if let Some((window, w)) = busy {
            return Admission::AwaitAnswers {
                window: *window,
                until: w.reset_at,
            };
        }
        self.in_flight += 1;
        Admission::Send
    }

    /// A request let through was answered (all headers absent for a transport error).
    fn settle(&mut self, headers: RateHeaders, now: SystemTime, short_window: Duration) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.report(headers, now, short_window);
    }

    /// Take in what a response says about its window.
    fn report(&mut self, h: RateHeaders, now: SystemTime, short_window: Duration) {
        let Some(remaining) = h.remaining else {
            return;
        };
        let reset_at = reset_at(&h, now, short_window);
        if reset_at <= now {
            // It describes a window that is over (an answer to a request sent before the reset).
            return;
        }
        let key = window_key(&h, now, short_window);
        let new = Window {
            remaining,
            reset_at,
        };
        match self.windows.entry(key) {
            Entry::Vacant(e) => {
                e.insert(new);
            }
            Entry::Occupied(mut e) => {
                let w = e.get_mut();
                // Answers arrive out of order: a later reset is a newer window; within one
                // window keep the smaller remaining; an earlier reset is the window before.
                if new.reset_at > w.reset_at {
                    *w = new;
                } else if new.reset_at == w.reset_at {
                    w.remaining = w.remaining.min(remaining);
                }
            }
        }
    }
}

/// Why [`RateGate::acquire`] gave up: the rate limit allows nothing before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateTimeout {
    /// The window that blocks (`None`: the pipeline's own quota).
    pub window: Option<WindowKey>,
    /// When it resets, if known.
    pub until: Option<SystemTime>,
}

impl std::fmt::Display for GateTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.window, self.until) {
            (Some(w), Some(until)) => write!(
                f,
                "rate limit: {w} is exhausted until {} ({} s away), past [load] max_retry_secs",
                clock_time(until),
                until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .as_secs()
            ),
            (Some(w), None) => write!(
                f,
                "rate limit: {w} let nothing through within [load] max_retry_secs (what it had left was in flight, unanswered)"
            ),
            (None, _) => f.write_str(
                "rate limit: the pipeline's [load] quotas let nothing through within [load] max_retry_secs",
            ),
        }
    }
}

/// A wait for the rate limit in progress, for the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWait {
    pub window: WindowKey,
    pub until: SystemTime,
}

impl std::fmt::Display for RateWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "waiting for the rate limit ({}) until {}",
            self.window,
            clock_time(self.until)
        )
    }
}

/// `HH:MM:SS UTC`, for messages.
pub fn clock_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%H:%M:%S UTC")
        .to_string()
}

/// Gate every request passes before it is sent.
pub struct RateGate {
    hourly: Option<DefaultDirectRateLimiter>,
    spike: Option<DefaultDirectRateLimiter>,
    /// Length of the spike window: a report without a `Limit` header whose reset is this close
    /// is taken for the spike window.
    short_window: Duration,
    windows: Mutex<Windows>,
    /// Woken on every answer, so a wait for requests in flight ends as soon as one returns.
    answered: Notify,
    waited: Mutex<Duration>,
    /// Waits for a window's reset now in progress (the gate's and a 429's retry), by id.
    waits: Mutex<BTreeMap<u64, RateWait>>,
    next_wait: AtomicU64,
    /// When a wait for each window was last logged at info level, and until when it was.
    logged: Mutex<BTreeMap<WindowKey, (Instant, SystemTime)>>,
}

/// A slot taken by [`RateGate::acquire`]; give it back with [`RateGate::settle`].
#[derive(Debug)]
#[must_use]
pub struct Slot(());

/// A wait registered with [`RateGate::waiting_for`]; it ends when this is dropped.
pub struct WaitGuard<'a> {
    gate: &'a RateGate,
    id: u64,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        lock(&self.gate.waits).remove(&self.id);
    }
}

/// How often a wait for one window is logged at info level.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Added to a reset before trying again: the server's window must have rolled over.
const RESET_MARGIN: Duration = Duration::from_millis(50);

fn quota(limit: u32, window: Duration) -> Option<Quota> {
    let n = NonZeroU32::new(limit)?;
    let period = window.checked_div(limit)?;
    Quota::with_period(period).map(|q| q.allow_burst(n))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
            short_window: quotas.map_or(Duration::from_secs(10), |q| q.spike_window),
            windows: Mutex::new(Windows::default()),
            answered: Notify::new(),
            waited: Mutex::new(Duration::ZERO),
            waits: Mutex::new(BTreeMap::new()),
            next_wait: AtomicU64::new(0),
            logged: Mutex::new(BTreeMap::new()),
        }
    }

    /// Wait until a request may be sent, or give up at `deadline` (`None`: never). A window
    /// that will not reset before the deadline gives up at once: waiting cannot help.
    pub async fn acquire(&self, deadline: Option<Instant>) -> Result<Slot, GateTimeout> {
        let started = Instant::now();
        let result = self.acquire_inner(deadline).await;
        *lock(&self.waited) += started.elapsed();
        result
    }

    async fn acquire_inner(&self, deadline: Option<Instant>) -> Result<Slot, GateTimeout> {
        let quota_timeout = GateTimeout {
            window: None,
            until: None,
        };
        for limiter in [&self.hourly, &self.spike].into_iter().flatten() {
            match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), limiter.until_ready())
                    .await
                    .map_err(|_| quota_timeout)?,
                None => limiter.until_ready().await,
            }
        }
        // The wait registered for the progress line, kept while it stays the same.
        let mut registered: Option<(RateWait, WaitGuard<'_>)> = None;
        loop {
            // Registered before the state is read, so an answer in between is not missed.
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            let now = SystemTime::now();
            let admission = lock(&self.windows).admit(now);
            let (window, until, for_answers) = match admission {
                Admission::Send => return Ok(Slot(())),
                Admission::Exhausted { window, until } => (window, until, false),
                Admission::AwaitAnswers { window, until } => (window, until, true),
            };
            let wake =
                Instant::now() + until.duration_since(now).unwrap_or_default() + RESET_MARGIN;
            let timeout = GateTimeout {
                window: Some(window),
                // Waiting for answers, the window is not known to be exhausted.
                until: (!for_answers).then_some(until),
            };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(timeout);
            }
            if !for_answers && deadline.is_some_and(|d| wake > d) {
                return Err(timeout);
            }
            let wake = deadline.map_or(wake, |d| wake.min(d));
            let wait = RateWait { window, until };
            if for_answers {
                registered = None;
            } else if registered.as_ref().is_none_or(|(w, _)| *w != wait) {
                registered = Some((wait, self.waiting_for(window, until)));
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake.into()) => {}
                () = &mut answered => {}
            }
        }
    }

    /// Return a slot with what the response said (all absent for a transport error).
    pub fn settle(&self, _slot: Slot, headers: RateHeaders) {
        lock(&self.windows).settle(headers, SystemTime::now(), self.short_window);
        self.answered.notify_waiters();
    }

    /// Register a wait for `window` to reset at `until` (the gate's own waits, and a 429's
    /// retry): the progress line shows it while the guard lives, and the log says it, at info
    /// level once a minute per window (workers waiting together, or a tight spike limit hit
    /// every ten seconds, would repeat it), or when it ends much later than the one logged.
    pub fn waiting_for(&self, window: WindowKey, until: SystemTime) -> WaitGuard<'_> {
        let wait = RateWait { window, until };
        let wait_secs = until
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .as_secs_f64();
        {
            let now = Instant::now();
            let mut logged = lock(&self.logged);
            let fresh = logged.get(&window).is_none_or(|(at, logged_until)| {
                now.duration_since(*at) >= LOG_EVERY || until > *logged_until + LOG_EVERY
            });
            if fresh {
                tracing::info!(wait_secs, "load: {wait}");
                logged.insert(window, (now, until));
            } else {
                tracing::debug!(wait_secs, "load: {wait}");
            }
        }
        let id = self.next_wait.fetch_add(1, Ordering::Relaxed);
        lock(&self.waits).insert(id, wait);
        WaitGuard { gate: self, id }
    }

    /// The window a response's headers describe.
    pub fn window_of(&self, headers: &RateHeaders) -> WindowKey {
        window_key(headers, SystemTime::now(), self.short_window)
    }

    /// The wait for the rate limit in progress that ends last, if any.
    pub fn waiting(&self) -> Option<RateWait> {
        lock(&self.waits).values().max_by_key(|w| w.until).copied()
    }

    /// Time requests spent waiting at this gate.
    pub fn waited(&self) -> Duration {
        *lock(&self.waited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPIKE: Duration = Duration::from_secs(10);

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn at(secs: u64) -> SystemTime {
        t0() + Duration::from_secs(secs)
    }

    /// Headers as Procore sends them, `reset_in` seconds after t0.
    fn report(limit: u64, remaining: u64, reset_in: u64) -> RateHeaders {
        RateHeaders {
            limit: Some(limit),
            remaining: Some(remaining),
            reset: Some(1_700_000_000 + reset_in),
        }
    }

    fn sent_and_answered(w: &mut Windows, now: SystemTime, h: RateHeaders) {
        assert_eq!(w.admit(now), Admission::Send);
        w.settle(h, now, SPIKE);
    }

    #[test]
    fn a_spike_429_after_hourly_reports_waits_for_the_spike_reset_only() {
        let mut w = Windows::default();
        sent_and_answered(&mut w, t0(), report(3600, 59, 3500));
        sent_and_answered(&mut w, t0(), report(3600, 58, 3500));
        // The spike window is spent: a 429 that names it, resetting in 2 s.
        sent_and_answered(&mut w, at(1), report(100, 0, 3));
        assert_eq!(
            w.admit(at(2)),
            Admission::Exhausted {
                window: WindowKey::Limit(100),
                until: at(3)
            }
        );
        // At the spike reset the spike window is forgotten; the hourly one still has 58 left.
        assert_eq!(w.admit(at(3)), Admission::Send);
        assert_eq!(w.windows.len(), 1);
        assert_eq!(w.windows[&WindowKey::Limit(3600)].remaining, 58);
    }

    #[test]
    fn a_late_answer_about_another_window_does_not_lift_an_exhausted_one() {
        let mut w = Windows::default();
        assert_eq!(w.admit(t0()), Admission::Send);
        assert_eq!(w.admit(t0()), Admission::Send);
        w.settle(report(100, 0, 5), t0(), SPIKE);
        // Sent earlier, answered later: the hourly window had plenty left.
        w.settle(report(3600, 3000, 3000), t0(), SPIKE);
        assert!(matches!(
            w.admit(at(1)),
            Admission::Exhausted {
                window: WindowKey::Limit(100),
                ..
            }
        ));
    }

    #[test]
    fn within_a_window_the_smaller_remaining_wins_and_the_window_before_is_ignored() {
        let mut w = Windows::default();
        w.report(report(100, 40, 10), t0(), SPIKE);
        w.report(report(100, 45, 10), t0(), SPIKE);
        assert_eq!(w.windows[&WindowKey::Limit(100)].remaining, 40);
        // The next window: its value replaces the old one.
        w.report(report(100, 90, 20), at(11), SPIKE);
        assert_eq!(
            w.windows[&WindowKey::Limit(100)],
            Window {
                remaining: 90,
                reset_at: at(20)
            }
        );
        // A late answer from the window before (reset 10, not passed in this clock): ignored.
        w.report(report(100, 0, 10), at(9), SPIKE);
        assert_eq!(w.windows[&WindowKey::Limit(100)].remaining, 90);
        // An answer describing a window already over: ignored.
        w.report(report(100, 0, 19), at(19), SPIKE);
        assert_eq!(w.windows[&WindowKey::Limit(100)].remaining, 90);
    }

    #[test]
    fn requests_in_flight_count_against_every_window() {
        let mut w = Windows::default();
        w.report(report(3600, 5, 3000), t0(), SPIKE);
        w.report(report(100, 2, 8), t0(), SPIKE);
        assert_eq!(w.admit(t0()), Admission::Send);
        assert_eq!(w.admit(t0()), Admission::Send);
        // Two in flight, the spike window has two left: wait for an answer.
        assert_eq!(
            w.admit(t0()),
            Admission::AwaitAnswers {
                window: WindowKey::Limit(100),
                until: at(8)
            }
        );
        w.settle(report(100, 1, 8), t0(), SPIKE);
        assert_eq!(w.in_flight, 1);
        assert!(matches!(w.admit(t0()), Admission::AwaitAnswers { .. }));
        w.settle(report(100, 1, 8), t0(), SPIKE);
        assert_eq!(w.admit(t0()), Admission::Send);
        // A transport error gives the slot back and says nothing.
        w.settle(RateHeaders::default(), t0(), SPIKE);
        assert_eq!(w.in_flight, 0);
        assert_eq!(w.windows[&WindowKey::Limit(100)].remaining, 1);
    }

    #[test]
    fn without_a_limit_header_the_reset_tells_short_from_long() {
        let mut w = Windows::default();
        let unnamed = |remaining, reset_in| RateHeaders {
            limit: None,
            ..report(0, remaining, reset_in)
        };
        w.report(unnamed(3000, 3000), t0(), SPIKE);
        w.report(unnamed(0, 2), t0(), SPIKE);
        assert_eq!(
            w.admit(t0()),
            Admission::Exhausted {
                window: WindowKey::Unnamed { short: true },
                until: at(2)
            }
        );
        assert_eq!(w.admit(at(2)), Admission::Send);
        assert_eq!(
            w.windows[&WindowKey::Unnamed { short: false }].remaining,
            3000
        );
        // Remaining without Reset: kept for one spike window at most.
        w.report(
            RateHeaders {
                limit: Some(7),
                remaining: Some(0),
                reset: None,
            },
            at(2),
            SPIKE,
        );
        assert!(matches!(w.admit(at(3)), Admission::Exhausted { .. }));
        assert_eq!(w.admit(at(12)), Admission::Send);
    }

    fn unix_in(secs: u64) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + secs
    }

    #[tokio::test]
    async fn exhausted_budget_waits_for_the_reset_and_says_so() {
        let gate = RateGate::new(None);
        let slot = gate.acquire(None).await.expect("slot");
        gate.settle(
            slot,
            RateHeaders {
                limit: Some(10),
                remaining: Some(0),
                reset: Some(unix_in(1)),
            },
        );
        let started = Instant::now();
        let (slot, seen) = tokio::join!(gate.acquire(None), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            gate.waiting()
        });
        gate.settle(slot.expect("slot"), RateHeaders::default());
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "waited {:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < Duration::from_millis(2500));
        assert_eq!(seen.map(|w| w.window), Some(WindowKey::Limit(10)));
        assert!(seen.is_some_and(|w| w.to_string().contains("window of 10 requests")));
        assert_eq!(gate.waiting(), None, "the wait is over");
        assert!(gate.waited() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_reset_past_the_deadline_gives_up_at_once() {
        let gate = RateGate::new(None);
        let slot = gate.acquire(None).await.expect("slot");
        gate.settle(slot, report_now(3600, 0, 3000));
        let started = Instant::now();
        let err = gate
            .acquire(Some(Instant::now() + Duration::from_secs(2)))
            .await
            .expect_err("gives up");
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(err.window, Some(WindowKey::Limit(3600)));
        let message = err.to_string();
        assert!(
            message.contains("window of 3600 requests") && message.contains("max_retry_secs"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_wait_for_answers_that_never_come_ends_at_the_deadline() {
        let gate = RateGate::new(None);
        let slot = gate.acquire(None).await.expect("slot");
        gate.settle(slot, report_now(100, 1, 3000));
        let _held = gate.acquire(None).await.expect("the last one left");
        let started = Instant::now();
        let err = gate
            .acquire(Some(Instant::now() + Duration::from_millis(300)))
            .await
            .expect_err("gives up");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(err.window, Some(WindowKey::Limit(100)));
    }

    #[tokio::test]
    async fn an_answer_wakes_a_request_waiting_for_the_budget_in_flight() {
        let gate = RateGate::new(None);
        let slot = gate.acquire(None).await.expect("slot");
        gate.settle(slot, report_now(100, 1, 3000));
        let held = gate.acquire(None).await.expect("the last one left");
        let started = Instant::now();
        let (next, ()) = tokio::join!(gate.acquire(None), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            gate.settle(held, report_now(100, 5, 3000));
        });
        gate.settle(next.expect("slot"), RateHeaders::default());
        assert!(started.elapsed() < Duration::from_secs(2), "not the reset");
    }

    fn report_now(limit: u64, remaining: u64, reset_in: u64) -> RateHeaders {
        RateHeaders {
            limit: Some(limit),
            remaining: Some(remaining),
            reset: Some(unix_in(reset_in)),
        }
    }

    #[tokio::test]
    async fn remaining_budget_lets_requests_through_at_once() {
        let gate = RateGate::new(None);
        let slot = gate.acquire(None).await.expect("slot");
        gate.settle(slot, report_now(100, 50, 10));
        let started = Instant::now();
        for _ in 0..20 {
            let slot = gate.acquire(None).await.expect("slot");
            gate.settle(slot, report_now(100, 40, 10));
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
