//! The job under a real memory limit, as Cloud Run runs it: the process tree in a
//! memory cgroup of the job's budget, the work folder on a tmpfs (`/dev/shm`) so its
//! files are charged to the same group, as Cloud Run charges its in-memory `/tmp`.
//! Whatever happens, the kernel's OOM killer must never fire: a limit that is reached
//! is a recorded failure. Skipped, with the reason printed, where no cgroup can be made.

use crate::support::cgroup;
use crate::support::media;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use cgroup::MemoryCgroup;
use media::{StreamFacts, CLIP_SMALL};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const HOSTILE: &str = test_programs::HOSTILE_GUEST;

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("memory-budget-guest-cache")
}

/// A data folder (on disk: it is the bucket) and a work-folder root on a tmpfs.
struct Folders {
    data: PathBuf,
    /// Removes `data` when it is the test's own.
    _own_data: Option<tempfile::TempDir>,
    work: tempfile::TempDir,
}

impl Folders {
    fn new() -> Folders {
        let data = tempfile::Builder::new().prefix("memory-budget-data-").tempdir().expect("data folder");
        Folders { data: data.path().to_owned(), _own_data: Some(data), work: work_on_tmpfs() }
    }

    /// A shared media folder as the data folder.
    fn over(data: &Path) -> Folders {
        Folders { data: data.to_owned(), _own_data: None, work: work_on_tmpfs() }
    }

    fn key(&self, key: &str) -> PathBuf {
        self.data.join(key)
    }
}

fn work_on_tmpfs() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("memory-budget-work-").tempdir_in("/dev/shm").expect("a folder on /dev/shm")
}

/// One run inside the group.
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

