//! `blueprint-runner policy`: the plan policy for plugin authors, offline. `list` prints
//! the allow-lists exactly as the host applies them (generated from the policy's own
//! tables, so it cannot drift); `check` runs the policy on a plan file and prints every
//! violation, not only the first.

use br_policy::PolicyLimits;
use serde_json::Value;

use crate::cli::{PolicyCommand, PolicyJob};
use br_engine::exit;

pub fn run(command: PolicyCommand) -> u8 {
    match command {
        PolicyCommand::List { json, markdown, job } => {
            let table = br_policy::table(&limits(&job));
            if markdown {
                print!("{}", as_markdown(&table));
            } else if json {
                match serde_json::to_string_pretty(&table) {
                    Ok(text) => println!("{text}"),
                    Err(error) => eprintln!("error: {error}"),
                }
            } else {
                print!("{}", as_text(&table));
            }
            exit::OK
        }
        PolicyCommand::Check { plan, inputs, job } => check(&plan, inputs, &job),
    }
}

fn limits(job: &PolicyJob) -> PolicyLimits {
    PolicyLimits::for_job(job.width, job.height, job.seconds.clamp(0.0, 4.0 * 3600.0))
}

/// docs/POLICY.md's table: the options, then the filters with their options, as Markdown.
pub fn as_markdown(table: &br_policy::Table) -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut text = String::from("| option | value |\n|---|---|\n");
    for option in &table.options {
        text.push_str(&format!("| `{}` | {} |\n", option.name, cell(&option.value)));
    }
    text.push_str("\n| filter | options (the first N also by position) |\n|---|---|\n");
    for filter in &table.filters {
        let options: Vec<String> =
            filter.options.iter().map(|o| format!("`{}`: {}", cell(&o.name), cell(&o.value))).collect();
        text.push_str(&format!("| `{}` ({}) | {} |\n", filter.name, filter.positional, options.join("; ")));
    }
    text
}

/// One line per option, then one block per filter.
pub fn as_text(table: &br_policy::Table) -> String {
    let mut text = String::from("Options (each followed by its value, when it takes one):\n");
    for option in &table.options {
        text.push_str(&format!("  {:<16} {}\n", option.name, option.value));
    }
    text.push_str("\nFilters (options by name; the first N also by position):\n");
    for filter in &table.filters {
        text.push_str(&format!("  {} (positional: {})\n", filter.name, filter.positional));
        for option in &filter.options {
            text.push_str(&format!("      {:<28} {}\n", option.name, option.value));
        }
    }
    text
}

fn check(path: &std::path::Path, inputs: Option<u32>, job: &PolicyJob) -> u8 {
    match verdict(path, inputs, job) {
        Ok((code, printed)) => {
            print!("{printed}");
            code
        }
        Err(message) => {
            eprintln!("error: {message}");
            exit::USAGE
        }
    }
}

/// What `policy check` prints on stdout and its exit code: every violation, one a line,
/// so that a plugin author fixes a plan in one go. Err when the file is not a plan.
fn verdict(path: &std::path::Path, inputs: Option<u32>, job: &PolicyJob) -> Result<(u8, String), String> {
    let read = std::fs::read(path).map_err(|e| e.to_string());
    let document: Value = read
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        .map_err(|error| format!("{}: {error}", path.display()))?;
    // `plan`'s whole output carries the inputs; a bare plan needs --inputs.
    let (plan, counted) = match document.get("plan") {
        Some(plan) => {
            (plan.clone(), document.get("inputs").and_then(Value::as_array).map(|inputs| inputs.len() as u32))
        }
        None => (document, None),
    };
    let input_count = inputs
        .or(counted)
        .ok_or_else(|| "give --inputs N (the song and each distinct clip): the file is a bare plan".to_owned())?;
    let plan: br_plan::Plan =
        serde_json::from_value(plan).map_err(|error| format!("{} is not a plan: {error}", path.display()))?;
    match br_policy::check_all(&plan, input_count, &limits(job)) {
        Ok(checked) => {
            let (steps, temps) = (checked.plan().steps.len(), checked.plan().temps.len());
            Ok((exit::OK, format!("the plan passes the policy: {steps} steps, {temps} temps\n")))
        }
        Err(violations) => Ok((exit::SANDBOX, violation_lines(&violations).join("\n") + "\n")),
    }
}

/// A count, then each violation on a line of its own, then how many were not listed.
fn violation_lines(violations: &br_policy::Violations) -> Vec<String> {
    let total = violations.total();
    let noun = if total == 1 { "violation" } else { "violations" };
    let mut lines = vec![format!("refused by policy: {total} {noun}")];
    lines.extend(violations.listed().iter().map(br_policy::PolicyViolation::located_reason));
    if violations.unlisted() > 0 {
        lines.push(format!("and {} more", violations.unlisted()));
    }
    lines
}

