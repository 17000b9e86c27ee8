//! The Parquet source gives the same staged rows as the CSV source, from a typed export
//! (floats for money, Date32 for most dates, text where the export kept text).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use common::*;
use parquet::arrow::ArrowWriter;

fn float_columns() -> &'static [&'static str] {
    &["Units", "Unit_Cost", "Amount"]
}

fn int_columns() -> &'static [&'static str] {
    &["Dist_Sequence", "Run", "Sequence", "Commitment_Line_Item"]
}

fn date_columns() -> &'static [&'static str] {
    // Accounting_Date stays text: it carries the impossible 2024-02-30.
    &[
        "Transaction_Date",
        "Period_End_Date",
        "Date_Stamp",
        "Invoice_Date",
        "Date_Received",
        "Payment_Date",
    ]
}

/// Convert one fixture CSV into a typed Parquet file, as a Sage export tool would write it.
fn csv_to_parquet(csv_path: &Path, out: &Path) {
    let mut r = csv::Reader::from_path(csv_path).expect("csv");
    let headers: Vec<String> = r
        .headers()
        .expect("headers")
        .iter()
        .map(str::to_string)
        .collect();
    let mut cols: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for rec in r.records() {
        let rec = rec.expect("record");
        for (i, v) in rec.iter().enumerate() {
            cols.entry(i).or_default().push(v.to_string());
        }
    }
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (i, name) in headers.iter().enumerate() {
        let values = cols.remove(&i).unwrap_or_default();
        let (dt, array): (DataType, ArrayRef) = if float_columns().contains(&name.as_str()) {
            // A value that is not a number cannot be a float in a typed export: it arrives NULL.
            let v: Float64Array = values
                .iter()
                .map(|s| s.trim().parse::<f64>().ok())
                .collect();
            (DataType::Float64, Arc::new(v))
        } else if int_columns().contains(&name.as_str()) {
            let v: Int64Array = values
                .iter()
                .map(|s| s.trim().parse::<i64>().ok())
                .collect();
            (DataType::Int64, Arc::new(v))
        } else if date_columns().contains(&name.as_str()) {
            let v: Date32Array = values
                .iter()
                .map(|s| jcsync::extract::convert::parse_date(s).ok())
                .collect();
            (DataType::Date32, Arc::new(v))
        } else {
            let v: StringArray = values
                .iter()
                .map(|s| (!s.is_empty()).then_some(s.as_str()))
                .collect();
            (DataType::Utf8, Arc::new(v))
        };
        fields.push(Field::new(name, dt, true));
        arrays.push(array);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("batch");
    let file = std::fs::File::create(out).expect("create");
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

#[test]
fn parquet_export_stages_the_same_rows_as_csv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pq = dir.path().join("sage-parquet");
    std::fs::create_dir_all(&pq).expect("mkdir");
    for e in std::fs::read_dir(repo().join("fixtures/sage")).expect("fixtures") {
        let p = e.expect("entry").path();
        let stem = p.file_stem().expect("stem").to_string_lossy().to_string();
        csv_to_parquet(&p, &pq.join(format!("{stem}.parquet")));
    }
    let csv_dir = dir.path().join("csv");
    let pq_dir = dir.path().join("pq");
    std::fs::create_dir_all(&csv_dir).expect("mkdir");
    std::fs::create_dir_all(&pq_dir).expect("mkdir");
    let from_csv = run_sync(&write_pipeline(
        &csv_dir,
        &repo().join("fixtures/sage"),
        "csv",
        "zstd",
        "",
    ))
    .expect("csv run");
    let from_pq =
        run_sync(&write_pipeline(&pq_dir, &pq, "parquet", "zstd", "")).expect("parquet run");

    let a = read_parquet(&staged_files(&from_csv.run_dir));
    let b = read_parquet(&staged_files(&from_pq.run_dir));
    assert_eq!(a.num_rows(), 35);
    assert_eq!(a.schema(), b.schema());
    for field in a.schema().fields() {
        if field.name() == "source_line" {
            // CSV counts physical lines (header = line 1), Parquet counts rows from 1.
            let la = u64s(&a, "source_line");
            let lb = u64s(&b, "source_line");
            assert_eq!(la, lb.iter().map(|l| l + 1).collect::<Vec<_>>());
            continue;
        }
        assert_eq!(
            strings(&a, field.name()),
            strings(&b, field.name()),
            "column {}",
            field.name()
        );
    }
    assert_eq!(from_csv.report.totals, from_pq.report.totals);
    assert_eq!(
        from_csv.report.planned_amount,
        from_pq.report.planned_amount
    );
    // The non-numeric amount cannot be a float: in the typed export it is an empty amount.
    let mut qa = from_csv.report.counts.quarantined.clone();
    *qa.entry("bad_value".into()).or_default() -= 1;
    *qa.entry("missing_value".into()).or_default() += 1;
    assert_eq!(qa, from_pq.report.counts.quarantined);
}
