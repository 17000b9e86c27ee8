//! Project: drop the excluded columns, keep only cost transactions inside the sync window, and
//! quarantine repeats of the natural key.
//!
//! The output schema is an allow-list (`schema::typed_schema(Transaction)`): a column that is not
//! in it, excluded or not, cannot reach a later stage.

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Date32Type, SchemaRef};

use crate::config::{PipelineConfig, Since};
use crate::error::Result;
use crate::model::cost_type::is_cost_type;
use crate::model::ids::line_hashes;
use crate::model::schema::{typed_schema, TableRole, SOURCE_LINE};
use crate::model::values::date_to_days;
use crate::model::view::TransactionView;
use crate::quarantine::{QuarantineBatch, ReasonCode, Rejection, StageName};
use crate::transform::dedup::{KeySet, KeySetStats, DEFAULT_RECENT_KEYS};
use crate::transform::{Transform, Transformed};

/// What projecting one batch produced.
#[derive(Debug)]
pub struct Projected {
    /// Cost transactions in the window, first occurrence of each natural key; no excluded column.
    pub batch: RecordBatch,
    /// Repeated natural keys.
    pub quarantine: Option<QuarantineBatch>,
}

/// Rows filtered out (not errors: they are not direct costs), by reason.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FilterCounts {
    /// Non-cost transactions, by Transaction_Type.
    pub not_cost_type: BTreeMap<String, u64>,
    /// Cost transactions whose Accounting_Date is before `since`.
    pub before_window: u64,
}

impl FilterCounts {
    /// All filtered rows.
    pub fn total(&self) -> u64 {
        self.not_cost_type.values().sum::<u64>() + self.before_window
    }
}

/// The project stage. Keeps the natural keys seen so far (as 128-bit hashes, with the line that
/// first used each key) to find repeats across the whole run, in bounded memory: see
/// [`KeySet`].
pub struct Projector {
    output: SchemaRef,
    since_days: Option<i32>,
    table: String,
    /// The company: the natural key is hashed as the line's origin_id is.
    company: String,
    seen: KeySet,
    /// The source's estimated row count, and the rows and keys seen so far: the key filter is
    /// sized from the estimate times the share of rows that reach it (cost rows in the window).
    expected_rows: Option<u64>,
    rows_in: u64,
    keys_in: u64,
    /// Running filter counts.
    pub filtered: FilterCounts,
}

