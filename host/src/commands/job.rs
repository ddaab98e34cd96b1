//! `blueprint-runner job`, the container's entrypoint, and task arrays (`job` and
//! `run --manifest` over a manifest's entries): the environment checked as a whole, the
//! status in the backend's row or on stdout, the last status written before the exit.

use std::time::Duration;

use br_status::{DbSettings, Delivery, JsonLines, PgStatus, Stage, StatusSink};

use crate::cli::JobFlags;
use crate::commands::execute::{self, Launch, LockSlot, Mode};
use crate::config;
use crate::settings::{Environment, Settings, StorageSettings};
use br_engine::cancel::Cancel;
use br_engine::exit;
use br_engine::job::{Failure, Reporter};
use br_engine::storage::Storage;

/// `job`: the container's entrypoint. Configuration comes from the environment and is
/// checked as a whole first; the status goes to the backend's row when a database is
/// configured, else to stdout.
pub async fn job(flags: JobFlags, task_id: Option<String>, status_flush: Duration, env: &Environment) -> u8 {
    // First: a SIGTERM from here on is a clean stop, not the default death.
    let cancel = Cancel::on_signals();
    let problems = config::check_job_environment(&env.lookup(), flags.file.is_some());
    if !problems.is_empty() {
        return refuse_configuration(&problems, status_flush, env).await;
    }
    // The memory budget was checked with the rest of the environment.
    let settings = match Settings::resolve(flags, env) {
        Ok(settings) => settings,
        Err(message) => return execute::refused(&mut JsonLines, task_id, message),
    };
    if let Some(manifest) = env.get(crate::blueprint_source::MANIFEST_ENV).filter(|uri| !uri.is_empty()) {
        return task_array(&settings, &manifest, status_flush, &cancel, true, env).await;
    }
    if let Some(task_id) = &task_id {
        br_engine::logging::set_task_id(task_id);
    }
    let database = DbSettings::from_env(&env.lookup()).ok().flatten();
    // Checked with the rest of the environment above.
    let attempt = task_attempt(env);
    let Some(database) = database else {
        tracing::info!("no database configured: status lines go to stdout, and there is no task lock (two executions of one task would both render it)");
        let launch = Launch { task_id, attempt, ..Launch::standalone() };
        return execute::execute(&settings, Mode::Run, &mut JsonLines, launch, &cancel).await;
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
    let code = execute::execute(&settings, Mode::Run, &mut status, launch, &cancel).await;
    // Cloud Run kills the container a few seconds after SIGTERM: keep the wait short then.
    let patience = if cancel.reason().is_some() { status_flush.min(CANCELLED_FLUSH) } else { status_flush };
    let code = settle(status.finish(patience).await, code);
    // Only now: until the last status is in the row, another execution must not start over.
    execute::release(lock).await;
    code
}

/// `job` over a manifest: this task's share of its entries, one after another, each as
/// a single `job` with the entry's task id and blueprint (see [`crate::task_array`]).
/// `database`: whether entries report to the task rows (`job`) or on stdout (`run`).
pub async fn task_array(
    settings: &Settings,
    manifest_uri: &str,
    status_flush: Duration,
    cancel: &Cancel,
    database: bool,
    env: &Environment,
) -> u8 {
    let shard = match crate::settings::cloud_run_shard(&env.lookup()) {
        Ok(shard) => shard.unwrap_or(br_engine::prepare::Shard::WHOLE),
        // Checked with the rest of the environment already.
        Err(_) => br_engine::prepare::Shard::WHOLE,
    };
    let entries = match check_manifest(settings, manifest_uri).await {
        Ok(entries) => entries,
        Err((code, message)) => {
            tracing::error!(manifest = manifest_uri, "the manifest is unusable, no entry runs: {message}");
            eprintln!("error: {manifest_uri}: {message}");
            return code;
        }
    };
    let mine = crate::task_array::share(&entries, shard.index as usize, shard.count as usize);
    tracing::info!(
        manifest = manifest_uri,
        entries = entries.len(),
        this_task = mine.len(),
        "running this task's entries of the manifest"
    );
    let database = DbSettings::from_env(&env.lookup()).ok().flatten().filter(|_| database);
    let attempt = task_attempt(env);
    let mut codes = Vec::with_capacity(mine.len());
    for entry in mine {
        if let Some(reason) = cancel.reason() {
            tracing::warn!("stopped before entry {} ({reason})", entry.position);
            codes.push(exit::CANCELLED);
            break;
        }
        br_engine::logging::set_task_id(&entry.task_id);
        // A gs:// address is read as it is; a key through the job's own storage.
        let is_uri = entry.blueprint_uri.starts_with("gs://");
        let entry_settings = if is_uri { settings.with_blueprint(&entry.blueprint_uri) } else { settings.clone() };
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
                    run_entry(entry, &entry_settings, &mut status, launch(Some(database), Some(&lock)), cancel).await;
                let patience = if cancel.reason().is_some() { status_flush.min(CANCELLED_FLUSH) } else { status_flush };
                let code = settle(status.finish(patience).await, code);
                execute::release(lock).await;
                code
            }
            None => run_entry(entry, &entry_settings, &mut JsonLines, launch(None, None), cancel).await,
        };
        tracing::info!(entry = entry.position, exit_code = code, "manifest entry done");
        codes.push(code);
    }
    let code = crate::task_array::task_exit(&codes);
    let failed = codes.iter().filter(|&&c| c != exit::OK).count();
    tracing::info!(entries = codes.len(), failed, exit_code = code, "this task's entries are done");
    code
}

