//! The blueprints the choreography backend really makes, rendered end to end: the real
//! binary, the built-in guest in the sandbox, real FFmpeg, generated media.
//!
//! The backend (`backend/services/blueprint_generator.py`) builds a timeline two ways:
//! - rule-based (whenever its language model fails): the song is cut into sections, each
//!   filled with whole clips and ended by a remainder move `min(clip, section end - t)`
//!   that still enters with a crossfade, however short (a few milliseconds, or a
//!   floating-point crumb);
//! - from a language model's answer, dropping every move whose name matches no clip: a
//!   gap where it was, or a first move that starts late.
//!
//! Both are refused by `--timeline strict` and rendered by the lenient default as the video
//! the backend means. The clips are counter clips (`support/media.rs`): every frame's luma
//! names its frame index, its chroma the clip, so a sampled frame of the result says which
//! source frame it shows.

use crate::support::media;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use media::{StreamFacts, Yuv};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const FPS: f64 = 30.0;
/// The counter clips: 108 frames (3.6 s) each, told apart by their chroma.
const CLIP_FRAMES: u32 = 108;
const CLIPS: [(&str, (u8, u8)); 3] =
    [("media/a.mp4", (96, 160)), ("media/b.mp4", (160, 96)), ("media/c.mp4", (160, 160))];

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("backend-blueprints-guest-cache")
}

/// The clips and the song, made once per test process.
fn media_folder() -> &'static Path {
    static FOLDER: OnceLock<tempfile::TempDir> = OnceLock::new();
    FOLDER
        .get_or_init(|| {
            let folder = tempfile::Builder::new().prefix("backend-media-").tempdir().unwrap();
            let root = folder.path().to_owned();
            let makers: Vec<std::thread::JoinHandle<()>> = CLIPS
                .iter()
                .map(|&(key, chroma)| {
                    let path = root.join(key);
                    std::thread::spawn(move || media::make_counter_clip(&path, chroma, CLIP_FRAMES, (320, 180)))
                })
                .chain(std::iter::once({
                    let path = root.join("media/song.mp3");
                    std::thread::spawn(move || media::make_song_mp3(&path, 20.0))
                }))
                .collect();
            for maker in makers {
                maker.join().expect("media made");
            }
            folder
        })
        .path()
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    output: PathBuf,
    _folder: tempfile::TempDir,
}

