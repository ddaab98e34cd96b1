//! The default planner.
//!
//! Shape of every plan: one FFmpeg step per shown move renders that move's slot of the
//! timeline (exactly its frames, on the output frame grid) into a NUT segment, reading
//! at most three clips (its own, and the neighbours it blends with), so memory does not
//! grow with the number of moves; a concat list joins the segments; a last step copies
//! the joined video (each frame is encoded once, in its segment) and adds the song,
//! which the plan's first step has already made (trimmed, padded, volume, loudness,
//! AAC): it depends on no segment, so the host can run it beside them.
//!
//! Timing rules (the backend syncs moves to beats, so they are exact):
//! - move k occupies frames `[round(start_k * fps), round(start_k+1 * fps))`; the video
//!   has `round(total_duration * fps)` frames. Transitions never change either.
//! - a move shows its clip from `trim_start`; when the clip (minus `trim_end`) runs out,
//!   its last frame is held until the slot ends (a warning, an error under `strict`).
//! - a crossfade is centred on the boundary: the outgoing clip runs on past its slot
//!   and the incoming one starts early by half the transition each, using their own
//!   source frames, or holding the edge frame where the source has none.
//! - fades to black or white: the outgoing move fades out over its last `fade_duration`,
//!   the incoming one fades in over its first.
//! - every transition lasts its slot's `transition_seconds` (the validator fitted it to
//!   the moves around it); pointers name the blueprint's move a slot came from (`origin`).

use br_blueprint::{MoveSlot, Transition, Validated};

use crate::rational::FrameRate;
use crate::render::{Render, SlotRender, SongSection};
use crate::types::*;

/// Decode at least this much source for any window, so a window near a clip's end
/// still gets a frame to hold.
const MIN_DECODE_SECONDS: f64 = 0.5;
/// x264/x265 keep frames per thread: a fixed count keeps FFmpeg's memory the same on
/// any machine (auto would scale with the host's cores, not with the job's budget).
const ENCODER_THREADS: &str = "2";
/// Above 720p one encoder thread: measured on a 1080p segment, 2 threads needed a data
/// limit of about 420 MiB, 1 thread about 370 MiB (720p with 2: about 275 MiB).
const LARGE_FRAME_ENCODER_THREADS: &str = "1";
const LARGE_FRAME_PIXELS: u64 = 1280 * 720;
/// A step of bridges alone (prepared clips only) encodes with one thread and no x264
/// look-ahead, so that two of them share the job's two cores (beside the song, or one
/// another once the song is made) within the memory a prepared job is held to. A bridge
/// is a few dozen frames: the look-ahead (10 frames at veryfast, each with its half-pel
/// planes) spends its memory on bits for frames the bridge does not have. Measured on the
/// bench's bridges (22 and 75 frames, 720p, the image's FFmpeg): 74 MB resident instead
/// of 103, every frame written at a data limit of 108 MiB instead of 160 (Debian's: 140
/// and 188); the same PSNR for the same bits (43.3 dB at 186 KB against 43.0 at 174 KB,
/// the bitrate asks for 183).
const BRIDGE_ENCODER_THREADS: &str = "1";
const BRIDGE_X264_LOOKAHEAD: &str = "0";
const ENCODER_PRESET: &str = "veryfast";
/// Volume changes ramp over this long, centred on the move boundary (no clicks).
const VOLUME_RAMP_SECONDS: f64 = 0.02;
/// Audio is processed in frames of this many samples so volume ramps are smooth.
const VOLUME_FRAME_SAMPLES: u32 = 64;
/// Audio frames handed to `loudnorm` after the volume ramps (0.1 s at 48 kHz): fed with
/// 64-sample frames it fragments the heap so badly that FFmpeg needed a data limit of
/// 700 MiB or more for 170 MiB resident; with these, 200 MiB is enough. Without volume
/// ramps they help too: a 3-minute song needed 170 MiB fed as decoded, 120 MiB with these.
const LOUDNORM_FRAME_SAMPLES: u32 = 4_800;
/// Volume terms per `volume` filter (each filter evaluates its expression per frame).
const VOLUME_TERMS_PER_FILTER: usize = 200;
/// Volume changes one song may have: the audio graph is one FFmpeg argument, which
/// must stay well below Linux's 128 KiB limit (a term is at most ~75 bytes).
pub const MAX_VOLUME_CHANGES: usize = 1_000;
const OUTPUT_SAMPLE_RATE: &str = "48000";
/// EBU R128 targets used by streaming platforms.
const LOUDNORM: &str = "loudnorm=I=-16:TP=-1.5:LRA=11";
/// `LOUDNORM`'s targets, for the gain a measured song takes instead (see [`Normalisation`]).
const TARGET_LOUDNESS: f64 = -16.0;
const TARGET_TRUE_PEAK: f64 = -1.5;
const TARGET_RANGE: f64 = 11.0;
/// EBU R128's absolute gate: a song measured at or below it is silence, which no gain
/// brings to the target.
const SILENCE_LOUDNESS: f64 = -70.0;
const MAX_OUTPUT_WIDTH: u32 = 3840;
const MAX_OUTPUT_HEIGHT: u32 = 2160;

/// Makes the plan, or says why none can be made (every problem, each with a pointer).
pub fn plan(request: &PlanRequest) -> Result<Plan, Vec<PlanError>> {
    plan_with(request, &Render::default())
}

