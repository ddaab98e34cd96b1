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

pub mod new;

use std::path::{Path, PathBuf};

use br_blueprint::Validated;
use br_plan::{Arg, AudioFacts, MediaFacts, Plan, PlanNote, PlanRequest, Step, VideoFacts};
use br_sandbox::{CallReport, Limits, Sandbox, SandboxError};
use serde_json::{json, Value};

use crate::cli::TimelineFlags;
use crate::settings::SandboxSettings;
use br_engine::exit;

/// A call that uses more than this share of its fuel or memory limit is a problem: a
/// larger blueprint, or the next version of the plugin, would reach the limit in a job.
const NEAR_LIMIT_SHARE: f64 = 0.8;

/// Moves in the longest built-in case: past the concat demuxer's and filters' small
/// limits (the `concat` filter joins at most 64 parts), so that a planner that joins every
/// move in one list or graph shows it here rather than in production.
const MANY_MOVES: usize = 220;

/// A blueprint file an author gives `plugin check` (`--blueprint FILE[:FRAMES]`).
#[derive(Debug, Clone)]
pub struct GivenBlueprint {
    pub path: PathBuf,
    /// How many frames the video it describes must have, when the author says.
    pub expected_frames: Option<u64>,
}

impl GivenBlueprint {
    /// `FILE`, or `FILE:FRAMES` when what follows the last colon is a whole number.
    pub fn parse(text: &str) -> Result<GivenBlueprint, String> {
        match text.rsplit_once(':') {
            Some((path, frames)) if !frames.is_empty() && frames.bytes().all(|b| b.is_ascii_digit()) => {
                if path.is_empty() {
                    return Err(format!("{text:?} names no file before its frame count"));
                }
                let frames: u64 = frames.parse().map_err(|e| format!("the frame count {frames:?}: {e}"))?;
                if frames == 0 {
                    return Err("a video has at least one frame: FILE:FRAMES takes a count from 1".into());
                }
                Ok(GivenBlueprint { path: PathBuf::from(path), expected_frames: Some(frames) })
            }
            _ => Ok(GivenBlueprint { path: PathBuf::from(text), expected_frames: None }),
        }
    }
}

/// What an author adds to `plugin check`'s built-in cases.
pub struct Given {
    pub blueprints: Vec<GivenBlueprint>,
    /// Media facts for the given blueprints, found by key.
    pub facts: Option<PathBuf>,
    /// Only the given blueprints are tried.
    pub skip_built_in: bool,
}

/// One blueprint `plugin check` tries the plugin on.
struct Case {
    name: String,
    text: String,
    /// Whether the author's `--facts` are its media facts (else made-up ones).
    given_facts: bool,
    expected_frames: Option<u64>,
}

/// The blueprints every plugin is tried on: the backend's own, and variants that reach
/// the other paths of a planner (every transition, NTSC rates, volume runs, no song,
/// a clip shorter than its move, a long choreography).
fn cases() -> Vec<(String, String)> {
    let backend: Value =
        serde_json::from_str(include_str!("../../../examples/backend-blueprint.json")).unwrap_or_default();
    let mut variants = vec![("backend blueprint (22 moves, crossfades, loudness)".to_owned(), backend.clone())];
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
    variants.push(("every transition, volume runs, trims, 29.97 fps".to_owned(), mixed));
    let mut silent = backend.clone();
    silent["output_config"]["add_audio_overlay"] = json!(false);
    silent["output_config"]["normalize_audio"] = json!(false);
    variants.push(("no song".to_owned(), silent));
    variants.push(many_moves(&backend));
    variants.into_iter().map(|(name, blueprint)| (name, blueprint.to_string())).collect()
}

