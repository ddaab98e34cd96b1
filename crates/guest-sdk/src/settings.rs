//! The operator's settings for the plugin (`GUEST_SETTINGS`, contract 0.6.0): a JSON object
//! the host has already bounded (16 KiB, 16 levels). The accessors check each value's type
//! and range, and their errors name the setting, so a plugin can hand them on as its
//! refusal.

use std::ops::RangeInclusive;

use serde_json::{Map, Value};

/// The settings object; empty when the operator set none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings(Map<String, Value>);

#[derive(Debug, Clone, PartialEq)]
pub struct SettingsError {
    /// `GUEST_SETTINGS/<name>` (a JSON pointer into the settings).
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

impl std::error::Error for SettingsError {}

impl SettingsError {
    fn new(name: &str, message: impl Into<String>) -> SettingsError {
        SettingsError {
            pointer: format!("GUEST_SETTINGS/{name}"),
            message: message.into(),
        }
    }

    /// As a plan error, for a plugin that refuses to plan with a wrong setting.
    pub fn into_plan_error(self) -> br_plan::PlanError {
        br_plan::PlanError {
            pointer: self.pointer,
            message: self.message,
        }
    }
}

impl Settings {
    /// Settings from JSON text (what the host passes; also for a plugin's native tests).
    pub fn from_json(text: &str) -> Result<Settings, SettingsError> {
        match serde_json::from_str(text) {
            Ok(Value::Object(fields)) => Ok(Settings(fields)),
            Ok(_) => Err(SettingsError::new("", "must be a JSON object")),
            Err(error) => Err(SettingsError::new("", format!("is not JSON: {error}"))),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A number within `range`, when set.
    pub fn number(&self, name: &str, range: RangeInclusive<f64>) -> Result<Option<f64>, SettingsError> {
        let Some(value) = self.0.get(name) else { return Ok(None) };
        let number = value
            .as_f64()
            .ok_or_else(|| SettingsError::new(name, format!("must be a number, not {value}")))?;
        within(name, number, &range).map(Some)
    }

    /// A whole number within `range`, when set.
    pub fn integer(&self, name: &str, range: RangeInclusive<u64>) -> Result<Option<u64>, SettingsError> {
        let Some(value) = self.0.get(name) else { return Ok(None) };
        let number = value
            .as_u64()
            .ok_or_else(|| SettingsError::new(name, format!("must be a whole number, not {value}")))?;
        within(name, number, &range).map(Some)
    }

    pub fn text(&self, name: &str) -> Result<Option<&str>, SettingsError> {
        let Some(value) = self.0.get(name) else { return Ok(None) };
        value
            .as_str()
            .map(Some)
            .ok_or_else(|| SettingsError::new(name, format!("must be a string, not {value}")))
    }

    pub fn flag(&self, name: &str) -> Result<Option<bool>, SettingsError> {
        let Some(value) = self.0.get(name) else { return Ok(None) };
        value
            .as_bool()
            .map(Some)
            .ok_or_else(|| SettingsError::new(name, format!("must be true or false, not {value}")))
    }
}

/// `number` when it lies in `range`; else an error naming the setting and the range.
fn within<T>(name: &str, number: T, range: &RangeInclusive<T>) -> Result<T, SettingsError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&number) {
        return Ok(number);
    }
    let (low, high) = (range.start(), range.end());
    Err(SettingsError::new(name, format!("is {number}; it must be from {low} to {high}")))
}

/// The operator's settings for this job (`host.settings`); empty when none are set.
#[cfg(target_arch = "wasm32")]
pub fn settings() -> Result<Settings, SettingsError> {
    match crate::bindings::blueprint::runner::host::settings() {
        None => Ok(Settings::default()),
        Some(text) => Settings::from_json(&text),
    }
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static NATIVE_SETTINGS: std::cell::RefCell<Settings> = std::cell::RefCell::new(Settings::default());
}

/// The settings a native test gave with [`use_settings_in_tests`]; empty otherwise.
#[cfg(not(target_arch = "wasm32"))]
pub fn settings() -> Result<Settings, SettingsError> {
    Ok(NATIVE_SETTINGS.with(|settings| settings.borrow().clone()))
}

/// What [`settings`] returns on this thread, for a plugin's native tests.
#[cfg(not(target_arch = "wasm32"))]
pub fn use_settings_in_tests(settings: Settings) {
    NATIVE_SETTINGS.with(|current| *current.borrow_mut() = settings);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_accessor_checks_type_and_range_and_names_the_setting() {
        let settings = Settings::from_json(r#"{"fade": 0.5, "moves": 10, "title": "x", "on": true}"#).unwrap();
        assert_eq!(settings.number("fade", 0.0..=2.0), Ok(Some(0.5)));
        assert_eq!(settings.number("absent", 0.0..=2.0), Ok(None));
        assert_eq!(settings.integer("moves", 1..=100), Ok(Some(10)));
        assert_eq!(settings.text("title"), Ok(Some("x")));
        assert_eq!(settings.flag("on"), Ok(Some(true)));
        let too_long = settings.number("fade", 0.0..=0.25).unwrap_err();
        assert_eq!(
            too_long.to_string(),
            "GUEST_SETTINGS/fade: is 0.5; it must be from 0 to 0.25"
        );
        assert_eq!(
            settings.integer("fade", 0..=9).unwrap_err().pointer,
            "GUEST_SETTINGS/fade"
        );
        assert!(settings.text("moves").is_err());
        assert!(settings.flag("title").is_err());
        assert!(Settings::from_json("[1]").is_err());
    }

    #[test]
    fn native_tests_choose_the_settings_their_thread_sees() {
        assert_eq!(settings(), Ok(Settings::default()));
        use_settings_in_tests(Settings::from_json(r#"{"moves": 3}"#).unwrap());
        assert_eq!(settings().unwrap().integer("moves", 0..=9), Ok(Some(3)));
    }
}
