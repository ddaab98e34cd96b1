//! What the job knows about its staged inputs: probed with `ffprobe` by the host (the
//! guest cannot read media), reduced to the contract's `media-facts`.

use std::path::Path;
use std::time::Duration;

use br_plan::{AudioFacts, MediaFacts, VideoFacts};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::ffmpeg::ChildLimits;

/// ffprobe's JSON for one file is a few KiB; more means something is wrong.
const MAX_PROBE_OUTPUT: u64 = 1024 * 1024;
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MediaError {
    pub message: String,
}

/// How many frames the first video stream of `file` has (its packets, counted by
/// reading the container: no decoding).
pub async fn count_video_frames(ffprobe: &Path, file: &Path, limits: ChildLimits) -> Result<u64, MediaError> {
    let fail = |message: String| MediaError { message: format!("{}: {message}", file.display()) };
    let output = crate::ffmpeg::child_command(ffprobe, limits)
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(file)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PROBE_TIMEOUT, output)
        .await
        .map_err(|_| fail(format!("ffprobe did not finish within {} s", PROBE_TIMEOUT.as_secs())))?
        .map_err(|e| fail(format!("cannot run ffprobe: {e}")))?;
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
}

impl Probed {
    /// Whether FFmpeg's input seek in this file lands on the frame ([`crate::formats::SEEKS_EXACTLY`]).
    pub fn seeks_exactly(&self) -> bool {
        crate::formats::SEEKS_EXACTLY.contains(&self.container.as_str())
    }
}

/// Enough for FFmpeg to copy packets into MP4 (measured: under 48 MiB with Debian's
/// FFmpeg and its libraries, under 16 MiB with the image's).
pub const REMUX_MEMORY: u64 = 64 << 20;

/// Rewrites `file` in place as an MP4 of the same packets (its first video and first
/// audio stream, nothing decoded or encoded), so that seeks in it land on the frame:
/// MP4's index lists every keyframe. See [`crate::formats::SEEKS_EXACTLY`].
pub async fn remux_for_exact_seeks(ffmpeg: &Path, file: &Path, key: &str, limits: ChildLimits) -> Result<(), MediaError> {
    let fail = |message: String| MediaError { message: format!("{key}: {message}") };
    let mut remuxed = file.as_os_str().to_owned();
    remuxed.push(".remux.mp4");
    let remuxed = std::path::PathBuf::from(remuxed);
    let limits = ChildLimits { memory: limits.memory.min(REMUX_MEMORY), ..limits };
    let output = crate::ffmpeg::child_command(ffmpeg, limits)
        .args(["-nostdin", "-hide_banner", "-v", "error"])
        .args(crate::formats::input_whitelist())
        .arg("-i")
        .arg(file)
        .args(["-map", "0:v:0", "-map", "0:a:0?", "-c", "copy", "-f", "mp4", "-y"])
        .arg(&remuxed)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let result = match tokio::time::timeout(PROBE_TIMEOUT, output).await {
        Err(_) => Err(fail(format!("copying its packets into MP4 did not finish within {} s", PROBE_TIMEOUT.as_secs()))),
        Ok(Err(e)) => Err(fail(format!("cannot run ffmpeg: {e}"))),
        Ok(Ok(output)) if !output.status.success() => Err(fail(format!(
            "its container has no index to seek by, and copying its packets into MP4 failed ({})",
            last_error(&output.stderr, output.status, file, key)
        ))),
        Ok(Ok(_)) => std::fs::rename(&remuxed, file).map_err(|e| fail(format!("cannot replace it with its MP4 copy: {e}"))),
    };
    if result.is_err() {
        crate::work::remove_if_present(&remuxed);
    }
    result
}

pub async fn probe_container(ffprobe: &Path, file: &Path, key: &str, limits: ChildLimits) -> Result<Probed, MediaError> {
    let fail = |message: String| MediaError { message: format!("{key}: {message}") };
    let mut child = crate::ffmpeg::child_command(ffprobe, limits)
        .args(["-v", "error", "-hide_banner", "-print_format", "json", "-show_format", "-show_streams"])
        .args(crate::formats::input_whitelist())
        .arg("-i")
        .arg(file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start ffprobe ({}): {e}", ffprobe.display())))?;
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
        Ok(Err(e)) => return Err(fail(format!("ffprobe failed: {e}"))),
        Ok(Ok(done)) => done,
    };
    if !status.success() {
        if String::from_utf8_lossy(&err).contains("not on whitelist") {
            return Err(fail(format!("is not in an accepted container format ({})", crate::formats::CONTAINER_NAMES)));
        }
        return Err(fail(format!("not a readable media file ({})", last_error(&err, status, file, key))));
    }
    let json: Value = serde_json::from_slice(&out).map_err(|e| fail(format!("unreadable ffprobe output: {e}")))?;
    let facts = facts_from_ffprobe(&json, key).ok_or_else(|| fail("ffprobe found no audio or video stream".into()))?;
    let container = json.pointer("/format/format_name").and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(Probed { facts, container })
}

/// The last line FFmpeg wrote to stderr (its reason), with the staged file's path shown
/// as the storage key; the exit status when it wrote nothing.
fn last_error(stderr: &[u8], status: std::process::ExitStatus, file: &Path, key: &str) -> String {
    let stderr = String::from_utf8_lossy(stderr).replace(&file.display().to_string(), key);
    let reason = stderr.lines().last().unwrap_or("").trim();
    if reason.is_empty() { status.to_string() } else { reason.to_owned() }
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
