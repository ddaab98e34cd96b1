//! `blueprint-runner run`, `plan`, `job` and `prepare` (and task arrays of them): wiring
//! flags and the environment to a [`job::Job`], and its outcome to the status, stderr and
//! the exit code.

use std::time::Duration;

use br_status::{DbSettings, Delivery, JsonLines, LockState, LogOnly, PgStatus, Stage, StatusSink, TaskLock, TaskRow};

use crate::budget::watchdog::{self, Record, Watchdog};
use crate::cancel::Cancel;
use crate::cli::{JobFlags, StorageFlags};
use crate::input::{self, Loaded, Source};
use crate::job::{Failure, Job, JobConfig, Reporter};
use crate::storage::{GcsConfig, GcsStorage, LocalFolder, Storage, StorageError};
use crate::{config, exit, ffmpeg};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    Local,
    Gcs,
}

/// The storage backend's kind: `--storage`, else `USE_GCS`, else local.
pub(crate) fn storage_kind(flags: &StorageFlags) -> StorageKind {
    let use_gcs = std::env::var("USE_GCS").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    flags.kind.unwrap_or(if use_gcs { StorageKind::Gcs } else { StorageKind::Local })
}

/// The data folder: `--data-dir`, else `DATA_DIR` (clap reads both into the flag), else
/// `LOCAL_STORAGE_PATH` (the predecessor's name, which the backend's compose set-up
/// uses). The more specific name wins, as `BLUEPRINT_RUNNER_LOG` does over `LOG_LEVEL`.
fn data_dir(flags: &StorageFlags) -> Option<std::path::PathBuf> {
    let env = |name: &str| std::env::var(name).ok();
    flags.data_dir.clone().or_else(|| config::local_storage_path(&env).map(Into::into))
}

/// The storage backend the flags and environment ask for.
pub async fn open_storage(flags: &StorageFlags) -> Result<Box<dyn Storage>, String> {
    match storage_kind(flags) {
        StorageKind::Local => {
            let env = |name: &str| std::env::var(name).ok();
            if let Some(ignored) = config::ignored_local_storage_path(&env) {
                tracing::warn!("{ignored}");
            }
            let dir = data_dir(flags).ok_or("local storage needs --data-dir (or DATA_DIR, or LOCAL_STORAGE_PATH)")?;
            Ok(Box::new(LocalFolder::open(&dir, &flags.strip_prefix).map_err(|e| e.to_string())?))
        }
        StorageKind::Gcs => {
            let bucket = flags.bucket.clone().ok_or("GCS storage needs --bucket (or GCS_BUCKET_NAME)")?;
            Ok(Box::new(GcsStorage::connect(gcs_config(flags, bucket)).await.map_err(|e| e.to_string())?))
        }
    }
}

fn gcs_config(flags: &StorageFlags, bucket: String) -> GcsConfig {
    GcsConfig {
        emulator_host: std::env::var("STORAGE_EMULATOR_HOST").ok().filter(|h| !h.is_empty()),
        strip_prefix: flags.strip_prefix.clone(),
        object_prefix: flags.object_prefix.clone(),
        max_attempts: flags.storage_attempts,
        object_deadline: Duration::from_secs(flags.storage_deadline.max(1)),
        first_backoff: Duration::from_millis(flags.storage_backoff_ms),
        ..GcsConfig::new(bucket)
    }
}

