//! The work folder's bytes, charged before they are written.
//!
//! On Cloud Run the work folder is an in-memory `/tmp`: every byte written there is
//! memory the container is charged, and a local copy writes a gigabyte a second, far
//! faster than any sampling can see. So nothing is written there unaccounted:
//! - a fetch reserves the object's declared size before its first byte
//!   ([`Ledger::reserve`]): refused when it can never fit, waiting while it does not fit
//!   now, and held to what it reserved ([`Gate`]);
//! - a staged file stays charged, under its path, until it is removed; a file unlinked
//!   while a child still reads it (the join's parts) stays charged until that child
//!   exits, because its pages do;
//! - an FFmpeg child's files are bounded by its `RLIMIT_FSIZE`, a share of what the
//!   ledger leaves (see `schedule` and `ffmpeg`), and charged at their real size when
//!   the child ends.
//!
//! The watchdog adds the ledger's files to what it measures, so a file no name shows
//! still counts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{JobBudget, MIB};

/// Why a reservation cannot be had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} MiB is larger than the {} MiB a job can stage (JOB_MEMORY_MIB)", bytes.div_ceil(MIB), ceiling / MIB)]
pub struct TooLarge {
    pub bytes: u64,
    pub ceiling: u64,
}

#[derive(Debug, Default)]
struct Charges {
    /// Files in the work folder (or unlinked and still open), by path.
    files: HashMap<PathBuf, u64>,
    /// Reserved for writes under way (fetches).
    reserved: u64,
}

impl Charges {
    fn files(&self) -> u64 {
        self.files.values().sum()
    }
}

/// One job's ledger: `capacity` is the budget's shared part (work-folder files and the
/// FFmpeg children together); what the files leave is what the children may have.
#[derive(Debug)]
pub struct Ledger {
    capacity: u64,
    charges: Mutex<Charges>,
    changed: tokio::sync::Notify,
}

impl Ledger {
    pub fn new(capacity: u64) -> Ledger {
        Ledger { capacity, charges: Mutex::new(Charges::default()), changed: tokio::sync::Notify::new() }
    }

    pub fn of(budget: &JobBudget) -> Ledger {
        Ledger::new(budget.shared)
    }

    fn charges(&self) -> std::sync::MutexGuard<'_, Charges> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.charges.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes the files hold, unlinked ones included.
    pub fn files(&self) -> u64 {
        self.charges().files()
    }

    /// What neither files nor reservations hold: the children's room.
    pub fn free(&self) -> u64 {
        let charges = self.charges();
        self.capacity.saturating_sub(charges.files() + charges.reserved)
    }

