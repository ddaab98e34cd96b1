//! The `job` command's configuration check: every environment variable the job reads,
//! checked at start, all problems reported in one message (a Cloud Run execution that
//! fails on its first bad variable, then on the next, wastes a deploy per variable).

use std::path::Path;

use br_status::{ConfigProblem, DbSettings};

use br_engine::budget;

use crate::cli::number;
use crate::settings::data_dir_variable;

/// Task ids are the backend's UUIDs (varchar(36)); other characters would only be a
/// mistake or an attack on log and path formats.
pub const TASK_ID_MAX: usize = br_blueprint::limits::MAX_TASK_ID_BYTES;

/// The blueprint's own rule for task ids (one rule for TASK_ID, blueprints and manifests).
pub fn task_id_problem(task_id: &str) -> Option<String> {
    if !br_blueprint::is_task_id(task_id) {
        Some(format!("must be 1 to {TASK_ID_MAX} letters, digits, '-' or '_'"))
    } else {
        None
    }
}

/// Everything wrong with the job's environment. `blueprint_argument`: a blueprint
/// file was given on the command line, so `BLUEPRINT_JSON` is not needed.
pub fn check_job_environment(get: &dyn Fn(&str) -> Option<String>, blueprint_argument: bool) -> Vec<ConfigProblem> {
    let value = |name: &str| get(name).filter(|v| !v.is_empty());
    let mut problems = Vec::new();
    let mut add = |variable: &str, message: String| problems.push(ConfigProblem { variable: variable.into(), message });

    let manifest = value(crate::blueprint_source::MANIFEST_ENV);
    if let Some(manifest) = &manifest {
        // A task array: each entry names its task and blueprint.
        for single in ["BLUEPRINT_JSON", "BLUEPRINT_URI", "TASK_ID"] {
            if value(single).is_some() {
                add(
                    single,
                    format!(
                        "is set together with {}: a task array takes each entry's",
                        crate::blueprint_source::MANIFEST_ENV
                    ),
                );
            }
        }
        if blueprint_argument {
            add(crate::blueprint_source::MANIFEST_ENV, "is set together with a blueprint FILE argument".into());
        }
        if !manifest.starts_with("gs://") && !Path::new(manifest).is_file() {
            add(crate::blueprint_source::MANIFEST_ENV, "must be a gs://BUCKET/KEY address or a file".into());
        }
        if let Err(message) = crate::settings::cloud_run_shard(get) {
            add("CLOUD_RUN_TASK_INDEX", message);
        }
    } else if !blueprint_argument {
        match (value("BLUEPRINT_JSON"), value("BLUEPRINT_URI")) {
            (None, None) => add("BLUEPRINT_JSON", "is missing (or set BLUEPRINT_URI to a gs:// address)".into()),
            (Some(_), Some(_)) => {
                add("BLUEPRINT_URI", "is set together with BLUEPRINT_JSON: use one or the other".into())
            }
            (None, Some(uri)) if !uri.starts_with("gs://") => {
                add("BLUEPRINT_URI", "must be a gs://BUCKET/KEY address".into())
            }
            _ => {}
        }
    }
    if let Some(task_id) = get("TASK_ID") {
        if let Some(message) = task_id_problem(&task_id) {
            add("TASK_ID", message);
        }
    }

    // What clap reads from the environment, checked by clap's own parsers: the numbers
    // and their ranges, the words of TIMELINE, PREPARED and STORAGE, the prefixes,
    // GUEST_SETTINGS. clap alone would stop at the first bad one.
    for (variable, message) in parser_problems(get) {
        add(&variable, message);
    }
    // Cloud Run's own, which no flag reads.
    if let Some(text) = value("CLOUD_RUN_TASK_ATTEMPT") {
        if let Err(message) = number("CLOUD_RUN_TASK_ATTEMPT", &text) {
            add("CLOUD_RUN_TASK_ATTEMPT", message);
        }
    }
    // A number refused above counts as its default here: the split is checked once.
    let mib = |name: &str, default: u64| value(name).and_then(|text| number(name, &text).ok()).unwrap_or(default);
    let guest = mib("GUEST_MEMORY_MIB", budget::DEFAULT_GUEST_MEMORY / budget::MIB);
    let job = mib("JOB_MEMORY_MIB", budget::DEFAULT_JOB_MEMORY_BUDGET / budget::MIB);
    if let Err(error) = budget::JobBudget::new(job.saturating_mul(budget::MIB), guest.saturating_mul(budget::MIB)) {
        add(error.variable(), error.to_string());
    }

    let use_gcs = match value("USE_GCS").map(|v| v.to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "true" || v == "1" => true,
        Some(v) if v == "false" || v == "0" => false,
        Some(_) => {
            add("USE_GCS", "must be true, false, 1 or 0".into());
            false
        }
    };
    // A STORAGE that is neither word was refused by its parser above.
    let gcs = match value("STORAGE").as_deref() {
        Some("gcs") => true,
        Some("local") => false,
        _ => use_gcs,
    };
    if gcs {
        if value("GCS_BUCKET_NAME").is_none() {
            add("GCS_BUCKET_NAME", "is missing (GCS storage needs a bucket)".into());
        }
    } else {
        match data_dir_variable(get) {
            None => {
                let message =
                    "is missing (local storage needs a folder: DATA_DIR or LOCAL_STORAGE_PATH; USE_GCS=true for GCS)";
                add("DATA_DIR", message.into())
            }
            Some((name, dir)) if !Path::new(&dir).is_dir() => add(name, format!("{dir} is not a folder")),
            Some(_) => {}
        }
    }
    if let Some(dir) = value("WORK_DIR") {
        if !Path::new(&dir).is_dir() {
            add("WORK_DIR", format!("{dir} is not a folder"));
        }
    }
    if let Some(path) = value("GUEST_COMPONENT") {
        if !Path::new(&path).is_file() {
            add("GUEST_COMPONENT", format!("{path} is not a file"));
        }
    }
    if let Err(message) = crate::settings::log_filter::filter_from_env(get, "info").map(|_| ()) {
        add("LOG_LEVEL", message);
    }
    if let Err(db_problems) = DbSettings::from_env(get) {
        problems.extend(db_problems);
    }
    problems
}

