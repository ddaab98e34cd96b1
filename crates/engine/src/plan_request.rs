//! The plan request file: what `run --save-plan-request` and `plan --save-plan-request`
//! write (the exact request a job handed to the guest's `plan`), and what `plugin call plan`
//! reads to replay it. The file is a typed record of its own rather than the internal
//! types: its shape is a contract with plugin authors (who edit such files), so it only
//! changes with its `format`, whatever the host's types become.

use std::path::{Path, PathBuf};

use crate::files::SmallFileError;

use br_blueprint::limits::{MAX_FRAME_RATE, MAX_TIMELINE_SECONDS, MIN_FRAME_RATE};
use br_blueprint::{MoveSlot, OutputSettings, Transition, Validated, Warning};
use br_plan::{Loudness, MediaFacts, PlanRequest, PreparedClip};
use serde::{Deserialize, Serialize};

/// The `format` of the files this host writes and reads.
pub const FORMAT: &str = "blueprint-runner/plan-request/1";

/// A request file is refused past this size: 2,000 moves and their clips' facts take a
/// few hundred KB.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// One plan request, as the guest's `plan` is given it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequestFile {
    /// [`FORMAT`]: a file of another format is refused rather than misread.
    pub format: String,
    /// The validated timeline, with the fit the guest's `validate` made (each slot's
    /// `origin` and `transition_seconds`, and `warnings`); a guest of contract 0.8.0 is
    /// given the fit with it, older ones the timeline alone.
    pub validated: TimelineRecord,
    /// The media facts of each input: the song first, then each distinct clip in the
    /// order of `validated.clip_keys` (or its prepared version).
    pub inputs: Vec<MediaFacts>,
    /// Per input, how it was prepared when it is a prepared clip (`host.prepared`); empty
    /// or all null when none is.
    #[serde(default)]
    pub prepared: Vec<Option<PreparedClipRecord>>,
    /// The song's measured loudness (`host.loudness`), when the host measured it.
    #[serde(default)]
    pub song_loudness: Option<Loudness>,
    /// Plan warnings fail the job (`--timeline strict`).
    #[serde(default)]
    pub strict: bool,
}

/// [`Validated`] as the file spells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineRecord {
    pub task_id: String,
    pub audio_key: String,
    pub clip_keys: Vec<String>,
    pub output_key: String,
    pub total_duration: f64,
    pub moves: Vec<SlotRecord>,
    pub output: OutputRecord,
    #[serde(default)]
    pub warnings: Vec<NoteRecord>,
    /// What the plugin's `validate` kept for its `plan` (contract 0.9.0), as it kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
}

/// [`MoveSlot`] as the file spells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotRecord {
    /// Index into `clip_keys`.
    pub clip: u32,
    pub clip_id: String,
    pub start: f64,
    pub duration: f64,
    pub trim_start: f64,
    pub trim_end: f64,
    pub transition: TransitionName,
    pub volume: f64,
    /// The blueprint's move this slot shows (`/moves/{origin}`).
    pub origin: u32,
    /// Seconds of the transition into this slot, as fitted.
    pub transition_seconds: f64,
}

/// A transition by the name blueprints give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionName {
    Cut,
    Crossfade,
    FadeBlack,
    FadeWhite,
}

/// [`OutputSettings`] as the file spells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRecord {
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

/// A warning: a JSON pointer into the blueprint and a sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteRecord {
    pub pointer: String,
    pub message: String,
}

/// [`PreparedClip`] as the file spells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreparedClipRecord {
    pub profile_id: String,
    pub gop_frames: u32,
    /// Absent in files written before recipe 4: the first GOP is as long as the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_gop_frames: Option<u32>,
    pub frames: u64,
}

impl From<Transition> for TransitionName {
    fn from(transition: Transition) -> TransitionName {
        match transition {
            Transition::Cut => TransitionName::Cut,
            Transition::Crossfade => TransitionName::Crossfade,
            Transition::FadeBlack => TransitionName::FadeBlack,
            Transition::FadeWhite => TransitionName::FadeWhite,
        }
    }
}

