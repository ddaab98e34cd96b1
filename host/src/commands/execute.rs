//! One job as a command runs it: claim the task, read and validate the blueprint, then
//! run or plan it under the memory watchdog, and report how it ended (the status, stderr
//! and the exit code). `run`, `plan`, `job`, task arrays and `memcheck` share it.

use std::time::Duration;

use br_status::{DbSettings, LockState, Stage, StatusSink, TaskLock, TaskRow};

use crate::blueprint_source::{self, Loaded, Source};
use crate::settings::{Settings, StorageSettings};
use br_engine::budget::watchdog::{self, Record, Watchdog};
use br_engine::cancel::Cancel;
use br_engine::exit;
use br_engine::job::{Failure, Job, Reporter};
use br_engine::storage::Storage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    PlanOnly,
}

/// The blueprint text from a file, stdin, `BLUEPRINT_JSON` or a `gs://` URI.
pub async fn read_blueprint(source: &Source, storage: &StorageSettings) -> Result<Loaded, String> {
    let Source::Uri(uri) = source else {
        return blueprint_source::read(source)
            .map_err(|e| format!("cannot read the blueprint from {}: {e}", source.describe()));
    };
    let (bucket, key) =
        br_engine::storage::parse_gs_uri(uri).ok_or_else(|| format!("{uri} is not a gs://BUCKET/KEY address"))?;
    let store = storage.open_address_bucket(bucket).await?;
    let limit = br_blueprint::limits::MAX_BLUEPRINT_BYTES;
    match store.read_small(key, limit).await.map_err(|e| format!("cannot read the blueprint {uri}: {e}"))? {
        None => Ok(Loaded::TooLarge(limit as u64 + 1)),
        Some(bytes) => Ok(String::from_utf8(bytes).map(Loaded::Text).unwrap_or(Loaded::NotUtf8)),
    }
}

/// An entry's blueprint named by a key in the job's own storage (as the backend names it,
/// `data/...`): read through the storage like every other key (a regular file under the
/// data folder, never through a symbolic link or from a FIFO; or the bucket's object),
/// at most [`br_blueprint::limits::MAX_BLUEPRINT_BYTES`] of it. A read the storage
/// refuses fails the entry at `pointer` (its `blueprint_uri`); only a storage that gave
/// up on transient errors fails it as storage (exit 6, retried). The message names the
/// key and why, never what the object holds.
pub async fn read_stored_blueprint(storage: &dyn Storage, key: &str, pointer: String) -> Result<Loaded, Failure> {
    let limit = br_blueprint::limits::MAX_BLUEPRINT_BYTES;
    match storage.read_small(key, limit).await {
        Ok(None) => Ok(Loaded::TooLarge(limit as u64 + 1)),
        Ok(Some(bytes)) => Ok(String::from_utf8(bytes).map(Loaded::Text).unwrap_or(Loaded::NotUtf8)),
        Err(error @ br_engine::storage::StorageError::GaveUp { .. }) => {
            Err(Failure::Storage { pointer: Some(pointer), error })
        }
        Err(error) => Err(Failure::ManifestEntry { pointer, message: format!("cannot read its blueprint: {error}") }),
    }
}

/// What the launcher said about the task.
pub struct Launch<'a> {
    /// TASK_ID, when given.
    pub task_id: Option<String>,
    pub database: Option<&'a DbSettings>,
    /// How long to wait for the database to say whether the task is done already.
    pub row_patience: Duration,
    /// Cloud Run's `CLOUD_RUN_TASK_ATTEMPT`: 0 for the first attempt.
    pub attempt: u32,
    /// The entry of a task array's manifest this job is, when it is one.
    pub manifest_position: Option<usize>,
    /// The entry's blueprint, when its manifest names it by a key in the job's storage.
    pub blueprint_key: Option<String>,
    /// Where the task's lock is kept once taken, so that it outlives the job's last
    /// status write (the caller releases it). None: no lock is taken.
    pub lock: Option<&'a LockSlot>,
}

/// The task's lock, from the claim until the caller has settled the last status.
pub type LockSlot = std::sync::Mutex<Option<TaskLock>>;

pub async fn release(slot: LockSlot) {
    let lock = slot.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(lock) = lock {
        lock.release().await;
    }
}