/// Each environment variable an argument of `job` reads (`#[arg(env = ...)]`), run through
/// that argument's own value parser; the variable and the parser's message for each
/// refusal. An empty variable is unset, as clap reads it.
fn parser_problems(get: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    use clap::CommandFactory;
    let mut command = crate::cli::Cli::command();
    command.build();
    let Some(job) = command.find_subcommand("job") else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for arg in job.get_arguments() {
        let Some(variable) = arg.get_env().and_then(|name| name.to_str()) else {
            continue;
        };
        let Some(text) = get(variable).filter(|text| !text.is_empty()) else {
            continue;
        };
        // The flag alone, given the variable's value: clap runs its parser (the parser is
        // not callable on its own).
        let Some(long) = arg.get_long() else {
            continue;
        };
        let mut probe = clap::Command::new("environment").no_binary_name(true).arg(arg.clone());
        if let Err(error) = probe.try_get_matches_from_mut([format!("--{long}={text}")]) {
            problems.push((variable.to_owned(), parser_message(arg, &error)));
        }
    }
    problems
}

/// What a value parser said: our own parsers' message (the error's source), else the
/// words a value enum takes.
fn parser_message(arg: &clap::Arg, error: &clap::Error) -> String {
    if let Some(cause) = std::error::Error::source(error) {
        return cause.to_string();
    }
    let words: Vec<String> = arg.get_possible_values().iter().map(|word| word.get_name().to_owned()).collect();
    match words.as_slice() {
        [] => error.kind().to_string(),
        [only] => format!("must be {only}"),
        [first @ .., last] => format!("must be {} or {last}", first.join(", ")),
    }
}

