//! Structured logs. `json` (the default) writes one Cloud Logging entry per line:
//! `severity`, `message`, `time`, and the job's `task_id` and `stage` on every line once
//! they are known, then the event's own fields. `text` is for people.
//!
//! `job` logs to stdout, where Cloud Run Jobs collects them; the other commands log to
//! stderr so that their own output on stdout stays machine-readable.

use std::io::Write;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    Stderr,
}

/// What every line of this process is about.
struct JobContext {
    task_id: Option<String>,
    stage: Option<&'static str>,
}

static CONTEXT: Mutex<JobContext> = Mutex::new(JobContext { task_id: None, stage: None });

pub fn set_task_id(task_id: &str) {
    if let Ok(mut context) = CONTEXT.lock() {
        context.task_id = Some(task_id.to_owned());
    }
}

pub fn set_stage(stage: &'static str) {
    if let Ok(mut context) = CONTEXT.lock() {
        context.stage = Some(stage);
    }
}

/// Which Cloud Run task and execution this process is (Cloud Run's `task_index`,
/// `task_attempt` and `execution`), on every log line and in the result: the backend
/// finds a task's lines across the executions of a task array by them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudRunLabels {
    pub task_index: Option<u64>,
    pub task_attempt: Option<u64>,
    pub execution: Option<String>,
}

static CLOUD_RUN: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();

/// The labels [`init`] was given, as the fields of a log line (none before it).
pub fn cloud_run_fields() -> Map<String, Value> {
    CLOUD_RUN.get().cloned().unwrap_or_default()
}

fn label_fields(labels: &CloudRunLabels) -> Map<String, Value> {
    let mut fields = Map::new();
    if let Some(index) = labels.task_index {
        fields.insert("task_index".into(), index.into());
    }
    if let Some(attempt) = labels.task_attempt {
        fields.insert("task_attempt".into(), attempt.into());
    }
    if let Some(execution) = &labels.execution {
        fields.insert("execution".into(), execution.clone().into());
    }
    fields
}

/// The stage the job is in, for messages that are not log lines (the watchdog's).
pub fn current_stage() -> Option<&'static str> {
    CONTEXT.lock().ok().and_then(|context| context.stage)
}

/// The log filter to use, and what to say about it once logging is up.
#[derive(Debug, PartialEq, Eq)]
pub struct LogChoice {
    /// An `EnvFilter` directive: `info`, `blueprint_runner=debug,warn`...
    pub directive: String,
    pub note: Option<String>,
}

/// Logging for this process: `format` to `destination`, filtered as `choice` says (its
/// note logged once logging is up; `default_level` if its directive does not parse),
/// `labels` on every line.
pub fn init(
    format: LogFormat,
    destination: Destination,
    default_level: &str,
    choice: LogChoice,
    labels: &CloudRunLabels,
) {
    let _ = CLOUD_RUN.set(label_fields(labels));
    let filter = EnvFilter::try_new(&choice.directive).unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = match format {
        LogFormat::Json => {
            tracing_subscriber::registry().with(CloudJson { destination }.with_filter(filter)).try_init()
        }
        LogFormat::Text => {
            let text = tracing_subscriber::fmt::layer().with_ansi(false);
            match destination {
                Destination::Stdout => tracing_subscriber::registry()
                    .with(text.with_writer(std::io::stdout).with_filter(filter))
                    .try_init(),
                Destination::Stderr => tracing_subscriber::registry()
                    .with(text.with_writer(std::io::stderr).with_filter(filter))
                    .try_init(),
            }
        }
    };
    if let Some(note) = choice.note {
        tracing::warn!("{note}");
    }
}

struct CloudJson {
    destination: Destination,
}

impl<S: Subscriber> Layer<S> for CloudJson {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        let mut line = Map::new();
        line.insert("severity".into(), severity(*event.metadata().level()).into());
        line.insert("message".into(), fields.remove("message").unwrap_or(Value::String(String::new())));
        line.insert("time".into(), rfc3339(SystemTime::now()).into());
        if let Ok(context) = CONTEXT.lock() {
            if let Some(task_id) = &context.task_id {
                line.insert("task_id".into(), task_id.clone().into());
                // Cloud Logging indexes labels: filter with labels.task_id="...".
                line.insert("logging.googleapis.com/labels".into(), serde_json::json!({ "task_id": task_id }));
            }
            if let Some(stage) = context.stage {
                line.insert("stage".into(), stage.into());
            }
        }
        for (key, value) in CLOUD_RUN.get().into_iter().flatten() {
            line.insert(key.clone(), value.clone());
        }
        line.insert("target".into(), event.metadata().target().into());
        for (key, value) in fields {
            line.entry(key).or_insert(value);
        }
        let Ok(mut text) = serde_json::to_string(&line) else { return };
        text.push('\n');
        // One write per line, so lines from different threads never interleave.
        let _ = match self.destination {
            Destination::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
            Destination::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
        };
    }
}

fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
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
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0
            .insert(field.name().into(), serde_json::Number::from_f64(value).map(Value::Number).unwrap_or(Value::Null));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// `2026-11-29T04:05:06.123456Z`: UTC, always six fraction digits (Cloud Logging reads it).
fn rfc3339(time: SystemTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    time::OffsetDateTime::from(time).format(FORMAT).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_micros(951_782_400_000_001)), "2000-02-29T00:00:00.000001Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_921_506)), "2026-11-29T03:05:06.000000Z");
    }
}
