//! Where status changes go when there is no database: stdout, or the log only.

use serde::Serialize;

use crate::update::StatusUpdate;

pub trait StatusSink: Send {
    /// Takes one change. Never blocks on I/O that can stall: a sink that writes to a
    /// database hands the change to a writer task.
    fn report(&mut self, update: &StatusUpdate);
}

/// One JSON object per line on stdout. Each line is also a valid Cloud Logging entry
/// (`severity`, `message`), so it can share stdout with the logs.
pub struct JsonLines;

#[derive(Serialize)]
struct Line<'a> {
    severity: &'static str,
    #[serde(flatten)]
    update: &'a StatusUpdate,
}

impl StatusSink for JsonLines {
    fn report(&mut self, update: &StatusUpdate) {
        match serde_json::to_string(&Line { severity: update.severity(), update }) {
            Ok(line) => println!("{line}"),
            Err(error) => tracing::error!("cannot encode a status update: {error}"),
        }
    }
}

/// For commands whose stdout is something else (`plan`): changes go to the log only.
pub struct LogOnly;

impl StatusSink for LogOnly {
    fn report(&mut self, update: &StatusUpdate) {
        tracing::debug!(status = update.status.as_str(), progress = update.progress, "{}", update.message);
    }
}
