//! A real PostgreSQL 15 server per test: its own cluster in a temporary folder, run as
//! the system user `br-pgtest` (the server refuses to run as root), listening on a free
//! loopback port and on a unix socket in that folder. The database `choreography` holds
//! the backend's `choreography_tasks` table as Django made it
//! (`tests/fixtures/choreography_tasks.sql`) plus the test-only history trigger and the
//! `runner` role (`tests/fixtures/status_history.sql`).
//!
//! The API is synchronous. The harness talks to the server as the superuser over the
//! unix socket (trust), one fresh connection per call on a private current-thread
//! runtime; the job under test connects over TCP as `runner` with a password
//! (`env()`, `database_url()`).
//!
//! Needs on PATH: `initdb`, `pg_ctl` (PostgreSQL 15), `openssl` (for `start_with_tls`),
//! `runuser`, `useradd`, `id`; and to run as root.

#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The system user the server runs as.
pub const SERVER_USER: &str = "br-pgtest";
pub const DB_NAME: &str = "choreography";
pub const RUNNER_USER: &str = "runner";
pub const RUNNER_PASSWORD: &str = "runner-secret";
const SUPERUSER: &str = "postgres";
const SUPERUSER_PASSWORD: &str = "postgres-secret";

const TASKS_DDL: &str = include_str!("../fixtures/choreography_tasks.sql");
const HISTORY_DDL: &str = include_str!("../fixtures/status_history.sql");

/// How often a start is retried when the free port picked was taken by someone else
/// before the server bound it.
const PORT_ATTEMPTS: usize = 5;

/// One row of `choreography_tasks` or of `choreography_task_history`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub status: String,
    pub progress: i32,
    pub stage: String,
    pub message: String,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    /// `updated_at` in microseconds since the Unix epoch.
    pub updated_at_micros: i64,
}

pub struct PgServer {
    /// Everything of this server: `data/`, `sock/`, `server.log`, `pwfile`.
    root: tempfile::TempDir,
    data: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    port: u16,
    tls: bool,
}

impl PgServer {
    /// A server without TLS.
    pub fn start() -> PgServer {
        PgServer::start_inner(false)
    }

    /// A server with `ssl=on` and a fresh self-signed certificate for `localhost`.
    pub fn start_with_tls() -> PgServer {
        PgServer::start_inner(true)
    }

    fn start_inner(tls: bool) -> PgServer {
        ensure_server_user();
        let (uid, gid) = server_user_ids();

        let root = tempfile::Builder::new()
            .prefix("br-pg-")
            .tempdir()
            .unwrap_or_else(|error| panic!("cannot create a temporary folder for postgres: {error}"));
        let root_path = root.path().to_path_buf();
        assert!(
            !root_path.to_string_lossy().contains('\''),
            "the temporary folder {} has a quote in its name, which pg_ctl -o cannot take",
            root_path.display()
        );
        // tempfile makes the folder 0700 and root's: give it to the server user.
        chown(&root_path, Some(uid), Some(gid))
            .unwrap_or_else(|error| panic!("chown {} to {SERVER_USER}: {error}", root_path.display()));
        std::fs::set_permissions(&root_path, std::fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|error| panic!("chmod {}: {error}", root_path.display()));
        let data = root_path.join("data");
        let socket = root_path.join("sock");
        let log = root_path.join("server.log");
        let pwfile = root_path.join("pwfile");
        std::fs::create_dir(&socket).unwrap_or_else(|error| panic!("mkdir {}: {error}", socket.display()));
        chown(&socket, Some(uid), Some(gid)).unwrap_or_else(|error| panic!("chown {}: {error}", socket.display()));
        std::fs::write(&pwfile, format!("{SUPERUSER_PASSWORD}\n"))
            .unwrap_or_else(|error| panic!("write {}: {error}", pwfile.display()));
        chown(&pwfile, Some(uid), Some(gid)).unwrap_or_else(|error| panic!("chown {}: {error}", pwfile.display()));

        let mut initdb = as_server_user(&root_path, "initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        run(&mut initdb, "initdb");

        if tls {
            // A CA of its own and a server certificate it signs (names localhost and
            // 127.0.0.1), so that clients can verify the chain and the host name.
            let (ca_key, ca) = (root_path.join("ca.key"), root_path.join("ca.pem"));
            let (key, cert) = (data.join("server.key"), data.join("server.crt"));
            let (request, extensions) = (root_path.join("server.csr"), root_path.join("server.ext"));
            std::fs::write(&extensions, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
                .expect("write server.ext");
            let mut make_ca = Command::new("openssl");
            make_ca
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=blueprint-runner-test-ca",
                    "-keyout",
                ])
                .arg(&ca_key)
                .arg("-out")
                .arg(&ca);
            run(&mut make_ca, "openssl req (test CA)");
            let mut make_request = Command::new("openssl");
            make_request
                .args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&request);
            run(&mut make_request, "openssl req (server key and request)");
            let mut sign = Command::new("openssl");
            sign.args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
                .arg(&request)
                .arg("-CA")
                .arg(&ca)
                .arg("-CAkey")
                .arg(&ca_key)
                .arg("-extfile")
                .arg(&extensions)
                .arg("-out")
                .arg(&cert)
                .current_dir(&root_path);
            run(&mut sign, "openssl x509 (sign the server certificate)");
            for file in [&key, &cert] {
                chown(file, Some(uid), Some(gid)).unwrap_or_else(|error| panic!("chown {}: {error}", file.display()));
            }
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .unwrap_or_else(|error| panic!("chmod 0600 {}: {error}", key.display()));
        }

