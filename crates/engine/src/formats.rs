//! The media a job accepts: the containers it opens and the codecs it decodes. One table
//! serves the host's own checks (the probe's `-format_whitelist`, the codec check after
//! it) and the minimal FFmpeg the image is built with (`scripts/build-ffmpeg`): a test
//! fails when the build's lists and these tables differ, so a clip is accepted or refused
//! the same way whichever FFmpeg runs.

use br_plan::MediaFacts;

/// Input containers: FFmpeg's demuxer, and the names `-format_whitelist` matches it by
/// (a demuxer's names, comma-separated, as FFmpeg spells them, and ffprobe's `format_name`).
pub const CONTAINERS: [(&str, &str); 9] = [
    ("mov", "mov,mp4,m4a,3gp,3g2,mj2"),
    ("matroska", "matroska,webm"),
    ("mp3", "mp3"),
    ("wav", "wav"),
    ("aac", "aac"),
    ("ogg", "ogg"),
    ("flac", "flac"),
    ("avi", "avi"),
    ("mpegts", "mpegts"),
];

/// The containers (as ffprobe names them) in which FFmpeg's input seek lands on the frame
/// asked for: it finds the keyframe before it in the file's index and decodes from there.
/// MPEG-TS has no index: a seek lands on the packet nearest in time, rarely a keyframe,
/// and the decoder drops every frame up to the next keyframe, seconds later in a clip with
/// a keyframe every 8 s, never in one with a single keyframe (a crossfade into such a clip
/// waited for frames that never came). A clip in any other container is copied into MP4
/// once it is staged (`media::remux_for_exact_seeks`).
pub const SEEKS_EXACTLY: [&str; 8] =
    ["mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "ogg", "mp3", "wav", "aac", "flac"];

static FORMAT_WHITELIST: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| CONTAINERS.map(|(_, names)| names).join(","));

/// How every staged input is opened: files of the accepted containers, nothing else.
/// Without this, a "clip" that is really an HLS playlist or a concat list would make
/// FFmpeg open other files or URLs named inside it.
pub fn input_whitelist() -> [&'static str; 4] {
    ["-protocol_whitelist", "file", "-format_whitelist", FORMAT_WHITELIST.as_str()]
}

/// What the host's own measurement of the song's loudness (`media::measure_loudness`)
/// has FFmpeg build beyond any plan's needs: the filter, and the output that keeps
/// nothing (with the encoder it takes audio as).
pub const LOUDNESS_FILTER: &str = "ebur128";
pub const LOUDNESS_MUXER: &str = "null";
pub const LOUDNESS_ENCODER: &str = "pcm_s16le";

/// For README's messages.
pub const CONTAINER_NAMES: &str = "MP4/MOV, Matroska/WebM, MP3, WAV, AAC, Ogg, FLAC, AVI, MPEG-TS";

/// Video codecs a clip may be in: ffprobe's `codec_name`, and FFmpeg's decoder for it.
pub const VIDEO_CODECS: [(&str, &str); 8] = [
    ("h264", "h264"),
    ("hevc", "hevc"),
    ("vp8", "vp8"),
    ("vp9", "vp9"),
    // FFmpeg 5.1's own av1 decoder only drives hardware decoders.
    ("av1", "libdav1d"),
    ("mpeg4", "mpeg4"),
    ("mpeg2video", "mpeg2video"),
    ("mjpeg", "mjpeg"),
];

/// Audio codecs a song may be in (and a clip's audio, which a plugin may use).
pub const AUDIO_CODECS: [(&str, &str); 14] = [
    ("aac", "aac"),
    ("mp3", "mp3float"),
    ("alac", "alac"),
    ("flac", "flac"),
    ("vorbis", "vorbis"),
    ("opus", "opus"),
    ("pcm_s16le", "pcm_s16le"),
    ("pcm_s24le", "pcm_s24le"),
    ("pcm_s32le", "pcm_s32le"),
    ("pcm_f32le", "pcm_f32le"),
    ("pcm_f64le", "pcm_f64le"),
    ("pcm_u8", "pcm_u8"),
    ("pcm_s16be", "pcm_s16be"),
    ("pcm_s24be", "pcm_s24be"),
];

