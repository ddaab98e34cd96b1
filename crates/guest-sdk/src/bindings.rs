//! The contract's bindings, and the glue between them and a [`Plugin`](crate::Plugin).

wit_bindgen::generate!({
    world: "guest",
    path: "../../wit",
    pub_export_macro: true,
    export_macro_name: "export_guest",
    default_bindings_module: "br_guest_sdk::bindings",
});

#[path = "convert.rs"]
pub mod convert;

pub use blueprint::runner::types as wit;

pub mod glue {
    use super::blueprint::runner::host::{log, loudness, LogLevel};
    use super::{convert, wit};
    use crate::Plugin;

    pub fn validate<P: Plugin>(blueprint: String) -> Result<wit::Validated, wit::Refusal> {
        match P::validate(&blueprint) {
            Ok(validated) => {
                log(LogLevel::Debug, &format!("blueprint valid: {} moves", validated.moves.len()));
                Ok(convert::validated_to_wit(validated))
            }
            Err(refusal) => {
                log(LogLevel::Info, &format!("blueprint refused: {} problems", refusal.errors.len()));
                Err(convert::refusal_to_wit(refusal))
            }
        }
    }

    pub fn plan<P: Plugin>(request: wit::PlanRequest) -> Result<wit::Plan, Vec<wit::PlanError>> {
        let mut request = convert::request_from_wit(request);
        // The song's loudness, when the host measured it for normalize_audio (contract 0.7.0;
        // here rather than in `convert`, which the 0.4.0 test guest shares).
        request.song_loudness = loudness(br_plan::SONG_INPUT).map(|measured| br_plan::Loudness {
            integrated: measured.integrated,
            range: measured.range,
            true_peak: measured.true_peak,
            seconds: measured.seconds,
        });
        match P::plan(request) {
            Ok(plan) => {
                log(LogLevel::Debug, &format!("plan: {} steps, {} warnings", plan.steps.len(), plan.warnings.len()));
                Ok(convert::plan_to_wit(plan))
            }
            Err(errors) => Err(convert::plan_errors_to_wit(errors)),
        }
    }

    pub fn validate_manifest<P: Plugin>(
        manifest: String,
    ) -> Result<Vec<wit::ManifestEntry>, Vec<wit::ValidationError>> {
        match P::validate_manifest(&manifest) {
            Ok(entries) => {
                let refused = entries.iter().filter(|entry| entry.problem.is_some()).count();
                log(LogLevel::Debug, &format!("manifest: {} entries, {refused} refused", entries.len()));
                Ok(entries
                    .into_iter()
                    .map(|entry| wit::ManifestEntry {
                        task_id: entry.task_id,
                        blueprint_uri: entry.blueprint_uri,
                        problem: entry.problem.map(convert::error_to_wit),
                    })
                    .collect())
            }
            Err(errors) => Err(errors.into_iter().map(convert::error_to_wit).collect()),
        }
    }
}
