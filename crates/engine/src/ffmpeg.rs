//! Runs a plan the policy accepted: FFmpeg as child processes (never a shell), with
//! paths from the host's own table, a time limit per step and progress parsed from
//! `-progress pipe:1`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use br_plan::{Arg, Step, TempFormat};
use br_policy::CheckedPlan;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::budget::ledger::Ledger;
use crate::budget::{JobBudget, MIB};
use crate::cancel::{Cancel, Stop};
use crate::schedule::Schedule;
use crate::storage::StorageError;
use crate::work::{PathTable, Staging, StepCache, UnlinkWhenOpened, Uses};

/// Flags the host puts in front of every invocation; the policy does not let a plan
/// set any of them. Filter graphs run on one thread: FFmpeg's default is one per core
/// of the machine, and each holds frames, so memory would follow the host's size.
const HOST_FLAGS: [&str; 12] = [
    "-nostdin",
    "-hide_banner",
    "-nostats",
    "-loglevel",
    "error",
    "-y",
    "-progress",
    "pipe:1",
    "-filter_complex_threads",
    "1",
    "-filter_threads",
    "1",
];
/// Decoder threads of every input, set by the host right before each `-i` (FFmpeg's
/// default is one frame thread per core, each holding decoded frames). One: with frame
/// threads, FFmpeg 5.1 was seen to hang, not fail, when its data limit refused an
/// allocation (a 1080p segment at 400 MiB); with one, it fails at once.
const DECODER_THREADS: &str = "1";
/// A child below this much memory cannot even start FFmpeg: the step fails at once.
const MIN_CHILD_MEMORY: u64 = 32 * crate::budget::MIB;
/// Thread stacks count against the child's data limit in full (8 MiB each by default,
/// nearly all untouched); glibc sizes them from `RLIMIT_STACK`. Measured: a 720p
/// segment step peaks at about 210 MiB resident and needs a data limit of 275 MiB with
/// 2 MiB stacks, but more than 300 MiB with 8 MiB stacks.
const CHILD_STACK_BYTES: u64 = 2 * crate::budget::MIB;
/// Bytes of FFmpeg's stderr kept (its end) for the error message.
const STDERR_TAIL_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    #[error("step {step}: cannot fetch input {input} again: {error}")]
    Staging {
        step: usize,
        input: u32,
        #[source]
        error: StorageError,
    },
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("step {step} ({label}) failed: FFmpeg {status}{}{}", tail(stderr), limits_note(limits))]
    Failed { step: usize, label: String, status: String, stderr: String, limits: Option<ChildLimits> },
    #[error("step {step} ({label}) did not finish within {} s", limit.as_secs())]
    Timeout { step: usize, label: String, limit: Duration },
    #[error("step {step} ({label}) made no progress for {seconds} s")]
    Stalled { step: usize, label: String, seconds: u64 },
    #[error("the FFmpeg steps did not finish within {} s, the limit for a {video_seconds} s video", limit.as_secs())]
    JobTimeout { limit: Duration, video_seconds: f64 },
    #[error("step {step}: cannot write the concat list: {message}")]
    ConcatList { step: usize, message: String },
    #[error("none of the {waiting} remaining steps can start: the plan reads a temporary no step before it writes")]
    Stuck { waiting: usize },
    #[error("step {step} ({label}) stopped: {reason}")]
    Cancelled { step: usize, label: String, reason: Stop },
    #[error("step {step} ({label}) exceeded its memory limit of {} MiB (the job's budget less the work folder's files){}", limit / MIB, tail(stderr))]
    MemoryLimit { step: usize, label: String, limit: u64, stderr: String },
    #[error("step {step} ({label}) wrote a file larger than its share of the job's memory budget ({} MiB)", crate::budget::mib(*limit))]
    FileLimit { step: usize, label: String, limit: u64 },
    #[error("step {step} ({label}) used more than its {seconds} s of CPU time")]
    CpuLimit { step: usize, label: String, seconds: u64 },
    #[error("step {step} ({label}) cannot start: the work folder's files leave {} MiB of the job's memory budget", left / MIB)]
    NoMemoryLeft { step: usize, label: String, left: u64 },
}

/// FFmpeg does not always say that an allocation failed (a refused allocation while a
/// filter graph drains is only "Error marking filters as finished"), so a failure it
/// does not explain says which limits the step had.
fn limits_note(limits: &Option<ChildLimits>) -> String {
    match limits {
        Some(limits) => format!(" (the step ran with a memory limit of {} MiB)", limits.memory / MIB),
        None => String::new(),
    }
}

fn tail(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", stderr.trim())
    }
}

/// Where the run stands: `fraction` of all the plan's media seconds done.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub fraction: f64,
    pub label: &'a str,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepTiming {
    pub label: String,
    /// When it started, in seconds after the first step did (steps may overlap).
    pub started: f64,
    pub seconds: f64,
    /// Copied from the audio cache instead of run (its label also says so).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restored: bool,
}

