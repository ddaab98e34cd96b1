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
    let per_megapixel =
        if pixels > TWO_THREAD_PIXELS { MIB_PER_MEGAPIXEL_ONE_THREAD } else { MIB_PER_MEGAPIXEL_TWO_THREADS };
    ((BASE_MIB + per_megapixel * pixels / 1e6) * HEADROOM * MIB as f64) as u64
}

/// A step whose clips are all prepared clips of the job's profile (a prepared plan's
/// bridges): their decoders hold one reference frame and no B-frames, and the frames
/// they encode are few, so such a step needs less than a segment of original clips.
/// Measured at 1280x720 on the benchmark's bridges of three inputs (22 and 75 frames,
/// x264 veryfast, the host's flags, 2 MiB stacks), the test being that every frame is
/// written, with Debian's FFmpeg 5.1 (the image's needs 28 to 32 MiB less): 188 MiB with
/// one encoder thread, 216 with two; without x264's look-ahead (`-rc-lookahead 0`, the
/// built-in planner's bridges) 140 and 164. (Exit 0 alone proves little: under a tight
/// limit `loudnorm` was seen to end early and exit 0.) Larger frames keep [`step_bytes`].
const PREPARED_STEP_720P_MIB: [[f64; 2]; 2] = [
    // [one thread, two threads] with look-ahead, then without.
    [188.0, 216.0],
    [140.0, 164.0],
];

/// How a bridge's encoder is set, as the step's arguments say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BridgeEncoder {
    pub one_thread: bool,
    /// x264's look-ahead (on unless the step sets `-rc-lookahead 0`).
    pub lookahead: bool,
}

/// Bytes a step of `width`x`height` frames needs when it reads only prepared clips: the
/// 720p measurement for frames up to 720p (smaller frames need no more; two such steps
/// are run together on it, so it is not extrapolated), [`step_bytes`] above.
pub fn prepared_step_bytes(width: u32, height: u32, encoder: BridgeEncoder) -> u64 {
    if f64::from(width) * f64::from(height) > TWO_THREAD_PIXELS {
        return step_bytes(width, height);
    }
    let mib = PREPARED_STEP_720P_MIB[usize::from(!encoder.lookahead)][usize::from(!encoder.one_thread)];
    (mib * HEADROOM * MIB as f64) as u64
}

/// The join that adds the song: with `loudnorm` it passed at a data limit of 200 MiB
/// (measured, 0.1 s frames), without it FFmpeg copies video and encodes AAC.
const JOIN_WITH_LOUDNORM_MIB: f64 = 220.0;
const JOIN_PLAIN_MIB: f64 = 120.0;
/// Inputs staged around a step: two clips (3-4 MB each) and a song (a 10-minute MP3 at
/// 192 kb/s is 14 MB).
const STAGED_INPUTS_MIB: f64 = 24.0;

/// The output's frame, when the blueprint alone decides it (`width` and `height`
/// both given), and the length that frame allows: checked before anything is fetched.
pub fn check_blueprint(validated: &Validated, budget: &JobBudget) -> Result<(), ValidationError> {
    if validated.output.width.is_none() || validated.output.height.is_none() {
        return Ok(());
    }
    let (width, height) = br_plan::output_frame(validated, &[]);
    check(width, height, "/output_config/width", budget)?;
    check_length(validated, width, height, budget)
}

/// The work folder holds every segment until the join (the video's bytes) while one
/// segment step runs, then the output (video and audio) while the join runs: both
/// grow with the video's length, so a video too long for the budget is refused before
/// minutes of work are spent on it.
fn check_length(validated: &Validated, width: u32, height: u32, budget: &JobBudget) -> Result<(), ValidationError> {
    let output = &validated.output;
    let seconds = validated.total_duration;
    let video = output.video_bitrate as f64 / 8.0 * seconds;
    let audio = if output.add_audio_overlay { output.audio_bitrate as f64 / 8.0 * seconds } else { 0.0 };
    let join = if output.normalize_audio { JOIN_WITH_LOUDNORM_MIB } else { JOIN_PLAIN_MIB } * MIB as f64;
    let staged = STAGED_INPUTS_MIB * MIB as f64;
    let segments_phase = video + staged + step_bytes(width, height) as f64;
    let join_phase = video + audio + staged + join;
    let needed = segments_phase.max(join_phase) as u64;
    if needed <= budget.shared {
        return Ok(());
    }
    Err(ValidationError {
        pointer: "/total_duration".to_owned(),
        code: ErrorCode::OutOfRange,
        message: format!(
            "a {seconds} s video at {} kb/s needs about {} MiB for its files and FFmpeg at the largest moment ({} MiB of \
             segments or output in the work folder), but the job's memory budget of {} MiB leaves {} MiB for them \
             (JOB_MEMORY_MIB); make it shorter, the bitrate lower or the budget larger",
            (output.video_bitrate + output.audio_bitrate) / 1000,
            needed / MIB,
            ((video + audio) as u64) / MIB,
            budget.total / MIB,
            budget.shared / MIB
        ),
    })
}

