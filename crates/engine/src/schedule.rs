//! Which steps of a plan may run at the same time, and with how much memory each.
//!
//! The planner's first step makes the song and reads nothing the segments write, so on
//! a machine with two cores it can run beside them (the song's AAC takes about a third
//! of a job's CPU). Two things decide what starts:
//! - order: a step starts once every step that writes a temp it reads has finished
//!   (the policy has checked that temps are written before they are read), and the
//!   step that writes the output waits for all others;
//! - memory: every child's `RLIMIT_DATA` comes out of the same budget. A step that
//!   encodes video is *heavy*: it needs the estimate for its frames
//!   ([`estimate::step_bytes`]) and, once started, takes all that is left but room for
//!   one light step, so two never run together (at 720p two do not fit in 512 MiB).
//!   A step whose clips are all prepared clips (a bridge) is weighed by their smaller,
//!   measured need ([`estimate::prepared_step_bytes`]): it may start beside the song,
//!   and two bridges run together when both needs fit.
//!   Copying streams or making audio is *light*: it gets a fixed, measured limit when
//!   another step could start beside it. The classification reads
//!   the plan's own arguments, so a hostile plan can only lie its way into a smaller
//!   limit, which then fails its step cleanly.

use br_plan::{Arg, Plan, Step};

use crate::budget::{estimate, MIB};

/// A copy step (`-c copy` of one part, and the join of many): passed at a data limit of
/// 40 MiB, FFmpeg 5.1.
const COPY_NEED: u64 = 64 * MIB;
/// The song without `loudnorm` (decode, resample, volume, AAC): passed at 40 MiB.
const AUDIO_NEED: u64 = 64 * MIB;
/// The song with `loudnorm` (fed 0.1 s frames): passed at 120 MiB for a 3-minute song
/// and at 160 MiB for a 10-minute one.
const LOUDNORM_NEED: u64 = 176 * MIB;
/// Room kept beside the room reserved for the next step: the step that starts first has
/// its inputs staged again (a few MB each) and writes its temp after its limit is set,
/// and a reserve of exactly the next step's need would then no longer fit it.
const RESERVE_SLACK: u64 = 16 * MIB;
/// What a step may write besides its memory (its `RLIMIT_FSIZE`, out of the same share):
/// a fixed part for headers and indexes, and [`FileRates`] per second of media it makes.
/// A plan that writes more fails its step cleanly ("wrote a file larger than ...").
const FILE_BASE: u64 = MIB;
/// A heavy step whose share is short of its need still keeps this part of it for its
/// file, which it cannot do without.
const FILE_FLOOR_DIVISOR: u64 = 4;

/// Bytes per second of media a step may write: twice the blueprint's bitrates (x264's
/// rate control overshoots a short step's target; AAC keeps to its own).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileRates {
    /// A step that writes video (with its audio, or copies of both).
    pub video: f64,
    /// A step that writes audio only.
    pub audio: f64,
}

