//! The plan and its inputs, mirroring the WIT `types` of contract 0.2.0.

use br_blueprint::Validated;
use serde::{Deserialize, Serialize};

/// What the host measured about one staged input file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaFacts {
    pub key: String,
    /// Container duration in seconds; 0 when unknown.
    pub duration: f64,
    pub video: Option<VideoFacts>,
    pub audio: Option<AudioFacts>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoFacts {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
    pub pixel_format: String,
    /// Stream duration in seconds; 0 when unknown.
    pub duration: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioFacts {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
    pub duration: f64,
}

/// Index 0 of `inputs` is the song; index 1 + i is `validated.clip_keys[i]` (or its
/// prepared version, which `prepared` then describes).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRequest {
    pub validated: Validated,
    pub inputs: Vec<MediaFacts>,
    pub strict: bool,
    /// Per input, when it is a prepared clip: how it was prepared. Empty means none.
    pub prepared: Vec<Option<PreparedClip>>,
    /// The song's loudness from its start to the video's end, when the host measured it
    /// (contract 0.7.0: only with `normalize_audio`).
    pub song_loudness: Option<Loudness>,
}

/// An EBU R128 measurement of audio (`ebur128` at 48 kHz stereo).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Loudness {
    /// Integrated loudness, LUFS (-70 or below: silence).
    pub integrated: f64,
    /// Loudness range, LU.
    pub range: f64,
    /// True peak, dBTP.
    pub true_peak: f64,
    /// Seconds measured.
    pub seconds: f64,
}

/// A clip input that is a prepared version (`blueprint-runner prepare`): re-encoded at
/// the job's output settings in closed GOPs of `gop_frames` without B-frames.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedClip {
    pub profile_id: String,
    pub gop_frames: u32,
    pub frames: u64,
}

/// Input index of the song in [`PlanRequest::inputs`].
pub const SONG_INPUT: u32 = 0;

/// Input index of clip `clip` (an index into `clip_keys`).
pub fn clip_input(clip: u32) -> u32 {
    clip + 1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Arg {
    Literal(String),
    Input(u32),
    Temp(u32),
    Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TempFormat {
    Nut,
    Ffconcat,
}

impl TempFormat {
    pub fn extension(self) -> &'static str {
        match self {
            TempFormat::Nut => "nut",
            TempFormat::Ffconcat => "ffconcat",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    pub args: Vec<Arg>,
    pub media_seconds: f64,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcatPart {
    pub temp: u32,
    pub duration: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcatList {
    pub list: u32,
    pub parts: Vec<ConcatPart>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Step {
    Ffmpeg(Invocation),
    WriteConcatList(ConcatList),
}

/// Used for both warnings and errors: a JSON pointer into the blueprint and a sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanNote {
    pub pointer: String,
    pub message: String,
}

pub type PlanWarning = PlanNote;
pub type PlanError = PlanNote;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub temps: Vec<TempFormat>,
    pub steps: Vec<Step>,
    pub warnings: Vec<PlanWarning>,
}

impl Arg {
    pub fn lit(text: impl Into<String>) -> Arg {
        Arg::Literal(text.into())
    }
}
