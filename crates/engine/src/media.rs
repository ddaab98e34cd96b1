//! What the job knows about its staged inputs: probed with `ffprobe` by the host (the
//! guest cannot read media), reduced to the contract's `media-facts`.

use std::path::Path;
use std::time::Duration;

use br_plan::{AudioFacts, Loudness, MediaFacts, VideoFacts};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::ffmpeg::ChildLimits;

/// ffprobe's JSON for one file is a few KiB; more means something is wrong.
const MAX_PROBE_OUTPUT: u64 = 1024 * 1024;
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// What one ffprobe of a staged input is held to (and, in a job, reserves in the ledger
/// while it runs): it opens the container and decodes a few frames.
pub const PROBE_MEMORY: u64 = 64 << 20;

/// `message` says what failed (with its cause's text, for the operator); the cause itself,
/// when there is one (an I/O error, unreadable JSON), stays reachable as the source.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MediaError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl MediaError {
    pub fn new(message: String) -> MediaError {
        MediaError { message, source: None }
    }

    /// The same error with `cause` kept as its source.
    fn caused_by(self, cause: impl std::error::Error + Send + Sync + 'static) -> MediaError {
        MediaError { source: Some(Box::new(cause)), ..self }
    }
}

/// How many frames the first video stream of `file` has (its packets, counted by
/// reading the container: no decoding).
pub async fn count_video_frames(ffprobe: &Path, file: &Path, limits: ChildLimits) -> Result<u64, MediaError> {
    let fail = |message: String| MediaError::new(format!("{}: {message}", file.display()));
    let output = crate::ffmpeg::child_command(ffprobe, limits)
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PROBE_TIMEOUT, output)
        .await
        .map_err(|_| fail(format!("ffprobe did not finish within {} s", PROBE_TIMEOUT.as_secs())))?
        .map_err(|e| fail(format!("cannot run ffprobe: {e}")).caused_by(e))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim().trim_end_matches(',').parse() {
        Ok(frames) if output.status.success() => Ok(frames),
        _ => Err(fail(format!("cannot count its frames: {}", String::from_utf8_lossy(&output.stderr).trim()))),
    }
}

pub async fn probe(ffprobe: &Path, file: &Path, key: &str, limits: ChildLimits) -> Result<MediaFacts, MediaError> {
    probe_container(ffprobe, file, key, limits).await.map(|probed| probed.facts)
}

/// A staged file's facts and the demuxer ffprobe opened it with.
pub struct Probed {
    pub facts: MediaFacts,
    /// ffprobe's `format_name`, e.g. `mpegts` or `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: String,
    /// When the video's first frame is shown, in seconds of the file's time (its
    /// stream's `start_time`: an MP4 edit list or a Matroska offset can put it late); 0
    /// when ffprobe gives none.
    pub video_start: f64,
    /// The video's sample aspect ratio (ffprobe's `sample_aspect_ratio`, `4:3`: each
    /// pixel shown 4/3 as wide as it is high); None for square or unknown (`0:1`, `N/A`).
    pub sample_aspect: Option<(u64, u64)>,
    /// How long after the file's start (its earliest stream's) the video's first frame
    /// is, in whole microseconds rounded down (from the stream's `start_pts` and time
    /// base, exact); 0 without video. See [`LATE_VIDEO_MICROS`].
    pub video_delay_micros: u64,
}

/// A clip whose video starts more than this after its file does (audio from 0, video
/// from 0.52 s: an MP4 edit list, a Matroska offset) is copied at staging so that its
/// video starts with the file ([`remux_for_exact_seeks`] with a shift). A move's
/// `trim_start` counts from the clip's first video frame, but FFmpeg's `-ss` counts from
/// the file's start: without the copy, a move with `trim_start` 0.6 would show frame 2,
/// not 18 (the first move, read from 0, shows frame 0 either way). A smaller delay moves
/// no trim on the clip's frame grid, and any other only when it lies within the delay
/// after a frame's time.
pub const LATE_VIDEO_MICROS: u64 = 1_000;

