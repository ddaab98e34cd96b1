//! One execution per task: a session-level PostgreSQL advisory lock on the task id, held
//! on a connection of its own for as long as the job works on the task.
//!
//! The backend can start up to three executions of one task (it waits on the `run_job`
//! operation, which completes when the execution *ends*, and launches again after 30 s;
//! see `docs/BACKEND.md`). The first execution to take the lock renders; one that finds
//! it held by an execution of the same task renders nothing, leaves the row alone and
//! exits 0.
//!
//! **Key**: the first 8 bytes of SHA-256(`blueprint-runner task ` + task id), a signed
//! big-endian `bigint` ([`lock_key`]; in SQL, [`KEY_SQL`]). Two task ids share a key with
//! a chance of about n²/2⁶⁵ for n tasks at work at once (3·10⁻¹² for 10,000). Even then no
//! task is skipped wrongly: a held key means "this task is taken" only when the session
//! holding it names this very task in its `application_name` (`br <task id> <who>`);
//! any other holder (a collision, another program's lock) and the job goes on without
//! the lock, as it did before there was one.
//!
//! **Lifetime**: a session lock ends with its session, so with the process however it
//! ends (SIGKILL included: the server sees the socket close). A connection that drops
//! mid-job loses the lock: that is logged (`ERROR`), the job keeps working (its output is
//! the same bytes whoever makes it, and the row's guard keeps a completed row completed)
//! and the lock is taken again as soon as the database answers; if another execution of
//! the task took it in between, that is logged too and both finish.
//!
//! Needs a direct session (Cloud SQL's connector, or PgBouncer in *session* mode): a
//! transaction-mode pooler would hand the lock to whichever client next uses the server
//! connection. No privilege beyond `CONNECT` is needed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::postgres::{retry_schedule, within_limit, DbError, DbSettings};

/// Hashed with the task id, so that the key space is this program's own by construction.
const KEY_NAMESPACE: &str = "blueprint-runner task ";

/// [`lock_key`] in SQL, with the task id as `$1`: how an operator finds who works on a
/// task (`SELECT pid, application_name FROM pg_locks JOIN pg_stat_activity USING (pid)
/// WHERE locktype = 'advisory' AND objsubid = 1 AND ...`).
pub const KEY_SQL: &str =
    "('x' || left(encode(sha256(convert_to('blueprint-runner task ' || $1, 'UTF8')), 'hex'), 16))::bit(64)::bigint";

/// PostgreSQL keeps this many bytes of `application_name`.
const APPLICATION_NAME_BYTES: usize = 63;
/// How often the held lock's connection is checked, so a silent drop is noticed.
const HEARTBEAT: Duration = Duration::from_secs(20);
/// How long a release waits for the server to acknowledge the unlock.
const RELEASE_PATIENCE: Duration = Duration::from_secs(2);

