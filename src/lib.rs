//! jcsync: a streaming pipeline that moves Sage 300 CRE job cost transactions into Procore direct
//! costs.
//!
//! extract → project → enrich → stage → load, wired with bounded channels (see [`pipeline`]).
//! Every capability is a library function; `main.rs` only parses arguments.

pub mod check;
pub mod cli;
pub mod config;
pub mod error;
pub mod exceptions;
pub mod extract;
pub mod ledger;
pub mod load;
pub mod logging;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod quarantine;
pub mod reconcile;
pub mod replay;
pub mod run;
pub mod sandbox;
pub mod schedule;
pub mod staging;
pub mod status;
pub mod tools;
pub mod transform;

pub use error::{Error, Result};

#[cfg(test)]
pub(crate) mod test_support {
    //! Fixture access for unit tests.
    use crate::config::PipelineConfig;

    /// A pipeline config reading the bundled CSV fixtures.
    pub fn fixture_config() -> PipelineConfig {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sage");
        PipelineConfig::parse(&format!(
            "company = \"DEMO\"\n[source]\nkind = \"files\"\ndir = {dir:?}\nformat = \"csv\"\n[target]\nkind = \"dry-run\"\n"
        ))
        .expect("fixture config")
    }
}
