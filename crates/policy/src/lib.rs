//! The policy: decides whether the host may run a plan.
//!
//! The plan comes out of a WebAssembly guest, which the host does not trust: a hostile
//! or buggy guest can return anything the plan's types can express. FFmpeg, given the
//! wrong arguments, reads and writes arbitrary files, opens URLs, runs the `concat`
//! demuxer on a list that names any file, pulls files in from filters (`movie`,
//! `amovie`, `sendcmd`, `subtitles`, FFmpeg 7's `/option=path` syntax...), and so on.
//! Listing the dangerous things would never be finished, so this crate does the
//! opposite: it describes the small FFmpeg dialect the planner speaks (a table of
//! options, each with the shape of its value, and a short list of filters) and refuses
//! everything else.
//!
//! The guest never names a file. Files are [`Arg::Input`](br_plan::Arg::Input),
//! [`Arg::Temp`](br_plan::Arg::Temp) and [`Arg::Output`](br_plan::Arg::Output), which the
//! host replaces with paths it chose itself; a bare literal is never accepted where
//! FFmpeg would read a file name.
//!
//! Counts and sizes are checked first, before any argument is parsed, so a huge plan
//! costs one pass over its lengths. Then the steps are walked in order, which is what
//! lets the policy see that every temporary is written once and read only afterwards.
//!
//! [`check`] stops at the first broken rule; [`check_all`] goes on and lists them all,
//! for a plugin author who would rather fix a plan once than once per rule.
//!
//! The result is a [`CheckedPlan`], which only [`check`] and [`check_all`] can make: the
//! host's runner takes a `CheckedPlan`, so an unchecked plan cannot reach FFmpeg by mistake.

mod bounds;
mod expression;
mod filter_options;
mod filtergraph;
mod numbers;
mod options;
mod steps;

use br_plan::Plan;

/// A step's `label` is echoed into logs and error messages: at most this many bytes,
/// no control characters (the same rule the blueprint applies to `clip_id`).
pub const MAX_LABEL_BYTES: usize = 128;

/// How much a plan may ask for. [`PolicyLimits::default`] fits the largest blueprint
/// the validator accepts; [`PolicyLimits::for_job`] fits one job, and is what the host
/// uses.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyLimits {
    pub max_steps: usize,
    pub max_args_per_step: usize,
    /// Bytes of one literal argument.
    pub max_arg_bytes: usize,
    /// Bytes of all literal arguments of one step together.
    pub max_step_bytes: usize,
    pub max_temps: usize,
    pub max_concat_parts: usize,
    /// Filters in one filtergraph argument.
    pub max_filters_per_graph: usize,
    /// Upper bound for a step's `media_seconds`, a concat part's duration, the sum
    /// of one concat list's durations, and every time value of an option or a filter.
    pub max_media_seconds: f64,
    /// The largest frame a filter may scale or pad to: the job's output size.
    pub max_frame_width: u32,
    pub max_frame_height: u32,
    /// For `-r`, `fps`, and (with `max_media_seconds`) every count of frames.
    pub max_frame_rate: f64,
    /// For `-ar`, `aresample`, `aformat`, and (with `max_media_seconds`) every count of samples.
    pub max_sample_rate: u32,
    /// For `-threads`: each encoder thread holds frames of its own.
    pub max_threads: u64,
}

/// Moves in the largest blueprint the validator accepts (`br_blueprint::limits::MAX_MOVES`).
const MAX_MOVES: usize = 2_000;
/// The planner writes about two steps per move (a segment each, and room for one more
/// pass), plus a few steps to join the segments and add the song.
const DEFAULT_MAX_STEPS: usize = 2 * MAX_MOVES + 100;
/// One temporary per step at most.
const DEFAULT_MAX_TEMPS: usize = DEFAULT_MAX_STEPS;
/// One concat part per move.
const DEFAULT_MAX_CONCAT_PARTS: usize = MAX_MOVES;
const DEFAULT_MAX_ARGS_PER_STEP: usize = 256;
/// Linux refuses to exec a program with a single argument above 128 KiB
/// (`MAX_ARG_STRLEN`); stay well below it.
const DEFAULT_MAX_ARG_BYTES: usize = 96 * 1024;
/// All arguments together must also fit exec's total (`ARG_MAX`, 2 MiB by default).
const DEFAULT_MAX_STEP_BYTES: usize = 512 * 1024;
const DEFAULT_MAX_FILTERS_PER_GRAPH: usize = 512;
/// The validator allows three hours of timeline; leave room for the last step's padding.
const DEFAULT_MAX_MEDIA_SECONDS: f64 = 4.0 * 3600.0;
/// The validator's largest output size (4K UHD).
const DEFAULT_MAX_FRAME_WIDTH: u32 = 3840;
const DEFAULT_MAX_FRAME_HEIGHT: u32 = 2160;
/// The validator's highest output frame rate.
const DEFAULT_MAX_FRAME_RATE: f64 = 120.0;
const DEFAULT_MAX_SAMPLE_RATE: u32 = 192_000;
/// The planner's encoders use two threads, one for large frames.
const DEFAULT_MAX_THREADS: u64 = 2;
/// Added to a job's longest media for the seconds a plan may name: a segment decodes
/// a little before its first frame, and the song is padded to the video's end.
const JOB_MEDIA_SLACK_SECONDS: f64 = 10.0;

