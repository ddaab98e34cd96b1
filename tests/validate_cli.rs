//! `blueprint-runner validate` end to end: the real binary, the real embedded guest in
//! the real sandbox, and the hostile test guest for every limit.

use crate::support::variants;

use std::process::{Command, Output};
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const HOSTILE: &str = test_programs::HOSTILE_GUEST;

/// One compiled-guest cache for the whole test run: compile once, load in a millisecond.
fn cache_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("blueprint-runner-test-cache-{}", std::process::id()));
        dir.to_string_lossy().into_owned()
    })
}

fn validate(blueprint: &str, extra: &[&str]) -> Output {
    // Through stdin: an environment variable cannot hold the larger documents.
    let mut command = Command::new(BIN);
    command.args(["validate", "--json", "--cache-dir", cache_dir()]).args(extra).arg("-");
    crate::support::output_with_stdin(&mut command, blueprint)
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn backend_blueprint_is_valid() {
    let output = validate(&variants::backend_blueprint(), &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let verdict = stdout_json(&output);
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["moves"], 22);
    assert_eq!(verdict["total_duration"], 176.0);
    assert!(verdict["fuel_used"].as_u64().unwrap() > 0);
}

#[test]
fn blueprint_json_env_is_read() {
    let output = Command::new(BIN)
        .args(["validate", "--cache-dir", cache_dir()])
        .env("BLUEPRINT_JSON", variants::backend_blueprint())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("valid: task 5b0d9f2e-"));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("Cloud Run's limit"), "{output:?}");

    // The same blueprint padded to 29 KiB still validates, with a warning that Cloud Run
    // will soon refuse to pass it as an environment variable.
    let padded = format!("{}{}", variants::backend_blueprint(), " ".repeat(29 * 1024));
    let output = Command::new(BIN)
        .args(["validate", "--cache-dir", cache_dir()])
        .env("BLUEPRINT_JSON", padded)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("close to Cloud Run's limit of 32768 bytes") && stderr.contains("BLUEPRINT_URI"),
        "{stderr}"
    );
}

#[test]
fn human_output_names_pointer_and_code() {
    let output = Command::new(BIN)
        .args(["validate", "--cache-dir", cache_dir(), "-"])
        .env_remove("BLUEPRINT_JSON")
        .stdin(std::fs::File::open(variants::fixtures_dir().join("broken-variants.json")).unwrap())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("invalid blueprint: 1 problem"), "{text}");
    assert!(text.contains("must be an object, found an array [wrong-type]"), "{text}");
}

/// The variants a lenient check fits rather than refuses (README, *The lenient timeline*):
/// each is then valid, with a warning at the very pointer the strict check refuses.
const FITTED_VARIANTS: [&str; 7] = [
    "gap between moves",
    "overlap without crossfade",
    "cut overlapping by less than a crossfade",
    "first move late",
    "transition longer than move",
    "difficulty not allowed",
    "total_duration mismatch",
];

#[test]
fn every_broken_variant_is_refused_through_the_sandbox() {
    let mut fitted = Vec::new();
    for variant in variants::broken_variants() {
        let output = validate(&variant.document, &["--timeline", "strict"]);
        assert_eq!(output.status.code(), Some(2), "{}: {output:?}", variant.name);
        let verdict = stdout_json(&output);
        let errors = verdict["errors"].as_array().expect("errors");
        assert!(
            errors.iter().any(|e| e["pointer"] == variant.pointer.as_str() && e["code"] == variant.code.as_str()),
            "{}: expected {} {}, got {errors:?}",
            variant.name,
            variant.pointer,
            variant.code
        );

        let lenient = validate(&variant.document, &["--timeline", "lenient"]);
        let verdict = stdout_json(&lenient);
        if lenient.status.code() == Some(0) {
            let warnings = verdict["warnings"].as_array().expect("warnings");
            assert!(
                warnings.iter().any(|w| w["pointer"] == variant.pointer.as_str()),
                "{}: fitted without a warning at {}: {verdict}",
                variant.name,
                variant.pointer
            );
            fitted.push(variant.name.clone());
        } else {
            assert_eq!(lenient.status.code(), Some(2), "{}: {lenient:?}", variant.name);
            let errors = verdict["errors"].as_array().expect("errors");
            assert!(
                errors.iter().any(|e| e["pointer"] == variant.pointer.as_str() && e["code"] == variant.code.as_str()),
                "{}: {errors:?}",
                variant.name
            );
        }
    }
    let expected: Vec<String> = FITTED_VARIANTS.iter().map(|name| name.to_string()).collect();
    let mut fitted_sorted = fitted.clone();
    fitted_sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(fitted_sorted, expected_sorted, "the lenient check fits exactly the timeline variants");
}

