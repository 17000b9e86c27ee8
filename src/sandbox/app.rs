//! Shared state of a running sandbox: the data, tokens, limiter, fault injector and counters.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::auth::TokenStore;
use super::config::SandboxConfig;
use super::drift::DriftError;
use super::faults::{lock, FaultInjector};
use super::limits::RateLimiter;
use super::routes::common::now;
use super::state::Db;

/// What the sandbox has seen, for tests and for `/_sandbox/stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Requests by route (`METHOD /path/{param}`) and outcome (status code, or `connection_reset` /
    /// `response_lost` for connections dropped on purpose).
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// 429s sent because a rate limit was exhausted (injected 429s are counted under `faults`).
    pub rate_limited: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
}

impl Stats {
    /// How many requests to `route` ended with `outcome` (e.g. `"200"`).
    pub fn count(&self, route: &str, outcome: &str) -> u64 {
        self.requests
            .get(route)
            .and_then(|m| m.get(outcome))
            .copied()
            .unwrap_or(0)
    }
}

/// The state behind every handler.
pub(crate) struct AppState {
    pub(crate) config: SandboxConfig,
    pub(crate) db: Mutex<Db>,
    pub(crate) tokens: TokenStore,
    pub(crate) limiter: Option<RateLimiter>,
    pub(crate) faults: FaultInjector,
    pub(crate) shuffle_rng: Mutex<ChaCha8Rng>,
    /// Direct costs a write is working on right now (the 409 rule).
    pub(crate) in_flight: Mutex<HashSet<i64>>,
    pub(crate) requests: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
    pub(crate) rate_limited: Mutex<u64>,
    /// Set by writes, cleared by the persister.
    pub(crate) dirty: AtomicBool,
    /// Held while the state file is written: one writer at a time, each with the latest state.
    pub(crate) persist: Mutex<()>,
}

impl AppState {
    pub(crate) fn new(config: SandboxConfig, db: Db) -> Self {
        Self {
            limiter: config.rate_limit.clone().map(RateLimiter::new),
            faults: FaultInjector::new(config.faults.clone()).with_max_faults(config.max_faults),
            shuffle_rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.shuffle_seed)),
            tokens: TokenStore::default(),
            db: Mutex::new(db),
            in_flight: Mutex::new(HashSet::new()),
            requests: Mutex::new(BTreeMap::new()),
            rate_limited: Mutex::new(0),
            dirty: AtomicBool::new(false),
            persist: Mutex::new(()),
            config,
        }
    }

    pub(crate) fn record(&self, route: &str, outcome: &str) {
        *lock(&self.requests)
            .entry(route.to_owned())
            .or_default()
            .entry(outcome.to_owned())
            .or_insert(0) += 1;
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            requests: lock(&self.requests).clone(),
            rate_limited: *lock(&self.rate_limited),
            faults: self.faults.injected(),
        }
    }

    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Applies a drift tool (see [`super::drift`]) to the data at the current time, and marks
    /// the state for saving when it succeeds.
    pub(crate) fn drift<T>(
        &self,
        tool: impl FnOnce(&mut Db, &str) -> Result<T, DriftError>,
    ) -> Result<T, DriftError> {
        let out = tool(&mut lock(&self.db), &now())?;
        self.mark_dirty();
        Ok(out)
    }

    /// Claims the direct costs for a write, or names one that another write holds.
    pub(crate) fn claim(&self, ids: &HashSet<i64>) -> Result<Claim<'_>, i64> {
        let mut held = lock(&self.in_flight);
        if let Some(busy) = ids.iter().find(|id| held.contains(id)) {
            return Err(*busy);
        }
        held.extend(ids.iter().copied());
        Ok(Claim {
            app: self,
            ids: ids.clone(),
        })
    }
}

/// Direct costs held by one write; released on drop (also when the request is cancelled).
pub(crate) struct Claim<'a> {
    app: &'a AppState,
    ids: HashSet<i64>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut held = lock(&self.app.in_flight);
        for id in &self.ids {
            held.remove(id);
        }
    }
}
