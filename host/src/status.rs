//! Status reports: the same fields the backend's `choreography_tasks` row receives.
//! Without a database, each change is one JSON line on stdout.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Completed,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Validate,
    Fetch,
    Probe,
    Plan,
    Encode,
    Upload,
    Done,
}

impl Stage {
    /// Overall progress (percent) when the stage starts and when it ends.
    pub fn span(self) -> (u8, u8) {
        match self {
            Stage::Validate => (0, 2),
            Stage::Fetch => (2, 10),
            Stage::Probe => (10, 12),
            Stage::Plan => (12, 15),
            Stage::Encode => (15, 95),
            Stage::Upload => (95, 99),
            Stage::Done => (100, 100),
        }
    }

    /// Progress at `fraction` of the way through this stage.
    pub fn at(self, fraction: f64) -> u8 {
        let (from, to) = self.span();
        from + ((to - from) as f64 * fraction.clamp(0.0, 1.0)).floor() as u8
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusUpdate {
    pub task_id: Option<String>,
    pub status: Status,
    pub progress: u8,
    pub stage: Stage,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub trait StatusSink {
    fn report(&mut self, update: &StatusUpdate);
}

/// One JSON object per line on stdout.
pub struct JsonLines;

impl StatusSink for JsonLines {
    fn report(&mut self, update: &StatusUpdate) {
        match serde_json::to_string(update) {
            Ok(line) => println!("{line}"),
            Err(error) => tracing::error!("cannot encode a status update: {error}"),
        }
    }
}

/// For `plan`, whose stdout is the plan itself: status changes go to the log only.
pub struct LogOnly;

impl StatusSink for LogOnly {
    fn report(&mut self, update: &StatusUpdate) {
        tracing::debug!(status = ?update.status, stage = ?update.stage, progress = update.progress, "{}", update.message);
    }
}
