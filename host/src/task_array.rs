//! Many videos in one Cloud Run execution: a task array over a manifest.
//!
//! `BLUEPRINT_MANIFEST_URI` names a JSON list of `{"task_id": ..., "blueprint_uri":
//! "gs://..."}`. Task `CLOUD_RUN_TASK_INDEX` of `CLOUD_RUN_TASK_COUNT` takes entries
//! `index, index + count, ...` and runs each exactly as a single `job` would (its own row,
//! work folder and status), one after another. Cloud Run is the scheduler: nothing here
//! coordinates tasks, which is why every entry is decided by its position alone.
//!
//! The manifest comes from the backend and is checked like a blueprint, in the guest
//! (`validate-manifest`, contract 0.5.0; `br_blueprint::manifest`), and the guest's
//! answer again by the host. A problem with the manifest as a whole fails the task; a
//! problem with one entry fails that entry (its row, when its task id is usable) and
//! the others go on.

use br_blueprint::manifest::ManifestEntry;

use br_engine::exit;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its position in the manifest, for pointers.
    pub position: usize,
    pub task_id: String,
    /// Why the entry cannot run (pointer and message), when it cannot.
    pub problem: Option<(String, String)>,
    pub blueprint_uri: String,
}

/// The guest's checked entries, numbered.
pub fn entries(checked: Vec<ManifestEntry>) -> Vec<Entry> {
    checked
        .into_iter()
        .enumerate()
        .map(|(position, entry)| Entry {
            position,
            task_id: entry.task_id,
            problem: entry.problem.map(|problem| (problem.pointer, problem.message)),
            blueprint_uri: entry.blueprint_uri,
        })
        .collect()
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
    let failed = || codes.iter().copied().filter(|&code| code != exit::OK);
    failed().find(|code| !exit::DETERMINISTIC.contains(code)).or_else(|| failed().next()).unwrap_or(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(count: usize) -> Vec<Entry> {
        let checked = (0..count)
            .map(|k| ManifestEntry {
                task_id: format!("t{k}"),
                blueprint_uri: format!("gs://bucket/b{k}.json"),
                problem: None,
            })
            .collect();
        entries(checked)
    }

    #[test]
    fn tasks_share_the_entries_by_position() {
        let entries = numbered(5);
        let first: Vec<usize> = share(&entries, 0, 2).iter().map(|e| e.position).collect();
        let second: Vec<usize> = share(&entries, 1, 2).iter().map(|e| e.position).collect();
        assert_eq!((first, second), (vec![0, 2, 4], vec![1, 3]));
    }

    #[test]
    fn a_retryable_failure_decides_the_tasks_code() {
        assert_eq!(task_exit(&[exit::OK, exit::OK]), exit::OK);
        assert_eq!(task_exit(&[exit::INVALID_BLUEPRINT, exit::OK]), exit::INVALID_BLUEPRINT);
        assert_eq!(task_exit(&[exit::INVALID_BLUEPRINT, exit::STORAGE]), exit::STORAGE);
    }
}
