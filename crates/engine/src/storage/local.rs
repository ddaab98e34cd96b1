//! The embedded default backend: a local folder, opened with `cap-std`.
//!
//! Keys resolve by the same rule as in the bucket ([`super::stored_name`]): less a
//! leading strip prefix (`data/`), relative to the folder. The backend's own layout is
//! exactly that: its data folder is mounted at `/app/data` and its keys say
//! `data/Bachata_steps/...`. Resolving the key as written would need the folder's parent
//! as the data folder, and trying both spellings would make a key mean whichever file
//! happens to exist, so there is one rule; a miss says when the other spelling exists.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{listed_key, partial_name, stored_name, Storage, StorageError, StorageFuture};
use crate::budget::ledger::Gate;

const COPY_CHUNK_BYTES: usize = 256 * 1024;

/// Sets its flag when dropped.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A local folder opened with `cap-std`: keys resolve strictly beneath it (no `..`,
/// no absolute paths, no symlink leading out), whatever the key says.
pub struct LocalFolder {
    root: cap_std::fs::Dir,
    shown: String,
    /// The folder's absolute path, for URLs and messages only (all access goes through `root`).
    location: std::path::PathBuf,
    /// Taken off the front of every key (`GCS_STRIP_PREFIX`; empty: keys as written).
    strip_prefix: String,
}

impl LocalFolder {
    pub fn open(path: &Path, strip_prefix: &str) -> Result<LocalFolder, StorageError> {
        let shown = format!("folder {}", path.display());
        let root = cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .map_err(|e| StorageError::Open { store: shown.clone(), message: e.to_string() })?;
        let location = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        Ok(LocalFolder { root, shown, location, strip_prefix: strip_prefix.to_owned() })
    }