#[derive(Clone)]
pub struct Runner {
    pub ffmpeg: PathBuf,
    /// Fixed limit per step; by default it scales with the media the step writes.
    pub step_timeout: Option<Duration>,
    /// Each child's memory and file-size limits come out of it.
    pub budget: JobBudget,
    /// The work folder's files, charged before they are written (the watchdog's).
    pub ledger: std::sync::Arc<Ledger>,
    /// All steps together; by default it scales with the video. A job passes what is left
    /// of its one deadline (`JOB_DEADLINE_SECS`, counted from the start of its fetch).
    pub job_deadline: Option<Duration>,
    /// A step whose output time stands still this long is stopped ([`STALL_LIMIT`]).
    pub stall_limit: Duration,
    /// Steps that may run at once ([`crate::schedule::default_parallelism`]).
    pub parallel_steps: usize,
}

/// The last `limit` bytes `reader` yields before its end or a read error: FFmpeg's
/// stderr, whose end holds the error or the summary, and whose length a damaged input can
/// make unbounded.
pub async fn stderr_tail(reader: &mut (impl tokio::io::AsyncRead + Unpin), limit: usize) -> Vec<u8> {
    let (mut kept, mut chunk) = (Vec::new(), vec![0u8; 8192]);
    while let Ok(read) = reader.read(&mut chunk).await {
        if read == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..read]);
        // Trimmed in batches: each trim moves what stays to the front.
        if kept.len() > 2 * limit {
            kept.drain(..kept.len() - limit);
        }
    }
    kept.drain(..kept.len().saturating_sub(limit));
    kept
}

/// Limits the kernel holds one child to (`setrlimit` before `exec`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChildLimits {
    /// `RLIMIT_DATA`: heap, anonymous mappings and thread stacks.
    pub memory: u64,
    /// `RLIMIT_FSIZE`: the largest file it may write (`SIGXFSZ` is ignored, so the
    /// write fails with `EFBIG` and FFmpeg reports it).
    pub file_size: u64,
    /// `RLIMIT_CPU`, a backstop behind the wall-time limit.
    pub cpu_seconds: u64,
}

impl ChildLimits {
    /// A child with `share` bytes of the budget that writes at most `writes` of them as
    /// a file: the rest is its memory. The two together never pass the share.
    pub fn of_share(share: u64, writes: u64, wall: Duration) -> ChildLimits {
        let file_size = writes.min(share);
        // Two busy threads for the whole wall-time limit, and some slack.
        ChildLimits {
            memory: share - file_size,
            file_size,
            cpu_seconds: wall.as_secs().saturating_mul(2).saturating_add(30),
        }
    }

    /// A child that only reads (a probe, a measurement), held to `memory`: it may write
    /// no file at all.
    pub fn reader(memory: u64, wall: Duration) -> ChildLimits {
        ChildLimits::of_share(memory, 0, wall)
    }
}

impl Runner {
    /// A step's time limit. The plan states how much media a step writes, but the plan
    /// may come from a hostile guest: no step writes more than the whole video, so the
    /// claim is cut to the blueprint's length before it sets the limit.
    fn limit_for(&self, media_seconds: f64, video_seconds: f64) -> Duration {
        let claim = media_seconds.min(video_seconds + 1.0).max(0.0);
        self.step_timeout.unwrap_or_else(|| Duration::from_secs_f64((60.0 + 30.0 * claim).min(6.0 * 3600.0)))
    }

    /// All steps together: two minutes plus one per second of video (the planner's steps
    /// take about 0.3 s per second of 720p video on one core), whatever the plan says.
    pub fn default_job_limit(video_seconds: f64) -> Duration {
        Duration::from_secs_f64(120.0 + 60.0 * video_seconds.clamp(0.0, 4.0 * 3600.0))
    }

    /// [`Runner::job_deadline`], or [`Runner::default_job_limit`].
    pub fn job_limit(&self, video_seconds: f64) -> Duration {
        self.job_deadline.unwrap_or_else(|| Self::default_job_limit(video_seconds))
    }

