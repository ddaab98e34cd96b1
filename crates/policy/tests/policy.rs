//! The policy against a realistic plan, one refusal per rule, and random mutations.

// A test's unwrap is its failure report.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use br_plan::{Arg, ConcatList, ConcatPart, Invocation, Plan, Step, TempFormat};
use br_policy::{check, check_all, PolicyLimits, PolicyViolation, Rule, Violations, MAX_LISTED_VIOLATIONS};

/// The song and two clips.
const INPUTS: u32 = 3;

const NORMALISE: &str =
    "setpts=PTS-STARTPTS,fps=30,scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p,settb=1/30";

/// `Input(n)`, `Temp(n)` and `Output` become files, `GRAPH` becomes `graph`, any other
/// word a literal.
fn args(text: &str, graph: &str) -> Vec<Arg> {
    text.split_whitespace()
        .map(|word| {
            let number = |prefix: &str| {
                word.strip_prefix(prefix).and_then(|rest| rest.strip_suffix(')')).and_then(|n| n.parse().ok())
            };
            if let Some(n) = number("Input(") {
                Arg::Input(n)
            } else if let Some(n) = number("Temp(") {
                Arg::Temp(n)
            } else if word == "Output" {
                Arg::Output
            } else if word == "GRAPH" {
                Arg::lit(graph)
            } else {
                Arg::lit(word)
            }
        })
        .collect()
}

fn ffmpeg(text: &str, graph: &str, media_seconds: f64, label: &str) -> Step {
    Step::Ffmpeg(Invocation { args: args(text, graph), media_seconds, label: label.to_owned() })
}

/// Clip 0 crossfading into clip 1, then clip 1 alone, joined, with the song added.
fn accepted_plan() -> Plan {
    let blend = format!(
        "[0:v]{NORMALISE},tpad=stop_mode=clone:stop_duration=0.5,trim=duration=0.5[p];\
         [1:v]{NORMALISE},tpad=stop_mode=clone:stop_duration=8.25,trim=duration=8.25[o];\
         [p][o]xfade=transition=fade:duration=0.5:offset=0[x1];\
         [x1]trim=start=0.25:duration=8,setpts=PTS-STARTPTS,fade=t=in:st=0:d=0.3:color=white[v]"
    );
    let alone = format!("[0:v]{NORMALISE},tpad=stop_mode=clone:stop_duration=8,trim=duration=8[v]");
    let audio = "[1:a]atrim=end=16,asetpts=PTS-STARTPTS,apad=whole_dur=16,aresample=48000,\
                 aformat=sample_fmts=fltp:channel_layouts=stereo,asetnsamples=n=64,\
                 volume='1+(0-1)*clip((t-8)/0.02+0.5\\,0\\,1)*clip((16-t)/0.02+0.5\\,0\\,1)':eval=frame,\
                 loudnorm=I=-16:TP=-1.5:LRA=11,aresample=48000[a]";
    let encode =
        "-map [v] -an -c:v libx264 -preset veryfast -threads 2 -b:v 2000000 -pix_fmt yuv420p -frames:v 240 -f nut";
    Plan {
        temps: vec![TempFormat::Nut, TempFormat::Nut, TempFormat::Ffconcat],
        steps: vec![
            ffmpeg(&format!("-ss 7.75 -t 0.5 -i Input(1) -t 8.25 -i Input(2) -filter_complex GRAPH {encode} Temp(0)"), &blend, 8.0, "move 0 (intro)"),
            ffmpeg(&format!("-ss 0.25 -t 8 -i Input(2) -filter_complex GRAPH {encode} Temp(1)"), &alone, 8.0, "move 1 (basic)"),
            Step::WriteConcatList(ConcatList { list: 2, parts: vec![ConcatPart { temp: 0, duration: 8.0 }, ConcatPart { temp: 1, duration: 8.0 }] }),
            ffmpeg(
                "-f concat -i Temp(2) -i Input(0) -filter_complex GRAPH -map 0:v -map [a] -c:v copy -c:a aac -b:a 128000 -ar 48000 -ac 2 -movflags +faststart -t 16 -f mp4 Output",
                audio,
                16.0,
                "join and add the song",
            ),
        ],
        warnings: Vec::new(),
    }
}

fn invocation(plan: &mut Plan, step: usize) -> &mut Invocation {
    match &mut plan.steps[step] {
        Step::Ffmpeg(invocation) => invocation,
        Step::WriteConcatList(_) => panic!("step {step} is not an FFmpeg step"),
    }
}

fn concat_list(plan: &mut Plan, step: usize) -> &mut ConcatList {
    match &mut plan.steps[step] {
        Step::WriteConcatList(list) => list,
        Step::Ffmpeg(_) => panic!("step {step} is not a concat list"),
    }
}

/// Index of the first literal `text` in the step's arguments.
fn position(plan: &mut Plan, step: usize, text: &str) -> usize {
    let args = &invocation(plan, step).args;
    args.iter().position(|arg| *arg == Arg::lit(text)).unwrap_or_else(|| panic!("no {text:?} in step {step}"))
}

/// `plan` with step `step`'s arguments replaced by `text` (see [`args`]).
fn with_args(step: usize, text: &str, graph: &str) -> Plan {
    let mut plan = accepted_plan();
    invocation(&mut plan, step).args = args(text, graph);
    plan
}

/// Where the first segment's filtergraph is.
fn graph_at() -> usize {
    position(&mut accepted_plan(), 0, "-filter_complex") + 1
}

/// `plan` with the first segment's filtergraph replaced.
fn with_graph(graph: &str) -> Plan {
    let mut plan = accepted_plan();
    invocation(&mut plan, 0).args[graph_at()] = Arg::lit(graph);
    plan
}

#[track_caller]
fn refused(plan: &Plan, rule: Rule) -> PolicyViolation {
    match check(plan, INPUTS, &PolicyLimits::default()) {
        Ok(_) => panic!("the plan was accepted; expected a refusal under {rule:?}"),
        Err(violation) => {
            assert_eq!(violation.rule, rule, "{violation}");
            violation
        }
    }
}

#[test]
fn a_realistic_plan_is_accepted() {
    let plan = accepted_plan();
    let checked = check(&plan, INPUTS, &PolicyLimits::default()).unwrap_or_else(|violation| panic!("{violation}"));
    assert_eq!(checked.plan(), &plan);
    assert_eq!(checked.into_inner(), plan);
}

#[test]
fn accepted_variants() {
    let alone = format!("[0:v]{NORMALISE},tpad=stop_mode=clone:stop_duration=8,trim=duration=8[v]");
    for text in [
        "-i Input(2) -vf GRAPH -r 30000/1001 -c:v libx265 -crf 23 -g 60 -bf 2 -maxrate 2M -bufsize 4M -tune film -profile:v main -fps_mode cfr -shortest -sn -dn Temp(1)",
        "-to 12.5 -i Input(2) -t 1 -i Input(0) -map 0:v:0 -map 1:a? -filter_complex GRAPH -codec:v libx264 -vcodec copy -r 29.97 -f nut Temp(1)",
        "-i Temp(0) -f nut -i Temp(0) -filter_complex GRAPH -vn -acodec copy -codec:a aac -af anull Temp(1)",
    ] {
        let plan = with_args(1, text, &alone);
        if let Err(violation) = check(&plan, INPUTS, &PolicyLimits::default()) {
            panic!("{text}: {violation}");
        }
    }
}

#[test]
fn violations_say_where() {
    let mut plan = accepted_plan();
    invocation(&mut plan, 3).args[1] = Arg::lit("lavfi");
    let violation = refused(&plan, Rule::BadOptionValue);
    assert_eq!((violation.step, violation.arg), (Some(3), Some(1)));
    let text = violation.to_string();
    assert!(text.starts_with("plan refused by policy: step 3, argument 1: \"lavfi\""), "{text}");

    let violation = refused(&Plan { temps: Vec::new(), steps: Vec::new(), warnings: Vec::new() }, Rule::EmptyPlan);
    assert_eq!(violation.to_string(), "plan refused by policy: the plan has no step");
}

// ---- Files: the plan never names one --------------------------------------------