/// The output's frame once the clips are probed (it follows the first move's clip when
/// the blueprint does not give both sides).
pub fn check_with_media(
    validated: &Validated,
    inputs: &[MediaFacts],
    budget: &JobBudget,
) -> Result<(), ValidationError> {
    let (width, height) = br_plan::output_frame(validated, inputs);
    let pointer = match (validated.output.width, validated.output.height) {
        (Some(_), _) => "/output_config/width",
        (None, Some(_)) => "/output_config/height",
        (None, None) => "/moves/0/video_path",
    };
    check(width, height, pointer, budget)?;
    check_length(validated, width, height, budget)
}

/// What decoding a larger frame than the output's adds to a step, per megapixel more,
/// with the same headroom. Measured with one decoder thread, scaled to 720p and encoded:
/// a 4K H.264 clip 215 MiB, an 8K one 477 MiB (10.5 MiB per megapixel).
const DECODE_MIB_PER_MEGAPIXEL: f64 = 10.5;

/// Bytes a step needs that decodes `input` frames into an `output` frame.
pub fn input_step_bytes(input: (u32, u32), output: (u32, u32)) -> u64 {
    let megapixels = |(w, h): (u32, u32)| f64::from(w) * f64::from(h) / 1e6;
    let more = (megapixels(input) - megapixels(output)).max(0.0);
    step_bytes(output.0, output.1) + (more * DECODE_MIB_PER_MEGAPIXEL * HEADROOM * MIB as f64) as u64
}

