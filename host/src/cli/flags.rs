//! The flag groups the subcommands share (a job's, its storage's, its sandbox's, its
//! timeline's, `prepare`'s) and the parsers that check their values' shapes.

use std::path::PathBuf;

use clap::Args;

use br_engine::{budget, prepare, storage};

#[derive(Args, Clone)]
pub struct JobFlags {
    /// Blueprint file, or '-' for stdin; without it, BLUEPRINT_JSON.
    pub file: Option<String>,
    #[command(flatten)]
    pub storage: StorageFlags,
    /// Where the per-job work folder is made (default: the system's temp folder).
    #[arg(long, env = "WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub timeline: TimelineFlags,
    /// Time limit of each FFmpeg step in seconds (default: 60 s + 30 s per second of media it writes).
    #[arg(long, env = "STEP_TIMEOUT_SECS", value_parser = number_setting::<u64>("STEP_TIMEOUT_SECS"))]
    pub step_timeout: Option<u64>,
    /// Time limit of the whole job in seconds, counted from the start of the fetch: lookups,
    /// downloads, probes, the loudness measurement, the plan and every FFmpeg step
    /// (default: 120 s + 60 s per second of video).
    #[arg(long, env = "JOB_DEADLINE_SECS", value_parser = number_setting::<u64>("JOB_DEADLINE_SECS"))]
    pub job_deadline: Option<u64>,
    /// Use clips prepared by `prepare` (copied from a keyframe on) when fresh ones exist.
    #[arg(long, env = "PREPARED", value_enum, default_value = "auto")]
    pub prepared: Prepared,
    /// Copy the song's finished audio and loudness from the storage's audio cache
    /// (`prepared/audio/`, `prepared/loudness/`) when an earlier job on the same song made
    /// them, and keep them there for the next job when not.
    #[arg(long, env = "AUDIO_CACHE", value_enum, default_value = "on")]
    pub audio_cache: AudioCache,
    #[command(flatten)]
    pub sandbox: SandboxFlags,
    /// Where the job writes the plan request it hands to the guest: `--save-plan-request`
    /// of `run` and `plan` (a flag of those two commands only, not of every job command).
    #[arg(skip)]
    pub save_plan_request: Option<PathBuf>,
}

/// How strictly a blueprint's timeline is read.
#[derive(Args, Clone)]
pub struct TimelineFlags {
    /// `lenient`: make the video the backend means from a timeline it did not write
    /// exactly (transitions longer than their moves shortened, moves under a frame
    /// dropped, gaps filled, `gs://` keys in the job's bucket read as keys), each adjustment
    /// a warning; `strict`: refuse such a blueprint, and fail on plan warnings too.
    #[arg(long, env = "TIMELINE", value_enum, default_value = "lenient")]
    pub timeline: Timeline,
    /// The same as `--timeline strict`.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Timeline {
    Lenient,
    Strict,
}

impl TimelineFlags {
    pub fn is_strict(&self) -> bool {
        self.strict || self.timeline == Timeline::Strict
    }

