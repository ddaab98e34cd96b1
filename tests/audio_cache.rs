//! The audio cache end to end (`--audio-cache`, on by default): real FFmpeg on a generated
//! clip and song in a local folder. The first job on a song measures and encodes it and
//! keeps both in the storage; the next copies them; the three videos (cache off, cold,
//! warm) carry the same audio packets. An entry that is not what its manifest says, a
//! song rewritten, and two jobs filling one entry at once all still make that video.

use crate::support::media;

use std::path::{Path, PathBuf};
use std::process::Command;

use media::StreamFacts;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");

fn guest_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("audio-cache-guest-cache")
}

struct Library {
    root: tempfile::TempDir,
    data: PathBuf,
}

/// One job's exit code, last status line and log.
struct Job {
    code: Option<i32>,
    last: Value,
    stderr: String,
}

impl Job {
    fn describe(&self) -> String {
        format!("exit {:?}\nlast status: {}\nstderr:\n{}", self.code, self.last, self.stderr)
    }

    fn says(&self, words: &str) -> bool {
        self.stderr.contains(words)
    }

    fn step_labels(&self) -> Vec<String> {
        let steps = self.last["result"]["steps"].as_array().cloned().unwrap_or_default();
        steps.iter().filter_map(|step| step["label"].as_str().map(str::to_owned)).collect()
    }
}

impl Library {
    /// A small clip and a quiet 12 s song (its measured gain is the plan's).
    fn new() -> Library {
        let root = tempfile::Builder::new().prefix("audio-cache-").tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(data.join("media")).unwrap();
        media::make_clip(&data.join("media/small.mp4"), &media::CLIP_SMALL);
        let library = Library { root, data };
        library.make_song("0.03*sin(2*PI*440*t)");
        library
    }

    fn make_song(&self, expression: &str) {
        media::make_song_expression(&self.data.join("media/song.mp3"), expression, 12.0);
    }

    /// The blueprint (three 2 s moves, `normalize_audio` on, as the backend sends it) of
    /// a video at `output`.
    fn blueprint(&self, output: &str) -> Value {
        let moves: Vec<Value> = (0..3)
            .map(|index| {
                json!({"clip_id": format!("m{index}"), "video_path": "media/small.mp4", "start_time": index as f64 * 2.0,
                       "duration": 2.0, "trim_start": index as f64 * 0.5, "trim_end": 0.0, "transition_type": "cut",
                       "volume_adjustment": 1.0})
            })
            .collect();
        json!({
            "task_id": format!("audio-cache-{}", output.replace(['/', '.'], "-")), "audio_path": "media/song.mp3",
            "moves": moves, "total_duration": 6.0,
            "output_config": {"output_path": output, "frame_rate": 25.0, "audio_bitrate": "128k", "normalize_audio": true},
        })
    }

    /// `prepare` of [`Library::blueprint`], given on stdin (`-`) or as a file: its exit
    /// code, its summary and its log.
    fn prepare(&self, output: &str, from_stdin: bool) -> (Option<i32>, Value, String) {
        let text = self.blueprint(output).to_string();
        let file = self.root.path().join("prepare-blueprint.json");
        std::fs::write(&file, &text).unwrap();
        let work = tempfile::Builder::new().prefix("work-").tempdir_in(self.root.path()).unwrap();
        let mut command = Command::new(BIN);
        command
            .args(["--log-format", "text", "prepare"])
            .arg(if from_stdin { Path::new("-") } else { file.as_path() })
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--work-dir")
            .arg(work.path())
            .arg("--cache-dir")
            .arg(guest_cache_dir())
            .env("BLUEPRINT_RUNNER_LOG", "info")
            .env_remove("AUDIO_CACHE");
        let result = crate::support::output_with_stdin(&mut command, &text);
        let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "the work folder holds {left:?}");
        let stdout = String::from_utf8_lossy(&result.stdout);
        let summary = stdout.lines().rev().find_map(|line| serde_json::from_str(line).ok()).unwrap_or(Value::Null);
        (result.status.code(), summary, String::from_utf8_lossy(&result.stderr).into_owned())
    }

    /// Runs [`Library::blueprint`] into `output`, its work folder its own.
    fn job(&self, output: &str, extra: &[&str]) -> Job {
        let blueprint = self.blueprint(output);
        let work = tempfile::Builder::new().prefix("work-").tempdir_in(self.root.path()).unwrap();
        let mut command = Command::new(BIN);
        command
            .args(["--log-format", "text", "run", "-", "--data-dir"])
            .arg(&self.data)
            .arg("--work-dir")
            .arg(work.path())
            .arg("--cache-dir")
            .arg(guest_cache_dir())
            .args(extra)
            .env("BLUEPRINT_RUNNER_LOG", "info")
            .env_remove("AUDIO_CACHE")
            .env_remove("PREPARED");
        let result = crate::support::output_with_stdin(&mut command, &blueprint.to_string());
        let stdout = String::from_utf8_lossy(&result.stdout);
        let last = stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<Value>(line).ok().filter(|l| l.get("status").is_some()))
            .unwrap_or(Value::Null);
        let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "the work folder holds {left:?}");
        Job { code: result.status.code(), last, stderr: String::from_utf8_lossy(&result.stderr).into_owned() }
    }

    /// The files under `prepared/<folder>`, by extension.
    fn cached(&self, folder: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.data.join("prepared").join(folder)) else { return Vec::new() };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        files
    }

    fn track(&self) -> PathBuf {
        let tracks: Vec<PathBuf> =
            self.cached("audio").into_iter().filter(|p| p.extension().is_some_and(|e| e == "nut")).collect();
        assert_eq!(tracks.len(), 1, "one cached track: {tracks:?}");
        tracks[0].clone()
    }

    /// The MD5 of a video's audio packets as stored (not decoded): equal only for the
    /// very same AAC frames.
    fn audio_packets(&self, output: &str) -> String {
        media::stream_md5(&self.data.join(output), "0:a")
    }
}

