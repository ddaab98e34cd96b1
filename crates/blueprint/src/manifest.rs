//! A task array's manifest: the JSON list of `{"task_id", "blueprint_uri"}` entries a
//! Cloud Run execution of many tasks shares out. Checked like a blueprint (bounded, every
//! problem with its pointer), in the guest.
//!
//! A problem with the document as a whole refuses it; a problem with one entry is kept
//! with that entry, so the other entries still run and the entry's own row (when its
//! task id is usable) can say why it did not.

use serde_json::Value;

use crate::{is_task_id, ErrorCode, ValidationError};

/// Bytes of manifest text (2 MiB): room for [`MAX_ENTRIES`] entries of about 150 bytes.
pub const MAX_MANIFEST_BYTES: usize = 2 * 1024 * 1024;
/// Most entries in one manifest: Cloud Run's most tasks per execution. A manifest has at
/// least one.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest `blueprint_uri`, in bytes: `gs://` + a bucket name (at most 222 bytes) + `/` +
/// an object key.
pub const MAX_URI_BYTES: usize = 1_300;

/// One entry of a task-array manifest (mirrors the WIT `manifest-entry`): the task, and
/// where its blueprint is.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestEntry {
    /// The task id as written; empty when it is not a string.
    pub task_id: String,
    /// `gs://BUCKET/KEY` of the entry's blueprint, or a key in the job's own storage; as
    /// written, empty when it is not a string.
    pub blueprint_uri: String,
    /// Why this entry cannot run, when it cannot (its pointer is `/N` or below it, N the
    /// entry's position from 0); the other entries still run.
    pub problem: Option<ValidationError>,
}

fn error(pointer: String, code: ErrorCode, message: impl Into<String>) -> ValidationError {
    ValidationError { pointer, code, message: message.into() }
}

/// The entries, each with its problem if it has one; or why the whole document is
/// refused.
pub fn validate_manifest(text: &str) -> Result<Vec<ManifestEntry>, Vec<ValidationError>> {
    let whole = |code, message: String| vec![error(String::new(), code, message)];
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(whole(
            ErrorCode::TooLarge,
            format!("the manifest is {} bytes; at most {MAX_MANIFEST_BYTES}", text.len()),
        ));
    }
    let document: Value =
        serde_json::from_str(text).map_err(|e| whole(ErrorCode::InvalidJson, format!("not JSON: {e}")))?;
    let Value::Array(items) = document else {
        return Err(whole(
            ErrorCode::WrongType,
            "must be a JSON list of {\"task_id\", \"blueprint_uri\"} objects".into(),
        ));
    };
    if items.is_empty() || items.len() > MAX_ENTRIES {
        return Err(whole(ErrorCode::OutOfRange, format!("has {} entries; 1 to {MAX_ENTRIES}", items.len())));
    }
    let mut seen = std::collections::HashSet::new();
    Ok(items
        .iter()
        .enumerate()
        .map(|(position, item)| {
            let text = |field: &str| item.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
            let (task_id, blueprint_uri) = (text("task_id"), text("blueprint_uri"));
            let mut problem = entry_problem(position, item, &task_id, &blueprint_uri);
            // A second entry for the same task would run it twice at once.
            if problem.is_none() && !seen.insert(task_id.clone()) {
                problem = Some(error(
                    format!("/{position}/task_id"),
                    ErrorCode::NotAllowed,
                    format!("task '{task_id}' has an earlier entry"),
                ));
            }
            ManifestEntry { task_id, blueprint_uri, problem }
        })
        .collect())
}

