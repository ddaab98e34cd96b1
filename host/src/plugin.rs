//! `blueprint-runner plugin check PLUGIN.wasm`: what a plugin author needs to know before
//! shipping a guest, without media or FFmpeg. It loads the component as a job would (the
//! contract it fits, what it imports), then runs its `validate` and `plan` on a built-in
//! set of blueprints over made-up media facts and reports, for each: the fuel and memory
//! each call used against the job's limits, the policy's verdict on the plan (each
//! violation a problem of its own), and whether the output the plan declares matches the
//! validated timeline.

use std::path::Path;

use br_blueprint::Validated;
use br_plan::{Arg, AudioFacts, MediaFacts, Plan, PlanRequest, Step, VideoFacts};
use serde_json::{json, Value};

use crate::cli::SandboxFlags;
use crate::exit;

/// The blueprints every plugin is tried on: the backend's own, and variants that reach
/// the other paths of a planner (every transition, NTSC rates, volume runs, no song,
/// a clip shorter than its move).
fn cases() -> Vec<(&'static str, String)> {
    let backend: Value = serde_json::from_str(include_str!("../../examples/backend-blueprint.json")).unwrap_or_default();
    let mut variants = vec![("backend blueprint (22 moves, crossfades, loudness)", backend.clone())];
    let mut mixed = backend.clone();
    if let Some(moves) = mixed["moves"].as_array_mut() {
        let transitions = ["cut", "crossfade", "fade_black", "fade_white"];
        for (index, step) in moves.iter_mut().enumerate() {
            step["transition_type"] = json!(transitions[index % transitions.len()]);
            step["volume_adjustment"] = json!(if index % 5 == 3 { 0.0 } else { 1.0 });
            step["trim_start"] = json!((index % 3) as f64 * 0.7);
        }
    }
    mixed["output_config"]["frame_rate"] = json!(29.97);
    variants.push(("every transition, volume runs, trims, 29.97 fps", mixed));
    let mut silent = backend;
    silent["output_config"]["add_audio_overlay"] = json!(false);
    silent["output_config"]["normalize_audio"] = json!(false);
    variants.push(("no song", silent));
    variants.into_iter().map(|(name, blueprint)| (name, blueprint.to_string())).collect()
}

/// Facts as the host would probe them from the backend's library: the song 10 minutes of
/// MP3, each clip 720p30 H.264 with AAC, 6 to 17 s long (the third one 6 s: shorter than
/// an 8 s move).
fn made_up_facts(validated: &Validated) -> Vec<MediaFacts> {
    let song = MediaFacts {
        key: validated.audio_key.clone(),
        duration: 600.0,
        video: None,
        audio: Some(AudioFacts { codec: "mp3".into(), sample_rate: 44_100, channels: 2, duration: 600.0 }),
    };
    let clip = |index: usize, key: &String| {
        let seconds = if index == 2 { 6.0 } else { 6.0 + ((index * 5) % 12) as f64 };
        MediaFacts {
            key: key.clone(),
            duration: seconds,
            video: Some(VideoFacts { codec: "h264".into(), width: 1280, height: 720, frame_rate: 30.0, pixel_format: "yuv420p".into(), duration: seconds }),
            audio: Some(AudioFacts { codec: "aac".into(), sample_rate: 48_000, channels: 2, duration: seconds }),
        }
    };
    std::iter::once(song).chain(validated.clip_keys.iter().enumerate().map(|(index, key)| clip(index, key))).collect()
}

/// The interfaces a guest may import: the contract's (`host`, and `types` that its
/// functions use), and WASI (which the sandbox links without any capability).
fn import_allowed(name: &str) -> bool {
    name.starts_with("blueprint:runner/") || name.starts_with("wasi:")
}