/// [`plan`], with each slot and the song rendered as `render` says (a plugin's hooks).
pub fn plan_with(request: &PlanRequest, render: &Render) -> Result<Plan, Vec<PlanError>> {
    let validated = &request.validated;
    let mut errors = render.problems(validated);
    if request.inputs.len() != validated.clip_keys.len() + 1 {
        return Err(vec![note(
            "",
            format!(
                "the host described {} inputs; this blueprint has 1 song and {} clips",
                request.inputs.len(),
                validated.clip_keys.len()
            ),
        )]);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let song = &request.inputs[SONG_INPUT as usize];
    if validated.output.add_audio_overlay && song.audio.is_none() {
        errors.push(note("/audio_path", format!("{} has no audio stream", song.key)));
    }
    let clips = clip_lengths(validated, &request.inputs, &mut errors);
    let rate = FrameRate::from_fps(validated.output.frame_rate);
    let (width, height) = output_frame(validated, &request.inputs);
    let timeline = Timeline::new(validated, rate);

    let mut warnings = Vec::new();
    for (index, m) in validated.moves.iter().enumerate() {
        let pointer = m.pointer();
        if timeline.frames(index) == 0 {
            warnings.push(note(
                &pointer,
                format!("the move lasts less than one frame at {} fps and is not shown", rate.fps()),
            ));
            continue;
        }
        let span = clips[m.clip as usize];
        if span.length <= 0.0 {
            continue; // already reported: no video stream, or one of unknown length
        }
        let usable_end = usable_end(span, m);
        let half_frame = 0.5 / rate.fps();
        let key = &validated.clip_keys[m.clip as usize];
        if usable_end <= half_frame {
            errors.push(note(
                &format!("{pointer}/trim_end"),
                format!("trim_end {} leaves nothing of {key} ({} s long)", m.trim_end, span.length),
            ));
        } else if m.trim_start >= usable_end - half_frame {
            errors.push(note(
                &format!("{pointer}/trim_start"),
                format!(
                    "trim_start {} is at or beyond the end of {key} ({} s long, {} s usable before trim_end)",
                    m.trim_start,
                    span.length,
                    secs(usable_end)
                ),
            ));
        } else {
            let slot = rate.seconds(timeline.frames(index));
            let look = render.slot(index);
            // A negative trim_start holds the first frame first: that is time shown too.
            let available = usable_end - m.trim_start;
            // What the slot plays of its clip: its length, less the still frames, at its speed.
            let played = (slot - look.hold_first - look.hold_last).max(0.0) * look.speed;
            if available + half_frame * look.speed < played {
                let held = (played - available) / look.speed;
                let message = if look.is_as_shot() {
                    format!("{key} has only {} s after trim_start {}; the move lasts {} s, so its last frame is held for {} s", secs(available), m.trim_start, secs(slot), secs(held))
                } else {
                    let speed = format!("{}x", look.speed);
                    format!("{key} has only {} s after trim_start {}; the move plays {} s of it at {speed}, so its last frame is held for {} s more", secs(available), m.trim_start, secs(played), secs(held))
                };
                warnings.push(note(&pointer, message));
            }
        }
    }
    let shown: Vec<usize> = (0..validated.moves.len()).filter(|&i| timeline.frames(i) > 0).collect();
    if validated.output.add_audio_overlay {
        let changes = volume_terms(validated, &timeline, &shown).len();
        if changes > MAX_VOLUME_CHANGES {
            errors.push(note("/moves", format!("the song's volume changes {changes} times (runs of moves with a volume_adjustment other than 1); at most {MAX_VOLUME_CHANGES} are supported")));
        }
    }
    if request.strict && errors.is_empty() {
        errors.extend(warnings.iter().map(|w| note(&w.pointer, format!("{} (strict)", w.message))));
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let encoder_threads = if u64::from(width) * u64::from(height) > LARGE_FRAME_PIXELS {
        LARGE_FRAME_ENCODER_THREADS
    } else {
        ENCODER_THREADS
    };
    let prepared = prepared_clips(request, rate);
    // Every prepared clip of one profile has the profile's GOP.
    let prepared_gop = prepared.iter().flatten().map(|clip| clip.gop_frames).next();
    let normalisation = normalisation(request, &shown, &render.song);
    let look = Look { rate, normaliser: normaliser(rate, width, height), encoder_threads, prepared_gop, render };
    let mut temps = Vec::new();
    let mut steps = Vec::new();
    let mut parts = Vec::new();
    let song = validated.output.add_audio_overlay.then(|| {
        temps.push(TempFormat::Nut);
        steps.push(Step::Ffmpeg(song_step(validated, &timeline, &shown, normalisation, &render.song, 0)));
        0
    });
    let blends = blends(validated, &timeline, &shown, rate);
    // A bridge at a segment's end, waiting to share its step with the next one's.
    let mut pending: Option<Vec<Rendered>> = None;
    // Each copy is planned where its move is, between the bridges: it takes milliseconds and
    // a few MiB of the work folder, and the scheduler, which starts the first ready step in
    // plan order, then fits the copies between the bridges instead of after the last one,
    // where they were the job's tail on two cores (0.25 s of a 4 s job).
    for (position, &index) in shown.iter().enumerate() {
        let segment = Segment {
            index,
            next: shown.get(position + 1).copied(),
            is_first: position == 0,
            blend_in: blends[position],
            blend_out: blends.get(position + 1).copied().unwrap_or_default(),
        };
        let (first, end) = segment.frame_range(&timeline);
        if end == first {
            continue;
        }
        let frames = end - first;
        let own_clip = validated.moves[index].clip;
        let copied = prepared[own_clip as usize]
            .as_ref()
            .and_then(|clip| segment.copyable(validated, &clips, &timeline, &look, clip));
        let mut pieces = Vec::new();
        match copied {
            Some(copy) => {
                if copy.from > 0 {
                    pieces.push(Piece::Render { from: 0, to: copy.from });
                }
                pieces.push(Piece::Copy(copy));
                if copy.to < frames {
                    pieces.push(Piece::Render { from: copy.to, to: frames });
                }
            }
            None => pieces.push(Piece::Render { from: 0, to: frames }),
        }
        for piece in pieces {
            match piece {
                Piece::Render { from, to } => {
                    let bridge = copied.is_some() && to - from <= MERGED_BRIDGE_FRAMES;
                    // A bridge into this move joins the bridge out of the previous one.
                    if bridge && pending.as_ref().is_some_and(|waiting: &Vec<Rendered>| waiting.len() == 1) {
                        let mut waiting = pending.take().unwrap_or_default();
                        let first_input = waiting.iter().map(Rendered::input_count).sum();
                        waiting.push(Rendered {
                            bridge,
                            ..segment.render(validated, &clips, &timeline, &look, from, to, first_input, waiting.len())
                        });
                        flush(&mut waiting, &mut temps, &mut steps, &mut parts, validated, &look);
                        continue;
                    }
                    if let Some(mut waiting) = pending.take() {
                        flush(&mut waiting, &mut temps, &mut steps, &mut parts, validated, &look);
                    }
                    let mut rendered = vec![Rendered {
                        bridge,
                        ..segment.render(validated, &clips, &timeline, &look, from, to, 0, 0)
                    }];
                    // Only a bridge at a segment's end waits for the next move's.
                    if bridge && to == frames {
                        pending = Some(rendered);
                    } else {
                        flush(&mut rendered, &mut temps, &mut steps, &mut parts, validated, &look);
                    }
                }
                Piece::Copy(copy) => {
                    if let Some(mut waiting) = pending.take() {
                        flush(&mut waiting, &mut temps, &mut steps, &mut parts, validated, &look);
                    }
                    let temp = temps.len() as u32;
                    temps.push(TempFormat::Nut);
                    steps.push(Step::Ffmpeg(copy.invocation(clip_input(own_clip), rate, temp, &segment, validated)));
                    parts.push(ConcatPart { temp, duration: rate.seconds(copy.to - copy.from) });
                }
            }
        }
    }
    if let Some(mut waiting) = pending.take() {
        flush(&mut waiting, &mut temps, &mut steps, &mut parts, validated, &look);
    }
    let list = temps.len() as u32;
    temps.push(TempFormat::Ffconcat);
    steps.push(Step::WriteConcatList(ConcatList { list, parts }));
    steps.push(Step::Ffmpeg(final_step(&timeline, list, song)));
    Ok(Plan { temps, steps, warnings })
}

fn note(pointer: &str, message: String) -> PlanNote {
    PlanNote { pointer: pointer.to_owned(), message }
}

/// A clip's video length. `trim_end` belongs to a move, not to a clip: see [`usable_end`].
#[derive(Debug, Clone, Copy)]
struct ClipSpan {
    length: f64,
}

fn clip_lengths(validated: &Validated, inputs: &[MediaFacts], errors: &mut Vec<PlanError>) -> Vec<ClipSpan> {
    let mut spans = vec![ClipSpan { length: 0.0 }; validated.clip_keys.len()];
    let mut reported = vec![false; validated.clip_keys.len()];
    for m in &validated.moves {
        let clip = m.clip as usize;
        let facts = &inputs[clip_input(m.clip) as usize];
        let length = match &facts.video {
            Some(video) if video.duration > 0.0 => video.duration,
            Some(_) if facts.duration > 0.0 => facts.duration,
            Some(_) => {
                if !reported[clip] {
                    errors.push(note(
                        &format!("{}/video_path", m.pointer()),
                        format!("{} has a video stream of unknown length", facts.key),
                    ));
                }
                reported[clip] = true;
                0.0
            }
            None => {
                if !reported[clip] {
                    errors.push(note(
                        &format!("{}/video_path", m.pointer()),
                        format!("{} has no video stream", facts.key),
                    ));
                }
                reported[clip] = true;
                0.0
            }
        };
        spans[clip] = ClipSpan { length };
    }
    spans
}

fn usable_end(span: ClipSpan, m: &MoveSlot) -> f64 {
    span.length - m.trim_end
}

/// The output's frame size: `width`×`height` when both are given, else derived from the
/// first move's clip, always within 3840x2160 and even.
pub fn output_frame(validated: &Validated, inputs: &[MediaFacts]) -> (u32, u32) {
    let first_clip = validated.moves.first().map(|m| clip_input(m.clip) as usize).unwrap_or(1);
    let (source_w, source_h) = inputs
        .get(first_clip)
        .and_then(|facts| facts.video.as_ref())
        .map(|v| (v.width.max(1), v.height.max(1)))
        .unwrap_or((1280, 720));
    let (w, h) = match (validated.output.width, validated.output.height) {
        (Some(w), Some(h)) => (w, h),
        (Some(w), None) => (w, ((w as u64 * source_h as u64) / source_w as u64) as u32),
        (None, Some(h)) => (((h as u64 * source_w as u64) / source_h as u64) as u32, h),
        (None, None) => (source_w, source_h),
    };
    // Fit inside the largest allowed frame, keeping the aspect ratio.
    let scale = f64::min(1.0, f64::min(MAX_OUTPUT_WIDTH as f64 / w as f64, MAX_OUTPUT_HEIGHT as f64 / h as f64));
    let even = |x: f64| (((x as u32) / 2) * 2).max(16);
    (even(w as f64 * scale), even(h as f64 * scale))
}

/// Move positions on the output frame grid.
struct Timeline {
    /// First frame of each move; a move that starts before the previous one ends
    /// (an overlapping crossfade) simply starts at its own `start_time`.
    first_frame: Vec<u64>,
    total_frames: u64,
    rate: FrameRate,
}

impl Timeline {
    fn new(validated: &Validated, rate: FrameRate) -> Timeline {
        let total_frames = rate.frame_at(validated.total_duration).max(1);
        let mut first_frame = Vec::with_capacity(validated.moves.len());
        let mut floor = 0;
        for (index, m) in validated.moves.iter().enumerate() {
            let frame = if index == 0 { 0 } else { rate.frame_at(m.start).clamp(floor, total_frames) };
            first_frame.push(frame);
            floor = frame;
        }
        Timeline { first_frame, total_frames, rate }
    }

    fn frames(&self, index: usize) -> u64 {
        let end = self.first_frame.get(index + 1).copied().unwrap_or(self.total_frames);
        end.saturating_sub(self.first_frame[index])
    }

    fn start_seconds(&self, index: usize) -> f64 {
        self.rate.seconds(self.first_frame[index])
    }

    fn end_seconds(&self, index: usize) -> f64 {
        self.rate.seconds(self.first_frame[index] + self.frames(index))
    }

    fn total_seconds(&self) -> f64 {
        self.rate.seconds(self.total_frames)
    }
}

struct Look<'a> {
    rate: FrameRate,
    /// The plugin's hooks (none for the built-in guest).
    render: &'a Render,
    encoder_threads: &'static str,
    /// With prepared clips, every encoded part uses their GOP and no B-frames, so the
    /// parts and the copied GOPs join into one valid bitstream.
    prepared_gop: Option<u32>,
    /// The filter chain that brings any clip to the output's frame rate, size (letterboxed,
    /// square pixels), pixel format and time base: `xfade` needs identical inputs.
    normaliser: String,
}

fn normaliser(rate: FrameRate, width: u32, height: u32) -> String {
    format!("fps={fps},{},format=yuv420p,settb={tb}", fit(width, height), fps = rate.as_ffmpeg(), tb = rate.time_base())
}

/// Scales a clip to fit `width`x`height` by its display size (its coded size stretched
/// by its sample aspect ratio: a 960x720 clip of 4:3 pixels shows as 1280x720) and pads
/// it, centred, to exactly that size of square pixels. `sar` is the frame's own (1 when
/// unknown), so the plan needs no fact the contract lacks. For square pixels this is
/// `force_original_aspect_ratio=decrease` exactly: that takes `round(height*iw/ih)` in
/// integers (`av_rescale`), and `height*iw*1/ih` is one correctly rounded division of
/// whole numbers, so the two round alike; the frames are the same, bit for bit. The
/// clamp `max(1,min(N,...))` is the policy's bound on a size that reads the input's.
pub(crate) fn fit(width: u32, height: u32) -> String {
    format!(
        "scale=w='max(1,min({width},round({height}*iw*sar/ih)))':h='max(1,min({height},round({width}*ih/(iw*sar))))',\
         pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1"
    )
}

/// Which source frames a chain reads, and how it makes up the ones the source lacks.
/// Source times are seconds of the clip; the others are seconds of the video, which
/// differ when the slot plays its footage at another speed.
struct Window {
    read_start: f64,
    /// Source seconds read.
    read_length: f64,
    /// Decoded but dropped at the front (read early so there is a frame to hold).
    skip: f64,
    /// Still frame in front: held first frame of a slot (`hold_first`), and the clip's
    /// first frame where the window starts before the clip does.
    hold_front: f64,
    /// Seconds of the video the footage plays before its last frame stands still; None:
    /// as long as the window (and the clip) lasts.
    play: Option<f64>,
    /// Seconds of footage per second of video.
    speed: f64,
    length: f64,
}

impl Window {
    /// `length` seconds of video showing the source from `want_start` (which may lie
    /// before 0 or past `usable_end`): as shot.
    #[cfg(test)]
    fn new(want_start: f64, length: f64, usable_end: f64) -> Window {
        Window::played(want_start, length, usable_end, 1.0, 0.0, None)
    }

    /// `length` seconds of video: the source frame at `want_start` still for `still`
    /// seconds, then the source from there at `speed`, for at most `play` seconds.
    fn played(want_start: f64, length: f64, usable_end: f64, speed: f64, still: f64, play: Option<f64>) -> Window {
        let start = want_start.max(0.0);
        let hold_front = (still + (start - want_start) / speed).min(length);
        let read_start = start.min((usable_end - MIN_DECODE_SECONDS).max(0.0));
        let skip = start - read_start;
        let footage = play.unwrap_or(f64::INFINITY).min(length - hold_front).max(0.0) * speed;
        let read_length =
            (usable_end - read_start).min(skip + footage).max(MIN_DECODE_SECONDS.min(usable_end - read_start));
        Window { read_start, read_length, skip, hold_front, play, speed, length }
    }

    /// The window of `slot` for the video's seconds `from..from + length` of the slot
    /// (`from` negative: before the slot starts, a crossfade's lead in), `slot_length`
    /// seconds long in all, as the slot's hooks say.
    fn of_slot(
        slot: &MoveSlot,
        look: &SlotRender,
        from: f64,
        length: f64,
        slot_length: f64,
        usable_end: f64,
    ) -> Window {
        let speed = look.speed;
        if look.hold_first > 0.0 {
            // Still until `hold_first`, the lead in of a crossfade included.
            let still = (look.hold_first - from).clamp(0.0, length);
            let want_start = slot.trim_start + (from - look.hold_first).max(0.0) * speed;
            let play =
                (look.hold_last > 0.0).then(|| (slot_length - look.hold_last - from.max(look.hold_first)).max(0.0));
            return Window::played(want_start, length, usable_end, speed, still, play);
        }
        let play = (look.hold_last > 0.0).then(|| (slot_length - look.hold_last - from.max(0.0)).max(0.0));
        Window::played(slot.trim_start + from * speed, length, usable_end, speed, 0.0, play)
    }

    fn input_args(&self, input: u32, args: &mut Vec<Arg>) {
        if self.read_start > 0.0 {
            args.extend([Arg::lit("-ss"), Arg::lit(secs(self.read_start))]);
        }
        args.extend([Arg::lit("-t"), Arg::lit(secs(self.read_length)), Arg::lit("-i"), Arg::Input(input)]);
    }

    /// The filter chain from FFmpeg input `number` to `[label]`, with the slot's own
    /// per-pixel `filters` before the frames are fitted to the output.
    fn chain(&self, number: usize, look: &Look, filters: &[String], label: &str) -> String {
        let retimed =
            if self.speed == 1.0 { "PTS-STARTPTS".to_owned() } else { format!("(PTS-STARTPTS)/{}", secs(self.speed)) };
        let mut chain = format!("[{number}:v]setpts={retimed},");
        for filter in filters {
            chain.push_str(filter);
            chain.push(',');
        }
        // In the video's time from here on.
        let skip = self.skip / self.speed;
        chain.push_str(&look.normaliser);
        if let Some(play) = self.play {
            // The footage stops (at least its first frame kept); the pad below holds it.
            chain.push_str(&format!(",trim=end={}", secs(skip + play.max(look.rate.seconds(1)))));
        }
        chain.push_str(&format!(",tpad=stop_mode=clone:stop_duration={}", secs(skip + self.length)));
        if skip > 0.0 {
            chain.push_str(&format!(",trim=start={},setpts=PTS-STARTPTS", secs(skip)));
        }
        if self.hold_front > 0.0 {
            chain.push_str(&format!(",tpad=start_mode=clone:start_duration={}", secs(self.hold_front)));
        }
        chain.push_str(&format!(",trim=duration={}[{label}]", secs(self.length)));
        chain
    }
}

/// A crossfade into a move, in output frames: `left` frames before the move's first
/// frame and `right` frames from it. The whole blend is rendered by the outgoing
/// move's segment, which already decodes its clip past the boundary, so no segment
/// ever seeks to the end of the previous clip.
#[derive(Debug, Clone, Copy, Default)]
struct Blend {
    left: u64,
    right: u64,
}

impl Blend {
    fn frames(self) -> u64 {
        self.left + self.right
    }
}

/// The blend into each shown move. Never longer than either adjoining move, so every
/// segment keeps at least zero frames of its own between two blends.
fn blends(validated: &Validated, timeline: &Timeline, shown: &[usize], rate: FrameRate) -> Vec<Blend> {
    shown
        .iter()
        .enumerate()
        .map(|(position, &index)| {
            let previous = match position.checked_sub(1) {
                Some(p) if validated.moves[index].transition == Transition::Crossfade => shown[p],
                _ => return Blend::default(),
            };
            let wanted = rate.frame_at(validated.moves[index].transition_seconds);
            let frames = wanted.min(timeline.frames(previous)).min(timeline.frames(index));
            // A blend of one frame would be a cut with a blemish.
            if frames < 2 {
                return Blend::default();
            }
            Blend { left: frames / 2, right: frames - frames / 2 }
        })
        .collect()
}

/// One segment of the output: from the end of the blend into move `index` to the end
/// of the blend out of it (or the move's end).
struct Segment {
    index: usize,
    next: Option<usize>,
    is_first: bool,
    blend_in: Blend,
    blend_out: Blend,
}

impl Segment {
    fn frame_range(&self, timeline: &Timeline) -> (u64, u64) {
        let start = timeline.first_frame[self.index] + self.blend_in.right;
        let end = match self.next {
            Some(next) => timeline.first_frame[next] + self.blend_out.right,
            None => timeline.total_frames,
        };
        (start, end.max(start))
    }

    /// Seconds of the fade in at the segment's start, and of the fade out at its end.
    fn fades(&self, validated: &Validated, timeline: &Timeline, rate: FrameRate) -> (f64, f64) {
        let moves = &validated.moves;
        let this = &moves[self.index];
        let slot = rate.seconds(timeline.frames(self.index));
        let fade_in = match this.transition {
            Transition::FadeBlack | Transition::FadeWhite => this.transition_seconds.min(slot),
            // The first move has nothing to blend with: it blends in from black over the
            // half of the transition that falls inside the video.
            Transition::Crossfade if self.is_first => (this.transition_seconds / 2.0).min(slot),
            _ => 0.0,
        };
        let fade_out = match self.next.map(|next| &moves[next]) {
            Some(next @ MoveSlot { transition: Transition::FadeBlack | Transition::FadeWhite, .. }) => {
                next.transition_seconds.min(slot)
            }
            _ => 0.0,
        };
        (fade_in, fade_out)
    }

    /// The inputs and filter graph that render frames `from..to` of this segment (all of
    /// them: `0..frames`) to `[video]` (`[video1]` for `tag` 1...), reading FFmpeg inputs
    /// from `first_input` on.
    /// A part that starts later reads its clip from there on; only the part that reaches
    /// the segment's end blends into the next move or fades out.
    #[allow(clippy::too_many_arguments)]
    fn render(
        &self,
        validated: &Validated,
        clips: &[ClipSpan],
        timeline: &Timeline,
        look: &Look,
        from: u64,
        to: u64,
        first_input: usize,
        tag: usize,
    ) -> Rendered {
        let moves = &validated.moves;
        let rate = look.rate;
        let this = &moves[self.index];
        let (first, end) = self.frame_range(timeline);
        let frames = end - first;
        let to = to.min(frames);
        let from = from.min(to);
        let length = rate.seconds(to - from);

        let mut inputs = Vec::new();
        let mut graph = Vec::new();
        // The first part keeps plain names; a second one in the same step is numbered.
        let tag = if tag == 0 { String::new() } else { tag.to_string() };
        let (own_label, next_label, blended_label) =
            (format!("own{tag}"), format!("next{tag}"), format!("blended{tag}"));
        // This move's clip from where the blend into it ended (and `from` frames on),
        // running on past the move's end through the blend out of it.
        let own_look = look.render.slot(self.index);
        let slot_length = rate.seconds(timeline.frames(self.index));
        let own_usable = usable_end(clips[this.clip as usize], this);
        let own =
            Window::of_slot(this, own_look, rate.seconds(self.blend_in.right + from), length, slot_length, own_usable);
        own.input_args(clip_input(this.clip), &mut inputs);
        graph.push(own.chain(first_input, look, &own_look.filters, &own_label));
        let mut current = own_label.clone();
        let blend_starts = frames - self.blend_out.frames();
        if let Some(next) = self.next.filter(|_| self.blend_out.frames() > 0 && to > blend_starts) {
            let after = &moves[next];
            let blend = rate.seconds(self.blend_out.frames());
            // The incoming clip starts early by the blend's left half.
            let (next_look, next_length) = (look.render.slot(next), rate.seconds(timeline.frames(next)));
            let lead = -rate.seconds(self.blend_out.left);
            let lead_in = Window::of_slot(
                after,
                next_look,
                lead,
                blend,
                next_length,
                usable_end(clips[after.clip as usize], after),
            );
            lead_in.input_args(clip_input(after.clip), &mut inputs);
            graph.push(lead_in.chain(first_input + 1, look, &next_look.filters, &next_label));
            let offset = rate.seconds(blend_starts.saturating_sub(from));
            // FFmpeg 5.1's xfade blends only 4:4:4 or one plane at a time (gray). Blending each
            // of the 4:2:0 planes on its own is the plain 4:2:0 blend, sample for sample what
            // converting to 4:4:4 and back with `neighbor` gave (each chroma sample doubled, then
            // one of four equal ones kept: the same bytes out of x264), without the three
            // conversions or the doubled chroma: measured on the bench's 22-frame bridges, the
            // blend took 0.10 s of a bridge's 0.27 s of decoding and filtering, 0.035 s this way.
            // The bicubic scalers FFmpeg would insert instead blur the chroma (39-43 dB).
            let planes = |label: &str| format!("[{label}]extractplanes=y+u+v[{label}y][{label}u][{label}v]");
            graph.push(planes(&own_label));
            graph.push(planes(&next_label));
            for plane in ["y", "u", "v"] {
                graph.push(format!(
                    "[{own_label}{plane}][{next_label}{plane}]xfade=transition=fade:duration={}:offset={}\
                     [{blended_label}{plane}]",
                    secs(blend),
                    secs(offset)
                ));
            }
            graph.push(format!(
                "[{blended_label}y][{blended_label}u][{blended_label}v]mergeplanes=0x001020:yuv420p[{blended_label}]"
            ));
            current = blended_label;
        }

        let mut tail = format!("[{current}]setpts=PTS-STARTPTS");
        let (fade_in, fade_out) = self.fades(validated, timeline, rate);
        if fade_in > 0.0 && from == 0 {
            let colour = if this.transition == Transition::FadeWhite { "white" } else { "black" };
            tail.push_str(&format!(",fade=t=in:st=0:d={}:color={colour}", secs(fade_in)));
        }
        if let Some(next) = self.next.filter(|_| fade_out > 0.0 && to == frames) {
            // No blend out here, so the segment ends exactly where the move does.
            let colour = fade_colour(moves[next].transition);
            tail.push_str(&format!(",fade=t=out:st={}:d={}:color={colour}", secs(length - fade_out), secs(fade_out)));
        }
        tail.push_str(&format!("[video{tag}]"));
        graph.push(tail);
        let label = if (from, to) == (0, frames) {
            label(self.index, &this.clip_id)
        } else {
            format!("{} frames {from}-{to}", label(self.index, &this.clip_id))
        };
        Rendered { inputs, graph, frames: to - from, label, bridge: false }
    }

    /// The frames of this move's prepared clip the segment shows unchanged (no fade, no
    /// blend, no held frame), in segment frames, starting on a keyframe; None when not
    /// one GOP fits. The run may end inside a GOP: prepared clips have no B-frames, so
    /// every frame refers only to frames before it and the frames up to any point decode
    /// on their own. Only what follows, the blend, is encoded (about 15 frames per
    /// boundary rather than 30 when the run had to end on the grid).
    fn copyable(
        &self,
        validated: &Validated,
        clips: &[ClipSpan],
        timeline: &Timeline,
        look: &Look,
        prepared: &PreparedClip,
    ) -> Option<Copy> {
        let gop = u64::from(prepared.gop_frames);
        // Frames shown at another speed, held or filtered are not the prepared clip's.
        if !look.render.slot(self.index).is_as_shot() {
            return None;
        }
        let rate = look.rate;
        let this = &validated.moves[self.index];
        let (first, end) = self.frame_range(timeline);
        let frames = end - first;
        // The first frame a window from `start` shows is the first at or after it; before
        // the clip's start (a negative trim_start) the first frame is held, not copied.
        let start = this.trim_start + rate.seconds(self.blend_in.right);
        let first_shown = (start * rate.fps() - 1e-6).ceil();
        let held = (-first_shown).max(0.0) as u64;
        let source_first = first_shown.max(0.0) as u64;
        let usable_frames = ((usable_end(clips[this.clip as usize], this) * rate.fps()) + 1e-6).floor() as u64;
        let available = usable_frames.min(prepared.frames).saturating_sub(source_first) + held;
        let (fade_in, fade_out) = self.fades(validated, timeline, rate);
        let low = if fade_in > 0.0 { rate.frame_at(fade_in) + 1 } else { 0 }.max(held);
        let high = (frames - self.blend_out.frames())
            .saturating_sub(rate.frame_at(fade_out) + u64::from(fade_out > 0.0))
            .min(available);
        if high <= low {
            return None;
        }
        // Segment frame f shows source frame source_first + f - held.
        let source_low = source_first + low - held;
        let from = low + (prepared.keyframe_from(source_low)? - source_low);
        (high >= from + gop).then_some(Copy { from, to: high, source_frame: source_first + from - held })
    }
}

/// One rendered part's share of an FFmpeg step.
struct Rendered {
    /// `-ss`/`-t`/`-i` of the clips it reads.
    inputs: Vec<Arg>,
    /// Filter chains ending in `[video]` (or `[video1]`...).
    graph: Vec<String>,
    frames: u64,
    label: String,
    /// Part of a move copied from its prepared clip: a bridge around the copied frames.
    bridge: bool,
}

impl Rendered {
    fn input_count(&self) -> usize {
        self.inputs.iter().filter(|arg| **arg == Arg::lit("-i")).count()
    }
}

/// One FFmpeg step encoding `parts` one after the other (a bridge out of a move and the
/// bridge into the next share a step: one process start instead of two).
fn encode(parts: &[Rendered], validated: &Validated, look: &Look, temp: u32) -> Invocation {
    let output = &validated.output;
    let mut args: Vec<Arg> = parts.iter().flat_map(|part| part.inputs.iter().cloned()).collect();
    let mut graph: Vec<String> = parts.iter().flat_map(|part| part.graph.iter().cloned()).collect();
    let mapped = if parts.len() == 1 {
        "[video]".to_owned()
    } else {
        let labels: String =
            (0..parts.len()).map(|tag| if tag == 0 { "[video]".to_owned() } else { format!("[video{tag}]") }).collect();
        graph.push(format!("{labels}concat=n={}:v=1:a=0[joined]", parts.len()));
        "[joined]".to_owned()
    };
    args.extend([
        Arg::lit("-filter_complex"),
        Arg::Literal(graph.join(";")),
        Arg::lit("-map"),
        Arg::Literal(mapped),
        Arg::lit("-an"),
    ]);
    args.extend([Arg::lit("-c:v"), Arg::lit(output.video_codec.clone())]);
    if matches!(output.video_codec.as_str(), "libx264" | "libx265") {
        args.extend([Arg::lit("-preset"), Arg::lit(ENCODER_PRESET)]);
    }
    let bridges_only = parts.iter().all(|part| part.bridge);
    if bridges_only && output.video_codec == "libx264" {
        args.extend([Arg::lit("-rc-lookahead"), Arg::lit(BRIDGE_X264_LOOKAHEAD)]);
    }
    args.extend([
        Arg::lit("-threads"),
        Arg::lit(if bridges_only { BRIDGE_ENCODER_THREADS } else { look.encoder_threads }),
        Arg::lit("-b:v"),
        Arg::lit(output.video_bitrate.to_string()),
        Arg::lit("-pix_fmt"),
        Arg::lit("yuv420p"),
    ]);
    if let Some(gop) = look.prepared_gop {
        let gop = gop.to_string();
        for (option, value) in
            [("-g", gop.as_str()), ("-keyint_min", gop.as_str()), ("-sc_threshold", "0"), ("-bf", "0")]
        {
            args.extend([Arg::lit(option), Arg::lit(value)]);
        }
    }
    let frames: u64 = parts.iter().map(|part| part.frames).sum();
    args.extend([
        Arg::lit("-frames:v"),
        Arg::lit(frames.to_string()),
        Arg::lit("-f"),
        Arg::lit("nut"),
        Arg::Temp(temp),
    ]);
    let label = parts.iter().map(|part| part.label.as_str()).collect::<Vec<_>>().join(" + ");
    Invocation { args, media_seconds: look.rate.seconds(frames), label }
}

/// Encodes the rendered parts waiting in `waiting` into one step and one concat part.
fn flush(
    waiting: &mut Vec<Rendered>,
    temps: &mut Vec<TempFormat>,
    steps: &mut Vec<Step>,
    parts: &mut Vec<ConcatPart>,
    validated: &Validated,
    look: &Look,
) {
    if waiting.is_empty() {
        return;
    }
    let temp = temps.len() as u32;
    temps.push(TempFormat::Nut);
    let invocation = encode(waiting, validated, look, temp);
    let frames: u64 = waiting.iter().map(|part| part.frames).sum();
    steps.push(Step::Ffmpeg(invocation));
    parts.push(ConcatPart { temp, duration: look.rate.seconds(frames) });
    waiting.clear();
}

/// Bridges at most this long share a step with the next one (a rendered part's inputs
/// are all open while the step runs; short ones keep that cheap).
const MERGED_BRIDGE_FRAMES: u64 = 120;

/// Part of a segment: rendered (decoded, filtered, encoded) or copied.
enum Piece {
    Render { from: u64, to: u64 },
    Copy(Copy),
}

/// Segment frames `from..to`, copied from the prepared clip's frames from `source_frame`
/// on (a GOP boundary).
#[derive(Debug, Clone, Copy)]
struct Copy {
    from: u64,
    to: u64,
    source_frame: u64,
}

impl Copy {
    fn invocation(
        &self,
        input: u32,
        rate: FrameRate,
        temp: u32,
        segment: &Segment,
        validated: &Validated,
    ) -> Invocation {
        let count = self.to - self.from;
        let args = vec![
            Arg::lit("-ss"),
            Arg::lit(secs(rate.seconds(self.source_frame))),
            Arg::lit("-i"),
            Arg::Input(input),
            Arg::lit("-map"),
            Arg::lit("0:v:0"),
            Arg::lit("-c:v"),
            Arg::lit("copy"),
            // The MP4's length-prefixed H.264 as start codes, like the encoded parts in NUT.
            Arg::lit("-bsf:v"),
            Arg::lit("h264_mp4toannexb"),
            Arg::lit("-an"),
            Arg::lit("-frames:v"),
            Arg::lit(count.to_string()),
            Arg::lit("-f"),
            Arg::lit("nut"),
            Arg::Temp(temp),
        ];
        let this = &validated.moves[segment.index];
        Invocation {
            args,
            media_seconds: rate.seconds(count),
            label: format!("{} copy {}-{}", label(segment.index, &this.clip_id), self.from, self.to),
        }
    }
}

/// For each clip, its prepared version when its input is one for this job's profile. A
/// prepared clip of another profile (other settings) cannot be joined with this job's
/// encoded parts, so it counts as an ordinary clip.
fn prepared_clips(request: &PlanRequest, rate: FrameRate) -> Vec<Option<PreparedClip>> {
    let validated = &request.validated;
    let profile = crate::prepare::Profile::of(validated, &request.inputs).map(|profile| profile.id());
    (0..validated.clip_keys.len())
        .map(|clip| {
            let input = clip_input(clip as u32) as usize;
            let prepared = request.prepared.get(input).cloned().flatten()?;
            let video = request.inputs.get(input)?.video.as_ref()?;
            let fits = Some(&prepared.profile_id) == profile.as_ref()
                && prepared.gop_frames > 0
                && video.codec == "h264"
                && FrameRate::from_fps(video.frame_rate) == rate;
            fits.then_some(prepared)
        })
        .collect()
}

/// `move 3 (basic_step)`, short enough for any log line.
fn label(index: usize, clip_id: &str) -> String {
    let mut id: String = clip_id.chars().filter(|c| !c.is_control()).take(48).collect();
    if id.len() < clip_id.len() {
        id.push('~');
    }
    if id.is_empty() {
        format!("move {index}")
    } else {
        format!("move {index} ({id})")
    }
}

fn fade_colour(transition: Transition) -> &'static str {
    if transition == Transition::FadeWhite {
        "white"
    } else {
        "black"
    }
}

