//! Counts, sizes and the plan's own numbers, checked before any argument is parsed.
//!
//! Why first: these checks cost one pass over lengths, so a plan built to be expensive
//! to check (ten thousand steps, megabyte arguments) is refused before the parser
//! spends anything on it, and the later checks can rely on every loop being bounded.

use br_plan::{Arg, ConcatList, Invocation, Plan, Step};

use crate::{excerpt, Findings, PolicyLimits, PolicyViolation, Refusal, Rule, Stop, MAX_LABEL_BYTES};

/// What the step walk may parse.
pub(crate) enum Walkable {
    /// Nothing: the plan is empty, or too large to walk.
    Nothing,
    /// For each step in order, whether to walk it: not one whose arguments are too many
    /// or too large, nor a concat list with too many parts.
    Steps(Vec<bool>),
}

pub(crate) fn check(plan: &Plan, limits: &PolicyLimits, findings: &mut Findings) -> Result<Walkable, Stop> {
    if plan.steps.is_empty() {
        findings.add(whole_plan(Rule::EmptyPlan, "the plan has no step".to_owned()))?;
        return Ok(Walkable::Nothing);
    }
    if plan.steps.len() > limits.max_steps {
        let reason = format!("{} steps; the limit is {}", plan.steps.len(), limits.max_steps);
        findings.add(whole_plan(Rule::TooManySteps, reason))?;
        return Ok(Walkable::Nothing);
    }
    if plan.temps.len() > limits.max_temps {
        let reason = format!("{} temporaries; the limit is {}", plan.temps.len(), limits.max_temps);
        findings.add(whole_plan(Rule::TooManyTemps, reason))?;
        return Ok(Walkable::Nothing);
    }
    let mut walkable = Vec::with_capacity(plan.steps.len());
    for (index, step) in plan.steps.iter().enumerate() {
        let mut report = |refusal: Refusal, arg: Option<usize>| findings.add(refusal.at(index, arg));
        walkable.push(match step {
            Step::Ffmpeg(invocation) => check_invocation(invocation, limits, &mut report)?,
            Step::WriteConcatList(list) => check_concat_list(list, limits, &mut |refusal| report(refusal, None))?,
        });
    }
    Ok(Walkable::Steps(walkable))
}

fn whole_plan(rule: Rule, reason: String) -> PolicyViolation {
    PolicyViolation { step: None, arg: None, rule, reason }
}

/// Reports each broken rule, with the argument it is about if any; returns whether the
/// arguments are few and small enough to parse.
fn check_invocation(
    invocation: &Invocation,
    limits: &PolicyLimits,
    report: &mut dyn FnMut(Refusal, Option<usize>) -> Result<(), Stop>,
) -> Result<bool, Stop> {
    let args = &invocation.args;
    let mut walkable = true;
    if args.len() > limits.max_args_per_step {
        let reason = format!("{} arguments; the limit is {}", args.len(), limits.max_args_per_step);
        report(Refusal::new(Rule::TooManyArguments, reason), None)?;
        // Their sizes are not added up: the count alone refuses the step.
        walkable = false;
    } else {
        let mut step_bytes: usize = 0;
        for (index, arg) in args.iter().enumerate() {
            // Files count as nothing here: the host chooses their paths.
            let bytes = match arg {
                Arg::Literal(text) => text.len(),
                Arg::Input(_) | Arg::Temp(_) | Arg::Output => 0,
            };
            if bytes > limits.max_arg_bytes {
                let reason = format!("the argument is {bytes} bytes; the limit is {}", limits.max_arg_bytes);
                report(Refusal::new(Rule::ArgumentTooLarge, reason), Some(index))?;
                walkable = false;
            }
            step_bytes = step_bytes.saturating_add(bytes);
        }
        // A step whose arguments are each too large is not also reported as too large in all.
        if walkable && step_bytes > limits.max_step_bytes {
            let reason = format!("the arguments add up to {step_bytes} bytes; the limit is {}", limits.max_step_bytes);
            report(Refusal::new(Rule::StepTooLarge, reason), None)?;
            walkable = false;
        }
    }
    if let Err(refusal) = check_seconds("media_seconds", invocation.media_seconds, limits, StatedSeconds::StepMedia) {
        report(refusal, None)?;
    }
    let label = &invocation.label;
    if label.len() > MAX_LABEL_BYTES || label.chars().any(char::is_control) {
        let reason =
            format!("the label {} must be at most {MAX_LABEL_BYTES} bytes with no control characters", excerpt(label));
        report(Refusal::new(Rule::BadLabel, reason), None)?;
    }
    Ok(walkable)
}

/// Reports each broken rule; returns whether the list is short enough to walk.
fn check_concat_list(
    list: &ConcatList,
    limits: &PolicyLimits,
    report: &mut dyn FnMut(Refusal) -> Result<(), Stop>,
) -> Result<bool, Stop> {
    if list.parts.len() > limits.max_concat_parts {
        let reason = format!("{} concat parts; the limit is {}", list.parts.len(), limits.max_concat_parts);
        report(Refusal::new(Rule::TooManyConcatParts, reason))?;
        return Ok(false);
    }
    let mut total = 0.0;
    let mut parts_sound = true;
    for (index, part) in list.parts.iter().enumerate() {
        let what = format!("part {index}'s duration");
        if let Err(refusal) = check_seconds(&what, part.duration, limits, StatedSeconds::ConcatPart) {
            report(refusal)?;
            parts_sound = false;
        }
        total += part.duration;
    }
    // A broken part (NaN, too long) makes the sum broken too: that is the same mistake.
    if parts_sound && !within_media_limit(total, limits) {
        let reason = format!("the parts last {total} s together; the limit is {} s", limits.max_media_seconds);
        report(Refusal::new(Rule::TooMuchMedia, reason))?;
    }
    Ok(true)
}

/// The two kinds of durations a plan states itself.
#[derive(Clone, Copy, PartialEq)]
enum StatedSeconds {
    /// A step's `media_seconds`: 0 ≤ x ≤ max.
    StepMedia,
    /// A concat part's `duration`: 0 < x < max.
    ConcatPart,
}

fn check_seconds(what: &str, seconds: f64, limits: &PolicyLimits, kind: StatedSeconds) -> Result<(), Refusal> {
    // Written so that NaN fails every comparison and is refused.
    let (sign_ok, wanted) = match kind {
        StatedSeconds::StepMedia => (seconds >= 0.0, "a finite number, at least 0"),
        StatedSeconds::ConcatPart => (seconds > 0.0, "a finite number above 0"),
    };
    if !(seconds.is_finite() && sign_ok) {
        return Err(Refusal::new(Rule::BadNumber, format!("{what} is {seconds}; it must be {wanted}")));
    }
    let below_limit = match kind {
        StatedSeconds::StepMedia => within_media_limit(seconds, limits),
        StatedSeconds::ConcatPart => seconds < limits.max_media_seconds,
    };
    if !below_limit {
        return Err(Refusal::new(
            Rule::TooMuchMedia,
            format!("{what} is {seconds} s; the limit is {} s", limits.max_media_seconds),
        ));
    }
    Ok(())
}

/// Also false when the limit itself is NaN: a broken configuration refuses everything.
fn within_media_limit(seconds: f64, limits: &PolicyLimits) -> bool {
    seconds <= limits.max_media_seconds
}