/// How far the output the plan declares is from the timeline, if it is: the last step's
/// own `-t`, and the concat list it joins.
fn declared_output_problem(plan: &Plan, validated: &Validated) -> Option<String> {
    let rate = br_plan::FrameRate::from_fps(validated.output.frame_rate);
    let expected = rate.seconds(rate.frame_at(validated.total_duration).max(1));
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
    let joined: Vec<u32> = last.args.iter().filter_map(|arg| if let Arg::Temp(temp) = arg { Some(*temp) } else { None }).collect();
    for step in &plan.steps {
        if let Step::WriteConcatList(list) = step {
            if joined.contains(&list.list) {
                let seconds: f64 = list.parts.iter().map(|part| part.duration).sum();
                if (seconds - expected).abs() > half_frame * 2.0 {
                    return Some(format!("the parts the output joins last {seconds:.3} s; the timeline is {expected:.3} s"));
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

/// A case's "policy" field for the text report: "passes", or how many problems it lists.
fn policy_verdict(policy: &Value) -> String {
    match policy {
        Value::String(verdict) => verdict.clone(),
        Value::Array(problems) => format!("refused ({} problems below)", problems.len()),
        _ => "-".to_owned(),
    }
}

pub async fn check(path: &Path, json_output: bool, sandbox_flags: &SandboxFlags) -> u8 {
    let flags = SandboxFlags { guest: Some(path.to_owned()), ..sandbox_flags.clone() };
    let sandbox = match flags.try_load() {
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
    let usage = |report: &br_sandbox::CallReport| {
        json!({
            "fuel": report.fuel_used,
            "fuel_share": report.fuel_used as f64 / limits.fuel.max(1) as f64,
            "memory_bytes": report.memory_high_water,
            "memory_share": report.memory_high_water as f64 / limits.memory_bytes.max(1) as f64,
            "ms": report.elapsed.as_secs_f64() * 1e3,
        })
    };
    let mut results = Vec::new();
    for (name, text) in cases() {
        let mut result = json!({ "case": name });
        let validation = match sandbox.validate(&text, &br_blueprint::CheckOptions::default()).await {
            Ok(validation) => validation,
            Err(error) => {
                problems.push(format!("{name}: validate: {error}"));
                result["validate"] = json!({ "error": error.to_string() });
                results.push(result);
                continue;
            }
        };
        result["validate"] = usage(&validation.report);
        let validated = match validation.verdict {
            Ok(validated) => validated,
            Err(refusal) => {
                let first = refusal.errors.first().map(|e| format!("{}: {}", e.pointer, e.message)).unwrap_or_default();
                problems.push(format!("{name}: the plugin refuses a valid blueprint ({} problems; first {first})", refusal.errors.len()));
                results.push(result);
                continue;
            }
        };
        let request = PlanRequest { inputs: made_up_facts(&validated), validated, strict: false, prepared: Vec::new(), song_loudness: None };
        let planning = match sandbox.plan(&request).await {
            Ok(planning) => planning,
            Err(error) => {
                problems.push(format!("{name}: plan: {error}"));
                result["plan"] = json!({ "error": error.to_string() });
                results.push(result);
                continue;
            }
        };
        result["plan"] = usage(&planning.report);
        let plan = match planning.verdict {
            Ok(plan) => plan,
            Err(errors) => {
                let first = errors.first().map(|e| format!("{}: {}", e.pointer, e.message)).unwrap_or_default();
                problems.push(format!("{name}: no plan ({} errors; first {first})", errors.len()));
                results.push(result);
                continue;
            }
        };
        result["steps"] = json!(plan.steps.len());
        let policy_limits = br_policy::PolicyLimits::for_request(&request);
        match br_policy::check_all(&plan, request.inputs.len() as u32, &policy_limits) {
            Ok(_) => result["policy"] = json!("passes"),
            Err(violations) => {
                let listed = policy_problems(&violations);
                problems.extend(listed.iter().map(|violation| format!("{name}: {violation}")));
                result["policy"] = json!(listed);
            }
        }
        if let Some(problem) = declared_output_problem(&plan, &request.validated) {
            problems.push(format!("{name}: {problem}"));
            result["output"] = json!(problem);
        } else {
            result["output"] = json!("matches the timeline");
        }
        results.push(result);
    }
    let report = json!({
        "plugin": path.display().to_string(),
        "contract": sandbox.contract_version(),
        "imports": sandbox.imports(),
        "limits": { "fuel": limits.fuel, "memory_bytes": limits.memory_bytes, "deadline_ms": limits.deadline.as_millis() as u64 },
        "cases": results,
        "problems": problems,
    });
    if json_output {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        println!("{}: contract {}, imports {}", path.display(), sandbox.contract_version(), sandbox.imports().join(", "));
        for case in report["cases"].as_array().into_iter().flatten() {
            let share = |call: &str, what: &str| case[call][what].as_f64().map_or("-".to_owned(), |v| format!("{:.1}%", v * 100.0));
            println!(
                "  {}: validate fuel {} memory {}; plan fuel {} memory {}; policy: {}; output: {}",
                case["case"].as_str().unwrap_or_default(),
                share("validate", "fuel_share"),
                share("validate", "memory_share"),
                share("plan", "fuel_share"),
                share("plan", "memory_share"),
                policy_verdict(&case["policy"]),
                case["output"].as_str().unwrap_or("-"),
            );
        }
        if problems.is_empty() {
            println!("no problems");
        }
        for problem in &problems {
            println!("PROBLEM {problem}");
        }
    }
    if problems.is_empty() {
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
        assert_eq!(super::policy_verdict(&json!(problems)), "refused (3 problems below)");
        assert_eq!(super::policy_verdict(&json!("passes")), "passes");
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
