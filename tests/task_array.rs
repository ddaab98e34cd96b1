//! Many videos in one Cloud Run execution: `blueprint-runner job` over a manifest (checked
//! in the guest, `validate-manifest`), as a task array of two tasks started at once,
//! against a real fake-gcs-server (behind a proxy that counts requests) and a real
//! PostgreSQL with the backend's table.

use crate::support::gcs;
use crate::support::media;
use crate::support::postgres;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gcs::{Action, Emulator, FaultProxy};
use media::StreamFacts;
use postgres::PgServer;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const BUCKET: &str = "choreo";
const MANIFEST: &str = "manifests/batch.json";

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("task-array-guest-cache")
}

/// `job` over the task array `manifest` with the data folder `data`, configured from
/// nothing but these (and `PATH`), as Cloud Run starts it.
fn local_job(manifest: &Path, data: &Path, work: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("job")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BLUEPRINT_MANIFEST_URI", manifest)
        .env("DATA_DIR", data)
        .env("WORK_DIR", work)
        .env("BLUEPRINT_RUNNER_CACHE_DIR", cache_dir());
    command
}

/// Two 1.5 s moves of the small clip, for task `task_id`.
fn blueprint(task_id: &str, output: &str) -> Value {
    let moves: Vec<Value> = (0..2)
        .map(|k| {
            json!({"clip_id": format!("m{k}"), "video_path": "data/steps/small.mp4", "start_time": 1.5 * k as f64, "duration": 1.5,
                   "trim_start": 0.5 * k as f64, "transition_type": "cut", "volume_adjustment": 1.0})
        })
        .collect();
    json!({"task_id": task_id, "audio_path": "data/songs/song.mp3", "moves": moves, "total_duration": 3.0,
           "output_config": {"output_path": output, "frame_rate": 25}})
}

fn task_id(entry: usize) -> String {
    format!("array-{entry}")
}

/// Seven entries: five good (entry 6 names its blueprint by a key in the job's bucket,
/// not a gs:// address); entry 3's blueprint is invalid (a negative trim); entry 5's
/// blueprint is for another task than its entry says.
fn stock(emulator: &Emulator) {
    let folder = tempfile::tempdir().unwrap();
    media::make_clip(&folder.path().join("small.mp4"), &media::CLIP_SMALL);
    media::make_song_mp3(&folder.path().join("song.mp3"), 5.0);
    emulator.create_bucket(BUCKET);
    emulator.put(BUCKET, "steps/small.mp4", &std::fs::read(folder.path().join("small.mp4")).unwrap());
    emulator.put(BUCKET, "songs/song.mp3", &std::fs::read(folder.path().join("song.mp3")).unwrap());
    let mut entries = Vec::new();
    for entry in 0..7 {
        let id = task_id(entry);
        let mut document = blueprint(&id, &format!("data/output/{id}.mp4"));
        if entry == 3 {
            document["moves"][1]["trim_start"] = json!(-1.0);
        }
        if entry == 5 {
            document["task_id"] = json!("someone-else");
        }
        emulator.put(BUCKET, &format!("blueprints/{id}.json"), document.to_string().as_bytes());
        let uri = if entry == 6 {
            format!("data/blueprints/{id}.json")
        } else {
            format!("gs://{BUCKET}/blueprints/{id}.json")
        };
        entries.push(json!({"task_id": id, "blueprint_uri": uri}));
    }
    emulator.put(BUCKET, MANIFEST, Value::Array(entries).to_string().as_bytes());
}

