//! The process's settings, resolved once: clap has read the flags with their environment
//! variables; the variables it cannot express (the `USE_GCS` switch, the
//! `LOCAL_STORAGE_PATH` alias, the emulator's address, Cloud Run's task variables, the
//! FFmpeg paths, the cache folder) are read here from one snapshot of the environment,
//! [`Environment`], the only read of it. The one place that builds the job's memory
//! budget, its storage, its sandbox and its FFmpeg runner.

mod environment;
pub mod log_filter;
mod sandbox;
mod storage;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use environment::{cloud_run_shard, Environment, FfmpegTools};
pub use sandbox::SandboxSettings;
pub use storage::{data_dir_variable, StorageSettings};

use crate::blueprint_source::Source;
use crate::cli::{AudioCache, JobFlags, Prepared, TimelineFlags};
use br_engine::budget::ledger::Ledger;
use br_engine::budget::JobBudget;
use br_engine::ffmpeg;
use br_engine::job::JobConfig;

/// Everything a job command runs with.
#[derive(Clone)]
pub struct Settings {
    /// Where the blueprint comes from: the FILE argument ('-' for stdin, or a `gs://`
    /// address), else `BLUEPRINT_JSON` or `BLUEPRINT_URI`; the usage error when none is set.
    blueprint: Result<Source, String>,
    pub storage: StorageSettings,
    /// The job's memory budget and its split, checked.
    pub budget: JobBudget,
    /// Where the job writes the plan request it hands to the guest (`--save-plan-request`).
    pub save_plan_request: Option<PathBuf>,
    work_root: PathBuf,
    timeline: TimelineFlags,
    step_timeout: Option<Duration>,
    job_deadline: Option<Duration>,
    use_prepared: bool,
    audio_cache: bool,
    sandbox: SandboxSettings,
    tools: FfmpegTools,
    /// Cloud Run's execution, which names this process to another that finds the task taken.
    execution: Option<String>,
}

impl Settings {
    /// The settings of `flags`; the message when the memory budget cannot be split.
    pub fn resolve(flags: JobFlags, env: &Environment) -> Result<Settings, String> {
        Ok(Settings {
            budget: flags.sandbox.budget()?,
            storage: StorageSettings::resolve(&flags.storage, env),
            blueprint: env.blueprint_source(flags.file.as_deref()),
            save_plan_request: flags.save_plan_request,
            work_root: flags.work_dir.unwrap_or_else(std::env::temp_dir),
            timeline: flags.timeline,
            step_timeout: flags.step_timeout.map(Duration::from_secs),
            job_deadline: flags.job_deadline.map(Duration::from_secs),
            use_prepared: flags.prepared == Prepared::Auto,
            audio_cache: flags.audio_cache == AudioCache::On,
            sandbox: SandboxSettings::resolve(flags.sandbox, env),
            tools: env.ffmpeg_tools(),
            execution: env.get("CLOUD_RUN_EXECUTION").filter(|name| !name.is_empty()),
        })
    }

    /// The same job with the blueprint at `address` (a task array's entry).
    pub fn with_blueprint(&self, address: &str) -> Settings {
        Settings { blueprint: Ok(Source::from_argument(address)), ..self.clone() }
    }

    /// Where the blueprint comes from; the usage error when nowhere.
    pub fn blueprint(&self) -> Result<Source, String> {
        self.blueprint.clone()
    }

    /// The ffprobe the job probes its media with.
    pub fn ffprobe(&self) -> &Path {
        &self.tools.ffprobe
    }

    /// How this process names itself to an execution that finds the task taken: Cloud
    /// Run's execution, else the process id.
    pub fn lock_holder_name(&self) -> String {
        self.execution.clone().unwrap_or_else(|| format!("pid {}", std::process::id()))
    }

    /// Plan warnings (a clip shorter than its slot...) fail the job.
    pub fn is_strict(&self) -> bool {
        self.timeline.is_strict()
    }

    /// How the guest checks this job's blueprint: its timeline flags, and its bucket when
    /// its storage is GCS (a `gs://` key in it names one of the job's own objects).
    pub fn check_options(&self) -> br_blueprint::CheckOptions {
        let storage = &self.storage.flags;
        self.timeline.check_options(self.storage.bucket(), &storage.strip_prefix, &storage.object_prefix)
    }

    /// Parent of the per-job work folder.
    pub fn work_root(&self) -> &Path {
        &self.work_root
    }

    /// The sandbox with the configured guest (the built-in one or a plugin), its memory
    /// cap the budget's; on failure the exit code and the message (not yet printed).
    pub fn load_sandbox(&self) -> Result<br_sandbox::Sandbox, (u8, String)> {
        self.sandbox.try_load_within(&self.budget)
    }

    /// The sandbox with the built-in guest, whatever the configured one.
    pub fn load_built_in_sandbox(&self) -> Result<br_sandbox::Sandbox, (u8, String)> {
        self.sandbox.with_guest(None).try_load_within(&self.budget)
    }

