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

#[cfg(test)]
mod tests {
    use super::*;

    const STAGES: [Stage; 7] =
        [Stage::Validate, Stage::Fetch, Stage::Probe, Stage::Plan, Stage::Encode, Stage::Upload, Stage::Done];

    /// The names written to the row and to the log are the ones serde writes, and each is
    /// its own.
    #[test]
    fn names_are_the_serialized_ones() {
        for stage in STAGES {
            assert_eq!(serde_json::to_value(stage).unwrap(), stage.as_str());
        }
        for status in [Status::Running, Status::Completed, Status::Failed] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        let names: std::collections::BTreeSet<&str> = STAGES.iter().map(|s| s.as_str()).collect();
        assert_eq!(names.len(), STAGES.len());
    }

    /// Progress only grows: each stage starts where the one before it ended, from 0 to 100.
    #[test]
    fn the_stages_tile_zero_to_one_hundred() {
        assert_eq!(Stage::Validate.span().0, 0);
        for pair in STAGES.windows(2) {
            let ((_, end), (start, _)) = (pair[0].span(), pair[1].span());
            assert!(end <= start, "{:?} ends at {end}, {:?} starts at {start}", pair[0], pair[1]);
        }
        assert_eq!(Stage::Done.span(), (100, 100));
        assert_eq!(Stage::Upload.span(), (95, 99));
    }

    /// A fraction of a stage is its share of the stage's span, rounded down (a row never
    /// claims more than is done), and clamped to the stage.
    #[test]
    fn progress_within_a_stage_is_rounded_down_and_clamped() {
        assert_eq!(Stage::Encode.at(0.0), 15);
        assert_eq!(Stage::Encode.at(0.5), 55);
        assert_eq!(Stage::Encode.at(0.999), 94);
        assert_eq!(Stage::Encode.at(1.0), 95);
        assert_eq!(Stage::Encode.at(-3.0), 15);
        assert_eq!(Stage::Encode.at(7.0), 95);
        assert_eq!(Stage::Fetch.at(0.5), 6);
        assert_eq!(Stage::Done.at(0.5), 100);
    }

    /// A failure is an error in Cloud Logging; everything else is information.
    #[test]
    fn only_a_failure_is_logged_as_an_error() {
        let update = |status| StatusUpdate {
            task_id: None,
            status,
            progress: 0,
            stage: Stage::Validate,
            message: String::new(),
            result: None,
            error: None,
        };
        assert_eq!(update(Status::Failed).severity(), "ERROR");
        assert_eq!(update(Status::Running).severity(), "INFO");
        assert_eq!(update(Status::Completed).severity(), "INFO");
    }
}
