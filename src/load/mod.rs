//! Load: plan direct costs from staged rows and send them to the target.

pub mod client;
pub mod dry_run;
pub mod exceptions;
pub mod limit;
pub mod plan;
pub mod procore;
pub mod removal;
pub mod retry;
