//! `blueprint-runner run`: one blueprint's video, or with `--manifest` a task array's
//! share of a manifest, each job's status as JSON lines on stdout.

use std::time::Duration;

use br_status::JsonLines;

use crate::cli::JobFlags;
use crate::commands::execute::{self, Launch, Mode};
use crate::settings::{Environment, Settings};
use br_engine::cancel::Cancel;

/// `run`: status lines on stdout.
pub async fn run(flags: JobFlags, env: &Environment) -> u8 {
    let cancel = Cancel::on_signals();
    let settings = match Settings::resolve(flags, env) {
        Ok(settings) => settings,
        Err(message) => return execute::refused(&mut JsonLines, None, message),
    };
    execute::execute(&settings, Mode::Run, &mut JsonLines, Launch::standalone(), &cancel).await
}

/// `run --manifest`: a task array's share of a manifest, status lines on stdout.
pub async fn run_manifest(flags: JobFlags, manifest: &str, env: &Environment) -> u8 {
    let cancel = Cancel::on_signals();
    let settings = match Settings::resolve(flags, env) {
        Ok(settings) => settings,
        Err(message) => return execute::refused(&mut JsonLines, None, message),
    };
    crate::commands::job::task_array(&settings, manifest, STATUS_FLUSH_FOR_RUN, &cancel, false, env).await
}

/// `run` has no database: nothing to wait for at the end of an entry.
const STATUS_FLUSH_FOR_RUN: Duration = Duration::from_secs(1);
