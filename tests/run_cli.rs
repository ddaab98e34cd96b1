//! `blueprint-runner run` end to end: the real binary, the real guest in the sandbox,
//! real FFmpeg, and media generated on the spot (never downloaded). Each test has its
//! own data and work folders; the compiled guests are cached once for all of them.
//!
//! The clips are self-describing (see `support/media.rs`): the chroma names the clip and
//! the luma is `60 + 10 * source time`, so a sampled frame of the result tells which
//! clip the video shows and from which point.

use crate::support::media;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use media::{StreamFacts, Yuv, CLIP_A, CLIP_B, CLIP_C, CLIP_SMALL};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const HOSTILE: &str = test_programs::HOSTILE_GUEST;

/// One compiled-guest cache for every run of these tests: compiled once, then loaded
/// in a millisecond.
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("run-cli-guest-cache")
}

/// A test's own folders: `data/` (the storage), `work/` (the work-folder root) and
/// room for the blueprint file beside them.
struct Sandbox {
    root: tempfile::TempDir,
    data: PathBuf,
    work: PathBuf,
}

/// What one `blueprint-runner run` did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    lines: Vec<Value>,
}

impl Sandbox {
    fn new() -> Sandbox {
        let root = tempfile::Builder::new().prefix("run-cli-").tempdir().expect("temp folder");
        let data = root.path().join("data");
        let work = root.path().join("work");
        std::fs::create_dir_all(data.join("media")).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        Sandbox { root, data, work }
    }

    fn key(&self, key: &str) -> PathBuf {
        self.data.join(key)
    }

    /// Runs `blueprint-runner run <file> --data-dir data --work-dir work ...` with the
    /// blueprint text written to a file beside the data folder.
    fn run(&self, blueprint: &str, extra: &[&str]) -> Run {
        let output = self.command(blueprint, extra).output().expect("run blueprint-runner");
        Run::from_output(&output)
    }

    /// The command [`Sandbox::run`] runs, to start it some other way.
    fn command(&self, blueprint: &str, extra: &[&str]) -> Command {
        let file = self.root.path().join("blueprint.json");
        std::fs::write(&file, blueprint).unwrap();
        let mut command = Command::new(BIN);
        command
            .args(["--log-format", "text", "run"])
            .arg(&file)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--work-dir")
            .arg(&self.work)
            .arg("--cache-dir")
            .arg(cache_dir())
            .args(extra)
            .stdin(Stdio::null());
        for variable in [
            "BLUEPRINT_JSON",
            "DATA_DIR",
            "WORK_DIR",
            "GUEST_COMPONENT",
            "GUEST_FUEL",
            "GUEST_MEMORY_MIB",
            "GUEST_DEADLINE_MS",
            "JOB_MEMORY_MIB",
            "STEP_TIMEOUT_SECS",
            "JOB_DEADLINE_SECS",
            "OUTPUT_PREFIX",
        ] {
            command.env_remove(variable);
        }
        command
    }

    /// Names of whatever is left in the work-folder root.
    fn work_leftovers(&self) -> Vec<String> {
        std::fs::read_dir(&self.work)
            .expect("work dir")
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn assert_work_empty(&self, run: &Run) {
        let left = self.work_leftovers();
        assert!(left.is_empty(), "the work folder was not removed: {left:?}\n{}", run.describe());
    }
}

impl Run {
    fn from_output(output: &std::process::Output) -> Run {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let lines = stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("stdout line is not JSON ({e}): {line:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
                })
            })
            .collect();
        Run { code: output.status.code(), stdout, stderr, lines }
    }

    fn describe(&self) -> String {
        format!("exit code {:?}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr)
    }

    fn last(&self) -> &Value {
        self.lines.last().unwrap_or_else(|| panic!("no status line\n{}", self.describe()))
    }

    fn stages(&self) -> Vec<&str> {
        self.lines.iter().map(|line| line["stage"].as_str().unwrap_or("?")).collect()
    }

    fn ran_stage(&self, stage: &str) -> bool {
        self.lines.iter().any(|line| line["stage"] == stage)
    }

    /// Checks the exit code and that the last line reports the failure; returns its error.
    fn expect_failure(&self, code: i32) -> String {
        assert_eq!(self.code, Some(code), "{}", self.describe());
        let last = self.last();
        assert_eq!(last["status"], "failed", "the last status line is not a failure\n{}", self.describe());
        assert!(last.get("result").is_none(), "a failed line carries a result\n{}", self.describe());
        assert!(
            !self.lines.iter().any(|l| l["status"] == "completed"),
            "a completed line on failure\n{}",
            self.describe()
        );
        let error =
            last["error"].as_str().unwrap_or_else(|| panic!("failed line without an error\n{}", self.describe()));
        assert!(!error.is_empty());
        error.to_owned()
    }
}

fn movement(
    clip_id: &str,
    video: &str,
    start: f64,
    duration: f64,
    trim_start: f64,
    transition: &str,
    volume: f64,
) -> Value {
    json!({
        "clip_id": clip_id,
        "video_path": video,
        "start_time": start,
        "duration": duration,
        "trim_start": trim_start,
        "trim_end": 0.0,
        "transition_type": transition,
        "volume_adjustment": volume,
    })
}

fn blueprint(task_id: &str, audio: &str, moves: Vec<Value>, output: &str, frame_rate: f64) -> Value {
    let total: f64 = moves.iter().map(|m| m["duration"].as_f64().unwrap()).sum();
    json!({
        "task_id": task_id,
        "audio_path": audio,
        "moves": moves,
        "total_duration": total,
        "output_config": {
            "output_path": output,
            "frame_rate": frame_rate,
            "transition_duration": 1.0,
            "fade_duration": 0.5,
            "video_bitrate": "2M",
            "audio_bitrate": "128k",
            "normalize_audio": false,
        },
    })
}

/// A quick two-move blueprint over small clips: both moves cut, 2 s each.
fn small_blueprint(task_id: &str, second_clip: &str, second_trim: f64) -> Value {
    blueprint(
        task_id,
        "media/song.mp3",
        vec![
            movement("m0", "media/small.mp4", 0.0, 2.0, 0.0, "cut", 1.0),
            movement("m1", second_clip, 2.0, 2.0, second_trim, "cut", 1.0),
        ],
        "output/result.mp4",
        25.0,
    )
}

fn small_media(sandbox: &Sandbox) {
    media::make_clip(&sandbox.key("media/small.mp4"), &CLIP_SMALL);
    media::make_song_mp3(&sandbox.key("media/song.mp3"), 6.0);
}

/// Collects failed checks so that one run reports every problem at once.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
    notes: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: String) {
        self.notes.push(format!("{} {what}", if ok { "ok  " } else { "FAIL" }));
        if !ok {
            self.failures.push(what);
        }
    }

    fn near(&mut self, what: &str, measured: f64, expected: f64, tolerance: f64) {
        self.check(
            (measured - expected).abs() <= tolerance,
            format!("{what}: {measured:.3} (expected {expected:.3} ± {tolerance})"),
        );
    }

    fn finish(self, context: &str) {
        println!("{}", self.notes.join("\n"));
        assert!(
            self.failures.is_empty(),
            "{} checks failed:\n  {}\n\nall checks:\n{}\n\n{context}",
            self.failures.len(),
            self.failures.join("\n  "),
            self.notes.join("\n")
        );
    }
}

