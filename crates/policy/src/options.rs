//! The FFmpeg options a plan may use, and the shape each one's value must have.
//!
//! Why a table: FFmpeg has hundreds of options and several of them open files or URLs
//! (`-filter_complex_script`, `-attach`, `-dump_attachment`, `-progress`, demuxer
//! options such as `-protocol_whitelist`, the `-/option file` form of FFmpeg 7...).
//! An option that is not in this table is refused, so new FFmpeg options are refused
//! too until someone decides they are safe. Values are checked by shape (digits, a
//! word from a short list...) because a value that is just a number or a known word
//! cannot smuggle a path or a URL into FFmpeg.

use crate::numbers::{all_digits, bitrate, frame_rate, is_decimal, parse_integer};
use crate::{excerpt, filtergraph, PolicyLimits, Refusal, Report, Rule, Stop};

/// What follows an option name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ValueKind {
    /// A flag: nothing follows.
    Flag,
    /// `-i`: an input file follows (checked by the step walker, not here).
    InputFile,
    /// Seconds as a plain decimal: up to 6 integer and 9 fraction digits.
    Seconds,
    /// `-itsoffset`: seconds, optionally negative, at most [`MAX_INPUT_OFFSET_SECONDS`]
    /// either way (enough to take an encoder's priming samples back out of a copied
    /// stream; a larger shift would only make gaps the output then pads).
    InputOffset,
    /// A whole number, `min..=max`, up to 9 digits.
    Integer {
        min: u64,
        max: u64,
    },
    /// A count of frames, at most [`PolicyLimits::max_frames`].
    Frames,
    /// `1..=`[`PolicyLimits::max_threads`]; never 0, which is as many as the machine has.
    Threads,
    /// Samples per second, 8000 to [`PolicyLimits::max_sample_rate`].
    SampleRate,
    /// `30`, `29.97` or `30000/1001`, above 0 and at most [`PolicyLimits::max_frame_rate`].
    FrameRate,
    /// Bits per second: digits with an optional `k` or `M`, at most [`MAX_BITRATE`].
    Bitrate,
    OneOf(&'static [&'static str]),
    /// `-map`: a filtergraph link label or an input stream.
    StreamMap,
    /// `-bsf:a`: only `setts=duration='EXPR'`, which lets a copied audio stream end on
    /// its exact sample (a copied AAC stream otherwise ends with its last whole frame,
    /// up to 21 ms late); the expression is checked like a filter's.
    AudioPacketDuration,
    /// `-force_key_frames`: only `expr:eq(n,0)+gte(n,FIRST)*not(mod(n-FIRST,GOP))`, keyframes
    /// at frame 0, FIRST and every GOP after it (a prepared clip's grid), each 1 to 1000.
    /// FFmpeg's other forms (times, chapters, any expression) are not needed.
    KeyframeGrid,
    Filtergraph,
}

pub(crate) struct OptionSpec {
    pub(crate) name: &'static str,
    pub(crate) value: ValueKind,
}

const MAX_BITRATE: u64 = 100_000_000;
pub(crate) const MAX_INPUT_OFFSET_SECONDS: f64 = 1.0;
/// Longest `[label]` in `-map`.
const MAX_MAP_LABEL_CHARS: usize = 32;

pub(crate) const VIDEO_CODECS: &[&str] = &["libx264", "libx265", "copy"];
pub(crate) const AUDIO_CODECS: &[&str] = &["aac", "copy"];
/// `-bsf:v`: copied H.264 from MP4 joins the encoded parts (start codes in NUT).
pub(crate) const VIDEO_BITSTREAM_FILTERS: &[&str] = &["h264_mp4toannexb"];
/// `-bsf:a` takes only `setts=duration='...'` ([`ValueKind::AudioPacketDuration`]).
pub(crate) const AUDIO_BITSTREAM_FILTER: &str = "setts";
/// The containers a plan may force with `-f`: the concat list demuxer, the NUT
/// temporaries and the MP4 output. The walker also checks which file each applies to.
pub(crate) const FORMATS: &[&str] = &["concat", "nut", "mp4"];

const fn spec(name: &'static str, value: ValueKind) -> OptionSpec {
    OptionSpec { name, value }
}

const fn integer(min: u64, max: u64) -> ValueKind {
    ValueKind::Integer { min, max }
}

