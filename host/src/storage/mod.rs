//! Where blueprints' objects live. The job only ever names objects by validated keys;
//! a backend maps keys to bytes without letting a key reach anything outside its root.

mod gcs;
mod local;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

pub use gcs::{parse_gs_uri, GcsConfig, GcsStorage};
pub use local::LocalFolder;

pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {key:?} does not exist in {store}")]
    NotFound { key: String, store: String },
    #[error("object {key:?} in {store}: {message}")]
    Io { key: String, store: String, message: String },
    #[error("cannot open the storage {store}: {message}")]
    Open { store: String, message: String },
    /// Transient failures (connection, 408, 429, 5xx) that outlasted every retry.
    #[error("object {key:?} in {store}: gave up after {attempts} attempts: {message}")]
    GaveUp { key: String, store: String, attempts: u32, message: String },
}

/// A place objects are read from and the result is written to.
pub trait Storage: Send + Sync {
    /// For messages: `folder data/` or `gs://bucket`.
    fn describe(&self) -> String;
    /// Where object `key` is, for the result the backend reads (`video_url`).
    fn url(&self, key: &str) -> String;
    /// Copies object `key` into the local file `destination` (which must not exist);
    /// returns its size in bytes. A failure leaves no file at `destination`.
    fn fetch<'a>(&'a self, key: &'a str, destination: &'a Path) -> StorageFuture<'a, u64>;
    /// Stores the local file `source` as object `key`, replacing it atomically.
    fn store<'a>(&'a self, source: &'a Path, key: &'a str) -> StorageFuture<'a, u64>;
}

/// Downloads land under a temporary name and are renamed when complete, so a file
/// with the final name is always whole.
pub(crate) fn partial_name(destination: &Path) -> PathBuf {
    let mut name = destination.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

