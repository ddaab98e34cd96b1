//! One memory budget for the whole job: the container's limit (Cloud Run: 512 MiB),
//! which counts the processes **and** the files of the in-memory `/tmp` that holds the
//! work folder. Every limit the host sets is derived from it here, so the parts add up.
//!
//! The split:
//! - `host`: this process (runtime, wasmtime engine, compiled guest code, buffers);
//! - `margin`: kept free for what the container is charged besides (page tables,
//!   kernel buffers, the FFmpeg binaries' pages);
//! - `shared`: the rest, which the work folder's files and the FFmpeg/ffprobe children
//!   share. Every byte of the work folder is charged in the [`ledger`] before it is
//!   written; each child's memory and file limits are its share of what the ledger
//!   leaves (`schedule`), and the watchdog
//!   ([`watchdog`]) stops the job cleanly when processes and files together come near
//!   the total, so the container is never OOM-killed;
//! - the guest: its linear memory cap, counted twice during a call (its answer is copied
//!   out of that memory, and the sandbox caps that copy at the cap too:
//!   `br_sandbox::hostcall_fuel`). Guest calls and FFmpeg children take turns (the guest's
//!   store is dropped before any child starts), so the guest's share comes out of `shared`.

pub mod estimate;
pub mod ledger;
pub mod tree;
pub mod watchdog;

use thiserror::Error;

pub const MIB: u64 = 1024 * 1024;

/// Bytes as MiB with one decimal, for reports and logs.
pub fn mib(bytes: u64) -> f64 {
    (bytes as f64 / MIB as f64 * 10.0).round() / 10.0
}
/// The container's memory limit.
pub const DEFAULT_JOB_MEMORY_BUDGET: u64 = 512 * MIB;
/// The host process itself. Measured: 16 MiB in a release build during a 22-move job,
/// 30-50 MiB in a debug build (its store comes on top of a guest's call, capped separately).
pub const HOST_RESERVE: u64 = 48 * MIB;
/// Kept free below the container's limit.
pub const MARGIN: u64 = 16 * MIB;
/// The guest's default cap.
pub const DEFAULT_GUEST_MEMORY: u64 = 64 * MIB;
/// A guest needs at least a few pages to start.
pub const MIN_GUEST_MEMORY: u64 = 2 * MIB;
/// Below this, children and files together cannot make even a small video.
pub const MIN_SHARED: u64 = 96 * MIB;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct JobBudget {
    pub total: u64,
    pub host: u64,
    pub margin: u64,
    /// Work-folder files and FFmpeg children together.
    pub shared: u64,
    /// The guest's linear-memory cap (held twice during a call, out of `shared`).
    pub guest: u64,
}

#[derive(Debug, Error, PartialEq)]
pub enum BudgetError {
    #[error(
        "a job memory budget of {} MiB leaves {} MiB for FFmpeg and the work folder (the host keeps {} MiB and {} MiB \
         stay free); at least {} MiB are needed, so the budget must be at least {} MiB",
        job / MIB, shared / MIB, HOST_RESERVE / MIB, MARGIN / MIB, MIN_SHARED / MIB, (HOST_RESERVE + MARGIN + MIN_SHARED) / MIB
    )]
    JobTooSmall { job: u64, shared: u64 },
    #[error(
        "a guest memory cap of {} MiB does not fit the job budget of {} MiB: at most {} MiB \
         (the host keeps {} MiB, {} MiB stay free, and a guest's answer is copied out of its memory, so the cap counts twice)",
        guest / MIB, job / MIB, max / MIB, HOST_RESERVE / MIB, MARGIN / MIB
    )]
    GuestTooLarge { guest: u64, job: u64, max: u64 },
    #[error("a guest memory cap of {} MiB is too small; at least {} MiB", guest / MIB, MIN_GUEST_MEMORY / MIB)]
    GuestTooSmall { guest: u64 },
}

impl BudgetError {
    /// The setting to change.
    pub fn variable(&self) -> &'static str {
        match self {
            BudgetError::JobTooSmall { .. } => "JOB_MEMORY_MIB",
            BudgetError::GuestTooLarge { .. } | BudgetError::GuestTooSmall { .. } => "GUEST_MEMORY_MIB",
        }
    }
}

impl JobBudget {
    pub fn new(total: u64, guest: u64) -> Result<JobBudget, BudgetError> {
        let shared = total.saturating_sub(HOST_RESERVE + MARGIN);
        if shared < MIN_SHARED {
            return Err(BudgetError::JobTooSmall { job: total, shared });
        }
        let max = Self::max_guest(total);
        if guest > max {
            return Err(BudgetError::GuestTooLarge { guest, job: total, max });
        }
        if guest < MIN_GUEST_MEMORY {
            return Err(BudgetError::GuestTooSmall { guest });
        }
        Ok(JobBudget { total, host: HOST_RESERVE, margin: MARGIN, shared, guest })
    }

    pub fn max_guest(total: u64) -> u64 {
        total.saturating_sub(HOST_RESERVE + MARGIN) / 2
    }

    /// Above this, processes and files together are stopped by the watchdog: the
    /// margin is what is left for the kernel's own charges.
    pub fn stop_at(&self) -> u64 {
        self.total - self.margin
    }

    /// Logged once at start (`--log-format text` makes it one readable line).
    pub fn log(&self) {
        tracing::info!(
            total_mib = self.total / MIB,
            host_mib = self.host / MIB,
            margin_mib = self.margin / MIB,
            ffmpeg_and_work_folder_mib = self.shared / MIB,
            guest_cap_mib = self.guest / MIB,
            "memory budget: {} MiB = host {} + FFmpeg children and work-folder files {} (each child is limited to what \
             the files leave; the guest, {} MiB counted twice, runs only while no child does) + {} kept free",
            self.total / MIB,
            self.host / MIB,
            self.shared / MIB,
            self.guest / MIB,
            self.margin / MIB,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_split_adds_up() {
        let budget = JobBudget::new(DEFAULT_JOB_MEMORY_BUDGET, DEFAULT_GUEST_MEMORY).unwrap();
        assert_eq!(budget.guest, 64 * MIB);
        assert_eq!(budget.shared, 448 * MIB);
        assert_eq!(budget.host + budget.margin + budget.shared, budget.total);
        assert_eq!(JobBudget::max_guest(DEFAULT_JOB_MEMORY_BUDGET), 224 * MIB);
    }

    #[test]
    fn the_watchdog_stops_above_the_margin() {
        let budget = JobBudget::new(512 * MIB, 64 * MIB).unwrap();
        assert_eq!(budget.stop_at(), 496 * MIB);
    }

    #[test]
    fn parts_that_cannot_fit_are_refused() {
        let error = JobBudget::new(512 * MIB, 300 * MIB).unwrap_err();
        assert!(matches!(error, BudgetError::GuestTooLarge { max, .. } if max == 224 * MIB));
        assert!(error.to_string().contains("at most 224 MiB"));
        assert_eq!(error.variable(), "GUEST_MEMORY_MIB");
        let error = JobBudget::new(128 * MIB, 8 * MIB).unwrap_err();
        assert_eq!(error.variable(), "JOB_MEMORY_MIB");
        assert!(error.to_string().contains("at least 160 MiB"), "{error}");
        assert!(JobBudget::new(160 * MIB, 8 * MIB).is_ok());
        assert!(JobBudget::new(512 * MIB, MIB).is_err());
    }
}
