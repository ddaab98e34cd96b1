//! Size limits on what a blueprint may ask for. They bound the work and memory a
//! hostile blueprint can cause before any media is touched.

/// A blueprint larger than this is refused before it is parsed.
pub const MAX_BLUEPRINT_BYTES: usize = 1024 * 1024;
/// The backend's longest choreographies have a few hundred moves.
pub const MAX_MOVES: usize = 2_000;
/// Three hours of timeline.
pub const MAX_TIMELINE_SECONDS: f64 = 3.0 * 3600.0;
/// JSON nesting deeper than this is refused (the real schema needs 3 levels).
pub const MAX_NESTING_DEPTH: usize = 64;
/// Object keys: GCS allows 1024 bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Path segments in one object key.
pub const MAX_KEY_SEGMENTS: usize = 32;
/// `task_id` is a `varchar(36)` in the backend's table.
pub const MAX_TASK_ID_BYTES: usize = 36;
/// Free-text fields echoed into messages (`clip_id`).
pub const MAX_LABEL_BYTES: usize = 128;
/// After this many problems the list ends with a single "too many errors" entry.
pub const MAX_REPORTED_ERRORS: usize = 500;
/// Longest transition or fade, in seconds.
pub const MAX_TRANSITION_SECONDS: f64 = 5.0;
/// Output frame rate range.
pub const MIN_FRAME_RATE: f64 = 1.0;
pub const MAX_FRAME_RATE: f64 = 120.0;
/// Output size range (pixels), when the blueprint gives one.
pub const MIN_DIMENSION: u64 = 16;
pub const MAX_WIDTH: u64 = 3840;
pub const MAX_HEIGHT: u64 = 2160;
/// Bitrate ranges, bits per second.
pub const VIDEO_BITRATE_RANGE: (u64, u64) = (100_000, 50_000_000);
pub const AUDIO_BITRATE_RANGE: (u64, u64) = (32_000, 512_000);

/// What a plugin's `validate` may keep for its `plan` (`host.keep`, contract 0.9.0): room
/// for a few fields per move of the longest blueprint, and small beside the guest's memory.
pub const MAX_KEPT_BYTES: usize = 64 * 1024;
