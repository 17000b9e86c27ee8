//! Drift: what a person (or another integration) does to direct costs in Procore behind
//! jcsync's back, for tests of removals and reconciliation. Not Procore's API: these act on the
//! data directly, as `/_sandbox/…` routes and [`SandboxHandle`](super::SandboxHandle) methods,
//! without auth, rate limits, faults or the 409 rule.
//!
//! - [`Db::edit_line_item`]: a user with "Edit Synced Direct Cost Transactions" changes a synced
//!   line's amount, budget code, description or direct cost.
//! - [`Db::delete_line_item`], [`Db::delete_direct_cost`]: a user deletes them in the UI.
//! - [`Db::add_foreign_direct_cost`]: a direct cost entered by hand or by another integration,
//!   with no `origin_id` on it or its lines.
//! - [`Db::add_raw_line_item`]: a line with any `origin_id`, even one another line holds (a data
//!   import's duplicate).

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::state::{Db, DirectCost, LineItem};
use super::sync::{is_iso_date, parse_decimal, DIRECT_COST_TYPES, STATUSES};

/// Why a drift tool refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    /// No such record.
    #[error("{0} not found")]
    NotFound(String),
    /// The request does not make sense (unknown budget code, bad date, …).
    #[error("{0}")]
    Invalid(String),
}

fn decimal_field<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let v = Value::deserialize(d)?;
    parse_decimal(&v).ok_or_else(|| serde::de::Error::custom(format!("not an amount: {v}")))
}

fn optional_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => parse_decimal(&v)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("not an amount: {v}"))),
    }
}

/// A user's edit of a line item: only the fields given change, and `updated_at` moves.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineEdit {
    /// New amount (a decimal string or a JSON number, kept exactly).
    #[serde(default, deserialize_with = "optional_decimal")]
    pub amount: Option<Decimal>,
    /// New budget code, of the line's project.
    #[serde(default)]
    pub wbs_code_id: Option<i64>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// Moves the line to another direct cost of the same project.
    #[serde(default)]
    pub direct_cost_id: Option<i64>,
}

/// A line a drift tool creates.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DriftLine {
    /// Budget code by id; or give `flat_code`.
    #[serde(default)]
    pub wbs_code_id: Option<i64>,
    /// Budget code by flat code (e.g. `01-100.L`) in the direct cost's project.
    #[serde(default)]
    pub flat_code: Option<String>,
    /// Amount (a decimal string or a JSON number, kept exactly).
    #[serde(deserialize_with = "decimal_field")]
    pub amount: Decimal,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Origin id: refused on a foreign direct cost's lines; free (may repeat) on a raw line.
    #[serde(default)]
    pub origin_id: Option<String>,
    /// Origin data (raw lines only).
    #[serde(default)]
    pub origin_data: Option<String>,
}

impl DriftLine {
    /// A line on a budget code given by flat code.
    pub fn new(flat_code: &str, amount: Decimal) -> Self {
        Self {
            wbs_code_id: None,
            flat_code: Some(flat_code.to_owned()),
            amount,
            description: None,
            origin_id: None,
            origin_data: None,
        }
    }
}

/// A direct cost entered by hand or by another integration (no origin id anywhere).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignDirectCost {
    /// `invoice`, `expense` or `payroll`.
    pub direct_cost_type: String,
    /// `YYYY-MM-DD`.
    pub direct_cost_date: String,
    /// Vendor, optional even for an invoice.
    #[serde(default)]
    pub vendor_id: Option<i64>,
    /// Invoice number.
    #[serde(default)]
    pub invoice_number: Option<String>,
    /// Status; `approved` when absent.
    #[serde(default)]
    pub status: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Its lines (may be empty).
    #[serde(default)]
    pub line_items: Vec<DriftLine>,
}

/// What [`Db::add_foreign_direct_cost`] created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignIds {
    /// The new direct cost.
    pub direct_cost_id: i64,
    /// Its lines, in the order given.
    pub line_item_ids: Vec<i64>,
}

