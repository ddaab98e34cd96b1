//! Many videos in one Cloud Run execution: a task array over a manifest.
//!
//! `BLUEPRINT_MANIFEST_URI` names a JSON list of `{"task_id": ..., "blueprint_uri":
//! "gs://..."}`. Task `CLOUD_RUN_TASK_INDEX` of `CLOUD_RUN_TASK_COUNT` takes entries
//! `index, index + count, ...` and runs each exactly as a single `job` would (its own row,
//! work folder and status), one after another. Cloud Run is the scheduler: nothing here
//! coordinates tasks, which is why every entry is decided by its position alone.
//!
//! The manifest comes from the backend and is read like a blueprint: bounded in size
//! and count, every entry checked, each problem with its JSON pointer. A problem with
//! the manifest as a whole fails the task; a problem with one entry fails that entry
//! (its row, when its task id is usable) and the others go on.

use std::collections::HashSet;

use serde_json::Value;

use crate::config::task_id_problem;

pub const MANIFEST_ENV: &str = "BLUEPRINT_MANIFEST_URI";
/// 10,000 entries (Cloud Run's most tasks per execution, one entry each) of ~150 bytes.
pub const MAX_MANIFEST_BYTES: usize = 2 * 1024 * 1024;
pub const MAX_ENTRIES: usize = 10_000;
/// `gs://` + a bucket (at most 222) + `/` + an object name (at most 1,024 bytes).
const MAX_URI_BYTES: usize = 1_300;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its position in the manifest, for pointers.
    pub position: usize,
    pub task_id: String,
    /// Why the entry cannot run (pointer and message), when it cannot.
    pub problem: Option<(String, String)>,
    pub blueprint_uri: String,
}

/// The manifest as a whole is unusable: the task fails and no row is touched.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct ManifestError {
    pub pointer: String,
    pub message: String,
}

fn whole(message: impl Into<String>) -> ManifestError {
    ManifestError { pointer: String::new(), message: message.into() }
}

/// Reads the manifest. Entries with a problem are kept (with it), so their rows can say
/// why they did not run; an entry whose task id is itself unusable has no row to say it.
pub fn parse(text: &str) -> Result<Vec<Entry>, ManifestError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(whole(format!("the manifest is {} bytes; at most {MAX_MANIFEST_BYTES}", text.len())));
    }
    let document: Value = serde_json::from_str(text).map_err(|e| whole(format!("not JSON: {e}")))?;
    let Value::Array(items) = document else {
        return Err(whole("must be a JSON list of {\"task_id\", \"blueprint_uri\"} objects"));
    };
    if items.is_empty() || items.len() > MAX_ENTRIES {
        return Err(whole(format!("has {} entries; 1 to {MAX_ENTRIES}", items.len())));
    }
    let mut seen = HashSet::new();
    let entries = items
        .iter()
        .enumerate()
        .map(|(position, item)| {
            let text = |field: &str| item.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
            let (task_id, blueprint_uri) = (text("task_id"), text("blueprint_uri"));
            let problem = entry_problem(item, &task_id, &blueprint_uri).map(|(field, message)| (format!("/{position}/{field}"), message));
            // A second entry for the same task would run it twice at once.
            let problem = problem.or_else(|| {
                (!seen.insert(task_id.clone())).then(|| (format!("/{position}/task_id"), format!("task '{task_id}' has an earlier entry")))
            });
            Entry { position, task_id, problem, blueprint_uri }
        })
        .collect();
    Ok(entries)
}