/// Every option a plan may use. Anything else is refused.
const OPTIONS: &[OptionSpec] = &[
    spec("-i", ValueKind::InputFile),
    spec("-an", ValueKind::Flag),
    spec("-vn", ValueKind::Flag),
    spec("-sn", ValueKind::Flag),
    spec("-dn", ValueKind::Flag),
    spec("-shortest", ValueKind::Flag),
    spec("-ss", ValueKind::Seconds),
    spec("-t", ValueKind::Seconds),
    spec("-to", ValueKind::Seconds),
    spec("-itsoffset", ValueKind::InputOffset),
    spec("-frames:v", ValueKind::Frames),
    spec("-threads", ValueKind::Threads),
    spec("-g", integer(1, 1000)),
    spec("-keyint_min", integer(1, 1000)),
    spec("-sc_threshold", integer(0, 100)),
    spec("-bf", integer(0, 16)),
    spec("-force_key_frames", ValueKind::KeyframeGrid),
    // x264's own maximum (`X264_LOOKAHEAD_MAX`); frames it holds count against the
    // child's memory limit like any other.
    spec("-rc-lookahead", integer(0, 250)),
    spec("-crf", integer(0, 51)),
    spec("-ar", ValueKind::SampleRate),
    spec("-ac", integer(1, 8)),
    spec("-r", ValueKind::FrameRate),
    spec("-b:v", ValueKind::Bitrate),
    spec("-b:a", ValueKind::Bitrate),
    spec("-maxrate", ValueKind::Bitrate),
    spec("-bufsize", ValueKind::Bitrate),
    spec("-c:v", ValueKind::OneOf(VIDEO_CODECS)),
    spec("-codec:v", ValueKind::OneOf(VIDEO_CODECS)),
    spec("-vcodec", ValueKind::OneOf(VIDEO_CODECS)),
    spec("-c:a", ValueKind::OneOf(AUDIO_CODECS)),
    spec("-codec:a", ValueKind::OneOf(AUDIO_CODECS)),
    spec("-acodec", ValueKind::OneOf(AUDIO_CODECS)),
    spec(
        "-preset",
        ValueKind::OneOf(&[
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
        ]),
    ),
    spec("-tune", ValueKind::OneOf(&["film", "animation", "fastdecode", "zerolatency"])),
    spec("-pix_fmt", ValueKind::OneOf(&["yuv420p"])),
    spec("-movflags", ValueKind::OneOf(&["+faststart"])),
    spec("-f", ValueKind::OneOf(FORMATS)),
    spec("-fps_mode", ValueKind::OneOf(&["cfr", "passthrough"])),
    spec("-profile:v", ValueKind::OneOf(&["baseline", "main", "high"])),
    spec("-map", ValueKind::StreamMap),
    spec("-bsf:v", ValueKind::OneOf(VIDEO_BITSTREAM_FILTERS)),
    spec("-bsf:a", ValueKind::AudioPacketDuration),
    spec("-filter_complex", ValueKind::Filtergraph),
    spec("-vf", ValueKind::Filtergraph),
    spec("-af", ValueKind::Filtergraph),
];

/// Every allowed option and what its value must be, as the job's `limits` bound it.
pub(crate) fn table(limits: &PolicyLimits) -> Vec<(&'static str, String)> {
    let value = |kind| match kind {
        ValueKind::Flag => "a flag: no value".to_owned(),
        ValueKind::InputFile => {
            "an input: `input(n)`, or a temp an earlier step wrote (an ffconcat temp right after `-f concat`)"
                .to_owned()
        }
        kind => describe(kind, limits),
    };
    OPTIONS.iter().map(|spec| (spec.name, value(spec.value))).collect()
}

pub(crate) fn lookup(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|spec| spec.name == name)
}

/// Checks `value` for the option `name` of kind `kind` (not [`ValueKind::Flag`] or
/// [`ValueKind::InputFile`], which have no literal value) and reports each broken rule:
/// one at most, but a filtergraph can break several.
pub(crate) fn check_value(
    name: &str,
    kind: ValueKind,
    value: &str,
    limits: &PolicyLimits,
    report: &mut Report,
) -> Result<(), Stop> {
    match value_refusal(name, kind, value, limits, report)? {
        Some(refusal) => report(refusal),
        None => Ok(()),
    }
}

