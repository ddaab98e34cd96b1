//! Generated test media and measurements of the results, all through the installed
//! FFmpeg: `TEST_MEDIA_FFMPEG` / `TEST_MEDIA_FFPROBE` override these tools, else `ffmpeg`
//! and `ffprobe` on PATH. `FFMPEG` / `FFPROBE` name only the binaries the host runs
//! (inherited by the host the tests start): a minimal build (scripts/build-ffmpeg) has no
//! lavfi sources, `geq`, MP3 or raw encoders, `ssim` or `null` output to make or measure
//! media with, and a test must not judge the host's FFmpeg with that same FFmpeg.
//!
//! The clips are synthetic and self-describing: the CHROMA (U, V) of every pixel is a
//! constant that names the clip, and the LUMA encodes the source time,
//! `Y = 60 + 10 * t`, so one sampled frame of a result tells which clip it shows and
//! from which point of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The FFmpeg that makes and measures test media (not necessarily the host's).
pub fn ffmpeg_binary() -> PathBuf {
    std::env::var_os("TEST_MEDIA_FFMPEG").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("ffmpeg"))
}

/// The MD5 of one stream's packets as stored (`-c copy`, not decoded), e.g. `0:a`:
/// equal only for the very same coded frames.
pub fn stream_md5(file: &Path, stream: &str) -> String {
    let args = ["-v", "error", "-i"].map(String::from).into_iter().chain([path_arg(file)]);
    let args: Vec<String> = args.chain(["-map", stream, "-c", "copy", "-f", "md5", "-"].map(String::from)).collect();
    String::from_utf8_lossy(&run_tool(ffmpeg_binary(), &args).stdout).trim().to_owned()
}

