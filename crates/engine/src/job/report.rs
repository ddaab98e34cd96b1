//! What a job reports: its status changes as it goes ([`Reporter`]) and what it made
//! ([`JobResult`], [`Outcome`]).

use super::*;

/// A completed job's result: the `result` of its last status, which the backend keeps in
/// the task's row and reads `video_url`, `output_path` and `duration` from.
#[derive(Debug, serde::Serialize)]
pub struct JobResult {
    /// Where the video is: `gs://BUCKET/OBJECT`, or the local file's path.
    pub video_url: String,
    /// The output's key as the blueprint names it.
    pub output_path: String,
    /// The storage, as the log describes it.
    pub storage: String,
    /// The video's length in seconds, probed.
    pub duration: f64,
    pub file_size: u64,
    /// The blueprint's moves the video shows (not a plugin's slots).
    pub moves_count: usize,
    /// What the lenient check adjusted in the timeline, then what the plan could not do as asked.
    pub warnings: Vec<Warning>,
    /// Seconds per stage (`<stage>_seconds`) and the count of prepared clips used.
    pub timings: serde_json::Map<String, serde_json::Value>,
    pub steps: Vec<crate::ffmpeg::StepTiming>,
    pub memory: crate::budget::watchdog::MemoryFigures,
    /// Cloud Run's execution, task index and attempt, when it runs there.
    #[serde(flatten)]
    pub cloud_run: serde_json::Map<String, serde_json::Value>,
}

/// A warning with the blueprint's pointer it is about.
#[derive(Debug, serde::Serialize)]
pub struct Warning {
    pub pointer: String,
    pub message: String,
}

/// What a successful job made.
pub struct Outcome {
    pub validated: Validated,
    /// Seconds per stage, as in the completed status's `result.timings`.
    pub timings: serde_json::Value,
}

/// Sends status changes, at most one encode progress update per second.
pub struct Reporter<'a> {
    sink: &'a mut dyn StatusSink,
    task_id: Option<String>,
    pub(super) last_encode_update: Option<Instant>,
    /// The highest progress sent: a failure keeps it, so progress never goes down.
    progress: u8,
    /// Told of every change of stage, so its record has one part per stage.
    watchdog: Option<&'a Watchdog>,
    stage: Option<Stage>,
}

impl<'a> Reporter<'a> {
    /// `task_id`: the one the launcher gave (TASK_ID), if any; otherwise the
    /// blueprint's, once it is valid.
    pub fn new(sink: &'a mut dyn StatusSink, task_id: Option<String>) -> Self {
        if let Some(task_id) = &task_id {
            logging::set_task_id(task_id);
        }
        Reporter { sink, task_id, last_encode_update: None, progress: 0, watchdog: None, stage: None }
    }

    pub fn with_watchdog(self, watchdog: &'a Watchdog) -> Self {
        Reporter { watchdog: Some(watchdog), ..self }
    }

    pub(super) fn know_task(&mut self, task_id: &str) {
        if self.task_id.is_none() {
            logging::set_task_id(task_id);
            self.task_id = Some(task_id.to_owned());
        }
    }

    pub(super) fn send(
        &mut self,
        status: Status,
        stage: Stage,
        progress: u8,
        message: String,
        result: Option<serde_json::Value>,
        error: Option<String>,
    ) {
        logging::set_stage(stage.as_str());
        if self.stage != Some(stage) {
            self.stage = Some(stage);
            if let Some(watchdog) = self.watchdog {
                watchdog.enter(stage.as_str());
            }
        }
        let progress = progress.max(self.progress);
        self.progress = progress;
        let update = StatusUpdate { task_id: self.task_id.clone(), status, progress, stage, message, result, error };
        self.sink.report(&update);
    }

    pub(super) fn running(&mut self, stage: Stage, progress: u8, message: impl Into<String>) {
        self.send(Status::Running, stage, progress, message.into(), None, None);
    }

    pub fn failed(&mut self, stage: Stage, failure: &Failure) {
        // The exit code in the message is read back by a retried attempt (`run`'s
        // `check_row`): a failure that would only happen again is not repeated.
        let message = match failure {
            Failure::Cancelled(_) => format!("cancelled during {} (exit {})", stage.as_str(), failure.exit_code()),
            _ => format!("failed during {} (exit {})", stage.as_str(), failure.exit_code()),
        };
        self.send(Status::Failed, stage, stage.span().0, message, None, Some(failure.to_string()));
    }

    pub(super) fn completed(&mut self, result: serde_json::Value) {
        self.send(Status::Completed, Stage::Done, 100, "video ready".into(), Some(result), None);
    }
}
