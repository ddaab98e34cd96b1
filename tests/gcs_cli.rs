//! `blueprint-runner run` with Google Cloud Storage: the real binary against a real
//! fake-gcs-server started per test (see `support/gcs.rs`), a fresh bucket each, real
//! FFmpeg, generated media. A fault-injecting proxy in front of the emulator counts
//! requests and makes them fail.

use crate::support::gcs;
use crate::support::media;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use gcs::{Action, Emulator, FaultProxy};
use media::StreamFacts;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const BUCKET: &str = "choreo";

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("gcs-cli-guest-cache")
}

/// Media made once per test process and reused by every test.
fn media_file(name: &str) -> Vec<u8> {
    static FOLDER: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let folder = FOLDER.get_or_init(|| {
        let folder = tempfile::tempdir().unwrap();
        media::make_clip(&folder.path().join("small.mp4"), &media::CLIP_SMALL);
        media::make_song_mp3(&folder.path().join("song.mp3"), 8.0);
        folder
    });
    std::fs::read(folder.path().join(name)).unwrap()
}

/// A bucket holding the song and one clip, as the backend lays them out
/// (`data/` locally, no `data/` in the bucket).
fn stocked_emulator() -> Emulator {
    let emulator = Emulator::start();
    emulator.create_bucket(BUCKET);
    emulator.put(BUCKET, "songs/song.mp3", &media_file("song.mp3"));
    emulator.put(BUCKET, "steps/small.mp4", &media_file("small.mp4"));
    emulator
}

/// Four 1.5 s moves; moves 0, 2 and 3 share one clip.
fn blueprint(second_clip: &str) -> Value {
    let moves: Vec<Value> = ["data/steps/small.mp4", second_clip, "data/steps/small.mp4", "data/steps/small.mp4"]
        .iter()
        .enumerate()
        .map(|(k, clip)| {
            json!({"clip_id": format!("m{k}"), "video_path": clip, "start_time": 1.5 * k as f64, "duration": 1.5,
                   "trim_start": 0.5 * k as f64, "transition_type": if k == 0 { "cut" } else { "crossfade" }, "volume_adjustment": 1.0})
        })
        .collect();
    json!({
        "task_id": "gcs-task-1",
        "audio_path": "data/songs/song.mp3",
        "moves": moves,
        "total_duration": 6.0,
        "output_config": {"output_path": "data/output/result.mp4", "frame_rate": 25, "transition_duration": 0.4},
    })
}

struct Run {
    code: Option<i32>,
    stderr: String,
    lines: Vec<Value>,
    seconds: f64,
    work: tempfile::TempDir,
}

impl Run {
    fn last(&self) -> &Value {
        self.lines.last().unwrap_or_else(|| panic!("no status line; stderr:\n{}", self.stderr))
    }

    fn error(&self) -> String {
        self.last()["error"].as_str().unwrap_or_default().to_owned()
    }

    fn assert_work_empty(&self) {
        let left: Vec<_> = std::fs::read_dir(self.work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "the work folder kept {left:?}");
    }
}

/// `run` with GCS storage through `host` (the emulator or a proxy in front of it).
fn run(host: &str, blueprint_arg: Option<&str>, blueprint_env: Option<&Value>, extra: &[&str]) -> Run {
    let work = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["--log-format", "text", "run"])
        .args(blueprint_arg)
        .args(["--storage", "gcs", "--bucket", BUCKET, "--work-dir"])
        .arg(work.path())
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(["--storage-backoff-ms", "50"])
        .args(extra)
        .env("STORAGE_EMULATOR_HOST", host)
        .env_remove("BLUEPRINT_JSON")
        .env_remove("BLUEPRINT_URI")
        .env_remove("DATA_DIR");
    if let Some(document) = blueprint_env {
        command.env("BLUEPRINT_JSON", document.to_string());
    }
    let started = Instant::now();
    let output = command.output().expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let lines = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    Run {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
        lines,
        seconds: started.elapsed().as_secs_f64(),
        work,
    }
}

fn media_gets(proxy: &FaultProxy, object: &str) -> usize {
    proxy.count(&format!("/o/{}?alt=media", object.replace('/', "%2F")))
}