impl From<TransitionName> for Transition {
    fn from(name: TransitionName) -> Transition {
        match name {
            TransitionName::Cut => Transition::Cut,
            TransitionName::Crossfade => Transition::Crossfade,
            TransitionName::FadeBlack => Transition::FadeBlack,
            TransitionName::FadeWhite => Transition::FadeWhite,
        }
    }
}

impl TimelineRecord {
    pub fn of(validated: &Validated) -> TimelineRecord {
        let output = &validated.output;
        TimelineRecord {
            task_id: validated.task_id.clone(),
            audio_key: validated.audio_key.clone(),
            clip_keys: validated.clip_keys.clone(),
            output_key: validated.output_key.clone(),
            total_duration: validated.total_duration,
            moves: validated
                .moves
                .iter()
                .map(|slot| SlotRecord {
                    clip: slot.clip,
                    clip_id: slot.clip_id.clone(),
                    start: slot.start,
                    duration: slot.duration,
                    trim_start: slot.trim_start,
                    trim_end: slot.trim_end,
                    transition: slot.transition.into(),
                    volume: slot.volume,
                    origin: slot.origin,
                    transition_seconds: slot.transition_seconds,
                })
                .collect(),
            output: OutputRecord {
                format: output.format.clone(),
                video_codec: output.video_codec.clone(),
                audio_codec: output.audio_codec.clone(),
                video_bitrate: output.video_bitrate,
                audio_bitrate: output.audio_bitrate,
                frame_rate: output.frame_rate,
                width: output.width,
                height: output.height,
                transition_duration: output.transition_duration,
                fade_duration: output.fade_duration,
                normalize_audio: output.normalize_audio,
                add_audio_overlay: output.add_audio_overlay,
            },
            warnings: validated
                .warnings
                .iter()
                .map(|w| NoteRecord { pointer: w.pointer.clone(), message: w.message.clone() })
                .collect(),
            kept: validated.kept.clone(),
        }
    }

    fn into_validated(self) -> Validated {
        let output = self.output;
        Validated {
            task_id: self.task_id,
            audio_key: self.audio_key,
            clip_keys: self.clip_keys,
            output_key: self.output_key,
            total_duration: self.total_duration,
            moves: self
                .moves
                .into_iter()
                .map(|slot| MoveSlot {
                    clip: slot.clip,
                    clip_id: slot.clip_id,
                    start: slot.start,
                    duration: slot.duration,
                    trim_start: slot.trim_start,
                    trim_end: slot.trim_end,
                    transition: slot.transition.into(),
                    volume: slot.volume,
                    origin: slot.origin,
                    transition_seconds: slot.transition_seconds,
                })
                .collect(),
            output: OutputSettings {
                format: output.format,
                video_codec: output.video_codec,
                audio_codec: output.audio_codec,
                video_bitrate: output.video_bitrate,
                audio_bitrate: output.audio_bitrate,
                frame_rate: output.frame_rate,
                width: output.width,
                height: output.height,
                transition_duration: output.transition_duration,
                fade_duration: output.fade_duration,
                normalize_audio: output.normalize_audio,
                add_audio_overlay: output.add_audio_overlay,
            },
            warnings: self.warnings.into_iter().map(|w| Warning { pointer: w.pointer, message: w.message }).collect(),
            kept: self.kept,
        }
    }
}

impl PlanRequestFile {
    pub fn of(request: &PlanRequest) -> PlanRequestFile {
        PlanRequestFile {
            format: FORMAT.to_owned(),
            validated: TimelineRecord::of(&request.validated),
            inputs: request.inputs.clone(),
            prepared: request
                .prepared
                .iter()
                .map(|clip| {
                    clip.as_ref().map(|clip| PreparedClipRecord {
                        profile_id: clip.profile_id.clone(),
                        gop_frames: clip.gop_frames,
                        first_gop_frames: Some(clip.first_gop_frames),
                        frames: clip.frames,
                    })
                })
                .collect(),
            song_loudness: request.song_loudness,
            strict: request.strict,
        }
    }

