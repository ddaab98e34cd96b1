//! `blueprint-runner job` end to end against a real PostgreSQL server (started by the
//! harness on a temporary data folder, with the predecessor's Django-made table and a
//! role that may only SELECT and UPDATE it), the real guest, real FFmpeg and media made
//! on the spot. A test-only trigger keeps every version of the row, so each test reads
//! the full status history the backend would have seen.

use crate::support::media;
use crate::support::postgres;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use media::{CLIP_B, CLIP_SMALL};
use postgres::{PgServer, TaskRow};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("job-pg-guest-cache")
}

/// A test's folders: `data/` (local storage) and `work/` (the work-folder root).
struct Folders {
    root: tempfile::TempDir,
    data: PathBuf,
    work: PathBuf,
}

impl Folders {
    fn new() -> Folders {
        let root = tempfile::Builder::new().prefix("job-pg-").tempdir().expect("temp folder");
        let data = root.path().join("data");
        let work = root.path().join("work");
        std::fs::create_dir_all(data.join("media")).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        Folders { root, data, work }
    }

    fn small_media(&self) {
        media::make_clip(&self.data.join("media/small.mp4"), &CLIP_SMALL);
        media::make_song_mp3(&self.data.join("media/song.mp3"), 6.0);
    }

    /// A 1080p clip and a long song: encodes that last long enough to be interrupted.
    fn big_media(&self) {
        media::make_clip(&self.data.join("media/big.mp4"), &CLIP_B.with_seconds(6.0));
        media::make_song_mp3(&self.data.join("media/song.mp3"), 30.0);
    }

    fn assert_work_empty(&self, context: &str) {
        let left: Vec<_> = std::fs::read_dir(&self.work).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "the work folder was not removed: {left:?}\n{context}");
    }
}

fn movement(video: &str, start: f64, duration: f64, transition: &str) -> Value {
    json!({
        "clip_id": format!("m{start}"),
        "video_path": video,
        "start_time": start,
        "duration": duration,
        "trim_start": 0.0,
        "trim_end": 0.0,
        "transition_type": transition,
        "volume_adjustment": 1.0,
    })
}

fn blueprint(task_id: &str, moves: Vec<Value>) -> String {
    let total: f64 = moves.iter().map(|m| m["duration"].as_f64().unwrap()).sum();
    json!({
        "task_id": task_id,
        "audio_path": "media/song.mp3",
        "moves": moves,
        "total_duration": total,
        "output_config": {
            "output_path": format!("output/{task_id}.mp4"),
            "frame_rate": 25.0,
            "transition_duration": 1.0,
            "fade_duration": 0.5,
            "video_bitrate": "2M",
            "audio_bitrate": "128k",
            "normalize_audio": false,
        },
    })
    .to_string()
}

/// `count` moves of 5 s over the big clip, each after the first entering with `transition`.
fn big_moves(count: u32, transition: &str) -> Vec<Value> {
    (0..count)
        .map(|i| movement("media/big.mp4", f64::from(i) * 5.0, 5.0, if i == 0 { "cut" } else { transition }))
        .collect()
}

/// Two cut moves of 2 s over the small clip.
fn small_blueprint(task_id: &str) -> String {
    blueprint(task_id, vec![movement("media/small.mp4", 0.0, 2.0, "cut"), movement("media/small.mp4", 2.0, 2.0, "cut")])
}