/// The backend's moves repeated to [`MANY_MOVES`] of 8 s each, over the same clips.
fn many_moves(backend: &Value) -> (String, Value) {
    let mut long = backend.clone();
    let moves: Vec<Value> = backend["moves"].as_array().cloned().unwrap_or_default();
    let seconds_each = 8.0;
    let repeated: Vec<Value> = moves
        .iter()
        .cycle()
        .take(if moves.is_empty() { 0 } else { MANY_MOVES })
        .enumerate()
        .map(|(index, step)| {
            let mut step = step.clone();
            step["clip_id"] = json!(format!("move_{}", index + 1));
            step["start_time"] = json!(index as f64 * seconds_each);
            step["duration"] = json!(seconds_each);
            step["original_duration"] = json!(seconds_each);
            step
        })
        .collect();
    let total = repeated.len() as f64 * seconds_each;
    long["moves"] = json!(repeated);
    long["total_duration"] = json!(total);
    let minutes = (total / 60.0).round();
    (format!("{MANY_MOVES} moves ({minutes} min, the backend's repeated)"), long)
}

/// Facts as the host would probe them from the backend's library: the song 10 minutes of
/// MP3 (or as long as the timeline, when that is longer), each clip 720p30 H.264 with AAC,
/// 6 to 17 s long (the third one 6 s: shorter than an 8 s move).
fn made_up_facts(validated: &Validated) -> Vec<MediaFacts> {
    let song_seconds = validated.total_duration.ceil().max(600.0);
    let song = MediaFacts {
        key: validated.audio_key.clone(),
        duration: song_seconds,
        video: None,
        audio: Some(AudioFacts { codec: "mp3".into(), sample_rate: 44_100, channels: 2, duration: song_seconds }),
    };
    let clip = |index: usize, key: &String| {
        let seconds = if index == 2 { 6.0 } else { 6.0 + ((index * 5) % 12) as f64 };
        MediaFacts {
            key: key.clone(),
            duration: seconds,
            video: Some(VideoFacts {
                codec: "h264".into(),
                width: 1280,
                height: 720,
                frame_rate: 30.0,
                pixel_format: "yuv420p".into(),
                duration: seconds,
            }),
            audio: Some(AudioFacts { codec: "aac".into(), sample_rate: 48_000, channels: 2, duration: seconds }),
        }
    };
    std::iter::once(song).chain(validated.clip_keys.iter().enumerate().map(|(index, key)| clip(index, key))).collect()
}

/// The author's facts of each input of `validated` (the song, then each clip), found by
/// key; which key the file lacks, if one.
fn given_facts_for(validated: &Validated, given: &[MediaFacts]) -> Result<Vec<MediaFacts>, String> {
    std::iter::once(&validated.audio_key)
        .chain(&validated.clip_keys)
        .map(|key| {
            given
                .iter()
                .find(|facts| facts.key == *key)
                .cloned()
                .ok_or_else(|| format!("it has no facts for the input {key:?}"))
        })
        .collect()
}

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

/// A case's "policy" field for the text report: "passes", or how many problems it lists.
fn policy_verdict(policy: &Value) -> String {
    match policy {
        Value::String(verdict) => verdict.clone(),
        Value::Array(problems) => format!("refused ({} problems below)", problems.len()),
        _ => "-".to_owned(),
    }
}

/// What one call used, against the limits.
fn usage(report: &CallReport, limits: &Limits) -> Value {
    json!({
        "fuel": report.fuel_used,
        "fuel_share": report.fuel_used as f64 / limits.fuel.max(1) as f64,
        "memory_bytes": report.memory_high_water,
        "memory_share": report.memory_high_water as f64 / limits.memory_bytes.max(1) as f64,
        "ms": report.elapsed.as_secs_f64() * 1e3,
    })
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
) -> (Value, Vec<String>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (pointer, message) in errors {
        entries.push(json!({ "pointer": pointer, "message": message }));
        if !points_into(document, pointer) {
            problems.push(format!(
                "the refusal points at {pointer:?}, which is not in the blueprint (its message: {message})"
            ));
        }
    }
    (Value::Array(entries), problems)
}

