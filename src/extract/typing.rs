//! Typing: a source's raw batches become typed batches of the Sage schema, and the rows that are
//! not cost transactions are dropped first, by the one cost-type filter ([`dropped_as_not_cost`]),
//! whatever the source. A row that cannot be typed is quarantined with every bad cell named.

use std::collections::BTreeMap;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;

use super::convert::{convert_column, trim_cell, CellProblem};
use super::RawBatch;
use crate::error::Result;
use crate::model::cost_type::{count_type, is_cost_type};
use crate::model::schema::{typed_schema, TableRole};
use crate::quarantine::{QuarantineBatch, ReasonCode, Rejection, StageName};

/// The one cost-type filter of extract: for a Transaction_Type cell, its trimmed type when the
/// row is to be dropped as not a cost transaction (a type that is not empty and not a cost type,
/// see [`is_cost_type`]); None when the row goes on (a cost, or no type: that row is quarantined
/// as missing its type).
pub fn dropped_as_not_cost(cell: &str) -> Option<&str> {
    let ty = trim_cell(cell);
    (!ty.is_empty() && !is_cost_type(ty)).then_some(ty)
}

/// A typed batch and the rows of its raw batch that could not be typed.
#[derive(Debug)]
pub struct TypedBatch {
    /// Rows that typed cleanly.
    pub batch: RecordBatch,
    /// Rows that did not, with the column, value and line named.
    pub quarantine: Option<QuarantineBatch>,
    /// Rows read from the source for this batch (typed + quarantined).
    pub rows_read: usize,
    /// See [`RawBatch::decoded_lossily`].
    pub decoded_lossily: BTreeMap<&'static str, u64>,
}

/// Drop the rows of a raw transaction batch whose Transaction_Type is not a cost type, before any
/// other cell is looked at, counting them by (trimmed) type in [`RawBatch::not_cost_type`]; so
/// that a row that will not be loaded is filtered, never quarantined, whatever the source. Kept:
/// rows without a type and rows with a reading problem (to be quarantined with their reason). A
/// CSV reader already does this as it reads, with the same filter
/// ([`super::files::TableReader::keep_only_cost_rows`]); for it this is one pass over the type
/// column that drops nothing.
pub fn drop_non_cost_rows(raw: RawBatch) -> Result<RawBatch> {
    use arrow::array::{Array, AsArray};
    let Some(types) = raw
        .batch
        .column_by_name("transaction_type")
        .and_then(|c| c.as_string_opt::<i32>())
    else {
        // Not text (a typed export could only hold text here): the project stage filters.
        return Ok(raw);
    };
    let mut has_problem = vec![false; raw.batch.num_rows()];
    for p in &raw.problems {
        if let Some(flag) = has_problem.get_mut(p.row) {
            *flag = true;
        }
    }
    let mut not_cost_type = raw.not_cost_type;
    let mut keep = Vec::with_capacity(types.len());
    for (row, problem) in has_problem.iter().enumerate() {
        let dropped = if *problem || types.is_null(row) {
            None
        } else {
            dropped_as_not_cost(types.value(row))
        };
        if let Some(ty) = dropped {
            count_type(&mut not_cost_type, ty);
        }
        keep.push(dropped.is_none());
    }
    if keep.iter().all(|&k| k) {
        return Ok(RawBatch {
            not_cost_type,
            ..raw
        });
    }
    // Row numbers of the problems, among the rows kept.
    let mut new_row = Vec::with_capacity(keep.len());
    let mut next = 0;
    for &k in &keep {
        new_row.push(next);
        next += usize::from(k);
    }
    let problems = raw
        .problems
        .into_iter()
        .map(|mut p| {
            p.row = new_row[p.row];
            p
        })
        .collect();
    Ok(RawBatch {
        batch: filter_record_batch(&raw.batch, &BooleanArray::from(keep))?,
        problems,
        not_cost_type,
        decoded_lossily: raw.decoded_lossily,
    })
}

fn precedence(code: ReasonCode) -> u8 {
    match code {
        ReasonCode::MalformedRecord => 0,
        ReasonCode::BadValue => 1,
        ReasonCode::MissingValue => 2,
        _ => 3,
    }
}