    /// The request, once its parts agree with each other: a file edited by hand may not,
    /// and the guest is then asked something no job would ask it.
    pub fn into_request(self) -> Result<PlanRequest, Incoherent> {
        if self.format != FORMAT {
            return Err(Incoherent(format!("its format is {:?}; this host reads {FORMAT:?}", self.format)));
        }
        if let Some(problem) = coherence_problem(&self) {
            return Err(Incoherent(problem));
        }
        let prepared = self
            .prepared
            .into_iter()
            .map(|clip| {
                clip.map(|clip| PreparedClip {
                    profile_id: clip.profile_id,
                    gop_frames: clip.gop_frames,
                    first_gop_frames: clip.first_gop_frames.unwrap_or(clip.gop_frames),
                    frames: clip.frames,
                })
            })
            .collect();
        Ok(PlanRequest {
            validated: self.validated.into_validated(),
            inputs: self.inputs,
            strict: self.strict,
            prepared,
            song_loudness: self.song_loudness,
        })
    }
}

/// What makes the file's parts disagree, if anything does.
fn coherence_problem(file: &PlanRequestFile) -> Option<String> {
    let timeline = &file.validated;
    let inputs = 1 + timeline.clip_keys.len();
    if file.inputs.len() != inputs {
        return Some(format!(
            "it has {} inputs; its timeline has {inputs} (the song, then each of its {} clips)",
            file.inputs.len(),
            timeline.clip_keys.len()
        ));
    }
    if !file.prepared.is_empty() && file.prepared.len() != inputs {
        return Some(format!(
            "`prepared` has {} entries; there are {inputs} inputs (or none, when no clip is prepared)",
            file.prepared.len()
        ));
    }
    if timeline.moves.is_empty() {
        return Some("its timeline has no moves".into());
    }
    if let Some((index, slot)) =
        timeline.moves.iter().enumerate().find(|(_, slot)| slot.clip as usize >= timeline.clip_keys.len())
    {
        return Some(format!(
            "move {index} shows clip {}; the timeline has {} clips",
            slot.clip,
            timeline.clip_keys.len()
        ));
    }
    let total = timeline.total_duration;
    if !(total > 0.0 && total <= MAX_TIMELINE_SECONDS) {
        return Some(format!("its total_duration is {total}; it must be above 0 and at most {MAX_TIMELINE_SECONDS} s"));
    }
    let rate = timeline.output.frame_rate;
    if !(MIN_FRAME_RATE..=MAX_FRAME_RATE).contains(&rate) {
        return Some(format!("its frame_rate is {rate}; it must be from {MIN_FRAME_RATE} to {MAX_FRAME_RATE}"));
    }
    let kept = timeline.kept.as_ref().map_or(0, String::len);
    if kept > br_blueprint::limits::MAX_KEPT_BYTES {
        return Some(format!("it keeps {kept} bytes for the plugin; at most {}", br_blueprint::limits::MAX_KEPT_BYTES));
    }
    None
}

/// A plan request whose parts disagree with each other, or of another format: what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Incoherent(pub String);

/// Why a plan request file could not be written or read; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PlanRequestError {
    #[error("cannot write the plan request: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("cannot write the plan request to {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: SmallFileError },
    #[error("{}: not a plan request file ({FORMAT}): {source}", path.display())]
    NotAPlanRequest { path: PathBuf, source: serde_json::Error },
    #[error("{}: {source}", path.display())]
    Incoherent { path: PathBuf, source: Incoherent },
}

