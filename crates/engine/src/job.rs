//! One job: blueprint text in, finished video in storage out. Every way it can end
//! is a [`Failure`] with a precise message, a stage and an exit code; the work folder
//! is removed on every path (it is a `WorkFolder`, dropped on return or unwind).

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
}

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

/// What a successful job made.
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

pub struct Outcome {
    pub validated: Validated,
    /// Seconds per stage, as in the completed status's `result.timings`.
    pub timings: serde_json::Value,
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
}

/// Sends status changes, at most one encode progress update per second.
pub struct Reporter<'a> {
    sink: &'a mut dyn StatusSink,
    task_id: Option<String>,
    last_encode_update: Option<Instant>,
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

    fn know_task(&mut self, task_id: &str) {
        if self.task_id.is_none() {
            logging::set_task_id(task_id);
            self.task_id = Some(task_id.to_owned());
        }
    }

    fn send(
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

    fn running(&mut self, stage: Stage, progress: u8, message: impl Into<String>) {
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

    fn completed(&mut self, result: serde_json::Value) {
        self.send(Status::Completed, Stage::Done, 100, "video ready".into(), Some(result), None);
    }
}

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

    /// For each clip, its prepared version's key when one exists for this job's profile
    /// and is fresh: its manifest names the source's current identity and the prepared
    /// object's own. Anything missing, stale or unreadable means the original is used.
    /// The GOP is the profile's (a manifest that says another is stale); what the
    /// manifest says of the prepared clip is checked once it is staged (see `prepare`).
    async fn fresh_prepared_clips(
        &self,
        validated: &Validated,
        work: &Path,
    ) -> (Option<br_plan::prepare::Profile>, Vec<Option<(String, br_plan::PreparedClip)>>) {
        let Some(profile) = self.job_profile(validated, work).await else {
            return (None, vec![None; validated.clip_keys.len()]);
        };
        let lookups = validated.clip_keys.iter().map(|key| {
            let profile = &profile;
            async move {
                let manifest_key = crate::prepare::manifest_key(profile, key);
                let prepared_key = crate::prepare::prepared_key(profile, key);
                // Unreadable means the original is used, like a missing manifest.
                let manifest = crate::prepare::read_manifest(self.storage, &manifest_key).await.ok().flatten()?;
                let source = self.storage.identity(key).await.ok()?;
                let prepared = self.storage.identity(&prepared_key).await.ok()?;
                let fresh = manifest.profile_id == profile.id()
                    && manifest.source_identity == source
                    && manifest.prepared_identity == prepared
                    && manifest.gop_frames == br_plan::prepare::GOP_FRAMES;
                if !fresh {
                    tracing::info!(key = %key, "its prepared clip is stale: the original is used");
                    return None;
                }
                // The frame count is checked against the staged clip's packets.
                let gop_frames = br_plan::prepare::GOP_FRAMES;
                let facts = br_plan::PreparedClip { profile_id: profile.id(), gop_frames, frames: manifest.frames };
                Some((prepared_key, facts))
            }
        });
        let found = futures::stream::iter(lookups).buffered(self.config.download_concurrency.max(1)).collect().await;
        (Some(profile), found)
    }

    /// The profile prepared clips must have: the output's size (the first clip's when the
    /// blueprint gives none, which costs probing that clip), rate and bitrate.
    async fn job_profile(&self, validated: &Validated, work: &Path) -> Option<br_plan::prepare::Profile> {
        let placeholder = |key: &String| MediaFacts { key: key.clone(), duration: 0.0, video: None, audio: None };
        let mut inputs: Vec<MediaFacts> =
            std::iter::once(&validated.audio_key).chain(&validated.clip_keys).map(placeholder).collect();
        if validated.output.width.is_none() || validated.output.height.is_none() {
            let first = validated.moves.first()?.clip as usize;
            let key = validated.clip_keys.get(first)?;
            let file = work.join("first-clip-probe");
            let ledger = self.config.runner.ledger.as_ref();
            // Never prepared: not worth downloading the clip twice. The marker is small:
            // read into memory, a larger object is no marker.
            let marker = crate::prepare::source_marker_key(key);
            if !matches!(self.storage.read_small(&marker, crate::prepare::MAX_MANIFEST_BYTES).await, Ok(Some(_))) {
                return None;
            }
            let gate = crate::budget::ledger::Reserving::new(
                ledger,
                media::PROBE_MEMORY,
                ledger.ceiling(media::PROBE_MEMORY, 0),
            );
            self.storage.fetch(key, &file, &gate).await.ok()?;
            gate.into_file(&file);
            let facts = match ledger.reserve(media::PROBE_MEMORY, 0, u64::MAX).await {
                Ok(_memory) => media::probe(
                    &self.config.ffprobe,
                    &file,
                    key,
                    ChildLimits::reader(media::PROBE_MEMORY, media::PROBE_TIMEOUT),
                )
                .await
                .ok(),
                Err(_) => None,
            };
            ledger.remove(&file);
            *inputs.get_mut(1 + first)? = facts?;
        }
        br_plan::prepare::Profile::of(validated, &inputs)
    }

    /// Probes a staged input within its own reservation.
    async fn probe_staged(
        &self,
        room: &ChildRoom<'_>,
        file: &Path,
        key: &str,
    ) -> Result<media::Probed, (Stage, Failure)> {
        let (_memory, _permit) = room.take(media::PROBE_MEMORY).await?;
        let limits = ChildLimits::reader(media::PROBE_MEMORY, media::PROBE_TIMEOUT);
        media::probe_container(&self.config.ffprobe, file, key, limits)
            .await
            .map_err(|e| probe_failure(room.pointer, e))
    }

    /// Copies a staged clip into MP4 in place (its copy sits beside it until it replaces
    /// it, both charged) and probes it again.
    /// `shift_micros`: a late video's delay, so that it starts with the file (see
    /// [`media::LATE_VIDEO_MICROS`]); checked on the copy.
    async fn remux_staged(
        &self,
        room: &ChildRoom<'_>,
        file: &Path,
        key: &str,
        shift_micros: u64,
    ) -> Result<media::Probed, (Stage, Failure)> {
        let size = room.ledger.charged(file).unwrap_or(0);
        let writes = size + size / 8 + crate::budget::MIB;
        {
            let (memory, _permit) = room.take(media::REMUX_MEMORY + writes).await?;
            let limits = ChildLimits::of_share(memory.bytes(), writes, media::PROBE_TIMEOUT);
            media::remux_for_exact_seeks(&self.config.runner.ffmpeg, file, key, shift_micros, limits)
                .await
                .map_err(|e| probe_failure(room.pointer, e))?;
            room.ledger.charge_as_found(file);
        }
        let probed = self.probe_staged(room, file, key).await?;
        if probed.late_video_micros() > 0 {
            let message = format!(
                "{key}: its video starts {:.6} s after its file does, even once copied to start with it",
                probed.video_delay_micros as f64 / 1e6
            );
            return Err((Stage::Probe, Failure::Media { pointer: room.pointer.to_owned(), message }));
        }
        Ok(probed)
    }

    /// Fetches, probes, plans and checks the plan. On failure returns the stage it
    /// failed in.
    pub async fn prepare(&self, checked: Checked, reporter: &mut Reporter<'_>) -> Result<Prepared, (Stage, Failure)> {
        let Checked { validated, validate_seconds } = checked;
        let mut timings = serde_json::Map::new();
        timings.insert("validate_seconds".into(), json!(validate_seconds));
        let mut clock = Instant::now();
        let mut lap = |name: &str, timings: &mut serde_json::Map<String, serde_json::Value>| {
            timings.insert(format!("{name}_seconds"), json!(clock.elapsed().as_secs_f64()));
            clock = Instant::now();
        };

        // One deadline for the whole job, from here: fetch, probes, loudness, plan, steps.
        let limit = self.config.runner.job_limit(validated.total_duration);
        let _ = self.deadline.set((tokio::time::Instant::now() + limit, limit));
        let work = make_work_folder(&self.config.work_root, &validated.task_id).map_err(|e| (Stage::Fetch, e))?;
        self.watchdog.watch_folder(work.path());
        let use_prepared = self.config.use_prepared && self.sandbox.takes_prepared_clips();
        let (profile, found) = if use_prepared {
            // The lookups (a manifest each, a marker, perhaps a probe) are cancellable too.
            let lookups = async { Ok(self.fresh_prepared_clips(&validated, work.path()).await) };
            self.unless_cancelled(Stage::Fetch, lookups).await?
        } else {
            (None, Vec::new())
        };
        let mut keys: Vec<(String, String)> = std::iter::once((validated.audio_key.clone(), "/audio_path".to_owned()))
            .chain(validated.clip_keys.iter().enumerate().map(|(clip, key)| {
                let staged =
                    found.get(clip).cloned().flatten().map_or_else(|| key.clone(), |(prepared_key, _)| prepared_key);
                (staged, first_use(&validated, clip))
            }))
            .collect();
        // Per input, as the plan request has them: the song is never prepared.
        let mut prepared: Vec<Option<br_plan::PreparedClip>> =
            std::iter::once(None).chain(found.iter().map(|clip| clip.clone().map(|(_, facts)| facts))).collect();
        let prepared_count = found.iter().flatten().count();
        let mut prepared_inputs: Vec<bool> = prepared.iter().map(Option::is_some).collect();
        if use_prepared {
            tracing::info!(prepared = prepared_count, clips = validated.clip_keys.len(), "prepared clips found fresh");
        }
        timings.insert("prepared_clips".into(), json!(prepared_count));
        reporter.running(
            Stage::Fetch,
            Stage::Fetch.at(0.0),
            format!(
                "fetching {} objects from {}, {} at a time",
                keys.len(),
                self.storage.describe(),
                self.config.download_concurrency
            ),
        );
        // Each object is probed as soon as it is down, while others still download;
        // probes are few at a time (each ffprobe is a process of its own).
        let probes = tokio::sync::Semaphore::new(PARALLEL_PROBES);
        // The song's loudness, for a guest that can be told it: one exact gain then
        // replaces loudnorm's dynamic mode (host.loudness, contract 0.7.0).
        let measure_song = validated.output.normalize_audio && self.sandbox.takes_loudness();
        let song_seconds = validated.total_duration;
        let ledger = self.config.runner.ledger.as_ref();
        // Probed inputs stay while they fit in a quarter of the shared budget; the rest
        // are fetched again before the step that reads them (see `work`).
        let cache_bytes = self.config.runner.budget.shared / 4;
        // An object larger than this could wait for ever: refused at once.
        let ceiling = ledger.ceiling(FETCH_KEEP_FREE, cache_bytes);
        let staging = keys.iter().enumerate().map(|(index, (key, pointer))| {
            let destination = work.path().join(staged_name(index, key));
            let probes = &probes;
            let profile = profile.as_ref();
            let mut expected = prepared.get(index).cloned().flatten().zip(profile);
            let original = index.checked_sub(1).and_then(|clip| validated.clip_keys.get(clip));
            async move {
                let room = ChildRoom { ledger, probes, pointer };
                // A prepared clip that is not what its profile and manifest say is set
                // aside for the original clip (once: `expected` is then None).
                let mut key = key.as_str();
                let mut fell_back = false;
                let (probed, remuxed) = 'stage: loop {
                    // The object's declared size is reserved before its first byte is
                    // written; it waits while others hold the room.
                    let gate = crate::budget::ledger::Reserving::new(ledger, FETCH_KEEP_FREE, ceiling);
                    self.storage.fetch(key, &destination, &gate).await.map_err(|error| staging_failure(pointer, error))?;
                    gate.into_file(&destination);
                    let mut probed = self.probe_staged(&room, &destination, key).await?;
                    // Input 0 is the song (read from its start); the others are clips, which
                    // steps read from a point inside them.
                    // A clip's trims count from its first video frame: a late video is shifted to the file's start.
                    let shift = if index > 0 { probed.late_video_micros() } else { 0 };
                    let mut remuxed = index > 0 && (!probed.seeks_exactly() || shift > 0);
                    if remuxed {
                        probed = self.remux_staged(&room, &destination, key, shift).await?;
                        tracing::info!(key = %key, container = %probed.container, "copied into MP4 to seek in it by frame");
                    }
                    // A clip's seek points are its bitstream's keyframes, not its container's
                    // claims: a keyframe index that lists other frames is rebuilt by copying the
                    // packets into MP4 (the muxer indexes the parser's keyframes), checked again.
                    let mut keyframes = None;
                    while index > 0 && probed.facts.video.is_some() {
                        let started = Instant::now();
                        let found = {
                            // Two ffprobe passes at once (the container's flags, the parser's).
                            let (_memory, _permit) = room.take(2 * media::PROBE_MEMORY).await?;
                            let limits = ChildLimits::reader(2 * media::PROBE_MEMORY, media::PROBE_TIMEOUT);
                            media::keyframes(&self.config.ffprobe, &destination, key, limits).await.map_err(|e| probe_failure(pointer, e))?
                        };
                        let Some(at) = found.false_keyframe() else {
                            tracing::debug!(key = %key, seconds = started.elapsed().as_secs_f64(), "keyframe index checked");
                            keyframes = Some(found);
                            break;
                        };
                        if remuxed {
                            let message = format!(
                                "{key}: its container's keyframe index does not match its frames (the frame at \
                                 {at:.3} s is listed as a keyframe, its bitstream does not start a GOP there)"
                            );
                            return Err((Stage::Probe, Failure::Media { pointer: pointer.clone(), message }));
                        }
                        tracing::warn!(key = %key, at, "its keyframe index lists a non-keyframe: copied into MP4");
                        probed = self.remux_staged(&room, &destination, key, 0).await?;
                        remuxed = true;
                    }
                    if let Some((clip, profile)) = &expected {
                        let found = keyframes.as_ref().zip(probed.facts.video.as_ref());
                        let mismatch = found.map_or_else(
                            || Some("it has no video stream".to_owned()),
                            |(keyframes, video)| crate::prepare::mismatch(profile, clip, video, keyframes),
                        );
                        if let (Some(why), Some(original)) = (mismatch, original) {
                            tracing::warn!(key = %key, "not as prepared ({why}): {original} is used");
                            ledger.remove(&destination);
                            (key, expected, fell_back) = (original.as_str(), None, true);
                            continue 'stage;
                        }
                    }
                    break (probed, remuxed.then_some(shift));
                };
                if let Some(reason) = probed.unshowable_pixels().filter(|_| index > 0) {
                    let message = format!("{key}: {reason}");
                    return Err((Stage::Probe, Failure::Media { pointer: pointer.clone(), message }));
                }
                let facts = probed.facts;
                let role = if index == 0 { formats::Role::Song } else { formats::Role::Clip };
                if let Some(reason) = formats::undecodable(&facts, role) {
                    return Err((Stage::Probe, Failure::Media { pointer: pointer.clone(), message: format!("{key}: {reason}") }));
                }
                let loudness = match &facts.audio {
                    Some(audio) if index == 0 && measure_song => {
                        let lengths = (song_seconds, audio.duration.max(facts.duration));
                        let (_memory, _permit) = room.take(media::LOUDNESS_MEMORY).await?;
                        let limits = ChildLimits::reader(media::LOUDNESS_MEMORY, media::LOUDNESS_TIMEOUT);
                        measured_loudness(&self.config.runner.ffmpeg, &destination, key, lengths, limits).await
                    }
                    _ => None,
                };
                Ok::<_, (Stage, Failure)>((index, destination, facts, remuxed, loudness, fell_back))
            }
        });
        let mut staged = futures::stream::iter(staging).buffer_unordered(self.config.download_concurrency.max(1));
        let mut inputs = vec![PathBuf::new(); keys.len()];
        let mut facts: Vec<Option<MediaFacts>> = vec![None; keys.len()];
        let mut remux_inputs = vec![None; keys.len()];
        let mut input_bytes = vec![0u64; keys.len()];
        let mut song_loudness = None;
        let mut fell_back_to_originals = Vec::new();
        let mut done = 0;
        let mut kept_bytes = 0;
        // The first failure ends the job: dropping the stream cancels the transfers
        // still running, and the work folder goes with them.
        while let Some(result) = self.unless_cancelled(Stage::Fetch, async { Ok(staged.next().await) }).await? {
            let (index, path, found, remuxed, loudness, fell_back) = result?;
            if fell_back {
                fell_back_to_originals.push(index);
            }
            remux_inputs[index] = remuxed;
            song_loudness = song_loudness.or(loudness);
            let size = ledger.charged(&path).unwrap_or(0);
            input_bytes[index] = size;
            if kept_bytes + size <= cache_bytes {
                kept_bytes += size;
            } else {
                ledger.remove(&path);
            }
            inputs[index] = path;
            facts[index] = Some(found);
            done += 1;
            reporter.running(
                Stage::Fetch,
                Stage::Fetch.at(done as f64 / keys.len() as f64),
                format!("fetched and probed {} ({done}/{})", keys[index].0, keys.len()),
            );
        }
        drop(staged);
        for index in fell_back_to_originals {
            keys[index].0 = validated.clip_keys[index - 1].clone();
            prepared[index] = None;
            prepared_inputs[index] = false;
        }
        timings.insert("prepared_clips".into(), json!(prepared_inputs.iter().filter(|p| **p).count()));
        let facts: Vec<MediaFacts> = facts.into_iter().flatten().collect();
        reporter.running(Stage::Probe, Stage::Probe.at(1.0), format!("{} inputs probed", facts.len()));
        lap("fetch_and_probe", &mut timings);

        estimate::check_with_media(&validated, &facts, &self.config.runner.budget)
            .map_err(|e| (Stage::Probe, Failure::Invalid(vec![e])))?;
        // A clip whose own frames are too large to decode in this budget is a bad input
        // for this job (exit 4, its pointer), not a step that fails and is retried.
        let frame = br_plan::output_frame(&validated, &facts);
        for (clip, input) in facts.iter().enumerate().skip(1) {
            let Some(video) = &input.video else { continue };
            if let Some(problem) =
                estimate::clip_frame_problem((video.width, video.height), frame, &self.config.runner.budget)
            {
                let message = format!("{}: {problem}", input.key);
                return Err((Stage::Probe, Failure::Media { pointer: first_use(&validated, clip - 1), message }));
            }
        }
        reporter.running(Stage::Plan, Stage::Plan.at(0.0), "planning in the sandbox");
        let request = PlanRequest {
            validated: validated.clone(),
            inputs: facts.clone(),
            strict: self.config.strict,
            prepared,
            song_loudness,
        };
        // Written before the call: a request whose plan traps is the one most worth replaying.
        if let Some(path) = &self.config.save_plan_request {
            crate::plan_request::write(path, &request)
                .map_err(|error| (Stage::Plan, Failure::Setup(error.to_string())))?;
        }
        let planning = self
            .unless_cancelled(Stage::Plan, async {
                self.sandbox.plan(&request).await.map_err(|e| (Stage::Plan, Failure::Sandbox(e)))
            })
            .await?;
        self.watchdog.guest_call("plan", &planning.report);
        let plan = match planning {
            Planning { verdict: Ok(plan), .. } => plan,
            Planning { verdict: Err(errors), .. } => return Err((Stage::Plan, Failure::Plan(errors))),
        };
        let plan = br_policy::check(&plan, inputs.len() as u32, &PolicyLimits::for_request(&request))
            .map_err(|v| (Stage::Plan, Failure::Policy(v)))?;
        estimate::check_plan(plan.plan(), &self.config.runner.budget)
            .map_err(|(_, message)| (Stage::Plan, Failure::PlanTooLarge(message)))?;
        for warning in &plan.plan().warnings {
            tracing::warn!(pointer = %warning.pointer, "{}", warning.message);
        }
        lap("plan", &mut timings);
        let paths = PathTable { inputs, work: work.path().to_owned(), output: work.path().join("output.mp4") };
        Ok(Prepared { validated, plan, paths, facts, prepared_inputs, keys, remux_inputs, input_bytes, work, timings })
    }

    pub async fn run(&self, checked: Checked, reporter: &mut Reporter<'_>) -> Result<Outcome, (Stage, Failure)> {
        let prepared = self.prepare(checked, reporter).await?;
        let Prepared {
            validated,
            plan,
            paths,
            keys,
            remux_inputs,
            input_bytes,
            work,
            mut timings,
            facts,
            prepared_inputs,
        } = prepared;
        let frame = br_plan::output_frame(&validated, &facts);
        let rates =
            crate::schedule::FileRates::of_output(validated.output.video_bitrate, validated.output.audio_bitrate);
        let refetch = Refetch {
            storage: self.storage,
            keys: &keys,
            remux_inputs: &remux_inputs,
            input_bytes: &input_bytes,
            config: self.config,
        };
        let mut current_step: Option<String> = None;
        let started = Instant::now();
        reporter.running(Stage::Encode, Stage::Encode.at(0.0), format!("running {} steps", plan.plan().steps.len()));
        // The steps get what is left of the job's deadline; their `JobTimeout` is it passing.
        let limit = self.time_left(validated.total_duration);
        if limit.is_zero() {
            let whole = self.deadline.get().map(|(_, whole)| *whole).unwrap_or_default();
            return Err((Stage::Encode, Failure::Deadline { limit: whole, stage: Stage::Encode.as_str() }));
        }
        let runner = Runner { job_deadline: Some(limit), ..self.config.runner.clone() };
        let steps = runner
            .run(
                &plan,
                &paths,
                validated.total_duration,
                frame,
                rates,
                &prepared_inputs,
                &refetch,
                self.cancel,
                |progress| {
                    if current_step.as_deref() != Some(progress.label) {
                        current_step = Some(progress.label.to_owned());
                        self.watchdog.enter(&format!("encode: {}", progress.label));
                    }
                    let now = Instant::now();
                    if reporter.last_encode_update.is_none_or(|last| now.duration_since(last).as_secs_f64() >= 1.0) {
                        reporter.last_encode_update = Some(now);
                        reporter.running(Stage::Encode, Stage::Encode.at(progress.fraction), progress.label.to_owned());
                    }
                },
            )
            .await;
        // A plain failure (no limit, no stop) may be an input that is itself broken, which
        // the container probe could not see (a clip cut short after its header): that is
        // the input's fault, exit 4 at its pointer, not FFmpeg's (exit 5, retried).
        let steps = match steps {
            Err(FfmpegError::Failed { step, label, status, stderr, limits }) => {
                let inputs: Vec<u32> = crate::work::Uses::of(plan.plan()).inputs_of(step).collect();
                let failed = format!("step {step} ({label}) failed on it");
                let step_said = stderr.clone();
                if let Some(failure) = self.broken_input(&inputs, &paths, &keys, &refetch, &failed, &step_said).await {
                    tracing::warn!(step, label, "the step failed: FFmpeg {status}: {}", stderr.trim());
                    return Err((Stage::Encode, failure));
                }
                Err(FfmpegError::Failed { step, label, status, stderr, limits })
            }
            other => other,
        };
        let steps = steps.map_err(|e| match e {
            FfmpegError::Cancelled { step, label, reason } => {
                stopped(Stage::Encode, reason, format!("running step {step} ({label})"))
            }
            FfmpegError::JobTimeout { limit, .. } => {
                let whole = self.deadline.get().map_or(limit, |(_, whole)| *whole);
                (Stage::Encode, Failure::Deadline { limit: whole, stage: Stage::Encode.as_str() })
            }
            FfmpegError::Staging { input, error, .. } => {
                let pointer = keys.get(input as usize).map(|(_, pointer)| pointer.clone());
                (Stage::Encode, Failure::Storage { pointer, error })
            }
            e => (Stage::Encode, Failure::Ffmpeg(e)),
        })?;
        timings.insert("encode_seconds".into(), json!(started.elapsed().as_secs_f64()));

        let limits =
            ChildLimits::reader(self.config.runner.ledger.free().min(media::PROBE_MEMORY), media::PROBE_TIMEOUT);
        let output =
            media::probe(&self.config.ffprobe, &paths.output, &validated.output_key, limits).await.map_err(|e| {
                (
                    Stage::Encode,
                    Failure::Media {
                        pointer: "/output_config/output_path".into(),
                        message: format!("the result is unreadable: {}", e.message),
                    },
                )
            })?;
        let frames = media::count_video_frames(&self.config.ffprobe, &paths.output, limits).await.map_err(|e| {
            (
                Stage::Encode,
                Failure::Media {
                    pointer: "/output_config/output_path".into(),
                    message: format!("the result is unreadable: {}", e.message),
                },
            )
        })?;
        if let Some(problem) = nonconformity(&validated, &output, frames, frame) {
            // FFmpeg reads a clip cut short as far as it goes: the video comes out short.
            let inputs: Vec<u32> = (0..keys.len() as u32).collect();
            let failed = format!("the output does not match the blueprint: {problem}");
            if let Some(failure) = self.broken_input(&inputs, &paths, &keys, &refetch, &failed, "").await {
                return Err((Stage::Encode, failure));
            }
            return Err((Stage::Encode, Failure::Nonconforming(problem)));
        }
        let file_size = std::fs::metadata(&paths.output).map(|m| m.len()).unwrap_or(0);

        let started = Instant::now();
        reporter.running(Stage::Upload, Stage::Upload.at(0.0), format!("storing {}", validated.output_key));
        let upload = async {
            self.storage.store(&paths.output, &validated.output_key).await.map_err(|error| {
                (Stage::Upload, Failure::Storage { pointer: Some("/output_config/output_path".into()), error })
            })
        };
        self.unless_cancelled(Stage::Upload, upload).await?;
        timings.insert("upload_seconds".into(), json!(started.elapsed().as_secs_f64()));
        drop(work);

        // What the check adjusted in the timeline, then what the plan could not do as asked.
        let adjusted = validated.warnings.iter().map(|w| (&w.pointer, &w.message));
        let planned = plan.plan().warnings.iter().map(|w| (&w.pointer, &w.message));
        let warnings = adjusted
            .chain(planned)
            .map(|(pointer, message)| Warning { pointer: pointer.clone(), message: message.clone() });
        let result = JobResult {
            video_url: self.storage.url(&validated.output_key),
            output_path: validated.output_key.clone(),
            storage: self.storage.describe(),
            duration: output.duration,
            file_size,
            moves_count: validated.moves_shown(),
            warnings: warnings.collect(),
            timings,
            steps,
            memory: self.watchdog.peaks().figures(&self.config.runner.budget),
            cloud_run: crate::logging::cloud_run_fields(),
        };
        let timings = serde_json::Value::Object(result.timings.clone());
        reporter.completed(serde_json::to_value(&result).unwrap_or_default());
        Ok(Outcome { validated, timings })
    }
}

