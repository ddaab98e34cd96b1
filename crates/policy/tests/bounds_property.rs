//! Property: a plan built from the allowed options and filters, with random values,
//! passes the policy exactly when every value is within the bound the issue set for
//! the job (sizes at most the output's, frame rates at most 120, sample rates at most
//! 192 kHz, times at most the job's media plus 10 s, counts of frames and samples
//! within that time). The bounds below are written out again on purpose: they are the
//! test's own statement of the rule, not a copy of the policy's table.

// A test's unwrap is its failure report.
#![allow(clippy::unwrap_used)]

use br_plan::{Arg, Invocation, Plan, Step};
use br_policy::{check, PolicyLimits, Rule};
use proptest::prelude::*;

const WIDTH: u64 = 1280;
const HEIGHT: u64 = 720;
/// The job's longest media; the policy allows 10 s more.
const MEDIA_SECONDS: f64 = 60.0;
const SECONDS_BOUND: f64 = MEDIA_SECONDS + 10.0;
const FRAME_RATE_BOUND: f64 = 120.0;
const SAMPLE_RATE_BOUND: u64 = 192_000;
const FRAMES_BOUND: u64 = (SECONDS_BOUND * FRAME_RATE_BOUND) as u64;
const SAMPLES_BOUND: u64 = (SECONDS_BOUND * SAMPLE_RATE_BOUND as f64) as u64;

fn limits() -> PolicyLimits {
    PolicyLimits::for_job(WIDTH as u32, HEIGHT as u32, MEDIA_SECONDS)
}

/// What a value is, as the test sees it.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// A whole number in `min..=max`.
    Whole { min: u64, max: u64 },
    /// Plain decimal seconds at most [`SECONDS_BOUND`].
    Seconds,
    /// A frame rate above 0 and at most [`FRAME_RATE_BOUND`].
    FrameRate,
}

/// Where a value goes: a filter option in a filtergraph, or a command-line option.
#[derive(Debug, Clone, Copy)]
enum Place {
    Filter { filter: &'static str, option: &'static str },
    Positional { filter: &'static str, before: &'static str, after: &'static str },
    CommandLine { option: &'static str },
}

const CASES: &[(Place, Bound)] = &[
    (Place::Positional { filter: "scale", before: "", after: ":720" }, Bound::Whole { min: 1, max: WIDTH }),
    (Place::Positional { filter: "scale", before: "1280:", after: "" }, Bound::Whole { min: 1, max: HEIGHT }),
    (Place::Filter { filter: "scale", option: "w" }, Bound::Whole { min: 1, max: WIDTH }),
    (Place::Filter { filter: "pad", option: "width" }, Bound::Whole { min: 1, max: WIDTH }),
    (Place::Filter { filter: "pad", option: "h" }, Bound::Whole { min: 1, max: HEIGHT }),
    (Place::Positional { filter: "fps", before: "", after: "" }, Bound::FrameRate),
    (Place::Filter { filter: "fps", option: "fps" }, Bound::FrameRate),
    (
        Place::Positional { filter: "aresample", before: "", after: "" },
        Bound::Whole { min: 8_000, max: SAMPLE_RATE_BOUND },
    ),
    (Place::Filter { filter: "aformat", option: "sample_rates" }, Bound::Whole { min: 8_000, max: SAMPLE_RATE_BOUND }),
    (Place::Filter { filter: "asetnsamples", option: "n" }, Bound::Whole { min: 1, max: SAMPLE_RATE_BOUND }),
    (Place::Filter { filter: "tpad", option: "stop_duration" }, Bound::Seconds),
    (Place::Filter { filter: "tpad", option: "stop" }, Bound::Whole { min: 0, max: FRAMES_BOUND }),
    (Place::Filter { filter: "apad", option: "whole_len" }, Bound::Whole { min: 0, max: SAMPLES_BOUND }),
    (Place::Filter { filter: "apad", option: "whole_dur" }, Bound::Seconds),
    (Place::Filter { filter: "trim", option: "duration" }, Bound::Seconds),
    (Place::Filter { filter: "atrim", option: "end" }, Bound::Seconds),
    (Place::Filter { filter: "fade", option: "d" }, Bound::Seconds),
    (Place::Filter { filter: "fade", option: "nb_frames" }, Bound::Whole { min: 0, max: FRAMES_BOUND }),
    (Place::Filter { filter: "afade", option: "ns" }, Bound::Whole { min: 0, max: SAMPLES_BOUND }),
    (Place::Filter { filter: "xfade", option: "offset" }, Bound::Seconds),
    (Place::CommandLine { option: "-r" }, Bound::FrameRate),
    (Place::CommandLine { option: "-threads" }, Bound::Whole { min: 1, max: 2 }),
    (Place::CommandLine { option: "-rc-lookahead" }, Bound::Whole { min: 0, max: 250 }),
    (Place::CommandLine { option: "-frames:v" }, Bound::Whole { min: 1, max: FRAMES_BOUND }),
    (Place::CommandLine { option: "-ar" }, Bound::Whole { min: 8_000, max: SAMPLE_RATE_BOUND }),
    (Place::CommandLine { option: "-t" }, Bound::Seconds),
];

/// A one-step plan that reads clip 1 and writes the output; `graph` and `extra` go in.
fn plan_with(graph: &str, extra: &[String]) -> Plan {
    let mut args = vec![
        Arg::lit("-i"),
        Arg::Input(1),
        Arg::lit("-filter_complex"),
        Arg::lit(graph),
        Arg::lit("-map"),
        Arg::lit("[v]"),
    ];
    args.extend(extra.iter().map(|text| Arg::lit(text.as_str())));
    args.extend([Arg::lit("-c:v"), Arg::lit("libx264"), Arg::lit("-f"), Arg::lit("mp4"), Arg::Output]);
    Plan {
        temps: Vec::new(),
        steps: vec![Step::Ffmpeg(Invocation { args, media_seconds: 10.0, label: "property".into() })],
        warnings: Vec::new(),
    }
}

fn plan_for(place: Place, value: &str) -> Plan {
    match place {
        Place::Filter { filter, option } => plan_with(&format!("[0:v]{filter}={option}={value}[v]"), &[]),
        Place::Positional { filter, before, after } => {
            plan_with(&format!("[0:v]{filter}={before}{value}{after}[v]"), &[])
        }
        Place::CommandLine { option } => plan_with("[0:v]null[v]", &[option.to_owned(), value.to_owned()]),
    }
}

/// Whether `value` is within `bound`, by the test's own reading of the value.
fn within(bound: Bound, value: &Value) -> bool {
    match (bound, value) {
        (Bound::Whole { min, max }, Value::Whole(n)) => (min..=max).contains(n),
        (Bound::Seconds, Value::Whole(n)) => (*n as f64) <= SECONDS_BOUND,
        (Bound::Seconds, Value::Decimal(whole, millis)) => *whole as f64 + *millis as f64 / 1000.0 <= SECONDS_BOUND,
        (Bound::FrameRate, Value::Whole(n)) => *n > 0 && (*n as f64) <= FRAME_RATE_BOUND,
        (Bound::FrameRate, Value::Decimal(whole, millis)) => {
            let fps = *whole as f64 + *millis as f64 / 1000.0;
            fps > 0.0 && fps <= FRAME_RATE_BOUND
        }
        (Bound::FrameRate, Value::Fraction(num, den)) => {
            *den > 0 && *num > 0 && (*num as f64 / *den as f64) <= FRAME_RATE_BOUND
        }
        // A shape the option does not take at all: never within.
        _ => false,
    }
}

#[derive(Debug, Clone)]
enum Value {
    Whole(u64),
    /// `whole.millis`, millis as three digits.
    Decimal(u64, u64),
    Fraction(u64, u64),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Whole(n) => n.to_string(),
            Value::Decimal(whole, millis) => format!("{whole}.{millis:03}"),
            Value::Fraction(num, den) => format!("{num}/{den}"),
        }
    }
}