/// Why a clip of `input` frames cannot be decoded into the `output` frame within the
/// budget, if it cannot: the clip is too large for this job (an 8K clip for a 720p video
/// in 512 MiB), which no retry mends.
pub fn clip_frame_problem(input: (u32, u32), output: (u32, u32), budget: &JobBudget) -> Option<String> {
    let needed = input_step_bytes(input, output);
    (needed > budget.shared).then(|| {
        format!(
            "its {}x{} frames need about {} MiB to decode into the {}x{} video, but the job's memory budget of {} MiB \
             leaves {} MiB for FFmpeg and the work folder (JOB_MEMORY_MIB)",
            input.0,
            input.1,
            needed / MIB,
            output.0,
            output.1,
            budget.total / MIB,
            budget.shared / MIB
        )
    })
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
        let bridge = |one_thread, lookahead| BridgeEncoder { one_thread, lookahead };
        let planners_bridge = prepared_step_bytes(1280, 720, bridge(true, false));
        // With the staged clips of a 22-move job (about 70 MiB) in 448: one of the
        // planner's bridges fits beside the song with loudnorm (176 MiB), and two together.
        assert!(planners_bridge + 176 * MIB + 70 * MIB <= 448 * MIB, "{}", planners_bridge / MIB);
        assert!(2 * planners_bridge + 70 * MIB <= 448 * MIB, "{}", planners_bridge / MIB);
        assert!(planners_bridge < prepared_step_bytes(1280, 720, bridge(true, true)));
        assert!(
            prepared_step_bytes(1280, 720, bridge(false, false)) < prepared_step_bytes(1280, 720, bridge(false, true))
        );
        assert!((230..=250).contains(&(prepared_step_bytes(1280, 720, bridge(false, true)) / MIB)));
        assert_eq!(prepared_step_bytes(640, 360, bridge(true, false)), planners_bridge);
        assert_eq!(prepared_step_bytes(1920, 1080, bridge(true, false)), step_bytes(1920, 1080));
        let default = JobBudget::new(512 * MIB, 64 * MIB).unwrap();
        assert!(check(1920, 1080, "/output_config/width", &default).is_ok());
        let error = check(3840, 2160, "/output_config/width", &default).unwrap_err();
        assert_eq!(error.pointer, "/output_config/width");
        assert!(error.message.contains("3840x2160") && error.message.contains("448 MiB"), "{}", error.message);
        let small = JobBudget::new(256 * MIB, 64 * MIB).unwrap();
        assert!(check(1280, 720, "/moves/0/video_path", &small).is_err());
        assert!(check(640, 360, "/moves/0/video_path", &small).is_ok());
    }

    #[test]
    fn a_clip_larger_than_the_output_costs_its_decoding() {
        let default = JobBudget::new(512 * MIB, 64 * MIB).unwrap();
        let hd = (1280, 720);
        assert_eq!(input_step_bytes(hd, hd), step_bytes(1280, 720), "the output's own size costs nothing more");
        assert_eq!(input_step_bytes((640, 360), hd), step_bytes(1280, 720), "nor does a smaller clip");
        // A 4K phone clip fits a 720p job in 512 MiB (measured 215 MiB); an 8K one does not (477).
        assert_eq!(clip_frame_problem((3840, 2160), hd, &default), None);
        let problem = clip_frame_problem((7680, 4320), hd, &default).expect("refused");
        assert!(problem.starts_with("its 7680x4320 frames need about") && problem.contains("448 MiB"), "{problem}");
        // At the boundary: the largest frame that fits, and one row more.
        let fits =
            (1..=8000u32).rev().map(|h| (h * 16 / 9, h)).find(|&f| input_step_bytes(f, hd) <= default.shared).unwrap();
        assert!(clip_frame_problem(fits, hd, &default).is_none());
        assert!(clip_frame_problem((fits.0, fits.1 + 9), hd, &default).is_some());
    }

    #[test]
    fn the_length_a_budget_allows() {
        let example = include_str!("../../../../examples/backend-blueprint.json");
        let mut validated = br_blueprint::validate(example).unwrap_or_else(|e| panic!("{e:?}"));
        let default = JobBudget::new(512 * MIB, 64 * MIB).unwrap();
        // 720p at 2 Mb/s: the backend's 3 minutes and 10 minutes fit, 12 do not.
        for (seconds, fits) in [(176.0, true), (600.0, true), (720.0, false)] {
            validated.total_duration = seconds;
            let result = check_length(&validated, 1280, 720, &default);
            assert_eq!(result.is_ok(), fits, "{seconds} s: {result:?}");
        }
        let error = check_length(&validated, 1280, 720, &default).unwrap_err();
        assert_eq!(error.pointer, "/total_duration");
        assert!(error.message.contains("a 720 s video at 2128 kb/s"), "{}", error.message);
    }

    /// The join holds the output's audio too: a small frame with a high audio bitrate is
    /// limited by the join, not by the segments, and the audio decides where (at 720p the
    /// segments phase always dominates, which hid a join phase without its audio).
    #[test]
    fn the_join_phase_counts_the_audio() {
        let example = include_str!("../../../../examples/backend-blueprint.json");
        let mut validated = br_blueprint::validate(example).unwrap_or_else(|e| panic!("{e:?}"));
        validated.output.video_bitrate = 100_000;
        validated.output.audio_bitrate = 512_000;
        validated.output.normalize_audio = false;
        let default = JobBudget::new(512 * MIB, 64 * MIB).unwrap();
        let (width, height) = (320, 180);
        let fixed = ((STAGED_INPUTS_MIB + JOIN_PLAIN_MIB) * MIB as f64) as u64;
        let per_second = (100_000 + 512_000) / 8;
        // The longest video whose join fits, in whole seconds.
        let longest = (default.shared - fixed) / per_second;
        validated.total_duration = longest as f64;
        assert!(check_length(&validated, width, height, &default).is_ok(), "{longest} s");
        validated.total_duration = (longest + 1) as f64;
        let segments_phase =
            100_000 / 8 * (longest + 1) + (STAGED_INPUTS_MIB * MIB as f64) as u64 + step_bytes(width, height);
        assert!(segments_phase < default.shared, "the segments alone would fit: only the join's audio refuses");
        assert_eq!(
            check_length(&validated, width, height, &default).map_err(|e| e.pointer),
            Err("/total_duration".to_owned())
        );
        // Without the song the same length fits.
        validated.output.add_audio_overlay = false;
        assert!(check_length(&validated, width, height, &default).is_ok());
    }
}