fn entry_problem(position: usize, item: &Value, task_id: &str, blueprint_uri: &str) -> Option<ValidationError> {
    let at = |field: &str| if field.is_empty() { format!("/{position}") } else { format!("/{position}/{field}") };
    let Value::Object(fields) = item else {
        return Some(error(at(""), ErrorCode::WrongType, "must be an object with task_id and blueprint_uri"));
    };
    if let Some(unknown) = fields.keys().find(|key| !["task_id", "blueprint_uri"].contains(&key.as_str())) {
        return Some(error(
            at(unknown),
            ErrorCode::NotAllowed,
            format!("unknown field {unknown:?}; an entry has task_id and blueprint_uri"),
        ));
    }
    match fields.get("task_id") {
        None => return Some(error(at("task_id"), ErrorCode::MissingField, "is missing")),
        Some(Value::String(_)) if is_task_id(task_id) => {}
        Some(Value::String(_)) => {
            return Some(error(
                at("task_id"),
                ErrorCode::OutOfRange,
                "must be 1 to 36 ASCII letters, digits, '-' or '_'",
            ));
        }
        Some(_) => return Some(error(at("task_id"), ErrorCode::WrongType, "must be a string")),
    }
    match fields.get("blueprint_uri") {
        None => Some(error(at("blueprint_uri"), ErrorCode::MissingField, "is missing")),
        Some(Value::String(_)) => {
            uri_problem(blueprint_uri).map(|why| error(at("blueprint_uri"), ErrorCode::UnsafePath, why))
        }
        Some(_) => Some(error(at("blueprint_uri"), ErrorCode::WrongType, "must be a string")),
    }
}

/// What is wrong with an entry's task id or blueprint address, for a host that
/// re-checks a guest's answer: the same rules as [`validate_manifest`]'s.
pub fn entry_shape_problem(task_id: &str, blueprint_uri: &str) -> Option<String> {
    if !is_task_id(task_id) {
        return Some(format!("task id {task_id:?} is not 1 to 36 ASCII letters, digits, '-' or '_'"));
    }
    uri_problem(blueprint_uri).map(|why| format!("blueprint_uri {why}"))
}