        let mut server = PgServer { root, data, socket, log, port: 0, tls };
        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port();
            match server.try_pg_ctl_start() {
                Ok(()) => {
                    server.wait_until_accepting();
                    server.create_schema();
                    return server;
                }
                Err(failure)
                    if failure.contains("could not bind")
                        || failure.contains("could not create any TCP/IP sockets") =>
                {
                    // Another process took the port between our probe and the server's bind.
                    last_failure = failure;
                }
                Err(failure) => panic!("{failure}"),
            }
        }
        panic!("postgres could not get a free port in {PORT_ATTEMPTS} attempts; last failure:\n{last_failure}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder holding the server's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// The server's log so far (for a failing test's message).
    pub fn log_tail(&self) -> String {
        tail(&self.log, 60)
    }

    /// The CA that signed the server certificate (`start_with_tls` only).
    pub fn ca_cert(&self) -> PathBuf {
        self.root.path().join("ca.pem")
    }

    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The variables the job reads, for the `runner` role over TCP.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DB_HOST".to_owned(), "127.0.0.1".to_owned()),
            ("DB_PORT".to_owned(), self.port.to_string()),
            ("DB_NAME".to_owned(), DB_NAME.to_owned()),
            ("DB_USER".to_owned(), RUNNER_USER.to_owned()),
            ("DB_PASSWORD".to_owned(), RUNNER_PASSWORD.to_owned()),
        ]
    }

    pub fn database_url(&self) -> String {
        format!("postgres://{RUNNER_USER}:{RUNNER_PASSWORD}@127.0.0.1:{}/{DB_NAME}", self.port)
    }

    /// The database goes down: `pg_ctl stop -m immediate` (no checkpoint, clients cut off).
    pub fn stop(&self) {
        let mut stop = self.pg_ctl_stop();
        run(&mut stop, "pg_ctl stop -m immediate");
    }

    /// Starts the stopped server again, same data and port, and waits until it takes
    /// connections. Panics if the port was taken meanwhile.
    pub fn start_again(&self) {
        if let Err(failure) = self.try_pg_ctl_start() {
            panic!("{failure}");
        }
        self.wait_until_accepting();
    }

    /// Inserts a task row the way the backend does before it launches the job.
    pub fn insert_task(&self, task_id: &str, status: &str) {
        let id = task_id.to_owned();
        let status_owned = status.to_owned();
        self.with_client(DB_NAME, move |client| async move {
            client
                .execute(
                    "INSERT INTO choreography_tasks \
                     (task_id, user_id, song_id, song_title, difficulty, status, progress, stage, message, \
                      result, error, blueprint, created_at, updated_at, completed_at) \
                     VALUES ($1, 1, 'song-1', 'Test Song', 'medium', $2, 0, 'queued', 'queued', \
                      NULL, NULL, NULL, now(), now(), NULL)",
                    &[&id, &status_owned],
                )
                .await
                .map(|_| ())
        })
        .unwrap_or_else(|error| panic!("inserting task {task_id:?}: {}", describe(&error)));
    }

    /// The task's row, or `None` when there is none.
    pub fn task(&self, task_id: &str) -> Option<TaskRow> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM choreography_tasks WHERE task_id = $1");
        let mut rows = self.task_rows(&sql, task_id);
        assert!(rows.len() <= 1, "task {task_id:?} has {} rows", rows.len());
        rows.pop()
    }

    /// Every state the task's row went through by UPDATE, oldest first.
    pub fn history(&self, task_id: &str) -> Vec<TaskRow> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM choreography_task_history WHERE task_id = $1 ORDER BY seq");
        self.task_rows(&sql, task_id)
    }

    /// Runs statements (simple query protocol, several allowed) as the superuser in
    /// the `choreography` database.
    pub fn execute(&self, sql: &str) {
        let owned = sql.to_owned();
        self.with_client(DB_NAME, move |client| async move { client.batch_execute(&owned).await })
            .unwrap_or_else(|error| panic!("executing as {SUPERUSER}:\n{sql}\nfailed: {}", describe(&error)));
    }

    fn task_rows(&self, sql: &str, task_id: &str) -> Vec<TaskRow> {
        let owned_sql = sql.to_owned();
        let id = task_id.to_owned();
        let rows = self
            .with_client(DB_NAME, move |client| async move { client.query(&owned_sql, &[&id]).await })
            .unwrap_or_else(|error| panic!("querying {sql} for {task_id:?}: {}", describe(&error)));
        rows.iter()
            .map(|row| TaskRow {
                status: row.get(0),
                progress: row.get(1),
                stage: row.get(2),
                message: row.get(3),
                result: row.get(4),
                error: row.get(5),
                updated_at_micros: row.get(6),
            })
            .collect()
    }

    fn pg_ctl_start_command(&self) -> Command {
        let mut options =
            format!("-p {} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.socket.display());
        if self.tls {
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file='{}' -c ssl_key_file='{}'",
                self.data.join("server.crt").display(),
                self.data.join("server.key").display()
            ));
        }
        let mut start = as_server_user(self.root.path(), "pg_ctl");
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .arg("-o")
            .arg(options)
            .args(["-w", "-t", "60", "start"]);
        start
    }

    fn try_pg_ctl_start(&self) -> Result<(), String> {
        let mut start = self.pg_ctl_start_command();
        let output = start.output().unwrap_or_else(|error| panic!("cannot run {start:?}: {error}"));
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{start:?} failed ({})\nstdout:\n{}\nstderr:\n{}\nserver log {} (tail):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.log.display(),
                tail(&self.log, 40)
            ))
        }
    }

    fn pg_ctl_stop(&self) -> Command {
        let mut stop = as_server_user(self.root.path(), "pg_ctl");
        stop.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "-t", "60", "stop"]);
        stop
    }

    /// `pg_ctl -w` returns once the postmaster says it is ready; also make sure a
    /// connection really goes through before handing the server to a test.
    fn wait_until_accepting(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.with_client("postgres", |client| async move { client.batch_execute("SELECT 1").await }) {
                Ok(()) => return,
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => panic!(
                    "postgres on port {} does not take connections on {}: {}\nserver log (tail):\n{}",
                    self.port,
                    self.socket.display(),
                    describe(&error),
                    self.log_tail()
                ),
            }
        }
    }

    fn create_schema(&self) {
        self.with_client("postgres", |client| async move {
            client.batch_execute(&format!("CREATE DATABASE {DB_NAME}")).await
        })
        .unwrap_or_else(|error| panic!("CREATE DATABASE {DB_NAME}: {}", describe(&error)));
        for (name, sql) in
            [("tests/fixtures/choreography_tasks.sql", TASKS_DDL), ("tests/fixtures/status_history.sql", HISTORY_DDL)]
        {
            self.with_client(DB_NAME, move |client| async move { client.batch_execute(sql).await })
                .unwrap_or_else(|error| panic!("applying {name}: {}", describe(&error)));
        }
    }

    /// Opens a fresh superuser connection over the unix socket to `dbname`, drives it
    /// on a private current-thread runtime while `body` runs, and closes it.
    fn with_client<T, F, Fut>(&self, dbname: &str, body: F) -> Result<T, tokio_postgres::Error>
    where
        T: Send,
        F: FnOnce(tokio_postgres::Client) -> Fut + Send,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket)
            .port(self.port)
            .user(SUPERUSER)
            .dbname(dbname)
            .connect_timeout(Duration::from_secs(10));
        block_on(async move {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            let driver = tokio::spawn(connection);
            let result = body(client).await;
            // `body` took the client: it is dropped by now, so the connection ends.
            let _ = driver.await;
            result
        })
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Ignore errors: the server may be stopped already, or never have started.
        let _ = self.pg_ctl_stop().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        // `root` (a TempDir) removes everything after this.
    }
}