/// The refusal of a value that breaks one rule; a filtergraph is reported as it is read.
fn value_refusal(
    name: &str,
    kind: ValueKind,
    value: &str,
    limits: &PolicyLimits,
    report: &mut Report,
) -> Result<Option<Refusal>, Stop> {
    let well_formed = match kind {
        ValueKind::Flag | ValueKind::InputFile => false,
        ValueKind::Seconds => {
            is_decimal(value, 6, 9) && value.parse::<f64>().is_ok_and(|s| s <= limits.max_media_seconds)
        }
        ValueKind::InputOffset => {
            let magnitude = value.strip_prefix('-').unwrap_or(value);
            is_decimal(magnitude, 1, 9) && magnitude.parse::<f64>().is_ok_and(|s| s <= MAX_INPUT_OFFSET_SECONDS)
        }
        ValueKind::Integer { min, max } => parse_integer(value).is_some_and(|n| (min..=max).contains(&n)),
        ValueKind::Frames => parse_integer(value).is_some_and(|n| (1..=limits.max_frames()).contains(&n)),
        ValueKind::Threads => parse_integer(value).is_some_and(|n| (1..=limits.max_threads).contains(&n)),
        ValueKind::SampleRate => {
            parse_integer(value).is_some_and(|n| (8_000..=u64::from(limits.max_sample_rate)).contains(&n))
        }
        ValueKind::FrameRate => frame_rate(value).is_some_and(|fps| fps > 0.0 && fps <= limits.max_frame_rate),
        ValueKind::Bitrate => bitrate(value).is_some_and(|bits| bits <= MAX_BITRATE),
        ValueKind::OneOf(words) => words.contains(&value),
        ValueKind::StreamMap => is_map_label(value) || is_input_stream(value),
        ValueKind::KeyframeGrid => keyframe_grid(value).is_some(),
        ValueKind::Filtergraph => {
            filtergraph::check(value, limits, report)?;
            return Ok(None);
        }
        ValueKind::AudioPacketDuration => {
            let prefix = format!("{AUDIO_BITSTREAM_FILTER}=duration='");
            let expression = value.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix('\''));
            match expression {
                Some(expression) if !expression.contains('\'') && !expression.contains('\\') => {
                    return Ok(crate::expression::check("setts", "duration", expression).err());
                }
                _ => false,
            }
        }
    };
    if well_formed {
        Ok(None)
    } else {
        let reason = format!("{} is not a valid value for {name}: {}", excerpt(value), describe(kind, limits));
        Ok(Some(Refusal::new(Rule::BadOptionValue, reason)))
    }
}

fn describe(kind: ValueKind, limits: &PolicyLimits) -> String {
    match kind {
        ValueKind::Flag | ValueKind::InputFile => "it takes no literal value".to_owned(),
        ValueKind::Seconds => {
            format!("seconds as a plain decimal, at most {} (the job's media)", limits.max_media_seconds)
        }
        ValueKind::InputOffset => {
            format!("seconds as a plain decimal, optionally negative, at most {MAX_INPUT_OFFSET_SECONDS} either way")
        }
        ValueKind::Integer { min, max } => format!("a whole number from {min} to {max}"),
        ValueKind::Frames => format!("a whole number of frames from 1 to {}", limits.max_frames()),
        ValueKind::Threads => format!("a whole number of threads from 1 to {}", limits.max_threads),
        ValueKind::SampleRate => format!("a sample rate from 8000 to {}", limits.max_sample_rate),
        ValueKind::FrameRate => {
            format!("a frame rate like 30, 29.97 or 30000/1001, above 0 and at most {}", limits.max_frame_rate)
        }
        ValueKind::Bitrate => format!("bits per second like 2000000, 800k or 2M, at most {MAX_BITRATE}"),
        ValueKind::OneOf(words) => format!("one of {}", words.join(", ")),
        ValueKind::StreamMap => "a link label like [video] or an input stream like 0:v, 1:a:0 or 0:v?".to_owned(),
        ValueKind::Filtergraph => "a filtergraph".to_owned(),
        ValueKind::AudioPacketDuration => "setts=duration='EXPRESSION' (arithmetic on DURATION, PTS and TB)".to_owned(),
        ValueKind::KeyframeGrid => format!(
            "expr:eq(n,0)+gte(n,FIRST)*not(mod(n-FIRST,GOP)) with FIRST and GOP whole numbers from 1 to \
             {MAX_KEYFRAME_INTERVAL}"
        ),
    }
}

/// Longest first GOP or GOP `-force_key_frames` may ask for (as `-g`).
const MAX_KEYFRAME_INTERVAL: u64 = 1000;