impl Db {
    fn wbs_of(&self, project_id: i64, line: &DriftLine) -> Result<i64, DriftError> {
        let found = match (line.wbs_code_id, line.flat_code.as_deref()) {
            (Some(id), _) => self
                .wbs_codes
                .get(&id)
                .filter(|w| w.project_id == project_id)
                .map(|w| w.id),
            (None, Some(code)) => self
                .wbs_codes
                .values()
                .find(|w| w.project_id == project_id && w.flat_code == code.trim())
                .map(|w| w.id),
            (None, None) => {
                return Err(DriftError::Invalid(
                    "a line needs wbs_code_id or flat_code".into(),
                ))
            }
        };
        found.ok_or_else(|| {
            DriftError::Invalid(format!(
                "budget code {} does not exist in project {project_id}",
                line.wbs_code_id.map_or_else(
                    || line.flat_code.clone().unwrap_or_default(),
                    |id| id.to_string()
                )
            ))
        })
    }

    fn drift_line(
        &mut self,
        dc: &DirectCost,
        line: &DriftLine,
        wbs_code_id: i64,
        now: &str,
    ) -> LineItem {
        LineItem {
            id: self.allocate_id(),
            project_id: dc.project_id,
            direct_cost_id: dc.id,
            wbs_code_id,
            amount: line.amount,
            quantity: None,
            unit_cost: None,
            description: line.description.clone(),
            origin_id: line.origin_id.clone(),
            origin_data: line.origin_data.clone(),
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        }
    }

    /// Edits a line item as a user would; returns it as changed.
    pub fn edit_line_item(
        &mut self,
        id: i64,
        edit: &LineEdit,
        now: &str,
    ) -> Result<LineItem, DriftError> {
        let mut li = self
            .line_items
            .get(&id)
            .cloned()
            .ok_or_else(|| DriftError::NotFound(format!("Line Item {id}")))?;
        if let Some(dc) = edit.direct_cost_id {
            let same_project = self
                .direct_costs
                .get(&dc)
                .ok_or_else(|| DriftError::NotFound(format!("Direct Cost {dc}")))?
                .project_id
                == li.project_id;
            if !same_project {
                return Err(DriftError::Invalid(format!(
                    "direct cost {dc} is not in the line's project"
                )));
            }
            li.direct_cost_id = dc;
        }
        if let Some(w) = edit.wbs_code_id {
            if self
                .wbs_codes
                .get(&w)
                .is_none_or(|c| c.project_id != li.project_id)
            {
                return Err(DriftError::Invalid(format!(
                    "budget code {w} does not exist in the line's project"
                )));
            }
            li.wbs_code_id = w;
        }
        if let Some(a) = edit.amount {
            li.amount = a;
        }
        if let Some(d) = &edit.description {
            li.description = Some(d.clone());
        }
        li.updated_at = now.to_owned();
        self.put_line_item(li.clone());
        Ok(li)
    }

    /// Deletes a line item as a user would (its direct cost stays, even empty).
    pub fn delete_line_item(&mut self, id: i64) -> Result<LineItem, DriftError> {
        self.remove_line_item(id)
            .ok_or_else(|| DriftError::NotFound(format!("Line Item {id}")))
    }

    /// Deletes a direct cost with its lines; returns how many lines went with it.
    pub fn delete_direct_cost(&mut self, id: i64) -> Result<usize, DriftError> {
        self.remove_direct_cost(id)
            .map(|(_, lines)| lines)
            .ok_or_else(|| DriftError::NotFound(format!("Direct Cost {id}")))
    }

