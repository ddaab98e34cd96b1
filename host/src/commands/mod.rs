//! The subcommands, a module each; [`dispatch`] runs the one parsed. A job command
//! (`run`, `plan`, `job`, `prepare`, `memcheck`) resolves its flags into
//! [`crate::settings::Settings`] and runs the engine ([`br_engine::job`]) through
//! [`execute`]; the others need no media.

mod bench;
pub mod execute;
pub mod job;
mod memcheck;
mod plan;
pub mod plugin;
mod policy;
mod prepare;
mod run;
pub mod validate;

use std::time::Duration;

use crate::cli::{Command, JobFlags, PluginCall, PluginCommand};
use crate::settings::{Environment, SandboxSettings};
use br_engine::exit;

/// Runs `command` with the process's environment `env`; returns the exit code.
pub async fn dispatch(command: Command, env: &Environment) -> u8 {
    let resolve = |flags| SandboxSettings::resolve(flags, env);
    match command {
        Command::Validate { file, json, timeline, bucket, strip_prefix, object_prefix, sandbox } => {
            let source = match env.blueprint_source(file.as_deref()) {
                Ok(source) => source,
                Err(message) => {
                    eprintln!("error: {message}");
                    return exit::USAGE;
                }
            };
            let sandbox = match resolve(sandbox).load() {
                Ok(sandbox) => sandbox,
                Err(code) => return code,
            };
            let options = timeline.check_options(bucket.as_deref(), &strip_prefix, &object_prefix);
            validate::run(validate::Request { source, json, options }, &sandbox).await
        }
        Command::Policy { action } => policy::run(action),
        Command::Plugin {
            action: PluginCommand::Check { plugin, json, blueprints, facts, skip_built_in, sandbox },
        } => {
            let given = plugin::Given { blueprints, facts, skip_built_in };
            plugin::check(&plugin, json, &given, &resolve(sandbox)).await
        }
        Command::Plugin {
            action: PluginCommand::Call { call: PluginCall::Validate { blueprint, plugin, timeline, sandbox } },
        } => plugin::call_validate(&blueprint, plugin, &timeline, &resolve(sandbox)).await,
        Command::Plugin { action: PluginCommand::Call { call: PluginCall::Plan { request, plugin, sandbox } } } => {
            plugin::call_plan(&request, plugin, &resolve(sandbox)).await
        }
        Command::Plugin { action: PluginCommand::New { dir, name, sdk, sdk_git, sdk_rev } } => {
            plugin::new::run(&dir, name, sdk, sdk_git, sdk_rev)
        }
        Command::Run { job, manifest: None, save_plan_request } => {
            run::run(JobFlags { save_plan_request, ..job }, env).await
        }
        Command::Run { job, manifest: Some(manifest), .. } => run::run_manifest(job, &manifest, env).await,
        Command::Plan { job, facts: None, save_plan_request } => {
            plan::plan(JobFlags { save_plan_request, ..job }, env).await
        }
        Command::Plan { job, facts: Some(facts), save_plan_request } => {
            plan::plan_offline(JobFlags { save_plan_request, ..job }, &facts, env).await
        }
        Command::Prepare { job, prepare } => prepare::prepare(job, prepare, env).await,
        Command::Memcheck { job, iterations, out } => memcheck::memcheck(job, iterations, &out, env).await,
        Command::Job { job, task_id, status_flush_secs } => {
            job::job(job, task_id, Duration::from_secs(status_flush_secs.max(1)), env).await
        }
        Command::BenchValidate { file, iterations, sandbox } => {
            bench::bench_validate(&file, iterations, &resolve(sandbox)).await
        }
        Command::BenchFetch { keys, storage } => bench::bench_fetch(&storage, &keys, env).await,
        Command::Precompile { sandbox } => match resolve(sandbox).load() {
            Ok(loaded) => {
                println!("guest ready ({:?})", loaded.load_source());
                exit::OK
            }
            Err(code) => code,
        },
    }
}
