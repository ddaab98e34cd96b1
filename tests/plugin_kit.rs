//! The plugin kit end to end: a plugin scaffolded by `plugin new`, built outside the
//! workspace with cargo, makes the built-in guest's video; the example plugin
//! (`examples/plugins/beat-cuts`) makes its own, shaped by the operator's settings
//! (contract 0.6.0 and later). Real binary, real FFmpeg, generated media.

use crate::support::media;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use media::{StreamFacts, CLIP_A, CLIP_C};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const BEAT_CUTS: &str = test_programs::BEAT_CUTS_PLUGIN;
const FPS: f64 = 30.0;

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-kit-guest-cache")
}

/// Three 720p30 clips told apart by their chroma, and a song, in `data/`.
fn library(root: &Path) -> PathBuf {
    let data = root.join("data");
    media::make_clip(&data.join("media/a.mp4"), &CLIP_A.with_seconds(7.0));
    media::make_clip(&data.join("media/b.mp4"), &media::ClipSpec { chroma: CLIP_C.chroma, ..CLIP_A.with_seconds(7.0) });
    media::make_clip(&data.join("media/c.mp4"), &media::ClipSpec { chroma: (150, 110), ..CLIP_A.with_seconds(7.0) });
    media::make_song_mp3(&data.join("media/song.mp3"), 10.0);
    data
}

/// 6 s in three moves; the boundaries (2.1 s, 4.3 s) are off a 0.5 s beat grid, and
/// the second move crossfades in.
fn blueprint(output: &str) -> Value {
    let slot = |id: &str, clip: &str, start: f64, duration: f64, transition: &str| {
        json!({"clip_id": id, "video_path": clip, "start_time": start, "duration": duration, "trim_start": 0.5,
               "trim_end": 0.0, "transition_type": transition, "volume_adjustment": 1.0})
    };
    json!({
        "task_id": "plugin-kit",
        "audio_path": "media/song.mp3",
        "moves": [
            slot("m0", "media/a.mp4", 0.0, 2.1, "cut"),
            slot("m1", "media/b.mp4", 2.1, 2.2, "crossfade"),
            slot("m2", "media/c.mp4", 4.3, 1.7, "cut"),
        ],
        "total_duration": 6.0,
        "output_config": {"output_path": output, "frame_rate": FPS, "transition_duration": 0.4, "fade_duration": 0.3,
                          "video_bitrate": "2M", "audio_bitrate": "128k", "normalize_audio": false},
    })
}

