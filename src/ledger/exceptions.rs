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

use std::collections::BTreeMap;
use std::str::FromStr;

use rusqlite::params;
use rust_decimal::Decimal;

use super::Ledger;
use crate::error::Result;

impl Ledger {
    /// The open exceptions of this target by reason code: count and exact total amount.
    pub fn open_exceptions_by_reason(&self) -> Result<Vec<(String, u64, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT reason_code, amount FROM exceptions WHERE target = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![self.target], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut by_reason: BTreeMap<String, (u64, Decimal)> = BTreeMap::new();
        for row in rows {
            let (reason, amount) = row.map_err(|e| self.err(e))?;
            let e = by_reason.entry(reason).or_default();
            e.0 += 1;
            e.1 += Decimal::from_str(&amount).unwrap_or_default();
        }
        Ok(by_reason
            .into_iter()
            .map(|(r, (n, a))| (r, n, a.to_string()))
            .collect())
    }
}
