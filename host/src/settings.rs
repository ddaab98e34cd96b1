//! The process's settings, resolved once: clap has read the flags with their environment
//! variables; the variables it cannot express (the `USE_GCS` switch, the
//! `LOCAL_STORAGE_PATH` alias, the emulator's address, Cloud Run's task variables, the
//! FFmpeg paths, the cache folder) are read here from one snapshot of the environment,
//! [`Environment`], the only read of it. The one place that builds the job's memory
//! budget, its storage, its sandbox and its FFmpeg runner.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use br_sandbox::CacheConfig;

use crate::blueprint_source::Source;
use crate::cli::{JobFlags, Prepared, SandboxFlags, StorageFlags, StorageKind, TimelineFlags};
use crate::{config, guest};
use br_engine::budget::ledger::Ledger;
use br_engine::budget::JobBudget;
use br_engine::exit;
use br_engine::job::JobConfig;
use br_engine::storage::{GcsConfig, GcsStorage, LocalFolder, Storage};
use br_engine::{ffmpeg, logging};

/// The process's environment, read once at start. Everything below the entrance gets
/// the values it needs from here instead of reading variables itself, so a command's
/// inputs are its flags and this snapshot, and tests build one instead of setting
/// process-wide variables.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    variables: BTreeMap<String, OsString>,
}

impl Environment {
    /// The variables of this process (names that are not UTF-8 are no name we read).
    pub fn of_process() -> Environment {
        let variables =
            std::env::vars_os().filter_map(|(name, value)| Some((name.into_string().ok()?, value))).collect();
        Environment { variables }
    }

    /// An environment of exactly these variables.
    #[cfg(test)]
    pub fn of<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Environment {
        Environment { variables: pairs.into_iter().map(|(name, value)| (name.to_owned(), value.into())).collect() }
    }

    /// A variable's value as text; `None` when unset or not UTF-8, as `std::env::var`.
    pub fn get(&self, name: &str) -> Option<String> {
        self.variables.get(name).and_then(|value| value.to_str()).map(str::to_owned)
    }

    /// A variable's raw value (a blueprint that is not UTF-8 is refused as such, not unset).
    pub fn get_os(&self, name: &str) -> Option<&OsStr> {
        self.variables.get(name).map(OsString::as_os_str)
    }

    /// [`Self::get`] as the lookup the configuration checks take.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        |name| self.get(name)
    }

    /// The FFmpeg binaries: `FFMPEG` / `FFPROBE`, else the ones on PATH.
    pub fn ffmpeg_tools(&self) -> FfmpegTools {
        let pick = |var: &str, name: &str| self.get_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(name));
        FfmpegTools { ffmpeg: pick("FFMPEG", "ffmpeg"), ffprobe: pick("FFPROBE", "ffprobe") }
    }

    /// Which Cloud Run task and execution this process is (`CLOUD_RUN_TASK_INDEX`,
    /// `CLOUD_RUN_TASK_ATTEMPT`, `CLOUD_RUN_EXECUTION`), for every log line and the result.
    pub fn cloud_run(&self) -> logging::CloudRunLabels {
        let number = |name: &str| self.get(name).and_then(|v| v.trim().parse::<u64>().ok());
        logging::CloudRunLabels {
            task_index: number("CLOUD_RUN_TASK_INDEX"),
            task_attempt: number("CLOUD_RUN_TASK_ATTEMPT"),
            // Cloud Run's own name; bounded so a stray value cannot bloat every line.
            execution: self.get("CLOUD_RUN_EXECUTION").map(|name| name.chars().take(128).collect()),
        }
    }

    /// The log filter `BLUEPRINT_RUNNER_LOG` or `LOG_LEVEL` ask for, else `default_level`;
    /// an unknown level falls back to the default with a note.
    pub fn log_choice(&self, default_level: &str) -> logging::LogChoice {
        logging::filter_from_env(&self.lookup(), default_level).unwrap_or_else(|message| logging::LogChoice {
            directive: default_level.to_owned(),
            note: Some(format!("LOG_LEVEL: {message}; logging at {default_level}")),
        })
    }

    /// `--cache-dir`, else `BLUEPRINT_RUNNER_CACHE_DIR`, else the user's cache folder.
    fn guest_cache(&self, flag: Option<PathBuf>, disabled: bool) -> CacheConfig {
        if disabled {
            return CacheConfig { dir: None };
        }
        let dir = flag
            .or_else(|| self.get_os(guest::CACHE_ENV).map(PathBuf::from))
            .or_else(|| self.get_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("blueprint-runner")))
            .or_else(|| self.get_os("HOME").map(|d| PathBuf::from(d).join(".cache/blueprint-runner")));
        CacheConfig { dir }
    }
}

