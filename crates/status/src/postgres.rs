//! The backend's `choreography_tasks` row as the status sink.
//!
//! The job only ever `UPDATE`s an existing row (it never creates or migrates the
//! table), so the role it connects with needs `SELECT, UPDATE` on that table and
//! nothing else. Writes go through one writer task: the job never waits for the
//! database, a newer change of the same stage replaces one not yet written, and a database that is down
//! is retried with backoff until [`PgStatus::finish`] gives up.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::Client;

use crate::sink::StatusSink;
use crate::update::StatusUpdate;

/// One write: progress, stage and message always; `result` and `error` are cleared
/// unless given, so a retried run does not keep the previous attempt's error. The
/// guard keeps a completed task completed whatever arrives late.
const UPDATE_SQL: &str = "UPDATE choreography_tasks \
     SET status = $2, progress = $3, stage = $4, message = $5, result = $6, error = $7, updated_at = now() \
     WHERE task_id = $1 AND status <> 'completed'";
const STATUS_SQL: &str = "SELECT status, COALESCE(message, '') FROM choreography_tasks WHERE task_id = $1";

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may take before the connection is treated as broken.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// 250 ms doubling to 5 s, for as long as the caller's own deadline allows.
pub(crate) fn retry_schedule() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default().with_min_delay(FIRST_BACKOFF).with_max_delay(MAX_BACKOFF).without_max_times()
}

/// A variable that is missing or wrong, for the one start-up message that lists them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub variable: String,
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

fn problem(variable: &str, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem { variable: variable.to_owned(), message: message.into() }
}

/// How the connection is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// `disable`, or a unix socket (Cloud SQL's socket folder is local to the container).
    Off,
    /// `prefer` / `require`: encrypted, the server's certificate not checked, as libpq
    /// does without a root certificate (Cloud SQL's server certificates are signed by a
    /// per-instance CA, not a public one).
    Unverified { required: bool },
    /// `verify-full`: the certificate must chain to `DB_SSLROOTCERT` (or the system's
    /// roots) and name the host.
    Verified { root_cert: Option<PathBuf> },
}

#[derive(Clone)]
pub struct DbSettings {
    config: tokio_postgres::Config,
    tls: Tls,
}

impl std::fmt::Debug for DbSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