#[test]
fn hostile_documents_are_explained() {
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let huge = format!("{{\"task_id\": \"{}\"}}", "a".repeat(2 * 1024 * 1024));
    for (text, code) in
        [(deep.as_str(), "too-large"), (r#"{"total_duration": 1e400}"#, "invalid-json"), ("{", "invalid-json")]
    {
        let output = validate(text, &[]);
        assert_eq!(output.status.code(), Some(2));
        assert_eq!(stdout_json(&output)["errors"][0]["code"], code);
    }
    // Over the size limit: refused by the host while reading, from a file too.
    let file = std::env::temp_dir().join(format!("huge-blueprint-{}.json", std::process::id()));
    std::fs::write(&file, &huge).unwrap();
    let output =
        Command::new(BIN).args(["validate", "--json", "--cache-dir", cache_dir()]).arg(&file).output().unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stdout_json(&output)["errors"][0]["code"], "too-large");
}

/// Contract 0.3.0: the default guest's refusal names the blueprint's task when
/// `/task_id` itself is valid, and only then.
#[test]
fn a_refusal_names_the_task_when_its_id_is_valid() {
    let mut doc: Value = serde_json::from_str(&variants::backend_blueprint()).unwrap();
    doc["moves"][3]["duration"] = serde_json::json!(-1);
    let output = validate(&doc.to_string(), &[]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let verdict = stdout_json(&output);
    assert_eq!(verdict["task_id"], "5b0d9f2e-6c1a-4f0e-9a57-3f7e2d1c8b44", "{verdict}");
    assert_eq!(verdict["errors"][0]["pointer"], "/moves/3/duration", "{verdict}");

    doc["task_id"] = serde_json::json!("not a task id");
    let verdict = stdout_json(&validate(&doc.to_string(), &[]));
    assert_eq!(verdict["task_id"], Value::Null, "{verdict}");
    assert!(verdict["errors"].as_array().unwrap().iter().any(|e| e["pointer"] == "/task_id"), "{verdict}");
}

/// The hostile guest is built against contract 0.2.0: it still loads, and its refusal,
/// which cannot carry a task id, names none.
#[test]
fn a_guest_of_contract_0_2_0_still_loads_and_its_refusal_names_no_task() {
    let (code, verdict) = hostile("anything else", &[]);
    assert_eq!(code, Some(2), "{verdict}");
    assert_eq!(verdict["task_id"], Value::Null, "{verdict}");
    assert!(verdict["errors"][0]["message"].as_str().unwrap().contains("unknown misbehaviour"), "{verdict}");
}

fn hostile(behaviour: &str, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["--guest", HOSTILE];
    args.extend_from_slice(extra);
    let output = validate(behaviour, &args);
    (output.status.code(), stdout_json(&output))
}

#[test]
fn endless_loop_stops_on_fuel() {
    let (code, verdict) = hostile("spin", &["--fuel", "50000000"]);
    assert_eq!(code, Some(3));
    assert_eq!(verdict["sandbox_error"]["limit"], "fuel");
}

#[test]
fn huge_allocation_stops_at_the_memory_cap() {
    let (code, verdict) = hostile("allocate", &["--guest-memory", "32"]);
    assert_eq!(code, Some(3));
    assert_eq!(verdict["sandbox_error"]["limit"], "memory");
    assert!(verdict["sandbox_error"]["message"].as_str().unwrap().contains("32 MiB"));
}

#[test]
fn blocking_guest_stops_at_the_deadline() {
    let started = std::time::Instant::now();
    let (code, verdict) = hostile("sleep", &["--guest-deadline-ms", "500"]);
    assert_eq!(code, Some(3));
    assert_eq!(verdict["sandbox_error"]["limit"], "deadline");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn busy_guest_stops_at_the_deadline_when_fuel_is_plenty() {
    let (code, verdict) = hostile("spin", &["--guest-deadline-ms", "300", "--fuel", "100000000000000"]);
    assert_eq!(code, Some(3));
    assert_eq!(verdict["sandbox_error"]["limit"], "deadline");
}

#[test]
fn oversized_answers_are_refused() {
    let (code, verdict) = hostile("huge-output", &["--guest-memory", "200"]);
    assert_eq!(code, Some(3));
    assert_eq!(verdict["sandbox_error"]["limit"], "output-size");
    let (code, verdict) = hostile("many-errors", &["--guest-memory", "200"]);
    assert_eq!(code, Some(3));
    assert_eq!(verdict["sandbox_error"]["limit"], "output-size");
}

#[test]
fn guest_panic_is_a_trap_with_its_last_words() {
    let (code, verdict) = hostile("panic", &[]);
    assert_eq!(code, Some(3));
    assert_eq!(verdict["sandbox_error"]["limit"], Value::Null);
    let message = verdict["sandbox_error"]["message"].as_str().unwrap();
    assert!(message.contains("trapped") && message.contains("panics on purpose"), "{message}");
}

#[test]
fn malformed_answers_are_refused() {
    let (code, verdict) = hostile("bad-pointer", &[]);
    assert_eq!(code, Some(3));
    assert!(verdict["sandbox_error"]["message"].as_str().unwrap().contains("not a JSON pointer"));
}

#[test]
fn guest_memory_cap_must_fit_the_budget() {
    let output = validate("{}", &["--guest-memory", "300"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not fit the job budget of 512 MiB: at most 224 MiB"), "{stderr}");
}

#[test]
fn missing_blueprint_is_a_usage_error() {
    let output = Command::new(BIN).args(["validate"]).env_remove("BLUEPRINT_JSON").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("BLUEPRINT_JSON"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Random edits of the real blueprint through the real sandbox: the host never
    /// crashes, and every error pointer resolves in the document.
    #[test]
    fn random_edits_never_crash_the_host(pointer_index in 0usize..400, replacement in prop_oneof![
        Just(Value::Null), Just(serde_json::json!(-1)), Just(serde_json::json!("../../x")),
        Just(serde_json::json!({"a": [1, {"b": null}]})), Just(serde_json::json!(1e300)),
        Just(serde_json::json!("")), Just(serde_json::json!([])), Just(serde_json::json!(true)),
    ]) {
        let mut doc: Value = serde_json::from_str(&variants::backend_blueprint()).unwrap();
        let pointers = variants::all_pointers(&doc);
        let pointer = pointers[pointer_index % pointers.len()].clone();
        *doc.pointer_mut(&pointer).unwrap() = replacement;
        let output = validate(&doc.to_string(), &[]);
        let code = output.status.code();
        prop_assert!(code == Some(0) || code == Some(2), "{output:?}");
        if code == Some(2) {
            for error in stdout_json(&output)["errors"].as_array().unwrap() {
                let p = error["pointer"].as_str().unwrap();
                let target = variants::pointer_target(p, error["code"].as_str().unwrap());
                prop_assert!(doc.pointer(target).is_some(), "{p} does not resolve");
            }
        }
    }
}

/// `plan --facts`: a plugin author's offline loop. Made-up facts for the backend's
/// blueprint (no media, no storage, no FFmpeg) give the built-in guest's checked plan;
/// facts that do not match the blueprint's inputs are refused with the expected order.
#[test]
fn a_plan_is_made_from_given_facts_without_media() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/backend-blueprint.json");
    let blueprint: Value = serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    let mut keys = vec![blueprint["audio_path"].as_str().unwrap().to_owned()];
    for step in blueprint["moves"].as_array().unwrap() {
        let key = step["video_path"].as_str().unwrap().to_owned();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let facts: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(index, key)| {
            let video = (index > 0).then(|| serde_json::json!({"codec": "h264", "width": 1280, "height": 720, "frame_rate": 30.0, "pixel_format": "yuv420p", "duration": 10.0}));
            let duration = if index == 0 { 200.0 } else { 10.0 };
            serde_json::json!({"key": key, "duration": duration, "video": video, "audio": {"codec": "aac", "sample_rate": 48000, "channels": 2, "duration": duration}})
        })
        .collect();
    let folder = tempfile::tempdir().unwrap();
    let plan = |facts: &[Value]| {
        let file = folder.path().join("facts.json");
        std::fs::write(&file, Value::Array(facts.to_vec()).to_string()).unwrap();
        Command::new(BIN)
            .args(["plan", example, "--cache-dir", cache_dir(), "--facts"])
            .arg(&file)
            .env_remove("BLUEPRINT_JSON")
            .output()
            .unwrap()
    };
    let output = plan(&facts);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let steps = printed["plan"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1 + 22 + 2, "the song, a segment per move, the list and the join");
    assert_eq!(printed["inputs"].as_array().unwrap().len(), keys.len());
    let output = plan(&facts[..3]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("the blueprint has {} inputs, in this order: {}", keys.len(), keys[0])),
        "{stderr}"
    );
}

/// `plugin check`: the built-in guest has no problem on any built-in case; the hostile
/// test guest (contract 0.2.0) is reported, case by case, with exit 3.
#[test]
fn plugin_check_tells_a_sound_plugin_from_a_hostile_one() {
    let check = |plugin: &str| {
        Command::new(BIN).args(["plugin", "check", "--json", "--cache-dir", cache_dir(), plugin]).output().unwrap()
    };
    let sound = check(env!("DEFAULT_GUEST_WASM"));
    assert_eq!(sound.status.code(), Some(0), "{}", String::from_utf8_lossy(&sound.stdout));
    let report = stdout_json(&sound);
    assert_eq!(report["contract"], "0.10.0");
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report:#}");
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4, "the backend's, every transition, no song, 220 moves");
    for case in cases {
        assert_eq!(
            (case["policy"].as_str(), case["output"].as_str()),
            (Some("passes"), Some("matches the timeline")),
            "{case}"
        );
        assert!(
            case["plan"]["fuel"].as_u64().unwrap() > 0 && case["plan"]["memory_share"].as_f64().unwrap() < 0.5,
            "{case}"
        );
    }
    let hostile = check(HOSTILE);
    assert_eq!(hostile.status.code(), Some(3), "{}", String::from_utf8_lossy(&hostile.stdout));
    let report = stdout_json(&hostile);
    assert_eq!(report["contract"], "0.2.0");
    let problems: Vec<&str> = report["problems"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(problems.len(), 4, "one per case: {problems:?}");
    assert!(problems.iter().all(|p| p.contains("validate")), "{problems:?}");
}

/// The backend's rule-based shape: a section ends with a 0.2 s remainder that still enters
/// with the 0.5 s crossfade, and one of 0.01 s (less than a frame); the language-model
/// shape: a gap of 8 s where a move was dropped. The example blueprint with both.
fn backend_shapes() -> Value {
    let mut document: Value = serde_json::from_str(&variants::backend_blueprint()).unwrap();
    let moves = document["moves"].as_array_mut().unwrap();
    moves[3]["duration"] = 0.2.into();
    moves[4]["duration"] = 0.01.into();
    for (index, m) in moves.iter_mut().enumerate().skip(4) {
        m["start_time"] =
            if index == 4 { 24.2 } else { 24.21 + 8.0 * (index - 5) as f64 + if index >= 10 { 8.0 } else { 0.0 } }
                .into();
    }
    // Move 9 ends at 64.21; move 10 starts 8 s later: a dropped move's gap.
    let last = moves.last().unwrap();
    let end = last["start_time"].as_f64().unwrap() + last["duration"].as_f64().unwrap();
    document["total_duration"] = end.into();
    document["difficulty_level"] = "expert".into();
    document
}

fn validate_with(document: &Value, extra: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Value) {
    let output = Command::new(BIN)
        .args(["validate", "--json", "--cache-dir", cache_dir()])
        .args(extra)
        .env_remove("TIMELINE")
        .env_remove("GCS_BUCKET_NAME")
        .env_remove("GUEST_COMPONENT")
        .env("BLUEPRINT_JSON", document.to_string())
        .envs(env.iter().copied())
        .output()
        .expect("run blueprint-runner");
    (output.status.code(), stdout_json(&output))
}

/// Lenient (the default): valid, and every adjustment is a warning with its pointer, in
/// `--json` too. Strict (`--timeline strict`, `--strict`, `TIMELINE=strict`): the refusals
/// of contract 0.7.0, each with its pointer.
#[test]
fn the_backends_own_shapes_are_fitted_unless_strict() {
    let document = backend_shapes();
    let (code, verdict) = validate_with(&document, &[], &[]);
    assert_eq!(code, Some(0), "{verdict}");
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["moves"], 21, "the move under a frame is dropped: {verdict}");
    let warnings = verdict["warnings"].as_array().unwrap();
    let message = |pointer: &str| {
        warnings
            .iter()
            .find(|w| w["pointer"] == pointer)
            .map(|w| w["message"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no warning at {pointer}: {verdict}"))
    };
    // Move 3 takes the dropped move's 0.01 s: 0.21 s.
    assert_eq!(
        message("/moves/3/transition_type"),
        "crossfade of 0.500 s shortened to 0.210 s (the move lasts 0.210 s)"
    );
    assert_eq!(
        message("/moves/5/transition_type"),
        "crossfade of 0.500 s shortened to 0.210 s (move 3 before it lasts 0.210 s)"
    );
    assert!(message("/moves/4").starts_with("the move lasts 0.010 s, less than one frame at 30 fps: it is dropped"));
    assert!(message("/moves/10/start_time").starts_with("gap of 8.000 s before this move"));
    assert!(message("/difficulty_level").contains("ignored"));
    assert_eq!(warnings.len(), 5, "move 5 now follows move 3, whose 0.2 s shortens its crossfade too: {warnings:?}");

    for (extra, env) in [
        (&["--timeline", "strict"][..], &[][..]),
        (&["--strict"][..], &[][..]),
        (&[][..], &[("TIMELINE", "strict")][..]),
    ] {
        let (code, verdict) = validate_with(&document, extra, env);
        assert_eq!(code, Some(2), "{extra:?} {env:?}: {verdict}");
        let pointers: Vec<&str> =
            verdict["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
        for pointer in ["/moves/4/transition_type", "/moves/10/start_time", "/difficulty_level"] {
            assert!(pointers.contains(&pointer), "{extra:?} {env:?}: {pointer} in {pointers:?}");
        }
    }
}

/// A guest built at contract 0.7.0 (the built-in one, frozen) still loads and validates
/// as it did: strictly, whatever the job asks.
#[test]
fn a_guest_of_contract_0_7_0_still_validates_strictly() {
    let frozen = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/guests/default-guest-0.7.0.wasm");
    let (code, verdict) = validate_with(&backend_shapes(), &["--guest", frozen], &[]);
    assert_eq!(code, Some(2), "{verdict}");
    assert!(verdict["errors"].as_array().unwrap().iter().any(|e| e["pointer"] == "/moves/10/start_time"), "{verdict}");
    let (code, verdict) =
        validate_with(&serde_json::from_str(&variants::backend_blueprint()).unwrap(), &["--guest", frozen], &[]);
    assert_eq!(code, Some(0), "{verdict}");
    assert_eq!(verdict["moves"], 22);
    assert_eq!(verdict["warnings"], serde_json::json!([]));
}

/// A guest built at contract 0.8.0 (the built-in one, frozen before `host.keep`) still
/// loads and fits the backend's remainder moves leniently, as it did.
#[test]
fn a_guest_of_contract_0_8_0_still_fits_the_backends_timelines() {
    let frozen = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/guests/default-guest-0.8.0.wasm");
    let (code, verdict) = validate_with(&backend_shapes(), &["--guest", frozen], &[]);
    assert_eq!(code, Some(0), "{verdict}");
    assert!(
        verdict["warnings"].as_array().unwrap().iter().any(|w| w["pointer"] == "/moves/10/start_time"
            || w["pointer"].as_str().is_some_and(|p| p.starts_with("/moves/"))),
        "{verdict}"
    );
    let (same_code, same) = validate_with(&backend_shapes(), &[], &[]);
    assert_eq!(
        (same_code, &same["warnings"]),
        (code, &verdict["warnings"]),
        "the frozen guest fits as today's built-in one does"
    );
}

/// The backend's production songs are written `gs://<its bucket>/songs/x.mp3`: read as the
/// key of the same object when the bucket is the job's own, refused otherwise, and
/// refused by a job that reads no bucket, or under strict.
#[test]
fn a_gs_address_in_the_jobs_own_bucket_is_read_as_its_key() {
    let mut document: Value = serde_json::from_str(&variants::backend_blueprint()).unwrap();
    document["audio_path"] = "gs://choreo/songs/x.mp3".into();
    let (code, verdict) = validate_with(&document, &["--bucket", "choreo"], &[]);
    assert_eq!(code, Some(0), "{verdict}");
    assert_eq!(verdict["audio_key"], "data/songs/x.mp3", "the key that names object songs/x.mp3");
    assert_eq!(verdict["warnings"][0]["pointer"], "/audio_path");
    let (code, verdict) =
        validate_with(&document, &[], &[("GCS_BUCKET_NAME", "choreo"), ("GCS_OBJECT_PREFIX", "songs/")]);
    assert_eq!((code, &verdict["audio_key"]), (Some(0), &Value::from("data/x.mp3")), "{verdict}");

    for (extra, env, why) in [
        (&["--bucket", "other"][..], &[][..], "not in the job's own bucket"),
        (&[][..], &[][..], "this job does not read from a bucket"),
        (&["--bucket", "choreo", "--strict"][..], &[][..], "contains ':'"),
    ] {
        let (code, verdict) = validate_with(&document, extra, env);
        assert_eq!(code, Some(2), "{extra:?}: {verdict}");
        let error = &verdict["errors"][0];
        assert_eq!(
            (error["pointer"].as_str(), error["code"].as_str()),
            (Some("/audio_path"), Some("unsafe-path")),
            "{verdict}"
        );
        assert!(error["message"].as_str().unwrap().contains(why), "{extra:?}: {verdict}");
    }
    document["audio_path"] = "gs://choreo/../x.mp3".into();
    let (code, verdict) = validate_with(&document, &["--bucket", "choreo"], &[]);
    assert_eq!(code, Some(2), "a key read from an address keeps every key rule: {verdict}");
}
