//! Rows that leave the pipeline early with a reason: the quarantine edge and its Parquet file.
//!
//! Every stage hands its rejects to the transform driver, which routes them to the one
//! [`writer`]. This module depends only on [`crate::model`]: the load's rows reach it through
//! [`QuarantinedLine`], not as the planner's types.

pub mod writer;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::Result;
use crate::model::schema::SOURCE_LINE;
use crate::model::values::format_decimal;

/// Why a row was quarantined. The code is stable (it is a column of `quarantine.parquet` and a
/// key of the report); the message beside it says the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// A value that does not parse as its column's type (bad date, non-numeric amount).
    BadValue,
    /// A required value is empty.
    MissingValue,
    /// A CSV record that cannot be read (wrong number of fields, not UTF-8).
    MalformedRecord,
    /// The natural key was already seen earlier in this run.
    DuplicateKey,
    /// The transaction's Job is not in Job (JC).
    UnknownJob,
    /// No Procore project matches the Sage job.
    UnmappedProject,
    /// No Procore vendor matches the Sage vendor of an AP cost.
    UnmappedVendor,
    /// The budget code is not in the Procore project (and creating it is not allowed).
    UnmappedBudgetCode,
    /// Procore rejected the record (its message is the reason).
    ProcoreRejected,
}

impl ReasonCode {
    /// The stable code string.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::BadValue => "bad_value",
            ReasonCode::MissingValue => "missing_value",
            ReasonCode::MalformedRecord => "malformed_record",
            ReasonCode::DuplicateKey => "duplicate_key",
            ReasonCode::UnknownJob => "unknown_job",
            ReasonCode::UnmappedProject => "unmapped_project",
            ReasonCode::UnmappedVendor => "unmapped_vendor",
            ReasonCode::UnmappedBudgetCode => "unmapped_budget_code",
            ReasonCode::ProcoreRejected => "procore_rejected",
        }
    }
}

/// Pipeline stage that rejected a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageName {
    Extract,
    Project,
    Enrich,
    Stage,
    Plan,
    Load,
    /// The load, retrying an open exception quarantined by an earlier run: its row is not of
    /// this run's snapshot, so it goes to `quarantine_retried.parquet`, not `quarantine.parquet`.
    LoadRetry,
}

impl StageName {
    /// The stage name as written in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Extract => "extract",
            StageName::Project => "project",
            StageName::Enrich => "enrich",
            StageName::Stage => "stage",
            StageName::Plan => "plan",
            StageName::Load => "load",
            StageName::LoadRetry => "load_retry",
        }
    }
}

/// Row data kept with a quarantined row (as text, as the source had it or as parsed). Never an
/// excluded column.
pub const QUARANTINE_DATA_COLUMNS: [&str; 13] = [
    "job",
    "extra",
    "cost_code",
    "category",
    "transaction_type",
    "accounting_date",
    "amount",
    "vendor",
    "invoice",
    "run",
    "sequence",
    "dist_sequence",
    "description",
];

/// Schema of `quarantine.parquet`.
pub fn quarantine_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("stage", DataType::Utf8, false),
        Field::new("reason_code", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("source_table", DataType::Utf8, false),
        Field::new(SOURCE_LINE, DataType::UInt64, true),
    ];
    fields.extend(
        QUARANTINE_DATA_COLUMNS
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true)),
    );
    Arc::new(Schema::new(fields))
}

/// One rejected row, by index into a batch.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub row: usize,
    pub code: ReasonCode,
    pub reason: String,
}

/// What the quarantine keeps of a planned line the load could not send (the planner's
/// `LineItem` implements it).
pub trait QuarantinedLine {
    fn job(&self) -> &str;
    fn extra(&self) -> Option<&str>;
    fn cost_code(&self) -> Option<&str>;
    fn category(&self) -> Option<&str>;
    fn transaction_type(&self) -> &str;
    /// Cents.
    fn amount(&self) -> i128;
    fn description(&self) -> Option<&str>;
    fn run(&self) -> Option<i64>;
    fn sequence(&self) -> Option<i64>;
    fn dist_sequence(&self) -> Option<i64>;
    /// Where the transaction came from.
    fn source_line(&self) -> u64;
}

