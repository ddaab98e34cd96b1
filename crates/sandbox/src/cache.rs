//! Compiling a guest takes seconds; loading its precompiled form takes about a
//! millisecond. Compiled guests are cached on disk, keyed by the wasm's SHA-256, the
//! wasmtime version and the engine's compatibility hash (its codegen settings).
//!
//! A precompiled artefact is native code that is trusted as such when loaded, so the
//! cache folder must be private to the job's user: a folder that others may write to
//! is not used.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::SandboxError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled now; the cache was off, unusable or empty.
    Compiled,
    /// Loaded from the on-disk cache.
    Cached,
}

pub fn load_component(
    engine: &Engine,
    wasm: &[u8],
    dir: Option<&Path>,
) -> Result<(Component, LoadSource), SandboxError> {
    let entry = dir.and_then(|dir| match private_dir(dir) {
        Ok(()) => Some(dir.join(artefact_name(engine, wasm))),
        Err(reason) => {
            tracing::warn!(cache_dir = %dir.display(), %reason, "guest cache not used");
            None
        }
    });
    if let Some(path) = entry.as_deref().filter(|p| p.is_file()) {
        let started = Instant::now();
        // SAFETY: the file was written by `Engine::precompile_component` of this
        // same build (the name carries the engine's compatibility hash) into a
        // folder only this user can write.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(component) => {
                tracing::debug!(path = %path.display(), micros = started.elapsed().as_micros() as u64, "guest loaded from cache");
                return Ok((component, LoadSource::Cached));
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "cached guest unusable; recompiling")
            }
        }
    }
    let started = Instant::now();
    let compiled = engine.precompile_component(wasm).map_err(SandboxError::load)?;
    tracing::debug!(millis = started.elapsed().as_millis() as u64, "guest compiled");
    if let Some(path) = &entry {
        if let Err(error) = write_atomically(path, &compiled) {
            tracing::warn!(path = %path.display(), %error, "could not cache the compiled guest");
        }
    }
    // SAFETY: these bytes were produced by this engine a moment ago.
    let component = unsafe { Component::deserialize(engine, &compiled) }.map_err(SandboxError::load)?;
    Ok((component, LoadSource::Compiled))
}

fn artefact_name(engine: &Engine, wasm: &[u8]) -> String {
    let digest = Sha256::digest(wasm);
    let wasm_id: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("guest-{wasm_id}-wasmtime{}-{:016x}.cwasm", wasmtime_version(), hasher.finish())
}

fn wasmtime_version() -> &'static str {
    // Kept in step with the `=` requirement in the workspace's Cargo.toml.
    "48.0.8"
}

/// Creates the folder if needed (mode 0700) and refuses one that others may write.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let meta = std::fs::metadata(dir)?;
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the folder is writable by group or others",
            ));
        }
        if meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the folder belongs to another user",
            ));
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

fn write_atomically(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}
