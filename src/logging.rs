//! Logs: text (the default) or JSON lines (`--log-format json`, or `JCSYNC_LOG_FORMAT=json`),
//! on stderr, filtered by `JCSYNC_LOG` (e.g. `debug`, `jcsync=debug`).
//!
//! In JSON every event is one object on one line: `timestamp` (RFC 3339, UTC), `level`,
//! `message`, `run_id` while a run is in progress, `module`, then the event's own fields (one
//! named like a key before it is written `field.<name>`). The run id is
//! the process's current run ([`RunScope`]): one process runs one sync or replay at a time (an
//! `--every` loop runs them in turn), so an event from any thread or task of the run, spawned
//! or blocking, carries it without every task having to enter a span.

use std::io::Write as _;
use std::sync::RwLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// The environment variable that chooses the log format when `--log-format` is not given.
pub const LOG_FORMAT_ENV: &str = "JCSYNC_LOG_FORMAT";

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The format of `--log-format`, else of [`LOG_FORMAT_ENV`], else text. An unknown value of
    /// the variable is an error naming it.
    pub fn choose(flag: Option<LogFormat>) -> Result<LogFormat, String> {
        if let Some(f) = flag {
            return Ok(f);
        }
        match std::env::var(LOG_FORMAT_ENV) {
            Err(_) => Ok(LogFormat::Text),
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                other => Err(format!(
                    "{LOG_FORMAT_ENV}={other:?}: expected \"text\" or \"json\""
                )),
            },
        }
    }
}

static RUN_ID: RwLock<Option<String>> = RwLock::new(None);
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether logs are JSON lines (progress bars then stay hidden: stderr is for the logs).
pub fn json_enabled() -> bool {
    JSON.load(std::sync::atomic::Ordering::Relaxed)
}

/// The run in progress, for the logs: set while it lives, restored when dropped.
pub struct RunScope {
    previous: Option<String>,
}

impl RunScope {
    /// Mark `run_id` as the process's current run.
    pub fn enter(run_id: &str) -> RunScope {
        let previous = match RUN_ID.write() {
            Ok(mut g) => g.replace(run_id.to_string()),
            Err(p) => p.into_inner().replace(run_id.to_string()),
        };
        RunScope { previous }
    }
}

impl Drop for RunScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        match RUN_ID.write() {
            Ok(mut g) => *g = previous,
            Err(p) => *p.into_inner() = previous,
        }
    }
}

/// The current run's id, if a run is in progress.
pub fn current_run_id() -> Option<String> {
    match RUN_ID.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// Set up logging for the process (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JCSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match format {
        LogFormat::Text => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_target(false)
                .try_init();
        }
        LogFormat::Json => {
            JSON.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(JsonLines)
                .try_init();
        }
    }
}

/// The JSON object of one event.
pub fn event_json(
    level: &tracing::Level,
    target: &str,
    fields: serde_json::Map<String, serde_json::Value>,
    run_id: Option<String>,
) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert(
        "timestamp".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into(),
    );
    object.insert("level".into(), level.as_str().into());
    let mut fields = fields;
    object.insert(
        "message".into(),
        fields.remove("message").unwrap_or_default(),
    );
    if let Some(id) = run_id {
        object.insert("run_id".into(), id.into());
    }
    object.insert("module".into(), target.into());
    for (k, v) in fields {
        match object.get(&k) {
            None => {
                object.insert(k, v);
            }
            // An event's own `run_id` field (the same value) does not repeat the key.
            Some(_) if k == "run_id" => {}
            // A field named like one of the keys above keeps both.
            Some(_) => {
                object.insert(format!("field.{k}"), v);
            }
        }
    }
    serde_json::Value::Object(object)
}

/// The layer that writes [`event_json`] lines to stderr.
struct JsonLines;

impl<S: Subscriber> Layer<S> for JsonLines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(serde_json::Map::new());
        event.record(&mut fields);
        let meta = event.metadata();
        let line = event_json(meta.level(), meta.target(), fields.0, current_run_id());
        let mut text = line.to_string();
        text.push('\n');
        // One write per line: lines from several threads never interleave.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

/// Collects an event's fields as JSON values.
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
}

/// Print a command's output on stdout. A reader that went away (`jcsync status | head -1`)
/// is not an error of the command: the rest is dropped, quietly.
pub fn print_out(text: impl std::fmt::Display) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Say something to whoever watches: on stderr, or a `warn` event in JSON logs.
pub fn say(message: impl std::fmt::Display) {
    if json_enabled() {
        tracing::warn!("{message}");
    } else {
        eprintln!("{message}");
    }
}

/// Say that the command failed: `error: …` on stderr, or an `error` event in JSON logs.
pub fn report_error(message: impl std::fmt::Display) {
    if json_enabled() {
        tracing::error!("{message}");
    } else {
        eprintln!("error: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_object_with_level_message_run_id_and_fields() {
        let mut fields = serde_json::Map::new();
        fields.insert("message".into(), "run started".into());
        fields.insert("rows".into(), 3.into());
        fields.insert("module".into(), "sandbox".into());
        fields.insert("run_id".into(), "r1".into());
        let v = event_json(
            &tracing::Level::WARN,
            "jcsync::x",
            fields,
            Some("r1".into()),
        );
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "run started");
        assert_eq!(v["run_id"], "r1");
        assert_eq!(v["rows"], 3);
        assert_eq!(v["module"], "jcsync::x");
        assert_eq!(v["field.module"], "sandbox");
        assert!(v["timestamp"].as_str().unwrap_or("").ends_with('Z'));
        assert!(!v.to_string().contains('\n'));
    }

    #[test]
    fn the_run_scope_sets_and_restores_the_current_run() {
        {
            let _outer = RunScope::enter("outer");
            assert_eq!(current_run_id().as_deref(), Some("outer"));
            {
                let _inner = RunScope::enter("inner");
                assert_eq!(current_run_id().as_deref(), Some("inner"));
            }
            assert_eq!(current_run_id().as_deref(), Some("outer"));
        }
        assert_eq!(current_run_id(), None);
    }
}
