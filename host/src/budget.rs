//! The job runs in a container with a fixed memory budget (Cloud Run: 512 MiB). Every
//! memory cap the host sets is derived from it here, so that the parts add up.
//!
//! During a guest call the process holds its own baseline, the guest's linear memory,
//! and, once the call returns, a lifted copy of the answer (bounded by the same cap,
//! since it was read out of that memory). The guest's store is dropped before any
//! FFmpeg child starts, so FFmpeg may use what the guest used.

use thiserror::Error;

pub const MIB: u64 = 1024 * 1024;
/// The container's memory limit.
pub const DEFAULT_JOB_MEMORY_BUDGET: u64 = 512 * MIB;
/// The host process itself: runtime, wasmtime engine, compiled guest code, buffers.
pub const HOST_BASELINE: u64 = 64 * MIB;
/// The guest's default share.
pub const DEFAULT_GUEST_MEMORY: u64 = 64 * MIB;
/// A guest needs at least a few pages to start.
pub const MIN_GUEST_MEMORY: u64 = 2 * MIB;

#[derive(Debug, Clone, Copy)]
pub struct MemoryBudget {
    pub guest: u64,
}

#[derive(Debug, Error, PartialEq)]
pub enum BudgetError {
    #[error("the job memory budget of {} MiB is smaller than the host's baseline of {} MiB", job / MIB, HOST_BASELINE / MIB)]
    JobTooSmall { job: u64 },
    #[error(
        "a guest memory cap of {} MiB does not fit the job budget of {} MiB: at most {} MiB \
         (the host keeps {} MiB, and a guest's answer is copied out of its memory, so the cap counts twice)",
        guest / MIB, job / MIB, max / MIB, HOST_BASELINE / MIB
    )]
    GuestTooLarge { guest: u64, job: u64, max: u64 },
    #[error("a guest memory cap of {} MiB is too small; at least {} MiB", guest / MIB, MIN_GUEST_MEMORY / MIB)]
    GuestTooSmall { guest: u64 },
}

impl MemoryBudget {
    pub fn new(job: u64, guest: u64) -> Result<MemoryBudget, BudgetError> {
        if job <= HOST_BASELINE {
            return Err(BudgetError::JobTooSmall { job });
        }
        let max = Self::max_guest(job);
        if guest > max {
            return Err(BudgetError::GuestTooLarge { guest, job, max });
        }
        if guest < MIN_GUEST_MEMORY {
            return Err(BudgetError::GuestTooSmall { guest });
        }
        Ok(MemoryBudget { guest })
    }

    pub fn max_guest(job: u64) -> u64 {
        job.saturating_sub(HOST_BASELINE) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_fits() {
        let budget = MemoryBudget::new(DEFAULT_JOB_MEMORY_BUDGET, DEFAULT_GUEST_MEMORY).unwrap();
        assert_eq!(budget.guest, 64 * MIB);
        assert_eq!(MemoryBudget::max_guest(DEFAULT_JOB_MEMORY_BUDGET), 224 * MIB);
    }

    #[test]
    fn oversized_guest_is_refused() {
        let error = MemoryBudget::new(512 * MIB, 300 * MIB).unwrap_err();
        assert!(matches!(error, BudgetError::GuestTooLarge { max, .. } if max == 224 * MIB));
        assert!(error.to_string().contains("at most 224 MiB"));
        assert!(MemoryBudget::new(32 * MIB, 8 * MIB).is_err());
        assert!(MemoryBudget::new(512 * MIB, MIB).is_err());
    }
}
