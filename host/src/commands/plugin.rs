//! Tools for plugin authors that need neither media nor FFmpeg.
//!
//! `blueprint-runner plugin check PLUGIN.wasm`: what a plugin author needs to know before
//! shipping a guest. It loads the component as a job would (the contract it fits, what it
//! imports), then runs its `validate` and `plan` on a built-in set of blueprints (and on the
//! author's own, `--blueprint`) over made-up media facts (or the author's, `--facts`) and
//! reports, for each: the fuel and memory each call used against the job's limits, the
//! policy's verdict on the plan (each violation a problem of its own), and whether the
//! output the plan declares matches the validated timeline. A plugin may refuse a blueprint
//! by its own rules: a refusal whose errors point into the blueprint is reported as such,
//! not as a problem.
//!
//! `blueprint-runner plugin call validate|plan`: one call of an export, its whole answer
//! printed as JSON; `plan` reads the request file `run --save-plan-request` writes.

mod call;
mod cases;
mod check;
pub mod new;
mod report;

pub use call::{call_plan, call_validate};
pub use cases::Given;
pub use check::check;

use std::path::{Path, PathBuf};

use br_blueprint::Validated;
use br_plan::{Arg, AudioFacts, MediaFacts, Plan, PlanNote, PlanRequest, Step, VideoFacts};
use br_sandbox::{CallReport, Limits, Sandbox, SandboxError};
use serde_json::{json, Value};

use crate::cli::TimelineFlags;
use crate::settings::SandboxSettings;
use br_engine::exit;
use report::CallUsage;

/// The frames of the video a validated timeline describes: `round(total_duration × fps)`,
/// at least one.
fn timeline_frames(validated: &Validated) -> u64 {
    let rate = br_plan::FrameRate::from_fps(validated.output.frame_rate);
    rate.frame_at(validated.total_duration).max(1)
}

/// How far the output the plan declares is from the timeline, if it is: the last step's
/// own `-t`, and the concat list it joins.
fn declared_output_problem(plan: &Plan, validated: &Validated) -> Option<String> {
    let rate = br_plan::FrameRate::from_fps(validated.output.frame_rate);
    let expected = rate.seconds(timeline_frames(validated));
    let half_frame = 0.5 / rate.fps();
    let Some(Step::Ffmpeg(last)) = plan.steps.last() else {
        return Some("the last step is not an FFmpeg step that writes the output".into());
    };
    let literal_after = |option: &str| {
        last.args.windows(2).find_map(|pair| match pair {
            [Arg::Literal(name), Arg::Literal(value)] if name == option => value.parse::<f64>().ok(),
            _ => None,
        })
    };
    if let Some(seconds) = literal_after("-t") {
        if (seconds - expected).abs() > half_frame {
            return Some(format!("the output step's -t is {seconds} s; the timeline is {expected} s"));
        }
    }
    let joined: Vec<u32> =
        last.args.iter().filter_map(|arg| if let Arg::Temp(temp) = arg { Some(*temp) } else { None }).collect();
    for step in &plan.steps {
        if let Step::WriteConcatList(list) = step {
            if joined.contains(&list.list) {
                let seconds: f64 = list.parts.iter().map(|part| part.duration).sum();
                if (seconds - expected).abs() > half_frame * 2.0 {
                    return Some(format!(
                        "the parts the output joins last {seconds:.3} s; the timeline is {expected:.3} s"
                    ));
                }
            }
        }
    }
    None
}

/// Each violation of a plan as a problem of its own, so that a plugin author sees them
/// all at once; then how many the policy found beyond those it lists.
fn policy_problems(violations: &br_policy::Violations) -> Vec<String> {
    let mut listed: Vec<String> = violations.listed().iter().map(ToString::to_string).collect();
    if violations.unlisted() > 0 {
        listed.push(format!("plan refused by policy: and {} more violations", violations.unlisted()));
    }
    listed
}

/// The policy's verdict on a plan: "passes", or each violation.
fn policy_verdict_of(plan: &Plan, request: &PlanRequest) -> Result<(), Vec<String>> {
    let policy_limits = br_policy::PolicyLimits::for_request(request);
    br_policy::check_all(plan, request.inputs.len() as u32, &policy_limits)
        .map(|_| ())
        .map_err(|violations| policy_problems(&violations))
}

/// What one call used, against the limits.
fn usage(report: &CallReport, limits: &Limits) -> CallUsage {
    CallUsage {
        fuel: report.fuel_used,
        fuel_share: report.fuel_used as f64 / limits.fuel.max(1) as f64,
        memory_bytes: report.memory_high_water,
        memory_share: report.memory_high_water as f64 / limits.memory_bytes.max(1) as f64,
        ms: report.elapsed.as_secs_f64() * 1e3,
    }
}
