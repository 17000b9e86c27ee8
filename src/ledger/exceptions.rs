//! Open exceptions: rows quarantined at load (unmapped project, vendor or budget code, or
//! rejected by Procore), kept until they load or leave Sage.

/// The `exceptions` table (schema version 3).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS exceptions (
    target      TEXT NOT NULL,
    origin_id   TEXT NOT NULL,
    reason_code TEXT NOT NULL,
    reason      TEXT NOT NULL,
    job         TEXT NOT NULL,
    budget_code TEXT,
    amount      TEXT NOT NULL,
    first_seen  TEXT NOT NULL,
    first_run   TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    last_run    TEXT NOT NULL,
    PRIMARY KEY (target, origin_id)
);
";
