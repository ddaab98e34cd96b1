//! The blueprint schema and its validation.
//!
//! This crate is pure computation on a string: it is compiled into the default guest
//! (where it runs in the sandbox) and into native tests. It reports every problem it
//! finds, each with an RFC 6901 JSON pointer into the document.

#![warn(missing_docs)]

pub mod fit;
pub mod key;
pub mod limits;
pub mod manifest;
mod validate;

pub use validate::{check, validate, validate_with_task_id};

/// Stable machine-readable reason for a validation error (mirrors the WIT `error-code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The text is not JSON, or JSON nested too deeply, or a number out of range.
    InvalidJson,
    /// A required field is absent (or null).
    MissingField,
    /// A field has the wrong JSON type (a string where a number is expected...).
    WrongType,
    /// A number is outside its allowed range (negative duration, volume above 1...).
    OutOfRange,
    /// An object key would escape the storage root or name a URL, protocol or option.
    UnsafePath,
    /// The document, a string, a list or the timeline exceeds a size limit.
    TooLarge,
    /// A value is not in the allow-list (codec, bitrate, transition, format...).
    NotAllowed,
    /// Moves are out of order, overlap, leave a gap, or disagree with `total_duration`.
    Timeline,
}

impl ErrorCode {
    /// Every code, in the order of the WIT `error-code` enum.
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

/// One problem found in a blueprint (or a manifest), mirroring the WIT `validation-error`.
/// Validation reports all of them, not only the first.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationError {
    /// RFC 6901 JSON pointer to the offending value, e.g. `/moves/3/trim_start`; the empty
    /// string means the whole document.
    pub pointer: String,
    /// Why the value was refused; stable, so machines may match on it.
    pub code: ErrorCode,
    /// One sentence for a human operator.
    pub message: String,
}

/// How a move enters the timeline (the blueprint's `transition_type`; mirrors the WIT
/// `transition`). Its length is the slot's [`MoveSlot::transition_seconds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Hard cut at the slot's `start` (the default).
    Cut,
    /// Blend centred on the boundary with the previous move (as asked:
    /// [`OutputSettings::transition_duration`]). On the first move, a fade in from black
    /// over half the transition.
    Crossfade,
    /// The previous move fades out to black, this one fades in from black, each over the
    /// transition's length (as asked: [`OutputSettings::fade_duration`]).
    FadeBlack,
    /// As [`Transition::FadeBlack`], through white.
    FadeWhite,
}

