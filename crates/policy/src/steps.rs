//! The steps in order: each FFmpeg step's arguments against the option table, and the
//! files every step reads and writes.
//!
//! Why in order: a temporary is only safe to read once the plan itself has written it
//! (else FFmpeg would read whatever the host left at that path, or fail late), and
//! must be written only once (else a later step could overwrite a segment that a
//! concat list already points at). Walking the steps in order with a table of who
//! wrote each temp checks both.
//!
//! How arguments are read, left to right: an option name (a literal from the table),
//! then its value if it takes one; `-i` is followed by a staged input or a temp that
//! an earlier step wrote; a temp or the output where an option name is expected is the
//! step's output file, which must come last. Any other literal where an option name is
//! expected is refused: it would be an output file name, and the plan never names files.

use br_plan::{Arg, ConcatList, Invocation, Plan, Step, TempFormat};

use crate::bounds::Walkable;
use crate::options::{self, ValueKind};
use crate::{excerpt, Findings, PolicyLimits, PolicyViolation, Refusal, Rule, Stop};

/// Walks the steps that `walkable` allows (see [`crate::bounds::check`]) and reports
/// what they break. A step is left as soon as what follows cannot be read (an unknown
/// option: does a value follow it?), and its output then counts as written, so that
/// the steps that read it are not refused for it again.
pub(crate) fn check(
    plan: &Plan,
    input_count: u32,
    limits: &PolicyLimits,
    walkable: &Walkable,
    findings: &mut Findings,
) -> Result<(), Stop> {
    let Walkable::Steps(walkable) = walkable else {
        return Ok(());
    };
    let mut walker = Walker {
        plan,
        input_count,
        limits,
        written_by: vec![None; plan.temps.len()],
        joined: vec![false; plan.temps.len()],
        output_written: false,
    };
    for ((index, step), walk) in plan.steps.iter().enumerate().zip(walkable) {
        match (step, walk) {
            (Step::Ffmpeg(invocation), true) => walker.invocation(index, invocation, findings)?,
            (Step::WriteConcatList(list), true) => walker.concat_list(index, list, findings)?,
            (step, false) => walker.assume_output_written(index, step),
        }
    }
    if !walker.output_written {
        let last = plan.steps.len().saturating_sub(1);
        let reason = "the last step must be an FFmpeg step that writes the job's output";
        return findings.add(Refusal::new(Rule::OutputCount, reason).at(last, None));
    }
    Ok(())
}

/// A container forced with `-f`, waiting for the file it applies to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Forced {
    Concat,
    Nut,
    Mp4,
}

impl Forced {
    fn from_value(value: &str) -> Option<Forced> {
        match value {
            "concat" => Some(Forced::Concat),
            "nut" => Some(Forced::Nut),
            "mp4" => Some(Forced::Mp4),
            _ => None,
        }
    }
}

/// `-f` and the index of its value, so a refusal can point at it.
#[derive(Debug, Clone, Copy)]
struct ForcedFormat {
    format: Forced,
    value_at: usize,
}

struct Walker<'a> {
    plan: &'a Plan,
    input_count: u32,
    limits: &'a PolicyLimits,
    /// For each temp, the step that wrote it.
    written_by: Vec<Option<usize>>,
    /// For each temp, whether a concat list names it already.
    joined: Vec<bool>,
    output_written: bool,
}