pub const DB_VARIABLES: [&str; 8] =
    ["DATABASE_URL", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_SSLMODE", "DB_SSLROOTCERT"];

impl DbSettings {
    /// Reads `DATABASE_URL` or the `DB_*` variables. `Ok(None)`: no database configured.
    /// Every problem is reported, not just the first.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<DbSettings>, Vec<ConfigProblem>> {
        let value = |name: &str| get(name).filter(|v| !v.is_empty());
        let mut problems = Vec::new();
        let url = value("DATABASE_URL");
        let parts = ["DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD"];
        let set_parts: Vec<&str> = parts.into_iter().filter(|name| value(name).is_some()).collect();
        if url.is_none() && set_parts.is_empty() {
            for name in ["DB_SSLMODE", "DB_SSLROOTCERT"] {
                if value(name).is_some() {
                    problems.push(problem(
                        name,
                        "is set but no database is (set DB_HOST, DB_NAME, DB_USER or DATABASE_URL)",
                    ));
                }
            }
            return if problems.is_empty() { Ok(None) } else { Err(problems) };
        }

        let mut config = match &url {
            Some(url) => {
                for name in &set_parts {
                    problems.push(problem(name, "is set together with DATABASE_URL: use one or the other"));
                }
                match tokio_postgres::Config::from_str(url) {
                    Ok(config) => config,
                    // The message of the parser can quote the URL, password included.
                    Err(_) => {
                        problems.push(problem(
                            "DATABASE_URL",
                            "is not a postgres:// URL or key=value connection string tokio-postgres can read",
                        ));
                        tokio_postgres::Config::new()
                    }
                }
            }
            None => {
                let mut config = tokio_postgres::Config::new();
                match value("DB_HOST") {
                    Some(host) => {
                        config.host(host);
                    }
                    None => problems
                        .push(problem("DB_HOST", "is missing (a host name, or /cloudsql/PROJECT:REGION:INSTANCE)")),
                }
                match value("DB_PORT").map(|p| p.parse::<u16>()) {
                    None => {
                        config.port(5432);
                    }
                    Some(Ok(port)) if port > 0 => {
                        config.port(port);
                    }
                    Some(_) => problems.push(problem("DB_PORT", "must be a port number from 1 to 65535")),
                }
                match value("DB_NAME") {
                    Some(name) => {
                        config.dbname(name);
                    }
                    None => problems.push(problem("DB_NAME", "is missing")),
                }
                match value("DB_USER") {
                    Some(user) => {
                        config.user(user);
                    }
                    None => problems.push(problem("DB_USER", "is missing")),
                }
                if let Some(password) = get("DB_PASSWORD") {
                    config.password(password);
                }
                config
            }
        };
        config.application_name("blueprint-runner").connect_timeout(CONNECT_TIMEOUT);

        let root_cert = value("DB_SSLROOTCERT").map(PathBuf::from);
        if let Some(path) = &root_cert {
            if !path.is_file() {
                problems.push(problem("DB_SSLROOTCERT", format!("{} is not a readable file", path.display())));
            }
        }
        let url_mode = match config.get_ssl_mode() {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            _ => "prefer",
        };
        let mode = value("DB_SSLMODE").unwrap_or_else(|| url_mode.to_owned());
        let hosts = config.get_hosts();
        let on_socket = !hosts.is_empty() && hosts.iter().all(|h| matches!(h, Host::Unix(_)));
        let tls = match mode.as_str() {
            "disable" | "prefer" | "require" | "verify-full" if on_socket => Tls::Off,
            "disable" => Tls::Off,
            "prefer" => Tls::Unverified { required: false },
            "require" => Tls::Unverified { required: true },
            "verify-full" => Tls::Verified { root_cert },
            other => {
                problems.push(problem(
                    "DB_SSLMODE",
                    format!("'{other}' is not one of disable, prefer, require, verify-full"),
                ));
                Tls::Off
            }
        };
        config.ssl_mode(match tls {
            Tls::Off => SslMode::Disable,
            Tls::Unverified { required: false } => SslMode::Prefer,
            Tls::Unverified { required: true } | Tls::Verified { .. } => SslMode::Require,
        });
        if problems.is_empty() {
            Ok(Some(DbSettings { config, tls }))
        } else {
            Err(problems)
        }
    }

    /// Where the status goes, for logs: no password.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => format!("{name}:{}", self.config.get_ports().first().copied().unwrap_or(5432)),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        format!(
            "postgres {} database {} as {} (TLS: {:?})",
            hosts.join(","),
            self.config.get_dbname().unwrap_or("?"),
            self.config.get_user().unwrap_or("?"),
            self.tls
        )
    }

    /// One connection; its driver runs on a task of its own.
    pub async fn connect(&self) -> Result<Client, DbError> {
        Ok(self.connect_with(&self.config).await?.0)
    }

    /// A connection of its own for the task lock: named for `pg_stat_activity` (so an
    /// execution that finds the task taken can say by whom), with TCP keepalives that
    /// notice a dead peer within about a minute instead of two hours. The handle ends
    /// when the connection does.
    pub(crate) async fn connect_for_lock(
        &self,
        application_name: &str,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), DbError> {
        let mut config = self.config.clone();
        config
            .application_name(application_name)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        self.connect_with(&config).await
    }

    async fn connect_with(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), DbError> {
        // A TLS connector is asked for a server name even when TLS is off, and a socket
        // folder is none: without TLS there must be no connector at all.
        if self.tls == Tls::Off {
            let (client, connection) = self.with_timeout(config.connect(tokio_postgres::NoTls)).await?;
            return Ok((client, tokio::spawn(drive(connection))));
        }
        let (client, connection) = self.with_timeout(config.connect(tls_connector(&self.tls)?)).await?;
        Ok((client, tokio::spawn(drive(connection))))
    }

    async fn with_timeout<T>(
        &self,
        connecting: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, DbError> {
        tokio::time::timeout(CONNECT_TIMEOUT * 2, connecting)
            .await
            .map_err(|_| DbError::ConnectTimeout)?
            .map_err(DbError::Postgres)
    }

    /// The task's row as it is now. `Err`: the database did not answer within `patience`.
    pub async fn task_row(&self, task_id: &str, patience: Duration) -> Result<TaskRow, DbError> {
        use backon::Retryable;
        let attempt = (|| self.read_status(task_id))
            .retry(retry_schedule())
            .sleep(tokio::time::sleep)
            .notify(|error, _| tracing::warn!(database = %self.describe(), "cannot read the task's row yet: {error}"));
        tokio::time::timeout(patience, attempt).await.map_err(|_| DbError::NoAnswer(patience))?
    }

    async fn read_status(&self, task_id: &str) -> Result<TaskRow, DbError> {
        let client = self.connect().await?;
        let row = within_limit(client.query_opt(STATUS_SQL, &[&task_id])).await?;
        Ok(match row {
            None => TaskRow::Missing,
            Some(row) => TaskRow::Found {
                status: row.try_get::<_, String>(0).map_err(DbError::Postgres)?,
                message: row.try_get::<_, String>(1).map_err(DbError::Postgres)?,
            },
        })
    }
}