/// How the output differs from the video the blueprint describes, whoever planned it:
/// `round(total_duration × frame_rate)` frames of the output's `frame` size (as
/// `br_plan::output_frame` chose it) in the blueprint's codec, and (with the song) audio
/// as long as the video within one AAC frame. A plugin's plan passes the policy on its
/// form alone; this is where a wrong video is caught before it is stored.
fn nonconformity(
    validated: &Validated,
    output: &br_plan::MediaFacts,
    frames: u64,
    frame: (u32, u32),
) -> Option<String> {
    let Some(video) = &output.video else {
        return Some("it has no video stream".into());
    };
    let codec = match validated.output.video_codec.as_str() {
        "libx264" => "h264",
        "libx265" => "hevc",
        other => other,
    };
    if (video.width, video.height) != frame || video.codec != codec {
        return Some(format!(
            "its video is {} {}x{}; the blueprint's is {codec} {}x{}",
            video.codec, video.width, video.height, frame.0, frame.1
        ));
    }
    let rate = br_plan::FrameRate::from_fps(validated.output.frame_rate);
    let expected = rate.frame_at(validated.total_duration).max(1);
    if frames != expected {
        return Some(format!(
            "it has {frames} video frames; the timeline has {expected} ({} s at {} fps)",
            validated.total_duration,
            rate.as_ffmpeg()
        ));
    }
    if validated.output.add_audio_overlay {
        let video = rate.seconds(frames);
        let Some(audio) = &output.audio else {
            return Some("it has no audio stream; the blueprint adds the song".into());
        };
        // One AAC frame at 48 kHz, and rounding.
        const ONE_AUDIO_FRAME: f64 = 1024.0 / 48_000.0 + 0.001;
        if (audio.duration - video).abs() > ONE_AUDIO_FRAME {
            return Some(format!("its audio lasts {:.3} s, its video {video:.3} s", audio.duration));
        }
    }
    None
}

