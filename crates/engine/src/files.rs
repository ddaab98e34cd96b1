//! Small files read whole, with a bound: blueprints, manifests, media facts, plan requests.

use std::io::Read;
use std::path::Path;

/// At most `limit + 1` bytes of `reader`: one byte past the limit says it is larger.
pub fn read_bounded(reader: impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A whole small file (a manifest, media facts), refused past `limit` bytes without
/// reading more than one byte beyond it. Opened non-blocking and refused unless it is a
/// regular file: a FIFO would otherwise hold the open until a writer came, past SIGTERM.
pub fn read_small_file(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, SmallFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.read(true).custom_flags(libc::O_NONBLOCK);
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(SmallFileError::NotRegular);
    }
    let bytes = read_bounded(file, limit)?;
    if bytes.len() as u64 > limit {
        return Err(SmallFileError::TooLarge { limit });
    }
    Ok(bytes)
}

/// Why [`read_small_file`] read nothing; the caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum SmallFileError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("is not a regular file")]
    NotRegular,
    #[error("larger than {limit} bytes")]
    TooLarge { limit: u64 },
}

/// Removes `file` if it is there; a failure other than its absence is logged, not fatal
/// (the work folder goes as a whole at the end).
pub fn remove_if_present(file: &Path) {
    if let Err(error) = std::fs::remove_file(file) {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = %file.display(), "cannot remove a file no step reads any more: {error}");
        }
    }
}
