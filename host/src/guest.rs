//! Which guest component runs, and where its compiled form is cached.

use std::path::PathBuf;

use br_sandbox::{CacheConfig, Limits, Sandbox, SandboxError};

/// The default guest, built by `build.rs` and embedded so the binary works from any folder.
pub const DEFAULT_GUEST: &[u8] = include_bytes!(env!("DEFAULT_GUEST_WASM"));

pub const CACHE_ENV: &str = "BLUEPRINT_RUNNER_CACHE_DIR";

#[derive(Debug, Clone)]
pub struct GuestChoice {
    /// A plugin component to load instead of the embedded default.
    pub path: Option<PathBuf>,
    pub cache: CacheConfig,
}

impl GuestChoice {
    pub fn load(&self, limits: Limits) -> Result<Sandbox, LoadError> {
        let wasm = match &self.path {
            None => std::borrow::Cow::Borrowed(DEFAULT_GUEST),
            Some(path) => std::borrow::Cow::Owned(
                std::fs::read(path).map_err(|e| LoadError::Read(format!("{}: {e}", path.display())))?,
            ),
        };
        Sandbox::load(&wasm, limits, &self.cache).map_err(LoadError::Sandbox)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the guest component {0}")]
    Read(String),
    #[error(transparent)]
    Sandbox(SandboxError),
}

/// `--cache-dir`, else `BLUEPRINT_RUNNER_CACHE_DIR`, else the user's cache folder.
pub fn cache_dir(flag: Option<PathBuf>, disabled: bool) -> CacheConfig {
    if disabled {
        return CacheConfig { dir: None };
    }
    let dir = flag
        .or_else(|| std::env::var_os(CACHE_ENV).map(PathBuf::from))
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("blueprint-runner")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/blueprint-runner")));
    CacheConfig { dir }
}
