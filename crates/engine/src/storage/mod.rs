//! Where blueprints' objects live. The job only ever names objects by validated keys;
//! a backend maps keys to bytes without letting a key reach anything outside its root.

mod gcs;
mod local;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

pub use gcs::{parse_gs_uri, GcsConfig, GcsStorage};
pub use local::LocalFolder;

use crate::budget::ledger::Gate;

pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// `key` as the blueprint spells it; `looked_for`: what was actually asked for and
    /// where (the key less the strip prefix, in the data folder or the bucket), so an
    /// operator sees at once whether the key or the rule is wrong.
    #[error("{key:?} does not exist (looked for {looked_for})")]
    NotFound { key: String, looked_for: String },
    /// `message` says what failed, with its cause's text; the cause itself, when there
    /// is one, is kept as the error's source.
    #[error("object {key:?} in {store}: {message}")]
    Io {
        key: String,
        store: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("cannot open the storage {store}: {message}")]
    Open { store: String, message: String },
    /// Transient failures (connection, 408, 429, 5xx) that outlasted every retry.
    #[error("object {key:?} in {store}: gave up after {attempts} attempts: {message}")]
    GaveUp { key: String, store: String, attempts: u32, message: String },
    /// The object's declared size can never fit the job's work folder: a bad input for
    /// this job's budget, not a failure a retry mends.
    #[error("{key:?}: {too_large}")]
    TooLarge { key: String, too_large: crate::budget::ledger::TooLarge },
}

/// A place objects are read from and the result is written to.
pub trait Storage: Send + Sync {
    /// For messages: `folder data/` or `gs://bucket`.
    fn describe(&self) -> String;
    /// Where object `key` is, for the result the backend reads (`video_url`).
    fn url(&self, key: &str) -> String;
    /// Copies object `key` into the local file `destination` (which must not exist);
    /// returns its size in bytes. A failure leaves no file at `destination`. The
    /// object's declared size (a file's length, a GCS object's size) goes through `gate`
    /// before the first byte is written, and the copy stops with an error past what the
    /// gate admitted.
    fn fetch<'a>(&'a self, key: &'a str, destination: &'a Path, gate: &'a dyn Gate) -> StorageFuture<'a, u64>;
    /// Stores the local file `source` as object `key`, replacing it atomically.
    fn store<'a>(&'a self, source: &'a Path, key: &'a str) -> StorageFuture<'a, u64>;
    /// Text that changes whenever object `key`'s content may have (a local file's size
    /// and modification time, a GCS object's generation), without reading the content.
    fn identity<'a>(&'a self, key: &'a str) -> StorageFuture<'a, String>;
    /// The keys of every object whose key starts with `prefix` (empty, or folder names
    /// each ending in `/`: see [`folder_prefix_problem`]), sorted; at most [`MAX_LISTED`].
    fn list<'a>(&'a self, prefix: &'a str) -> StorageFuture<'a, Vec<String>>;
    /// Object `key` whole in memory (a blueprint, a manifest, a marker), never written
    /// to the work folder: `Ok(None)` when it is larger than `limit` bytes, found out
    /// having read at most `limit + 1` of them. Opened as [`Storage::fetch`] opens it
    /// (a local key: a regular file, no symbolic link, never blocking on a FIFO).
    fn read_small<'a>(&'a self, key: &'a str, limit: usize) -> StorageFuture<'a, Option<Vec<u8>>>;
}

/// More objects than a clip library has: a listing stops with an error past it, rather
/// than holding an unbounded list.
pub const MAX_LISTED: usize = 100_000;

fn too_many(store: String, prefix: &str) -> StorageError {
    StorageError::Io {
        key: prefix.to_owned(),
        store,
        message: format!("more than {MAX_LISTED} objects under this prefix"),
        source: None,
    }
}

/// The key rule, one for the data folder and the bucket (docs/JOB.md, *Storage*): a key names
/// the object `key` less a leading `strip_prefix` (`GCS_STRIP_PREFIX`, default `data/`),
/// a path under the data folder or, after `GCS_OBJECT_PREFIX`, an object name. The
/// backend spells its keys as paths relative to its own root (`data/Bachata_steps/...`
/// for `/app/data/Bachata_steps/...`), so the prefix names that root, wherever it is.
pub fn stored_name<'k>(key: &'k str, strip_prefix: &str) -> &'k str {
    match key.strip_prefix(strip_prefix) {
        Some(rest) if !strip_prefix.is_empty() => rest,
        _ => key,
    }
}

/// The key a listed object is given back as: spelled like the `prefix` it was listed
/// under (`rest` is its name after the prefix's own stored name), so that what `prepare
/// --all media/` makes is found by blueprints that say `media/...`; under an empty prefix,
/// in the backend's spelling (`strip_prefix` in front), which its blueprints use.
pub fn listed_key(prefix: &str, strip_prefix: &str, rest: &str) -> String {
    let front = if prefix.is_empty() { strip_prefix } else { prefix };
    format!("{front}{rest}")
}

