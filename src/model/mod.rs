//! The facts every stage shares, with no I/O: the Sage and edge schemas, the cost types and the
//! direct cost each becomes, the origin ids and natural key, value formatting, and the typed
//! view of a transaction batch. Everything else depends on this layer; it depends on nothing
//! of jcsync's but the error type.

pub mod cost_type;
pub mod ids;
pub mod schema;
pub mod values;
pub mod view;
