//! Exit codes: the contract with whoever launches the job (documented in README).

pub const OK: u8 = 0;
/// Bad usage or configuration, or an I/O failure before any work.
pub const USAGE: u8 = 1;
/// The blueprint is invalid.
pub const INVALID_BLUEPRINT: u8 = 2;
/// The guest hit a sandbox limit or returned something the host refuses (policy).
pub const SANDBOX: u8 = 3;
/// An input is not usable media, or the blueprint asks for footage the media lacks.
pub const MEDIA: u8 = 4;
/// FFmpeg failed or timed out, the memory watchdog stopped it, its output did not conform
/// (frames or length not what the plan promised), or the job's deadline passed.
pub const FFMPEG: u8 = 5;
/// Reading inputs, writing the result or the work folder failed.
pub const STORAGE: u8 = 6;
/// The work is done but its final status could not be written to the database.
pub const STATUS_UNRECORDED: u8 = 7;
/// Stopped by SIGTERM or SIGINT (the status says `failed`, "cancelled: ...").
pub const CANCELLED: u8 = 8;

/// Failures that an attempt of the same task would only repeat: an invalid blueprint, a
/// guest or policy refusal, media that cannot serve the blueprint. Storage, FFmpeg (a
/// limit may be transient), the database and signals are retried.
pub const DETERMINISTIC: [u8; 3] = [INVALID_BLUEPRINT, SANDBOX, MEDIA];