const ROW_COLUMNS: &str = "status, progress, stage, message, result, error, \
     (extract(epoch FROM updated_at) * 1000000)::bigint";

/// Runs a future to completion on a fresh current-thread runtime. Inside a tokio
/// runtime (an async test) that cannot be done on the same thread, so it then runs on
/// a scoped thread of its own.
fn block_on<T: Send>(future: impl Future<Output = T> + Send) -> T {
    let run = move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("cannot build a tokio runtime for the postgres harness: {error}"))
            .block_on(future)
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| scope.spawn(run).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    } else {
        run()
    }
}

/// A tokio-postgres error with its server-side detail (the `Display` alone often says
/// just "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{error}: {} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

/// `runuser -u br-pgtest -- <program>`, in a folder that user can enter, without the
/// caller's libpq variables.
fn as_server_user(cwd: &Path, program: &str) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", SERVER_USER, "--", program]).current_dir(cwd).stdin(Stdio::null());
    for variable in [
        "PGDATA",
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGOPTIONS",
        "PGSSLMODE",
        "PGCTLTIMEOUT",
    ] {
        command.env_remove(variable);
    }
    command
}

/// Runs a command to completion; panics with the command, its exit status and output
/// unless it succeeds.
fn run(command: &mut Command, what: &str) -> Output {
    let output = command.output().unwrap_or_else(|error| panic!("{what}: cannot run {command:?}: {error}"));
    if !output.status.success() {
        panic!(
            "{what}: {command:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// A port that was free a moment ago (the server may still lose it to another process:
/// the start is then retried with another one).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|error| panic!("cannot bind 127.0.0.1:0 to find a free port: {error}"));
    listener.local_addr().expect("a bound listener has an address").port()
}

/// Serialises this process's tests around the user check.
static USER_LOCK: Mutex<()> = Mutex::new(());

fn server_user_exists() -> bool {
    Command::new("id")
        .args(["-u", SERVER_USER])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or_else(|error| panic!("cannot run `id -u {SERVER_USER}`: {error}"))
}

/// Creates the system user `br-pgtest` unless it exists.
///
/// Test processes started together must not run `useradd` for the same name at the
/// same time: both see the name missing, and the second one does not fail but
/// rewrites the first one's passwd and group entries with a new uid and gid, under a
/// server that was just given files as the old uid. So the check and the creation
/// happen under an exclusive lock on a file in the temporary folder, shared by every
/// test process; and if `useradd` fails all the same, the user is looked up again.
fn ensure_server_user() {
    let _guard = USER_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if server_user_exists() {
        return;
    }
    let lock_path = std::env::temp_dir().join(format!("{SERVER_USER}-useradd.lock"));
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", lock_path.display()));
    lock_file.lock().unwrap_or_else(|error| panic!("cannot lock {}: {error}", lock_path.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if server_user_exists() {
            return;
        }
        let mut useradd = Command::new("useradd");
        useradd.args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER]);
        let output = useradd.output().unwrap_or_else(|error| panic!("cannot run {useradd:?}: {error}"));
        if output.status.success() || server_user_exists() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{useradd:?} failed ({}) and user {SERVER_USER} still does not exist\nstderr:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The lock is released when `lock_file` is closed.
}

fn server_user_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let mut command = Command::new("id");
        command.args([flag, SERVER_USER]);
        let output = run(&mut command, "looking up the server user");
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim().parse().unwrap_or_else(|_| panic!("{command:?} printed {text:?}, not a number"))
    };
    (id("-u"), id("-g"))
}