/// The ffprobe that measures test media (not necessarily the host's).
pub fn ffprobe_binary() -> PathBuf {
    std::env::var_os("TEST_MEDIA_FFPROBE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("ffprobe"))
}

/// Runs a tool; panics with its command line and stderr when it fails.
fn run_tool(program: PathBuf, args: &[String]) -> Output {
    let output = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    if !output.status.success() {
        panic!(
            "{} {} failed ({}):\n{}",
            program.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

fn ffmpeg(args: &[String]) -> Output {
    let mut all: Vec<String> =
        ["-hide_banner", "-nostdin", "-v", "error", "-y"].iter().map(|s| s.to_string()).collect();
    all.extend_from_slice(args);
    run_tool(ffmpeg_binary(), &all)
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("test paths are UTF-8").to_owned()
}

fn make_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
    }
}

/// The clips' luma at source time 0.
pub const LUMA_BASE: f64 = 60.0;

/// The luma the clips show at source time `t` seconds.
pub fn luma_at(t: f64) -> f64 {
    LUMA_BASE + 10.0 * t
}

/// The audio track a clip carries (its own tone: the result must not use it).
#[derive(Debug, Clone, Copy)]
pub struct ClipAudio {
    pub sample_rate: u32,
    pub channels: u32,
    pub frequency: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct ClipSpec {
    pub width: u32,
    pub height: u32,
    /// An FFmpeg rate: "30", "30000/1001", "25".
    pub rate: &'static str,
    pub seconds: f64,
    /// The clip's identity: its constant (U, V). It must stay inside the RGB gamut for
    /// every luma the clip shows: some filters (a fade through white) work in RGB and
    /// would clip an impossible colour.
    pub chroma: (u8, u8),
    pub audio: Option<ClipAudio>,
}

/// 1280x720 at 30 fps, 48 kHz stereo, 12 s.
pub const CLIP_A: ClipSpec = ClipSpec {
    width: 1280,
    height: 720,
    rate: "30",
    seconds: 12.0,
    chroma: (108, 102),
    audio: Some(ClipAudio { sample_rate: 48_000, channels: 2, frequency: 660 }),
};

/// 1920x1080 at 29.97 fps, no audio, only 6.2 s (its last frame is at 185 * 1001/30000 s).
pub const CLIP_B: ClipSpec =
    ClipSpec { width: 1920, height: 1080, rate: "30000/1001", seconds: 6.2, chroma: (182, 104), audio: None };

/// 640x480 (4:3) at 25 fps, 44.1 kHz mono, 10 s.
pub const CLIP_C: ClipSpec = ClipSpec {
    width: 640,
    height: 480,
    rate: "25",
    seconds: 10.0,
    chroma: (108, 176),
    audio: Some(ClipAudio { sample_rate: 44_100, channels: 1, frequency: 330 }),
};

/// A small, quick clip for the tests that never look at the result's pixels.
pub const CLIP_SMALL: ClipSpec = ClipSpec {
    width: 320,
    height: 180,
    rate: "25",
    seconds: 6.0,
    chroma: (150, 110),
    audio: Some(ClipAudio { sample_rate: 48_000, channels: 2, frequency: 550 }),
};

impl ClipSpec {
    /// The source time of the clip's last frame.
    pub fn last_frame_time(&self) -> f64 {
        let (num, den) = match self.rate.split_once('/') {
            Some((n, d)) => (n.parse::<f64>().unwrap(), d.parse::<f64>().unwrap()),
            None => (self.rate.parse::<f64>().unwrap(), 1.0),
        };
        let frames = (self.seconds * num / den - 1e-9).ceil();
        (frames - 1.0) * den / num
    }

    pub fn with_seconds(self, seconds: f64) -> ClipSpec {
        ClipSpec { seconds, ..self }
    }
}

/// Writes `spec` as an H.264 MP4 at `path` (parents created). The picture is drawn on
/// a tiny frame by `geq` and scaled up with nearest-neighbour: fast, and flat.
pub fn make_clip(path: &Path, spec: &ClipSpec) {
    make_parent(path);
    // A 16x9-ish tiny canvas keeps geq cheap; the aspect of the final frame comes from the scale.
    let video = format!("color=c=black:s=64x36:r={}:d={}", spec.rate, spec.seconds);
    let graph = format!(
        "[0:v]geq=lum='{}+10*T':cb={}:cr={},scale={}:{}:flags=neighbor,setsar=1,format=yuv420p[v]",
        LUMA_BASE, spec.chroma.0, spec.chroma.1, spec.width, spec.height
    );
    let mut args: Vec<String> = vec!["-f".into(), "lavfi".into(), "-i".into(), video];
    let mut graph = graph;
    if let Some(audio) = spec.audio {
        args.extend([
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            format!("sine=frequency={}:sample_rate={}:duration={}", audio.frequency, audio.sample_rate, spec.seconds),
        ]);
        let layout = if audio.channels == 1 { "mono" } else { "stereo" };
        graph.push_str(&format!(";[1:a]aformat=channel_layouts={layout}[a]"));
    }
    args.extend(["-filter_complex".into(), graph, "-map".into(), "[v]".into()]);
    if spec.audio.is_some() {
        args.extend(["-map".into(), "[a]".into(), "-c:a".into(), "aac".into(), "-b:a".into(), "96k".into()]);
    }
    args.extend(
        ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "10", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
            .iter()
            .map(|s| s.to_string()),
    );
    args.push(path_arg(path));
    ffmpeg(&args);
}

/// A clip whose every frame names itself: luma `COUNTER_BASE + 2 * frame index` (so a
/// sampled frame of a result tells the exact source frame, within ±1 of luma), a constant
/// (U, V) naming the clip, `frames` frames at 30 fps, `size` pixels, H.264 with a keyframe
/// every 250 frames, AAC 48 kHz stereo: the backend's clips in miniature. At most 109 frames.
pub fn make_counter_clip(path: &Path, chroma: (u8, u8), frames: u32, size: (u32, u32)) {
    make_counter_clip_with(path, chroma, frames, size, 250, true);
}

/// [`make_counter_clip`] with a keyframe every `keyint` frames, and its `moov` box at the
/// end of the file unless `faststart`.
pub fn make_counter_clip_with(
    path: &Path,
    chroma: (u8, u8),
    frames: u32,
    size: (u32, u32),
    keyint: u32,
    faststart: bool,
) {
    assert!(COUNTER_BASE + 2.0 * f64::from(frames - 1) <= 235.0, "a counter clip holds at most 109 frames");
    make_parent(path);
    let seconds = f64::from(frames) / 30.0;
    let graph = format!(
        "[0:v]geq=lum='{COUNTER_BASE}+2*N':cb={}:cr={},scale={}:{}:flags=neighbor,setsar=1,format=yuv420p[v]",
        chroma.0, chroma.1, size.0, size.1
    );
    let args: Vec<String> = [
        "-f",
        "lavfi",
        "-i",
        &format!("color=c=black:s=64x36:r=30:d={seconds}"),
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=700:sample_rate=48000:duration={seconds}"),
        "-filter_complex",
        &format!("{graph};[1:a]aformat=channel_layouts=stereo[a]"),
        "-map",
        "[v]",
        "-map",
        "[a]",
        "-frames:v",
        &frames.to_string(),
        "-c:v",
        "libx264",
        "-profile:v",
        "high",
        "-preset",
        "ultrafast",
        "-crf",
        "4",
        "-g",
        &keyint.to_string(),
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        "-movflags",
        if faststart { "+faststart" } else { "-faststart" },
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once(path_arg(path)))
    .collect();
    ffmpeg(&args);
}

/// A counter clip whose MP4 keyframe index lies: real keyframes (IDRs) every `keyint`
/// frames, but its video track's `stss` box lists one every `listed_every` frames, so an
/// input seek to a listed frame lands on a P-frame. The clip is written with `moov` after
/// `mdat`, so growing `stss` moves no sample data (the chunk offsets stay right); only
/// the sizes of the boxes around it change.
pub fn make_lying_keyframe_clip(
    path: &Path,
    chroma: (u8, u8),
    frames: u32,
    size: (u32, u32),
    keyint: u32,
    listed_every: u32,
) {
    make_counter_clip_with(path, chroma, frames, size, keyint, false);
    let mut file = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let listed: Vec<u32> = (0..frames).step_by(listed_every as usize).map(|frame| frame + 1).collect();
    rewrite_video_stss(&mut file, &listed);
    std::fs::write(path, file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The boxes directly inside `data[from..to]`: (offset, size, type).
fn mp4_boxes(data: &[u8], from: usize, to: usize) -> Vec<(usize, usize, [u8; 4])> {
    let mut boxes = Vec::new();
    let mut at = from;
    while at + 8 <= to {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        assert!(size >= 8 && at + size <= to, "a box of 32-bit size at {at}");
        boxes.push((at, size, data[at + 4..at + 8].try_into().unwrap()));
        at += size;
    }
    boxes
}

/// Replaces the sync-sample list (`stss`, 1-based sample numbers) of the first video
/// track of an MP4 whose `moov` follows its `mdat`, fixing the sizes of its parents.
pub fn rewrite_video_stss(data: &mut Vec<u8>, samples: &[u32]) {
    let child = |data: &[u8], parent: (usize, usize, [u8; 4]), name: &[u8; 4]| {
        mp4_boxes(data, parent.0 + 8, parent.0 + parent.1).into_iter().find(|b| &b.2 == name)
    };
    let top = mp4_boxes(data, 0, data.len());
    let moov = *top.iter().find(|b| &b.2 == b"moov").expect("a moov box");
    let mdat = *top.iter().find(|b| &b.2 == b"mdat").expect("an mdat box");
    assert!(moov.0 > mdat.0, "moov must follow mdat, or the chunk offsets would move");
    let mut path = None;
    for trak in mp4_boxes(data, moov.0 + 8, moov.0 + moov.1).into_iter().filter(|b| &b.2 == b"trak") {
        let mdia = child(data, trak, b"mdia").expect("mdia");
        let hdlr = child(data, mdia, b"hdlr").expect("hdlr");
        if &data[hdlr.0 + 16..hdlr.0 + 20] == b"vide" {
            let minf = child(data, mdia, b"minf").expect("minf");
            let stbl = child(data, minf, b"stbl").expect("stbl");
            path = Some([moov, trak, mdia, minf, stbl]);
            break;
        }
    }
    let parents = path.expect("a video track");
    let stss = child(data, parents[4], b"stss").expect("the video track has an stss box (it is not all keyframes)");
    let mut new = Vec::with_capacity(16 + 4 * samples.len());
    new.extend_from_slice(&(16 + 4 * samples.len() as u32).to_be_bytes());
    new.extend_from_slice(b"stss");
    new.extend_from_slice(&[0; 4]);
    new.extend_from_slice(&(samples.len() as u32).to_be_bytes());
    for sample in samples {
        new.extend_from_slice(&sample.to_be_bytes());
    }
    let grown = new.len() as i64 - stss.1 as i64;
    data.splice(stss.0..stss.0 + stss.1, new);
    for (offset, size, _) in parents {
        let size = u32::try_from(size as i64 + grown).unwrap();
        data[offset..offset + 4].copy_from_slice(&size.to_be_bytes());
    }
}

/// The luma of a counter clip's frame 0.
pub const COUNTER_BASE: f64 = 16.0;

/// Which frame of a counter clip a sampled luma is.
pub fn counter_frame(luma: u8) -> f64 {
    (f64::from(luma) - COUNTER_BASE) / 2.0
}

/// `spec` in MPEG-TS: [`make_clip`]'s packets (a keyframe every 250 frames, as x264's
/// default) copied into a container with no index to seek by.
pub fn make_clip_ts(path: &Path, spec: &ClipSpec) {
    let source = path.with_extension("source.mp4");
    make_clip(&source, spec);
    ffmpeg(&["-i", &path_arg(&source), "-c", "copy", "-f", "mpegts", &path_arg(path)].map(str::to_owned));
    std::fs::remove_file(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
}

/// A 440 Hz sine (amplitude 1/8) song, 48 kHz, encoded to MP3.
pub fn make_song_mp3(path: &Path, seconds: f64) {
    make_parent(path);
    ffmpeg(&[
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("sine=frequency=440:sample_rate=48000:duration={seconds}"),
        "-c:a".into(),
        "libmp3lame".into(),
        "-b:a".into(),
        "128k".into(),
        path_arg(path),
    ]);
}

/// The same song as 16-bit PCM WAV.
pub fn make_song_wav(path: &Path, seconds: f64) {
    make_parent(path);
    ffmpeg(&[
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("sine=frequency=440:sample_rate=48000:duration={seconds}"),
        "-c:a".into(),
        "pcm_s16le".into(),
        path_arg(path),
    ]);
}

/// A 48 kHz WAV song that is silent until `onset` seconds, then a 1 kHz sine of
/// amplitude 1/4 until `seconds`: where the result's audio starts is measurable to
/// the sample.
pub fn make_song_with_onset(path: &Path, onset: f64, seconds: f64) {
    make_parent(path);
    ffmpeg(&[
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("aevalsrc='if(gte(t,{onset}),0.25*sin(2*PI*1000*t),0)':s=48000:d={seconds}"),
        "-c:a".into(),
        "pcm_s16le".into(),
        path_arg(path),
    ]);
}

/// A 48 kHz stereo MP3 song of any signal FFmpeg's `aevalsrc` can write, e.g.
/// `0.03*sin(2*PI*440*t)` (amplitude, so level, known).
pub fn make_song_expression(path: &Path, expression: &str, seconds: f64) {
    make_parent(path);
    ffmpeg(&[
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("aevalsrc='{expression}|{expression}':s=48000:d={seconds}"),
        "-c:a".into(),
        "libmp3lame".into(),
        "-b:a".into(),
        "192k".into(),
        path_arg(path),
    ]);
}

/// EBU R128 figures of a file's audio, measured by the test FFmpeg's `ebur128`.
#[derive(Debug, Clone, Copy)]
pub struct Loudness {
    /// LUFS.
    pub integrated: f64,
    /// dBTP.
    pub true_peak: f64,
}

pub fn loudness(path: &Path) -> Loudness {
    let args = ["-hide_banner", "-nostdin", "-nostats", "-v", "info", "-i", &path_arg(path), "-vn", "-af"];
    let args: Vec<String> = args
        .iter()
        .map(|s| s.to_string())
        .chain(["ebur128=peak=true:framelog=verbose".into(), "-f".into(), "null".into(), "-".into()])
        .collect();
    let log = String::from_utf8_lossy(&run_tool(ffmpeg_binary(), &args).stderr).into_owned();
    let summary = &log[log.rfind("Summary:").unwrap_or_else(|| panic!("no ebur128 summary:\n{log}"))..];
    let figure = |label: &str| -> f64 {
        let line = summary
            .lines()
            .map(str::trim_start)
            .find(|line| line.starts_with(label))
            .unwrap_or_else(|| panic!("no {label}:\n{log}"));
        line[label.len()..].split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
    };
    Loudness { integrated: figure("I:"), true_peak: figure("Peak:") }
}

/// One sampled colour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yuv {
    pub y: u8,
    pub u: u8,
    pub v: u8,
}

impl std::fmt::Display for Yuv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Y={} U={} V={}", self.y, self.u, self.v)
    }
}

/// The centre quarter of the frame (letterbox bars never reach it).
pub const CENTRE: &str = "crop=iw/4:ih/4";
/// A strip at the left edge (inside the pillarbox bars of a 4:3 clip in 16:9).
pub const LEFT_EDGE: &str = "crop=iw/16:ih/2:0:ih/4";

/// The average colour of the region `crop` (an FFmpeg crop filter) of the frame shown
/// at `t` seconds (the first frame whose timestamp is at or after `t`).
pub fn frame_region_at(path: &Path, t: f64, crop: &str) -> Yuv {
    let output = ffmpeg(&[
        "-ss".into(),
        format!("{t:.6}"),
        "-i".into(),
        path_arg(path),
        "-frames:v".into(),
        "1".into(),
        "-an".into(),
        "-vf".into(),
        format!("{crop},scale=1:1:flags=area,format=yuv444p"),
        "-f".into(),
        "rawvideo".into(),
        "-".into(),
    ]);
    match output.stdout.as_slice() {
        [y, u, v] => Yuv { y: *y, u: *u, v: *v },
        other => panic!("sampling {} at {t}: expected 3 bytes, got {}", path.display(), other.len()),
    }
}

/// The average colour of the centre of the frame shown at `t` seconds.
pub fn frame_at(path: &Path, t: f64) -> Yuv {
    frame_region_at(path, t, CENTRE)
}

/// What ffprobe says about a file (`-show_streams -show_format -count_packets`).
#[derive(Debug, Clone)]
pub struct Probe {
    pub json: Value,
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl Probe {
    pub fn streams(&self) -> &[Value] {
        self.json["streams"].as_array().map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn stream(&self, kind: &str) -> Option<&Value> {
        self.streams().iter().find(|s| s["codec_type"] == kind)
    }

    pub fn video(&self) -> &Value {
        self.stream("video").unwrap_or_else(|| panic!("no video stream: {}", self.json))
    }

    pub fn audio(&self) -> &Value {
        self.stream("audio").unwrap_or_else(|| panic!("no audio stream: {}", self.json))
    }

    pub fn format_duration(&self) -> f64 {
        number(&self.json["format"]["duration"]).expect("format duration")
    }
}

/// Facts about one stream.
pub trait StreamFacts {
    fn codec(&self) -> &str;
    fn duration(&self) -> f64;
    fn packets(&self) -> u64;
    fn int(&self, field: &str) -> i64;
    fn text(&self, field: &str) -> &str;
}

impl StreamFacts for Value {
    fn codec(&self) -> &str {
        self["codec_name"].as_str().unwrap_or("")
    }

    fn duration(&self) -> f64 {
        number(&self["duration"]).unwrap_or_else(|| panic!("stream without duration: {self}"))
    }

    fn packets(&self) -> u64 {
        number(&self["nb_read_packets"]).unwrap_or_else(|| panic!("stream without packet count: {self}")) as u64
    }

    fn int(&self, field: &str) -> i64 {
        number(&self[field]).unwrap_or_else(|| panic!("stream without {field}: {self}")) as i64
    }

    fn text(&self, field: &str) -> &str {
        self[field].as_str().unwrap_or_else(|| panic!("stream without {field}: {self}"))
    }
}

pub fn probe(path: &Path) -> Probe {
    let output = run_tool(
        ffprobe_binary(),
        &[
            "-v".into(),
            "error".into(),
            "-count_packets".into(),
            "-show_streams".into(),
            "-show_format".into(),
            "-of".into(),
            "json".into(),
            path_arg(path),
        ],
    );
    Probe { json: serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("ffprobe JSON: {e}")) }
}

/// The whole audio track of `path`, decoded to mono f32 samples at `rate`.
pub fn audio_samples(path: &Path, rate: u32) -> Vec<f32> {
    let output = ffmpeg(&[
        "-i".into(),
        path_arg(path),
        "-vn".into(),
        "-ac".into(),
        "1".into(),
        "-ar".into(),
        rate.to_string(),
        "-f".into(),
        "f32le".into(),
        "-".into(),
    ]);
    output.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Root mean square of `samples` (at `rate`) over [t0, t1] seconds.
pub fn rms(samples: &[f32], rate: u32, t0: f64, t1: f64) -> f64 {
    let from = ((t0 * rate as f64).round() as usize).min(samples.len());
    let to = ((t1 * rate as f64).round() as usize).min(samples.len());
    assert!(to > from, "no samples in [{t0}, {t1}] (track has {} samples)", samples.len());
    let sum: f64 = samples[from..to].iter().map(|&s| (s as f64) * (s as f64)).sum();
    (sum / (to - from) as f64).sqrt()
}

/// RMS of the audio of `path` over [t0, t1] seconds.
pub fn audio_rms(path: &Path, t0: f64, t1: f64) -> f64 {
    rms(&audio_samples(path, 48_000), 48_000, t0, t1)
}
