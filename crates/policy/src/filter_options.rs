//! The options each allowed filter may be given, and the bounds of their values.
//!
//! Why bounds and not only shapes: every allowed filter is safe in kind but not in
//! size. `scale=8000:8000` made one FFmpeg step use 2.4 GiB, `fps=1000000000` grew
//! past 4.4 GiB, `asetnsamples=n=100000000` took 1.2 GiB: each a plain number. So every
//! numeric option has a bound derived from the job ([`PolicyLimits`]): sizes at most the
//! output's, rates at most [`PolicyLimits::max_frame_rate`] and
//! [`PolicyLimits::max_sample_rate`], durations at most the job's media, counts of
//! frames and samples at most what that media holds. Option names are an allow-list
//! per filter; values that FFmpeg evaluates as expressions go through [`expression`].
//!
//! Positional values (`scale=1280:720`) take FFmpeg's order of the filter's options;
//! only the leading options whose order is certain may be given that way.

use crate::numbers::{frame_rate, is_decimal, parse_integer};
use crate::{excerpt, expression, PolicyLimits, Refusal, Rule};

/// What an option's value must be.
#[derive(Debug, Clone, Copy)]
enum Value {
    /// Seconds, a plain decimal, at most the job's media seconds.
    Seconds,
    /// A count of video frames within the job's media at the highest frame rate.
    Frames,
    /// A count of audio samples within the job's media at the highest sample rate.
    Samples,
    /// Samples in one audio frame: at most one second at the highest sample rate.
    SamplesPerFrame,
    Width,
    Height,
    FrameRate,
    SampleRate,
    /// A whole number in `min..=max`.
    Count {
        min: u64,
        max: u64,
    },
    /// A signed plain decimal in `min..=max`.
    Level {
        min: f64,
        max: f64,
    },
    /// `1`, `4/3`, `1.5`: a positive ratio of at most 100.
    Ratio,
    /// `1001/30000`: a positive fraction of whole numbers up to 6 digits each.
    TimeBase,
    Word(&'static [&'static str]),
    Colour,
    Expression,
    /// `y+u+v`: planes by name, each at most once (FFmpeg's flags, without `-` or numbers).
    Planes,
    /// `0x001020`: for each output plane from the first, a byte naming an input (high
    /// nibble) and its plane (low), each from 0 to 3: `mergeplanes` takes at most 4 inputs.
    PlaneMapping,
}

struct OptionSpec {
    /// The option's names (FFmpeg aliases included).
    names: &'static [&'static str],
    value: Value,
}

struct FilterSpec {
    name: &'static str,
    /// How many of `options`, from the first, may be given without a name.
    positional: usize,
    options: &'static [OptionSpec],
}

const fn option(names: &'static [&'static str], value: Value) -> OptionSpec {
    OptionSpec { names, value }
}

const BOOLEAN: Value = Value::Word(&["0", "1", "true", "false"]);
const FADE_TYPE: Value = Value::Word(&["in", "out"]);
const AUDIO_CURVES: Value = Value::Word(&[
    "tri", "qsin", "esin", "hsin", "log", "ipar", "qua", "cub", "squ", "cbr", "par", "exp", "iqsin", "ihsin", "dese",
    "desi", "losi", "sinc", "isinc", "nofade",
]);
/// FFmpeg 5.1's built-in `xfade` transitions; not `custom`, which runs an expression per pixel.
const XFADE_TRANSITIONS: Value = Value::Word(&[
    "fade",
    "wipeleft",
    "wiperight",
    "wipeup",
    "wipedown",
    "slideleft",
    "slideright",
    "slideup",
    "slidedown",
    "circlecrop",
    "rectcrop",
    "distance",
    "fadeblack",
    "fadewhite",
    "radial",
    "smoothleft",
    "smoothright",
    "smoothup",
    "smoothdown",
    "circleopen",
    "circleclose",
    "vertopen",
    "vertclose",
    "horzopen",
    "horzclose",
    "dissolve",
    "pixelize",
    "diagtl",
    "diagtr",
    "diagbl",
    "diagbr",
    "hlslice",
    "hrslice",
    "vuslice",
    "vdslice",
    "hblur",
    "fadegrays",
    "wipetl",
    "wipetr",
    "wipebl",
    "wipebr",
    "squeezeh",
    "squeezev",
]);
const PAD_MODES: Value = Value::Word(&["add", "clone"]);