    /// Reserves `bytes` for a write, keeping `keep_free` for the children that run
    /// meanwhile (probes during the fetch). Refused at once when `bytes` is more than
    /// `ceiling` (what a job can ever stage of one object: see [`Ledger::ceiling`]);
    /// otherwise waits until the files and other reservations leave room. Dropping the
    /// future while it waits reserves nothing.
    pub async fn reserve(&self, bytes: u64, keep_free: u64, ceiling: u64) -> Result<Reservation<'_>, TooLarge> {
        let ceiling = ceiling.min(self.capacity.saturating_sub(keep_free));
        if bytes > ceiling {
            return Err(TooLarge { bytes, ceiling });
        }
        loop {
            // Registered before the check, so a release between the check and the wait is seen.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut charges = self.charges();
                if charges.files() + charges.reserved + bytes + keep_free <= self.capacity {
                    charges.reserved += bytes;
                    return Ok(Reservation { ledger: self, bytes });
                }
            }
            changed.await;
        }
    }

    /// The largest object a job may stage while `kept` bytes of earlier inputs may stay
    /// and `keep_free` is kept for children: beyond it a reservation could wait for ever.
    pub fn ceiling(&self, keep_free: u64, kept: u64) -> u64 {
        self.capacity.saturating_sub(keep_free + kept)
    }

    /// Charges `path` at `bytes` (replacing an earlier charge of it) without waiting:
    /// for what is already inside a share the caller holds (a child's output, an input
    /// staged within its reader's share).
    pub fn charge(&self, path: &Path, bytes: u64) {
        self.charges().files.insert(path.to_owned(), bytes);
        self.changed.notify_waiters();
    }

    /// Charges `path` at its allocated size on disk now (zero when it is gone).
    pub fn charge_as_found(&self, path: &Path) {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(metadata) => self.charge(path, (metadata.blocks() * 512).max(metadata.len())),
            Err(_) => self.release(path),
        }
    }

    /// The file at `path` is gone and no process holds it open.
    pub fn release(&self, path: &Path) {
        if self.charges().files.remove(path).is_some() {
            self.changed.notify_waiters();
        }
    }

    /// Removes `path` and its charge (a file a child may still hold open must wait for
    /// [`Ledger::release`] after that child ends: use [`crate::files::remove_if_present`]).
    pub fn remove(&self, path: &Path) {
        crate::files::remove_if_present(path);
        self.release(path);
    }

    /// Releases every file charged below `folder` (a folder that is being removed).
    pub fn release_under(&self, folder: &Path) {
        self.charges().files.retain(|path, _| !path.starts_with(folder));
        self.changed.notify_waiters();
    }

    pub fn charged(&self, path: &Path) -> Option<u64> {
        self.charges().files.get(path).copied()
    }
}

/// Bytes reserved for a write under way; returned when dropped unless turned into the
/// written file's charge.
#[derive(Debug)]
pub struct Reservation<'l> {
    ledger: &'l Ledger,
    bytes: u64,
}

impl Reservation<'_> {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The write is done: `path` is charged at what was written instead.
    #[cfg(test)]
    pub fn into_file(self, path: &Path, written: u64) {
        self.ledger.charge(path, written);
        // Drop returns the reservation.
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        {
            let mut charges = self.ledger.charges();
            charges.reserved = charges.reserved.saturating_sub(self.bytes);
        }
        self.ledger.changed.notify_waiters();
    }
}

/// A fetch's admission into the work folder: the storage calls [`Gate::admit`] with the
/// object's declared size before writing anything and writes no more than it returns.
pub trait Gate: Sync {
    fn admit<'a>(
        &'a self,
        declared: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, TooLarge>> + Send + 'a>>;
}

/// For copies outside any job (`bench-fetch`, tests): anything is admitted.
pub struct Unbounded;

impl Gate for Unbounded {
    fn admit<'a>(
        &'a self,
        declared: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, TooLarge>> + Send + 'a>> {
        Box::pin(async move { Ok(declared) })
    }
}

/// A gate that holds at most `limit` bytes, reserving nothing: for a write inside a
/// share already held (an input fetched again within its reader's share).
pub struct AtMost(pub u64);

impl Gate for AtMost {
    fn admit<'a>(
        &'a self,
        declared: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, TooLarge>> + Send + 'a>> {
        let limit = self.0;
        Box::pin(async move {
            if declared > limit {
                Err(TooLarge { bytes: declared, ceiling: limit })
            } else {
                Ok(declared)
            }
        })
    }
}

/// A gate that reserves in a ledger: one per fetch. A retried download asks again with
/// the same size and keeps its reservation.
pub struct Reserving<'l> {
    ledger: &'l Ledger,
    keep_free: u64,
    ceiling: u64,
    held: Mutex<Option<Reservation<'l>>>,
}