/// How the song reaches `normalize_audio`'s loudness.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Normalisation {
    /// `normalize_audio` is off.
    None,
    /// One constant gain (an amplitude factor), from the host's measurement: what
    /// `loudnorm`'s linear (two-pass) mode does, without its 192 kHz dynamic machinery.
    Gain(f64),
    /// `loudnorm`'s dynamic mode, which adjusts as it goes.
    Loudnorm,
}

/// `loudnorm`'s own rule for its linear mode, on the host's measurement of the song: the
/// gain that brings the integrated loudness to the target, when the true peak stays
/// under its target after it and the loudness range is within its target. The song's
/// volume must be the same through the whole video: a blueprint's volume runs change
/// the loudness the measurement saw, which then takes the dynamic mode as before. A
/// uniform volume needs no term: the gain makes up for it.
///
/// A song made of `sections` takes the gain only when every section lies inside what was
/// measured: its true peak is then at most the measured one, and the rule still holds.
fn normalisation(request: &PlanRequest, shown: &[usize], sections: &[SongSection]) -> Normalisation {
    let validated = &request.validated;
    if !validated.output.normalize_audio {
        return Normalisation::None;
    }
    let Some(measured) = request.song_loudness else { return Normalisation::Loudnorm };
    // One sample's worth of rounding.
    if sections.iter().any(|section| section.start + section.duration > measured.seconds + 1e-6) {
        return Normalisation::Loudnorm;
    }
    let mut volumes = shown.iter().map(|&index| validated.moves[index].volume);
    let uniform = match volumes.next() {
        Some(first) => first > 0.0 && volumes.all(|volume| (volume - first).abs() < 1e-9),
        None => true,
    };
    let finite = [measured.integrated, measured.range, measured.true_peak].iter().all(|value| value.is_finite());
    if !uniform || !finite || measured.integrated <= SILENCE_LOUDNESS {
        return Normalisation::Loudnorm;
    }
    let gain_db = TARGET_LOUDNESS - measured.integrated;
    if measured.true_peak + gain_db > TARGET_TRUE_PEAK || measured.range > TARGET_RANGE {
        return Normalisation::Loudnorm;
    }
    Normalisation::Gain(10f64.powf(gain_db / 20.0))
}