/// The blueprint text from a file, stdin, `BLUEPRINT_JSON` or a `gs://` URI.
async fn read_blueprint(source: &Source, flags: &StorageFlags) -> Result<Loaded, String> {
    let Source::Uri(uri) = source else {
        return input::read(source).map_err(|e| format!("cannot read the blueprint from {}: {e}", source.describe()));
    };
    let (bucket, key) =
        crate::storage::parse_gs_uri(uri).ok_or_else(|| format!("{uri} is not a gs://BUCKET/KEY address"))?;
    // The blueprint's bucket may differ from the media's; the key is used as given.
    let config =
        GcsConfig { strip_prefix: String::new(), object_prefix: String::new(), ..gcs_config(flags, bucket.to_owned()) };
    let store = GcsStorage::connect(config).await.map_err(|e| e.to_string())?;
    let limit = br_blueprint::limits::MAX_BLUEPRINT_BYTES;
    match store.read_small(key, limit).await.map_err(|e| format!("cannot read the blueprint {uri}: {e}"))? {
        None => Ok(Loaded::TooLarge(limit as u64 + 1)),
        Some(bytes) => Ok(String::from_utf8(bytes).map(Loaded::Text).unwrap_or(Loaded::NotUtf8)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    PlanOnly,
}

/// `run` and `plan`: status lines on stdout (`run`) or in the log (`plan`).
pub async fn run(flags: JobFlags, mode: Mode) -> u8 {
    let cancel = Cancel::on_signals();
    let (mut lines, mut log_only) = (JsonLines, LogOnly);
    let sink: &mut dyn StatusSink = if mode == Mode::Run { &mut lines } else { &mut log_only };
    execute(&flags, mode, sink, Launch::standalone(), &cancel).await
}

/// `run --manifest`: a task array's share of a manifest, status lines on stdout.
pub async fn run_manifest(flags: JobFlags, manifest: &str) -> u8 {
    let cancel = Cancel::on_signals();
    task_array(&flags, manifest, STATUS_FLUSH_FOR_RUN, &cancel, false).await
}

/// `run` has no database: nothing to wait for at the end of an entry.
const STATUS_FLUSH_FOR_RUN: Duration = Duration::from_secs(1);

/// `plan --facts`: validate and plan from media facts given in a file, with no storage,
/// media or FFmpeg; the plan is checked against the policy and printed as `plan` prints
/// it. Exit codes as for `plan`: 2 invalid blueprint, 3 sandbox or policy, 4 no plan.
pub async fn plan_offline(flags: JobFlags, facts_path: &std::path::Path) -> u8 {
    let stop = |code: u8, message: String| {
        eprintln!("error: {message}");
        code
    };
    let text = match Source::choose(flags.file.as_deref()) {
        Ok(source) => match read_blueprint(&source, &flags.storage).await.map(Loaded::into_text) {
            Ok(Ok(text)) => text,
            Ok(Err(refusal)) => {
                return stop(exit::INVALID_BLUEPRINT, format!("{}: {}", refusal.pointer, refusal.message))
            }
            Err(message) => return stop(exit::USAGE, message),
        },
        Err(message) => return stop(exit::USAGE, message),
    };
    let sandbox = match flags.sandbox.try_load() {
        Ok(sandbox) => sandbox,
        Err((code, message)) => return stop(code, message),
    };
    let validated = match sandbox.validate(&text, &flags.check_options()).await.map(|validation| validation.verdict) {
        Ok(Ok(validated)) => validated,
        Ok(Err(refusal)) => {
            let listed = crate::job::list(refusal.errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str())));
            return stop(exit::INVALID_BLUEPRINT, format!("invalid blueprint: {listed}"));
        }
        Err(error) => return stop(exit::SANDBOX, error.to_string()),
    };
    let facts: Vec<br_plan::MediaFacts> = match read_facts(facts_path) {
        Ok(facts) => facts,
        Err(message) => return stop(exit::USAGE, format!("{}: {message}", facts_path.display())),
    };
    let expected: Vec<&str> =
        std::iter::once(validated.audio_key.as_str()).chain(validated.clip_keys.iter().map(String::as_str)).collect();
    if facts.len() != expected.len() {
        return stop(
            exit::USAGE,
            format!(
                "{} facts given; the blueprint has {} inputs, in this order: {}",
                facts.len(),
                expected.len(),
                expected.join(", ")
            ),
        );
    }
    let request = br_plan::PlanRequest {
        validated,
        inputs: facts,
        strict: flags.is_strict(),
        prepared: Vec::new(),
        song_loudness: None,
    };
    if let Some(path) = &flags.save_plan_request {
        if let Err(message) = crate::plan_request::write(path, &request) {
            return stop(exit::USAGE, message);
        }
    }
    let plan = match sandbox.plan(&request).await.map(|planning| planning.verdict) {
        Ok(Ok(plan)) => plan,
        Ok(Err(errors)) => {
            let listed = crate::job::list(errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str())));
            return stop(exit::MEDIA, format!("no plan: {listed}"));
        }
        Err(error) => return stop(exit::SANDBOX, error.to_string()),
    };
    let checked =
        match br_policy::check(&plan, request.inputs.len() as u32, &br_policy::PolicyLimits::for_request(&request)) {
            Ok(checked) => checked,
            Err(violation) => return stop(exit::SANDBOX, violation.to_string()),
        };
    let shown =
        serde_json::json!({ "task_id": request.validated.task_id, "inputs": request.inputs, "plan": checked.plan() });
    match serde_json::to_string_pretty(&shown) {
        Ok(text) => {
            println!("{text}");
            exit::OK
        }
        Err(error) => stop(exit::USAGE, error.to_string()),
    }
}

/// Media facts from a file, at most 1 MiB: a JSON list of `plan`'s `inputs` entries.
pub(crate) fn read_facts(path: &std::path::Path) -> Result<Vec<br_plan::MediaFacts>, String> {
    let bytes = input::read_small_file(path, 1024 * 1024)?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not a list of media facts: {e}"))
}

