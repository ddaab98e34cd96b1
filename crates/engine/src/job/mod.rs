//! One job: blueprint text in, finished video in storage out. Every way it can end
//! is a [`Failure`] with a precise message, a stage and an exit code; the work folder
//! is removed on every path (it is a `WorkFolder`, dropped on return or unwind).

mod audio;
mod failure;
mod fetch;
mod prepared;
mod render;
mod report;
mod staging;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Instant;

use futures::StreamExt;

use br_blueprint::{Validated, ValidationError};
use br_plan::{MediaFacts, PlanNote, PlanRequest};
use br_policy::{CheckedPlan, PolicyLimits, PolicyViolation};
use br_sandbox::{Planning, Sandbox, SandboxError, Validation};
use serde_json::json;

use br_status::{Stage, Status, StatusSink, StatusUpdate};

use crate::budget::estimate;
use crate::budget::watchdog::Watchdog;
use crate::cancel::{Cancel, Stop};
use crate::ffmpeg::{ChildLimits, FfmpegError, Runner};
use crate::formats;
use crate::storage::{output_prefix_problem, Storage, StorageError};
use crate::work::{PathTable, Staging};
use crate::{exit, logging, media};

/// ffprobe processes at a time while inputs download.
const PARALLEL_PROBES: usize = 2;
/// Kept free of downloads while inputs are fetched: room for the largest child of the
/// fetch stage (the keyframe check's two passes; a copy into MP4 may take no more), so
/// one always runs and frees its input.
const FETCH_KEEP_FREE: u64 = 2 * media::PROBE_MEMORY;
/// What a failed probe says when its child could not even start for lack of memory:
/// the budget's failure, never the input's.
const CHILD_COULD_NOT_START: [&str; 2] = ["error while loading shared libraries", "cannot allocate memory"];

pub struct JobConfig {
    /// Objects downloaded at the same time.
    pub download_concurrency: usize,
    /// Parent of the per-job work folder.
    pub work_root: PathBuf,
    /// Plan warnings (a clip shorter than its slot...) fail the job.
    pub strict: bool,
    /// How the guest checks the blueprint (strict or lenient, the job's own bucket).
    pub check: br_blueprint::CheckOptions,
    pub ffprobe: PathBuf,
    pub runner: Runner,
    /// The output key, less `strip_prefix`, must start with it (`OUTPUT_PREFIX`).
    pub output_prefix: String,
    /// The backend's `data/` (`GCS_STRIP_PREFIX`), which names the storage's root.
    pub strip_prefix: String,
    /// Stage a clip's prepared version (`prepare`) when a fresh one exists for the
    /// job's profile and the guest's contract (0.4.0 on) lets it be told so; older
    /// guests' contract says input 1 + i is clip i itself.
    pub use_prepared: bool,
    /// Where to write the plan request before the guest is asked to plan
    /// (`--save-plan-request`), so that it can be replayed (`plugin call plan`).
    pub save_plan_request: Option<PathBuf>,
    /// Copy the song's finished audio and its loudness from the storage's audio cache
    /// when an earlier job made them, and keep them there when not ([`crate::audio_cache`]).
    pub audio_cache: bool,
}

pub use audio::AudioFill;
pub use failure::{list, Failure};
pub use report::{JobResult, Outcome, Reporter, Warning};

use failure::{budget_failure, probe_failure, staging_failure};
use staging::{ChildRoom, Refetch};

pub struct Job<'a> {
    pub sandbox: &'a Sandbox,
    pub storage: &'a dyn Storage,
    pub config: &'a JobConfig,
    pub cancel: &'a Cancel,
    pub watchdog: &'a Watchdog,
    /// The job's deadline and its length, set when the fetch starts ([`Job::prepare`]).
    pub deadline: std::sync::OnceLock<(tokio::time::Instant, std::time::Duration)>,
}

/// A stop seen while in `stage`.
fn stopped(stage: Stage, why: Stop, during: String) -> (Stage, Failure) {
    match why {
        Stop::Signal(_) => (stage, Failure::Cancelled(format!("{why} while {during}"))),
        Stop::MemoryBudget(message) => (stage, Failure::MemoryBudget(message)),
    }
}

/// Everything up to an accepted plan; `plan` stops here, `run` goes on.
pub struct Prepared {
    pub validated: Validated,
    pub plan: CheckedPlan,
    pub paths: PathTable,
    pub facts: Vec<MediaFacts>,
    /// Per input: staged from a prepared clip (the schedule weighs such steps lighter).
    pub prepared_inputs: Vec<bool>,
    /// Per input: its key and the blueprint pointer that names it.
    keys: Vec<(String, String)>,
    /// Per input: copied into MP4 when staged, to seek in it by frame (and again when
    /// fetched again for a later step).
    /// Per input, when it was copied into MP4 at staging: by how many microseconds it was
    /// shifted back (a late video's delay, else 0). A refetched copy is copied the same way.
    remux_inputs: Vec<Option<u64>>,
    /// Per input: its size as staged, the room fetching it again takes.
    input_bytes: Vec<u64>,
    work: crate::work::WorkFolder,
    timings: serde_json::Map<String, serde_json::Value>,
    /// The song as the audio cache knows it, when the job uses the cache.
    song: Option<crate::audio_cache::SongIdentity>,
}

/// A blueprint the guest accepted, and how long that took.
pub struct Checked {
    pub validated: Validated,
    validate_seconds: f64,
}