/// The field at fault and why, for one entry.
fn entry_problem(item: &Value, task_id: &str, blueprint_uri: &str) -> Option<(&'static str, String)> {
    let Value::Object(fields) = item else {
        return Some(("", "must be an object with task_id and blueprint_uri".into()));
    };
    if let Some(unknown) = fields.keys().find(|key| !["task_id", "blueprint_uri"].contains(&key.as_str())) {
        return Some(("", format!("has the unknown field {unknown:?}")));
    }
    if !fields.get("task_id").is_some_and(Value::is_string) {
        return Some(("task_id", "is missing or not a string".into()));
    }
    if let Some(message) = task_id_problem(task_id) {
        return Some(("task_id", message));
    }
    if !fields.get("blueprint_uri").is_some_and(Value::is_string) {
        return Some(("blueprint_uri", "is missing or not a string".into()));
    }
    let valid_uri = blueprint_uri.len() <= MAX_URI_BYTES
        && crate::storage::parse_gs_uri(blueprint_uri).is_some_and(|(_, key)| br_blueprint::key::key_problem(key).is_none());
    if !valid_uri {
        return Some(("blueprint_uri", "must be a gs://BUCKET/KEY address of a blueprint, with a key the blueprint rules allow".into()));
    }
    None
}

/// The entries task `index` of `count` runs.
pub fn share(entries: &[Entry], index: usize, count: usize) -> Vec<&Entry> {
    entries.iter().filter(|entry| entry.position % count.max(1) == index).collect()
}

/// The task's exit code from its entries' codes: 0 when every entry succeeded (or was
/// done already). Otherwise a code Cloud Run's retry can do something about comes first
/// (storage, FFmpeg, database, signal), so the task is retried; a retry skips the
/// entries that are completed or failed for good.
pub fn task_exit(codes: &[u8]) -> u8 {
    let failed = || codes.iter().copied().filter(|&code| code != crate::exit::OK);
    failed().find(|code| !crate::run::DETERMINISTIC_EXITS.contains(code)).or_else(|| failed().next()).unwrap_or(crate::exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(task: &str, uri: &str) -> String {
        format!(r#"{{"task_id": "{task}", "blueprint_uri": "{uri}"}}"#)
    }

    #[test]
    fn every_entry_is_checked_and_kept_with_its_problem() {
        let text = format!(
            "[{}, {}, {}, {}, {}, {}]",
            entry("a-1", "gs://b/blueprints/a.json"),
            entry("b 2", "gs://b/x.json"),
            entry("c-3", "https://evil/x.json"),
            entry("d-4", "gs://b/../x.json"),
            entry("a-1", "gs://b/again.json"),
            r#"{"task_id": "e-5", "blueprint_uri": "gs://b/e.json", "extra": 1}"#
        );
        let entries = parse(&text).unwrap();
        let problems: Vec<Option<&str>> = entries.iter().map(|e| e.problem.as_ref().map(|(p, _)| p.as_str())).collect();
        assert_eq!(problems, [None, Some("/1/task_id"), Some("/2/blueprint_uri"), Some("/3/blueprint_uri"), Some("/4/task_id"), Some("/5/")]);
        assert_eq!(entries[0].task_id, "a-1");
    }

    #[test]
    fn a_manifest_that_is_not_a_list_of_entries_fails_as_a_whole() {
        for bad in ["", "{}", "[]", "nonsense"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let huge = format!("[{}]", vec![entry("a", "gs://b/k.json"); MAX_ENTRIES + 1].join(","));
        assert!(parse(&huge).is_err());
        assert!(parse(&" ".repeat(MAX_MANIFEST_BYTES + 1)).unwrap_err().message.contains("bytes"));
    }

    #[test]
    fn tasks_share_the_entries_by_position() {
        let text = format!("[{}]", (0..5).map(|k| entry(&format!("t{k}"), "gs://b/k.json")).collect::<Vec<_>>().join(","));
        let entries = parse(&text).unwrap();
        let first: Vec<usize> = share(&entries, 0, 2).iter().map(|e| e.position).collect();
        let second: Vec<usize> = share(&entries, 1, 2).iter().map(|e| e.position).collect();
        assert_eq!((first, second), (vec![0, 2, 4], vec![1, 3]));
    }

    #[test]
    fn a_retryable_failure_decides_the_tasks_code() {
        use crate::exit;
        assert_eq!(task_exit(&[exit::OK, exit::OK]), exit::OK);
        assert_eq!(task_exit(&[exit::INVALID_BLUEPRINT, exit::OK]), exit::INVALID_BLUEPRINT);
        assert_eq!(task_exit(&[exit::INVALID_BLUEPRINT, exit::STORAGE]), exit::STORAGE);
    }
}