/// `job`: the container's entrypoint. Configuration comes from the environment and is
/// checked as a whole first; the status goes to the backend's row when a database is
/// configured, else to stdout.
pub async fn job(flags: JobFlags, task_id: Option<String>, status_flush: Duration) -> u8 {
    // First: a SIGTERM from here on is a clean stop, not the default death.
    let cancel = Cancel::on_signals();
    let env = |name: &str| std::env::var(name).ok();
    let problems = config::check_job_environment(&env, flags.file.is_some());
    if !problems.is_empty() {
        return refuse_configuration(&problems, status_flush).await;
    }
    if let Some(manifest) = env(crate::batch::MANIFEST_ENV).filter(|uri| !uri.is_empty()) {
        return task_array(&flags, &manifest, status_flush, &cancel, true).await;
    }
    if let Some(task_id) = &task_id {
        crate::logging::set_task_id(task_id);
    }
    let database = DbSettings::from_env(&env).ok().flatten();
    // Checked with the rest of the environment above.
    let attempt = env("CLOUD_RUN_TASK_ATTEMPT").and_then(|value| value.trim().parse().ok()).unwrap_or(0);
    let Some(database) = database else {
        tracing::info!("no database configured: status lines go to stdout, and there is no task lock (two executions of one task would both render it)");
        let launch = Launch { task_id, attempt, ..Launch::standalone() };
        return execute(&flags, Mode::Run, &mut JsonLines, launch, &cancel).await;
    };
    tracing::info!(database = %database.describe(), "status goes to choreography_tasks");
    let mut status = PgStatus::start(database.clone());
    let lock = LockSlot::default();
    let launch = Launch {
        task_id,
        database: Some(&database),
        row_patience: status_flush.min(ROW_CHECK_PATIENCE),
        attempt,
        manifest_position: None,
        blueprint_key: None,
        lock: Some(&lock),
    };
    let code = execute(&flags, Mode::Run, &mut status, launch, &cancel).await;
    // Cloud Run kills the container a few seconds after SIGTERM: keep the wait short then.
    let patience = if cancel.reason().is_some() { status_flush.min(CANCELLED_FLUSH) } else { status_flush };
    let code = settle(status.finish(patience).await, code);
    // Only now: until the last status is in the row, another execution must not start over.
    release(lock).await;
    code
}

/// `job` over a manifest: this task's share of its entries, one after another, each as
/// a single `job` with the entry's task id and blueprint (see [`crate::batch`]).
/// `database`: whether entries report to the task rows (`job`) or on stdout (`run`).
async fn task_array(
    flags: &JobFlags,
    manifest_uri: &str,
    status_flush: Duration,
    cancel: &Cancel,
    database: bool,
) -> u8 {
    let env = |name: &str| std::env::var(name).ok();
    let shard = match crate::prepare::Shard::from_cloud_run(&env) {
        Ok(shard) => shard.unwrap_or(crate::prepare::Shard::WHOLE),
        // Checked with the rest of the environment already.
        Err(_) => crate::prepare::Shard::WHOLE,
    };
    let entries = match check_manifest(flags, manifest_uri).await {
        Ok(entries) => entries,
        Err((code, message)) => {
            tracing::error!(manifest = manifest_uri, "the manifest is unusable, no entry runs: {message}");
            eprintln!("error: {manifest_uri}: {message}");
            return code;
        }
    };
    let mine = crate::batch::share(&entries, shard.index as usize, shard.count as usize);
    tracing::info!(
        manifest = manifest_uri,
        entries = entries.len(),
        this_task = mine.len(),
        "running this task's entries of the manifest"
    );
    let database = DbSettings::from_env(&env).ok().flatten().filter(|_| database);
    let attempt = env("CLOUD_RUN_TASK_ATTEMPT").and_then(|value| value.trim().parse().ok()).unwrap_or(0);
    let mut codes = Vec::with_capacity(mine.len());
    for entry in mine {
        if let Some(reason) = cancel.reason() {
            tracing::warn!("stopped before entry {} ({reason})", entry.position);
            codes.push(exit::CANCELLED);
            break;
        }
        crate::logging::set_task_id(&entry.task_id);
        let mut entry_flags = flags.clone();
        // A gs:// address is read as it is; a key through the job's own storage.
        let is_uri = entry.blueprint_uri.starts_with("gs://");
        entry_flags.file = is_uri.then(|| entry.blueprint_uri.clone());
        let launch = |database, lock| Launch {
            task_id: Some(entry.task_id.clone()),
            database,
            row_patience: status_flush.min(ROW_CHECK_PATIENCE),
            attempt,
            manifest_position: Some(entry.position),
            blueprint_key: (!is_uri).then(|| entry.blueprint_uri.clone()),
            lock,
        };
        let code = match &database {
            Some(database) => {
                let mut status = PgStatus::start(database.clone());
                // Each entry is its own task: its lock is held for the entry and released after it.
                let lock = LockSlot::default();
                let code =
                    run_entry(entry, &entry_flags, &mut status, launch(Some(database), Some(&lock)), cancel).await;
                let patience = if cancel.reason().is_some() { status_flush.min(CANCELLED_FLUSH) } else { status_flush };
                let code = settle(status.finish(patience).await, code);
                release(lock).await;
                code
            }
            None => run_entry(entry, &entry_flags, &mut JsonLines, launch(None, None), cancel).await,
        };
        tracing::info!(entry = entry.position, exit_code = code, "manifest entry done");
        codes.push(code);
    }
    let code = crate::batch::task_exit(&codes);
    let failed = codes.iter().filter(|&&c| c != exit::OK).count();
    tracing::info!(entries = codes.len(), failed, exit_code = code, "this task's entries are done");
    code
}

/// One entry of a manifest, as a single `job`; an entry with a problem fails without
/// running (its row says why, when its task id is usable).
async fn run_entry(
    entry: &crate::batch::Entry,
    flags: &JobFlags,
    sink: &mut dyn StatusSink,
    launch: Launch<'_>,
    cancel: &Cancel,
) -> u8 {
    match &entry.problem {
        Some((pointer, message)) => {
            let failure = Failure::ManifestEntry { pointer: pointer.clone(), message: message.clone() };
            let task_id = launch.task_id.filter(|id| crate::config::task_id_problem(id).is_none());
            fail(&mut Reporter::new(sink, task_id), Stage::Validate, failure)
        }
        None => execute(flags, Mode::Run, sink, launch, cancel).await,
    }
}

