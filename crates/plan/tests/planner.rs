//! The planner's timing arithmetic and its refusals, on data (no FFmpeg here: the
//! end-to-end tests in `tests/run_cli.rs` check the frames FFmpeg makes of a plan).

// A test's unwrap is its failure report.
#![allow(clippy::unwrap_used)]

use br_blueprint::{Transition, Validated};
use br_plan::{plan, Arg, AudioFacts, Loudness, MediaFacts, Plan, PlanRequest, Step, VideoFacts};

fn example() -> Validated {
    br_blueprint::validate(include_str!("../../../examples/backend-blueprint.json"))
        .unwrap_or_else(|errors| panic!("{errors:?}"))
}

fn clip(key: &str, seconds: f64) -> MediaFacts {
    MediaFacts {
        key: key.into(),
        duration: seconds,
        video: Some(VideoFacts {
            codec: "h264".into(),
            width: 1280,
            height: 720,
            frame_rate: 30.0,
            pixel_format: "yuv420p".into(),
            duration: seconds,
        }),
        audio: Some(AudioFacts { codec: "aac".into(), sample_rate: 48_000, channels: 2, duration: seconds }),
    }
}

fn song(seconds: f64) -> MediaFacts {
    MediaFacts {
        key: "song.mp3".into(),
        duration: seconds,
        video: None,
        audio: Some(AudioFacts { codec: "mp3".into(), sample_rate: 44_100, channels: 2, duration: seconds }),
    }
}

/// The request for `validated` as a test edited it: its slots' transitions last as the
/// output asks (as an older contract's guest means), unless the test fitted them itself.
fn request(validated: Validated, clip_seconds: f64) -> PlanRequest {
    let validated = validated.as_written();
    fitted_request(validated, clip_seconds)
}

fn fitted_request(validated: Validated, clip_seconds: f64) -> PlanRequest {
    let inputs = std::iter::once(song(validated.total_duration + 10.0))
        .chain(validated.clip_keys.iter().map(|k| clip(k, clip_seconds)))
        .collect();
    PlanRequest { validated, inputs, strict: false, prepared: Vec::new(), song_loudness: None }
}

fn literal_after(args: &[Arg], option: &str) -> Option<String> {
    args.windows(2).find_map(|pair| match pair {
        [Arg::Literal(name), Arg::Literal(value)] if name == option => Some(value.clone()),
        _ => None,
    })
}

fn segments(plan: &Plan) -> Vec<&[Arg]> {
    plan.steps
        .iter()
        .filter_map(|step| match step {
            Step::Ffmpeg(invocation)
                if invocation.args.iter().any(|a| matches!(a, Arg::Temp(_)))
                    && !invocation.args.contains(&Arg::Output)
                    && !invocation.args.contains(&Arg::lit("-vn")) =>
            {
                Some(invocation.args.as_slice())
            }
            _ => None,
        })
        .collect()
}

/// The step that makes the song: the plan's first.
fn song_args(plan: &Plan) -> &[Arg] {
    match plan.steps.first() {
        Some(Step::Ffmpeg(invocation)) if invocation.args.contains(&Arg::lit("-vn")) => invocation.args.as_slice(),
        other => panic!("the first step is not the song's: {other:?}"),
    }
}

fn segment_frames(plan: &Plan) -> Vec<u64> {
    segments(plan)
        .iter()
        .map(|args| literal_after(args, "-frames:v").expect("-frames:v").parse().expect("a number"))
        .collect()
}

fn concat_seconds(plan: &Plan) -> f64 {
    plan.steps
        .iter()
        .find_map(|step| match step {
            Step::WriteConcatList(list) => Some(list.parts.iter().map(|p| p.duration).sum()),
            _ => None,
        })
        .expect("a concat list")
}

#[test]
fn the_backend_blueprint_fills_exactly_its_timeline() {
    let plan = plan(&request(example(), 10.0)).unwrap();
    let frames = segment_frames(&plan);
    assert_eq!(frames.len(), 22, "one segment per move");
    assert_eq!(frames.iter().sum::<u64>(), 176 * 30, "the segments hold exactly total_duration of frames");
    assert!((concat_seconds(&plan) - 176.0).abs() < 1e-6);
    // Crossfades of 0.5 s = 15 frames: 7 before each boundary, 8 after; each is
    // rendered by the outgoing segment, so every segment but the first starts 8 frames
    // into its move and every one but the last ends 8 frames into the next.
    assert_eq!(frames[0], 240 + 8);
    assert!(frames[1..21].iter().all(|&f| f == 240), "{frames:?}");
    assert_eq!(frames[21], 240 - 8);
    for args in segments(&plan) {
        let inputs = args.iter().filter(|a| matches!(a, Arg::Input(_))).count();
        assert!(inputs <= 2, "a segment reads its own clip and at most the next one");
    }
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    let last = match plan.steps.last() {
        Some(Step::Ffmpeg(invocation)) => invocation,
        other => panic!("{other:?}"),
    };
    assert_eq!(literal_after(&last.args, "-c:v").as_deref(), Some("copy"), "frames are encoded once, in their segment");
    assert_eq!(literal_after(&last.args, "-movflags").as_deref(), Some("+faststart"));
    assert_eq!(literal_after(&last.args, "-t").as_deref(), Some("176"));
    // The song is made first, from the song alone (so it can run beside the segments),
    // and the join copies it, shifted back by the AAC encoder's 1,024 priming samples.
    let song = song_args(&plan);
    assert_eq!(song.iter().filter(|a| matches!(a, Arg::Input(_))).collect::<Vec<_>>(), [&Arg::Input(0)]);
    assert_eq!(song.last(), Some(&Arg::Temp(0)));
    assert_eq!(literal_after(song, "-t").as_deref(), Some("176"));
    assert!(
        literal_after(song, "-filter_complex").unwrap().contains("asetnsamples=n=4800,loudnorm="),
        "loudnorm gets large frames"
    );
    assert_eq!(literal_after(&last.args, "-c:a").as_deref(), Some("copy"), "the song is encoded once, in its own step");
    assert_eq!(literal_after(&last.args, "-itsoffset").as_deref(), Some("-0.021333"));
    assert_eq!(literal_after(&last.args, "-bsf:a").as_deref(), Some("setts=duration='min(DURATION,176/TB-PTS)'"));
    assert!(!last.args.iter().any(|a| matches!(a, Arg::Input(_))), "the join reads only temps: {:?}", last.args);
    assert!(last.args.windows(2).any(|pair| pair == [Arg::lit("-i"), Arg::Temp(0)]));
}

#[test]
fn without_the_song_the_join_only_copies_the_video() {
    let mut validated = example();
    validated.output.add_audio_overlay = false;
    let plan = plan(&request(validated, 10.0)).unwrap();
    assert!(
        plan.steps.iter().all(|step| !matches!(step, Step::Ffmpeg(i) if i.args.contains(&Arg::Input(0)))),
        "the song is not read"
    );
    let Some(Step::Ffmpeg(last)) = plan.steps.last() else { panic!() };
    assert!(last.args.contains(&Arg::lit("-an")) && !last.args.contains(&Arg::lit("-itsoffset")), "{:?}", last.args);
    assert_eq!(segment_frames(&plan).iter().sum::<u64>(), 176 * 30);
}

#[test]
fn ntsc_rates_and_off_grid_starts_keep_the_total() {
    let mut validated = example();
    validated.output.frame_rate = 29.97;
    // Beats rarely fall on frames: shift every boundary by a third of a frame.
    for (k, m) in validated.moves.iter_mut().enumerate() {
        m.start = 8.0 * k as f64 + if k > 0 { 0.011 } else { 0.0 };
    }
    let plan = plan(&request(validated, 10.0)).unwrap();
    let frames = segment_frames(&plan);
    assert_eq!(frames.iter().sum::<u64>(), (176.0_f64 * 30000.0 / 1001.0).round() as u64);
    let graph = literal_after(segments(&plan)[0], "-filter_complex").unwrap();
    assert!(graph.contains("fps=30000/1001") && graph.contains("settb=1001/30000"), "{graph}");
}

