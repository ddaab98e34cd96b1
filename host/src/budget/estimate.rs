//! Refuses, before any work, a blueprint whose frames cannot fit the budget: one
//! FFmpeg step of the built-in planner (decode, normalise, cross-fade, encode) needs
//! memory in proportion to the frame's size, whatever the video's length.
//!
//! Calibrated on the planner's segment steps (x264 veryfast, one decoder thread, the
//! child's data limit, which is what the host enforces), FFmpeg 5.1: 1280x720 with two
//! encoder threads passed at 250 MiB and failed at 235; 1920x1080 with one encoder
//! thread (the planner's choice above 720p) passed at 380 and failed at 300, with two
//! at 420. So about 122 MiB plus 139 MiB per megapixel (two threads) or 120 (one),
//! and a tenth more for other sources and graphs.

use br_blueprint::{ErrorCode, Validated, ValidationError};
use br_plan::MediaFacts;

use super::{JobBudget, MIB};

const BASE_MIB: f64 = 122.0;
const MIB_PER_MEGAPIXEL_TWO_THREADS: f64 = 139.0;
const MIB_PER_MEGAPIXEL_ONE_THREAD: f64 = 120.0;
/// The planner encodes frames larger than this with one thread.
const TWO_THREAD_PIXELS: f64 = 1280.0 * 720.0;
const HEADROOM: f64 = 1.1;

/// Bytes one FFmpeg step of the built-in planner needs for frames of `width`x`height`.
pub fn step_bytes(width: u32, height: u32) -> u64 {
    let pixels = f64::from(width) * f64::from(height);
    let per_megapixel = if pixels > TWO_THREAD_PIXELS { MIB_PER_MEGAPIXEL_ONE_THREAD } else { MIB_PER_MEGAPIXEL_TWO_THREADS };
    ((BASE_MIB + per_megapixel * pixels / 1e6) * HEADROOM * MIB as f64) as u64
}

/// The output's frame, when the blueprint alone decides it (`width` and `height`
/// both given): checked before anything is fetched.
pub fn check_blueprint(validated: &Validated, budget: &JobBudget) -> Result<(), ValidationError> {
    if validated.output.width.is_none() || validated.output.height.is_none() {
        return Ok(());
    }
    let (width, height) = br_plan::output_frame(validated, &[]);
    check(width, height, "/output_config/width", budget)
}

/// The output's frame once the clips are probed (it follows the first move's clip when
/// the blueprint does not give both sides).
pub fn check_with_media(validated: &Validated, inputs: &[MediaFacts], budget: &JobBudget) -> Result<(), ValidationError> {
    let (width, height) = br_plan::output_frame(validated, inputs);
    let pointer = match (validated.output.width, validated.output.height) {
        (Some(_), _) => "/output_config/width",
        (None, Some(_)) => "/output_config/height",
        (None, None) => "/moves/0/video_path",
    };
    check(width, height, pointer, budget)
}

fn check(width: u32, height: u32, pointer: &str, budget: &JobBudget) -> Result<(), ValidationError> {
    let needed = step_bytes(width, height);
    if needed <= budget.shared {
        return Ok(());
    }
    Err(ValidationError {
        pointer: pointer.to_owned(),
        code: ErrorCode::OutOfRange,
        message: format!(
            "a {width}x{height} video needs about {} MiB for each FFmpeg step, but the job's memory budget of {} MiB \
             leaves {} MiB for FFmpeg and the work folder (JOB_MEMORY_MIB); make the frame smaller or the budget larger",
            needed / MIB,
            budget.total / MIB,
            budget.shared / MIB
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_follows_the_measurements() {
        let mib = |w, h| step_bytes(w, h) / MIB;
        assert!((250..=300).contains(&mib(1280, 720)), "{}", mib(1280, 720));
        assert!((380..=430).contains(&mib(1920, 1080)), "{}", mib(1920, 1080));
        assert!(mib(3840, 2160) > 1000);
        let default = JobBudget::new(512 * MIB, 64 * MIB).unwrap();
        assert!(check(1920, 1080, "/output_config/width", &default).is_ok());
        let error = check(3840, 2160, "/output_config/width", &default).unwrap_err();
        assert_eq!(error.pointer, "/output_config/width");
        assert!(error.message.contains("3840x2160") && error.message.contains("448 MiB"), "{}", error.message);
        let small = JobBudget::new(256 * MIB, 64 * MIB).unwrap();
        assert!(check(1280, 720, "/moves/0/video_path", &small).is_err());
        assert!(check(640, 360, "/moves/0/video_path", &small).is_ok());
    }
}
