//! The plugin author's commands without a job: `plugin check` (a plugin's own refusals are
//! its right, real problems still fail it, the author's blueprints and expected frame
//! counts), `plugin call validate|plan` (one call's whole answer as JSON), and the plan
//! request a real job saves (`run --save-plan-request`) replayed by `plugin call plan`.
//! Real binary, real guests (the built-in one, the beat-cuts example, the hostile test
//! guest); the replay renders generated media with the installed FFmpeg.

use crate::support::media;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use media::{CLIP_A, CLIP_C};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const BUILT_IN: &str = env!("DEFAULT_GUEST_WASM");
const BEAT_CUTS: &str = test_programs::BEAT_CUTS_PLUGIN;
const HOSTILE: &str = test_programs::HOSTILE_GUEST;
const BACKEND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/backend-blueprint.json");

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cli-guest-cache")
}

/// The binary with `args`, the guest cache shared by these tests, and none of the
/// environment that would choose another guest or blueprint.
fn blueprint_runner(args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command.args(["--log-format", "text"]).args(args).arg("--cache-dir").arg(cache_dir()).stdin(Stdio::null());
    for variable in [
        "BLUEPRINT_JSON",
        "BLUEPRINT_URI",
        "DATA_DIR",
        "WORK_DIR",
        "GUEST_COMPONENT",
        "GUEST_SETTINGS",
        "GUEST_FUEL",
        "TIMELINE",
    ] {
        command.env_remove(variable);
    }
    command.output().expect("run blueprint-runner")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(output)))
}