#[test]
fn a_blueprint_in_the_bucket_becomes_a_video_in_the_bucket() {
    let emulator = stocked_emulator();
    let document = blueprint("data/steps/small.mp4");
    emulator.put(BUCKET, "blueprints/gcs-task-1.json", document.to_string().as_bytes());
    let proxy = FaultProxy::start(&emulator.address, |_, _| Action::Forward);
    // Downloads are counted: the audio cache's reads of the song's generation (one byte
    // each) would count too (see the_audio_cache_lives_in_the_bucket_…).
    let blueprint_address = format!("gs://{BUCKET}/blueprints/gcs-task-1.json");
    let run = run(&proxy.host(), Some(&blueprint_address), None, &["--audio-cache", "off"]);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert_eq!(run.last()["status"], "completed");
    assert_eq!(run.last()["result"]["storage"], format!("gs://{BUCKET}"));
    // The backend's video_url names the object the key maps to, not the key.
    assert_eq!(run.last()["result"]["video_url"], format!("gs://{BUCKET}/output/result.mp4"));

    // Four moves, two distinct objects: each fetched once.
    assert_eq!(media_gets(&proxy, "steps/small.mp4"), 1, "{:?}", proxy.seen.lock().unwrap());
    assert_eq!(media_gets(&proxy, "songs/song.mp3"), 1);

    let video = emulator.get(BUCKET, "output/result.mp4").expect("the result is in the bucket under the mapped name");
    // The emulator does not keep an upload's content type, so look at what was sent.
    let metadata = emulator.metadata(BUCKET, "output/result.mp4").unwrap();
    assert_eq!(metadata["size"], video.len().to_string());
    let bodies = proxy.bodies.lock().unwrap().clone();
    assert!(bodies.iter().any(|b| b.contains("\"contentType\":\"video/mp4\"")), "the upload names its content type");
    let local = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(local.path(), &video).unwrap();
    let probe = media::probe(local.path());
    let video_stream = probe.video();
    println!(
        "uploaded result: {} bytes, video {} s, {} frames",
        video.len(),
        video_stream.duration(),
        video_stream.packets()
    );
    assert!((video_stream.duration() - 6.0).abs() <= 0.04, "{video_stream}");
    assert_eq!(video_stream.packets(), 150);
    run.assert_work_empty();

    // The same task again (a Cloud Run retry): the object is overwritten with the same video.
    let again = self::run(&emulator.host(), Some(&format!("gs://{BUCKET}/blueprints/gcs-task-1.json")), None, &[]);
    assert_eq!(again.code, Some(0), "stderr:\n{}", again.stderr);
    assert_eq!(emulator.list(BUCKET).iter().filter(|n| n.starts_with("output/")).count(), 1);
}

#[test]
fn a_missing_clip_fails_fast_with_its_pointer() {
    let emulator = stocked_emulator();
    let proxy = FaultProxy::start(&emulator.address, |_, _| Action::Forward);
    let run = run(&proxy.host(), None, Some(&blueprint("data/steps/not-there.mp4")), &[]);
    println!("missing clip: {} after {:.2} s", run.error(), run.seconds);
    assert_eq!(run.code, Some(6), "stderr:\n{}", run.stderr);
    assert_eq!(run.last()["status"], "failed");
    // The blueprint's key and the object asked for: the strip rule is visible.
    let looked_for = format!("(looked for object \"steps/not-there.mp4\" in bucket \"{BUCKET}\")");
    let expected = format!("/moves/1/video_path: \"data/steps/not-there.mp4\" does not exist {looked_for}");
    assert_eq!(run.error(), expected);
    assert_eq!(media_gets(&proxy, "steps/not-there.mp4"), 1, "a 404 is not retried");
    assert!(run.seconds < 20.0, "took {:.1} s", run.seconds);
    assert!(emulator.get(BUCKET, "output/result.mp4").is_none());
    run.assert_work_empty();
}