/// The FFmpeg and ffprobe a job runs.
#[derive(Debug, Clone)]
pub struct FfmpegTools {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
}

/// Which guest runs and under which limits: the sandbox flags with the cache folder the
/// environment names.
#[derive(Clone)]
pub struct SandboxSettings {
    flags: SandboxFlags,
    cache: CacheConfig,
}

impl SandboxSettings {
    pub fn resolve(flags: SandboxFlags, env: &Environment) -> SandboxSettings {
        let cache = env.guest_cache(flags.cache_dir.clone(), flags.no_cache);
        SandboxSettings { flags, cache }
    }

    /// The same limits with the guest at `path` instead of the configured one.
    pub fn with_guest(&self, path: Option<PathBuf>) -> SandboxSettings {
        SandboxSettings { flags: SandboxFlags { guest: path, ..self.flags.clone() }, cache: self.cache.clone() }
    }

    /// The configured plugin, if any.
    pub fn guest(&self) -> Option<&Path> {
        self.flags.guest.as_deref()
    }

    /// The job's memory budget and its split; on failure the message (a usage error).
    pub fn budget(&self) -> Result<JobBudget, String> {
        self.flags.budget()
    }

    /// The sandbox with the built-in guest or a plugin; on failure the exit code and the
    /// message (not yet printed).
    pub fn try_load(&self) -> Result<br_sandbox::Sandbox, (u8, String)> {
        let budget = self.budget().map_err(|message| (exit::USAGE, message))?;
        self.try_load_within(&budget)
    }

    /// [`Self::try_load`] with the guest's memory cap from a budget already resolved.
    pub fn try_load_within(&self, budget: &JobBudget) -> Result<br_sandbox::Sandbox, (u8, String)> {
        let limits = br_sandbox::Limits {
            fuel: self.flags.fuel,
            memory_bytes: budget.guest,
            deadline: Duration::from_millis(self.flags.guest_deadline_ms),
        };
        let choice = guest::GuestChoice { path: self.flags.guest.clone(), cache: self.cache.clone() };
        let sandbox = choice.load(limits).map_err(|error| {
            let code = match error {
                guest::LoadError::Read { .. } => exit::USAGE,
                guest::LoadError::Sandbox(_) => exit::SANDBOX,
            };
            (code, error.to_string())
        })?;
        // Settings for a guest that cannot take them are the operator's mistake: a usage error.
        sandbox.with_settings(self.flags.guest_settings.clone()).map_err(|error| (exit::USAGE, error.to_string()))
    }

    /// [`Self::try_load`], printing the error.
    pub fn load(&self) -> Result<br_sandbox::Sandbox, u8> {
        self.try_load().map_err(|(code, message)| {
            eprintln!("error: {message}");
            code
        })
    }
}

/// Where a job's objects live, resolved from `StorageFlags` and the environment.
#[derive(Clone)]
pub struct StorageSettings {
    flags: StorageFlags,
    kind: StorageKind,
    /// `--data-dir`, else `DATA_DIR` (clap reads both into the flag), else
    /// `LOCAL_STORAGE_PATH` (the predecessor's name, which the backend's compose set-up
    /// uses). The more specific name wins, as `BLUEPRINT_RUNNER_LOG` does over `LOG_LEVEL`.
    data_dir: Option<PathBuf>,
    /// The warning for a `LOCAL_STORAGE_PATH` that `DATA_DIR` overrides.
    ignored_alias: Option<String>,
    /// `STORAGE_EMULATOR_HOST`: a fake-gcs-server instead of Google's endpoint.
    emulator_host: Option<String>,
}