#[test]
fn a_clip_shorter_than_its_move_is_held_with_a_warning_or_refused_when_strict() {
    let mut request = request(example(), 10.0);
    request.inputs[3] = clip(&request.validated.clip_keys[2], 6.2);
    let plan = plan(&request).unwrap();
    let pointers: Vec<_> = plan.warnings.iter().map(|w| w.pointer.as_str()).collect();
    // That clip serves moves 2 and 20.
    assert_eq!(pointers, ["/moves/2", "/moves/20"], "{:?}", plan.warnings);
    let graph = literal_after(segments(&plan)[2], "-filter_complex").unwrap();
    assert!(graph.contains("tpad=stop_mode=clone"), "the last frame is held: {graph}");

    request.strict = true;
    let errors = br_plan::plan(&request).expect_err("strict refuses");
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].pointer, "/moves/2");
}

#[test]
fn media_that_cannot_serve_the_blueprint_is_refused_with_pointers() {
    let mut bad = request(example(), 10.0);
    bad.validated.moves[4].trim_start = 10.0;
    bad.inputs[0].audio = None;
    bad.inputs[8].video = None;
    let errors = plan(&bad).expect_err("refused");
    let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
    assert!(pointers.contains(&"/audio_path"), "{errors:?}");
    assert!(pointers.contains(&"/moves/4/trim_start"), "{errors:?}");
    let without_video = bad.validated.moves.iter().position(|m| m.clip == 7).unwrap();
    assert!(pointers.contains(&format!("/moves/{without_video}/video_path").as_str()), "{errors:?}");

    let mut trimmed_away = request(example(), 10.0);
    trimmed_away.validated.moves[3].trim_end = 10.0;
    assert_eq!(plan(&trimmed_away).expect_err("refused")[0].pointer, "/moves/3/trim_end");

    let mut wrong_count = request(example(), 10.0);
    wrong_count.inputs.pop();
    assert!(plan(&wrong_count).is_err());
}

#[test]
fn fades_and_the_first_crossfade() {
    let mut validated = example();
    validated.moves[0].transition = Transition::Crossfade;
    validated.moves[5].transition = Transition::FadeBlack;
    validated.moves[9].transition = Transition::FadeWhite;
    let plan = plan(&request(validated, 10.0)).unwrap();
    let graphs: Vec<String> = segments(&plan).iter().map(|a| literal_after(a, "-filter_complex").unwrap()).collect();
    assert!(graphs[0].contains("fade=t=in:st=0:d=0.25:color=black"), "{}", graphs[0]);
    // Segment 4 starts 8 frames into its move (the crossfade into it is rendered by
    // segment 3), so the fade out starts 0.3 s before its end: 232/30 - 0.3.
    assert!(graphs[4].contains("fade=t=out:st=7.433333:d=0.3:color=black"), "{}", graphs[4]);
    assert!(!graphs[4].contains("xfade"), "no crossfade into a fading move");
    assert!(graphs[5].contains("fade=t=in:st=0:d=0.3:color=black"), "{}", graphs[5]);
    assert!(graphs[9].contains("color=white"), "{}", graphs[9]);
}

#[test]
fn volume_runs_become_one_ramped_term_each() {
    let mut validated = example();
    for k in 3..6 {
        validated.moves[k].volume = 0.5;
    }
    validated.moves[10].volume = 0.0;
    let plan = plan(&request(validated, 10.0)).unwrap();
    let audio = literal_after(song_args(&plan), "-filter_complex").unwrap();
    assert_eq!(audio.matches("clip((t-").count(), 2, "{audio}");
    assert!(audio.contains("-0.5*clip((t-24)/0.02+0.5,0,1)*clip((48-t)/0.02+0.5,0,1)"), "{audio}");
    assert!(audio.contains("-1*clip((t-80)/0.02+0.5,0,1)"), "{audio}");
    // The ramps need tiny frames; loudnorm is given large ones again.
    assert!(audio.contains(":eval=frame,asetnsamples=n=4800,loudnorm="), "{audio}");
}

/// A song the host measured for `normalize_audio` (contract 0.7.0).
fn measured(integrated: f64, range: f64, true_peak: f64) -> Option<Loudness> {
    Some(Loudness { integrated, range, true_peak, seconds: 176.0 })
}

fn song_graph(request: &PlanRequest) -> String {
    literal_after(song_args(&plan(request).unwrap()), "-filter_complex").unwrap()
}

#[test]
fn a_measured_song_is_normalised_by_one_gain_as_loudnorm_s_linear_mode() {
    let mut request = request(example(), 10.0);
    assert!(request.validated.output.normalize_audio);
    // -20 LUFS, peak -6 dBTP: +4 dB brings it to -16 with its peak at -2 (under -1.5).
    request.song_loudness = measured(-20.0, 6.0, -6.0);
    let audio = song_graph(&request);
    assert!(audio.ends_with("apad=whole_dur=176,volume=1.584893,atrim=end=176[audio]"), "{audio}");
    assert!(!audio.contains("loudnorm"), "{audio}");
    // Louder than the target: the gain is below 1.
    request.song_loudness = measured(-9.5, 4.0, 0.8);
    assert!(song_graph(&request).contains(",volume=0.473151,"));
}

#[test]
fn a_uniform_volume_is_made_up_for_by_the_gain() {
    let mut validated = example();
    for slot in &mut validated.moves {
        slot.volume = 0.5;
    }
    let mut request = request(validated, 10.0);
    request.song_loudness = measured(-20.0, 6.0, -6.0);
    let audio = song_graph(&request);
    assert!(audio.contains(",volume=1.584893,"), "{audio}");
    assert!(!audio.contains("clip("), "no volume term: {audio}");
}

#[test]
fn a_song_loudnorm_s_linear_mode_would_refuse_keeps_the_dynamic_mode() {
    let cases = [
        ("its peak would pass -1.5 dBTP", measured(-24.0, 6.0, -8.0)),
        ("its range is wider than 11 LU", measured(-20.0, 12.0, -10.0)),
        ("it is silence", measured(-70.0, 0.0, -90.0)),
        ("the measurement is not a number", measured(f64::NAN, 5.0, -10.0)),
        ("the host measured nothing (a guest before 0.7.0 is told nothing either)", None),
    ];
    for (why, loudness) in cases {
        let mut request = request(example(), 10.0);
        request.song_loudness = loudness;
        let audio = song_graph(&request);
        assert!(audio.contains("asetnsamples=n=4800,loudnorm=I=-16:TP=-1.5:LRA=11,aresample=48000"), "{why}: {audio}");
        assert!(!audio.contains(",volume="), "{why}: {audio}");
    }
    // Volume runs change the loudness the measurement saw.
    let mut validated = example();
    validated.moves[3].volume = 0.5;
    let mut request = request(validated, 10.0);
    request.song_loudness = measured(-20.0, 6.0, -6.0);
    let audio = song_graph(&request);
    assert!(audio.contains(":eval=frame,asetnsamples=n=4800,loudnorm="), "{audio}");
    // normalize_audio off: neither, whatever was measured.
    request.validated.output.normalize_audio = false;
    let audio = song_graph(&request);
    assert!(!audio.contains("loudnorm") && !audio.contains(",volume=1.58"), "{audio}");
}