/// The manifest's entries, checked in the guest: the configured one when its contract
/// has `validate-manifest` (0.5.0), else the built-in one. On failure the exit code and
/// the message.
async fn check_manifest(flags: &JobFlags, manifest_uri: &str) -> Result<Vec<crate::batch::Entry>, (u8, String)> {
    let text =
        read_manifest(manifest_uri, &flags.storage).await.map_err(|message| (exit::INVALID_BLUEPRINT, message))?;
    let mut sandbox = flags.sandbox.try_load()?;
    if !sandbox.checks_manifests() {
        tracing::info!(
            contract = sandbox.contract_version(),
            "the plugin predates manifests: the built-in guest checks this one"
        );
        sandbox = crate::cli::SandboxFlags { guest: None, ..flags.sandbox.clone() }.try_load()?;
    }
    let check = sandbox.validate_manifest(&text).await.map_err(|error| (exit::SANDBOX, error.to_string()))?;
    match check.verdict {
        Ok(checked) => Ok(crate::batch::entries(checked)),
        Err(errors) => Err((
            exit::INVALID_BLUEPRINT,
            crate::job::list(errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str()))),
        )),
    }
}

/// An entry's blueprint named by a key in the job's own storage (as the backend names it,
/// `data/...`): read through the storage like every other key (a regular file under the
/// data folder, never through a symbolic link or from a FIFO; or the bucket's object),
/// at most [`br_blueprint::limits::MAX_BLUEPRINT_BYTES`] of it. A read the storage
/// refuses fails the entry at `pointer` (its `blueprint_uri`); only a storage that gave
/// up on transient errors fails it as storage (exit 6, retried). The message names the
/// key and why, never what the object holds.
async fn read_stored_blueprint(storage: &dyn Storage, key: &str, pointer: String) -> Result<Loaded, Failure> {
    let limit = br_blueprint::limits::MAX_BLUEPRINT_BYTES;
    match storage.read_small(key, limit).await {
        Ok(None) => Ok(Loaded::TooLarge(limit as u64 + 1)),
        Ok(Some(bytes)) => Ok(String::from_utf8(bytes).map(Loaded::Text).unwrap_or(Loaded::NotUtf8)),
        Err(error @ crate::storage::StorageError::GaveUp { .. }) => {
            Err(Failure::Storage { pointer: Some(pointer), error })
        }
        Err(error) => Err(Failure::ManifestEntry { pointer, message: format!("cannot read its blueprint: {error}") }),
    }
}

/// The manifest's text: a `gs://` object or a local file, at most
/// [`br_blueprint::manifest::MAX_MANIFEST_BYTES`] (a larger one is read only that far,
/// and the guest refuses it).
async fn read_manifest(uri: &str, flags: &StorageFlags) -> Result<String, String> {
    let limit = br_blueprint::manifest::MAX_MANIFEST_BYTES;
    let bytes = match crate::storage::parse_gs_uri(uri) {
        Some((bucket, key)) => {
            let config = GcsConfig {
                strip_prefix: String::new(),
                object_prefix: String::new(),
                ..gcs_config(flags, bucket.to_owned())
            };
            let store = GcsStorage::connect(config).await.map_err(|e| e.to_string())?;
            store
                .read_small(key, limit)
                .await
                .map_err(|e| e.to_string())?
                .ok_or(format!("larger than {limit} bytes"))?
        }
        None => input::read_small_file(std::path::Path::new(uri), limit as u64)?,
    };
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

/// Ends a job whose configuration is wrong: the message lists every problem, and the
/// task's row records it when the database settings and TASK_ID are themselves usable.
pub async fn refuse_configuration(problems: &[br_status::ConfigProblem], status_flush: Duration) -> u8 {
    let env = |name: &str| std::env::var(name).ok();
    let failure = Failure::Setup(config::describe(problems));
    let task_id = env("TASK_ID").filter(|id| config::task_id_problem(id).is_none());
    match (DbSettings::from_env(&env).ok().flatten(), task_id) {
        (Some(database), Some(task_id)) => {
            let mut status = PgStatus::start(database);
            let code = fail(&mut Reporter::new(&mut status, Some(task_id)), Stage::Validate, failure);
            settle(status.finish(status_flush.min(CANCELLED_FLUSH)).await, code)
        }
        (_, task_id) => fail(&mut Reporter::new(&mut JsonLines, task_id), Stage::Validate, failure),
    }
}

/// How long a cancelled job waits for the database before it exits anyway.
const CANCELLED_FLUSH: Duration = Duration::from_secs(5);
/// The longest the job waits at start to learn whether its task is done already.
const ROW_CHECK_PATIENCE: Duration = Duration::from_secs(10);

/// The exit code once the last status change is written, or is not.
/// A failed job keeps its own code; a successful one says that its status is missing.
fn settle(delivery: Delivery, code: u8) -> u8 {
    match delivery {
        Delivery::Written | Delivery::Nothing | Delivery::RowCompleted => return code,
        Delivery::RowMissing => {
            tracing::error!("the task's row is gone from choreography_tasks: its status is not recorded")
        }
        Delivery::Unrecorded { update, last_error } => {
            let update = serde_json::to_value(&*update).unwrap_or_default();
            tracing::error!(unrecorded_status = %update, "the database stayed unreachable; this status is not recorded: {last_error}");
        }
    }
    if code == exit::OK {
        exit::STATUS_UNRECORDED
    } else {
        code
    }
}

/// What the launcher said about the task.
pub(crate) struct Launch<'a> {
    /// TASK_ID, when given.
    task_id: Option<String>,
    database: Option<&'a DbSettings>,
    /// How long to wait for the database to say whether the task is done already.
    row_patience: Duration,
    /// Cloud Run's `CLOUD_RUN_TASK_ATTEMPT`: 0 for the first attempt.
    attempt: u32,
    /// The entry of a task array's manifest this job is, when it is one.
    manifest_position: Option<usize>,
    /// The entry's blueprint, when its manifest names it by a key in the job's storage.
    blueprint_key: Option<String>,
    /// Where the task's lock is kept once taken, so that it outlives the job's last
    /// status write (the caller releases it). None: no lock is taken.
    lock: Option<&'a LockSlot>,
}

