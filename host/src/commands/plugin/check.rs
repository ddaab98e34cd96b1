//! `plugin check`: one plugin loaded as a job would, tried case by case.

use super::cases::{all_cases, given_facts_for, made_up_facts, Case};
use super::report::{CallOutcome, CaseReport, CheckReport, LimitsReport, PolicyVerdict, RefusalEntry, RefusedBy};
use super::*;

/// A call that uses more than this share of its fuel or memory limit is a problem: a
/// larger blueprint, or the next version of the plugin, would reach the limit in a job.
const NEAR_LIMIT_SHARE: f64 = 0.8;

/// The interfaces a guest may import: the contract's (`host`, and `types` that its
/// functions use), and WASI (which the sandbox links without any capability).
fn import_allowed(name: &str) -> bool {
    name.starts_with("blueprint:runner/") || name.starts_with("wasi:")
}

/// Whether a refusal's `pointer` names a place in the blueprint: "" (the whole document,
/// whatever it is), a value in it, or a member missing from one of its objects (where a
/// required field would be). `document` is None when the text is not JSON.
fn points_into(document: Option<&Value>, pointer: &str) -> bool {
    if pointer.is_empty() {
        return true;
    }
    let Some(document) = document else { return false };
    if document.pointer(pointer).is_some() {
        return true;
    }
    pointer.rsplit_once('/').is_some_and(|(parent, _)| matches!(document.pointer(parent), Some(Value::Object(_))))
}

/// A problem for each limit the call came near (over [`NEAR_LIMIT_SHARE`] of it).
fn near_limit_problems(call: &str, report: &CallReport, limits: &Limits) -> Vec<String> {
    let mut problems = Vec::new();
    let fuel_share = report.fuel_used as f64 / limits.fuel.max(1) as f64;
    if fuel_share > NEAR_LIMIT_SHARE {
        problems.push(format!(
            "{call} used {:.1}% of its fuel ({} of {} units): near the limit",
            fuel_share * 100.0,
            report.fuel_used,
            limits.fuel
        ));
    }
    let memory_share = report.memory_high_water as f64 / limits.memory_bytes.max(1) as f64;
    if memory_share > NEAR_LIMIT_SHARE {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        problems.push(format!(
            "{call} used {:.1}% of its memory ({:.1} of {:.1} MiB): near the limit",
            memory_share * 100.0,
            mib(report.memory_high_water),
            mib(limits.memory_bytes)
        ));
    }
    problems
}

/// A refusal's errors as the report lists them, and a problem for each pointer that is
/// not in the blueprint (a refusal the host would take as a malformed answer's sign).
fn refusal_entries<'a>(
    errors: impl Iterator<Item = (&'a str, &'a str)>,
    document: Option<&Value>,
) -> (Vec<RefusalEntry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (pointer, message) in errors {
        entries.push(RefusalEntry { pointer: pointer.to_owned(), message: message.to_owned() });
        if !points_into(document, pointer) {
            problems.push(format!(
                "the refusal points at {pointer:?}, which is not in the blueprint (its message: {message})"
            ));
        }
    }
    (entries, problems)
}