#[test]
fn a_path_where_the_output_goes_is_refused() {
    let mut plan = accepted_plan();
    let last = invocation(&mut plan, 0).args.len() - 1;
    invocation(&mut plan, 0).args[last] = Arg::lit("/etc/passwd");
    let violation = refused(&plan, Rule::PathLikeLiteral);
    assert_eq!((violation.step, violation.arg), (Some(0), Some(last)));
    // Relative names too: anything not starting with '-' where an option is expected.
    refused(&with_args(1, "-i Input(2) out.mp4", ""), Rule::PathLikeLiteral);
}

#[test]
fn a_literal_after_dash_i_is_refused() {
    for literal in ["/etc/passwd", "http://x", "file:/etc/passwd", "pipe:0", "-", "concat:a|b", "movie=/etc/passwd"] {
        let violation = refused(&with_args(1, &format!("-i {literal} -f nut Temp(1)"), ""), Rule::PathLikeLiteral);
        assert_eq!(violation.arg, Some(1));
    }
}

#[test]
fn lavfi_and_concat_with_literals_are_refused() {
    let violation = refused(&with_args(1, "-f lavfi -i movie=/etc/passwd -f nut Temp(1)", ""), Rule::BadOptionValue);
    assert_eq!(violation.arg, Some(1));
    refused(&with_args(3, "-f concat -i /tmp/list.txt -f mp4 Output", ""), Rule::PathLikeLiteral);
    refused(&with_args(3, "-f concat -i http://x/list -f mp4 Output", ""), Rule::PathLikeLiteral);
    refused(&with_args(3, "-f concat http://x -f mp4 Output", ""), Rule::BadConcatInput);
}

#[test]
fn the_concat_demuxer_reads_only_concat_list_temps() {
    // On a staged input, a NUT temp, or not immediately followed by -i.
    refused(&with_args(3, "-f concat -i Input(0) -f mp4 Output", ""), Rule::BadConcatInput);
    refused(&with_args(3, "-f concat -i Temp(0) -f mp4 Output", ""), Rule::BadConcatInput);
    refused(&with_args(3, "-f concat -ss 1 -i Temp(2) -f mp4 Output", ""), Rule::BadConcatInput);
    refused(&with_args(3, "-f concat -f concat -i Temp(2) -f mp4 Output", ""), Rule::BadConcatInput);
    // A concat list read without -f concat.
    refused(&with_args(3, "-i Temp(2) -f mp4 Output", ""), Rule::BadConcatInput);
    refused(&with_args(3, "-f nut -i Temp(2) -f mp4 Output", ""), Rule::BadConcatInput);
}

#[test]
fn forced_formats_must_fit_their_file() {
    refused(&with_args(1, "-f mp4 -i Input(2) -f nut Temp(1)", ""), Rule::BadOptionValue);
    refused(&with_args(1, "-i Input(2) -f mp4 Temp(1)", ""), Rule::TempFormatMismatch);
    refused(&with_args(1, "-i Input(2) -f nut -f nut Temp(1)", ""), Rule::BadOptionValue);
    refused(&with_args(3, "-f concat -i Temp(2) -f nut Output", ""), Rule::BadOptionValue);
    refused(&with_args(3, "-f concat -i Temp(2) -f mp4 -i Temp(0) -f mp4 Output", ""), Rule::TempFormatMismatch);
}

#[test]
fn a_file_as_an_option_value_is_refused() {
    let violation = refused(&with_args(1, "-ss Input(1) -i Input(2) -f nut Temp(1)", ""), Rule::FileInValuePosition);
    assert_eq!(violation.arg, Some(1));
    refused(&with_args(1, "-i Input(2) -filter_complex Temp(0) -f nut Temp(1)", ""), Rule::FileInValuePosition);
    refused(&with_args(1, "-i Input(2) -f Output", ""), Rule::FileInValuePosition);
}

#[test]
fn input_and_temp_numbers_must_exist() {
    let violation = refused(&with_args(1, "-i Input(3) -f nut Temp(1)", ""), Rule::InputOutOfRange);
    assert_eq!(violation.arg, Some(1));
    refused(&with_args(1, "-i Input(4294967295) -f nut Temp(1)", ""), Rule::InputOutOfRange);
    refused(&with_args(1, "-i Input(2) -f nut Temp(3)", ""), Rule::TempOutOfRange);
    refused(&with_args(3, "-f concat -i Temp(9) -f mp4 Output", ""), Rule::TempOutOfRange);
    let mut plan = accepted_plan();
    concat_list(&mut plan, 2).list = 7;
    refused(&plan, Rule::TempOutOfRange);
    let mut plan = accepted_plan();
    concat_list(&mut plan, 2).parts[1].temp = 7;
    refused(&plan, Rule::TempOutOfRange);
}

/// A temp the plan does not declare is named, with how many the plan declares, wherever it is used.
#[test]
fn an_undeclared_temp_is_named_with_the_plans_count() {
    let violation = refused(&with_args(1, "-i Input(2) -f nut Temp(9)", ""), Rule::TempOutOfRange);
    assert_eq!(violation.reason, "temp 9 does not exist; the plan declares 3 temps");
    let violation = refused(&with_args(3, "-f concat -i Temp(8) -f mp4 Output", ""), Rule::TempOutOfRange);
    assert_eq!(violation.reason, "temp 8 does not exist; the plan declares 3 temps");
    let mut plan = accepted_plan();
    concat_list(&mut plan, 2).parts[1].temp = 7;
    assert_eq!(refused(&plan, Rule::TempOutOfRange).reason, "part 1: temp 7 does not exist; the plan declares 3 temps");
    let mut plan = accepted_plan();
    concat_list(&mut plan, 2).list = 6;
    assert_eq!(refused(&plan, Rule::TempOutOfRange).reason, "temp 6 does not exist; the plan declares 3 temps");
}

#[test]
fn inputs_are_never_written_and_the_output_never_read() {
    refused(&with_args(1, "-i Input(2) -f nut Input(1)", ""), Rule::InputAsOutput);
    refused(&with_args(3, "-f concat -i Temp(2) -i Output -f mp4 Output", ""), Rule::OutputAsInput);
}

// ---- Options ----------------------------------------------------------------------

#[test]
fn options_outside_the_table_are_refused() {
    for (option, value) in [
        ("-progress", "pipe:1"),
        ("-protocol_whitelist", "file,http"),
        ("-filter_complex_script", "x"),
        ("-/filter_complex", "x"),
        ("-attach", "x"),
        ("-dump_attachment:t", "x"),
        ("-safe", "0"),
        ("-y", "-y"),
        ("-nostdin", "-nostdin"),
        ("-loglevel", "debug"),
        ("-metadata", "title=x"),
        ("-c", "copy"),
        ("-I", "x"),
        ("--i", "x"),
        ("-", "x"),
    ] {
        let violation =
            refused(&with_args(1, &format!("{option} {value} -i Input(2) -f nut Temp(1)"), ""), Rule::UnknownOption);
        assert_eq!(violation.arg, Some(0), "{option}");
    }
}

#[test]
fn a_copied_audio_stream_may_only_have_its_packet_durations_set_by_arithmetic() {
    let plan = with_args(1, "-i Input(2) -c:a copy -bsf:a setts=duration='min(DURATION,4/TB-PTS)' -f nut Temp(1)", "");
    let checked = check(&plan, INPUTS, &PolicyLimits::default());
    assert!(checked.is_ok(), "{:?}", checked.err());
    for expression in ["while(1,1)", "st(0,1)", "RTCTIME", "1e9"] {
        let plan =
            with_args(1, &format!("-i Input(2) -c:a copy -bsf:a setts=duration='{expression}' -f nut Temp(1)"), "");
        refused(&plan, Rule::BadExpression);
    }
}

#[test]
fn an_input_may_be_shifted_by_at_most_a_second() {
    for value in ["-0.021333", "0.5", "-1", "1"] {
        let plan = with_args(1, &format!("-itsoffset {value} -i Input(2) -f nut Temp(1)"), "");
        let checked = check(&plan, INPUTS, &PolicyLimits::default());
        assert!(checked.is_ok(), "{value}: {:?}", checked.err());
    }
}