/// The case of a `plugin check --json` report whose name starts with `prefix`.
fn case<'a>(report: &'a Value, prefix: &str) -> &'a Value {
    let cases = report["cases"].as_array().expect("the report lists cases");
    cases
        .iter()
        .find(|case| case["case"].as_str().is_some_and(|name| name.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no case {prefix:?} in {report:#}"))
}

/// A plugin that refuses blueprints by its own rule (beat-cuts allows at most 10 moves
/// here) passes the check: each refusal is listed with its pointer, none is a problem.
#[test]
fn plugin_check_reports_a_plugins_own_refusals_and_exits_0() {
    let settings = r#"{"max_moves": 10}"#;
    let checked = blueprint_runner(&["plugin", "check", BEAT_CUTS, "--guest-settings", settings, "--json"]);
    assert_eq!(checked.status.code(), Some(0), "{}", describe(&checked));
    let report = json_of(&checked);
    assert_eq!(report["problems"], json!([]), "{report:#}");
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4, "{report:#}");
    for case in cases {
        assert_eq!(case["refused_by"], "validate", "{case:#}");
        assert_eq!(case["refused"][0]["pointer"], "/moves", "{case:#}");
        assert!(case.get("plan").is_none(), "a refused blueprint is not planned: {case:#}");
    }
    assert_eq!(
        case(&report, "backend blueprint")["refused"][0]["message"],
        "22 moves; this job allows at most 10 (max_moves)"
    );
    assert_eq!(
        case(&report, "220 moves")["refused"][0]["message"],
        "220 moves; this job allows at most 10 (max_moves)"
    );

    let text = blueprint_runner(&["plugin", "check", BEAT_CUTS, "--guest-settings", settings]);
    assert_eq!(text.status.code(), Some(0), "{}", describe(&text));
    let printed = String::from_utf8_lossy(&text.stdout);
    assert!(printed.contains("refused: /moves: 22 moves; this job allows at most 10 (max_moves)"), "{printed}");
    assert!(printed.contains("no problems") && !printed.contains("PROBLEM"), "{printed}");

    // Without the rule, every case is planned and passes.
    let planned = json_of(&blueprint_runner(&["plugin", "check", BEAT_CUTS, "--json"]));
    assert_eq!(planned["problems"], json!([]), "{planned:#}");
    assert!(planned["cases"].as_array().unwrap().iter().all(|case| case["policy"] == "passes"), "{planned:#}");
}

/// The built-in guest passes every built-in case, the long one (220 moves: past the
/// concat filter's 64 parts) included, well within its limits.
#[test]
fn the_built_in_guest_passes_every_built_in_case_including_220_moves() {
    let checked = blueprint_runner(&["plugin", "check", BUILT_IN, "--json"]);
    assert_eq!(checked.status.code(), Some(0), "{}", describe(&checked));
    let report = json_of(&checked);
    assert_eq!(report["problems"], json!([]), "{report:#}");
    let long = case(&report, "220 moves");
    assert_eq!(long["policy"], "passes", "{long:#}");
    assert_eq!(long["output"], "matches the timeline", "{long:#}");
    assert_eq!(long["frames"], 220 * 8 * 30, "{long:#}");
    assert!(long["steps"].as_u64().unwrap() > 220, "{long:#}");
    for call in ["validate", "plan"] {
        let share = long[call]["fuel_share"].as_f64().unwrap();
        assert!(share > 0.0 && share < 0.5, "{call}: {long:#}");
    }
}

/// Real problems still fail the check (exit 3), each named: an answer the sandbox refuses
/// (the hostile guest's refusal quotes the whole blueprint), running out of fuel, a plan
/// the policy refuses, and a call that comes near its fuel limit.
#[test]
fn a_plugin_with_a_real_problem_still_fails_the_check() {
    let built_in_cases = blueprint_runner(&["plugin", "check", HOSTILE, "--json"]);
    assert_eq!(built_in_cases.status.code(), Some(3), "{}", describe(&built_in_cases));
    let report = json_of(&built_in_cases);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 4, "{report:#}");
    assert!(problems.iter().all(|p| p.as_str().unwrap().contains("guest output too large")), "{report:#}");

    let folder = tempfile::tempdir().unwrap();
    let misbehaviour = |name: &str| {
        let path = folder.path().join(format!("{name}.txt"));
        std::fs::write(&path, name).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (spin, escape) = (misbehaviour("spin"), misbehaviour("plan:path-literal"));
    let checked = blueprint_runner(&[
        "plugin",
        "check",
        HOSTILE,
        "--skip-built-in",
        "--blueprint",
        &spin,
        "--blueprint",
        &escape,
    ]);
    assert_eq!(checked.status.code(), Some(3), "{}", describe(&checked));
    let printed = String::from_utf8_lossy(&checked.stdout);
    assert!(
        printed.contains(&format!("PROBLEM {spin}: validate: sandbox limit: the guest ran out of fuel")),
        "{printed}"
    );
    assert!(printed.contains(&format!("PROBLEM {escape}: plan refused by policy: step 0, argument 4")), "{printed}");
    assert!(!printed.contains("backend blueprint"), "--skip-built-in: {printed}");

    // Fuel for the long case's validation at 90% of the limit: a problem naming the share.
    let measured = json_of(&blueprint_runner(&["plugin", "check", BUILT_IN, "--json"]));
    let fuel = case(&measured, "220 moves")["validate"]["fuel"].as_u64().unwrap();
    let limit = (fuel as f64 / 0.9).round() as u64;
    let tight = blueprint_runner(&["plugin", "check", BUILT_IN, "--fuel", &limit.to_string(), "--json"]);
    assert_eq!(tight.status.code(), Some(3), "{}", describe(&tight));
    let report = json_of(&tight);
    let expected = format!("220 moves (29 min, the backend's repeated): validate used 90.0% of its fuel ({fuel} of {limit} units): near the limit");
    assert!(report["problems"].as_array().unwrap().iter().any(|p| *p == json!(expected)), "{report:#}");
}

/// `--blueprint FILE:FRAMES`: the validated timeline must make FRAMES frames; a file
/// without a count is only checked as the built-in cases are.
#[test]
fn a_given_blueprint_is_checked_against_its_expected_frame_count() {
    let right = format!("{BACKEND}:5280");
    let checked = blueprint_runner(&["plugin", "check", BUILT_IN, "--blueprint", &right, "--json"]);
    assert_eq!(checked.status.code(), Some(0), "{}", describe(&checked));
    let report = json_of(&checked);
    assert_eq!(report["cases"].as_array().unwrap().len(), 5, "the built-in cases and the file: {report:#}");
    let given = case(&report, BACKEND);
    assert_eq!((given["expected_frames"].as_u64(), given["frames"].as_u64()), (Some(5280), Some(5280)), "{given:#}");

    let wrong = format!("{BACKEND}:5281");
    let checked = blueprint_runner(&[
        "plugin",
        "check",
        BUILT_IN,
        "--skip-built-in",
        "--blueprint",
        BACKEND,
        "--blueprint",
        &wrong,
    ]);
    assert_eq!(checked.status.code(), Some(3), "{}", describe(&checked));
    let printed = String::from_utf8_lossy(&checked.stdout);
    let problems: Vec<&str> = printed.lines().filter(|line| line.starts_with("PROBLEM")).collect();
    assert_eq!(
        problems,
        [format!("PROBLEM {BACKEND}: expected 5281 frames; the validated timeline makes 5280 (176 s at 30 fps)")],
        "{printed}"
    );

    // A refusal cannot make the frames the author expects.
    let refused = blueprint_runner(&[
        "plugin",
        "check",
        BEAT_CUTS,
        "--skip-built-in",
        "--blueprint",
        &right,
        "--guest-settings",
        r#"{"max_moves": 10}"#,
    ]);
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    assert!(
        describe(&refused).contains("expected a video of 5280 frames; the plugin refuses the blueprint"),
        "{}",
        describe(&refused)
    );
}

/// `plugin call validate`: the validated timeline with its fit and warnings, or the
/// plugin's refusal (with its settings), and the call's fuel and memory, as JSON.
#[test]
fn plugin_call_validate_prints_the_timeline_or_the_refusal() {
    let called = blueprint_runner(&["plugin", "call", "validate", BACKEND]);
    assert_eq!(called.status.code(), Some(0), "{}", describe(&called));
    let answer = json_of(&called);
    assert_eq!(answer["plugin"], "built-in");
    assert_eq!(answer["call"], "validate");
    let validated = &answer["validated"];
    assert_eq!(validated["moves"].as_array().unwrap().len(), 22, "{answer:#}");
    assert_eq!(validated["clip_keys"].as_array().unwrap().len(), 20, "{answer:#}");
    assert_eq!(validated["moves"][1]["transition"], "crossfade", "{answer:#}");
    assert_eq!(validated["moves"][1]["origin"], 1, "{answer:#}");
    assert_eq!(validated["moves"][1]["transition_seconds"], 0.5, "{answer:#}");
    assert_eq!(validated["warnings"], json!([]), "{answer:#}");
    assert_eq!(answer["frames"], 5280, "{answer:#}");
    assert!(
        answer["usage"]["fuel"].as_u64().unwrap() > 0 && answer["usage"]["memory_bytes"].as_u64().unwrap() > 0,
        "{answer:#}"
    );
    assert!(answer["usage"]["fuel_share"].as_f64().unwrap() < 0.1, "{answer:#}");

    // A lenient fit: a transition longer than its move is shortened, with a warning.
    let mut irregular: Value = serde_json::from_str(&std::fs::read_to_string(BACKEND).unwrap()).unwrap();
    irregular["moves"][1]["transition_type"] = json!("fade_black");
    irregular["moves"][1]["duration"] = json!(0.4);
    irregular["moves"][1]["start_time"] = json!(8.0);
    irregular["moves"][2]["start_time"] = json!(8.4);
    irregular["moves"][2]["duration"] = json!(15.6);
    irregular["output_config"]["fade_duration"] = json!(1.0);
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("irregular.json");
    std::fs::write(&file, irregular.to_string()).unwrap();
    let fitted = json_of(&blueprint_runner(&["plugin", "call", "validate", file.to_str().unwrap()]));
    let warnings = fitted["validated"]["warnings"].as_array().unwrap_or_else(|| panic!("{fitted:#}"));
    assert!(warnings.iter().any(|w| w["pointer"].as_str().unwrap().starts_with("/moves/1")), "{fitted:#}");
    assert!(fitted["validated"]["moves"][1]["transition_seconds"].as_f64().unwrap() < 1.0, "{fitted:#}");

    // The plugin's settings apply to the call: beat-cuts then refuses by its rule.
    let refused = blueprint_runner(&[
        "plugin",
        "call",
        "validate",
        BACKEND,
        BEAT_CUTS,
        "--guest-settings",
        r#"{"max_moves": 10}"#,
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    let answer = json_of(&refused);
    assert_eq!(answer["plugin"], BEAT_CUTS);
    assert_eq!(answer["refused"]["task_id"], "5b0d9f2e-6c1a-4f0e-9a57-3f7e2d1c8b44", "{answer:#}");
    assert_eq!(
        answer["refused"]["errors"],
        json!([{"pointer": "/moves", "code": "too-large", "message": "22 moves; this job allows at most 10 (max_moves)"}])
    );
    assert!(answer["usage"]["fuel"].as_u64().unwrap() > 0, "{answer:#}");
    // --guest names the plugin too.
    let by_flag = blueprint_runner(&[
        "plugin",
        "call",
        "validate",
        BACKEND,
        "--guest",
        BEAT_CUTS,
        "--guest-settings",
        r#"{"max_moves": 10}"#,
    ]);
    assert_eq!(by_flag.status.code(), Some(2), "{}", describe(&by_flag));
}

/// Three 3 s clips and a song in `data/`; a 6 s blueprint of three moves over them.
fn library_and_blueprint(root: &Path) -> PathBuf {
    let data = root.join("data");
    media::make_clip(&data.join("media/a.mp4"), &CLIP_A.with_seconds(3.0));
    media::make_clip(&data.join("media/b.mp4"), &media::ClipSpec { chroma: CLIP_C.chroma, ..CLIP_A.with_seconds(3.0) });
    media::make_clip(&data.join("media/c.mp4"), &media::ClipSpec { chroma: (150, 110), ..CLIP_A.with_seconds(3.0) });
    media::make_song_mp3(&data.join("media/song.mp3"), 8.0);
    let slot = |id: &str, clip: &str, start: f64, duration: f64, transition: &str| {
        json!({"clip_id": id, "video_path": clip, "start_time": start, "duration": duration, "trim_start": 0.2,
               "trim_end": 0.0, "transition_type": transition, "volume_adjustment": 1.0})
    };
    let blueprint = json!({
        "task_id": "plugin-cli",
        "audio_path": "media/song.mp3",
        "moves": [
            slot("m0", "media/a.mp4", 0.0, 2.1, "cut"),
            slot("m1", "media/b.mp4", 2.1, 2.2, "crossfade"),
            slot("m2", "media/c.mp4", 4.3, 1.7, "cut"),
        ],
        "total_duration": 6.0,
        "output_config": {"output_path": "output/plugin-cli.mp4", "frame_rate": 30, "transition_duration": 0.4,
                          "video_bitrate": "1M", "audio_bitrate": "128k", "normalize_audio": true},
    });
    let file = root.join("blueprint.json");
    std::fs::write(&file, blueprint.to_string()).unwrap();
    file
}

/// The job's own plan request, saved by `run`, replays through `plugin call plan` to the
/// plan the job ran, step for step; `plan` saves the same request. The saved facts serve
/// `plugin check --facts`, and the plugin's settings apply to the replay.
#[test]
fn a_saved_plan_request_replays_the_jobs_plan() {
    let root = tempfile::Builder::new().prefix("plugin-cli-").tempdir().unwrap();
    let blueprint = library_and_blueprint(root.path());
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (data, work) = (root.path().join("data"), work.to_str().unwrap().to_owned());
    let job = |command: &str, saved: &Path| {
        let args = [command, blueprint.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--work-dir", &work];
        blueprint_runner(&[&args[..], &["--save-plan-request", saved.to_str().unwrap()]].concat())
    };
    let ran_request = root.path().join("ran-request.json");
    let ran = job("run", &ran_request);
    assert_eq!(ran.status.code(), Some(0), "{}", describe(&ran));
    assert!(data.join("output/plugin-cli.mp4").is_file());
    let completed = String::from_utf8_lossy(&ran.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|status| status["status"] == "completed")
        .unwrap_or_else(|| panic!("no completed status: {}", describe(&ran)));
    let ran_labels: Vec<String> = completed["result"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["label"].as_str().unwrap().to_owned())
        .collect();

    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&ran_request).unwrap()).unwrap();
    assert_eq!(saved["format"], "blueprint-runner/plan-request/1", "{saved:#}");
    assert_eq!(saved["inputs"].as_array().unwrap().len(), 4, "the song and three clips: {saved:#}");
    assert_eq!(saved["validated"]["moves"][1]["transition_seconds"], 0.4, "the fit: {saved:#}");
    assert!(saved["song_loudness"]["integrated"].is_number(), "the song was measured (normalize_audio): {saved:#}");

    let planned_request = root.path().join("planned-request.json");
    let planned = job("plan", &planned_request);
    assert_eq!(planned.status.code(), Some(0), "{}", describe(&planned));
    let plan_printed = json_of(&planned);
    let planned_saved: Value = serde_json::from_str(&std::fs::read_to_string(&planned_request).unwrap()).unwrap();
    assert_eq!(planned_saved, saved, "plan and run hand the guest the same request");

    let replayed = blueprint_runner(&["plugin", "call", "plan", ran_request.to_str().unwrap()]);
    assert_eq!(replayed.status.code(), Some(0), "{}", describe(&replayed));
    let answer = json_of(&replayed);
    assert_eq!(answer["call"], "plan");
    assert_eq!(answer["policy"], "passes", "{answer:#}");
    assert_eq!(answer["output"], "matches the timeline", "{answer:#}");
    assert_eq!(answer["frames"], 180, "{answer:#}");
    assert!(
        answer["usage"]["fuel"].as_u64().unwrap() > 0 && answer["usage"]["memory_bytes"].as_u64().unwrap() > 0,
        "{answer:#}"
    );
    assert_eq!(answer["plan"], plan_printed["plan"], "the replay plans what `plan` printed");
    let replayed_labels: Vec<String> = answer["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["label"].as_str().unwrap_or("concat list").to_owned())
        .collect();
    assert_eq!(replayed_labels, ran_labels, "the replay plans the steps the job ran");

    // The same request through a plugin: its settings shape the plan.
    let beat_plan = |bpm: u32| {
        let settings = format!(r#"{{"bpm": {bpm}}}"#);
        let called = blueprint_runner(&[
            "plugin",
            "call",
            "plan",
            ran_request.to_str().unwrap(),
            BEAT_CUTS,
            "--guest-settings",
            &settings,
        ]);
        assert_eq!(called.status.code(), Some(0), "{}", describe(&called));
        json_of(&called)["plan"].clone()
    };
    assert_ne!(beat_plan(120), beat_plan(60), "the tempo moves the cuts");
    assert_ne!(beat_plan(120), answer["plan"]);

    // The job's probed facts, found by key, for `plugin check --blueprint FILE:FRAMES`.
    let facts = root.path().join("facts.json");
    std::fs::write(&facts, saved["inputs"].to_string()).unwrap();
    let given = format!("{}:180", blueprint.display());
    let checked = blueprint_runner(&[
        "plugin",
        "check",
        BUILT_IN,
        "--blueprint",
        &given,
        "--facts",
        facts.to_str().unwrap(),
        "--skip-built-in",
    ]);
    assert_eq!(checked.status.code(), Some(0), "{}", describe(&checked));
    std::fs::write(&facts, json!([saved["inputs"][0], saved["inputs"][1]]).to_string()).unwrap();
    let short =
        blueprint_runner(&["plugin", "check", BUILT_IN, "--blueprint", &given, "--facts", facts.to_str().unwrap()]);
    assert_eq!(short.status.code(), Some(1), "{}", describe(&short));
    assert!(describe(&short).contains("it has no facts for the input \"media/b.mp4\""), "{}", describe(&short));

    // A request whose parts disagree is refused before any guest runs.
    let mut broken = saved.clone();
    broken["inputs"].as_array_mut().unwrap().pop();
    std::fs::write(&facts, broken.to_string()).unwrap();
    let refused = blueprint_runner(&["plugin", "call", "plan", facts.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    assert!(describe(&refused).contains("it has 3 inputs; its timeline has 4"), "{}", describe(&refused));
}