impl Default for PolicyLimits {
    fn default() -> PolicyLimits {
        PolicyLimits {
            max_steps: DEFAULT_MAX_STEPS,
            max_args_per_step: DEFAULT_MAX_ARGS_PER_STEP,
            max_arg_bytes: DEFAULT_MAX_ARG_BYTES,
            max_step_bytes: DEFAULT_MAX_STEP_BYTES,
            max_temps: DEFAULT_MAX_TEMPS,
            max_concat_parts: DEFAULT_MAX_CONCAT_PARTS,
            max_filters_per_graph: DEFAULT_MAX_FILTERS_PER_GRAPH,
            max_media_seconds: DEFAULT_MAX_MEDIA_SECONDS,
            max_frame_width: DEFAULT_MAX_FRAME_WIDTH,
            max_frame_height: DEFAULT_MAX_FRAME_HEIGHT,
            max_frame_rate: DEFAULT_MAX_FRAME_RATE,
            max_sample_rate: DEFAULT_MAX_SAMPLE_RATE,
            max_threads: DEFAULT_MAX_THREADS,
        }
    }
}

impl PolicyLimits {
    /// The limits of one job: frames at most `width` x `height` (the validated output
    /// size), times at most `longest_media_seconds` (the longer of the timeline and
    /// the longest input) plus a little slack.
    pub fn for_job(width: u32, height: u32, longest_media_seconds: f64) -> PolicyLimits {
        let media = if longest_media_seconds.is_finite() { longest_media_seconds.max(0.0) } else { 0.0 };
        PolicyLimits {
            max_frame_width: width.min(DEFAULT_MAX_FRAME_WIDTH),
            max_frame_height: height.min(DEFAULT_MAX_FRAME_HEIGHT),
            max_media_seconds: (media + JOB_MEDIA_SLACK_SECONDS).min(DEFAULT_MAX_MEDIA_SECONDS),
            ..PolicyLimits::default()
        }
    }

    /// [`PolicyLimits::for_job`] for the job a plan request describes: its output size
    /// (as the planner derives it from the blueprint and the first clip) and the longer
    /// of its timeline and its longest input.
    pub fn for_request(request: &br_plan::PlanRequest) -> PolicyLimits {
        let (width, height) = br_plan::output_frame(&request.validated, &request.inputs);
        let longest_input =
            request.inputs.iter().map(|facts| facts.duration).filter(|d| d.is_finite()).fold(0.0, f64::max);
        PolicyLimits::for_job(width, height, request.validated.total_duration.max(longest_input))
    }

    /// Frames in `max_media_seconds` at `max_frame_rate`.
    pub fn max_frames(&self) -> u64 {
        (self.max_media_seconds * self.max_frame_rate).ceil() as u64
    }

    /// Samples in `max_media_seconds` at `max_sample_rate`.
    pub fn max_samples(&self) -> u64 {
        (self.max_media_seconds * f64::from(self.max_sample_rate)).ceil() as u64
    }
}

/// A plan the policy accepted. Only [`check`] and [`check_all`] make one, so a function
/// that takes a `CheckedPlan` cannot be handed an unchecked plan.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedPlan(Plan);

impl CheckedPlan {
    pub fn plan(&self) -> &Plan {
        &self.0
    }

    pub fn into_inner(self) -> Plan {
        self.0
    }

