//! The guest's answer is untrusted: bound its sizes and re-check what the host will
//! act on (object keys, indexes, numbers) before anything else sees it.

use br_blueprint::key::key_problem;
use br_blueprint::{ErrorCode, MoveSlot, OutputSettings, Refusal, Transition, Validated, ValidationError, Warning};

use crate::wit;
use crate::SandboxError;

pub mod limits {
    /// Validation errors one answer may carry (the default guest stops at 501).
    pub const MAX_ERRORS: usize = 1_000;
    /// Any one string in an answer (pointer, message, label).
    pub const MAX_STRING_BYTES: usize = 4_096;
    /// All strings of one answer together.
    pub const MAX_TOTAL_BYTES: usize = 4 * 1024 * 1024;
}
use limits::*;

struct Budget {
    used: usize,
}

impl Budget {
    fn take(&mut self, what: &str, text: &str, limit: usize) -> Result<(), SandboxError> {
        if text.len() > limit {
            return Err(SandboxError::OutputTooLarge { what: what.into(), size: text.len(), limit });
        }
        self.used += text.len();
        if self.used > MAX_TOTAL_BYTES {
            return Err(SandboxError::OutputTooLarge {
                what: "the answer".into(),
                size: self.used,
                limit: MAX_TOTAL_BYTES,
            });
        }
        Ok(())
    }
}

/// A `validate` answer of a guest older than 0.8.0 (strict: no slot starts before its clip).
pub fn check_validation(
    answer: Result<wit::Validated, wit::Refusal>,
) -> Result<Result<Validated, Refusal>, SandboxError> {
    let mut budget = Budget { used: 0 };
    match answer {
        Ok(validated) => Ok(Ok(check_validated(validated, 0.0, &mut budget)?)),
        Err(refusal) => check_refusal(refusal, &mut budget),
    }
}

/// A 0.8.0 `validate` answer: the validated blueprint and its fit, each slot's fit bounded
/// (its origin a move the blueprint may have, its transition no longer than the longest
/// the blueprint may ask for) and every warning a pointer and a message of bounded size.
pub fn check_checked(answer: Result<wit::Checked, wit::Refusal>) -> Result<Result<Validated, Refusal>, SandboxError> {
    use br_blueprint::limits::{MAX_MOVES, MAX_TIMELINE_SECONDS, MAX_TRANSITION_SECONDS};
    let mut budget = Budget { used: 0 };
    let wit::Checked { validated, fit } = match answer {
        Ok(checked) => checked,
        Err(refusal) => return check_refusal(refusal, &mut budget),
    };
    // A lenient fit may start the first slot before its clip does (holding its first frame).
    let mut validated = check_validated(validated, -MAX_TIMELINE_SECONDS, &mut budget)?;
    if fit.slots.len() != validated.moves.len() {
        return Err(SandboxError::BadOutput(format!(
            "the fit describes {} slots of {}",
            fit.slots.len(),
            validated.moves.len()
        )));
    }
    for (slot, fitted) in validated.moves.iter_mut().zip(fit.slots) {
        if fitted.origin as usize >= MAX_MOVES {
            return Err(SandboxError::BadOutput(format!(
                "a slot comes from move {}; a blueprint has at most {MAX_MOVES}",
                fitted.origin
            )));
        }
        slot.origin = fitted.origin;
        slot.transition_seconds =
            seconds("a slot's transition", fitted.transition_seconds, 0.0, MAX_TRANSITION_SECONDS)?;
    }
    if fit.warnings.len() > MAX_ERRORS {
        return Err(SandboxError::OutputTooLarge {
            what: "the list of warnings".into(),
            size: fit.warnings.len(),
            limit: MAX_ERRORS,
        });
    }
    validated.warnings = fit
        .warnings
        .into_iter()
        .map(|warning| {
            budget.take("a warning's pointer", &warning.pointer, MAX_STRING_BYTES)?;
            budget.take("a warning's message", &warning.message, MAX_STRING_BYTES)?;
            if !(warning.pointer.is_empty() || warning.pointer.starts_with('/')) {
                return Err(SandboxError::BadOutput(format!("{:?} is not a JSON pointer", warning.pointer)));
            }
            Ok(Warning { pointer: warning.pointer, message: warning.message })
        })
        .collect::<Result<_, _>>()?;
    Ok(Ok(validated))
}

