//! Fault injection: each API request may be hit by at most one fault, drawn from a seeded ChaCha
//! generator so a run with the same seed and the same request order misbehaves the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The ways the sandbox can misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 with `Retry-After` and exhausted `X-Rate-Limit-*` headers, as if the limit were hit.
    TooManyRequests,
    /// 429 from the spike window: `X-Rate-Limit-Limit` the spike limit, `Remaining` 0, `Reset`
    /// when the spike window rolls over (no `Retry-After`), and the spike window is spent, so a
    /// client that comes back before `Reset` gets a real 429.
    SpikeTooManyRequests,
    /// 409 "Direct Cost does not support concurrent requests", as when someone else writes the
    /// same direct cost; only writes to direct costs are eligible, and nothing is written.
    Conflict,
    /// 500.
    InternalServerError,
    /// 502.
    BadGateway,
    /// 503 with `Retry-After`, as Procore under heavy load.
    ServiceUnavailable,
    /// The request is served normally after [`FaultConfig::slow_delay`].
    Slow,
    /// The connection is reset (RST) after the request is read, before it is handled.
    ConnectionReset,
    /// The request is handled and committed, then the connection is closed without a response.
    LostResponse,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::TooManyRequests,
        FaultKind::SpikeTooManyRequests,
        FaultKind::Conflict,
        FaultKind::InternalServerError,
        FaultKind::BadGateway,
        FaultKind::ServiceUnavailable,
        FaultKind::Slow,
        FaultKind::ConnectionReset,
        FaultKind::LostResponse,
    ];

    /// The short name used on the command line and in the inspection counters.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::TooManyRequests => "429",
            FaultKind::SpikeTooManyRequests => "429_spike",
            FaultKind::Conflict => "409",
            FaultKind::InternalServerError => "500",
            FaultKind::BadGateway => "502",
            FaultKind::ServiceUnavailable => "503",
            FaultKind::Slow => "slow",
            FaultKind::ConnectionReset => "reset",
            FaultKind::LostResponse => "lost_response",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault specification that does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultSpecError {
    /// Unknown kind.
    #[error(
        "unknown fault kind {0:?} (expected one of 429, 429_spike, 409, 500, 502, 503, slow, reset, lost_response)"
    )]
    UnknownKind(String),
    /// Probability missing or outside 0..=1.
    #[error("fault {0:?}: probability must be a number between 0 and 1")]
    BadProbability(String),
    /// Unknown trailing option.
    #[error("fault {0:?}: the only option after the probability is `writes`")]
    BadOption(String),
}

impl FromStr for FaultKind {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| FaultSpecError::UnknownKind(s.to_owned()))
    }
}

/// One kind of fault with its probability per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The fault.
    pub kind: FaultKind,
    /// Probability per eligible request, 0..=1.
    pub probability: f64,
    /// Only writes (POST, PATCH, PUT, DELETE) are eligible.
    #[serde(default)]
    pub writes_only: bool,
}

impl FromStr for FaultRule {
    type Err = FaultSpecError;

    /// Parses `KIND:PROBABILITY[:writes]`, e.g. `503:0.05` or `lost_response:0.1:writes`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let kind: FaultKind = parts.next().unwrap_or_default().parse()?;
        let probability: f64 = parts
            .next()
            .and_then(|p| p.parse().ok())
            .filter(|p: &f64| (0.0..=1.0).contains(p))
            .ok_or_else(|| FaultSpecError::BadProbability(s.to_owned()))?;
        let writes_only = match parts.next() {
            None => false,
            Some("writes") => true,
            Some(_) => return Err(FaultSpecError::BadOption(s.to_owned())),
        };
        if parts.next().is_some() {
            return Err(FaultSpecError::BadOption(s.to_owned()));
        }
        Ok(FaultRule {
            kind,
            probability,
            writes_only,
        })
    }
}

/// Which faults to inject, how often, and with which parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultConfig {
    /// The rules; their probabilities should sum to at most 1 (the excess is never drawn).
    pub rules: Vec<FaultRule>,
    /// Seed of the generator.
    pub seed: u64,
    /// `Retry-After` sent with injected 429 and 503, in seconds.
    pub retry_after_secs: u64,
    /// Delay of a slow response.
    pub slow_delay: Duration,
}

impl Default for FaultConfig {
    /// No faults.
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            seed: 42,
            retry_after_secs: 1,
            slow_delay: Duration::from_secs(2),
        }
    }
}

impl FaultConfig {
    /// A config where every eligible request gets `kind`.
    pub fn always(kind: FaultKind) -> Self {
        Self {
            rules: vec![FaultRule {
                kind,
                probability: 1.0,
                writes_only: false,
            }],
            ..Self::default()
        }
    }
}

