//! The built-in guest's validator and planner, exported through contract 0.4.0 (no
//! `validate-manifest`): what a plugin written before 0.5.0 looks like to the host.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ world: "guest", path: "../../../wit/v0.4.0" });

// The SDK's conversions and built-in decisions, compiled against this contract's bindings.
#[path = "../../../../crates/guest-sdk/src/convert.rs"]
#[allow(dead_code)]
mod decisions;

use blueprint::runner::types as wit;

/// Contract 0.4.0 has no `host.keyframes`: a prepared clip's keyframes are every GOP from
/// the first (what `decisions` asks through here).
fn keyframe_grid(input: u32) -> Option<(u32, u32)> {
    blueprint::runner::host::prepared(input).map(|clip| (clip.gop_frames, clip.gop_frames))
}

struct Contract04Guest;

impl Guest for Contract04Guest {
    fn validate(blueprint: String) -> Result<wit::Validated, wit::Refusal> {
        decisions::validate(blueprint)
    }

    fn plan(request: wit::PlanRequest) -> Result<wit::Plan, Vec<wit::PlanError>> {
        decisions::plan(request)
    }
}

export!(Contract04Guest);