impl StorageSettings {
    pub fn resolve(flags: &StorageFlags, env: &Environment) -> StorageSettings {
        // `job` refuses any other value at start (`config`); `run` reads anything else as no.
        let use_gcs = env.get("USE_GCS").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        StorageSettings {
            flags: flags.clone(),
            kind: flags.kind.unwrap_or(if use_gcs { StorageKind::Gcs } else { StorageKind::Local }),
            data_dir: flags.data_dir.clone().or_else(|| config::local_storage_path(&env.lookup()).map(Into::into)),
            ignored_alias: config::ignored_local_storage_path(&env.lookup()),
            emulator_host: env.get("STORAGE_EMULATOR_HOST").filter(|host| !host.is_empty()),
        }
    }

    /// The job's own bucket, when its storage is GCS.
    pub fn bucket(&self) -> Option<&str> {
        match self.kind {
            StorageKind::Gcs => self.flags.bucket.as_deref(),
            StorageKind::Local => None,
        }
    }

    /// The backend's `data/` (`GCS_STRIP_PREFIX`), which names the storage's root.
    pub fn strip_prefix(&self) -> &str {
        &self.flags.strip_prefix
    }

    pub fn download_concurrency(&self) -> usize {
        usize::from(self.flags.download_concurrency).max(1)
    }

    /// The storage backend these settings name.
    pub async fn open(&self) -> Result<Box<dyn Storage>, String> {
        match self.kind {
            StorageKind::Local => {
                if let Some(ignored) = &self.ignored_alias {
                    tracing::warn!("{ignored}");
                }
                let dir = self
                    .data_dir
                    .as_ref()
                    .ok_or("local storage needs --data-dir (or DATA_DIR, or LOCAL_STORAGE_PATH)")?;
                Ok(Box::new(LocalFolder::open(dir, &self.flags.strip_prefix).map_err(|e| e.to_string())?))
            }
            StorageKind::Gcs => {
                let bucket = self.flags.bucket.clone().ok_or("GCS storage needs --bucket (or GCS_BUCKET_NAME)")?;
                Ok(Box::new(GcsStorage::connect(self.gcs(bucket)).await.map_err(|e| e.to_string())?))
            }
        }
    }

    /// A reader of one `gs://BUCKET/KEY` address (a blueprint, a manifest): the bucket may
    /// differ from the media's, and the key is used as given, with the job's retry policy.
    pub async fn open_address_bucket(&self, bucket: &str) -> Result<GcsStorage, String> {
        let config = GcsConfig { strip_prefix: String::new(), object_prefix: String::new(), ..self.gcs(bucket.into()) };
        GcsStorage::connect(config).await.map_err(|e| e.to_string())
    }

    fn gcs(&self, bucket: String) -> GcsConfig {
        GcsConfig {
            emulator_host: self.emulator_host.clone(),
            strip_prefix: self.flags.strip_prefix.clone(),
            object_prefix: self.flags.object_prefix.clone(),
            max_attempts: self.flags.storage_attempts,
            object_deadline: Duration::from_secs(self.flags.storage_deadline.max(1)),
            first_backoff: Duration::from_millis(self.flags.storage_backoff_ms),
            ..GcsConfig::new(bucket)
        }
    }
}

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
            blueprint: Source::choose(flags.file.as_deref(), env),
            save_plan_request: flags.save_plan_request,
            work_root: flags.work_dir.unwrap_or_else(std::env::temp_dir),
            timeline: flags.timeline,
            step_timeout: flags.step_timeout.map(Duration::from_secs),
            job_deadline: flags.job_deadline.map(Duration::from_secs),
            use_prepared: flags.prepared == Prepared::Auto,
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blueprint_argument_wins_then_blueprint_json_then_blueprint_uri() {
        let both = Environment::of([("BLUEPRINT_JSON", "{}"), ("BLUEPRINT_URI", "gs://b/k.json")]);
        assert!(matches!(Source::choose(Some("a.json"), &both), Ok(Source::File(path)) if path == Path::new("a.json")));
        assert!(matches!(Source::choose(Some("-"), &both), Ok(Source::Stdin)));
        assert!(matches!(Source::choose(None, &both), Ok(Source::Env(text)) if text == b"{}"));
        let uri = Environment::of([("BLUEPRINT_URI", "gs://b/k.json")]);
        assert!(matches!(Source::choose(None, &uri), Ok(Source::Uri(address)) if address == "gs://b/k.json"));
        let empty_uri = Environment::of([("BLUEPRINT_URI", "")]);
        let refusal = Source::choose(None, &empty_uri).unwrap_err();
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
