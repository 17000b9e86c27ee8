//! Configuration of an embedded or command-line sandbox.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::faults::FaultConfig;
use super::seed::Seed;

/// Default lifetime of an access token, as Procore documents it.
pub const fn default_token_ttl() -> Duration {
    Duration::from_secs(5400)
}

/// Default seed of the generator that shuffles sync results.
pub const fn default_shuffle_seed() -> u64 {
    0x5EED_5A4D
}

/// Most records one `…/sync` call accepts.
pub const MAX_SYNC_UPDATES: usize = 1000;

/// Most line items one `POST /rest/v1.1/projects/{id}/direct_costs` accepts.
pub const MAX_POST_LINE_ITEMS: usize = 100;

/// Where the sandbox takes its company, projects, vendors and budget codes from.
#[derive(Debug, Clone)]
pub enum SeedSource {
    /// A seed directory (see `docs/sandbox.md`), e.g. `fixtures/procore`.
    Dir(PathBuf),
    /// A seed already in memory (tests, `jcsync generate`).
    Inline(Box<Seed>),
}

/// Hourly and spike windows, as Procore applies them per app and company.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RateLimitConfig {
    /// Requests allowed per hourly window.
    pub hourly_limit: u32,
    /// Requests allowed per spike window.
    pub spike_limit: u32,
    /// Length of the hourly window (3600 s on Procore; shorter in tests).
    pub hourly_window: Duration,
    /// Length of the spike window (10 s on Procore; shorter in tests).
    pub spike_window: Duration,
    /// Requests already counted in each key's first hourly window, as if the app had spent them
    /// earlier in the hour. Procore reports the spike window until the hourly one is nearly
    /// exhausted; this lets a test start there, where responses describe the hourly window.
    #[serde(default)]
    pub hourly_spent_at_start: u32,
}

impl Default for RateLimitConfig {
    /// 3600 requests an hour with a spike limit of 100 per 10 s, one of the documented Procore tiers.
    fn default() -> Self {
        Self {
            hourly_limit: 3600,
            spike_limit: 100,
            hourly_window: Duration::from_secs(3600),
            spike_window: Duration::from_secs(10),
            hourly_spent_at_start: 0,
        }
    }
}

/// Everything a sandbox needs to start.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The seed data.
    pub seed: SeedSource,
    /// Address to bind; `127.0.0.1:0` picks a free port.
    pub bind: SocketAddr,
    /// Lifetime of an access token.
    pub token_ttl: Duration,
    /// Rate limits; `None` turns them off (no counting, no `X-Rate-Limit-*` headers), for benchmarks.
    pub rate_limit: Option<RateLimitConfig>,
    /// Injected faults.
    pub faults: FaultConfig,
    /// Stop injecting after this many faults in all (`None`: no cap). With a rule of
    /// probability 1 it makes a test's faults exact: the first N eligible requests get them.
    pub max_faults: Option<u64>,
    /// How long a write holds its direct costs before committing: two writes that reach the same
    /// direct cost within this time get a 409. Zero keeps writes as fast as possible.
    pub write_latency: Duration,
    /// Seed of the generator that shuffles `entities` and `errors` in sync responses.
    pub shuffle_seed: u64,
    /// JSON file holding the state: loaded at start if it exists (instead of the seed), saved after
    /// writes (debounced) and at shutdown.
    pub state_file: Option<PathBuf>,
}

impl SandboxConfig {
    /// A config with Procore's defaults for the given seed, bound to `127.0.0.1:0`.
    pub fn new(seed: SeedSource) -> Self {
        Self {
            seed,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_ttl: default_token_ttl(),
            rate_limit: Some(RateLimitConfig::default()),
            faults: FaultConfig::default(),
            max_faults: None,
            write_latency: Duration::ZERO,
            shuffle_seed: default_shuffle_seed(),
            state_file: None,
        }
    }

    /// A config for the seed directory `dir`.
    pub fn from_dir(dir: impl Into<PathBuf>) -> Self {
        Self::new(SeedSource::Dir(dir.into()))
    }
}