    /// Where `key` is inside the folder.
    fn path_of<'k>(&self, key: &'k str) -> &'k str {
        stored_name(key, &self.strip_prefix)
    }

    fn io_error(&self, key: &str, error: std::io::Error) -> StorageError {
        if error.kind() == std::io::ErrorKind::NotFound {
            StorageError::NotFound { key: key.to_owned(), looked_for: self.looked_for(key) }
        } else {
            StorageError::Io {
                key: key.to_owned(),
                store: self.shown.clone(),
                message: error.to_string(),
                source: Some(Box::new(error)),
            }
        }
    }

    /// `"x.mp4" in the data folder /app/data`, and, when the key as written names a file
    /// there, the likely fix: a data folder set up for keys resolved as written (the
    /// rule before keys lost their prefix here too) is one level too high.
    fn looked_for(&self, key: &str) -> String {
        let name = self.path_of(key);
        let mut text = format!("{name:?} in the data folder {}", self.location.display());
        if name != key && self.root.symlink_metadata(key).is_ok_and(|found| found.is_file()) {
            let prefix = &self.strip_prefix;
            let below = self.location.join(prefix.trim_end_matches('/'));
            text.push_str(&format!(
                "; {key:?} is there as written, but keys lose their leading {prefix:?} (GCS_STRIP_PREFIX): \
                 the data folder is probably {}",
                below.display()
            ));
        }
        text
    }

    /// Opens `key` for reading: a regular file only, never through a final symlink, and
    /// never blocking on a FIFO. Returns it with its length.
    fn open_source(&self, key: &str) -> Result<(std::fs::File, u64), StorageError> {
        use cap_std::fs::OpenOptionsExt;
        let mut options = cap_std::fs::OpenOptions::new();
        // A FIFO named as a clip would block a plain open until some writer came (for
        // ever, past SIGTERM); non-blocking, the open returns at once and the type check
        // below refuses anything that is not a regular file. A symbolic link as the last
        // part of the key is refused too (the folder's own rules refuse it in the middle).
        options.read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
        let source = self.root.open_with(self.path_of(key), &options).map_err(|e| self.io_error(key, e))?;
        let metadata = source.metadata().map_err(|e| self.io_error(key, e))?;
        if !metadata.is_file() {
            return Err(StorageError::Io {
                key: key.to_owned(),
                store: self.shown.clone(),
                message: "is not a regular file".into(),
                source: None,
            });
        }
        Ok((source.into_std(), metadata.len()))
    }

    /// Copies `source` to `destination`, at most `limit` bytes (the length it was admitted
    /// at: a file that grew meanwhile is refused, not copied past what was reserved);
    /// stops and removes its partial file as soon as `abandoned` is set (the job dropped
    /// the fetch and is removing its work folder).
    fn copy_blocking(
        &self,
        key: &str,
        mut source: std::fs::File,
        limit: u64,
        destination: &Path,
        abandoned: &AtomicBool,
    ) -> Result<u64, StorageError> {
        let partial = partial_name(destination);
        let copied = (|| {
            let abandoned_error = || std::io::Error::other("the fetch was abandoned");
            if abandoned.load(Ordering::Acquire) {
                return Err(abandoned_error());
            }
            let mut target = std::fs::OpenOptions::new().write(true).create_new(true).open(&partial)?;
            // In chunks, so an abandoned copy stops within one chunk instead of writing
            // into a folder that is being removed.
            let mut chunk = vec![0u8; COPY_CHUNK_BYTES];
            let mut bytes = 0u64;
            loop {
                if abandoned.load(Ordering::Acquire) {
                    return Err(abandoned_error());
                }
                let read = source.read(&mut chunk)?;
                if read == 0 {
                    break;
                }
                bytes += read as u64;
                if bytes > limit {
                    return Err(std::io::Error::other(format!(
                        "it grew past the {limit} bytes it had when the copy began"
                    )));
                }
                target.write_all(chunk.get(..read).unwrap_or_default())?;
            }
            target.sync_all()?;
            std::fs::rename(&partial, destination)?;
            Ok(bytes)
        })();
        copied.map_err(|e: std::io::Error| {
            let _ = std::fs::remove_file(&partial);
            StorageError::Io {
                key: key.to_owned(),
                store: self.shown.clone(),
                message: format!("copying to the work folder: {e}"),
                source: Some(Box::new(e)),
            }
        })
    }

    /// At most `limit + 1` bytes of `key`, opened as a fetch opens it ([`LocalFolder::open_source`]):
    /// None past `limit`.
    fn read_small_blocking(&self, key: &str, limit: usize) -> Result<Option<Vec<u8>>, StorageError> {
        let (file, _) = self.open_source(key)?;
        let mut bytes = Vec::new();
        file.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(|e| self.io_error(key, e))?;
        Ok((bytes.len() <= limit).then_some(bytes))
    }

    fn store_blocking(&self, source: &Path, key: &str) -> Result<u64, StorageError> {
        let key_path = Path::new(self.path_of(key));
        if let Some(parent) = key_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.root.create_dir_all(parent).map_err(|e| self.io_error(key, e))?;
        }
        let file_name = key_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let partial = key_path.with_file_name(format!(".{file_name}.partial-{}", std::process::id()));
        let result = (|| {
            let mut input = std::fs::File::open(source)?;
            let mut target = self.root.create(&partial)?.into_std();
            let bytes = std::io::copy(&mut input, &mut target)?;
            target.sync_all()?;
            self.root.rename(&partial, &self.root, key_path)?;
            Ok(bytes)
        })();
        result.map_err(|e: std::io::Error| {
            let _ = self.root.remove_file(&partial);
            self.io_error(key, e)
        })
    }
}

/// Size and modification time say when a file was rewritten, unless whoever rewrote it
/// kept both (`touch -r`, `cp -p`, `exiftool -P`, a same-size swap): the status-change
/// time (which no call sets back), the inode and the device say that too.
fn identity_text(size: u64, modified_nanos: u128, metadata: &impl cap_std::fs::MetadataExt) -> String {
    let changed = i128::from(metadata.ctime()) * 1_000_000_000 + i128::from(metadata.ctime_nsec());
    let (inode, device) = (metadata.ino(), metadata.dev());
    format!("size {size} modified {modified_nanos} changed {changed} inode {inode} device {device}")
}

