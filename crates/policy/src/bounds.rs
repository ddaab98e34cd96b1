//! Counts, sizes and the plan's own numbers, checked before any argument is parsed.
//!
//! Why first: these checks cost one pass over lengths, so a plan built to be expensive
//! to check (ten thousand steps, megabyte arguments) is refused before the parser
//! spends anything on it, and the later checks can rely on every loop being bounded.

use br_plan::{Arg, ConcatList, Invocation, Plan, Step};

use crate::{excerpt, PolicyLimits, PolicyViolation, Refusal, Rule, MAX_LABEL_BYTES};

pub(crate) fn check(plan: &Plan, limits: &PolicyLimits) -> Result<(), PolicyViolation> {
    if plan.steps.is_empty() {
        return Err(whole_plan(Rule::EmptyPlan, "the plan has no step".to_owned()));
    }
    if plan.steps.len() > limits.max_steps {
        return Err(whole_plan(Rule::TooManySteps, format!("{} steps; the limit is {}", plan.steps.len(), limits.max_steps)));
    }
    if plan.temps.len() > limits.max_temps {
        return Err(whole_plan(Rule::TooManyTemps, format!("{} temporaries; the limit is {}", plan.temps.len(), limits.max_temps)));
    }
    for (index, step) in plan.steps.iter().enumerate() {
        match step {
            Step::Ffmpeg(invocation) => check_invocation(invocation, limits).map_err(|(refusal, arg)| refusal.at(index, arg))?,
            Step::WriteConcatList(list) => check_concat_list(list, limits).map_err(|refusal| refusal.at(index, None))?,
        }
    }
    Ok(())
}

fn whole_plan(rule: Rule, reason: String) -> PolicyViolation {
    PolicyViolation { step: None, arg: None, rule, reason }
}

/// On failure, also says which argument (if the rule is about one).
fn check_invocation(invocation: &Invocation, limits: &PolicyLimits) -> Result<(), (Refusal, Option<usize>)> {
    let args = &invocation.args;
    if args.len() > limits.max_args_per_step {
        return Err((Refusal::new(Rule::TooManyArguments, format!("{} arguments; the limit is {}", args.len(), limits.max_args_per_step)), None));
    }
    let mut step_bytes: usize = 0;
    for (index, arg) in args.iter().enumerate() {
        // Files count as nothing here: the host chooses their paths.
        let bytes = match arg {
            Arg::Literal(text) => text.len(),
            Arg::Input(_) | Arg::Temp(_) | Arg::Output => 0,
        };
        if bytes > limits.max_arg_bytes {
            let reason = format!("the argument is {bytes} bytes; the limit is {}", limits.max_arg_bytes);
            return Err((Refusal::new(Rule::ArgumentTooLarge, reason), Some(index)));
        }
        step_bytes = step_bytes.saturating_add(bytes);
    }
    if step_bytes > limits.max_step_bytes {
        let reason = format!("the arguments add up to {step_bytes} bytes; the limit is {}", limits.max_step_bytes);
        return Err((Refusal::new(Rule::StepTooLarge, reason), None));
    }
    check_seconds("media_seconds", invocation.media_seconds, limits, StatedSeconds::StepMedia).map_err(|refusal| (refusal, None))?;
    let label = &invocation.label;
    if label.len() > MAX_LABEL_BYTES || label.chars().any(char::is_control) {
        let reason = format!("the label {} must be at most {MAX_LABEL_BYTES} bytes with no control characters", excerpt(label));
        return Err((Refusal::new(Rule::BadLabel, reason), None));
    }
    Ok(())
}

fn check_concat_list(list: &ConcatList, limits: &PolicyLimits) -> Result<(), Refusal> {
    if list.parts.len() > limits.max_concat_parts {
        return Err(Refusal::new(Rule::TooManyConcatParts, format!("{} concat parts; the limit is {}", list.parts.len(), limits.max_concat_parts)));
    }
    let mut total = 0.0;
    for (index, part) in list.parts.iter().enumerate() {
        check_seconds(&format!("part {index}'s duration"), part.duration, limits, StatedSeconds::ConcatPart)?;
        total += part.duration;
    }
    if !within_media_limit(total, limits) {
        return Err(Refusal::new(Rule::TooMuchMedia, format!("the parts last {total} s together; the limit is {} s", limits.max_media_seconds)));
    }
    Ok(())
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
        return Err(Refusal::new(Rule::TooMuchMedia, format!("{what} is {seconds} s; the limit is {} s", limits.max_media_seconds)));
    }
    Ok(())
}

/// Also false when the limit itself is NaN: a broken configuration refuses everything.
fn within_media_limit(seconds: f64, limits: &PolicyLimits) -> bool {
    seconds <= limits.max_media_seconds
}
