//! The default guest: the blueprint validator of `br-blueprint`, exported through the
//! WIT contract. Built for `wasm32-wasip2`; on other targets this crate is empty.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ world: "guest", path: "../wit" });

use blueprint::runner::host::{log, LogLevel};
use blueprint::runner::types as wit;

struct DefaultGuest;

impl Guest for DefaultGuest {
    fn validate(blueprint: String) -> Result<wit::Validated, Vec<wit::ValidationError>> {
        match br_blueprint::validate(&blueprint) {
            Ok(validated) => {
                log(LogLevel::Debug, &format!("blueprint valid: {} moves", validated.moves.len()));
                Ok(to_wit(validated))
            }
            Err(errors) => {
                log(LogLevel::Info, &format!("blueprint refused: {} problems", errors.len()));
                Err(errors.into_iter().map(error_to_wit).collect())
            }
        }
    }
}

fn error_to_wit(error: br_blueprint::ValidationError) -> wit::ValidationError {
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

fn to_wit(v: br_blueprint::Validated) -> wit::Validated {
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

export!(DefaultGuest);