/// The job exactly as the container runs it: no arguments, configuration from a clean
/// environment only.
fn job_command(folders: &Folders, blueprint: &str, env: &[(String, String)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("job")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BLUEPRINT_JSON", blueprint)
        .env("DATA_DIR", &folders.data)
        .env("WORK_DIR", &folders.work)
        .env("BLUEPRINT_RUNNER_CACHE_DIR", cache_dir())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A finished job: exit code, stdout lines (each must be JSON) and stderr.
struct Finished {
    code: Option<i32>,
    lines: Vec<Value>,
    stdout: String,
    stderr: String,
    seconds: f64,
}

impl Finished {
    fn describe(&self) -> String {
        format!(
            "exit code {:?} after {:.1} s\nstdout:\n{}\nstderr:\n{}",
            self.code, self.seconds, self.stdout, self.stderr
        )
    }

    /// The message the CLI printed (`error: ...` on stderr).
    fn cli_error(&self) -> String {
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or_else(|| panic!("no error line\n{}", self.describe()))
            .to_owned()
    }

    fn logged(&self, severity: &str, needle: &str) -> bool {
        self.lines.iter().any(|l| l["severity"] == severity && l.to_string().contains(needle))
    }
}

/// A job running in the background; stdout is collected as it comes.
struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    started: Instant,
}

impl Running {
    fn start(mut command: Command) -> Running {
        let mut child = command.spawn().expect("start blueprint-runner job");
        let stdout = Arc::new(Mutex::new(String::new()));
        let pipe = child.stdout.take().unwrap();
        let collected = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = collected.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Running { child, stdout, started: Instant::now() }
    }

    fn stdout_has(&self, needle: &str) -> bool {
        self.stdout.lock().unwrap().contains(needle)
    }

    fn wait(mut self) -> Finished {
        let status = self.child.wait().unwrap();
        let seconds = self.started.elapsed().as_secs_f64();
        let mut stderr = String::new();
        std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        // The reader thread ends with the pipe; give it a moment to take the last lines.
        std::thread::sleep(Duration::from_millis(100));
        let stdout = self.stdout.lock().unwrap().clone();
        let lines = stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("stdout line is not JSON ({e}): {l:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
                })
            })
            .collect();
        Finished { code: status.code(), lines, stdout, stderr, seconds }
    }
}

fn run_job(command: Command) -> Finished {
    Running::start(command).wait()
}

/// Waits until `ready` holds, polling every 50 ms.
fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server with the row of `task_id` (`started`), folders with the small media, and
/// the job's database variables plus TASK_ID.
fn small_task(task_id: &str) -> (PgServer, Folders, Vec<(String, String)>) {
    let db = PgServer::start();
    let folders = Folders::new();
    folders.small_media();
    db.insert_task(task_id, "started");
    let mut env = db.env();
    env.push(("TASK_ID".into(), task_id.into()));
    (db, folders, env)
}

const STAGES: [&str; 7] = ["validate", "fetch", "probe", "plan", "encode", "upload", "done"];

/// Progress never goes down and stages only go forward.
fn assert_monotonic(history: &[TaskRow]) {
    for pair in history.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let position =
            |stage: &str| STAGES.iter().position(|s| *s == stage).unwrap_or_else(|| panic!("unknown stage {stage}"));
        assert!(b.progress >= a.progress, "progress went from {} to {}: {history:#?}", a.progress, b.progress);
        assert!(position(&b.stage) >= position(&a.stage), "stage went from {} to {}: {history:#?}", a.stage, b.stage);
    }
}

/// The happy path, over the Cloud SQL style unix-socket folder: the full history, the
/// result the backend reads, and the logs.
#[test]
fn successful_job_writes_a_monotonic_history_and_the_result() {
    let db = PgServer::start();
    let folders = Folders::new();
    folders.small_media();
    db.insert_task("task-ok", "started");
    // Cloud Run mounts /cloudsql/PROJECT:REGION:INSTANCE; the same shape of name here.
    let cloudsql = folders.root.path().join("cloudsql");
    std::fs::create_dir_all(&cloudsql).unwrap();
    let instance = cloudsql.join("project:region:instance");
    std::os::unix::fs::symlink(db.socket_dir(), &instance).unwrap();
    let env = pairs(&[
        ("TASK_ID", "task-ok"),
        ("DB_HOST", instance.to_str().unwrap()),
        ("DB_PORT", &db.port().to_string()),
        ("DB_NAME", "choreography"),
        ("DB_USER", "runner"),
    ]);
    let run = run_job(job_command(&folders, &small_blueprint("task-ok"), &env));
    assert_eq!(run.code, Some(0), "{}", run.describe());

    let row = db.task("task-ok").expect("row");
    assert_eq!((row.status.as_str(), row.progress, row.stage.as_str()), ("completed", 100, "done"), "{row:#?}");
    assert_eq!(row.error, None);
    let result = row.result.clone().expect("result");
    let output = folders.data.join("output/task-ok.mp4");
    assert_eq!(result["output_path"], "output/task-ok.mp4");
    assert_eq!(result["video_url"], format!("file://{}", std::fs::canonicalize(&output).unwrap().display()));
    assert_eq!(result["moves_count"], 2);
    assert_eq!(result["file_size"], std::fs::metadata(&output).unwrap().len());
    assert!((result["duration"].as_f64().unwrap() - 4.0).abs() < 0.1, "{result}");
    for timing in ["validate_seconds", "fetch_and_probe_seconds", "plan_seconds", "encode_seconds", "upload_seconds"] {
        assert!(result["timings"][timing].as_f64().is_some(), "no {timing} in {result}");
    }

    let history = db.history("task-ok");
    assert_monotonic(&history);
    let stages: Vec<&str> = history.iter().map(|r| r.stage.as_str()).collect();
    for stage in STAGES {
        assert!(stages.contains(&stage), "stage {stage} never written: {stages:?}");
    }
    assert!(history[..history.len() - 1].iter().all(|r| r.status == "running"), "{history:#?}");
    assert_eq!(history.iter().filter(|r| r.status == "completed").count(), 1);

    // Logs: Cloud Logging entries on stdout, each naming the task and its stage.
    assert!(!run.lines.is_empty());
    for line in &run.lines {
        assert!(["DEBUG", "INFO", "WARNING", "ERROR"].contains(&line["severity"].as_str().unwrap_or("")), "{line}");
        assert!(line["message"].is_string(), "{line}");
        assert_eq!(line["task_id"], "task-ok", "a line without the task id: {line}");
    }
    assert!(run.lines.iter().any(|l| l["stage"] == "encode"), "{}", run.describe());
    folders.assert_work_empty(&run.describe());
}