impl Walker<'_> {
    fn invocation(&mut self, step: usize, invocation: &Invocation, findings: &mut Findings) -> Result<(), Stop> {
        let args = &invocation.args;
        let refusal = |rule: Rule, at: usize, reason: String| Refusal::new(rule, reason).at(step, Some(at));
        let mut inputs = 0usize;
        let mut output_at: Option<usize> = None;
        let mut extra_outputs = false;
        let mut forced: Option<ForcedFormat> = None;
        let mut at = 0;
        while let Some(arg) = args.get(at) {
            match arg {
                Arg::Literal(name) => {
                    if !name.starts_with('-') {
                        let reason =
                            format!("{} is where an option name is expected; a literal is never a file", excerpt(name));
                        findings.add(refusal(Rule::PathLikeLiteral, at, reason))?;
                        self.leave(step, args);
                        return Ok(());
                    }
                    let Some(spec) = options::lookup(name) else {
                        let reason = format!("the option {} is not allowed", excerpt(name));
                        findings.add(refusal(Rule::UnknownOption, at, reason))?;
                        self.leave(step, args);
                        return Ok(());
                    };
                    match spec.value {
                        ValueKind::Flag => at += 1,
                        ValueKind::InputFile => {
                            let Some(file) = args.get(at + 1) else {
                                let reason = "-i must be followed by an input".to_owned();
                                findings.add(refusal(Rule::MissingOptionValue, at, reason))?;
                                self.leave(step, args);
                                return Ok(());
                            };
                            inputs += 1;
                            match self.input_file(step, at + 1, file, forced.take()) {
                                Ok(()) => at += 2,
                                Err(violation) => {
                                    findings.add(violation)?;
                                    at = resume_after_value(args, at + 1);
                                }
                            }
                        }
                        kind => {
                            let value = match args.get(at + 1) {
                                Some(Arg::Literal(value)) => value,
                                Some(_) => {
                                    let reason = format!("the value of {name} is a file; values are literals");
                                    findings.add(refusal(Rule::FileInValuePosition, at + 1, reason))?;
                                    at = resume_after_value(args, at + 1);
                                    continue;
                                }
                                None => {
                                    let reason = format!("{name} must be followed by a value");
                                    findings.add(refusal(Rule::MissingOptionValue, at, reason))?;
                                    self.leave(step, args);
                                    return Ok(());
                                }
                            };
                            let mut value_refused = false;
                            options::check_value(name, kind, value, self.limits, &mut |refused: Refusal| {
                                value_refused = true;
                                findings.add(refused.at(step, Some(at + 1)))
                            })?;
                            if value_refused {
                                at = resume_after_value(args, at + 1);
                                continue;
                            }
                            if spec.name == "-f" {
                                let next = args.get(at + 2);
                                let (format, problem) = self.forced_format(step, at + 1, value, forced, next);
                                if let Some(violation) = problem {
                                    findings.add(violation)?;
                                }
                                forced = format;
                            }
                            at += 2;
                        }
                    }
                }
                Arg::Input(input) => {
                    let reason =
                        format!("input {input} is where an output file is expected; staged inputs are never written");
                    findings.add(refusal(Rule::InputAsOutput, at, reason))?;
                    forced = None;
                    // The last argument is where the output goes, even when it is refused.
                    if at + 1 == args.len() && output_at.is_none() {
                        output_at = Some(at);
                    }
                    at += 1;
                }
                Arg::Temp(_) | Arg::Output => {
                    if output_at.is_some() {
                        let reason = "a step writes exactly one file; this is its second".to_owned();
                        findings.add(refusal(Rule::OutputCount, at, reason))?;
                        extra_outputs = true;
                        forced = None;
                    } else {
                        if let Err(violation) = self.output_file(step, at, arg, forced.take()) {
                            findings.add(violation)?;
                        }
                        output_at = Some(at);
                    }
                    at += 1;
                }
            }
        }
        if inputs == 0 {
            let reason = "an FFmpeg step must read at least one input (-i)";
            findings.add(Refusal::new(Rule::NoInput, reason).at(step, None))?;
        }
        match output_at {
            None => {
                let reason = "the step writes no file: its last argument must be a temp or the output";
                findings.add(Refusal::new(Rule::OutputCount, reason).at(step, None))
            }
            // A second file was refused already; which of the two is misplaced is not known.
            Some(output_at) if output_at + 1 != args.len() && !extra_outputs => {
                let reason = "the output file must be the step's last argument".to_owned();
                findings.add(refusal(Rule::OutputNotLast, output_at, reason))
            }
            Some(_) => Ok(()),
        }
    }

    /// Leaves a step whose remaining arguments cannot be read: its last argument, if a
    /// temp or the output, is taken as written, as the step meant it to be.
    fn leave(&mut self, step: usize, args: &[Arg]) {
        match args.last() {
            Some(Arg::Temp(temp)) => self.assume_written(*temp, step, TempFormat::Nut),
            Some(Arg::Output) if step + 1 == self.plan.steps.len() => self.output_written = true,
            _ => {}
        }
    }

    /// A step that is not walked (too large to parse) still writes its output, for the
    /// steps after it.
    fn assume_output_written(&mut self, step: usize, kind: &Step) {
        match kind {
            Step::Ffmpeg(invocation) => self.leave(step, &invocation.args),
            Step::WriteConcatList(list) => self.assume_written(list.list, step, TempFormat::Ffconcat),
        }
    }

    /// Marks `temp` written by `step` if it is a temp of `format` that nothing wrote yet;
    /// says nothing otherwise (the step that writes it was refused already).
    fn assume_written(&mut self, temp: u32, step: usize, format: TempFormat) {
        if self.temp_format(temp) == Some(format) {
            if let Some(slot @ None) = self.written_by.get_mut(temp as usize) {
                *slot = Some(step);
            }
        }
    }

    /// Checks a `-f` value and, for `concat`, that `-i` follows at once. Returns the
    /// format the next file is to have (also after a refusal, when it is clear) and the
    /// refusal.
    fn forced_format(
        &self,
        step: usize,
        value_at: usize,
        value: &str,
        pending: Option<ForcedFormat>,
        next: Option<&Arg>,
    ) -> (Option<ForcedFormat>, Option<PolicyViolation>) {
        let forced = Forced::from_value(value).map(|format| ForcedFormat { format, value_at });
        if pending.is_some() {
            let violation = Refusal::new(Rule::BadOptionValue, "-f is given twice for the same file");
            return (forced.or(pending), Some(violation.at(step, Some(value_at))));
        }
        let Some(ForcedFormat { format, .. }) = forced else {
            // Unreachable while the option table and `Forced` agree; refuse anyway.
            let violation = Refusal::new(Rule::BadOptionValue, format!("-f {} is not allowed", excerpt(value)));
            return (None, Some(violation.at(step, Some(value_at))));
        };
        if format == Forced::Concat && !matches!(next, Some(Arg::Literal(option)) if option == "-i") {
            // Still applies to the next input: the mistake is where -i is, not what it reads.
            let reason = "-f concat must be immediately followed by -i and a concat list temp";
            return (forced, Some(Refusal::new(Rule::BadConcatInput, reason).at(step, Some(value_at + 1))));
        }
        (forced, None)
    }

    fn input_file(
        &self,
        step: usize,
        at: usize,
        file: &Arg,
        forced: Option<ForcedFormat>,
    ) -> Result<(), PolicyViolation> {
        let refuse = |rule: Rule, reason: String| Refusal::new(rule, reason).at(step, Some(at));
        match file {
            Arg::Literal(text) => Err(refuse(
                Rule::PathLikeLiteral,
                format!("-i is followed by the literal {}; only staged inputs and temps can be read", excerpt(text)),
            )),
            Arg::Output => Err(refuse(
                Rule::OutputAsInput,
                "-i is followed by the job's output, which is only ever written".to_owned(),
            )),
            Arg::Input(input) => {
                if *input >= self.input_count {
                    return Err(refuse(
                        Rule::InputOutOfRange,
                        format!("input {input} does not exist; the job has {} inputs", self.input_count),
                    ));
                }
                match forced {
                    None => Ok(()),
                    Some(ForcedFormat { format: Forced::Concat, .. }) => Err(refuse(
                        Rule::BadConcatInput,
                        format!("-f concat can only read a concat list temp, not input {input}"),
                    )),
                    Some(ForcedFormat { value_at, .. }) => Err(Refusal::new(
                        Rule::BadOptionValue,
                        format!("-f before input {input}: a staged input's format is probed, never forced"),
                    )
                    .at(step, Some(value_at))),
                }
            }
            Arg::Temp(temp) => {
                let format = self
                    .temp_format(*temp)
                    .ok_or_else(|| refuse(Rule::TempOutOfRange, self.temp_out_of_range(*temp)))?;
                match self.writer_of(*temp) {
                    Some(writer) if writer < step => {}
                    Some(_) => {
                        return Err(refuse(
                            Rule::TempUsedBeforeWritten,
                            format!("temp {temp} is read by the step that writes it"),
                        ))
                    }
                    None => {
                        return Err(refuse(
                            Rule::TempUsedBeforeWritten,
                            format!("temp {temp} is read before any step wrote it"),
                        ))
                    }
                }
                match (format, forced.map(|f| f.format)) {
                    (TempFormat::Ffconcat, Some(Forced::Concat)) | (TempFormat::Nut, None | Some(Forced::Nut)) => {
                        Ok(())
                    }
                    (TempFormat::Ffconcat, _) => Err(refuse(
                        Rule::BadConcatInput,
                        format!("temp {temp} is a concat list: it can only be read right after -f concat -i"),
                    )),
                    (TempFormat::Nut, Some(Forced::Concat)) => Err(refuse(
                        Rule::BadConcatInput,
                        format!("-f concat can only read a concat list temp; temp {temp} is NUT"),
                    )),
                    (TempFormat::Nut, Some(Forced::Mp4)) => {
                        Err(refuse(Rule::TempFormatMismatch, format!("temp {temp} is NUT, not MP4")))
                    }
                }
            }
        }
    }

    /// Checks the step's output file. A refused output is still marked written where the
    /// step would have written it anyway (the wrong `-f`), so later readers are not refused
    /// for it as well.
    fn output_file(
        &mut self,
        step: usize,
        at: usize,
        file: &Arg,
        forced: Option<ForcedFormat>,
    ) -> Result<(), PolicyViolation> {
        let refuse = |rule: Rule, reason: String| Refusal::new(rule, reason).at(step, Some(at));
        let is_last_step = step + 1 == self.plan.steps.len();
        match file {
            Arg::Output => {
                if !is_last_step {
                    return Err(refuse(
                        Rule::OutputNotLast,
                        "only the plan's last step may write the job's output".to_owned(),
                    ));
                }
                self.output_written = true;
                match forced {
                    Some(ForcedFormat { format, value_at }) if format != Forced::Mp4 => {
                        let violation = Refusal::new(Rule::BadOptionValue, "the job's output is always MP4");
                        Err(violation.at(step, Some(value_at)))
                    }
                    _ => Ok(()),
                }
            }
            Arg::Temp(temp) => {
                let format = self
                    .temp_format(*temp)
                    .ok_or_else(|| refuse(Rule::TempOutOfRange, self.temp_out_of_range(*temp)))?;
                if format != TempFormat::Nut {
                    let reason = format!("temp {temp} is a concat list; only a WriteConcatList step writes those");
                    return Err(refuse(Rule::TempFormatMismatch, reason));
                }
                let marked = self.mark_written(*temp, step);
                match forced {
                    Some(ForcedFormat { format: forced, value_at }) if forced != Forced::Nut => {
                        let reason = format!("temp {temp} is NUT; -f must be nut");
                        Err(Refusal::new(Rule::TempFormatMismatch, reason).at(step, Some(value_at)))
                    }
                    _ => marked.map_err(|refusal| refusal.at(step, Some(at))),
                }
            }
            // The walker only calls this for temps and the output; refuse anything else.
            Arg::Input(_) | Arg::Literal(_) => Err(refuse(Rule::InputAsOutput, "not an output file".to_owned())),
        }
    }

    /// Checks a concat list step. A problem with the list's own temp ends the step (its
    /// parts would only repeat it: written twice, each part is "joined twice"); each part
    /// is checked on its own.
    fn concat_list(&mut self, step: usize, list: &ConcatList, findings: &mut Findings) -> Result<(), Stop> {
        let mut report = |refusal: Refusal| findings.add(refusal.at(step, None));
        let target = list.list;
        let Some(format) = self.temp_format(target) else {
            return report(Refusal::new(Rule::TempOutOfRange, self.temp_out_of_range(target)));
        };
        if format != TempFormat::Ffconcat {
            let reason = format!("temp {target} is NUT; a concat list is written to an ffconcat temp");
            return report(Refusal::new(Rule::TempFormatMismatch, reason));
        }
        if list.parts.is_empty() {
            // Written all the same, empty: its readers are not refused for it too.
            self.assume_written(target, step, TempFormat::Ffconcat);
            return report(Refusal::new(Rule::BadConcatList, "the concat list has no parts"));
        }
        // A list written again is refused as such, before its parts count as joined twice.
        if let Err(refusal) = self.mark_written(target, step) {
            return report(refusal);
        }
        for (index, part) in list.parts.iter().enumerate() {
            if let Err(refusal) = self.concat_part(step, index, part.temp) {
                report(refusal)?;
            }
        }
        Ok(())
    }

    fn concat_part(&mut self, step: usize, index: usize, temp: u32) -> Result<(), Refusal> {
        let refuse = |rule: Rule, reason: String| Refusal::new(rule, format!("part {index}: {reason}"));
        let format =
            self.temp_format(temp).ok_or_else(|| refuse(Rule::TempOutOfRange, self.temp_out_of_range(temp)))?;
        if format != TempFormat::Nut {
            return Err(refuse(Rule::TempFormatMismatch, format!("temp {temp} is a concat list; parts are NUT temps")));
        }
        let written_earlier = matches!(self.writer_of(temp), Some(writer) if writer < step);
        if !written_earlier {
            return Err(refuse(Rule::TempUsedBeforeWritten, format!("temp {temp} is listed before any step wrote it")));
        }
        // FFmpeg's ffconcat `duration` does not cut a file: a temp listed again and
        // again would be copied whole each time (a 475 KB segment listed 2,000 times,
        // twice over, filled gigabytes).
        if let Some(joined) = self.joined.get_mut(temp as usize) {
            if *joined {
                let reason = format!("temp {temp} is already a part of a concat list; each is joined once");
                return Err(refuse(Rule::BadConcatList, reason));
            }
            *joined = true;
        }
        Ok(())
    }

    fn writer_of(&self, temp: u32) -> Option<usize> {
        self.written_by.get(temp as usize).copied().flatten()
    }

    fn temp_format(&self, temp: u32) -> Option<TempFormat> {
        self.plan.temps.get(temp as usize).copied()
    }

    fn temp_out_of_range(&self, temp: u32) -> String {
        format!("temp {temp} does not exist; the plan declares {} temps", self.plan.temps.len())
    }

    fn mark_written(&mut self, temp: u32, step: usize) -> Result<(), Refusal> {
        match self.written_by.get_mut(temp as usize) {
            Some(Some(writer)) => {
                Err(Refusal::new(Rule::TempWrittenTwice, format!("temp {temp} was already written by step {writer}")))
            }
            Some(slot) => {
                *slot = Some(step);
                Ok(())
            }
            None => Err(Refusal::new(Rule::TempOutOfRange, self.temp_out_of_range(temp))),
        }
    }
}

/// Where to read on after the value at `value_at` was refused. A value that is an
/// option name, or a temp or the output as the step's last argument, was most likely
/// not meant as the value: the option lacks its value, and that argument is read again
/// in its own role rather than swallowed (which would make the step look as if it had
/// no input or no output).
fn resume_after_value(args: &[Arg], value_at: usize) -> usize {
    let meant_otherwise = match args.get(value_at) {
        Some(Arg::Literal(text)) => options::lookup(text).is_some(),
        Some(Arg::Temp(_) | Arg::Output) => value_at + 1 == args.len(),
        Some(Arg::Input(_)) | None => false,
    };
    if meant_otherwise {
        value_at
    } else {
        value_at + 1
    }
}
