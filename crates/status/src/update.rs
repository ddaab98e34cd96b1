//! What a status change says: the same fields the backend's `choreography_tasks` row
//! holds.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Completed,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }
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
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Validate => "validate",
            Stage::Fetch => "fetch",
            Stage::Probe => "probe",
            Stage::Plan => "plan",
            Stage::Encode => "encode",
            Stage::Upload => "upload",
            Stage::Done => "done",
        }
    }

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

impl StatusUpdate {
    /// Cloud Logging's severity for this change.
    pub fn severity(&self) -> &'static str {
        match self.status {
            Status::Failed => "ERROR",
            Status::Running | Status::Completed => "INFO",
        }
    }
}