fn run_limited(group: &MemoryCgroup, folders: &Folders, blueprint: &str, extra: &[&str]) -> Outcome {
    let mut command = group.command(Path::new(BIN));
    command
        .args(["--log-format", "text", "run", blueprint, "--data-dir"])
        .arg(&folders.data)
        .arg("--work-dir")
        .arg(folders.work.path())
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(["--memory-budget", &group.limit_mib.to_string()])
        .args(extra)
        .env("BLUEPRINT_RUNNER_LOG", "info")
        .stdin(Stdio::null());
    for variable in ["BLUEPRINT_JSON", "DATA_DIR", "WORK_DIR", "GUEST_COMPONENT", "JOB_MEMORY_MIB", "STEP_TIMEOUT_SECS"]
    {
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

/// The host process's own peak, from the watchdog's closing log line.
fn peak_host_mib(log: &str) -> f64 {
    let line =
        log.lines().rfind(|l| l.contains("memory peaks")).unwrap_or_else(|| panic!("no memory peaks logged\n{log}"));
    let field =
        line.split_whitespace().find_map(|w| w.strip_prefix("peak_host_mib=")).unwrap_or_else(|| panic!("{line}"));
    field.parse().unwrap_or_else(|_| panic!("{line}"))
}

/// The group, or None after printing why this machine cannot make one.
fn group_of(limit_mib: u64) -> Option<MemoryCgroup> {
    match MemoryCgroup::create(limit_mib) {
        Ok(group) => Some(group),
        Err(reason) => {
            println!("SKIPPED: {reason}");
            None
        }
    }
}

/// Plugin plans whose filter values once took FFmpeg gigabytes (or, for `fps`, for ever).
/// The policy now refuses them all before FFmpeg starts; should one pass, it must still
/// end as a clean step failure naming the limit it reached.
#[test]
fn hostile_filter_values_end_cleanly_inside_the_budget() {
    let folders = Folders::new();
    media::make_clip(&folders.key("media/clip.mp4"), &CLIP_SMALL.with_seconds(3.0));
    media::make_song_wav(&folders.key("media/song.wav"), 3.0);
    for behaviour in
        ["huge-scale", "huge-pad", "huge-scale-expression", "huge-fps", "huge-asetnsamples", "huge-aresample"]
    {
        let Some(group) = group_of(512) else { return };
        let blueprint = folders.data.join("hostile.json");
        std::fs::write(&blueprint, format!("plan:{behaviour}")).unwrap();
        let started = std::time::Instant::now();
        let outcome =
            run_limited(&group, &folders, blueprint.to_str().unwrap(), &["--guest", HOSTILE, "--step-timeout", "20"]);
        println!(
            "{behaviour}: exit {:?} in {:.1} s, cgroup peak {} MiB: {}",
            outcome.code,
            started.elapsed().as_secs_f64(),
            outcome.usage.peak_mib,
            outcome.error()
        );
        assert_eq!(outcome.usage.oom_kills, 0, "{behaviour}: the OOM killer fired\n{}", outcome.stderr);
        assert!(outcome.usage.peak_mib <= group.limit_mib);
        if outcome.last["status"] == "completed" {
            // It fit: FFmpeg's own limits (AAC's top rate...) held it inside the budget.
            assert_eq!(outcome.code, Some(0));
            continue;
        }
        assert_eq!(outcome.last["status"], "failed", "{behaviour}\n{}", outcome.stderr);
        let error = outcome.error();
        // A refused allocation FFmpeg does not report as such still fails with the limit named.
        let named = [
            "memory limit of",
            "memory budget exceeded",
            "refused by policy",
            "plan refused",
            "did not finish within 20 s",
        ];
        assert!(named.iter().any(|n| error.contains(n)), "{behaviour}: the failure does not name the limit: {error}");
        let expected = if error.contains("refused by policy") || error.starts_with("plan refused") { 3 } else { 5 };
        assert_eq!(outcome.code, Some(expected), "{behaviour}: {error}");
        assert!(!folders.key("output/hostile.mp4").exists(), "{behaviour}: an output was written");
        let host_peak = peak_host_mib(&outcome.stderr);
        assert!(host_peak < 48.0, "{behaviour}: the host itself peaked at {host_peak} MiB");
    }
}

/// The 22 generated 720p30 clips of `scripts/media.py` and a backend-shaped blueprint of
/// `moves` 8-second moves with a crossfade into each, made once per target folder.
fn long_media(moves: u32) -> (PathBuf, PathBuf) {
    // Tests run in parallel: one of them makes the media, the others wait for it.
    static MADE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _made = MADE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("memory-budget-media");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/media.py");
    let status = std::process::Command::new("python3")
        .arg(script)
        .arg("long")
        .arg(&root)
        .arg(moves.to_string())
        .status()
        .expect("python3");
    assert!(status.success(), "scripts/media.py long failed");
    let blueprint = root.join(format!("blueprint-{moves}.json"));
    (root, blueprint)
}

fn run_in(group: &MemoryCgroup, data: &Path, blueprint: &Path) -> Outcome {
    run_limited(group, &Folders::over(data), blueprint.to_str().unwrap(), &[])
}

#[test]
fn a_ten_minute_seventy_five_move_job_completes_inside_512_mib() {
    let Some(group) = group_of(512) else { return };
    let (media, blueprint) = long_media(75);
    let started = std::time::Instant::now();
    let outcome = run_in(&group, &media.join("data"), &blueprint);
    println!(
        "10-minute job: exit {:?} in {:.0} s, cgroup peak {} MiB, result memory {}",
        outcome.code,
        started.elapsed().as_secs_f64(),
        outcome.usage.peak_mib,
        outcome.last["result"]["memory"]
    );
    assert_eq!(outcome.usage.oom_kills, 0, "the OOM killer fired\n{}", outcome.stderr);
    assert_eq!(outcome.code, Some(0), "{}\n{}", outcome.error(), outcome.stderr);
    assert!(outcome.usage.peak_mib < 512);
    // The data folder is `data/` below the media root, so a `data/...` key is a path from the root.
    let output = PathBuf::from(outcome.last["result"]["output_path"].as_str().unwrap());
    let output = media.join(output);
    let probe = media::probe(&output);
    assert_eq!(probe.video().packets(), 18_000, "exactly 600 s at 30 fps");
    assert!((probe.audio().duration() - 600.0).abs() < 0.05, "audio {} s", probe.audio().duration());
    std::fs::remove_file(output).unwrap();
}

#[test]
fn the_same_job_in_256_mib_fails_cleanly() {
    let Some(group) = group_of(256) else { return };
    let (media, blueprint) = long_media(75);
    let outcome = run_in(&group, &media.join("data"), &blueprint);
    println!("256 MiB: exit {:?}, cgroup peak {} MiB: {}", outcome.code, outcome.usage.peak_mib, outcome.error());
    assert_eq!(outcome.usage.oom_kills, 0, "the OOM killer fired\n{}", outcome.stderr);
    if outcome.code == Some(0) {
        return; // it fit after all
    }
    assert_eq!(outcome.last["status"], "failed");
    // Refused from the frame size once the first clip is probed: 720p needs more than
    // the 192 MiB a 256 MiB budget leaves.
    assert_eq!(outcome.code, Some(2), "{}", outcome.error());
    assert!(outcome.error().contains("/moves/0/video_path: a 1280x720 video needs about"), "{}", outcome.error());
    assert!(
        !outcome.stderr.contains("starting ffmpeg") && !outcome.stderr.contains("ffmpeg step done"),
        "an FFmpeg step ran"
    );
}

#[test]
fn a_4k_120_fps_or_twelve_minute_blueprint_is_refused_before_any_download() {
    let Some(group) = group_of(512) else { return };
    let folders = Folders::new();
    let blueprint = serde_json::json!({
        "task_id": "uhd-120",
        "audio_path": "media/song.mp3",
        "moves": [{"clip_id": "m0", "video_path": "media/not-fetched.mp4", "start_time": 0.0, "duration": 8.0}],
        "total_duration": 8.0,
        "output_config": {"output_path": "output/uhd.mp4", "width": 3840, "height": 2160, "frame_rate": 120, "video_bitrate": "50M"},
    });
    let file = folders.data.join("uhd.json");
    std::fs::write(&file, blueprint.to_string()).unwrap();
    let outcome = run_limited(&group, &folders, file.to_str().unwrap(), &[]);
    println!("4K/120: exit {:?}: {}", outcome.code, outcome.error());
    assert_eq!(outcome.usage.oom_kills, 0);
    assert_eq!(outcome.code, Some(2), "{}", outcome.stderr);
    assert_eq!(outcome.last["stage"], "validate", "refused before fetching (the clip does not even exist)");
    assert!(outcome.error().contains("/output_config/width: a 3840x2160 video needs about"), "{}", outcome.error());

    // A 12-minute 720p video at 2 Mb/s: its segments, then its output, outgrow the budget.
    let moves: Vec<Value> = (0..90)
        .map(|k| serde_json::json!({"clip_id": format!("m{k}"), "video_path": "media/not-fetched.mp4", "start_time": 8.0 * k as f64, "duration": 8.0}))
        .collect();
    let blueprint = serde_json::json!({
        "task_id": "twelve-minutes", "audio_path": "media/song.mp3", "moves": moves, "total_duration": 720.0,
        "output_config": {"output_path": "output/long.mp4", "width": 1280, "height": 720, "video_bitrate": "2M"},
    });
    std::fs::write(&file, blueprint.to_string()).unwrap();
    let outcome = run_limited(&group, &folders, file.to_str().unwrap(), &[]);
    println!("12 minutes: exit {:?}: {}", outcome.code, outcome.error());
    assert_eq!(outcome.code, Some(2), "{}", outcome.stderr);
    assert_eq!(outcome.last["stage"], "validate");
    assert!(outcome.error().contains("/total_duration: a 720 s video at"), "{}", outcome.error());
}

#[test]
fn memcheck_reports_each_stage_and_no_growth_over_five_iterations() {
    let folders = Folders::new();
    // Steps of a second or so at 720p: long enough for FFmpeg to be sampled.
    media::make_clip(&folders.key("media/a.mp4"), &media::CLIP_A.with_seconds(4.0));
    media::make_song_mp3(&folders.key("media/song.mp3"), 7.0);
    let moves: Vec<Value> = (0..3)
        .map(|k| serde_json::json!({"clip_id": format!("m{k}"), "video_path": "media/a.mp4", "start_time": 2.0 * k as f64, "duration": 2.0, "transition_type": if k == 0 { "cut" } else { "crossfade" }}))
        .collect();
    let blueprint = serde_json::json!({
        "task_id": "memcheck", "audio_path": "media/song.mp3", "moves": moves, "total_duration": 6.0,
        "output_config": {"output_path": "output/memcheck.mp4", "frame_rate": 25, "transition_duration": 0.4, "normalize_audio": true},
    });
    let file = folders.data.join("memcheck.json");
    std::fs::write(&file, blueprint.to_string()).unwrap();
    let report_file = folders.data.join("report.json");
    let output = std::process::Command::new(BIN)
        .args(["memcheck"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&folders.data)
        .arg("--work-dir")
        .arg(folders.work.path())
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(["--iterations", "5", "--out"])
        .arg(&report_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    for key in ["budget_mib", "baseline_mib", "utilization", "headroom_mib", "stages", "peak", "guest", "leak"] {
        assert!(report.get(key).is_some(), "no {key} in {report:#}");
    }
    assert_eq!(report["budget_mib"], 512);
    let names: Vec<&str> = report["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    for stage in ["validate", "fetch", "plan", "encode: join the video and the song", "upload", "done"] {
        assert!(names.contains(&stage), "no stage {stage} in {names:?}");
    }
    assert!(names.iter().filter(|n| n.starts_with("encode: move")).count() >= 3, "{names:?}");
    for stage in report["stages"].as_array().unwrap() {
        for key in ["name", "host_rss_mib", "delta_from_baseline_mib", "tree_peak_mib", "work_folder_mib"] {
            assert!(stage.get(key).is_some(), "no {key} in {stage}");
        }
    }
    // While FFmpeg encodes, the tree holds more than the host alone.
    let encode =
        report["stages"].as_array().unwrap().iter().find(|s| s["name"] == "encode: move 0 (m0)").expect("first step");
    assert!(encode["tree_peak_mib"].as_f64() > encode["host_rss_mib"].as_f64(), "{encode}");
    let peak = &report["peak"];
    assert!(peak["total_mib"].as_f64().unwrap() >= peak["tree_mib"].as_f64().unwrap());
    let calls: Vec<&str> =
        report["guest"]["calls"].as_array().unwrap().iter().map(|c| c["call"].as_str().unwrap()).collect();
    assert_eq!(calls, ["validate", "plan"]);
    assert!(report["guest"]["calls"][0]["fuel"].as_u64().unwrap() > 0);
    assert_eq!(report["leak"]["host_rss_after_iteration_mib"].as_array().unwrap().len(), 5);
    assert_eq!(report["leak"]["flat"], true, "the host grows: {}", report["leak"]);
    assert!(stdout.contains("utilization"), "no table on stdout");
}

/// A plan whose every value is within the policy's bounds and that still wants
/// gigabytes: `split` queues each decoded 720p60 frame while `concat` plays the other
/// branch. The policy cannot see this; the child's memory limit (or the watchdog) ends
/// it as a recorded failure, never the OOM killer.
#[test]
fn a_plan_within_the_policy_that_buffers_a_clip_is_held_by_the_childs_limit() {
    let Some(group) = group_of(512) else { return };
    let folders = Folders::new();
    media::make_clip(
        &folders.key("media/clip.mp4"),
        &media::ClipSpec { rate: "60", ..media::CLIP_A.with_seconds(20.0) },
    );
    media::make_song_wav(&folders.key("media/song.wav"), 3.0);
    let blueprint = folders.data.join("buffer.json");
    std::fs::write(&blueprint, "plan:buffer-whole-clip").unwrap();
    let outcome = run_limited(&group, &folders, blueprint.to_str().unwrap(), &["--guest", HOSTILE]);
    println!(
        "buffer-whole-clip: exit {:?}, cgroup peak {} MiB: {}",
        outcome.code,
        outcome.usage.peak_mib,
        outcome.error()
    );
    assert_eq!(outcome.usage.oom_kills, 0, "the OOM killer fired\n{}", outcome.stderr);
    assert_eq!(outcome.code, Some(5), "{}", outcome.stderr);
    assert_eq!(outcome.last["status"], "failed");
    let error = outcome.error();
    assert!(error.contains("exceeded its memory limit of") || error.contains("memory budget exceeded"), "{error}");
    assert!(!folders.key("output/hostile.mp4").exists(), "an output was written");
}

/// A prepared clip's manifest and a source's marker are the host's own records of a few
/// hundred bytes; a 600 MB object in their place (sparse here, so it costs the test
/// nothing) is read one byte past the limit, in memory, and ignored: the job renders the
/// original clip and stays small. Copied whole into the work folder, as they once were,
/// either would fill the group before its size was looked at.
#[test]
fn a_600_mb_manifest_or_marker_is_ignored_without_being_read() {
    let folders = Folders::new();
    media::make_clip(&folders.key("media/clip.mp4"), &CLIP_SMALL.with_seconds(3.0));
    media::make_song_wav(&folders.key("media/song.wav"), 3.0);
    let profile = "h264-320x180-25fps-2000k-g15-r2";
    let marker = "prepared/sources/media/clip.mp4.prepared".to_owned();
    for record in [format!("prepared/{profile}/media/clip.mp4.json"), marker] {
        let path = folders.key(&record);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::File::create(&path).unwrap().set_len(600_000_000).unwrap();
    }
    // With its size the job looks up the manifest; without, first the marker.
    for (name, sized) in [("manifest", true), ("marker", false)] {
        let Some(group) = group_of(512) else { return };
        let output_path = format!("output/{name}.mp4");
        let mut output = serde_json::json!({"output_path": &output_path, "frame_rate": 25, "video_bitrate": "2M"});
        if sized {
            output["width"] = 320.into();
            output["height"] = 180.into();
        }
        let blueprint = serde_json::json!({
            "task_id": format!("oversized-{name}"), "audio_path": "media/song.wav", "total_duration": 2.0,
            "output_config": output,
            "moves": [{"clip_id": "m0", "video_path": "media/clip.mp4", "start_time": 0.0, "duration": 2.0}],
        });
        let file = folders.data.join(format!("{name}.json"));
        std::fs::write(&file, blueprint.to_string()).unwrap();
        let outcome = run_limited(&group, &folders, file.to_str().unwrap(), &[]);
        let peak = outcome.usage.peak_mib;
        println!("600 MB {name}: exit {:?}, cgroup peak {peak} MiB: {}", outcome.code, outcome.error());
        assert_eq!(outcome.usage.oom_kills, 0, "{name}: the OOM killer fired\n{}", outcome.stderr);
        assert_eq!(outcome.code, Some(0), "{name}: {}\n{}", outcome.error(), outcome.stderr);
        assert_eq!(outcome.last["result"]["timings"]["prepared_clips"], 0, "{name}: {}", outcome.last);
        assert!(outcome.usage.peak_mib < 200, "{name}: the group peaked at {} MiB", outcome.usage.peak_mib);
        let packets = media::probe(&folders.key(&output_path)).video().packets();
        assert_eq!(packets, 50, "{name}: 2 s at 25 fps");
    }
}