impl FileRates {
    pub fn of_output(video_bits_per_second: u64, audio_bits_per_second: u64) -> FileRates {
        let bytes = |bits: u64| 2.0 * bits as f64 / 8.0;
        FileRates { video: bytes(video_bits_per_second + audio_bits_per_second), audio: bytes(audio_bits_per_second) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Weight {
    /// Writes a concat list: no child.
    List,
    Light(u64),
    Heavy(u64),
    /// Encodes video from prepared clips only: heavy, but two may share the budget.
    Bridge(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Waiting,
    Running { limit: u64 },
    Done,
}

pub struct Schedule {
    /// For each step, the steps it waits for.
    after: Vec<Vec<usize>>,
    weights: Vec<Weight>,
    /// For each step, the largest file it may write ([`file_allowance`]).
    files: Vec<u64>,
    states: Vec<State>,
    max_running: usize,
}

/// What to start next: a step and its child's limits, which together are its share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Start {
    pub step: usize,
    /// `RLIMIT_DATA`.
    pub memory: u64,
    /// `RLIMIT_FSIZE`: the file it writes is charged to the budget too.
    pub file_size: u64,
    /// Room for the inputs it reads that must be fetched again first.
    pub staging: u64,
}

impl Schedule {
    /// `frame`: the output's frame, for heavy steps whose arguments name no larger one.
    /// `prepared_inputs[i]`: input `i` was staged from a prepared clip of this job's profile.
    /// `video_seconds`: the blueprint's length, which bounds what a step claims to write;
    /// `rates`: the blueprint's bitrates ([`FileRates`]).
    pub fn new(
        plan: &Plan,
        frame: (u32, u32),
        prepared_inputs: &[bool],
        max_running: usize,
        video_seconds: f64,
        rates: FileRates,
    ) -> Schedule {
        let weights = plan.steps.iter().map(|step| weight(step, frame, prepared_inputs)).collect();
        let files = plan.steps.iter().map(|step| file_allowance(step, video_seconds, rates)).collect();
        Schedule {
            after: dependencies(plan),
            weights,
            files,
            states: vec![State::Waiting; plan.steps.len()],
            max_running: max_running.max(1),
        }
    }

    /// A step's memory need.
    fn memory_need(&self, step: usize) -> u64 {
        match self.weights[step] {
            Weight::List => 0,
            Weight::Light(need) | Weight::Heavy(need) | Weight::Bridge(need) => need,
        }
    }

    /// The share a step is started with when it needs only its need: a light step's
    /// memory and its file (its file is its output, a copy or the song, and it is given
    /// no more than this beside another step); a heavy step's memory, whose headroom
    /// holds the few MiB its segment takes (see [`Schedule::split`]).
    fn need(&self, step: usize) -> u64 {
        match self.weights[step] {
            Weight::Light(need) => need + self.files[step],
            _ => self.memory_need(step),
        }
    }

    /// `share` split into the child's memory and its file: the file its allowance when
    /// the share holds the memory need beside it, else what the share leaves beside the
    /// memory need, and never less than a part of the share.
    fn split(&self, step: usize, share: u64) -> Start {
        let need = self.memory_need(step);
        let file_size = self.files[step].min(share.saturating_sub(need).max(share / FILE_FLOOR_DIVISOR));
        Start { step, memory: share - file_size, file_size, staging: 0 }
    }

    #[cfg(test)]
    pub fn weight(&self, step: usize) -> Weight {
        self.weights[step]
    }

    /// The next step that may start now, when `available` bytes of the budget are left
    /// beside the work folder's files (before the running children's limits).
    #[cfg(test)]
    pub fn next(&self, available: u64) -> Option<Start> {
        self.next_staging(available, &|_| 0)
    }

    /// [`Schedule::next`], where step `s` must first fetch again `staging(s)` bytes of
    /// inputs an earlier step's clean-up removed: they come out of its share, beside its
    /// memory and its file.
    pub fn next_staging(&self, available: u64, staging: &dyn Fn(usize) -> u64) -> Option<Start> {
        let running = self.states.iter().filter(|s| matches!(s, State::Running { .. })).count();
        if running >= self.max_running {
            return None;
        }
        let held: u64 = self.states.iter().map(|s| if let State::Running { limit } = s { *limit } else { 0 }).sum();
        let free = available.saturating_sub(held);
        let ready = |step: usize| {
            self.states[step] == State::Waiting && self.after[step].iter().all(|&s| self.states[s] == State::Done)
        };
        for step in (0..self.states.len()).filter(|&s| ready(s)) {
            let alone = running == 0;
            let need = self.need(step) + staging(step);
            let share = match self.weights[step] {
                Weight::List => 0,
                Weight::Light(_) if alone => {
                    // Alone, a light step keeps to its share only when a step is ready to start beside it.
                    let other_ready = self.max_running > 1 && (0..self.states.len()).any(|s| s != step && ready(s));
                    if other_ready && free > need {
                        need
                    } else {
                        free
                    }
                }
                Weight::Light(_) if free >= need => need,
                Weight::Heavy(_) | Weight::Bridge(_) if alone || free >= need => {
                    // Room is left for the largest step that is ready to run beside it and
                    // fits: a light one, or, beside a bridge, another bridge.
                    let is_bridge = matches!(self.weights[step], Weight::Bridge(_));
                    (0..self.states.len())
                        .filter(|&s| s != step && ready(s))
                        .filter_map(|s| match self.weights[s] {
                            Weight::Light(_) => Some(self.need(s) + staging(s)),
                            Weight::Bridge(_) if is_bridge => Some(self.need(s) + staging(s)),
                            _ => None,
                        })
                        .filter(|&other| self.max_running > 1 && free >= need.saturating_add(other))
                        .max()
                        .map_or(free, |reserve| free - reserve.saturating_add(RESERVE_SLACK).min(free - need))
                }
                Weight::Light(_) | Weight::Heavy(_) | Weight::Bridge(_) => continue,
            };
            let staged = staging(step).min(share);
            return Some(Start { staging: staged, ..self.split(step, share - staged) });
        }
        None
    }

    pub fn started(&mut self, start: Start) {
        self.states[start.step] = State::Running { limit: start.memory + start.file_size + start.staging };
    }

    pub fn finished(&mut self, step: usize) {
        self.states[step] = State::Done;
    }

    pub fn is_running(&self, step: usize) -> bool {
        matches!(self.states[step], State::Running { .. })
    }

    pub fn all_done(&self) -> bool {
        self.states.iter().all(|s| *s == State::Done)
    }

    /// Steps neither started nor done.
    pub fn waiting(&self) -> usize {
        self.states.iter().filter(|s| **s == State::Waiting).count()
    }
}

/// How many steps may run at once: two where the job has two cores (more would only
/// share them and the memory), one where it has one (Cloud Run's default job).
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// A step of a checked plan writes exactly one file, its last argument; every other
/// temp it names is read. A concat list reads its parts.
fn dependencies(plan: &Plan) -> Vec<Vec<usize>> {
    let mut writer = std::collections::HashMap::new();
    for (index, step) in plan.steps.iter().enumerate() {
        match step {
            Step::Ffmpeg(invocation) => {
                if let Some(Arg::Temp(temp)) = invocation.args.last() {
                    writer.entry(*temp).or_insert(index);
                }
            }
            Step::WriteConcatList(list) => {
                writer.entry(list.list).or_insert(index);
            }
        }
    }
    let last = plan.steps.len().saturating_sub(1);
    plan.steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            if index == last {
                return (0..index).collect();
            }
            let read: Vec<u32> = match step {
                Step::Ffmpeg(invocation) => {
                    let body = &invocation.args[..invocation.args.len().saturating_sub(1)];
                    body.iter().filter_map(|arg| if let Arg::Temp(t) = arg { Some(*t) } else { None }).collect()
                }
                Step::WriteConcatList(list) => list.parts.iter().map(|part| part.temp).collect(),
            };
            let mut after: Vec<usize> =
                read.iter().filter_map(|t| writer.get(t).copied()).filter(|&w| w < index).collect();
            after.sort_unstable();
            after.dedup();
            after
        })
        .collect()
}

/// The largest file `step` may write: [`FILE_BASE`] and its media seconds (cut to the
/// video's length: the plan's claim is the guest's) at the rate of what it writes.
fn file_allowance(step: &Step, video_seconds: f64, rates: FileRates) -> u64 {
    let Step::Ffmpeg(invocation) = step else { return 0 };
    let seconds = invocation.media_seconds.min(video_seconds + 10.0).max(0.0);
    let audio_only = invocation.args.iter().any(|arg| *arg == Arg::lit("-vn"));
    let rate = if audio_only { rates.audio } else { rates.video };
    FILE_BASE + (seconds * rate) as u64
}

fn weight(step: &Step, frame: (u32, u32), prepared_inputs: &[bool]) -> Weight {
    let Step::Ffmpeg(invocation) = step else { return Weight::List };
    let literals: Vec<&str> = invocation
        .args
        .iter()
        .filter_map(|a| if let Arg::Literal(text) = a { Some(text.as_str()) } else { None })
        .collect();
    let has = |word: &str| literals.contains(&word);
    let value_is =
        |options: &[&str], value: &str| literals.windows(2).any(|pair| options.contains(&pair[0]) && pair[1] == value);
    let filters = has("-filter_complex") || has("-vf") || has("-af");
    let video_copied = has("-vn") || value_is(&["-c:v", "-codec:v", "-vcodec"], "copy");
    let audio_copied = has("-an") || value_is(&["-c:a", "-codec:a", "-acodec"], "copy");
    if video_copied && audio_copied && !filters {
        return Weight::Light(COPY_NEED);
    }
    if has("-vn") {
        let loudnorm = literals.iter().any(|text| text.contains("loudnorm"));
        return Weight::Light(if loudnorm { LOUDNORM_NEED } else { AUDIO_NEED });
    }
    let (width, height) = estimate::largest_frame(&invocation.args)
        .filter(|&(w, h)| u64::from(w) * u64::from(h) > u64::from(frame.0) * u64::from(frame.1))
        .unwrap_or(frame);
    let mut inputs = invocation
        .args
        .iter()
        .filter_map(|arg| if let Arg::Input(i) = arg { Some(*i as usize) } else { None })
        .peekable();
    let only_prepared = inputs.peek().is_some() && inputs.all(|i| prepared_inputs.get(i).copied().unwrap_or(false));
    if only_prepared {
        // The encoder's options come after the last input (before it, `-threads` sets an
        // input's decoder).
        let last_input = invocation.args.iter().rposition(|arg| matches!(arg, Arg::Input(_))).unwrap_or(0);
        let output_options = &invocation.args[last_input..];
        let sets = |option: &str, value: &str| {
            output_options.windows(2).any(|pair| pair == [Arg::lit(option), Arg::lit(value)])
        };
        let encoder =
            estimate::BridgeEncoder { one_thread: sets("-threads", "1"), lookahead: !sets("-rc-lookahead", "0") };
        Weight::Bridge(estimate::prepared_step_bytes(width, height, encoder))
    } else {
        Weight::Heavy(estimate::step_bytes(width, height))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use br_plan::{ConcatList, ConcatPart, Invocation, TempFormat};

    /// The backend's bitrates, 2M and 128k: what the test steps (one second of media
    /// each) may write.
    const RATES: FileRates = FileRates { video: 2.0 * 2_128_000.0 / 8.0, audio: 2.0 * 128_000.0 / 8.0 };
    const AUDIO_FILE: u64 = FILE_BASE + 32_000;
    const VIDEO_FILE: u64 = FILE_BASE + 532_000;

    fn share(start: Start) -> u64 {
        start.memory + start.file_size + start.staging
    }

    #[test]
    fn a_steps_file_is_its_share_not_the_remainder() {
        let plan = planner_shaped(false);
        // One second of audio, one of video; a step claiming an hour writes no more than
        // the video's length allows.
        assert_eq!(file_allowance(&plan.steps[0], 10.0, RATES), AUDIO_FILE);
        assert_eq!(file_allowance(&plan.steps[1], 10.0, RATES), VIDEO_FILE);
        let mut claims_an_hour = step("-i CLIP -c copy -f nut", Arg::Temp(1));
        if let Step::Ffmpeg(invocation) = &mut claims_an_hour {
            invocation.media_seconds = 3600.0;
        }
        assert_eq!(file_allowance(&claims_an_hour, 10.0, RATES), FILE_BASE + 20 * 532_000);
        assert_eq!(file_allowance(&plan.steps[3], 10.0, RATES), 0, "a list is written by the host");
        // Two copies, side by side, each get their own share: together they fit.
        let copies = Plan {
            temps: vec![TempFormat::Nut; 2],
            steps: vec![
                step("-i CLIP -c:v copy -c:a copy -f nut", Arg::Temp(0)),
                step("-i CLIP -c:v copy -c:a copy -f nut", Arg::Temp(1)),
                step("-i T0 -i T1 -c:v copy -c:a copy -f mp4", Arg::Output),
            ],
            warnings: Vec::new(),
        };
        let mut schedule = Schedule::new(&copies, (1280, 720), &[], 2, 10.0, RATES);
        let available = 200 * MIB;
        let first = schedule.next(available).unwrap();
        schedule.started(first);
        let second = schedule.next(available).unwrap();
        schedule.started(second);
        assert_eq!((first.file_size, second.file_size), (VIDEO_FILE, VIDEO_FILE));
        assert!(share(first) + share(second) <= available, "{first:?} {second:?}");
        // Short of its need, a step keeps a part of its share for its file.
        let schedule = Schedule::new(&copies, (1280, 720), &[], 1, 10.0, RATES);
        let starved = schedule.next(VIDEO_FILE).unwrap();
        assert_eq!(starved.file_size, VIDEO_FILE / FILE_FLOOR_DIVISOR);
        assert_eq!(share(starved), VIDEO_FILE);
        // A heavy step with room to spare: its file is its allowance, the rest memory.
        let segment = Plan { temps: vec![TempFormat::Nut], steps: vec![plan.steps[1].clone()], warnings: Vec::new() };
        let schedule = Schedule::new(&segment, (1280, 720), &[], 1, 10.0, RATES);
        let alone = schedule.next(400 * MIB).unwrap();
        assert_eq!((alone.memory, alone.file_size), (400 * MIB - VIDEO_FILE, VIDEO_FILE));
        // A step that must fetch an input again first holds room for it in its share,
        // beside its memory need: it waits until both fit.
        let mut schedule = Schedule::new(&copies, (1280, 720), &[], 2, 10.0, RATES);
        let refetch = |step: usize| if step == 1 { 40 * MIB } else { 0 };
        let first = schedule.next_staging(available, &refetch).unwrap();
        assert_eq!((first.step, first.staging), (0, 0));
        schedule.started(first);
        let second = schedule.next_staging(available, &refetch).unwrap();
        assert_eq!((second.step, second.staging, second.memory), (1, 40 * MIB, COPY_NEED));
        assert_eq!(share(second), COPY_NEED + VIDEO_FILE + 40 * MIB);
        let mut schedule = Schedule::new(&copies, (1280, 720), &[], 2, 10.0, RATES);
        schedule.started(first);
        let just_short = share(first) + COPY_NEED + VIDEO_FILE + 40 * MIB - 1;
        assert_eq!(schedule.next_staging(just_short, &refetch), None, "its input does not fit beside the first");
        assert_eq!(schedule.next_staging(just_short + 1, &refetch).map(|s| s.step), Some(1));
    }

    fn step(words: &str, last: Arg) -> Step {
        let mut args: Vec<Arg> = words
            .split_whitespace()
            .map(|w| match w {
                "SONG" => Arg::Input(0),
                "CLIP" => Arg::Input(1),
                w if w.starts_with('T') => Arg::Temp(w[1..].parse().unwrap()),
                w => Arg::lit(w),
            })
            .collect();
        args.push(last);
        Step::Ffmpeg(Invocation { args, media_seconds: 1.0, label: words.to_owned() })
    }

    /// The planner's shape: the song, two segments, the list, the join.
    fn planner_shaped(loudnorm: bool) -> Plan {
        let song_graph = if loudnorm { "[0:a]loudnorm[audio]" } else { "[0:a]volume=1[audio]" };
        Plan {
            temps: vec![TempFormat::Nut, TempFormat::Nut, TempFormat::Nut, TempFormat::Ffconcat],
            steps: vec![
                step(&format!("-i SONG -filter_complex {song_graph} -map [audio] -vn -c:a aac -f nut"), Arg::Temp(0)),
                step("-i CLIP -filter_complex [0:v]scale=1280:720[v] -map [v] -an -c:v libx264 -f nut", Arg::Temp(1)),
                step("-i CLIP -map 0:v -c:v copy -an -f nut", Arg::Temp(2)),
                Step::WriteConcatList(ConcatList {
                    list: 3,
                    parts: vec![ConcatPart { temp: 1, duration: 1.0 }, ConcatPart { temp: 2, duration: 1.0 }],
                }),
                step("-f concat -i T3 -i T0 -map 0:v -map 1:a -c:v copy -c:a copy -f mp4", Arg::Output),
            ],
            warnings: Vec::new(),
        }
    }

    #[test]
    fn steps_wait_for_the_temps_they_read_and_the_output_for_everything() {
        let plan = planner_shaped(false);
        assert_eq!(dependencies(&plan), vec![vec![], vec![], vec![], vec![1, 2], vec![0, 1, 2, 3]]);
    }

    #[test]
    fn steps_are_weighed_by_what_their_arguments_make_them_do() {
        let plan = planner_shaped(true);
        let weights: Vec<Weight> = plan.steps.iter().map(|s| weight(s, (1280, 720), &[])).collect();
        assert_eq!(weights[0], Weight::Light(LOUDNORM_NEED));
        assert_eq!(weights[1], Weight::Heavy(estimate::step_bytes(1280, 720)));
        assert_eq!(weights[2], Weight::Light(COPY_NEED));
        assert_eq!(weights[3], Weight::List);
        assert_eq!(weights[4], Weight::Light(COPY_NEED));
        assert_eq!(weight(&planner_shaped(false).steps[0], (1280, 720), &[]), Weight::Light(AUDIO_NEED));
        // A literal frame larger than the output's is what a step is weighed by.
        let huge = step("-i CLIP -vf scale=3840:2160 -f nut", Arg::Temp(1));
        assert_eq!(weight(&huge, (1280, 720), &[]), Weight::Heavy(estimate::step_bytes(3840, 2160)));
        // Encoding audio with the video copied is not a copy.
        let encodes_audio = step("-i CLIP -c:v copy -c:a aac -f nut", Arg::Temp(1));
        assert!(matches!(weight(&encodes_audio, (1280, 720), &[]), Weight::Heavy(_)));
    }

    #[test]
    fn the_song_runs_beside_the_video_when_the_budget_has_room() {
        let plan = planner_shaped(false);
        let mut schedule = Schedule::new(&plan, (1280, 720), &[], 2, 10.0, RATES);
        let available = 420 * MIB;
        // The song starts with its own share, because the first segment is ready too.
        let song = schedule.next(available).unwrap();
        assert_eq!(song, Start { step: 0, memory: AUDIO_NEED, file_size: AUDIO_FILE, staging: 0 });
        schedule.started(song);
        // The segment takes what is left but room for the copy, which must wait: two run.
        let segment = schedule.next(available).unwrap();
        // The reserve never cuts into the segment's own need.
        let segment_share = (available - (AUDIO_NEED + AUDIO_FILE) - (COPY_NEED + VIDEO_FILE) - RESERVE_SLACK)
            .max(estimate::step_bytes(1280, 720));
        assert_eq!(segment, Start { step: 1, memory: segment_share - VIDEO_FILE, file_size: VIDEO_FILE, staging: 0 });
        schedule.started(segment);
        assert_eq!(schedule.next(available), None);
        // Once the song is done, the copy runs beside the segment in the room left for it.
        schedule.finished(0);
        let copy = schedule.next(available).unwrap();
        assert_eq!(copy, Start { step: 2, memory: COPY_NEED, file_size: VIDEO_FILE, staging: 0 });
        schedule.started(copy);
        assert_eq!(schedule.next(available), None, "two running");
        schedule.finished(2);
        assert_eq!(schedule.next(available), None, "the list waits for the segment");
        schedule.finished(1);
        assert_eq!(schedule.next(available), Some(Start { step: 3, memory: 0, file_size: 0, staging: 0 }));
        schedule.started(Start { step: 3, memory: 0, file_size: 0, staging: 0 });
        schedule.finished(3);
        let join = schedule.next(available).unwrap();
        assert_eq!(share(join), available, "alone, the join gets everything");
        assert_eq!(join.file_size, VIDEO_FILE, "its file as much as it may write");
    }

    #[test]
    fn a_video_step_that_cannot_fit_beside_the_song_waits_for_it() {
        let plan = planner_shaped(true);
        let mut schedule = Schedule::new(&plan, (1280, 720), &[], 2, 10.0, RATES);
        let available = 380 * MIB;
        let song = schedule.next(available).unwrap();
        assert_eq!(song.memory, LOUDNORM_NEED);
        schedule.started(song);
        // 380 - 176 is less than a 720p segment's estimate: the copy goes first instead.
        assert!(available - LOUDNORM_NEED < estimate::step_bytes(1280, 720));
        assert_eq!(schedule.next(available).map(|s| s.step), Some(2));
        schedule.finished(0);
        // Alone, it keeps room for the copy that is still ready.
        let segment = schedule.next(available).unwrap();
        assert_eq!((segment.step, share(segment)), (1, available - (COPY_NEED + VIDEO_FILE) - RESERVE_SLACK));
    }

    /// A light step starts beside a running one when what is free is exactly its need,
    /// and waits when it is one byte short (the rule: `free >= need`).
    #[test]
    fn a_light_step_that_fits_exactly_starts_and_one_byte_short_waits() {
        let plan = planner_shaped(true);
        let song_alone = Schedule::new(&plan, (1280, 720), &[], 2, 10.0, RATES).next(380 * MIB).unwrap();
        let held = song_alone.memory + song_alone.file_size;
        for (available, expected) in
            [(held + COPY_NEED + VIDEO_FILE, Some(2)), (held + COPY_NEED + VIDEO_FILE - 1, None)]
        {
            let mut schedule = Schedule::new(&plan, (1280, 720), &[], 2, 10.0, RATES);
            schedule.started(song_alone);
            let next = schedule.next(available);
            assert_eq!(next.map(|start| start.step), expected, "{available} bytes with {held} held");
            if let Some(copy) = next {
                assert_eq!((copy.memory, copy.file_size), (COPY_NEED, VIDEO_FILE), "exactly its need");
            }
        }
    }

    /// What is still waiting is what a stuck schedule reports: neither started nor done.
    #[test]
    fn waiting_counts_the_steps_neither_started_nor_done() {
        let plan = planner_shaped(true);
        let mut schedule = Schedule::new(&plan, (1280, 720), &[], 2, 10.0, RATES);
        let steps = plan.steps.len();
        assert_eq!(schedule.waiting(), steps);
        let first = schedule.next(380 * MIB).unwrap();
        schedule.started(first);
        assert_eq!(schedule.waiting(), steps - 1);
        schedule.finished(first.step);
        assert_eq!(schedule.waiting(), steps - 1);
        assert!(!schedule.all_done() || steps == 1);
    }

    #[test]
    fn a_bridge_of_prepared_clips_starts_beside_the_song_with_loudnorm() {
        let mut plan = planner_shaped(true);
        plan.steps[1] = step(PLANNERS_BRIDGE, Arg::Temp(1));
        // The staged clips of a 22-move job take about 70 MiB of the 448.
        let available = 448 * MIB - 70 * MIB;
        // Input 1 (the segment's clip) prepared: the segment is weighed as a bridge.
        let prepared = [false, true];
        let bridge_need = planners_bridge();
        assert_eq!(weight(&plan.steps[1], (1280, 720), &prepared), Weight::Bridge(bridge_need));
        assert_eq!(
            weight(&plan.steps[0], (1280, 720), &prepared),
            Weight::Light(LOUDNORM_NEED),
            "the song is never prepared"
        );
        let mut schedule = Schedule::new(&plan, (1280, 720), &prepared, 2, 10.0, RATES);
        let song = schedule.next(available).unwrap();
        assert_eq!(song, Start { step: 0, memory: LOUDNORM_NEED, file_size: AUDIO_FILE, staging: 0 });
        schedule.started(song);
        let bridge = schedule.next(available).unwrap();
        assert_eq!(bridge.step, 1, "the bridge starts beside the song");
        assert_eq!(share(bridge), available - share(song), "with all that is left");
        assert!(bridge.memory >= bridge_need);
        // Not prepared, the same step waits: a segment of original clips does not fit.
        let mut schedule = Schedule::new(&plan, (1280, 720), &[false, false], 2, 10.0, RATES);
        schedule.started(schedule.next(available).unwrap());
        assert_eq!(schedule.next(available).map(|start| start.step), Some(2), "the copy goes first");
    }

    /// The built-in planner's bridge: one encoder thread, no look-ahead.
    const PLANNERS_BRIDGE: &str =
        "-i CLIP -filter_complex [0:v]scale=1280:720[v] -map [v] -an -c:v libx264 -rc-lookahead 0 -threads 1 -f nut";

    fn planners_bridge() -> u64 {
        estimate::prepared_step_bytes(1280, 720, estimate::BridgeEncoder { one_thread: true, lookahead: false })
    }

    /// `-threads 1` before an input sets that input's decoder; the encoder's options are
    /// after the last input, and they decide the bridge's need.
    #[test]
    fn a_bridge_is_weighed_by_its_encoder_options_not_its_decoders() {
        let prepared = [false, true];
        let need = |one_thread, lookahead| {
            Weight::Bridge(estimate::prepared_step_bytes(1280, 720, estimate::BridgeEncoder { one_thread, lookahead }))
        };
        let two = step(
            "-threads 1 -i CLIP -filter_complex [0:v]null[v] -map [v] -c:v libx264 -threads 2 -f nut",
            Arg::Temp(0),
        );
        assert_eq!(weight(&two, (1280, 720), &prepared), need(false, true));
        let one = step(
            "-threads 1 -i CLIP -filter_complex [0:v]null[v] -map [v] -c:v libx264 -threads 1 -f nut",
            Arg::Temp(0),
        );
        assert_eq!(weight(&one, (1280, 720), &prepared), need(true, true));
        assert_eq!(weight(&step(PLANNERS_BRIDGE, Arg::Temp(0)), (1280, 720), &prepared), need(true, false));
        let any_lookahead = step(
            "-i CLIP -filter_complex [0:v]null[v] -map [v] -c:v libx264 -rc-lookahead 5 -threads 1 -f nut",
            Arg::Temp(0),
        );
        assert_eq!(weight(&any_lookahead, (1280, 720), &prepared), need(true, true));
    }

    /// The prepared job's order on two cores: the song and a bridge, then, once the song
    /// is made, two bridges at a time.
    #[test]
    fn bridges_run_two_at_a_time_once_the_song_is_made() {
        let plan = Plan {
            temps: vec![TempFormat::Nut; 4],
            steps: vec![
                step("-i SONG -filter_complex [0:a]volume=2[audio] -map [audio] -vn -c:a aac -f nut", Arg::Temp(0)),
                step(PLANNERS_BRIDGE, Arg::Temp(1)),
                step(PLANNERS_BRIDGE, Arg::Temp(2)),
                step(PLANNERS_BRIDGE, Arg::Temp(3)),
                step("-i T0 -i T1 -i T2 -i T3 -c copy -f mp4", Arg::Output),
            ],
            warnings: Vec::new(),
        };
        // The staged clips of a 22-move job take about 70 MiB of the 448.
        let available = 448 * MIB - 70 * MIB;
        let mut schedule = Schedule::new(&plan, (1280, 720), &[false, true], 2, 10.0, RATES);
        let song = schedule.next(available).unwrap();
        assert_eq!(song, Start { step: 0, memory: AUDIO_NEED, file_size: AUDIO_FILE, staging: 0 });
        schedule.started(song);
        let first = schedule.next(available).unwrap();
        assert_eq!(first.step, 1);
        assert!(share(first) >= planners_bridge() && first.file_size == VIDEO_FILE, "{first:?}");
        schedule.started(first);
        assert_eq!(schedule.next(available), None, "two cores, two steps");
        schedule.finished(0);
        let second = schedule.next(available).unwrap();
        assert_eq!(second.step, 2, "the song made, a second bridge starts beside the first");
        assert!(share(second) >= planners_bridge(), "{second:?}");
    }

    #[test]
    fn two_bridges_run_together_when_both_fit_but_two_segments_never_do() {
        let bridge = planners_bridge();
        let plan = Plan {
            temps: vec![TempFormat::Nut, TempFormat::Nut, TempFormat::Nut, TempFormat::Nut],
            steps: vec![
                step(PLANNERS_BRIDGE, Arg::Temp(0)),
                step(PLANNERS_BRIDGE, Arg::Temp(1)),
                step(PLANNERS_BRIDGE, Arg::Temp(2)),
                step("-i T0 -i T1 -i T2 -c copy -f mp4", Arg::Output),
            ],
            warnings: Vec::new(),
        };
        let available = 448 * MIB;
        let mut schedule = Schedule::new(&plan, (1280, 720), &[false, true], 2, 10.0, RATES);
        let first = schedule.next(available).unwrap();
        // The first takes all but the next one's need and the slack.
        assert_eq!(share(first), available - bridge - RESERVE_SLACK, "room is left for the next bridge");
        assert_eq!(first.file_size, VIDEO_FILE);
        schedule.started(first);
        // The first bridge's inputs are staged again and its temp grows: the second still fits.
        let available = available - RESERVE_SLACK / 2;
        let second = schedule.next(available).unwrap();
        assert_eq!(second.step, 1);
        assert!(share(second) >= bridge, "{second:?}");
        schedule.started(second);
        assert_eq!(schedule.next(available), None, "two running");
        // A smaller budget holds one bridge at a time, with all of it.
        let mut schedule = Schedule::new(&plan, (1280, 720), &[false, true], 2, 10.0, RATES);
        let alone = schedule.next(2 * bridge - MIB).unwrap();
        assert_eq!(share(alone), 2 * bridge - MIB);
        schedule.started(alone);
        assert_eq!(schedule.next(2 * bridge - MIB), None);
        // Segments of original clips never share: each takes all but room for a light step.
        let mut schedule = Schedule::new(&plan, (640, 360), &[false, false], 2, 10.0, RATES);
        let segment = schedule.next(available).unwrap();
        assert_eq!(share(segment), available);
        schedule.started(segment);
        assert_eq!(schedule.next(available), None);
    }

    #[test]
    fn one_at_a_time_is_todays_order_with_all_the_memory() {
        let plan = planner_shaped(true);
        let mut schedule = Schedule::new(&plan, (1280, 720), &[], 1, 10.0, RATES);
        for expected in 0..plan.steps.len() {
            let start = schedule.next(300 * MIB).unwrap();
            assert_eq!(start.step, expected);
            if schedule.weight(expected) != Weight::List {
                assert_eq!(share(start), 300 * MIB);
            }
            schedule.started(start);
            assert_eq!(schedule.next(300 * MIB), None);
            schedule.finished(expected);
        }
        assert!(schedule.all_done());
    }

    /// A plugin's plan whose two copy steps read one segment: the schedule runs them at
    /// once, and the later-indexed one finishing first leaves the segment to the other
    /// (the work folder counts its readers, [`crate::work::Uses`]).
    #[test]
    fn two_readers_of_one_segment_run_at_once_and_the_first_to_finish_leaves_it() {
        let plan = Plan {
            temps: vec![TempFormat::Nut, TempFormat::Nut, TempFormat::Nut],
            steps: vec![
                step("-i CLIP -map 0:v -c:v copy -an -f nut", Arg::Temp(0)),
                step("-i T0 -map 0:v -c:v copy -an -f nut", Arg::Temp(1)),
                step("-i T0 -map 0:v -c:v copy -an -f nut", Arg::Temp(2)),
                step("-i T1 -i T2 -i SONG -map 0:v -map 2:a -c:v copy -c:a aac -f mp4", Arg::Output),
            ],
            warnings: Vec::new(),
        };
        let folder = tempfile::tempdir().unwrap();
        let work = folder.path().to_owned();
        let paths = crate::work::PathTable { inputs: vec![], output: work.join("out.mp4"), work };
        let segment = paths.temp(0, TempFormat::Nut);
        let mut schedule = Schedule::new(&plan, (1280, 720), &[], 2, 10.0, RATES);
        let mut uses = crate::work::Uses::of(&plan);
        let none = std::collections::BTreeSet::new();
        let ledger = crate::budget::ledger::Ledger::new(1 << 30);
        let first = schedule.next(300 * MIB).unwrap();
        assert_eq!(first.step, 0);
        schedule.started(first);
        uses.started(0, &paths);
        std::fs::write(&segment, b"segment").unwrap();
        schedule.finished(0);
        uses.release_after(0, &paths, &plan.temps, &none, &ledger);
        for expected in [1, 2] {
            let start = schedule.next(300 * MIB).unwrap();
            assert_eq!(start.step, expected);
            schedule.started(start);
            uses.started(expected, &paths);
        }
        assert!(schedule.is_running(1) && schedule.is_running(2));
        schedule.finished(2);
        uses.release_after(2, &paths, &plan.temps, &none, &ledger);
        assert!(segment.exists(), "step 2 finished first and removed the segment step 1 reads");
        schedule.finished(1);
        uses.release_after(1, &paths, &plan.temps, &none, &ledger);
        assert!(!segment.exists(), "both readers are done");
    }
}