/// The song as the video needs it, encoded once: cut or padded to the video's exact
/// length, volume runs, loudness, AAC at 48 kHz stereo, into a NUT temp the join copies.
/// With `sections`, the song file is read once per section (`-ss`: a concat of
/// one decode split many ways would hold every decoded sample of a section played later)
/// and the sections are joined in order.
fn song_step(
    validated: &Validated,
    timeline: &Timeline,
    shown: &[usize],
    normalisation: Normalisation,
    sections: &[SongSection],
    temp: u32,
) -> Invocation {
    let output = &validated.output;
    let length = timeline.total_seconds();
    let mut args = Vec::new();
    let mut audio = String::new();
    if sections.is_empty() {
        args.extend([Arg::lit("-i"), Arg::Input(SONG_INPUT)]);
        audio.push_str(&format!("[0:a]atrim=end={},asetpts=PTS-STARTPTS,", secs(length)));
    } else {
        for (number, section) in sections.iter().enumerate() {
            if section.start > 0.0 {
                args.extend([Arg::lit("-ss"), Arg::lit(secs(section.start))]);
            }
            // No `-t`: the graph's `atrim` ends the section (four arguments a section keep
            // the step within the policy's 256 for every section a song may have).
            args.extend([Arg::lit("-i"), Arg::Input(SONG_INPUT)]);
            // Each section exactly its length, whatever the seek gave.
            audio.push_str(&format!(
                "[{number}:a]asetpts=PTS-STARTPTS,aresample={OUTPUT_SAMPLE_RATE},apad=whole_dur={d},atrim=end={d}[section{number}];",
                d = secs(section.duration)
            ));
        }
        let labels: String = (0..sections.len()).map(|number| format!("[section{number}]")).collect();
        audio.push_str(&format!("{labels}concat=n={}:v=0:a=1,atrim=end={},", sections.len(), secs(length)));
    }
    audio.push_str(&format!(
        "aresample={OUTPUT_SAMPLE_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,apad=whole_dur={l}",
        l = secs(length)
    ));
    if let Normalisation::Gain(factor) = normalisation {
        audio.push_str(&format!(",volume={factor:.6}"));
    } else {
        let terms = volume_terms(validated, timeline, shown);
        if !terms.is_empty() {
            audio.push_str(&format!(",asetnsamples=n={VOLUME_FRAME_SAMPLES}"));
            for chunk in terms.chunks(VOLUME_TERMS_PER_FILTER) {
                audio.push_str(&format!(",volume='1{}':eval=frame", chunk.concat()));
            }
        }
    }
    if normalisation == Normalisation::Loudnorm {
        audio.push_str(&format!(",asetnsamples=n={LOUDNORM_FRAME_SAMPLES},{LOUDNORM},aresample={OUTPUT_SAMPLE_RATE}"));
    }
    audio.push_str(&format!(",atrim=end={}[audio]", secs(length)));
    args.extend([Arg::lit("-filter_complex"), Arg::Literal(audio), Arg::lit("-map"), Arg::lit("[audio]")]);
    args.extend([
        Arg::lit("-vn"),
        Arg::lit("-c:a"),
        Arg::lit(output.audio_codec.clone()),
        Arg::lit("-b:a"),
        Arg::lit(output.audio_bitrate.to_string()),
    ]);
    args.extend([
        Arg::lit("-ar"),
        Arg::lit(OUTPUT_SAMPLE_RATE),
        Arg::lit("-ac"),
        Arg::lit("2"),
        Arg::lit("-t"),
        Arg::lit(secs(length)),
    ]);
    args.extend([Arg::lit("-f"), Arg::lit("nut"), Arg::Temp(temp)]);
    Invocation { args, media_seconds: length, label: "the song".to_owned() }
}