    /// The FFmpeg runner of the job's steps, charging the work folder to `ledger`.
    pub fn runner(&self, ledger: Arc<Ledger>) -> ffmpeg::Runner {
        ffmpeg::Runner {
            ffmpeg: self.tools.ffmpeg.clone(),
            step_timeout: self.step_timeout,
            budget: self.budget,
            ledger,
            job_deadline: self.job_deadline,
            stall_limit: ffmpeg::STALL_LIMIT,
            parallel_steps: br_engine::schedule::default_parallelism(),
        }
    }

    /// What a [`br_engine::job::Job`] runs with, its work folder charged to `ledger`.
    pub fn job_config(&self, ledger: Arc<Ledger>) -> JobConfig {
        JobConfig {
            download_concurrency: self.storage.download_concurrency(),
            work_root: self.work_root.clone(),
            strict: self.is_strict(),
            check: self.check_options(),
            ffprobe: self.tools.ffprobe.clone(),
            runner: self.runner(ledger),
            output_prefix: self.storage.flags.output_prefix.clone(),
            strip_prefix: self.storage.flags.strip_prefix.clone(),
            use_prepared: self.use_prepared,
            save_plan_request: self.save_plan_request.clone(),
            audio_cache: self.audio_cache,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{StorageFlags, StorageKind};

    #[test]
    fn the_blueprint_argument_wins_then_blueprint_json_then_blueprint_uri() {
        let both = Environment::of([("BLUEPRINT_JSON", "{}"), ("BLUEPRINT_URI", "gs://b/k.json")]);
        assert!(matches!(both.blueprint_source(Some("a.json")), Ok(Source::File(path)) if path == Path::new("a.json")));
        assert!(matches!(both.blueprint_source(Some("-")), Ok(Source::Stdin)));
        assert!(matches!(both.blueprint_source(None), Ok(Source::Env(text)) if text == b"{}"));
        let uri = Environment::of([("BLUEPRINT_URI", "gs://b/k.json")]);
        assert!(matches!(uri.blueprint_source(None), Ok(Source::Uri(address)) if address == "gs://b/k.json"));
        let empty_uri = Environment::of([("BLUEPRINT_URI", "")]);
        let refusal = empty_uri.blueprint_source(None).unwrap_err();
        assert!(refusal.contains("BLUEPRINT_JSON or BLUEPRINT_URI"), "{refusal}");
    }

    #[test]
    fn ffmpeg_and_ffprobe_come_from_their_variables_else_the_path() {
        let tools = Environment::of([("FFMPEG", "/opt/ff/ffmpeg")]).ffmpeg_tools();
        assert_eq!(tools.ffmpeg, Path::new("/opt/ff/ffmpeg"));
        assert_eq!(tools.ffprobe, Path::new("ffprobe"));
    }

    #[test]
    fn the_guest_cache_is_the_flag_then_its_variable_then_xdg_then_home_and_none_when_disabled() {
        let env = Environment::of([("BLUEPRINT_RUNNER_CACHE_DIR", "/c"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(env.guest_cache(Some("/f".into()), false).dir.as_deref(), Some(Path::new("/f")));
        assert_eq!(env.guest_cache(None, false).dir.as_deref(), Some(Path::new("/c")));
        assert_eq!(env.guest_cache(Some("/f".into()), true).dir, None);
        let xdg = Environment::of([("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(xdg.guest_cache(None, false).dir.as_deref(), Some(Path::new("/x/blueprint-runner")));
        let home = Environment::of([("HOME", "/h")]);
        assert_eq!(home.guest_cache(None, false).dir.as_deref(), Some(Path::new("/h/.cache/blueprint-runner")));
    }

    #[test]
    fn cloud_run_labels_keep_numbers_and_a_bounded_execution_name() {
        let long = "e".repeat(300);
        let env = Environment::of([
            ("CLOUD_RUN_TASK_INDEX", " 3 "),
            ("CLOUD_RUN_TASK_ATTEMPT", "x"),
            ("CLOUD_RUN_EXECUTION", long.as_str()),
        ]);
        let labels = env.cloud_run();
        assert_eq!(labels.task_index, Some(3));
        assert_eq!(labels.task_attempt, None);
        assert_eq!(labels.execution.map(|name| name.len()), Some(128));
    }

    #[test]
    fn use_gcs_and_the_local_storage_alias_resolve_the_storage() {
        let flags = StorageFlags {
            kind: None,
            data_dir: None,
            bucket: Some("b".into()),
            strip_prefix: "data/".into(),
            output_prefix: "output/".into(),
            object_prefix: String::new(),
            download_concurrency: 10,
            storage_attempts: 3,
            storage_deadline: 600,
            storage_backoff_ms: 250,
        };
        let gcs = StorageSettings::resolve(&flags, &Environment::of([("USE_GCS", "TRUE")]));
        assert_eq!(gcs.kind, StorageKind::Gcs);
        let local = StorageSettings::resolve(&flags, &Environment::of([("LOCAL_STORAGE_PATH", "/app/data")]));
        assert_eq!(local.kind, StorageKind::Local);
        assert_eq!(local.data_dir.as_deref(), Some(Path::new("/app/data")));
        let emulator = StorageSettings::resolve(&flags, &Environment::of([("STORAGE_EMULATOR_HOST", "")]));
        assert_eq!(emulator.emulator_host, None);
    }
}