#[test]
fn transient_failures_are_retried_and_then_given_up() {
    let emulator = stocked_emulator();
    // The first two downloads of the clip get 503, the third goes through.
    let proxy = FaultProxy::start(&emulator.address, |line, earlier| {
        if line.contains("small.mp4?alt=media") && earlier < 2 {
            Action::Fail(503)
        } else {
            Action::Forward
        }
    });
    let run = run(&proxy.host(), None, Some(&blueprint("data/steps/small.mp4")), &[]);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert_eq!(media_gets(&proxy, "steps/small.mp4"), 3);
    assert!(run.stderr.contains("retrying"), "retries are logged:\n{}", run.stderr);

    // Always 429: three attempts, then a storage error naming the pointer.
    let proxy = FaultProxy::start(&emulator.address, |line, _| {
        if line.contains("small.mp4?alt=media") {
            Action::Fail(429)
        } else {
            Action::Forward
        }
    });
    let run = self::run(&proxy.host(), None, Some(&blueprint("data/steps/small.mp4")), &[]);
    println!("gave up: {}", run.error());
    assert_eq!(run.code, Some(6), "stderr:\n{}", run.stderr);
    assert!(
        run.error().contains("/moves/0/video_path") && run.error().contains("gave up after 3 attempts"),
        "{}",
        run.error()
    );
    assert_eq!(media_gets(&proxy, "steps/small.mp4"), 3);
    run.assert_work_empty();
}

#[test]
fn an_interrupted_download_is_never_trusted() {
    let emulator = stocked_emulator();
    let clip_size = media_file("small.mp4").len();
    assert!(clip_size > 20_000, "the clip is large enough to cut: {clip_size}");
    let cut = move |line: &str, earlier: usize| {
        if line.contains("small.mp4?alt=media") && earlier == 0 {
            Action::Truncate(clip_size / 2)
        } else {
            Action::Forward
        }
    };

    // One attempt only: the job fails, and no file, whole or half, is left behind.
    let proxy = FaultProxy::start(&emulator.address, cut);
    let run = run(&proxy.host(), None, Some(&blueprint("data/steps/small.mp4")), &["--storage-attempts", "1"]);
    println!("cut short: {}", run.error());
    assert_eq!(run.code, Some(6), "stderr:\n{}", run.stderr);
    assert!(run.error().contains("/moves/0/video_path"), "{}", run.error());
    run.assert_work_empty();

    // With retries the second attempt starts from scratch and the video is whole.
    let proxy = FaultProxy::start(&emulator.address, cut);
    let run = self::run(&proxy.host(), None, Some(&blueprint("data/steps/small.mp4")), &[]);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert_eq!(media_gets(&proxy, "steps/small.mp4"), 2);
    let video = emulator.get(BUCKET, "output/result.mp4").unwrap();
    let local = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(local.path(), &video).unwrap();
    assert_eq!(media::probe(local.path()).video().packets(), 150);
}

/// Streaming: the host's peak memory does not grow with the size of what it downloads.
#[test]
fn downloads_stream_to_disk() {
    let emulator = Emulator::start();
    emulator.create_bucket(BUCKET);
    let mut peak_kib = Vec::new();
    for (label, size) in [("small", 512 * 1024), ("large", 8 * 1024 * 1024)] {
        let object: Vec<u8> = (0..size).map(|i: usize| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let keys: Vec<String> = (0..20).map(|n| format!("{label}/object-{n:02}.bin")).collect();
        for key in &keys {
            emulator.put(BUCKET, key, &object);
        }
        let output = Command::new(BIN)
            .args([
                "--log-format",
                "text",
                "bench-fetch",
                "--storage",
                "gcs",
                "--bucket",
                BUCKET,
                "--download-concurrency",
                "10",
            ])
            .args(&keys)
            .env("STORAGE_EMULATOR_HOST", emulator.host())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let figures: Value = serde_json::from_slice(&output.stdout).unwrap();
        println!("20 x {label}: {figures}");
        assert_eq!(figures["bytes"], 20 * size as u64);
        peak_kib.push(figures["peak_rss_kib"].as_u64().unwrap());
    }
    // 20 x 8 MiB = 160 MiB went through; buffering whole objects would show here.
    let growth_mib = (peak_kib[1] as f64 - peak_kib[0] as f64) / 1024.0;
    assert!(
        growth_mib < 24.0,
        "peak RSS grew by {growth_mib:.1} MiB from 10 MiB to 160 MiB of downloads ({peak_kib:?} KiB)"
    );
}

#[test]
fn configuration_mistakes_are_usage_errors() {
    let output = Command::new(BIN)
        .args(["--log-format", "text", "run", "--storage", "gcs"])
        .env("BLUEPRINT_JSON", "{}")
        .env_remove("GCS_BUCKET_NAME")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("GCS_BUCKET_NAME"));
}