/// `count` one-second cuts whose volumes alternate between 0.2 and 0.4: the song's volume
/// changes at every move.
fn alternating_volumes(count: usize) -> PlanRequest {
    let mut validated = example();
    let template = validated.moves[1].clone();
    validated.moves = (0..count)
        .map(|k| {
            let mut m = template.clone();
            m.start = k as f64;
            m.duration = 1.0;
            m.volume = if k % 2 == 0 { 0.2 } else { 0.4 };
            m.transition = Transition::Cut;
            m
        })
        .collect();
    validated.total_duration = count as f64;
    request(validated, 10.0)
}

#[test]
fn too_many_volume_changes_are_refused() {
    let errors = plan(&alternating_volumes(2_000)).expect_err("2,000 volume changes are refused");
    assert_eq!(errors[0].pointer, "/moves", "{errors:?}");
}

/// For each `-i Input(n)` of a step, in order: the input and the `-ss` given before it
/// (since the previous `-i`), if any.
fn seeks(args: &[Arg]) -> Vec<(u32, Option<String>)> {
    let mut found = Vec::new();
    let mut pending_seek = None;
    for pair in args.windows(2) {
        match pair {
            [Arg::Literal(option), Arg::Literal(value)] if option == "-ss" => pending_seek = Some(value.clone()),
            [Arg::Literal(option), Arg::Input(input)] if option == "-i" => found.push((*input, pending_seek.take())),
            _ => {}
        }
    }
    found
}

#[test]
fn crossfades_are_placed_at_their_frames() {
    let plan = plan(&request(example(), 12.0)).unwrap();
    let graphs: Vec<String> = segments(&plan).iter().map(|a| literal_after(a, "-filter_complex").unwrap()).collect();
    // The blend runs plane by plane (FFmpeg 5.1's xfade takes 4:4:4 or one gray plane): the plain
    // 4:2:0 blend, with no conversion, and not by the bicubic scalers FFmpeg would insert.
    let blend = |offset: &str| {
        let xfade = format!("xfade=transition=fade:duration=0.5:offset={offset}");
        format!(
            "[own]extractplanes=y+u+v[owny][ownu][ownv];[next]extractplanes=y+u+v[nexty][nextu][nextv];\
             [owny][nexty]{xfade}[blendedy];[ownu][nextu]{xfade}[blendedu];[ownv][nextv]{xfade}[blendedv];\
             [blendedy][blendedu][blendedv]mergeplanes=0x001020:yuv420p[blended]"
        )
    };
    // 15 frames at 30 fps; segment 0 holds 248 frames, so the blend starts at frame 233.
    assert!(graphs[0].contains(&blend("7.766667")), "{}", graphs[0]);
    // Every middle segment holds 240 frames: the blend starts at frame 225.
    for graph in &graphs[1..21] {
        assert!(graph.contains(&blend("7.5")), "{graph}");
    }
    assert!(!graphs[21].contains("xfade"), "the last move blends into nothing: {}", graphs[21]);
}

#[test]
fn trim_start_moves_the_seek_of_the_move_and_of_its_lead_in() {
    let mut validated = example();
    validated.moves[3].trim_start = 2.0;
    validated.moves[4].trim_start = 1.0;
    let own_clip = |k: usize| validated.moves[k].clip + 1;
    let (clip_3, clip_4) = (own_clip(3), own_clip(4));
    let plan = plan(&request(validated, 12.0)).unwrap();
    let segments = segments(&plan);
    // Segment 3 starts 8 frames into move 3 (the blend into it belongs to segment 2),
    // and reads move 4's clip from 7 frames before move 4's trim_start.
    assert_eq!(seeks(segments[3]), [(clip_3, Some("2.266667".to_owned())), (clip_4, Some("0.766667".to_owned()))]);
    assert_eq!(seeks(segments[4])[0], (clip_4, Some("1.266667".to_owned())));
    // Without a trim_start, the same slots read from 8 frames in.
    assert_eq!(seeks(segments[5])[0].1.as_deref(), Some("0.266667"));
}

/// A slot's fitted `transition_seconds` is the transition's length, not the output's
/// `transition_duration` or `fade_duration`: a check (or a plugin) that shortened one
/// gets that length, on long moves too, and pointers name the blueprint's move.
#[test]
fn each_slot_transitions_for_its_own_fitted_length() {
    let mut validated = example().as_written();
    validated.moves[1].transition_seconds = 0.2;
    validated.moves[2].transition = Transition::FadeBlack;
    validated.moves[2].transition_seconds = 0.1;
    let fitted = plan(&fitted_request(validated.clone(), 12.0)).unwrap();
    let graphs: Vec<String> = segments(&fitted).iter().map(|a| literal_after(a, "-filter_complex").unwrap()).collect();
    // 6 frames, centred on move 1's first frame, rendered at the end of segment 0.
    assert!(graphs[0].contains("xfade=transition=fade:duration=0.2:"), "{}", graphs[0]);
    assert!(graphs[1].contains("fade=t=out:st=7.8:d=0.1:color=black"), "{}", graphs[1]);
    assert!(graphs[2].contains("fade=t=in:st=0:d=0.1:color=black"), "{}", graphs[2]);

    // Slot 4 shows the blueprint's move 9 (moves before it were dropped): its pointer says so.
    validated.moves[4].origin = 9;
    validated.moves[4].trim_start = 30.0;
    let errors = plan(&fitted_request(validated, 12.0)).unwrap_err();
    assert_eq!(errors[0].pointer, "/moves/9/trim_start", "{errors:?}");
}

/// A first slot with a negative trim_start (a lenient fit of a move that started late, whose
/// clip has no earlier frames) holds the clip's first frame, then runs; with a prepared
/// clip, only frames of the clip itself are copied, each from its own source frame.
#[test]
fn a_first_slot_before_its_clip_holds_its_first_frame() {
    let mut validated = example().as_written();
    validated.moves[0].trim_start = -2.0;
    let first = plan(&fitted_request(validated.clone(), 12.0)).unwrap();
    let graph = literal_after(segments(&first)[0], "-filter_complex").unwrap();
    assert!(graph.contains("tpad=start_mode=clone:start_duration=2"), "{graph}");
    assert_eq!(segment_frames(&first).iter().sum::<u64>(), 176 * 30);

    let mut request = fitted_request(validated, 12.0);
    let profile = br_plan::prepare::Profile::of(&request.validated, &request.inputs).expect("a profile").id();
    let prepared_clip =
        br_plan::PreparedClip { profile_id: profile, gop_frames: 15, first_gop_frames: 15, frames: 360 };
    request.prepared =
        std::iter::once(None).chain(request.validated.clip_keys.iter().map(|_| Some(prepared_clip.clone()))).collect();
    let prepared = plan(&request).unwrap();
    let copies: Vec<&br_plan::Invocation> = prepared
        .steps
        .iter()
        .filter_map(|step| match step {
            Step::Ffmpeg(invocation) if invocation.args.contains(&Arg::lit("copy")) => Some(invocation),
            _ => None,
        })
        .collect();
    // The first move's copy starts after the 60 held frames (2 s), on the keyframe that is
    // the clip's frame 0; the held frames themselves are rendered.
    let first_copy = copies.iter().find(|step| step.args.contains(&Arg::Input(1))).expect("a copy of move 0's clip");
    assert_eq!(literal_after(&first_copy.args, "-ss"), Some("0".to_owned()), "{first_copy:?}");
    assert!(first_copy.label.contains("copy 60-"), "{}", first_copy.label);
}

/// The request over prepared clips of the job's own profile (15-frame GOPs, `frames` each).
fn over_prepared_clips(validated: Validated, clip_seconds: f64, frames: u64) -> PlanRequest {
    let mut request = fitted_request(validated, clip_seconds);
    let profile = br_plan::prepare::Profile::of(&request.validated, &request.inputs).expect("a profile").id();
    let prepared_clip = br_plan::PreparedClip { profile_id: profile, gop_frames: 15, first_gop_frames: 15, frames };
    request.prepared =
        std::iter::once(None).chain(request.validated.clip_keys.iter().map(|_| Some(prepared_clip.clone()))).collect();
    request
}