    /// Runs every step, two at a time where [`Schedule`] allows it. When `cancel` fires
    /// or a step fails, every running FFmpeg is killed and reaped before this returns,
    /// so nothing writes into the work folder afterwards. `frame` is the output's, `rates`
    /// what its bitrates let a step write ([`crate::schedule::FileRates`]);
    /// `prepared_inputs[i]` says input `i` is a prepared clip ([`Schedule::new`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        &self,
        plan: &CheckedPlan,
        paths: &PathTable,
        video_seconds: f64,
        frame: (u32, u32),
        rates: crate::schedule::FileRates,
        prepared_inputs: &[bool],
        staging: &dyn Staging,
        cache: &dyn StepCache,
        cancel: &Cancel,
        mut progress: impl FnMut(Progress<'_>),
    ) -> Result<Vec<StepTiming>, FfmpegError> {
        let limit = self.job_limit(video_seconds);
        let plan = plan.plan();
        let mut uses = Uses::of(plan);
        let total: f64 = plan
            .steps
            .iter()
            .map(|s| if let Step::Ffmpeg(i) = s { i.media_seconds } else { 0.0 })
            .sum::<f64>()
            .max(1e-9);
        let mut schedule = Schedule::new(plan, frame, prepared_inputs, self.parallel_steps, video_seconds, rates);
        let ledger = self.ledger.as_ref();
        // Media seconds written by the running steps, as their FFmpeg last reported.
        let partial = std::cell::RefCell::new(vec![0.0f64; plan.steps.len()]);
        // Stops the other running steps when one fails.
        let siblings = Cancel::never();
        let mut done = 0.0;
        let mut label = "";
        let mut timings: Vec<Option<StepTiming>> = vec![None; plan.steps.len()];
        let mut running = futures::stream::FuturesUnordered::new();
        // Outputs being kept in `cache` while the next steps run, each from a link of its
        // own ([`keep_aside`]), so the join may remove the temp meanwhile.
        let mut keeping = futures::stream::FuturesUnordered::new();
        let mut kept_aside: Vec<PathBuf> = Vec::new();
        let mut failure: Option<FfmpegError> = None;
        let first_started = Instant::now();
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let report = |done: f64, label: &str, progress: &mut dyn FnMut(Progress<'_>)| {
            let fraction = (done + partial.borrow().iter().sum::<f64>()) / total;
            progress(Progress { fraction: fraction.min(1.0), label });
        };
        loop {
            // Start what may start.
            while failure.is_none() {
                // A step whose inputs were removed holds room to fetch them again.
                let missing = |step: usize| -> u64 {
                    uses.inputs_of(step)
                        .filter(|&n| !paths.inputs[n as usize].exists())
                        .map(|n| staging.room_for(n))
                        .sum()
                };
                let Some(start) = schedule.next_staging(ledger.free(), &missing) else { break };
                let index = start.step;
                let started = Instant::now();
                match &plan.steps[index] {
                    Step::WriteConcatList(list) => {
                        schedule.started(start);
                        if let Err(e) = write_concat_list(index, list, paths) {
                            failure = Some(e);
                            siblings.stop(Stop::Signal("another step failed"));
                            break;
                        }
                        ledger.charge_as_found(&paths.temp(list.list, TempFormat::Ffconcat));
                        schedule.finished(index);
                        let seconds = started.elapsed().as_secs_f64();
                        let started = started.duration_since(first_started).as_secs_f64();
                        timings[index] =
                            Some(StepTiming { label: "concat list".into(), started, seconds, restored: false });
                    }
                    Step::Ffmpeg(invocation) => {
                        schedule.started(start);
                        label = invocation.label.as_str();
                        report(done, label, &mut progress);
                        // Inputs fetched again come out of the room the step holds for them.
                        let staged = stage_missing_inputs(
                            uses.inputs_of(index),
                            index,
                            label,
                            paths,
                            staging,
                            start.staging,
                            ledger,
                            cancel,
                        )
                        .await;
                        let staged = match staged {
                            Ok(bytes) => bytes,
                            Err(e) => {
                                schedule.finished(index);
                                failure = Some(e);
                                siblings.stop(Stop::Signal("another step failed"));
                                break;
                            }
                        };
                        let args = resolve(&invocation.args, paths, &plan.temps, video_seconds + OUTPUT_SLACK_SECONDS);
                        let weight = invocation.media_seconds;
                        let step = StepRun {
                            index,
                            label: invocation.label.as_str(),
                            limit: self.limit_for(weight, video_seconds),
                            consumed: uses.started(index, paths),
                            // Should an input have grown since it was first staged, the
                            // step's memory gives way: its share holds all.
                            memory: start.memory.saturating_sub(staged.saturating_sub(start.staging)),
                            file_size: start.file_size,
                        };
                        tracing::debug!(step = index, label, memory_limit = start.memory, "starting step");
                        let partial = &partial;
                        let siblings = &siblings;
                        let cached = cache.covers(index).then(|| written_by(invocation, paths, &plan.temps)).flatten();
                        let room = start.file_size;
                        running.push(async move {
                            let restored = match &cached {
                                Some(output) => tokio::select! {
                                    restored = cache.restore(index, output, room) => restored,
                                    reason = stop_of(cancel, siblings) => {
                                        let error = FfmpegError::Cancelled { step: index, label: step.label.to_owned(), reason };
                                        return (index, started, Err(error), false);
                                    }
                                },
                                None => false,
                            };
                            if restored {
                                return (index, started, Ok(()), true);
                            }
                            let result = self
                                .run_one(step, &args, cancel, siblings, |seconds| {
                                    partial.borrow_mut()[index] = seconds.min(weight).max(0.0)
                                })
                                .await;
                            (index, started, result, false)
                        });
                    }
                }
            }
            if schedule.all_done() || (running.is_empty() && failure.is_some()) {
                break;
            }
            if running.is_empty() {
                // Nothing runs and nothing may start: unreachable for a checked plan
                // (every temp is written by an earlier step), refused rather than spun on.
                failure = Some(FfmpegError::Stuck { waiting: schedule.waiting() });
                break;
            }
            let (index, started, result, restored) = tokio::select! {
                finished = futures::StreamExt::next(&mut running) => match finished {
                    Some(finished) => finished,
                    None => continue,
                },
                Some(()) = futures::StreamExt::next(&mut keeping), if !keeping.is_empty() => continue,
                () = &mut deadline, if failure.is_none() => {
                    failure = Some(FfmpegError::JobTimeout { limit, video_seconds });
                    siblings.stop(Stop::Signal("the job's time limit"));
                    continue;
                }
            };
            schedule.finished(index);
            partial.borrow_mut()[index] = 0.0;
            match result {
                Ok(()) => {
                    let Step::Ffmpeg(invocation) = &plan.steps[index] else { continue };
                    done += invocation.media_seconds;
                    report(done, label, &mut progress);
                    // What it wrote is charged at its real size; its share goes back. It is
                    // set aside for the cache before the temps are released: a temp no later
                    // step reads (a song step run alone, to fill the cache) goes at once.
                    if let Some(written) = written_by(invocation, paths, &plan.temps) {
                        ledger.charge_as_found(&written);
                        if !restored && cache.covers(index) {
                            if let Some(keep) = keep_aside(&written, ledger) {
                                kept_aside.push(keep.clone());
                                keeping.push(async move {
                                    cache.keep(index, &keep).await;
                                    ledger.remove(&keep);
                                });
                            }
                        }
                    }
                    let busy: BTreeSet<u32> = (0..plan.steps.len())
                        .filter(|&s| schedule.is_running(s))
                        .flat_map(|s| uses.inputs_of(s))
                        .collect();
                    uses.release_after(index, paths, &plan.temps, &busy, ledger);
                    let seconds = started.elapsed().as_secs_f64();
                    tracing::info!(step = index, label = invocation.label.as_str(), seconds, "ffmpeg step done");
                    let started = started.duration_since(first_started).as_secs_f64();
                    let label =
                        if restored { format!("{} (audio cache)", invocation.label) } else { invocation.label.clone() };
                    timings[index] = Some(StepTiming { label, started, seconds, restored });
                }
                Err(error) => {
                    // The first failure is the job's; the others are stopped because of it.
                    if failure.is_none() {
                        failure = Some(error);
                    }
                    siblings.stop(Stop::Signal("another step failed"));
                }
            }
            if failure.is_some() && running.is_empty() {
                break;
            }
        }
        // What is being kept for later jobs is waited for on success (the job's last step
        // rarely ends before it) within the job's time, dropped on failure or cancellation.
        while failure.is_none() && !keeping.is_empty() {
            tokio::select! {
                _ = futures::StreamExt::next(&mut keeping) => {}
                _ = cancel.cancelled() => break,
                () = &mut deadline => break,
            }
        }
        drop(keeping);
        for keep in kept_aside {
            ledger.remove(&keep);
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(timings.into_iter().flatten().collect()),
        }
    }