#[test]
fn option_values_must_have_their_shape() {
    for (option, value) in [
        ("-ss", "-5"),
        ("-ss", "1e3"),
        ("-ss", "NaN"),
        ("-t", "inf"),
        ("-t", "1234567"),
        ("-t", "00:00:01"),
        ("-to", ""),
        ("-itsoffset", "-1.5"),
        ("-itsoffset", "2"),
        ("-itsoffset", "--0.1"),
        ("-itsoffset", "-1e-3"),
        ("-bsf:a", "setts=pts='0'"),
        ("-bsf:a", "aac_adtstoasc"),
        ("-bsf:a", "setts=duration=DURATION"),
        ("-bsf:a", "setts=duration='DURATION',setts=pts='0'"),
        ("-threads", "17"),
        ("-threads", "-1"),
        ("-crf", "52"),
        ("-rc-lookahead", "251"),
        ("-rc-lookahead", "-1"),
        ("-frames:v", "0"),
        ("-ar", "7999"),
        ("-ac", "9"),
        ("-r", "241"),
        ("-r", "30/0"),
        ("-r", "0"),
        ("-r", "ntsc"),
        ("-b:v", "101M"),
        ("-b:v", "2.5M"),
        ("-c:v", "libvpx"),
        ("-c:a", "libopus"),
        ("-preset", "placebo"),
        ("-pix_fmt", "rgb24"),
        ("-movflags", "+faststart+frag_keyframe"),
        ("-f", "lavfi"),
        ("-f", "image2"),
        ("-fps_mode", "vfr"),
        ("-profile:v", "high10"),
        ("-map", "0:s"),
        ("-map", "[a;b]"),
        ("-map", "-0:v"),
    ] {
        let violation =
            refused(&with_args(1, &format!("{option} {value} -i Input(2) -f nut Temp(1)"), ""), Rule::BadOptionValue);
        assert_eq!(violation.arg, Some(1), "{option} {value}");
    }
}

#[test]
fn an_option_without_its_value_is_refused() {
    refused(&with_args(1, "-i Input(2) -f nut Temp(1) -t", ""), Rule::MissingOptionValue);
    refused(&with_args(1, "-i", ""), Rule::MissingOptionValue);
}

// ---- Filtergraphs -------------------------------------------------------------------

#[test]
fn forbidden_filters_are_refused() {
    for (graph, filter) in [
        ("movie=x[m];[0:v][m]xfade[v]", "movie"),
        ("[0:v]sendcmd=c='0 volume 0',null[v]", "sendcmd"),
        ("amovie=x,anull[a]", "amovie"),
        ("[0:v]null,zmq[v]", "zmq"),
        ("[0:v]azmq[v]", "azmq"),
        ("color=c=red[v]", "color"),
        ("testsrc[v]", "testsrc"),
        ("[0:v]subtitles=x.srt[v]", "subtitles"),
        ("[0:v]drawtext=text=hi[v]", "drawtext"),
        ("[0:v]select=eq(n\\,0)[v]", "select"),
        ("sws_flags=bicubic;[0:v]null[v]", "sws_flags"),
        ("[0:v]null[p];[p]MOVIE=x[v]", "MOVIE"),
    ] {
        let violation = refused(&with_graph(graph), Rule::ForbiddenFilter);
        assert!(violation.reason.contains(filter), "{graph}: {violation}");
        assert_eq!((violation.step, violation.arg), (Some(0), Some(graph_at())));
    }
}

#[test]
fn filters_hidden_by_quoting_are_refused() {
    for graph in [
        "[0:v]null[p];[p]mo\\vie=x[v]",
        "[0:v]null[p];[p]'movie'=x[v]",
        "[0:v]null,mov'ie'=x[v]",
        "[0:v]scale=1280:720'[v]",
        "[0:v]null[v",
        "[0:v]null]",
        "[0:v]null[v];",
        "[0:v]null[v];;null",
        "[0:v]null[a b]",
        "[0:v]null[this_label_is_longer_than_thirty_two]",
        "[0:v]scale=1280:720\\",
    ] {
        refused(&with_graph(graph), Rule::BadFiltergraph);
    }
}

#[test]
fn things_no_allowed_filter_needs_are_refused() {
    for graph in [
        "[0:v]scale=w='http://x'[v]",
        "[0:v]scale=filename=x[v]",
        "[0:v]scale=FileName=x[v]",
        "[0:v]fade=file=x[v]",
        "[0:v]fade=textfile=x[v]",
        "[0:v]null\n[v]",
        "[0:v]null\0[v]",
        "[0:v]null\u{85}[v]",
        // FFmpeg 7 loads `/option=path` from the file or URL `path`.
        "[0:v]fade=/t=x[v]",
        "[0:v]fade=t=in:/st=x[v]",
        "[0:v]fade='/st'=x[v]",
        "[0:v]fade=\\/st=x[v]",
    ] {
        refused(&with_graph(graph), Rule::BadFiltergraph);
    }
}

#[test]
fn a_url_is_refused_by_the_url_rule() {
    // The escaped ':' keeps the URL in one option value that does not start with '/',
    // so only the rule against "://" can refuse it.
    let violation = refused(&with_graph("[0:v]scale=w='http\\://x'[v]"), Rule::BadFiltergraph);
    assert!(violation.reason.contains("contains \"://\""), "{violation}");
}

#[test]
fn filters_are_counted() {
    let limit = PolicyLimits::default().max_filters_per_graph;
    let graph = |count: usize| format!("[0:v]{}[v]", vec!["null"; count].join(","));
    let accepted = with_graph(&graph(limit));
    assert!(check(&accepted, INPUTS, &PolicyLimits::default()).is_ok());
    refused(&with_graph(&graph(limit + 1)), Rule::TooManyFilters);
}

// ---- Temps --------------------------------------------------------------------------

#[test]
fn a_temp_read_before_it_is_written_is_refused() {
    // The join moved before the concat list.
    let mut plan = accepted_plan();
    plan.steps.swap(2, 3);
    refused(&plan, Rule::TempUsedBeforeWritten);
    // A segment reading the next segment's output.
    refused(&with_args(0, "-i Temp(1) -f nut Temp(0)", ""), Rule::TempUsedBeforeWritten);
    // A step reading its own output.
    refused(&with_args(1, "-i Temp(1) -f nut Temp(1)", ""), Rule::TempUsedBeforeWritten);
}

/// A step never reads the temp it writes, not even after its output argument.
#[test]
fn a_step_never_reads_its_own_output() {
    let violation =
        refused(&with_args(1, "-i Input(2) -f nut Temp(1) -i Temp(1) -an", ""), Rule::TempUsedBeforeWritten);
    assert_eq!(violation.arg, Some(6));
    assert!(violation.reason.contains("temp 1 is read by the step that writes it"), "{violation}");
}

#[test]
fn a_concat_list_naming_an_unwritten_temp_is_refused() {
    let mut plan = accepted_plan();
    plan.temps.push(TempFormat::Nut);
    concat_list(&mut plan, 2).parts.push(ConcatPart { temp: 3, duration: 1.0 });
    let violation = refused(&plan, Rule::TempUsedBeforeWritten);
    assert_eq!((violation.step, violation.arg), (Some(2), None));
    assert!(violation.reason.contains("part 2"), "{violation}");
}

#[test]
fn a_temp_written_twice_is_refused() {
    refused(&with_args(1, "-i Input(2) -f nut Temp(0)", ""), Rule::TempWrittenTwice);
    // The concat list written again by a second list step.
    let mut plan = accepted_plan();
    let list = plan.steps[2].clone();
    plan.steps.insert(3, list);
    refused(&plan, Rule::TempWrittenTwice);
}

#[test]
fn temps_keep_their_format() {
    // FFmpeg writing a concat list.
    refused(&with_args(1, "-i Input(2) Temp(2)", ""), Rule::TempFormatMismatch);
    // A concat list written to a NUT temp, or listing a concat list.
    let mut plan = accepted_plan();
    concat_list(&mut plan, 2).list = 1;
    refused(&plan, Rule::TempFormatMismatch);
    let mut plan = accepted_plan();
    plan.temps.push(TempFormat::Ffconcat);
    concat_list(&mut plan, 2).parts[0].temp = 3;
    refused(&plan, Rule::TempFormatMismatch);
}