    /// The FFmpeg steps `keep` picks, in order, as a plan of their own (the temps as they
    /// were, no warnings), when none of them reads a temp: each passed the policy within
    /// the whole plan and reads only inputs, so it runs the same without the steps left
    /// out (`prepare` makes the song's track this way, for the audio cache). None when a
    /// picked step reads a temp or writes a concat list, or when none is picked.
    pub fn steps_alone(&self, keep: impl Fn(usize) -> bool) -> Option<CheckedPlan> {
        let mut steps = Vec::new();
        for (index, step) in self.0.steps.iter().enumerate().filter(|(index, _)| keep(*index)) {
            let br_plan::Step::Ffmpeg(invocation) = step else { return None };
            let args = &invocation.args;
            let reads_a_temp =
                args.iter().take(args.len().saturating_sub(1)).any(|arg| matches!(arg, br_plan::Arg::Temp(_)));
            let writes_a_temp = matches!(args.last(), Some(br_plan::Arg::Temp(_)));
            if reads_a_temp || !writes_a_temp {
                return None;
            }
            steps.push(self.0.steps[index].clone());
        }
        (!steps.is_empty()).then(|| CheckedPlan(Plan { temps: self.0.temps.clone(), steps, warnings: Vec::new() }))
    }
}

/// Which rule a plan broke. Stable, so callers and tests can match on it rather than
/// on the wording of [`PolicyViolation::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// The plan has no step.
    EmptyPlan,
    TooManySteps,
    TooManyTemps,
    TooManyArguments,
    /// One literal argument is longer than `max_arg_bytes`.
    ArgumentTooLarge,
    /// A step's literal arguments together are longer than `max_step_bytes`.
    StepTooLarge,
    TooManyConcatParts,
    TooManyFilters,
    /// A number in the plan itself (`media_seconds`, a concat part's `duration`) is
    /// NaN, infinite, negative, or zero where it must be positive.
    BadNumber,
    /// `media_seconds` or concat durations beyond `max_media_seconds`.
    TooMuchMedia,
    /// A step label that is too long or holds control characters.
    BadLabel,
    /// A literal where an option name is expected is not in the option table.
    UnknownOption,
    /// An option that takes a value is the last argument.
    MissingOptionValue,
    /// An option's value does not have the shape the option table allows.
    BadOptionValue,
    /// A literal where FFmpeg would read a file name: after `-i`, or where an option
    /// name is expected but the literal does not start with `-` (an output file).
    PathLikeLiteral,
    /// An input, temp or the output as the value of an option.
    FileInValuePosition,
    /// A filter that is not on the allow-list.
    ForbiddenFilter,
    /// A filter option that is not on that filter's allow-list, or a value without a
    /// name where the option's position is not certain.
    BadFilterOption,
    /// A filter option's value outside its bound (a size above the output's, a rate,
    /// a count or a duration beyond the job's) or not of its shape.
    FilterValueOutOfBounds,
    /// An expression with a function or variable off the allow-list (`while`, `st`,
    /// `random`, `RTCTIME`...), a number with an exponent, or unbalanced parentheses.
    BadExpression,
    /// A filtergraph that cannot be parsed unambiguously, or holds something no
    /// allowed filter needs (a URL, a control character, a file-loading option...).
    BadFiltergraph,
    InputOutOfRange,
    TempOutOfRange,
    /// A staged input where a step's output file is expected.
    InputAsOutput,
    /// The job's output after `-i`.
    OutputAsInput,
    /// An FFmpeg step with no `-i`.
    NoInput,
    /// An FFmpeg step that writes no file or several, or a plan whose last step does
    /// not write the job's output.
    OutputCount,
    /// An output file that is not the step's last argument, or the job's output
    /// written by a step other than the last.
    OutputNotLast,
    TempUsedBeforeWritten,
    TempWrittenTwice,
    /// A temp used as a format it is not: an ffconcat temp written by FFmpeg or used
    /// as a concat part, a NUT temp as a concat list, `-f` naming another container.
    TempFormatMismatch,
    /// `-f concat` not immediately followed by `-i` and an ffconcat temp, or an
    /// ffconcat temp read any other way.
    BadConcatInput,
    /// A concat list with no parts.
    BadConcatList,
}

/// Why a plan was refused, and where. `step` and `arg` are indexes into
/// `plan.steps` and into that step's `args` (not counting the flags the host adds).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("plan refused by policy: {}{reason}", location(.step, .arg))]
pub struct PolicyViolation {
    pub step: Option<usize>,
    pub arg: Option<usize>,
    pub rule: Rule,
    pub reason: String,
}

impl PolicyViolation {
    /// Where and why, without the leading "plan refused by policy": one line of a list.
    pub fn located_reason(&self) -> String {
        format!("{}{}", location(&self.step, &self.arg), self.reason)
    }
}

fn location(step: &Option<usize>, arg: &Option<usize>) -> String {
    match (step, arg) {
        (Some(step), Some(arg)) => format!("step {step}, argument {arg}: "),
        (Some(step), None) => format!("step {step}: "),
        (None, Some(arg)) => format!("argument {arg}: "),
        (None, None) => String::new(),
    }
}

