//! The incremental change window of a SQL Server source: the watermark read from the ledger
//! before the run, the latest change stamp seen during it, the watermark moved after it.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Time64MicrosecondType};

use crate::config::{Pipeline, PipelineConfig, SourceConfig, SyncKind};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::run::ChangeWindow;
use crate::transform::driver::task_failed;

/// The window of this run: None for a file source (read whole); for SQL Server, rows stamped
/// at or after (watermark - overlap) for an incremental sync, everything for a deep one.
pub(crate) async fn open(pipeline: &Pipeline) -> Result<Option<ChangeWindow>> {
    let config = &pipeline.config;
    let window = match (&config.source, config.sync.kind) {
        (SourceConfig::Files(_), SyncKind::Incremental) => {
            return Err(Error::Config {
                path: pipeline.path.clone(),
                message: "key `sync.type`: \"incremental\" reads rows by their change stamps and needs \
                          `[source] kind = \"mssql\"`; a file export has no query to filter it with. \
                          Use type = \"deep\" (optionally with since = \"YYYY-MM-DD\")"
                    .into(),
            })
        }
        (SourceConfig::Files(_), SyncKind::Deep) => None,
        (SourceConfig::Mssql(_), kind) => {
            let scope = watermark_scope(config);
            let ledger_path = config.ledger_path();
            let watermark = tokio::task::spawn_blocking(move || {
                Ledger::open(&ledger_path)?.watermark(&scope)
            })
            .await
            .map_err(|e| task_failed("extract", e))??;
            let overlap = chrono::Duration::minutes(i64::from(config.sync.overlap_minutes));
            let changed_since = match kind {
                SyncKind::Incremental => watermark.map(|w| w - overlap),
                SyncKind::Deep => None,
            };
            Some(ChangeWindow {
                scope: watermark_scope(config),
                watermark: watermark.map(format_stamp),
                overlap_minutes: config.sync.overlap_minutes,
                changed_since: changed_since.map(format_stamp),
                max_stamp_seen: None,
                new_watermark: None,
            })
        }
    };
    if let Some(w) = &window {
        tracing::info!(
            scope = w.scope,
            watermark = w.watermark.as_deref().unwrap_or("none"),
            changed_since = w.changed_since.as_deref().unwrap_or("everything"),
            "change window"
        );
    }
    Ok(window)
}

/// The first change stamp the window reads, if it starts anywhere.
pub(crate) fn changed_since(window: Option<&ChangeWindow>) -> Option<chrono::NaiveDateTime> {
    window
        .and_then(|w| w.changed_since.as_deref())
        .and_then(parse_stamp)
}

/// Record the latest change stamp the run saw (µs since 1970, from [`max_change_stamp`]) and
/// the watermark it leads to.
pub(crate) fn close(window: &mut ChangeWindow, max_stamp_seen: Option<i64>) {
    let seen = max_stamp_seen.and_then(micros_to_stamp);
    window.max_stamp_seen = seen.map(format_stamp);
    let old = window.watermark.as_deref().and_then(parse_stamp);
    window.new_watermark = match (old, seen) {
        (Some(o), Some(s)) => Some(o.max(s)),
        (o, s) => o.or(s),
    }
    .map(format_stamp);
}

/// Move the watermark to the window's new one, once the run is complete.
pub(crate) async fn advance(
    config: &PipelineConfig,
    window: &ChangeWindow,
    run_id: &str,
) -> Result<()> {
    let Some(stamp) = window.new_watermark.as_deref().and_then(parse_stamp) else {
        return Ok(());
    };
    let (scope, ledger_path, id) = (
        window.scope.clone(),
        config.ledger_path(),
        run_id.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        Ledger::open(&ledger_path)?.advance_watermark(&scope, stamp, &id)
    })
    .await
    .map_err(|e| task_failed("ledger", e))??;
    tracing::info!(watermark = %format_stamp(stamp), "watermark advanced");
    Ok(())
}

/// The ledger scope of a SQL Server source's watermark: company, server, database and table.
/// (Not the user: reading with another login must not reset it.)
pub fn watermark_scope(config: &PipelineConfig) -> String {
    match &config.source {
        SourceConfig::Mssql(m) => format!(
            "{}|mssql://{}:{}/{}/{}.{}",
            config.company, m.host, m.port, m.database, m.schema, config.tables.transaction
        ),
        SourceConfig::Files(_) => format!("{}|{}", config.company, config.source.describe()),
    }
}

fn format_stamp(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

fn parse_stamp(s: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok()
}

/// Latest Date_Stamp + Time_Stamp of a typed transaction batch, in µs since 1970 (a row
/// without a Time_Stamp counts as midnight).
pub(crate) fn max_change_stamp(batch: &RecordBatch) -> Option<i64> {
    let dates = batch
        .column_by_name("date_stamp")?
        .as_primitive_opt::<Date32Type>()?;
    let times = batch
        .column_by_name("time_stamp")?
        .as_primitive_opt::<Time64MicrosecondType>()?;
    (0..batch.num_rows())
        .filter(|&i| !dates.is_null(i))
        .map(|i| {
            let t = if times.is_null(i) { 0 } else { times.value(i) };
            i64::from(dates.value(i)) * 86_400_000_000 + t
        })
        .max()
}

fn micros_to_stamp(us: i64) -> Option<chrono::NaiveDateTime> {
    chrono::DateTime::from_timestamp_micros(us).map(|d| d.naive_utc())
}
