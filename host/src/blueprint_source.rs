//! Where the blueprint text comes from: a file, stdin, `BLUEPRINT_JSON` or a `gs://` address. Reading
//! is bounded: a larger document is refused without being held in memory.

use std::path::PathBuf;

use br_blueprint::limits::MAX_BLUEPRINT_BYTES;

pub const BLUEPRINT_ENV: &str = "BLUEPRINT_JSON";
/// Cloud Run refuses an environment variable longer than this; a blueprint over it
/// cannot be passed as `BLUEPRINT_JSON` at all (about 95 moves of the backend's shape).
const CLOUD_RUN_ENV_LIMIT_BYTES: usize = 32_768;
/// Warn from here on, so a growing blueprint is moved to `BLUEPRINT_URI` before it fails.
const CLOUD_RUN_ENV_WARNING_BYTES: usize = 28 * 1024;
/// A `gs://bucket/key` address of the blueprint (Cloud Run limits the size of env vars).
pub const BLUEPRINT_URI_ENV: &str = "BLUEPRINT_URI";
/// A task array's manifest (see [`crate::task_array`]): each entry names its blueprint.
pub const MANIFEST_ENV: &str = "BLUEPRINT_MANIFEST_URI";

#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Stdin,
    /// `BLUEPRINT_JSON`'s bytes, as the environment held them.
    Env(Vec<u8>),
    /// `gs://bucket/key`, read by the caller through the GCS backend.
    Uri(String),
    /// A key in the job's own storage (a task array's entry), read by the caller through
    /// [`br_engine::storage::Storage::read_small`].
    Key(String),
}

impl Source {
    /// The FILE argument: '-' for stdin, a `gs://` address, else a path.
    pub fn from_argument(argument: &str) -> Source {
        match argument {
            "-" => Source::Stdin,
            uri if uri.starts_with("gs://") => Source::Uri(uri.to_owned()),
            path => Source::File(PathBuf::from(path)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Stdin => "stdin".into(),
            Source::Env(_) => BLUEPRINT_ENV.into(),
            Source::Uri(uri) | Source::Key(uri) => uri.clone(),
        }
    }
}

/// The raw blueprint, or why it could not be read at all.
pub enum Loaded {
    Text(String),
    /// Larger than the limit; how many bytes were seen (at least).
    TooLarge(u64),
    NotUtf8,
}

impl Loaded {
    /// The text, or the validation error that refuses it (with the empty pointer: the
    /// whole document).
    pub fn into_text(self) -> Result<String, br_blueprint::ValidationError> {
        let refuse = |code, message| Err(br_blueprint::ValidationError { pointer: String::new(), code, message });
        match self {
            Loaded::Text(text) => Ok(text),
            Loaded::TooLarge(seen) => refuse(
                br_blueprint::ErrorCode::TooLarge,
                format!("the blueprint is over {MAX_BLUEPRINT_BYTES} bytes (read {seen} before stopping)"),
            ),
            Loaded::NotUtf8 => refuse(br_blueprint::ErrorCode::InvalidJson, "the blueprint is not UTF-8 text".into()),
        }
    }
}

pub fn read(source: &Source) -> std::io::Result<Loaded> {
    let limit = MAX_BLUEPRINT_BYTES as u64;
    let bytes = match source {
        Source::Env(bytes) => {
            let bytes = bytes.clone();
            if bytes.len() >= CLOUD_RUN_ENV_WARNING_BYTES {
                tracing::warn!(
                    bytes = bytes.len(),
                    "BLUEPRINT_JSON is close to Cloud Run's limit of {CLOUD_RUN_ENV_LIMIT_BYTES} bytes per variable: pass larger blueprints as BLUEPRINT_URI"
                );
            }
            bytes
        }
        Source::Stdin => br_engine::files::read_bounded(std::io::stdin().lock(), limit)?,
        Source::File(path) => br_engine::files::read_bounded(std::fs::File::open(path)?, limit)?,
        Source::Uri(uri) => return Err(std::io::Error::other(format!("{uri} must be read through the GCS backend"))),
        Source::Key(key) => return Err(std::io::Error::other(format!("{key:?} must be read through the storage"))),
    };
    if bytes.len() as u64 > limit {
        return Ok(Loaded::TooLarge(bytes.len() as u64));
    }
    Ok(String::from_utf8(bytes).map(Loaded::Text).unwrap_or(Loaded::NotUtf8))
}
