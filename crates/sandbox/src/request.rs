//! The host's own data, lowered into the contract's types for a `plan` call.

use br_blueprint::{Transition, Validated};
use br_plan::{MediaFacts, PlanRequest};

use crate::wit;

/// What the host's imports answer about the inputs of one `plan` call.
#[derive(Debug, Clone, Default)]
pub struct Given {
    /// Per input, whether it is a prepared clip (`host.prepared`).
    pub prepared: Vec<Option<wit::PreparedClip>>,
    /// Per input, its measured loudness (`host.loudness`): only the song's, if any.
    pub loudness: Vec<Option<wit::MeasuredLoudness>>,
    /// Per prepared input, where its GOPs start (`host.keyframes`).
    pub keyframes: Vec<Option<wit::KeyframeGrid>>,
}

pub fn given_to_wit(request: &PlanRequest) -> Given {
    let song_loudness = request.song_loudness.map(|measured| wit::MeasuredLoudness {
        integrated: measured.integrated,
        range: measured.range,
        true_peak: measured.true_peak,
        seconds: measured.seconds,
    });
    let loudness = (0..request.inputs.len()).map(|input| if input == 0 { song_loudness } else { None }).collect();
    let keyframes =
        (0..request.inputs.len())
            .map(|input| {
                request.prepared.get(input).cloned().flatten().map(|clip| wit::KeyframeGrid {
                    first_gop_frames: clip.first_gop_frames,
                    gop_frames: clip.gop_frames,
                })
            })
            .collect();
    Given { prepared: prepared_to_wit(request), loudness, keyframes }
}

fn prepared_to_wit(request: &PlanRequest) -> Vec<Option<wit::PreparedClip>> {
    (0..request.inputs.len())
        .map(|input| {
            request.prepared.get(input).cloned().flatten().map(|clip| wit::PreparedClip {
                profile_id: clip.profile_id,
                gop_frames: clip.gop_frames,
                frames: clip.frames,
            })
        })
        .collect()
}

pub fn to_wit(request: &PlanRequest) -> wit::PlanRequest {
    wit::PlanRequest {
        validated: validated(&request.validated),
        inputs: request.inputs.iter().map(facts).collect(),
        strict: request.strict,
    }
}

fn validated(v: &Validated) -> wit::Validated {
    let o = &v.output;
    wit::Validated {
        task_id: v.task_id.clone(),
        audio_key: v.audio_key.clone(),
        clip_keys: v.clip_keys.clone(),
        output_key: v.output_key.clone(),
        total_duration: v.total_duration,
        moves: v
            .moves
            .iter()
            .map(|m| wit::MoveSlot {
                clip: m.clip,
                clip_id: m.clip_id.clone(),
                start: m.start,
                duration: m.duration,
                trim_start: m.trim_start,
                trim_end: m.trim_end,
                transition: match m.transition {
                    Transition::Cut => wit::Transition::Cut,
                    Transition::Crossfade => wit::Transition::Crossfade,
                    Transition::FadeBlack => wit::Transition::FadeBlack,
                    Transition::FadeWhite => wit::Transition::FadeWhite,
                },
                volume: m.volume,
            })
            .collect(),
        output: wit::OutputSettings {
            format: o.format.clone(),
            video_codec: o.video_codec.clone(),
            audio_codec: o.audio_codec.clone(),
            video_bitrate: o.video_bitrate,
            audio_bitrate: o.audio_bitrate,
            frame_rate: o.frame_rate,
            width: o.width,
            height: o.height,
            transition_duration: o.transition_duration,
            fade_duration: o.fade_duration,
            normalize_audio: o.normalize_audio,
            add_audio_overlay: o.add_audio_overlay,
        },
    }
}

fn facts(f: &MediaFacts) -> wit::MediaFacts {
    wit::MediaFacts {
        key: f.key.clone(),
        duration: f.duration,
        video: f.video.as_ref().map(|v| wit::VideoFacts {
            codec: v.codec.clone(),
            width: v.width,
            height: v.height,
            frame_rate: v.frame_rate,
            pixel_format: v.pixel_format.clone(),
            duration: v.duration,
        }),
        audio: f.audio.as_ref().map(|a| wit::AudioFacts {
            codec: a.codec.clone(),
            sample_rate: a.sample_rate,
            channels: a.channels,
            duration: a.duration,
        }),
    }
}

pub fn options_to_wit(options: &br_blueprint::CheckOptions) -> wit::CheckOptions {
    wit::CheckOptions {
        strict: options.strict,
        own_bucket: options.own_bucket.as_ref().map(|own| wit::OwnBucket {
            address_prefix: own.address_prefix.clone(),
            key_prefix: own.key_prefix.clone(),
        }),
    }
}

/// The fit the guest's `validate` returned (as the host checked it), handed back to its `plan`.
pub fn fit_to_wit(validated: &Validated) -> wit::TimelineFit {
    wit::TimelineFit {
        slots: validated
            .moves
            .iter()
            .map(|slot| wit::SlotFit { origin: slot.origin, transition_seconds: slot.transition_seconds })
            .collect(),
        warnings: validated
            .warnings
            .iter()
            .map(|warning| wit::PlanWarning { pointer: warning.pointer.clone(), message: warning.message.clone() })
            .collect(),
    }
}
