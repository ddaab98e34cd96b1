//! The log filter the environment asks for: `BLUEPRINT_RUNNER_LOG`, else the
//! predecessor's `LOG_LEVEL`.

use br_engine::logging::LogChoice;

/// `BLUEPRINT_RUNNER_LOG` (a filter directive), else `LOG_LEVEL` (the predecessor's and
/// the backend's compose set-up's name, with Python's level names: `DEBUG`, `INFO`,
/// `WARNING`, `ERROR`, `CRITICAL`, any case), else `default_level`. The specific name
/// wins. An unknown `LOG_LEVEL` is an error: `job` lists it with its other configuration
/// problems; the entrance falls back to the default and says so.
pub fn filter_from_env(get: &dyn Fn(&str) -> Option<String>, default_level: &str) -> Result<LogChoice, String> {
    let set = |name: &str| get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let level = set("LOG_LEVEL");
    match (set("BLUEPRINT_RUNNER_LOG"), level) {
        (Some(directive), level) => {
            let ours = level.as_deref().and_then(python_level);
            let agrees = ours.is_some_and(|ours| ours.eq_ignore_ascii_case(&directive));
            let note = match level {
                Some(level) if !agrees => {
                    Some(format!("LOG_LEVEL={level} is ignored: BLUEPRINT_RUNNER_LOG={directive} is set"))
                }
                _ => None,
            };
            Ok(LogChoice { directive, note })
        }
        (None, Some(level)) => match python_level(&level) {
            Some(mapped) => Ok(LogChoice { directive: mapped.to_owned(), note: None }),
            None => Err(format!("{level:?} is not a level: use DEBUG, INFO, WARNING, ERROR or CRITICAL (or TRACE)")),
        },
        (None, None) => Ok(LogChoice { directive: default_level.to_owned(), note: None }),
    }
}

/// A Python logging level name (what `LOG_LEVEL` holds for the predecessor) as ours.
fn python_level(level: &str) -> Option<&'static str> {
    Some(match level.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARNING" | "WARN" => "warn",
        // We have no level above error.
        "ERROR" | "CRITICAL" | "FATAL" => "error",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(vars: &[(&str, &str)]) -> Result<LogChoice, String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        filter_from_env(&|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()), "warn")
    }

    #[test]
    fn log_level_takes_pythons_names_and_blueprint_runner_log_wins() {
        let directive = |vars: &[(&str, &str)]| choice(vars).unwrap().directive;
        assert_eq!(directive(&[]), "warn");
        assert_eq!(directive(&[("LOG_LEVEL", "DEBUG")]), "debug");
        assert_eq!(directive(&[("LOG_LEVEL", "info")]), "info");
        assert_eq!(directive(&[("LOG_LEVEL", "WARNING")]), "warn");
        assert_eq!(directive(&[("LOG_LEVEL", "CRITICAL")]), "error");
        assert_eq!(directive(&[("LOG_LEVEL", "")]), "warn");
        let specific = "blueprint_runner=debug,warn";
        assert_eq!(directive(&[("BLUEPRINT_RUNNER_LOG", specific), ("LOG_LEVEL", "ERROR")]), specific);
        let overridden = choice(&[("BLUEPRINT_RUNNER_LOG", "info"), ("LOG_LEVEL", "DEBUG")]).unwrap();
        assert_eq!(overridden.directive, "info");
        assert_eq!(overridden.note.as_deref(), Some("LOG_LEVEL=DEBUG is ignored: BLUEPRINT_RUNNER_LOG=info is set"));
        let agreeing = choice(&[("BLUEPRINT_RUNNER_LOG", "info"), ("LOG_LEVEL", "INFO")]).unwrap();
        assert_eq!(agreeing.note, None, "they agree");
        let refused = choice(&[("LOG_LEVEL", "VERBOSE")]).unwrap_err();
        assert!(refused.contains("\"VERBOSE\" is not a level"), "{refused}");
    }
}