    /// Adds a direct cost with lines, none of them with an origin id; all or nothing.
    pub fn add_foreign_direct_cost(
        &mut self,
        project_id: i64,
        input: &ForeignDirectCost,
        now: &str,
    ) -> Result<ForeignIds, DriftError> {
        if !self.projects.contains_key(&project_id) {
            return Err(DriftError::NotFound(format!("Project {project_id}")));
        }
        if !DIRECT_COST_TYPES.contains(&input.direct_cost_type.as_str()) {
            return Err(DriftError::Invalid(format!(
                "direct_cost_type must be one of {DIRECT_COST_TYPES:?}"
            )));
        }
        if !is_iso_date(&input.direct_cost_date) {
            return Err(DriftError::Invalid(
                "direct_cost_date must be YYYY-MM-DD".into(),
            ));
        }
        let status = input.status.clone().unwrap_or_else(|| "approved".into());
        if !STATUSES.contains(&status.as_str()) {
            return Err(DriftError::Invalid(format!(
                "status must be one of {STATUSES:?}"
            )));
        }
        if let Some(v) = input.vendor_id {
            if !self.vendors.contains_key(&v) {
                return Err(DriftError::Invalid(format!("vendor {v} does not exist")));
            }
        }
        let mut codes = Vec::with_capacity(input.line_items.len());
        for line in &input.line_items {
            if line.origin_id.is_some() || line.origin_data.is_some() {
                return Err(DriftError::Invalid(
                    "a foreign line has no origin_id or origin_data".into(),
                ));
            }
            codes.push(self.wbs_of(project_id, line)?);
        }
        let dc = DirectCost {
            id: self.allocate_id(),
            project_id,
            direct_cost_type: input.direct_cost_type.clone(),
            status,
            vendor_id: input.vendor_id,
            invoice_number: input.invoice_number.clone(),
            direct_cost_date: Some(input.direct_cost_date.clone()),
            description: input.description.clone(),
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
            ..DirectCost::default()
        };
        let mut line_item_ids = Vec::with_capacity(codes.len());
        for (line, code) in input.line_items.iter().zip(codes) {
            let li = self.drift_line(&dc, line, code, now);
            line_item_ids.push(li.id);
            self.put_line_item(li);
        }
        let direct_cost_id = dc.id;
        self.put_direct_cost(dc);
        Ok(ForeignIds {
            direct_cost_id,
            line_item_ids,
        })
    }