async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(error) = connection.await {
        tracing::debug!("database connection ended: {error}");
    }
}

/// Runs one statement within [`STATEMENT_TIMEOUT`]: a connection that hangs counts as
/// broken, and the writer reconnects.
pub(crate) async fn within_limit<T>(
    statement: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, DbError> {
    tokio::time::timeout(STATEMENT_TIMEOUT, statement)
        .await
        .map_err(|_| DbError::StatementTimeout)?
        .map_err(DbError::Postgres)
}

/// Why the database could not be reached, or a statement failed. The messages are the
/// server's own (with its code) or the driver's error with its causes.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("connecting timed out")]
    ConnectTimeout,
    #[error("the statement timed out")]
    StatementTimeout,
    #[error("the database did not answer within {} s", .0.as_secs())]
    NoAnswer(Duration),
    #[error("{}", describe_error(.0))]
    Postgres(#[source] tokio_postgres::Error),
    /// The TLS set-up: the provider, or a root certificate file (named in the message).
    #[error("{0}")]
    Tls(String),
}

/// The server's own message and code, or the error with its causes (tokio-postgres's
/// `Display` alone says only "error connecting to server").
pub(crate) fn describe_error(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    text
}

fn tls_connector(tls: &Tls) -> Result<tokio_postgres_rustls::MakeRustlsConnect, DbError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Tls(format!("TLS set-up: {e}")))?;
    let config = match tls {
        Tls::Verified { root_cert } => {
            let mut roots = rustls::RootCertStore::empty();
            match root_cert {
                Some(path) => {
                    let named = |e: &dyn std::fmt::Display| DbError::Tls(format!("{}: {e}", path.display()));
                    let pem = std::fs::read(path).map_err(|e| named(&e))?;
                    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                        let cert: rustls::pki_types::CertificateDer<'static> = cert.map_err(|e| named(&e))?;
                        roots.add(cert).map_err(|e| named(&e))?;
                    }
                }
                None => {
                    for cert in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(cert);
                    }
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Tls::Off | Tls::Unverified { .. } => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(EncryptOnly(provider))).with_no_client_auth()
        }
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Encryption without identity, as libpq's `sslmode=require`: the handshake's
/// signatures are still checked, the certificate chain is not.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The row's state before the job starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRow {
    Missing,
    /// Its `status` and `message` (a failed job's message names its exit code).
    Found {
        status: String,
        message: String,
    },
}

/// How the job's last change fared.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// The last change is in the row.
    Written,
    /// Nothing to write.
    Nothing,
    /// The row was completed already; the guard left it alone.
    RowCompleted,
    /// The task has no row.
    RowMissing,
    /// The database could not be reached in time: this change is not recorded.
    Unrecorded { update: Box<StatusUpdate>, last_error: String },
}

/// Changes not yet in the row, oldest first. A change replaces the last one waiting
/// when both are for the same task with the same status and stage (progress within a
/// stage); a new stage or status is kept as its own write, so the row passes through
/// every stage the job did.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<(u64, StatusUpdate)>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Notify,
}

pub struct PgStatus {
    shared: Arc<Shared>,
    written: watch::Receiver<WriterState>,
    writer: tokio::task::JoinHandle<()>,
    sequence: u64,
    last: Option<StatusUpdate>,
}

