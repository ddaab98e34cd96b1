//! What the job does about the backend launching one task several times (its launcher
//! waits on `run_job`'s operation, which ends with the execution, and launches again
//! after 30 s; see docs/BACKEND.md): one execution per task through the task lock, and
//! `deploy/keep-completed.sql` against the backend's own full-row `save()`. Real
//! PostgreSQL (the shared harness, with its history trigger), real FFmpeg, media made
//! on the spot.

use crate::support::media;
use crate::support::postgres;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use media::{CLIP_B, CLIP_SMALL};
use postgres::{PgServer, TaskRow};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const KEEP_COMPLETED: &str = include_str!("../deploy/keep-completed.sql");

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("launch-pg-guest-cache")
}

struct Folders {
    root: tempfile::TempDir,
    data: PathBuf,
    work: PathBuf,
}

impl Folders {
    fn new() -> Folders {
        let root = tempfile::Builder::new().prefix("launch-pg-").tempdir().expect("temp folder");
        let data = root.path().join("data");
        let work = root.path().join("work");
        std::fs::create_dir_all(data.join("media")).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        media::make_clip(&data.join("media/small.mp4"), &CLIP_SMALL);
        media::make_song_mp3(&data.join("media/song.mp3"), 12.0);
        Folders { root, data, work }
    }

    /// An FFmpeg that records which process started it, then is the real one.
    fn counting_ffmpeg(&self) -> (PathBuf, PathBuf) {
        let real = std::env::var("FFMPEG").unwrap_or_else(|_| "ffmpeg".into());
        let record = self.root.path().join("ffmpeg-parents");
        let wrapper = self.root.path().join("ffmpeg-counting");
        std::fs::write(&wrapper, format!("#!/bin/sh\necho \"$PPID\" >> '{}'\nexec {real} \"$@\"\n", record.display()))
            .unwrap();
        std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        (wrapper, record)
    }
}

fn movement(video: &str, start: f64, duration: f64) -> Value {
    json!({"clip_id": format!("m{start}"), "video_path": video, "start_time": start, "duration": duration, "transition_type": "cut"})
}

fn blueprint(task_id: &str, clip: &str, moves: u32) -> String {
    let moves: Vec<Value> = (0..moves).map(|i| movement(clip, f64::from(i) * 2.0, 2.0)).collect();
    json!({
        "task_id": task_id,
        "audio_path": "media/song.mp3",
        "total_duration": 2.0 * moves.len() as f64,
        "moves": moves,
        "output_config": {"output_path": format!("output/{task_id}.mp4"), "frame_rate": 25.0, "normalize_audio": false},
    })
    .to_string()
}