const FILTERS: &[FilterSpec] = &[
    FilterSpec {
        name: "trim",
        positional: 0,
        options: &[
            option(&["start", "starti"], Value::Seconds),
            option(&["end", "endi"], Value::Seconds),
            option(&["duration", "durationi"], Value::Seconds),
            option(&["start_frame"], Value::Frames),
            option(&["end_frame"], Value::Frames),
        ],
    },
    FilterSpec {
        name: "atrim",
        positional: 0,
        options: &[
            option(&["start", "starti"], Value::Seconds),
            option(&["end", "endi"], Value::Seconds),
            option(&["duration", "durationi"], Value::Seconds),
            option(&["start_sample"], Value::Samples),
            option(&["end_sample"], Value::Samples),
        ],
    },
    FilterSpec { name: "setpts", positional: 1, options: &[option(&["expr"], Value::Expression)] },
    FilterSpec { name: "asetpts", positional: 1, options: &[option(&["expr"], Value::Expression)] },
    FilterSpec {
        name: "fps",
        positional: 1,
        options: &[
            option(&["fps"], Value::FrameRate),
            option(&["round"], Value::Word(&["zero", "inf", "down", "up", "near"])),
            option(&["eof_action"], Value::Word(&["round", "pass"])),
        ],
    },
    FilterSpec {
        name: "scale",
        positional: 2,
        options: &[
            option(&["w", "width"], Value::Width),
            option(&["h", "height"], Value::Height),
            option(&["force_original_aspect_ratio"], Value::Word(&["disable", "decrease", "increase"])),
            option(&["force_divisible_by"], Value::Count { min: 1, max: 16 }),
            option(
                &["flags"],
                Value::Word(&["fast_bilinear", "bilinear", "bicubic", "neighbor", "area", "lanczos", "spline"]),
            ),
            option(&["in_range", "out_range"], Value::Word(&["auto", "tv", "pc", "limited", "full"])),
        ],
    },
    FilterSpec {
        name: "pad",
        positional: 5,
        options: &[
            option(&["w", "width"], Value::Width),
            option(&["h", "height"], Value::Height),
            option(&["x"], Value::Expression),
            option(&["y"], Value::Expression),
            option(&["color"], Value::Colour),
            option(&["eval"], Value::Word(&["init", "frame"])),
        ],
    },
    FilterSpec { name: "setsar", positional: 1, options: &[option(&["r", "sar", "ratio"], Value::Ratio)] },
    FilterSpec {
        name: "format",
        positional: 1,
        options: &[option(&["pix_fmts"], Value::Word(&["yuv420p", "yuvj420p", "nv12"]))],
    },
    FilterSpec {
        name: "aformat",
        positional: 0,
        options: &[
            option(&["sample_fmts", "f"], Value::Word(&["fltp", "flt", "s16", "s16p", "s32", "s32p", "dbl", "dblp"])),
            option(&["sample_rates", "r"], Value::SampleRate),
            option(&["channel_layouts", "cl"], Value::Word(&["mono", "stereo"])),
        ],
    },
    FilterSpec { name: "settb", positional: 1, options: &[option(&["expr", "tb"], Value::TimeBase)] },
    FilterSpec {
        name: "tpad",
        positional: 0,
        options: &[
            option(&["start"], Value::Frames),
            option(&["stop"], Value::Frames),
            option(&["start_mode"], PAD_MODES),
            option(&["stop_mode"], PAD_MODES),
            option(&["start_duration"], Value::Seconds),
            option(&["stop_duration"], Value::Seconds),
            option(&["color"], Value::Colour),
        ],
    },
    FilterSpec {
        name: "apad",
        positional: 0,
        options: &[
            option(&["packet_size"], Value::Count { min: 1, max: 65_536 }),
            option(&["pad_len"], Value::Samples),
            option(&["whole_len"], Value::Samples),
            option(&["pad_dur"], Value::Seconds),
            option(&["whole_dur"], Value::Seconds),
        ],
    },
    FilterSpec {
        name: "xfade",
        positional: 0,
        options: &[
            option(&["transition"], XFADE_TRANSITIONS),
            option(&["duration"], Value::Seconds),
            option(&["offset"], Value::Seconds),
        ],
    },
    FilterSpec {
        name: "fade",
        positional: 0,
        options: &[
            option(&["type", "t"], FADE_TYPE),
            option(&["start_frame", "s"], Value::Frames),
            option(&["nb_frames", "n"], Value::Frames),
            option(&["start_time", "st"], Value::Seconds),
            option(&["duration", "d"], Value::Seconds),
            option(&["color", "c"], Value::Colour),
            option(&["alpha"], BOOLEAN),
        ],
    },
    FilterSpec {
        name: "afade",
        positional: 0,
        options: &[
            option(&["type", "t"], FADE_TYPE),
            option(&["start_sample", "ss"], Value::Samples),
            option(&["nb_samples", "ns"], Value::Samples),
            option(&["start_time", "st"], Value::Seconds),
            option(&["duration", "d"], Value::Seconds),
            option(&["curve", "c"], AUDIO_CURVES),
        ],
    },
    FilterSpec {
        name: "volume",
        positional: 1,
        options: &[
            option(&["volume"], Value::Expression),
            option(&["eval"], Value::Word(&["once", "frame"])),
            option(&["precision"], Value::Word(&["fixed", "float", "double"])),
        ],
    },
    FilterSpec {
        name: "loudnorm",
        positional: 0,
        options: &[
            option(&["I", "i"], Value::Level { min: -70.0, max: -5.0 }),
            option(&["TP", "tp"], Value::Level { min: -9.0, max: 0.0 }),
            option(&["LRA", "lra"], Value::Level { min: 1.0, max: 50.0 }),
            option(&["measured_I", "measured_i"], Value::Level { min: -99.0, max: 0.0 }),
            option(&["measured_TP", "measured_tp"], Value::Level { min: -99.0, max: 99.0 }),
            option(&["measured_LRA", "measured_lra"], Value::Level { min: 0.0, max: 99.0 }),
            option(&["measured_thresh"], Value::Level { min: -99.0, max: 0.0 }),
            option(&["offset"], Value::Level { min: -99.0, max: 99.0 }),
            option(&["linear"], BOOLEAN),
            option(&["dual_mono"], BOOLEAN),
        ],
    },
    FilterSpec {
        name: "aresample",
        positional: 1,
        options: &[option(&["sample_rate", "osr", "out_sample_rate"], Value::SampleRate)],
    },
    FilterSpec {
        name: "asetnsamples",
        positional: 2,
        options: &[option(&["nb_out_samples", "n"], Value::SamplesPerFrame), option(&["pad", "p"], BOOLEAN)],
    },
    FilterSpec {
        name: "concat",
        positional: 0,
        options: &[
            option(&["n"], Value::Count { min: 1, max: 64 }),
            option(&["v"], Value::Count { min: 0, max: 1 }),
            option(&["a"], Value::Count { min: 0, max: 1 }),
        ],
    },
    FilterSpec { name: "split", positional: 1, options: &[option(&["outputs"], Value::Count { min: 1, max: 8 })] },
    FilterSpec { name: "asplit", positional: 1, options: &[option(&["outputs"], Value::Count { min: 1, max: 8 })] },
    // The planner's crossfade, one 4:2:0 plane at a time: each output plane is a copy of
    // one input plane, so a frame never grows beyond the frames it is made of.
    FilterSpec { name: "extractplanes", positional: 1, options: &[option(&["planes"], Value::Planes)] },
    FilterSpec {
        name: "mergeplanes",
        positional: 2,
        options: &[
            option(&["mapping"], Value::PlaneMapping),
            option(&["format"], Value::Word(&["yuv420p", "yuvj420p"])),
        ],
    },
    FilterSpec { name: "null", positional: 0, options: &[] },
    FilterSpec { name: "anull", positional: 0, options: &[] },
    // Per-pixel, no option reaches a file, and the frame never grows: a mirrored practice
    // video, a clip framed closer (a plugin's slot filters, before the fit to the output).
    FilterSpec { name: "hflip", positional: 0, options: &[] },
    FilterSpec { name: "vflip", positional: 0, options: &[] },
    FilterSpec {
        name: "crop",
        positional: 4,
        options: &[
            // FFmpeg refuses a crop larger than its input, so any size keeps the frame's memory.
            option(&["out_w", "w"], Value::Expression),
            option(&["out_h", "h"], Value::Expression),
            option(&["x"], Value::Expression),
            option(&["y"], Value::Expression),
            option(&["keep_aspect"], BOOLEAN),
            option(&["exact"], BOOLEAN),
        ],
    },
    FilterSpec {
        name: "acrossfade",
        positional: 0,
        options: &[
            option(&["nb_samples", "ns"], Value::Samples),
            option(&["duration", "d"], Value::Seconds),
            option(&["overlap", "o"], BOOLEAN),
            option(&["curve1", "c1"], AUDIO_CURVES),
            option(&["curve2", "c2"], AUDIO_CURVES),
        ],
    },
];

