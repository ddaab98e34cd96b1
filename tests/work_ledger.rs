//! The work folder's ledger under a real memory limit, as Cloud Run counts it: the job's
//! process tree in a memory cgroup of 512 MiB, its work folder on a tmpfs (`/dev/shm`)
//! whose pages are charged to the same group. Every byte written there is charged before
//! it is written, so an input too large for the job is refused with its pointer before
//! its first byte, large valid inputs wait their turn rather than fill the memory, and a
//! child's file is held to its own share. Never an OOM kill; the data folder is left as
//! it was. Skipped, with the reason printed, where no cgroup can be made.

use crate::support::cgroup;
use crate::support::media;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use cgroup::MemoryCgroup;
use media::{StreamFacts, CLIP_SMALL};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const HOSTILE: &str = test_programs::HOSTILE_GUEST;
const MIB: u64 = 1024 * 1024;

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("work-ledger-guest-cache")
}

struct Folders {
    data: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Folders {
    fn new() -> Folders {
        let data = tempfile::Builder::new().prefix("work-ledger-data-").tempdir().expect("data folder");
        let work =
            tempfile::Builder::new().prefix("work-ledger-work-").tempdir_in("/dev/shm").expect("a folder on /dev/shm");
        Folders { data, work }
    }

    fn key(&self, key: &str) -> PathBuf {
        self.data.path().join(key)
    }

    /// Every file of the data folder with its length and modification time.
    fn snapshot(&self) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
        let mut found = BTreeMap::new();
        let mut pending = vec![self.data.path().to_owned()];
        while let Some(folder) = pending.pop() {
            for entry in std::fs::read_dir(folder).unwrap().flatten() {
                let metadata = entry.metadata().unwrap();
                if metadata.is_dir() {
                    pending.push(entry.path());
                } else {
                    found.insert(entry.path(), (metadata.len(), metadata.modified().unwrap()));
                }
            }
        }
        found
    }
}

struct Outcome {
    code: Option<i32>,
    usage: cgroup::Usage,
    last: Value,
    stderr: String,
}

impl Outcome {
    fn error(&self) -> &str {
        self.last["error"].as_str().unwrap_or_default()
    }
}