/// FFmpeg's AAC encoder puts 1,024 priming samples (at the output's 48 kHz) in front of the audio. MP4
/// records them in an edit list so players skip them, but a NUT temp cannot: its
/// timestamps start at 0 with the priming, and copied as they are, the song would play
/// 21 ms late. Reading the temp shifted back by the priming gives the MP4 muxer the
/// encoder's own negative start; NUT does not keep the last frame's shorter length
/// either, so the join gives it back (`setts`). The output then has the same edit list
/// and samples as an encode straight into MP4 (checked by decoding both).
const AAC_PRIMING_SECONDS: f64 = 1024.0 / 48_000.0;

/// Joins the segments and the song, both already encoded: stream copy only.
fn final_step(timeline: &Timeline, list: u32, song: Option<u32>) -> Invocation {
    let length = timeline.total_seconds();
    let mut args = vec![Arg::lit("-f"), Arg::lit("concat"), Arg::lit("-i"), Arg::Temp(list)];
    match song {
        Some(song) => {
            args.extend([
                Arg::lit("-itsoffset"),
                Arg::Literal(format!("-{}", secs(AAC_PRIMING_SECONDS))),
                Arg::lit("-i"),
                Arg::Temp(song),
            ]);
            args.extend([
                Arg::lit("-map"),
                Arg::lit("0:v"),
                Arg::lit("-map"),
                Arg::lit("1:a"),
                Arg::lit("-c:v"),
                Arg::lit("copy"),
                Arg::lit("-c:a"),
                Arg::lit("copy"),
            ]);
            // The last AAC frame is whole in NUT; its real length is what ends at the video's end.
            args.extend([
                Arg::lit("-bsf:a"),
                Arg::Literal(format!("setts=duration='min(DURATION,{}/TB-PTS)'", secs(length))),
            ]);
        }
        None => args.extend([Arg::lit("-map"), Arg::lit("0:v"), Arg::lit("-c:v"), Arg::lit("copy"), Arg::lit("-an")]),
    }
    args.extend([
        Arg::lit("-movflags"),
        Arg::lit("+faststart"),
        Arg::lit("-t"),
        Arg::lit(secs(length)),
        Arg::lit("-f"),
        Arg::lit("mp4"),
        Arg::Output,
    ]);
    let label = if song.is_some() { "join the video and the song" } else { "join the video" };
    Invocation { args, media_seconds: length, label: label.to_owned() }
}

