//! A job command's settings (`run`, `plan`, `job`, `prepare`, `memcheck`), resolved once:
//! clap has read the flags with their environment variables; the few variables it cannot
//! express (the `USE_GCS` switch, the `LOCAL_STORAGE_PATH` alias, the emulator's address)
//! are read here. The one place that builds the job's memory budget, its storage, its
//! sandbox and its FFmpeg runner.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::budget::ledger::Ledger;
use crate::budget::JobBudget;
use crate::cli::{JobFlags, Prepared, SandboxFlags, StorageFlags, StorageKind, TimelineFlags};
use crate::job::JobConfig;
use crate::storage::{GcsConfig, GcsStorage, LocalFolder, Storage};
use crate::{config, ffmpeg};

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
    pub fn resolve(flags: &StorageFlags) -> StorageSettings {
        let env = |name: &str| std::env::var(name).ok();
        // `job` refuses any other value at start (`config`); `run` reads anything else as no.
        let use_gcs = env("USE_GCS").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        StorageSettings {
            flags: flags.clone(),
            kind: flags.kind.unwrap_or(if use_gcs { StorageKind::Gcs } else { StorageKind::Local }),
            data_dir: flags.data_dir.clone().or_else(|| config::local_storage_path(&env).map(Into::into)),
            ignored_alias: config::ignored_local_storage_path(&env),
            emulator_host: env("STORAGE_EMULATOR_HOST").filter(|host| !host.is_empty()),
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
    /// The blueprint FILE argument ('-' for stdin, or a `gs://` address); None reads
    /// `BLUEPRINT_JSON` or `BLUEPRINT_URI`.
    pub blueprint: Option<String>,
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
    sandbox: SandboxFlags,
}

impl Settings {
    /// The settings of `flags`; the message when the memory budget cannot be split.
    pub fn resolve(flags: JobFlags) -> Result<Settings, String> {
        Ok(Settings {
            budget: flags.sandbox.budget()?,
            storage: StorageSettings::resolve(&flags.storage),
            blueprint: flags.file,
            save_plan_request: flags.save_plan_request,
            work_root: flags.work_dir.unwrap_or_else(std::env::temp_dir),
            timeline: flags.timeline,
            step_timeout: flags.step_timeout.map(Duration::from_secs),
            job_deadline: flags.job_deadline.map(Duration::from_secs),
            use_prepared: flags.prepared == Prepared::Auto,
            sandbox: flags.sandbox,
        })
    }

    /// The same job with the blueprint `file` (a task array's entry).
    pub fn with_blueprint(&self, file: Option<String>) -> Settings {
        Settings { blueprint: file, ..self.clone() }
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
        SandboxFlags { guest: None, ..self.sandbox.clone() }.try_load_within(&self.budget)
    }

    /// The FFmpeg runner of the job's steps, charging the work folder to `ledger`.
    pub fn runner(&self, ledger: Arc<Ledger>) -> ffmpeg::Runner {
        ffmpeg::Runner {
            ffmpeg: ffmpeg::binaries().0,
            step_timeout: self.step_timeout,
            budget: self.budget,
            ledger,
            job_deadline: self.job_deadline,
            stall_limit: ffmpeg::STALL_LIMIT,
            parallel_steps: crate::schedule::default_parallelism(),
        }
    }

    /// What a [`crate::job::Job`] runs with, its work folder charged to `ledger`.
    pub fn job_config(&self, ledger: Arc<Ledger>) -> JobConfig {
        JobConfig {
            download_concurrency: self.storage.download_concurrency(),
            work_root: self.work_root.clone(),
            strict: self.is_strict(),
            check: self.check_options(),
            ffprobe: ffmpeg::binaries().1,
            runner: self.runner(ledger),
            output_prefix: self.storage.flags.output_prefix.clone(),
            strip_prefix: self.storage.flags.strip_prefix.clone(),
            use_prepared: self.use_prepared,
            save_plan_request: self.save_plan_request.clone(),
        }
    }
}