/// Why `key` may not be the job's output, or None: the key, less `strip_prefix` (the
/// backend's `data/`, which names its root), must start with `output_prefix`. Keys have
/// passed the blueprint's path rules (no `..`, no `./`, no `//`), so comparing text is
/// comparing places. An empty prefix allows any key.
pub fn output_prefix_problem(key: &str, strip_prefix: &str, output_prefix: &str) -> Option<String> {
    (!stored_name(key, strip_prefix).starts_with(output_prefix))
        .then(|| format!("`output_path` {key:?} is outside the output prefix {output_prefix:?} (OUTPUT_PREFIX)"))
}

/// What a key prefix (OUTPUT_PREFIX, `prepare --all`) may be: empty, or plain folder
/// names each followed by `/`.
pub fn folder_prefix_problem(prefix: &str) -> Option<String> {
    let folders_ok = prefix.strip_suffix('/').is_some_and(|folders| {
        folders.split('/').all(|folder| {
            !folder.is_empty()
                && folder != "."
                && folder != ".."
                && folder.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
    });
    (!prefix.is_empty() && !folders_ok)
        .then(|| "must be empty or folder names each ending in '/', like output/ or data/clips/".to_owned())
}

/// One of the host's own small records at `key` (a prepared clip's manifest, an audio
/// cache entry's), read with [`Storage::read_small`]: `Ok(None)` when there is none, and
/// when it is larger than `limit` (logged as not `what`: it is never held whole); other
/// errors are the storage's.
pub async fn read_record(
    storage: &dyn Storage,
    key: &str,
    limit: usize,
    what: &str,
) -> Result<Option<Vec<u8>>, StorageError> {
    match storage.read_small(key, limit).await {
        Ok(Some(bytes)) => Ok(Some(bytes)),
        Ok(None) => {
            tracing::warn!(key, "over {limit} bytes: not {what}, ignored");
            Ok(None)
        }
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Downloads land under a temporary name and are renamed when complete, so a file
/// with the final name is always whole.
pub fn partial_name(destination: &Path) -> PathBuf {
    let mut name = destination.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_must_be_under_the_prefix() {
        assert_eq!(output_prefix_problem("output/user_1/a.mp4", "data/", "output/"), None);
        assert_eq!(output_prefix_problem("data/output/a.mp4", "data/", "output/"), None);
        assert!(output_prefix_problem("clips/a.mp4", "data/", "output/").is_some());
        assert!(output_prefix_problem("outputs.mp4", "data/", "output/").is_some());
        assert!(output_prefix_problem("data/clips/output/a.mp4", "data/", "output/").is_some());
        assert_eq!(output_prefix_problem("anything.mp4", "data/", ""), None);
    }

    #[test]
    fn a_key_names_the_same_place_with_or_without_the_strip_prefix() {
        assert_eq!(stored_name("data/Bachata_steps/basic/basic.mp4", "data/"), "Bachata_steps/basic/basic.mp4");
        assert_eq!(stored_name("Bachata_steps/basic/basic.mp4", "data/"), "Bachata_steps/basic/basic.mp4");
        // Only a whole leading folder is taken off.
        assert_eq!(stored_name("database/x.mp4", "data/"), "database/x.mp4");
        assert_eq!(stored_name("media/data/x.mp4", "data/"), "media/data/x.mp4");
        assert_eq!(stored_name("data/x.mp4", ""), "data/x.mp4");
        // Prepared clips keep the key's spelling after their own folder.
        assert_eq!(stored_name("prepared/p/data/x.mp4", "data/"), "prepared/p/data/x.mp4");
    }

    #[test]
    fn listed_keys_are_spelled_like_their_prefix() {
        assert_eq!(listed_key("data/Bachata_steps/", "data/", "basic.mp4"), "data/Bachata_steps/basic.mp4");
        assert_eq!(listed_key("media/", "data/", "a.mp4"), "media/a.mp4");
        assert_eq!(listed_key("", "data/", "Bachata_steps/basic.mp4"), "data/Bachata_steps/basic.mp4");
        assert_eq!(listed_key("", "", "Bachata_steps/basic.mp4"), "Bachata_steps/basic.mp4");
    }

    #[test]
    fn the_prefix_is_folder_names() {
        for good in ["", "output/", "out-put/user_1/"] {
            assert_eq!(folder_prefix_problem(good), None, "{good}");
        }
        for bad in ["output", "/output/", "../output/", "output//", "a/./", "out put/"] {
            assert!(folder_prefix_problem(bad).is_some(), "{bad}");
        }
    }
}