    /// Adds a line to a direct cost with whatever origin id it carries, even one another line
    /// already holds; returns the new line's id.
    pub fn add_raw_line_item(
        &mut self,
        direct_cost_id: i64,
        line: &DriftLine,
        now: &str,
    ) -> Result<i64, DriftError> {
        let dc = self
            .direct_costs
            .get(&direct_cost_id)
            .cloned()
            .ok_or_else(|| DriftError::NotFound(format!("Direct Cost {direct_cost_id}")))?;
        let code = self.wbs_of(dc.project_id, line)?;
        let li = self.drift_line(&dc, line, code, now);
        let id = li.id;
        self.put_line_item(li);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::seed::Seed;
    use std::str::FromStr;

    fn demo() -> Db {
        let seed = Seed::load_dir(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/procore"
        )))
        .expect("demo seed");
        Db::from_seed(&seed)
    }

    fn money(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    fn first_project(db: &Db) -> (i64, String) {
        let code = db.wbs_codes.values().next().expect("a budget code");
        (code.project_id, code.flat_code.clone())
    }

    #[test]
    fn a_foreign_direct_cost_has_no_origin_ids_and_counts_in_the_summary() {
        let mut db = demo();
        let (pid, code) = first_project(&db);
        let ids = db
            .add_foreign_direct_cost(
                pid,
                &ForeignDirectCost {
                    direct_cost_type: "expense".into(),
                    direct_cost_date: "2024-05-01".into(),
                    vendor_id: None,
                    invoice_number: None,
                    status: None,
                    description: Some("by hand".into()),
                    line_items: vec![
                        DriftLine::new(&code, money("10.05")),
                        DriftLine::new(&code, money("-0.05")),
                    ],
                },
                "t",
            )
            .expect("created");
        assert_eq!(ids.line_item_ids.len(), 2);
        let dc = &db.direct_costs[&ids.direct_cost_id];
        assert_eq!(
            (dc.origin_id.as_ref(), dc.status.as_str()),
            (None, "approved")
        );
        assert!(db.lines_of(dc.id).all(|l| l.origin_id.is_none()));
        let summary = db.cost_summary();
        let project = summary
            .projects
            .iter()
            .find(|p| p.project_id == pid)
            .expect("project");
        assert_eq!(project.by_budget_code[&code].total, money("10.00"));
    }

    #[test]
    fn a_foreign_line_with_an_origin_id_or_an_unknown_code_is_refused_whole() {
        let mut db = demo();
        let (pid, code) = first_project(&db);
        let before = db.clone();
        let mut tagged = DriftLine::new(&code, money("1"));
        tagged.origin_id = Some("x".into());
        let input = |lines| ForeignDirectCost {
            direct_cost_type: "expense".into(),
            direct_cost_date: "2024-05-01".into(),
            vendor_id: None,
            invoice_number: None,
            status: None,
            description: None,
            line_items: lines,
        };
        let bad = [
            input(vec![DriftLine::new(&code, money("1")), tagged]),
            input(vec![DriftLine::new("no-such-code", money("1"))]),
        ];
        for b in &bad {
            assert!(matches!(
                db.add_foreign_direct_cost(pid, b, "t"),
                Err(DriftError::Invalid(_))
            ));
        }
        assert_eq!(db, before);
    }

    #[test]
    fn a_raw_duplicate_keeps_the_origin_index_on_a_holder_until_the_last_goes() {
        let mut db = demo();
        let (pid, code) = first_project(&db);
        let ids = db
            .add_foreign_direct_cost(
                pid,
                &ForeignDirectCost {
                    direct_cost_type: "expense".into(),
                    direct_cost_date: "2024-05-01".into(),
                    vendor_id: None,
                    invoice_number: None,
                    status: None,
                    description: None,
                    line_items: vec![],
                },
                "t",
            )
            .expect("created");
        let mut line = DriftLine::new(&code, money("5"));
        line.origin_id = Some("dup".into());
        let a = db
            .add_raw_line_item(ids.direct_cost_id, &line, "t")
            .expect("a");
        let b = db
            .add_raw_line_item(ids.direct_cost_id, &line, "t")
            .expect("b");
        assert_ne!(a, b);
        assert_eq!(db.line_item_by_origin("dup").map(|l| l.id), Some(b));
        db.delete_line_item(b).expect("deleted");
        assert_eq!(db.line_item_by_origin("dup").map(|l| l.id), Some(a));
        db.delete_line_item(a).expect("deleted");
        assert!(db.line_item_by_origin("dup").is_none());
        // The direct cost stays, empty, as Procore keeps it.
        assert!(db.direct_costs.contains_key(&ids.direct_cost_id));
        assert_eq!(db.lines_of(ids.direct_cost_id).count(), 0);
    }

    #[test]
    fn an_edit_moves_a_line_and_its_totals_and_bumps_updated_at() {
        let mut db = demo();
        let (pid, code) = first_project(&db);
        let make = |db: &mut Db| {
            db.add_foreign_direct_cost(
                pid,
                &ForeignDirectCost {
                    direct_cost_type: "expense".into(),
                    direct_cost_date: "2024-05-01".into(),
                    vendor_id: None,
                    invoice_number: None,
                    status: None,
                    description: None,
                    line_items: vec![DriftLine::new(&code, money("7"))],
                },
                "t0",
            )
            .expect("created")
        };
        let (one, two) = (make(&mut db), make(&mut db));
        let line = one.line_item_ids[0];
        let edit = LineEdit {
            amount: Some(money("8.50")),
            direct_cost_id: Some(two.direct_cost_id),
            description: Some("corrected".into()),
            wbs_code_id: None,
        };
        let li = db.edit_line_item(line, &edit, "t1").expect("edited");
        assert_eq!(
            (li.amount.to_string(), li.updated_at.as_str()),
            ("8.50".into(), "t1")
        );
        assert_eq!(db.lines_of(one.direct_cost_id).count(), 0);
        assert_eq!(db.grand_total(two.direct_cost_id), money("15.50"));
        assert_eq!(
            db.edit_line_item(line + 1_000_000, &edit, "t2"),
            Err(DriftError::NotFound(format!(
                "Line Item {}",
                line + 1_000_000
            )))
        );
    }
}
