//! `jcsync sync PIPELINE --every DURATION`: the pipeline run on a fixed grid of slots until a
//! signal stops it.
//!
//! [`interval`] parses the duration; [`slots`] is the grid (slot k at start + k·every, at most
//! one catch-up after an overrun or a sleep); [`state`] is what `jcsync status` sees of a
//! running schedule (an exclusive lock on `<ledger>.every.lock` for the process's life, and
//! `<ledger>.schedule.json`); [`every`] is the loop. Runs are sequential, so they never
//! overlap; another process holding the ledger (`Error::LedgerBusy`) skips that slot.

pub mod every;
pub mod interval;
pub mod slots;
pub mod state;

pub use every::{run_every, EveryOptions};
pub use interval::{format_every, parse_every};
pub use state::{scheduled, ScheduleInfo};