impl Probed {
    /// Whether FFmpeg's input seek in this file lands on the frame ([`crate::formats::SEEKS_EXACTLY`]).
    pub fn seeks_exactly(&self) -> bool {
        crate::formats::SEEKS_EXACTLY.contains(&self.container.as_str())
    }

    /// Why its video's pixels cannot be shown (see [`crate::formats::unshowable_pixels`]), if they cannot.
    pub fn unshowable_pixels(&self) -> Option<String> {
        self.facts.video.as_ref().and(self.sample_aspect).and_then(crate::formats::unshowable_pixels)
    }

    /// How far to shift the file back so that its video starts with it: the video's delay
    /// when it is late ([`LATE_VIDEO_MICROS`]), else 0.
    pub fn late_video_micros(&self) -> u64 {
        if self.video_delay_micros > LATE_VIDEO_MICROS {
            self.video_delay_micros
        } else {
            0
        }
    }
}

/// Enough for FFmpeg to copy packets into MP4 (measured: under 48 MiB with Debian's
/// FFmpeg and its libraries, under 16 MiB with the image's).
pub const REMUX_MEMORY: u64 = 64 << 20;

/// Rewrites `file` in place as an MP4 of the same packets (its first video and first
/// audio stream, nothing decoded or encoded), so that seeks in it land on the frame:
/// MP4's index lists every keyframe. See [`crate::formats::SEEKS_EXACTLY`].
///
/// With `shift_micros` (a late video's delay, [`Probed::late_video_micros`]) every
/// packet's time moves back by it, so the video starts with the file; the audio before
/// the video's first frame falls before 0, where MP4's edit list hides it (the audio
/// keeps its place against the video, to the sample). The delay is rounded down and
/// FFmpeg rounds the shift to the nearest tick of each stream, so the video is never
/// moved before 0 (an input seek would then drop the frame it starts on): it starts at
/// 0 or within a microsecond after it.
pub async fn remux_for_exact_seeks(
    ffmpeg: &Path,
    file: &Path,
    key: &str,
    shift_micros: u64,
    limits: ChildLimits,
) -> Result<(), MediaError> {
    let fail = |message: String| MediaError::new(format!("{key}: {message}"));
    let mut remuxed = file.as_os_str().to_owned();
    remuxed.push(".remux.mp4");
    let remuxed = std::path::PathBuf::from(remuxed);
    let limits = ChildLimits { memory: limits.memory.min(REMUX_MEMORY), ..limits };
    // An audio stream MP4 cannot hold (FLAC or PCM from Matroska, with FFmpeg 5.1) is
    // left out on a second try: the built-in planner never reads a clip's audio, and a
    // plugin's plan is told the copy has none.
    let mut result = Ok(());
    for with_audio in [true, false] {
        let mut command = crate::ffmpeg::child_command(ffmpeg, limits);
        command.args(["-nostdin", "-hide_banner", "-v", "error"]).args(crate::formats::input_whitelist());
        if shift_micros > 0 {
            command.arg("-itsoffset").arg(format!("-{}.{:06}", shift_micros / 1_000_000, shift_micros % 1_000_000));
        }
        command.arg("-i").arg(file).args(["-map", "0:v:0"]);
        if with_audio {
            command.args(["-map", "0:a:0?"]);
        }
        let output = command
            .args(["-c", "copy", "-f", "mp4", "-y"])
            .arg(&remuxed)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        result = match tokio::time::timeout(PROBE_TIMEOUT, output).await {
            Err(_) => {
                let seconds = PROBE_TIMEOUT.as_secs();
                Err(fail(format!("copying its packets into MP4 did not finish within {seconds} s")))
            }
            Ok(Err(e)) => Err(fail(format!("cannot run ffmpeg: {e}")).caused_by(e)),
            Ok(Ok(output)) if !output.status.success() => {
                crate::files::remove_if_present(&remuxed);
                let why = last_error(&output.stderr, output.status, file, key);
                if with_audio {
                    tracing::warn!(key = %key, "copying its packets into MP4 failed ({why}): copied without its audio");
                    continue;
                }
                Err(fail(format!("copying its packets into MP4 (to seek in it by frame) failed ({why})")))
            }
            Ok(Ok(_)) => std::fs::rename(&remuxed, file)
                .map_err(|e| fail(format!("cannot replace it with its MP4 copy: {e}")).caused_by(e)),
        };
        break;
    }
    if result.is_err() {
        crate::files::remove_if_present(&remuxed);
    }
    result
}