/// A batch of quarantined rows plus their counts, ready for the quarantine writer.
#[derive(Debug, Clone)]
pub struct QuarantineBatch {
    pub stage: StageName,
    pub table: String,
    pub batch: RecordBatch,
    pub codes: Vec<ReasonCode>,
}

impl QuarantineBatch {
    /// Build quarantine rows from rejected rows of `batch`. Any column of `batch` named in
    /// [`QUARANTINE_DATA_COLUMNS`] is carried as text; others are NULL.
    pub fn from_rejections(
        stage: StageName,
        table: &str,
        batch: &RecordBatch,
        rejections: &[Rejection],
    ) -> Result<QuarantineBatch> {
        let n = rejections.len();
        let indices = UInt32Array::from_iter_values(rejections.iter().map(|r| r.row as u32));
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                stage.as_str(),
                n,
            ))),
            Arc::new(StringArray::from_iter_values(
                rejections.iter().map(|r| r.code.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rejections.iter().map(|r| r.reason.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(table, n))),
        ];
        columns.push(match batch.column_by_name(SOURCE_LINE) {
            Some(lines) => take(lines.as_ref(), &indices, None)?,
            None => Arc::new(UInt64Array::new_null(n)),
        });
        for name in QUARANTINE_DATA_COLUMNS {
            columns.push(match batch.column_by_name(name) {
                Some(col) => {
                    let picked = take(col.as_ref(), &indices, None)?;
                    if picked.data_type() == &DataType::Utf8 {
                        picked
                    } else {
                        cast(&picked, &DataType::Utf8)?
                    }
                }
                None => Arc::new(StringArray::new_null(n)),
            });
        }
        Ok(QuarantineBatch {
            stage,
            table: table.to_string(),
            batch: RecordBatch::try_new(quarantine_schema(), columns)?,
            codes: rejections.iter().map(|r| r.code).collect(),
        })
    }

    /// Quarantine rows for planned line items the load could not send (`stage`: `Load`, or
    /// `LoadRetry` for lines retried from open exceptions).
    pub fn from_line_items<L: QuarantinedLine>(
        stage: StageName,
        table: &str,
        rejected: &[(&L, ReasonCode, String)],
    ) -> Result<QuarantineBatch> {
        let n = rejected.len();
        let text = |f: &dyn Fn(&L) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from_iter(
                rejected.iter().map(|(l, _, _)| f(l)),
            ))
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                stage.as_str(),
                n,
            ))),
            Arc::new(StringArray::from_iter_values(
                rejected.iter().map(|(_, c, _)| c.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rejected.iter().map(|(_, _, r)| r.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(table, n))),
            Arc::new(UInt64Array::from_iter_values(
                rejected.iter().map(|(l, _, _)| l.source_line()),
            )),
        ];
        for name in QUARANTINE_DATA_COLUMNS {
            columns.push(match name {
                "job" => text(&|l| Some(l.job().to_string())),
                "extra" => text(&|l| l.extra().map(str::to_string)),
                "cost_code" => text(&|l| l.cost_code().map(str::to_string)),
                "category" => text(&|l| l.category().map(str::to_string)),
                "transaction_type" => text(&|l| Some(l.transaction_type().to_string())),
                "amount" => text(&|l| Some(format_decimal(l.amount(), 2))),
                "description" => text(&|l| l.description().map(str::to_string)),
                "run" => text(&|l| l.run().map(|v| v.to_string())),
                "sequence" => text(&|l| l.sequence().map(|v| v.to_string())),
                "dist_sequence" => text(&|l| l.dist_sequence().map(|v| v.to_string())),
                _ => Arc::new(StringArray::new_null(n)),
            });
        }
        Ok(QuarantineBatch {
            stage,
            table: table.to_string(),
            batch: RecordBatch::try_new(quarantine_schema(), columns)?,
            codes: rejected.iter().map(|(_, c, _)| *c).collect(),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }
}

/// Quote a value for a message, shortening it so that one bad cell cannot flood a log.
pub fn shown(value: &str) -> String {
    const MAX: usize = 60;
    if value.chars().count() > MAX {
        let cut: String = value.chars().take(MAX).collect();
        format!("{cut:?}…")
    } else {
        format!("{value:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn rejection_keeps_line_reason_and_key_as_text() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(SOURCE_LINE, DataType::UInt64, false),
            Field::new("job", DataType::Utf8, true),
            Field::new("run", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt64Array::from(vec![2, 3])),
                Arc::new(StringArray::from(vec!["1001", "9999"])),
                Arc::new(Int64Array::from(vec![7, 8])),
            ],
        )
        .expect("batch");
        let q = QuarantineBatch::from_rejections(
            StageName::Enrich,
            "JCT_CURRENT__TRANSACTION",
            &batch,
            &[Rejection {
                row: 1,
                code: ReasonCode::UnknownJob,
                reason: "job \"9999\" is not in Job (JC)".into(),
            }],
        )
        .expect("quarantine");
        assert_eq!(q.len(), 1);
        let line = q.batch.column_by_name(SOURCE_LINE).expect("line");
        let line = line.as_any().downcast_ref::<UInt64Array>().expect("u64");
        assert_eq!(line.value(0), 3);
        let run = q.batch.column_by_name("run").expect("run");
        let run = run.as_any().downcast_ref::<StringArray>().expect("utf8");
        assert_eq!(run.value(0), "8");
        let code = q.batch.column_by_name("reason_code").expect("code");
        let code = code.as_any().downcast_ref::<StringArray>().expect("utf8");
        assert_eq!(code.value(0), "unknown_job");
        assert!(q.batch.column_by_name("vendor").expect("vendor").is_null(0));
    }

    struct Line;

    impl QuarantinedLine for Line {
        fn job(&self) -> &str {
            "1001"
        }
        fn extra(&self) -> Option<&str> {
            None
        }
        fn cost_code(&self) -> Option<&str> {
            Some("01-100")
        }
        fn category(&self) -> Option<&str> {
            Some("M")
        }
        fn transaction_type(&self) -> &str {
            "AP cost"
        }
        fn amount(&self) -> i128 {
            -1234
        }
        fn description(&self) -> Option<&str> {
            Some("rebar")
        }
        fn run(&self) -> Option<i64> {
            Some(7)
        }
        fn sequence(&self) -> Option<i64> {
            Some(8)
        }
        fn dist_sequence(&self) -> Option<i64> {
            None
        }
        fn source_line(&self) -> u64 {
            42
        }
    }

    #[test]
    fn a_line_quarantined_at_load_keeps_its_whole_natural_key() {
        let q = QuarantineBatch::from_line_items(
            StageName::Load,
            "JCT_CURRENT__TRANSACTION",
            &[(&Line, ReasonCode::UnmappedBudgetCode, "no such code".into())],
        )
        .expect("quarantine");
        let text = |name: &str| {
            let c = q.batch.column_by_name(name).expect(name);
            let c = c.as_any().downcast_ref::<StringArray>().expect("utf8");
            (!c.is_null(0)).then(|| c.value(0).to_string())
        };
        // Run and Sequence were NULL for rows quarantined at load: the key could not be traced.
        assert_eq!(text("run").as_deref(), Some("7"));
        assert_eq!(text("sequence").as_deref(), Some("8"));
        assert_eq!(text("dist_sequence"), None);
        assert_eq!(text("amount").as_deref(), Some("-12.34"));
        assert_eq!(text("job").as_deref(), Some("1001"));
        assert_eq!(text("stage").as_deref(), Some("load"));
        let line = q.batch.column_by_name(SOURCE_LINE).expect("line");
        let line = line.as_any().downcast_ref::<UInt64Array>().expect("u64");
        assert_eq!(line.value(0), 42);
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = "x".repeat(500);
        assert!(shown(&long).len() < 80);
        assert_eq!(shown("2024-02-30"), "\"2024-02-30\"");
    }
}
