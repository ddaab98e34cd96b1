//! The plan and its inputs, mirroring the WIT `types` of contract 0.2.0.

use br_blueprint::Validated;
use serde::{Deserialize, Serialize};

/// What the host measured (with ffprobe) about one staged input file (mirrors the WIT
/// `media-facts`). A guest cannot open media itself; these facts are all it knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaFacts {
    /// The storage key the file came from (a prepared clip's own key), for messages.
    pub key: String,
    /// Container duration in seconds; 0 when the container does not say.
    pub duration: f64,
    /// The file's first video stream, when it has one with a size that is not an attached
    /// picture (cover art).
    pub video: Option<VideoFacts>,
    /// The first audio stream, when the file has one.
    pub audio: Option<AudioFacts>,
}

/// What ffprobe reports about an input's video stream (mirrors the WIT `video-facts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoFacts {
    /// Decoder name as ffprobe reports it, e.g. `h264`.
    pub codec: String,
    /// Width in pixels as stored, before any non-square pixel aspect ratio; more than 0.
    pub width: u32,
    /// Height in pixels as stored; more than 0.
    pub height: u32,
    /// Average frame rate, frames per second; 0 when ffprobe gives none.
    pub frame_rate: f64,
    /// Pixel format as ffprobe names it, e.g. `yuv420p`.
    pub pixel_format: String,
    /// Length of the video stream in seconds; 0 when unknown (then use
    /// [`MediaFacts::duration`]).
    pub duration: f64,
}

/// What ffprobe reports about an input's audio stream (mirrors the WIT `audio-facts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioFacts {
    /// Decoder name as ffprobe reports it, e.g. `aac` or `mp3`.
    pub codec: String,
    /// Samples per second, e.g. 44100; 0 when unknown.
    pub sample_rate: u32,
    /// Number of channels (1 mono, 2 stereo...); 0 when unknown.
    pub channels: u32,
    /// Length of the audio stream in seconds; 0 when unknown.
    pub duration: f64,
}

/// Everything a planner gets: the WIT `plan-request`, and what the host tells a guest
/// during `plan` (`host.prepared`, `host.loudness`). Index 0 of `inputs` is the song;
/// index 1 + i is `validated.clip_keys[i]` (or its prepared version, which `prepared`
/// then describes).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRequest {
    /// The blueprint `validate` accepted, with its fit (each slot's `origin` and
    /// `transition_seconds`, and the fit's warnings) and what `validate` kept.
    pub validated: Validated,
    /// The files the plan may read, in the order above: [`Arg::Input`]`(n)` refers to
    /// `inputs[n]` ([`SONG_INPUT`], [`clip_input`]).
    pub inputs: Vec<MediaFacts>,
    /// When true, every warning is an error (`--strict`).
    pub strict: bool,
    /// Per input, when it is a prepared clip: how it was prepared. Empty means none.
    pub prepared: Vec<Option<PreparedClip>>,
    /// The song's loudness from its start to the video's end, when the host measured it
    /// (contract 0.7.0: only with `normalize_audio`).
    pub song_loudness: Option<Loudness>,
}

/// An EBU R128 measurement of audio (FFmpeg's `ebur128` at 48 kHz stereo) over the part
/// of the input the video uses; mirrors the WIT `measured-loudness` (contract 0.7.0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Loudness {
    /// Integrated (gated) loudness, LUFS (-70 or below: silence).
    pub integrated: f64,
    /// Loudness range, LU.
    pub range: f64,
    /// True peak of the loudest channel, dBTP (4x oversampled).
    pub true_peak: f64,
    /// Seconds of audio measured.
    pub seconds: f64,
}

/// A clip input that is a prepared version (`blueprint-runner prepare`): re-encoded at
/// the job's output settings in closed GOPs of `gop_frames` without B-frames.
///
/// Its frames are the clip's from its start, brought to the output's grid as a plan's own
/// normalising chain would (frame rate, size with letterboxing, square pixels, `yuv420p`).
/// Mirrors the WIT `prepared-clip` (contract 0.4.0).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedClip {
    /// The settings it was prepared with ([`prepare::Profile::id`](crate::prepare::Profile::id),
    /// e.g. `h264-1280x720-30fps-2000k-g15-r3`): copied GOPs only join parts encoded with
    /// the same settings.
    pub profile_id: String,
    /// Frames in each GOP after the first: every GOP starts with a keyframe that depends on
    /// nothing before it, and no frame is a B-frame, so frame 0, `first_gop_frames` and
    /// every `gop_frames` after it are places to cut and copy from.
    pub gop_frames: u32,
    /// Frames in the first GOP (the WIT `keyframe-grid`, contract 0.10.0; `gop_frames` for
    /// clips given to older guests).
    pub first_gop_frames: u32,
    /// Frames in the file.
    pub frames: u64,
}

impl PreparedClip {
    /// The first keyframe at or after `frame`; None on a grid with an empty GOP.
    pub fn keyframe_from(&self, frame: u64) -> Option<u64> {
        let (first, gop) = (u64::from(self.first_gop_frames), u64::from(self.gop_frames));
        if first == 0 || gop == 0 {
            return None;
        }
        Some(match frame {
            0 => 0,
            _ if frame <= first => first,
            _ => first + (frame - first).div_ceil(gop) * gop,
        })
    }

    /// Whether `frame` starts a GOP.
    pub fn is_keyframe(&self, frame: u64) -> bool {
        self.keyframe_from(frame) == Some(frame)
    }
}