/// Fetches an input again for a step that reads it after it was removed.
struct Refetch<'a> {
    storage: &'a dyn Storage,
    keys: &'a [(String, String)],
    remux_inputs: &'a [Option<u64>],
    /// Per input: its size when it was first staged.
    input_bytes: &'a [u64],
    config: &'a JobConfig,
}

impl Staging for Refetch<'_> {
    fn room_for(&self, input: u32) -> u64 {
        let bytes = self.input_bytes.get(input as usize).copied().unwrap_or(0);
        // A clip copied into MP4 again needs room for itself, its copy and the copying FFmpeg.
        if self.remux_inputs.get(input as usize).copied().flatten().is_some() {
            2 * bytes + bytes / 8 + media::REMUX_MEMORY + crate::budget::MIB
        } else {
            bytes
        }
    }

    fn stage<'a>(
        &'a self,
        input: u32,
        path: &'a Path,
        room: u64,
    ) -> Pin<Box<dyn Future<Output = Result<u64, StorageError>> + Send + 'a>> {
        Box::pin(async move {
            let (key, _) = self.keys.get(input as usize).ok_or_else(|| StorageError::Io {
                key: format!("input {input}"),
                store: self.storage.describe(),
                message: "no such input".into(),
                source: None,
            })?;
            let started = Instant::now();
            let remux = self.remux_inputs.get(input as usize).copied().flatten();
            // Inside the room the reading step holds (`room_for`): a clip to copy into MP4
            // needs room for itself, its copy and the copying FFmpeg.
            let most = if remux.is_some() { room.saturating_sub(media::REMUX_MEMORY) / 2 } else { room };
            let bytes = self.storage.fetch(key, path, &crate::budget::ledger::AtMost(most)).await?;
            if let Some(shift) = remux {
                let writes = room.saturating_sub(media::REMUX_MEMORY + bytes);
                let limits = ChildLimits::of_share(room.saturating_sub(bytes), writes, media::PROBE_TIMEOUT);
                let ffmpeg = &self.config.runner.ffmpeg;
                if let Err(e) = media::remux_for_exact_seeks(ffmpeg, path, key, shift, limits).await {
                    crate::work::remove_if_present(path);
                    return Err(StorageError::Io {
                        key: key.clone(),
                        store: self.storage.describe(),
                        message: e.message.clone(),
                        source: Some(Box::new(e)),
                    });
                }
            }
            tracing::info!(key = %key, bytes, seconds = started.elapsed().as_secs_f64(), "fetched again for a later step");
            Ok(bytes)
        })
    }
}