/// Values around every bound of the table, and anywhere up to a billion.
fn value() -> impl Strategy<Value = Value> {
    let edges: Vec<u64> =
        vec![0, 1, 2, 3, 70, 71, 119, 120, 121, 720, 721, 1280, 1281, 7_999, 8_000, 8_400, 8_401, 192_000, 192_001];
    let near = proptest::sample::select(edges)
        .prop_flat_map(|edge| (edge.saturating_sub(1)..=edge + 1).prop_map(Value::Whole));
    prop_oneof![
        near,
        (0u64..1_000_000_000).prop_map(Value::Whole),
        (0u64..20_000_000).prop_map(Value::Whole),
        (0u64..200, 0u64..1000).prop_map(|(whole, millis)| Value::Decimal(whole, millis)),
        (0u64..1_000_000, 0u64..2_000).prop_map(|(num, den)| Value::Fraction(num, den)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

    #[test]
    fn a_value_passes_exactly_when_it_is_within_its_bound(case in 0..CASES.len(), value in value()) {
        let (place, bound) = CASES[case];
        let text = value.text();
        let verdict = check(&plan_for(place, &text), 3, &limits());
        if within(bound, &value) {
            prop_assert!(verdict.is_ok(), "{place:?} = {text} is within {bound:?} but refused: {:?}", verdict.err());
        } else {
            let violation = match verdict {
                Ok(_) => return Err(TestCaseError::fail(format!("{place:?} = {text} is outside {bound:?} but passed"))),
                Err(violation) => violation,
            };
            prop_assert!(
                matches!(violation.rule, Rule::FilterValueOutOfBounds | Rule::BadOptionValue),
                "{place:?} = {text}: refused under {:?}: {violation}", violation.rule
            );
            // The refusal names the step, the argument, and the filter and option.
            prop_assert_eq!((violation.step, violation.arg.is_some()), (Some(0), true));
            let named = match place {
                Place::Filter { filter, .. } | Place::Positional { filter, .. } => violation.reason.contains(filter),
                Place::CommandLine { option } => violation.reason.contains(option),
            };
            prop_assert!(named, "{violation}");
        }
    }
}

#[test]
fn the_bounds_follow_the_job() {
    // The same value is fine for a 4K job and too large for a 720p one.
    let scale = plan_with("[0:v]scale=3840:2160[v]", &[]);
    assert!(check(&scale, 3, &PolicyLimits::for_job(3840, 2160, 60.0)).is_ok());
    assert_eq!(check(&scale, 3, &limits()).map(|_| ()).map_err(|v| v.rule), Err(Rule::FilterValueOutOfBounds));
    // A 10-minute job may pad 9 minutes; a 1-minute job may not.
    let pad = plan_with("[0:v]tpad=stop_duration=540[v]", &[]);
    assert!(check(&pad, 3, &PolicyLimits::for_job(1280, 720, 600.0)).is_ok());
    assert!(check(&pad, 3, &limits()).is_err());
}