impl Run {
    fn describe(&self) -> String {
        format!("exit code {:?}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr)
    }

    fn last(&self) -> Value {
        let line = self.stdout.lines().rfind(|l| l.contains("\"status\""));
        serde_json::from_str(line.unwrap_or_else(|| panic!("no status line\n{}", self.describe()))).unwrap()
    }

    fn warning_pointers(&self) -> Vec<String> {
        let warnings = self.last()["result"]["warnings"].as_array().cloned().unwrap_or_default();
        warnings.iter().map(|w| w["pointer"].as_str().unwrap_or_default().to_owned()).collect()
    }
}

/// `run` over a copy of the media folder, with `env` set.
fn run(blueprint: &Value, extra: &[&str], env: &[(&str, &str)]) -> Run {
    run_in_copy(blueprint, extra, env, false)
}

/// [`run`], after `prepare` of the blueprint's clips in that copy.
fn run_prepared(blueprint: &Value) -> Run {
    run_in_copy(blueprint, &[], &[], true)
}

fn run_in_copy(blueprint: &Value, extra: &[&str], env: &[(&str, &str)], prepared: bool) -> Run {
    let folder = tempfile::Builder::new().prefix("backend-run-").tempdir().unwrap();
    let data = folder.path().join("data");
    let work = folder.path().join("work");
    std::fs::create_dir_all(data.join("media")).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    for entry in std::fs::read_dir(media_folder().join("media")).unwrap() {
        let entry = entry.unwrap();
        let copy = data.join("media").join(entry.file_name());
        // A prepared clip and the song's cache entry are tied to their source's identity,
        // status-change time included, which every other test's hard link changes: copies.
        if prepared {
            std::fs::copy(entry.path(), copy).unwrap();
        } else {
            std::fs::hard_link(entry.path(), copy).unwrap();
        }
    }
    let file = folder.path().join("blueprint.json");
    std::fs::write(&file, blueprint.to_string()).unwrap();
    if prepared {
        let prepare = Command::new(BIN)
            .args(["--log-format", "text", "prepare"])
            .arg(&file)
            .arg("--data-dir")
            .arg(&data)
            .arg("--work-dir")
            .arg(&work)
            .arg("--cache-dir")
            .arg(cache_dir())
            .env_remove("GUEST_COMPONENT")
            .stdin(Stdio::null())
            .output()
            .expect("run blueprint-runner prepare");
        assert!(prepare.status.success(), "prepare: {}", String::from_utf8_lossy(&prepare.stderr));
    }
    let mut command = Command::new(BIN);
    command
        .args(["--log-format", "text", "run"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .arg("--work-dir")
        .arg(&work)
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(extra)
        .stdin(Stdio::null());
    for variable in
        ["BLUEPRINT_JSON", "DATA_DIR", "WORK_DIR", "GUEST_COMPONENT", "TIMELINE", "OUTPUT_PREFIX", "JOB_MEMORY_MIB"]
    {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("run blueprint-runner");
    let left: Vec<_> = std::fs::read_dir(&work).unwrap().collect();
    assert!(left.is_empty(), "the work folder was not removed");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        output: data.join("output/result.mp4"),
        _folder: folder,
    }
}

/// A move as the backend's `_create_blueprint_json` writes it (`i` is its index).
fn backend_move(i: usize, video_path: &str, start: f64, duration: f64) -> Value {
    json!({
        "clip_id": format!("move_{}", i + 1),
        "video_path": video_path,
        "start_time": start,
        "duration": duration,
        "transition_type": if i > 0 { "crossfade" } else { "cut" },
        "original_duration": duration,
        "trim_start": 0.0,
        "trim_end": 0.0,
        "volume_adjustment": 1.0,
    })
}

/// The blueprint around `moves`, as the backend's `_create_blueprint_json` writes it.
fn backend_blueprint(task_id: &str, audio_path: &str, moves: Vec<Value>) -> Value {
    let total =
        moves.iter().map(|m| m["start_time"].as_f64().unwrap() + m["duration"].as_f64().unwrap()).fold(0.0, f64::max);
    json!({
        "task_id": task_id,
        "audio_path": audio_path,
        "audio_tempo": 129.2,
        "moves": moves,
        "total_duration": total,
        "difficulty_level": "intermediate",
        "generation_timestamp": "2026-12-05T08:00:00Z",
        "generation_parameters": {"energy_level": "medium", "style": "romantic", "user_id": 1},
        "output_config": {
            "output_path": "output/result.mp4",
            "output_format": "mp4",
            "video_codec": "libx264",
            "audio_codec": "aac",
            "video_bitrate": "2M",
            "audio_bitrate": "128k",
            "frame_rate": 30,
            "transition_duration": 0.5,
            "fade_duration": 0.3,
            "add_audio_overlay": true,
            "normalize_audio": true
        }
    })
}

/// The backend's `_generate_rule_based_sequence`, line for line (the same float arithmetic):
/// each section filled with the library's clips in turn, ended by a remainder move.
fn rule_based(sections: &[f64], library: &[(&str, f64)]) -> Vec<Value> {
    let (mut moves, mut current, mut index) = (Vec::new(), 0.0_f64, 0);
    for &section in sections {
        let mut section_time = 0.0_f64;
        while section_time < section {
            let (path, length) = library[index % library.len()];
            let duration = f64::min(length, section - section_time);
            moves.push(backend_move(moves.len(), path, current, duration));
            current += duration;
            section_time += duration;
            index += 1;
        }
    }
    moves
}

fn first_frame(start: f64) -> i64 {
    (start * FPS).round() as i64
}

/// The frame at output frame `frame` (the first whose timestamp is at or after it).
fn frame(output: &Path, frame: i64) -> Yuv {
    media::frame_at(output, (frame as f64 - 0.25) / FPS)
}

fn chroma_is(yuv: Yuv, chroma: (u8, u8)) -> bool {
    (yuv.u as i32 - chroma.0 as i32).abs() <= 10 && (yuv.v as i32 - chroma.1 as i32).abs() <= 10
}

fn chroma_of(path: &str) -> (u8, u8) {
    CLIPS.iter().find(|(key, _)| *key == path).map(|(_, chroma)| *chroma).expect("a clip of the library")
}

/// Output frame `at` shows `clip`'s source frame `source`.
fn assert_shows(output: &Path, at: i64, clip: &str, source: i64, what: &str) {
    let yuv = frame(output, at);
    assert!(chroma_is(yuv, chroma_of(clip)), "{what}: frame {at} shows {clip} {:?}: {yuv}", chroma_of(clip));
    let shown = media::counter_frame(yuv.y);
    assert!(
        (shown - source as f64).abs() <= 0.6,
        "{what}: frame {at} shows source frame {shown:.1} of {clip}, not {source}: {yuv}"
    );
}

fn assert_exact_length(run: &Run, total: f64) {
    let probe = media::probe(&run.output);
    let expected = (total * FPS).round() as u64;
    assert_eq!(probe.video().packets(), expected, "the video has round({total} s x {FPS}) frames");
    let (video, audio) = (probe.video().duration(), probe.audio().duration());
    assert!((audio - video).abs() <= 1024.0 / 48_000.0 + 1e-6, "audio {audio} s beside video {video} s");
}

/// Four sections of a song, filled by the rule-based generator over three clips of 1.5, 1.2
/// and 1.8 s: remainders of 0.2 s, 0.02 s (less than a frame), 0.45 s and 1.0 s, each
/// entering with the 0.5 s crossfade. Strict refuses it as before; the lenient default
/// shortens the crossfades into and out of each short remainder to it, drops the 0.02 s
/// one, and every other move shows its own frames at its own time.
#[test]
fn rule_based_sections_with_short_remainders_render_exactly() {
    let library = [(CLIPS[0].0, 1.5), (CLIPS[1].0, 1.2), (CLIPS[2].0, 1.8)];
    let moves = rule_based(&[2.9, 2.72, 1.95, 4.3], &library);
    let durations: Vec<f64> =
        moves.iter().map(|m| (m["duration"].as_f64().unwrap() * 1000.0).round() / 1000.0).collect();
    assert_eq!(durations, [1.5, 1.2, 0.2, 1.5, 1.2, 0.02, 1.5, 0.45, 1.8, 1.5, 1.0], "the generator's shape");
    let blueprint = backend_blueprint("rule-based-1", "media/song.mp3", moves.clone());
    let total = blueprint["total_duration"].as_f64().unwrap();

    let strict = run(&blueprint, &["--timeline", "strict"], &[]);
    assert_eq!(strict.code, Some(2), "{}", strict.describe());
    let error = strict.last()["error"].as_str().unwrap_or_default().to_owned();
    for pointer in
        ["/moves/2/transition_type", "/moves/3/transition_type", "/moves/5/transition_type", "/moves/7/transition_type"]
    {
        assert!(error.contains(pointer), "strict names {pointer}: {error}");
    }
    assert!(!strict.output.exists());

    let lenient = run(&blueprint, &[], &[]);
    assert_eq!(lenient.code, Some(0), "{}", lenient.describe());
    let pointers = lenient.warning_pointers();
    for pointer in [
        "/moves/2/transition_type",
        "/moves/3/transition_type",
        "/moves/5",
        "/moves/7/transition_type",
        "/moves/8/transition_type",
    ] {
        assert!(pointers.iter().any(|p| p == pointer), "a warning at {pointer}: {pointers:?}");
    }
    let warnings = lenient.last()["result"]["warnings"].clone();
    let about = |pointer: &str| {
        warnings.as_array().unwrap().iter().find(|w| w["pointer"] == pointer).unwrap()["message"].clone()
    };
    assert_eq!(about("/moves/2/transition_type"), "crossfade of 0.500 s shortened to 0.200 s (the move lasts 0.200 s)");
    assert!(
        about("/moves/5").as_str().unwrap().contains("less than one frame at 30 fps: it is dropped"),
        "{}",
        about("/moves/5")
    );
    assert_exact_length(&lenient, total);
    assert_moves_show_their_own_frames(&lenient, &moves, total);
}

/// Every move of a second or more shows its own clip from its first frame, on its own
/// frames: sampled where the blend into it ends (its first frame copied from a prepared
/// clip, which has a keyframe there), a frame after, half way and a frame before the blend out.
fn assert_moves_show_their_own_frames(run: &Run, moves: &[Value], total: f64) {
    let starts: Vec<f64> = moves.iter().map(|m| m["start_time"].as_f64().unwrap()).collect();
    for (index, m) in moves.iter().enumerate() {
        let clip = m["video_path"].as_str().unwrap();
        let first = first_frame(starts[index]);
        let end = starts.get(index + 1).map_or(first_frame(total), |&next| first_frame(next));
        if m["duration"].as_f64().unwrap() < 1.0 {
            continue;
        }
        let blend = if index == 0 { 0 } else { 8 };
        for at in [first + blend, first + blend + 1, (first + end) / 2, end - 9] {
            assert_shows(&run.output, at, clip, at - first, &format!("move {index}"));
        }
    }
}

/// The same rule-based timeline over prepared clips (keyframes at 0, 8 and every 15 after):
/// each move of a second or more is copied from the frame the crossfade into it ends on,
/// the bridges and the short remainders are rendered, and the video shows the same frames
/// at the same times, exactly as long.
#[test]
fn rule_based_sections_over_prepared_clips_show_the_same_frames() {
    let library = [(CLIPS[0].0, 1.5), (CLIPS[1].0, 1.2), (CLIPS[2].0, 1.8)];
    let moves = rule_based(&[2.9, 2.72, 1.95, 4.3], &library);
    let blueprint = backend_blueprint("rule-based-2", "media/song.mp3", moves.clone());
    let total = blueprint["total_duration"].as_f64().unwrap();
    let prepared = run_prepared(&blueprint);
    assert_eq!(prepared.code, Some(0), "{}", prepared.describe());
    let result = prepared.last()["result"].clone();
    assert_eq!(result["timings"]["prepared_clips"], 3, "{result}");
    let labels: Vec<&str> = result["steps"].as_array().unwrap().iter().filter_map(|s| s["label"].as_str()).collect();
    // A move copied from its frame 8 needs no bridge into it: only the crossfades are rendered.
    let copied_from_8 = labels.iter().filter(|label| label.contains(" copy 0-")).count();
    assert!(copied_from_8 >= 5, "moves after a crossfade copied from its end: {labels:?}");
    assert_exact_length(&prepared, total);
    assert_moves_show_their_own_frames(&prepared, &moves, total);
}

/// A language-model sequence whose first move and three others matched no clip: the
/// first move left starts 1.5 s late, one gap of 1.5 s and one of 3 s (two moves dropped)
/// follow. The first move starts at 0 holding its clip's first frame (its trim_start is 0,
/// so there are no earlier frames), each move before a gap runs on with its clip's next
/// frames, and holds its last frame where its clip ends; every move keeps its beat.
#[test]
fn model_sequences_with_dropped_moves_fill_their_gaps() {
    let (a, b, c) = (CLIPS[0].0, CLIPS[1].0, CLIPS[2].0);
    let moves = vec![
        backend_move(0, b, 1.5, 1.5),
        backend_move(1, c, 3.0, 1.5),
        backend_move(2, a, 6.0, 1.5),
        backend_move(3, b, 10.5, 1.5),
    ];
    let blueprint = backend_blueprint("model-gaps-1", "media/song.mp3", moves);

    let strict = run(&blueprint, &[], &[("TIMELINE", "strict")]);
    assert_eq!(strict.code, Some(2), "{}", strict.describe());
    let error = strict.last()["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("/moves/0/start_time") && error.contains("/moves/2/start_time") && error.contains("gap of"),
        "{error}"
    );

    let lenient = run(&blueprint, &[], &[]);
    assert_eq!(lenient.code, Some(0), "{}", lenient.describe());
    let pointers = lenient.warning_pointers();
    for pointer in ["/moves/0/start_time", "/moves/2/start_time", "/moves/3/start_time", "/moves/2"] {
        assert!(pointers.iter().any(|p| p == pointer), "a warning at {pointer}: {pointers:?}");
    }
    assert_exact_length(&lenient, 12.0);
    let output = &lenient.output;
    // B starts at 0 on its first frame, held until its beat at 1.5 s, then runs.
    assert_shows(output, 15, b, 0, "the late first move's held first frame");
    assert_shows(output, 44, b, 0, "the late first move's held first frame");
    assert_shows(output, 60, b, 15, "the first move on its beat");
    // C from 3.0 runs on through the 1.5 s gap to A's beat at 6.0.
    assert_shows(output, 120, c, 30, "C in its own slot");
    assert_shows(output, 160, c, 70, "C running on through the gap");
    // A from 6.0 runs on through the 3 s gap to B at 10.5; its clip ends at 9.6 s.
    assert_shows(output, 255, a, 75, "A running on through the gap");
    assert_shows(output, 300, a, i64::from(CLIP_FRAMES) - 1, "A's last frame held once its clip ends");
    // B on its beat at 10.5.
    assert_shows(output, 345, b, 30, "the last move on its beat");
}