fn task(index: usize, proxy: &FaultProxy, db: &PgServer, work: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("job")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BLUEPRINT_MANIFEST_URI", format!("gs://{BUCKET}/{MANIFEST}"))
        .env("STORAGE", "gcs")
        .env("GCS_BUCKET_NAME", BUCKET)
        .env("STORAGE_EMULATOR_HOST", proxy.host())
        .env("WORK_DIR", work)
        .env("BLUEPRINT_RUNNER_CACHE_DIR", cache_dir())
        .env("CLOUD_RUN_TASK_INDEX", index.to_string())
        .env("CLOUD_RUN_TASK_COUNT", "2")
        .env("CLOUD_RUN_TASK_ATTEMPT", "0")
        .env("CLOUD_RUN_EXECUTION", "batch-x7k2p")
        .envs(db.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn two_tasks_share_a_manifest_and_each_entry_is_its_own_job() {
    let emulator = Emulator::start();
    stock(&emulator);
    let db = PgServer::start();
    for entry in 0..7 {
        db.insert_task(&task_id(entry), "started");
    }
    let proxy = FaultProxy::start(&emulator.address, |_, _| Action::Forward);
    let work = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..2).map(|index| task(index, &proxy, &db, work.path()).spawn().unwrap()).collect();
    let outputs: Vec<_> = children.into_iter().map(|child| child.wait_with_output().unwrap()).collect();
    let describe = |index: usize| {
        format!(
            "task {index}: {:?}\nstdout:\n{}\nstderr:\n{}",
            outputs[index].status,
            String::from_utf8_lossy(&outputs[index].stdout),
            String::from_utf8_lossy(&outputs[index].stderr)
        )
    };
    // Task 0 runs entries 0, 2, 4 and 6, all good; task 1 runs 1, 3 and 5, two of them refused.
    assert_eq!(outputs[0].status.code(), Some(0), "{}", describe(0));
    assert_eq!(outputs[1].status.code(), Some(2), "{}", describe(1));

    for entry in [0, 1, 2, 4, 6] {
        let id = task_id(entry);
        let row = db.task(&id).unwrap();
        assert_eq!((row.status.as_str(), row.progress), ("completed", 100), "{id}: {row:?}\n{}", describe(entry % 2));
        let result = row.result.expect("a result");
        assert_eq!(result["task_index"], entry % 2, "{result}");
        assert_eq!(
            (result["task_attempt"].as_u64(), result["execution"].as_str()),
            (Some(0), Some("batch-x7k2p")),
            "{result}"
        );
        let video = emulator.get(BUCKET, &format!("output/{id}.mp4")).unwrap_or_else(|| panic!("no video for {id}"));
        let local = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(local.path(), &video).unwrap();
        assert_eq!(media::probe(local.path()).video().packets(), 75, "{id}: 3 s at 25 fps");
    }
    let invalid = db.task(&task_id(3)).unwrap();
    assert_eq!(invalid.status, "failed", "{invalid:?}");
    assert!(invalid.error.as_deref().unwrap_or_default().contains("/moves/1/trim_start"), "{invalid:?}");
    let mismatch = db.task(&task_id(5)).unwrap();
    assert_eq!(mismatch.status, "failed", "{mismatch:?}");
    let error = mismatch.error.unwrap_or_default();
    assert!(error.contains("/5/task_id") && error.contains("someone-else"), "{error}");
    assert!(
        emulator.get(BUCKET, "output/array-3.mp4").is_none() && emulator.get(BUCKET, "output/array-5.mp4").is_none()
    );

    // No entry was done twice: each blueprint was read once, each video stored once.
    for entry in 0..7 {
        let blueprint = format!("blueprints/{}.json", task_id(entry)).replace('/', "%2F");
        assert_eq!(
            proxy.count(&format!("/o/{blueprint}?alt=media")),
            1,
            "entry {entry}: {:?}",
            proxy.seen.lock().unwrap()
        );
    }
    for entry in [0, 1, 2, 4, 6] {
        let output = format!("output/{}.mp4", task_id(entry)).replace('/', "%2F");
        assert_eq!(proxy.count(&format!("name={output}")), 1, "entry {entry}: {:?}", proxy.seen.lock().unwrap());
    }

    // Every log line of an entry names its task twice (a field, and the label Cloud
    // Logging indexes), and every line names the Cloud Run task and execution.
    let stdout = String::from_utf8_lossy(&outputs[1].stdout);
    let lines: Vec<Value> = stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    assert!(lines.len() > 10, "{}", describe(1));
    for line in &lines {
        assert_eq!((line["task_index"].as_u64(), line["execution"].as_str()), (Some(1), Some("batch-x7k2p")), "{line}");
        if let Some(task) = line.get("task_id") {
            assert_eq!(&line["logging.googleapis.com/labels"]["task_id"], task, "{line}");
        }
    }
    for entry in [1, 3, 5] {
        assert!(lines.iter().any(|line| line["task_id"] == task_id(entry).as_str()), "no line for entry {entry}");
    }
    let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "work folders left: {left:?}");
}