    /// Runs one FFmpeg child until it ends, fails a limit, or `cancel` (the job) or
    /// `siblings` (another step failed) fires.
    async fn run_one(
        &self,
        run: StepRun<'_>,
        args: &[std::ffi::OsString],
        cancel: &Cancel,
        siblings: &Cancel,
        mut on_time: impl FnMut(f64),
    ) -> Result<(), FfmpegError> {
        let StepRun { index: step, label, limit, consumed, memory, file_size } = run;
        let limits = ChildLimits::of_share(memory + file_size, file_size, limit);
        if limits.memory < MIN_CHILD_MEMORY {
            return Err(FfmpegError::NoMemoryLeft { step, label: label.to_owned(), left: limits.memory });
        }
        tracing::debug!(step, label, memory_limit = limits.memory, file_size_limit = limits.file_size, args = ?args, "starting ffmpeg");
        let mut child = child_command(&self.ffmpeg, limits)
            .args(HOST_FLAGS)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| FfmpegError::Spawn { program: self.ffmpeg.display().to_string(), source })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let mut unlinker = child.id().map(|pid| UnlinkWhenOpened::new(pid, consumed));
        let unlink_as_read = async {
            let Some(unlinker) = unlinker.as_mut() else { return };
            while !unlinker.is_finished() {
                unlinker.poll();
                tokio::time::sleep(UNLINK_POLL).await;
            }
        };
        // When FFmpeg's output time last moved forward, and to where.
        let advanced = std::cell::Cell::new((Instant::now(), i64::MIN));
        // The child's data segment, as last seen.
        let data_seen = std::cell::Cell::new(0u64);
        let pid = child.id();
        let work = async {
            let progress = async {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(value) = line.strip_prefix("out_time_us=") {
                        if let Ok(micros) = value.trim().parse::<i64>() {
                            if micros > advanced.get().1 {
                                advanced.set((Instant::now(), micros));
                            }
                            on_time(micros.max(0) as f64 / 1e6);
                        }
                    }
                }
            };
            let errors =
                async { String::from_utf8_lossy(&stderr_tail(&mut stderr, STDERR_TAIL_BYTES).await).into_owned() };
            let ((), stderr_tail) = tokio::join!(progress, errors);
            (child.wait().await, stderr_tail)
        };
        // The unlinker only ever waits: it ends with the step.
        let work = async {
            tokio::pin!(unlink_as_read);
            tokio::pin!(work);
            let mut unlinking = true;
            loop {
                tokio::select! {
                    finished = &mut work => return finished,
                    () = &mut unlink_as_read, if unlinking => unlinking = false,
                }
            }
        };
        // A step whose output time stands still (a filter expression that never ends,
        // an input that never comes) is stopped long before its time limit.
        let stalled = async {
            loop {
                tokio::time::sleep(STALL_CHECK).await;
                if let Some(bytes) = pid.and_then(data_bytes) {
                    data_seen.set(bytes);
                }
                if advanced.get().0.elapsed() >= self.stall_limit {
                    return;
                }
            }
        };
        let finished = tokio::select! {
            finished = tokio::time::timeout(limit, work) => finished.map_err(|_| FfmpegError::Timeout { step, label: label.to_owned(), limit }),
            () = stalled => Err(FfmpegError::Stalled { step, label: label.to_owned(), seconds: self.stall_limit.as_secs() }),
            reason = stop_of(cancel, siblings) => Err(FfmpegError::Cancelled { step, label: label.to_owned(), reason }),
        };
        let finished = match finished {
            Ok(finished) => finished,
            Err(stopped) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(stopped);
            }
        };
        let label = label.to_owned();
        match finished {
            (Err(e), _) => Err(FfmpegError::Failed {
                step,
                label,
                status: format!("could not be waited for: {e}"),
                stderr: String::new(),
                limits: None,
            }),
            (Ok(status), _) if status.success() => Ok(()),
            (Ok(status), stderr) => {
                Err(match LimitHit::of(&status, &stderr, near_data_limit(data_seen.get(), limits.memory)) {
                    Some(LimitHit::Memory) => FfmpegError::MemoryLimit { step, label, limit: limits.memory, stderr },
                    Some(LimitHit::FileSize) => FfmpegError::FileLimit { step, label, limit: limits.file_size },
                    Some(LimitHit::Cpu) => FfmpegError::CpuLimit { step, label, seconds: limits.cpu_seconds },
                    None => {
                        FfmpegError::Failed { step, label, status: status.to_string(), stderr, limits: Some(limits) }
                    }
                })
            }
        }
    }
}