#[test]
fn the_second_job_on_a_song_copies_its_audio_and_makes_the_same_video() {
    let library = Library::new();
    let off = library.job("output/off.mp4", &["--audio-cache", "off"]);
    assert_eq!(off.code, Some(0), "{}", off.describe());
    assert!(off.says("song loudness measured"), "{}", off.describe());
    assert!(!library.data.join("prepared").exists(), "--audio-cache off writes nothing");

    let cold = library.job("output/cold.mp4", &[]);
    assert_eq!(cold.code, Some(0), "{}", cold.describe());
    assert!(cold.says("song loudness measured") && cold.says("kept in the audio cache"), "{}", cold.describe());
    assert_eq!(library.cached("loudness").len(), 1, "one measurement kept");
    let track = library.track();
    assert!(track.with_extension("json").exists(), "the track's manifest beside it");

    let warm = library.job("output/warm.mp4", &[]);
    assert_eq!(warm.code, Some(0), "{}", warm.describe());
    assert!(warm.says("the song's loudness from the audio cache"), "{}", warm.describe());
    assert!(!warm.says("song loudness measured"), "measured again\n{}", warm.describe());
    assert!(warm.step_labels().iter().any(|label| label == "the song (audio cache)"), "{:?}", warm.step_labels());
    assert!(!cold.step_labels().iter().any(|label| label.contains("audio cache")), "{:?}", cold.step_labels());

    let expected = library.audio_packets("output/off.mp4");
    assert_eq!(library.audio_packets("output/cold.mp4"), expected, "the cold job's audio");
    assert_eq!(library.audio_packets("output/warm.mp4"), expected, "the cached audio is the encoded audio");
    for output in ["output/off.mp4", "output/warm.mp4"] {
        let probe = media::probe(&library.data.join(output));
        assert_eq!(probe.video().packets(), 150, "{output}: 6 s at 25 fps");
        let (video, audio) = (probe.video().duration(), probe.audio().duration());
        assert!((audio - video).abs() < 0.001, "{output}: audio {audio} s, video {video} s");
    }
    assert_eq!(
        media::stream_md5(&library.data.join("output/warm.mp4"), "0:v"),
        media::stream_md5(&library.data.join("output/cold.mp4"), "0:v"),
        "the video is untouched by where its audio came from"
    );

    // Another file where the track was (same length, other bytes): its identity is not
    // the manifest's. The job encodes, says why, makes the same audio and files it anew.
    let length = std::fs::metadata(&track).unwrap().len() as usize;
    std::fs::write(&track, vec![0x5a; length]).unwrap();
    let replaced = library.job("output/replaced.mp4", &[]);
    assert_eq!(replaced.code, Some(0), "{}", replaced.describe());
    assert!(replaced.says("the audio cache's entry is not used (its track was replaced"), "{}", replaced.describe());
    assert!(replaced.says("kept in the audio cache"), "{}", replaced.describe());
    assert_eq!(library.audio_packets("output/replaced.mp4"), expected);
    let again = library.job("output/again.mp4", &[]);
    assert!(again.step_labels().iter().any(|label| label == "the song (audio cache)"), "{}", again.describe());
    assert_eq!(library.audio_packets("output/again.mp4"), expected);

    // A manifest edited to describe other bytes: the fetched track fails its digest.
    let manifest_path = track.with_extension("json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["sha256"] = json!("0".repeat(64));
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let edited = library.job("output/edited.mp4", &[]);
    assert_eq!(edited.code, Some(0), "{}", edited.describe());
    assert!(edited.says("its track is not what its manifest says"), "{}", edited.describe());
    assert_eq!(library.audio_packets("output/edited.mp4"), expected);

    // The song rewritten (louder): measured and encoded again, under new entries.
    library.make_song("0.06*sin(2*PI*440*t)");
    let rewritten = library.job("output/rewritten.mp4", &[]);
    assert_eq!(rewritten.code, Some(0), "{}", rewritten.describe());
    assert!(rewritten.says("song loudness measured"), "{}", rewritten.describe());
    assert!(!rewritten.step_labels().iter().any(|label| label.contains("audio cache")), "{}", rewritten.describe());
    assert_eq!(library.cached("loudness").len(), 2, "a measurement per song version");
    let fresh = library.job("output/rewritten-off.mp4", &["--audio-cache", "off"]);
    assert_eq!(fresh.code, Some(0), "{}", fresh.describe());
    assert_eq!(library.audio_packets("output/rewritten.mp4"), library.audio_packets("output/rewritten-off.mp4"));
}

/// Two jobs on a new song at once both make their video and both fill the cache; the
/// entry they leave serves the next job.
#[test]
fn two_jobs_filling_one_entry_at_once_both_succeed() {
    let library = Library::new();
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| library.job("output/first.mp4", &[]));
        let second = scope.spawn(|| library.job("output/second.mp4", &[]));
        (first.join().unwrap(), second.join().unwrap())
    });
    for job in [&first, &second] {
        assert_eq!(job.code, Some(0), "{}", job.describe());
    }
    let expected = library.audio_packets("output/first.mp4");
    assert_eq!(library.audio_packets("output/second.mp4"), expected);
    library.track();
    let leftovers: Vec<PathBuf> = ["audio", "loudness"]
        .iter()
        .flat_map(|folder| library.cached(folder))
        .filter(|path| path.to_string_lossy().contains(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "half-written entries: {leftovers:?}");
    let third = library.job("output/third.mp4", &[]);
    assert_eq!(third.code, Some(0), "{}", third.describe());
    assert!(third.step_labels().iter().any(|label| label == "the song (audio cache)"), "{}", third.describe());
    assert_eq!(library.audio_packets("output/third.mp4"), expected);
}