/// A manifest that is not a list of entries fails the task before any entry runs.
#[test]
fn an_unusable_manifest_fails_the_task_and_touches_no_row() {
    let emulator = Emulator::start();
    emulator.create_bucket(BUCKET);
    emulator.put(BUCKET, MANIFEST, br#"{"task_id": "array-0"}"#);
    let db = PgServer::start();
    db.insert_task("array-0", "started");
    let proxy = FaultProxy::start(&emulator.address, |_, _| Action::Forward);
    let work = tempfile::tempdir().unwrap();
    let output = task(0, &proxy, &db, work.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("must be a JSON list"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(db.task("array-0").unwrap().status, "started");
}

/// A manifest in a local file over a local data folder, without a database: entries
/// name their blueprints by key, each runs as its own job (status lines on stdout).
#[test]
fn a_local_manifest_runs_its_entries_over_a_data_folder() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let work = root.path().join("work");
    // The backend's layout: keys `data/steps/...` name `steps/...` in the data folder.
    std::fs::create_dir_all(data.join("steps")).unwrap();
    std::fs::create_dir_all(data.join("songs")).unwrap();
    std::fs::create_dir_all(data.join("blueprints")).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    media::make_clip(&data.join("steps/small.mp4"), &media::CLIP_SMALL);
    media::make_song_mp3(&data.join("songs/song.mp3"), 5.0);
    let mut entries = Vec::new();
    for entry in 0..2 {
        let id = task_id(entry);
        std::fs::write(
            data.join(format!("blueprints/{id}.json")),
            blueprint(&id, &format!("output/{id}.mp4")).to_string(),
        )
        .unwrap();
        entries.push(json!({"task_id": id, "blueprint_uri": format!("blueprints/{id}.json")}));
    }
    let manifest = root.path().join("manifest.json");
    std::fs::write(&manifest, Value::Array(entries).to_string()).unwrap();
    let output = local_job(&manifest, &data, &work).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let completed: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["status"] == "completed")
        .collect();
    assert_eq!(completed.len(), 2, "{stdout}");
    for entry in 0..2 {
        let video = data.join(format!("output/{}.mp4", task_id(entry)));
        assert_eq!(media::probe(&video).video().packets(), 75, "{}", video.display());
        std::fs::remove_file(video).unwrap();
    }

    // `run --manifest` does the same from the command line.
    let output = Command::new(BIN)
        .args(["run", "--data-dir"])
        .arg(&data)
        .arg("--work-dir")
        .arg(&work)
        .arg("--cache-dir")
        .arg(cache_dir())
        .arg("--manifest")
        .arg(&manifest)
        .env_remove("BLUEPRINT_MANIFEST_URI")
        .env_remove("BLUEPRINT_JSON")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    for entry in 0..2 {
        assert!(data.join(format!("output/{}.mp4", task_id(entry))).exists());
    }
}

/// Entries name their blueprints by keys in the data folder, read through the storage
/// like every other key: a FIFO there does not hold the task (it ends at once, not at
/// some writer's whim, and not past SIGTERM), and a symbolic link from inside the folder
/// to a file outside it is not followed, so nothing of that file reaches a message.
#[test]
fn a_fifo_or_a_link_out_as_an_entry_fails_that_entry_at_once_and_reads_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let work = root.path().join("work");
    std::fs::create_dir_all(data.join("blueprints")).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let fifo = std::ffi::CString::new(data.join("blueprints/fifo.json").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads the NUL-terminated path it is given.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    // A blueprint whose task id would be echoed by the mismatch it makes.
    const SECRET: &str = "secret-7f3a9c";
    let outside = root.path().join("outside.json");
    std::fs::write(&outside, blueprint(SECRET, "output/x.mp4").to_string()).unwrap();
    std::os::unix::fs::symlink(&outside, data.join("blueprints/link.json")).unwrap();
    let entries = json!([
        {"task_id": task_id(0), "blueprint_uri": "data/blueprints/fifo.json"},
        {"task_id": task_id(1), "blueprint_uri": "data/blueprints/link.json"},
    ]);
    let manifest = root.path().join("manifest.json");
    std::fs::write(&manifest, entries.to_string()).unwrap();
    let mut child = local_job(&manifest, &data, &work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!("the task hung on its entries\n{}", String::from_utf8_lossy(&output.stdout));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    let leaked = stdout.contains(SECRET) || stderr.contains(SECRET);
    assert!(!leaked, "the linked file's content leaked:\n{stdout}\n{stderr}");
    let lines = stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok());
    let failed: Vec<Value> = lines.filter(|l| l["status"] == "failed").collect();
    assert_eq!(failed.len(), 2, "{stdout}");
    let error = |entry: usize| failed[entry]["error"].as_str().unwrap_or_default().to_owned();
    assert_eq!(failed[0]["task_id"], task_id(0).as_str());
    let fifo = error(0);
    assert!(fifo.starts_with("manifest /0/blueprint_uri: ") && fifo.contains("is not a regular file"), "{fifo}");
    assert!(error(1).starts_with("manifest /1/blueprint_uri: ") && error(1).contains("link.json"), "{}", error(1));
    let left: Vec<_> = std::fs::read_dir(&work).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "work folders left: {left:?}");
}