/// What an input is for: which of its streams the job decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Its audio: the song.
    Song,
    /// Its video: a clip (its own audio is never decoded by the built-in planner).
    Clip,
}

/// The most audio channels FFmpeg 5.1 downmixes to stereo whatever their layout: with
/// none given (WAV), it takes the default layout for 1 to 8 channels; 9, 32 or 64 fail
/// in the resampler (measured: `aresample,aformat=channel_layouts=stereo`), a failed
/// step that a retry would only repeat.
pub const MAX_AUDIO_CHANNELS: u32 = 8;

/// The widest and narrowest pixels a clip may have (its sample aspect ratio): 4 and 1/4.
/// A clip is fitted by its display size (its coded width times this ratio), so a wider
/// ratio would spread its columns into smears (a 10:1 clip shows 96 coded columns across
/// a 960-wide frame) or squeeze its rows to a strip: a broken or hostile file, not footage.
/// Real footage stays far inside (DV 8:9 to 32:27, HDV 4:3, 2x anamorphic lenses 2:1).
pub const MAX_SAMPLE_ASPECT: u64 = 4;

/// Why a clip whose pixels are `num`:`den` as wide as high cannot be shown, if it cannot.
pub fn unshowable_pixels((num, den): (u64, u64)) -> Option<String> {
    let (num, den) = (u128::from(num), u128::from(den));
    let most = u128::from(MAX_SAMPLE_ASPECT);
    (num > den * most || den > num * most).then(|| {
        format!(
            "its sample aspect ratio is {num}:{den} (each pixel shown {num}/{den} as wide as high); \
             this job shows clips from 1:{MAX_SAMPLE_ASPECT} to {MAX_SAMPLE_ASPECT}:1"
        )
    })
}