/// `prepare` with a blueprint fills the audio cache for its song, as its job would: the
/// first job on the song then copies the track and the measurement, and makes the audio
/// a job without the cache makes. A second `prepare` finds the entry there.
#[test]
fn prepare_fills_the_audio_cache_so_that_the_first_job_copies_the_song() {
    let library = Library::new();
    // On stdin, which is read once for the clips and the song alike.
    let (code, summary, log) = library.prepare("output/first.mp4", true);
    assert_eq!(code, Some(0), "{summary}\n{log}");
    assert_eq!(summary["song"]["outcome"], "kept", "{summary}\n{log}");
    assert_eq!(summary["song"]["steps"], json!(["the song"]), "{summary}");
    assert_eq!(summary["prepared"], 1, "the clip too: {summary}");
    library.track();
    assert_eq!(library.cached("loudness").len(), 1, "the measurement is kept too");
    assert!(!library.data.join("output").exists(), "prepare writes no video");

    let first = library.job("output/first.mp4", &[]);
    assert_eq!(first.code, Some(0), "{}", first.describe());
    assert!(first.step_labels().contains(&"the song (audio cache)".to_owned()), "{}", first.describe());
    assert!(!first.says("song loudness measured"), "the measurement is copied: {}", first.describe());
    let off = library.job("output/off.mp4", &["--audio-cache", "off"]);
    assert_eq!(off.code, Some(0), "{}", off.describe());
    assert_eq!(library.audio_packets("output/first.mp4"), library.audio_packets("output/off.mp4"));

    let (code, again, log) = library.prepare("output/first.mp4", false);
    assert_eq!(code, Some(0), "{again}\n{log}");
    assert_eq!(again["song"]["outcome"], "up_to_date", "{again}\n{log}");
    assert_eq!(again["up_to_date"], 1, "{again}");
}
