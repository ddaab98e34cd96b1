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
    /// What the container's memory cgroup holds that it cannot reclaim (processes'
    /// anonymous memory and tmpfs files, unlinked ones included), when the job runs in
    /// a group of its own ([`ContainerGroup`]); else 0.
    pub container: u64,
}

impl Usage {
    /// The larger of what the tree and the files add up to and what the container is
    /// charged: a file unlinked while a child reads it shows only in the latter.
    pub fn total(&self) -> u64 {
        (self.processes + self.files).max(self.container)
    }
}

/// The memory cgroup the job runs in, when it has a limit of its own (Cloud Run's
/// container; `cgrun`): read from `/proc/self/cgroup`, v2 or v1.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerGroup {
    /// `memory.stat` of the group.
    stat: std::path::PathBuf,
    v2: bool,
    pub limit: u64,
}

impl ContainerGroup {
    /// The group, when its limit is at most `largest_limit`: a group with no limit, or a
    /// much larger one, is a machine's or a session's, shared with processes that are
    /// not the job's, and its charge would stop the job for what others hold.
    pub fn find(largest_limit: u64) -> Option<ContainerGroup> {
        let listing = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        Self::from_listing(&listing, Path::new("/sys/fs/cgroup"), largest_limit)
    }

    fn from_listing(listing: &str, root: &Path, largest_limit: u64) -> Option<ContainerGroup> {
        for line in listing.lines() {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let relative = path.trim_start_matches('/');
            let (dir, limit_file, v2) = if controllers.is_empty() {
                (root.join(relative), "memory.max", true)
            } else if controllers.split(',').any(|c| c == "memory") {
                (root.join("memory").join(relative), "memory.limit_in_bytes", false)
            } else {
                continue;
            };
            let Ok(limit) = std::fs::read_to_string(dir.join(limit_file)) else { continue };
            let Ok(limit) = limit.trim().parse::<u64>() else { continue };
            if limit <= largest_limit && dir.join("memory.stat").exists() {
                return Some(ContainerGroup { stat: dir.join("memory.stat"), v2, limit });
            }
        }
        None
    }

    /// Unreclaimable bytes charged to the group now: anonymous memory and tmpfs pages
    /// (page cache of files read is reclaimed before the group is out of memory).
    pub fn unreclaimable(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(&self.stat).ok()?;
        let field = |name: &str| {
            stat.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<u64>().ok())
        };
        if self.v2 {
            Some(field("anon")? + field("shmem")?)
        } else {
            Some(field("total_rss").or_else(|| field("rss"))? + field("total_shmem").or_else(|| field("shmem"))?)
        }
    }
}

/// Measures the tree under this process and the folder `work` (which may be gone).
pub fn measure(work: Option<&Path>) -> Usage {
    let own = std::process::id();
    let host = resident_bytes(own).unwrap_or(0);
    let processes = descendants(own).into_iter().filter_map(resident_bytes).sum::<u64>() + host;
    Usage { processes, host, files: work.map(folder_bytes).unwrap_or(0), container: 0 }
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
    rustix::param::page_size() as u64
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
    fn the_containers_group_is_found_only_with_a_limit_of_the_jobs_size() {
        let root = tempfile::tempdir().unwrap();
        let v2 = root.path().join("job");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "536870912\n").unwrap();
        std::fs::write(v2.join("memory.stat"), "anon 104857600\nfile 900000000\nshmem 52428800\nshmem_thp 0\n")
            .unwrap();
        let group = ContainerGroup::from_listing("0::/job\n", root.path(), 1 << 30).unwrap();
        assert_eq!(group.limit, 512 << 20);
        assert_eq!(group.unreclaimable(), Some(150 << 20), "anon and shmem, not the page cache");
        // A group whose limit is far larger than the job's is shared: not used.
        assert_eq!(ContainerGroup::from_listing("0::/job\n", root.path(), 256 << 20), None);
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        assert_eq!(ContainerGroup::from_listing("0::/job\n", root.path(), 1 << 30), None);
        // v1: the memory controller's own line.
        let v1 = root.path().join("memory/job");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "536870912\n").unwrap();
        std::fs::write(v1.join("memory.stat"), "cache 1\nrss 3\nshmem 4\ntotal_rss 10\ntotal_shmem 20\n").unwrap();
        let group = ContainerGroup::from_listing("12:cpu:/\n7:memory:/job\n", root.path(), 1 << 30).unwrap();
        assert_eq!(group.unreclaimable(), Some(30));
    }

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