/// One term per run of consecutive moves sharing a volume other than 1: `(v-1) * w(t)`,
/// where `w` is 1 inside the run and ramps over [`VOLUME_RAMP_SECONDS`] centred on its
/// edges, so the weights of neighbouring runs always add up to 1.
fn volume_terms(validated: &Validated, timeline: &Timeline, shown: &[usize]) -> Vec<String> {
    let ramp = secs(VOLUME_RAMP_SECONDS);
    let mut runs: Vec<(f64, usize, usize)> = Vec::new();
    for (position, &index) in shown.iter().enumerate() {
        let volume = validated.moves[index].volume;
        match runs.last_mut() {
            Some((run_volume, _, last)) if (*run_volume - volume).abs() < 1e-9 => *last = position,
            _ => runs.push((volume, position, position)),
        }
    }
    runs.into_iter()
        .filter(|(volume, _, _)| (volume - 1.0).abs() > 1e-9)
        .map(|(volume, first, last)| {
            // The outer edges of the video get no ramp: the volume holds from the very start or to the very end.
            let start = if first == 0 { -1.0 } else { timeline.start_seconds(shown[first]) };
            let end = if last + 1 == shown.len() {
                timeline.total_seconds() + 1.0
            } else {
                timeline.end_seconds(shown[last])
            };
            format!(
                "-{}*clip((t-{})/{ramp}+0.5,0,1)*clip(({}-t)/{ramp}+0.5,0,1)",
                secs(1.0 - volume),
                signed_secs(start),
                secs(end)
            )
        })
        .collect()
}

