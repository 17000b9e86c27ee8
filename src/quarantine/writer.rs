//! The quarantine writer: one task takes every stage's rejected rows, writes
//! `quarantine.parquet` and counts rows per (table, reason).

use std::collections::BTreeMap;

use tokio::sync::mpsc;

use super::{quarantine_schema, QuarantineBatch};
use crate::error::Result;
use crate::staging::{quarantine_name, FileEntry, ParquetFileSet};

/// Results of the quarantine writer.
pub struct QuarantineTally {
    pub files: Vec<FileEntry>,
    /// (table, reason) → rows.
    pub counts: BTreeMap<(String, String), u64>,
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
            props,
            usize::MAX,
        );
        let mut counts = BTreeMap::new();
        while let Some(q) = qrx.blocking_recv() {
            for code in &q.codes {
                *counts
                    .entry((q.table.clone(), code.as_str().to_string()))
                    .or_insert(0) += 1;
            }
            set.write(&q.batch)?;
        }
        Ok(QuarantineTally {
            files: set.finish()?,
            counts,
        })
    })
}
