//! `blueprint-runner`: turns one video blueprint into a video. The decisions run in a
//! sandboxed WebAssembly guest; this binary does the I/O.

mod blueprint_source;
mod cli;
mod commands;
mod config;
mod guest;
mod settings;
mod task_array;

use std::process::ExitCode;
use std::time::Duration;

use br_engine::{exit, logging};
use clap::Parser;
use cli::{Cli, Command};

fn main() -> ExitCode {
    let env = settings::Environment::of_process();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            if error.use_stderr() && invoked_as_job() {
                // clap stops at the first bad variable; list them all.
                let problems = config::check_job_environment(&env.lookup(), true);
                if !problems.is_empty() {
                    let (format, destination) = (logging::LogFormat::Json, logging::Destination::Stdout);
                    logging::init(format, destination, "info", env.log_choice("info"), &env.cloud_run());
                    let refusal = commands::job::refuse_configuration(&problems, Duration::from_secs(5), &env);
                    return block_on(refusal);
                }
            }
            let _ = error.print();
            // Help and version are not errors; every other parse error is a usage error
            // (clap's own code, 2, means "invalid blueprint" here).
            return ExitCode::from(if error.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    let (destination, level) = match cli.command {
        Command::Job { .. } => (logging::Destination::Stdout, "info"),
        _ => (logging::Destination::Stderr, "warn"),
    };
    logging::init(cli.log_format.into(), destination, level, env.log_choice(level), &env.cloud_run());
    block_on(commands::dispatch(cli.command, &env))
}

/// Runs a command on a single-threaded runtime (one vCPU: FFmpeg does the heavy work).
fn block_on(command: impl std::future::Future<Output = u8>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => {
            let code = runtime.block_on(command);
            // A blocking task still copying a file (a slow disk) must not hold the exit,
            // after SIGTERM least of all: Cloud Run kills the container seconds later.
            runtime.shutdown_timeout(Duration::from_secs(2));
            ExitCode::from(code)
        }
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::from(exit::USAGE)
        }
    }
}

/// The first word that is not an option is the subcommand.
fn invoked_as_job() -> bool {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--log-format" {
            args.next();
        } else if !arg.starts_with('-') {
            return arg == "job";
        }
    }
    false
}