/// `prepare` against the bucket: the blueprint's two clips prepared under
/// `prepared/<profile>/`, each with its manifest; a second run recognises them by their
/// source's generation and downloads no clip; a replaced source is prepared again.
#[test]
fn prepare_stores_prepared_clips_and_skips_them_by_generation() {
    let emulator = stocked_emulator();
    emulator.put(BUCKET, "steps/other.mp4", &media_file("small.mp4"));
    let document = blueprint("data/steps/other.mp4");
    // The clips only (the song's track, which `prepare` also makes, is fetched through the
    // job's own look-ups: tests/audio_cache.rs).
    let prepare = |host: &str| {
        let work = tempfile::tempdir().unwrap();
        let output = Command::new(BIN)
            .args(["--log-format", "text", "prepare", "--audio-cache", "off", "--storage", "gcs", "--bucket", BUCKET])
            .arg("--work-dir")
            .arg(work.path())
            .arg("--cache-dir")
            .arg(cache_dir())
            .env("STORAGE_EMULATOR_HOST", host)
            .env("BLUEPRINT_JSON", document.to_string())
            .env_remove("BLUEPRINT_URI")
            .env_remove("DATA_DIR")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let summary: Value = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| {
            panic!("no summary; stderr:\n{}", String::from_utf8_lossy(&output.stderr));
        });
        (output.status.code(), summary)
    };
    let (code, summary) = prepare(&emulator.host());
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["prepared"], 2, "{summary}");
    // The small clip is 320x180 and the blueprint gives no size: the profile is the first clip's.
    let profile = summary["profile_id"].as_str().unwrap().to_owned();
    assert!(profile.starts_with("h264-320x180-25fps-"), "{profile}");
    for clip in ["steps/small.mp4", "steps/other.mp4"] {
        let prepared = emulator.get(BUCKET, &format!("prepared/{profile}/data/{clip}"));
        let prepared = prepared.unwrap_or_else(|| panic!("{clip} not prepared: {:?}", emulator.list(BUCKET)));
        let local = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(local.path(), &prepared).unwrap();
        assert_eq!(media::probe(local.path()).video().packets(), 150, "6 s at 25 fps");
        let manifest = emulator.get(BUCKET, &format!("prepared/{profile}/data/{clip}.json")).expect("manifest");
        let manifest: Value = serde_json::from_slice(&manifest).unwrap();
        assert!(manifest["source_identity"].as_str().unwrap().starts_with("generation "), "{manifest}");
    }

    // A job of the same blueprint stages the prepared clips (its profile comes from the
    // first clip, probed because its marker says it was prepared) and makes the video.
    let job = run(&emulator.host(), None, Some(&document), &[]);
    assert_eq!(job.code, Some(0), "stderr:\n{}", job.stderr);
    assert_eq!(job.last()["result"]["timings"]["prepared_clips"], 2, "{}", job.last());
    let video = emulator.get(BUCKET, "output/result.mp4").expect("the result");
    let local = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(local.path(), &video).unwrap();
    assert_eq!(media::probe(local.path()).video().packets(), 150);

    let proxy = FaultProxy::start(&emulator.address, |_, _| Action::Forward);
    let (code, summary) = prepare(&proxy.host());
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!((summary["prepared"].as_u64(), summary["up_to_date"].as_u64()), (Some(0), Some(2)), "{summary}");
    assert_eq!(
        media_gets(&proxy, "steps/other.mp4"),
        1,
        "only the one-byte look-ups: {:?}",
        proxy.seen.lock().unwrap()
    );

    emulator.put(BUCKET, "steps/other.mp4", &media_file("small.mp4"));
    let (code, summary) = prepare(&emulator.host());
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!((summary["prepared"].as_u64(), summary["up_to_date"].as_u64()), (Some(1), Some(1)), "{summary}");
}

