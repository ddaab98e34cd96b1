//! Where the blueprint text comes from: a file, stdin, or `BLUEPRINT_JSON`. Reading
//! is bounded: a larger document is refused without being held in memory.

use std::io::Read;
use std::path::PathBuf;

use br_blueprint::limits::MAX_BLUEPRINT_BYTES;

pub const BLUEPRINT_ENV: &str = "BLUEPRINT_JSON";

#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Stdin,
    Env,
}

impl Source {
    /// `None` and no `BLUEPRINT_JSON` is a usage error.
    pub fn choose(argument: Option<&str>) -> Result<Source, String> {
        match argument {
            Some("-") => Ok(Source::Stdin),
            Some(path) => Ok(Source::File(PathBuf::from(path))),
            None if std::env::var_os(BLUEPRINT_ENV).is_some() => Ok(Source::Env),
            None => Err(format!("no blueprint: give a FILE, '-' for stdin, or set {BLUEPRINT_ENV}")),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Stdin => "stdin".into(),
            Source::Env => BLUEPRINT_ENV.into(),
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

pub fn read(source: &Source) -> std::io::Result<Loaded> {
    let limit = MAX_BLUEPRINT_BYTES as u64;
    let bytes = match source {
        Source::Env => std::env::var_os(BLUEPRINT_ENV).unwrap_or_default().into_encoded_bytes(),
        Source::Stdin => read_bounded(std::io::stdin().lock(), limit)?,
        Source::File(path) => read_bounded(std::fs::File::open(path)?, limit)?,
    };
    if bytes.len() as u64 > limit {
        return Ok(Loaded::TooLarge(bytes.len() as u64));
    }
    Ok(String::from_utf8(bytes).map(Loaded::Text).unwrap_or(Loaded::NotUtf8))
}

fn read_bounded(reader: impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}
