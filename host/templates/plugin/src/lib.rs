//! @NAME@: a Blueprint Runner plugin.
//!
//! Unchanged, it decides exactly as the built-in guest does. Override one method of
//! `Plugin` to change one decision, and call `br_guest_sdk::defaults` for the rest, e.g.:
//!
//! ```ignore
//! fn plan(mut request: PlanRequest) -> Result<Plan, Vec<PlanError>> {
//!     for slot in &mut request.validated.moves {
//!         slot.transition = Transition::Cut;
//!     }
//!     defaults::plan(&request)
//! }
//! ```
//!
//! Build: `cargo build --release --target wasm32-wasip2`
//! (writes `target/wasm32-wasip2/release/@CRATE@.wasm`).
//! Try it: `blueprint-runner plugin check target/wasm32-wasip2/release/@CRATE@.wasm`.

#[allow(unused_imports)]
use br_guest_sdk::{
    blueprint::{CheckOptions, Refusal, Transition, Validated},
    defaults,
    plan::{Plan, PlanError, PlanRequest},
    Plugin,
};

pub struct ThisPlugin;

impl Plugin for ThisPlugin {}

br_guest_sdk::export_plugin!(ThisPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use br_guest_sdk::check::{plan_passes, request_over_made_up_media, BACKEND_BLUEPRINT};

    #[test]
    fn the_backend_blueprint_is_valid() {
        let validated = ThisPlugin::validate(BACKEND_BLUEPRINT, &CheckOptions::default()).unwrap_or_else(|refusal| panic!("{refusal:?}"));
        assert_eq!(validated.moves.len(), 22);
    }

    #[test]
    fn the_plan_passes_the_hosts_policy() {
        let request = request_over_made_up_media(BACKEND_BLUEPRINT, 12.0).unwrap();
        let plan = ThisPlugin::plan(request.clone()).unwrap_or_else(|errors| panic!("{errors:?}"));
        assert_eq!(plan_passes(&request, &plan), Ok(()));
    }

    /// True of the scaffold as written; change or remove it once the plugin decides differently.
    #[test]
    fn the_plan_is_the_built_in_one() {
        let request = request_over_made_up_media(BACKEND_BLUEPRINT, 12.0).unwrap();
        assert_eq!(ThisPlugin::plan(request.clone()), defaults::plan(&request));
    }
}
