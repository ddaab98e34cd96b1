//! Every way a job can end other than with a video: a [`Failure`] with its message,
//! the stage it stopped in and its exit code.

use super::*;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("invalid blueprint: {}", list(.0.iter().map(|e| (e.pointer.as_str(), e.message.as_str()))))]
    Invalid(Vec<ValidationError>),
    #[error("{0}")]
    Sandbox(SandboxError),
    #[error("{0}")]
    Policy(PolicyViolation),
    #[error("cannot plan this blueprint with its media: {}", list(.0.iter().map(|e| (e.pointer.as_str(), e.message.as_str()))))]
    Plan(Vec<PlanNote>),
    #[error("{pointer}: {message}")]
    Media { pointer: String, message: String },
    #[error("FFmpeg: {0}")]
    Ffmpeg(FfmpegError),
    #[error("{}{error}", pointer_prefix(pointer))]
    Storage { pointer: Option<String>, error: StorageError },
    #[error("work folder: {0}")]
    WorkFolder(String),
    #[error("{pointer}: the blueprint is for task '{blueprint}' but {named_by} is '{environment}'")]
    TaskMismatch { pointer: String, named_by: &'static str, environment: String, blueprint: String },
    /// The plan ran, but its output is not the video the blueprint describes.
    #[error("the output does not match the blueprint: {0}")]
    Nonconforming(String),
    /// An entry of a task array's manifest that cannot run.
    #[error("manifest {pointer}: {message}")]
    ManifestEntry { pointer: String, message: String },
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// The job's one deadline (`JOB_DEADLINE_SECS`, else [`Runner::default_job_limit`]),
    /// measured from the start of the fetch, passed in `stage`.
    #[error(
        "the job did not finish within its deadline of {} s (JOB_DEADLINE_SECS, counted from the start of the fetch): \
         it passed during {stage}",
        limit.as_secs()
    )]
    Deadline { limit: std::time::Duration, stage: &'static str },
    /// A plan step whose frames cannot fit the memory budget.
    #[error("plan refused: {0}")]
    PlanTooLarge(String),
    /// The watchdog stopped the job before the container's memory limit.
    #[error("{0}")]
    MemoryBudget(String),
    /// The job's own configuration, before any blueprint work.
    #[error("{0}")]
    Setup(String),
}

fn pointer_prefix(pointer: &Option<String>) -> String {
    pointer.as_ref().map(|p| format!("{p}: ")).unwrap_or_default()
}

/// `"/a: x; /b: y"`, at most 20 entries.
pub fn list<'a>(items: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let items: Vec<_> = items.collect();
    let mut shown: Vec<String> =
        items.iter().take(20).map(|(p, m)| if p.is_empty() { m.to_string() } else { format!("{p}: {m}") }).collect();
    if items.len() > 20 {
        shown.push(format!("and {} more", items.len() - 20));
    }
    shown.join("; ")
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Invalid(_) => exit::INVALID_BLUEPRINT,
            Failure::Sandbox(_) | Failure::Policy(_) | Failure::PlanTooLarge(_) => exit::SANDBOX,
            Failure::Plan(_) | Failure::Media { .. } => exit::MEDIA,
            Failure::Ffmpeg(_) | Failure::MemoryBudget(_) | Failure::Nonconforming(_) => exit::FFMPEG,
            // The deadline is FFmpeg's `JobTimeout` wherever it passes: retried.
            Failure::Deadline { .. } => exit::FFMPEG,
            Failure::Storage { .. } | Failure::WorkFolder(_) => exit::STORAGE,
            Failure::TaskMismatch { .. } | Failure::ManifestEntry { .. } => exit::INVALID_BLUEPRINT,
            Failure::Cancelled(_) => exit::CANCELLED,
            Failure::Setup(_) => exit::USAGE,
        }
    }
}

/// A fetch that failed: an object too large for the job's work folder is a bad input
/// for this job (exit 4, its pointer), as is a missing one; the rest are storage's.
pub(super) fn staging_failure(pointer: &str, error: StorageError) -> (Stage, Failure) {
    match error {
        StorageError::TooLarge { key, too_large } => {
            (Stage::Fetch, Failure::Media { pointer: pointer.to_owned(), message: format!("{key}: {too_large}") })
        }
        error => (Stage::Fetch, Failure::Storage { pointer: Some(pointer.to_owned()), error }),
    }
}

/// A probe that failed: its input's fault, unless its child could not even start for
/// lack of memory, which is the budget's (retried), never the input's.
pub(super) fn probe_failure(pointer: &str, error: media::MediaError) -> (Stage, Failure) {
    let lowered = error.message.to_ascii_lowercase();
    if CHILD_COULD_NOT_START.iter().any(|words| lowered.contains(words)) {
        let message = format!("probing {pointer} ran out of the job's memory budget: {}", error.message);
        return (Stage::Probe, Failure::MemoryBudget(message));
    }
    (Stage::Probe, Failure::Media { pointer: pointer.to_owned(), message: error.message })
}

/// A child of the fetch stage whose memory (and, for a copy into MP4, the copy) can never
/// be reserved beside `pointer`'s input: the input is too large for this job.
pub(super) fn budget_failure(pointer: &str, too_large: crate::budget::ledger::TooLarge) -> (Stage, Failure) {
    (
        Stage::Probe,
        Failure::Media { pointer: pointer.to_owned(), message: format!("with what reading it takes, {too_large}") },
    )
}