/// A Cloud Run task array of three prepares one library in the bucket: each task takes
/// its share (`CLOUD_RUN_TASK_INDEX`/`COUNT`), all six clips end up prepared, and no clip
/// is downloaded twice across the tasks.
#[test]
fn a_task_array_prepares_a_library_without_doing_a_clip_twice() {
    let emulator = stocked_emulator();
    let clips: Vec<String> = (0..6).map(|index| format!("steps/clip{index}.mp4")).collect();
    for clip in &clips {
        emulator.put(BUCKET, clip, &media_file("small.mp4"));
    }
    // A blueprint naming all six clips, one 1-second move each.
    let moves: Vec<Value> = clips
        .iter()
        .enumerate()
        .map(|(k, clip)| {
            json!({"clip_id": format!("m{k}"), "video_path": format!("data/{clip}"), "start_time": k as f64, "duration": 1.0,
                   "transition_type": "cut", "volume_adjustment": 1.0})
        })
        .collect();
    let document = json!({"task_id": "array-1", "audio_path": "data/songs/song.mp3", "moves": moves, "total_duration": 6.0,
                          "output_config": {"output_path": "data/output/array.mp4", "frame_rate": 25}});
    let proxy = FaultProxy::start(&emulator.address, |_, _| Action::Forward);
    let tasks: Vec<_> = (0..3)
        .map(|index| {
            let work = tempfile::tempdir().unwrap();
            let child = Command::new(BIN)
                .args(["--log-format", "text", "prepare", "--storage", "gcs", "--bucket", BUCKET, "--work-dir"])
                .arg(work.path())
                .arg("--cache-dir")
                .arg(cache_dir())
                .env("STORAGE_EMULATOR_HOST", proxy.host())
                .env("BLUEPRINT_JSON", document.to_string())
                .env("CLOUD_RUN_TASK_INDEX", index.to_string())
                .env("CLOUD_RUN_TASK_COUNT", "3")
                .env_remove("BLUEPRINT_URI")
                .env_remove("DATA_DIR")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (work, child)
        })
        .collect();
    for (_work, child) in tasks {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary: Value = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| {
            panic!("no summary; stderr:\n{}", String::from_utf8_lossy(&output.stderr));
        });
        assert_eq!(output.status.code(), Some(0), "{summary}");
        assert_eq!((summary["clips"].as_u64(), summary["prepared"].as_u64()), (Some(2), Some(2)), "{summary}");
    }
    let profile = "h264-320x180-25fps-2000k-g15-r4";
    for clip in &clips {
        assert!(emulator.get(BUCKET, &format!("prepared/{profile}/data/{clip}")).is_some(), "{clip} not prepared");
        assert!(
            emulator.get(BUCKET, &format!("prepared/{profile}/data/{clip}.json")).is_some(),
            "{clip} has no manifest"
        );
    }
    // No clip prepared twice: each prepared object was uploaded once, by one task.
    for clip in &clips {
        let name = format!("prepared/{profile}/data/{clip}").replace('/', "%2F");
        assert_eq!(proxy.count(&format!("name={name} HTTP")), 1, "{clip}: {:?}", proxy.seen.lock().unwrap());
    }

    // `--all` lists the bucket (the JSON API, page by page): the six clips are up to
    // date, the seventh (the stocked small clip) is new; the song, the manifests and the
    // prepared objects themselves are not clips. 1,000 notes sort between the clips and
    // the small clip, so the small clip is on the listing's second page.
    for note in 0..1_000 {
        emulator.put(BUCKET, &format!("steps/notes/{note:04}.txt"), b"x");
    }
    let work = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args([
            "--log-format",
            "text",
            "prepare",
            "--all",
            "data/steps/",
            "--width",
            "320",
            "--height",
            "180",
            "--frame-rate",
            "25",
        ])
        .args(["--storage", "gcs", "--bucket", BUCKET, "--work-dir"])
        .arg(work.path())
        .env("STORAGE_EMULATOR_HOST", emulator.host())
        .env_remove("BLUEPRINT_JSON")
        .env_remove("DATA_DIR")
        .env_remove("CLOUD_RUN_TASK_INDEX")
        .env_remove("CLOUD_RUN_TASK_COUNT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| {
        panic!("no summary; stderr:\n{}", String::from_utf8_lossy(&output.stderr));
    });
    assert_eq!(output.status.code(), Some(0), "{summary}");
    assert_eq!(summary["profile_id"], profile, "{summary}");
    let counts = (summary["clips"].as_u64(), summary["up_to_date"].as_u64(), summary["prepared"].as_u64());
    assert_eq!(counts, (Some(7), Some(6), Some(1)), "{summary}");
    assert!(emulator.get(BUCKET, &format!("prepared/{profile}/data/steps/small.mp4")).is_some());
}

