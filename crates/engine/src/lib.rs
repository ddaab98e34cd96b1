//! The engine of one job: fetch the blueprint's media from storage, probe it, hand the
//! facts to the sandboxed guest for a plan, check the plan, schedule and run its FFmpeg
//! steps within the memory budget, and store the result. Storage and FFmpeg stay behind
//! traits and runners the caller builds ([`storage::Storage`], [`ffmpeg::Runner`]); the
//! caller (the `blueprint-runner` binary) resolves flags and environment into them. This
//! crate reads no environment variable and names none.

pub mod audio_cache;
pub mod budget;
pub mod cancel;
pub mod exit;
pub mod ffmpeg;
pub mod files;
pub mod formats;
pub mod job;
pub mod logging;
pub mod media;
pub mod plan_request;
pub mod prepare;
pub mod schedule;
pub mod storage;
pub mod work;