/// Input index of the song in [`PlanRequest::inputs`].
pub const SONG_INPUT: u32 = 0;

/// Input index of clip `clip` (an index into `clip_keys`).
pub fn clip_input(clip: u32) -> u32 {
    clip + 1
}

/// One argument of an FFmpeg invocation (mirrors the WIT `arg`). A plan names no file:
/// the host puts in the path of each input, temporary and the output from its own table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Arg {
    /// An option name or value, checked against the host's allow-list.
    Literal(String),
    /// A staged input file, by index into [`PlanRequest::inputs`]; only after `-i`.
    Input(u32),
    /// A temporary file, by index into [`Plan::temps`]; written where it is an output, read
    /// after `-i` once an earlier step has written it.
    Temp(u32),
    /// The job's single final output file.
    Output,
}

/// The kinds of temporary file a plan may use (mirrors the WIT `temp-format`). The host
/// picks the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TempFormat {
    /// A video stream in NUT (exact frame timestamps; used for segments).
    Nut,
    /// A concat list (`ffconcat`), written by the host from a [`Step::WriteConcatList`].
    Ffconcat,
}

impl TempFormat {
    /// The file name extension the host gives such a temporary, without the dot: `nut` or
    /// `ffconcat`.
    pub fn extension(self) -> &'static str {
        match self {
            TempFormat::Nut => "nut",
            TempFormat::Ffconcat => "ffconcat",
        }
    }
}

/// One FFmpeg run (mirrors the WIT `invocation`). The host adds `-nostdin -hide_banner
/// -nostats -loglevel error -y -progress pipe:1` itself and runs the binary without a shell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    /// The arguments after the ones the host adds, in order.
    pub args: Vec<Arg>,
    /// Seconds of media this step writes: weights the step in the job's progress and sets
    /// its time limit.
    pub media_seconds: f64,
    /// Short label for logs and progress, e.g. `segment 3`.
    pub label: String,
}

/// One entry of a concat list (mirrors the WIT `concat-part`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcatPart {
    /// A temporary written by an earlier step, by index into [`Plan::temps`].
    pub temp: u32,
    /// Its exact length in seconds (written as the list's `duration` line).
    pub duration: f64,
}

/// Asks the host to write a concat list; the host writes the file names (mirrors the WIT
/// `concat-list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcatList {
    /// The [`TempFormat::Ffconcat`] temporary to write, by index into [`Plan::temps`].
    pub list: u32,
    /// The entries, in the order they are joined.
    pub parts: Vec<ConcatPart>,
}

/// One step of a plan (mirrors the WIT `step`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Step {
    /// Run FFmpeg once.
    Ffmpeg(Invocation),
    /// Have the host write a concat list for a later step to read.
    WriteConcatList(ConcatList),
}

/// Used for both warnings and errors: a JSON pointer into the blueprint and a sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanNote {
    /// RFC 6901 JSON pointer into the blueprint, e.g. `/moves/7`; the empty string means
    /// the whole job.
    pub pointer: String,
    /// One sentence for a human operator.
    pub message: String,
}

/// Something the job will do that the blueprint may not expect (a clip shorter than its
/// slot...). Reported with the result; an error under [`PlanRequest::strict`]. Mirrors
/// the WIT `plan-warning`.
pub type PlanWarning = PlanNote;
/// Why no plan can be made (a `trim_start` beyond the clip's end, a clip with no video
/// stream, a warning under [`PlanRequest::strict`]...). Mirrors the WIT `plan-error`.
pub type PlanError = PlanNote;

/// FFmpeg steps that make the video a validated blueprint describes (mirrors the WIT
/// `plan`). A plan is data: the host checks every step against its policy, then fills in
/// the paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The temporary files the steps use; [`Arg::Temp`]`(n)` and [`ConcatPart::temp`] refer
    /// to `temps[n]`.
    pub temps: Vec<TempFormat>,
    /// Run in order; a failing step stops the job.
    pub steps: Vec<Step>,
    /// Reported with the result.
    pub warnings: Vec<PlanWarning>,
}

impl Arg {
    /// A [`Arg::Literal`] of `text`.
    pub fn lit(text: impl Into<String>) -> Arg {
        Arg::Literal(text.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keyframes at 0, at the first GOP's end and every GOP after it; a grid with an empty
    /// GOP has none to copy from.
    #[test]
    fn a_prepared_clip_s_keyframes_are_on_its_grid() {
        let clip = PreparedClip { profile_id: String::new(), gop_frames: 15, first_gop_frames: 8, frames: 360 };
        let from: Vec<Option<u64>> = [0, 1, 7, 8, 9, 23, 24, 233, 234].map(|frame| clip.keyframe_from(frame)).to_vec();
        assert_eq!(from, [0, 8, 8, 8, 23, 23, 38, 233, 248].map(Some));
        assert!(clip.is_keyframe(0) && clip.is_keyframe(8) && clip.is_keyframe(38));
        assert!(!clip.is_keyframe(15) && !clip.is_keyframe(30) && !clip.is_keyframe(1));
        let even = PreparedClip { first_gop_frames: 15, ..clip.clone() };
        assert_eq!([1, 15, 16, 30].map(|frame| even.keyframe_from(frame)), [15, 15, 30, 30].map(Some));
        assert_eq!(PreparedClip { gop_frames: 0, ..clip.clone() }.keyframe_from(3), None);
        assert_eq!(PreparedClip { first_gop_frames: 0, ..clip }.keyframe_from(3), None);
    }
}
