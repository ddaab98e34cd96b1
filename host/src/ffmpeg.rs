//! Runs a plan the policy accepted: FFmpeg as child processes (never a shell), with
//! paths from the host's own table, a time limit per step and progress parsed from
//! `-progress pipe:1`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use br_plan::{Arg, Step, TempFormat};
use br_policy::CheckedPlan;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::cancel::Cancel;

/// Flags the host puts in front of every invocation; the policy does not let a plan
/// set any of them.
const HOST_FLAGS: [&str; 8] = ["-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y", "-progress", "pipe:1"];
/// Lines of FFmpeg's stderr kept for the error message.
const STDERR_TAIL_BYTES: usize = 4096;

/// Real files behind the plan's numbers. Only the host writes this table.
pub struct PathTable {
    /// Staged inputs: index 0 the song, 1 + i clip i.
    pub inputs: Vec<PathBuf>,
    /// The job's work folder: temporaries live here.
    pub work: PathBuf,
    pub output: PathBuf,
}

impl PathTable {
    pub fn temp(&self, index: u32, format: TempFormat) -> PathBuf {
        self.work.join(format!("temp-{index:05}.{}", format.extension()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    #[error("cannot start {program}: {message}")]
    Spawn { program: String, message: String },
    #[error("step {step} ({label}) failed: FFmpeg {status}{}", tail(stderr))]
    Failed { step: usize, label: String, status: String, stderr: String },
    #[error("step {step} ({label}) did not finish within {} s", limit.as_secs())]
    Timeout { step: usize, label: String, limit: Duration },
    #[error("step {step}: cannot write the concat list: {message}")]
    ConcatList { step: usize, message: String },
    #[error("step {step} ({label}) stopped: {reason}")]
    Cancelled { step: usize, label: String, reason: String },
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
    pub seconds: f64,
}

pub struct Runner {
    pub ffmpeg: PathBuf,
    /// Fixed limit per step; by default it scales with the media the step writes.
    pub step_timeout: Option<Duration>,
}

impl Runner {
    fn limit_for(&self, media_seconds: f64) -> Duration {
        self.step_timeout.unwrap_or_else(|| Duration::from_secs_f64((60.0 + 30.0 * media_seconds).min(6.0 * 3600.0)))
    }

    /// Runs every step in order. When `cancel` fires, the running FFmpeg is killed and
    /// reaped before this returns, so nothing writes into the work folder afterwards.
    pub async fn run(&self, plan: &CheckedPlan, paths: &PathTable, cancel: &Cancel, mut progress: impl FnMut(Progress<'_>)) -> Result<Vec<StepTiming>, FfmpegError> {
        let plan = plan.plan();
        let total: f64 = plan.steps.iter().map(|s| if let Step::Ffmpeg(i) = s { i.media_seconds } else { 0.0 }).sum::<f64>().max(1e-9);
        let mut done = 0.0;
        let mut timings = Vec::new();
        for (index, step) in plan.steps.iter().enumerate() {
            let started = Instant::now();
            match step {
                Step::WriteConcatList(list) => {
                    let mut text = String::from("ffconcat version 1.0\n");
                    for part in &list.parts {
                        let path = paths.temp(part.temp, TempFormat::Nut);
                        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        text.push_str(&format!("file '{name}'\nduration {:.6}\n", part.duration));
                    }
                    std::fs::write(paths.temp(list.list, TempFormat::Ffconcat), text).map_err(|e| FfmpegError::ConcatList { step: index, message: e.to_string() })?;
                    timings.push(StepTiming { label: "concat list".into(), seconds: started.elapsed().as_secs_f64() });
                }
                Step::Ffmpeg(invocation) => {
                    let args = resolve(&invocation.args, paths, &plan.temps);
                    let weight = invocation.media_seconds;
                    let label = invocation.label.as_str();
                    self.run_one(index, label, &args, self.limit_for(weight), cancel, |seconds| {
                        progress(Progress { fraction: ((done + seconds.min(weight)) / total).min(1.0), label });
                    })
                    .await?;
                    done += weight;
                    progress(Progress { fraction: (done / total).min(1.0), label });
                    tracing::info!(step = index, label, seconds = started.elapsed().as_secs_f64(), "ffmpeg step done");
                    timings.push(StepTiming { label: label.to_owned(), seconds: started.elapsed().as_secs_f64() });
                }
            }
        }
        Ok(timings)
    }

    async fn run_one(&self, step: usize, label: &str, args: &[std::ffi::OsString], limit: Duration, cancel: &Cancel, mut on_time: impl FnMut(f64)) -> Result<(), FfmpegError> {
        let mut child = child_command(&self.ffmpeg)
            .args(HOST_FLAGS)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| FfmpegError::Spawn { program: self.ffmpeg.display().to_string(), message: e.to_string() })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let work = async {
            let progress = async {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(value) = line.strip_prefix("out_time_us=") {
                        if let Ok(micros) = value.trim().parse::<i64>() {
                            on_time(micros.max(0) as f64 / 1e6);
                        }
                    }
                }
            };
            let errors = async {
                let mut kept: VecDeque<u8> = VecDeque::new();
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    kept.extend(&buffer[..n]);
                    while kept.len() > STDERR_TAIL_BYTES {
                        kept.pop_front();
                    }
                }
                String::from_utf8_lossy(&kept.into_iter().collect::<Vec<_>>()).into_owned()
            };
            let ((), stderr_tail) = tokio::join!(progress, errors);
            (child.wait().await, stderr_tail)
        };
        let finished = tokio::select! {
            finished = tokio::time::timeout(limit, work) => finished.map_err(|_| FfmpegError::Timeout { step, label: label.to_owned(), limit }),
            reason = cancel.cancelled() => Err(FfmpegError::Cancelled { step, label: label.to_owned(), reason }),
        };
        let finished = match finished {
            Ok(finished) => finished,
            Err(stopped) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(stopped);
            }
        };
        match finished {
            (Err(e), _) => Err(FfmpegError::Failed { step, label: label.to_owned(), status: format!("could not be waited for: {e}"), stderr: String::new() }),
            (Ok(status), _) if status.success() => Ok(()),
            (Ok(status), stderr) => Err(FfmpegError::Failed { step, label: label.to_owned(), status: status.to_string(), stderr }),
        }
    }
}