#[cfg(test)]
mod tests {
    use crate::cli::PolicyJob;

    /// The built-in planner's plan for the backend's blueprint over made-up facts, as
    /// `plan` prints it.
    fn printed_plan() -> serde_json::Value {
        let validated = br_blueprint::validate(include_str!("../../../examples/backend-blueprint.json"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let facts = |key: &str, video: bool| br_plan::MediaFacts {
            key: key.into(),
            duration: 10.0,
            video: video.then(|| br_plan::VideoFacts {
                codec: "h264".into(),
                width: 1280,
                height: 720,
                frame_rate: 30.0,
                pixel_format: "yuv420p".into(),
                duration: 10.0,
            }),
            audio: Some(br_plan::AudioFacts {
                codec: "aac".into(),
                sample_rate: 48_000,
                channels: 2,
                duration: if video { 10.0 } else { 200.0 },
            }),
        };
        let mut inputs = vec![facts(&validated.audio_key, false)];
        inputs.extend(validated.clip_keys.iter().map(|key| facts(key, true)));
        let request = br_plan::PlanRequest {
            validated,
            inputs: inputs.clone(),
            strict: false,
            prepared: Vec::new(),
            song_loudness: None,
        };
        let plan = br_plan::plan(&request).unwrap_or_else(|e| panic!("{e:?}"));
        serde_json::json!({ "inputs": inputs, "plan": plan })
    }

    #[test]
    fn a_plan_file_is_checked_offline() {
        let job = PolicyJob { width: 1280, height: 720, seconds: 200.0 };
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("plan.json");
        let mut printed = printed_plan();
        std::fs::write(&file, printed.to_string()).unwrap();
        assert_eq!(super::check(&file, None, &job), br_engine::exit::OK);
        // A bare plan needs the input count.
        std::fs::write(&file, printed["plan"].to_string()).unwrap();
        assert_eq!(super::check(&file, None, &job), br_engine::exit::USAGE);
        assert_eq!(super::check(&file, Some(23), &job), br_engine::exit::OK);
        // An option outside the table.
        printed["plan"]["steps"][1]["args"]
            .as_array_mut()
            .unwrap()
            .insert(0, serde_json::json!({"kind": "literal", "value": "-metadata"}));
        std::fs::write(&file, printed.to_string()).unwrap();
        assert_eq!(super::check(&file, None, &job), br_engine::exit::SANDBOX);
    }

    #[test]
    fn every_violation_of_a_plan_file_is_printed_on_its_own_line() {
        let job = PolicyJob { width: 1280, height: 720, seconds: 200.0 };
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("plan.json");
        let mut printed = printed_plan();
        // An option outside the table in step 1, an input that does not exist in step 2.
        let metadata = serde_json::json!({"kind": "literal", "value": "-metadata"});
        printed["plan"]["steps"][1]["args"].as_array_mut().unwrap().insert(0, metadata);
        let args = printed["plan"]["steps"][2]["args"].as_array_mut().unwrap();
        let input_at = args.iter().position(|arg| arg["kind"] == "input").expect("step 2 reads an input");
        args[input_at] = serde_json::json!({"kind": "input", "value": 99});
        std::fs::write(&file, printed.to_string()).unwrap();
        let (code, output) = super::verdict(&file, None, &job).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(code, br_engine::exit::SANDBOX);
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), 3, "{output}");
        assert_eq!(lines[0], "refused by policy: 2 violations");
        assert_eq!(lines[1], "step 1, argument 0: the option \"-metadata\" is not allowed");
        assert!(lines[2].starts_with(&format!("step 2, argument {input_at}: input 99 does not exist")), "{output}");
    }

    /// docs/POLICY.md's option and filter table is this command's output for a 720p job of ten
    /// minutes: regenerate it with `blueprint-runner policy list --markdown` when the
    /// policy changes.
    #[test]
    fn docs_policy_shows_the_whole_policy_table() {
        // The job docs/POLICY.md's table describes: 720p, ten minutes of media.
        let (width, height, seconds) = (1280, 720, 600.0);
        let table = br_policy::table(&br_policy::PolicyLimits::for_job(width, height, seconds));
        let markdown = super::as_markdown(&table);
        let readme = include_str!("../../../docs/POLICY.md");
        let start = readme.find("<!-- policy-table -->\n").expect("docs/POLICY.md has the policy table's start marker")
            + "<!-- policy-table -->\n".len();
        let end = readme.find("<!-- /policy-table -->").expect("docs/POLICY.md has the policy table's end marker");
        assert!(
            readme[start..end] == markdown,
            "docs/POLICY.md's policy table is stale: run `blueprint-runner policy list --markdown`"
        );
        assert!(
            !table.options.iter().any(|o| o.name == "-metadata") && table.filters.iter().any(|f| f.name == "xfade")
        );
    }
}
