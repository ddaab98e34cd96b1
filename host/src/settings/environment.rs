//! [`Environment`]: the one read of the process's environment, and what is resolved
//! from it alone (FFmpeg's paths, Cloud Run's labels, the log filter, the guest cache).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use br_engine::logging;
use br_engine::prepare::Shard;
use br_sandbox::CacheConfig;

use crate::blueprint_source::{Source, BLUEPRINT_ENV, BLUEPRINT_URI_ENV};
use crate::guest;

/// The process's environment, read once at start. Everything below the entrance gets
/// the values it needs from here instead of reading variables itself, so a command's
/// inputs are its flags and this snapshot, and tests build one instead of setting
/// process-wide variables.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    variables: BTreeMap<String, OsString>,
}

impl Environment {
    /// The variables of this process (names that are not UTF-8 are no name we read).
    pub fn of_process() -> Environment {
        let variables =
            std::env::vars_os().filter_map(|(name, value)| Some((name.into_string().ok()?, value))).collect();
        Environment { variables }
    }

    /// An environment of exactly these variables.
    #[cfg(test)]
    pub fn of<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Environment {
        Environment { variables: pairs.into_iter().map(|(name, value)| (name.to_owned(), value.into())).collect() }
    }

    /// A variable's value as text; `None` when unset or not UTF-8, as `std::env::var`.
    pub fn get(&self, name: &str) -> Option<String> {
        self.variables.get(name).and_then(|value| value.to_str()).map(str::to_owned)
    }

    /// A variable's raw value (a blueprint that is not UTF-8 is refused as such, not unset).
    pub fn get_os(&self, name: &str) -> Option<&OsStr> {
        self.variables.get(name).map(OsString::as_os_str)
    }

    /// [`Self::get`] as the lookup the configuration checks take.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        |name| self.get(name)
    }

    /// Where the blueprint comes from: the FILE `argument`, else `BLUEPRINT_JSON`, else
    /// `BLUEPRINT_URI`; neither is a usage error.
    pub fn blueprint_source(&self, argument: Option<&str>) -> Result<Source, String> {
        if let Some(argument) = argument {
            return Ok(Source::from_argument(argument));
        }
        if let Some(text) = self.get_os(BLUEPRINT_ENV) {
            return Ok(Source::Env(text.as_encoded_bytes().to_vec()));
        }
        match self.get(BLUEPRINT_URI_ENV) {
            Some(uri) if !uri.is_empty() => Ok(Source::Uri(uri)),
            _ => Err(format!(
                "no blueprint: give a FILE, '-' for stdin, a gs:// URI, or set {BLUEPRINT_ENV} or {BLUEPRINT_URI_ENV}"
            )),
        }
    }

    /// The FFmpeg binaries: `FFMPEG` / `FFPROBE`, else the ones on PATH.
    pub fn ffmpeg_tools(&self) -> FfmpegTools {
        let pick = |var: &str, name: &str| self.get_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(name));
        FfmpegTools { ffmpeg: pick("FFMPEG", "ffmpeg"), ffprobe: pick("FFPROBE", "ffprobe") }
    }

    /// Which Cloud Run task and execution this process is (`CLOUD_RUN_TASK_INDEX`,
    /// `CLOUD_RUN_TASK_ATTEMPT`, `CLOUD_RUN_EXECUTION`), for every log line and the result.
    pub fn cloud_run(&self) -> logging::CloudRunLabels {
        let number = |name: &str| self.get(name).and_then(|v| v.trim().parse::<u64>().ok());
        logging::CloudRunLabels {
            task_index: number("CLOUD_RUN_TASK_INDEX"),
            task_attempt: number("CLOUD_RUN_TASK_ATTEMPT"),
            // Cloud Run's own name; bounded so a stray value cannot bloat every line.
            execution: self.get("CLOUD_RUN_EXECUTION").map(|name| name.chars().take(128).collect()),
        }
    }

    /// The log filter `BLUEPRINT_RUNNER_LOG` or `LOG_LEVEL` ask for, else `default_level`;
    /// an unknown level falls back to the default with a note.
    pub fn log_choice(&self, default_level: &str) -> logging::LogChoice {
        let choice = super::log_filter::filter_from_env(&self.lookup(), default_level).unwrap_or_else(|message| {
            logging::LogChoice {
                directive: default_level.to_owned(),
                note: Some(format!("LOG_LEVEL: {message}; logging at {default_level}")),
            }
        });
        logging::LogChoice { directive: with_engine_targets(&choice.directive), ..choice }
    }

    /// `--cache-dir`, else `BLUEPRINT_RUNNER_CACHE_DIR`, else the user's cache folder.
    pub(super) fn guest_cache(&self, flag: Option<PathBuf>, disabled: bool) -> CacheConfig {
        if disabled {
            return CacheConfig { dir: None };
        }
        let dir = flag
            .or_else(|| self.get_os(guest::CACHE_ENV).map(PathBuf::from))
            .or_else(|| self.get_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("blueprint-runner")))
            .or_else(|| self.get_os("HOME").map(|d| PathBuf::from(d).join(".cache/blueprint-runner")));
        CacheConfig { dir }
    }
}