impl Storage for LocalFolder {
    fn identity<'a>(&'a self, key: &'a str) -> StorageFuture<'a, String> {
        Box::pin(async move {
            let metadata = self.root.symlink_metadata(self.path_of(key)).map_err(|e| self.io_error(key, e))?;
            if !metadata.is_file() {
                return Err(StorageError::Io {
                    key: key.to_owned(),
                    store: self.shown.clone(),
                    message: "is not a regular file".into(),
                    source: None,
                });
            }
            let modified = metadata.modified().map_err(|e| self.io_error(key, e))?.into_std();
            let nanos = modified.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            Ok(identity_text(metadata.len(), nanos, &metadata))
        })
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn url(&self, key: &str) -> String {
        format!("file://{}", self.location.join(self.path_of(key)).display())
    }

    fn fetch<'a>(&'a self, key: &'a str, destination: &'a Path, gate: &'a dyn Gate) -> StorageFuture<'a, u64> {
        Box::pin(async move {
            let (folder, key_owned) = (self.try_clone(key)?, key.to_owned());
            let blocking_error = |e| self.io_error(key, std::io::Error::other(e));
            let (source, length) =
                tokio::task::spawn_blocking(move || folder.open_source(&key_owned)).await.map_err(blocking_error)??;
            // Charged before the first byte is written: the work folder may be memory.
            let limit = gate
                .admit(length)
                .await
                .map_err(|too_large| StorageError::TooLarge { key: key.to_owned(), too_large })?;
            let (folder, key_owned, destination) = (self.try_clone(key)?, key.to_owned(), destination.to_owned());
            // Dropping this future (a failed sibling fetch, a signal) sets the flag; the
            // copy on the blocking pool cannot be dropped, so it watches the flag.
            let abandoned = Arc::new(AtomicBool::new(false));
            let _abandon_on_drop = AbandonOnDrop(abandoned.clone());
            tokio::task::spawn_blocking(move || {
                folder.copy_blocking(&key_owned, source, limit, &destination, &abandoned)
            })
            .await
            .map_err(blocking_error)?
        })
    }

    fn store<'a>(&'a self, source: &'a Path, key: &'a str) -> StorageFuture<'a, u64> {
        Box::pin(async move {
            let (folder, key_owned, source) = (self.try_clone(key)?, key.to_owned(), source.to_owned());
            tokio::task::spawn_blocking(move || folder.store_blocking(&source, &key_owned))
                .await
                .map_err(|e| self.io_error(key, std::io::Error::other(e)))?
        })
    }

    fn read_small<'a>(&'a self, key: &'a str, limit: usize) -> StorageFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let (folder, key_owned) = (self.try_clone(key)?, key.to_owned());
            tokio::task::spawn_blocking(move || folder.read_small_blocking(&key_owned, limit))
                .await
                .map_err(|e| self.io_error(key, std::io::Error::other(e)))?
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StorageFuture<'a, Vec<String>> {
        Box::pin(async move {
            let (folder, prefix_owned) = (self.try_clone(prefix)?, prefix.to_owned());
            tokio::task::spawn_blocking(move || folder.list_blocking(&prefix_owned))
                .await
                .map_err(|e| self.io_error(prefix, std::io::Error::other(e)))?
        })
    }
}