fn chroma_is(yuv: Yuv, chroma: (u8, u8), tolerance: i32) -> bool {
    (yuv.u as i32 - chroma.0 as i32).abs() <= tolerance && (yuv.v as i32 - chroma.1 as i32).abs() <= tolerance
}

fn make_in_parallel(jobs: Vec<Box<dyn FnOnce() + Send>>) {
    let handles: Vec<_> = jobs.into_iter().map(std::thread::spawn).collect();
    for handle in handles {
        if let Err(panic) = handle.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// MPEG-TS has no index: FFmpeg's input seek in it lands between keyframes and the decoder
/// drops every frame up to the next one, 8.3 s on in this clip (a crossfade into a clip with
/// a single keyframe waited for ever). The host copies such a clip into MP4 once staged, so
/// a move that starts inside its first GOP, and the crossfade into it, show the frames asked for.
#[test]
fn a_clip_in_mpeg_ts_is_read_from_the_frame_its_move_asks_for() {
    let sandbox = Sandbox::new();
    let ts_clip = media::ClipSpec { chroma: CLIP_C.chroma, ..CLIP_A };
    {
        let (a, ts, song) = (sandbox.key("media/a.mp4"), sandbox.key("media/c.ts"), sandbox.key("media/song.mp3"));
        make_in_parallel(vec![
            Box::new(move || media::make_clip(&a, &CLIP_A.with_seconds(6.0))),
            Box::new(move || media::make_clip_ts(&ts, &ts_clip)),
            Box::new(move || media::make_song_mp3(&song, 12.0)),
        ]);
    }
    let moves = vec![
        movement("m0", "media/a.mp4", 0.0, 4.0, 0.0, "cut", 1.0),
        // Read from 2.5 s (half the 1-s crossfade before its trim_start) and from 5.5 s.
        movement("m1", "media/c.ts", 4.0, 4.0, 3.0, "crossfade", 1.0),
        movement("m2", "media/c.ts", 8.0, 3.0, 5.5, "cut", 1.0),
    ];
    let run = sandbox.run(&blueprint("mpeg-ts", "media/song.mp3", moves, "output/result.mp4", 30.0).to_string(), &[]);
    assert_eq!(run.code, Some(0), "{}", run.describe());

    let mut checks = Checks { failures: Vec::new(), notes: Vec::new() };
    let output = sandbox.key("output/result.mp4");
    let frames = media::probe(&output).video().packets();
    checks.check((329..=331).contains(&frames), format!("330 ± 1 video frames: {frames}"));
    for (t, source) in [(5.0, 4.0), (6.0, 5.0), (7.9, 6.9), (8.1, 5.6), (9.5, 7.0), (10.9, 8.4)] {
        let yuv = media::frame_at(&output, t);
        checks.check(chroma_is(yuv, CLIP_C.chroma, 12), format!("t={t}: the MPEG-TS clip {:?}: {yuv}", CLIP_C.chroma));
        checks.near(&format!("t={t}: its frame at {source} s"), yuv.y as f64, media::luma_at(source), 8.0);
    }
    let blend = media::frame_at(&output, 4.0);
    let (va, vc) = (CLIP_A.chroma.1 as f64, CLIP_C.chroma.1 as f64);
    checks.near("t=4.0: crossfade centre V (half way)", blend.v as f64, (va + vc) / 2.0, 8.0);
    checks.near(
        "t=4.0: crossfade centre luma (A at 4 s, the clip at 3 s)",
        blend.y as f64,
        (media::luma_at(4.0) + media::luma_at(3.0)) / 2.0,
        8.0,
    );
    checks.check(sandbox.work_leftovers().is_empty(), format!("work folder removed: {:?}", sandbox.work_leftovers()));
    checks.finish(&run.describe());
}

/// Five moves over three clip formats, every transition, a muted move and a clip
/// shorter than its slot; the result is measured frame by frame.
#[test]
fn five_moves_three_formats_every_transition() {
    let sandbox = Sandbox::new();
    {
        let (a, b, c, song) = (
            sandbox.key("media/a.mp4"),
            sandbox.key("media/b.mp4"),
            sandbox.key("media/c.mp4"),
            sandbox.key("media/song.mp3"),
        );
        make_in_parallel(vec![
            Box::new(move || media::make_clip(&a, &CLIP_A)),
            Box::new(move || media::make_clip(&b, &CLIP_B)),
            Box::new(move || {
                media::make_clip(&c, &CLIP_C);
                media::make_song_mp3(&song, 30.0);
            }),
        ]);
    }
    // (clip spec, trim_start) of each move; moves last 4 s.
    let moves: [(&media::ClipSpec, f64); 5] =
        [(&CLIP_A, 1.0), (&CLIP_B, 0.0), (&CLIP_C, 2.0), (&CLIP_A, 5.0), (&CLIP_B, 3.0)];
    let document = blueprint(
        "run-main-1",
        "media/song.mp3",
        vec![
            movement("m0", "media/a.mp4", 0.0, 4.0, 1.0, "cut", 1.0),
            movement("m1", "media/b.mp4", 4.0, 4.0, 0.0, "crossfade", 1.0),
            movement("m2", "media/c.mp4", 8.0, 4.0, 2.0, "fade_black", 1.0),
            movement("m3", "media/a.mp4", 12.0, 4.0, 5.0, "fade_white", 0.0),
            movement("m4", "media/b.mp4", 16.0, 4.0, 3.0, "cut", 1.0),
        ],
        "output/result.mp4",
        30.0,
    );
    assert_eq!(document["total_duration"], 20.0);
    let started = std::time::Instant::now();
    let run = sandbox.run(&document.to_string(), &[]);
    println!("run took {:.1} s; stages {:?}", started.elapsed().as_secs_f64(), run.stages());
    assert_eq!(run.code, Some(0), "{}", run.describe());

    let mut checks = Checks::default();
    // Status lines.
    let last = run.last().clone();
    checks.check(last["status"] == "completed", format!("last status is completed: {}", last["status"]));
    checks.check(last["progress"] == 100, format!("last progress is 100: {}", last["progress"]));
    checks.check(last["stage"] == "done", format!("last stage is done: {}", last["stage"]));
    checks.check(
        run.lines.iter().all(|l| l["task_id"] == "run-main-1" || l["task_id"].is_null()),
        "every line names the task (or null before validation)".into(),
    );
    checks.check(last["task_id"] == "run-main-1", format!("completed line names the task: {}", last["task_id"]));
    let progress: Vec<u64> =
        run.lines.iter().map(|l| l["progress"].as_u64().expect("progress is an integer")).collect();
    checks.check(
        progress.windows(2).all(|w| w[0] <= w[1]) && progress.iter().all(|&p| p <= 100),
        format!("progress is non-decreasing within 0..=100: {progress:?}"),
    );
    checks.check(run.lines.iter().all(|l| l["error"].is_null()), "no line carries an error".into());
    for stage in ["validate", "fetch", "probe", "plan", "encode", "upload", "done"] {
        checks.check(run.ran_stage(stage), format!("a status line for stage {stage}"));
    }
    let result = &last["result"];
    checks
        .check(result["output_path"] == "output/result.mp4", format!("result output_path: {}", result["output_path"]));
    checks.check(result["moves_count"] == 5, format!("result moves_count: {}", result["moves_count"]));
    checks.check(result["timings"].is_object(), "result has timings".into());
    let warnings = result["warnings"].as_array().cloned().unwrap_or_default();
    checks.check(
        warnings.iter().any(|w| w["pointer"] == "/moves/4" && w["message"].is_string()),
        format!("warning for /moves/4 (B is 3.2 s after its trim): {warnings:?}"),
    );
    checks.check(
        !warnings.iter().any(|w| {
            w["pointer"].as_str().is_some_and(|p| {
                p.starts_with("/moves/0")
                    || p.starts_with("/moves/1")
                    || p.starts_with("/moves/2")
                    || p.starts_with("/moves/3")
            })
        }),
        format!("no warning for moves that fit: {warnings:?}"),
    );

    let output = sandbox.key("output/result.mp4");
    assert!(output.is_file(), "no result at output/result.mp4\n{}", run.describe());
    let file_size = std::fs::metadata(&output).unwrap().len();
    checks.check(result["file_size"] == file_size, format!("result file_size {} = {file_size}", result["file_size"]));
    if let Some(duration) = result["duration"].as_f64() {
        checks.near("result duration", duration, 20.0, 1.0 / 30.0);
    } else {
        checks.check(false, format!("result duration is a number: {}", result["duration"]));
    }
    checks.check(sandbox.work_leftovers().is_empty(), format!("work folder removed: {:?}", sandbox.work_leftovers()));

    // Streams.
    let probe = media::probe(&output);
    let video = probe.video();
    let audio = probe.audio();
    checks.check(video.codec() == "h264", format!("video codec h264: {}", video.codec()));
    checks.check(
        video.int("width") == 1280 && video.int("height") == 720,
        format!("1280x720 (the first clip's size): {}x{}", video.int("width"), video.int("height")),
    );
    checks.check(video.text("r_frame_rate") == "30/1", format!("r_frame_rate 30/1: {}", video.text("r_frame_rate")));
    checks.check(video.text("pix_fmt") == "yuv420p", format!("pix_fmt yuv420p: {}", video.text("pix_fmt")));
    let frames = video.packets();
    checks.check((599..=601).contains(&frames), format!("600 ± 1 video frames: {frames}"));
    checks.check(audio.codec() == "aac", format!("audio codec aac: {}", audio.codec()));
    let (video_seconds, audio_seconds) = (video.duration(), audio.duration());
    checks.near("video duration", video_seconds, 20.0, 1.0 / 30.0);
    checks.near("audio duration", audio_seconds, 20.0, 1.0 / 30.0);
    checks.near("audio - video duration", audio_seconds - video_seconds, 0.0, 1024.0 / 48_000.0 + 1e-6);
    checks.notes.push(format!(
        "info: format duration {:.6}, video {video_seconds:.6} s, audio {audio_seconds:.6} s, audio {} Hz {} channel(s), {} audio packets",
        probe.format_duration(),
        audio.int("sample_rate"),
        audio.int("channels"),
        audio.packets()
    ));

    // Each move's midpoint shows its clip at trim_start + offset.
    for (index, (clip, trim)) in moves.iter().enumerate() {
        let t = 4.0 * index as f64 + 2.0;
        let yuv = media::frame_at(&output, t);
        checks.check(chroma_is(yuv, clip.chroma, 12), format!("t={t}: move {index} chroma {:?}: {yuv}", clip.chroma));
        checks.near(&format!("t={t}: move {index} luma"), yuv.y as f64, media::luma_at(trim + 2.0), 8.0);
    }
    // Late in move 4: B ran out at 6.17 s of source and holds its last frame.
    for t in [19.5, 19.8] {
        let yuv = media::frame_at(&output, t);
        checks.check(chroma_is(yuv, CLIP_B.chroma, 12), format!("t={t}: held frame is B's {:?}: {yuv}", CLIP_B.chroma));
        checks.near(
            &format!("t={t}: held last frame luma"),
            yuv.y as f64,
            media::luma_at(CLIP_B.last_frame_time()),
            8.0,
        );
    }
    // Crossfade A -> B centred on 4.0 over 1 s: pure A before 3.5, pure B after 4.5.
    let before = media::frame_at(&output, 3.4);
    checks.check(
        chroma_is(before, CLIP_A.chroma, 12),
        format!("t=3.4 (before the crossfade): A {:?}: {before}", CLIP_A.chroma),
    );
    let blend = media::frame_at(&output, 4.0);
    let (ua, ub) = (CLIP_A.chroma.0 as i32, CLIP_B.chroma.0 as i32);
    let u = blend.u as i32;
    checks.check(
        u >= ua + 20 && u <= ub - 20,
        format!("t=4.0 (crossfade centre): U between A's {ua} and B's {ub}, not either: {blend}"),
    );
    checks.near("t=4.0: crossfade centre U (half way)", u as f64, (ua + ub) as f64 / 2.0, 25.0);
    let after = media::frame_at(&output, 4.6);
    checks.check(
        chroma_is(after, CLIP_B.chroma, 12),
        format!("t=4.6 (after the crossfade): B {:?}: {after}", CLIP_B.chroma),
    );
    // fade_black B -> C at 8.0: the boundary frame is black.
    let black = media::frame_at(&output, 8.0);
    checks.check(
        black.y <= 24 && (black.u as i32 - 128).abs() <= 8 && (black.v as i32 - 128).abs() <= 8,
        format!("t=8.0 (fade_black boundary): black: {black}"),
    );
    let dimming = media::frame_at(&output, 7.75);
    checks.check(
        (dimming.y as f64) < media::luma_at(3.75) - 10.0,
        format!("t=7.75: B fading out, darker than {:.0}: {dimming}", media::luma_at(3.75)),
    );
    let pre_black = media::frame_at(&output, 7.4);
    checks.check(
        chroma_is(pre_black, CLIP_B.chroma, 12),
        format!("t=7.4 (before the fade-out): B {:?}: {pre_black}", CLIP_B.chroma),
    );
    let post_black = media::frame_at(&output, 8.6);
    checks.check(
        chroma_is(post_black, CLIP_C.chroma, 12),
        format!("t=8.6 (after the fade-in): C {:?}: {post_black}", CLIP_C.chroma),
    );
    checks.near("t=8.6: C luma", post_black.y as f64, media::luma_at(2.6), 8.0);
    // fade_white C -> A at 12.0: the boundary frame is white.
    let white = media::frame_at(&output, 12.0);
    checks.check(
        white.y >= 225 && (white.u as i32 - 128).abs() <= 8 && (white.v as i32 - 128).abs() <= 8,
        format!("t=12.0 (fade_white boundary): white: {white}"),
    );
    let post_white = media::frame_at(&output, 12.6);
    checks.check(
        chroma_is(post_white, CLIP_A.chroma, 12),
        format!("t=12.6 (after the fade-in): A {:?}: {post_white}", CLIP_A.chroma),
    );
    checks.near("t=12.6: A luma", post_white.y as f64, media::luma_at(5.6), 8.0);
    // Letterbox: the 4:3 clip C is pillarboxed in 16:9, not stretched.
    let bar = media::frame_region_at(&output, 10.0, media::LEFT_EDGE);
    checks.check(
        bar.y <= 24 && (bar.u as i32 - 128).abs() <= 8 && (bar.v as i32 - 128).abs() <= 8,
        format!("t=10: left edge is a black bar (C is 4:3): {bar}"),
    );

    // Audio: the song, muted during move 3.
    let samples = media::audio_samples(&output, 48_000);
    checks.notes.push(format!(
        "info: decoded {} audio samples = {:.6} s",
        samples.len(),
        samples.len() as f64 / 48_000.0
    ));
    let loud = media::rms(&samples, 48_000, 1.0, 3.0);
    checks.check(loud > 0.02, format!("RMS [1, 3] (song at volume 1) > 0.02: {loud:.5}"));
    let muted = media::rms(&samples, 48_000, 12.2, 15.8);
    checks.check(muted < 1e-3, format!("RMS [12.2, 15.8] (move 3, volume 0) < 1e-3: {muted:.6}"));
    let back = media::rms(&samples, 48_000, 16.2, 19.8);
    checks.check(back > 0.02, format!("RMS [16.2, 19.8] (move 4, volume 1 again) > 0.02: {back:.5}"));
    for (t0, t1) in [(4.2, 7.8), (8.2, 11.8)] {
        let level = media::rms(&samples, 48_000, t0, t1);
        checks.notes.push(format!("info: RMS [{t0}, {t1}] = {level:.5}"));
    }

    checks.finish(&run.describe());
}

/// `--strict` turns the short-clip warning into a failure before anything is encoded.
/// The song is made in its own step (beside the video where there are two cores) and
/// copied into the output: it must still start on the sample the blueprint puts it,
/// not 1,024 AAC priming samples (21 ms) late, and last exactly as long as the video.
#[test]
fn the_song_starts_on_its_sample_and_runs_beside_the_video() {
    let sandbox = Sandbox::new();
    media::make_clip(&sandbox.key("media/small.mp4"), &CLIP_SMALL);
    media::make_song_with_onset(&sandbox.key("media/song.wav"), 1.0, 6.0);
    let mut document = small_blueprint("run-song-onset", "media/small.mp4", 1.0);
    document["audio_path"] = json!("media/song.wav");
    let run = sandbox.run(&document.to_string(), &[]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let output = sandbox.key("output/result.mp4");
    // 4 s is 187.5 AAC frames: the last one must count for half.
    let probe = media::probe(&output);
    let (video, audio) = (probe.video().duration(), probe.audio().duration());
    assert!(
        (audio - 4.0).abs() < 1e-6 && (video - 4.0).abs() < 1e-6,
        "video {video} s, audio {audio} s: both must be 4 s"
    );
    assert!((probe.format_duration() - 4.0).abs() < 1e-6, "the file lasts {} s", probe.format_duration());
    let samples = media::audio_samples(&output, 48_000);
    // Half the sine's amplitude: AAC's pre-echo before a sharp onset stays well below it.
    let onset = samples.iter().position(|s| s.abs() > 0.125).expect("the tone is there");
    assert!((48_000 - 96..=48_000 + 96).contains(&onset), "the tone starts at sample {onset}, not 48000 (±2 ms)");
    let steps = run.last()["result"]["steps"].as_array().expect("step timings").clone();
    assert_eq!(steps[0]["label"], "the song", "{steps:?}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores >= 2 {
        let song_ends = steps[0]["started"].as_f64().unwrap() + steps[0]["seconds"].as_f64().unwrap();
        assert!(
            steps[1]["started"].as_f64().unwrap() < song_ends,
            "the first segment started beside the song: {steps:?}"
        );
    } else {
        println!("one core: the steps run one at a time, overlap not checked");
    }
    sandbox.assert_work_empty(&run);
}

#[test]
fn strict_refuses_a_clip_shorter_than_its_move() {
    let sandbox = Sandbox::new();
    small_media(&sandbox);
    // The 6 s clip from 5 s has 1 s for a 2 s move.
    let document = small_blueprint("strict-1", "media/small.mp4", 5.0);
    let run = sandbox.run(&document.to_string(), &["--strict"]);
    let error = run.expect_failure(4);
    println!("strict error: {error}");
    assert!(error.contains("/moves/1"), "the error names the move: {error}");
    assert!(!run.ran_stage("encode"), "an encode step ran\n{}", run.describe());
    assert!(!sandbox.key("output/result.mp4").exists(), "an output was written");
    sandbox.assert_work_empty(&run);

    // Without --strict the same blueprint runs, with the warning.
    let run = sandbox.run(&document.to_string(), &[]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let warnings = run.last()["result"]["warnings"].as_array().cloned().unwrap_or_default();
    assert!(warnings.iter().any(|w| w["pointer"] == "/moves/1"), "warning for /moves/1: {warnings:?}");
    sandbox.assert_work_empty(&run);
}

#[test]
fn missing_clip_is_a_storage_error_naming_pointer_and_key() {
    let sandbox = Sandbox::new();
    small_media(&sandbox);
    // Spelled as the backend spells keys: the message shows the key and, less `data/`,
    // the file asked for in the data folder.
    let document = small_blueprint("missing-1", "data/media/not-there.mp4", 0.0);
    let run = sandbox.run(&document.to_string(), &[]);
    let error = run.expect_failure(6);
    println!("missing clip error: {error}");
    let folder = sandbox.data.canonicalize().unwrap();
    let looked_for = format!("(looked for \"media/not-there.mp4\" in the data folder {})", folder.display());
    let expected = format!("/moves/1/video_path: \"data/media/not-there.mp4\" does not exist {looked_for}");
    assert_eq!(error, expected);
    assert_eq!(run.last()["task_id"], "missing-1");
    assert!(!run.ran_stage("encode"), "an encode step ran\n{}", run.describe());
    assert!(!sandbox.key("output/result.mp4").exists(), "an output was written");
    sandbox.assert_work_empty(&run);
}

/// A FIFO named as a clip once blocked the fetch in `open` for ever, past SIGTERM. Now
/// the fetch refuses it at once; should it ever block again, SIGTERM must still end the
/// job within 2 s. Either way the data folder is left as it was.
#[test]
fn a_fifo_named_as_a_clip_fails_at_once_and_sigterm_still_ends_the_job() {
    let sandbox = Sandbox::new();
    small_media(&sandbox);
    let fifo = sandbox.key("media/fifo.mp4");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads the NUL-terminated path it is given.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let before = data_snapshot(&sandbox.data);
    let document = small_blueprint("fifo-1", "media/fifo.mp4", 0.0);
    let mut child = sandbox
        .command(&document.to_string(), &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let started = std::time::Instant::now();
    let mut signalled = None;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.is_none() && started.elapsed() > std::time::Duration::from_secs(5) {
            // SAFETY: kill sends a signal to the child this test started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            signalled = Some(std::time::Instant::now());
        }
        if let Some(at) = signalled {
            if at.elapsed() > std::time::Duration::from_secs(2) {
                let _ = child.kill();
                panic!("the job did not end within 2 s of SIGTERM");
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let run = Run::from_output(&std::process::Output { status, ..output });
    assert!(signalled.is_none(), "the fetch blocked until SIGTERM\n{}", run.describe());
    let error = run.expect_failure(6);
    assert!(error.contains("/moves/1/video_path") && error.contains("is not a regular file"), "{error}");
    assert_eq!(data_snapshot(&sandbox.data), before, "the data folder changed");
    sandbox.assert_work_empty(&run);
}

/// Every file below `root` with its bytes' checksum, FIFOs by type only (reading one
/// would block).
fn data_snapshot(root: &Path) -> Vec<(String, String)> {
    use std::hash::{Hash, Hasher};
    let mut found = Vec::new();
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            let name = entry.path().strip_prefix(root).unwrap().display().to_string();
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(entry.path()).unwrap().hash(&mut hasher);
                found.push((name, format!("{:016x}", hasher.finish())));
            } else {
                found.push((name, "not a regular file".to_owned()));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn text_file_named_mp4_is_a_media_error() {
    let sandbox = Sandbox::new();
    small_media(&sandbox);
    std::fs::write(sandbox.key("media/notes.mp4"), "these are not the frames you are looking for\n".repeat(50))
        .unwrap();
    let document = small_blueprint("not-media-1", "media/notes.mp4", 0.0);
    let run = sandbox.run(&document.to_string(), &[]);
    let error = run.expect_failure(4);
    println!("text file error: {error}");
    assert!(error.contains("/moves/1/video_path"), "the error names the pointer: {error}");
    assert!(!run.ran_stage("encode"), "an encode step ran\n{}", run.describe());
    assert!(!sandbox.key("output/result.mp4").exists(), "an output was written");
    sandbox.assert_work_empty(&run);
}

/// A "clip" whose bytes are an HLS playlist naming a file outside the data folder:
/// FFmpeg would follow it if it chose the demuxer from the content alone.
#[test]
fn playlist_disguised_as_a_clip_is_refused() {
    let sandbox = Sandbox::new();
    small_media(&sandbox);
    let outside = sandbox.key("../outside-secret.mp4");
    media::make_clip(&outside, &CLIP_SMALL);
    let playlist =
        format!("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:6,\nfile://{}\n#EXT-X-ENDLIST\n", outside.display());
    std::fs::write(sandbox.key("media/playlist.mp4"), playlist).unwrap();
    let document = small_blueprint("hls-1", "media/playlist.mp4", 0.0);
    let run = sandbox.run(&document.to_string(), &[]);
    let error = run.expect_failure(4);
    println!("playlist error: {error}");
    // Debian's FFmpeg has the HLS demuxer and names the refused container; the image's
    // minimal build has no such demuxer and reads the text as a broken MP4.
    let refused = error.contains("container format") || error.contains("not a readable media file");
    assert!(error.contains("/moves/1/video_path") && refused, "{error}");
    assert!(!run.ran_stage("encode"), "an encode step ran\n{}", run.describe());
    sandbox.assert_work_empty(&run);
}

/// A codec outside the accepted table (`crates/engine/src/formats.rs`, which the image's FFmpeg is
/// built from) is a media error at the probe, whichever FFmpeg could have decoded it.
#[test]
fn a_clip_in_a_codec_the_job_does_not_decode_is_refused_at_the_probe() {
    let sandbox = Sandbox::new();
    small_media(&sandbox);
    let status = Command::new(media::ffmpeg_binary())
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=3", "-c:v", "prores_ks"])
        .arg(sandbox.key("media/prores.mov"))
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "making a ProRes clip");
    let document = small_blueprint("prores-1", "media/prores.mov", 0.0);
    let run = sandbox.run(&document.to_string(), &[]);
    let error = run.expect_failure(4);
    assert!(error.contains("/moves/1/video_path"), "{error}");
    assert!(error.contains("its video is prores, which this job does not decode"), "{error}");
    assert_eq!(run.last()["stage"], "probe", "{}", run.describe());
    assert!(!run.ran_stage("encode"), "an encode step ran\n{}", run.describe());
    sandbox.assert_work_empty(&run);
}

#[test]
fn trim_start_beyond_the_clip_is_a_media_error() {
    let sandbox = Sandbox::new();
    small_media(&sandbox);
    // The clip lasts 6 s.
    let document = small_blueprint("trim-1", "media/small.mp4", 7.0);
    let run = sandbox.run(&document.to_string(), &[]);
    let error = run.expect_failure(4);
    println!("trim error: {error}");
    assert!(error.contains("/moves/1/trim_start"), "the error names the pointer: {error}");
    assert!(!run.ran_stage("encode"), "an encode step ran\n{}", run.describe());
    assert!(!sandbox.key("output/result.mp4").exists(), "an output was written");
    sandbox.assert_work_empty(&run);
}

#[test]
fn invalid_json_is_refused_before_any_work() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(r#"{"task_id": "broken-1", "moves": [}"#, &[]);
    let error = run.expect_failure(2);
    println!("invalid JSON error: {error}");
    assert_eq!(run.last()["stage"], "validate");
    assert!(run.last()["task_id"].is_null(), "no task id before validation: {}", run.last());
    assert!(!run.ran_stage("fetch"), "fetched anyway\n{}", run.describe());
    sandbox.assert_work_empty(&run);
}

#[test]
fn key_escaping_the_data_folder_is_refused() {
    let sandbox = Sandbox::new();
    small_media(&sandbox);
    // A real clip just outside the data folder: a key must never reach it.
    let outside = sandbox.root.path().join("outside.mp4");
    media::make_clip(&outside, &CLIP_SMALL.with_seconds(2.0));
    let before = std::fs::read(&outside).unwrap();
    for key in ["../outside.mp4", "media/../../outside.mp4"] {
        let document = small_blueprint("escape-1", key, 0.0);
        let run = sandbox.run(&document.to_string(), &[]);
        let error = run.expect_failure(2);
        println!("escape {key} error: {error}");
        assert!(error.contains("/moves/1/video_path"), "the error names the pointer: {error}");
        assert!(!run.ran_stage("fetch"), "fetched anyway\n{}", run.describe());
        assert!(!sandbox.key("output/result.mp4").exists(), "an output was written");
        sandbox.assert_work_empty(&run);
    }
    assert_eq!(std::fs::read(&outside).unwrap(), before, "the outside file changed");
}

/// The hostile guest's fixed blueprint needs `media/clip.mp4` and `media/song.wav`.
fn hostile_media() -> Sandbox {
    let sandbox = Sandbox::new();
    media::make_clip(&sandbox.key("media/clip.mp4"), &CLIP_SMALL.with_seconds(3.0));
    media::make_song_wav(&sandbox.key("media/song.wav"), 3.0);
    sandbox
}

fn run_hostile(sandbox: &Sandbox, behaviour: &str, extra: &[&str]) -> Run {
    let mut args = vec!["--guest", HOSTILE];
    args.extend_from_slice(extra);
    sandbox.run(&format!("plan:{behaviour}"), &args)
}

fn hostile_plan_is_refused_by_policy(behaviour: &str, named: &str) {
    let escaped = Path::new("/tmp/escaped.mp4");
    let existed_before = escaped.exists();
    let sandbox = hostile_media();
    let before = data_snapshot(&sandbox.data);
    let run = run_hostile(&sandbox, behaviour, &[]);
    assert_eq!(data_snapshot(&sandbox.data), before, "{behaviour}: the data folder changed");
    let error = run.expect_failure(3);
    println!("hostile plan {behaviour}: {error}");
    assert!(error.contains("refused by policy"), "{behaviour}: not a policy refusal: {error}\n{}", run.describe());
    assert!(error.contains(named), "{behaviour}: the refusal does not name {named:?}: {error}");
    assert_eq!(run.last()["stage"], "plan", "{behaviour}: failed at another stage\n{}", run.describe());
    assert!(!run.ran_stage("encode"), "{behaviour}: an FFmpeg step ran\n{}", run.describe());
    assert!(!sandbox.key("output/hostile.mp4").exists(), "{behaviour}: an output was written");
    if !existed_before {
        assert!(!escaped.exists(), "{behaviour}: {} was created", escaped.display());
    }
    sandbox.assert_work_empty(&run);
}

macro_rules! hostile_plan_tests {
    ($($name:ident => $behaviour:literal naming $named:literal,)*) => {$(
        #[test]
        fn $name() {
            hostile_plan_is_refused_by_policy($behaviour, $named);
        }
    )*};
}

hostile_plan_tests! {
    hostile_plan_path_literal => "path-literal" naming "a literal is never a file",
    hostile_plan_url => "url" naming "only staged inputs and temps",
    hostile_plan_lavfi_movie => "lavfi-movie" naming "lavfi",
    hostile_plan_forbidden_filter => "forbidden-filter" naming "movie",
    hostile_plan_temp_before_write => "temp-before-write" naming "temp 0",
    hostile_plan_ten_thousand_steps => "ten-thousand-steps" naming "10000 steps",
    // Values that took FFmpeg gigabytes (or for ever) before the policy bounded them:
    // each refusal names the step, the filter and the option.
    hostile_plan_huge_scale => "huge-scale" naming "step 0, argument 3: filter 0 (`scale`, byte 0): the scale option w=\"8000\"",
    hostile_plan_huge_pad => "huge-pad" naming "the pad option w=\"16000\"",
    hostile_plan_scale_expression => "huge-scale-expression" naming "the scale option w=\"iw*25\"",
    hostile_plan_huge_fps => "huge-fps" naming "the fps option fps=\"1000000000\"",
    hostile_plan_huge_asetnsamples => "huge-asetnsamples" naming "the asetnsamples option nb_out_samples=\"100000000\"",
    hostile_plan_huge_aresample => "huge-aresample" naming "the aresample option sample_rate=\"2000000000\"",
    hostile_plan_endless_expression => "stall" naming "the setpts option expr: the function \"while\"",
    hostile_plan_many_threads => "many-threads" naming "-threads: a whole number of threads from 1 to 2",
    hostile_plan_huge_frame_count => "huge-frames" naming "not a valid value for -r",
    hostile_plan_expression_with_state => "volume-state" naming "the volume option volume: the function \"st\"",
    hostile_plan_concat_amplification => "concat-amplification" naming "step 1: part 1: temp 0 is already a part of a concat list",
}

#[test]
fn a_plugin_cannot_choose_an_output_that_is_not_an_mp4_or_is_an_input_or_elsewhere() {
    let sandbox = hostile_media();
    std::fs::write(sandbox.key("precious.json"), b"{}").unwrap();
    let clip_before = std::fs::read(sandbox.key("media/clip.mp4")).unwrap();
    for (behaviour, code, reason) in [
        ("output-json", 2, "/output_config/output_path: `output_path` \"precious.json\" does not end in .mp4"),
        (
            "output-is-input",
            2,
            "/output_config/output_path: `output_path` \"media/clip.mp4\" names the same object as the input",
        ),
        (
            "output-elsewhere",
            2,
            "/output_config/output_path: `output_path` \"clips/hostile.mp4\" is outside the output prefix \"output/\"",
        ),
    ] {
        let run = run_hostile(&sandbox, behaviour, &[]);
        let error = run.expect_failure(code);
        assert!(error.contains(reason), "{behaviour}: {error}");
        assert!(!run.ran_stage("fetch"), "{behaviour}: work started\n{}", run.describe());
        sandbox.assert_work_empty(&run);
    }
    assert_eq!(std::fs::read(sandbox.key("precious.json")).unwrap(), b"{}");
    assert_eq!(std::fs::read(sandbox.key("media/clip.mp4")).unwrap(), clip_before);
    assert!(!sandbox.key("clips/hostile.mp4").exists(), "written outside the output prefix");
}

/// A plan that keeps every rule of the policy and still makes the wrong video (the
/// whole 3 s clip where the blueprint asks for 2 s) is caught after its last step: exit
/// 5 with what differs, and nothing stored.
#[test]
fn a_plugin_cannot_deliver_a_wrong_video_silently() {
    let sandbox = hostile_media();
    let run = run_hostile(&sandbox, "whole-clip", &[]);
    let error = run.expect_failure(5);
    assert!(
        error.contains("does not match the blueprint") && error.contains("75 video frames") && error.contains("has 50"),
        "{error}"
    );
    assert!(!sandbox.key("output/hostile.mp4").exists(), "the wrong video was stored");
    sandbox.assert_work_empty(&run);
}

#[test]
fn hostile_plan_spin_stops_on_fuel() {
    // The deadline is far above what 100 M fuel takes, so only fuel can stop the guest
    // in time: without metering, the deadline would, after 60 s and with its own message.
    let sandbox = hostile_media();
    let started = std::time::Instant::now();
    let run = run_hostile(&sandbox, "spin", &["--fuel", "100000000", "--guest-deadline-ms", "60000"]);
    let elapsed = started.elapsed();
    let error = run.expect_failure(3);
    println!("hostile plan spin: {error} ({:.1} s)", elapsed.as_secs_f64());
    assert!(error.contains("ran out of fuel (100000000 units)"), "not stopped by fuel: {error}");
    assert!(elapsed < std::time::Duration::from_secs(30), "took {elapsed:?}: the deadline, not fuel, stopped it");
    assert!(!run.ran_stage("encode"), "an FFmpeg step ran\n{}", run.describe());
    assert!(!sandbox.key("output/hostile.mp4").exists(), "an output was written");
    sandbox.assert_work_empty(&run);
}

/// `normalize_audio`: the host measures the song (contract 0.7.0) and the built-in guest
/// brings it to -16 LUFS with one gain where loudnorm's linear mode would (its peak stays
/// under -1.5 dBTP), or keeps loudnorm's dynamic mode where it would not. A guest of
/// 0.6.0 is measured nothing and still normalises, with loudnorm.
#[test]
fn normalize_audio_takes_one_measured_gain_where_it_can() {
    let sandbox = Sandbox::new();
    media::make_clip(&sandbox.key("media/small.mp4"), &CLIP_SMALL);
    // A quiet tone (about -30 LUFS, peak -30 dBFS): +14 dB keeps its peak far under -1.5.
    media::make_song_expression(&sandbox.key("media/quiet.mp3"), "0.03*sin(2*PI*440*t)", 8.0);
    // The same with a click every second at 0.9: the gain would push the clicks past 0 dBTP.
    media::make_song_expression(&sandbox.key("media/clicks.mp3"), "0.03*sin(2*PI*440*t)+0.9*lt(mod(t,1),0.0005)", 8.0);
    let document = |song: &str, output: &str| {
        let moves = vec![
            movement("m0", "media/small.mp4", 0.0, 2.0, 0.0, "cut", 1.0),
            movement("m1", "media/small.mp4", 2.0, 2.0, 0.5, "cut", 1.0),
            movement("m2", "media/small.mp4", 4.0, 2.0, 1.0, "cut", 1.0),
        ];
        let mut document = blueprint(&format!("loudness-{song}"), &format!("media/{song}.mp3"), moves, output, 25.0);
        document["output_config"]["normalize_audio"] = json!(true);
        document.to_string()
    };
    let run = |song: &str, output: &str, extra: &[&str]| {
        let result = sandbox
            .command(&document(song, output), extra)
            .env("BLUEPRINT_RUNNER_LOG", "info,br_sandbox=debug,blueprint_runner::ffmpeg=debug")
            .output()
            .expect("run blueprint-runner");
        let run = Run::from_output(&result);
        assert_eq!(run.code, Some(0), "{}", run.describe());
        let song_args = run
            .stderr
            .lines()
            .find(|line| line.contains("starting ffmpeg") && line.contains(".mp3"))
            .map(str::to_owned);
        let song_args = song_args.unwrap_or_else(|| panic!("the song's step was not logged\n{}", run.describe()));
        let measured = run.stderr.lines().find(|line| line.contains("song loudness measured")).map(str::to_owned);
        let output = media::loudness(&sandbox.key(output));
        println!("{song}: {output:?}\n  {}\n  {}", measured.as_deref().unwrap_or("(not measured)"), song_args);
        (run, song_args, measured, output)
    };

    let (_, song_args, measured, output) = run("quiet", "output/quiet.mp4", &[]);
    let measured = measured.expect("the song is measured for a 0.7.0 guest");
    assert!(measured.contains("integrated_lufs=-3"), "{measured}");
    assert!(song_args.contains(",volume=") && !song_args.contains("loudnorm"), "one gain: {song_args}");
    assert!((output.integrated + 16.0).abs() <= 0.5, "{output:?}: not -16 LUFS");
    assert!(output.true_peak <= -1.5, "{output:?}");

    let (_, song_args, measured, output) = run("clicks", "output/clicks.mp4", &[]);
    assert!(measured.is_some());
    assert!(
        song_args.contains("loudnorm=I=-16:TP=-1.5:LRA=11") && !song_args.contains(",volume="),
        "dynamic: {song_args}"
    );
    assert!(output.true_peak < 0.0, "{output:?}: loudnorm's limiter keeps the clicks from clipping");

    let (run, song_args, measured, output) = run("quiet", "output/quiet-0-6-0.mp4", &["--guest", GUEST_0_6_0]);
    assert!(run.stderr.contains("contract=\"0.6.0\""), "not linked as contract 0.6.0\n{}", run.describe());
    assert_eq!(measured, None, "a 0.6.0 guest cannot be told a measurement: none is made");
    assert!(song_args.contains("loudnorm=I=-16:TP=-1.5:LRA=11"), "{song_args}");
    assert!((output.integrated + 16.0).abs() <= 1.5, "{output:?}");
    sandbox.assert_work_empty(&run);
}

/// The default guest as built at contract 0.6.0, before 0.7.0 added `host.loudness`: a
/// frozen binary like the 0.2.0 one (see its README).
const GUEST_0_6_0: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/guests/default-guest-0.6.0.wasm");

/// The default guest as built at contract 0.2.0, before 0.3.0 and later changed the
/// contract: a frozen binary (never rebuilt, see its README), so this proves that what
/// a plugin author shipped then still loads and makes its video, not merely that
/// today's tools can still target the old contract.
const GUEST_0_2_0: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/guests/default-guest-0.2.0.wasm");

#[test]
fn a_guest_built_at_contract_0_2_0_before_later_contracts_still_makes_its_video() {
    let sandbox = Sandbox::new();
    // A second small clip, told apart by its chroma (clip C's, known to stay in gamut).
    let other = media::ClipSpec { chroma: CLIP_C.chroma, ..CLIP_SMALL };
    media::make_clip(&sandbox.key("media/small.mp4"), &CLIP_SMALL);
    media::make_clip(&sandbox.key("media/other.mp4"), &other);
    media::make_song_mp3(&sandbox.key("media/song.mp3"), 8.0);
    // 5.6 s at 25 fps: a whole number of frames (140) but not of AAC frames, so the
    // song's last frame must be cut to the video's length.
    let document = blueprint(
        "run-guest-0-2-0",
        "media/song.mp3",
        vec![
            movement("m0", "media/small.mp4", 0.0, 2.0, 0.0, "cut", 1.0),
            movement("m1", "media/other.mp4", 2.0, 2.0, 1.0, "crossfade", 1.0),
            movement("m2", "media/small.mp4", 4.0, 1.6, 3.0, "cut", 1.0),
        ],
        "output/result.mp4",
        25.0,
    );
    let total = document["total_duration"].as_f64().unwrap();
    // The contract is logged only at debug, when the guest is linked.
    let output = sandbox
        .command(&document.to_string(), &["--guest", GUEST_0_2_0])
        .env("BLUEPRINT_RUNNER_LOG", "warn,br_sandbox=debug")
        .output()
        .expect("run blueprint-runner");
    let run = Run::from_output(&output);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let linked = run.stderr.lines().find(|line| line.contains("guest linked"));
    let linked = linked.unwrap_or_else(|| panic!("no 'guest linked' log\n{}", run.describe()));
    assert!(linked.contains("contract=\"0.2.0\""), "not linked as contract 0.2.0: {linked}");
    assert_eq!(run.last()["status"], "completed", "{}", run.describe());
    assert_eq!(run.last()["result"]["moves_count"], 3, "{}", run.describe());
    sandbox.assert_work_empty(&run);

    let result = sandbox.key("output/result.mp4");
    assert!(result.is_file(), "no output/result.mp4\n{}", run.describe());
    let probe = media::probe(&result);
    let (video, audio) = (probe.video(), probe.audio());
    let frames = (total * 25.0).round() as u64;
    assert_eq!(video.packets(), frames, "video frames, expected round({total} s x 25 fps)");
    let aac_frame = 1024.0 / audio.int("sample_rate") as f64;
    let (video_seconds, audio_seconds) = (video.duration(), audio.duration());
    assert!(
        (audio_seconds - video_seconds).abs() <= aac_frame + 1e-6,
        "audio {audio_seconds} s, video {video_seconds} s: more than one AAC frame apart"
    );
    // The crossfade was rendered: half way through it the picture is neither clip.
    let blend = media::frame_at(&result, 2.0).u as i32;
    println!("{linked}\n{frames} frames, video {video_seconds:.6} s, audio {audio_seconds:.6} s, U at 2 s {blend}");
    let (from, to) = (CLIP_SMALL.chroma.0 as i32, other.chroma.0 as i32);
    assert!(blend < from - 10 && blend > to + 10, "t=2.0: U {blend} is not between {to} and {from}: no crossfade");

    // Its refusal of an invalid blueprint still points at the problem, and, as 0.2.0
    // cannot carry a task id, names no task.
    let mut invalid = document.clone();
    invalid["moves"][1]["duration"] = json!(-1);
    let mut command = Command::new(BIN);
    command
        .args(["validate", "--json", "--guest", GUEST_0_2_0, "--cache-dir"])
        .arg(cache_dir())
        .arg("-")
        .env_remove("BLUEPRINT_JSON")
        .env_remove("GUEST_COMPONENT");
    let output = crate::support::output_with_stdin(&mut command, &invalid.to_string());
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let verdict: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"));
    assert_eq!(verdict["task_id"], Value::Null, "{verdict}");
    let errors = verdict["errors"].as_array().unwrap_or_else(|| panic!("no errors: {verdict}"));
    assert!(errors.iter().any(|e| e["pointer"] == "/moves/1/duration"), "no error at /moves/1/duration: {verdict}");
}

/// `job` as the backend's compose set-up runs it: its data folder mounted at
/// `/app/data` and named by `LOCAL_STORAGE_PATH`, keys spelled `data/...`, Python's
/// `LOG_LEVEL`. The video lands where the backend's `serve_video` opens it
/// (`/app/data/<output_path>` for the `output/user_N/...` keys its generator writes);
/// a `data/output/...` key names the same folder.
#[test]
fn the_backends_compose_layout_runs_as_a_job() {
    let root = tempfile::Builder::new().prefix("run-cli-compose-").tempdir().expect("temp folder");
    let app_data = root.path().join("app/data");
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    media::make_clip(&app_data.join("Bachata_steps/basic/basic.mp4"), &CLIP_SMALL);
    media::make_song_mp3(&app_data.join("songs/song.mp3"), 6.0);
    let job = |task_id: &str, output: &str| {
        let moves = vec![
            movement("m0", "data/Bachata_steps/basic/basic.mp4", 0.0, 2.0, 0.0, "cut", 1.0),
            movement("m1", "data/Bachata_steps/basic/basic.mp4", 2.0, 2.0, 1.0, "cut", 1.0),
        ];
        let document = blueprint(task_id, "data/songs/song.mp3", moves, output, 25.0);
        let mut command = Command::new(BIN);
        command
            .arg("job")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BLUEPRINT_JSON", document.to_string())
            .env("TASK_ID", task_id)
            .env("USE_LOCAL_STORAGE", "true")
            .env("LOCAL_STORAGE_PATH", &app_data)
            .env("LOG_LEVEL", "DEBUG")
            .env("WORK_DIR", &work)
            .env("BLUEPRINT_RUNNER_CACHE_DIR", cache_dir())
            .stdin(Stdio::null());
        for variable in ["FFMPEG", "FFPROBE"] {
            if let Some(value) = std::env::var_os(variable) {
                command.env(variable, value);
            }
        }
        let output = command.output().expect("run blueprint-runner job");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let lines: Vec<Value> = stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
        assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        let last = lines.iter().rfind(|line| line.get("status").is_some()).expect("a status line").clone();
        assert_eq!(last["status"], "completed", "{stdout}");
        // LOG_LEVEL=DEBUG reached the filter: the default for `job` is info.
        let debug = lines.iter().any(|line| line["severity"] == "DEBUG" && line["task_id"] == task_id);
        assert!(debug, "no DEBUG line:\n{stdout}");
        last["result"].clone()
    };

    let result = job("compose-1", "data/output/user_1/choreography_x.mp4");
    let video = app_data.join("output/user_1/choreography_x.mp4");
    assert_eq!(media::probe(&video).video().packets(), 100, "{}", video.display());
    assert!(!app_data.join("data").exists(), "the key's data/ became a folder in the data folder");
    assert_eq!(result["output_path"], "data/output/user_1/choreography_x.mp4");
    let url = format!("file://{}", app_data.canonicalize().unwrap().join("output/user_1/choreography_x.mp4").display());
    assert_eq!(result["video_url"], url);

    // The backend's generator writes `output/user_N/...`: serve_video joins it to /app/data.
    let result = job("compose-2", "output/user_1/choreography_y.mp4");
    let served = app_data.join(result["output_path"].as_str().expect("output_path"));
    assert_eq!(served, app_data.join("output/user_1/choreography_y.mp4"));
    assert_eq!(media::probe(&served).video().packets(), 100, "{}", served.display());
}

/// A clip cut short after its header (moov at the front, then 60% of its bytes): the
/// container probe passes, the step reading it fails. The clip is broken, not FFmpeg: a
/// media failure at its move's pointer (exit 4, not retried), saying so.
#[test]
fn a_clip_cut_short_after_its_header_is_a_media_error_at_its_pointer() {
    let sandbox = Sandbox::new();
    small_media(&sandbox);
    let clip = sandbox.key("media/cut.mp4");
    media::make_clip(&clip, &CLIP_SMALL.with_seconds(6.0));
    let bytes = std::fs::read(&clip).unwrap();
    std::fs::write(&clip, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let document = small_blueprint("cut-short-1", "media/cut.mp4", 4.0);
    let run = sandbox.run(&document.to_string(), &[]);
    let error = run.expect_failure(4);
    println!("cut-short clip: {error}");
    assert!(error.starts_with("/moves/1/video_path: media/cut.mp4 is broken"), "{error}");
    assert_eq!(run.last()["stage"], "encode", "{}", run.describe());
    assert!(!sandbox.key("output/result.mp4").exists(), "an output was written");
    sandbox.assert_work_empty(&run);
}