/// Where a clip's video keyframes are, as its container's index says (FFmpeg seeks by
/// it) and as its bitstream says (FFmpeg's parser reads each packet's headers: an IDR or
/// a recovery point). Packets are named by their presentation time (`pts_time`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keyframes {
    /// Video packets, as the parser counts them.
    pub packets: u64,
    /// `(packet index, pts_time)` of the packets the container flags as keyframes.
    pub container: Vec<(u64, f64)>,
    /// The same for the packets whose bitstream starts a GOP.
    pub bitstream: Vec<(u64, f64)>,
}

impl Keyframes {
    /// The time of the first packet the container marks as a keyframe that its
    /// bitstream does not start a GOP with: an input seek there would land on a frame
    /// that cannot be decoded, and the decoder would drop every frame up to the next
    /// real keyframe (a move showing later frames than its own, with exit 0).
    pub fn false_keyframe(&self) -> Option<f64> {
        let real: std::collections::HashSet<u64> = self.bitstream.iter().map(|(_, at)| at.to_bits()).collect();
        self.container.iter().map(|(_, at)| *at).find(|at| !real.contains(&at.to_bits()))
    }
}

/// Nine hours at 30 fps: more video packets than any clip a job could use is refused
/// rather than read on (what is kept is 16 bytes per keyframe).
const MAX_PACKETS: u64 = 1_000_000;

/// [`Keyframes`] of `file`'s first video stream: two packet-only passes run at once (no
/// frame is decoded), one with the parser (`-fflags +noparse` left out) and one without.
/// About 20 ms of work each for a 17 s 720p clip, beside ffprobe's start.
pub async fn keyframes(ffprobe: &Path, file: &Path, key: &str, limits: ChildLimits) -> Result<Keyframes, MediaError> {
    let limits = ChildLimits { memory: limits.memory / 2, ..limits };
    let (bitstream, container) =
        tokio::join!(key_packets(ffprobe, file, key, true, limits), key_packets(ffprobe, file, key, false, limits));
    let ((packets, bitstream), (_, container)) = (bitstream?, container?);
    Ok(Keyframes { packets, container, bitstream })
}