fn job_command(folders: &Folders, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("job")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATA_DIR", &folders.data)
        .env("WORK_DIR", &folders.work)
        .env("BLUEPRINT_RUNNER_CACHE_DIR", cache_dir())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn db_env(db: &PgServer) -> Vec<(&'static str, String)> {
    vec![("DATABASE_URL", db.database_url())]
}

struct Finished {
    pid: u32,
    code: Option<i32>,
    lines: Vec<Value>,
    text: String,
}

impl Finished {
    fn describe(&self) -> String {
        format!("pid {} exit {:?}\n{}", self.pid, self.code, self.text)
    }

    fn line_with(&self, needle: &str) -> Option<&Value> {
        self.lines.iter().find(|l| l["message"].as_str().is_some_and(|m| m.contains(needle)))
    }
}

fn finish(child: Child) -> Finished {
    let pid = child.id();
    let output = child.wait_with_output().expect("wait for the job");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let text = format!("stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&output.stderr));
    Finished { pid, code: output.status.code(), lines, text }
}

fn run(mut command: Command) -> Finished {
    finish(command.spawn().expect("start the job"))
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const STAGES: [&str; 7] = ["validate", "fetch", "probe", "plan", "encode", "upload", "done"];

/// One run's history: stages in order, each once as a contiguous stretch, progress never
/// down, `running` throughout and one `completed` at the end.
fn assert_one_run(history: &[TaskRow]) {
    let mut stages: Vec<&str> = history.iter().map(|r| r.stage.as_str()).collect();
    stages.dedup();
    assert_eq!(stages, STAGES, "not one run through the stages: {history:#?}");
    assert!(history.windows(2).all(|w| w[1].progress >= w[0].progress), "progress went down: {history:#?}");
    let (last, before) = history.split_last().expect("a history");
    assert_eq!(last.status, "completed", "{history:#?}");
    assert!(before.iter().all(|r| r.status == "running"), "{history:#?}");
}

/// A superuser session over the harness's unix socket, for what the backend's Django
/// does (its role owns the table) and for pg_locks.
async fn superuser(db: &PgServer) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config.host_path(db.socket_dir()).port(db.port()).user("postgres").dbname(postgres::DB_NAME);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.expect("superuser connection");
    tokio::spawn(connection);
    client
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

fn advisory_locks(db: &PgServer) -> i64 {
    block_on(async {
        let client = superuser(db).await;
        client
            .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted", &[])
            .await
            .expect("pg_locks")
            .get(0)
    })
}

/// The backend's second launch, as it happens: two executions of one task started at
/// once. One renders and uploads, once; the other renders nothing, leaves the row alone,
/// exits 0 and says which execution has the task.
#[test]
fn two_executions_of_one_task_render_it_once() {
    let db = PgServer::start();
    let folders = Folders::new();
    let (ffmpeg, parents) = folders.counting_ffmpeg();
    db.insert_task("t-twice", "started");
    let text = blueprint("t-twice", "media/small.mp4", 5);
    let command = |execution: &str| {
        let mut env = db_env(&db);
        env.extend([
            ("TASK_ID", "t-twice".to_owned()),
            ("BLUEPRINT_JSON", text.clone()),
            ("CLOUD_RUN_EXECUTION", execution.to_owned()),
        ]);
        env.push(("FFMPEG", ffmpeg.display().to_string()));
        job_command(&folders, &env)
    };
    let (mut a, mut b) = (command("video-processor-aaaaa"), command("video-processor-bbbbb"));
    let (a, b) = (a.spawn().unwrap(), b.spawn().unwrap());
    let (a, b) = (finish(a), finish(b));
    let context = format!("A: {}\n\nB: {}", a.describe(), b.describe());
    assert_eq!((a.code, b.code), (Some(0), Some(0)), "{context}");

    let (winner, loser, winner_execution) = match (a.line_with("job completed"), b.line_with("job completed")) {
        (Some(_), None) => (&a, &b, "video-processor-aaaaa"),
        (None, Some(_)) => (&b, &a, "video-processor-bbbbb"),
        _ => panic!("not exactly one execution rendered\n{context}"),
    };
    let told = loser
        .line_with("another execution is working on this task")
        .unwrap_or_else(|| panic!("the loser did not say who has the task\n{context}"));
    assert_eq!(told["severity"], "WARNING", "{told}");
    assert_eq!(told["task_id"], "t-twice", "{told}");
    assert_eq!(told["holder_execution"], winner_execution, "{told}");
    assert!(loser.lines.iter().all(|l| l["task_id"] == "t-twice"), "a line without the task id\n{context}");
    assert!(loser.lines.iter().all(|l| l.get("stage").is_none()), "the loser entered a stage\n{context}");
    assert!(winner.line_with("took the task lock").is_some(), "{context}");

    // Every FFmpeg run (the only writer of the video) came from the winner.
    let starters: Vec<u32> =
        std::fs::read_to_string(&parents).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect();
    assert!(!starters.is_empty(), "{context}");
    assert!(
        starters.iter().all(|&pid| pid == winner.pid),
        "FFmpeg started by {starters:?}; winner {}\n{context}",
        winner.pid
    );
    assert_one_run(&db.history("t-twice"));
    let row = db.task("t-twice").unwrap();
    let output = folders.data.join("output/t-twice.mp4");
    assert_eq!(row.result.as_ref().unwrap()["file_size"], std::fs::metadata(&output).unwrap().len());
    assert!(std::fs::read_dir(folders.data.join("output")).unwrap().count() == 1, "a partial upload was left");
    assert_eq!(advisory_locks(&db), 0, "a lock outlived its process");
}

/// The lock ends with the process: a failed run, then a retry of the same task (as
/// Cloud Run's retry or a relaunch would), which takes the task and completes it.
#[test]
fn the_lock_ends_with_the_process() {
    let db = PgServer::start();
    let folders = Folders::new();
    db.insert_task("t-retry", "started");
    let mut env = db_env(&db);
    env.extend([("TASK_ID", "t-retry".to_owned()), ("BLUEPRINT_JSON", blueprint("t-retry", "media/later.mp4", 2))]);
    let first = run(job_command(&folders, &env));
    assert_eq!(first.code, Some(6), "{}", first.describe());
    assert_eq!(db.task("t-retry").unwrap().status, "failed");
    assert_eq!(advisory_locks(&db), 0, "the failed run's lock outlived it");

    std::fs::copy(folders.data.join("media/small.mp4"), folders.data.join("media/later.mp4")).unwrap();
    let retry = run(job_command(&folders, &env));
    assert_eq!(retry.code, Some(0), "{}", retry.describe());
    assert!(retry.line_with("took the task lock").is_some(), "{}", retry.describe());
    assert_eq!(db.task("t-retry").unwrap().status, "completed", "{}", retry.describe());
}

/// A task array locks each entry for that entry only: while the second entry is being
/// made, the first one's task is free (an execution launched for it is not told that it
/// is taken; it finds it completed), and only one lock is held.
#[test]
fn a_task_array_holds_each_entry_only_while_it_runs_it() {
    let db = PgServer::start();
    let folders = Folders::new();
    media::make_clip(&folders.data.join("media/big.mp4"), &CLIP_B.with_seconds(6.0));
    std::fs::create_dir_all(folders.data.join("blueprints")).unwrap();
    std::fs::write(folders.data.join("blueprints/first.json"), blueprint("t-first", "media/small.mp4", 2)).unwrap();
    std::fs::write(folders.data.join("blueprints/second.json"), blueprint("t-second", "media/big.mp4", 3)).unwrap();
    let manifest = folders.root.path().join("manifest.json");
    let entries = json!([
        {"task_id": "t-first", "blueprint_uri": "blueprints/first.json"},
        {"task_id": "t-second", "blueprint_uri": "blueprints/second.json"},
    ]);
    std::fs::write(&manifest, entries.to_string()).unwrap();
    db.insert_task("t-first", "started");
    db.insert_task("t-second", "started");
    let mut env = db_env(&db);
    env.push(("BLUEPRINT_MANIFEST_URI", manifest.display().to_string()));
    let array = job_command(&folders, &env).spawn().unwrap();
    wait_until("the second entry's encode", Duration::from_secs(120), || {
        db.task("t-second").is_some_and(|r| r.stage == "encode")
    });
    assert_eq!(db.task("t-first").unwrap().status, "completed");
    assert_eq!(advisory_locks(&db), 1, "the first entry's lock was kept");

    let mut single = db_env(&db);
    single.extend([("TASK_ID", "t-first".to_owned()), ("BLUEPRINT_JSON", blueprint("t-first", "media/small.mp4", 2))]);
    let again = run(job_command(&folders, &single));
    let array = finish(array);
    assert_eq!(again.code, Some(0), "{}", again.describe());
    assert!(
        again.line_with("completed already").is_some(),
        "the first entry's task was still locked\n{}",
        again.describe()
    );
    assert_eq!(array.code, Some(0), "{}", array.describe());
    assert_eq!(db.task("t-second").unwrap().status, "completed");
    assert_eq!(advisory_locks(&db), 0);
}

/// The backend's launch view saves its whole row after the job ended (`task.save()`: every
/// column of its model, in its order, with the values it read before launching). With
/// `deploy/keep-completed.sql` applied, a completed row stays completed while the other
/// columns change; a cancel of a running row and a relaunch of a failed one go through.
#[test]
fn keep_completed_survives_the_backends_full_row_save() {
    let db = PgServer::start();
    let folders = Folders::new();
    // The backend's table at a7621e1 has this column; the predecessor's fixture has not.
    db.execute("ALTER TABLE choreography_tasks ADD COLUMN job_execution_name varchar(500) NULL");
    db.execute(KEEP_COMPLETED);
    db.execute(KEEP_COMPLETED);
    for (task, status) in [("t-done", "started"), ("t-cancel", "started"), ("t-relaunch", "failed")] {
        db.insert_task(task, status);
    }

    // Django 5.2's UPDATE for `task.save()` on ChoreographyTask: the model's concrete
    // fields but the primary key, in declaration order, `updated_at` = now (auto_now).
    const DJANGO_SAVE: &str =
        "UPDATE \"choreography_tasks\" SET \"user_id\" = $1, \"status\" = $2, \"progress\" = $3, \
         \"stage\" = $4, \"message\" = $5, \"result\" = $6, \"error\" = $7, \"job_execution_name\" = $8, \
         \"song_id\" = $9, \"created_at\" = $10, \"updated_at\" = now() WHERE \"choreography_tasks\".\"task_id\" = $11";
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let backend = rt.block_on(superuser(&db));
    // What the view holds in memory: the row as read before it launched, then its changes.
    let stale = |task: &str| {
        rt.block_on(backend.query_one(
            "SELECT user_id, progress, song_id, created_at FROM choreography_tasks WHERE task_id = $1",
            &[&task],
        ))
        .unwrap()
    };
    let save = |task: &str, status: &str, stage: &str, message: &str, error: Option<&str>, execution: Option<&str>| {
        let row = stale(task);
        let (user, progress, song, created): (Option<i32>, i32, String, std::time::SystemTime) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let result: Option<Value> = None;
        rt.block_on(backend.execute(
            DJANGO_SAVE,
            &[&user, &status, &progress, &stage, &message, &result, &error, &execution, &song, &created, &task],
        ))
        .unwrap()
    };
    let extra = |task: &str| -> (Option<String>, i64) {
        let row = rt
            .block_on(backend.query_one(
                "SELECT job_execution_name, (extract(epoch FROM updated_at) * 1000000)::bigint FROM choreography_tasks WHERE task_id = $1",
                &[&task],
            ))
            .unwrap();
        (row.get(0), row.get(1))
    };

    let mut env = db_env(&db);
    env.extend([("TASK_ID", "t-done".to_owned()), ("BLUEPRINT_JSON", blueprint("t-done", "media/small.mp4", 2))]);
    let job = run(job_command(&folders, &env));
    assert_eq!(job.code, Some(0), "the job does not write through the trigger\n{}", job.describe());
    let done = db.task("t-done").unwrap();
    assert_eq!(done.status, "completed");

    // views.py:499-503 after `operation.result(timeout=30)` returned: the job had ended.
    let execution = "projects/p/locations/us-central1/jobs/video-processor/executions/video-processor-x7k2p";
    assert_eq!(
        save("t-done", "started", "video_assembly", "Job submitted, assembling video...", None, Some(execution)),
        1
    );
    let after = db.task("t-done").unwrap();
    assert_eq!(
        (&after.status, after.progress, &after.stage, &after.message),
        (&done.status, done.progress, &done.stage, &done.message)
    );
    assert_eq!((&after.result, &after.error), (&done.result, &done.error));
    let (execution_name, updated_at) = extra("t-done");
    assert_eq!(execution_name.as_deref(), Some(execution), "the other columns must still change");
    assert!(updated_at > done.updated_at_micros);

    // views.py:526-528 after three timeouts: "Job submission failed" over the same row.
    save(
        "t-done",
        "failed",
        "submitting_job",
        "Blueprint generated, submitting job...",
        Some("Job submission failed: Failed to create job execution after 3 attempts: Deadline Exceeded"),
        None,
    );
    let after = db.task("t-done").unwrap();
    assert_eq!((after.status.as_str(), after.error.as_deref(), &after.result), ("completed", None, &done.result));

    // views.py:693-696: the user cancels a running task.
    db.execute(
        "UPDATE choreography_tasks SET status = 'running', stage = 'encode', progress = 50 WHERE task_id = 't-cancel'",
    );
    save("t-cancel", "failed", "encode", "Task cancelled by user", Some("Cancelled by user"), Some(execution));
    let cancelled = db.task("t-cancel").unwrap();
    assert_eq!(
        (cancelled.status.as_str(), cancelled.error.as_deref(), cancelled.message.as_str()),
        ("failed", Some("Cancelled by user"), "Task cancelled by user")
    );

    // A failed task launched again (views.py:499-503 on a failed row).
    save("t-relaunch", "started", "video_assembly", "Job submitted, assembling video...", None, Some(execution));
    assert_eq!(db.task("t-relaunch").unwrap().status, "started");

    // Reopening a completed task on purpose.
    db.execute(
        "BEGIN; SET LOCAL blueprint_runner.reopen_completed = 'on'; \
         UPDATE choreography_tasks SET status = 'started', stage = 'queued' WHERE task_id = 't-done'; COMMIT;",
    );
    assert_eq!(db.task("t-done").unwrap().status, "started");
    // Outside that transaction the trigger holds again.
    db.execute("UPDATE choreography_tasks SET status = 'completed' WHERE task_id = 't-done'");
    db.execute("UPDATE choreography_tasks SET status = 'running' WHERE task_id = 't-done'");
    assert_eq!(db.task("t-done").unwrap().status, "completed");
}