/// Each failure class ends in a `failed` row with the CLI's own message, the stage it
/// failed in, and its exit code; nothing is left in the work folder.
#[test]
fn every_failure_class_is_recorded_with_its_stage() {
    let db = PgServer::start();
    let folders = Folders::new();
    folders.small_media();
    let broken_ffmpeg = folders.root.path().join("ffmpeg-that-fails");
    std::fs::write(&broken_ffmpeg, "#!/bin/sh\necho 'simulated encoder crash' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&broken_ffmpeg, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let mut invalid: Value = serde_json::from_str(&small_blueprint("t-invalid")).unwrap();
    invalid["moves"][1]["duration"] = json!(-2.0);
    let missing = blueprint(
        "t-missing",
        vec![movement("media/small.mp4", 0.0, 2.0, "cut"), movement("media/nowhere.mp4", 2.0, 2.0, "cut")],
    );
    struct Case {
        task: &'static str,
        blueprint: String,
        extra: Vec<(String, String)>,
        code: i32,
        stage: &'static str,
        error_has: &'static str,
    }
    let cases = [
        Case {
            task: "t-invalid",
            blueprint: invalid.to_string(),
            extra: vec![],
            code: 2,
            stage: "validate",
            error_has: "/moves/1/duration",
        },
        Case {
            task: "t-json",
            blueprint: "{\"task_id\": \"t-json\", ".into(),
            extra: vec![],
            code: 2,
            stage: "validate",
            error_has: "JSON",
        },
        Case {
            task: "t-missing",
            blueprint: missing,
            extra: vec![],
            code: 6,
            stage: "fetch",
            error_has: "/moves/1/video_path",
        },
        Case {
            task: "t-ffmpeg",
            blueprint: small_blueprint("t-ffmpeg"),
            extra: pairs(&[("FFMPEG", broken_ffmpeg.to_str().unwrap())]),
            code: 5,
            stage: "encode",
            error_has: "simulated encoder crash",
        },
        Case {
            task: "t-fuel",
            blueprint: small_blueprint("t-fuel"),
            extra: pairs(&[("GUEST_FUEL", "20000")]),
            code: 3,
            stage: "validate",
            error_has: "fuel",
        },
        Case {
            task: "t-mismatch",
            blueprint: small_blueprint("another-task"),
            extra: vec![],
            code: 2,
            stage: "validate",
            error_has: "/task_id: the blueprint is for task 'another-task' but TASK_ID is 't-mismatch'",
        },
    ];
    for case in cases {
        db.insert_task(case.task, "started");
        let mut env = db.env();
        env.push(("TASK_ID".into(), case.task.into()));
        env.extend(case.extra);
        let run = run_job(job_command(&folders, &case.blueprint, &env));
        let context = format!("case {}\n{}", case.task, run.describe());
        assert_eq!(run.code, Some(case.code), "{context}");
        let row = db.task(case.task).expect("row");
        assert_eq!(row.status, "failed", "{context}\n{row:#?}");
        assert_eq!(row.stage, case.stage, "{context}\n{row:#?}");
        let error = row.error.clone().unwrap_or_default();
        assert!(error.contains(case.error_has), "{context}\nerror: {error}");
        assert_eq!(error, run.cli_error(), "the row and the CLI say different things\n{context}");
        assert_eq!(row.result, None);
        assert_monotonic(&db.history(case.task));
        assert!(run.logged("ERROR", case.error_has), "the failure is not logged as ERROR\n{context}");
        folders.assert_work_empty(&context);
    }
}

/// Launched without TASK_ID (the backend may do that), an invalid blueprint is still
/// recorded on its task's row: the guest returns the task id it could validate with the
/// errors, and the host never reads the untrusted JSON itself. A task id the guest could
/// not validate names no row; with TASK_ID, the refusal goes to that task's row as before.
#[test]
fn an_invalid_blueprint_without_task_id_is_recorded_on_its_row() {
    let db = PgServer::start();
    let folders = Folders::new();
    let invalid = |task_id: &str| {
        let moves = (0..4).map(|i| movement("media/small.mp4", f64::from(i) * 2.0, 2.0, "cut")).collect();
        let mut doc: Value = serde_json::from_str(&blueprint(task_id, moves)).unwrap();
        doc["moves"][3]["duration"] = json!(-1);
        doc
    };
    for task in ["t-lost", "t-given", "t-named-in-blueprint"] {
        db.insert_task(task, "started");
    }

    let run = run_job(job_command(&folders, &invalid("t-lost").to_string(), &db.env()));
    assert_eq!(run.code, Some(2), "{}", run.describe());
    let row = db.task("t-lost").expect("row");
    assert_eq!(
        (row.status.as_str(), row.stage.as_str()),
        ("failed", "validate"),
        "{}
{row:#?}",
        run.describe()
    );
    let error = row.error.clone().unwrap_or_default();
    assert!(
        error.contains("/moves/3/duration"),
        "error: {error}
{}",
        run.describe()
    );
    assert_eq!(
        error,
        run.cli_error(),
        "the row and the CLI say different things
{}",
        run.describe()
    );
    assert_eq!(row.result, None);
    assert_monotonic(&db.history("t-lost"));
    // Only the first `running` change, sent before the guest answered, has no task yet.
    let unwritten = |l: &Value| l["message"] == "status not written: no task id known" && l["status"] == "failed";
    assert!(!run.lines.iter().any(unwritten), "{}", run.describe());
    assert!(run.lines.iter().any(|l| l["severity"] == "ERROR" && l["task_id"] == "t-lost"), "{}", run.describe());
    let lost_history = db.history("t-lost").len();

    // A malformed task id is no row's: nothing is written, and nothing else is touched.
    let mut malformed = invalid("t-lost");
    malformed["task_id"] = json!("t-given'; --");
    let run = run_job(job_command(&folders, &malformed.to_string(), &db.env()));
    assert_eq!(run.code, Some(2), "{}", run.describe());
    assert!(run.cli_error().contains("/task_id"), "{}", run.describe());
    assert_eq!(db.task("t-given").expect("row").status, "started", "{}", run.describe());
    assert_eq!(db.history("t-lost").len(), lost_history, "t-lost was written again\n{}", run.describe());

    // With TASK_ID, a refused blueprint naming another task fails TASK_ID's row.
    let mut env = db.env();
    env.push(("TASK_ID".into(), "t-given".into()));
    let run = run_job(job_command(&folders, &invalid("t-named-in-blueprint").to_string(), &env));
    assert_eq!(run.code, Some(2), "{}", run.describe());
    let given = db.task("t-given").expect("row");
    assert_eq!(
        given.status,
        "failed",
        "{}
{given:#?}",
        run.describe()
    );
    assert!(given.error.unwrap_or_default().contains("/moves/3/duration"), "{}", run.describe());
    assert_monotonic(&db.history("t-given"));
    assert_eq!(db.task("t-named-in-blueprint").expect("row").status, "started", "{}", run.describe());
    assert_eq!(db.history("t-lost").len(), lost_history, "t-lost was written again\n{}", run.describe());
    folders.assert_work_empty(&run.describe());
}

/// Bad configuration: every problem in one message, and the row says so.
#[test]
fn configuration_problems_are_listed_together_and_recorded() {
    let db = PgServer::start();
    let folders = Folders::new();
    db.insert_task("t-config", "started");
    let mut env = db.env();
    env.extend(pairs(&[
        ("TASK_ID", "t-config"),
        ("DOWNLOAD_CONCURRENCY", "0"),
        ("GUEST_MEMORY_MIB", "4096"),
        ("WORK_DIR", "/nonexistent/work"),
    ]));
    let run = run_job(job_command(&folders, &small_blueprint("t-config"), &env));
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let message = run.cli_error();
    for variable in ["DOWNLOAD_CONCURRENCY", "GUEST_MEMORY_MIB", "WORK_DIR"] {
        assert!(message.contains(variable), "{variable} not named in: {message}");
    }
    assert!(message.starts_with("the job's configuration has 3 problems"), "{message}");
    let row = db.task("t-config").unwrap();
    assert_eq!((row.status.as_str(), row.error.as_deref()), ("failed", Some(message.as_str())));

    // A task the backend never created: said plainly, nothing written anywhere.
    let mut env = db.env();
    env.push(("TASK_ID".into(), "t-unknown".into()));
    let run = run_job(job_command(&folders, &small_blueprint("t-unknown"), &env));
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(run.cli_error().contains("task 't-unknown' has no row in choreography_tasks"), "{}", run.describe());
    assert!(db.task("t-unknown").is_none());
}

/// The database goes down in the middle of the job and comes back: the job keeps
/// working, retries, and the row ends completed.
#[test]
fn database_down_mid_job_then_back() {
    let (db, folders, env) = small_task("t-outage");
    let job = Running::start(job_command(&folders, &small_blueprint("t-outage"), &env));
    wait_until("the first status", Duration::from_secs(60), || {
        db.history("t-outage").iter().any(|r| r.stage == "validate")
    });
    db.stop();
    wait_until("a failed status write", Duration::from_secs(60), || job.stdout_has("cannot write the status"));
    std::thread::sleep(Duration::from_millis(500));
    db.start_again();
    let run = job.wait();
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let row = db.task("t-outage").unwrap();
    assert_eq!(row.status, "completed", "{row:#?}\n{}", run.describe());
    assert!(row.result.is_some());
    assert_monotonic(&db.history("t-outage"));
    assert!(run.logged("WARNING", "cannot write the status"), "{}", run.describe());
    folders.assert_work_empty(&run.describe());
}

/// The database stays down: the video is still made, the status that could not be
/// written is logged, and the exit code says so (7).
#[test]
fn database_that_stays_down_still_gets_the_work_done() {
    let (db, folders, mut env) = small_task("t-down");
    db.stop();
    env.push(("STATUS_FLUSH_SECS".into(), "2".into()));
    let run = run_job(job_command(&folders, &small_blueprint("t-down"), &env));
    assert_eq!(run.code, Some(7), "{}", run.describe());
    assert!(folders.data.join("output/t-down.mp4").is_file(), "{}", run.describe());
    let unrecorded = run
        .lines
        .iter()
        .find(|l| l["severity"] == "ERROR" && l.get("unrecorded_status").is_some())
        .unwrap_or_else(|| panic!("the unwritten status is not logged\n{}", run.describe()));
    let status: Value = serde_json::from_str(unrecorded["unrecorded_status"].as_str().unwrap()).unwrap();
    assert_eq!(status["status"], "completed", "{unrecorded}");
    assert_eq!(status["task_id"], "t-down");
    folders.assert_work_empty(&run.describe());
    db.start_again();
    assert_eq!(db.task("t-down").unwrap().status, "started", "nothing could have been written");
}

/// SIGTERM in the middle of an encode: FFmpeg stops, the row says cancelled in stage
/// encode, the work folder is gone, and the job is out within a few seconds.
#[test]
fn sigterm_mid_encode_cancels_cleanly() {
    let db = PgServer::start();
    let folders = Folders::new();
    folders.big_media();
    let moves = big_moves(5, "crossfade");
    db.insert_task("t-term", "started");
    let mut env = db.env();
    env.push(("TASK_ID".into(), "t-term".into()));
    let job = Running::start(job_command(&folders, &blueprint("t-term", moves), &env));
    wait_until("the encode stage", Duration::from_secs(120), || db.task("t-term").is_some_and(|r| r.stage == "encode"));
    // Signalled while a step's FFmpeg runs, not between two steps.
    wait_until("an FFmpeg step", Duration::from_secs(60), || !ffmpeg_processes_in(&folders.work).is_empty());
    let ffmpeg_before = ffmpeg_processes_in(&folders.work);
    let signalled = Instant::now();
    let status = Command::new("kill").args(["-TERM", &job.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let run = job.wait();
    let exit_seconds = signalled.elapsed().as_secs_f64();
    eprintln!("job stopped {exit_seconds:.3} s after SIGTERM");
    assert_eq!(run.code, Some(8), "{}", run.describe());
    assert!(exit_seconds < 5.0, "took {exit_seconds:.1} s to stop\n{}", run.describe());
    assert!(
        !ffmpeg_before.is_empty(),
        "no FFmpeg was running at SIGTERM: the test did not test anything\n{}",
        run.describe()
    );
    assert!(ffmpeg_processes_in(&folders.work).is_empty(), "FFmpeg still runs after the job ended");
    let row = db.task("t-term").unwrap();
    assert_eq!((row.status.as_str(), row.stage.as_str()), ("failed", "encode"), "{row:#?}");
    let error = row.error.unwrap_or_default();
    assert!(error.starts_with("cancelled: SIGTERM received"), "{error}");
    assert_eq!(error, run.cli_error());
    folders.assert_work_empty(&run.describe());
    assert!(!folders.data.join("output/t-term.mp4").exists(), "a partial output was stored");
}

/// PIDs of FFmpeg processes whose command line names a path under `folder`.
fn ffmpeg_processes_in(folder: &Path) -> Vec<u32> {
    let needle = folder.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.starts_with("ffmpeg") && cmdline.contains(&needle)).then_some(pid)
        })
        .collect()
}

/// A completed task run again: with TASK_ID it stops before any work; without it, the
/// late "running" write it sends is refused by the guard. Either way the row, its
/// history and the output stay exactly as they were.
#[test]
fn a_completed_task_run_again_changes_nothing() {
    let db = PgServer::start();
    let folders = Folders::new();
    folders.small_media();
    db.insert_task("t-again", "started");
    let env = vec![("DATABASE_URL".to_owned(), db.database_url()), ("TASK_ID".to_owned(), "t-again".to_owned())];
    let first = run_job(job_command(&folders, &small_blueprint("t-again"), &env));
    assert_eq!(first.code, Some(0), "{}", first.describe());
    let output = folders.data.join("output/t-again.mp4");
    let (row, history, bytes) = (db.task("t-again").unwrap(), db.history("t-again"), std::fs::read(&output).unwrap());
    let modified = std::fs::metadata(&output).unwrap().modified().unwrap();
    assert_eq!(row.status, "completed");

    for env in [env.clone(), vec![("DATABASE_URL".to_owned(), db.database_url())]] {
        let again = run_job(job_command(&folders, &small_blueprint("t-again"), &env));
        assert_eq!(again.code, Some(0), "{}", again.describe());
        let now = db.task("t-again").unwrap();
        assert_eq!(
            (now.status.as_str(), now.progress, now.updated_at_micros),
            ("completed", 100, row.updated_at_micros),
            "{}",
            again.describe()
        );
        assert_eq!(now.result, row.result);
        assert_eq!(
            db.history("t-again").len(),
            history.len(),
            "the completed row was written again\n{}",
            again.describe()
        );
        assert!(again.logged("INFO", "completed already"), "{}", again.describe());
        assert_eq!(std::fs::read(&output).unwrap(), bytes);
        assert_eq!(std::fs::metadata(&output).unwrap().modified().unwrap(), modified, "the output was rewritten");
        folders.assert_work_empty(&again.describe());
    }
}

/// A crash (SIGKILL mid-encode: no cleanup, the row left `running`) then a re-run: the
/// re-run starts from scratch and stores byte for byte the video a clean run makes.
#[test]
fn a_re_run_after_a_crash_gives_the_same_output() {
    let db = PgServer::start();
    let folders = Folders::new();
    folders.big_media();
    let text = blueprint("t-crash", big_moves(3, "fade_black"));
    db.insert_task("t-crash", "started");
    let mut env = db.env();
    env.push(("TASK_ID".into(), "t-crash".into()));

    let job = Running::start(job_command(&folders, &text, &env));
    wait_until("the encode stage", Duration::from_secs(120), || {
        db.task("t-crash").is_some_and(|r| r.stage == "encode")
    });
    wait_until("an FFmpeg child", Duration::from_secs(30), || !ffmpeg_processes_in(&folders.work).is_empty());
    Command::new("kill").args(["-KILL", &job.child.id().to_string()]).status().unwrap();
    let crashed = job.wait();
    assert_eq!(crashed.code, None, "{}", crashed.describe());
    // The kernel ends FFmpeg with its parent (PR_SET_PDEATHSIG): no orphan keeps encoding.
    wait_until("FFmpeg to die with the job", Duration::from_secs(2), || ffmpeg_processes_in(&folders.work).is_empty());
    assert_eq!(db.task("t-crash").unwrap().status, "running");

    let rerun = run_job(job_command(&folders, &text, &env));
    assert_eq!(rerun.code, Some(0), "{}", rerun.describe());
    assert_eq!(db.task("t-crash").unwrap().status, "completed");
    let after_crash = std::fs::read(folders.data.join("output/t-crash.mp4")).unwrap();

    // The same blueprint from a clean start, as another run of the task would do.
    db.execute("UPDATE choreography_tasks SET status = 'started' WHERE task_id = 't-crash'");
    let clean = run_job(job_command(&folders, &text, &env));
    assert_eq!(clean.code, Some(0), "{}", clean.describe());
    let from_clean = std::fs::read(folders.data.join("output/t-crash.mp4")).unwrap();
    assert!(
        after_crash == from_clean,
        "the re-run after a crash made a different file ({} vs {} bytes)",
        after_crash.len(),
        from_clean.len()
    );
}

/// Cloud Run retries every non-zero exit. A retry of a failure that would only happen
/// again (here: a "clip" that is a text file, exit 4) ends at once with the same code,
/// touching neither the storage nor the row; a failure that may pass (a missing object,
/// exit 6: it may have been uploaded since) is retried in full.
#[test]
fn a_retry_does_not_repeat_a_deterministic_failure() {
    let db = PgServer::start();
    let folders = Folders::new();
    folders.small_media();
    std::fs::write(folders.data.join("media/text.mp4"), "not a video").unwrap();
    let cases = [
        (
            "t-media",
            blueprint(
                "t-media",
                vec![movement("media/small.mp4", 0.0, 2.0, "cut"), movement("media/text.mp4", 2.0, 2.0, "cut")],
            ),
            4,
            false,
        ),
        (
            "t-later",
            blueprint(
                "t-later",
                vec![movement("media/small.mp4", 0.0, 2.0, "cut"), movement("media/later.mp4", 2.0, 2.0, "cut")],
            ),
            6,
            true,
        ),
    ];
    for (task, document, code, retried) in cases {
        db.insert_task(task, "started");
        let mut env = db.env();
        env.push(("TASK_ID".into(), task.into()));
        env.push(("CLOUD_RUN_TASK_ATTEMPT".into(), "0".into()));
        let first = run_job(job_command(&folders, &document, &env));
        assert_eq!(first.code, Some(code), "{}", first.describe());
        let failed = db.task(task).unwrap();
        assert_eq!(failed.status, "failed");
        assert!(failed.message.ends_with(&format!("(exit {code})")), "{failed:?}");
        let written = db.history(task).len();

        env.retain(|(name, _)| name != "CLOUD_RUN_TASK_ATTEMPT");
        env.push(("CLOUD_RUN_TASK_ATTEMPT".into(), "1".into()));
        let started = std::time::Instant::now();
        let again = run_job(job_command(&folders, &document, &env));
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(again.code, Some(code), "{}", again.describe());
        if retried {
            assert!(db.history(task).len() > written, "{task}: not retried\n{}", again.describe());
        } else {
            assert!(seconds < 2.0, "{task}: took {seconds} s");
            assert_eq!(db.history(task).len(), written, "{task}: the retry wrote the row\n{}", again.describe());
            assert!(again.logged("WARNING", "not retried"), "{}", again.describe());
            assert!(!again.stdout.contains("\"stage\":\"fetch\""), "{task}: the retry fetched\n{}", again.describe());
        }
        folders.assert_work_empty(task);
    }
}
