//! The default guest: the blueprint validator of `br-blueprint` and the planner of
//! `br-plan`, exported through the WIT contract. Built for `wasm32-wasip2`; on other targets this crate is empty.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ world: "guest", path: "../wit" });

mod decisions;

use blueprint::runner::host::{log, LogLevel};
use blueprint::runner::types as wit;

struct DefaultGuest;

impl Guest for DefaultGuest {
    fn validate(blueprint: String) -> Result<wit::Validated, wit::Refusal> {
        decisions::validate(blueprint)
    }

    fn plan(request: wit::PlanRequest) -> Result<wit::Plan, Vec<wit::PlanError>> {
        decisions::plan(request)
    }

    fn validate_manifest(manifest: String) -> Result<Vec<wit::ManifestEntry>, Vec<wit::ValidationError>> {
        match br_blueprint::manifest::validate_manifest(&manifest) {
            Ok(entries) => {
                let refused = entries.iter().filter(|entry| entry.problem.is_some()).count();
                log(LogLevel::Debug, &format!("manifest: {} entries, {refused} refused", entries.len()));
                Ok(entries
                    .into_iter()
                    .map(|entry| wit::ManifestEntry {
                        task_id: entry.task_id,
                        blueprint_uri: entry.blueprint_uri,
                        problem: entry.problem.map(decisions::error_to_wit),
                    })
                    .collect())
            }
            Err(errors) => Err(errors.into_iter().map(decisions::error_to_wit).collect()),
        }
    }
}

export!(DefaultGuest);