impl Projector {
    /// A projector for the pipeline's window and table names, spilling keys under the system's
    /// temporary directory.
    pub fn new(config: &PipelineConfig) -> Projector {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("jcsync-keys-{}-{n}", std::process::id()));
        Projector::with_spill_dir(config, dir, DEFAULT_RECENT_KEYS)
    }

    /// A projector that spills natural keys into `dir` (created when needed, removed on drop)
    /// once more than `recent_keys` are held in memory.
    pub fn with_spill_dir(config: &PipelineConfig, dir: PathBuf, recent_keys: usize) -> Projector {
        Projector {
            output: typed_schema(TableRole::Transaction),
            company: config.company.clone(),
            since_days: match config.sync.since {
                Since::BeginningOfTime => None,
                Since::Date(d) => Some(date_to_days(d)),
            },
            table: config.tables.transaction.clone(),
            seen: KeySet::new(dir, recent_keys),
            expected_rows: None,
            rows_in: 0,
            keys_in: 0,
            filtered: FilterCounts::default(),
        }
    }

    /// The source holds about `rows` transactions: the natural-key filter is sized once, for
    /// that many times the share of the rows seen before it is first needed that were cost
    /// rows in the window (see [`KeySet::expect_keys`]).
    pub fn expect_rows(&mut self, rows: u64) {
        self.expected_rows = Some(rows);
    }

    /// Keys the natural-key filter is allocated (or planned) for.
    pub fn key_filter_capacity(&self) -> usize {
        self.seen.filter_capacity()
    }

    /// What the natural-key set did (keys held, runs spilled, disk lookups).
    pub fn key_stats(&self) -> KeySetStats {
        self.seen.stats
    }

    /// Project one extracted batch.
    pub fn process(&mut self, batch: &RecordBatch) -> Result<Projected> {
        // Allow-list projection: only the columns of the projected schema, by name.
        let columns = self
            .output
            .fields()
            .iter()
            .map(|f| {
                batch.column_by_name(f.name()).cloned().ok_or_else(|| {
                    arrow::error::ArrowError::SchemaError(format!(
                        "extracted batch lacks column {}",
                        f.name()
                    ))
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(self.output.clone(), columns)?;

        let types = batch
            .column_by_name("transaction_type")
            .map(|c| c.as_string::<i32>().clone())
            .ok_or_else(|| missing("transaction_type"))?;
        let dates = batch
            .column_by_name("accounting_date")
            .map(|c| c.as_primitive::<Date32Type>().clone())
            .ok_or_else(|| missing("accounting_date"))?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let ty = if types.is_null(row) {
                ""
            } else {
                types.value(row)
            };
            if !is_cost_type(ty) {
                crate::model::cost_type::count_type(&mut self.filtered.not_cost_type, ty);
                keep.push(false);
                continue;
            }
            if let Some(since) = self.since_days {
                if dates.is_null(row) || dates.value(row) < since {
                    self.filtered.before_window += 1;
                    keep.push(false);
                    continue;
                }
            }
            keep.push(true);
        }
        let costs = filter_record_batch(&batch, &BooleanArray::from(keep))?;
        self.rows_in += batch.num_rows() as u64;
        self.keys_in += costs.num_rows() as u64;
        if let Some(rows) = self.expected_rows {
            let share = self.keys_in as f64 / self.rows_in.max(1) as f64;
            self.seen.expect_keys((rows as f64 * share).ceil() as u64);
        }
        self.dedup(costs)
    }

    fn dedup(&mut self, batch: RecordBatch) -> Result<Projected> {
        let lines = batch
            .column_by_name(SOURCE_LINE)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>().cloned())
            .ok_or_else(|| missing(SOURCE_LINE))?;
        let keys = line_hashes(&self.company, &TransactionView::new(&batch)?);
        let mut rejections = Vec::new();
        let mut keep = Vec::with_capacity(batch.num_rows());
        for (row, key) in keys.into_iter().enumerate() {
            let line = lines.value(row);
            match self.seen.first_line(key, line)? {
                Some(first) => {
                    rejections.push(Rejection {
                        row,
                        code: ReasonCode::DuplicateKey,
                        reason: format!(
                            "{} line {line}: natural key (Job, Extra, Cost_Code, Category, Transaction_Type, Run, Sequence, Dist_Sequence) repeats line {first}",
                            self.table
                        ),
                    });
                    keep.push(false);
                }
                None => keep.push(true),
            }
        }
        if rejections.is_empty() {
            return Ok(Projected {
                batch,
                quarantine: None,
            });
        }
        let quarantine =
            QuarantineBatch::from_rejections(StageName::Project, &self.table, &batch, &rejections)?;
        Ok(Projected {
            batch: filter_record_batch(&batch, &BooleanArray::from(keep))?,
            quarantine: Some(quarantine),
        })
    }
}

fn missing(name: &str) -> arrow::error::ArrowError {
    arrow::error::ArrowError::SchemaError(format!("projected batch lacks column {name}"))
}

impl Transform for Projector {
    /// What was filtered out (not a cost, before the window).
    type Summary = FilterCounts;

    fn name(&self) -> &'static str {
        "project"
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Transformed> {
        let out = Projector::process(self, &batch)?;
        Ok(Transformed {
            batch: out.batch,
            rejects: out.quarantine,
        })
    }

    fn finish(self) -> Result<FilterCounts> {
        Ok(self.filtered.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::SageSource;
    use crate::model::schema::EXCLUDED_TRANSACTION_COLUMNS;
    use crate::test_support::fixture_config;
    use arrow::array::AsArray;

    fn extracted() -> RecordBatch {
        let source = SageSource::open(&fixture_config()).expect("source");
        let mut batches = source.transactions().expect("transactions");
        let typed = batches.next().expect("one batch").expect("typed");
        assert!(batches.next().is_none());
        typed.batch
    }

    #[test]
    fn excluded_columns_are_not_read_and_cannot_pass_projection() {
        let batch = extracted();
        for c in EXCLUDED_TRANSACTION_COLUMNS {
            assert!(
                batch.column_by_name(c).is_none(),
                "the file source read {c}"
            );
        }
        // A source that did pass them (the fixture file carries all eight) is still safe: the
        // projection is an allow-list.
        let mut fields = batch.schema().fields().to_vec();
        let mut columns = batch.columns().to_vec();
        for c in EXCLUDED_TRANSACTION_COLUMNS {
            fields.push(std::sync::Arc::new(arrow::datatypes::Field::new(
                c.to_string(),
                arrow::datatypes::DataType::Utf8,
                true,
            )));
            columns.push(std::sync::Arc::new(arrow::array::StringArray::from(vec![
                Some("secret");
                batch.num_rows()
            ])));
        }
        let batch = RecordBatch::try_new(
            std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
            columns,
        )
        .expect("batch");
        let out = Projector::new(&fixture_config())
            .process(&batch)
            .expect("project");
        for c in EXCLUDED_TRANSACTION_COLUMNS {
            assert!(
                out.batch.column_by_name(c).is_none(),
                "{c} survived projection"
            );
        }
        assert_eq!(out.batch.schema(), typed_schema(TableRole::Transaction));
    }

    #[test]
    fn non_cost_types_are_filtered_and_counted_by_type() {
        let mut p = Projector::new(&fixture_config());
        let out = p.process(&extracted()).expect("project");
        let types = out.batch.column_by_name("transaction_type").expect("type");
        let types = types.as_string::<i32>();
        assert!((0..types.len()).all(|r| is_cost_type(types.value(r))));
        assert_eq!(p.filtered.not_cost_type.get("Original estimate"), Some(&4));
        assert_eq!(p.filtered.total(), 11);
    }

    #[test]
    fn a_repeat_of_the_natural_key_is_quarantined_even_across_batches() {
        let batch = extracted();
        let mut p = Projector::new(&fixture_config());
        let first = p.process(&batch).expect("first");
        let first_q = first.quarantine.map(|q| q.len()).unwrap_or(0);
        assert_eq!(first_q, 1, "the fixture repeats one key");
        // The same batch again: every cost row is now a repeat.
        let again = p.process(&batch).expect("again");
        assert_eq!(again.batch.num_rows(), 0);
        let q = again.quarantine.expect("quarantine");
        assert_eq!(q.len(), first.batch.num_rows() + first_q);
        assert!(q.codes.iter().all(|c| *c == ReasonCode::DuplicateKey));
    }

    #[test]
    fn spilled_keys_quarantine_exactly_what_the_map_alone_does() {
        // Two keys in memory: nearly every key is found in a spilled run, not in the map.
        let batch = extracted();
        let dir = tempfile::tempdir().expect("tempdir");
        let spill = dir.path().join("keys");
        let mut small = Projector::with_spill_dir(&fixture_config(), spill.clone(), 2);
        let mut big = Projector::new(&fixture_config());
        for round in 0..2 {
            let a = small.process(&batch).expect("small");
            let b = big.process(&batch).expect("big");
            assert_eq!(a.batch, b.batch, "round {round}");
            let (qa, qb) = (a.quarantine.expect("q"), b.quarantine.expect("q"));
            assert_eq!(qa.codes, qb.codes, "round {round}");
            assert_eq!(
                qa.batch, qb.batch,
                "round {round}: same rows, same first lines named"
            );
        }
        assert!(
            small.key_stats().spilled_runs >= 10,
            "{:?}",
            small.key_stats()
        );
        assert!(spill.is_dir());
        drop(small);
        assert!(
            !spill.exists(),
            "spilled keys are removed with the projector"
        );
    }

    #[test]
    fn the_key_filter_is_sized_for_the_estimated_rows_times_the_cost_share() {
        let batch = extracted();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Projector::with_spill_dir(&fixture_config(), dir.path().join("k"), 2);
        p.expect_rows(100_000);
        let out = p.process(&batch).expect("project");
        let keys = out.batch.num_rows() + out.quarantine.map_or(0, |q| q.len());
        let rows = batch.num_rows();
        assert!(keys < rows, "the fixture has rows that are not costs");
        let expected = (100_000.0 * keys as f64 / rows as f64).ceil() as usize;
        assert_eq!(p.key_filter_capacity(), expected);
        // Once allocated, the filter keeps its size until it fills.
        p.expect_rows(10);
        p.process(&batch).expect("project");
        assert_eq!(p.key_filter_capacity(), expected);
    }

    #[test]
    fn padding_does_not_make_a_key_new() {
        let batch = extracted();
        let projected = Projector::new(&fixture_config())
            .process(&batch)
            .expect("p")
            .batch;
        let keys = line_hashes("DEMO", &TransactionView::new(&projected).expect("view"));
        let unique: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
    }
}