impl Transition {
    /// The blueprint's spellings of `transition_type`, in the order of the variants.
    pub const NAMES: [&'static str; 4] = ["cut", "crossfade", "fade_black", "fade_white"];

    /// The transition a blueprint's `transition_type` names (one of [`Transition::NAMES`]);
    /// None for any other text.
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

/// One slot of the timeline, normalised (mirrors the WIT `move-slot`, with the slot's
/// `slot-fit`). Times are seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct MoveSlot {
    /// Index into [`Validated::clip_keys`]: where this slot's footage comes from.
    pub clip: u32,
    /// The backend's identifier of the move (the blueprint's `clip_id`: printable text of at
    /// most [`limits::MAX_LABEL_BYTES`] bytes; empty when absent), for messages only.
    pub clip_id: String,
    /// Timeline position where the slot starts, in seconds from the video's start (a beat
    /// chosen by the backend; the blueprint's `start_time`).
    pub start: f64,
    /// Seconds the slot stays on screen; more than 0.
    pub duration: f64,
    /// Seconds into the clip where the slot's footage begins (0 by default). Negative only
    /// after a lenient fit: the slot starts that long before the clip does, showing the
    /// clip's first frame until the clip starts.
    pub trim_start: f64,
    /// Seconds to leave out at the clip's end (0 by default, never negative). When the rest
    /// of the clip is shorter than the slot, its last frame is held until the slot ends.
    pub trim_end: f64,
    /// How the slot enters the timeline.
    pub transition: Transition,
    /// Song volume during this slot (the blueprint's `volume_adjustment`): 0.0 (silent) to
    /// 1.0 (unchanged, the default).
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

/// The blueprint's `output_config`, every default already applied (mirrors the WIT
/// `output-settings`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSettings {
    /// Container, currently always `mp4`.
    pub format: String,
    /// Allow-listed video encoder name: `libx264` (the default) or `libx265`.
    pub video_codec: String,
    /// Allow-listed audio encoder name: currently always `aac`.
    pub audio_codec: String,
    /// Video bits per second, within [`limits::VIDEO_BITRATE_RANGE`]; 2,000,000 by default.
    pub video_bitrate: u64,
    /// Audio bits per second, within [`limits::AUDIO_BITRATE_RANGE`]; 128,000 by default.
    pub audio_bitrate: u64,
    /// Output frames per second, [`limits::MIN_FRAME_RATE`] to [`limits::MAX_FRAME_RATE`];
    /// 30 by default.
    pub frame_rate: f64,
    /// Explicit output width in pixels, when the blueprint gives one: even, from
    /// [`limits::MIN_DIMENSION`] to [`limits::MAX_WIDTH`], and always given with `height`.
    /// None: the output takes the first clip's size.
    pub width: Option<u32>,
    /// Explicit output height in pixels, when the blueprint gives one: even, from
    /// [`limits::MIN_DIMENSION`] to [`limits::MAX_HEIGHT`], and always given with `width`.
    pub height: Option<u32>,
    /// Seconds of a crossfade's blend as the blueprint asks, 0 to
    /// [`limits::MAX_TRANSITION_SECONDS`]; 0.5 by default. Plans use each slot's fitted
    /// [`MoveSlot::transition_seconds`] instead.
    pub transition_duration: f64,
    /// Seconds of each half of a fade to black or white as the blueprint asks, 0 to
    /// [`limits::MAX_TRANSITION_SECONDS`]; 0.3 by default. Plans use each slot's fitted
    /// [`MoveSlot::transition_seconds`] instead.
    pub fade_duration: f64,
    /// Whether the song is normalised to a standard loudness (EBU R128; the built-in planner
    /// aims at -16 LUFS with its true peak under -1.5 dBTP); false by default. The host then
    /// measures the song for `plan` (contract 0.7.0).
    pub normalize_audio: bool,
    /// Whether the video carries the song at all; true by default. False leaves the video
    /// silent.
    pub add_audio_overlay: bool,
}

/// A blueprint that passed validation, normalised, with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The backend's task id: 1 to [`limits::MAX_TASK_ID_BYTES`] ASCII letters, digits, `-`
    /// or `_` (see [`is_task_id`]).
    pub task_id: String,
    /// Object key of the song (the blueprint's `audio_path`), relative to the storage root;
    /// it passed the key rules ([`key::key_problem`]), and the host still resolves it itself.
    pub audio_key: String,
    /// Distinct clip keys (the moves' `video_path`), in order of first use;
    /// [`MoveSlot::clip`] indexes this list.
    pub clip_keys: Vec<String>,
    /// Object key the finished video is written to (`output_config.output_path`): ends in
    /// `.mp4` and is neither the song nor a clip of the blueprint.
    pub output_key: String,
    /// Length of the finished video in seconds (more than 0, at most
    /// [`limits::MAX_TIMELINE_SECONDS`]): the blueprint's `total_duration`, or where the
    /// last move ends when it gives none.
    pub total_duration: f64,
    /// The timeline's slots, in order of `start`.
    pub moves: Vec<MoveSlot>,
    /// The output's settings.
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
    /// One sentence for a human operator: what the blueprint said and what the video does.
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
    /// Options for a strict check (`--strict`, `TIMELINE=strict`): every irregular timeline
    /// and `gs://` address refused, no own bucket.
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
    /// The task id, when a valid one could be read from the refused blueprint; None when
    /// `/task_id` itself is missing or malformed (or the text is not JSON).
    pub task_id: Option<String>,
    /// Every problem found; never empty. Past [`limits::MAX_REPORTED_ERRORS`] problems, the
    /// list ends with one entry that counts the rest.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Validated {
        validate(include_str!("../../../examples/backend-blueprint.json")).unwrap_or_else(|errors| panic!("{errors:?}"))
    }

    #[test]
    fn every_transition_name_reads_as_its_own_variant() {
        let variants = [Transition::Cut, Transition::Crossfade, Transition::FadeBlack, Transition::FadeWhite];
        for (name, variant) in Transition::NAMES.iter().zip(variants) {
            assert_eq!(Transition::from_name(name), Some(variant), "{name}");
        }
        for other in ["", "Cut", "fade", "fade-black", "dissolve"] {
            assert_eq!(Transition::from_name(other), None, "{other:?}");
        }
    }

    /// A transition lasts what the output asks for its kind: a crossfade its
    /// `transition_duration`, a fade its `fade_duration`, a cut nothing.
    #[test]
    fn each_transition_asks_for_its_own_duration() {
        let mut output = example().output;
        (output.transition_duration, output.fade_duration) = (0.5, 0.3);
        assert_eq!(Transition::Cut.asked_seconds(&output), 0.0);
        assert_eq!(Transition::Crossfade.asked_seconds(&output), 0.5);
        assert_eq!(Transition::FadeBlack.asked_seconds(&output), 0.3);
        assert_eq!(Transition::FadeWhite.asked_seconds(&output), 0.3);
    }

    /// The blueprint's moves a timeline shows: its slots' distinct origins, however many
    /// slots show each.
    #[test]
    fn the_moves_shown_are_the_distinct_origins() {
        let mut validated = example();
        assert_eq!(validated.moves_shown(), 22);
        let first = validated.moves[0].clone();
        validated.moves.insert(1, first);
        validated.moves[5].origin = 9;
        assert_eq!((validated.moves.len(), validated.moves_shown()), (23, 21), "a repeat and a duplicated origin");
        validated.moves.clear();
        assert_eq!(validated.moves_shown(), 0);
    }

    /// The limits are the values their documentation gives.
    #[test]
    fn the_limits_are_what_they_say() {
        assert_eq!(limits::MAX_TIMELINE_SECONDS, 10_800.0, "three hours");
        assert_eq!(limits::MAX_KEPT_BYTES, 65_536, "64 KiB");
        assert_eq!(limits::MAX_BLUEPRINT_BYTES, 1_048_576, "1 MiB");
    }
}
