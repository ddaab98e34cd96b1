//! Data a plugin's `validate` keeps for its `plan` (contract 0.9.0, `host.keep` and
//! `host.kept`). `validate` reads the whole blueprint, `plan` only the validated timeline,
//! which has no place for the blueprint's other fields (the song's `audio_tempo`, the
//! choreography's `difficulty_level`, a plugin's own per-move fields). [`pick`] takes the
//! fields a plugin names (as Shopify Functions' input query does), [`keep`] stores them in
//! the validated blueprint, which the SDK hands to the host; [`kept`] reads them in `plan`.
//! At most [`MAX_KEPT_BYTES`] of JSON; the host neither reads nor logs it.

use br_blueprint::{ErrorCode, Refusal, Validated, ValidationError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

pub use br_blueprint::limits::MAX_KEPT_BYTES;

/// The blueprint's values at `pointers`, by pointer: JSON pointers in which `*` stands for
/// every index of an array (`/moves/*/audio_tempo` gives a list, one entry per move, null
/// where a move has none). A pointer that names nothing gives null; text that is not JSON
/// gives an empty map (validation refuses it first).
pub fn pick(blueprint: &str, pointers: &[&str]) -> Map<String, Value> {
    let Ok(document) = serde_json::from_str::<Value>(blueprint) else { return Map::new() };
    pointers.iter().map(|pointer| ((*pointer).to_owned(), find(&document, pointer))).collect()
}

fn find(value: &Value, pointer: &str) -> Value {
    let Some(rest) = pointer.strip_prefix('/') else {
        return if pointer.is_empty() { value.clone() } else { Value::Null };
    };
    let (segment, after) = rest.split_once('/').map_or((rest, ""), |(segment, after)| (segment, after));
    let after = if after.is_empty() { String::new() } else { format!("/{after}") };
    match (segment, value) {
        ("*", Value::Array(items)) => Value::Array(items.iter().map(|item| find(item, &after)).collect()),
        (_, Value::Array(items)) => segment
            .parse::<usize>()
            .ok()
            .and_then(|index| items.get(index))
            .map_or(Value::Null, |item| find(item, &after)),
        (_, Value::Object(fields)) => {
            let name = segment.replace("~1", "/").replace("~0", "~");
            fields.get(&name).map_or(Value::Null, |field| find(field, &after))
        }
        _ => Value::Null,
    }
}

/// Keeps `data` (as JSON) for `plan` in `validated`; refused, naming the size, past
/// [`MAX_KEPT_BYTES`].
pub fn keep<T: Serialize>(validated: &mut Validated, data: &T) -> Result<(), Refusal> {
    let text =
        serde_json::to_string(data).map_err(|e| refusal(validated, format!("the plugin's data is not JSON: {e}")))?;
    if text.len() > MAX_KEPT_BYTES {
        let message = format!("the plugin keeps {} bytes for plan; at most {MAX_KEPT_BYTES}", text.len());
        return Err(refusal(validated, message));
    }
    validated.kept = Some(text);
    Ok(())
}

/// A refusal of `validated`'s blueprint because of what the plugin keeps: the plugin's
/// fault, not the blueprint's, so it points at the whole document.
pub(crate) fn refusal(validated: &Validated, message: String) -> Refusal {
    Refusal {
        task_id: Some(validated.task_id.clone()),
        errors: vec![ValidationError { pointer: String::new(), code: ErrorCode::TooLarge, message }],
    }
}

/// What `validate` kept, read as `T`; None when it kept nothing (or something else: a
/// plugin's `plan` then falls back as it would without).
pub fn kept<T: DeserializeOwned>(validated: &Validated) -> Option<T> {
    validated.kept.as_deref().and_then(|text| serde_json::from_str(text).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_takes_the_named_fields_and_every_index_of_a_star() {
        let blueprint =
            r#"{"difficulty_level": "beginner", "moves": [{"audio_tempo": 120}, {}, {"audio_tempo": 96}], "a/b": 1}"#;
        let picked =
            pick(blueprint, &["/difficulty_level", "/moves/*/audio_tempo", "/moves/2/audio_tempo", "/absent", "/a~1b"]);
        assert_eq!(picked["/difficulty_level"], "beginner");
        assert_eq!(picked["/moves/*/audio_tempo"], serde_json::json!([120, null, 96]));
        assert_eq!(picked["/moves/2/audio_tempo"], 96);
        assert_eq!(picked["/absent"], Value::Null);
        assert_eq!(picked["/a~1b"], 1);
        assert!(pick("not json", &["/x"]).is_empty());
    }

    #[test]
    fn kept_data_round_trips_and_is_bounded() {
        let mut validated = br_blueprint::check(crate::check::BACKEND_BLUEPRINT, &Default::default()).unwrap();
        keep(&mut validated, &serde_json::json!({"speed": 0.5})).unwrap();
        assert_eq!(kept::<Value>(&validated), Some(serde_json::json!({"speed": 0.5})));
        let too_much = "x".repeat(MAX_KEPT_BYTES);
        let refused = keep(&mut validated, &too_much).unwrap_err();
        assert!(refused.errors[0].message.contains("at most 65536"), "{}", refused.errors[0].message);
        assert_eq!(
            kept::<Value>(&validated),
            Some(serde_json::json!({"speed": 0.5})),
            "the refused data replaced nothing"
        );
    }
}