/// Over clips prepared since recipe 4 (a first GOP of 8 frames, the right half of the
/// backend's 15-frame crossfade, then 15), a move that blends in copies from the frame the
/// blend ends on, and a move of whole half seconds copies up to the keyframe its blend out
/// starts on: each bridge is the crossfade alone, 15 frames from two reads, where the even
/// grid needed 22 from three (the incoming clip read twice, up to its keyframe at 15).
#[test]
fn a_first_gop_of_half_a_crossfade_makes_each_bridge_the_crossfade_alone() {
    let mut request = over_prepared_clips(example().as_written(), 12.0, 360);
    for prepared in request.prepared.iter_mut().flatten() {
        prepared.first_gop_frames = br_plan::prepare::FIRST_GOP_FRAMES;
    }
    let plan = br_plan::plan(&request).unwrap();
    let copies = copy_steps(&plan);
    assert_eq!(copies.len(), 22);
    // Move 0 (a cut) from its first frame; every later move from source frame 8, the first
    // after its blend in, to source frame 233 = 8 + 15 * 15, where its blend out starts.
    assert_eq!(literal_after(&copies[0].args, "-ss"), Some("0".to_owned()));
    for copy in &copies[1..21] {
        assert_eq!(literal_after(&copy.args, "-ss"), Some("0.266667".to_owned()), "{}", copy.label);
        assert!(copy.label.ends_with(" copy 0-225"), "{}", copy.label);
    }
    let bridges: Vec<&br_plan::Invocation> = plan
        .steps
        .iter()
        .filter_map(|step| match step {
            Step::Ffmpeg(invocation) if invocation.label.contains(" frames ") => Some(invocation),
            _ => None,
        })
        .collect();
    assert_eq!(bridges.len(), 21, "one bridge per crossfade");
    for bridge in &bridges {
        assert!(!bridge.label.contains(" + "), "nothing merged into {}", bridge.label);
        assert_eq!(literal_after(&bridge.args, "-frames:v"), Some("15".to_owned()), "{}", bridge.label);
        assert_eq!(bridge.args.iter().filter(|arg| **arg == Arg::lit("-i")).count(), 2, "{}", bridge.label);
    }
    // The outgoing clip is read from its keyframe at 7.766667 s (frame 233), not before it.
    assert_eq!(literal_after(&bridges[1].args, "-ss"), Some("7.766667".to_owned()));
    assert_eq!(segment_frames(&plan).iter().sum::<u64>(), 176 * 30, "bridges and copies fill the timeline");

    // The same clips described with the even grid are cut on it: the copy starts at 15.
    for prepared in request.prepared.iter_mut().flatten() {
        prepared.first_gop_frames = 15;
    }
    let even = br_plan::plan(&request).unwrap();
    assert!(copy_steps(&even)[1].label.ends_with(" copy 7-225"), "{}", copy_steps(&even)[1].label);
}

fn copy_steps(plan: &Plan) -> Vec<&br_plan::Invocation> {
    plan.steps
        .iter()
        .filter_map(|step| match step {
            Step::Ffmpeg(invocation)
                if invocation.args.windows(2).any(|pair| pair == [Arg::lit("-c:v"), Arg::lit("copy")])
                    && !invocation.args.contains(&Arg::Output) =>
            {
                Some(invocation)
            }
            _ => None,
        })
        .collect()
}

/// A slot the hooks slow down, hold or filter is rendered; every slot as shot is still
/// copied from its prepared clip, and the song still takes the one measured gain.
#[test]
fn render_hooks_leave_the_copies_of_slots_as_shot_and_the_one_gain() {
    use br_plan::render::{Render, SlotRender};
    let mut request = over_prepared_clips(example().as_written(), 12.0, 360);
    request.song_loudness = measured(-20.0, 6.0, -6.0);
    let as_shot = br_plan::plan(&request).unwrap();
    assert_eq!(copy_steps(&as_shot).len(), 22, "every move copies its prepared frames");
    let slow = SlotRender { speed: 0.75, ..SlotRender::default() };
    let held = SlotRender { hold_first: 1.0, ..SlotRender::default() };
    let mirrored = SlotRender { filters: vec!["hflip".into()], ..SlotRender::default() };
    let mut slots = vec![SlotRender::default(); 22];
    (slots[3], slots[7], slots[11]) = (slow, held, mirrored);
    let hooked = br_plan::plan_with(&request, &Render { slots, song: Vec::new() }).unwrap();
    let copies = copy_steps(&hooked);
    assert_eq!(copies.len(), 19, "three slots rendered, nineteen copied");
    for slot in [3, 7, 11] {
        assert!(!copies.iter().any(|step| step.label.starts_with(&format!("move {slot} "))), "move {slot} was copied");
    }
    assert_eq!(segment_frames(&hooked).iter().sum::<u64>(), 176 * 30, "rendered and copied frames fill the timeline");
    assert!(song_graph_of(&hooked).contains(",volume=1.584893,"), "the one gain");
    assert!(!song_graph_of(&hooked).contains("loudnorm"));
}

fn song_graph_of(plan: &Plan) -> String {
    literal_after(song_args(plan), "-filter_complex").unwrap()
}