/// Room for one child of the fetch stage: its memory reserved in the ledger first (never
/// more than the fetches keep free, so it always comes once others finish), then one of
/// the probe slots. Nothing holds a slot while it waits for memory.
struct ChildRoom<'a> {
    ledger: &'a crate::budget::ledger::Ledger,
    probes: &'a tokio::sync::Semaphore,
    pointer: &'a str,
}

impl ChildRoom<'_> {
    async fn take(
        &self,
        bytes: u64,
    ) -> Result<(crate::budget::ledger::Reservation<'_>, tokio::sync::SemaphorePermit<'_>), (Stage, Failure)> {
        let memory =
            self.ledger.reserve(bytes, 0, FETCH_KEEP_FREE).await.map_err(|e| budget_failure(self.pointer, e))?;
        let permit = self.probes.acquire().await.map_err(|e| (Stage::Probe, Failure::WorkFolder(e.to_string())))?;
        Ok((memory, permit))
    }
}

/// A fetch that failed: an object too large for the job's work folder is a bad input
/// for this job (exit 4, its pointer), as is a missing one; the rest are storage's.
fn staging_failure(pointer: &str, error: StorageError) -> (Stage, Failure) {
    match error {
        StorageError::TooLarge { key, too_large } => {
            (Stage::Fetch, Failure::Media { pointer: pointer.to_owned(), message: format!("{key}: {too_large}") })
        }
        error => (Stage::Fetch, Failure::Storage { pointer: Some(pointer.to_owned()), error }),
    }
}