/// A broken rule before it is placed in the plan (the filtergraph and value checks
/// do not know which step they are looking at).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) rule: Rule,
    pub(crate) reason: String,
}

impl Refusal {
    pub(crate) fn new(rule: Rule, reason: impl Into<String>) -> Refusal {
        Refusal { rule, reason: reason.into() }
    }

    pub(crate) fn at(self, step: usize, arg: Option<usize>) -> PolicyViolation {
        PolicyViolation { step: Some(step), arg, rule: self.rule, reason: self.reason }
    }
}

/// The policy's allow-lists as a plugin author reads them: every option a plan may use
/// and every filter with its options, each with what its value must be under `limits`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Table {
    pub options: Vec<TableOption>,
    pub filters: Vec<TableFilter>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TableOption {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TableFilter {
    pub name: String,
    /// How many options, from the first, may be given without their name.
    pub positional: usize,
    pub options: Vec<TableOption>,
}

/// The FFmpeg components a plan the policy accepts can ask for: what a minimal FFmpeg
/// must be built with to run every such plan (the image's build is checked against it).
#[derive(Debug, Clone, PartialEq)]
pub struct Components {
    pub filters: Vec<String>,
    /// `-f` values: containers a plan reads (concat) or writes.
    pub formats: Vec<&'static str>,
    /// `-c:v` and `-c:a` values, less `copy`.
    pub encoders: Vec<&'static str>,
    pub bitstream_filters: Vec<&'static str>,
}

pub fn components() -> Components {
    let filters = table(&PolicyLimits::default()).filters.into_iter().map(|filter| filter.name).collect();
    let encoders =
        options::VIDEO_CODECS.iter().chain(options::AUDIO_CODECS).copied().filter(|c| *c != "copy").collect();
    let mut bitstream_filters = options::VIDEO_BITSTREAM_FILTERS.to_vec();
    bitstream_filters.push(options::AUDIO_BITSTREAM_FILTER);
    Components { filters, formats: options::FORMATS.to_vec(), encoders, bitstream_filters }
}

pub fn table(limits: &PolicyLimits) -> Table {
    let options =
        options::table(limits).into_iter().map(|(name, value)| TableOption { name: name.to_owned(), value }).collect();
    let filters = filter_options::table(limits)
        .into_iter()
        .map(|(name, positional, options)| TableFilter {
            name: name.to_owned(),
            positional,
            options: options.into_iter().map(|(name, value)| TableOption { name, value }).collect(),
        })
        .collect();
    Table { options, filters }
}

/// Checks `plan` for a job with `input_count` staged inputs (input 0 is the song,
/// input 1 + i clip i). Returns the first broken rule found, which is the first that
/// [`check_all`] would list; it stops there, so a refused plan costs no more than it must.
pub fn check(plan: &Plan, input_count: u32, limits: &PolicyLimits) -> Result<CheckedPlan, PolicyViolation> {
    let mut findings = Findings::first_only();
    walk(plan, input_count, limits, &mut findings);
    match findings.kept.into_iter().next() {
        Some(violation) => Err(violation),
        None => Ok(CheckedPlan(plan.clone())),
    }
}

/// [`check`], but goes on after a violation and lists them all, for plugin authors.
///
/// The order is [`check`]'s: counts and sizes first (when the plan itself has too many
/// steps or temps, or none, that is all it lists: such a plan is not walked), then the
/// steps in order. After a violation the walk goes on with the next filter, argument or
/// step wherever it still knows how to read what follows, and it counts a refused step's
/// output as written, so that one mistake is reported once rather than again by every
/// later step that reads its temp.
pub fn check_all(plan: &Plan, input_count: u32, limits: &PolicyLimits) -> Result<CheckedPlan, Violations> {
    let mut findings = Findings::all(MAX_LISTED_VIOLATIONS);
    walk(plan, input_count, limits, &mut findings);
    if findings.kept.is_empty() {
        Ok(CheckedPlan(plan.clone()))
    } else {
        Err(Violations { listed: findings.kept, unlisted: findings.unkept })
    }
}

fn walk(plan: &Plan, input_count: u32, limits: &PolicyLimits, findings: &mut Findings) {
    // `Stop` only says that `findings` wants no more; what it holds is the answer.
    let _stopped: Result<(), Stop> = bounds::check(plan, limits, findings)
        .and_then(|walkable| steps::check(plan, input_count, limits, &walkable, findings));
}

/// How many violations [`check_all`] lists; it counts the others.
pub const MAX_LISTED_VIOLATIONS: usize = 100;

/// How many violations [`Violations`]' message shows before "and N more".
const SHOWN_IN_MESSAGE: usize = 3;

/// Every rule a plan broke, as [`check_all`] found them: at most
/// [`MAX_LISTED_VIOLATIONS`], in order, and how many more there were.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.summary())]
pub struct Violations {
    /// Never empty: [`check_all`] makes a `Violations` only when it found one.
    listed: Vec<PolicyViolation>,
    unlisted: usize,
}

impl Violations {
    /// The violations found first, in order, at most [`MAX_LISTED_VIOLATIONS`].
    pub fn listed(&self) -> &[PolicyViolation] {
        &self.listed
    }

    /// How many more were found beyond [`Violations::listed`].
    pub fn unlisted(&self) -> usize {
        self.unlisted
    }

    pub fn total(&self) -> usize {
        self.listed.len().saturating_add(self.unlisted)
    }

    /// The one [`check`] reports.
    pub fn first(&self) -> Option<&PolicyViolation> {
        self.listed.first()
    }

    fn summary(&self) -> String {
        let total = self.total();
        let noun = if total == 1 { "violation" } else { "violations" };
        let shown: Vec<String> =
            self.listed.iter().take(SHOWN_IN_MESSAGE).map(PolicyViolation::located_reason).collect();
        let mut text = format!("plan refused by policy: {total} {noun}: {}", shown.join("; "));
        let more = total.saturating_sub(shown.len());
        if more > 0 {
            text.push_str(&format!("; and {more} more"));
        }
        text
    }
}

/// Where [`walk`] puts what it finds. [`check`] keeps the first violation and stops;
/// [`check_all`] keeps a bounded list and counts the rest.
pub(crate) struct Findings {
    keep: usize,
    stop_when_full: bool,
    kept: Vec<PolicyViolation>,
    unkept: usize,
}

/// The walk is to stop: [`Findings`] holds all it wants.
#[derive(Debug)]
pub(crate) struct Stop;

impl Findings {
    fn first_only() -> Findings {
        Findings { keep: 1, stop_when_full: true, kept: Vec::new(), unkept: 0 }
    }

    fn all(keep: usize) -> Findings {
        Findings { keep, stop_when_full: false, kept: Vec::new(), unkept: 0 }
    }

    pub(crate) fn add(&mut self, violation: PolicyViolation) -> Result<(), Stop> {
        if self.kept.len() < self.keep {
            self.kept.push(violation);
        } else {
            self.unkept = self.unkept.saturating_add(1);
        }
        if self.stop_when_full && self.kept.len() >= self.keep {
            Err(Stop)
        } else {
            Ok(())
        }
    }
}

/// Takes each refusal of one argument (a filtergraph can break several rules) and says
/// whether to go on.
pub(crate) type Report<'a> = dyn FnMut(Refusal) -> Result<(), Stop> + 'a;

/// A short, quoted, single-line excerpt of untrusted text for a reason message.
pub(crate) fn excerpt(text: &str) -> String {
    const SHOWN_CHARS: usize = 40;
    let mut shown: String = text.chars().take(SHOWN_CHARS).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation() -> PolicyViolation {
        PolicyViolation { step: Some(0), arg: None, rule: Rule::EmptyPlan, reason: "x".to_owned() }
    }

    /// [`check`]'s findings stop the walk the moment they hold the one violation they keep;
    /// [`check_all`]'s never stop it, and count what they cannot keep.
    #[test]
    fn findings_stop_the_walk_exactly_when_full() {
        let mut first = Findings::first_only();
        assert!(first.add(violation()).is_err(), "full at its first violation");
        let mut all = Findings::all(2);
        for _ in 0..3 {
            assert!(all.add(violation()).is_ok());
        }
        assert_eq!((all.kept.len(), all.unkept), (2, 1));
    }

    /// A reason quotes at most 40 characters of untrusted text, and says when it cut some off.
    #[test]
    fn an_excerpt_shows_40_characters_and_marks_a_cut() {
        assert_eq!(excerpt(&"x".repeat(40)), format!("\"{}\"", "x".repeat(40)));
        assert_eq!(excerpt(&"x".repeat(41)), format!("\"{}...\"", "x".repeat(40)));
        assert_eq!(excerpt(&"é".repeat(40)), format!("\"{}\"", "é".repeat(40)));
        assert_eq!(excerpt(&"é".repeat(41)), format!("\"{}...\"", "é".repeat(40)));
        assert_eq!(excerpt("a\nb"), "\"a\\nb\"");
    }
}