/// The filter names the graph parser accepts.
pub(crate) fn is_allowed_filter(name: &str) -> bool {
    FILTERS.iter().any(|filter| filter.name == name)
}

/// One filter's options, in order: `(name, value)` with `name` None for a positional
/// value. Each value has had every level of quoting removed.
pub(crate) struct FilterOptions<'a> {
    spec: &'static FilterSpec,
    limits: &'a PolicyLimits,
    next_positional: usize,
    named_seen: bool,
}

impl<'a> FilterOptions<'a> {
    /// None when `filter` is not on the allow-list.
    pub(crate) fn new(filter: &str, limits: &'a PolicyLimits) -> Option<FilterOptions<'a>> {
        let spec = FILTERS.iter().find(|spec| spec.name == filter)?;
        Some(FilterOptions { spec, limits, next_positional: 0, named_seen: false })
    }

    pub(crate) fn check(&mut self, name: Option<&str>, value: &str) -> Result<(), Refusal> {
        let filter = self.spec.name;
        let option = match name {
            Some(name) => {
                self.named_seen = true;
                self.spec.options.iter().find(|option| option.names.contains(&name)).ok_or_else(|| {
                    let known: Vec<&str> =
                        self.spec.options.iter().flat_map(|option| option.names.iter().copied()).collect();
                    let allowed = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
                    Refusal::new(
                        Rule::BadFilterOption,
                        format!("{filter} has no allowed option {}; allowed: {allowed}", excerpt(name)),
                    )
                })?
            }
            None => {
                if self.named_seen {
                    return Err(Refusal::new(
                        Rule::BadFilterOption,
                        format!("{filter}: a value without a name after a named option"),
                    ));
                }
                let index = self.next_positional;
                self.next_positional += 1;
                if index >= self.spec.positional {
                    let reason = format!(
                        "{filter} takes at most {} values without a name; give the option's name",
                        self.spec.positional
                    );
                    return Err(Refusal::new(Rule::BadFilterOption, reason));
                }
                self.spec
                    .options
                    .get(index)
                    .ok_or_else(|| Refusal::new(Rule::BadFilterOption, format!("{filter}: too many values")))?
            }
        };
        let option_name = option.names.first().copied().unwrap_or_default();
        check_value(filter, option_name, option.value, value, self.limits)
    }
}

fn check_value(filter: &str, option: &str, kind: Value, value: &str, limits: &PolicyLimits) -> Result<(), Refusal> {
    if let Value::Expression = kind {
        return expression::check(filter, option, value);
    }
    if let (Value::Width | Value::Height, Some((bound, formula))) = (kind, clamped_size(value)) {
        let most = if let Value::Width = kind { limits.max_frame_width } else { limits.max_frame_height };
        if parse_integer(bound).is_some_and(|n| (1..=u64::from(most)).contains(&n)) {
            return expression::check(filter, option, formula);
        }
    }
    let frames_bound = limits.max_frames();
    let samples_bound = limits.max_samples();
    let within = match kind {
        Value::Seconds => seconds(value).is_some_and(|s| s <= limits.max_media_seconds),
        Value::Frames => parse_integer(value).is_some_and(|n| n <= frames_bound),
        Value::Samples => parse_integer(value).is_some_and(|n| n <= samples_bound),
        Value::SamplesPerFrame => {
            parse_integer(value).is_some_and(|n| (1..=u64::from(limits.max_sample_rate)).contains(&n))
        }
        Value::Width => parse_integer(value).is_some_and(|n| (1..=u64::from(limits.max_frame_width)).contains(&n)),
        Value::Height => parse_integer(value).is_some_and(|n| (1..=u64::from(limits.max_frame_height)).contains(&n)),
        Value::FrameRate => frame_rate(value).is_some_and(|fps| fps > 0.0 && fps <= limits.max_frame_rate),
        Value::SampleRate => {
            parse_integer(value).is_some_and(|n| (MIN_SAMPLE_RATE..=u64::from(limits.max_sample_rate)).contains(&n))
        }
        Value::Count { min, max } => parse_integer(value).is_some_and(|n| (min..=max).contains(&n)),
        Value::Level { min, max } => signed_decimal(value).is_some_and(|level| (min..=max).contains(&level)),
        Value::Ratio => ratio(value).is_some_and(|r| r > 0.0 && r <= MAX_RATIO),
        Value::TimeBase => time_base(value),
        Value::Word(words) => words.contains(&value),
        Value::Colour => is_colour(value),
        Value::Expression => true,
        Value::Planes => is_plane_list(value),
        Value::PlaneMapping => is_plane_mapping(value),
    };
    if within {
        Ok(())
    } else {
        let reason =
            format!("the {filter} option {option}={} is outside its bound: {}", excerpt(value), describe(kind, limits));
        Err(Refusal::new(Rule::FilterValueOutOfBounds, reason))
    }
}

/// A size given as `max(1,min(N,FORMULA))`: `(N, FORMULA)`. FFmpeg's `min` and `max`
/// (`FFMIN`, `FFMAX`) keep the result within `1..=N` whatever the formula gives (0,
/// negative, infinite or NaN: `min(N,NaN)` is N), so with N within the output's size the
/// size is as bounded as a plain number, while the formula may read the input's (the
/// planner fits a clip by its display size: `720*iw*sar/ih`). The formula passes the
/// expression allow-list, which also keeps its parentheses balanced: it cannot close
/// the `min(` around it.
fn clamped_size(value: &str) -> Option<(&str, &str)> {
    value.strip_prefix("max(1,min(")?.strip_suffix("))")?.split_once(',')
}

const MIN_SAMPLE_RATE: u64 = 8_000;
const MAX_RATIO: f64 = 100.0;

/// A filter's name, how many options it takes by position, and each option (aliases
/// joined by `|`) with what its value must be.
pub(crate) type FilterRow = (&'static str, usize, Vec<(String, String)>);

/// Every allowed filter with its options (aliases joined by `|`), how many may be
/// given by position, and what each value must be.
pub(crate) fn table(limits: &PolicyLimits) -> Vec<FilterRow> {
    FILTERS
        .iter()
        .map(|filter| {
            let options =
                filter.options.iter().map(|option| (option.names.join("|"), describe(option.value, limits))).collect();
            (filter.name, filter.positional, options)
        })
        .collect()
}

fn describe(kind: Value, limits: &PolicyLimits) -> String {
    match kind {
        Value::Seconds => format!("seconds as a plain decimal, at most {}", limits.max_media_seconds),
        Value::Frames => format!("a whole number of frames, at most {}", limits.max_frames()),
        Value::Samples => format!("a whole number of samples, at most {}", limits.max_samples()),
        Value::SamplesPerFrame => format!("a whole number of samples from 1 to {}", limits.max_sample_rate),
        Value::Width => format!(
            "a whole number of pixels from 1 to the output's width, {}, or max(1,min(N,EXPRESSION)) with N one",
            limits.max_frame_width
        ),
        Value::Height => format!(
            "a whole number of pixels from 1 to the output's height, {}, or max(1,min(N,EXPRESSION)) with N one",
            limits.max_frame_height
        ),
        Value::FrameRate => {
            format!("a frame rate like 30 or 30000/1001, above 0 and at most {}", limits.max_frame_rate)
        }
        Value::SampleRate => format!("a sample rate from {MIN_SAMPLE_RATE} to {}", limits.max_sample_rate),
        Value::Count { min, max } => format!("a whole number from {min} to {max}"),
        Value::Level { min, max } => format!("a decimal from {min} to {max}"),
        Value::Ratio => format!("a ratio like 1 or 4/3, above 0 and at most {MAX_RATIO}"),
        Value::TimeBase => "a fraction like 1/30 or 1001/30000".to_owned(),
        Value::Word(words) => format!("one of {}", words.join(", ")),
        Value::Colour => format!("one of {} or a hex colour like 0x000000", COLOUR_NAMES.join(", ")),
        Value::Expression => "an expression".to_owned(),
        Value::Planes => format!("planes joined by +, each at most once, from {}", PLANE_NAMES.join(", ")),
        Value::PlaneMapping => {
            "0x and 2 to 8 hex digits, a pair per output plane (input, plane), each digit from 0 to 3".to_owned()
        }
    }
}

const PLANE_NAMES: &[&str] = &["y", "u", "v", "a", "r", "g", "b"];

/// `y+u+v`: 1 to 4 distinct names from [`PLANE_NAMES`] (a frame has at most 4 planes).
fn is_plane_list(text: &str) -> bool {
    let names: Vec<&str> = text.split('+').collect();
    (1..=4).contains(&names.len())
        && names.iter().all(|name| PLANE_NAMES.contains(name))
        && names.iter().enumerate().all(|(at, name)| !names[..at].contains(name))
}

/// `0x001020`: 1 to 4 bytes in hex, each digit 0-3 (an input of at most 4, a plane of at most 4).
fn is_plane_mapping(text: &str) -> bool {
    text.strip_prefix("0x").is_some_and(|hex| {
        matches!(hex.len(), 2 | 4 | 6 | 8) && hex.bytes().all(|digit| (b'0'..=b'3').contains(&digit))
    })
}

fn seconds(text: &str) -> Option<f64> {
    is_decimal(text, 6, 9).then(|| text.parse().ok()).flatten()
}

fn signed_decimal(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    is_decimal(unsigned, 3, 6).then(|| text.parse().ok()).flatten()
}

fn ratio(text: &str) -> Option<f64> {
    match text.split_once('/') {
        Some((num, den)) => {
            let (num, den) = (parse_integer(num)?, parse_integer(den)?);
            (den > 0).then(|| num as f64 / den as f64)
        }
        None => is_decimal(text, 3, 6).then(|| text.parse().ok()).flatten(),
    }
}

fn time_base(text: &str) -> bool {
    let Some((num, den)) = text.split_once('/') else {
        return false;
    };
    let digits = |part: &str| (1..=6).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    digits(num) && digits(den) && parse_integer(num).is_some_and(|n| n > 0) && parse_integer(den).is_some_and(|d| d > 0)
}

const COLOUR_NAMES: &[&str] = &["black", "white", "gray", "red", "green", "blue"];

/// A name from [`COLOUR_NAMES`], or `0xRRGGBB`/`#RRGGBB` with optional alpha. Not
/// FFmpeg's `random`, nor its `@alpha` suffixes.
fn is_colour(text: &str) -> bool {
    if COLOUR_NAMES.contains(&text) {
        return true;
    }
    let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix('#'));
    hex.is_some_and(|hex| matches!(hex.len(), 6 | 8) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PolicyLimits {
        PolicyLimits::for_job(1280, 720, 60.0)
    }

    fn check_all(filter: &str, options: &[(Option<&str>, &str)]) -> Result<(), Rule> {
        let limits = limits();
        let mut checker = FilterOptions::new(filter, &limits).ok_or(Rule::ForbiddenFilter)?;
        for (name, value) in options {
            checker.check(*name, value).map_err(|refusal| refusal.rule)?;
        }
        Ok(())
    }

    #[test]
    fn sizes_are_at_most_the_outputs() {
        assert_eq!(check_all("scale", &[(None, "1280"), (None, "720")]), Ok(()));
        assert_eq!(check_all("scale", &[(None, "1281"), (None, "720")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("scale", &[(Some("h"), "721")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("pad", &[(Some("width"), "8000")]), Err(Rule::FilterValueOutOfBounds));
        // Negative and zero sizes ask FFmpeg to derive the size from the input's.
        assert_eq!(check_all("scale", &[(None, "-2"), (None, "720")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("scale", &[(None, "0"), (None, "720")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("scale", &[(None, "iw*10"), (None, "720")]), Err(Rule::FilterValueOutOfBounds));
    }

    /// A size may read the input's (a clip fitted by its display size) when `min` and
    /// `max` hold it within 1 and a bound that is itself within the output's size.
    #[test]
    fn a_size_formula_is_clamped_within_the_outputs_size() {
        let fitted = [
            (Some("w"), "max(1,min(1280,round(720*iw*sar/ih)))"),
            (Some("h"), "max(1,min(720,round(1280*ih/(iw*sar))))"),
        ];
        assert_eq!(check_all("scale", &fitted), Ok(()));
        assert_eq!(check_all("pad", &[(Some("w"), "max(1,min(1280,iw))")]), Ok(()));
        // The bound is over the output's size, or not a plain number.
        assert_eq!(check_all("scale", &[(Some("w"), "max(1,min(1281,iw))")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("scale", &[(Some("h"), "max(1,min(721,ih))")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("scale", &[(Some("w"), "max(1,min(iw,1280))")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("scale", &[(Some("w"), "max(1,min(0,iw))")]), Err(Rule::FilterValueOutOfBounds));
        // Anything but the exact clamp is a plain size, and a formula is none.
        assert_eq!(check_all("scale", &[(Some("w"), "min(1280,iw)")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("scale", &[(Some("w"), "max(2,min(1280,iw))")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("scale", &[(Some("w"), "max(1,min(1280,iw))*10")]), Err(Rule::FilterValueOutOfBounds));
        // The formula passes the expression allow-list and cannot close the clamp early.
        assert_eq!(check_all("scale", &[(Some("w"), "max(1,min(1280,random(0)))")]), Err(Rule::BadExpression));
        assert_eq!(check_all("scale", &[(Some("w"), "max(1,min(1280,1)),iw*(10))")]), Err(Rule::BadExpression));
        let two = "max(1,min(1280,1))+max(1,min(1280,iw))";
        assert_eq!(check_all("scale", &[(Some("w"), two)]), Err(Rule::BadExpression));
    }

    #[test]
    fn rates_counts_and_durations_are_bounded() {
        assert_eq!(check_all("fps", &[(None, "30000/1001")]), Ok(()));
        assert_eq!(check_all("fps", &[(None, "1000000000")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("fps", &[(Some("fps"), "121")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("asetnsamples", &[(Some("n"), "4800")]), Ok(()));
        assert_eq!(check_all("asetnsamples", &[(Some("n"), "100000000")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("aresample", &[(None, "2000000000")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("aresample", &[(None, "48000")]), Ok(()));
        assert_eq!(check_all("tpad", &[(Some("stop_duration"), "70.000001")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("tpad", &[(Some("stop"), "-1")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("apad", &[(Some("whole_len"), "999999999")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("split", &[(None, "1000")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("loudnorm", &[(Some("I"), "-16"), (Some("TP"), "-1.5"), (Some("LRA"), "11")]), Ok(()));
        assert_eq!(check_all("loudnorm", &[(Some("I"), "-100")]), Err(Rule::FilterValueOutOfBounds));
    }

    #[test]
    fn mirrors_and_crops_take_only_their_own_options() {
        assert_eq!(check_all("hflip", &[]), Ok(()));
        assert_eq!(check_all("vflip", &[(None, "1")]), Err(Rule::BadFilterOption));
        assert_eq!(check_all("crop", &[(None, "iw*0.8"), (None, "ih*0.8"), (None, "(iw-ow)/2"), (None, "0")]), Ok(()));
        assert_eq!(check_all("crop", &[(Some("w"), "min(iw,ih)"), (Some("exact"), "1")]), Ok(()));
        assert_eq!(check_all("crop", &[(Some("w"), "random(0)*iw")]), Err(Rule::BadExpression));
        assert_eq!(check_all("crop", &[(Some("x"), "pos")]), Err(Rule::BadExpression), "a byte offset is no position");
        assert_eq!(check_all("crop", &[(Some("filename"), "x")]), Err(Rule::BadFilterOption));
    }

    #[test]
    fn only_listed_options_and_leading_positions() {
        assert_eq!(check_all("xfade", &[(Some("transition"), "custom")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("xfade", &[(Some("expr"), "1")]), Err(Rule::BadFilterOption));
        assert_eq!(check_all("trim", &[(Some("enable"), "1")]), Err(Rule::BadFilterOption));
        assert_eq!(check_all("trim", &[(None, "1")]), Err(Rule::BadFilterOption));
        assert_eq!(check_all("null", &[(None, "1")]), Err(Rule::BadFilterOption));
        assert_eq!(check_all("scale", &[(Some("w"), "640"), (None, "360")]), Err(Rule::BadFilterOption));
        assert_eq!(check_all("fade", &[(Some("c"), "random")]), Err(Rule::FilterValueOutOfBounds));
        assert_eq!(check_all("fade", &[(Some("c"), "0xFFFFFF")]), Ok(()));
        assert_eq!(check_all("volume", &[(None, "while(1,1)")]), Err(Rule::BadExpression));
        assert_eq!(check_all("setpts", &[(None, "PTS-STARTPTS")]), Ok(()));
        assert_eq!(check_all("settb", &[(None, "1001/30000")]), Ok(()));
        assert_eq!(check_all("settb", &[(None, "1/0")]), Err(Rule::FilterValueOutOfBounds));
    }

    #[test]
    fn every_filter_option_has_a_name_and_every_positional_count_fits() {
        for filter in FILTERS {
            assert!(filter.positional <= filter.options.len(), "{}", filter.name);
            assert!(filter.options.iter().all(|option| !option.names.is_empty()), "{}", filter.name);
        }
    }

    /// `loudnorm`'s levels are signed decimals: each bound itself passes, a millionth beyond it does not.
    #[test]
    fn loudnorm_levels_are_bounded_at_both_ends() {
        for (option, below, min, max, above) in [
            ("I", "-70.000001", "-70", "-5", "-4.999999"),
            ("TP", "-9.000001", "-9", "0", "0.000001"),
            ("LRA", "0.999999", "1", "50", "50.000001"),
            ("measured_I", "-99.000001", "-99", "0", "0.000001"),
            ("measured_TP", "-99.000001", "-99", "99", "99.000001"),
            ("measured_LRA", "-0.000001", "0", "99", "99.000001"),
            ("measured_thresh", "-99.000001", "-99", "0", "0.000001"),
            ("offset", "-99.000001", "-99", "99", "99.000001"),
        ] {
            for within in [min, max] {
                assert_eq!(check_all("loudnorm", &[(Some(option), within)]), Ok(()), "{option}={within}");
            }
            for outside in [below, above] {
                assert_eq!(
                    check_all("loudnorm", &[(Some(option), outside)]),
                    Err(Rule::FilterValueOutOfBounds),
                    "{option}={outside}"
                );
            }
        }
    }

    /// `fps=0` asks for no frame at all: a filter's frame rate is above 0 and at most the highest.
    #[test]
    fn a_filters_frame_rate_is_above_zero_and_at_most_the_highest() {
        for rate in ["0.000001", "1/1000", "120", "120/1"] {
            assert_eq!(check_all("fps", &[(None, rate)]), Ok(()), "{rate}");
        }
        for rate in ["0", "0.0", "0/1", "120.000001", "120001/1000"] {
            assert_eq!(check_all("fps", &[(None, rate)]), Err(Rule::FilterValueOutOfBounds), "{rate}");
        }
    }

    /// A sample aspect ratio is a quotient above 0 and at most 100, never a division by zero.
    #[test]
    fn a_ratio_is_above_zero_and_at_most_100() {
        assert_eq!(ratio("4/3"), Some(4.0 / 3.0));
        assert_eq!(ratio("200/2"), Some(100.0));
        assert_eq!(ratio("1.5"), Some(1.5));
        assert_eq!(ratio("1/0"), None);
        assert_eq!(ratio("0/0"), None);
        assert_eq!(ratio("1/x"), None);
        for sar in ["1", "4/3", "0.001", "100", "200/2", "1/200"] {
            assert_eq!(check_all("setsar", &[(None, sar)]), Ok(()), "{sar}");
        }
        for sar in ["0", "0/1", "100.000001", "101", "201/2", "1/0", "x"] {
            assert_eq!(check_all("setsar", &[(None, sar)]), Err(Rule::FilterValueOutOfBounds), "{sar}");
        }
    }

    /// A time base is a fraction of two whole numbers above 0 with 1 to 6 digits each.
    #[test]
    fn a_time_base_is_a_fraction_of_positive_numbers_of_up_to_six_digits() {
        for tb in ["1/30", "1001/30000", "999999/999999"] {
            assert_eq!(check_all("settb", &[(None, tb)]), Ok(()), "{tb}");
        }
        for tb in ["0/1", "1/0", "1234567/1", "1/1234567", "/30", "1/", "30", "1/3a", "+1/30"] {
            assert_eq!(check_all("settb", &[(None, tb)]), Err(Rule::FilterValueOutOfBounds), "{tb}");
        }
    }

    /// A colour is a listed name or exactly 6 or 8 hex digits after `0x` or `#`.
    #[test]
    fn a_colour_is_a_name_or_six_or_eight_hex_digits() {
        for colour in ["white", "0x00ff00", "#00FF00", "0x00ff0080", "#00FF0080"] {
            assert_eq!(check_all("fade", &[(Some("c"), colour)]), Ok(()), "{colour}");
        }
        for colour in ["0x12345", "0x1234567", "0x123456789", "#12345", "0xGGGGGG", "#00ff0g", "0x", "00ff00", "White"]
        {
            assert_eq!(check_all("fade", &[(Some("c"), colour)]), Err(Rule::FilterValueOutOfBounds), "{colour}");
        }
    }

    /// What `policy list` and docs/POLICY.md's table say each kind of value must be, with the job's bounds.
    #[test]
    fn each_kind_of_value_is_described_with_its_bound() {
        let limits = limits();
        for (kind, text) in [
            (Value::Seconds, "seconds as a plain decimal, at most 70"),
            (Value::Frames, "a whole number of frames, at most 8400"),
            (Value::Samples, "a whole number of samples, at most 13440000"),
            (Value::SamplesPerFrame, "a whole number of samples from 1 to 192000"),
            (
                Value::Width,
                "a whole number of pixels from 1 to the output's width, 1280, or max(1,min(N,EXPRESSION)) with N one",
            ),
            (
                Value::Height,
                "a whole number of pixels from 1 to the output's height, 720, or max(1,min(N,EXPRESSION)) with N one",
            ),
            (Value::FrameRate, "a frame rate like 30 or 30000/1001, above 0 and at most 120"),
            (Value::SampleRate, "a sample rate from 8000 to 192000"),
            (Value::Count { min: 1, max: 16 }, "a whole number from 1 to 16"),
            (Value::Level { min: -70.0, max: -5.0 }, "a decimal from -70 to -5"),
            (Value::Ratio, "a ratio like 1 or 4/3, above 0 and at most 100"),
            (Value::TimeBase, "a fraction like 1/30 or 1001/30000"),
            (FADE_TYPE, "one of in, out"),
            (Value::Colour, "one of black, white, gray, red, green, blue or a hex colour like 0x000000"),
            (Value::Expression, "an expression"),
            (Value::Planes, "planes joined by +, each at most once, from y, u, v, a, r, g, b"),
            (
                Value::PlaneMapping,
                "0x and 2 to 8 hex digits, a pair per output plane (input, plane), each digit from 0 to 3",
            ),
        ] {
            assert_eq!(describe(kind, &limits), text);
        }
    }

    /// `extractplanes` names planes, at most the four a frame has, each once; `mergeplanes`
    /// maps at most four inputs' planes into a 4:2:0 frame and names no other format.
    #[test]
    fn planes_are_named_once_and_mappings_stay_within_four_inputs() {
        assert_eq!(check_all("extractplanes", &[(None, "y+u+v")]), Ok(()));
        assert_eq!(check_all("extractplanes", &[(Some("planes"), "u")]), Ok(()));
        for bad in ["y+y", "y+u+v+a+r", "", "y+", "x", "y-u", "7", "y+u+v+a+b"] {
            assert_eq!(check_all("extractplanes", &[(None, bad)]), Err(Rule::FilterValueOutOfBounds), "{bad}");
        }
        assert_eq!(check_all("mergeplanes", &[(None, "0x001020"), (None, "yuv420p")]), Ok(()));
        assert_eq!(check_all("mergeplanes", &[(Some("mapping"), "0x00010203"), (Some("format"), "yuvj420p")]), Ok(()));
        for bad in ["0x04", "0x40", "0x0", "0x0010203040", "001020", "-1", "0x00102g", "0x"] {
            assert_eq!(check_all("mergeplanes", &[(None, bad)]), Err(Rule::FilterValueOutOfBounds), "{bad}");
        }
        for format in ["yuv444p", "gray", "rgba", "yuv420p16le"] {
            let found = check_all("mergeplanes", &[(None, "0x001020"), (None, format)]);
            assert_eq!(found, Err(Rule::FilterValueOutOfBounds), "{format}");
        }
        assert_eq!(check_all("mergeplanes", &[(Some("map0s"), "0")]), Err(Rule::BadFilterOption));
    }

    /// The table lists every allowed filter in order, with its positional count and each
    /// option (aliases joined by `|`) described under the job's bounds.
    #[test]
    fn the_table_lists_every_filter_with_its_options() {
        let table = table(&limits());
        let names: Vec<&str> = table.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(
            names,
            [
                "trim",
                "atrim",
                "setpts",
                "asetpts",
                "fps",
                "scale",
                "pad",
                "setsar",
                "format",
                "aformat",
                "settb",
                "tpad",
                "apad",
                "xfade",
                "fade",
                "afade",
                "volume",
                "loudnorm",
                "aresample",
                "asetnsamples",
                "concat",
                "split",
                "asplit",
                "extractplanes",
                "mergeplanes",
                "null",
                "anull",
                "hflip",
                "vflip",
                "crop",
                "acrossfade",
            ]
        );
        let row = |name: &str| table.iter().find(|(filter, _, _)| *filter == name).cloned();
        let options = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect::<Vec<_>>()
        };
        assert_eq!(
            row("scale"),
            Some((
                "scale",
                2,
                options(&[
                    ("w|width", "a whole number of pixels from 1 to the output's width, 1280, or max(1,min(N,EXPRESSION)) with N one"),
                    ("h|height", "a whole number of pixels from 1 to the output's height, 720, or max(1,min(N,EXPRESSION)) with N one"),
                    ("force_original_aspect_ratio", "one of disable, decrease, increase"),
                    ("force_divisible_by", "a whole number from 1 to 16"),
                    ("flags", "one of fast_bilinear, bilinear, bicubic, neighbor, area, lanczos, spline"),
                    ("in_range|out_range", "one of auto, tv, pc, limited, full"),
                ])
            ))
        );
        assert_eq!(
            row("trim"),
            Some((
                "trim",
                0,
                options(&[
                    ("start|starti", "seconds as a plain decimal, at most 70"),
                    ("end|endi", "seconds as a plain decimal, at most 70"),
                    ("duration|durationi", "seconds as a plain decimal, at most 70"),
                    ("start_frame", "a whole number of frames, at most 8400"),
                    ("end_frame", "a whole number of frames, at most 8400"),
                ])
            ))
        );
        assert_eq!(row("null"), Some(("null", 0, Vec::new())));
        assert_eq!(row("setpts"), Some(("setpts", 1, options(&[("expr", "an expression")]))));
    }
}