/// One case: its report entry and its problems; Err when the author's facts do not
/// cover its inputs (a usage error, not the plugin's).
async fn check_case(
    sandbox: &Sandbox,
    case: &Case,
    given_facts: Option<&[MediaFacts]>,
) -> Result<(CaseReport, Vec<String>), String> {
    let limits = sandbox.limits();
    let mut result =
        CaseReport { case: case.name.clone(), expected_frames: case.expected_frames, ..CaseReport::default() };
    let mut problems = Vec::new();
    // Only for the refusal's pointers: the plugin alone decides what the text means.
    let document: Option<Value> = serde_json::from_str(&case.text).ok();
    let validation = match sandbox.validate(&case.text, &br_blueprint::CheckOptions::default()).await {
        Ok(validation) => validation,
        Err(error) => {
            problems.push(format!("validate: {error}"));
            result.validate = Some(CallOutcome::Failed { error: error.to_string() });
            return Ok((result, problems));
        }
    };
    result.validate = Some(CallOutcome::Used(usage(&validation.report, limits)));
    problems.extend(near_limit_problems("validate", &validation.report, limits));
    let validated = match validation.verdict {
        Ok(validated) => validated,
        Err(refusal) => {
            let (entries, wrong) = refusal_entries(
                refusal.errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str())),
                document.as_ref(),
            );
            result.refused = Some(entries);
            result.refused_by = Some(RefusedBy::Validate);
            problems.extend(wrong);
            if let Some(frames) = case.expected_frames {
                problems.push(format!("expected a video of {frames} frames; the plugin refuses the blueprint"));
            }
            return Ok((result, problems));
        }
    };
    let frames = timeline_frames(&validated);
    result.frames = Some(frames);
    if let Some(expected) = case.expected_frames.filter(|&expected| expected != frames) {
        problems.push(format!(
            "expected {expected} frames; the validated timeline makes {frames} ({} s at {} fps)",
            validated.total_duration,
            br_plan::FrameRate::from_fps(validated.output.frame_rate).as_ffmpeg()
        ));
    }
    let inputs = match given_facts {
        Some(given) if case.given_facts => given_facts_for(&validated, given)?,
        _ => made_up_facts(&validated),
    };
    let request = PlanRequest { inputs, validated, strict: false, prepared: Vec::new(), song_loudness: None };
    let planning = match sandbox.plan(&request).await {
        Ok(planning) => planning,
        Err(error) => {
            problems.push(format!("plan: {error}"));
            result.plan = Some(CallOutcome::Failed { error: error.to_string() });
            return Ok((result, problems));
        }
    };
    result.plan = Some(CallOutcome::Used(usage(&planning.report, limits)));
    problems.extend(near_limit_problems("plan", &planning.report, limits));
    let plan = match planning.verdict {
        Ok(plan) => plan,
        Err(errors) => {
            let (entries, wrong) =
                refusal_entries(errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str())), document.as_ref());
            result.refused = Some(entries);
            result.refused_by = Some(RefusedBy::Plan);
            problems.extend(wrong);
            if let Some(frames) = case.expected_frames {
                problems.push(format!("expected a video of {frames} frames; the plugin makes no plan for it"));
            }
            return Ok((result, problems));
        }
    };
    result.steps = Some(plan.steps.len());
    result.policy = Some(match policy_verdict_of(&plan, &request) {
        Ok(()) => PolicyVerdict::PASSES,
        Err(listed) => {
            problems.extend(listed.iter().cloned());
            PolicyVerdict::Refused(listed)
        }
    });
    let output = declared_output_problem(&plan, &request.validated);
    problems.extend(output.clone());
    result.output = Some(output.unwrap_or_else(|| "matches the timeline".to_owned()));
    Ok((result, problems))
}

pub async fn check(path: &Path, json_output: bool, given: &Given, sandbox: &SandboxSettings) -> u8 {
    let usage_error = |message: String| {
        eprintln!("error: {message}");
        exit::USAGE
    };
    let all = match all_cases(given) {
        Ok(all) => all,
        Err(message) => return usage_error(message),
    };
    let given_facts = match &given.facts {
        Some(facts) => match br_engine::plan_request::read_facts(facts) {
            Ok(facts) => Some(facts),
            Err(message) => return usage_error(format!("--facts {}: {message}", facts.display())),
        },
        None => None,
    };
    let sandbox = match sandbox.with_guest(Some(path.to_owned())).try_load() {
        Ok(sandbox) => sandbox,
        Err((code, message)) => {
            eprintln!("error: {message}");
            return code;
        }
    };
    let limits = sandbox.limits().clone();
    let mut problems: Vec<String> = Vec::new();
    let unexpected: Vec<&String> = sandbox.imports().iter().filter(|name| !import_allowed(name)).collect();
    if !unexpected.is_empty() {
        problems.push(format!("imports beyond the contract and WASI: {unexpected:?}"));
    }
    let mut results = Vec::new();
    for case in &all {
        match check_case(&sandbox, case, given_facts.as_deref()).await {
            Ok((result, found)) => {
                problems.extend(found.into_iter().map(|problem| format!("{}: {problem}", case.name)));
                results.push(result);
            }
            Err(message) => {
                let facts = given.facts.as_deref().map(|path| path.display().to_string()).unwrap_or_default();
                return usage_error(format!("--facts {facts} for {}: {message}", case.name));
            }
        }
    }
    let report = CheckReport {
        plugin: path.display().to_string(),
        contract: sandbox.contract_version().to_string(),
        imports: sandbox.imports().to_vec(),
        limits: LimitsReport {
            fuel: limits.fuel,
            memory_bytes: limits.memory_bytes,
            deadline_ms: limits.deadline.as_millis() as u64,
        },
        cases: results,
        problems,
    };
    if json_output {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        println!(
            "{}: contract {}, imports {}",
            path.display(),
            sandbox.contract_version(),
            sandbox.imports().join(", ")
        );
        for case in &report.cases {
            println!("  {}", case.line());
        }
        if report.problems.is_empty() {
            println!("no problems");
        }
        for problem in &report.problems {
            println!("PROBLEM {problem}");
        }
    }
    if report.problems.is_empty() {
        exit::OK
    } else {
        exit::SANDBOX
    }
}