/// How many video packets `file` has, and the index and time of those flagged keyframes:
/// by the parser when `parsed`, else as the container has them.
async fn key_packets(
    ffprobe: &Path,
    file: &Path,
    key: &str,
    parsed: bool,
    limits: ChildLimits,
) -> Result<(u64, Vec<(u64, f64)>), MediaError> {
    use tokio::io::AsyncBufReadExt;
    let fail = |message: String| MediaError::new(format!("{key}: {message}"));
    let mut command = crate::ffmpeg::child_command(ffprobe, limits);
    command.args(["-v", "error", "-hide_banner"]);
    if !parsed {
        command.args(["-fflags", "+noparse"]);
    }
    let mut child = command
        .args(["-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
        .args(crate::formats::input_whitelist())
        .arg("-i")
        .arg(file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start ffprobe ({}): {e}", ffprobe.display())).caused_by(e))?;
    let (stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let run = async {
        let read_packets = async {
            let (mut packets, mut keyframes) = (0u64, Vec::new());
            // ffprobe writes `0.033333,K__` per packet: short lines, whatever the file.
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Some(line) = lines.next_line().await? {
                let Some((at, flags)) = line.trim().rsplit_once(',') else { continue };
                if flags.starts_with('K') {
                    // `N/A` (no timestamp) reads as NaN.
                    keyframes.push((packets, at.parse().unwrap_or(f64::NAN)));
                }
                packets += 1;
                if packets > MAX_PACKETS {
                    let message = format!("it has more than {MAX_PACKETS} video packets");
                    return Err(std::io::Error::other(message));
                }
            }
            Ok::<_, std::io::Error>((packets, keyframes))
        };
        let (read, err) = tokio::join!(read_packets, crate::ffmpeg::stderr_tail(&mut stderr, 64 * 1024));
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, read?, err))
    };
    let (status, found, err) = match tokio::time::timeout(PROBE_TIMEOUT, run).await {
        Err(_) => return Err(fail(format!("reading its packets did not finish within {} s", PROBE_TIMEOUT.as_secs()))),
        Ok(Err(e)) => return Err(fail(format!("reading its packets failed: {e}")).caused_by(e)),
        Ok(Ok(done)) => done,
    };
    if !status.success() {
        return Err(fail(format!("cannot read its packets ({})", last_error(&err, status, file, key))));
    }
    Ok(found)
}

/// Enough for FFmpeg to decode a song and measure it with `ebur128` (its true peak
/// resampled to 192 kHz): about 58 MB resident with Debian's FFmpeg.
pub const LOUDNESS_MEMORY: u64 = 96 << 20;
/// Measuring decodes the whole song once: about 1.2 s of one core for 3 minutes of MP3,
/// 4 s for 10; a song that takes far longer is not worth waiting for.
pub const LOUDNESS_TIMEOUT: Duration = Duration::from_secs(120);
/// The summary is under 1 KiB: what precedes the last 64 KiB of the log is dropped.
const LOUDNESS_LOG_TAIL: usize = 64 * 1024;

/// The song's EBU R128 loudness from its start to `seconds` (the video's length), as the
/// plan's song step reads it (48 kHz stereo), for `host.loudness` (contract 0.7.0).
/// `song_seconds` is the probed length of its audio (0 when unknown): a measurement that
/// ends short of it, as FFmpeg's filters were seen to do under a tight memory limit with
/// exit status 0, would miss the peaks to come, and is refused.
pub async fn measure_loudness(
    ffmpeg: &Path,
    file: &Path,
    key: &str,
    (seconds, song_seconds): (f64, f64),
    limits: ChildLimits,
) -> Result<Loudness, MediaError> {
    let fail = |message: String| MediaError::new(format!("{key}: {message}"));
    let limits = ChildLimits { memory: limits.memory.min(LOUDNESS_MEMORY), ..limits };
    // `framelog=verbose`: one line per 100 ms of audio would otherwise fill stderr.
    let graph = format!(
        "[0:a:0]atrim=end={seconds:.6},asetpts=PTS-STARTPTS,aresample=48000,\
         aformat=sample_fmts=fltp:channel_layouts=stereo,{}=peak=true:framelog=verbose[measured]",
        crate::formats::LOUDNESS_FILTER
    );
    let mut child = crate::ffmpeg::child_command(ffmpeg, limits)
        .args(["-nostdin", "-hide_banner", "-nostats", "-v", "info", "-threads", "1"])
        .args(crate::formats::input_whitelist())
        .arg("-i")
        .arg(file)
        .args(["-filter_complex", &graph, "-map", "[measured]"])
        .args(["-c:a", crate::formats::LOUDNESS_ENCODER, "-f", crate::formats::LOUDNESS_MUXER, "-"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run ffmpeg: {e}")).caused_by(e))?;
    let mut stderr = child.stderr.take().expect("piped");
    let run = async {
        // A damaged song can log a line per packet: only the end (the summary) is kept.
        let tail = crate::ffmpeg::stderr_tail(&mut stderr, LOUDNESS_LOG_TAIL).await;
        Ok::<_, std::io::Error>((child.wait().await?, tail))
    };
    let (status, stderr) = match tokio::time::timeout(LOUDNESS_TIMEOUT, run).await {
        Err(_) => {
            return Err(fail(format!("measuring its loudness did not finish within {} s", LOUDNESS_TIMEOUT.as_secs())))
        }
        Ok(Err(e)) => return Err(fail(format!("measuring its loudness failed: {e}")).caused_by(e)),
        Ok(Ok(done)) => done,
    };
    if !status.success() {
        return Err(fail(format!("measuring its loudness failed ({})", last_error(&stderr, status, file, key))));
    }
    let measured = loudness_from_summary(&String::from_utf8_lossy(&stderr))
        .ok_or_else(|| fail("FFmpeg's ebur128 wrote no summary of its loudness".into()))?;
    let expected = if song_seconds > 0.0 { seconds.min(song_seconds) } else { 0.0 };
    if measured.seconds + MEASURE_SHORTFALL < expected {
        return Err(fail(format!(
            "its loudness was measured over {:.2} s of the {expected:.2} s the video uses",
            measured.seconds
        )));
    }
    Ok(measured)
}

/// How far short of the song's probed length a measurement may end (container and
/// stream durations disagree by a frame or two).
const MEASURE_SHORTFALL: f64 = 0.5;

/// The figures of the last summary `ebur128` logs when it closes (FFmpeg may build and
/// close the filter once more before it runs it: that one measured nothing), and the
/// length of audio measured, from FFmpeg's last progress line (`time=00:02:56.00`).
fn loudness_from_summary(stderr: &str) -> Option<Loudness> {
    let clock = &stderr[stderr.rfind("time=")? + "time=".len()..];
    let clock = clock.split_whitespace().next()?;
    let mut seconds = 0.0;
    for part in clock.split(':') {
        seconds = seconds * 60.0 + part.parse::<f64>().ok().filter(|value| value.is_finite() && *value >= 0.0)?;
    }
    let summary = &stderr[stderr.rfind("Summary:")?..];
    let figure = |section: &str, label: &str| -> Option<f64> {
        let section = &summary[summary.find(section)?..];
        let line = section.lines().map(str::trim_start).find(|line| line.starts_with(label))?;
        line[label.len()..].split_whitespace().next()?.parse().ok()
    };
    Some(Loudness {
        integrated: figure("Integrated loudness:", "I:")?,
        range: figure("Loudness range:", "LRA:")?,
        true_peak: figure("True peak:", "Peak:")?,
        seconds,
    })
}

pub async fn probe_container(
    ffprobe: &Path,
    file: &Path,
    key: &str,
    limits: ChildLimits,
) -> Result<Probed, MediaError> {
    let fail = |message: String| MediaError::new(format!("{key}: {message}"));
    let mut child = crate::ffmpeg::child_command(ffprobe, limits)
        .args(["-v", "error", "-hide_banner", "-print_format", "json", "-show_format", "-show_streams"])
        .args(crate::formats::input_whitelist())
        .arg("-i")
        .arg(file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start ffprobe ({}): {e}", ffprobe.display())).caused_by(e))?;
    let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let run = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut out_reader, mut err_reader) = ((&mut stdout).take(MAX_PROBE_OUTPUT), (&mut stderr).take(64 * 1024));
        let (read_out, read_err) = tokio::join!(out_reader.read_to_end(&mut out), err_reader.read_to_end(&mut err));
        read_out.and(read_err)?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out, err))
    };
    let (status, out, err) = match tokio::time::timeout(PROBE_TIMEOUT, run).await {
        Err(_) => return Err(fail(format!("ffprobe did not finish within {} s", PROBE_TIMEOUT.as_secs()))),
        Ok(Err(e)) => return Err(fail(format!("ffprobe failed: {e}")).caused_by(e)),
        Ok(Ok(done)) => done,
    };
    if !status.success() {
        if String::from_utf8_lossy(&err).contains("not on whitelist") {
            return Err(fail(format!("is not in an accepted container format ({})", crate::formats::CONTAINER_NAMES)));
        }
        return Err(fail(format!("not a readable media file ({})", last_error(&err, status, file, key))));
    }
    let json: Value =
        serde_json::from_slice(&out).map_err(|e| fail(format!("unreadable ffprobe output: {e}")).caused_by(e))?;
    let facts = facts_from_ffprobe(&json, key).ok_or_else(|| fail("ffprobe found no audio or video stream".into()))?;
    let container = json.pointer("/format/format_name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let video_start = video_stream(&json)
        .and_then(|s| s.get("start_time"))
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|t| t.is_finite())
        .unwrap_or(0.0);
    let video_delay_micros = video_stream(&json).and_then(|video| delay_micros(video, json.get("format"))).unwrap_or(0);
    let sample_aspect =
        video_stream(&json).and_then(|s| s.get("sample_aspect_ratio")).and_then(Value::as_str).and_then(sample_aspect);
    Ok(Probed { facts, container, video_start, sample_aspect, video_delay_micros })
}

/// How long after the file's start (`format`'s `start_time`, which FFmpeg keeps in whole
/// microseconds) `video` starts, in microseconds rounded down, exactly: from its
/// `start_pts` in its `time_base`, not its `start_time` (rounded to the nearest
/// microsecond). None when ffprobe gives neither.
fn delay_micros(video: &Value, format: Option<&Value>) -> Option<u64> {
    let start_pts = video.get("start_pts").and_then(Value::as_i64)?;
    let (num, den) = video.get("time_base").and_then(Value::as_str)?.split_once('/')?;
    let (num, den) = (num.parse::<i128>().ok()?, den.parse::<i128>().ok()?);
    let file_start = format.and_then(|f| f.get("start_time")).and_then(Value::as_str).unwrap_or("0");
    let file_start = file_start.parse::<f64>().ok().filter(|t| t.is_finite() && t.abs() < 1e9)?;
    if num <= 0 || den <= 0 {
        return None;
    }
    let video_start = i128::from(start_pts) * num * 1_000_000;
    let delay = (video_start - (file_start * 1e6).round() as i128 * den).div_euclid(den);
    u64::try_from(delay).ok()
}

/// ffprobe's `4:3` as `(4, 3)`; None for square pixels, `0:1` (unknown, which FFmpeg
/// shows as square), `N/A` or anything unreadable.
fn sample_aspect(text: &str) -> Option<(u64, u64)> {
    let (num, den) = text.split_once(':')?;
    let (num, den) = (num.parse::<u64>().ok()?, den.parse::<u64>().ok()?);
    (num > 0 && den > 0 && num != den).then_some((num, den))
}

/// The stream [`facts_from_ffprobe`] takes the video facts from: the first video stream
/// that is not an attached picture.
fn video_stream(json: &Value) -> Option<&Value> {
    let streams = json.get("streams").and_then(Value::as_array)?;
    streams
        .iter()
        .find(|s| s.get("codec_type").and_then(Value::as_str) == Some("video"))
        .filter(|s| s.pointer("/disposition/attached_pic").and_then(Value::as_i64) != Some(1))
}

/// The last line FFmpeg wrote to stderr (its reason), with the staged file's path shown
/// as the storage key; the exit status when it wrote nothing.
fn last_error(stderr: &[u8], status: std::process::ExitStatus, file: &Path, key: &str) -> String {
    let stderr = String::from_utf8_lossy(stderr).replace(&file.display().to_string(), key);
    let reason = stderr.lines().last().unwrap_or("").trim();
    if reason.is_empty() {
        status.to_string()
    } else {
        reason.to_owned()
    }
}

/// The first video and first audio stream; None when there is neither.
pub fn facts_from_ffprobe(json: &Value, key: &str) -> Option<MediaFacts> {
    let streams = json.get("streams").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let of_type = |kind: &str| streams.iter().find(|s| s.get("codec_type").and_then(Value::as_str) == Some(kind));
    let text = |s: &Value, name: &str| s.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let number = |s: &Value, name: &str| -> f64 {
        match s.get(name) {
            Some(Value::String(t)) => t.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0).unwrap_or(0.0),
            Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
            _ => 0.0,
        }
    };
    let whole = |s: &Value, name: &str| u32::try_from(number(s, name) as u64).unwrap_or(0);
    // Attached pictures (cover art in an MP3) are "video" streams of one frame: not footage.
    let video = of_type("video")
        .filter(|s| s.pointer("/disposition/attached_pic").and_then(Value::as_i64) != Some(1))
        .map(|s| VideoFacts {
            codec: text(s, "codec_name"),
            width: whole(s, "width"),
            height: whole(s, "height"),
            frame_rate: rate(&text(s, "avg_frame_rate")).or_else(|| rate(&text(s, "r_frame_rate"))).unwrap_or(0.0),
            pixel_format: text(s, "pix_fmt"),
            duration: number(s, "duration"),
        })
        .filter(|v| v.width > 0 && v.height > 0);
    let audio = of_type("audio").map(|s| AudioFacts {
        codec: text(s, "codec_name"),
        sample_rate: whole(s, "sample_rate"),
        channels: whole(s, "channels"),
        duration: number(s, "duration"),
    });
    if video.is_none() && audio.is_none() {
        return None;
    }
    let duration = json.get("format").map(|f| number(f, "duration")).unwrap_or(0.0);
    Some(MediaFacts { key: key.to_owned(), duration, video, audio })
}