/// `the job's configuration has 2 problems: A: ...; B: ...`
pub fn describe(problems: &[ConfigProblem]) -> String {
    let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let count = if problems.len() == 1 { "1 problem".to_owned() } else { format!("{} problems", problems.len()) };
    format!("the job's configuration has {count}: {}", listed.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn check(vars: &[(&str, &str)]) -> Vec<String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        check_job_environment(&|name| vars.get(name).cloned(), false).into_iter().map(|p| p.variable).collect()
    }

    #[test]
    fn a_complete_local_configuration_passes() {
        let dir = std::env::temp_dir();
        let dir = dir.to_str().unwrap();
        assert!(check(&[
            ("BLUEPRINT_JSON", "{}"),
            ("DATA_DIR", dir),
            ("TASK_ID", "0b8f-42"),
            ("DB_HOST", "/cloudsql/p:r:i"),
            ("DB_NAME", "n"),
            ("DB_USER", "u")
        ])
        .is_empty());
    }

    #[test]
    fn the_timeline_and_prepared_modes_are_words_from_their_lists() {
        let dir = std::env::temp_dir();
        let local = [("BLUEPRINT_JSON", "{}"), ("DATA_DIR", dir.to_str().unwrap())];
        for good in [("TIMELINE", "strict"), ("TIMELINE", "lenient"), ("PREPARED", "off"), ("PREPARED", "auto")] {
            assert!(check(&[local[0], local[1], good]).is_empty(), "{good:?}");
        }
        assert_eq!(check(&[local[0], local[1], ("TIMELINE", "Strict"), ("PREPARED", "on")]), ["TIMELINE", "PREPARED"]);
    }

    #[test]
    fn every_problem_is_listed_once() {
        let problems = check(&[
            ("TASK_ID", "../../etc"),
            ("USE_GCS", "yes"),
            ("DOWNLOAD_CONCURRENCY", "0"),
            ("GUEST_MEMORY_MIB", "4096"),
            ("DB_PORT", "70000"),
            ("DB_HOST", "db"),
            ("WORK_DIR", "/nonexistent/work"),
            ("GUEST_SETTINGS", "[\"not an object\"]"),
        ]);
        assert_eq!(
            problems,
            [
                "BLUEPRINT_JSON",
                "TASK_ID",
                "DOWNLOAD_CONCURRENCY",
                "GUEST_SETTINGS",
                "GUEST_MEMORY_MIB",
                "USE_GCS",
                "DATA_DIR",
                "WORK_DIR",
                "DB_PORT",
                "DB_NAME",
                "DB_USER"
            ]
        );
    }

    /// What clap reads from the environment is checked by the flag's own parser, with
    /// the parser's message (or the words of a value enum), all problems at once.
    #[test]
    fn the_environment_is_checked_by_the_flags_own_parsers() {
        let dir = std::env::temp_dir();
        let vars: HashMap<&str, &str> = HashMap::from([
            ("BLUEPRINT_JSON", "{}"),
            ("DATA_DIR", dir.to_str().unwrap()),
            ("TIMELINE", "Strict"),
            ("STORAGE", "s3"),
            ("OUTPUT_PREFIX", "/out/"),
            ("STEP_TIMEOUT_SECS", "0"),
            ("STATUS_FLUSH_SECS", "3601"),
            ("GUEST_FUEL", "lots"),
            ("CLOUD_RUN_TASK_ATTEMPT", "11"),
        ]);
        let problems = check_job_environment(&|name| vars.get(name).map(|v| v.to_string()), false);
        let found: HashMap<String, String> = problems.into_iter().map(|p| (p.variable, p.message)).collect();
        assert_eq!(found["TIMELINE"], "must be lenient or strict");
        assert_eq!(found["STORAGE"], "must be local or gcs");
        assert_eq!(Some(found["OUTPUT_PREFIX"].clone()), br_engine::storage::folder_prefix_problem("/out/"));
        assert_eq!(found["STEP_TIMEOUT_SECS"], "must be a whole number of at least 1");
        assert_eq!(found["STATUS_FLUSH_SECS"], "must be a whole number from 1 to 3600");
        assert_eq!(found["GUEST_FUEL"], "must be a whole number of at least 1");
        assert_eq!(found["CLOUD_RUN_TASK_ATTEMPT"], "must be a whole number from 0 to 10");
        assert_eq!(found.len(), 7, "{found:#?}");
    }

    #[test]
    fn local_storage_path_is_the_data_folder_unless_data_dir_is_set() {
        let dir = std::env::temp_dir();
        let dir = dir.to_str().unwrap();
        let json = ("BLUEPRINT_JSON", "{}");
        let nowhere = "/nonexistent/app/data";
        assert!(check(&[json, ("LOCAL_STORAGE_PATH", dir)]).is_empty());
        assert_eq!(check(&[json, ("LOCAL_STORAGE_PATH", nowhere)]), ["LOCAL_STORAGE_PATH"]);
        // DATA_DIR wins: a bad alias beside it is not used, so not a problem.
        assert!(check(&[json, ("DATA_DIR", dir), ("LOCAL_STORAGE_PATH", nowhere)]).is_empty());
        assert_eq!(check(&[json, ("DATA_DIR", nowhere), ("LOCAL_STORAGE_PATH", dir)]), ["DATA_DIR"]);
        assert_eq!(check(&[json, ("DATA_DIR", ""), ("LOCAL_STORAGE_PATH", "")]), ["DATA_DIR"]);
    }

    #[test]
    fn a_port_beside_a_database_url_is_named() {
        let dir = std::env::temp_dir();
        let base =
            [("BLUEPRINT_JSON", "{}"), ("DATA_DIR", dir.to_str().unwrap()), ("DATABASE_URL", "postgres://u@h/db")];
        assert_eq!(check(&[base[0], base[1], base[2], ("DB_PORT", "5432")]), ["DB_PORT"]);
        assert!(check(&base).is_empty());
    }

    /// The flags and the job's check read the same ranges: a value clap accepts for a
    /// flag is one the job accepts from the environment, and the other way round.
    #[test]
    fn flags_and_the_environment_share_one_table_of_ranges() {
        use clap::Parser;
        assert_eq!(number("DOWNLOAD_CONCURRENCY", "64"), Ok(64));
        assert!(number("DOWNLOAD_CONCURRENCY", "65").unwrap_err().contains("from 1 to 64"));
        assert!(number("STORAGE_FIRST_BACKOFF_MS", "60001").is_err());
        assert!(number("NOT_A_SETTING", "1").is_err());
        let parse = |args: &[&str]| {
            crate::cli::Cli::try_parse_from(["blueprint-runner", "run", "--data-dir", "."].iter().chain(args))
        };
        assert!(parse(&["--download-concurrency", "64"]).is_ok());
        let refused = parse(&["--download-concurrency", "65"]).err().expect("65 is refused");
        assert!(refused.to_string().contains("from 1 to 64"), "{refused}");
        assert!(parse(&["--storage-backoff-ms", "60001"]).is_err());
        assert!(parse(&["--step-timeout", "0"]).is_err());
    }

    #[test]
    fn a_task_array_takes_tasks_and_blueprints_from_its_manifest() {
        let base = [("BLUEPRINT_MANIFEST_URI", "gs://b/manifest.json"), ("STORAGE", "gcs"), ("GCS_BUCKET_NAME", "b")];
        assert!(check(&base).is_empty(), "{:?}", check(&base));
        assert_eq!(
            check(&[base[0], base[1], base[2], ("TASK_ID", "t-1"), ("BLUEPRINT_JSON", "{}")]),
            ["BLUEPRINT_JSON", "TASK_ID"]
        );
        let bad_index = [base[0], base[1], base[2], ("CLOUD_RUN_TASK_INDEX", "2"), ("CLOUD_RUN_TASK_COUNT", "2")];
        assert_eq!(check(&bad_index), ["CLOUD_RUN_TASK_INDEX"]);
        assert_eq!(
            check(&[("BLUEPRINT_MANIFEST_URI", "/nonexistent/m.json"), base[1], base[2]]),
            ["BLUEPRINT_MANIFEST_URI"]
        );
    }

    /// The backend's compose set-up names the data folder LOCAL_STORAGE_PATH; DATA_DIR,
    /// the job's own name, wins when both are set.

    #[test]
    fn the_strip_prefix_and_the_log_level_are_checked() {
        let dir = std::env::temp_dir();
        let base = [("BLUEPRINT_JSON", "{}"), ("DATA_DIR", dir.to_str().unwrap())];
        assert!(check(&[base[0], base[1], ("GCS_STRIP_PREFIX", ""), ("LOG_LEVEL", "WARNING")]).is_empty());
        let bad = check(&[base[0], base[1], ("GCS_STRIP_PREFIX", "data"), ("LOG_LEVEL", "LOUD")]);
        assert_eq!(bad, ["GCS_STRIP_PREFIX", "LOG_LEVEL"]);
        // Not in effect beside BLUEPRINT_RUNNER_LOG, so not checked.
        assert!(check(&[base[0], base[1], ("BLUEPRINT_RUNNER_LOG", "debug"), ("LOG_LEVEL", "LOUD")]).is_empty());
    }

    #[test]
    fn gcs_needs_a_bucket_not_a_folder() {
        assert_eq!(check(&[("BLUEPRINT_JSON", "{}"), ("USE_GCS", "true")]), ["GCS_BUCKET_NAME"]);
        assert_eq!(
            check(&[("BLUEPRINT_URI", "https://x/y"), ("STORAGE", "gcs"), ("GCS_BUCKET_NAME", "b")]),
            ["BLUEPRINT_URI"]
        );
    }
}