/// One case: its report entry and its problems; Err when the author's facts do not
/// cover its inputs (a usage error, not the plugin's).
async fn check_case(
    sandbox: &Sandbox,
    case: &Case,
    given_facts: Option<&[MediaFacts]>,
) -> Result<(Value, Vec<String>), String> {
    let limits = sandbox.limits();
    let mut result = json!({ "case": case.name });
    let mut problems = Vec::new();
    if let Some(frames) = case.expected_frames {
        result["expected_frames"] = json!(frames);
    }
    // Only for the refusal's pointers: the plugin alone decides what the text means.
    let document: Option<Value> = serde_json::from_str(&case.text).ok();
    let validation = match sandbox.validate(&case.text, &br_blueprint::CheckOptions::default()).await {
        Ok(validation) => validation,
        Err(error) => {
            problems.push(format!("validate: {error}"));
            result["validate"] = json!({ "error": error.to_string() });
            return Ok((result, problems));
        }
    };
    result["validate"] = usage(&validation.report, limits);
    problems.extend(near_limit_problems("validate", &validation.report, limits));
    let validated = match validation.verdict {
        Ok(validated) => validated,
        Err(refusal) => {
            let (entries, wrong) = refusal_entries(
                refusal.errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str())),
                document.as_ref(),
            );
            result["refused"] = entries;
            result["refused_by"] = json!("validate");
            problems.extend(wrong);
            if let Some(frames) = case.expected_frames {
                problems.push(format!("expected a video of {frames} frames; the plugin refuses the blueprint"));
            }
            return Ok((result, problems));
        }
    };
    let frames = timeline_frames(&validated);
    result["frames"] = json!(frames);
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
            result["plan"] = json!({ "error": error.to_string() });
            return Ok((result, problems));
        }
    };
    result["plan"] = usage(&planning.report, limits);
    problems.extend(near_limit_problems("plan", &planning.report, limits));
    let plan = match planning.verdict {
        Ok(plan) => plan,
        Err(errors) => {
            let (entries, wrong) =
                refusal_entries(errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str())), document.as_ref());
            result["refused"] = entries;
            result["refused_by"] = json!("plan");
            problems.extend(wrong);
            if let Some(frames) = case.expected_frames {
                problems.push(format!("expected a video of {frames} frames; the plugin makes no plan for it"));
            }
            return Ok((result, problems));
        }
    };
    result["steps"] = json!(plan.steps.len());
    match policy_verdict_of(&plan, &request) {
        Ok(()) => result["policy"] = json!("passes"),
        Err(listed) => {
            problems.extend(listed.iter().cloned());
            result["policy"] = json!(listed);
        }
    }
    if let Some(problem) = declared_output_problem(&plan, &request.validated) {
        problems.push(problem.clone());
        result["output"] = json!(problem);
    } else {
        result["output"] = json!("matches the timeline");
    }
    Ok((result, problems))
}