/// The task's advisory-lock key.
pub fn lock_key(task_id: &str) -> i64 {
    let digest = Sha256::digest(format!("{KEY_NAMESPACE}{task_id}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// `br <task id> <who>`, cut to what PostgreSQL keeps: the task id (at most 36 bytes)
/// always fits whole; `who` (an execution name) may be cut.
pub fn application_name(task_id: &str, who: &str) -> String {
    let text: String =
        format!("br {task_id} {who}").chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    text.chars().take(APPLICATION_NAME_BYTES).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot connect for the task lock: {0}")]
    Connect(#[source] DbError),
    #[error("the task lock's statement failed: {0}")]
    Statement(#[source] DbError),
}

/// The session that holds a task's key, as `pg_locks` and `pg_stat_activity` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The server process of that session.
    pub pid: i32,
    /// Empty when the server does not show it to this role.
    pub application_name: String,
    /// When that session connected (UTC, RFC 3339), empty when not shown.
    pub backend_start: String,
    /// Its client's address, empty for a unix socket or when not shown.
    pub client_addr: String,
}

impl Holder {
    /// Whether that session says it works on `task_id`.
    pub fn on_task(&self, task_id: &str) -> bool {
        let mut words = self.application_name.split(' ');
        words.next() == Some("br") && words.next() == Some(task_id)
    }

    /// Who it says it is: the execution (or `pid N`) after the task id.
    pub fn who(&self) -> &str {
        self.application_name.splitn(3, ' ').nth(2).unwrap_or("")
    }
}

/// Where the claim stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// No answer yet (connecting, or retrying after `last_error`).
    Pending { last_error: Option<String> },
    /// This process holds the task.
    Held,
    /// An execution of this same task holds it.
    HeldElsewhere(Holder),
    /// The key is held by a session that is not on this task (another task's id with the
    /// same hash, or another program): no lock, and no reason to stop.
    KeyTaken(Option<Holder>),
}

/// The claim on one task. Dropping it ends its session (and so the lock) at once;
/// [`TaskLock::release`] unlocks first and waits for the server to say so.
pub struct TaskLock {
    key: i64,
    state: watch::Receiver<LockState>,
    release: Option<oneshot::Sender<()>>,
    guard: Option<JoinHandle<()>>,
    /// Set once the job goes on with the task: from then on, finding the task held by
    /// another execution means two are at work, which the guard must say loudly.
    working: Arc<AtomicBool>,
}

impl TaskLock {
    /// Starts claiming the task in the background: connecting, taking the lock, and
    /// holding it (retaking it after a dropped connection) until released or dropped.
    pub fn start(settings: DbSettings, task_id: &str, who: &str) -> TaskLock {
        let key = lock_key(task_id);
        let (state_sender, state) = watch::channel(LockState::Pending { last_error: None });
        let (release_sender, release) = oneshot::channel();
        let working = Arc::new(AtomicBool::new(false));
        let claim = Claim {
            settings,
            task_id: task_id.to_owned(),
            key,
            name: application_name(task_id, who),
            state: state_sender,
            working: working.clone(),
        };
        let guard = tokio::spawn(claim.run(release));
        TaskLock { key, state, release: Some(release_sender), guard: Some(guard), working }
    }

    pub fn key(&self) -> i64 {
        self.key
    }

    /// The first answer, waiting at most `patience`; `Pending` when there is none yet
    /// (the claim goes on in the background). Unless the task is held elsewhere, the
    /// caller is taken to go on working from here.
    pub async fn settled(&mut self, patience: Duration) -> LockState {
        let _ =
            tokio::time::timeout(patience, self.state.wait_for(|state| !matches!(state, LockState::Pending { .. })))
                .await;
        let state = self.state.borrow().clone();
        if !matches!(state, LockState::HeldElsewhere(_)) {
            self.working.store(true, Ordering::SeqCst);
        }
        state
    }

    /// Unlocks and closes the session; waits at most [`RELEASE_PATIENCE`].
    pub async fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        if let Some(guard) = self.guard.take() {
            let abort = guard.abort_handle();
            if tokio::time::timeout(RELEASE_PATIENCE, guard).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for TaskLock {
    fn drop(&mut self) {
        // Aborting drops the client: its connection closes, and the server ends the lock.
        if let Some(guard) = &self.guard {
            guard.abort();
        }
    }
}

struct Claim {
    settings: DbSettings,
    task_id: String,
    key: i64,
    name: String,
    state: watch::Sender<LockState>,
    working: Arc<AtomicBool>,
}

enum Taken {
    Held(Client, JoinHandle<()>),
    Busy(Holder),
    Foreign(Option<Holder>),
}

impl Claim {
    async fn run(self, mut release: oneshot::Receiver<()>) {
        use backon::BackoffBuilder;
        let mut delays = retry_schedule().build();
        let mut lost = false;
        loop {
            let attempt = tokio::select! {
                _ = &mut release => return,
                attempt = self.try_take() => attempt,
            };
            match attempt {
                Ok(Taken::Held(client, driver)) => {
                    if lost {
                        tracing::warn!(lock_key = self.key, "took the task lock again");
                    } else {
                        tracing::info!(lock_key = self.key, application_name = %self.name, "took the task lock: this execution works on the task");
                    }
                    self.state.send_replace(LockState::Held);
                    delays = retry_schedule().build();
                    match hold(client, driver, self.key, &mut release).await {
                        None => return,
                        Some(reason) => {
                            lost = true;
                            tracing::error!(lock_key = self.key, "lost the task lock ({reason}): working on, and taking it again when the database answers");
                            self.state.send_replace(LockState::Pending { last_error: Some(reason) });
                        }
                    }
                }
                Ok(Taken::Busy(holder)) => {
                    if self.working.load(Ordering::SeqCst) {
                        tracing::error!(
                            lock_key = self.key,
                            holder_pid = holder.pid,
                            holder = %holder.application_name,
                            "another execution took this task while this one was without its lock: both are at work on it"
                        );
                    }
                    self.state.send_replace(LockState::HeldElsewhere(holder));
                    return;
                }
                Ok(Taken::Foreign(holder)) => {
                    if self.working.load(Ordering::SeqCst) {
                        tracing::warn!(lock_key = self.key, holder = ?holder, "the task's lock key is held by a session not on this task: working on without the lock");
                    }
                    self.state.send_replace(LockState::KeyTaken(holder));
                    return;
                }
                Err(error) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(lock_key = self.key, retry_in_ms = delay.as_millis() as u64, "{error}");
                    self.state.send_replace(LockState::Pending { last_error: Some(error.to_string()) });
                    tokio::select! {
                        _ = &mut release => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// One try on a fresh connection. A key found held whose holder is gone by the time
    /// it is looked up is tried again (the holder just ended).
    async fn try_take(&self) -> Result<Taken, LockError> {
        let (client, driver) = self.settings.connect_for_lock(&self.name).await.map_err(LockError::Connect)?;
        for _ in 0..3 {
            let row = within_limit(client.query_one("SELECT pg_try_advisory_lock($1)", &[&self.key]))
                .await
                .map_err(LockError::Statement)?;
            if row.try_get::<_, bool>(0).map_err(|e| LockError::Statement(DbError::Postgres(e)))? {
                return Ok(Taken::Held(client, driver));
            }
            match holder(&client, self.key).await? {
                Some(holder) if holder.on_task(&self.task_id) => return Ok(Taken::Busy(holder)),
                Some(holder) => return Ok(Taken::Foreign(Some(holder))),
                None => continue,
            }
        }
        Ok(Taken::Foreign(None))
    }
}

/// The session holding `key` in this database, if any. The bigint form of an advisory
/// lock shows in `pg_locks` as its high half in `classid`, its low half in `objid`, and
/// `objsubid` 1.
async fn holder(client: &Client, key: i64) -> Result<Option<Holder>, LockError> {
    const HOLDER_SQL: &str = "SELECT l.pid, COALESCE(a.application_name, ''), \
         COALESCE(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), \
         COALESCE(host(a.client_addr), '') \
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND l.classid = (($1::bigint >> 32) & 4294967295)::oid AND l.objid = ($1::bigint & 4294967295)::oid \
         LIMIT 1";
    let row = within_limit(client.query_opt(HOLDER_SQL, &[&key])).await.map_err(LockError::Statement)?;
    let Some(row) = row else { return Ok(None) };
    let text = |index: usize| row.try_get::<_, String>(index).map_err(|e| LockError::Statement(DbError::Postgres(e)));
    Ok(Some(Holder {
        pid: row.try_get(0).map_err(|e| LockError::Statement(DbError::Postgres(e)))?,
        application_name: text(1)?,
        backend_start: text(2)?,
        client_addr: text(3)?,
    }))
}

/// Holds the lock until released (`None`) or the session is gone (`Some(why)`).
async fn hold(
    client: Client,
    mut driver: JoinHandle<()>,
    key: i64,
    release: &mut oneshot::Receiver<()>,
) -> Option<String> {
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            _ = &mut *release => {
                if let Err(error) = within_limit(client.query_one("SELECT pg_advisory_unlock($1)", &[&key])).await {
                    // Closing the session below ends the lock all the same.
                    tracing::debug!(lock_key = key, "unlocking: {error}");
                }
                drop(client);
                let _ = tokio::time::timeout(RELEASE_PATIENCE, driver).await;
                tracing::debug!(lock_key = key, "released the task lock");
                return None;
            }
            _ = &mut driver => return Some("its database connection ended".into()),
            _ = heartbeat.tick() => {
                if let Err(error) = within_limit(client.simple_query("SELECT 1")).await {
                    return Some(format!("its database connection does not answer: {error}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_stable_and_spread() {
        // Pinned: a changed key would let an old and a new release of the job render one
        // task at once during a roll-out.
        assert_eq!(lock_key("demo-0001"), lock_key("demo-0001"));
        assert_ne!(lock_key("demo-0001"), lock_key("demo-0002"));
        let digest = Sha256::digest(b"blueprint-runner task demo-0001");
        assert_eq!(lock_key("demo-0001").to_be_bytes(), digest[..8]);
    }

    #[test]
    fn the_application_name_keeps_the_task_whole_and_names_who() {
        let task = "0b6f4c8e-1d2a-4f3b-9c7d-5e6f7a8b9c0d";
        let name = application_name(task, "video-processor-x7k2p");
        assert_eq!(name, format!("br {task} video-processor-x7k2p"));
        let long = application_name(task, &"a-very-long-execution-name-".repeat(4));
        assert_eq!(long.len(), APPLICATION_NAME_BYTES);
        let holder =
            Holder { pid: 1, application_name: long, backend_start: String::new(), client_addr: String::new() };
        assert!(holder.on_task(task));
        assert!(!holder.on_task("0b6f4c8e"));
        assert!(holder.who().starts_with("a-very-long"));
        let odd = application_name("t", "exécution\n");
        assert_eq!(odd, "br t ex?cution?");
        let foreign = Holder {
            pid: 2,
            application_name: "psql".into(),
            backend_start: String::new(),
            client_addr: String::new(),
        };
        assert!(!foreign.on_task("t"));
    }
}
