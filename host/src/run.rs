//! `blueprint-runner run` and `plan`: wiring flags to a [`job::Job`] and its outcome
//! to status lines, stderr and the exit code.

use std::time::Duration;

use crate::input::{self, Loaded, Source};
use crate::job::{Failure, Job, JobConfig, Reporter};
use crate::status::{JsonLines, LogOnly, Stage, StatusSink};
use crate::storage::LocalFolder;
use crate::{exit, ffmpeg, JobFlags};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    PlanOnly,
}

pub async fn run(flags: JobFlags, mode: Mode) -> u8 {
    let source = match Source::choose(flags.file.as_deref()) {
        Ok(source) => source,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::USAGE;
        }
    };
    let storage = match LocalFolder::open(&flags.data_dir) {
        Ok(storage) => storage,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::USAGE;
        }
    };
    let sandbox = match flags.sandbox.load() {
        Ok(sandbox) => sandbox,
        Err(code) => return code,
    };
    let (ffmpeg_binary, ffprobe) = ffmpeg::binaries();
    let config = JobConfig {
        work_root: flags.work_dir.clone().unwrap_or_else(std::env::temp_dir),
        strict: flags.strict,
        ffprobe,
        runner: ffmpeg::Runner { ffmpeg: ffmpeg_binary, step_timeout: flags.step_timeout.map(Duration::from_secs) },
    };
    let job = Job { sandbox: &sandbox, storage: &storage, config: &config };
    let (mut lines, mut log_only) = (JsonLines, LogOnly);
    let sink: &mut dyn StatusSink = if mode == Mode::Run { &mut lines } else { &mut log_only };
    let mut reporter = Reporter::new(sink);

    let text = match input::read(&source) {
        Ok(Loaded::Text(text)) => text,
        Ok(Loaded::TooLarge(seen)) => {
            let limit = br_blueprint::limits::MAX_BLUEPRINT_BYTES;
            return fail(&mut reporter, Stage::Validate, Failure::Invalid(vec![host_error(br_blueprint::ErrorCode::TooLarge, format!("the blueprint is over {limit} bytes (read {seen} before stopping)"))]));
        }
        Ok(Loaded::NotUtf8) => {
            return fail(&mut reporter, Stage::Validate, Failure::Invalid(vec![host_error(br_blueprint::ErrorCode::InvalidJson, "the blueprint is not UTF-8 text".into())]));
        }
        Err(error) => {
            eprintln!("error: cannot read the blueprint from {}: {error}", source.describe());
            return exit::USAGE;
        }
    };

    match mode {
        Mode::Run => match job.run(&text, &mut reporter).await {
            Ok(outcome) => {
                tracing::info!(task_id = %outcome.validated.task_id, output = %outcome.validated.output_key, "job completed");
                exit::OK
            }
            Err((stage, failure)) => fail(&mut reporter, stage, failure),
        },
        Mode::PlanOnly => match job.prepare(&text, &mut reporter).await {
            Ok(prepared) => {
                let shown = serde_json::json!({
                    "task_id": prepared.validated.task_id,
                    "inputs": prepared.facts,
                    "plan": prepared.plan.plan(),
                });
                match serde_json::to_string_pretty(&shown) {
                    Ok(text) => println!("{text}"),
                    Err(error) => eprintln!("error: cannot print the plan: {error}"),
                }
                exit::OK
            }
            Err((stage, failure)) => fail(&mut reporter, stage, failure),
        },
    }
}

fn host_error(code: br_blueprint::ErrorCode, message: String) -> br_blueprint::ValidationError {
    br_blueprint::ValidationError { pointer: String::new(), code, message }
}

fn fail(reporter: &mut Reporter<'_>, stage: Stage, failure: Failure) -> u8 {
    tracing::error!(stage = ?stage, "{failure}");
    reporter.failed(stage, &failure);
    eprintln!("error: {failure}");
    failure.exit_code()
}