/// Arguments with the plan's numbers replaced by the host's paths. The policy has
/// already checked every index. Every staged input is opened with [`INPUT_WHITELIST`]:
/// its content, not the plan, decides how FFmpeg would read it otherwise.
fn resolve(args: &[Arg], paths: &PathTable, temps: &[TempFormat]) -> Vec<std::ffi::OsString> {
    let mut resolved = Vec::with_capacity(args.len() + 8);
    for (index, arg) in args.iter().enumerate() {
        match arg {
            Arg::Literal(text) => {
                if text == "-i" && matches!(args.get(index + 1), Some(Arg::Input(_))) {
                    resolved.extend(INPUT_WHITELIST.iter().map(Into::into));
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

/// Staged inputs are files of the usual audio/video containers, nothing else. Without
/// this, a "clip" that is really an HLS playlist or a concat list would make FFmpeg
/// open other files or URLs named inside it.
pub const INPUT_WHITELIST: [&str; 4] = [
    "-protocol_whitelist",
    "file",
    "-format_whitelist",
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mp3,wav,aac,ogg,flac,avi,mpegts",
];

/// A command for an FFmpeg or ffprobe child: killed when its handle is dropped (a
/// cancelled stage), and by the kernel when this process dies without cleaning up
/// (SIGKILL, a crash), so no FFmpeg outlives the job that started it.
pub fn child_command(program: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.kill_on_drop(true);
    // SAFETY: the closure runs in the forked child before exec and only makes one
    // async-signal-safe system call.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    command
}

/// The FFmpeg binaries: `FFMPEG` / `FFPROBE` or the ones on PATH.
pub fn binaries() -> (PathBuf, PathBuf) {
    let pick = |var: &str, name: &str| std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(name));
    (pick("FFMPEG", "ffmpeg"), pick("FFPROBE", "ffprobe"))
}