impl LocalFolder {
    /// Walks the folders under `prefix` inside the root (cap-std: nothing outside it);
    /// symbolic links are neither followed nor listed: a library is plain files. Keys
    /// come back spelled like `prefix` ([`listed_key`]).
    fn list_blocking(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let start = self.path_of(prefix);
        let mut found = Vec::new();
        let mut folders = vec![start.to_owned()];
        while let Some(folder) = folders.pop() {
            let dir = if folder.is_empty() {
                self.root.try_clone()
            } else {
                self.root.open_dir(folder.trim_end_matches('/'))
            };
            let dir = dir.map_err(|e| self.io_error(prefix, e))?;
            for entry in dir.entries().map_err(|e| self.io_error(prefix, e))? {
                let entry = entry.map_err(|e| self.io_error(prefix, e))?;
                let kind = entry.file_type().map_err(|e| self.io_error(prefix, e))?;
                let Ok(name) = entry.file_name().into_string() else { continue };
                let path = format!("{folder}{name}");
                if kind.is_dir() {
                    folders.push(format!("{path}/"));
                } else if kind.is_file() {
                    if found.len() == super::MAX_LISTED {
                        return Err(super::too_many(self.shown.clone(), prefix));
                    }
                    found.push(listed_key(prefix, &self.strip_prefix, path.get(start.len()..).unwrap_or_default()));
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

impl LocalFolder {
    /// File copies run on the blocking pool with their own handle to the folder.
    fn try_clone(&self, key: &str) -> Result<LocalFolder, StorageError> {
        let root = self.root.try_clone().map_err(|e| self.io_error(key, e))?;
        let (shown, location, strip_prefix) = (self.shown.clone(), self.location.clone(), self.strip_prefix.clone());
        Ok(LocalFolder { root, shown, location, strip_prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::ledger::Unbounded;
    use crate::storage::Storage;

    /// A file rewritten in place with its size and modification time kept (`touch -r`),
    /// or replaced by another with both (a rename over it), is another file.
    #[tokio::test]
    async fn a_file_rewritten_keeping_its_size_and_time_has_another_identity() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("clip.mp4");
        std::fs::write(&path, b"first").unwrap();
        let folder = LocalFolder::open(root.path(), "").unwrap();
        let before = folder.identity("clip.mp4").await.unwrap();
        assert_eq!(folder.identity("clip.mp4").await.unwrap(), before, "the same file, the same identity");
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"other").unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(modified).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 5);
        let edited = folder.identity("clip.mp4").await.unwrap();
        assert_ne!(edited, before, "edited in place, size and time kept");
        let other = root.path().join("other.mp4");
        std::fs::write(&other, b"third").unwrap();
        std::fs::File::options().write(true).open(&other).unwrap().set_modified(modified).unwrap();
        std::fs::rename(&other, &path).unwrap();
        let replaced = folder.identity("clip.mp4").await.unwrap();
        assert!(replaced != before && replaced != edited, "replaced by a file of the same size and time");
        assert!(before.starts_with("size 5 modified ") && before.contains(" inode "), "{before}");
    }

    /// The message says what failed; the operating system's error stays reachable as the
    /// source, for whoever reads the chain.
    #[tokio::test]
    async fn a_failed_copy_keeps_its_io_error_as_the_source() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("clip.mp4"), b"clip").unwrap();
        let folder = LocalFolder::open(root.path(), "").unwrap();
        let missing = root.path().join("no-such-folder/clip.mp4");
        let error = folder.fetch("clip.mp4", &missing, &Unbounded).await.expect_err("no folder to copy into");
        assert!(error.to_string().contains("copying to the work folder: No such file or directory"), "{error}");
        let source = std::error::Error::source(&error).expect("a source");
        let io = source.downcast_ref::<std::io::Error>().expect("the io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn keys_cannot_leave_the_folder() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"secret").unwrap();
        let root = outside.path().join("data");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("link.mp4")).unwrap();
        std::fs::write(root.join("clip.mp4"), b"clip").unwrap();
        let folder = LocalFolder::open(&root, "data/").unwrap();
        let work = tempfile::tempdir().unwrap();
        // What is left once the prefix is off is held to the same rules.
        let keys = ["../secret.txt", "link.mp4", "/etc/passwd", "data/../secret.txt", "data//etc/passwd"];
        for (n, key) in keys.iter().enumerate() {
            let destination = work.path().join(format!("in-{n}"));
            assert!(folder.fetch(key, &destination, &Unbounded).await.is_err(), "{key} was read");
            assert!(!destination.exists());
        }
        let destination = work.path().join("ok");
        assert_eq!(folder.fetch("clip.mp4", &destination, &Unbounded).await.unwrap(), 4);
        folder.store(&destination, "out/sub/result.mp4").await.unwrap();
        assert_eq!(std::fs::read(root.join("out/sub/result.mp4")).unwrap(), b"clip");
        assert!(matches!(
            folder.fetch("missing.mp4", &work.path().join("m"), &Unbounded).await,
            Err(StorageError::NotFound { .. })
        ));
    }

    /// The backend's layout: its data folder holds `Bachata_steps/...`, its keys say
    /// `data/Bachata_steps/...`. Both spellings are one file; what is written lands where
    /// the backend reads it, and what is listed comes back spelled like its prefix.
    #[tokio::test]
    async fn keys_lose_the_strip_prefix_in_the_folder_as_in_the_bucket() {
        let app = tempfile::tempdir().unwrap();
        let data = app.path().join("data");
        std::fs::create_dir_all(data.join("Bachata_steps/basic")).unwrap();
        std::fs::write(data.join("Bachata_steps/basic/basic.mp4"), b"clip").unwrap();
        let folder = LocalFolder::open(&data, "data/").unwrap();
        let work = tempfile::tempdir().unwrap();
        for (n, key) in ["data/Bachata_steps/basic/basic.mp4", "Bachata_steps/basic/basic.mp4"].iter().enumerate() {
            assert_eq!(folder.fetch(key, &work.path().join(format!("in-{n}")), &Unbounded).await.unwrap(), 4, "{key}");
        }
        assert_eq!(folder.url("data/Bachata_steps/basic/basic.mp4"), folder.url("Bachata_steps/basic/basic.mp4"));
        assert_eq!(
            folder.identity("data/Bachata_steps/basic/basic.mp4").await.unwrap(),
            folder.identity("Bachata_steps/basic/basic.mp4").await.unwrap()
        );

        folder.store(&work.path().join("in-0"), "data/output/user_1/choreography_x.mp4").await.unwrap();
        assert_eq!(std::fs::read(data.join("output/user_1/choreography_x.mp4")).unwrap(), b"clip");
        assert!(!data.join("data").exists(), "the prefix became a folder");
        folder.store(&work.path().join("in-0"), "prepared/p/data/Bachata_steps/basic/basic.mp4").await.unwrap();
        assert!(data.join("prepared/p/data/Bachata_steps/basic/basic.mp4").is_file());

        assert_eq!(folder.list("data/Bachata_steps/").await.unwrap(), ["data/Bachata_steps/basic/basic.mp4"]);
        assert_eq!(folder.list("Bachata_steps/").await.unwrap(), ["Bachata_steps/basic/basic.mp4"]);
        assert_eq!(folder.list("data/output/").await.unwrap(), ["data/output/user_1/choreography_x.mp4"]);

        let missing = folder.fetch("data/media/x.mp4", &work.path().join("m"), &Unbounded).await.unwrap_err();
        assert!(matches!(missing, StorageError::NotFound { .. }));
        let shown = data.canonicalize().unwrap();
        let looked_for = format!("(looked for \"media/x.mp4\" in the data folder {})", shown.display());
        let expected = format!("\"data/media/x.mp4\" does not exist {looked_for}");
        assert_eq!(missing.to_string(), expected);
    }

    /// A data folder set up for keys as written (one level too high) is named in the miss.
    #[tokio::test]
    async fn a_miss_says_when_the_key_exists_as_written() {
        let app = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(app.path().join("data/media")).unwrap();
        std::fs::write(app.path().join("data/media/x.mp4"), b"clip").unwrap();
        let folder = LocalFolder::open(app.path(), "data/").unwrap();
        let work = tempfile::tempdir().unwrap();
        let message =
            folder.fetch("data/media/x.mp4", &work.path().join("m"), &Unbounded).await.unwrap_err().to_string();
        let below = app.path().canonicalize().unwrap().join("data");
        assert!(message.contains("\"data/media/x.mp4\" is there as written"), "{message}");
        assert!(message.ends_with(&format!("the data folder is probably {})", below.display())), "{message}");
        // With no prefix to strip, keys resolve as written.
        let as_written = LocalFolder::open(app.path(), "").unwrap();
        assert_eq!(as_written.fetch("data/media/x.mp4", &work.path().join("m"), &Unbounded).await.unwrap(), 4);
    }

    /// Every file below `dir`, symlinks not followed.
    fn files_below(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                found.extend(files_below(&path));
            } else {
                found.push(path);
            }
        }
        found.sort();
        found
    }

    #[tokio::test]
    async fn a_fifo_named_as_a_clip_is_refused_at_once() {
        let root = tempfile::tempdir().unwrap();
        let fifo = root.path().join("clip.mp4");
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path it is given.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let folder = LocalFolder::open(root.path(), "").unwrap();
        let work = tempfile::tempdir().unwrap();
        let destination = work.path().join("in");
        let fetch = folder.fetch("clip.mp4", &destination, &Unbounded);
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), fetch)
            .await
            .expect("the fetch blocked on the FIFO");
        let error = result.unwrap_err().to_string();
        assert!(error.contains("is not a regular file"), "{error}");
        assert!(std::fs::read_dir(work.path()).unwrap().next().is_none(), "something was written");
    }

    /// A fetch the job dropped leaves nothing in the work folder it is removing.
    #[test]
    fn an_abandoned_fetch_stops_and_leaves_no_file() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("clip.mp4"), vec![7u8; 3 * COPY_CHUNK_BYTES]).unwrap();
        let folder = LocalFolder::open(root.path(), "").unwrap();
        let work = tempfile::tempdir().unwrap();
        let abandoned = AtomicBool::new(true);
        let (source, length) = folder.open_source("clip.mp4").unwrap();
        let result = folder.copy_blocking("clip.mp4", source, length, &work.path().join("in"), &abandoned);
        assert!(result.is_err());
        assert!(std::fs::read_dir(work.path()).unwrap().next().is_none(), "something was written");
        let kept = AtomicBool::new(false);
        let (source, length) = folder.open_source("clip.mp4").unwrap();
        assert_eq!(folder.copy_blocking("clip.mp4", source, length, &work.path().join("in"), &kept).unwrap(), length);
    }

    /// A file copied at the size it was admitted at: one that grows meanwhile is refused
    /// at that size, and one too large for the gate is refused before a byte is written.
    #[tokio::test]
    async fn a_copy_never_writes_more_than_it_was_admitted() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("clip.mp4"), vec![7u8; 3 * COPY_CHUNK_BYTES]).unwrap();
        let folder = LocalFolder::open(root.path(), "").unwrap();
        let work = tempfile::tempdir().unwrap();
        let (source, _) = folder.open_source("clip.mp4").unwrap();
        let grew = folder.copy_blocking(
            "clip.mp4",
            source,
            2 * COPY_CHUNK_BYTES as u64,
            &work.path().join("in"),
            &AtomicBool::new(false),
        );
        assert!(grew.unwrap_err().to_string().contains("grew past"));
        assert!(std::fs::read_dir(work.path()).unwrap().next().is_none(), "its partial file is removed");
        let gate = crate::budget::ledger::AtMost(COPY_CHUNK_BYTES as u64);
        let refused = folder.fetch("clip.mp4", &work.path().join("in"), &gate).await.unwrap_err();
        assert!(matches!(refused, StorageError::TooLarge { .. }), "{refused}");
        assert!(std::fs::read_dir(work.path()).unwrap().next().is_none(), "nothing was written");
    }

    #[tokio::test]
    async fn a_symlink_named_as_a_clip_is_refused_even_inside_the_folder() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("real.mp4"), b"video").unwrap();
        std::os::unix::fs::symlink("real.mp4", root.path().join("clip.mp4")).unwrap();
        let folder = LocalFolder::open(root.path(), "").unwrap();
        let work = tempfile::tempdir().unwrap();
        let result = folder.fetch("clip.mp4", &work.path().join("in"), &Unbounded).await;
        assert!(result.is_err(), "a symlink was fetched");
        assert!(std::fs::read_dir(work.path()).unwrap().next().is_none(), "something was written");
        folder.fetch("real.mp4", &work.path().join("in"), &Unbounded).await.unwrap();
    }

    /// A small read opens as a fetch does and stops one byte past its limit.
    #[tokio::test]
    async fn a_small_read_is_bounded_and_opens_only_regular_files_inside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.json"), b"{}").unwrap();
        let root = outside.path().join("data");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("small.json"), b"12345").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.json"), root.join("link.json")).unwrap();
        std::os::unix::fs::symlink("small.json", root.join("near.json")).unwrap();
        let fifo = std::ffi::CString::new(root.join("fifo.json").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path it is given.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let folder = LocalFolder::open(&root, "data/").unwrap();
        assert_eq!(folder.read_small("data/small.json", 5).await.unwrap().as_deref(), Some(&b"12345"[..]));
        assert_eq!(folder.read_small("small.json", 4).await.unwrap(), None);
        for key in ["link.json", "near.json", "../secret.json", "fifo.json"] {
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), folder.read_small(key, 100));
            let read = read.await.expect(key);
            assert!(read.is_err(), "{key} was read: {read:?}");
        }
        let fifo_error = folder.read_small("fifo.json", 100).await.unwrap_err().to_string();
        assert!(fifo_error.contains("is not a regular file"), "{fifo_error}");
        assert!(matches!(folder.read_small("missing.json", 100).await, Err(StorageError::NotFound { .. })));
    }

    #[tokio::test]
    async fn stored_keys_cannot_leave_the_folder() {
        let outside = tempfile::tempdir().unwrap();
        let root = outside.path().join("data");
        std::fs::create_dir(&root).unwrap();
        let elsewhere = outside.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("linked")).unwrap();
        let source = outside.path().join("result.mp4");
        std::fs::write(&source, b"video").unwrap();
        let before = files_below(outside.path());
        let folder = LocalFolder::open(&root, "").unwrap();
        let absolute = outside.path().join("absolute.mp4");
        for key in ["../x.mp4", absolute.to_str().unwrap(), "linked/x.mp4", "linked/sub/x.mp4"] {
            let result = folder.store(&source, key).await;
            assert!(result.is_err(), "{key} was stored: {result:?}");
            assert_eq!(files_below(outside.path()), before, "storing {key} left a file behind");
        }
        assert!(files_below(&elsewhere).is_empty());
        folder.store(&source, "inside/x.mp4").await.unwrap();
        assert_eq!(std::fs::read(root.join("inside/x.mp4")).unwrap(), b"video");
    }
}