/// A probe that failed: its input's fault, unless its child could not even start for
/// lack of memory, which is the budget's (retried), never the input's.
fn probe_failure(pointer: &str, error: media::MediaError) -> (Stage, Failure) {
    let lowered = error.message.to_ascii_lowercase();
    if CHILD_COULD_NOT_START.iter().any(|words| lowered.contains(words)) {
        let message = format!("probing {pointer} ran out of the job's memory budget: {}", error.message);
        return (Stage::Probe, Failure::MemoryBudget(message));
    }
    (Stage::Probe, Failure::Media { pointer: pointer.to_owned(), message: error.message })
}

/// A child of the fetch stage whose memory (and, for a copy into MP4, the copy) can never
/// be reserved beside `pointer`'s input: the input is too large for this job.
fn budget_failure(pointer: &str, too_large: crate::budget::ledger::TooLarge) -> (Stage, Failure) {
    (
        Stage::Probe,
        Failure::Media { pointer: pointer.to_owned(), message: format!("with what reading it takes, {too_large}") },
    )
}

impl Job<'_> {
    /// The first of `inputs` (read by what failed, `failed`) that FFmpeg cannot read to
    /// its end, as the failure of its pointer; None when each reads whole (or cannot be
    /// checked: it cannot be fetched again, the check hit a limit or its time), and the
    /// failure stands. An input no longer staged is fetched again for the check only.
    async fn broken_input(
        &self,
        inputs: &[u32],
        paths: &PathTable,
        keys: &[(String, String)],
        staging: &dyn Staging,
        failed: &str,
        step_said: &str,
    ) -> Option<Failure> {
        for &input in inputs {
            let (Some(file), Some((key, pointer))) = (paths.inputs.get(input as usize), keys.get(input as usize))
            else {
                continue;
            };
            let fetched = !file.is_file();
            // Every step has ended: what the ledger leaves is the check's.
            let ledger = self.config.runner.ledger.as_ref();
            if fetched && staging.stage(input, file, ledger.free().saturating_sub(media::PROBE_MEMORY)).await.is_err() {
                continue;
            }
            let limits = ChildLimits::reader(ledger.free().min(media::PROBE_MEMORY), media::PROBE_TIMEOUT);
            let unreadable = first_read_error(&self.config.runner.ffmpeg, file, limits).await;
            if fetched {
                crate::work::remove_if_present(file);
            }
            // The step's own error again is FFmpeg failing whatever it reads (a crash),
            // not this input.
            if let Some(why) = unreadable {
                if !step_said.is_empty() && step_said.contains(why.trim_matches('"')) {
                    continue;
                }
                let message = format!("{key} is broken: FFmpeg cannot read it to its end ({why}); {failed}");
                return Some(Failure::Media { pointer: pointer.clone(), message });
            }
        }
        None
    }
}

