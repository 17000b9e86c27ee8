//! The Sage side of `check`'s mappings: the transactions read, typed, projected and enriched by
//! the pipeline's own stages (the same functions `sync` runs: `drop_non_cost_rows`,
//! `type_batch`, [`Projector`], [`Dimensions::load`], [`Enricher`]), then summed per job, sub
//! job, cost code, category and (for an AP cost) vendor. No row is kept: memory is the chart
//! of accounts times the vendors, however many transactions stream past.
//!
//! Every enriched row is a line the load would plan (the planner makes one line of each), so
//! these sums are exactly what the load would try to send.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};

use crate::config::PipelineConfig;
use crate::error::Result;
use crate::extract::convert::parse_decimal;
use crate::extract::{drop_non_cost_rows, type_batch, SageSource};
use crate::model::cost_type::DirectCostKind;
use crate::model::ids::feed_buf;
use crate::model::schema::TableRole;
use crate::model::view::TransactionView;
use crate::quarantine::{QuarantineBatch, ReasonCode};
use crate::transform::enrich::invoices::DEFAULT_INVOICE_MEMORY;
use crate::transform::enrich::{Dimensions, Enricher};
use crate::transform::project::Projector;

/// Rows and their amount, in cents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub rows: u64,
    pub cents: i128,
}

impl Tally {
    /// Count one more row of `cents`.
    pub fn add(&mut self, cents: i128) {
        self.rows += 1;
        self.cents += cents;
    }

    /// Count the rows of another tally.
    pub fn merge(&mut self, other: Tally) {
        self.rows += other.rows;
        self.cents += other.cents;
    }
}

/// What decides where a line goes in Procore: its job (project), its budget code parts and,
/// for an AP cost (an `invoice` direct cost), its Sage vendor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CostGroup {
    pub job: String,
    pub extra: Option<String>,
    pub cost_code: Option<String>,
    pub category: Option<String>,
    /// The Sage vendor of an AP cost (`Some("")` when the cell is empty: the load looks that
    /// up too); None for the other kinds, which need no vendor.
    pub vendor: Option<String>,
}

/// Rows set aside before the load, by reason; `cents` sums the amounts that parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAside {
    pub tally: Tally,
    /// Rows whose amount is empty or not a number (not in `tally.cents`).
    pub without_amount: u64,
}

/// The transactions of the source, as the load would receive them.
#[derive(Debug, Default)]
pub struct SageCosts {
    /// Transaction rows read.
    pub extracted: u64,
    /// Rows that are not direct costs (not a cost type, before `[sync] since`): never loaded,
    /// never quarantined.
    pub filtered: u64,
    /// Lines the load would plan, per group.
    pub groups: BTreeMap<CostGroup, Tally>,
    /// Transaction rows quarantined before the load (bad values, repeated keys, unknown jobs).
    pub set_aside: BTreeMap<ReasonCode, SetAside>,
    /// Rows of the dimension tables set aside (a repeated key, a bad value): they are not cost
    /// rows, the first row of a key is used.
    pub dimension_rows_set_aside: u64,
}

impl SageCosts {
    /// Lines the load would plan, in all.
    pub fn planned(&self) -> Tally {
        let mut t = Tally::default();
        for g in self.groups.values() {
            t.merge(*g);
        }
        t
    }
}

/// Sums enriched rows per [`CostGroup`] without allocating for a group already seen.
#[derive(Default)]
struct Grouper {
    index: HashMap<Vec<u8>, usize>,
    groups: Vec<(CostGroup, Tally)>,
    scratch: Vec<u8>,
}

impl Grouper {
    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let view = TransactionView::new(batch)?;
        for r in 0..view.len() {
            let vendor = match view.group(r).kind() {
                DirectCostKind::Invoice => Some(view.vendor(r).unwrap_or("")),
                _ => None,
            };
            let parts = [
                Some(view.job(r)),
                view.extra(r),
                view.cost_code(r),
                view.category(r),
                vendor,
            ];
            self.scratch.clear();
            for p in parts {
                feed_buf(&mut self.scratch, p.map(str::as_bytes));
            }
            let i = match self.index.get(self.scratch.as_slice()) {
                Some(&i) => i,
                None => {
                    let own = |s: Option<&str>| s.map(str::to_string);
                    self.groups.push((
                        CostGroup {
                            job: view.job(r).to_string(),
                            extra: own(view.extra(r)),
                            cost_code: own(view.cost_code(r)),
                            category: own(view.category(r)),
                            vendor: own(vendor),
                        },
                        Tally::default(),
                    ));
                    let i = self.groups.len() - 1;
                    self.index.insert(self.scratch.clone(), i);
                    i
                }
            };
            // The planner's amount of a line (an empty amount never passes typing).
            self.groups[i].1.add(view.amount(r).unwrap_or(0));
        }
        Ok(())
    }
}