/// What the concat demuxer is told of each part it opens: probe nothing beyond the NUT
/// header. By default it decodes each part's first frame to learn what the header already
/// says (measured on a 44-part join, one core: 0.66 s of CPU, 0.16 s with these); the
/// joined file was byte for byte the same (parts with and without B-frames). `option`
/// lines are refused in the demuxer's safe mode: the host adds `-safe 0` before its own
/// lists only ([`resolve`]).
const CONCAT_PART_OPTIONS: [&str; 3] = ["probesize 32", "analyzeduration 0", "fpsprobesize 0"];

/// Writes a concat list for FFmpeg's concat demuxer, naming the parts by file name
/// (the list lives beside them).
fn write_concat_list(step: usize, list: &br_plan::ConcatList, paths: &PathTable) -> Result<(), FfmpegError> {
    let mut text = String::from("ffconcat version 1.0\n");
    for part in &list.parts {
        let path = paths.temp(part.temp, TempFormat::Nut);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        text.push_str(&format!("file '{name}'\n"));
        for option in CONCAT_PART_OPTIONS {
            text.push_str(&format!("option {option}\n"));
        }
        // `duration` alone does not cut a file (FFmpeg plays it whole);
        // `outpoint` does, so a list plays no more than it declares.
        text.push_str(&format!("duration {d:.6}\noutpoint {d:.6}\n", d = part.duration));
    }
    std::fs::write(paths.temp(list.list, TempFormat::Ffconcat), text)
        .map_err(|e| FfmpegError::ConcatList { step, message: e.to_string() })
}

/// Fetches again the inputs step `step` reads that an earlier step's clean-up removed,
/// inside the `room` its share holds for them; returns the bytes they take.
#[allow(clippy::too_many_arguments)]
async fn stage_missing_inputs(
    inputs: impl Iterator<Item = u32>,
    step: usize,
    label: &str,
    paths: &PathTable,
    staging: &dyn Staging,
    room: u64,
    ledger: &Ledger,
    cancel: &Cancel,
) -> Result<u64, FfmpegError> {
    let mut staged_bytes = 0;
    for input in inputs {
        let path = &paths.inputs[input as usize];
        if path.exists() {
            continue;
        }
        let left = room.saturating_sub(staged_bytes);
        let staged = tokio::select! {
            staged = staging.stage(input, path, left) => staged,
            reason = cancel.cancelled() => return Err(FfmpegError::Cancelled { step, label: label.to_owned(), reason }),
        };
        staged.map_err(|error| FfmpegError::Staging { step, input, error })?;
        ledger.charge_as_found(path);
        staged_bytes += ledger.charged(path).unwrap_or(0);
    }
    Ok(staged_bytes)
}

/// Why the job (`cancel`) or its other steps (`siblings`) stopped, whichever first.
async fn stop_of(cancel: &Cancel, siblings: &Cancel) -> Stop {
    tokio::select! {
        reason = cancel.cancelled() => reason,
        reason = siblings.cancelled() => reason,
    }
}

/// A second name for `written` (`temp-00000.nut.keep`), charged to the ledger as a file
/// of its own, for a cache to read while later steps run: the temp itself goes when its
/// last reader is done. None (and logged) when the link cannot be made.
fn keep_aside(written: &Path, ledger: &Ledger) -> Option<PathBuf> {
    let mut name = written.as_os_str().to_owned();
    name.push(".keep");
    let keep = PathBuf::from(name);
    match std::fs::hard_link(written, &keep) {
        Ok(()) => {
            ledger.charge_as_found(&keep);
            Some(keep)
        }
        Err(error) => {
            tracing::warn!(file = %written.display(), "cannot set the output aside for the cache: {error}");
            None
        }
    }
}