impl Job<'_> {
    /// Runs `work` unless the job is cancelled first, or its deadline passes (once set).
    async fn unless_cancelled<T>(
        &self,
        stage: Stage,
        work: impl std::future::Future<Output = Result<T, (Stage, Failure)>>,
    ) -> Result<T, (Stage, Failure)> {
        let deadline = self.deadline.get().copied();
        let passed = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            why = self.cancel.cancelled() => Err(stopped(stage, why, format!("in stage {}", stage.as_str()))),
            () = passed => {
                let limit = deadline.map(|(_, limit)| limit).unwrap_or_default();
                Err((stage, Failure::Deadline { limit, stage: stage.as_str() }))
            }
            result = work => result,
        }
    }

    /// What is left of the job's deadline (all of it before the fetch starts).
    fn time_left(&self, video_seconds: f64) -> std::time::Duration {
        match self.deadline.get() {
            Some((at, _)) => at.saturating_duration_since(tokio::time::Instant::now()),
            None => self.config.runner.job_limit(video_seconds),
        }
    }

    /// Validates the blueprint in the sandbox.
    pub async fn validate(&self, text: &str, reporter: &mut Reporter<'_>) -> Result<Checked, (Stage, Failure)> {
        let started = Instant::now();
        reporter.running(Stage::Validate, Stage::Validate.at(0.0), "validating the blueprint in the sandbox");
        let validation = self
            .unless_cancelled(Stage::Validate, async {
                self.sandbox
                    .validate(text, &self.config.check)
                    .await
                    .map_err(|e| (Stage::Validate, Failure::Sandbox(e)))
            })
            .await?;
        self.watchdog.guest_call("validate", &validation.report);
        let validated = match validation {
            Validation { verdict: Ok(validated), .. } => validated,
            Validation { verdict: Err(refusal), .. } => {
                // Launched without TASK_ID, the job learns its task from the guest (it does
                // not read the untrusted JSON itself; the sandbox re-checked the id), so the
                // failure still reaches the task's row. With TASK_ID, that one is kept, as
                // for a valid blueprint's mismatch the refusal is recorded against it.
                if let Some(task_id) = &refusal.task_id {
                    reporter.know_task(task_id);
                }
                return Err((Stage::Validate, Failure::Invalid(refusal.errors)));
            }
        };
        reporter.know_task(&validated.task_id);
        for warning in &validated.warnings {
            tracing::warn!(pointer = %warning.pointer, "{}", warning.message);
        }
        if let Some(error) = self.output_key_problem(&validated) {
            return Err((Stage::Validate, Failure::Invalid(vec![error])));
        }
        estimate::check_blueprint(&validated, &self.config.runner.budget)
            .map_err(|e| (Stage::Validate, Failure::Invalid(vec![e])))?;
        Ok(Checked { validated, validate_seconds: started.elapsed().as_secs_f64() })
    }

    /// [`output_key_problem`] with this job's storage and prefixes.
    fn output_key_problem(&self, validated: &Validated) -> Option<ValidationError> {
        output_key_problem(self.storage, validated, &self.config.strip_prefix, &self.config.output_prefix)
    }
}

/// Why the job must not write its video where `validated` says, if it must not: the
/// host's one rule for the output key, whoever validated the blueprint (a plugin chooses
/// the key): an MP4 ([`output_overwrites_an_input`]) under the output prefix. Exit 2 at
/// `/output_config/output_path`, like the built-in validator's refusal of the same key.
fn output_key_problem(
    storage: &dyn Storage,
    validated: &Validated,
    strip_prefix: &str,
    output_prefix: &str,
) -> Option<ValidationError> {
    let key = &validated.output_key;
    let message = if !key.ends_with(".mp4") {
        format!("`output_path` {key:?} does not end in .mp4: the job writes an MP4")
    } else if let Some(message) = output_overwrites_an_input(storage, validated) {
        message
    } else {
        output_prefix_problem(key, strip_prefix, output_prefix)?
    };
    Some(ValidationError {
        pointer: "/output_config/output_path".into(),
        code: br_blueprint::ErrorCode::NotAllowed,
        message,
    })
}

/// Two keys can name one object (in GCS `data/x.mp4` and `x.mp4` do): the storage's own
/// address of each is compared, so no spelling lets the result replace an input.
fn output_overwrites_an_input(storage: &dyn Storage, validated: &Validated) -> Option<String> {
    let output = storage.url(&validated.output_key);
    let input =
        std::iter::once(&validated.audio_key).chain(&validated.clip_keys).find(|key| storage.url(key) == output)?;
    Some(format!(
        "`output_path` {:?} names the same object as the input {input:?} in {}: the video would overwrite what it is made of",
        validated.output_key,
        storage.describe()
    ))
}

/// The pointer of the first move that uses clip `clip`.
fn first_use(validated: &Validated, clip: usize) -> String {
    let index = validated.moves.iter().position(|m| m.clip as usize == clip).unwrap_or(0);
    format!("/moves/{index}/video_path")
}

/// `input-003.mp4`: the host's own name; only a short alphanumeric extension is kept
/// from the key (FFmpeg guesses some formats from it).
fn staged_name(index: usize, key: &str) -> String {
    let extension = Path::new(key)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| !e.is_empty() && e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|e| format!(".{}", e.to_ascii_lowercase()))
        .unwrap_or_default();
    format!("input-{index:04}{extension}")
}

fn make_work_folder(root: &Path, task_id: &str) -> Result<crate::work::WorkFolder, Failure> {
    let root = std::fs::canonicalize(root).map_err(|e| Failure::WorkFolder(format!("{}: {e}", root.display())))?;
    tempfile::Builder::new()
        .prefix(&format!("blueprint-runner-{task_id}-"))
        .tempdir_in(&root)
        .map(crate::work::WorkFolder::new)
        .map_err(|e| Failure::WorkFolder(format!("cannot create a work folder in {}: {e}", root.display())))
}