/// Takes the task for this execution alone, then checks its row. `Err(code)`: stop
/// here with that code; the row has not been touched.
async fn claim(database: &DbSettings, task_id: &str, launch: &Launch<'_>, holder: &str) -> Result<(), u8> {
    if let Some(slot) = launch.lock {
        let mut lock = TaskLock::start(database.clone(), task_id, holder);
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
    pub fn standalone() -> Launch<'static> {
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
            match recorded_exit(&message).filter(|code| exit::DETERMINISTIC.contains(code)) {
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

pub async fn execute(
    settings: &Settings,
    mode: Mode,
    sink: &mut dyn StatusSink,
    launch: Launch<'_>,
    cancel: &Cancel,
) -> u8 {
    execute_recorded(settings, mode, sink, launch, cancel, watchdog::SAMPLE_EVERY).await.0
}

/// A job that cannot start because its settings are refused (`message`): reported as
/// failed in validation, with the usage exit code.
pub fn refused(sink: &mut dyn StatusSink, task_id: Option<String>, message: String) -> u8 {
    fail(&mut Reporter::new(sink, task_id), Stage::Validate, Failure::Setup(message));
    exit::USAGE
}

/// [`execute`], also returning what the memory watchdog recorded.
pub async fn execute_recorded(
    settings: &Settings,
    mode: Mode,
    sink: &mut dyn StatusSink,
    launch: Launch<'_>,
    cancel: &Cancel,
    sample_every: Duration,
) -> (u8, Record) {
    settings.budget.log();
    // The watchdog's stop ends this job (in a task array, this entry), not the task: the
    // entries after it still run; a signal reaches every entry through the parent.
    let cancel = &cancel.child();
    let watchdog = Watchdog::start(settings.budget, cancel.clone(), sample_every);
    let code = execute_watched(settings, mode, sink, launch, cancel, &watchdog).await;
    (code, watchdog.record())
}

async fn execute_watched(
    settings: &Settings,
    mode: Mode,
    sink: &mut dyn StatusSink,
    launch: Launch<'_>,
    cancel: &Cancel,
    watchdog: &Watchdog,
) -> u8 {
    let mut reporter = Reporter::new(sink, launch.task_id.clone()).with_watchdog(watchdog);
    if let (Some(database), Some(task_id)) = (launch.database, &launch.task_id) {
        if let Err(code) = claim(database, task_id, &launch, &settings.lock_holder_name()).await {
            return code;
        }
    }
    let source = match &launch.blueprint_key {
        Some(key) => Source::Key(key.clone()),
        None => match settings.blueprint() {
            Ok(source) => source,
            Err(message) => return fail(&mut reporter, Stage::Validate, Failure::Setup(message)),
        },
    };
    let storage = match settings.storage.open().await {
        Ok(storage) => storage,
        Err(message) => return fail(&mut reporter, Stage::Validate, Failure::Setup(message)),
    };
    let sandbox = match settings.load_sandbox() {
        Ok(sandbox) => sandbox,
        Err((code, message)) => {
            let failure = Failure::Setup(message);
            fail(&mut reporter, Stage::Validate, failure);
            return code;
        }
    };
    let config = settings.job_config(watchdog.ledger());
    let deadline = std::sync::OnceLock::new();
    let job = Job { sandbox: &sandbox, storage: storage.as_ref(), config: &config, cancel, watchdog, deadline };

    let loaded = match &source {
        Source::Key(key) => {
            let pointer = format!("/{}/blueprint_uri", launch.manifest_position.unwrap_or(0));
            read_stored_blueprint(storage.as_ref(), key, pointer).await
        }
        _ => read_blueprint(&source, &settings.storage).await.map_err(Failure::Setup),
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
            if let Err(code) = claim(database, &blueprint_task, &launch, &settings.lock_holder_name()).await {
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

pub fn fail(reporter: &mut Reporter<'_>, stage: Stage, failure: Failure) -> u8 {
    tracing::error!(stage = stage.as_str(), "{failure}");
    reporter.failed(stage, &failure);
    eprintln!("error: {failure}");
    failure.exit_code()
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
        assert!(exit::DETERMINISTIC.iter().all(|code| ![exit::STORAGE, exit::FFMPEG, exit::CANCELLED].contains(code)));
    }
}