/// The graph of the step that renders `move N`.
fn graph_of_move(plan: &Plan, slot: usize) -> String {
    plan.steps
        .iter()
        .find_map(|step| match step {
            Step::Ffmpeg(invocation)
                if invocation.label.starts_with(&format!("move {slot} ")) && !invocation.label.contains(" copy ") =>
            {
                literal_after(&invocation.args, "-filter_complex")
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no step renders move {slot}"))
}

/// At 0.5x a move of 8 s plays 4 s of its clip, retimed onto the output's frame grid;
/// a still first frame pads the front and shortens what is read; filters come before the fit.
#[test]
fn a_slot_plays_its_footage_at_its_speed_with_its_still_frames_and_filters() {
    use br_plan::render::{Render, SlotRender};
    let mut validated = example().as_written();
    for slot in &mut validated.moves {
        slot.transition = Transition::Cut;
    }
    let request = request(validated, 12.0);
    let mut slots = vec![SlotRender::default(); 22];
    slots[1] = SlotRender { speed: 0.5, ..SlotRender::default() };
    slots[2] = SlotRender { hold_first: 2.0, hold_last: 1.0, filters: vec!["hflip".into()], ..SlotRender::default() };
    let plan = br_plan::plan_with(&request, &Render { slots, song: Vec::new() }).unwrap();
    assert_eq!(segment_frames(&plan).iter().sum::<u64>(), 176 * 30, "the timeline is the blueprint's");
    let slow = graph_of_move(&plan, 1);
    assert!(slow.starts_with("[0:v]setpts=(PTS-STARTPTS)/0.5,fps=30,"), "{slow}");
    let slow_step = segments(&plan)[1];
    assert_eq!(literal_after(slow_step, "-t").as_deref(), Some("4"), "8 s at 0.5x reads 4 s");
    let held = graph_of_move(&plan, 2);
    assert!(held.starts_with("[0:v]setpts=PTS-STARTPTS,hflip,fps=30,"), "{held}");
    // 8 s: 2 s still, 5 s playing, 1 s still.
    assert!(held.contains(",trim=end=5,tpad=stop_mode=clone:stop_duration=8,tpad=start_mode=clone:start_duration=2,trim=duration=8[own]"), "{held}");
    assert_eq!(literal_after(segments(&plan)[2], "-t").as_deref(), Some("5"));
}

/// A hook no plan can honour is refused with the pointer of the move it is about.
#[test]
fn render_hooks_out_of_bounds_are_refused_at_their_move() {
    use br_plan::render::{Render, SlotRender, SongSection};
    let request = request(example(), 12.0);
    let mut slots = vec![SlotRender::default(); 22];
    slots[4].speed = 10.0;
    slots[5].hold_last = f64::NAN;
    slots[6].filters = vec!["hflip;[0:v]split".into()];
    let song = vec![SongSection { start: -1.0, duration: 2.0 }];
    let errors = br_plan::plan_with(&request, &Render { slots, song }).unwrap_err();
    let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(pointers, ["/moves/4", "/moves/5", "/moves/6", "/audio_path"], "{errors:?}");
    assert!(errors[0].message.contains("outside 0.25 to 4"), "{}", errors[0].message);
    let too_many = Render { slots: vec![SlotRender::default(); 23], song: Vec::new() };
    assert_eq!(br_plan::plan_with(&request, &too_many).unwrap_err()[0].pointer, "/moves");
}

/// The song from sections: each read on its own (seek and length), exactly its length,
/// joined in order; inside what was measured the one gain stays, past it loudnorm.
#[test]
fn the_song_is_made_of_its_sections_in_order() {
    use br_plan::render::{Render, SongSection};
    let mut request = request(example(), 12.0);
    request.song_loudness = measured(-20.0, 6.0, -6.0);
    let song = vec![SongSection { start: 0.0, duration: 100.0 }, SongSection { start: 40.0, duration: 76.0 }];
    let plan = br_plan::plan_with(&request, &Render { slots: Vec::new(), song: song.clone() }).unwrap();
    let args = song_args(&plan);
    assert_eq!(args.iter().filter(|a| **a == Arg::Input(0)).count(), 2);
    assert!(args.windows(4).any(|w| w == [Arg::lit("-ss"), Arg::lit("40"), Arg::lit("-i"), Arg::Input(0)]), "{args:?}");
    let graph = song_graph_of(&plan);
    assert!(
        graph.starts_with("[0:a]asetpts=PTS-STARTPTS,aresample=48000,apad=whole_dur=100,atrim=end=100[section0];"),
        "{graph}"
    );
    assert!(graph.contains("[section0][section1]concat=n=2:v=0:a=1,atrim=end=176,"), "{graph}");
    assert!(graph.contains(",volume=1.584893,"), "inside the measured 176 s: {graph}");
    let past = vec![SongSection { start: 150.0, duration: 30.0 }];
    let plan = br_plan::plan_with(&request, &Render { slots: Vec::new(), song: past }).unwrap();
    assert!(song_graph_of(&plan).contains("loudnorm="), "past what was measured");
}

/// A cut-only timeline whose first move shows its clip from `trim_start`, over prepared
/// clips of `frames` frames with 15-frame GOPs; the labels of move 0's copy steps.
fn first_move_copies(trim_start: f64, frames: u64) -> Vec<String> {
    let mut validated = example().as_written();
    for slot in &mut validated.moves {
        slot.transition = Transition::Cut;
        slot.transition_seconds = 0.0;
    }
    validated.moves[0].trim_start = trim_start;
    let request = over_prepared_clips(validated, 12.0, frames);
    let plan = br_plan::plan(&request).unwrap();
    copy_steps(&plan).iter().filter(|step| step.label.starts_with("move 0 ")).map(|step| step.label.clone()).collect()
}

/// A run of exactly one GOP is copied; one frame less is not (the rule: `high >= from + gop`).
#[test]
fn a_prepared_clip_with_exactly_one_gop_left_is_copied_and_one_frame_less_is_not() {
    let one_gop = first_move_copies(0.0, 15);
    assert_eq!(one_gop.len(), 1, "{one_gop:?}");
    assert!(one_gop[0].ends_with(" copy 0-15"), "{one_gop:?}");
    assert_eq!(first_move_copies(0.0, 14), Vec::<String>::new());
    assert!(first_move_copies(0.0, 16)[0].ends_with(" copy 0-16"), "one more frame: the run ends inside the next GOP");
}

/// A move whose first source frame is a keyframe is copied from its first frame, not one
/// GOP later (the rule: `(gop - offset % gop) % gop` frames to the next keyframe, 0 on one).
#[test]
fn a_move_starting_on_a_keyframe_is_copied_from_its_first_frame() {
    // trim_start 0.5 s: source frame 15, a keyframe of the 15-frame grid.
    let on_keyframe = first_move_copies(0.5, 360);
    assert!(on_keyframe[0].ends_with(" copy 0-240"), "{on_keyframe:?}");
    // One frame later (16): the next keyframe (30) is 14 frames on.
    let after = first_move_copies(16.0 / 30.0, 360);
    assert!(after[0].contains(" copy 14-"), "{after:?}");
    // One frame earlier (14): the keyframe 15 is the next frame.
    let before = first_move_copies(14.0 / 30.0, 360);
    assert!(before[0].contains(" copy 1-"), "{before:?}");
}

/// A song muted in every move takes no gain: a uniform volume is made up for by the gain
/// only when it is above 0 (the rule: `first > 0.0`); 0 is silence, which no gain brings to
/// the target, and the full normalising gain would play the song the blueprint muted.
#[test]
fn a_song_muted_in_every_move_takes_no_normalising_gain() {
    let mut validated = example();
    for slot in &mut validated.moves {
        slot.volume = 0.0;
    }
    let mut muted = request(validated, 10.0);
    muted.song_loudness = measured(-20.0, 6.0, -6.0);
    let audio = song_graph(&muted);
    assert!(!audio.contains(",volume=1.584893,"), "{audio}");
    // The smallest volume above 0 is still uniform: the gain makes up for it.
    let mut validated = example();
    for slot in &mut validated.moves {
        slot.volume = 0.01;
    }
    let mut quiet = request(validated, 10.0);
    quiet.song_loudness = measured(-20.0, 6.0, -6.0);
    assert!(song_graph(&quiet).contains(",volume=1.584893,"));
}

/// Frames of exactly 1280x720 pixels encode with two threads, as do smaller ones; the next
/// even size up on either side takes one (the rule: more than 1280*720 pixels).
#[test]
fn encoders_take_one_thread_only_above_720p() {
    for ((width, height), threads) in [((1280, 720), "2"), ((1278, 720), "2"), ((1282, 720), "1"), ((1280, 722), "1")] {
        let mut validated = example();
        (validated.output.width, validated.output.height) = (Some(width), Some(height));
        let plan = plan(&request(validated, 10.0)).unwrap();
        for args in segments(&plan) {
            assert_eq!(literal_after(args, "-threads").as_deref(), Some(threads), "{width}x{height}");
        }
    }
}

/// The output frame: both sides as given; one side given, the other from the first move's
/// clip's aspect ratio (rounded down); neither, the clip's own size; always scaled down
/// whole into 3840x2160 by the side that binds, even, and at least 16.
#[test]
fn the_output_frame_follows_the_first_clip_fits_the_largest_frame_and_is_even() {
    let frame = |width: Option<u32>, height: Option<u32>, source: (u32, u32)| {
        let mut request = request(example(), 10.0);
        (request.validated.output.width, request.validated.output.height) = (width, height);
        let first = request.validated.moves[0].clip as usize + 1;
        let video = request.inputs[first].video.as_mut().expect("a video stream");
        (video.width, video.height) = source;
        br_plan::output_frame(&request.validated, &request.inputs)
    };
    assert_eq!(frame(None, None, (1000, 600)), (1000, 600));
    assert_eq!(frame(Some(1000), None, (1280, 720)), (1000, 562), "1000*720/1280 = 562.5");
    assert_eq!(frame(None, Some(501), (1280, 720)), (890, 500), "501*1280/720 = 890.7; 501 made even");
    assert_eq!(frame(None, None, (7680, 2000)), (3840, 1000), "the width binds: half size");
    assert_eq!(frame(None, None, (2000, 4320)), (1000, 2160), "the height binds: half size");
    assert_eq!(frame(Some(10), Some(6), (1280, 720)), (16, 16));
}

/// Every clip is scaled by its display size to fit the output frame and padded, centred,
/// to exactly that size, on the output's frame rate and time base.
#[test]
fn clips_are_fitted_and_letterboxed_to_the_output_frame() {
    let mut validated = example();
    (validated.output.width, validated.output.height) = (Some(1000), Some(562));
    let plan = plan(&request(validated, 10.0)).unwrap();
    let graph = literal_after(segments(&plan)[0], "-filter_complex").unwrap();
    let normaliser =
        "fps=30,scale=w='max(1,min(1000,round(562*iw*sar/ih)))':h='max(1,min(562,round(1000*ih/(iw*sar))))',\
                      pad=1000:562:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p,settb=1/30";
    assert!(graph.contains(normaliser), "{graph}");
}

/// A clip is as long as its video stream says; a stream of unknown length (0) is as long
/// as its container says; when neither knows, the clip is refused once, at the first move
/// that shows it. (Clip 2, input 3, serves moves 2 and 20.)
#[test]
fn a_clip_is_as_long_as_its_stream_else_its_container_else_refused_once() {
    let with = |stream: f64, container: f64| {
        let mut request = request(example(), 10.0);
        request.inputs[3].duration = container;
        request.inputs[3].video.as_mut().expect("a video stream").duration = stream;
        plan(&request)
    };
    let held = |plan: Plan| plan.warnings.into_iter().map(|w| w.pointer).collect::<Vec<_>>();
    assert_eq!(held(with(6.2, 10.0).unwrap()), ["/moves/2", "/moves/20"], "the stream's 6.2 s, not the container's 10");
    assert_eq!(held(with(10.0, 6.2).unwrap()), Vec::<String>::new(), "the stream's 10 s, not the container's 6.2");
    assert_eq!(held(with(0.0, 6.2).unwrap()), ["/moves/2", "/moves/20"], "the container's 6.2 s");
    let errors = with(0.0, 0.0).unwrap_err();
    let key = &example().clip_keys[2];
    assert_eq!(
        errors,
        [br_plan::PlanNote {
            pointer: "/moves/2/video_path".into(),
            message: format!("{key} has a video stream of unknown length")
        }]
    );
}

/// A clip trimmed to less than half a second still plays (held, with a warning): only a
/// rest of half a frame or less leaves nothing.
#[test]
fn a_clip_trimmed_to_a_tenth_of_a_second_is_held_not_refused() {
    let mut request = request(example(), 10.0);
    request.validated.moves[3].trim_end = 9.9;
    let plan = plan(&request).unwrap();
    let pointers: Vec<&str> = plan.warnings.iter().map(|w| w.pointer.as_str()).collect();
    assert_eq!(pointers, ["/moves/3"], "{:?}", plan.warnings);
}

/// What a slot plays of its clip is its length less its still frames, at its speed; what
/// the clip has is from trim_start to its end; the rest is held, said in seconds of video.
#[test]
fn a_held_last_frame_is_measured_from_trim_start_at_the_slot_s_speed_after_its_stills() {
    use br_plan::render::{Render, SlotRender};
    let mut validated = example();
    validated.moves[3].trim_start = 6.0;
    validated.moves[5].trim_start = 3.0;
    let request = request(validated, 10.0);
    let mut slots = vec![SlotRender::default(); 22];
    slots[3] = SlotRender { speed: 0.75, hold_first: 1.0, hold_last: 0.5, ..SlotRender::default() };
    let plan = br_plan::plan_with(&request, &Render { slots, song: Vec::new() }).unwrap();
    let key = |k: usize| request.validated.clip_keys[request.validated.moves[k].clip as usize].clone();
    let warning = |pointer: &str, message: String| br_plan::PlanNote { pointer: pointer.into(), message };
    assert_eq!(
        plan.warnings,
        [
            // (8 - 1 - 0.5) s at 0.75x: 4.875 s of footage, 4 s there; 0.875 s of footage is 1.166667 s of video.
            warning("/moves/3", format!("{} has only 4 s after trim_start 6; the move plays 4.875 s of it at 0.75x, so its last frame is held for 1.166667 s more", key(3))),
            warning("/moves/5", format!("{} has only 7 s after trim_start 3; the move lasts 8 s, so its last frame is held for 1 s", key(5))),
        ]
    );
}

/// A slot short of footage by at most half a frame (of footage, at its speed) is not held:
/// the frame grid rounds it away; any less footage is held, with a warning.
#[test]
fn footage_short_by_half_a_frame_is_not_held_and_by_more_is() {
    use br_plan::render::{Render, SlotRender};
    let warned = |trim_start: f64| {
        let mut validated = example();
        // At 32 fps half a frame is 1/64 s, exact in binary.
        validated.output.frame_rate = 32.0;
        validated.moves[3].trim_start = trim_start;
        let request = request(validated, 12.0);
        let mut slots = vec![SlotRender::default(); 22];
        slots[3] = SlotRender { speed: 0.75, ..SlotRender::default() };
        let plan = br_plan::plan_with(&request, &Render { slots, song: Vec::new() }).unwrap();
        plan.warnings.into_iter().map(|w| w.pointer).collect::<Vec<_>>()
    };
    // 8 s at 0.75x plays 6 s of footage; half a frame at 0.75x is 3/256 s of it.
    assert_eq!(warned(6.0 + 3.0 / 256.0), Vec::<String>::new(), "exactly half a frame short");
    assert_eq!(warned(6.0 + 4.0 / 256.0), ["/moves/3"], "a 256th of a second more");
}

/// A move shorter than a frame is not shown, so its volume has no say in the song.
#[test]
fn a_move_shorter_than_a_frame_has_no_say_in_the_song_s_volume() {
    let mut validated = example();
    validated.moves[6].start = validated.moves[5].start + 0.01;
    validated.moves[5].volume = 0.5;
    let plan = plan(&request(validated, 20.0)).unwrap();
    let pointers: Vec<&str> = plan.warnings.iter().map(|w| w.pointer.as_str()).collect();
    assert_eq!(pointers, ["/moves/5"], "{:?}", plan.warnings);
    let audio = song_graph_of(&plan);
    assert!(!audio.contains("volume="), "{audio}");
}

/// A song may change its volume exactly the most times supported (1,000); once more is
/// refused, and the message says how many times.
#[test]
fn a_song_may_change_its_volume_exactly_the_most_times_supported() {
    assert!(plan(&alternating_volumes(1_000)).is_ok());
    let errors = plan(&alternating_volumes(1_001)).expect_err("refused");
    assert_eq!(errors[0].message, "the song's volume changes 1001 times (runs of moves with a volume_adjustment other than 1); at most 1000 are supported");
}

/// A crossfade of two frames is blended (one frame before the boundary, one after); one of
/// a single frame would be a cut with a blemish, so it is a plain cut.
#[test]
fn a_crossfade_of_two_frames_blends_and_of_one_frame_cuts() {
    let first_segment = |seconds: f64| {
        let mut validated = example().as_written();
        validated.moves[1].transition_seconds = seconds;
        let plan = plan(&fitted_request(validated, 12.0)).unwrap();
        (literal_after(segments(&plan)[0], "-filter_complex").unwrap(), segment_frames(&plan)[0])
    };
    let (two, frames) = first_segment(2.0 / 30.0);
    assert!(two.contains("xfade=transition=fade:duration=0.066667:offset=7.966667[blendedy]"), "{two}");
    assert_eq!(frames, 241, "the blend's second frame is move 1's first");
    let (one, frames) = first_segment(1.0 / 30.0);
    assert!(!one.contains("xfade"), "{one}");
    assert_eq!(frames, 240);
}

/// Each FFmpeg step's label with its `-threads` and `-rc-lookahead`.
fn step_threads(plan: &Plan) -> Vec<(String, Option<String>, Option<String>)> {
    plan.steps
        .iter()
        .filter_map(|step| match step {
            Step::Ffmpeg(invocation) => Some((
                invocation.label.clone(),
                literal_after(&invocation.args, "-threads"),
                literal_after(&invocation.args, "-rc-lookahead"),
            )),
            _ => None,
        })
        .collect()
}

/// Over prepared clips, the bridge out of a move and the bridge into the next share one
/// step, encoded as bridges (one thread, no look-ahead); a move rendered whole, even a
/// short one (here slowed down, 90 frames), is its own step with the ordinary threads; no
/// step is empty, and the concat list's parts last exactly the timeline.
#[test]
fn bridges_share_a_step_and_a_move_rendered_whole_keeps_its_own() {
    use br_plan::render::{Render, SlotRender};
    let mut validated = example().as_written();
    validated.moves[4].start = validated.moves[3].start + 3.0;
    let request = over_prepared_clips(validated, 20.0, 600);
    let mut slots = vec![SlotRender::default(); 22];
    slots[3] = SlotRender { speed: 0.75, ..SlotRender::default() };
    let plan = br_plan::plan_with(&request, &Render { slots, song: Vec::new() }).unwrap();
    let name = |k: usize| format!("move {k} (move_{})", k + 1);
    let bridge = |label: String| (label, Some("1".to_owned()), Some("0".to_owned()));
    let copy = |k: usize, from: u64, to: u64| (format!("{} copy {from}-{to}", name(k)), None, None);
    // Each move's copy is planned where the move is, between the bridges around it.
    let mut expected = vec![("the song".to_owned(), None, None), copy(0, 0, 233)];
    expected.push(bridge(format!("{} frames 233-248 + {} frames 0-7", name(0), name(1))));
    expected.push(copy(1, 7, 225));
    expected.push(bridge(format!("{} frames 225-240 + {} frames 0-7", name(1), name(2))));
    expected.push(copy(2, 7, 225));
    expected.push(bridge(format!("{} frames 225-240", name(2))));
    expected.push((name(3), Some("2".to_owned()), None));
    expected.push(bridge(format!("{} frames 0-7", name(4))));
    expected.push(copy(4, 7, 375));
    expected.push(bridge(format!("{} frames 375-390 + {} frames 0-7", name(4), name(5))));
    for k in 5..21 {
        expected.push(copy(k, 7, 225));
        expected.push(bridge(format!("{} frames 225-240 + {} frames 0-7", name(k), name(k + 1))));
    }
    expected.push(copy(21, 7, 232));
    expected.push(("join the video and the song".to_owned(), None, None));
    assert_eq!(step_threads(&plan), expected);
    assert!(segment_frames(&plan).iter().all(|&frames| frames > 0), "{:?}", segment_frames(&plan));
    assert!((concat_seconds(&plan) - 176.0).abs() < 1e-9, "{}", concat_seconds(&plan));
}

/// The step that holds the bridge out of move 0 and the bridge into move 1: the first
/// part blends the end of move 0 (its 15 frames, 0.5 s) into move 1's lead in (read as
/// FFmpeg input 1), the second reads from input 2 on (the first part read two) and shows
/// move 1's 7 frames after the blend; the two are joined in order.
#[test]
fn two_bridges_in_one_step_read_their_own_inputs_and_are_joined_in_order() {
    let plan = plan(&over_prepared_clips(example().as_written(), 12.0, 360)).unwrap();
    let Some(Step::Ffmpeg(step)) = plan.steps.get(2) else { panic!("{:?}", plan.steps) };
    assert_eq!(step.label, "move 0 (move_1) frames 233-248 + move 1 (move_2) frames 0-7");
    let fit = "fps=30,scale=w='max(1,min(1280,round(720*iw*sar/ih)))':h='max(1,min(720,round(1280*ih/(iw*sar))))',pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p,settb=1/30";
    let expected = [
        format!("[0:v]setpts=PTS-STARTPTS,{fit},tpad=stop_mode=clone:stop_duration=0.5,trim=duration=0.5[own]"),
        format!("[1:v]setpts=PTS-STARTPTS,{fit},tpad=stop_mode=clone:stop_duration=0.5,tpad=start_mode=clone:start_duration=0.233333,trim=duration=0.5[next]"),
        "[own]extractplanes=y+u+v[owny][ownu][ownv]".to_owned(),
        "[next]extractplanes=y+u+v[nexty][nextu][nextv]".to_owned(),
        "[owny][nexty]xfade=transition=fade:duration=0.5:offset=0[blendedy]".to_owned(),
        "[ownu][nextu]xfade=transition=fade:duration=0.5:offset=0[blendedu]".to_owned(),
        "[ownv][nextv]xfade=transition=fade:duration=0.5:offset=0[blendedv]".to_owned(),
        "[blendedy][blendedu][blendedv]mergeplanes=0x001020:yuv420p[blended]".to_owned(),
        "[blended]setpts=PTS-STARTPTS[video]".to_owned(),
        format!("[2:v]setpts=PTS-STARTPTS,{fit},tpad=stop_mode=clone:stop_duration=0.233333,trim=duration=0.233333[own1]"),
        "[own1]setpts=PTS-STARTPTS[video1]".to_owned(),
        "[video][video1]concat=n=2:v=1:a=0[joined]".to_owned(),
    ];
    assert_eq!(literal_after(&step.args, "-filter_complex"), Some(expected.join(";")));
    assert_eq!(literal_after(&step.args, "-map").as_deref(), Some("[joined]"));
    // A step of one part maps its own video.
    let plain = br_plan::plan(&request(example(), 12.0)).unwrap();
    let maps: Vec<Option<String>> = segments(&plain).iter().map(|args| literal_after(args, "-map")).collect();
    assert!(maps.iter().all(|map| map.as_deref() == Some("[video]")), "{maps:?}");
}

/// A part that ends before the blend out of its move does not blend: the bridge into move
/// 4 (its first 7 frames) shows move 4 alone, though move 4 blends into move 5 at its end.
#[test]
fn a_part_before_the_blend_out_does_not_blend() {
    use br_plan::render::{Render, SlotRender};
    let request = over_prepared_clips(example().as_written(), 12.0, 360);
    let mut slots = vec![SlotRender::default(); 22];
    slots[3] = SlotRender { speed: 0.75, ..SlotRender::default() };
    let plan = br_plan::plan_with(&request, &Render { slots, song: Vec::new() }).unwrap();
    let Some(Step::Ffmpeg(step)) =
        plan.steps.iter().find(|step| matches!(step, Step::Ffmpeg(i) if i.label == "move 4 (move_5) frames 0-7"))
    else {
        panic!()
    };
    let graph = literal_after(&step.args, "-filter_complex").unwrap();
    assert!(
        !graph.contains("xfade") && graph.ends_with("trim=duration=0.233333[own];[own]setpts=PTS-STARTPTS[video]"),
        "{graph}"
    );
}

/// Cuts and crossfades fade nothing: only a fade transition (or a crossfade into the first
/// move) puts a `fade` in a segment.
#[test]
fn cuts_and_crossfades_fade_nothing() {
    let plan = plan(&request(example(), 12.0)).unwrap();
    for graph in segments(&plan).iter().map(|a| literal_after(a, "-filter_complex").unwrap()) {
        assert!(!graph.contains(",fade="), "{graph}");
    }
}

/// A cut-only timeline over prepared clips of `frames` frames (15-frame GOPs, clips of
/// `clip_seconds`), as `edit` changes it; the labels of its copy steps.
fn copies_of(clip_seconds: f64, frames: u64, edit: impl FnOnce(&mut Validated)) -> Vec<String> {
    let mut validated = example().as_written();
    for slot in &mut validated.moves {
        slot.transition = Transition::Cut;
        slot.transition_seconds = 0.0;
    }
    edit(&mut validated);
    let plan = br_plan::plan(&over_prepared_clips(validated, clip_seconds, frames)).unwrap();
    copy_steps(&plan).iter().map(|step| step.label.clone()).collect()
}

/// A fade in is rendered up to the frame after it ends, a fade out from the frame before it
/// starts; the copy between starts on the first keyframe after the fade in (0.3 s, 9 frames,
/// into move 5, which shows its clip from frame 6: the keyframe is source frame 30,
/// segment frame 24) and ends 10 frames before the move's end.
#[test]
fn copies_leave_the_fades_to_the_renderer() {
    let labels = copies_of(12.0, 360, |validated| {
        validated.moves[5].transition = Transition::FadeBlack;
        validated.moves[5].transition_seconds = 0.3;
        validated.moves[5].trim_start = 0.2;
    });
    assert_eq!(labels[4], "move 4 (move_5) copy 0-230");
    assert_eq!(labels[5], "move 5 (move_6) copy 24-240");
}

/// A copy runs to the last whole frame of the clip's usable part (7.5 s: 225 frames, all
/// copied), and only frames the clip has are copied after a held front (10 held frames
/// before a clip of 150: segment frames 10 to 160; from frame 10, the clip's frame 0 is a
/// keyframe).
#[test]
fn copies_run_to_the_clip_s_last_frame_after_any_held_front() {
    assert_eq!(copies_of(7.5, 360, |_| {})[0], "move 0 (move_1) copy 0-225");
    assert_eq!(
        copies_of(12.0, 150, |validated| validated.moves[0].trim_start = -1.0 / 3.0)[0],
        "move 0 (move_1) copy 10-160"
    );
}

/// A prepared clip of another profile, or one without GOPs (or without a first one), is an
/// ordinary clip: rendered, not copied.
#[test]
fn a_prepared_clip_of_another_profile_or_without_gops_is_rendered() {
    let mut other = over_prepared_clips(example().as_written(), 12.0, 360);
    for prepared in other.prepared.iter_mut().flatten() {
        prepared.profile_id = "h264-640x360-30fps-2000k-g15-r3".into();
    }
    assert_eq!(copy_steps(&plan(&other).unwrap()).len(), 0);
    let mut no_gop = over_prepared_clips(example().as_written(), 12.0, 360);
    for prepared in no_gop.prepared.iter_mut().flatten() {
        prepared.gop_frames = 0;
    }
    assert_eq!(copy_steps(&plan(&no_gop).unwrap()).len(), 0);
    let mut no_first_gop = over_prepared_clips(example().as_written(), 12.0, 360);
    for prepared in no_first_gop.prepared.iter_mut().flatten() {
        prepared.first_gop_frames = 0;
    }
    assert_eq!(copy_steps(&plan(&no_first_gop).unwrap()).len(), 0);
}

/// A step's label shows at most 48 characters of the move's id, and marks a cut or a
/// dropped control character with `~`; an id of exactly 48 is shown whole.
#[test]
fn labels_show_48_characters_of_the_id_and_mark_what_they_leave_out() {
    let label_of_move_0 = |clip_id: &str| {
        let mut validated = example();
        validated.moves[0].clip_id = clip_id.into();
        let plan = plan(&request(validated, 12.0)).unwrap();
        let Some(Step::Ffmpeg(step)) = plan.steps.get(1) else { panic!() };
        step.label.clone()
    };
    let long = "m".repeat(49);
    assert_eq!(label_of_move_0(&long), format!("move 0 ({}~)", &long[..48]));
    assert_eq!(label_of_move_0(&long[..48]), format!("move 0 ({})", &long[..48]));
    assert_eq!(label_of_move_0("a\tb"), "move 0 (ab~)");
}

/// A measured song takes the one gain up to the targets' limits exactly: its peak at -1.5
/// dBTP after the gain, a loudness range of 11 LU, sections ending within a microsecond of
/// what was measured; past them, loudnorm.
#[test]
fn the_one_gain_holds_up_to_the_targets_limits_exactly() {
    use br_plan::render::{Render, SongSection};
    let graph = |loudness: Option<Loudness>, song: Vec<SongSection>| {
        let mut request = request(example(), 12.0);
        request.song_loudness = loudness;
        song_graph_of(&br_plan::plan_with(&request, &Render { slots: Vec::new(), song }).unwrap())
    };
    // -20 LUFS takes +4 dB: a peak of -5.5 reaches -1.5 exactly.
    assert!(graph(measured(-20.0, 6.0, -5.5), Vec::new()).contains(",volume=1.584893,"));
    assert!(graph(measured(-20.0, 6.0, -5.25), Vec::new()).contains("loudnorm="));
    assert!(graph(measured(-20.0, 11.0, -6.0), Vec::new()).contains(",volume=1.584893,"));
    assert!(graph(measured(-20.0, 11.25, -6.0), Vec::new()).contains("loudnorm="));
    let section = |end: f64| vec![SongSection { start: 40.0, duration: end - 40.0 }];
    let song = |end: f64| graph(measured(-20.0, 6.0, -6.0), section(end));
    assert!(song(176.0).contains(",volume=1.584893,"), "ends where the measurement does");
    assert!(
        graph(measured(-20.0, 6.0, -6.0), vec![SongSection { start: 0.0, duration: 176.0 + 1e-6 }])
            .contains(",volume=1.584893,"),
        "a microsecond past"
    );
    assert!(song(176.00001).contains("loudnorm="), "ten microseconds past");
}

/// Volumes differing by less than 1e-9 are one volume; by exactly 1e-9 they are not (the
/// runs and the uniform-volume test agree).
#[test]
fn volumes_differing_by_1e_9_are_two_runs() {
    let mut validated = example();
    for slot in &mut validated.moves {
        slot.volume = 1e-9;
    }
    validated.moves[3].volume = 2e-9;
    let mut request = request(validated, 12.0);
    request.song_loudness = measured(-20.0, 6.0, -6.0);
    let audio = song_graph(&request);
    assert_eq!(audio.matches("clip((t-").count(), 3, "{audio}");
    assert!(audio.contains("loudnorm="), "not one volume: {audio}");
}

/// A volume run from the video's first move holds from before its start, and one to its
/// last move holds past its end (no ramp at the edges).
#[test]
fn volume_runs_at_the_video_s_edges_hold_past_them() {
    let mut validated = example();
    (validated.moves[0].volume, validated.moves[1].volume) = (0.5, 0.5);
    (validated.moves[20].volume, validated.moves[21].volume) = (0.25, 0.25);
    let audio = song_graph(&request(validated, 12.0));
    assert!(audio.contains("volume='1-0.5*clip((t-(0-1))/0.02+0.5,0,1)*clip((16-t)/0.02+0.5,0,1)-0.75*clip((t-160)/0.02+0.5,0,1)*clip((177-t)/0.02+0.5,0,1)'"), "{audio}");
}

/// A song section from the song's start is read without a seek.
#[test]
fn a_song_section_from_the_start_is_read_without_a_seek() {
    use br_plan::render::{Render, SongSection};
    let song = vec![SongSection { start: 0.0, duration: 100.0 }, SongSection { start: 40.0, duration: 76.0 }];
    let plan = br_plan::plan_with(&request(example(), 12.0), &Render { slots: Vec::new(), song }).unwrap();
    assert_eq!(seeks(song_args(&plan)), [(0, None), (0, Some("40".to_owned()))]);
}

/// Temporaries are named by their format.
#[test]
fn temporaries_take_their_format_s_extension() {
    assert_eq!((br_plan::TempFormat::Nut.extension(), br_plan::TempFormat::Ffconcat.extension()), ("nut", "ffconcat"));
}