/// The file an FFmpeg step writes: its last argument.
fn written_by(invocation: &br_plan::Invocation, paths: &PathTable, temps: &[TempFormat]) -> Option<PathBuf> {
    match invocation.args.last()? {
        Arg::Temp(n) => Some(paths.temp(*n, *temps.get(*n as usize)?)),
        Arg::Output => Some(paths.output.clone()),
        Arg::Input(_) | Arg::Literal(_) => None,
    }
}

/// One FFmpeg step as the runner starts it.
struct StepRun<'a> {
    index: usize,
    label: &'a str,
    limit: Duration,
    /// Concat parts this step reads for the last time: unlinked once it has them open.
    consumed: Vec<PathBuf>,
    /// Its `RLIMIT_DATA` and `RLIMIT_FSIZE`: its share of the budget ([`Schedule`]).
    memory: u64,
    file_size: u64,
}

/// A step whose output time does not move for this long is stopped: FFmpeg reports its
/// progress twice a second while it writes anything, and no step of the planner waits
/// longer than a few seconds for its first frame. The policy leaves no filter that can
/// loop for ever; this is the backstop for what no rule foresaw (an FFmpeg that hangs,
/// an input that never comes).
pub const STALL_LIMIT: Duration = Duration::from_secs(60);
/// Also how often the child's data segment is looked at.
const STALL_CHECK: Duration = Duration::from_millis(100);

/// How often the join's open files are looked at.
const UNLINK_POLL: Duration = Duration::from_millis(100);

/// Which of a child's limits made it fail, told from how it ended.
#[derive(Debug, PartialEq)]
enum LimitHit {
    Memory,
    FileSize,
    Cpu,
}

impl LimitHit {
    /// `data_near_limit`: the child's data segment was last seen close to its
    /// `RLIMIT_DATA`. A refused allocation is not always reported as one (a decoder
    /// whose buffer allocation fails says "Invalid data found"), so a failure there is
    /// counted as the memory limit whatever the message.
    fn of(status: &std::process::ExitStatus, stderr: &str, data_near_limit: bool) -> Option<LimitHit> {
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(libc::SIGXCPU) {
            return Some(LimitHit::Cpu);
        }
        let stderr = stderr.to_ascii_lowercase();
        if stderr.contains("file too large") {
            return Some(LimitHit::FileSize);
        }
        // What FFmpeg, x264 and glibc print when an allocation is refused.
        const ALLOCATION_FAILED: [&str; 6] = [
            "cannot allocate memory",
            "out of memory",
            "malloc of size",
            "failed to allocate",
            "could not allocate",
            "memory allocation",
        ];
        (data_near_limit || ALLOCATION_FAILED.iter().any(|words| stderr.contains(words))).then_some(LimitHit::Memory)
    }
}

