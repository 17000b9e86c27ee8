//! The key scan of the transaction table over TDS: one `SELECT` of the key columns only
//! ([`sql::read_keys`]), streamed in batches of `pipeline.batch_rows` into a bounded channel, on
//! one connection opened as every other read opens one (same TLS, login and timeouts).
//!
//! Not partitioned and not retried: a key scan is cheap to run again, and a caller that gets an
//! error removes nothing.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::{bind, connect, query_error, sql, BatchBuilder, Statement, TablePlan};
use crate::config::MssqlSource;
use crate::error::Result;
use crate::extract::keys::is_key_scan_column;
use crate::extract::{RawBatch, ReadWindow};

/// The plan of a key scan: the transaction table's plan with only the key columns present (the
/// others are read as NULL, so the raw batches keep their usual shape).
pub fn key_plan(plan: &TablePlan) -> TablePlan {
    TablePlan {
        role: plan.role,
        table: plan.table.clone(),
        present: plan
            .present
            .iter()
            .zip(plan.role.columns())
            .map(|(p, spec)| p.clone().filter(|_| is_key_scan_column(spec.name)))
            .collect(),
    }
}

/// The statement of a key scan of `plan`'s table (see [`sql::read_keys`]).
pub fn key_statement(src: &MssqlSource, plan: &TablePlan, window: &ReadWindow) -> Statement {
    let keys = key_plan(plan);
    let transaction_type = keys
        .column("Transaction_Type")
        .unwrap_or("Transaction_Type");
    sql::read_keys(
        &src.schema,
        &keys.table,
        &keys.selected(),
        transaction_type,
        window.since,
    )
}

/// Stream the key columns of the transaction table as raw batches into `tx` (an error ends the
/// stream). `window.changed_since` is ignored: a key scan sees what a deep sync sees.
pub async fn read_keys(
    src: MssqlSource,
    plan: TablePlan,
    window: ReadWindow,
    batch_rows: usize,
    tx: mpsc::Sender<Result<RawBatch>>,
) {
    if let Err(e) = stream_keys(&src, &plan, &window, batch_rows, &tx).await {
        let _ = tx.send(Err(e)).await;
    }
}

async fn stream_keys(
    src: &MssqlSource,
    plan: &TablePlan,
    window: &ReadWindow,
    batch_rows: usize,
    tx: &mpsc::Sender<Result<RawBatch>>,
) -> Result<()> {
    let keys = key_plan(plan);
    let statement = key_statement(src, plan, window);
    let context = format!("{} key scan", keys.table);
    let limit = Duration::from_secs(src.query_timeout_secs);
    let timeout = || {
        query_error(
            src,
            &context,
            format!(
                "no answer within {}s (source.query_timeout_secs)",
                src.query_timeout_secs
            ),
        )
    };
    let mut client = connect(src).await?;
    let stream = tokio::time::timeout(limit, bind(&statement).query(&mut client))
        .await
        .map_err(|_| timeout())?
        .map_err(|e| query_error(src, &context, e))?;
    let mut rows = stream.into_row_stream();
    let mut builder = BatchBuilder::new(&keys);
    let mut line = 0u64;
    loop {
        let next = tokio::time::timeout(limit, rows.next())
            .await
            .map_err(|_| timeout())?;
        let Some(row) = next else { break };
        let row = row.map_err(|e| query_error(src, &context, e))?;
        line += 1;
        builder
            .push(line, row)
            .map_err(|m| query_error(src, &context, m))?;
        if builder.len() >= batch_rows.max(1) {
            let batch = builder.take()?;
            if tx.send(Ok(batch)).await.is_err() {
                return Ok(()); // the reader was dropped
            }
        }
    }
    drop(rows);
    let _ = client.close().await;
    if builder.len() > 0 {
        let _ = tx.send(builder.take()).await;
    }
    Ok(())
}
