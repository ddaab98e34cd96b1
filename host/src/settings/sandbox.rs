//! [`SandboxSettings`]: which guest runs, under which limits, compiled where.

use std::path::{Path, PathBuf};
use std::time::Duration;

use br_engine::budget::JobBudget;
use br_engine::exit;
use br_sandbox::CacheConfig;

use super::Environment;
use crate::cli::SandboxFlags;
use crate::guest;

/// Which guest runs and under which limits: the sandbox flags with the cache folder the
/// environment names.
#[derive(Clone)]
pub struct SandboxSettings {
    flags: SandboxFlags,
    cache: CacheConfig,
}

impl SandboxSettings {
    pub fn resolve(flags: SandboxFlags, env: &Environment) -> SandboxSettings {
        let cache = env.guest_cache(flags.cache_dir.clone(), flags.no_cache);
        SandboxSettings { flags, cache }
    }

    /// The same limits with the guest at `path` instead of the configured one.
    pub fn with_guest(&self, path: Option<PathBuf>) -> SandboxSettings {
        SandboxSettings { flags: SandboxFlags { guest: path, ..self.flags.clone() }, cache: self.cache.clone() }
    }

    /// The configured plugin, if any.
    pub fn guest(&self) -> Option<&Path> {
        self.flags.guest.as_deref()
    }

    /// The job's memory budget and its split; on failure the message (a usage error).
    pub fn budget(&self) -> Result<JobBudget, String> {
        self.flags.budget()
    }

    /// The sandbox with the built-in guest or a plugin; on failure the exit code and the
    /// message (not yet printed).
    pub fn try_load(&self) -> Result<br_sandbox::Sandbox, (u8, String)> {
        let budget = self.budget().map_err(|message| (exit::USAGE, message))?;
        self.try_load_within(&budget)
    }

    /// [`Self::try_load`] with the guest's memory cap from a budget already resolved.
    pub fn try_load_within(&self, budget: &JobBudget) -> Result<br_sandbox::Sandbox, (u8, String)> {
        let limits = br_sandbox::Limits {
            fuel: self.flags.fuel,
            memory_bytes: budget.guest,
            deadline: Duration::from_millis(self.flags.guest_deadline_ms),
        };
        let choice = guest::GuestChoice { path: self.flags.guest.clone(), cache: self.cache.clone() };
        let sandbox = choice.load(limits).map_err(|error| {
            let code = match error {
                guest::LoadError::Read { .. } => exit::USAGE,
                guest::LoadError::Sandbox(_) => exit::SANDBOX,
            };
            (code, error.to_string())
        })?;
        // Settings for a guest that cannot take them are the operator's mistake: a usage error.
        sandbox.with_settings(self.flags.guest_settings.clone()).map_err(|error| (exit::USAGE, error.to_string()))
    }

    /// [`Self::try_load`], printing the error.
    pub fn load(&self) -> Result<br_sandbox::Sandbox, u8> {
        self.try_load().map_err(|(code, message)| {
            eprintln!("error: {message}");
            code
        })
    }
}