/// The task's lock, from the claim until the caller has settled the last status.
pub(crate) type LockSlot = std::sync::Mutex<Option<TaskLock>>;

async fn release(slot: LockSlot) {
    let lock = slot.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(lock) = lock {
        lock.release().await;
    }
}

/// How this process names itself to an execution that finds the task taken: Cloud Run's
/// execution, else the process id.
fn lock_holder_name() -> String {
    match std::env::var("CLOUD_RUN_EXECUTION") {
        Ok(execution) if !execution.is_empty() => execution,
        _ => format!("pid {}", std::process::id()),
    }
}

/// Takes the task for this execution alone, then checks its row. `Err(code)`: stop
/// here with that code; the row has not been touched.
async fn claim(database: &DbSettings, task_id: &str, launch: &Launch<'_>) -> Result<(), u8> {
    if let Some(slot) = launch.lock {
        let mut lock = TaskLock::start(database.clone(), task_id, &lock_holder_name());
        match lock.settled(launch.row_patience).await {
            LockState::Held => {}
            LockState::HeldElsewhere(holder) => {
                tracing::warn!(
                    lock_key = lock.key(),
                    holder_execution = holder.who(),
                    holder_application_name = %holder.application_name,
                    holder_pid = holder.pid,
                    holder_since = %holder.backend_start,
                    holder_client = %holder.client_addr,
                    "another execution is working on this task ({}): this one renders nothing and leaves the row alone",
                    holder.who()
                );
                return Err(exit::OK);
            }
            LockState::KeyTaken(holder) => {
                let holder = holder
                    .map(|h| format!("pid {} '{}'", h.pid, h.application_name))
                    .unwrap_or_else(|| "a session that ended".into());
                tracing::warn!(
                    lock_key = lock.key(),
                    "the task's lock key is held by {holder}, which is not on this task: working without the lock"
                );
            }
            LockState::Pending { last_error } => {
                let why = last_error.unwrap_or_else(|| "no answer".into());
                tracing::warn!(
                    lock_key = lock.key(),
                    "cannot take the task lock within {} s ({why}): working on; it is taken as soon as the database answers",
                    launch.row_patience.as_secs()
                );
            }
        }
        let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Some(lock);
    }
    check_row(database, task_id, launch.row_patience, launch.attempt).await
}

impl Launch<'_> {
    /// `run`, `plan` and `memcheck`: no task id from outside, no database.
    pub(crate) fn standalone() -> Launch<'static> {
        Launch {
            task_id: None,
            database: None,
            row_patience: Duration::ZERO,
            attempt: 0,
            manifest_position: None,
            blueprint_key: None,
            lock: None,
        }
    }
}

/// Exit codes of failures that an attempt of the same task would only repeat: an invalid
/// blueprint, a guest or policy refusal, media that cannot serve the blueprint. Storage,
/// FFmpeg (a limit may be transient), the database and signals are retried.
pub(crate) const DETERMINISTIC_EXITS: [u8; 3] = [exit::INVALID_BLUEPRINT, exit::SANDBOX, exit::MEDIA];

/// The exit code a failed row's message records (`failed during fetch (exit 6)`).
fn recorded_exit(message: &str) -> Option<u8> {
    let (_, code) = message.rsplit_once("(exit ")?;
    code.strip_suffix(')')?.parse().ok()
}

/// Whether the job should go on, given its row. `attempt` is Cloud Run's
/// `CLOUD_RUN_TASK_ATTEMPT` (0 for the first).
async fn check_row(database: &DbSettings, task_id: &str, patience: Duration, attempt: u32) -> Result<(), u8> {
    match database.task_row(task_id, patience).await {
        Ok(TaskRow::Found { status, .. }) if status == "completed" => {
            tracing::info!("the task is completed already: nothing to do (its output stays as it is)");
            Err(exit::OK)
        }
        Ok(TaskRow::Found { status, message }) if attempt > 0 && status == "failed" => {
            match recorded_exit(&message).filter(|code| DETERMINISTIC_EXITS.contains(code)) {
                Some(code) => {
                    tracing::warn!(
                        attempt,
                        exit_code = code,
                        "an earlier attempt failed in a way this one would repeat ({message}): not retried"
                    );
                    Err(code)
                }
                None => Ok(()),
            }
        }
        Ok(TaskRow::Found { .. }) => Ok(()),
        Ok(TaskRow::Missing) => {
            let message = format!(
                "task '{task_id}' has no row in choreography_tasks (the backend creates it before it launches the job)"
            );
            tracing::error!("{message}");
            eprintln!("error: {message}");
            Err(exit::USAGE)
        }
        Err(error) => {
            // The work goes on: the writer keeps trying, and the guard in its UPDATE
            // keeps a completed row completed.
            tracing::warn!("cannot check the task's row: {error}; going on");
            Ok(())
        }
    }
}