/// One entry of a manifest, as a single `job`; an entry with a problem fails without
/// running (its row says why, when its task id is usable).
async fn run_entry(
    entry: &crate::task_array::Entry,
    settings: &Settings,
    sink: &mut dyn StatusSink,
    launch: Launch<'_>,
    cancel: &Cancel,
) -> u8 {
    match &entry.problem {
        Some((pointer, message)) => {
            let failure = Failure::ManifestEntry { pointer: pointer.clone(), message: message.clone() };
            let task_id = launch.task_id.filter(|id| crate::config::task_id_problem(id).is_none());
            execute::fail(&mut Reporter::new(sink, task_id), Stage::Validate, failure)
        }
        None => execute::execute(settings, Mode::Run, sink, launch, cancel).await,
    }
}

/// The manifest's entries, checked in the guest: the configured one when its contract
/// has `validate-manifest` (0.5.0), else the built-in one. On failure the exit code and
/// the message.
async fn check_manifest(
    settings: &Settings,
    manifest_uri: &str,
) -> Result<Vec<crate::task_array::Entry>, (u8, String)> {
    let text =
        read_manifest(manifest_uri, &settings.storage).await.map_err(|message| (exit::INVALID_BLUEPRINT, message))?;
    let mut sandbox = settings.load_sandbox()?;
    if !sandbox.checks_manifests() {
        tracing::info!(
            contract = sandbox.contract_version(),
            "the plugin predates manifests: the built-in guest checks this one"
        );
        sandbox = settings.load_built_in_sandbox()?;
    }
    let check = sandbox.validate_manifest(&text).await.map_err(|error| (exit::SANDBOX, error.to_string()))?;
    match check.verdict {
        Ok(checked) => Ok(crate::task_array::entries(checked)),
        Err(errors) => Err((
            exit::INVALID_BLUEPRINT,
            br_engine::job::list(errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str()))),
        )),
    }
}

/// The manifest's text: a `gs://` object or a local file, at most
/// [`br_blueprint::manifest::MAX_MANIFEST_BYTES`] (a larger one is read only that far,
/// and the guest refuses it).
async fn read_manifest(uri: &str, storage: &StorageSettings) -> Result<String, String> {
    let limit = br_blueprint::manifest::MAX_MANIFEST_BYTES;
    let bytes = match br_engine::storage::parse_gs_uri(uri) {
        Some((bucket, key)) => {
            let store = storage.open_address_bucket(bucket).await?;
            store
                .read_small(key, limit)
                .await
                .map_err(|e| e.to_string())?
                .ok_or(format!("larger than {limit} bytes"))?
        }
        None => {
            br_engine::files::read_small_file(std::path::Path::new(uri), limit as u64).map_err(|e| e.to_string())?
        }
    };
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

/// Ends a job whose configuration is wrong: the message lists every problem, and the
/// task's row records it when the database settings and TASK_ID are themselves usable.
pub async fn refuse_configuration(
    problems: &[br_status::ConfigProblem],
    status_flush: Duration,
    env: &Environment,
) -> u8 {
    let failure = Failure::Setup(config::describe(problems));
    let task_id = env.get("TASK_ID").filter(|id| config::task_id_problem(id).is_none());
    match (DbSettings::from_env(&env.lookup()).ok().flatten(), task_id) {
        (Some(database), Some(task_id)) => {
            let mut status = PgStatus::start(database);
            let code = execute::fail(&mut Reporter::new(&mut status, Some(task_id)), Stage::Validate, failure);
            settle(status.finish(status_flush.min(CANCELLED_FLUSH)).await, code)
        }
        (_, task_id) => execute::fail(&mut Reporter::new(&mut JsonLines, task_id), Stage::Validate, failure),
    }
}

/// Cloud Run's `CLOUD_RUN_TASK_ATTEMPT`: 0 for the first attempt (and when unset; a
/// value that is not a number was refused with the rest of the environment).
fn task_attempt(env: &Environment) -> u32 {
    env.get("CLOUD_RUN_TASK_ATTEMPT").and_then(|value| value.trim().parse().ok()).unwrap_or(0)
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
