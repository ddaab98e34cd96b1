//! The blueprint schema and its validation.
//!
//! This crate is pure computation on a string: it is compiled into the default guest
//! (where it runs in the sandbox) and into native tests. It reports every problem it
//! finds, each with an RFC 6901 JSON pointer into the document.

pub mod key;
pub mod limits;
pub mod manifest;
pub mod fit;
mod validate;

pub use validate::{check, validate, validate_with_task_id};

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
    /// Where in the clip the slot's footage begins. Negative only after a lenient fit: the
    /// slot starts that long before the clip does, showing the clip's first frame.
    pub trim_start: f64,
    pub trim_end: f64,
    pub transition: Transition,
    pub volume: f64,
    /// The blueprint's move this slot shows: its pointer is `/moves/{origin}`.
    pub origin: u32,
    /// Seconds of the transition into this slot (a crossfade's whole blend, each half of
    /// a fade, 0 for a cut), fitted to the moves around it. Plans use this rather than
    /// the output's `transition_duration` and `fade_duration`.
    pub transition_seconds: f64,
}

impl MoveSlot {
    /// The pointer of the blueprint's move this slot shows.
    pub fn pointer(&self) -> String {
        format!("/moves/{}", self.origin)
    }
}

impl Transition {
    /// How long this transition lasts as the output's settings ask, before any fitting.
    pub fn asked_seconds(self, output: &OutputSettings) -> f64 {
        match self {
            Transition::Cut => 0.0,
            Transition::Crossfade => output.transition_duration,
            Transition::FadeBlack | Transition::FadeWhite => output.fade_duration,
        }
    }
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
    /// What a lenient check changed to fit the timeline, each with its pointer.
    pub warnings: Vec<Warning>,
    /// What a plugin's `validate` kept for its `plan` (contract 0.9.0, `host.keep`): text of
    /// at most [`limits::MAX_KEPT_BYTES`], opaque to the host. None from the built-in
    /// check and from guests of older contracts.
    pub kept: Option<String>,
}

impl Validated {
    /// How many of the blueprint's moves the timeline shows: its slots' distinct origins.
    /// A plugin that repeats or splits a move has more slots than that; a result's
    /// `moves_count` is about the blueprint's choreography, not the plugin's slots.
    pub fn moves_shown(&self) -> usize {
        self.moves.iter().map(|slot| slot.origin).collect::<std::collections::BTreeSet<_>>().len()
    }

    /// Gives every slot the origin and transition length a guest older than contract
    /// 0.8.0 means: slot `i` is move `i`, and each transition lasts as the output asks.
    pub fn as_written(mut self) -> Validated {
        for (index, slot) in self.moves.iter_mut().enumerate() {
            slot.origin = index as u32;
            slot.transition_seconds = slot.transition.asked_seconds(&self.output);
        }
        self
    }
}

/// Something a lenient check changed so that the blueprint makes the video it means.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// JSON pointer into the blueprint, e.g. `/moves/7/transition_type`.
    pub pointer: String,
    pub message: String,
}

/// How a blueprint is checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckOptions {
    /// Refuse every irregular timeline and `gs://` address (`--strict`); otherwise the
    /// timeline is fitted and each adjustment is a [`Warning`].
    pub strict: bool,
    /// The job's own bucket, for object keys written as `gs://` addresses in it.
    pub own_bucket: Option<OwnBucket>,
}

impl CheckOptions {
    pub fn strict() -> CheckOptions {
        CheckOptions { strict: true, own_bucket: None }
    }
}

/// A key written as `address_prefix` + rest is read as `key_prefix` + rest.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnBucket {
    /// `gs://BUCKET/` and the job's object prefix.
    pub address_prefix: String,
    /// What the storage strips from keys (`data/`), so the key names the same object.
    pub key_prefix: String,
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
