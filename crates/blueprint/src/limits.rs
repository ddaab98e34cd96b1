//! Size limits on what a blueprint may ask for. They bound the work and memory a
//! hostile blueprint can cause before any media is touched.

/// Bytes of blueprint text (1 MiB): a larger one is refused before it is parsed.
pub const MAX_BLUEPRINT_BYTES: usize = 1024 * 1024;
/// Most moves one blueprint may list; the backend's longest choreographies have a few
/// hundred.
pub const MAX_MOVES: usize = 2_000;
/// Longest timeline, in seconds (three hours): no move may start or end later, and
/// `total_duration` may not exceed it.
pub const MAX_TIMELINE_SECONDS: f64 = 3.0 * 3600.0;
/// JSON nesting deeper than this is refused (the real schema needs 3 levels).
pub const MAX_NESTING_DEPTH: usize = 64;
/// Longest object key, in bytes (what GCS allows).
pub const MAX_KEY_BYTES: usize = 1024;
/// Most `/`-separated path segments in one object key.
pub const MAX_KEY_SEGMENTS: usize = 32;
/// Longest `task_id`, in bytes: it is a `varchar(36)` in the backend's table.
pub const MAX_TASK_ID_BYTES: usize = 36;
/// Longest free-text field echoed into messages (`clip_id`), in bytes.
pub const MAX_LABEL_BYTES: usize = 128;
/// Problems listed in one refusal; past this many, the list ends with a single entry
/// that counts the rest.
pub const MAX_REPORTED_ERRORS: usize = 500;
/// Longest `transition_duration` or `fade_duration` a blueprint may ask for, in seconds.
pub const MAX_TRANSITION_SECONDS: f64 = 5.0;
/// Lowest output frame rate, in frames per second (inclusive).
pub const MIN_FRAME_RATE: f64 = 1.0;
/// Highest output frame rate, in frames per second (inclusive).
pub const MAX_FRAME_RATE: f64 = 120.0;
/// Smallest output width or height in pixels, when the blueprint gives a size.
pub const MIN_DIMENSION: u64 = 16;
/// Largest output width in pixels, when the blueprint gives a size.
pub const MAX_WIDTH: u64 = 3840;
/// Largest output height in pixels, when the blueprint gives a size.
pub const MAX_HEIGHT: u64 = 2160;
/// Allowed `video_bitrate`, bits per second: (lowest, highest), both inclusive.
pub const VIDEO_BITRATE_RANGE: (u64, u64) = (100_000, 50_000_000);
/// Allowed `audio_bitrate`, bits per second: (lowest, highest), both inclusive.
pub const AUDIO_BITRATE_RANGE: (u64, u64) = (32_000, 512_000);

/// What a plugin's `validate` may keep for its `plan` (`host.keep`, contract 0.9.0): room
/// for a few fields per move of the longest blueprint, and small beside the guest's memory.
pub const MAX_KEPT_BYTES: usize = 64 * 1024;