/// `VmData` of process `pid` in bytes: what `RLIMIT_DATA` is compared with.
fn data_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmData:"))?;
    let kib: u64 = line.trim_start_matches("VmData:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Within this share of its `RLIMIT_DATA`, a failing child is taken to have hit it.
const NEAR_DATA_LIMIT: f64 = 0.85;

fn near_data_limit(seen: u64, limit: u64) -> bool {
    seen as f64 >= NEAR_DATA_LIMIT * limit as f64
}

/// No step writes more media than the whole video and this: a segment decodes a little
/// before its first frame (the policy's slack for the plan's own times is the same).
const OUTPUT_SLACK_SECONDS: f64 = 10.0;

/// The command line step `invocation` runs with, as the host would run it, its files
/// named by their place in the plan (`input-0`, `temp-00003.nut`, `output`): with its
/// inputs' contents and the FFmpeg build, what determines its output (the audio cache's key).
pub(crate) fn command_line(invocation: &br_plan::Invocation, temps: &[TempFormat], video_seconds: f64) -> Vec<String> {
    let inputs = invocation.args.iter().filter_map(|arg| if let Arg::Input(n) = arg { Some(*n) } else { None }).max();
    let named = PathTable {
        inputs: (0..inputs.map_or(0, |n| n + 1)).map(|n| PathBuf::from(format!("input-{n}"))).collect(),
        work: PathBuf::new(),
        output: PathBuf::from("output"),
    };
    let args = resolve(&invocation.args, &named, temps, video_seconds + OUTPUT_SLACK_SECONDS);
    HOST_FLAGS
        .iter()
        .map(|flag| (*flag).to_owned())
        .chain(args.iter().map(|arg| arg.to_string_lossy().into_owned()))
        .collect()
}

/// Arguments with the plan's numbers replaced by the host's paths. The policy has
/// already checked every index. Every staged input is opened with
/// [`crate::formats::input_whitelist`]: its content, not the plan, decides how FFmpeg
/// would read it otherwise. When the plan
/// does not bound its output's length itself (`-t`/`-to` among the output's options),
/// the host adds `-t output_bound_seconds` before the output: a filter that pads or
/// loops for ever then still ends (the policy already bounds the plan's own `-t`).
fn resolve(
    args: &[Arg],
    paths: &PathTable,
    temps: &[TempFormat],
    output_bound_seconds: f64,
) -> Vec<std::ffi::OsString> {
    let mut resolved = Vec::with_capacity(args.len() + 10);
    let after_last_input = args.iter().rposition(|arg| *arg == Arg::lit("-i")).map_or(0, |at| at + 2);
    let output_options = args.get(after_last_input..).unwrap_or_default();
    let output_bounded = output_options.iter().any(|arg| *arg == Arg::lit("-t") || *arg == Arg::lit("-to"));
    for (index, arg) in args.iter().enumerate() {
        if !output_bounded && index + 1 == args.len() && matches!(arg, Arg::Output | Arg::Temp(_)) {
            resolved.extend(["-t".into(), format!("{output_bound_seconds:.6}").into()]);
        }
        match arg {
            Arg::Literal(text) => {
                if text == "-i" {
                    // Last before `-i`, so they win over anything the plan says.
                    resolved.extend(["-threads", DECODER_THREADS].iter().map(Into::into));
                    match args.get(index + 1) {
                        Some(Arg::Input(_)) => {
                            resolved.extend(crate::formats::input_whitelist().iter().map(Into::into))
                        }
                        // A list the host wrote itself (`write_concat_list`): its `option` lines
                        // need the demuxer's unsafe mode; it names only the host's own temps.
                        Some(Arg::Temp(n)) if temps.get(*n as usize) == Some(&TempFormat::Ffconcat) => {
                            resolved.extend(["-safe", "0"].iter().map(Into::into))
                        }
                        _ => {}
                    }
                }
                resolved.push(text.into());
            }
            Arg::Input(n) => resolved.push(paths.inputs[*n as usize].clone().into_os_string()),
            Arg::Temp(n) => resolved.push(paths.temp(*n, temps[*n as usize]).into_os_string()),
            Arg::Output => resolved.push(paths.output.clone().into_os_string()),
        }
    }
    resolved
}

/// A command for an FFmpeg or ffprobe child: held to `limits`, killed when its handle
/// is dropped (a cancelled stage), and by the kernel when this process dies without
/// cleaning up (SIGKILL, a crash), so no FFmpeg outlives the job that started it.
pub fn child_command(program: &Path, limits: ChildLimits) -> tokio::process::Command {
    use rustix::process::{set_parent_process_death_signal, setrlimit, Resource, Rlimit};
    let mut command = tokio::process::Command::new(program);
    command.kill_on_drop(true);
    let limit =
        |resource, soft: u64, hard: u64| setrlimit(resource, Rlimit { current: Some(soft), maximum: Some(hard) });
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (prctl, setrlimit, signal).
    unsafe {
        command.pre_exec(move || {
            set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            limit(Resource::Stack, CHILD_STACK_BYTES, CHILD_STACK_BYTES)?;
            limit(Resource::Data, limits.memory, limits.memory)?;
            limit(Resource::Fsize, limits.file_size, limits.file_size)?;
            limit(Resource::Cpu, limits.cpu_seconds, limits.cpu_seconds.saturating_add(5))?;
            // rustix has no safe call to set a signal's disposition (it leaves signal
            // handling to the runtime), so this one stays with libc.
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_cannot_buy_itself_time() {
        let budget = JobBudget::new(512 * MIB, 64 * MIB).unwrap();
        let ledger = std::sync::Arc::new(Ledger::of(&budget));
        let runner = Runner {
            ffmpeg: PathBuf::from("ffmpeg"),
            step_timeout: None,
            budget,
            ledger,
            job_deadline: None,
            stall_limit: STALL_LIMIT,
            parallel_steps: 1,
        };
        // An honest 8 s segment of a 176 s video.
        assert_eq!(runner.limit_for(8.0, 176.0), Duration::from_secs(300));
        // A step claiming four hours of media in a 2 s video gets the 2 s video's limit.
        assert_eq!(runner.limit_for(4.0 * 3600.0, 2.0), Duration::from_secs(150));
        // NaN (which the policy refuses first) buys no more either.
        assert_eq!(runner.limit_for(f64::NAN, 2.0), Duration::from_secs(150));
        assert_eq!(runner.job_limit(176.0), Duration::from_secs(120 + 60 * 176));
        let fixed = Runner {
            step_timeout: Some(Duration::from_secs(20)),
            job_deadline: Some(Duration::from_secs(90)),
            ..runner
        };
        assert_eq!(fixed.limit_for(8.0, 176.0), Duration::from_secs(20));
        assert_eq!(fixed.job_limit(176.0), Duration::from_secs(90));
    }

    #[tokio::test]
    async fn only_the_end_of_a_long_stderr_is_kept() {
        let log: Vec<u8> = (0..100_000u32).flat_map(|n| format!("line {n}\n").into_bytes()).collect();
        let tail = stderr_tail(&mut log.as_slice(), 4096).await;
        assert_eq!(tail, log[log.len() - 4096..]);
        assert_eq!(stderr_tail(&mut &b"short"[..], 4096).await, b"short");
    }

    /// The backstop behind the policy: real FFmpeg waiting for ever on an input (a FIFO
    /// no one writes) is stopped once its output time has stood still for the limit.
    #[tokio::test]
    async fn a_step_that_makes_no_progress_is_stopped() {
        let work = tempfile::tempdir().unwrap();
        let fifo = work.path().join("never.nut");
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path it is given.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let budget = JobBudget::new(512 * MIB, 64 * MIB).unwrap();
        // The FFmpeg the suite runs (the image's minimal build in its second pass).
        let ffmpeg = std::env::var_os("FFMPEG").map_or_else(|| PathBuf::from("ffmpeg"), PathBuf::from);
        let ledger = std::sync::Arc::new(Ledger::of(&budget));
        let runner = Runner {
            ffmpeg,
            step_timeout: None,
            budget,
            ledger,
            job_deadline: None,
            stall_limit: Duration::from_secs(2),
            parallel_steps: 1,
        };
        let step = StepRun {
            index: 0,
            label: "stall",
            limit: Duration::from_secs(600),
            consumed: Vec::new(),
            memory: 256 * MIB,
            file_size: MIB,
        };
        let args: Vec<std::ffi::OsString> =
            vec!["-i".into(), fifo.into_os_string(), "-f".into(), "null".into(), "-".into()];
        let started = Instant::now();
        let result = runner.run_one(step, &args, &Cancel::never(), &Cancel::never(), |_| {}).await;
        assert!(matches!(result, Err(FfmpegError::Stalled { seconds: 2, .. })), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[test]
    fn a_failure_near_the_data_limit_is_the_memory_limit_whatever_ffmpeg_says() {
        use std::os::unix::process::ExitStatusExt;
        let exit_1 = std::process::ExitStatus::from_raw(1 << 8);
        let message = "Error while decoding stream #0:0: Invalid data found when processing input";
        assert_eq!(LimitHit::of(&exit_1, message, true), Some(LimitHit::Memory));
        assert_eq!(LimitHit::of(&exit_1, message, false), None);
        assert_eq!(LimitHit::of(&exit_1, "x264 [error]: malloc of size 1234 failed", false), Some(LimitHit::Memory));
        assert!(near_data_limit(90 * MIB, 100 * MIB) && !near_data_limit(50 * MIB, 100 * MIB));
    }

    fn shown(args: &[std::ffi::OsString]) -> String {
        args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn an_output_without_its_own_length_gets_the_hosts() {
        let paths = PathTable {
            inputs: vec![PathBuf::from("/w/song"), PathBuf::from("/w/clip")],
            work: PathBuf::from("/w"),
            output: PathBuf::from("/w/out.mp4"),
        };
        let temps = [TempFormat::Nut];
        // An input's -t bounds what is read, not what is written.
        let unbounded = [
            Arg::lit("-t"),
            Arg::lit("5"),
            Arg::lit("-i"),
            Arg::Input(1),
            Arg::lit("-vf"),
            Arg::lit("tpad=stop=-1"),
            Arg::Temp(0),
        ];
        let resolved = shown(&resolve(&unbounded, &paths, &temps, 18.5));
        assert!(resolved.ends_with("-vf tpad=stop=-1 -t 18.500000 /w/temp-00000.nut"), "{resolved}");
        let bounded = [Arg::lit("-i"), Arg::Input(1), Arg::lit("-t"), Arg::lit("3"), Arg::Output];
        let resolved = shown(&resolve(&bounded, &paths, &temps, 18.5));
        assert!(resolved.ends_with("-t 3 /w/out.mp4") && !resolved.contains("18.5"), "{resolved}");
    }

    /// The concat demuxer's unsafe mode (for the list's `option` lines) is for the host's
    /// own lists only: never for a staged input or a NUT temp, whatever the plan says.
    #[test]
    fn only_the_hosts_own_concat_lists_are_opened_with_options() {
        let paths =
            PathTable { inputs: vec![PathBuf::from("/w/song")], work: PathBuf::from("/w"), output: "/w/o".into() };
        let temps = [TempFormat::Nut, TempFormat::Ffconcat];
        let join = [Arg::lit("-f"), Arg::lit("concat"), Arg::lit("-i"), Arg::Temp(1), Arg::Output];
        let resolved = shown(&resolve(&join, &paths, &temps, 10.0));
        assert!(resolved.contains("-safe 0 -i /w/temp-00001.ffconcat"), "{resolved}");
        for input in [Arg::Input(0), Arg::Temp(0)] {
            let other = [Arg::lit("-f"), Arg::lit("concat"), Arg::lit("-i"), input, Arg::Output];
            let resolved = shown(&resolve(&other, &paths, &temps, 10.0));
            assert!(!resolved.contains("-safe"), "{resolved}");
        }
    }

    #[test]
    fn each_part_of_a_concat_list_is_opened_without_probing_and_cut_at_its_length() {
        let work = tempfile::tempdir().unwrap();
        let paths = PathTable { inputs: Vec::new(), work: work.path().to_owned(), output: work.path().join("o") };
        let parts = [(0, 0.5), (2, 1.0)].map(|(temp, duration)| br_plan::ConcatPart { temp, duration });
        let list = br_plan::ConcatList { list: 3, parts: parts.to_vec() };
        write_concat_list(0, &list, &paths).unwrap();
        let text = std::fs::read_to_string(paths.temp(3, TempFormat::Ffconcat)).unwrap();
        let options = "option probesize 32\noption analyzeduration 0\noption fpsprobesize 0\n";
        let expected = format!(
            "ffconcat version 1.0\nfile 'temp-00000.nut'\n{options}duration 0.500000\noutpoint 0.500000\n\
             file 'temp-00002.nut'\n{options}duration 1.000000\noutpoint 1.000000\n"
        );
        assert_eq!(text, expected);
    }
}