impl SageCosts {
    /// Count a quarantine batch: transaction rows by reason (with their amounts where they
    /// parse), dimension rows apart.
    fn set_aside(&mut self, transactions: &str, q: &QuarantineBatch) {
        if q.table != transactions {
            self.dimension_rows_set_aside += q.len() as u64;
            return;
        }
        let amounts = q
            .batch
            .column_by_name("amount")
            .and_then(|c| c.as_string_opt::<i32>());
        for (row, code) in q.codes.iter().enumerate() {
            let entry = self.set_aside.entry(*code).or_default();
            let cents = amounts
                .filter(|a| !a.is_null(row))
                .and_then(|a| parse_decimal(a.value(row), 2).ok());
            match cents {
                Some(c) => entry.tally.add(c),
                None => {
                    entry.tally.rows += 1;
                    entry.without_amount += 1;
                }
            }
        }
    }
}

/// Read the pipeline's source through extract, type, project and enrich, and sum what the
/// load would receive. Blocking: run it on a blocking thread.
pub fn scan(config: &PipelineConfig) -> Result<SageCosts> {
    let source = SageSource::open(config)?;
    let table = source.transaction_table().to_string();
    let mut costs = SageCosts::default();
    // Invoices beyond what memory holds spill here; the index removes the folder when dropped.
    let spill = std::env::temp_dir().join(format!("jcsync-check-invoices-{}", std::process::id()));
    let (dims, _reports) = Dimensions::load(&source, spill, DEFAULT_INVOICE_MEMORY, |q| {
        costs.set_aside(&table, &q);
        Ok(())
    })?;
    let enricher = Enricher::new(Arc::new(dims), &config.company, &table);
    let mut projector = Projector::new(config);
    if let Some(rows) = source.estimated_transactions() {
        projector.expect_rows(rows);
    }
    let mut grouper = Grouper::default();
    let mut last_log = std::time::Instant::now();
    for raw in source.raw_transactions(true)? {
        let raw = drop_non_cost_rows(raw?)?;
        costs.extracted += raw.rows_read();
        costs.filtered += raw.not_cost_type.values().sum::<u64>();
        let typed = type_batch(TableRole::Transaction, &table, raw)?;
        if let Some(q) = &typed.quarantine {
            costs.set_aside(&table, q);
        }
        let projected = projector.process(&typed.batch)?;
        if let Some(q) = &projected.quarantine {
            costs.set_aside(&table, q);
        }
        let enriched = enricher.process(&projected.batch)?;
        if let Some(q) = &enriched.quarantine {
            costs.set_aside(&table, q);
        }
        grouper.add(&enriched.batch)?;
        if last_log.elapsed() > std::time::Duration::from_secs(5) {
            tracing::info!(rows = costs.extracted, "check: reading transactions");
            last_log = std::time::Instant::now();
        }
    }
    costs.filtered += projector.filtered.total();
    costs.groups = grouper.groups.into_iter().collect();
    Ok(costs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_company_sums_to_its_expected_lines_and_set_asides() {
        let config = crate::test_support::fixture_config();
        let costs = scan(&config).expect("scan");
        assert_eq!(costs.extracted, 51);
        // fixtures/expected: 35 planned lines; 2 bad_value, 1 missing_value, 1 duplicate_key
        // (line 23, 1700.00), 1 unknown_job.
        assert_eq!(costs.planned().rows, 35);
        let set_aside: u64 = costs.set_aside.values().map(|s| s.tally.rows).sum();
        assert_eq!(costs.extracted, costs.filtered + set_aside + 35);
        assert_eq!(costs.set_aside[&ReasonCode::DuplicateKey].tally.rows, 1);
        assert_eq!(
            costs.set_aside[&ReasonCode::DuplicateKey].tally.cents,
            170_000
        );
    }
}
