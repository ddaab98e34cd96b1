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

use crate::options::{self, ValueKind};
use crate::{excerpt, PolicyLimits, PolicyViolation, Refusal, Rule};

pub(crate) fn check(plan: &Plan, input_count: u32, limits: &PolicyLimits) -> Result<(), PolicyViolation> {
    let mut walker =
        Walker { plan, input_count, limits, written_by: vec![None; plan.temps.len()], joined: vec![false; plan.temps.len()], output_written: false };
    for (index, step) in plan.steps.iter().enumerate() {
        match step {
            Step::Ffmpeg(invocation) => walker.invocation(index, invocation)?,
            Step::WriteConcatList(list) => walker.concat_list(index, list).map_err(|refusal| refusal.at(index, None))?,
        }
    }
    if !walker.output_written {
        let last = plan.steps.len().saturating_sub(1);
        return Err(Refusal::new(Rule::OutputCount, "the last step must be an FFmpeg step that writes the job's output").at(last, None));
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
    fn invocation(&mut self, step: usize, invocation: &Invocation) -> Result<(), PolicyViolation> {
        let args = &invocation.args;
        let refuse = |rule: Rule, at: usize, reason: String| Refusal::new(rule, reason).at(step, Some(at));
        let mut inputs = 0usize;
        let mut output_at: Option<usize> = None;
        let mut forced: Option<ForcedFormat> = None;
        let mut at = 0;
        while let Some(arg) = args.get(at) {
            match arg {
                Arg::Literal(name) => {
                    if !name.starts_with('-') {
                        let reason = format!("{} is where an option name is expected; a literal is never a file", excerpt(name));
                        return Err(refuse(Rule::PathLikeLiteral, at, reason));
                    }
                    let Some(spec) = options::lookup(name) else {
                        return Err(refuse(Rule::UnknownOption, at, format!("the option {} is not allowed", excerpt(name))));
                    };
                    match spec.value {
                        ValueKind::Flag => at += 1,
                        ValueKind::InputFile => {
                            let Some(file) = args.get(at + 1) else {
                                return Err(refuse(Rule::MissingOptionValue, at, "-i must be followed by an input".to_owned()));
                            };
                            self.input_file(step, at + 1, file, forced.take())?;
                            inputs += 1;
                            at += 2;
                        }
                        kind => {
                            let value = match args.get(at + 1) {
                                Some(Arg::Literal(value)) => value,
                                Some(_) => {
                                    let reason = format!("the value of {name} is a file; values are literals");
                                    return Err(refuse(Rule::FileInValuePosition, at + 1, reason));
                                }
                                None => return Err(refuse(Rule::MissingOptionValue, at, format!("{name} must be followed by a value"))),
                            };
                            options::check_value(name, kind, value, self.limits).map_err(|refusal| refusal.at(step, Some(at + 1)))?;
                            if spec.name == "-f" {
                                forced = Some(self.forced_format(step, at + 1, value, forced, args.get(at + 2))?);
                            }
                            at += 2;
                        }
                    }
                }
                Arg::Input(input) => {
                    let reason = format!("input {input} is where an output file is expected; staged inputs are never written");
                    return Err(refuse(Rule::InputAsOutput, at, reason));
                }
                Arg::Temp(_) | Arg::Output => {
                    if output_at.is_some() {
                        return Err(refuse(Rule::OutputCount, at, "a step writes exactly one file; this is its second".to_owned()));
                    }
                    self.output_file(step, at, arg, forced.take())?;
                    output_at = Some(at);
                    at += 1;
                }
            }
        }
        if inputs == 0 {
            return Err(Refusal::new(Rule::NoInput, "an FFmpeg step must read at least one input (-i)").at(step, None));
        }
        match output_at {
            None => Err(Refusal::new(Rule::OutputCount, "the step writes no file: its last argument must be a temp or the output").at(step, None)),
            Some(output_at) if output_at + 1 != args.len() => {
                Err(refuse(Rule::OutputNotLast, output_at, "the output file must be the step's last argument".to_owned()))
            }
            Some(_) => Ok(()),
        }
    }

    /// Checks a `-f` value and, for `concat`, that `-i` follows at once.
    fn forced_format(
        &self,
        step: usize,
        value_at: usize,
        value: &str,
        pending: Option<ForcedFormat>,
        next: Option<&Arg>,
    ) -> Result<ForcedFormat, PolicyViolation> {
        if pending.is_some() {
            return Err(Refusal::new(Rule::BadOptionValue, "-f is given twice for the same file").at(step, Some(value_at)));
        }
        let Some(format) = Forced::from_value(value) else {
            // Unreachable while the option table and `Forced` agree; refuse anyway.
            return Err(Refusal::new(Rule::BadOptionValue, format!("-f {} is not allowed", excerpt(value))).at(step, Some(value_at)));
        };
        if format == Forced::Concat && !matches!(next, Some(Arg::Literal(option)) if option == "-i") {
            let reason = "-f concat must be immediately followed by -i and a concat list temp";
            return Err(Refusal::new(Rule::BadConcatInput, reason).at(step, Some(value_at + 1)));
        }
        Ok(ForcedFormat { format, value_at })
    }

    fn input_file(&self, step: usize, at: usize, file: &Arg, forced: Option<ForcedFormat>) -> Result<(), PolicyViolation> {
        let refuse = |rule: Rule, reason: String| Refusal::new(rule, reason).at(step, Some(at));
        match file {
            Arg::Literal(text) => {
                Err(refuse(Rule::PathLikeLiteral, format!("-i is followed by the literal {}; only staged inputs and temps can be read", excerpt(text))))
            }
            Arg::Output => Err(refuse(Rule::OutputAsInput, "-i is followed by the job's output, which is only ever written".to_owned())),
            Arg::Input(input) => {
                if *input >= self.input_count {
                    return Err(refuse(Rule::InputOutOfRange, format!("input {input} does not exist; the job has {} inputs", self.input_count)));
                }
                match forced {
                    None => Ok(()),
                    Some(ForcedFormat { format: Forced::Concat, .. }) => {
                        Err(refuse(Rule::BadConcatInput, format!("-f concat can only read a concat list temp, not input {input}")))
                    }
                    Some(ForcedFormat { value_at, .. }) => {
                        Err(Refusal::new(Rule::BadOptionValue, format!("-f before input {input}: a staged input's format is probed, never forced"))
                            .at(step, Some(value_at)))
                    }
                }
            }
            Arg::Temp(temp) => {
                let format = self.temp_format(*temp).ok_or_else(|| refuse(Rule::TempOutOfRange, self.temp_out_of_range(*temp)))?;
                match self.writer_of(*temp) {
                    Some(writer) if writer < step => {}
                    Some(_) => return Err(refuse(Rule::TempUsedBeforeWritten, format!("temp {temp} is read by the step that writes it"))),
                    None => return Err(refuse(Rule::TempUsedBeforeWritten, format!("temp {temp} is read before any step wrote it"))),
                }
                match (format, forced.map(|f| f.format)) {
                    (TempFormat::Ffconcat, Some(Forced::Concat)) | (TempFormat::Nut, None | Some(Forced::Nut)) => Ok(()),
                    (TempFormat::Ffconcat, _) => {
                        Err(refuse(Rule::BadConcatInput, format!("temp {temp} is a concat list: it can only be read right after -f concat -i")))
                    }
                    (TempFormat::Nut, Some(Forced::Concat)) => {
                        Err(refuse(Rule::BadConcatInput, format!("-f concat can only read a concat list temp; temp {temp} is NUT")))
                    }
                    (TempFormat::Nut, Some(Forced::Mp4)) => Err(refuse(Rule::TempFormatMismatch, format!("temp {temp} is NUT, not MP4"))),
                }
            }
        }
    }

    fn output_file(&mut self, step: usize, at: usize, file: &Arg, forced: Option<ForcedFormat>) -> Result<(), PolicyViolation> {
        let refuse = |rule: Rule, reason: String| Refusal::new(rule, reason).at(step, Some(at));
        let is_last_step = step + 1 == self.plan.steps.len();
        match file {
            Arg::Output => {
                if !is_last_step {
                    return Err(refuse(Rule::OutputNotLast, "only the plan's last step may write the job's output".to_owned()));
                }
                if let Some(ForcedFormat { format, value_at }) = forced {
                    if format != Forced::Mp4 {
                        return Err(Refusal::new(Rule::BadOptionValue, "the job's output is always MP4").at(step, Some(value_at)));
                    }
                }
                self.output_written = true;
                Ok(())
            }
            Arg::Temp(temp) => {
                let format = self.temp_format(*temp).ok_or_else(|| refuse(Rule::TempOutOfRange, self.temp_out_of_range(*temp)))?;
                if format != TempFormat::Nut {
                    return Err(refuse(Rule::TempFormatMismatch, format!("temp {temp} is a concat list; only a WriteConcatList step writes those")));
                }
                if let Some(ForcedFormat { format: forced, value_at }) = forced {
                    if forced != Forced::Nut {
                        return Err(Refusal::new(Rule::TempFormatMismatch, format!("temp {temp} is NUT; -f must be nut")).at(step, Some(value_at)));
                    }
                }
                self.mark_written(*temp, step).map_err(|refusal| refusal.at(step, Some(at)))
            }
            // The walker only calls this for temps and the output; refuse anything else.
            Arg::Input(_) | Arg::Literal(_) => Err(refuse(Rule::InputAsOutput, "not an output file".to_owned())),
        }
    }

    fn concat_list(&mut self, step: usize, list: &ConcatList) -> Result<(), Refusal> {
        let target = list.list;
        let format = self.temp_format(target).ok_or_else(|| Refusal::new(Rule::TempOutOfRange, self.temp_out_of_range(target)))?;
        if format != TempFormat::Ffconcat {
            return Err(Refusal::new(Rule::TempFormatMismatch, format!("temp {target} is NUT; a concat list is written to an ffconcat temp")));
        }
        if list.parts.is_empty() {
            return Err(Refusal::new(Rule::BadConcatList, "the concat list has no parts"));
        }
        // A list written again is refused as such, before its parts count as joined twice.
        self.mark_written(target, step)?;
        for (index, part) in list.parts.iter().enumerate() {
            let temp = part.temp;
            let format = self.temp_format(temp).ok_or_else(|| Refusal::new(Rule::TempOutOfRange, format!("part {index}: {}", self.temp_out_of_range(temp))))?;
            if format != TempFormat::Nut {
                return Err(Refusal::new(Rule::TempFormatMismatch, format!("part {index}: temp {temp} is a concat list; parts are NUT temps")));
            }
            let written_earlier = matches!(self.writer_of(temp), Some(writer) if writer < step);
            if !written_earlier {
                return Err(Refusal::new(Rule::TempUsedBeforeWritten, format!("part {index}: temp {temp} is listed before any step wrote it")));
            }
            // FFmpeg's ffconcat `duration` does not cut a file: a temp listed again and
            // again would be copied whole each time (a 475 KB segment listed 2,000 times,
            // twice over, filled gigabytes).
            if let Some(joined) = self.joined.get_mut(temp as usize) {
                if *joined {
                    return Err(Refusal::new(Rule::BadConcatList, format!("part {index}: temp {temp} is already a part of a concat list; each is joined once")));
                }
                *joined = true;
            }
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
            Some(Some(writer)) => Err(Refusal::new(Rule::TempWrittenTwice, format!("temp {temp} was already written by step {writer}"))),
            Some(slot) => {
                *slot = Some(step);
                Ok(())
            }
            None => Err(Refusal::new(Rule::TempOutOfRange, self.temp_out_of_range(temp))),
        }
    }
}
