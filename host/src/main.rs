//! `blueprint-runner`: turns one video blueprint into a video. The decisions run in a
//! sandboxed WebAssembly guest; this binary does the I/O.

mod batch;
mod budget;
mod cancel;
mod cli;
mod config;
mod exit;
mod ffmpeg;
mod formats;
mod guest;
mod input;
mod job;
mod logging;
mod media;
mod memcheck;
mod plan_request;
mod plugin;
mod policy;
mod prepare;
mod run;
mod scaffold;
mod schedule;
mod storage;
mod validate;
mod work;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cli::{Cli, Command, JobFlags};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            if error.use_stderr() && invoked_as_job() {
                // clap stops at the first bad variable; list them all.
                let env = |name: &str| std::env::var(name).ok();
                let problems = config::check_job_environment(&env, true);
                if !problems.is_empty() {
                    logging::init(logging::LogFormat::Json, logging::Destination::Stdout, "info");
                    return block_on(run::refuse_configuration(&problems, Duration::from_secs(5)));
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
    logging::init(cli.log_format, destination, level);
    block_on(run(cli.command))
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

async fn run(command: Command) -> u8 {
    match command {
        Command::Validate { file, json, timeline, bucket, strip_prefix, object_prefix, sandbox } => {
            let source = match input::Source::choose(file.as_deref()) {
                Ok(source) => source,
                Err(message) => {
                    eprintln!("error: {message}");
                    return exit::USAGE;
                }
            };
            let sandbox = match sandbox.load() {
                Ok(sandbox) => sandbox,
                Err(code) => return code,
            };
            let options = timeline.check_options(bucket.as_deref(), &strip_prefix, &object_prefix);
            validate::run(validate::Request { source, json, options }, &sandbox).await
        }
        Command::Policy { action } => policy::run(action),
        Command::Plugin {
            action: cli::PluginCommand::Check { plugin, json, blueprints, facts, skip_built_in, sandbox },
        } => {
            let given = plugin::Given { blueprints, facts, skip_built_in };
            plugin::check(&plugin, json, &given, &sandbox).await
        }
        Command::Plugin {
            action:
                cli::PluginCommand::Call { call: cli::PluginCall::Validate { blueprint, plugin, timeline, sandbox } },
        } => plugin::call_validate(&blueprint, plugin, &timeline, &sandbox).await,
        Command::Plugin {
            action: cli::PluginCommand::Call { call: cli::PluginCall::Plan { request, plugin, sandbox } },
        } => plugin::call_plan(&request, plugin, &sandbox).await,
        Command::Plugin { action: cli::PluginCommand::New { dir, name, sdk, sdk_git, sdk_rev } } => {
            scaffold::run(&dir, name, sdk, sdk_git, sdk_rev)
        }
        Command::BenchFetch { keys, storage } => run::bench_fetch(&storage, &keys).await,
        Command::Run { job, manifest: None, save_plan_request } => {
            run::run(JobFlags { save_plan_request, ..job }, run::Mode::Run).await
        }
        Command::Run { job, manifest: Some(manifest), .. } => run::run_manifest(job, &manifest).await,
        Command::Plan { job, facts: None, save_plan_request } => {
            run::run(JobFlags { save_plan_request, ..job }, run::Mode::PlanOnly).await
        }
        Command::Plan { job, facts: Some(facts), save_plan_request } => {
            run::plan_offline(JobFlags { save_plan_request, ..job }, &facts).await
        }
        Command::Prepare { job, prepare } => run::prepare(job, prepare).await,
        Command::Memcheck { job, iterations, out } => memcheck::memcheck(job, iterations, &out).await,
        Command::Job { job, task_id, status_flush_secs } => {
            run::job(job, task_id, Duration::from_secs(status_flush_secs.max(1))).await
        }
        Command::BenchValidate { file, iterations, sandbox } => {
            let started = std::time::Instant::now();
            let loaded = match sandbox.load() {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            let load_ms = started.elapsed().as_secs_f64() * 1e3;
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(error) => {
                    eprintln!("error: {file}: {error}");
                    return exit::USAGE;
                }
            };
            let (mut fuel, mut first_call_ms) = (0, 0.0);
            let loop_started = std::time::Instant::now();
            for i in 0..iterations.max(1) {
                match loaded.validate(&text, &br_blueprint::CheckOptions::default()).await {
                    Ok(validation) => {
                        fuel = validation.report.fuel_used;
                        if i == 0 {
                            first_call_ms = started.elapsed().as_secs_f64() * 1e3;
                        }
                    }
                    Err(error) => return validate::print_sandbox_error(&error, true),
                }
            }
            let seconds = loop_started.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({
                    "guest_load_ms": load_ms,
                    "guest_load_source": format!("{:?}", loaded.load_source()),
                    "start_to_first_call_done_ms": first_call_ms,
                    "iterations": iterations.max(1),
                    "validations_per_second": f64::from(iterations.max(1)) / seconds,
                    "fuel_per_validation": fuel,
                })
            );
            exit::OK
        }
        Command::Precompile { sandbox } => match sandbox.load() {
            Ok(loaded) => {
                println!("guest ready ({:?})", loaded.load_source());
                exit::OK
            }
            Err(code) => code,
        },
    }
}