#[test]
fn a_temp_is_joined_once() {
    // The same segment twice in one list.
    let mut plan = accepted_plan();
    concat_list(&mut plan, 2).parts[1].temp = 0;
    let violation = refused(&plan, Rule::BadConcatList);
    assert!(violation.reason.contains("part 1: temp 0 is already a part of a concat list"), "{violation}");
    // Or in a second list.
    let mut plan = accepted_plan();
    plan.temps.push(TempFormat::Ffconcat);
    plan.steps
        .insert(3, Step::WriteConcatList(ConcatList { list: 3, parts: vec![ConcatPart { temp: 1, duration: 8.0 }] }));
    let violation = refused(&plan, Rule::BadConcatList);
    assert_eq!(violation.step, Some(3), "{violation}");
}

#[test]
fn a_concat_list_needs_parts() {
    let mut plan = accepted_plan();
    concat_list(&mut plan, 2).parts.clear();
    refused(&plan, Rule::BadConcatList);
}

// ---- Outputs ------------------------------------------------------------------------

#[test]
fn a_step_writes_exactly_one_file() {
    let violation = refused(&with_args(1, "-i Input(2) Temp(1) Output", ""), Rule::OutputCount);
    assert_eq!(violation.arg, Some(3));
    refused(&with_args(3, "-f concat -i Temp(2) -f mp4 Output Output", ""), Rule::OutputCount);
    refused(&with_args(1, "-i Input(2) -f nut", ""), Rule::OutputCount);
}

#[test]
fn a_plan_without_the_output_is_refused() {
    // The last step is the concat list.
    let mut plan = accepted_plan();
    plan.steps.pop();
    let violation = refused(&plan, Rule::OutputCount);
    assert_eq!(violation.step, Some(2));
    // The last step writes a fresh temp instead of the output.
    let mut plan = with_args(3, "-f concat -i Temp(2) -f nut Temp(3)", "");
    plan.temps.push(TempFormat::Nut);
    let violation = refused(&plan, Rule::OutputCount);
    assert_eq!((violation.step, violation.arg), (Some(3), None));
}

#[test]
fn the_output_comes_last() {
    // Not the step's last argument.
    let violation = refused(&with_args(3, "-f concat -i Temp(2) -f mp4 Output -t 16", ""), Rule::OutputNotLast);
    assert_eq!(violation.arg, Some(6));
    refused(&with_args(1, "-i Input(2) Temp(1) -an", ""), Rule::OutputNotLast);
    // Not the plan's last step.
    refused(&with_args(1, "-i Input(2) -f mp4 Output", ""), Rule::OutputNotLast);
}

#[test]
fn every_ffmpeg_step_reads_an_input() {
    refused(&with_args(1, "-f nut Temp(1)", ""), Rule::NoInput);
}

// ---- Counts and sizes ---------------------------------------------------------------

/// The accepted plan behind 10,000 steps that each also break other rules (an unknown
/// option, the output everywhere): the count must be what is reported, without looking
/// at any argument.
fn ten_thousand_bad_steps() -> Plan {
    let plan = accepted_plan();
    let bad_step = ffmpeg("-protocol_whitelist http -i Input(99) Output", "", 1.0, "x");
    let mut steps = vec![bad_step; 10_000];
    steps.extend(plan.steps);
    Plan { temps: plan.temps, steps, warnings: Vec::new() }
}

#[test]
fn ten_thousand_steps_are_refused_before_anything_else() {
    let huge = ten_thousand_bad_steps();
    let started = Instant::now();
    let violation = refused(&huge, Rule::TooManySteps);
    assert!(started.elapsed() < Duration::from_millis(100), "took {:?}", started.elapsed());
    assert_eq!((violation.step, violation.arg), (None, None));
}

#[test]
fn too_many_temps_are_refused() {
    let mut plan = accepted_plan();
    plan.temps.extend(vec![TempFormat::Nut; 5_000]);
    refused(&plan, Rule::TooManyTemps);
}

#[test]
fn a_200_kib_argument_is_refused() {
    let huge = format!("[0:v]{}[v]", "null,".repeat(200 * 1024 / 5));
    let violation = refused(&with_graph(&huge), Rule::ArgumentTooLarge);
    assert_eq!((violation.step, violation.arg), (Some(0), Some(graph_at())));
}

#[test]
fn sizes_are_checked_before_arguments_are_parsed() {
    // A forbidden filter in step 0 and an oversized argument in step 3: size first.
    let mut plan = with_graph("movie=x");
    invocation(&mut plan, 3).args.insert(0, Arg::lit("x".repeat(97 * 1024)));
    refused(&plan, Rule::ArgumentTooLarge);
}

#[test]
fn a_step_too_large_is_refused() {
    let graph = format!("[0:v]{}null[v]", "null,".repeat(90 * 1024 / 5));
    let mut plan = accepted_plan();
    let args = &mut invocation(&mut plan, 1).args;
    for _ in 0..6 {
        args.insert(0, Arg::lit(graph.clone()));
        args.insert(0, Arg::lit("-vf"));
    }
    refused(&plan, Rule::StepTooLarge);
}

#[test]
fn too_many_arguments_are_refused() {
    let mut plan = accepted_plan();
    invocation(&mut plan, 1).args.splice(0..0, vec![Arg::lit("-an"); 257]);
    refused(&plan, Rule::TooManyArguments);
}

#[test]
fn too_many_concat_parts_are_refused() {
    let mut plan = accepted_plan();
    concat_list(&mut plan, 2).parts = vec![ConcatPart { temp: 0, duration: 1.0 }; 2_001];
    refused(&plan, Rule::TooManyConcatParts);
}

/// Every count and size limit allows its own value: the accepted plan under limits it meets
/// exactly passes, and with any one of them a unit lower it is refused under that limit's rule.
#[test]
fn counts_and_sizes_are_allowed_up_to_their_limit() {
    let plan = accepted_plan();
    let invocations: Vec<&Invocation> = plan
        .steps
        .iter()
        .filter_map(|step| if let Step::Ffmpeg(invocation) = step { Some(invocation) } else { None })
        .collect();
    let literal_bytes = |arg: &Arg| if let Arg::Literal(text) = arg { text.len() } else { 0 };
    let exact = PolicyLimits {
        max_steps: plan.steps.len(),
        max_temps: plan.temps.len(),
        max_args_per_step: invocations.iter().map(|invocation| invocation.args.len()).max().unwrap_or_default(),
        max_arg_bytes: invocations
            .iter()
            .flat_map(|invocation| invocation.args.iter().map(literal_bytes))
            .max()
            .unwrap_or_default(),
        max_step_bytes: invocations
            .iter()
            .map(|invocation| invocation.args.iter().map(literal_bytes).sum())
            .max()
            .unwrap_or_default(),
        max_concat_parts: 2,
        ..PolicyLimits::default()
    };
    if let Err(violation) = check(&plan, INPUTS, &exact) {
        panic!("at its limits: {violation}");
    }
    let verdict_with = |lower: fn(&mut PolicyLimits)| {
        let mut limits = exact.clone();
        lower(&mut limits);
        check(&plan, INPUTS, &limits).map(|_| ()).map_err(|violation| violation.rule)
    };
    assert_eq!(verdict_with(|limits| limits.max_steps -= 1), Err(Rule::TooManySteps));
    assert_eq!(verdict_with(|limits| limits.max_temps -= 1), Err(Rule::TooManyTemps));
    assert_eq!(verdict_with(|limits| limits.max_args_per_step -= 1), Err(Rule::TooManyArguments));
    assert_eq!(verdict_with(|limits| limits.max_arg_bytes -= 1), Err(Rule::ArgumentTooLarge));
    assert_eq!(verdict_with(|limits| limits.max_step_bytes -= 1), Err(Rule::StepTooLarge));
    assert_eq!(verdict_with(|limits| limits.max_concat_parts -= 1), Err(Rule::TooManyConcatParts));
}