fn rate(text: &str) -> Option<f64> {
    let (num, den) = text.split_once('/').unwrap_or((text, "1"));
    let value = num.parse::<f64>().ok()? / den.parse::<f64>().ok()?;
    (value.is_finite() && value > 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message names the input and what failed; the operating system's error stays
    /// reachable as the source.
    #[tokio::test]
    async fn a_probe_that_cannot_start_keeps_its_io_error_as_the_source() {
        let limits = ChildLimits::reader(PROBE_MEMORY, PROBE_TIMEOUT);
        let missing = Path::new("/nonexistent/ffprobe");
        let error =
            probe_container(missing, Path::new("/dev/null"), "media/a.mp4", limits).await.err().expect("no ffprobe");
        assert!(error.message.starts_with("media/a.mp4: cannot start ffprobe (/nonexistent/ffprobe): "), "{error}");
        let source = std::error::Error::source(&error).expect("a source");
        let io = source.downcast_ref::<std::io::Error>().expect("the io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }

    /// FFmpeg 5.1's log of `measure_loudness`: the filter built and closed once before
    /// the run (its summary measured nothing), then the run's summary.
    const EBUR128_LOG: &str = "[Parsed_ebur128_4 @ 0x557f6cf13f80] Summary:

  Integrated loudness:
    I:         -70.0 LUFS
    Threshold:   0.0 LUFS

  Loudness range:
    LRA:         0.0 LU
    Threshold:   0.0 LUFS
    LRA low:     0.0 LUFS
    LRA high:    0.0 LUFS

  True peak:
    Peak:       -inf dBFS
Stream mapping:
size=N/A time=00:02:56.00 bitrate=N/A speed= 153x
[Parsed_ebur128_4 @ 0x557f6cf1aa00] Summary:

  Integrated loudness:
    I:         -15.0 LUFS
    Threshold: -25.0 LUFS

  Loudness range:
    LRA:         0.4 LU
    Threshold: -35.0 LUFS
    LRA low:   -15.2 LUFS
    LRA high:  -14.8 LUFS

  True peak:
    Peak:       -5.1 dBFS
";

    #[test]
    fn loudness_is_read_from_the_last_summary() {
        let measured = loudness_from_summary(EBUR128_LOG).unwrap();
        assert_eq!(
            (measured.integrated, measured.range, measured.true_peak, measured.seconds),
            (-15.0, 0.4, -5.1, 176.0)
        );
        let silent = EBUR128_LOG.replace("-15.0 LUFS", "-70.0 LUFS").replace("-5.1 dBFS", "-inf dBFS");
        let silent = loudness_from_summary(&silent).unwrap();
        assert_eq!((silent.integrated, silent.true_peak), (-70.0, f64::NEG_INFINITY));
        assert_eq!(loudness_from_summary("[aac] no summary here"), None);
        let cut = &EBUR128_LOG[..EBUR128_LOG.rfind("True peak:").unwrap()];
        assert_eq!(loudness_from_summary(cut), None, "a summary without its true peak is no measurement");
        let first_only = &EBUR128_LOG[..EBUR128_LOG.find("Stream mapping").unwrap()];
        assert_eq!(loudness_from_summary(first_only), None, "no progress line: FFmpeg never ran the filter");
        let long = EBUR128_LOG.replace("time=00:02:56.00", "time=01:02:03.50");
        assert_eq!(loudness_from_summary(&long).map(|m| m.seconds), Some(3723.5));
    }

    #[test]
    fn a_keyframe_the_container_lists_and_the_bitstream_does_not_start_is_false() {
        let keyframes = |container: &[f64], bitstream: &[f64]| Keyframes {
            packets: 120,
            container: container.iter().map(|&at| ((at * 30.0) as u64, at)).collect(),
            bitstream: bitstream.iter().map(|&at| ((at * 30.0) as u64, at)).collect(),
        };
        assert_eq!(keyframes(&[0.0, 2.0], &[0.0, 2.0]).false_keyframe(), None);
        assert_eq!(
            keyframes(&[0.0], &[0.0, 2.0]).false_keyframe(),
            None,
            "a keyframe left out only makes seeks slower"
        );
        assert_eq!(keyframes(&[0.0, 1.0, 2.0, 3.0], &[0.0, 2.0]).false_keyframe(), Some(1.0));
    }

    #[test]
    fn a_sample_aspect_ratio_is_read_and_square_or_unknown_is_none() {
        assert_eq!(sample_aspect("4:3"), Some((4, 3)));
        assert_eq!(sample_aspect("10:1"), Some((10, 1)));
        for square in ["1:1", "0:1", "N/A", "", "4:0", "-4:3", "4/3"] {
            assert_eq!(sample_aspect(square), None, "{square}");
        }
    }

    #[test]
    fn a_videos_delay_is_exact_and_rounded_down() {
        let video = |start_pts: i64, base: &str| serde_json::json!({"start_pts": start_pts, "time_base": base});
        let format = |start: &str| serde_json::json!({"start_time": start});
        // 7972/15360 s is 519010.416... microseconds (ffprobe's start_time says 0.519010).
        assert_eq!(delay_micros(&video(7972, "1/15360"), Some(&format("0.000000"))), Some(519_010));
        // MPEG-TS: both from 1.4 s, the video 0.1 s after the audio.
        assert_eq!(delay_micros(&video(135_000, "1/90000"), Some(&format("1.400000"))), Some(100_000));
        assert_eq!(delay_micros(&video(126_000, "1/90000"), Some(&format("1.400000"))), Some(0));
        assert_eq!(delay_micros(&video(1, "1/3"), None), Some(333_333));
        // Before the file's start (not possible, but read safely) is no delay.
        assert_eq!(delay_micros(&video(0, "1/90000"), Some(&format("0.500000"))), None);
        assert_eq!(delay_micros(&serde_json::json!({"start_pts": 5}), None), None);
        assert_eq!(delay_micros(&video(5, "1/0"), None), None);
    }

    #[test]
    fn reads_streams_and_ignores_cover_art() {
        let json = serde_json::json!({
            "streams": [
                {"codec_type": "video", "codec_name": "mjpeg", "width": 500, "height": 500, "disposition": {"attached_pic": 1}},
                {"codec_type": "audio", "codec_name": "mp3", "sample_rate": "44100", "channels": 2, "duration": "201.5"}
            ],
            "format": {"duration": "201.6"}
        });
        let facts = facts_from_ffprobe(&json, "song.mp3").unwrap();
        assert!(facts.video.is_none());
        assert_eq!(facts.audio.unwrap().sample_rate, 44100);
        let json = serde_json::json!({"streams": [{"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080, "avg_frame_rate": "30000/1001", "pix_fmt": "yuv420p", "duration": "6.2"}]});
        let video = facts_from_ffprobe(&json, "clip.mp4").unwrap().video.unwrap();
        assert!((video.frame_rate - 29.97).abs() < 0.01 && video.duration == 6.2);
        assert!(facts_from_ffprobe(&serde_json::json!({"streams": []}), "x").is_none());
    }
}
