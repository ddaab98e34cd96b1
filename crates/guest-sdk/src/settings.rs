//! The operator's settings for the plugin (`GUEST_SETTINGS`, contract 0.6.0): a JSON object
//! the host has already bounded (16 KiB, 16 levels). The accessors check each value's type
//! and range, and their errors name the setting, so a plugin can hand them on as its
//! refusal with `?` (in `validate` and in `plan`), or with [`SettingsError::into_plan_error`]
//! and [`SettingsError::into_validation_error`].

use std::ops::RangeInclusive;

use br_blueprint::{ErrorCode, Refusal, ValidationError};
use br_plan::PlanError;
use serde_json::{Map, Value};

/// The settings object; empty when the operator set none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings(Map<String, Value>);

/// A setting that is not what the plugin accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsError {
    /// `GUEST_SETTINGS/<name>`: where the operator looks. It is not a pointer into the
    /// blueprint, so the refusals made from it point at the whole job (`""`) and carry it
    /// in their message.
    pub pointer: String,
    /// Why, as the accessors report it: `wrong-type` (not the JSON type asked for, or
    /// settings that are not an object), `out-of-range` (outside the range asked for) or
    /// `invalid-json` (settings text that is not JSON).
    pub code: ErrorCode,
    /// What is wrong, e.g. `is 1000; it must be from 40 to 240`: it completes the pointer.
    pub message: String,
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

impl std::error::Error for SettingsError {}

impl SettingsError {
    fn new(name: &str, code: ErrorCode, message: impl Into<String>) -> SettingsError {
        SettingsError {
            pointer: if name.is_empty() { "GUEST_SETTINGS".into() } else { format!("GUEST_SETTINGS/{name}") },
            code,
            message: message.into(),
        }
    }

    /// As a plan error, for a plugin that refuses to plan with a wrong setting: the host
    /// shows `GUEST_SETTINGS/bpm: is 1000; it must be from 40 to 240`. A plan error's
    /// pointer is a JSON pointer into the blueprint (the host refuses any other as a
    /// malformed answer), and a setting is not in the blueprint: so the pointer is `""`.
    pub fn into_plan_error(self) -> PlanError {
        PlanError { pointer: String::new(), message: self.to_string() }
    }

    /// As a validation error, for a plugin that refuses a job whose settings are wrong
    /// before anything is fetched (see [`SettingsError::into_plan_error`] for the pointer).
    pub fn into_validation_error(self) -> ValidationError {
        ValidationError { pointer: String::new(), code: self.code, message: self.to_string() }
    }
}

/// `settings()?` in a plugin's `plan`.
impl From<SettingsError> for Vec<PlanError> {
    fn from(error: SettingsError) -> Vec<PlanError> {
        vec![error.into_plan_error()]
    }
}

/// `settings()?` in a plugin's `validate` (the refusal names no task id: the blueprint's
/// is only known once it is read).
impl From<SettingsError> for Refusal {
    fn from(error: SettingsError) -> Refusal {
        Refusal { task_id: None, errors: vec![error.into_validation_error()] }
    }
}

impl Settings {
    /// Settings from JSON text (what the host passes; also for a plugin's native tests).
    pub fn from_json(text: &str) -> Result<Settings, SettingsError> {
        match serde_json::from_str(text) {
            Ok(Value::Object(fields)) => Ok(Settings(fields)),
            Ok(_) => Err(SettingsError::new("", ErrorCode::WrongType, "must be a JSON object")),
            Err(error) => Err(SettingsError::new("", ErrorCode::InvalidJson, format!("is not JSON: {error}"))),
        }
    }

    /// The setting's JSON value as the operator wrote it, unchecked; None when not set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A number within `range`, when set.
    pub fn number(&self, name: &str, range: RangeInclusive<f64>) -> Result<Option<f64>, SettingsError> {
        let Some(value) = self.0.get(name) else { return Ok(None) };
        let number = value
            .as_f64()
            .ok_or_else(|| SettingsError::new(name, ErrorCode::WrongType, format!("must be a number, not {value}")))?;
        within(name, number, &range).map(Some)
    }

    /// A whole number within `range`, when set.
    pub fn integer(&self, name: &str, range: RangeInclusive<u64>) -> Result<Option<u64>, SettingsError> {
        let Some(value) = self.0.get(name) else { return Ok(None) };
        let number = value.as_u64().ok_or_else(|| {
            SettingsError::new(name, ErrorCode::WrongType, format!("must be a whole number, not {value}"))
        })?;
        within(name, number, &range).map(Some)
    }

    /// A string, when set.
    pub fn text(&self, name: &str) -> Result<Option<&str>, SettingsError> {
        let Some(value) = self.0.get(name) else { return Ok(None) };
        value
            .as_str()
            .map(Some)
            .ok_or_else(|| SettingsError::new(name, ErrorCode::WrongType, format!("must be a string, not {value}")))
    }

    /// A boolean (`true` or `false`), when set.
    pub fn flag(&self, name: &str) -> Result<Option<bool>, SettingsError> {
        let Some(value) = self.0.get(name) else { return Ok(None) };
        value.as_bool().map(Some).ok_or_else(|| {
            SettingsError::new(name, ErrorCode::WrongType, format!("must be true or false, not {value}"))
        })
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
    Err(SettingsError::new(name, ErrorCode::OutOfRange, format!("is {number}; it must be from {low} to {high}")))
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
        assert_eq!(too_long.to_string(), "GUEST_SETTINGS/fade: is 0.5; it must be from 0 to 0.25");
        assert_eq!(settings.integer("fade", 0..=9).unwrap_err().pointer, "GUEST_SETTINGS/fade");
        assert!(settings.text("moves").is_err());
        assert!(settings.flag("title").is_err());
        assert!(Settings::from_json("[1]").is_err());
    }

    /// What the host accepts: a pointer into the blueprint (here the whole job), the
    /// setting named in the message.
    #[test]
    fn a_settings_error_becomes_a_refusal_the_host_accepts() {
        let error = Settings::from_json(r#"{"bpm": 1000}"#).unwrap().number("bpm", 40.0..=240.0).unwrap_err();
        let planned: Vec<PlanError> = error.clone().into();
        assert_eq!(planned[0].pointer, "");
        assert_eq!(planned[0].message, "GUEST_SETTINGS/bpm: is 1000; it must be from 40 to 240");
        let refusal: Refusal = error.into();
        assert_eq!(refusal.errors[0].pointer, "");
        assert_eq!(refusal.errors[0].code, ErrorCode::OutOfRange);
        assert_eq!(refusal.errors[0].message, "GUEST_SETTINGS/bpm: is 1000; it must be from 40 to 240");
        let wrong_type = Settings::from_json(r#"{"bpm": "fast"}"#).unwrap().number("bpm", 40.0..=240.0).unwrap_err();
        assert_eq!(wrong_type.into_validation_error().code, ErrorCode::WrongType);
    }

    #[test]
    fn native_tests_choose_the_settings_their_thread_sees() {
        assert_eq!(settings(), Ok(Settings::default()));
        use_settings_in_tests(Settings::from_json(r#"{"moves": 3}"#).unwrap());
        assert_eq!(settings().unwrap().integer("moves", 0..=9), Ok(Some(3)));
    }
}