fn run_limited(group: &MemoryCgroup, folders: &Folders, blueprint: &Path, extra: &[&str]) -> Outcome {
    let mut command = group.command(Path::new(BIN));
    command
        .args(["--log-format", "text", "run"])
        .arg(blueprint)
        .arg("--data-dir")
        .arg(folders.data.path())
        .arg("--work-dir")
        .arg(folders.work.path())
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(["--memory-budget", &group.limit_mib.to_string()])
        .args(extra)
        .env("BLUEPRINT_RUNNER_LOG", "info")
        .stdin(Stdio::null());
    for variable in [
        "BLUEPRINT_JSON",
        "DATA_DIR",
        "WORK_DIR",
        "GUEST_COMPONENT",
        "JOB_MEMORY_MIB",
        "STEP_TIMEOUT_SECS",
        "GCS_STRIP_PREFIX",
    ] {
        command.env_remove(variable);
    }
    let output = command.output().expect("run blueprint-runner");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let last = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .rfind(|line| line.get("status").is_some())
        .unwrap_or_else(|| panic!("no status line\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    let leftovers: Vec<_> = std::fs::read_dir(folders.work.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(leftovers.is_empty(), "the work folder was not removed: {leftovers:?}\n{stderr}");
    Outcome { code: output.status.code(), usage: group.usage(), last, stderr }
}

fn group_of(limit_mib: u64) -> Option<MemoryCgroup> {
    match MemoryCgroup::create(limit_mib) {
        Ok(group) => Some(group),
        Err(reason) => {
            println!("SKIPPED: {reason}");
            None
        }
    }
}

fn movement(video: &str, start: f64, duration: f64) -> Value {
    json!({
        "clip_id": format!("m{start}"),
        "video_path": video,
        "start_time": start,
        "duration": duration,
        "trim_start": 0.0,
        "trim_end": 0.0,
        "transition_type": "cut",
        "volume_adjustment": 1.0,
    })
}

/// Cut moves of 2 s, one per clip, over `song`.
fn blueprint(folders: &Folders, song: &str, clips: &[&str]) -> PathBuf {
    let moves: Vec<Value> = clips.iter().enumerate().map(|(n, clip)| movement(clip, 2.0 * n as f64, 2.0)).collect();
    let text = json!({
        "task_id": "work-ledger",
        "audio_path": song,
        "moves": moves,
        "total_duration": 2.0 * clips.len() as f64,
        "output_config": {
            "output_path": "output/result.mp4",
            "frame_rate": 25.0,
            "video_bitrate": "2M",
            "audio_bitrate": "128k",
        },
    });
    let path = folders.data.path().join("blueprint.json");
    std::fs::write(&path, text.to_string()).unwrap();
    path
}

/// A valid clip followed by zeros up to `bytes`: FFmpeg reads its media and skips the
/// rest (an empty box to the end of the file), and its declared size is `bytes`. Made in
/// an instant, and sparse on disk.
fn padded_clip(path: &Path, bytes: u64) {
    media::make_clip(path, &CLIP_SMALL.with_seconds(3.0));
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(bytes).unwrap();
}

/// A 600 MB clip (a 4K phone clip, an earlier 10-minute output) or song (10 hours of
/// it): a local copy writes a gigabyte a second, so it used to cross the memory limit
/// between two of the watchdog's samples. Now it is refused at its declared size, before
/// a byte is written, with its pointer; exit 4, a failure no retry mends.
#[test]
fn an_object_larger_than_a_job_can_stage_is_refused_before_its_first_byte() {
    let folders = Folders::new();
    media::make_clip(&folders.key("media/small.mp4"), &CLIP_SMALL.with_seconds(3.0));
    media::make_song_mp3(&folders.key("media/song.mp3"), 6.0);
    std::fs::File::create(folders.key("media/huge.mp4")).unwrap().set_len(600_000_000).unwrap();
    std::fs::File::create(folders.key("media/ten-hours.mp3")).unwrap().set_len(600_000_000).unwrap();
    for (song, clips, pointer) in [
        ("media/song.mp3", ["media/small.mp4", "media/huge.mp4"], "/moves/1/video_path"),
        ("media/ten-hours.mp3", ["media/small.mp4", "media/small.mp4"], "/audio_path"),
    ] {
        let Some(group) = group_of(512) else { return };
        let blueprint = blueprint(&folders, song, &clips);
        let before = folders.snapshot();
        let outcome = run_limited(&group, &folders, &blueprint, &[]);
        println!("{pointer}: exit {:?}, cgroup peak {} MiB: {}", outcome.code, outcome.usage.peak_mib, outcome.error());
        assert_eq!(outcome.usage.oom_kills, 0, "the OOM killer fired\n{}", outcome.stderr);
        assert_eq!(outcome.code, Some(4), "{}\n{}", outcome.error(), outcome.stderr);
        assert_eq!(outcome.last["status"], "failed");
        let error = outcome.error();
        assert!(error.starts_with(&format!("{pointer}: ")), "{error}");
        assert!(error.contains("573 MiB is larger than the") && error.contains("MiB a job can stage"), "{error}");
        // Refused at its size: nothing of it was copied.
        assert!(outcome.usage.peak_mib < 200, "the group peaked at {} MiB", outcome.usage.peak_mib);
        assert_eq!(folders.snapshot(), before, "the data folder changed");
    }
}

/// Five valid clips of 100 MiB each: together more than the job's work folder can hold
/// at once. Each waits until the ledger has room; none is blamed for what the budget
/// lacks (a probe that could not even load its libraries once reported a valid clip as
/// "not a readable media file", exit 4).
#[test]
fn five_clips_of_100_mib_wait_their_turn_and_render() {
    let Some(group) = group_of(512) else { return };
    let folders = Folders::new();
    media::make_song_mp3(&folders.key("media/song.mp3"), 11.0);
    let clips: Vec<String> = (0..5).map(|n| format!("media/big-{n}.mp4")).collect();
    for clip in &clips {
        padded_clip(&folders.key(clip), 100 * MIB);
    }
    let names: Vec<&str> = clips.iter().map(String::as_str).collect();
    let blueprint = blueprint(&folders, "media/song.mp3", &names);
    let outcome = run_limited(&group, &folders, &blueprint, &[]);
    println!(
        "five 100 MiB clips: exit {:?}, cgroup peak {} MiB: {}",
        outcome.code,
        outcome.usage.peak_mib,
        outcome.error()
    );
    assert_eq!(outcome.usage.oom_kills, 0, "the OOM killer fired\n{}", outcome.stderr);
    assert_eq!(outcome.code, Some(0), "{}\n{}", outcome.error(), outcome.stderr);
    let probe = media::probe(&folders.key("output/result.mp4"));
    assert_eq!(probe.video().packets(), 250, "10 s at 25 fps");
}

/// A plugin's plan with two copy steps side by side, each writing its 105 MiB input
/// three times over (every rule of the policy kept): each child's `RLIMIT_FSIZE` is its
/// own share of the budget, not the whole remainder, so both fail cleanly, naming the
/// limit, instead of filling the memory together (OOM-killed 4 runs of 5 before).
/// Repeated: it was a race.
#[test]
fn two_copies_side_by_side_each_hold_to_their_own_share() {
    let folders = Folders::new();
    let clip = folders.key("media/clip.mp4");
    std::fs::create_dir_all(clip.parent().unwrap()).unwrap();
    // Lossless noise: about 105 MB of real packets in 2 s of 720p.
    let status = std::process::Command::new(media::ffmpeg_binary())
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=1280x720:r=30:d=2",
            "-vf",
            "noise=alls=60:allf=t,format=yuv420p",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-movflags", "+faststart"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(status.success());
    let size = std::fs::metadata(&clip).unwrap().len();
    assert!(size > 90 * MIB, "the clip is only {} MiB", size / MIB);
    media::make_song_wav(&folders.key("media/song.wav"), 3.0);
    let blueprint = folders.data.path().join("hostile.json");
    std::fs::write(&blueprint, "plan:twin-copies").unwrap();
    for run in 0..3 {
        let Some(group) = group_of(512) else { return };
        let outcome = run_limited(&group, &folders, &blueprint, &["--guest", HOSTILE]);
        println!(
            "twin copies, run {run}: exit {:?}, cgroup peak {} MiB: {}",
            outcome.code,
            outcome.usage.peak_mib,
            outcome.error()
        );
        assert_eq!(outcome.usage.oom_kills, 0, "run {run}: the OOM killer fired\n{}", outcome.stderr);
        assert_eq!(outcome.code, Some(5), "run {run}: {}\n{}", outcome.error(), outcome.stderr);
        assert!(
            outcome.error().contains("wrote a file larger than its share of the job's memory budget"),
            "run {run}: {}",
            outcome.error()
        );
        assert!(!folders.key("output/hostile.mp4").exists());
    }
}

/// A plugin's plan in which one temp (part b) has two readers: a slow step that opens it
/// only after the other part of its concat list, and a later-indexed quick copy that
/// finishes first. The part stays until both have finished: choosing its last reader by
/// plan index unlinked it under the slow step ("part b: No such file or directory").
/// Repeated: it is a race the scheduler decides.
#[test]
fn a_temp_read_by_two_steps_stays_until_the_slower_has_finished() {
    let folders = Folders::new();
    media::make_clip(&folders.key("media/clip.mp4"), &media::ClipSpec { rate: "25", ..CLIP_SMALL.with_seconds(3.0) });
    media::make_song_wav(&folders.key("media/song.wav"), 3.0);
    let blueprint = folders.data.path().join("hostile.json");
    std::fs::write(&blueprint, "plan:shared-part").unwrap();
    for run in 0..3 {
        let Some(group) = group_of(512) else { return };
        let outcome = run_limited(&group, &folders, &blueprint, &["--guest", HOSTILE]);
        println!(
            "shared part, run {run}: exit {:?}, cgroup peak {} MiB: {}",
            outcome.code,
            outcome.usage.peak_mib,
            outcome.error()
        );
        assert_eq!(outcome.usage.oom_kills, 0, "run {run}: the OOM killer fired\n{}", outcome.stderr);
        assert_eq!(outcome.code, Some(0), "run {run}: {}\n{}", outcome.error(), outcome.stderr);
        let probe = media::probe(&folders.key("output/hostile.mp4"));
        assert_eq!(probe.video().packets(), 50, "run {run}: 2 s at 25 fps, both parts");
        std::fs::remove_file(folders.key("output/hostile.mp4")).unwrap();
    }
}

/// `prepare --all` over a library that holds one clip too large for the job: that clip
/// fails with the reason, before a byte of it is copied, and the others are prepared.
#[test]
fn prepare_all_refuses_the_clip_too_large_and_prepares_the_rest() {
    let Some(group) = group_of(512) else { return };
    let folders = Folders::new();
    media::make_clip(&folders.key("media/small.mp4"), &media::ClipSpec { rate: "30", ..CLIP_SMALL.with_seconds(3.0) });
    std::fs::File::create(folders.key("media/huge.mp4")).unwrap().set_len(600_000_000).unwrap();
    let output = group
        .command(Path::new(BIN))
        .args(["--log-format", "text", "prepare", "--all", "media/", "--data-dir"])
        .arg(folders.data.path())
        .arg("--work-dir")
        .arg(folders.work.path())
        .args(["--memory-budget", "512"])
        .env_remove("CLOUD_RUN_TASK_INDEX")
        .env_remove("CLOUD_RUN_TASK_COUNT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let usage = group.usage();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line.get("profile_id").is_some())
        .unwrap_or_else(|| panic!("no summary\n{stdout}\n{stderr}"));
    println!("prepare --all: exit {:?}, cgroup peak {} MiB: {summary}", output.status.code(), usage.peak_mib);
    assert_eq!(usage.oom_kills, 0, "the OOM killer fired\n{stderr}");
    assert_eq!(output.status.code(), Some(4), "{summary}\n{stderr}");
    assert_eq!(summary["prepared"], 1, "{summary}");
    let failed = summary["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{summary}");
    assert_eq!(failed[0]["key"], "media/huge.mp4");
    assert!(failed[0]["error"].as_str().unwrap().contains("573 MiB is larger than the"), "{summary}");
    assert!(usage.peak_mib < 400, "the group peaked at {} MiB", usage.peak_mib);
    let leftovers: Vec<_> = std::fs::read_dir(folders.work.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// An 8K clip for a 720p video: its frames alone need more than the budget to decode.
/// Refused once probed, with its pointer, as a bad input for this job (exit 4), not a
/// step that fails at its memory limit and is retried (exit 5).
#[test]
fn a_clip_too_large_to_decode_in_the_budget_is_refused_at_the_probe() {
    let Some(group) = group_of(512) else { return };
    let folders = Folders::new();
    media::make_clip(
        &folders.key("media/small.mp4"),
        &media::ClipSpec { width: 1280, height: 720, ..CLIP_SMALL.with_seconds(3.0) },
    );
    media::make_song_mp3(&folders.key("media/song.mp3"), 6.0);
    let huge = folders.key("media/8k.mp4");
    let status = std::process::Command::new(media::ffmpeg_binary())
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=7680x4320:r=25:d=0.4"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .arg(&huge)
        .status()
        .unwrap();
    assert!(status.success());
    let blueprint = blueprint(&folders, "media/song.mp3", &["media/small.mp4", "media/8k.mp4"]);
    let outcome = run_limited(&group, &folders, &blueprint, &[]);
    println!("8K clip: exit {:?}, cgroup peak {} MiB: {}", outcome.code, outcome.usage.peak_mib, outcome.error());
    assert_eq!(outcome.usage.oom_kills, 0, "the OOM killer fired\n{}", outcome.stderr);
    assert_eq!(outcome.code, Some(4), "{}\n{}", outcome.error(), outcome.stderr);
    assert!(
        outcome.error().starts_with("/moves/1/video_path: media/8k.mp4: its 7680x4320 frames need about"),
        "{}",
        outcome.error()
    );
    assert!(!outcome.stderr.contains("starting ffmpeg"), "an FFmpeg step ran");
}
