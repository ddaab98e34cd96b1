//! The job under a real memory limit, as Cloud Run runs it: the process tree in a
//! memory cgroup of the job's budget, the work folder on a tmpfs (`/dev/shm`) so its
//! files are charged to the same group, as Cloud Run charges its in-memory `/tmp`.
//! Whatever happens, the kernel's OOM killer must never fire: a limit that is reached
//! is a recorded failure. Skipped, with the reason printed, where no cgroup can be made.

#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/media.rs"]
mod media;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use cgroup::MemoryCgroup;
use media::CLIP_SMALL;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const HOSTILE: &str = env!("HOSTILE_GUEST_WASM");

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("memory-budget-guest-cache")
}

/// A data folder (on disk: it is the bucket) and a work-folder root on a tmpfs.
struct Folders {
    data: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Folders {
    fn new() -> Folders {
        let data = tempfile::Builder::new().prefix("memory-budget-data-").tempdir().expect("data folder");
        let work = tempfile::Builder::new().prefix("memory-budget-work-").tempdir_in("/dev/shm").expect("a folder on /dev/shm");
        Folders { data, work }
    }

    fn key(&self, key: &str) -> PathBuf {
        self.data.path().join(key)
    }
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
        .arg(folders.data.path())
        .arg("--work-dir")
        .arg(folders.work.path())
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(["--memory-budget", &group.limit_mib.to_string()])
        .args(extra)
        .env("BLUEPRINT_RUNNER_LOG", "info")
        .stdin(Stdio::null());
    for variable in ["BLUEPRINT_JSON", "DATA_DIR", "WORK_DIR", "GUEST_COMPONENT", "JOB_MEMORY_MIB", "STEP_TIMEOUT_SECS"] {
        command.env_remove(variable);
    }
    let output = command.output().expect("run blueprint-runner");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let last = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line.get("status").is_some())
        .last()
        .unwrap_or_else(|| panic!("no status line\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    let leftovers: Vec<_> = std::fs::read_dir(folders.work.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(leftovers.is_empty(), "the work folder was not removed: {leftovers:?}\n{stderr}");
    Outcome { code: output.status.code(), usage: group.usage(), last, stderr }
}

/// The host process's own peak, from the watchdog's closing log line.
fn peak_host_mib(log: &str) -> f64 {
    let line = log.lines().filter(|l| l.contains("memory peaks")).last().unwrap_or_else(|| panic!("no memory peaks logged\n{log}"));
    let field = line.split_whitespace().find_map(|w| w.strip_prefix("peak_host_mib=")).unwrap_or_else(|| panic!("{line}"));
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

/// Plugin plans whose filter values the policy does not bound: FFmpeg would take
/// gigabytes (or, for `fps`, spin for ever). Each must end as a refusal or a clean step
/// failure naming the limit it reached.
#[test]
fn hostile_filter_values_end_cleanly_inside_the_budget() {
    let folders = Folders::new();
    media::make_clip(&folders.key("media/clip.mp4"), &CLIP_SMALL.with_seconds(3.0));
    media::make_song_wav(&folders.key("media/song.wav"), 3.0);
    for behaviour in ["huge-scale", "huge-pad", "huge-fps", "huge-asetnsamples", "huge-aresample"] {
        let Some(group) = group_of(512) else { return };
        let blueprint = folders.data.path().join("hostile.json");
        std::fs::write(&blueprint, format!("plan:{behaviour}")).unwrap();
        let started = std::time::Instant::now();
        let outcome = run_limited(&group, &folders, blueprint.to_str().unwrap(), &["--guest", HOSTILE, "--step-timeout", "20"]);
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
        let named = ["memory limit of", "memory budget exceeded", "refused by policy", "did not finish within 20 s"];
        assert!(named.iter().any(|n| error.contains(n)), "{behaviour}: the failure does not name the limit: {error}");
        let expected = if error.contains("refused by policy") { 3 } else { 5 };
        assert_eq!(outcome.code, Some(expected), "{behaviour}: {error}");
        assert!(!folders.key("out/hostile.mp4").exists(), "{behaviour}: an output was written");
        let host_peak = peak_host_mib(&outcome.stderr);
        assert!(host_peak < 48.0, "{behaviour}: the host itself peaked at {host_peak} MiB");
    }
}