fn blueprint_runner(root: &Path, command: &str, blueprint: &Value, extra: &[&str]) -> Output {
    let file = root.join(format!(
        "blueprint-{}.json",
        blueprint["output_config"]["output_path"].as_str().unwrap_or("x").replace('/', "-")
    ));
    std::fs::write(&file, blueprint.to_string()).unwrap();
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut run = Command::new(BIN);
    run.args(["--log-format", "text", command])
        .arg(&file)
        .arg("--data-dir")
        .arg(root.join("data"))
        .arg("--work-dir")
        .arg(&work)
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(extra)
        .stdin(Stdio::null());
    for variable in
        ["BLUEPRINT_JSON", "DATA_DIR", "WORK_DIR", "GUEST_COMPONENT", "GUEST_SETTINGS", "BLUEPRINT_RUNNER_LOG"]
    {
        run.env_remove(variable);
    }
    run.output().expect("run blueprint-runner")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The MD5 of the decoded frame at `t` seconds.
fn frame_md5(video: &Path, t: f64) -> String {
    let output = Command::new(media::ffmpeg_binary())
        .args(["-v", "error", "-ss", &format!("{t:.4}"), "-i"])
        .arg(video)
        .args(["-frames:v", "1", "-f", "md5", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(output.status.success(), "ffmpeg md5 at {t}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // Shared by every run of this test, so only the first builds the SDK's dependencies.
    command.env("CARGO_TARGET_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-scaffold-target"));
    command.env_remove("RUSTFLAGS").env_remove("CARGO_BUILD_TARGET");
    command
}

/// A plugin made by `plugin new`, unchanged, built outside the workspace: its native tests
/// pass, and it plans and renders exactly what the built-in guest does.
#[test]
fn a_scaffolded_plugin_builds_outside_the_workspace_and_makes_the_built_in_video() {
    let root = tempfile::Builder::new().prefix("plugin-kit-").tempdir().unwrap();
    let data = library(root.path());
    let started = Instant::now();
    let plugin = root.path().join("my-plugin");
    let made = Command::new(BIN).args(["plugin", "new"]).arg(&plugin).output().unwrap();
    assert!(made.status.success(), "{}", describe(&made));
    assert!(
        !plugin.starts_with(env!("CARGO_MANIFEST_DIR").trim_end_matches("/host")),
        "the plugin must be outside the workspace"
    );

    let built =
        cargo().args(["build", "--release", "--target", "wasm32-wasip2"]).current_dir(&plugin).output().unwrap();
    assert!(built.status.success(), "{}", describe(&built));
    let build_seconds = started.elapsed().as_secs_f64();
    let wasm =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-scaffold-target/wasm32-wasip2/release/my_plugin.wasm");
    let wasm_text = wasm.to_str().unwrap();

    let rendered = blueprint_runner(root.path(), "run", &blueprint("output/plugin.mp4"), &["--guest", wasm_text]);
    assert!(rendered.status.success(), "{}", describe(&rendered));
    let first_video = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&wasm).unwrap().len();
    println!(
        "plugin new to first video: {first_video:.1} s (scaffold and build {build_seconds:.1} s); {size} bytes of wasm"
    );

    let tested = cargo().arg("test").current_dir(&plugin).output().unwrap();
    assert!(tested.status.success(), "the scaffold's own tests: {}", describe(&tested));
    let summary = String::from_utf8_lossy(&tested.stdout);
    assert!(summary.contains("test result: ok. 3 passed"), "{summary}");

    // The same plan, step for step.
    let plan_of = |extra: &[&str]| {
        let planned = blueprint_runner(root.path(), "plan", &blueprint("output/plan.mp4"), extra);
        assert!(planned.status.success(), "{}", describe(&planned));
        serde_json::from_slice::<Value>(&planned.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&planned)))
    };
    assert_eq!(plan_of(&["--guest", wasm_text]), plan_of(&[]));

    // The same video: as many frames, and the same picture in each move and crossfade.
    let built_in = blueprint_runner(root.path(), "run", &blueprint("output/built-in.mp4"), &[]);
    assert!(built_in.status.success(), "{}", describe(&built_in));
    let (ours, theirs) = (data.join("output/plugin.mp4"), data.join("output/built-in.mp4"));
    let frames = media::probe(&ours).video().packets();
    assert_eq!(frames, (6.0 * FPS).round() as u64);
    assert_eq!(media::probe(&theirs).video().packets(), frames);
    for t in [1.05, 2.1, 3.2, 5.15] {
        assert_eq!(frame_md5(&ours, t), frame_md5(&theirs, t), "the frame at {t} s differs");
    }
}

