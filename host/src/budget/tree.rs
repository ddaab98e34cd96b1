//! What the job holds right now, as the container's memory limit counts it: the
//! resident memory of this process and of every process below it (read from `/proc`),
//! and the bytes the work folder's files occupy (on Cloud Run, in memory).

use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    /// Resident bytes of the host and its descendants.
    pub processes: u64,
    /// Of which the host process itself.
    pub host: u64,
    /// Allocated bytes of the files in the work folder.
    pub files: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.processes + self.files
    }
}

/// Measures the tree under this process and the folder `work` (which may be gone).
pub fn measure(work: Option<&Path>) -> Usage {
    let own = std::process::id();
    let host = resident_bytes(own).unwrap_or(0);
    let processes = descendants(own).into_iter().filter_map(resident_bytes).sum::<u64>() + host;
    Usage { processes, host, files: work.map(folder_bytes).unwrap_or(0) }
}

/// Bytes the files below `folder` occupy (allocated blocks, so a sparse file counts
/// what it really holds), symlinks not followed. A folder that vanishes counts 0.
pub fn folder_bytes(folder: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => folder_bytes(&entry.path()),
            Ok(metadata) => metadata.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// `VmRSS` of one process, from `/proc/PID/statm` (resident pages).
fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Every process whose chain of parents leads to `root`.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(parent) = parent_of(pid) {
            children.entry(parent).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut pending = vec![root];
    while let Some(pid) = pending.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            pending.push(child);
        }
    }
    found
}

/// The parent pid from `/proc/PID/stat`; the command name in parentheses may hold
/// spaces and parentheses itself, so the fields are read after its last `)`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_and_a_file_are_counted() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::create_dir(folder.path().join("sub")).unwrap();
        std::fs::write(folder.path().join("sub/a"), vec![7u8; 3 * 1024 * 1024]).unwrap();
        assert!(folder_bytes(folder.path()) >= 3 * 1024 * 1024);
        assert_eq!(folder_bytes(&folder.path().join("gone")), 0);

        let before = measure(None);
        assert!(before.host > 1024 * 1024 && before.processes >= before.host);
        // A child that touches 64 MiB shows up in the tree.
        let mut child = std::process::Command::new("python3")
            .args(["-c", "import sys, time; b = bytearray(64 << 20); print(flush=True); time.sleep(30)"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
        let during = measure(Some(folder.path()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(during.processes >= before.processes + 60 * 1024 * 1024, "{before:?} -> {during:?}");
        assert!(during.files >= 3 * 1024 * 1024);
    }
}