/// Why a media facts file could not be read (the caller names the file).
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error(transparent)]
    Read(#[from] SmallFileError),
    #[error("not a list of media facts: {0}")]
    NotFacts(#[source] serde_json::Error),
}

/// Writes `request` to `path` as pretty JSON.
pub fn write(path: &Path, request: &PlanRequest) -> Result<(), PlanRequestError> {
    let text = serde_json::to_string_pretty(&PlanRequestFile::of(request)).map_err(PlanRequestError::Encode)?;
    std::fs::write(path, text + "\n").map_err(|source| PlanRequestError::Write { path: path.to_owned(), source })
}

/// The request a file holds, or what is wrong with it (its path named).
pub fn read(path: &Path) -> Result<PlanRequest, PlanRequestError> {
    let bytes = crate::files::read_small_file(path, MAX_FILE_BYTES)
        .map_err(|source| PlanRequestError::Read { path: path.to_owned(), source })?;
    let file: PlanRequestFile = serde_json::from_slice(&bytes)
        .map_err(|source| PlanRequestError::NotAPlanRequest { path: path.to_owned(), source })?;
    file.into_request().map_err(|source| PlanRequestError::Incoherent { path: path.to_owned(), source })
}

/// Media facts from a file, at most 1 MiB: a JSON list of `plan`'s `inputs` entries.
pub fn read_facts(path: &Path) -> Result<Vec<br_plan::MediaFacts>, FactsError> {
    let bytes = crate::files::read_small_file(path, 1024 * 1024)?;
    serde_json::from_slice(&bytes).map_err(FactsError::NotFacts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend_request() -> PlanRequest {
        let example = include_str!("../../../examples/backend-blueprint.json");
        let validated = br_blueprint::validate(example).unwrap_or_else(|e| panic!("{e:?}"));
        let facts = |key: &String| MediaFacts { key: key.clone(), duration: 10.0, video: None, audio: None };
        let inputs = std::iter::once(&validated.audio_key).chain(&validated.clip_keys).map(facts).collect::<Vec<_>>();
        let mut prepared = vec![None; inputs.len()];
        prepared[2] = Some(PreparedClip {
            profile_id: "h264-1280x720-30".into(),
            gop_frames: 15,
            first_gop_frames: 15,
            frames: 240,
        });
        let song_loudness = Some(Loudness { integrated: -14.5, range: 6.0, true_peak: -1.0, seconds: 176.0 });
        PlanRequest { validated, inputs, strict: true, prepared, song_loudness }
    }

    #[test]
    fn a_request_comes_back_from_its_file_as_it_was() {
        let request = backend_request();
        let text = serde_json::to_string(&PlanRequestFile::of(&request)).unwrap();
        let file: PlanRequestFile = serde_json::from_str(&text).unwrap();
        assert_eq!(file.format, FORMAT);
        assert_eq!(file.into_request(), Ok(request));
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("request.json");
        write(&path, &backend_request()).unwrap();
        assert_eq!(read(&path).unwrap(), backend_request());
        // What a plugin's validate kept (contract 0.9.0) comes back too.
        let mut keeping = backend_request();
        keeping.validated.kept = Some(r#"{"speed": 0.5}"#.into());
        write(&path, &keeping).unwrap();
        assert_eq!(read(&path).unwrap(), keeping.clone());
        keeping.validated.kept = Some("x".repeat(br_blueprint::limits::MAX_KEPT_BYTES + 1));
        let text = serde_json::to_string(&PlanRequestFile::of(&keeping)).unwrap();
        let file: PlanRequestFile = serde_json::from_str(&text).unwrap();
        assert!(file.into_request().is_err_and(|why| why.0.contains("keeps 65537 bytes")));
    }

    #[test]
    fn a_file_of_another_format_or_whose_parts_disagree_is_refused() {
        let mut other = PlanRequestFile::of(&backend_request());
        other.format = "blueprint-runner/plan-request/2".into();
        let refused = other.into_request().unwrap_err().0;
        assert!(refused.contains("\"blueprint-runner/plan-request/2\"; this host reads"), "{refused}");

        let mut short = PlanRequestFile::of(&backend_request());
        short.inputs.pop();
        let refused = short.into_request().unwrap_err().0;
        assert_eq!(refused, "it has 20 inputs; its timeline has 21 (the song, then each of its 20 clips)");

        let mut wrong_clip = PlanRequestFile::of(&backend_request());
        wrong_clip.validated.moves[3].clip = 20;
        assert_eq!(wrong_clip.into_request().unwrap_err().0, "move 3 shows clip 20; the timeline has 20 clips");

        let mut still = PlanRequestFile::of(&backend_request());
        still.validated.output.frame_rate = 0.0;
        assert!(still.into_request().unwrap_err().0.starts_with("its frame_rate is 0"));

        let text = serde_json::to_value(PlanRequestFile::of(&backend_request())).unwrap();
        let mut typo = text.clone();
        typo["song_loudnes"] = typo["song_loudness"].clone();
        let refused = serde_json::from_value::<PlanRequestFile>(typo).unwrap_err().to_string();
        assert!(refused.contains("unknown field `song_loudnes`"), "{refused}");
    }
}