#[test]
fn stated_durations_are_finite_and_bounded() {
    let limits = PolicyLimits::default();
    for (seconds, rule) in [
        (f64::NAN, Rule::BadNumber),
        (f64::INFINITY, Rule::BadNumber),
        (-1.0, Rule::BadNumber),
        (limits.max_media_seconds + 1.0, Rule::TooMuchMedia),
    ] {
        let mut plan = accepted_plan();
        invocation(&mut plan, 1).media_seconds = seconds;
        refused(&plan, rule);
    }
    let mut plan = accepted_plan();
    invocation(&mut plan, 1).media_seconds = 0.0;
    assert!(check(&plan, INPUTS, &limits).is_ok());

    for (seconds, rule) in [
        (0.0, Rule::BadNumber),
        (f64::NAN, Rule::BadNumber),
        (f64::NEG_INFINITY, Rule::BadNumber),
        (limits.max_media_seconds, Rule::TooMuchMedia),
    ] {
        let mut plan = accepted_plan();
        concat_list(&mut plan, 2).parts[0].duration = seconds;
        refused(&plan, rule);
    }
    // A one-part list of exactly the limit: only the rule on one part can refuse it
    // (the total equals the limit, which the rule on the sum allows).
    let mut plan = accepted_plan();
    concat_list(&mut plan, 2).parts.truncate(1);
    concat_list(&mut plan, 2).parts[0].duration = limits.max_media_seconds;
    let violation = refused(&plan, Rule::TooMuchMedia);
    assert!(violation.reason.starts_with("part 0's duration is"), "{violation}");
    // Each part below the limit, together above it.
    let mut plan = accepted_plan();
    for part in &mut concat_list(&mut plan, 2).parts {
        part.duration = limits.max_media_seconds * 0.75;
    }
    refused(&plan, Rule::TooMuchMedia);
}

#[test]
fn labels_are_short_and_printable() {
    for label in ["x".repeat(129), "move 1\nERROR forged log line".to_owned(), "\u{1b}[31mred".to_owned()] {
        let mut plan = accepted_plan();
        invocation(&mut plan, 1).label = label;
        refused(&plan, Rule::BadLabel);
    }
    let mut plan = accepted_plan();
    invocation(&mut plan, 1).label = "é".repeat(64);
    assert!(check(&plan, INPUTS, &PolicyLimits::default()).is_ok());
}

// ---- Every violation (check_all) ------------------------------------------------------

#[track_caller]
fn all_refused(plan: &Plan) -> Violations {
    match check_all(plan, INPUTS, &PolicyLimits::default()) {
        Ok(_) => panic!("the plan was accepted; expected violations"),
        Err(violations) => violations,
    }
}

/// Each violation as (step, argument, rule).
fn places(violations: &Violations) -> Vec<(Option<usize>, Option<usize>, Rule)> {
    violations.listed().iter().map(|violation| (violation.step, violation.arg, violation.rule)).collect()
}

#[test]
fn check_all_accepts_what_check_accepts() {
    let plan = accepted_plan();
    let checked = check_all(&plan, INPUTS, &PolicyLimits::default());
    let checked = checked.unwrap_or_else(|violations| panic!("{violations}"));
    assert_eq!(checked.into_inner(), plan);
}

#[test]
fn three_violations_in_three_steps_are_all_listed_in_order() {
    let mut plan = with_graph("[0:v]null,movie=x[v]");
    invocation(&mut plan, 1).args.splice(0..0, [Arg::lit("-metadata"), Arg::lit("title=x")]);
    let channels = position(&mut plan, 3, "-ac") + 1;
    invocation(&mut plan, 3).args[channels] = Arg::lit("9");
    let violations = all_refused(&plan);
    assert_eq!(
        places(&violations),
        [
            (Some(0), Some(graph_at()), Rule::ForbiddenFilter),
            (Some(1), Some(0), Rule::UnknownOption),
            (Some(3), Some(channels), Rule::BadOptionValue),
        ],
        "{violations:#?}"
    );
    assert_eq!((violations.total(), violations.unlisted()), (3, 0));
    // `check` reports the first of them.
    assert_eq!(check(&plan, INPUTS, &PolicyLimits::default()).err().as_ref(), violations.first());
    let text = violations.to_string();
    assert!(text.starts_with("plan refused by policy: 3 violations: step 0, argument "), "{text}");
    let second_and_third = "; step 1, argument 0: the option \"-metadata\" is not allowed; step 3, argument ";
    assert!(text.contains(second_and_third), "{text}");
    assert!(!text.contains("more"), "{text}");
}

#[test]
fn two_bad_filters_in_one_graph_are_both_listed_by_name_and_place() {
    let graph = "[0:v]scale=1280:9999,null,sendcmd=c=x,fps=30[v]";
    let violations = all_refused(&with_graph(graph));
    assert_eq!(
        places(&violations),
        [(Some(0), Some(graph_at()), Rule::FilterValueOutOfBounds), (Some(0), Some(graph_at()), Rule::ForbiddenFilter)],
        "{violations:#?}"
    );
    let reasons: Vec<&str> = violations.listed().iter().map(|violation| violation.reason.as_str()).collect();
    assert!(reasons[0].starts_with("filter 0 (`scale`, byte 5): "), "{reasons:?}");
    assert_eq!(reasons[1], "filter 2 (`sendcmd`, byte 26) is not on the allow-list");
}

#[test]
fn a_refused_step_still_counts_as_writing_its_temp() {
    // Step 1 is left at its first argument; step 2 lists its temp 1 all the same.
    let mut unreadable = accepted_plan();
    invocation(&mut unreadable, 1).args.insert(0, Arg::lit("-protocol_whitelist"));
    // Step 0 writes temp 0 with the wrong -f: refused, but written.
    let wrong_format = with_args(0, "-i Input(1) -f mp4 Temp(0)", "");
    // Step 1 is too large to parse at all.
    let mut too_large = accepted_plan();
    invocation(&mut too_large, 1).args.splice(0..0, vec![Arg::lit("-an"); 257]);
    // The concat list names a temp no step wrote: still, the list itself is written.
    let mut bad_part = accepted_plan();
    bad_part.temps.push(TempFormat::Nut);
    concat_list(&mut bad_part, 2).parts.push(ConcatPart { temp: 3, duration: 1.0 });
    for (plan, expected) in [
        (unreadable, (Some(1), Some(0), Rule::UnknownOption)),
        (wrong_format, (Some(0), Some(3), Rule::TempFormatMismatch)),
        (too_large, (Some(1), None, Rule::TooManyArguments)),
        (bad_part, (Some(2), None, Rule::TempUsedBeforeWritten)),
    ] {
        let violations = all_refused(&plan);
        assert_eq!(places(&violations), [expected], "{violations:#?}");
    }
}

#[test]
fn a_value_left_out_is_reported_once() {
    // The option name or the output where a value is expected: the option lacks its
    // value, and the step is read on as if it were not there.
    for (text, expected) in [
        ("-ss -i Input(2) -f nut Temp(1)", (Some(1), Some(1), Rule::BadOptionValue)),
        ("-i Input(2) -f Temp(1)", (Some(1), Some(3), Rule::FileInValuePosition)),
        ("-i -f nut Temp(1)", (Some(1), Some(1), Rule::PathLikeLiteral)),
        ("-f concat -ss 1 -i Temp(2) -f mp4 Output", (Some(3), Some(2), Rule::BadConcatInput)),
    ] {
        let step = expected.0.unwrap_or_default();
        let violations = all_refused(&with_args(step, text, ""));
        assert_eq!(places(&violations), [expected], "{text}: {violations:#?}");
    }
}

/// A staged input as a step's last argument is refused, and stands where the output goes:
/// the step is not also said to write no file. An input earlier in the step is no output, so
/// the temp after it is not a second file.
#[test]
fn an_input_in_the_outputs_place_is_reported_once() {
    for (text, expected) in [
        ("-i Input(2) -f nut Input(1)", (Some(1), Some(4), Rule::InputAsOutput)),
        ("-i Input(2) Input(1) -f nut Temp(1)", (Some(1), Some(2), Rule::InputAsOutput)),
    ] {
        let violations = all_refused(&with_args(1, text, ""));
        let in_step: Vec<_> = places(&violations).into_iter().filter(|(step, _, _)| *step == Some(1)).collect();
        assert_eq!(in_step, [expected], "{text}: {violations:#?}");
    }
}

/// A step left unread still writes its output only if it is the plan's last: the job's output
/// named by an earlier step does not make up for a last step that writes none.
#[test]
fn only_the_last_step_left_unread_counts_as_writing_the_output() {
    let mut plan = with_args(1, "-metadata title=x -i Input(2) Output", "");
    plan.steps.pop();
    let violations = all_refused(&plan);
    assert_eq!(
        places(&violations),
        [
            (Some(1), Some(0), Rule::UnknownOption),
            (Some(2), None, Rule::TempUsedBeforeWritten),
            (Some(2), None, Rule::OutputCount)
        ],
        "{violations:#?}"
    );
}