/// The backend's production songs are written as addresses in its bucket
/// (`gs://<bucket>/songs/x.mp3`): in the job's own bucket the song is read from that object,
/// with a warning; in another bucket the blueprint is refused before anything is fetched.
#[test]
fn a_song_written_as_an_address_in_the_jobs_bucket_is_read_from_it() {
    let emulator = stocked_emulator();
    let proxy = FaultProxy::start(&emulator.address, |_, _| Action::Forward);
    let mut document = blueprint("data/steps/small.mp4");
    document["audio_path"] = format!("gs://{BUCKET}/songs/song.mp3").into();
    // Downloads are counted, not the audio cache's one-byte reads of the song's generation.
    let run = run(&proxy.host(), None, Some(&document), &["--audio-cache", "off"]);
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    let warnings = run.last()["result"]["warnings"].clone();
    assert_eq!(warnings[0]["pointer"], "/audio_path", "{warnings}");
    assert_eq!(media_gets(&proxy, "songs/song.mp3"), 1, "the song is the object the address names");
    assert!(emulator.get(BUCKET, "output/result.mp4").is_some());

    document["audio_path"] = "gs://someone-else/songs/song.mp3".into();
    let run = self::run(&proxy.host(), None, Some(&document), &[]);
    assert_eq!(run.code, Some(2), "stderr:\n{}", run.stderr);
    assert!(run.error().starts_with("invalid blueprint: /audio_path: object key \"gs://someone-else/songs/song.mp3\" is not in the job's own bucket"), "{}", run.error());
    assert_eq!(media_gets(&proxy, "songs/song.mp3"), 1, "nothing fetched for the refused blueprint");
    run.assert_work_empty();
}

/// An object larger than the job can ever stage is refused at the size it declares, with
/// its pointer (exit 4), before a byte of it is written to the work folder; a read that
/// does not state the size (the emulator does not) asks the object's metadata.
#[test]
fn an_object_too_large_for_the_job_is_refused_before_it_is_written() {
    let emulator = stocked_emulator();
    emulator.put(BUCKET, "steps/big.mp4", &vec![0u8; 17 << 20]);
    // 256 MiB leaves 192 to share: 128 kept for the fetch stage's children and a quarter
    // for kept inputs leave 16 MiB for one object.
    let run = run(&emulator.host(), None, Some(&blueprint("data/steps/big.mp4")), &["--memory-budget", "256"]);
    println!("too large: {}", run.error());
    assert_eq!(run.code, Some(4), "stderr:\n{}", run.stderr);
    assert_eq!(
        run.error(),
        "/moves/1/video_path: data/steps/big.mp4: 17 MiB is larger than the 16 MiB a job can stage (JOB_MEMORY_MIB)"
    );
    assert!(emulator.get(BUCKET, "output/result.mp4").is_none());
    run.assert_work_empty();
}

