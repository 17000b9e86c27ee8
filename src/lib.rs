//! jcsync: a streaming pipeline that moves Sage 300 CRE job cost transactions into Procore direct
//! costs.
//!
//! extract → project → enrich → stage → load, wired with bounded channels (see [`pipeline`]).
//! Every capability is a library function; `main.rs` only parses arguments.

pub mod cli;
pub mod config;
pub mod enrich;
pub mod error;
pub mod extract;
pub mod load;
pub mod pipeline;
pub mod project;
pub mod quarantine;
pub mod run;
pub mod sandbox;
pub mod schema;
pub mod stage;

pub use error::{Error, Result};