/// The example plugin cuts on the beat the operator's settings give: at 120 bpm the
/// boundaries 2.1 s and 4.3 s move to 2.0 s and 4.5 s, at 60 bpm to 2.0 s and 4.0 s, each a
/// hard cut. Its own rule refuses a blueprint with more moves than `max_moves`, and a
/// setting out of its range is named.
#[test]
fn the_beat_cuts_example_cuts_on_the_beat_its_settings_give() {
    let root = tempfile::Builder::new().prefix("plugin-kit-").tempdir().unwrap();
    let data = library(root.path());
    let clips = [('a', CLIP_A.chroma), ('b', CLIP_C.chroma), ('c', (150, 110))];
    let clip_at = |video: &Path, frame: u64| {
        let shown = media::frame_at(video, frame as f64 / FPS);
        let near = |(u, v): (u8, u8)| (shown.u as i32 - u as i32).abs() <= 3 && (shown.v as i32 - v as i32).abs() <= 3;
        let found = clips.iter().find(|(_, chroma)| near(*chroma)).map(|(name, _)| *name);
        found.unwrap_or_else(|| panic!("frame {frame} of {}: {shown:?} is no clip's (a blend?)", video.display()))
    };
    for (bpm, cuts) in [(120, [60, 135]), (60, [60, 120])] {
        let output = format!("output/beat-{bpm}.mp4");
        let settings = format!(r#"{{"bpm": {bpm}}}"#);
        let run = blueprint_runner(
            root.path(),
            "run",
            &blueprint(&output),
            &["--guest", BEAT_CUTS, "--guest-settings", &settings],
        );
        assert!(run.status.success(), "{}", describe(&run));
        let video = data.join(&output);
        assert_eq!(media::probe(&video).video().packets(), (6.0 * FPS).round() as u64);
        // Each cut is exact: the frame before it shows the previous clip, no blend between.
        let shown: Vec<char> =
            [cuts[0] - 1, cuts[0], cuts[1] - 1, cuts[1]].iter().map(|&f| clip_at(&video, f)).collect();
        assert_eq!(shown, ['a', 'b', 'b', 'c'], "{bpm} bpm: frames around the cuts at {cuts:?}");
    }

    let refused = blueprint_runner(
        root.path(),
        "run",
        &blueprint("output/refused.mp4"),
        &["--guest", BEAT_CUTS, "--guest-settings", r#"{"max_moves": 2}"#],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(describe(&refused).contains("/moves: 3 moves; this job allows at most 2"), "{}", describe(&refused));
    let out_of_range = blueprint_runner(
        root.path(),
        "run",
        &blueprint("output/refused.mp4"),
        &["--guest", BEAT_CUTS, "--guest-settings", r#"{"bpm": 1000}"#],
    );
    // The settings error as the plugin's refusal, as PLUGINS.md shows it: before any clip
    // is fetched, naming the setting and its range (it was a malformed answer, exit 3:
    // "\"GUEST_SETTINGS/bpm\" is not a JSON pointer").
    assert_eq!(out_of_range.status.code(), Some(2), "{}", describe(&out_of_range));
    assert!(
        describe(&out_of_range).contains("GUEST_SETTINGS/bpm: is 1000; it must be from 40 to 240"),
        "{}",
        describe(&out_of_range)
    );
    assert!(!describe(&out_of_range).contains("not a JSON pointer"), "{}", describe(&out_of_range));
    assert!(!data.join("output/refused.mp4").exists());

    let checked = Command::new(BIN)
        .args(["plugin", "check", BEAT_CUTS, "--guest-settings", r#"{"bpm": 96}"#, "--cache-dir"])
        .arg(cache_dir())
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", describe(&checked));
}

const PRACTICE_MODE: &str = test_programs::PRACTICE_MODE_PLUGIN;

/// Every string under the key `key`, anywhere in `value`.
fn strings_under<'a>(value: &'a Value, key: &str, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                match field {
                    Value::String(text) if name == key => found.push(text),
                    _ => strings_under(field, key, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| strings_under(item, key, found)),
        _ => {}
    }
}

/// The example practice-mode plugin, written on the planner's render hooks: each move as
/// choreographed, then again slower, at the speed the blueprint's `difficulty_level` gives
/// (0.75 intermediate, 0.5 beginner), which its `validate` keeps for its `plan` (contract
/// 0.9.0: the validated timeline has no place for that field). Over prepared clips, the
/// moves shown as shot are still copied (two copy steps) and the song still takes one
/// measured gain (no `loudnorm`); the video has the plugin's timeline, each repeat shows
/// its clip's frames at its speed from the move's `trim_start`, and the result counts the
/// blueprint's two moves.
#[test]
fn the_practice_mode_example_repeats_each_move_slower_over_prepared_clips() {
    let root = tempfile::Builder::new().prefix("plugin-kit-").tempdir().unwrap();
    let data = root.path().join("data");
    let (chroma_a, chroma_b) = (CLIP_A.chroma, CLIP_C.chroma);
    media::make_counter_clip(&data.join("media/a.mp4"), chroma_a, 100, (1280, 720));
    media::make_counter_clip(&data.join("media/b.mp4"), chroma_b, 100, (1280, 720));
    media::make_song_mp3(&data.join("media/song.mp3"), 10.0);
    let slot = |id: &str, clip: &str, start: f64| {
        json!({"clip_id": id, "video_path": clip, "start_time": start, "duration": 1.0, "trim_start": 0.5,
               "trim_end": 0.0, "transition_type": "cut", "volume_adjustment": 1.0})
    };
    let blueprint = |difficulty: &str| {
        json!({
            "task_id": "practice",
            "audio_path": "media/song.mp3",
            "difficulty_level": difficulty,
            "moves": [slot("m0", "media/a.mp4", 0.0), slot("m1", "media/b.mp4", 1.0)],
            "total_duration": 2.0,
            "output_config": {"output_path": format!("output/practice-{difficulty}.mp4"), "frame_rate": FPS, "width": 1280,
                              "height": 720, "video_bitrate": "2M", "audio_bitrate": "128k", "normalize_audio": true},
        })
    };
    let prepared = blueprint_runner(root.path(), "prepare", &blueprint("intermediate"), &[]);
    assert!(prepared.status.success(), "{}", describe(&prepared));
    let plugin = ["--guest", PRACTICE_MODE];

    let planned = blueprint_runner(root.path(), "plan", &blueprint("intermediate"), &plugin);
    assert!(planned.status.success(), "{}", describe(&planned));
    let plan: Value = serde_json::from_slice(&planned.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&planned)));
    let mut labels = Vec::new();
    strings_under(&plan, "label", &mut labels);
    let copies: Vec<&&str> = labels.iter().filter(|label| label.contains(" copy ")).collect();
    assert_eq!(copies.len(), 2, "the two moves shown as shot are copied, the repeats rendered: {labels:?}");
    let song_graph = plan.to_string();
    assert!(song_graph.contains(",volume="), "the song takes one gain: {song_graph}");
    assert!(!song_graph.contains("loudnorm"), "and no loudnorm: {song_graph}");

    for (difficulty, speed) in [("intermediate", 0.75), ("beginner", 0.5)] {
        let started = Instant::now();
        let run = blueprint_runner(root.path(), "run", &blueprint(difficulty), &plugin);
        assert!(run.status.success(), "{}", describe(&run));
        println!(
            "practice mode ({difficulty}) over prepared clips: rendered in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // The result counts the blueprint's moves, not the plugin's four slots.
        let stdout = String::from_utf8_lossy(&run.stdout);
        let moves_count = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find_map(|line| line.get("moves_count").cloned().or_else(|| line.pointer("/result/moves_count").cloned()))
            .unwrap_or_else(|| panic!("no moves_count in the output\n{}", describe(&run)));
        assert_eq!(moves_count, 2, "{}", describe(&run));
        let video = data.join(format!("output/practice-{difficulty}.mp4"));
        let probe = media::probe(&video);
        // Each move 30 frames, then its repeat 30 / speed frames.
        let repeat = (30.0 / speed) as u64;
        assert_eq!(probe.video().packets(), 2 * (30 + repeat), "{difficulty}");
        assert!(
            (probe.format_duration() - (2 * (30 + repeat)) as f64 / FPS).abs() < 0.03,
            "{}",
            probe.format_duration()
        );
        // (first output frame, clip chroma, speed, frames) of each slot; every slot starts at source frame 15.
        let slots = [
            (0, chroma_a, 1.0, 30),
            (30, chroma_a, speed, repeat),
            (30 + repeat, chroma_b, 1.0, 30),
            (60 + repeat, chroma_b, speed, repeat),
        ];
        for (first, chroma, speed, frames) in slots {
            for offset in [0, 1, frames / 2, frames - 1] {
                let frame = first + offset;
                let shown = media::frame_at(&video, frame as f64 / FPS - 0.001);
                let near =
                    |(u, v): (u8, u8)| (shown.u as i32 - u as i32).abs() <= 3 && (shown.v as i32 - v as i32).abs() <= 3;
                assert!(near(chroma), "{difficulty}, frame {frame}: {shown:?} is not the slot's clip");
                let source = media::counter_frame(shown.y);
                let expected = 15.0 + offset as f64 * speed;
                assert!(
                    (source - expected).abs() <= 1.0,
                    "{difficulty}, frame {frame}: source frame {source}, expected {expected} (speed {speed})"
                );
            }
        }
    }
}