async fn execute(flags: &JobFlags, mode: Mode, sink: &mut dyn StatusSink, launch: Launch<'_>, cancel: &Cancel) -> u8 {
    execute_recorded(flags, mode, sink, launch, cancel, watchdog::SAMPLE_EVERY).await.0
}

/// [`execute`], also returning what the memory watchdog recorded (none when the
/// budget itself is refused).
pub(crate) async fn execute_recorded(
    flags: &JobFlags,
    mode: Mode,
    sink: &mut dyn StatusSink,
    launch: Launch<'_>,
    cancel: &Cancel,
    sample_every: Duration,
) -> (u8, Option<Record>) {
    let budget = match flags.sandbox.budget() {
        Ok(budget) => budget,
        Err((code, message)) => {
            fail(&mut Reporter::new(sink, launch.task_id.clone()), Stage::Validate, Failure::Setup(message));
            return (code, None);
        }
    };
    budget.log();
    // The watchdog's stop ends this job (in a task array, this entry), not the task: the
    // entries after it still run; a signal reaches every entry through the parent.
    let cancel = &cancel.child();
    let watchdog = Watchdog::start(budget, cancel.clone(), sample_every);
    let code = execute_watched(flags, mode, sink, launch, cancel, &watchdog).await;
    (code, Some(watchdog.record()))
}

async fn execute_watched(
    flags: &JobFlags,
    mode: Mode,
    sink: &mut dyn StatusSink,
    launch: Launch<'_>,
    cancel: &Cancel,
    watchdog: &Watchdog,
) -> u8 {
    let mut reporter = Reporter::new(sink, launch.task_id.clone()).with_watchdog(watchdog);
    if let (Some(database), Some(task_id)) = (launch.database, &launch.task_id) {
        if let Err(code) = claim(database, task_id, &launch).await {
            return code;
        }
    }
    let source = match &launch.blueprint_key {
        Some(key) => Source::Key(key.clone()),
        None => match Source::choose(flags.file.as_deref()) {
            Ok(source) => source,
            Err(message) => return fail(&mut reporter, Stage::Validate, Failure::Setup(message)),
        },
    };
    let storage = match open_storage(&flags.storage).await {
        Ok(storage) => storage,
        Err(message) => return fail(&mut reporter, Stage::Validate, Failure::Setup(message)),
    };
    let sandbox = match flags.sandbox.try_load() {
        Ok(sandbox) => sandbox,
        Err((code, message)) => {
            let failure = Failure::Setup(message);
            fail(&mut reporter, Stage::Validate, failure);
            return code;
        }
    };
    let (ffmpeg_binary, ffprobe) = ffmpeg::binaries();
    let config = JobConfig {
        download_concurrency: usize::from(flags.storage.download_concurrency),
        work_root: flags.work_dir.clone().unwrap_or_else(std::env::temp_dir),
        strict: flags.is_strict(),
        check: flags.check_options(),
        ffprobe,
        runner: ffmpeg::Runner {
            ffmpeg: ffmpeg_binary,
            step_timeout: flags.step_timeout.map(Duration::from_secs),
            budget: watchdog.budget(),
            ledger: watchdog.ledger(),
            job_deadline: flags.job_deadline.map(Duration::from_secs),
            stall_limit: ffmpeg::STALL_LIMIT,
            parallel_steps: crate::schedule::default_parallelism(),
        },
        output_prefix: flags.storage.output_prefix.clone(),
        strip_prefix: flags.storage.strip_prefix.clone(),
        use_prepared: flags.prepared == crate::cli::Prepared::Auto,
        save_plan_request: flags.save_plan_request.clone(),
    };
    let deadline = std::sync::OnceLock::new();
    let job = Job { sandbox: &sandbox, storage: storage.as_ref(), config: &config, cancel, watchdog, deadline };

    let loaded = match &source {
        Source::Key(key) => {
            let pointer = format!("/{}/blueprint_uri", launch.manifest_position.unwrap_or(0));
            read_stored_blueprint(storage.as_ref(), key, pointer).await
        }
        _ => read_blueprint(&source, &flags.storage).await.map_err(Failure::Setup),
    };
    let text = match loaded {
        Ok(loaded) => match loaded.into_text() {
            Ok(text) => text,
            Err(refusal) => return fail(&mut reporter, Stage::Validate, Failure::Invalid(vec![refusal])),
        },
        Err(failure) => return fail(&mut reporter, Stage::Validate, failure),
    };
    let checked = match job.validate(&text, &mut reporter).await {
        Ok(checked) => checked,
        Err((stage, failure)) => return fail(&mut reporter, stage, failure),
    };
    let blueprint_task = checked.validated.task_id.clone();
    match (&launch.task_id, launch.database) {
        (Some(given), _) if *given != blueprint_task => {
            let (pointer, named_by) = match launch.manifest_position {
                Some(position) => (format!("/{position}/task_id"), "the manifest entry"),
                None => ("/task_id".to_owned(), "TASK_ID"),
            };
            let failure =
                Failure::TaskMismatch { pointer, named_by, environment: given.clone(), blueprint: blueprint_task };
            return fail(&mut reporter, Stage::Validate, failure);
        }
        (None, Some(database)) => {
            if let Err(code) = claim(database, &blueprint_task, &launch).await {
                return code;
            }
        }
        _ => {}
    }

    match mode {
        Mode::Run => match job.run(checked, &mut reporter).await {
            Ok(outcome) => {
                tracing::info!(output = %outcome.validated.output_key, timings = %outcome.timings, "job completed");
                exit::OK
            }
            Err((stage, failure)) => fail(&mut reporter, stage, failure),
        },
        Mode::PlanOnly => match job.prepare(checked, &mut reporter).await {
            Ok(prepared) => {
                let shown = serde_json::json!({
                    "task_id": prepared.validated.task_id,
                    "inputs": prepared.facts,
                    "plan": prepared.plan.plan(),
                });
                match serde_json::to_string_pretty(&shown) {
                    Ok(text) => println!("{text}"),
                    Err(error) => eprintln!("error: cannot print the plan: {error}"),
                }
                exit::OK
            }
            Err((stage, failure)) => fail(&mut reporter, stage, failure),
        },
    }
}