/// The cases to try: the built-in ones unless skipped, then each given file.
fn all_cases(given: &Given) -> Result<Vec<Case>, String> {
    let mut all = Vec::new();
    if !given.skip_built_in {
        all.extend(cases().into_iter().map(|(name, text)| Case {
            name,
            text,
            given_facts: false,
            expected_frames: None,
        }));
    }
    for blueprint in &given.blueprints {
        let limit = br_blueprint::limits::MAX_BLUEPRINT_BYTES as u64;
        let bytes = br_engine::files::read_small_file(&blueprint.path, limit)
            .map_err(|e| format!("--blueprint {}: {e}", blueprint.path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("--blueprint {}: not UTF-8 text", blueprint.path.display()))?;
        all.push(Case {
            name: blueprint.path.display().to_string(),
            text,
            given_facts: given.facts.is_some(),
            expected_frames: blueprint.expected_frames,
        });
    }
    Ok(all)
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
        println!(
            "{}: contract {}, imports {}",
            path.display(),
            sandbox.contract_version(),
            sandbox.imports().join(", ")
        );
        for case in report["cases"].as_array().into_iter().flatten() {
            println!("  {}", case_line(case));
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

/// A case of the report as one line of text.
fn case_line(case: &Value) -> String {
    let share =
        |call: &str, what: &str| case[call][what].as_f64().map_or("-".to_owned(), |v| format!("{:.1}%", v * 100.0));
    let call = |name: &str| {
        if case[name].get("error").is_some() {
            format!("{name} failed (below)")
        } else {
            format!("{name} fuel {} memory {}", share(name, "fuel_share"), share(name, "memory_share"))
        }
    };
    let mut line = format!("{}: {}", case["case"].as_str().unwrap_or_default(), call("validate"));
    if case.get("plan").is_some() {
        line += &format!("; {}", call("plan"));
    }
    if let Some(refused) = case["refused"].as_array() {
        let listed = br_engine::job::list(
            refused
                .iter()
                .map(|e| (e["pointer"].as_str().unwrap_or_default(), e["message"].as_str().unwrap_or_default())),
        );
        let by = if case["refused_by"] == "plan" { "no plan" } else { "refused" };
        return format!("{line}; {by}: {listed}");
    }
    if case.get("policy").is_some() {
        line += &format!(
            "; policy: {}; output: {}",
            policy_verdict(&case["policy"]),
            case["output"].as_str().unwrap_or("-")
        );
        if let Some(frames) = case["frames"].as_u64() {
            line += &format!(" ({frames} frames)");
        }
    }
    line
}

/// The plugin `plugin call` runs: its PLUGIN argument, else `--guest`, else the built-in.
fn load_called(plugin: Option<PathBuf>, sandbox: &SandboxSettings) -> Result<(Sandbox, String), u8> {
    let sandbox = sandbox.with_guest(plugin.or_else(|| sandbox.guest().map(Path::to_owned)));
    let name = sandbox.guest().map_or_else(|| "built-in".to_owned(), |path| path.display().to_string());
    sandbox.load().map(|loaded| (loaded, name))
}

/// A `plugin call` answer, printed.
fn print_answer(answer: &Value) {
    println!("{}", serde_json::to_string_pretty(answer).unwrap_or_default());
}

/// A call that ended in the sandbox (a trap, a limit, a malformed answer): exit 3.
fn sandbox_failure(mut answer: Value, error: &SandboxError) -> u8 {
    answer["sandbox_error"] = json!({ "limit": error.limit_name(), "message": error.to_string() });
    print_answer(&answer);
    exit::SANDBOX
}

/// `plugin call validate BLUEPRINT [PLUGIN]`: the validated timeline with its fit and
/// warnings, or the refusal; the call's fuel and memory, and the guest's log lines.
pub async fn call_validate(
    blueprint: &str,
    plugin: Option<PathBuf>,
    timeline: &TimelineFlags,
    flags: &SandboxSettings,
) -> u8 {
    let source = match crate::blueprint_source::Source::from_argument(blueprint) {
        source @ (crate::blueprint_source::Source::File(_) | crate::blueprint_source::Source::Stdin) => source,
        _ => {
            eprintln!("error: {blueprint:?}: plugin call validate reads a file, or '-' for stdin");
            return exit::USAGE;
        }
    };
    let text = match crate::blueprint_source::read(&source).map(crate::blueprint_source::Loaded::into_text) {
        Ok(Ok(text)) => text,
        Ok(Err(refusal)) => {
            eprintln!("error: {}: {}", source.describe(), refusal.message);
            return exit::INVALID_BLUEPRINT;
        }
        Err(error) => {
            eprintln!("error: cannot read the blueprint from {}: {error}", source.describe());
            return exit::USAGE;
        }
    };
    let (sandbox, name) = match load_called(plugin, flags) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let mut answer = json!({ "plugin": name, "contract": sandbox.contract_version(), "call": "validate" });
    // No bucket: a `gs://` key is read as a key only for a job's own bucket.
    let options = timeline.check_options(None, "", "");
    let validation = match sandbox.validate(&text, &options).await {
        Ok(validation) => validation,
        Err(error) => return sandbox_failure(answer, &error),
    };
    answer["usage"] = usage(&validation.report, sandbox.limits());
    answer["log"] = json!(validation.report.log);
    let code = match validation.verdict {
        Ok(validated) => {
            answer["validated"] = json!(br_engine::plan_request::TimelineRecord::of(&validated));
            answer["frames"] = json!(timeline_frames(&validated));
            exit::OK
        }
        Err(refusal) => {
            let errors: Vec<Value> = refusal
                .errors
                .iter()
                .map(|e| json!({ "pointer": e.pointer, "code": e.code.as_str(), "message": e.message }))
                .collect();
            answer["refused"] = json!({ "task_id": refusal.task_id, "errors": errors });
            exit::INVALID_BLUEPRINT
        }
    };
    print_answer(&answer);
    code
}

/// `plugin call plan REQUEST.json [PLUGIN]`: the plan (steps, temps, warnings) or the plan
/// errors, the policy's verdict on the plan and whether its declared output matches the
/// timeline; the call's fuel and memory, and the guest's log lines.
pub async fn call_plan(request_path: &Path, plugin: Option<PathBuf>, flags: &SandboxSettings) -> u8 {
    let request = match br_engine::plan_request::read(request_path) {
        Ok(request) => request,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::USAGE;
        }
    };
    let (sandbox, name) = match load_called(plugin, flags) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let mut answer = json!({ "plugin": name, "contract": sandbox.contract_version(), "call": "plan" });
    let planning = match sandbox.plan(&request).await {
        Ok(planning) => planning,
        Err(error) => return sandbox_failure(answer, &error),
    };
    answer["usage"] = usage(&planning.report, sandbox.limits());
    answer["log"] = json!(planning.report.log);
    let code = match planning.verdict {
        Ok(plan) => {
            let policy = policy_verdict_of(&plan, &request);
            let output = declared_output_problem(&plan, &request.validated);
            let passes = policy.is_ok() && output.is_none();
            answer["policy"] = policy.map_or_else(|listed| json!(listed), |()| json!("passes"));
            answer["output"] = json!(output.unwrap_or_else(|| "matches the timeline".to_owned()));
            answer["frames"] = json!(timeline_frames(&request.validated));
            answer["plan"] = json!(plan);
            if passes {
                exit::OK
            } else {
                exit::SANDBOX
            }
        }
        Err(errors) => {
            answer["errors"] = json!(errors
                .iter()
                .map(|PlanNote { pointer, message }| json!({ "pointer": pointer, "message": message }))
                .collect::<Vec<_>>());
            exit::MEDIA
        }
    };
    print_answer(&answer);
    code
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
            entries,
            json!([{"pointer": "/moves", "message": "too many"}, {"pointer": "/moves/7", "message": "no such move"}])
        );
        assert_eq!(
            problems,
            ["the refusal points at \"/moves/7\", which is not in the blueprint (its message: no such move)"]
        );
    }

    #[test]
    fn a_given_blueprint_may_carry_the_frames_it_must_make() {
        let parse = |text: &str| {
            super::GivenBlueprint::parse(text).map(|given| (given.path.display().to_string(), given.expected_frames))
        };
        assert_eq!(parse("mine.json"), Ok(("mine.json".into(), None)));
        assert_eq!(parse("mine.json:5280"), Ok(("mine.json".into(), Some(5280))));
        assert_eq!(parse("dir:with:colons/mine.json:12"), Ok(("dir:with:colons/mine.json".into(), Some(12))));
        assert_eq!(parse("dir:x/mine.json"), Ok(("dir:x/mine.json".into(), None)));
        assert!(parse("mine.json:0").unwrap_err().contains("at least one frame"));
        assert!(parse(":12").unwrap_err().contains("names no file"));
        assert!(parse("mine.json:99999999999999999999999").unwrap_err().contains("frame count"));
    }

    /// The long built-in case stays within the blueprint's limits, and its song lasts as
    /// long as its timeline.
    #[test]
    fn the_long_case_is_a_valid_blueprint_of_many_moves() {
        let cases = super::cases();
        let (name, text) = cases.iter().find(|(name, _)| name.starts_with("220 moves")).expect("the long case");
        let validated = br_blueprint::validate(text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(validated.moves.len(), super::MANY_MOVES);
        assert!(validated.total_duration <= br_blueprint::limits::MAX_TIMELINE_SECONDS);
        assert_eq!(validated.total_duration, 1760.0);
        assert!(text.len() < br_blueprint::limits::MAX_BLUEPRINT_BYTES);
        assert_eq!(super::made_up_facts(&validated)[0].duration, 1760.0);
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