/// The first GOP and the GOP of a `-force_key_frames` grid expression, when `value` is one.
fn keyframe_grid(value: &str) -> Option<(u64, u64)> {
    let rest = value.strip_prefix("expr:eq(n,0)+gte(n,")?;
    let (first, rest) = rest.split_once(")*not(mod(n-")?;
    let (again, rest) = rest.split_once(',')?;
    let gop = rest.strip_suffix("))")?;
    let bounded = |text: &str| parse_integer(text).filter(|n| (1..=MAX_KEYFRAME_INTERVAL).contains(n));
    let (first, gop) = (bounded(first)?, bounded(gop)?);
    (again == first.to_string()).then_some((first, gop))
}

/// `^\[[A-Za-z0-9_]{1,32}\]$`
fn is_map_label(text: &str) -> bool {
    let Some(name) = text.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) else {
        return false;
    };
    (1..=MAX_MAP_LABEL_CHARS).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `^\d{1,3}:[va](:\d{1,3})?\??$`: input number, stream type, optional stream number,
/// optional `?` (do not fail if there is no such stream).
fn is_input_stream(text: &str) -> bool {
    let text = text.strip_suffix('?').unwrap_or(text);
    let mut fields = text.split(':');
    let input_ok = fields.next().is_some_and(|input| all_digits(input, 1, 3));
    let kind_ok = fields.next().is_some_and(|kind| kind == "v" || kind == "a");
    let stream_ok = fields.next().is_none_or(|stream| all_digits(stream, 1, 3));
    input_ok && kind_ok && stream_ok && fields.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_plain() {
        for good in ["0", "7.75", "123456", "1.123456789"] {
            assert!(is_decimal(good, 6, 9), "{good}");
        }
        for bad in
            ["", ".5", "5.", "1e3", "-1", "+1", "1234567", "1.1234567890", "NaN", "inf", "1..2", "1.2.3", " 1", "１"]
        {
            assert!(!is_decimal(bad, 6, 9), "{bad}");
        }
    }

    #[test]
    fn frame_rates() {
        assert_eq!(frame_rate("30"), Some(30.0));
        assert_eq!(frame_rate("30000/1001"), Some(30000.0 / 1001.0));
        assert_eq!(frame_rate("30/0"), None);
        assert_eq!(frame_rate("30/"), None);
        assert_eq!(frame_rate("1/2/3"), None);
        assert_eq!(frame_rate("12345"), None);
    }

    #[test]
    fn bitrates() {
        assert_eq!(bitrate("2M"), Some(2_000_000));
        assert_eq!(bitrate("128k"), Some(128_000));
        assert_eq!(bitrate("999999999M"), Some(999_999_999_000_000));
        assert_eq!(bitrate("2m"), None);
        assert_eq!(bitrate("M"), None);
        assert_eq!(bitrate("2.5M"), None);
    }

    #[test]
    fn stream_maps() {
        for good in ["0:v", "1:a", "0:v:0", "12:a:3?", "0:v?", "[video]", "[a_1]"] {
            assert!(is_map_label(good) || is_input_stream(good), "{good}");
        }
        for bad in ["0", "0:s", "0:v:", "0:v:0:1", "-1:v", "1234:v", "[]", "[a b]", "[a;b]", "[video", "0:v??", "[0:v]"]
        {
            assert!(!(is_map_label(bad) || is_input_stream(bad)), "{bad}");
        }
    }

    /// A fraction's numerator and denominator each have 1 to 6 digits, so that neither
    /// can be written with a sign or a longer run of digits.
    #[test]
    fn a_frame_rate_fraction_has_up_to_six_digits_each() {
        assert_eq!(frame_rate("120000/1000"), Some(120.0));
        assert_eq!(frame_rate("3000000/100000"), None);
        assert_eq!(frame_rate("30/0000001"), None);
        assert_eq!(frame_rate("+30/1"), None);
        assert_eq!(frame_rate("30/+1"), None);
    }

    fn limits() -> PolicyLimits {
        PolicyLimits::for_job(1280, 720, 60.0)
    }

    /// What `policy list` and docs/POLICY.md's table say each kind of value must be, with the job's bounds.
    #[test]
    fn each_kind_of_value_is_described_with_its_bound() {
        let limits = limits();
        for (kind, text) in [
            (ValueKind::Flag, "it takes no literal value"),
            (ValueKind::InputFile, "it takes no literal value"),
            (ValueKind::Seconds, "seconds as a plain decimal, at most 70 (the job's media)"),
            (ValueKind::InputOffset, "seconds as a plain decimal, optionally negative, at most 1 either way"),
            (integer(1, 8), "a whole number from 1 to 8"),
            (ValueKind::Frames, "a whole number of frames from 1 to 8400"),
            (ValueKind::Threads, "a whole number of threads from 1 to 2"),
            (ValueKind::SampleRate, "a sample rate from 8000 to 192000"),
            (ValueKind::FrameRate, "a frame rate like 30, 29.97 or 30000/1001, above 0 and at most 120"),
            (ValueKind::Bitrate, "bits per second like 2000000, 800k or 2M, at most 100000000"),
            (ValueKind::OneOf(AUDIO_CODECS), "one of aac, copy"),
            (ValueKind::StreamMap, "a link label like [video] or an input stream like 0:v, 1:a:0 or 0:v?"),
            (ValueKind::Filtergraph, "a filtergraph"),
            (ValueKind::AudioPacketDuration, "setts=duration='EXPRESSION' (arithmetic on DURATION, PTS and TB)"),
        ] {
            assert_eq!(describe(kind, &limits), text);
        }
    }

    /// `-force_key_frames` takes one expression only: frame 0, then a grid from its first
    /// GOP, both bounded; FFmpeg's other forms (a time list, chapters, any expression) are refused.
    #[test]
    fn forced_keyframes_are_a_bounded_grid_and_nothing_else() {
        assert_eq!(keyframe_grid("expr:eq(n,0)+gte(n,8)*not(mod(n-8,15))"), Some((8, 15)));
        assert_eq!(keyframe_grid("expr:eq(n,0)+gte(n,1000)*not(mod(n-1000,1))"), Some((1000, 1)));
        for refused in [
            "expr:eq(n,0)+gte(n,8)*not(mod(n-9,15))",
            "expr:eq(n,0)+gte(n,0)*not(mod(n-0,15))",
            "expr:eq(n,0)+gte(n,8)*not(mod(n-8,1001))",
            "expr:eq(n,0)+gte(n,8)*not(mod(n-8,15))+1",
            "expr:gte(t,n_forced*0.5)",
            "0,0.266667,0.766667",
            "chapters",
            "expr:eq(n,0)+gte(n,+8)*not(mod(n-+8,15))",
        ] {
            assert_eq!(keyframe_grid(refused), None, "{refused}");
        }
        let mut refusals = Vec::new();
        let mut report = |refusal: Refusal| -> Result<(), Stop> {
            refusals.push(refusal);
            Ok(())
        };
        check_value(
            "-force_key_frames",
            ValueKind::KeyframeGrid,
            "expr:eq(n,0)+gte(n,8)*not(mod(n-8,15))",
            &limits(),
            &mut report,
        )
        .unwrap();
        check_value("-force_key_frames", ValueKind::KeyframeGrid, "expr:random(0)", &limits(), &mut report).unwrap();
        assert_eq!(refusals.len(), 1);
        assert!(refusals[0].reason.contains("not a valid value for -force_key_frames"), "{}", refusals[0].reason);
    }

    /// The table lists every allowed option in order with what its value must be; a flag and
    /// `-i`, which take no literal, say so in their own words.
    #[test]
    fn the_table_lists_every_option_with_its_value() {
        let table = table(&limits());
        let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "-i",
                "-an",
                "-vn",
                "-sn",
                "-dn",
                "-shortest",
                "-ss",
                "-t",
                "-to",
                "-itsoffset",
                "-frames:v",
                "-threads",
                "-g",
                "-keyint_min",
                "-sc_threshold",
                "-bf",
                "-force_key_frames",
                "-rc-lookahead",
                "-crf",
                "-ar",
                "-ac",
                "-r",
                "-b:v",
                "-b:a",
                "-maxrate",
                "-bufsize",
                "-c:v",
                "-codec:v",
                "-vcodec",
                "-c:a",
                "-codec:a",
                "-acodec",
                "-preset",
                "-tune",
                "-pix_fmt",
                "-movflags",
                "-f",
                "-fps_mode",
                "-profile:v",
                "-map",
                "-bsf:v",
                "-bsf:a",
                "-filter_complex",
                "-vf",
                "-af",
            ]
        );
        let value = |name: &str| table.iter().find(|(option, _)| *option == name).map(|(_, value)| value.as_str());
        let input = "an input: `input(n)`, or a temp an earlier step wrote (an ffconcat temp right after `-f concat`)";
        assert_eq!(value("-i"), Some(input));
        assert_eq!(value("-an"), Some("a flag: no value"));
        assert_eq!(value("-ss"), Some("seconds as a plain decimal, at most 70 (the job's media)"));
        assert_eq!(value("-crf"), Some("a whole number from 0 to 51"));
        assert_eq!(value("-f"), Some("one of concat, nut, mp4"));
    }
}