#[cfg(test)]
mod tests {
    use br_plan::{Arg, Invocation, Plan, Step};
    use serde_json::json;

    /// One FFmpeg step that reads input 0 and writes the job's output after `args`.
    fn plan_with(args: Vec<Arg>, label: &str) -> Plan {
        let mut args = args;
        args.extend([Arg::lit("-i"), Arg::Input(0), Arg::Output]);
        let step = Step::Ffmpeg(Invocation { args, media_seconds: 1.0, label: label.to_owned() });
        Plan { temps: Vec::new(), steps: vec![step], warnings: Vec::new() }
    }

    fn violations(plan: &Plan) -> br_policy::Violations {
        match br_policy::check_all(plan, 1, &br_policy::PolicyLimits::default()) {
            Ok(_) => panic!("the plan passed"),
            Err(violations) => violations,
        }
    }

    #[test]
    fn each_policy_violation_is_a_problem_of_its_own() {
        let plan = plan_with(vec![Arg::lit("-crf"), Arg::lit("99"), Arg::lit("-ac"), Arg::lit("9")], "bad\nlabel");
        let problems = super::policy_problems(&violations(&plan));
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with("plan refused by policy: step 0: the label"), "{problems:#?}");
        assert!(problems[1].starts_with("plan refused by policy: step 0, argument 1: \"99\""), "{problems:#?}");
        assert!(problems[2].starts_with("plan refused by policy: step 0, argument 3: \"9\""), "{problems:#?}");
        assert_eq!(super::PolicyVerdict::Refused(problems).summary(), "refused (3 problems below)");
        assert_eq!(super::PolicyVerdict::PASSES.summary(), "passes");
    }

    /// A refusal may point at a value, at a required member missing from an object (the
    /// built-in validator's "is required"), or at the whole document; nowhere else.
    #[test]
    fn a_refusal_points_into_the_blueprint_or_is_a_problem() {
        let document = json!({"moves": [{"duration": 8.0}], "output_config": {}});
        let inside = |pointer: &str| super::points_into(Some(&document), pointer);
        assert!(inside(""));
        assert!(inside("/moves") && inside("/moves/0/duration"));
        assert!(inside("/task_id"), "a required member missing from the document");
        assert!(inside("/output_config/frame_rate"), "a member missing from an object in it");
        assert!(!inside("/moves/1"), "past the end of a list");
        assert!(!inside("/moves/0/duration/x"), "inside a number");
        assert!(!inside("/nowhere/at/all"));
        assert!(!inside("GUEST_SETTINGS/bpm"), "not a pointer");
        assert!(super::points_into(None, ""), "text that is not JSON is still a whole document");
        assert!(!super::points_into(None, "/moves"));

        let errors = [("/moves", "too many"), ("/moves/7", "no such move")];
        let (entries, problems) = super::refusal_entries(errors.into_iter(), Some(&document));
        assert_eq!(
            serde_json::to_value(&entries).unwrap(),
            json!([{"pointer": "/moves", "message": "too many"}, {"pointer": "/moves/7", "message": "no such move"}])
        );
        assert_eq!(
            problems,
            ["the refusal points at \"/moves/7\", which is not in the blueprint (its message: no such move)"]
        );
    }

    #[test]
    fn violations_beyond_the_policys_list_are_counted_in_one_problem() {
        let over = 20;
        let bad_values = (0..br_policy::MAX_LISTED_VIOLATIONS + over).flat_map(|_| [Arg::lit("-crf"), Arg::lit("99")]);
        let problems = super::policy_problems(&violations(&plan_with(bad_values.collect(), "x")));
        assert_eq!(problems.len(), br_policy::MAX_LISTED_VIOLATIONS + 1);
        assert_eq!(problems.last().map(String::as_str), Some("plan refused by policy: and 20 more violations"));
    }
}
