//! The blueprint schema and its validation.
//!
//! This crate is pure computation on a string: it is compiled into the default guest
//! (where it runs in the sandbox) and into native tests. It reports every problem it
//! finds, each with an RFC 6901 JSON pointer into the document.

pub mod key;
pub mod limits;
pub mod manifest;
mod validate;

pub use validate::{validate, validate_with_task_id};

/// Stable machine-readable reason for a validation error (mirrors the WIT `error-code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidJson,
    MissingField,
    WrongType,
    OutOfRange,
    UnsafePath,
    TooLarge,
    NotAllowed,
    Timeline,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::InvalidJson,
        ErrorCode::MissingField,
        ErrorCode::WrongType,
        ErrorCode::OutOfRange,
        ErrorCode::UnsafePath,
        ErrorCode::TooLarge,
        ErrorCode::NotAllowed,
        ErrorCode::Timeline,
    ];

    /// The kebab-case name used in the WIT contract and in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid-json",
            ErrorCode::MissingField => "missing-field",
            ErrorCode::WrongType => "wrong-type",
            ErrorCode::OutOfRange => "out-of-range",
            ErrorCode::UnsafePath => "unsafe-path",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::NotAllowed => "not-allowed",
            ErrorCode::Timeline => "timeline",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidationError {
    /// JSON pointer to the offending value; "" is the whole document.
    pub pointer: String,
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Cut,
    Crossfade,
    FadeBlack,
    FadeWhite,
}

impl Transition {
    pub const NAMES: [&'static str; 4] = ["cut", "crossfade", "fade_black", "fade_white"];

    pub fn from_name(name: &str) -> Option<Transition> {
        match name {
            "cut" => Some(Transition::Cut),
            "crossfade" => Some(Transition::Crossfade),
            "fade_black" => Some(Transition::FadeBlack),
            "fade_white" => Some(Transition::FadeWhite),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MoveSlot {
    /// Index into [`Validated::clip_keys`].
    pub clip: u32,
    pub clip_id: String,
    pub start: f64,
    pub duration: f64,
    pub trim_start: f64,
    pub trim_end: f64,
    pub transition: Transition,
    pub volume: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputSettings {
    pub format: String,
    pub video_codec: String,
    pub audio_codec: String,
    pub video_bitrate: u64,
    pub audio_bitrate: u64,
    pub frame_rate: f64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub transition_duration: f64,
    pub fade_duration: f64,
    pub normalize_audio: bool,
    pub add_audio_overlay: bool,
}

/// A blueprint that passed validation, normalised, with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub task_id: String,
    pub audio_key: String,
    /// Distinct clip keys in order of first use.
    pub clip_keys: Vec<String>,
    pub output_key: String,
    pub total_duration: f64,
    pub moves: Vec<MoveSlot>,
    pub output: OutputSettings,
}

/// Why a blueprint was refused: every problem, and the task it was for when its
/// `task_id` itself was valid (so the failure can be recorded against that task).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub task_id: Option<String>,
    pub errors: Vec<ValidationError>,
}

/// The rule for a task id (`varchar(36)` in the backend's table, safe in a file name
/// and a log line): 1 to [`limits::MAX_TASK_ID_BYTES`] ASCII letters, digits, `-` or
/// `_`. Shared by the validator and by the host, which applies it again to whatever
/// task id a guest returns.
pub fn is_task_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= limits::MAX_TASK_ID_BYTES
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Escapes one reference token of a JSON pointer (RFC 6901).
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}