/// `run` with GCS storage through `host`, started and left running.
fn spawn(host: &str, document: &Value, extra: &[&str]) -> (std::process::Child, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .args(["--log-format", "text", "run", "--storage", "gcs", "--bucket", BUCKET, "--work-dir"])
        .arg(work.path())
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(extra)
        .env("STORAGE_EMULATOR_HOST", host)
        .env("BLUEPRINT_JSON", document.to_string())
        .env_remove("BLUEPRINT_URI")
        .env_remove("DATA_DIR")
        .env_remove("JOB_DEADLINE_SECS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    (child, work)
}

/// A lookup of prepared clips that hangs (the bucket answers the marker's request after a
/// minute) is cancelled like everything else: SIGTERM ends the job at once.
#[test]
fn a_signal_during_a_slow_prepared_clip_lookup_cancels_the_job_at_once() {
    let emulator = stocked_emulator();
    let slow = |line: &str, _: usize| {
        if line.contains("prepared") {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
        Action::Forward
    };
    let proxy = FaultProxy::start(&emulator.address, slow);
    let (child, work) = spawn(&proxy.host(), &blueprint("data/steps/small.mp4"), &["--prepared", "auto"]);
    let waited = Instant::now();
    while proxy.count("prepared") == 0 {
        assert!(waited.elapsed().as_secs() < 30, "no prepared-clip lookup was made");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let signalled = Instant::now();
    let pid = child.id();
    let output = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !output.is_finished() {
        if signalled.elapsed().as_secs() >= 10 {
            // SAFETY: as above; the job ignored the signal.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("the job was still waiting for the lookup 10 s after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = output.join().unwrap();
    let seconds = signalled.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("cancelled {seconds:.2} s after SIGTERM");
    assert_eq!(output.status.code(), Some(8), "{stdout}\n{stderr}");
    let last: Value = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).next_back().expect("a status line");
    assert_eq!((last["status"].as_str(), last["stage"].as_str()), (Some("failed"), Some("fetch")), "{last}");
    assert_eq!(last["message"], "cancelled during fetch (exit 8)", "{last}");
    assert!(seconds < 5.0, "{seconds} s after SIGTERM");
    let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "the work folder kept {left:?}");
}

/// One deadline for the whole job from the start of the fetch: a download slower than
/// `JOB_DEADLINE_SECS` fails in the fetch stage with the deadline's message (exit 5, as
/// the same deadline passing during the FFmpeg steps), the work folder removed.
#[test]
fn the_job_deadline_passes_during_a_slow_fetch() {
    let emulator = stocked_emulator();
    let slow = |line: &str, _: usize| {
        if line.contains("small.mp4?alt=media") {
            std::thread::sleep(std::time::Duration::from_secs(4));
        }
        Action::Forward
    };
    let proxy = FaultProxy::start(&emulator.address, slow);
    let run = run(&proxy.host(), None, Some(&blueprint("data/steps/small.mp4")), &["--job-deadline", "1"]);
    println!("deadline: exit {:?} in {:.1} s: {}", run.code, run.seconds, run.error());
    assert_eq!(run.code, Some(5), "{}", run.stderr);
    let last = run.last();
    assert_eq!((last["status"].as_str(), last["stage"].as_str()), (Some("failed"), Some("fetch")), "{last}");
    let expected = "the job did not finish within its deadline of 1 s \
                    (JOB_DEADLINE_SECS, counted from the start of the fetch): it passed during fetch";
    assert_eq!(run.error(), expected);
    assert!(run.seconds < 4.0, "the job waited for the download: {} s", run.seconds);
    run.assert_work_empty();
}

/// The audio cache in a bucket: the first job keeps the song's track and loudness under
/// `prepared/`, the second copies them (the same AAC packets), and a song uploaded again
/// (a new generation) is measured and encoded again.
#[test]
fn the_audio_cache_lives_in_the_bucket_and_follows_the_songs_generation() {
    let emulator = stocked_emulator();
    let mut document = blueprint("data/steps/small.mp4");
    document["output_config"]["normalize_audio"] = json!(true);
    let audio_packets = || {
        let video = emulator.get(BUCKET, "output/result.mp4").expect("the result");
        let local = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(local.path(), &video).unwrap();
        media::stream_md5(local.path(), "0:a")
    };
    let labels = |run: &Run| -> Vec<String> {
        let steps = run.last()["result"]["steps"].as_array().cloned().unwrap_or_default();
        steps.iter().filter_map(|step| step["label"].as_str().map(str::to_owned)).collect()
    };
    let cached = |folder: &str| emulator.list(BUCKET).into_iter().filter(|name| name.starts_with(folder)).count();

    let cold = run(&emulator.host(), None, Some(&document), &[]);
    assert_eq!(cold.code, Some(0), "stderr:\n{}", cold.stderr);
    assert!(!labels(&cold).iter().any(|label| label.contains("audio cache")), "{:?}", labels(&cold));
    assert_eq!((cached("prepared/audio/"), cached("prepared/loudness/")), (2, 1), "{:?}", emulator.list(BUCKET));
    let expected = audio_packets();

    let warm = run(&emulator.host(), None, Some(&document), &[]);
    assert_eq!(warm.code, Some(0), "stderr:\n{}", warm.stderr);
    assert!(labels(&warm).iter().any(|label| label == "the song (audio cache)"), "{:?}", labels(&warm));
    assert_eq!(
        (cached("prepared/audio/"), cached("prepared/loudness/")),
        (2, 1),
        "nothing new: {:?}",
        emulator.list(BUCKET)
    );
    assert_eq!(audio_packets(), expected, "the cached track is the encoded one");
    warm.assert_work_empty();

    emulator.put(BUCKET, "songs/song.mp3", &media_file("song.mp3"));
    let again = run(&emulator.host(), None, Some(&document), &[]);
    assert_eq!(again.code, Some(0), "stderr:\n{}", again.stderr);
    assert!(!labels(&again).iter().any(|label| label.contains("audio cache")), "{:?}", labels(&again));
    assert_eq!(audio_packets(), expected, "the same bytes uploaded again make the same audio");
    // Measured and encoded again: a new entry of each, beside the old generation's.
    assert_eq!((cached("prepared/audio/"), cached("prepared/loudness/")), (4, 2), "{:?}", emulator.list(BUCKET));
}
