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

/// Where prepared input `input`'s GOPs start, as (first GOP, later GOPs) in frames
/// (`host.keyframes`, contract 0.10.0). `convert` asks through here: a guest it is built
/// into against an older contract answers from `host.prepared` alone.
fn keyframe_grid(input: u32) -> Option<(u32, u32)> {
    blueprint::runner::host::keyframes(input).map(|grid| (grid.first_gop_frames, grid.gop_frames))
}

pub use blueprint::runner::types as wit;

pub mod glue {
    use super::blueprint::runner::host::{keep, kept, log, loudness, LogLevel};
    use super::{convert, wit};
    use crate::Plugin;

    pub fn validate<P: Plugin>(blueprint: String, options: wit::CheckOptions) -> Result<wit::Checked, wit::Refusal> {
        let options = br_blueprint::CheckOptions {
            strict: options.strict,
            own_bucket: options
                .own_bucket
                .map(|own| br_blueprint::OwnBucket { address_prefix: own.address_prefix, key_prefix: own.key_prefix }),
        };
        match P::validate(&blueprint, &options) {
            Ok(validated) => {
                // What the plugin keeps for its plan (contract 0.9.0): refused by the host
                // past its bound, which is the plugin's fault, not the blueprint's.
                if let Some(data) = &validated.kept {
                    if let Err(why) = keep(data) {
                        let message = format!("the plugin could not keep its data for plan: {why}");
                        return Err(convert::refusal_to_wit(crate::kept::refusal(&validated, message)));
                    }
                }
                log(
                    LogLevel::Debug,
                    &format!(
                        "blueprint valid: {} slots, {} adjustments",
                        validated.moves.len(),
                        validated.warnings.len()
                    ),
                );
                let fit = wit::TimelineFit {
                    slots: validated
                        .moves
                        .iter()
                        .map(|slot| wit::SlotFit { origin: slot.origin, transition_seconds: slot.transition_seconds })
                        .collect(),
                    warnings: validated
                        .warnings
                        .iter()
                        .map(|w| wit::PlanWarning { pointer: w.pointer.clone(), message: w.message.clone() })
                        .collect(),
                };
                Ok(wit::Checked { validated: convert::validated_to_wit(validated), fit })
            }
            Err(refusal) => {
                log(LogLevel::Info, &format!("blueprint refused: {} problems", refusal.errors.len()));
                Err(convert::refusal_to_wit(refusal))
            }
        }
    }

    pub fn plan<P: Plugin>(request: wit::PlanRequest, fit: wit::TimelineFit) -> Result<wit::Plan, Vec<wit::PlanError>> {
        let mut request = convert::request_from_wit(request);
        // The fit `validate` made (contract 0.8.0); the host hands back one slot per move.
        for (slot, fitted) in request.validated.moves.iter_mut().zip(&fit.slots) {
            slot.origin = fitted.origin;
            slot.transition_seconds = fitted.transition_seconds;
        }
        request.validated.warnings = fit
            .warnings
            .into_iter()
            .map(|w| br_blueprint::Warning { pointer: w.pointer, message: w.message })
            .collect();
        // The song's loudness, when the host measured it for normalize_audio (contract 0.7.0;
        // here rather than in `convert`, which the 0.4.0 test guest shares).
        request.song_loudness = loudness(br_plan::SONG_INPUT).map(|measured| br_plan::Loudness {
            integrated: measured.integrated,
            range: measured.range,
            true_peak: measured.true_peak,
            seconds: measured.seconds,
        });
        // What the plugin's validate kept (contract 0.9.0).
        request.validated.kept = kept();
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