/// Whether FFmpeg reads `file` to its end: its video and audio packets demuxed and copied
/// into nothing (`-xerror`: the first error ends it), no decoding, under `limits` and the
/// probe's time. Some: FFmpeg's last error line, short and escaped. Anything that is not
/// FFmpeg saying so (it could not start, was killed by a limit, ran out of time) is None.
async fn first_read_error(ffmpeg: &Path, file: &Path, limits: ChildLimits) -> Option<String> {
    let output = crate::ffmpeg::child_command(ffmpeg, limits)
        .args(["-nostdin", "-hide_banner", "-nostats", "-v", "error", "-xerror", "-threads", "1"])
        .args(formats::input_whitelist())
        .arg("-i")
        .arg(file)
        .args(["-map", "0:v?", "-map", "0:a?", "-dn", "-sn", "-c", "copy", "-f", "nut", "pipe:1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output();
    let Ok(Ok(output)) = tokio::time::timeout(media::PROBE_TIMEOUT, output).await else { return None };
    if output.status.success() || output.status.code() != Some(1) {
        return None;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("no message").trim();
    // The file's own path is the host's: shown by its role, not its name.
    let last = last.replace(&file.display().to_string(), "the input");
    Some(format!("{:?}", last.chars().take(200).collect::<String>()))
}

/// The song's loudness, or None (the plan then takes loudnorm's dynamic mode, as without
/// a measurement): a song FFmpeg cannot measure fails, if at all, in its own step, with
/// that step's message.
async fn measured_loudness(
    ffmpeg: &Path,
    file: &Path,
    key: &str,
    lengths: (f64, f64),
    limits: ChildLimits,
) -> Option<br_plan::Loudness> {
    let started = std::time::Instant::now();
    match media::measure_loudness(ffmpeg, file, key, lengths, limits).await {
        Ok(measured) => {
            tracing::info!(
                key = %key,
                integrated_lufs = measured.integrated,
                range_lu = measured.range,
                true_peak_dbtp = measured.true_peak,
                measured_seconds = measured.seconds,
                took_seconds = started.elapsed().as_secs_f64(),
                "song loudness measured"
            );
            Some(measured)
        }
        Err(error) => {
            tracing::warn!(key = %key, "{error}; loudnorm's dynamic mode normalises it");
            None
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageFuture;

    /// Names objects the way the GCS backend does with its default rule (`data/` stripped).
    struct Bucket;

    impl Storage for Bucket {
        fn identity<'a>(&'a self, _key: &'a str) -> StorageFuture<'a, String> {
            Box::pin(async { Ok("generation 1".to_owned()) })
        }
        fn describe(&self) -> String {
            "gs://bucket".into()
        }
        fn url(&self, key: &str) -> String {
            format!("gs://bucket/{}", key.strip_prefix("data/").unwrap_or(key))
        }
        fn fetch<'a>(
            &'a self,
            _: &'a str,
            _: &'a Path,
            _: &'a dyn crate::budget::ledger::Gate,
        ) -> StorageFuture<'a, u64> {
            unreachable!("not fetched")
        }
        fn store<'a>(&'a self, _: &'a Path, _: &'a str) -> StorageFuture<'a, u64> {
            unreachable!("not stored")
        }
        fn list<'a>(&'a self, _: &'a str) -> StorageFuture<'a, Vec<String>> {
            unreachable!("not listed")
        }
        fn read_small<'a>(&'a self, _: &'a str, _: usize) -> StorageFuture<'a, Option<Vec<u8>>> {
            unreachable!("not read")
        }
    }

    #[test]
    fn an_output_must_have_the_timelines_frames_and_audio_as_long() {
        let example = include_str!("../../../examples/backend-blueprint.json");
        let validated = br_blueprint::validate(example).unwrap_or_else(|e| panic!("{e:?}"));
        let output = |audio_seconds: Option<f64>| br_plan::MediaFacts {
            key: "out.mp4".into(),
            duration: 176.0,
            video: Some(br_plan::VideoFacts {
                codec: "h264".into(),
                width: 1280,
                height: 720,
                frame_rate: 30.0,
                pixel_format: "yuv420p".into(),
                duration: 176.0,
            }),
            audio: audio_seconds.map(|duration| br_plan::AudioFacts {
                codec: "aac".into(),
                sample_rate: 48_000,
                channels: 2,
                duration,
            }),
        };
        let hd = (1280, 720);
        assert_eq!(nonconformity(&validated, &output(Some(176.0)), 5_280, hd), None);
        assert_eq!(nonconformity(&validated, &output(Some(176.02)), 5_280, hd), None, "within one AAC frame");
        let more = nonconformity(&validated, &output(Some(176.0)), 5_281, hd).unwrap();
        assert!(more.contains("5281 video frames; the timeline has 5280"), "{more}");
        assert!(nonconformity(&validated, &output(Some(175.9)), 5_280, hd).unwrap().contains("audio lasts 175.900 s"));
        assert!(nonconformity(&validated, &output(None), 5_280, hd).unwrap().contains("no audio stream"));
        let small = nonconformity(&validated, &output(Some(176.0)), 5_280, (1920, 1080)).unwrap();
        assert_eq!(small, "its video is h264 1280x720; the blueprint's is h264 1920x1080");
        let mut hevc = output(Some(176.0));
        hevc.video.as_mut().unwrap().codec = "hevc".into();
        assert!(nonconformity(&validated, &hevc, 5_280, hd).unwrap().contains("its video is hevc 1280x720"));
    }

    /// A probe whose child could not even start (its libraries did not load under its
    /// limit) is the budget's failure, retried; it is never blamed on a valid input.
    #[test]
    fn a_probe_that_could_not_start_is_the_budgets_failure_not_the_inputs() {
        let starved = media::MediaError {
            source: None,
            message: "media/a.mp4: not a readable media file (ffprobe: error while loading shared libraries: libavcodec.so.59: \
                      failed to map segment from shared object)"
                .into(),
        };
        let (stage, failure) = probe_failure("/moves/1/video_path", starved);
        assert_eq!(stage, Stage::Probe);
        assert!(matches!(failure, Failure::MemoryBudget(_)), "{failure}");
        assert_eq!(failure.exit_code(), exit::FFMPEG);
        assert!(
            failure.to_string().starts_with("probing /moves/1/video_path ran out of the job's memory budget"),
            "{failure}"
        );
        let broken = media::MediaError::new("media/a.mp4: not a readable media file (moov atom not found)".into());
        let (_, failure) = probe_failure("/moves/1/video_path", broken);
        assert!(matches!(&failure, Failure::Media { pointer, .. } if pointer == "/moves/1/video_path"), "{failure}");
        assert_eq!(failure.exit_code(), exit::MEDIA);
    }

    #[test]
    fn one_rule_refuses_an_output_not_an_mp4_naming_an_input_object_or_outside_the_prefix() {
        let example = include_str!("../../../examples/backend-blueprint.json");
        let mut validated = br_blueprint::validate(example).unwrap_or_else(|e| panic!("{e:?}"));
        let problem = |validated: &Validated| output_key_problem(&Bucket, validated, "data/", "output/");
        assert!(problem(&validated).is_none(), "{:?}", problem(&validated));
        validated.output_key = "output/user_1/video.json".into();
        let error = problem(&validated).expect("not an MP4");
        assert_eq!(error.pointer, "/output_config/output_path");
        assert!(error.message.contains("does not end in .mp4"), "{}", error.message);
        // `data/Bachata_steps/...` is a clip; without the prefix it is the same object.
        let clip = validated.clip_keys[3].clone();
        validated.output_key = clip.trim_start_matches("data/").to_owned();
        let error = problem(&validated).expect("an input's object");
        assert_eq!(error.pointer, "/output_config/output_path");
        assert!(error.message.contains(&format!("the input {clip:?}")), "{}", error.message);
        validated.output_key = "clips/elsewhere.mp4".into();
        let error = problem(&validated).expect("outside the prefix");
        assert!(error.message.contains("outside the output prefix"), "{}", error.message);
    }
}