/// Seconds as FFmpeg reads them: plain decimal, at most microsecond precision, no
/// exponent, never negative.
fn secs(value: f64) -> String {
    let text = format!("{:.6}", value.max(0.0));
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// As [`secs`], for expression operands that may be negative.
fn signed_secs(value: f64) -> String {
    if value < 0.0 {
        format!("(0-{})", secs(-value))
    } else {
        secs(value)
    }
}

#[cfg(test)]
mod tests {
    use br_blueprint::{MoveSlot, Transition};

    use super::{secs, Look, Window};
    use crate::rational::FrameRate;
    use crate::render::{Render, SlotRender};
    use crate::types::Arg;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// A cut slot of 8 s showing clip 0 from `trim_start`.
    fn slot(trim_start: f64) -> MoveSlot {
        MoveSlot {
            clip: 0,
            clip_id: "m".into(),
            start: 0.0,
            duration: 8.0,
            trim_start,
            trim_end: 0.0,
            transition: Transition::Cut,
            volume: 1.0,
            origin: 0,
            transition_seconds: 0.0,
        }
    }

    /// 30 fps, with `null` for the normalising chain.
    fn look(render: &Render) -> Look<'_> {
        Look {
            rate: FrameRate { num: 30, den: 1 },
            render,
            encoder_threads: "2",
            prepared_gop: None,
            normaliser: "null".into(),
        }
    }

    #[test]
    fn seconds_are_plain_decimals() {
        assert_eq!(secs(8.0), "8");
        assert_eq!(secs(0.25), "0.25");
        assert_eq!(secs(1.0 / 3.0), "0.333333");
        assert_eq!(secs(-1.0), "0");
        assert_eq!(secs(1e-9), "0");
    }

    #[test]
    fn windows_hold_edges_where_the_source_has_no_frames() {
        let before_start = Window::new(-0.25, 8.5, 10.0);
        assert_eq!((before_start.read_start, before_start.hold_front, before_start.skip), (0.0, 0.25, 0.0));
        let past_end = Window::new(12.0, 0.5, 6.2);
        assert!((past_end.read_start - 5.7).abs() < 1e-9 && (past_end.skip - 6.3).abs() < 1e-9);
        assert!(past_end.read_length > 0.0);
    }

    /// A window reads no further than the clip's usable end, and at least half a second
    /// (all there is of a shorter clip) so that there is a frame to hold.
    #[test]
    fn windows_read_to_the_usable_end_and_at_least_half_a_second() {
        let near_end = Window::new(4.0, 8.0, 6.2);
        assert!(close(near_end.read_start, 4.0) && close(near_end.read_length, 2.2), "{}", near_end.read_length);
        let short_clip = Window::new(0.0, 0.1, 0.3);
        assert!(close(short_clip.read_length, 0.3), "{}", short_clip.read_length);
        let short_window = Window::new(3.0, 0.1, 10.0);
        assert!(close(short_window.read_length, 0.5), "{}", short_window.read_length);
    }

    /// Still frames in front are seconds of video: they shorten the footage read, and a
    /// window that starts before the clip holds its first frame for the missing source
    /// played at the slot's speed (1.5 s of source at 0.75x: 2 s).
    #[test]
    fn still_frames_in_front_are_video_seconds_and_shorten_the_footage() {
        let still = Window::played(3.0, 8.0, 20.0, 0.75, 2.0, None);
        assert!(
            close(still.hold_front, 2.0) && close(still.read_length, 4.5),
            "{} {}",
            still.hold_front,
            still.read_length
        );
        let early = Window::played(-1.5, 8.0, 20.0, 0.75, 0.0, None);
        assert!(close(early.hold_front, 2.0) && early.read_start == 0.0, "{} {}", early.hold_front, early.read_start);
    }

    /// A slot's window: its still first frame counts from the slot's start (a later part
    /// has less of it or none), the footage starts at trim_start and runs at the slot's
    /// speed after the still, and plays until hold_last before the slot's end (no limit
    /// without a hold_last).
    #[test]
    fn a_slot_s_window_follows_its_hooks() {
        let held_first = SlotRender { speed: 0.75, hold_first: 2.0, ..SlotRender::default() };
        let early = Window::of_slot(&slot(3.0), &held_first, 0.5, 3.0, 8.0, 20.0);
        assert!(
            close(early.hold_front, 1.5) && close(early.read_start, 3.0) && early.play.is_none(),
            "{} {} {:?}",
            early.hold_front,
            early.read_start,
            early.play
        );
        // 3 s after the still, at 0.75x: 2.25 s of source past trim_start.
        let late = Window::of_slot(&slot(3.0), &held_first, 5.0, 3.0, 8.0, 20.0);
        assert!(
            close(late.hold_front, 0.0) && close(late.read_start, 5.25) && late.play.is_none(),
            "{} {} {:?}",
            late.hold_front,
            late.read_start,
            late.play
        );
        let held_last = SlotRender { speed: 0.75, hold_last: 1.5, ..SlotRender::default() };
        let part = Window::of_slot(&slot(3.0), &held_last, 0.6, 3.0, 8.0, 20.0);
        assert!(close(part.read_start, 3.45), "{}", part.read_start);
        assert!(
            part.play.is_some_and(|play| close(play, 5.9)),
            "8 s less the last 1.5 s and the 0.6 s before the part: {:?}",
            part.play
        );
        let slow =
            Window::of_slot(&slot(3.0), &SlotRender { speed: 0.75, ..SlotRender::default() }, 0.6, 3.0, 8.0, 20.0);
        assert!(close(slow.read_start, 3.45) && slow.play.is_none(), "{} {:?}", slow.read_start, slow.play);
    }

    /// A window read from the clip's start seeks nowhere: `-ss` only for a later start.
    #[test]
    fn a_window_from_the_clip_s_start_is_read_without_a_seek() {
        let mut args = Vec::new();
        Window::new(0.0, 8.0, 10.0).input_args(1, &mut args);
        assert_eq!(args, [Arg::lit("-t"), Arg::lit("8"), Arg::lit("-i"), Arg::Input(1)]);
        args.clear();
        Window::new(2.5, 8.0, 10.0).input_args(3, &mut args);
        assert_eq!(
            args,
            [Arg::lit("-ss"), Arg::lit("2.5"), Arg::lit("-t"), Arg::lit("7.5"), Arg::lit("-i"), Arg::Input(3)]
        );
    }

    /// A chain drops what it decoded early in the video's time (the skip at the slot's
    /// speed: 6.3 s of source at 0.75x is 8.4 s), and pads a front only where the window
    /// holds one.
    #[test]
    fn a_chain_skips_in_video_seconds_and_pads_only_a_held_front() {
        let render = Render::default();
        let look = look(&render);
        let plain = Window::new(0.0, 8.0, 10.0).chain(0, &look, &[], "own");
        assert_eq!(plain, "[0:v]setpts=PTS-STARTPTS,null,tpad=stop_mode=clone:stop_duration=8,trim=duration=8[own]");
        let past_end = Window::played(12.0, 0.5, 6.2, 0.75, 0.0, None).chain(1, &look, &[], "next");
        assert_eq!(
            past_end,
            "[1:v]setpts=(PTS-STARTPTS)/0.75,null,tpad=stop_mode=clone:stop_duration=8.9,trim=start=8.4,setpts=PTS-STARTPTS,trim=duration=0.5[next]"
        );
    }
}
