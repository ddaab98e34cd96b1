//! Prepared clips: a library clip re-encoded once at a job's output settings, with short
//! closed GOPs and no B-frames, so later jobs can copy its packets, from a keyframe to
//! the last frame a move shows unchanged, instead of decoding and encoding every frame.
//!
//! Why these settings: a copied GOP joins the bitstream of the frames encoded around it,
//! so both must come from the same encoder settings (size, rate, pixel format, profile);
//! short GOPs (half a second) leave little to re-encode at a cut off the grid; without
//! B-frames, FFmpeg's concat demuxer, which cuts at `outpoint` by decode timestamp, cuts
//! at the exact frame.

use br_blueprint::Validated;

use crate::{Arg, FrameRate, Invocation, MediaFacts};

/// Bumped whenever the recipe below changes, so older prepared clips are not mixed in.
/// 2: clips at another frame rate than the profile's are no longer prepared (version 1
/// prepared them, and their copied GOPs could show a neighbouring source frame).
/// 3: clips are fitted by their display size (version 2 squeezed anamorphic clips: a
/// 960x720 clip of 4:3 pixels filled 960 columns, not 1280).
/// 4: the first GOP is [`FIRST_GOP_FRAMES`] long, the later ones [`GOP_FRAMES`]: see there.
pub const RECIPE_VERSION: u32 = 4;
/// The last recipe whose keyframes are every [`GOP_FRAMES`] from the first: all a guest of
/// contract 0.4.0 to 0.9.0 knows (`prepared-clip.gop-frames`), so the only one it is given.
pub const EVEN_GRID_RECIPE: u32 = 3;
/// Frames per GOP: half a second at 30 fps.
pub const GOP_FRAMES: u32 = 15;
/// Frames in a prepared clip's first GOP (recipe 4 on): the right half of the backend's
/// half-second crossfade (8 of its 15 frames at 30 fps). A move that blends in shows its
/// clip's frames from this one on unchanged, so its copy starts right where the blend
/// ends: a bridge is the crossfade alone (15 frames from two inputs). With the first
/// keyframe at 15 it was 22 frames from three (the 7 frames up to the keyframe, read
/// again), 0.265 s of CPU against 0.187 s. A move of a whole number of half seconds then
/// ends on the grid too (frame 8 + 15k), where the next blend starts.
pub const FIRST_GOP_FRAMES: u32 = 8;
const PRESET: &str = "veryfast";

/// What a prepared clip is encoded to. Two jobs with the same profile can share
/// prepared clips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Frame width in pixels: the job's output width ([`crate::output_frame`]).
    pub width: u32,
    /// Frame height in pixels: the job's output height.
    pub height: u32,
    /// Frame rate: the output's `frame_rate` as an exact fraction.
    pub rate: FrameRate,
    /// Bits per second.
    pub video_bitrate: u64,
    /// The recipe: [`RECIPE_VERSION`] for what `prepare` makes, [`EVEN_GRID_RECIPE`] for
    /// what an older guest may be given.
    pub recipe: u32,
}

impl Profile {
    /// A profile of today's recipe.
    pub fn new(width: u32, height: u32, rate: FrameRate, video_bitrate: u64) -> Profile {
        Profile { width, height, rate, video_bitrate, recipe: RECIPE_VERSION }
    }

    /// The same settings in the recipe older guests know (keyframes every [`GOP_FRAMES`]).
    pub fn with_even_grid(&self) -> Profile {
        Profile { recipe: EVEN_GRID_RECIPE, ..self.clone() }
    }

    /// Frames in the first GOP of a clip prepared with this profile.
    pub fn first_gop_frames(&self) -> u32 {
        if self.recipe > EVEN_GRID_RECIPE {
            FIRST_GOP_FRAMES
        } else {
            GOP_FRAMES
        }
    }

    /// The profile of a blueprint's output: its size (or its first clip's), rate and
    /// bitrate. None when its video codec is not H.264, the only codec prepared.
    pub fn of(validated: &Validated, inputs: &[MediaFacts]) -> Option<Profile> {
        if validated.output.video_codec != "libx264" {
            return None;
        }
        let (width, height) = crate::output_frame(validated, inputs);
        Some(Profile::new(
            width,
            height,
            FrameRate::from_fps(validated.output.frame_rate),
            validated.output.video_bitrate,
        ))
    }

    /// A readable name, also a folder name: `h264-1280x720-30fps-2000k-g15-r4`.
    pub fn id(&self) -> String {
        let rate =
            if self.rate.den == 1 { self.rate.num.to_string() } else { format!("{}_{}", self.rate.num, self.rate.den) };
        format!(
            "h264-{}x{}-{rate}fps-{}k-g{GOP_FRAMES}-r{}",
            self.width,
            self.height,
            self.video_bitrate / 1000,
            self.recipe
        )
    }