/// `gs://BUCKET/KEY` with a bucket name of GCS's shape and a key the blueprint's key
/// rules allow, or such a key alone (in the job's own storage).
fn uri_problem(uri: &str) -> Option<String> {
    if uri.len() > MAX_URI_BYTES {
        return Some(format!("is {} bytes long; at most {MAX_URI_BYTES}", uri.len()));
    }
    let key = match uri.strip_prefix("gs://") {
        Some(rest) => {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=222).contains(&bucket.len())
                && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
            if !bucket_ok {
                return Some(format!(
                    "{uri:?} does not name a bucket (3 to 222 lower-case letters, digits, '-', '_', '.')"
                ));
            }
            key
        }
        None => uri,
    };
    crate::key::key_problem(key).map(|why| format!("the blueprint's key {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limits hold at their values exactly: a manifest of 2 MiB and of 10,000 entries
    /// is taken, one byte or entry more refused; an address is measured before it is read.
    #[test]
    fn a_manifest_at_each_limit_is_taken_and_one_more_is_refused() {
        let one = entry("t-1", "gs://bucket/k.json");
        let padded = |bytes: usize| {
            let text = format!("[{one}]");
            format!("{text}{}", " ".repeat(bytes - text.len()))
        };
        assert_eq!(MAX_MANIFEST_BYTES, 2 * 1024 * 1024);
        assert!(validate_manifest(&padded(MAX_MANIFEST_BYTES)).is_ok());
        let refused = validate_manifest(&padded(MAX_MANIFEST_BYTES + 1)).unwrap_err();
        assert_eq!(refused[0].code, ErrorCode::TooLarge);
        let entries = |count: usize| {
            let list: Vec<String> = (0..count).map(|n| entry(&format!("t-{n}"), "gs://bucket/k.json")).collect();
            format!("[{}]", list.join(","))
        };
        assert_eq!(validate_manifest(&entries(MAX_ENTRIES)).map(|found| found.len()), Ok(MAX_ENTRIES));
        assert_eq!(validate_manifest(&entries(MAX_ENTRIES + 1)).unwrap_err()[0].code, ErrorCode::OutOfRange);
        let uri = |bytes: usize| format!("gs://bucket/{}.json", "k".repeat(bytes - "gs://bucket/.json".len()));
        // No valid address reaches 1,300 bytes (a key is at most 1,024): at the limit the
        // key's own rule refuses it, past it the length is refused before anything is read.
        assert_eq!(uri(MAX_URI_BYTES).len(), MAX_URI_BYTES);
        let at_limit = entry_shape_problem("t-1", &uri(MAX_URI_BYTES)).expect("refused");
        assert!(at_limit.contains("the blueprint's key is"), "{at_limit}");
        let too_long = entry_shape_problem("t-1", &uri(MAX_URI_BYTES + 1)).expect("refused");
        assert!(too_long.contains("1301 bytes long; at most 1300"), "{too_long}");
    }

    /// GCS bucket names are 3 to 222 characters: an empty or 1- and 2-character bucket is
    /// refused both by the guest's check and by the host's re-check of what a guest lets
    /// through (both are `entry_shape_problem`).
    #[test]
    fn a_bucket_name_shorter_than_three_characters_is_refused() {
        for uri in ["gs:///k.json", "gs://a/k.json", "gs://ab/k.json"] {
            let problem = entry_shape_problem("t-1", uri);
            assert!(problem.as_deref().is_some_and(|p| p.contains("does not name a bucket")), "{uri}: {problem:?}");
            let refused = validate_manifest(&format!("[{}]", entry("t-1", uri))).unwrap();
            assert_eq!(refused[0].problem.as_ref().map(|p| p.pointer.as_str()), Some("/0/blueprint_uri"), "{uri}");
        }
        assert_eq!(entry_shape_problem("t-1", "gs://abc/k.json"), None, "three characters are a bucket name");
        assert_eq!(entry_shape_problem("t-1", "gs://my-bucket_2.x/k.json"), None, "letters, digits, '-', '_' and '.'");
        assert!(entry_shape_problem("t-1", "gs://My-Bucket/k.json").is_some(), "no upper case");
        let longest = format!("gs://{}/k.json", "b".repeat(222));
        assert_eq!(entry_shape_problem("t-1", &longest), None);
        assert!(entry_shape_problem("t-1", &format!("gs://{}/k.json", "b".repeat(223))).is_some());
    }

    fn entry(task: &str, uri: &str) -> String {
        format!(r#"{{"task_id": "{task}", "blueprint_uri": "{uri}"}}"#)
    }

    #[test]
    fn every_entry_is_checked_and_kept_with_its_problem() {
        let text = format!(
            "[{}, {}, {}, {}, {}, {}, {}, {}]",
            entry("a-1", "gs://bucket/blueprints/a.json"),
            entry("b 2", "gs://bucket/x.json"),
            entry("c-3", "https://evil.example/x.json"),
            entry("d-4", "gs://bucket/../x.json"),
            entry("a-1", "gs://bucket/again.json"),
            r#"{"task_id": "e-5", "blueprint_uri": "gs://bucket/e.json", "extra": 1}"#,
            entry("f-6", "blueprints/f.json"),
            r#"{"task_id": 7, "blueprint_uri": "gs://bucket/g.json"}"#
        );
        let entries = validate_manifest(&text).unwrap();
        let pointers: Vec<Option<&str>> =
            entries.iter().map(|e| e.problem.as_ref().map(|p| p.pointer.as_str())).collect();
        assert_eq!(
            pointers,
            [
                None,
                Some("/1/task_id"),
                Some("/2/blueprint_uri"),
                Some("/3/blueprint_uri"),
                Some("/4/task_id"),
                Some("/5/extra"),
                None,
                Some("/7/task_id")
            ]
        );
        assert_eq!((entries[0].task_id.as_str(), entries[6].blueprint_uri.as_str()), ("a-1", "blueprints/f.json"));
    }

    #[test]
    fn a_document_that_is_not_a_list_of_entries_is_refused_whole() {
        for bad in ["", "{}", "[]", "nonsense", "\"x\""] {
            let errors = validate_manifest(bad).unwrap_err();
            assert_eq!(errors[0].pointer, "", "{bad:?}");
        }
        let many = format!("[{}]", vec![entry("a", "gs://bucket/k.json"); MAX_ENTRIES + 1].join(","));
        assert_eq!(validate_manifest(&many).unwrap_err()[0].code, ErrorCode::OutOfRange);
        assert_eq!(validate_manifest(&" ".repeat(MAX_MANIFEST_BYTES + 1)).unwrap_err()[0].code, ErrorCode::TooLarge);
    }
}
