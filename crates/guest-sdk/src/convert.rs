//! Between the contract's types and the crates' own (`br-blueprint`, `br-plan`), both ways,
//! and the built-in decisions over the contract's types.
//!
//! Shared by the SDK and by the test guest built against contract 0.4.0
//! (`tests/guests/contract-0-4`), which includes this file so that the older contract is
//! proved to work end to end with the same code. It names the bindings through `super::`,
//! the module where each crate generates them.

use super::blueprint::runner::host::{log, LogLevel};
use super::blueprint::runner::types as wit;

pub fn validate(blueprint: String) -> Result<wit::Validated, wit::Refusal> {
    match br_blueprint::validate_with_task_id(&blueprint) {
        Ok(validated) => {
            log(LogLevel::Debug, &format!("blueprint valid: {} moves", validated.moves.len()));
            Ok(validated_to_wit(validated))
        }
        Err(refusal) => {
            log(LogLevel::Info, &format!("blueprint refused: {} problems", refusal.errors.len()));
            Err(refusal_to_wit(refusal))
        }
    }
}

/// The task id goes back with the errors (contract 0.3.0), so that a job launched without
/// TASK_ID can still record the failure on its row.
pub fn refusal_to_wit(refusal: br_blueprint::Refusal) -> wit::Refusal {
    wit::Refusal { task_id: refusal.task_id, errors: refusal.errors.into_iter().map(error_to_wit).collect() }
}

pub fn plan(request: wit::PlanRequest) -> Result<wit::Plan, Vec<wit::PlanError>> {
    let request = request_from_wit(request);
    match br_plan::plan(&request) {
        Ok(plan) => {
            log(LogLevel::Debug, &format!("plan: {} steps, {} warnings", plan.steps.len(), plan.warnings.len()));
            Ok(plan_to_wit(plan))
        }
        Err(errors) => Err(plan_errors_to_wit(errors)),
    }
}

pub fn plan_errors_to_wit(errors: Vec<br_plan::PlanError>) -> Vec<wit::PlanError> {
    errors.into_iter().map(|e| wit::PlanError { pointer: e.pointer, message: e.message }).collect()
}