fn check_refusal(refusal: wit::Refusal, budget: &mut Budget) -> Result<Result<Validated, Refusal>, SandboxError> {
    let wit::Refusal { task_id, errors } = refusal;
    let task_id = refused_task(task_id);
    if errors.is_empty() {
        return Err(SandboxError::BadOutput("the guest refused the blueprint without saying why".into()));
    }
    if errors.len() > MAX_ERRORS {
        return Err(SandboxError::OutputTooLarge {
            what: "the list of validation errors".into(),
            size: errors.len(),
            limit: MAX_ERRORS,
        });
    }
    errors
        .into_iter()
        .map(|error| {
            budget.take("a validation error's pointer", &error.pointer, MAX_STRING_BYTES)?;
            budget.take("a validation error's message", &error.message, MAX_STRING_BYTES)?;
            if !(error.pointer.is_empty() || error.pointer.starts_with('/')) {
                return Err(SandboxError::BadOutput(format!("{:?} is not a JSON pointer", error.pointer)));
            }
            Ok(ValidationError { pointer: error.pointer, code: code(error.code), message: error.message })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|errors| Err(Refusal { task_id, errors }))
}

/// A `validate-manifest` answer: bounded, and every entry the guest lets run re-checked
/// with the same rules (a guest that waved a bad entry through would otherwise make the
/// host fetch anything); a refusal is a list of errors with JSON pointers.
pub fn check_manifest(
    answer: Result<Vec<wit::ManifestEntry>, Vec<wit::ValidationError>>,
) -> Result<Result<Vec<br_blueprint::manifest::ManifestEntry>, Vec<ValidationError>>, SandboxError> {
    use br_blueprint::manifest::{entry_shape_problem, ManifestEntry, MAX_ENTRIES, MAX_URI_BYTES};
    let mut budget = Budget { used: 0 };
    let error = |what: &str, e: wit::ValidationError, budget: &mut Budget| -> Result<ValidationError, SandboxError> {
        budget.take(&format!("{what}'s pointer"), &e.pointer, MAX_STRING_BYTES)?;
        budget.take(&format!("{what}'s message"), &e.message, MAX_STRING_BYTES)?;
        if !(e.pointer.is_empty() || e.pointer.starts_with('/')) {
            return Err(SandboxError::BadOutput(format!("{:?} is not a JSON pointer", e.pointer)));
        }
        Ok(ValidationError { pointer: e.pointer, code: code(e.code), message: e.message })
    };
    match answer {
        Err(errors) => {
            if errors.is_empty() || errors.len() > MAX_ERRORS {
                return Err(SandboxError::BadOutput(format!("a manifest refused with {} errors", errors.len())));
            }
            let errors =
                errors.into_iter().map(|e| error("a manifest error", e, &mut budget)).collect::<Result<Vec<_>, _>>()?;
            Ok(Err(errors))
        }
        Ok(entries) => {
            if entries.is_empty() || entries.len() > MAX_ENTRIES {
                return Err(SandboxError::OutputTooLarge {
                    what: "the manifest's entries".into(),
                    size: entries.len(),
                    limit: MAX_ENTRIES,
                });
            }
            let mut seen = std::collections::HashSet::new();
            let mut checked = Vec::with_capacity(entries.len());
            for entry in entries {
                budget.take("an entry's task id", &entry.task_id, MAX_STRING_BYTES)?;
                budget.take("an entry's blueprint_uri", &entry.blueprint_uri, MAX_URI_BYTES)?;
                let problem = match entry.problem {
                    Some(problem) => Some(error("an entry's problem", problem, &mut budget)?),
                    None => {
                        if let Some(why) = entry_shape_problem(&entry.task_id, &entry.blueprint_uri) {
                            return Err(SandboxError::BadOutput(format!("the guest let an entry run whose {why}")));
                        }
                        if !seen.insert(entry.task_id.clone()) {
                            return Err(SandboxError::BadOutput(format!(
                                "the guest let task {:?} run twice",
                                entry.task_id
                            )));
                        }
                        None
                    }
                };
                checked.push(ManifestEntry { task_id: entry.task_id, blueprint_uri: entry.blueprint_uri, problem });
            }
            Ok(Ok(checked))
        }
    }
}

/// The task id a refusal names, if it passes the blueprint's own rule. The job writes the
/// failure to that task's row, so a guest must not choose an arbitrary one; one that
/// fails the rule is dropped (the refusal itself still stands) rather than trusted.
fn refused_task(task_id: Option<String>) -> Option<String> {
    let task_id = task_id?;
    if br_blueprint::is_task_id(&task_id) {
        Some(task_id)
    } else {
        let shown: String = task_id.chars().take(64).collect();
        let bytes = task_id.len();
        tracing::warn!(task_id = ?shown, bytes, "the guest's refusal names a malformed task id; ignored");
        None
    }
}

fn code(code: wit::ErrorCode) -> ErrorCode {
    match code {
        wit::ErrorCode::InvalidJson => ErrorCode::InvalidJson,
        wit::ErrorCode::MissingField => ErrorCode::MissingField,
        wit::ErrorCode::WrongType => ErrorCode::WrongType,
        wit::ErrorCode::OutOfRange => ErrorCode::OutOfRange,
        wit::ErrorCode::UnsafePath => ErrorCode::UnsafePath,
        wit::ErrorCode::TooLarge => ErrorCode::TooLarge,
        wit::ErrorCode::NotAllowed => ErrorCode::NotAllowed,
        wit::ErrorCode::Timeline => ErrorCode::Timeline,
    }
}

fn key(what: &str, key: String, budget: &mut Budget) -> Result<String, SandboxError> {
    budget.take(what, &key, MAX_STRING_BYTES)?;
    match key_problem(&key) {
        Some(problem) => Err(SandboxError::BadOutput(format!("{what}: object key {key:?} {problem}"))),
        None => Ok(key),
    }
}

fn seconds(what: &str, value: f64, min: f64, max: f64) -> Result<f64, SandboxError> {
    if value.is_finite() && value >= min && value <= max {
        Ok(value)
    } else {
        Err(SandboxError::BadOutput(format!("{what} is {value}, outside {min}..={max}")))
    }
}

/// `earliest_trim_start` is 0 for guests that cannot fit a timeline.
fn check_validated(
    v: wit::Validated,
    earliest_trim_start: f64,
    budget: &mut Budget,
) -> Result<Validated, SandboxError> {
    use br_blueprint::limits::{MAX_MOVES, MAX_TASK_ID_BYTES, MAX_TIMELINE_SECONDS};
    budget.take("the task id", &v.task_id, MAX_TASK_ID_BYTES)?;
    if !br_blueprint::is_task_id(&v.task_id) {
        return Err(SandboxError::BadOutput(format!("task id {:?} is not well formed", v.task_id)));
    }
    if v.moves.len() > MAX_MOVES || v.clip_keys.len() > MAX_MOVES {
        return Err(SandboxError::OutputTooLarge {
            what: "the list of moves or clips".into(),
            size: v.moves.len().max(v.clip_keys.len()),
            limit: MAX_MOVES,
        });
    }
    if v.moves.is_empty() {
        return Err(SandboxError::BadOutput("a validated blueprint without moves".into()));
    }
    let clip_keys = v.clip_keys.into_iter().map(|k| key("a clip key", k, budget)).collect::<Result<Vec<_>, _>>()?;
    let moves = v
        .moves
        .into_iter()
        .map(|m| {
            budget.take("a clip id", &m.clip_id, MAX_STRING_BYTES)?;
            if m.clip as usize >= clip_keys.len() {
                return Err(SandboxError::BadOutput(format!("a move names clip {} of {}", m.clip, clip_keys.len())));
            }
            Ok(MoveSlot {
                clip: m.clip,
                clip_id: m.clip_id,
                start: seconds("a move's start", m.start, 0.0, MAX_TIMELINE_SECONDS)?,
                duration: seconds("a move's duration", m.duration, f64::MIN_POSITIVE, MAX_TIMELINE_SECONDS)?,
                trim_start: seconds("a move's trim start", m.trim_start, earliest_trim_start, 1e6)?,
                trim_end: seconds("a move's trim end", m.trim_end, 0.0, 1e6)?,
                transition: match m.transition {
                    wit::Transition::Cut => Transition::Cut,
                    wit::Transition::Crossfade => Transition::Crossfade,
                    wit::Transition::FadeBlack => Transition::FadeBlack,
                    wit::Transition::FadeWhite => Transition::FadeWhite,
                },
                volume: seconds("a move's volume", m.volume, 0.0, 1.0)?,
                // Set from the fit, or as an older contract means them (`as_written`).
                origin: 0,
                transition_seconds: 0.0,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let o = v.output;
    for (what, text) in
        [("the output format", &o.format), ("the video codec", &o.video_codec), ("the audio codec", &o.audio_codec)]
    {
        budget.take(what, text, 64)?;
    }
    let audio_key = key("the audio key", v.audio_key, budget)?;
    let output_key = key("the output key", v.output_key, budget)?;
    // A plugin's validator may skip the blueprint's own rules on the output key: the job
    // applies its one rule to it (an MP4 under the output prefix that is none of the
    // inputs' objects), as it does to a key the built-in validator passed.
    Ok(Validated {
        task_id: v.task_id,
        audio_key,
        clip_keys,
        output_key,
        total_duration: seconds("the total duration", v.total_duration, f64::MIN_POSITIVE, MAX_TIMELINE_SECONDS)?,
        moves,
        output: OutputSettings {
            format: o.format,
            video_codec: o.video_codec,
            audio_codec: o.audio_codec,
            video_bitrate: o.video_bitrate,
            audio_bitrate: o.audio_bitrate,
            frame_rate: seconds("the frame rate", o.frame_rate, 1.0, 120.0)?,
            width: o.width,
            height: o.height,
            transition_duration: seconds("the transition duration", o.transition_duration, 0.0, 5.0)?,
            fade_duration: seconds("the fade duration", o.fade_duration, 0.0, 5.0)?,
            normalize_audio: o.normalize_audio,
            add_audio_overlay: o.add_audio_overlay,
        },
        warnings: Vec::new(),
        kept: None,
    })
}

/// Bounds on a plan as it comes out of the guest. The host's policy checks the plan's
/// meaning afterwards; these only keep a hostile answer from costing the host memory
/// or time before the policy sees it.
pub mod plan_limits {
    pub const MAX_STEPS: usize = 20_000;
    pub const MAX_ARGS_PER_STEP: usize = 4_096;
    pub const MAX_CONCAT_PARTS: usize = 20_000;
    pub const MAX_TEMPS: usize = 20_000;
    pub const MAX_WARNINGS: usize = 5_000;
    /// One literal: Linux refuses a single exec argument of 128 KiB or more.
    pub const MAX_LITERAL_BYTES: usize = 128 * 1024;
    /// All strings of one plan together.
    pub const MAX_PLAN_BYTES: usize = 32 * 1024 * 1024;
}

pub fn check_planning(
    answer: Result<wit::Plan, Vec<wit::PlanError>>,
) -> Result<Result<br_plan::Plan, Vec<br_plan::PlanError>>, SandboxError> {
    use plan_limits::*;
    let mut budget = Budget { used: 0 };
    let too_many = |what: &str, size: usize, limit: usize| {
        if size > limit {
            Err(SandboxError::OutputTooLarge { what: what.into(), size, limit })
        } else {
            Ok(())
        }
    };
    let note = |what: &str,
                pointer: String,
                message: String,
                budget: &mut Budget|
     -> Result<br_plan::PlanNote, SandboxError> {
        budget.take(what, &pointer, MAX_STRING_BYTES)?;
        budget.take(what, &message, MAX_STRING_BYTES)?;
        if !(pointer.is_empty() || pointer.starts_with('/')) {
            return Err(SandboxError::BadOutput(format!("{pointer:?} is not a JSON pointer")));
        }
        Ok(br_plan::PlanNote { pointer, message })
    };
    let plan = match answer {
        Err(errors) => {
            if errors.is_empty() {
                return Err(SandboxError::BadOutput("the guest refused to plan without saying why".into()));
            }
            too_many("the list of plan errors", errors.len(), MAX_ERRORS)?;
            let errors = errors
                .into_iter()
                .map(|e| note("a plan error", e.pointer, e.message, &mut budget))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Err(errors));
        }
        Ok(plan) => plan,
    };
    too_many("the list of steps", plan.steps.len(), MAX_STEPS)?;
    too_many("the list of temporaries", plan.temps.len(), MAX_TEMPS)?;
    too_many("the list of warnings", plan.warnings.len(), MAX_WARNINGS)?;
    let warnings = plan
        .warnings
        .into_iter()
        .map(|w| note("a plan warning", w.pointer, w.message, &mut budget))
        .collect::<Result<Vec<_>, _>>()?;
    let temps = plan
        .temps
        .into_iter()
        .map(|t| match t {
            wit::TempFormat::Nut => br_plan::TempFormat::Nut,
            wit::TempFormat::Ffconcat => br_plan::TempFormat::Ffconcat,
        })
        .collect();
    let mut plan_budget = Budget { used: 0 };
    let steps = plan
        .steps
        .into_iter()
        .map(|step| match step {
            wit::Step::Ffmpeg(invocation) => {
                too_many("the arguments of a step", invocation.args.len(), MAX_ARGS_PER_STEP)?;
                budget.take("a step's label", &invocation.label, MAX_STRING_BYTES)?;
                let args = invocation
                    .args
                    .into_iter()
                    .map(|arg| {
                        Ok(match arg {
                            wit::Arg::Literal(text) => {
                                plan_budget.take_plan(&text, MAX_LITERAL_BYTES, MAX_PLAN_BYTES)?;
                                br_plan::Arg::Literal(text)
                            }
                            wit::Arg::Input(n) => br_plan::Arg::Input(n),
                            wit::Arg::Temp(n) => br_plan::Arg::Temp(n),
                            wit::Arg::Output => br_plan::Arg::Output,
                        })
                    })
                    .collect::<Result<Vec<_>, SandboxError>>()?;
                Ok(br_plan::Step::Ffmpeg(br_plan::Invocation {
                    args,
                    media_seconds: invocation.media_seconds,
                    label: invocation.label,
                }))
            }
            wit::Step::WriteConcatList(list) => {
                too_many("a concat list", list.parts.len(), MAX_CONCAT_PARTS)?;
                Ok(br_plan::Step::WriteConcatList(br_plan::ConcatList {
                    list: list.list,
                    parts: list
                        .parts
                        .into_iter()
                        .map(|p| br_plan::ConcatPart { temp: p.temp, duration: p.duration })
                        .collect(),
                }))
            }
        })
        .collect::<Result<Vec<_>, SandboxError>>()?;
    Ok(Ok(br_plan::Plan { temps, steps, warnings }))
}

impl Budget {
    fn take_plan(&mut self, text: &str, limit: usize, total: usize) -> Result<(), SandboxError> {
        if text.len() > limit {
            return Err(SandboxError::OutputTooLarge { what: "an argument of a step".into(), size: text.len(), limit });
        }
        self.used += text.len();
        if self.used > total {
            return Err(SandboxError::OutputTooLarge { what: "the plan".into(), size: self.used, limit: total });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(task_id: Option<&str>) -> wit::Refusal {
        let pointer = "/moves/3/duration".into();
        let error = wit::ValidationError { pointer, code: wit::ErrorCode::OutOfRange, message: "no".into() };
        wit::Refusal { task_id: task_id.map(str::to_owned), errors: vec![error] }
    }

    fn refused_task_of(answer: wit::Refusal) -> Option<String> {
        match check_validation(Err(answer)) {
            Ok(Err(refusal)) => {
                assert_eq!(refusal.errors[0].pointer, "/moves/3/duration");
                refusal.task_id
            }
            other => panic!("not a refusal: {other:?}"),
        }
    }

    #[test]
    fn a_refusal_keeps_a_well_formed_task_id() {
        assert_eq!(refused_task_of(refusal(Some("t-1_A"))).as_deref(), Some("t-1_A"));
        assert_eq!(refused_task_of(refusal(None)), None);
    }

    /// A guest may return anything as the task id: the job would write the failure to
    /// that row, so only one that passes the blueprint's rule is kept.
    #[test]
    fn a_refusal_drops_a_malformed_task_id_but_stands() {
        let long = "a".repeat(37);
        let huge = "b".repeat(5 * 1024 * 1024);
        let sql = "t'; DROP TABLE choreography_tasks; --";
        for bad in ["", "a b", "../x", sql, "é", "t\n", long.as_str(), huge.as_str()] {
            assert_eq!(refused_task_of(refusal(Some(bad))), None, "{:?}", &bad[..bad.len().min(40)]);
        }
    }

    #[test]
    fn a_refusal_without_errors_is_refused_whatever_its_task_id() {
        let answer = wit::Refusal { task_id: Some("t-1".into()), errors: vec![] };
        assert!(matches!(check_validation(Err(answer)), Err(SandboxError::BadOutput(_))));
    }
}
