//! A real memory limit for a process tree, the way Cloud Run limits a container: a
//! memory cgroup (v2 where its memory controller is enabled, else v1), in which the
//! pages of files the tree writes to a tmpfs (`/dev/shm`) are charged too, as Cloud
//! Run charges its in-memory `/tmp`. Needs root; where no group can be made, `create`
//! says why and the caller skips with that reason printed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const V1_ROOT: &str = "/sys/fs/cgroup/memory";
const V2_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Version {
    V1,
    V2,
}

pub struct MemoryCgroup {
    dir: PathBuf,
    version: Version,
    pub limit_mib: u64,
}

/// What the group saw, read after the command ended.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// The group's peak charge: processes and tmpfs files (and reclaimable page cache).
    pub peak_mib: u64,
    /// Processes the kernel's OOM killer killed in the group.
    pub oom_kills: u64,
}

impl MemoryCgroup {
    pub fn create(limit_mib: u64) -> Result<MemoryCgroup, String> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let name = format!("br-test-{}-{}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed));
        let v2_controllers =
            std::fs::read_to_string(Path::new(V2_ROOT).join("cgroup.subtree_control")).unwrap_or_default();
        let (dir, version) = if v2_controllers.split_whitespace().any(|c| c == "memory") {
            (Path::new(V2_ROOT).join(name), Version::V2)
        } else if Path::new(V1_ROOT).join("memory.limit_in_bytes").exists() {
            (Path::new(V1_ROOT).join(name), Version::V1)
        } else {
            return Err("no memory cgroup controller (v2 or v1) is available".into());
        };
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create the memory cgroup {}: {e}", dir.display()))?;
        let group = MemoryCgroup { dir, version, limit_mib };
        let bytes = (limit_mib * 1024 * 1024).to_string();
        match version {
            Version::V1 => {
                group.write("memory.limit_in_bytes", &bytes)?;
                // Without swap accounting this file is absent; there is no swap either.
                let _ = group.write("memory.memsw.limit_in_bytes", &bytes);
            }
            Version::V2 => {
                group.write("memory.max", &bytes)?;
                let _ = group.write("memory.swap.max", "0");
            }
        }
        Ok(group)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        std::fs::write(self.dir.join(file), value).map_err(|e| format!("{}/{file}: {e}", self.dir.display()))
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    /// A command that runs `program` inside the group (a shell moves itself in, then
    /// `exec`s it); add the program's arguments and environment to it.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("sh");
        command.arg("-c").arg("echo $$ > \"$0\" && exec \"$@\"").arg(self.dir.join("cgroup.procs")).arg(program);
        command
    }

    pub fn usage(&self) -> Usage {
        let field = |text: &str, name: &str| {
            text.lines().find_map(|line| line.strip_prefix(name)?.trim().parse::<u64>().ok()).unwrap_or(0)
        };
        let (peak, oom_kills) = match self.version {
            Version::V1 => (
                self.read("memory.max_usage_in_bytes").trim().parse().unwrap_or(0),
                field(&self.read("memory.oom_control"), "oom_kill "),
            ),
            Version::V2 => {
                (self.read("memory.peak").trim().parse().unwrap_or(0), field(&self.read("memory.events"), "oom_kill "))
            }
        };
        Usage { peak_mib: peak / (1024 * 1024), oom_kills }
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Pages still charged (files left on a tmpfs) keep a v1 group busy.
        if self.version == Version::V1 {
            let _ = self.write("memory.force_empty", "0");
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("cgroup {} kept", self.dir.display());
    }
}
