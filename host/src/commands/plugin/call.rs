//! `plugin call validate|plan`: one call of an export, its whole answer printed.

use super::*;

/// The plugin `plugin call` runs: its PLUGIN argument, else `--guest`, else the built-in.
fn load_called(plugin: Option<PathBuf>, sandbox: &SandboxSettings) -> Result<(Sandbox, String), u8> {
    let sandbox = sandbox.with_guest(plugin.or_else(|| sandbox.guest().map(Path::to_owned)));
    let name = sandbox.guest().map_or_else(|| "built-in".to_owned(), |path| path.display().to_string());
    sandbox.load().map(|loaded| (loaded, name))
}

/// A `plugin call` answer, printed.
fn print_answer(answer: &Value) {
    println!("{}", serde_json::to_string_pretty(answer).unwrap_or_default());
}

/// A call that ended in the sandbox (a trap, a limit, a malformed answer): exit 3.
fn sandbox_failure(mut answer: Value, error: &SandboxError) -> u8 {
    answer["sandbox_error"] = json!({ "limit": error.limit_name(), "message": error.to_string() });
    print_answer(&answer);
    exit::SANDBOX
}

/// `plugin call validate BLUEPRINT [PLUGIN]`: the validated timeline with its fit and
/// warnings, or the refusal; the call's fuel and memory, and the guest's log lines.
pub async fn call_validate(
    blueprint: &str,
    plugin: Option<PathBuf>,
    timeline: &TimelineFlags,
    flags: &SandboxSettings,
) -> u8 {
    let source = match crate::blueprint_source::Source::from_argument(blueprint) {
        source @ (crate::blueprint_source::Source::File(_) | crate::blueprint_source::Source::Stdin) => source,
        _ => {
            eprintln!("error: {blueprint:?}: plugin call validate reads a file, or '-' for stdin");
            return exit::USAGE;
        }
    };
    let text = match crate::blueprint_source::read(&source).map(crate::blueprint_source::Loaded::into_text) {
        Ok(Ok(text)) => text,
        Ok(Err(refusal)) => {
            eprintln!("error: {}: {}", source.describe(), refusal.message);
            return exit::INVALID_BLUEPRINT;
        }
        Err(error) => {
            eprintln!("error: cannot read the blueprint from {}: {error}", source.describe());
            return exit::USAGE;
        }
    };
    let (sandbox, name) = match load_called(plugin, flags) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let mut answer = json!({ "plugin": name, "contract": sandbox.contract_version(), "call": "validate" });
    // No bucket: a `gs://` key is read as a key only for a job's own bucket.
    let options = timeline.check_options(None, "", "");
    let validation = match sandbox.validate(&text, &options).await {
        Ok(validation) => validation,
        Err(error) => return sandbox_failure(answer, &error),
    };
    answer["usage"] = json!(usage(&validation.report, sandbox.limits()));
    answer["log"] = json!(validation.report.log);
    let code = match validation.verdict {
        Ok(validated) => {
            answer["validated"] = json!(br_engine::plan_request::TimelineRecord::of(&validated));
            answer["frames"] = json!(timeline_frames(&validated));
            exit::OK
        }
        Err(refusal) => {
            let errors: Vec<Value> = refusal
                .errors
                .iter()
                .map(|e| json!({ "pointer": e.pointer, "code": e.code.as_str(), "message": e.message }))
                .collect();
            answer["refused"] = json!({ "task_id": refusal.task_id, "errors": errors });
            exit::INVALID_BLUEPRINT
        }
    };
    print_answer(&answer);
    code
}

/// `plugin call plan REQUEST.json [PLUGIN]`: the plan (steps, temps, warnings) or the plan
/// errors, the policy's verdict on the plan and whether its declared output matches the
/// timeline; the call's fuel and memory, and the guest's log lines.
pub async fn call_plan(request_path: &Path, plugin: Option<PathBuf>, flags: &SandboxSettings) -> u8 {
    let request = match br_engine::plan_request::read(request_path) {
        Ok(request) => request,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::USAGE;
        }
    };
    let (sandbox, name) = match load_called(plugin, flags) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let mut answer = json!({ "plugin": name, "contract": sandbox.contract_version(), "call": "plan" });
    let planning = match sandbox.plan(&request).await {
        Ok(planning) => planning,
        Err(error) => return sandbox_failure(answer, &error),
    };
    answer["usage"] = json!(usage(&planning.report, sandbox.limits()));
    answer["log"] = json!(planning.report.log);
    let code = match planning.verdict {
        Ok(plan) => {
            let policy = policy_verdict_of(&plan, &request);
            let output = declared_output_problem(&plan, &request.validated);
            let passes = policy.is_ok() && output.is_none();
            answer["policy"] = policy.map_or_else(|listed| json!(listed), |()| json!("passes"));
            answer["output"] = json!(output.unwrap_or_else(|| "matches the timeline".to_owned()));
            answer["frames"] = json!(timeline_frames(&request.validated));
            answer["plan"] = json!(plan);
            if passes {
                exit::OK
            } else {
                exit::SANDBOX
            }
        }
        Err(errors) => {
            answer["errors"] = json!(errors
                .iter()
                .map(|PlanNote { pointer, message }| json!({ "pointer": pointer, "message": message }))
                .collect::<Vec<_>>());
            exit::MEDIA
        }
    };
    print_answer(&answer);
    code
}
