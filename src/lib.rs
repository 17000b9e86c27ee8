//! jcsync: a streaming pipeline that moves Sage 300 CRE job cost transactions into Procore direct costs.
//!
//! extract → project → enrich → stage → load, wired with bounded channels (see `pipeline`).

pub mod sandbox;