/// The largest frame a step's literal arguments name: `-s WxH`, and `scale`/`pad`
/// sizes written as numbers in its filter graphs (expressions are left to the child's
/// hard limit).
pub fn largest_frame(args: &[br_plan::Arg]) -> Option<(u32, u32)> {
    let literals: Vec<&str> = args
        .iter()
        .filter_map(|arg| if let br_plan::Arg::Literal(text) = arg { Some(text.as_str()) } else { None })
        .collect();
    let mut frames = Vec::new();
    for pair in literals.windows(2) {
        if pair[0] == "-s" {
            frames.extend(size_pair(pair[1], 'x'));
        }
    }
    for text in &literals {
        for (at, _) in text.match_indices("scale=").chain(text.match_indices("pad=")) {
            let options = &text[at..];
            let options = &options[options.find('=').map_or(0, |i| i + 1)..];
            let options = options.split([',', ';', '[']).next().unwrap_or_default();
            frames.extend(filter_size(options));
        }
    }
    frames.into_iter().max_by_key(|&(w, h)| u64::from(w) * u64::from(h))
}

fn size_pair(text: &str, separator: char) -> Option<(u32, u32)> {
    let (w, h) = text.split_once(separator)?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
}

/// `W:H[:...]`, `w=W:h=H`, `width=W:height=H` or `s=WxH`.
fn filter_size(options: &str) -> Option<(u32, u32)> {
    let (mut width, mut height) = (None, None);
    for (index, option) in options.split(':').enumerate() {
        let (key, value) = option.split_once('=').unwrap_or(("", option));
        match (key, index) {
            ("w" | "width", _) | ("", 0) => width = value.trim().parse::<u32>().ok(),
            ("h" | "height", _) | ("", 1) => height = value.trim().parse::<u32>().ok(),
            ("s" | "size", _) => return size_pair(value, 'x'),
            _ => {}
        }
    }
    Some((width?, height?))
}

/// A plugin's plan: every FFmpeg step whose frames cannot fit the budget is refused
/// before anything runs. Returns the step and the reason.
pub fn check_plan(plan: &br_plan::Plan, budget: &JobBudget) -> Result<(), (usize, String)> {
    for (index, step) in plan.steps.iter().enumerate() {
        let br_plan::Step::Ffmpeg(invocation) = step else { continue };
        let Some((width, height)) = largest_frame(&invocation.args) else { continue };
        let needed = step_bytes(width, height);
        if needed > budget.shared {
            return Err((
                index,
                format!(
                    "step {index} ({}) works on {width}x{height} frames, which need about {} MiB; the job's memory budget of \
                     {} MiB leaves {} MiB for FFmpeg and the work folder",
                    invocation.label,
                    needed / MIB,
                    budget.total / MIB,
                    budget.shared / MIB
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use br_plan::Arg;

    #[test]
    fn frame_sizes_are_read_from_literal_arguments() {
        let args = |words: &[&str]| words.iter().map(|w| Arg::lit(*w)).collect::<Vec<_>>();
        assert_eq!(largest_frame(&args(&["-vf", "scale=8000:8000"])), Some((8000, 8000)));
        assert_eq!(largest_frame(&args(&["-vf", "null,pad=w=16000:h=16000:x=0"])), Some((16000, 16000)));
        assert_eq!(largest_frame(&args(&["-s", "3840x2160"])), Some((3840, 2160)));
        let planner =
            "[0:v]fps=30,scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2[v]";
        assert_eq!(largest_frame(&args(&["-filter_complex", planner])), Some((1280, 720)));
        assert_eq!(largest_frame(&args(&["-vf", "scale=iw*2:ih*2"])), None, "expressions are not evaluated");
        assert_eq!(largest_frame(&args(&["-af", "volume=0.5"])), None);
    }
}