    /// How the guest checks a blueprint of a job that reads from `bucket`, if any: an address
    /// in it is read as the key that the job's rule (object = object prefix + key less the
    /// strip prefix) maps back to the same object.
    pub fn check_options(
        &self,
        bucket: Option<&str>,
        strip_prefix: &str,
        object_prefix: &str,
    ) -> br_blueprint::CheckOptions {
        let own_bucket = bucket.map(|name| br_blueprint::OwnBucket {
            address_prefix: format!("gs://{name}/{object_prefix}"),
            key_prefix: strip_prefix.to_owned(),
        });
        br_blueprint::CheckOptions { strict: self.is_strict(), own_bucket }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Prepared {
    /// Guests of contract 0.4.0 on get fresh prepared clips; older ones the originals.
    Auto,
    /// Always the original clips, every frame rendered.
    Off,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AudioCache {
    /// Read and fill the cache.
    On,
    /// Always measure and encode the song; leave the cache alone.
    Off,
}

#[derive(Args, Clone)]
pub struct PrepareFlags {
    /// Prepare every .mp4 under this key prefix (folder names ending in /), not a blueprint's clips.
    #[arg(long)]
    pub all: Option<String>,
    /// This process's share of the clips, I/N (default: CLOUD_RUN_TASK_INDEX/CLOUD_RUN_TASK_COUNT, else all).
    #[arg(long, value_parser = prepare::Shard::parse)]
    pub shard: Option<prepare::Shard>,
    /// With --all: the profile's frame size, rate and video bitrate (bits per second).
    #[arg(long, default_value_t = 1280, value_parser = clap::value_parser!(u32).range(16..=3840))]
    pub width: u32,
    #[arg(long, default_value_t = 720, value_parser = clap::value_parser!(u32).range(16..=2160))]
    pub height: u32,
    #[arg(long, default_value_t = 30.0)]
    pub frame_rate: f64,
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(100_000..=50_000_000))]
    pub video_bitrate: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    Local,
    Gcs,
}

#[derive(Args, Clone)]
pub struct StorageFlags {
    /// Where objects live: `local` (a folder, --data-dir) or `gcs` (--bucket).
    /// USE_GCS=true also selects gcs.
    #[arg(long = "storage", env = "STORAGE", value_enum)]
    pub kind: Option<StorageKind>,
    /// Folder holding the blueprint's objects (keys, less the strip prefix, resolve
    /// beneath it); the result is written there under `output_path`. Without it and
    /// DATA_DIR: LOCAL_STORAGE_PATH.
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The bucket for `--storage gcs`.
    #[arg(long, env = "GCS_BUCKET_NAME")]
    pub bucket: Option<String>,
    /// Removed from the front of every key before it names a file in the data folder or
    /// a GCS object (folder names ending in '/', or empty to keep keys as written).
    #[arg(long, env = "GCS_STRIP_PREFIX", default_value = "data/", value_parser = output_prefix)]
    pub strip_prefix: String,
    /// The job's output must be under this prefix (after the strip); empty allows any key.
    #[arg(long, env = "OUTPUT_PREFIX", default_value = "output/", value_parser = output_prefix)]
    pub output_prefix: String,
    /// Put in front of every GCS object name (after the strip).
    #[arg(long, env = "GCS_OBJECT_PREFIX", default_value = "")]
    pub object_prefix: String,
    /// Objects downloaded at the same time.
    #[arg(long, env = "DOWNLOAD_CONCURRENCY", default_value_t = 10, value_parser = number_setting::<u16>("DOWNLOAD_CONCURRENCY"))]
    pub download_concurrency: u16,
    /// Attempts per object for transient GCS failures.
    #[arg(long, env = "STORAGE_MAX_ATTEMPTS", default_value_t = 3, value_parser = number_setting::<u32>("STORAGE_MAX_ATTEMPTS"))]
    pub storage_attempts: u32,
    /// Time for one object, every attempt included, in seconds.
    #[arg(long, env = "STORAGE_OBJECT_DEADLINE_SECS", default_value_t = 600, value_parser = number_setting::<u64>("STORAGE_OBJECT_DEADLINE_SECS"))]
    pub storage_deadline: u64,
    /// Pause before the first retry, in milliseconds (doubles each time, with jitter).
    #[arg(long, env = "STORAGE_FIRST_BACKOFF_MS", default_value_t = 250, value_parser = number_setting::<u64>("STORAGE_FIRST_BACKOFF_MS"))]
    pub storage_backoff_ms: u64,
}

#[derive(Args, Clone)]
pub struct SandboxFlags {
    /// Fuel (about one unit per wasm instruction) for one guest call.
    #[arg(long, env = "GUEST_FUEL", default_value_t = br_sandbox::Limits::default().fuel, value_parser = number_setting::<u64>("GUEST_FUEL"))]
    pub fuel: u64,
    /// Guest memory cap in MiB; must fit the job's memory budget.
    #[arg(long, env = "GUEST_MEMORY_MIB", default_value_t = budget::DEFAULT_GUEST_MEMORY / budget::MIB, value_parser = number_setting::<u64>("GUEST_MEMORY_MIB"))]
    pub guest_memory: u64,
    /// Wall-time limit of one guest call, in milliseconds.
    #[arg(long, env = "GUEST_DEADLINE_MS", default_value_t = 10_000, value_parser = number_setting::<u64>("GUEST_DEADLINE_MS"))]
    pub guest_deadline_ms: u64,
    /// The job's whole memory budget in MiB (the container's limit).
    #[arg(long, env = "JOB_MEMORY_MIB", default_value_t = budget::DEFAULT_JOB_MEMORY_BUDGET / budget::MIB, value_parser = number_setting::<u64>("JOB_MEMORY_MIB"))]
    pub memory_budget: u64,
    /// Load this guest component instead of the built-in one.
    #[arg(long, env = "GUEST_COMPONENT")]
    pub guest: Option<PathBuf>,
    /// The plugin's settings, a JSON object of at most 16 KiB (contract 0.6.0 and later).
    #[arg(long, env = "GUEST_SETTINGS", value_parser = guest_settings)]
    pub guest_settings: Option<br_sandbox::GuestSettings>,
    /// Folder for compiled guests (default: BLUEPRINT_RUNNER_CACHE_DIR, else the user's cache).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Compile the guest on every start.
    #[arg(long)]
    pub no_cache: bool,
}

pub fn guest_settings(text: &str) -> Result<br_sandbox::GuestSettings, String> {
    br_sandbox::GuestSettings::parse(text).map_err(|error| error.to_string())
}

pub fn output_prefix(text: &str) -> Result<String, String> {
    match storage::folder_prefix_problem(text) {
        None => Ok(text.to_owned()),
        Some(problem) => Err(problem),
    }
}

impl SandboxFlags {
    /// The job's memory budget and its split; on failure the message (a usage error).
    pub fn budget(&self) -> Result<budget::JobBudget, String> {
        budget::JobBudget::new(
            self.memory_budget.saturating_mul(budget::MIB),
            self.guest_memory.saturating_mul(budget::MIB),
        )
        .map_err(|error| error.to_string())
    }
}

pub const DOWNLOAD_CONCURRENCY_MAX: u64 = 64;
pub const STORAGE_ATTEMPTS_MAX: u64 = 10;

/// Whole numbers and their allowed ranges (DB_PORT is the database settings' own). The
/// one table of them: clap's parsers ([`number_setting`]) read it, and `job`'s check at
/// start runs those parsers over the environment.
const NUMBERS: [(&str, u64, u64); 12] = [
    ("DOWNLOAD_CONCURRENCY", 1, DOWNLOAD_CONCURRENCY_MAX),
    ("STORAGE_MAX_ATTEMPTS", 1, STORAGE_ATTEMPTS_MAX),
    ("STORAGE_OBJECT_DEADLINE_SECS", 1, u64::MAX),
    ("STORAGE_FIRST_BACKOFF_MS", 0, 60_000),
    ("STEP_TIMEOUT_SECS", 1, u64::MAX),
    ("JOB_DEADLINE_SECS", 1, u64::MAX),
    ("GUEST_FUEL", 1, u64::MAX),
    ("GUEST_MEMORY_MIB", 1, u64::MAX),
    ("GUEST_DEADLINE_MS", 1, u64::MAX),
    ("JOB_MEMORY_MIB", 1, u64::MAX),
    ("STATUS_FLUSH_SECS", 1, 3_600),
    // Cloud Run sets it: 0 for a task's first attempt, then 1, 2... up to maxRetries (10 at most).
    ("CLOUD_RUN_TASK_ATTEMPT", 0, 10),
];

/// `text` as the whole number setting `name` (a name of [`NUMBERS`]) allows.
pub fn number(name: &str, text: &str) -> Result<u64, String> {
    let Some(&(_, min, max)) = NUMBERS.iter().find(|(known, _, _)| *known == name) else {
        return Err(format!("{name} is not a number setting"));
    };
    match text.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == u64::MAX => Err(format!("must be a whole number of at least {min}")),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}

/// A clap value parser for the number setting `name`, as type `T`.
pub fn number_setting<T: TryFrom<u64> + Clone + Send + Sync + 'static>(
    name: &'static str,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |text: &str| {
        let value = number(name, text)?;
        T::try_from(value).map_err(|_| format!("{value} is too large"))
    }
}

/// A blueprint file an author gives `plugin check` (`--blueprint FILE[:FRAMES]`).
#[derive(Debug, Clone)]
pub struct GivenBlueprint {
    pub path: PathBuf,
    /// How many frames the video it describes must have, when the author says.
    pub expected_frames: Option<u64>,
}

impl GivenBlueprint {
    /// `FILE`, or `FILE:FRAMES` when what follows the last colon is a whole number.
    pub fn parse(text: &str) -> Result<GivenBlueprint, String> {
        match text.rsplit_once(':') {
            Some((path, frames)) if !frames.is_empty() && frames.bytes().all(|b| b.is_ascii_digit()) => {
                if path.is_empty() {
                    return Err(format!("{text:?} names no file before its frame count"));
                }
                let frames: u64 = frames.parse().map_err(|e| format!("the frame count {frames:?}: {e}"))?;
                if frames == 0 {
                    return Err("a video has at least one frame: FILE:FRAMES takes a count from 1".into());
                }
                Ok(GivenBlueprint { path: PathBuf::from(path), expected_frames: Some(frames) })
            }
            _ => Ok(GivenBlueprint { path: PathBuf::from(text), expected_frames: None }),
        }
    }
}