/// Which rules a request is eligible for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// GET, HEAD, OPTIONS.
    Read,
    /// POST, PATCH, PUT, DELETE to anything but a direct cost.
    Write,
    /// A write to direct costs or their line items (the only requests a `409` can hit).
    DirectCostWrite,
}

/// Draws faults from the seeded generator and counts what it injected.
#[derive(Debug)]
pub struct FaultInjector {
    config: FaultConfig,
    max_faults: Option<u64>,
    rng: Mutex<ChaCha8Rng>,
    injected: Mutex<BTreeMap<FaultKind, u64>>,
}

impl FaultInjector {
    /// A fresh injector.
    pub fn new(config: FaultConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Self {
            config,
            max_faults: None,
            rng: Mutex::new(rng),
            injected: Mutex::new(BTreeMap::new()),
        }
    }

    /// The same injector, injecting no more than `max` faults in all.
    pub fn with_max_faults(mut self, max: Option<u64>) -> Self {
        self.max_faults = max;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Decides the fault for one request. Draws exactly one number per request when any rule
    /// exists, so the sequence depends only on the seed and the order of requests.
    pub fn draw(&self, request: RequestKind) -> Option<FaultKind> {
        if self.config.rules.is_empty() {
            return None;
        }
        let u: f64 = lock(&self.rng).random();
        let mut injected = lock(&self.injected);
        if self
            .max_faults
            .is_some_and(|max| injected.values().sum::<u64>() >= max)
        {
            return None;
        }
        let mut cumulative = 0.0;
        for rule in &self.config.rules {
            let eligible = match request {
                RequestKind::Read => !rule.writes_only && rule.kind != FaultKind::Conflict,
                RequestKind::Write => rule.kind != FaultKind::Conflict,
                RequestKind::DirectCostWrite => true,
            };
            if !eligible {
                continue;
            }
            cumulative += rule.probability;
            // `<=` would make probability 0 fire on u == 0; `<` with p = 1.0 always fires as u < 1.
            if u < cumulative {
                *injected.entry(rule.kind).or_insert(0) += 1;
                return Some(rule.kind);
            }
        }
        None
    }

    /// How many of each fault were injected.
    pub fn injected(&self) -> BTreeMap<String, u64> {
        lock(&self.injected)
            .iter()
            .map(|(k, n)| (k.name().to_owned(), *n))
            .collect()
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the data is counters and
/// generator state, still usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_rules_parse_from_the_command_line_form() {
        let r: FaultRule = "lost_response:0.25:writes".parse().unwrap();
        assert_eq!(r.kind, FaultKind::LostResponse);
        assert_eq!(r.probability, 0.25);
        assert!(r.writes_only);
        assert!("503:1.5".parse::<FaultRule>().is_err());
        assert!("boom:0.1".parse::<FaultRule>().is_err());
    }

    #[test]
    fn same_seed_draws_the_same_faults() {
        let config = FaultConfig {
            rules: vec!["503:0.3".parse().unwrap(), "slow:0.2".parse().unwrap()],
            ..FaultConfig::default()
        };
        let a = FaultInjector::new(config.clone());
        let b = FaultInjector::new(config);
        let seq_a: Vec<_> = (0..200).map(|_| a.draw(RequestKind::Write)).collect();
        let seq_b: Vec<_> = (0..200).map(|_| b.draw(RequestKind::Write)).collect();
        assert_eq!(seq_a, seq_b);
        let n503 = seq_a
            .iter()
            .filter(|f| **f == Some(FaultKind::ServiceUnavailable))
            .count();
        assert!(
            (30..90).contains(&n503),
            "{n503} 503s in 200 draws at p=0.3"
        );
    }

    #[test]
    fn conflicts_hit_only_direct_cost_writes_and_the_cap_holds() {
        let config = FaultConfig {
            rules: vec!["409:1.0".parse().unwrap()],
            ..FaultConfig::default()
        };
        let injector = FaultInjector::new(config).with_max_faults(Some(2));
        assert_eq!(injector.draw(RequestKind::Read), None);
        assert_eq!(injector.draw(RequestKind::Write), None);
        let hits: Vec<_> = (0..5)
            .map(|_| injector.draw(RequestKind::DirectCostWrite))
            .collect();
        assert_eq!(
            hits,
            [
                Some(FaultKind::Conflict),
                Some(FaultKind::Conflict),
                None,
                None,
                None
            ]
        );
        assert_eq!(injector.injected()["409"], 2);
        assert_eq!(
            "429_spike:0.5:writes".parse::<FaultRule>().unwrap().kind,
            FaultKind::SpikeTooManyRequests
        );
    }
}