fn fail(reporter: &mut Reporter<'_>, stage: Stage, failure: Failure) -> u8 {
    tracing::error!(stage = stage.as_str(), "{failure}");
    reporter.failed(stage, &failure);
    eprintln!("error: {failure}");
    failure.exit_code()
}

/// `bench-fetch`: downloads keys into a fresh folder with the job's storage settings and
/// prints timings as JSON (used by `scripts/bench` and the streaming test).
pub async fn bench_fetch(flags: &StorageFlags, keys: &[String]) -> u8 {
    use futures::StreamExt;
    let storage = match open_storage(flags).await {
        Ok(storage) => storage,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::USAGE;
        }
    };
    let folder = match tempfile::tempdir() {
        Ok(folder) => folder,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::STORAGE;
        }
    };
    let started = std::time::Instant::now();
    let downloads = keys.iter().enumerate().map(|(index, key)| {
        let destination = folder.path().join(format!("object-{index}"));
        let storage = storage.as_ref();
        async move { storage.fetch(key, &destination, &crate::budget::ledger::Unbounded).await }
    });
    let results: Vec<_> =
        futures::stream::iter(downloads).buffer_unordered(usize::from(flags.download_concurrency)).collect().await;
    let seconds = started.elapsed().as_secs_f64();
    let mut bytes = 0;
    for result in results {
        match result {
            Ok(size) => bytes += size,
            Err(error) => {
                eprintln!("error: {error}");
                return exit::STORAGE;
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "objects": keys.len(),
            "bytes": bytes,
            "concurrency": flags.download_concurrency,
            "seconds": seconds,
            "mib_per_second": bytes as f64 / 1048576.0 / seconds.max(1e-9),
            "peak_rss_kib": peak_rss_kib(),
        })
    );
    exit::OK
}

/// This process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `prepare`: a blueprint's clips (or every clip under `--all PREFIX`) prepared at the
/// blueprint's (or the flags') output profile. The blueprint is validated in the guest
/// like any other; the clips are re-encoded by the host under the same policy and
/// limits as a job's steps.
pub async fn prepare(flags: JobFlags, options: crate::cli::PrepareFlags) -> u8 {
    let cancel = Cancel::on_signals();
    let fail = |code: u8, message: String| {
        tracing::error!("{message}");
        eprintln!("error: {message}");
        code
    };
    let env = |name: &str| std::env::var(name).ok();
    let shard = match (options.shard, crate::prepare::Shard::from_cloud_run(&env)) {
        (Some(shard), _) => shard,
        (None, Ok(Some(shard))) => shard,
        (None, Ok(None)) => crate::prepare::Shard::WHOLE,
        (None, Err(message)) => return fail(exit::USAGE, format!("CLOUD_RUN_TASK_INDEX/COUNT: {message}")),
    };
    let budget = match flags.sandbox.budget() {
        Ok(budget) => budget,
        Err((code, message)) => return fail(code, message),
    };
    let storage = match open_storage(&flags.storage).await {
        Ok(storage) => storage,
        Err(message) => return fail(exit::USAGE, message),
    };
    let work_root = flags.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let (ffmpeg_binary, ffprobe) = ffmpeg::binaries();
    let runner = ffmpeg::Runner {
        ffmpeg: ffmpeg_binary,
        step_timeout: flags.step_timeout.map(Duration::from_secs),
        budget,
        ledger: std::sync::Arc::new(crate::budget::ledger::Ledger::of(&budget)),
        job_deadline: flags.job_deadline.map(Duration::from_secs),
        stall_limit: ffmpeg::STALL_LIMIT,
        parallel_steps: crate::schedule::default_parallelism(),
    };
    let preparer = crate::prepare::Preparer {
        storage: storage.as_ref(),
        runner: &runner,
        ffprobe: &ffprobe,
        work_root: &work_root,
        cancel: &cancel,
    };
    let (profile, keys) = match &options.all {
        Some(prefix) => {
            if let Some(problem) = crate::storage::folder_prefix_problem(prefix) {
                return fail(exit::USAGE, format!("--all {prefix:?}: {problem}"));
            }
            let keys = match storage.list(prefix).await {
                Ok(keys) => crate::prepare::clips_among(keys, &flags.storage.strip_prefix),
                Err(error) => return fail(exit::STORAGE, format!("cannot list {prefix:?}: {error}")),
            };
            let rate = br_plan::FrameRate::from_fps(options.frame_rate.clamp(1.0, 120.0));
            (
                br_plan::prepare::Profile {
                    width: options.width,
                    height: options.height,
                    rate,
                    video_bitrate: options.video_bitrate,
                },
                keys,
            )
        }
        None => match blueprint_profile(&flags, &preparer, &work_root).await {
            Ok(found) => found,
            Err((code, message)) => return fail(code, message),
        },
    };
    preparer.prepare_all(&profile, &keys, shard).await
}