#[test]
fn independent_mistakes_in_one_step_are_all_listed() {
    let violations = all_refused(&with_args(1, "-crf 99 -i Input(7) -ac 9 -f nut Temp(1) -an", ""));
    assert_eq!(
        places(&violations),
        [
            (Some(1), Some(1), Rule::BadOptionValue),
            (Some(1), Some(3), Rule::InputOutOfRange),
            (Some(1), Some(5), Rule::BadOptionValue),
            (Some(1), Some(8), Rule::OutputNotLast),
        ],
        "{violations:#?}"
    );
}

#[test]
fn a_plan_that_cannot_be_walked_lists_only_why() {
    let huge = ten_thousand_bad_steps();
    let started = Instant::now();
    let violations = all_refused(&huge);
    assert!(started.elapsed() < Duration::from_millis(100), "took {:?}", started.elapsed());
    assert_eq!(places(&violations), [(None, None, Rule::TooManySteps)]);
    // Nor does an empty plan also lack its output.
    let violations = all_refused(&Plan { temps: Vec::new(), steps: Vec::new(), warnings: Vec::new() });
    assert_eq!(places(&violations), [(None, None, Rule::EmptyPlan)]);
}

#[test]
fn sizes_are_listed_before_the_steps_are_walked() {
    // As `check` sees them: the oversized argument of step 3 before step 0's filter.
    let mut plan = with_graph("movie=x");
    invocation(&mut plan, 3).args.insert(0, Arg::lit("x".repeat(97 * 1024)));
    let violations = all_refused(&plan);
    assert_eq!(
        places(&violations),
        [(Some(3), Some(0), Rule::ArgumentTooLarge), (Some(0), Some(graph_at()), Rule::ForbiddenFilter)]
    );
}

#[test]
fn the_list_stops_at_its_cap_and_counts_the_rest() {
    let over = 20;
    let bad_values = vec!["-crf 99"; MAX_LISTED_VIOLATIONS + over].join(" ");
    let violations = all_refused(&with_args(1, &format!("{bad_values} -i Input(2) -f nut Temp(1)"), ""));
    assert_eq!(violations.listed().len(), MAX_LISTED_VIOLATIONS);
    assert_eq!((violations.unlisted(), violations.total()), (over, MAX_LISTED_VIOLATIONS + over));
    let expected: Vec<_> =
        (0..MAX_LISTED_VIOLATIONS).map(|k| (Some(1), Some(2 * k + 1), Rule::BadOptionValue)).collect();
    assert_eq!(places(&violations), expected);
    let text = violations.to_string();
    assert!(text.starts_with("plan refused by policy: 120 violations: step 1, argument 1: \"99\""), "{text}");
    assert!(text.ends_with(&format!("; and {} more", MAX_LISTED_VIOLATIONS + over - 3)), "{text}");
}

// ---- Random mutations -----------------------------------------------------------------

/// xorshift64*: deterministic, so a failure can be replayed from the printed seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const FRAGMENTS: &[&str] = &[
    "'",
    "\\",
    "[",
    "]",
    ";",
    ",",
    "=",
    ":",
    "/",
    "@",
    " ",
    "-",
    ".",
    "?",
    "\0",
    "\n",
    "é",
    "😀",
    "movie",
    "/etc/passwd",
    "http://x",
    "-i",
    "-f",
    "concat",
    "lavfi",
    "[x]",
    "'a;b'",
    "\\'",
    "/volume=",
    "9999999999",
    "NaN",
    "1e9",
    "0",
    "null,",
    "sendcmd",
    "@x",
    "=/",
    "::",
];

const WORDS: &[&str] = &[
    "-i",
    "-f",
    "-ss",
    "-t",
    "-map",
    "-filter_complex",
    "-vf",
    "-an",
    "concat",
    "nut",
    "mp4",
    "[v]",
    "0:v",
    "",
    "-",
    "--",
    "null",
    "'",
    "\\",
    "30000/1001",
];

fn mutate_literal(text: &str, random: &mut Random) -> String {
    let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let at = *random.pick(&boundaries);
    match random.below(5) {
        0 => format!("{}{}{}", &text[..at], random.pick(FRAGMENTS), &text[at..]),
        1 => {
            let end = *random.pick(&boundaries);
            let (start, end) = (at.min(end), at.max(end));
            format!("{}{}", &text[..start], &text[end..])
        }
        2 => text[..at].to_owned(),
        3 => (*random.pick(WORDS)).to_owned(),
        _ => format!("{}{}", &text[at..], &text[..at]),
    }
}

fn random_file(random: &mut Random) -> Arg {
    match random.below(4) {
        0 => Arg::Input(random.below(5) as u32),
        1 => Arg::Temp(random.below(5) as u32),
        2 => Arg::Output,
        _ => Arg::lit(*random.pick(WORDS)),
    }
}