#[derive(Clone, Debug, Default)]
struct WriterState {
    /// Sequence number of the last change that reached the database (or was refused by it).
    settled: u64,
    outcome: Option<Settled>,
    last_error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settled {
    Written,
    RowCompleted,
    RowMissing,
}

impl PgStatus {
    /// Starts the writer. Connecting happens in the writer, so a database that is down
    /// at start does not hold up the job.
    pub fn start(settings: DbSettings) -> PgStatus {
        let shared = Arc::new(Shared { queue: Mutex::new(Queue::default()), wake: Notify::new() });
        let (state_sender, written) = watch::channel(WriterState::default());
        let writer = tokio::spawn(write_changes(settings, shared.clone(), state_sender));
        PgStatus { shared, written, writer, sequence: 0, last: None }
    }

    /// Waits up to `patience` for the last change to be written, then stops the writer.
    pub async fn finish(self, patience: Duration) -> Delivery {
        let PgStatus { shared, mut written, writer, sequence, last } = self;
        if let Ok(mut queue) = shared.queue.lock() {
            queue.closed = true;
        }
        shared.wake.notify_one();
        let Some(last) = last else {
            writer.abort();
            return Delivery::Nothing;
        };
        let settled =
            tokio::time::timeout(patience, async { written.wait_for(|state| state.settled >= sequence).await.is_ok() })
                .await;
        let state = written.borrow().clone();
        writer.abort();
        match (settled, state.outcome) {
            (Ok(true), Some(Settled::Written)) => Delivery::Written,
            (Ok(true), Some(Settled::RowCompleted)) => Delivery::RowCompleted,
            (Ok(true), Some(Settled::RowMissing)) => Delivery::RowMissing,
            _ => Delivery::Unrecorded {
                update: Box::new(last),
                last_error: state.last_error.unwrap_or_else(|| "the writer stopped".into()),
            },
        }
    }
}

impl StatusSink for PgStatus {
    fn report(&mut self, update: &StatusUpdate) {
        if update.task_id.is_none() {
            // Nothing names the row yet (the blueprint could not be read): the log has it.
            tracing::warn!(status = update.status.as_str(), "status not written: no task id known");
            return;
        }
        tracing::info!(status = update.status.as_str(), progress = update.progress, "{}", update.message);
        self.sequence += 1;
        self.last = Some(update.clone());
        if let Ok(mut queue) = self.shared.queue.lock() {
            match queue.waiting.back_mut() {
                Some((sequence, waiting))
                    if waiting.status == update.status
                        && waiting.stage == update.stage
                        && waiting.task_id == update.task_id =>
                {
                    *sequence = self.sequence;
                    *waiting = update.clone();
                }
                _ => queue.waiting.push_back((self.sequence, update.clone())),
            }
        }
        self.shared.wake.notify_one();
    }
}

async fn write_changes(settings: DbSettings, shared: Arc<Shared>, state: watch::Sender<WriterState>) {
    use backon::BackoffBuilder;
    let mut client: Option<Client> = None;
    // Restarts at the first delay after every write that reaches the database.
    let mut delays = retry_schedule().build();
    loop {
        let next = match shared.queue.lock() {
            Ok(queue) => match queue.waiting.front() {
                Some(front) => Some(front.clone()),
                None if queue.closed => return,
                None => None,
            },
            Err(_) => return,
        };
        let Some((sequence, update)) = next else {
            shared.wake.notified().await;
            continue;
        };
        let task_id = update.task_id.as_deref().unwrap_or_default();
        let result = async {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = Some(settings.connect().await?);
            }
            write_one(client.as_ref().expect("connected above"), task_id, &update).await
        }
        .await;
        match result {
            Ok(settled) => {
                delays = retry_schedule().build();
                if settled != Settled::Written {
                    let why = if settled == Settled::RowCompleted {
                        "the task is completed already"
                    } else {
                        "the task has no row in choreography_tasks"
                    };
                    tracing::warn!(status = update.status.as_str(), "status not written: {why}");
                }
                if let Ok(mut queue) = shared.queue.lock() {
                    // A newer change of the same stage may have replaced this one meanwhile:
                    // then it is still waiting.
                    if queue.waiting.front().is_some_and(|(waiting, _)| *waiting == sequence) {
                        queue.waiting.pop_front();
                    }
                }
                state.send_modify(|s| {
                    s.settled = s.settled.max(sequence);
                    s.outcome = Some(settled);
                });
            }
            Err(error) => {
                client = None;
                let delay = delays.next().unwrap_or(MAX_BACKOFF);
                tracing::warn!(
                    status = update.status.as_str(),
                    stage = update.stage.as_str(),
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot write the status: {error}"
                );
                state.send_modify(|s| s.last_error = Some(error.to_string()));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn write_one(client: &Client, task_id: &str, update: &StatusUpdate) -> Result<Settled, DbError> {
    let progress = i32::from(update.progress);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
        &task_id,
        &update.status.as_str(),
        &progress,
        &update.stage.as_str(),
        &update.message,
        &update.result,
        &update.error,
    ];
    let changed = within_limit(client.execute(UPDATE_SQL, &params)).await?;
    if changed == 1 {
        return Ok(Settled::Written);
    }
    let row = within_limit(client.query_opt(STATUS_SQL, &[&task_id])).await?;
    Ok(if row.is_some() { Settled::RowCompleted } else { Settled::RowMissing })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<DbSettings>, Vec<ConfigProblem>> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        DbSettings::from_env(&|name| vars.get(name).cloned())
    }

    fn variables(problems: Vec<ConfigProblem>) -> Vec<String> {
        problems.into_iter().map(|p| p.variable).collect()
    }

    #[test]
    fn nothing_set_means_no_database() {
        assert!(settings(&[]).unwrap().is_none());
    }

    #[test]
    fn every_missing_part_is_listed() {
        let problems =
            settings(&[("DB_PASSWORD", "x"), ("DB_PORT", "99999"), ("DB_SSLMODE", "sometimes")]).unwrap_err();
        assert_eq!(variables(problems), ["DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_SSLMODE"]);
    }

    #[test]
    fn cloud_sql_socket_folder_is_a_unix_socket_without_tls() {
        let db = settings(&[
            ("DB_HOST", "/cloudsql/proj:europe-west1:main"),
            ("DB_NAME", "app"),
            ("DB_USER", "runner"),
            ("DB_SSLMODE", "require"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(db.config.get_hosts(), [Host::Unix(PathBuf::from("/cloudsql/proj:europe-west1:main"))]);
        assert_eq!(db.config.get_ports(), [5432]);
        assert_eq!(db.tls, Tls::Off);
    }

    #[test]
    fn tcp_modes() {
        let base = [("DB_HOST", "10.0.0.3"), ("DB_NAME", "app"), ("DB_USER", "runner")];
        let with = |mode: &str| {
            let mut vars = base.to_vec();
            vars.push(("DB_SSLMODE", mode));
            settings(&vars).unwrap().unwrap().tls
        };
        assert_eq!(settings(&base).unwrap().unwrap().tls, Tls::Unverified { required: false });
        assert_eq!(with("require"), Tls::Unverified { required: true });
        assert_eq!(with("disable"), Tls::Off);
        assert_eq!(with("verify-full"), Tls::Verified { root_cert: None });
    }

    #[test]
    fn url_and_parts_do_not_mix_and_a_bad_url_does_not_leak_its_password() {
        let problems = settings(&[("DATABASE_URL", "postgres://u:pw@h/db"), ("DB_HOST", "h")]).unwrap_err();
        assert_eq!(variables(problems), ["DB_HOST"]);
        let problems = settings(&[("DATABASE_URL", "postgres://u:s3cret@h:notaport/db")]).unwrap_err();
        assert!(!problems[0].message.contains("s3cret"), "{problems:?}");
        let db =
            settings(&[("DATABASE_URL", "postgres://u:pw@db.internal:6432/app?sslmode=require")]).unwrap().unwrap();
        assert_eq!(db.tls, Tls::Unverified { required: true });
        assert!(!db.describe().contains("pw"));
    }

    #[test]
    fn tls_settings_alone_are_a_mistake() {
        assert_eq!(variables(settings(&[("DB_SSLMODE", "require")]).unwrap_err()), ["DB_SSLMODE"]);
    }
}