/// The profile and clips of the blueprint `prepare` was given, validated in the guest;
/// the first clip is probed when the blueprint does not give the output's size.
async fn blueprint_profile(
    flags: &JobFlags,
    preparer: &crate::prepare::Preparer<'_>,
    work_root: &std::path::Path,
) -> Result<(br_plan::prepare::Profile, Vec<String>), (u8, String)> {
    let source = Source::choose(flags.file.as_deref()).map_err(|message| (exit::USAGE, message))?;
    let text = read_blueprint(&source, &flags.storage).await.map_err(|message| (exit::USAGE, message))?;
    let text = text
        .into_text()
        .map_err(|refusal| (exit::INVALID_BLUEPRINT, format!("{}: {}", refusal.pointer, refusal.message)))?;
    let sandbox = flags.sandbox.try_load()?;
    let validation =
        sandbox.validate(&text, &flags.check_options()).await.map_err(|error| (exit::SANDBOX, error.to_string()))?;
    let validated = validation.verdict.map_err(|refusal| {
        let listed = crate::job::list(refusal.errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str())));
        (exit::INVALID_BLUEPRINT, format!("invalid blueprint: {listed}"))
    })?;
    let mut inputs =
        vec![br_plan::MediaFacts { key: validated.audio_key.clone(), duration: 0.0, video: None, audio: None }];
    inputs.extend(validated.clip_keys.iter().map(|key| br_plan::MediaFacts {
        key: key.clone(),
        duration: 0.0,
        video: None,
        audio: None,
    }));
    if validated.output.width.is_none() || validated.output.height.is_none() {
        if let Some(first) = validated.moves.first().map(|m| m.clip as usize) {
            let key = &validated.clip_keys[first.min(validated.clip_keys.len().saturating_sub(1))];
            let folder = tempfile::Builder::new()
                .prefix("blueprint-runner-prepare-")
                .tempdir_in(work_root)
                .map_err(|e| (exit::STORAGE, format!("work folder: {e}")))?;
            let file = folder.path().join("first-clip");
            let ledger = preparer.runner.ledger.as_ref();
            let probe_memory = crate::media::PROBE_MEMORY;
            let gate = crate::budget::ledger::Reserving::new(ledger, probe_memory, ledger.ceiling(probe_memory, 0));
            let fetched = preparer.storage.fetch(key, &file, &gate).await;
            fetched.map_err(|e| {
                (if matches!(e, StorageError::TooLarge { .. }) { exit::MEDIA } else { exit::STORAGE }, e.to_string())
            })?;
            gate.into_file(&file);
            let limits = ffmpeg::ChildLimits::reader(probe_memory, crate::media::PROBE_TIMEOUT);
            let facts = crate::media::probe(preparer.ffprobe, &file, key, limits).await;
            ledger.release_under(folder.path());
            let facts = facts.map_err(|e| (exit::MEDIA, e.to_string()))?;
            inputs[1 + first] = facts;
        }
    }
    let profile = br_plan::prepare::Profile::of(&validated, &inputs).ok_or_else(|| {
        (
            exit::USAGE,
            format!(
                "only libx264 outputs have prepared clips; this blueprint asks for {}",
                validated.output.video_codec
            ),
        )
    })?;
    Ok((profile, validated.clip_keys.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_rows_exit_code_is_read_back() {
        assert_eq!(recorded_exit("failed during probe (exit 4)"), Some(4));
        assert_eq!(recorded_exit("cancelled during encode (exit 8)"), Some(8));
        assert_eq!(recorded_exit("failed during fetch"), None);
        assert_eq!(recorded_exit("queued"), None);
        assert_eq!(recorded_exit("failed during x (exit 999)"), None);
        assert!(DETERMINISTIC_EXITS.iter().all(|code| ![exit::STORAGE, exit::FFMPEG, exit::CANCELLED].contains(code)));
    }
}