pub fn request_from_wit(request: wit::PlanRequest) -> br_plan::PlanRequest {
    use br_blueprint::Transition as T;
    let v = request.validated;
    let o = v.output;
    let validated = br_blueprint::Validated {
        task_id: v.task_id,
        audio_key: v.audio_key,
        clip_keys: v.clip_keys,
        output_key: v.output_key,
        total_duration: v.total_duration,
        moves: v
            .moves
            .into_iter()
            .map(|m| br_blueprint::MoveSlot {
                clip: m.clip,
                clip_id: m.clip_id,
                start: m.start,
                duration: m.duration,
                trim_start: m.trim_start,
                trim_end: m.trim_end,
                transition: match m.transition {
                    wit::Transition::Cut => T::Cut,
                    wit::Transition::Crossfade => T::Crossfade,
                    wit::Transition::FadeBlack => T::FadeBlack,
                    wit::Transition::FadeWhite => T::FadeWhite,
                },
                volume: m.volume,
                origin: 0,
                transition_seconds: 0.0,
            })
            .collect(),
        output: br_blueprint::OutputSettings {
            format: o.format,
            video_codec: o.video_codec,
            audio_codec: o.audio_codec,
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
        warnings: Vec::new(),
        kept: None,
    }
    // What the contract said before 0.8.0; a 0.8.0 guest then applies the fit it is given.
    .as_written();
    let inputs: Vec<br_plan::MediaFacts> = request
        .inputs
        .into_iter()
        .map(|f| br_plan::MediaFacts {
            key: f.key,
            duration: f.duration,
            video: f.video.map(|v| br_plan::VideoFacts {
                codec: v.codec,
                width: v.width,
                height: v.height,
                frame_rate: v.frame_rate,
                pixel_format: v.pixel_format,
                duration: v.duration,
            }),
            audio: f.audio.map(|a| br_plan::AudioFacts {
                codec: a.codec,
                sample_rate: a.sample_rate,
                channels: a.channels,
                duration: a.duration,
            }),
        })
        .collect();
    // Which clips the host staged as prepared versions (contract 0.4.0), and where their
    // GOPs start (0.10.0).
    let prepared = (0..inputs.len() as u32)
        .map(|input| {
            let clip = super::blueprint::runner::host::prepared(input)?;
            let (first_gop_frames, gop_frames) = super::keyframe_grid(input)?;
            Some(br_plan::PreparedClip {
                profile_id: clip.profile_id,
                gop_frames,
                first_gop_frames,
                frames: clip.frames,
            })
        })
        .collect();
    br_plan::PlanRequest { validated, inputs, strict: request.strict, prepared, song_loudness: None }
}

pub fn plan_to_wit(plan: br_plan::Plan) -> wit::Plan {
    let arg = |a: br_plan::Arg| match a {
        br_plan::Arg::Literal(text) => wit::Arg::Literal(text),
        br_plan::Arg::Input(n) => wit::Arg::Input(n),
        br_plan::Arg::Temp(n) => wit::Arg::Temp(n),
        br_plan::Arg::Output => wit::Arg::Output,
    };
    wit::Plan {
        temps: plan
            .temps
            .into_iter()
            .map(|t| match t {
                br_plan::TempFormat::Nut => wit::TempFormat::Nut,
                br_plan::TempFormat::Ffconcat => wit::TempFormat::Ffconcat,
            })
            .collect(),
        steps: plan
            .steps
            .into_iter()
            .map(|step| match step {
                br_plan::Step::Ffmpeg(i) => wit::Step::Ffmpeg(wit::Invocation {
                    args: i.args.into_iter().map(arg).collect(),
                    media_seconds: i.media_seconds,
                    label: i.label,
                }),
                br_plan::Step::WriteConcatList(c) => wit::Step::WriteConcatList(wit::ConcatList {
                    list: c.list,
                    parts: c
                        .parts
                        .into_iter()
                        .map(|p| wit::ConcatPart { temp: p.temp, duration: p.duration })
                        .collect(),
                }),
            })
            .collect(),
        warnings: plan
            .warnings
            .into_iter()
            .map(|w| wit::PlanWarning { pointer: w.pointer, message: w.message })
            .collect(),
    }
}

pub fn error_to_wit(error: br_blueprint::ValidationError) -> wit::ValidationError {
    use br_blueprint::ErrorCode as C;
    let code = match error.code {
        C::InvalidJson => wit::ErrorCode::InvalidJson,
        C::MissingField => wit::ErrorCode::MissingField,
        C::WrongType => wit::ErrorCode::WrongType,
        C::OutOfRange => wit::ErrorCode::OutOfRange,
        C::UnsafePath => wit::ErrorCode::UnsafePath,
        C::TooLarge => wit::ErrorCode::TooLarge,
        C::NotAllowed => wit::ErrorCode::NotAllowed,
        C::Timeline => wit::ErrorCode::Timeline,
    };
    wit::ValidationError { pointer: error.pointer, code, message: error.message }
}

pub fn validated_to_wit(v: br_blueprint::Validated) -> wit::Validated {
    use br_blueprint::Transition as T;
    let moves = v
        .moves
        .into_iter()
        .map(|m| wit::MoveSlot {
            clip: m.clip,
            clip_id: m.clip_id,
            start: m.start,
            duration: m.duration,
            trim_start: m.trim_start,
            trim_end: m.trim_end,
            transition: match m.transition {
                T::Cut => wit::Transition::Cut,
                T::Crossfade => wit::Transition::Crossfade,
                T::FadeBlack => wit::Transition::FadeBlack,
                T::FadeWhite => wit::Transition::FadeWhite,
            },
            volume: m.volume,
        })
        .collect();
    let o = v.output;
    wit::Validated {
        task_id: v.task_id,
        audio_key: v.audio_key,
        clip_keys: v.clip_keys,
        output_key: v.output_key,
        total_duration: v.total_duration,
        moves,
        output: wit::OutputSettings {
            format: o.format,
            video_codec: o.video_codec,
            audio_codec: o.audio_codec,
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