fn mutate(plan: &mut Plan, random: &mut Random) {
    let step = random.below(plan.steps.len());
    if random.below(20) == 0 {
        let other = random.below(plan.steps.len());
        plan.steps.swap(step, other);
        return;
    }
    match &mut plan.steps[step] {
        Step::Ffmpeg(invocation) => {
            let args = &mut invocation.args;
            if args.is_empty() {
                args.push(random_file(random));
                return;
            }
            let at = random.below(args.len());
            match random.below(10) {
                0..=5 => {
                    if let Arg::Literal(text) = &args[at] {
                        args[at] = Arg::Literal(mutate_literal(text, random));
                    }
                }
                6 => args[at] = random_file(random),
                7 => {
                    let other = random.below(args.len());
                    args.swap(at, other);
                }
                8 => {
                    args.remove(at);
                }
                _ => {
                    let copy = args[at].clone();
                    args.insert(random.below(args.len() + 1), copy);
                }
            }
        }
        Step::WriteConcatList(list) => {
            let part = random.below(list.parts.len());
            match random.below(4) {
                0 => list.list = random.below(5) as u32,
                1 if part < list.parts.len() => list.parts[part].temp = random.below(5) as u32,
                2 if part < list.parts.len() => {
                    list.parts[part].duration = *random.pick(&[f64::NAN, 0.0, -1.0, 1e300, 0.5])
                }
                _ => {
                    list.parts.truncate(part);
                }
            }
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let seed = fuzz_seed();
    let mut random = Random(seed);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..fuzz_iterations() {
        let mut plan = accepted_plan();
        for _ in 0..1 + random.below(4) {
            mutate(&mut plan, &mut random);
        }
        match check(&plan, INPUTS, &PolicyLimits::default()) {
            Ok(checked) => {
                accepted += 1;
                assert_accepted_shape(checked.plan());
            }
            Err(violation) => {
                rejected += 1;
                // Every refusal can be displayed, and points inside the plan.
                let _ = violation.to_string();
                if let Some(step) = violation.step {
                    assert!(step < plan.steps.len(), "seed {seed:#x}: {violation}");
                }
            }
        }
    }
    // Some mutations are harmless (a swapped flag, a changed digit): both outcomes occur.
    eprintln!("seed {seed:#x}: accepted {accepted}, refused {rejected}");
    assert!(accepted > 0 && rejected > 0, "accepted {accepted}, refused {rejected}");
}

#[test]
fn check_reports_the_first_violation_check_all_lists() {
    let seed = fuzz_seed();
    let mut random = Random(seed);
    let limits = PolicyLimits::default();
    let mut several = 0;
    for _ in 0..fuzz_iterations() {
        let mut plan = accepted_plan();
        for _ in 0..1 + random.below(4) {
            mutate(&mut plan, &mut random);
        }
        match (check(&plan, INPUTS, &limits), check_all(&plan, INPUTS, &limits)) {
            (Ok(one), Ok(all)) => assert_eq!(one, all),
            (Err(first), Err(all)) => {
                assert_eq!(Some(&first), all.first(), "seed {seed:#x}: {all:#?}");
                let inside = |violation: &PolicyViolation| violation.step.is_none_or(|step| step < plan.steps.len());
                assert!(all.listed().iter().all(inside), "seed {seed:#x}: {all:#?}");
                several += usize::from(all.total() > 1);
            }
            (one, all) => panic!("seed {seed:#x}: check says {one:?}, check_all {all:?}"),
        }
    }
    assert!(several > 0, "no mutated plan broke more than one rule");
}

/// `POLICY_FUZZ_ITERATIONS` when set, to explore further than the default run.
fn fuzz_iterations() -> usize {
    std::env::var("POLICY_FUZZ_ITERATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(5_000)
}

/// The seed, from `POLICY_FUZZ_SEED` (hex) when set, to replay or explore.
fn fuzz_seed() -> u64 {
    let from_environment = std::env::var("POLICY_FUZZ_SEED")
        .ok()
        .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok());
    // xorshift never leaves 0.
    from_environment.unwrap_or(0x5eed_b10c).max(1)
}

/// What any accepted plan looks like, whatever it was mutated from: the output once,
/// at the very end; every `-i` followed by an input or a temp.
fn assert_accepted_shape(plan: &Plan) {
    let mut outputs = 0;
    for (index, step) in plan.steps.iter().enumerate() {
        if let Step::Ffmpeg(invocation) = step {
            for (at, arg) in invocation.args.iter().enumerate() {
                if *arg == Arg::Output {
                    outputs += 1;
                    assert!(index + 1 == plan.steps.len() && at + 1 == invocation.args.len());
                }
                if *arg == Arg::lit("-i") {
                    assert!(matches!(invocation.args.get(at + 1), Some(Arg::Input(_) | Arg::Temp(_))));
                }
            }
        }
    }
    assert_eq!(outputs, 1);
}

// ---- The real planner -----------------------------------------------------------------

mod planner {
    use br_blueprint::{MoveSlot, Transition, Validated};
    use br_plan::{AudioFacts, MediaFacts, PlanRequest, VideoFacts};
    use br_policy::{check, PolicyLimits};

    fn example() -> Validated {
        br_blueprint::validate(include_str!("../../../examples/backend-blueprint.json"))
            .unwrap_or_else(|errors| panic!("{errors:?}"))
    }

    fn inputs(validated: &Validated, clip_seconds: f64) -> Vec<MediaFacts> {
        let song = MediaFacts {
            key: validated.audio_key.clone(),
            duration: validated.total_duration + 5.0,
            video: None,
            audio: Some(AudioFacts {
                codec: "mp3".into(),
                sample_rate: 44_100,
                channels: 2,
                duration: validated.total_duration + 5.0,
            }),
        };
        let clip = |key: &String| MediaFacts {
            key: key.clone(),
            duration: clip_seconds,
            video: Some(VideoFacts {
                codec: "h264".into(),
                width: 1920,
                height: 1080,
                frame_rate: 29.97,
                pixel_format: "yuv420p".into(),
                duration: clip_seconds,
            }),
            audio: None,
        };
        std::iter::once(song).chain(validated.clip_keys.iter().map(clip)).collect()
    }

    #[track_caller]
    fn assert_planner_output_passes(validated: Validated, clip_seconds: f64) {
        let validated = validated.as_written();
        let inputs = inputs(&validated, clip_seconds);
        let input_count = inputs.len() as u32;
        let request = PlanRequest { validated, inputs, strict: false, prepared: Vec::new(), song_loudness: None };
        let plan = br_plan::plan(&request).unwrap_or_else(|errors| panic!("{errors:?}"));
        // The limits the host sets for this very job: sizes, rates and times bounded by it.
        if let Err(violation) = check(&plan, input_count, &PolicyLimits::for_request(&request)) {
            panic!("{violation}");
        }
    }

    /// A job's limits follow its request: the output frame the planner derives (1920x1080
    /// clips, no size asked: their own size) and the longer of the timeline and the longest
    /// input, plus ten seconds of slack.
    #[test]
    fn a_jobs_limits_follow_its_request() {
        let validated = example();
        for (clip_seconds, media) in [(8.0, validated.total_duration + 5.0), (400.0, 400.0)] {
            let inputs = inputs(&validated, clip_seconds);
            let request = PlanRequest {
                validated: validated.clone(),
                inputs,
                strict: false,
                prepared: Vec::new(),
                song_loudness: None,
            };
            let limits = PolicyLimits::for_request(&request);
            assert_eq!((limits.max_frame_width, limits.max_frame_height), (1920, 1080));
            assert_eq!(limits.max_media_seconds, media + 10.0, "clips of {clip_seconds} s");
        }
    }

    #[test]
    fn the_example_blueprint_passes() {
        assert_planner_output_passes(example(), 8.0);
    }

    #[test]
    fn every_transition_volume_and_setting_passes() {
        let transitions = [Transition::Cut, Transition::Crossfade, Transition::FadeBlack, Transition::FadeWhite];
        let mut validated = example();
        for (index, slot) in validated.moves.iter_mut().enumerate() {
            slot.transition = transitions[index % transitions.len()];
            slot.volume = [1.0, 0.5, 0.0, 1.5][index % 4];
            slot.trim_start = [0.0, 0.25, 2.5][index % 3];
        }
        validated.output.frame_rate = 29.97;
        validated.output.width = Some(1280);
        assert_planner_output_passes(validated.clone(), 3.0);

        validated.output.normalize_audio = false;
        validated.output.add_audio_overlay = false;
        validated.output.video_codec = "libx265".into();
        validated.output.frame_rate = 23.976;
        validated.output.height = Some(2160);
        assert_planner_output_passes(validated, 12.0);
    }

    /// Every clip prepared for the job's profile (as the host stages them): the plan
    /// copies runs of at least a GOP from a keyframe on and renders the rest, every frame
    /// exactly once, and the policy accepts it, whatever the song's normalisation. Steps of
    /// bridges alone encode with one thread and no look-ahead (two of them share the
    /// cores); longer rendered parts with the segments' threads (two at 720p, one above).
    #[test]
    fn prepared_clips_are_copied_from_keyframes() {
        prepared_clips_are_copied_at(1280, 720, "2", true, false);
        prepared_clips_are_copied_at(1280, 720, "2", true, true);
        prepared_clips_are_copied_at(1280, 720, "2", false, false);
        prepared_clips_are_copied_at(1920, 1080, "1", true, false);
    }

    fn prepared_clips_are_copied_at(width: u32, height: u32, segment_threads: &str, normalize: bool, measured: bool) {
        use br_plan::{Arg, Step};
        let mut validated = example();
        validated.output.normalize_audio = normalize;
        let song_loudness =
            measured.then_some(br_plan::Loudness { integrated: -20.0, range: 6.0, true_peak: -6.0, seconds: 176.0 });
        validated.output.width = Some(width);
        validated.output.height = Some(height);
        let profile = br_plan::prepare::Profile::of(&validated, &inputs(&validated, 12.0)).unwrap();
        let mut inputs = inputs(&validated, 12.0);
        for facts in inputs.iter_mut().skip(1) {
            facts.key = format!("prepared/{}/{}", profile.id(), facts.key);
            let video = facts.video.as_mut().unwrap();
            (video.width, video.height, video.frame_rate) = (width, height, 30.0);
        }
        let input_count = inputs.len() as u32;
        let prepared = (0..inputs.len())
            .map(|input| {
                (input > 0).then(|| br_plan::PreparedClip {
                    profile_id: profile.id(),
                    gop_frames: 15,
                    first_gop_frames: 15,
                    frames: 360,
                })
            })
            .collect();
        let request = PlanRequest { validated: validated.clone(), inputs, strict: false, prepared, song_loudness };
        let plan = br_plan::plan(&request).unwrap_or_else(|errors| panic!("{errors:?}"));
        if let Err(violation) = check(&plan, input_count, &PolicyLimits::for_request(&request)) {
            panic!("{violation}");
        }
        let value_of = |args: &[Arg], name: &str| {
            args.windows(2).find_map(|pair| match pair {
                [Arg::Literal(option), Arg::Literal(value)] if option == name => Some(value.clone()),
                _ => None,
            })
        };
        let (mut frames, mut copied, mut bridge_steps) = (0u64, 0u64, 0);
        for step in &plan.steps {
            let Step::Ffmpeg(invocation) = step else { continue };
            let Some(count) = value_of(&invocation.args, "-frames:v") else { continue };
            let count: u64 = count.parse().unwrap();
            frames += count;
            if value_of(&invocation.args, "-c:v").as_deref() == Some("copy")
                && value_of(&invocation.args, "-bsf:v").is_some()
            {
                copied += count;
                assert!(count >= 15, "{}: copies at least a GOP", invocation.label);
                let start: f64 = value_of(&invocation.args, "-ss").unwrap().parse().unwrap();
                assert!(
                    (start * 30.0 / 15.0 - (start * 2.0).round()).abs() < 1e-6,
                    "{}: starts at a GOP ({start})",
                    invocation.label
                );
            } else {
                // Rendered parts share the prepared clips' GOP and have no B-frames.
                assert_eq!(value_of(&invocation.args, "-bf").as_deref(), Some("0"), "{}", invocation.label);
                assert_eq!(value_of(&invocation.args, "-g").as_deref(), Some("15"), "{}", invocation.label);
                let threads = value_of(&invocation.args, "-threads").unwrap_or_default();
                if let Some(lookahead) = value_of(&invocation.args, "-rc-lookahead") {
                    assert_eq!((threads.as_str(), lookahead.as_str()), ("1", "0"), "{}", invocation.label);
                    assert!(count <= 2 * 120, "{}: only bridges go without look-ahead", invocation.label);
                    bridge_steps += 1;
                } else {
                    assert_eq!(threads, segment_threads, "{}", invocation.label);
                }
            }
        }
        let rate = br_plan::FrameRate::from_fps(validated.output.frame_rate);
        assert_eq!(frames, rate.frame_at(validated.total_duration), "every frame once");
        assert!(copied * 10 >= frames * 6, "most frames are copied: {copied} of {frames}");
        assert!(bridge_steps > 0, "the bridges encode with one thread and no look-ahead");
    }

    /// The most moves a blueprint may have, all crossfades, the volume unchanged.
    #[test]
    fn the_largest_blueprint_passes() {
        let mut validated = example();
        let template = validated.moves[1].clone();
        let beat = 60.0 / 129.2;
        validated.moves = (0..2_000)
            .map(|index| MoveSlot {
                start: index as f64 * 2.0 * beat,
                duration: 2.0 * beat,
                clip_id: format!("move_{index}"),
                ..template.clone()
            })
            .collect();
        validated.total_duration = 2_000.0 * 2.0 * beat;
        assert_planner_output_passes(validated, 8.0);
    }

    /// Random timelines (durations, gaps of less than a frame, every transition, short
    /// and long clips, odd frame rates): whatever the planner accepts, the policy
    /// accepts, and its segments hold exactly the timeline's frames.
    #[test]
    fn random_timelines_plan_to_exact_frame_counts_the_policy_accepts() {
        use br_plan::{Arg, Step};
        let mut random = super::Random(0x5eed_1234_abcd_0001);
        let transitions = [Transition::Cut, Transition::Crossfade, Transition::FadeBlack, Transition::FadeWhite];
        let (mut planned, mut refused) = (0, 0);
        for case in 0..300 {
            let mut validated = example();
            validated.output.frame_rate = *random.pick(&[24.0, 25.0, 29.97, 30.0, 59.94, 12.5]);
            validated.output.transition_duration = random.below(200) as f64 / 100.0;
            validated.output.fade_duration = random.below(100) as f64 / 100.0;
            let template = validated.moves[0].clone();
            let count = 1 + random.below(30);
            let mut start = 0.0;
            validated.moves = (0..count)
                .map(|index| {
                    let duration = (2 + random.below(800)) as f64 / 100.0;
                    let slot = MoveSlot {
                        clip: (index % validated.clip_keys.len()) as u32,
                        start,
                        duration,
                        trim_start: random.below(400) as f64 / 100.0,
                        transition: *random.pick(&transitions),
                        volume: *random.pick(&[1.0, 0.0, 0.5]),
                        ..template.clone()
                    };
                    start += duration;
                    slot
                })
                .collect();
            validated.total_duration = start;
            let validated = validated.as_written();
            let rate = br_plan::FrameRate::from_fps(validated.output.frame_rate);
            let expected_frames = rate.frame_at(validated.total_duration).max(1);
            let clip_seconds = (50 + random.below(1000)) as f64 / 100.0;
            let inputs = inputs(&validated, clip_seconds);
            let input_count = inputs.len() as u32;
            let request = PlanRequest { validated, inputs, strict: false, prepared: Vec::new(), song_loudness: None };
            let plan = match br_plan::plan(&request) {
                Ok(plan) => plan,
                Err(errors) => {
                    assert!(
                        errors.iter().all(|e| e.pointer.starts_with("/moves/") && e.pointer.ends_with("/trim_start")),
                        "case {case}: {errors:?}"
                    );
                    refused += 1;
                    continue;
                }
            };
            planned += 1;
            if let Err(violation) = check(&plan, input_count, &PolicyLimits::for_request(&request)) {
                panic!("case {case}: {violation}");
            }
            let frames: u64 = plan
                .steps
                .iter()
                .filter_map(|step| match step {
                    Step::Ffmpeg(invocation) => invocation.args.windows(2).find_map(|pair| match pair {
                        [Arg::Literal(name), Arg::Literal(value)] if name == "-frames:v" => value.parse::<u64>().ok(),
                        _ => None,
                    }),
                    _ => None,
                })
                .sum();
            assert_eq!(frames, expected_frames, "case {case}");
        }
        assert!(planned > 100 && refused > 0, "planned {planned}, refused {refused}");
    }
}

/// The defaults hold the validator's largest blueprint: two steps per move of 2,000 plus a
/// hundred, and three hours of timeline with room to spare; a job's own media time is
/// bounded by them but not cut below what the job needs.
#[test]
fn the_default_limits_hold_the_largest_blueprint() {
    let limits = PolicyLimits::default();
    assert_eq!(limits.max_steps, 2 * 2_000 + 100);
    assert_eq!(limits.max_temps, limits.max_steps);
    assert_eq!(limits.max_concat_parts, 2_000);
    assert_eq!(limits.max_media_seconds, 4.0 * 3600.0);
    let three_hours = PolicyLimits::for_job(1280, 720, 3.0 * 3600.0);
    assert_eq!(three_hours.max_media_seconds, 3.0 * 3600.0 + 10.0);
    assert_eq!(PolicyLimits::for_job(1280, 720, 5.0 * 3600.0).max_media_seconds, 4.0 * 3600.0);
}

/// `copy` is an option value, not an encoder: `policy list` names real encoders only.
#[test]
fn the_components_list_encoders_without_copy() {
    let encoders = br_policy::components().encoders;
    assert!(encoders.contains(&"libx264") && encoders.contains(&"aac"), "{encoders:?}");
    assert!(!encoders.contains(&"copy"), "{encoders:?}");
}

/// `steps_alone` keeps checked steps that read only inputs and write a temp, in order,
/// with the plan's temps; a step reading a temp, a concat list or the output's step is
/// never run without what it depends on.
#[test]
fn steps_that_read_only_inputs_can_run_alone() {
    let plan = accepted_plan();
    let checked = check(&plan, INPUTS, &PolicyLimits::default()).unwrap();
    let alone = checked.steps_alone(|step| step < 2).unwrap();
    assert_eq!(alone.plan().steps, plan.steps[..2].to_vec());
    assert_eq!(alone.plan().temps, plan.temps);
    assert_eq!(checked.steps_alone(|step| step == 1).unwrap().plan().steps, vec![plan.steps[1].clone()]);
    assert!(checked.steps_alone(|_| false).is_none(), "no step picked");
    assert!(checked.steps_alone(|step| step == 2).is_none(), "a concat list");
    assert!(checked.steps_alone(|step| step == 3).is_none(), "the step writing the output reads a temp");
    let mut reads_temp = plan.clone();
    invocation(&mut reads_temp, 1).args.insert(0, Arg::Temp(0));
    invocation(&mut reads_temp, 1).args.insert(0, Arg::lit("-i"));
    let checked = check(&reads_temp, INPUTS, &PolicyLimits::default()).unwrap();
    assert!(checked.steps_alone(|step| step == 1).is_none(), "step 1 now reads temp 0");
}