    /// The encoder's settings as the manifest records them.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("codec", "libx264".into()),
            ("preset", PRESET.into()),
            ("size", format!("{}x{}", self.width, self.height)),
            ("frame_rate", self.rate.as_ffmpeg()),
            ("bitrate", self.video_bitrate.to_string()),
            ("pixel_format", "yuv420p".into()),
            ("gop", GOP_FRAMES.to_string()),
            ("first_gop", self.first_gop_frames().to_string()),
            ("b_frames", "0".into()),
            ("recipe", self.recipe.to_string()),
        ]
    }

    /// One FFmpeg run that prepares input 0 into the output: every frame brought to the
    /// profile's grid exactly as the planner's segments bring them (same rate, scaling,
    /// letterboxing, pixel format), video only.
    pub fn invocation(&self, label: &str, media_seconds: f64) -> Invocation {
        let (w, h) = (self.width, self.height);
        let fps = self.rate.as_ffmpeg();
        let graph = format!("[0:v]fps={fps},{},format=yuv420p[video]", crate::planner::fit(w, h));
        let threads = if u64::from(w) * u64::from(h) > 1280 * 720 { "1" } else { "2" };
        let gop = GOP_FRAMES.to_string();
        // Keyframes at 0, then on the grid from the first GOP's end: forced by frame number
        // (x264 counts its GOP from each keyframe, so `-g` alone agrees after the first).
        let keyframes = keyframe_expression(self.first_gop_frames(), GOP_FRAMES);
        let mut args = vec![
            Arg::lit("-i"),
            Arg::Input(0),
            Arg::lit("-filter_complex"),
            Arg::Literal(graph),
            Arg::lit("-map"),
            Arg::lit("[video]"),
        ];
        for (option, value) in [
            ("-c:v", "libx264"),
            ("-preset", PRESET),
            ("-threads", threads),
            ("-b:v", &self.video_bitrate.to_string()),
            ("-pix_fmt", "yuv420p"),
            ("-g", &gop),
            ("-keyint_min", &gop),
            ("-sc_threshold", "0"),
            ("-bf", "0"),
            ("-force_key_frames", &keyframes),
            ("-r", &self.rate.as_ffmpeg()),
            ("-movflags", "+faststart"),
            ("-f", "mp4"),
        ] {
            args.extend([Arg::lit(option), Arg::lit(value)]);
        }
        args.extend([Arg::lit("-an"), Arg::Output]);
        Invocation { args, media_seconds, label: label.to_owned() }
    }
}

/// `-force_key_frames`' expression for keyframes at frame 0, `first` and every `gop` after:
/// the one form the policy allows (`br_policy`).
pub fn keyframe_expression(first: u32, gop: u32) -> String {
    format!("expr:eq(n,0)+gte(n,{first})*not(mod(n-{first},{gop}))")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_names_every_setting_that_matters() {
        let profile = Profile::new(1280, 720, FrameRate { num: 30, den: 1 }, 2_000_000);
        assert_eq!(profile.id(), "h264-1280x720-30fps-2000k-g15-r4");
        let ntsc = Profile { rate: FrameRate { num: 30_000, den: 1001 }, ..profile.clone() };
        assert_eq!(ntsc.id(), "h264-1280x720-30000_1001fps-2000k-g15-r4");
        assert_eq!(profile.with_even_grid().id(), "h264-1280x720-30fps-2000k-g15-r3");
        assert_ne!(Profile { video_bitrate: 2_500_000, ..profile.clone() }.id(), profile.id());
    }

    #[test]
    fn the_recipe_has_closed_short_gops_without_b_frames() {
        let profile = Profile::new(1280, 720, FrameRate { num: 30, den: 1 }, 2_000_000);
        let args: Vec<String> = profile
            .invocation("prepare", 8.0)
            .args
            .iter()
            .map(|arg| match arg {
                Arg::Literal(text) => text.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        let text = args.join(" ");
        for expected in ["-g 15", "-keyint_min 15", "-sc_threshold 0", "-bf 0", "-b:v 2000000", "-r 30", "-an Output"] {
            assert!(text.contains(expected), "{expected} missing from {text}");
        }
        assert!(text.contains("-force_key_frames expr:eq(n,0)+gte(n,8)*not(mod(n-8,15))"), "{text}");
        let even = profile.with_even_grid().invocation("prepare", 8.0).args;
        assert!(even.contains(&Arg::lit("expr:eq(n,0)+gte(n,15)*not(mod(n-15,15))")));
    }

    /// The manifest records every setting of the recipe, by name.
    #[test]
    fn the_manifest_records_every_setting() {
        let profile = Profile::new(1000, 562, FrameRate { num: 30_000, den: 1001 }, 2_500_000);
        let settings: Vec<(&str, String)> = profile.settings();
        let expected = [
            ("codec", "libx264"),
            ("preset", "veryfast"),
            ("size", "1000x562"),
            ("frame_rate", "30000/1001"),
            ("bitrate", "2500000"),
            ("pixel_format", "yuv420p"),
            ("gop", "15"),
            ("first_gop", "8"),
            ("b_frames", "0"),
            ("recipe", "4"),
        ];
        assert_eq!(settings, expected.map(|(name, value)| (name, value.to_owned())));
    }

    /// Preparing takes two encoder threads up to exactly 1280x720 pixels, one above (the
    /// planner's rule).
    #[test]
    fn preparing_takes_one_thread_only_above_720p() {
        let threads = |width: u32, height: u32| {
            let profile = Profile::new(width, height, FrameRate { num: 30, den: 1 }, 2_000_000);
            let args = profile.invocation("prepare", 8.0).args;
            args.windows(2).find_map(|pair| (pair[0] == Arg::lit("-threads")).then(|| pair[1].clone()))
        };
        assert_eq!(threads(1280, 720), Some(Arg::lit("2")));
        assert_eq!(threads(1278, 720), Some(Arg::lit("2")));
        assert_eq!(threads(1282, 720), Some(Arg::lit("1")));
        assert_eq!(threads(1280, 722), Some(Arg::lit("1")));
    }
}