/// This task's share of a task array: `CLOUD_RUN_TASK_INDEX` / `CLOUD_RUN_TASK_COUNT`,
/// when both are set.
pub fn cloud_run_shard(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Shard>, String> {
    match (get("CLOUD_RUN_TASK_INDEX"), get("CLOUD_RUN_TASK_COUNT")) {
        (Some(index), Some(count)) => Shard::parse(&format!("{index}/{count}")).map(Some).map_err(|e| e.to_string()),
        _ => Ok(None),
    }
}

/// The FFmpeg and ffprobe a job runs.
#[derive(Debug, Clone)]
pub struct FfmpegTools {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
}

/// The filter `directive` with each directive for this binary's target (`blueprint_runner`,
/// `blueprint_runner::ffmpeg`...) repeated for the engine's (`br_engine`,
/// `br_engine::ffmpeg`...): the engine's modules were the binary's and kept their names,
/// so an operator's `blueprint_runner=debug` still reaches all of them.
fn with_engine_targets(directive: &str) -> String {
    const BINARY: &str = "blueprint_runner";
    let mut parts: Vec<String> = directive.split(',').map(str::to_owned).collect();
    let engine: Vec<String> = parts
        .iter()
        .filter_map(|part| {
            let rest = part.trim().strip_prefix(BINARY)?;
            // The whole target or one of its modules, not `blueprint_runner_x`.
            matches!(rest.chars().next(), None | Some('=' | ':' | '[')).then(|| format!("br_engine{rest}"))
        })
        .collect();
    parts.extend(engine);
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::with_engine_targets;
    use br_engine::prepare::Shard;

    #[test]
    fn cloud_runs_task_index_and_count_are_a_share_when_both_are_set() {
        let env = |index: &'static str, count: &'static str| {
            move |name: &str| match name {
                "CLOUD_RUN_TASK_INDEX" => Some(index.to_owned()),
                "CLOUD_RUN_TASK_COUNT" => Some(count.to_owned()),
                _ => None,
            }
        };
        assert_eq!(super::cloud_run_shard(&env("2", "4")), Ok(Some(Shard { index: 2, count: 4 })));
        assert!(super::cloud_run_shard(&env("4", "4")).unwrap_err().contains("is not a shard I/N"));
        assert_eq!(super::cloud_run_shard(&|_: &str| None), Ok(None));
    }

    #[test]
    fn a_directive_for_the_binary_reaches_the_engine_s_modules_of_the_same_name() {
        assert_eq!(with_engine_targets("info"), "info");
        assert_eq!(with_engine_targets("blueprint_runner=debug,warn"), "blueprint_runner=debug,warn,br_engine=debug");
        assert_eq!(
            with_engine_targets("info,br_sandbox=debug,blueprint_runner::ffmpeg=debug"),
            "info,br_sandbox=debug,blueprint_runner::ffmpeg=debug,br_engine::ffmpeg=debug"
        );
        assert_eq!(with_engine_targets("blueprint_runner_x=debug"), "blueprint_runner_x=debug");
    }
}
