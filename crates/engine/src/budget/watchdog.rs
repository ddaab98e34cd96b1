//! Samples what the job holds (processes and work-folder files, [`tree::measure`]) a
//! few times a second, keeps the peaks, and stops the job cleanly when the two
//! together reach [`JobBudget::stop_at`]: the job records a failure instead of being
//! killed by the container's OOM killer.
//!
//! Sampling cannot catch a child that grabs gigabytes between two samples: each child
//! also has a hard limit of its own (`ffmpeg::ChildLimits`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ledger::Ledger;
use super::tree::{self, ContainerGroup, Usage};
use super::{mib, JobBudget, MIB};
use crate::cancel::{Cancel, Stop};

/// How often a job is sampled: often enough to stop a job that grows by tens of MiB per
/// second, cheap enough to go unnoticed (one pass over `/proc`).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// `memcheck` samples faster, so that short FFmpeg steps are seen too.
pub const MEMCHECK_SAMPLE_EVERY: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Peaks {
    /// The highest processes + files seen in one sample.
    pub total: u64,
    pub processes: u64,
    pub host: u64,
    pub files: u64,
    /// The container's unreclaimable charge, where the job has a group of its own.
    pub container: u64,
    pub samples: u64,
}

impl Peaks {
    fn add(&mut self, usage: Usage) {
        self.total = self.total.max(usage.total());
        self.processes = self.processes.max(usage.processes);
        self.host = self.host.max(usage.host);
        self.files = self.files.max(usage.files);
        self.container = self.container.max(usage.container);
        self.samples += 1;
    }

    /// The worst of two records (several runs of one job).
    pub fn merge(self, other: Peaks) -> Peaks {
        Peaks {
            total: self.total.max(other.total),
            processes: self.processes.max(other.processes),
            host: self.host.max(other.host),
            files: self.files.max(other.files),
            container: self.container.max(other.container),
            samples: self.samples + other.samples,
        }
    }

    /// For the job's result, in MiB.
    pub fn figures(self, budget: &JobBudget) -> MemoryFigures {
        MemoryFigures {
            budget_mib: budget.total / MIB,
            peak_total_mib: mib(self.total),
            peak_processes_mib: mib(self.processes),
            peak_host_mib: mib(self.host),
            peak_work_folder_mib: mib(self.files),
            peak_container_mib: mib(self.container),
            samples: self.samples,
        }
    }
}

/// The job's memory as its result reports it (`result.memory`), in MiB.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemoryFigures {
    pub budget_mib: u64,
    /// The largest sum of the process tree and the work folder's files.
    pub peak_total_mib: f64,
    pub peak_processes_mib: f64,
    pub peak_host_mib: f64,
    pub peak_work_folder_mib: f64,
    /// The container's cgroup, when one is found; 0 otherwise.
    pub peak_container_mib: f64,
    pub samples: u64,
}

/// The peaks of one stage or FFmpeg step.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Part {
    pub name: String,
    pub peaks: Peaks,
    /// The host's resident memory at the last sample of the part.
    pub host_at_end: u64,
}

/// What one guest call used.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GuestCall {
    pub call: &'static str,
    pub fuel: u64,
    pub memory_high_water: u64,
}

/// Everything the watchdog saw during one job.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub peaks: Peaks,
    pub parts: Vec<Part>,
    pub guest_calls: Vec<GuestCall>,
}

#[derive(Default)]
struct Shared {
    work: Option<PathBuf>,
    record: Record,
}

/// What one sample reads: the tree and the folder ([`tree::measure`]), the ledger's
/// files (which count those unlinked and still open), and the container's group.
fn sample(work: Option<&Path>, ledger: &Ledger, group: Option<&ContainerGroup>) -> Usage {
    let mut usage = tree::measure(work);
    usage.files = usage.files.max(ledger.files());
    usage.container = group.and_then(ContainerGroup::unreclaimable).unwrap_or(0);
    usage
}

impl Shared {
    fn add(&mut self, usage: Usage) {
        self.record.peaks.add(usage);
        if let Some(part) = self.record.parts.last_mut() {
            part.peaks.add(usage);
            part.host_at_end = usage.host;
        }
    }
}

/// Runs until dropped; then logs the peaks it saw ("memory peaks").
pub struct Watchdog {
    budget: JobBudget,
    shared: Arc<Mutex<Shared>>,
    ledger: Arc<Ledger>,
    group: Option<ContainerGroup>,
    task: tokio::task::JoinHandle<()>,
}