/// Type every column of a raw batch. A row with any bad cell is quarantined with all of its
/// problems in the reason; the other rows go on.
pub fn type_batch(role: TableRole, table: &str, raw: RawBatch) -> Result<TypedBatch> {
    let RawBatch {
        batch: raw,
        mut problems,
        decoded_lossily,
        ..
    } = raw;
    let rows_read = raw.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(raw.num_columns());
    columns.push(raw.column(0).clone());
    for (i, spec) in role.columns().iter().enumerate() {
        columns.push(convert_column(spec, raw.column(i + 1), &mut problems)?);
    }
    let typed = RecordBatch::try_new(typed_schema(role), columns)?;
    if problems.is_empty() {
        return Ok(TypedBatch {
            batch: typed,
            quarantine: None,
            rows_read,
            decoded_lossily,
        });
    }
    // Group problems by row: one quarantine row per source row, naming every bad cell.
    let mut by_row: BTreeMap<usize, Vec<CellProblem>> = BTreeMap::new();
    for p in problems {
        by_row.entry(p.row).or_default().push(p);
    }
    let lines = raw
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::UInt64Array>()
        .map(|a| a.values().to_vec())
        .unwrap_or_default();
    let rejections: Vec<Rejection> = by_row
        .into_iter()
        .map(|(row, mut ps)| {
            // A record that did not split into its fields has no values: only why it did not.
            if ps.iter().any(|p| p.code == ReasonCode::MalformedRecord) {
                ps.retain(|p| p.code == ReasonCode::MalformedRecord);
            }
            ps.sort_by_key(|p| precedence(p.code));
            let line = lines.get(row).copied().unwrap_or(0);
            let detail: Vec<String> = ps.iter().map(|p| p.message.clone()).collect();
            Rejection {
                row,
                code: ps[0].code,
                reason: format!("{table} line {line}: {}", detail.join("; ")),
            }
        })
        .collect();
    let mut keep = vec![true; rows_read];
    for r in &rejections {
        keep[r.row] = false;
    }
    let quarantine =
        QuarantineBatch::from_rejections(StageName::Extract, table, &raw, &rejections)?;
    let batch = filter_record_batch(&typed, &BooleanArray::from(keep))?;
    Ok(TypedBatch {
        batch,
        quarantine: Some(quarantine),
        rows_read,
        decoded_lossily,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn raw(types: &[Option<&str>], problem_rows: &[usize]) -> RawBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(crate::model::schema::SOURCE_LINE, DataType::UInt64, false),
            Field::new("transaction_type", DataType::Utf8, true),
        ]));
        let lines = UInt64Array::from_iter_values((0..types.len() as u64).map(|i| i + 2));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(lines), Arc::new(StringArray::from(types.to_vec()))],
        )
        .expect("batch");
        let problems = problem_rows
            .iter()
            .map(|&row| CellProblem {
                row,
                code: ReasonCode::MalformedRecord,
                message: format!("row {row}"),
            })
            .collect();
        RawBatch {
            batch,
            problems,
            not_cost_type: BTreeMap::from([("Work billed".to_string(), 3)]),
            decoded_lossily: BTreeMap::new(),
        }
    }

    #[test]
    fn the_one_filter_drops_a_type_that_is_not_a_cost_and_keeps_costs_and_empty_types() {
        assert_eq!(dropped_as_not_cost(" Work billed  "), Some("Work billed"));
        assert_eq!(dropped_as_not_cost("AP cost  "), None);
        assert_eq!(dropped_as_not_cost("   "), None);
        assert_eq!(dropped_as_not_cost(""), None);
        // Exact, as Sage writes the types.
        assert_eq!(dropped_as_not_cost("ap cost"), Some("ap cost"));
    }

    #[test]
    fn non_cost_rows_are_dropped_before_typing_and_counted_by_type() {
        let out = drop_non_cost_rows(raw(
            &[
                Some("AP cost"),
                Some(" Work billed "),
                None,
                Some("Original estimate"),
                Some("PR cost  "),
                Some("Original estimate"),
                Some(""),
            ],
            // A reading problem keeps its row (it is quarantined with its reason), and moves
            // with it to its new row number.
            &[3, 4],
        ))
        .expect("filtered");
        let lines = out
            .batch
            .column(0)
            .as_primitive::<arrow::datatypes::UInt64Type>();
        assert_eq!(lines.values().to_vec(), vec![2, 4, 5, 6, 8]);
        let problem_rows: Vec<usize> = out.problems.iter().map(|p| p.row).collect();
        assert_eq!(problem_rows, vec![2, 3]);
        assert_eq!(out.problems[0].message, "row 3");
        let counts: Vec<(&str, u64)> = out
            .not_cost_type
            .iter()
            .map(|(t, n)| (t.as_str(), *n))
            .collect();
        // Added to what the reader had already counted.
        assert_eq!(counts, vec![("Original estimate", 1), ("Work billed", 4)]);
        assert_eq!(out.rows_read(), 5 + 5);
    }

    #[test]
    fn a_batch_of_cost_rows_is_passed_through_untouched() {
        let input = raw(&[Some("AP cost"), None, Some("JC cost")], &[1]);
        let before = input.batch.clone();
        let out = drop_non_cost_rows(input).expect("filtered");
        assert_eq!(out.batch, before);
        assert_eq!(out.problems.len(), 1);
        assert_eq!(out.problems[0].row, 1);
        assert!(out.batch.column(1).is_null(1));
    }
}
