//! The validator on its own, natively: fast, many cases.

// A test's unwrap is its failure report.
#![allow(clippy::unwrap_used)]

#[path = "../../../tests/support/variants.rs"]
mod variants;

use br_blueprint::{validate, validate_with_task_id, ErrorCode, Transition};
use proptest::prelude::*;
use serde_json::Value;

#[test]
fn backend_blueprint_validates_and_normalises() {
    let validated = validate(&variants::backend_blueprint()).expect("backend blueprint is valid");
    assert_eq!(validated.task_id, "5b0d9f2e-6c1a-4f0e-9a57-3f7e2d1c8b44");
    assert_eq!(validated.moves.len(), 22);
    assert_eq!(validated.total_duration, 176.0);
    assert_eq!(validated.audio_key, "data/songs/Amor.mp3");
    assert_eq!(validated.moves[0].transition, Transition::Cut);
    assert!(validated.moves[1..].iter().all(|m| m.transition == Transition::Crossfade));
    assert_eq!(validated.output.video_bitrate, 2_000_000);
    assert_eq!(validated.output.audio_bitrate, 128_000);
    assert_eq!(validated.output.frame_rate, 30.0);
    assert!(validated.output.normalize_audio);
    // Distinct keys, first-use order; every move points at its own key.
    let doc: Value = serde_json::from_str(&variants::backend_blueprint()).unwrap();
    let mut distinct: Vec<&str> = Vec::new();
    for m in doc["moves"].as_array().unwrap() {
        let key = m["video_path"].as_str().unwrap();
        if !distinct.contains(&key) {
            distinct.push(key);
        }
    }
    assert_eq!(validated.clip_keys, distinct);
    for (slot, m) in validated.moves.iter().zip(doc["moves"].as_array().unwrap()) {
        assert_eq!(validated.clip_keys[slot.clip as usize], m["video_path"].as_str().unwrap());
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let mut doc: Value = serde_json::from_str(&variants::backend_blueprint()).unwrap();
    doc["future_field"] = serde_json::json!({"anything": [1, 2, 3]});
    doc["moves"][0]["camera_angle"] = serde_json::json!("left");
    doc["output_config"]["watermark"] = serde_json::json!(false);
    assert!(validate(&doc.to_string()).is_ok());
}

#[test]
fn every_broken_variant_gives_its_pointer_and_code() {
    let variants = variants::broken_variants();
    assert!(variants.len() >= 30);
    for variant in variants {
        let errors = validate(&variant.document).expect_err(&variant.name);
        assert!(
            errors.iter().any(|e| e.pointer == variant.pointer && e.code.as_str() == variant.code),
            "{}: expected {} {}, got {errors:#?}",
            variant.name,
            variant.pointer,
            variant.code
        );
    }
}

#[test]
fn all_errors_are_collected() {
    let mut doc: Value = serde_json::from_str(&variants::backend_blueprint()).unwrap();
    doc["moves"][2]["trim_start"] = serde_json::json!(-1);
    doc["moves"][5]["video_path"] = serde_json::json!("../x");
    doc["output_config"]["video_codec"] = serde_json::json!("rawvideo");
    doc.as_object_mut().unwrap().remove("task_id");
    let errors = validate(&doc.to_string()).unwrap_err();
    let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
    for expected in ["/task_id", "/moves/2/trim_start", "/moves/5/video_path", "/output_config/video_codec"] {
        assert!(pointers.contains(&expected), "{expected} missing from {pointers:?}");
    }
}

#[test]
fn hostile_documents_give_clear_errors() {
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let errors = validate(&deep).unwrap_err();
    assert_eq!((errors[0].pointer.as_str(), errors[0].code), ("", ErrorCode::TooLarge));
    assert!(errors[0].message.contains("nested"), "{}", errors[0].message);

    let huge = format!("{{\"task_id\": \"{}\"}}", "a".repeat(50 * 1024 * 1024));
    let errors = validate(&huge).unwrap_err();
    assert_eq!((errors[0].pointer.as_str(), errors[0].code), ("", ErrorCode::TooLarge));

    let errors = validate(r#"{"task_id": "t", "total_duration": 1e400}"#).unwrap_err();
    assert_eq!(errors[0].code, ErrorCode::InvalidJson);
    assert!(errors[0].message.contains("out of range"), "{}", errors[0].message);

    for text in ["", "null", "[]", "\"x\"", "{", "{\"a\":}", "\u{feff}{}"] {
        let errors = validate(text).unwrap_err();
        assert!(!errors.is_empty(), "{text:?}");
    }
}

#[test]
fn error_list_is_bounded() {
    let mut doc: Value = serde_json::from_str(&variants::backend_blueprint()).unwrap();
    let bad_move = serde_json::json!({"video_path": "/abs", "start_time": -1, "duration": -1});
    doc["moves"] = Value::Array(vec![bad_move; 1_500]);
    let errors = validate(&doc.to_string()).unwrap_err();
    assert_eq!(errors.len(), br_blueprint::limits::MAX_REPORTED_ERRORS + 1);
    assert!(errors.last().unwrap().message.contains("more problems"));
}

/// A refusal names the task when `/task_id` itself is valid, whatever else fails, so
/// the job can record the failure against that task; otherwise it names none.
#[test]
fn a_refusal_names_the_task_only_when_its_id_is_valid() {
    let mut doc: Value = serde_json::from_str(&variants::backend_blueprint()).unwrap();
    doc["moves"][3]["duration"] = serde_json::json!(-1);
    let refusal = validate_with_task_id(&doc.to_string()).unwrap_err();
    assert_eq!(refusal.task_id.as_deref(), Some("5b0d9f2e-6c1a-4f0e-9a57-3f7e2d1c8b44"));
    assert!(refusal.errors.iter().any(|e| e.pointer == "/moves/3/duration"), "{:?}", refusal.errors);

    use serde_json::json;
    for bad in [json!("a b"), json!(""), json!("x".repeat(37)), json!(7)] {
        doc["task_id"] = bad.clone();
        let refusal = validate_with_task_id(&doc.to_string()).unwrap_err();
        assert_eq!(refusal.task_id, None, "task id {bad}");
        assert!(refusal.errors.iter().any(|e| e.pointer == "/task_id"), "{bad}: {:?}", refusal.errors);
    }
    for text in ["{\"task_id\": \"t-1\", ", "[{\"task_id\": \"t-1\"}]", "null"] {
        assert_eq!(validate_with_task_id(text).unwrap_err().task_id, None, "{text}");
    }
    assert_eq!(validate_with_task_id("{\"task_id\": \"t-1\"}").unwrap_err().task_id.as_deref(), Some("t-1"));
    assert!(validate_with_task_id(&variants::backend_blueprint()).is_ok());
}

/// Any JSON value, biased towards blueprint-like shapes.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        any::<i64>().prop_map(|i| Value::Number(i.into())),
        "[ -~]{0,12}".prop_map(Value::String),
        prop_oneof![Just("../x"), Just("data/a.mp4"), Just("crossfade"), Just("2M"), Just("file:///x")]
            .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        let names = prop_oneof![
            Just("task_id"),
            Just("audio_path"),
            Just("moves"),
            Just("video_path"),
            Just("start_time"),
            Just("duration"),
            Just("output_config"),
            Just("output_path"),
            Just("trim_start"),
            Just("transition_type"),
            Just("a/b~c"),
            Just("total_duration"),
        ]
        .prop_map(str::to_owned);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(names, inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces one value somewhere in the backend blueprint by an arbitrary one.
fn mutated_blueprint() -> impl Strategy<Value = Value> {
    let base: Value = serde_json::from_str(&variants::backend_blueprint()).unwrap();
    let pointers = variants::all_pointers(&base);
    (prop::sample::select(pointers), arbitrary_json()).prop_map(move |(pointer, value)| {
        let mut doc = base.clone();
        *doc.pointer_mut(&pointer).unwrap() = value;
        doc
    })
}

fn assert_pointers_resolve(doc: &Value, text: &str) {
    if let Err(errors) = validate(text) {
        assert!(!errors.is_empty());
        for error in errors {
            let target = variants::pointer_target(&error.pointer, error.code.as_str());
            assert!(doc.pointer(target).is_some(), "pointer {:?} ({:?}) does not resolve", error.pointer, error.code);
            assert!(!error.message.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]
    #[test]
    fn random_json_never_panics_and_pointers_resolve(doc in arbitrary_json()) {
        assert_pointers_resolve(&doc, &doc.to_string());
    }

    #[test]
    fn mutated_blueprints_never_panic_and_pointers_resolve(doc in mutated_blueprint()) {
        assert_pointers_resolve(&doc, &doc.to_string());
    }

    #[test]
    fn a_refusal_names_exactly_a_valid_task_id(doc in mutated_blueprint()) {
        if let Err(refusal) = validate_with_task_id(&doc.to_string()) {
            let expected = doc["task_id"].as_str().filter(|id| br_blueprint::is_task_id(id));
            prop_assert_eq!(refusal.task_id.as_deref(), expected);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = validate(&text);
    }
}