impl Watchdog {
    pub fn start(budget: JobBudget, cancel: Cancel, sample_every: Duration) -> Watchdog {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let ledger = Arc::new(Ledger::of(&budget));
        // A group larger than twice the budget is not the job's own (see ContainerGroup::find).
        let group = ContainerGroup::find(budget.total.saturating_mul(2));
        if let Some(group) = &group {
            tracing::info!(limit_mib = group.limit / MIB, "the container's memory group is read by the watchdog");
        }
        let state = shared.clone();
        let (task_ledger, task_group) = (ledger.clone(), group.clone());
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(sample_every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let work = state.lock().ok().and_then(|s| s.work.clone());
                let (ledger, group) = (task_ledger.clone(), task_group.clone());
                // Reading /proc and the folder is blocking I/O: off the runtime's thread.
                let Ok(usage) =
                    tokio::task::spawn_blocking(move || sample(work.as_deref(), &ledger, group.as_ref())).await
                else {
                    continue;
                };
                if let Ok(mut s) = state.lock() {
                    s.add(usage);
                }
                if usage.total() >= budget.stop_at() {
                    let stage = crate::logging::current_stage().unwrap_or("start");
                    let message = format!(
                        "memory budget exceeded at stage {stage}: {} MiB of {} (processes {} MiB, files {} MiB, container {} MiB)",
                        usage.total() / MIB,
                        budget.total / MIB,
                        usage.processes / MIB,
                        usage.files / MIB,
                        usage.container / MIB
                    );
                    tracing::error!(processes = usage.processes, files = usage.files, "{message}");
                    cancel.stop(Stop::MemoryBudget(message));
                }
            }
        });
        Watchdog { budget, shared, ledger, group, task }
    }

    /// The job's work-folder ledger, which this watchdog counts.
    pub fn ledger(&self) -> Arc<Ledger> {
        self.ledger.clone()
    }

    /// Counts the files of `work` from now on.
    pub fn watch_folder(&self, work: &Path) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.work = Some(work.to_owned());
        }
    }

    /// Starts a new part of the record (a stage or a step), measured at its first moment
    /// so that no part is too short to be seen.
    pub fn enter(&self, name: &str) {
        let Ok(mut shared) = self.shared.lock() else { return };
        let usage = sample(shared.work.as_deref(), &self.ledger, self.group.as_ref());
        shared.add(usage);
        shared.record.parts.push(Part { name: name.to_owned(), ..Part::default() });
        shared.add(usage);
    }

    pub fn guest_call(&self, call: &'static str, report: &br_sandbox::CallReport) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.record.guest_calls.push(GuestCall {
                call,
                fuel: report.fuel_used,
                memory_high_water: report.memory_high_water,
            });
        }
    }

    pub fn peaks(&self) -> Peaks {
        self.shared.lock().map(|s| s.record.peaks).unwrap_or_default()
    }

    pub fn record(&self) -> Record {
        self.shared.lock().map(|s| s.record.clone()).unwrap_or_default()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.task.abort();
        let peaks = self.peaks();
        tracing::info!(
            budget_mib = self.budget.total / MIB,
            peak_total_mib = mib(peaks.total),
            peak_processes_mib = mib(peaks.processes),
            peak_host_mib = mib(peaks.host),
            peak_work_folder_mib = mib(peaks.files),
            samples = peaks.samples,
            "memory peaks"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A concat part unlinked while the join reads it shows under no name in the folder,
    /// but its pages are still charged: the ledger keeps it until the join ends.
    #[test]
    fn a_file_unlinked_while_open_still_counts() {
        let folder = tempfile::tempdir().unwrap();
        let part = folder.path().join("temp-00001.nut");
        std::fs::write(&part, vec![1u8; 4 * MIB as usize]).unwrap();
        let ledger = Ledger::new(448 * MIB);
        ledger.charge_as_found(&part);
        let open = std::fs::File::open(&part).unwrap();
        std::fs::remove_file(&part).unwrap();
        assert_eq!(tree::folder_bytes(folder.path()), 0, "no name shows it");
        let usage = sample(Some(folder.path()), &ledger, None);
        assert!(usage.files >= 4 * MIB, "{usage:?}");
        drop(open);
        ledger.release(&part);
        assert_eq!(sample(Some(folder.path()), &ledger, None).files, 0);
    }

    #[tokio::test]
    async fn a_tree_past_the_budget_is_stopped_with_the_reason() {
        // A budget of 96 MiB with nothing kept free: this test process and a child that
        // touches 128 MiB pass it.
        let budget = JobBudget { total: 96 * MIB, host: 0, margin: 0, shared: 96 * MIB, guest: 0 };
        let cancel = Cancel::never();
        let watchdog = Watchdog::start(budget, cancel.clone(), Duration::from_millis(20));
        let folder = tempfile::tempdir().unwrap();
        watchdog.watch_folder(folder.path());
        watchdog.enter("encode");
        let mut child = tokio::process::Command::new("python3")
            .args(["-c", "import time; b = bytearray(128 << 20); time.sleep(30)"])
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stop =
            tokio::time::timeout(Duration::from_secs(10), cancel.cancelled()).await.expect("the watchdog did not fire");
        child.kill().await.unwrap();
        let Stop::MemoryBudget(message) = stop else { panic!("{stop:?}") };
        assert!(message.starts_with("memory budget exceeded at stage"), "{message}");
        assert!(message.contains("of 96 (processes"), "{message}");
        let record = watchdog.record();
        assert!(record.peaks.total >= 96 * MIB, "{record:?}");
        assert_eq!(record.parts.last().map(|p| p.name.as_str()), Some("encode"));
    }
}