impl<'l> Reserving<'l> {
    pub fn new(ledger: &'l Ledger, keep_free: u64, ceiling: u64) -> Reserving<'l> {
        Reserving { ledger, keep_free, ceiling, held: Mutex::new(None) }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Reservation<'l>>> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The fetch wrote `path`: it is charged at its real size, the reservation returned.
    pub fn into_file(self, path: &Path) {
        let reservation = self.held().take();
        self.ledger.charge_as_found(path);
        drop(reservation);
    }
}

impl Gate for Reserving<'_> {
    fn admit<'a>(
        &'a self,
        declared: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, TooLarge>> + Send + 'a>> {
        Box::pin(async move {
            if self.held().as_ref().is_some_and(|held| held.bytes() >= declared) {
                return Ok(declared);
            }
            // A larger size on a retry (the object was replaced): the old one goes first.
            drop(self.held().take());
            let reservation = self.ledger.reserve(declared, self.keep_free, self.ceiling).await?;
            *self.held() = Some(reservation);
            Ok(declared)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_object_that_can_never_fit_is_refused_at_once() {
        let ledger = Ledger::new(448 * MIB);
        let error = ledger.reserve(600 * MIB, 96 * MIB, u64::MAX).await.unwrap_err();
        assert_eq!(error, TooLarge { bytes: 600 * MIB, ceiling: 352 * MIB });
        assert!(error.to_string().contains("600 MiB is larger than the 352 MiB a job can stage"), "{error}");
        // Exactly the ceiling fits; one byte more does not.
        let ceiling = ledger.ceiling(96 * MIB, 112 * MIB);
        assert_eq!(ceiling, 240 * MIB);
        assert!(ledger.reserve(ceiling, 96 * MIB, ceiling).await.is_ok());
        assert!(ledger.reserve(ceiling + 1, 96 * MIB, ceiling).await.is_err());
    }

    #[tokio::test]
    async fn a_reservation_that_fits_later_waits_for_a_release() {
        let ledger = Ledger::new(100 * MIB);
        let first = ledger.reserve(60 * MIB, 0, u64::MAX).await.unwrap();
        assert_eq!(ledger.free(), 40 * MIB);
        // 40 MiB are free: 41 must wait.
        let waiting = tokio::time::timeout(Duration::from_millis(50), ledger.reserve(41 * MIB, 0, u64::MAX)).await;
        assert!(waiting.is_err(), "it should wait");
        assert_eq!(ledger.free(), 40 * MIB, "a dropped wait reserves nothing");
        let second = async { ledger.reserve(41 * MIB, 0, u64::MAX).await.unwrap().bytes() };
        let release = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            first.into_file(Path::new("/w/a"), 30 * MIB);
        };
        let (bytes, ()) =
            tokio::time::timeout(Duration::from_secs(2), async { tokio::join!(second, release) }).await.unwrap();
        assert_eq!(bytes, 41 * MIB);
        assert_eq!(ledger.files(), 30 * MIB, "the file is charged at what was written");
        assert_eq!(ledger.free(), 70 * MIB, "the second reservation went when dropped");
    }

    #[tokio::test]
    async fn a_file_stays_charged_until_released_and_a_charge_replaces_the_last() {
        let ledger = Ledger::new(100 * MIB);
        let path = Path::new("/w/part");
        ledger.charge(path, 10 * MIB);
        ledger.charge(path, 12 * MIB);
        assert_eq!(ledger.files(), 12 * MIB);
        ledger.release(path);
        assert_eq!((ledger.files(), ledger.free()), (0, 100 * MIB));
    }

    #[tokio::test]
    async fn the_reserving_gate_keeps_one_reservation_across_retries() {
        let ledger = Ledger::new(100 * MIB);
        let gate = Reserving::new(&ledger, 10 * MIB, 80 * MIB);
        assert_eq!(gate.admit(50 * MIB).await, Ok(50 * MIB));
        assert_eq!(gate.admit(50 * MIB).await, Ok(50 * MIB));
        assert_eq!(ledger.free(), 50 * MIB);
        assert!(gate.admit(81 * MIB).await.is_err());
        assert_eq!(ledger.free(), 100 * MIB, "a refused retry holds nothing");
        assert!(AtMost(5).admit(6).await.is_err() && AtMost(5).admit(5).await.is_ok());
    }
}
