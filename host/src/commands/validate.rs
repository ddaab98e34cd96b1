//! `blueprint-runner validate`: the sandboxed check of one blueprint.

use br_blueprint::{Refusal, ValidationError};
use br_sandbox::{SandboxError, Validation};
use serde_json::json;

use crate::blueprint_source::{self, Source};
use br_engine::exit;

pub struct Request {
    pub source: Source,
    pub json: bool,
    pub options: br_blueprint::CheckOptions,
}

/// Runs the check and prints the verdict; returns the exit code.
pub async fn run(request: Request, sandbox: &br_sandbox::Sandbox) -> u8 {
    let text = match blueprint_source::read(&request.source) {
        Ok(loaded) => match loaded.into_text() {
            Ok(text) => text,
            Err(refusal) => return print_invalid(&[refusal], request.json),
        },
        Err(error) => {
            eprintln!("error: cannot read the blueprint from {}: {error}", request.source.describe());
            return exit::USAGE;
        }
    };
    match sandbox.validate(&text, &request.options).await {
        Ok(Validation { verdict: Ok(validated), report }) => {
            tracing::info!(task_id = %validated.task_id, fuel_used = report.fuel_used, "blueprint valid");
            for warning in &validated.warnings {
                tracing::warn!(pointer = %warning.pointer, "{}", warning.message);
            }
            let warnings: Vec<_> =
                validated.warnings.iter().map(|w| json!({"pointer": w.pointer, "message": w.message})).collect();
            if request.json {
                println!(
                    "{}",
                    json!({
                        "valid": true,
                        "task_id": validated.task_id,
                        "moves": validated.moves_shown(),
                        "slots": validated.moves.len(),
                        "distinct_clips": validated.clip_keys.len(),
                        "total_duration": validated.total_duration,
                        "audio_key": validated.audio_key,
                        "output_key": validated.output_key,
                        "warnings": warnings,
                        "fuel_used": report.fuel_used,
                    })
                );
            } else {
                println!(
                    "valid: task {}: {} moves ({} slots) over {} distinct clips, {:.3} s, output {} (fuel {})",
                    validated.task_id,
                    validated.moves_shown(),
                    validated.moves.len(),
                    validated.clip_keys.len(),
                    validated.total_duration,
                    validated.output_key,
                    report.fuel_used
                );
                for warning in &validated.warnings {
                    println!("  adjusted {}: {}", warning.pointer, warning.message);
                }
            }
            exit::OK
        }
        Ok(Validation { verdict: Err(refusal), .. }) => print_refusal(&refusal, request.json),
        Err(error) => print_sandbox_error(&error, request.json),
    }
}

fn print_invalid(errors: &[ValidationError], json: bool) -> u8 {
    print_refusal(&Refusal { task_id: None, errors: errors.to_vec() }, json)
}

/// The problems, and the task they are for when the guest could tell (`task_id` is
/// null in JSON otherwise).
fn print_refusal(refusal: &Refusal, json: bool) -> u8 {
    let Refusal { task_id, errors } = refusal;
    if json {
        let errors: Vec<_> = errors
            .iter()
            .map(|e| json!({"pointer": e.pointer, "code": e.code.as_str(), "message": e.message}))
            .collect();
        println!("{}", json!({"valid": false, "task_id": task_id, "errors": errors}));
    } else {
        let plural = if errors.len() == 1 { "" } else { "s" };
        let task = task_id.as_ref().map(|id| format!(" for task {id}")).unwrap_or_default();
        println!("invalid blueprint{task}: {} problem{plural}", errors.len());
        for error in errors {
            let pointer = if error.pointer.is_empty() { "(document)" } else { &error.pointer };
            println!("  {pointer}: {} [{}]", error.message, error.code.as_str());
        }
    }
    exit::INVALID_BLUEPRINT
}

pub fn print_sandbox_error(error: &SandboxError, json: bool) -> u8 {
    tracing::error!(limit = error.limit_name(), "{error}");
    if json {
        println!(
            "{}",
            json!({"valid": null, "sandbox_error": {"limit": error.limit_name(), "message": error.to_string()}})
        );
    } else {
        eprintln!("error: {error}");
    }
    exit::SANDBOX
}
