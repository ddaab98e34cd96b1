//! The operator's settings for a guest (`GUEST_SETTINGS`, contract 0.6.0).
//!
//! They come from the job's environment, not from the blueprint, but they are still held
//! to bounds before a guest sees them: a guest is given what it can parse in a small
//! fraction of its fuel, and a typo fails the job at start rather than inside a plugin.

/// Bytes of the settings' JSON text.
pub const MAX_SETTINGS_BYTES: usize = 16 * 1024;
/// Nesting of arrays and objects, the top-level object counting as 1.
pub const MAX_SETTINGS_DEPTH: usize = 16;

/// Settings that passed the bounds: a JSON object, kept as the operator wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestSettings(String);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("is {size} bytes; at most {MAX_SETTINGS_BYTES}")]
    TooLarge { size: usize },
    #[error("is not JSON: {0}")]
    NotJson(String),
    #[error("must be a JSON object, e.g. {{\"fade_seconds\": 0.5}}")]
    NotAnObject,
    #[error("nests {depth} levels deep; at most {MAX_SETTINGS_DEPTH}")]
    TooDeep { depth: usize },
}

impl GuestSettings {
    pub fn parse(text: &str) -> Result<GuestSettings, SettingsError> {
        if text.len() > MAX_SETTINGS_BYTES {
            return Err(SettingsError::TooLarge { size: text.len() });
        }
        // serde_json stops at 128 levels by itself, so the depth walk below is bounded.
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| SettingsError::NotJson(e.to_string()))?;
        if !value.is_object() {
            return Err(SettingsError::NotAnObject);
        }
        let depth = depth(&value);
        if depth > MAX_SETTINGS_DEPTH {
            return Err(SettingsError::TooDeep { depth });
        }
        Ok(GuestSettings(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_within_bounds_is_kept_as_written() {
        let text = r#"{"fade_seconds": 0.5, "max_moves": 10, "names": ["a", {"b": null}]}"#;
        assert_eq!(GuestSettings::parse(text).map(|s| s.as_str().to_owned()), Ok(text.to_owned()));
    }

    #[test]
    fn settings_larger_than_the_bound_are_refused() {
        let text = format!(r#"{{"pad": "{}"}}"#, "x".repeat(MAX_SETTINGS_BYTES));
        assert!(matches!(GuestSettings::parse(&text), Err(SettingsError::TooLarge { .. })));
        let just_fits = format!(r#"{{"pad": "{}"}}"#, "x".repeat(MAX_SETTINGS_BYTES - 11));
        assert_eq!(just_fits.len(), MAX_SETTINGS_BYTES);
        assert!(GuestSettings::parse(&just_fits).is_ok());
    }

    #[test]
    fn text_that_is_not_json_is_refused() {
        assert!(matches!(GuestSettings::parse("{fade: 1}"), Err(SettingsError::NotJson(_))));
    }

    #[test]
    fn json_that_is_not_an_object_is_refused() {
        for text in ["[1]", "3", "\"x\"", "null"] {
            assert_eq!(GuestSettings::parse(text), Err(SettingsError::NotAnObject), "{text}");
        }
    }

    #[test]
    fn nesting_deeper_than_the_bound_is_refused() {
        let nested = |levels: usize| format!("{}{}", "{\"a\":".repeat(levels), "}".repeat(levels)).replace(":}", ":1}");
        assert!(GuestSettings::parse(&nested(MAX_SETTINGS_DEPTH)).is_ok());
        assert_eq!(GuestSettings::parse(&nested(MAX_SETTINGS_DEPTH + 1)), Err(SettingsError::TooDeep { depth: 17 }));
    }

    /// Arrays count as levels as objects do: an object holding arrays nested to the bound
    /// is taken, one array more is refused.
    #[test]
    fn arrays_nested_deeper_than_the_bound_are_refused() {
        let arrays = |levels: usize| format!("{{\"a\":{}1{}}}", "[".repeat(levels), "]".repeat(levels));
        assert!(GuestSettings::parse(&arrays(MAX_SETTINGS_DEPTH - 1)).is_ok());
        assert_eq!(
            GuestSettings::parse(&arrays(MAX_SETTINGS_DEPTH)),
            Err(SettingsError::TooDeep { depth: MAX_SETTINGS_DEPTH + 1 })
        );
    }
}
