//! `blueprint-runner plan`: validate, fetch, probe and plan, check the plan against the
//! policy and print it, running nothing; with `--facts`, from media facts in a file
//! instead of media.

use br_status::LogOnly;

use crate::blueprint_source::Loaded;
use crate::cli::JobFlags;
use crate::commands::execute::{self, read_blueprint, Launch, Mode};
use crate::settings::{Environment, Settings};
use br_engine::cancel::Cancel;
use br_engine::exit;

/// `plan`: the job up to its checked plan, printed; status changes go to the log only.
pub async fn plan(flags: JobFlags, env: &Environment) -> u8 {
    let cancel = Cancel::on_signals();
    let settings = match Settings::resolve(flags, env) {
        Ok(settings) => settings,
        Err(message) => return execute::refused(&mut LogOnly, None, message),
    };
    execute::execute(&settings, Mode::PlanOnly, &mut LogOnly, Launch::standalone(), &cancel).await
}

/// `plan --facts`: validate and plan from media facts given in a file, with no storage,
/// media or FFmpeg; the plan is checked against the policy and printed as `plan` prints
/// it. Exit codes as for `plan`: 2 invalid blueprint, 3 sandbox or policy, 4 no plan.
pub async fn plan_offline(flags: JobFlags, facts_path: &std::path::Path, env: &Environment) -> u8 {
    let stop = |code: u8, message: String| {
        eprintln!("error: {message}");
        code
    };
    let settings = match Settings::resolve(flags, env) {
        Ok(settings) => settings,
        Err(message) => return stop(exit::USAGE, message),
    };
    let text = match settings.blueprint() {
        Ok(source) => match read_blueprint(&source, &settings.storage).await.map(Loaded::into_text) {
            Ok(Ok(text)) => text,
            Ok(Err(refusal)) => {
                return stop(exit::INVALID_BLUEPRINT, format!("{}: {}", refusal.pointer, refusal.message))
            }
            Err(message) => return stop(exit::USAGE, message),
        },
        Err(message) => return stop(exit::USAGE, message),
    };
    let sandbox = match settings.load_sandbox() {
        Ok(sandbox) => sandbox,
        Err((code, message)) => return stop(code, message),
    };
    let validated = match sandbox.validate(&text, &settings.check_options()).await.map(|validation| validation.verdict)
    {
        Ok(Ok(validated)) => validated,
        Ok(Err(refusal)) => {
            let listed = br_engine::job::list(refusal.errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str())));
            return stop(exit::INVALID_BLUEPRINT, format!("invalid blueprint: {listed}"));
        }
        Err(error) => return stop(exit::SANDBOX, error.to_string()),
    };
    let facts: Vec<br_plan::MediaFacts> = match br_engine::plan_request::read_facts(facts_path) {
        Ok(facts) => facts,
        Err(message) => return stop(exit::USAGE, format!("{}: {message}", facts_path.display())),
    };
    let expected: Vec<&str> =
        std::iter::once(validated.audio_key.as_str()).chain(validated.clip_keys.iter().map(String::as_str)).collect();
    if facts.len() != expected.len() {
        return stop(
            exit::USAGE,
            format!(
                "{} facts given; the blueprint has {} inputs, in this order: {}",
                facts.len(),
                expected.len(),
                expected.join(", ")
            ),
        );
    }
    let request = br_plan::PlanRequest {
        validated,
        inputs: facts,
        strict: settings.is_strict(),
        prepared: Vec::new(),
        song_loudness: None,
    };
    if let Some(path) = &settings.save_plan_request {
        if let Err(message) = br_engine::plan_request::write(path, &request) {
            return stop(exit::USAGE, message.to_string());
        }
    }
    let plan = match sandbox.plan(&request).await.map(|planning| planning.verdict) {
        Ok(Ok(plan)) => plan,
        Ok(Err(errors)) => {
            let listed = br_engine::job::list(errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str())));
            return stop(exit::MEDIA, format!("no plan: {listed}"));
        }
        Err(error) => return stop(exit::SANDBOX, error.to_string()),
    };
    let checked =
        match br_policy::check(&plan, request.inputs.len() as u32, &br_policy::PolicyLimits::for_request(&request)) {
            Ok(checked) => checked,
            Err(violation) => return stop(exit::SANDBOX, violation.to_string()),
        };
    let shown =
        serde_json::json!({ "task_id": request.validated.task_id, "inputs": request.inputs, "plan": checked.plan() });
    match serde_json::to_string_pretty(&shown) {
        Ok(text) => {
            println!("{text}");
            exit::OK
        }
        Err(error) => stop(exit::USAGE, error.to_string()),
    }
}
