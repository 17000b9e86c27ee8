//! The quarantine writer: one task takes every stage's rejected rows, writes
//! `quarantine.parquet` and counts rows per (table, reason).
//!
//! Lines the load retried from open exceptions (quarantined by an earlier run, stage
//! `load_retry`) and that failed again go to [`RETRIED_FILE`] instead, same schema, counted
//! apart: they are not rows of this run's snapshot, so `quarantine.parquet` (and the counts the
//! report reconciles, `extracted = filtered + quarantined + planned`) stay exactly the
//! snapshot's rejects, and no row is counted twice.

use std::collections::BTreeMap;

use tokio::sync::mpsc;

use super::{quarantine_schema, QuarantineBatch, StageName};
use crate::error::Result;
use crate::staging::{quarantine_name, FileEntry, ParquetFileSet};

/// The file of the lines retried from open exceptions that failed again (written only when
/// there are such lines).
pub const RETRIED_FILE: &str = "quarantine_retried.parquet";

fn retried_name(_: usize) -> String {
    RETRIED_FILE.to_string()
}

/// Results of the quarantine writer.
pub struct QuarantineTally {
    pub files: Vec<FileEntry>,
    /// (table, reason) → rows of this run's snapshot (`quarantine.parquet`).
    pub counts: BTreeMap<(String, String), u64>,
    /// reason → lines retried from open exceptions that failed again ([`RETRIED_FILE`]).
    pub retried: BTreeMap<String, u64>,
}

/// The quarantine writer: every stage may send rejected rows to it; it writes
/// `quarantine.parquet` and counts rows per (table, reason).
pub fn spawn_quarantine_writer(
    run_dir: &std::path::Path,
    props: &parquet::file::properties::WriterProperties,
    mut qrx: mpsc::Receiver<QuarantineBatch>,
) -> tokio::task::JoinHandle<Result<QuarantineTally>> {
    let run_dir = run_dir.to_path_buf();
    let props = props.clone();
    tokio::task::spawn_blocking(move || -> Result<QuarantineTally> {
        let mut set = ParquetFileSet::new(
            &run_dir,
            quarantine_name,
            quarantine_schema(),
            props.clone(),
            usize::MAX,
        );
        let mut retried_set = ParquetFileSet::new(
            &run_dir,
            retried_name,
            quarantine_schema(),
            props,
            usize::MAX,
        );
        let mut counts = BTreeMap::new();
        let mut retried = BTreeMap::new();
        while let Some(q) = qrx.blocking_recv() {
            if q.stage == StageName::LoadRetry {
                for code in &q.codes {
                    *retried.entry(code.as_str().to_string()).or_insert(0) += 1;
                }
                retried_set.write(&q.batch)?;
                continue;
            }
            for code in &q.codes {
                *counts
                    .entry((q.table.clone(), code.as_str().to_string()))
                    .or_insert(0) += 1;
            }
            set.write(&q.batch)?;
        }
        let mut files = set.finish()?;
        // Unlike quarantine.parquet, only written when it has rows: most runs retry nothing.
        if !retried.is_empty() {
            files.extend(retried_set.finish()?);
        }
        Ok(QuarantineTally {
            files,
            counts,
            retried,
        })
    })
}
