//! The built-in guest's decisions, as ordinary functions: call one from a [`Plugin`]
//! method and change its answer, or leave the method out and get it unchanged.
//!
//! [`Plugin`]: crate::Plugin

use br_blueprint::manifest::ManifestEntry;
use br_blueprint::{CheckOptions, Refusal, Validated, ValidationError};
use br_plan::{Plan, PlanError, PlanRequest};

/// The built-in validation: every rule of docs/BLUEPRINT.md's table, every problem found;
/// unless `options.strict`, the timeline fitted as docs/BLUEPRINT.md's lenient rules say.
pub fn validate(blueprint: &str, options: &CheckOptions) -> Result<Validated, Refusal> {
    br_blueprint::check(blueprint, options)
}

/// The built-in planner: the video docs/BLUEPRINT.md (*What the video looks like*) describes, copying GOPs of
/// prepared clips where the host staged them.
pub fn plan(request: &PlanRequest) -> Result<Plan, Vec<PlanError>> {
    br_plan::plan(request)
}

/// The built-in planner with a plugin's render hooks: each slot at its speed, with its
/// still frames and filters, the song from its sections (see [`br_plan::render`]). Slots
/// rendered as shot are still copied from prepared clips, and the song still takes the
/// one measured gain where it can.
pub fn plan_with(request: &PlanRequest, render: &br_plan::render::Render) -> Result<Plan, Vec<PlanError>> {
    br_plan::plan_with(request, render)
}

/// The built-in manifest check.
pub fn validate_manifest(manifest: &str) -> Result<Vec<ManifestEntry>, Vec<ValidationError>> {
    br_blueprint::manifest::validate_manifest(manifest)
}