/// Why the job cannot decode what it needs from `facts`, if it cannot.
pub fn undecodable(facts: &MediaFacts, role: Role) -> Option<String> {
    if let Some(audio) = facts.audio.as_ref().filter(|audio| audio.channels > MAX_AUDIO_CHANNELS) {
        return Some(format!(
            "its audio has {} channels; this job mixes at most {MAX_AUDIO_CHANNELS} down to stereo",
            audio.channels
        ));
    }
    let (stream, codec, table): (_, &str, &[(&str, &str)]) = match role {
        Role::Clip => ("video", &facts.video.as_ref()?.codec, &VIDEO_CODECS),
        Role::Song => ("audio", &facts.audio.as_ref()?.codec, &AUDIO_CODECS),
    };
    if table.iter().any(|(name, _)| *name == codec) {
        return None;
    }
    let decoded = table.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ");
    Some(format!("its {stream} is {codec}, which this job does not decode (it decodes {decoded})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// FFmpeg adds these filters itself (never a plan): autorotation of phone clips that
    /// carry a display matrix, by quarter turns or by any angle.
    const AUTOROTATE_FILTERS: [&str; 4] = ["transpose", "hflip", "vflip", "rotate"];

    /// A bash array of `scripts/build-ffmpeg`: its words, comments left out.
    fn build_list(name: &str) -> BTreeSet<String> {
        let script = include_str!("../../../scripts/build-ffmpeg");
        let start =
            script.find(&format!("\n{name}=(")).unwrap_or_else(|| panic!("no {name}=( in scripts/build-ffmpeg"));
        let body = &script[start + name.len() + 3..];
        let end = body.find("\n)").unwrap_or_else(|| panic!("{name} is not closed"));
        body[..end]
            .lines()
            .flat_map(|line| line.split('#').next().unwrap_or("").split_whitespace())
            .map(str::to_owned)
            .collect()
    }

    fn set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        names.into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn every_container_but_mpeg_ts_seeks_by_its_index() {
        let names: Vec<&str> = CONTAINERS.map(|(_, names)| names).to_vec();
        assert!(SEEKS_EXACTLY.iter().all(|c| names.contains(c)), "{SEEKS_EXACTLY:?} against {names:?}");
        let copied: Vec<&str> = names.into_iter().filter(|c| !SEEKS_EXACTLY.contains(c)).collect();
        assert_eq!(copied, ["mpegts"]);
    }

    #[test]
    fn the_whitelist_names_every_container_once() {
        assert_eq!(input_whitelist()[3], "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mp3,wav,aac,ogg,flac,avi,mpegts");
    }

    /// The image's FFmpeg opens the accepted containers and the plans' own (the concat
    /// list, NUT temporaries), and writes what a plan may write.
    #[test]
    fn the_build_has_exactly_the_containers_the_host_accepts_and_the_plans_use() {
        let policy = br_policy::components();
        let read_by_plans = policy.formats.iter().copied().filter(|f| *f != "mp4");
        assert_eq!(
            build_list("DEMUXERS"),
            set(CONTAINERS.map(|(demuxer, _)| demuxer).into_iter().chain(read_by_plans))
        );
        assert_eq!(
            build_list("MUXERS"),
            set(policy.formats.iter().copied().filter(|f| *f != "concat").chain([LOUDNESS_MUXER]))
        );
    }

    #[test]
    fn the_build_decodes_exactly_the_codecs_the_host_accepts() {
        assert_eq!(build_list("DECODERS"), set(VIDEO_CODECS.iter().chain(&AUDIO_CODECS).map(|(_, decoder)| *decoder)));
    }

    #[test]
    fn the_build_has_exactly_the_filters_encoders_and_bitstream_filters_of_the_policy() {
        let policy = br_policy::components();
        let filters = policy.filters.iter().map(String::as_str).chain(AUTOROTATE_FILTERS).chain([LOUDNESS_FILTER]);
        assert_eq!(build_list("FILTERS"), set(filters));
        assert_eq!(build_list("ENCODERS"), set(policy.encoders.iter().copied().chain([LOUDNESS_ENCODER])));
        // The MP4 muxer inserts two more by itself when a stream is copied into it.
        let inserted = ["aac_adtstoasc", "vp9_superframe"];
        assert_eq!(build_list("BSFS"), set(policy.bitstream_filters.iter().copied().chain(inserted)));
    }

    #[test]
    fn pixels_wider_or_narrower_than_four_to_one_are_refused() {
        for shown in [(4, 3), (8, 9), (4, 1), (1, 4), (2, 1), (400, 100)] {
            assert_eq!(unshowable_pixels(shown), None, "{shown:?}");
        }
        for refused in [(10, 1), (1, 10), (401, 100), (100, 401), (u64::MAX, 1)] {
            assert!(unshowable_pixels(refused).is_some(), "{refused:?}");
        }
        let refused = unshowable_pixels((10, 1)).unwrap_or_default();
        assert!(refused.starts_with("its sample aspect ratio is 10:1 (each pixel shown 10/1 as wide"), "{refused}");
        assert!(refused.ends_with("this job shows clips from 1:4 to 4:1"), "{refused}");
    }

    #[test]
    fn a_clip_in_a_codec_outside_the_table_is_named() {
        let facts = |video: &str, audio: &str| MediaFacts {
            key: "k".into(),
            duration: 1.0,
            video: Some(br_plan::VideoFacts {
                codec: video.into(),
                width: 2,
                height: 2,
                frame_rate: 30.0,
                pixel_format: "yuv420p".into(),
                duration: 1.0,
            }),
            audio: Some(br_plan::AudioFacts { codec: audio.into(), sample_rate: 48_000, channels: 2, duration: 1.0 }),
        };
        assert_eq!(undecodable(&facts("h264", "ac3"), Role::Clip), None);
        let refused = undecodable(&facts("prores", "aac"), Role::Clip).unwrap_or_default();
        assert!(refused.starts_with("its video is prores, which this job does not decode"), "{refused}");
        assert_eq!(undecodable(&facts("prores", "mp3"), Role::Song), None);
        assert!(undecodable(&facts("h264", "ac3"), Role::Song).is_some());
        let mut wide = facts("h264", "pcm_s16le");
        wide.audio.as_mut().unwrap().channels = 64;
        let refused = undecodable(&wide, Role::Song).unwrap_or_default();
        assert_eq!(refused, "its audio has 64 channels; this job mixes at most 8 down to stereo");
        assert!(undecodable(&wide, Role::Clip).is_some(), "a plugin may mix a clip's audio");
        wide.audio.as_mut().unwrap().channels = 8;
        assert_eq!(undecodable(&wide, Role::Song), None);
    }
}
