//! `blueprint-runner prepare` end to end: real FFmpeg on generated clips in a local
//! folder. A prepared clip is at the profile's size and rate, H.264 without B-frames,
//! keyframes at 0, 8 and every 15 frames after, every frame of its source; running again skips it; two
//! runs at once, an interrupted run resumed, and shards all leave every clip whole.

use crate::support::media;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use media::{ClipSpec, StreamFacts, CLIP_A, CLIP_B, CLIP_C};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const PROFILE: &str = "h264-1280x720-30fps-2000k-g15-r4";
const CLIPS: [&str; 3] = ["media/a.mp4", "media/b.mp4", "media/c.mp4"];

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("prepare-cli-guest-cache")
}

struct Library {
    root: tempfile::TempDir,
    data: PathBuf,
    work: PathBuf,
    /// The prepared clips' folder name, from the blueprint's output.
    profile: String,
}

impl Library {
    /// Three clips of different sizes and rates (6 s each) and a 720p30 blueprint that uses them.
    fn new() -> Library {
        Library::with_output(1280, 720, "30", PROFILE)
    }

    /// The same, with the blueprint's output (and the clips) at `width`x`height` and
    /// `rate`, whose clips are prepared under `profile`.
    fn with_output(width: u32, height: u32, rate: &'static str, profile: &str) -> Library {
        let root = tempfile::Builder::new().prefix("prepare-cli-").tempdir().unwrap();
        let data = root.path().join("data");
        let work = root.path().join("work");
        std::fs::create_dir_all(data.join("media")).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let library = Library { root, data, work, profile: profile.to_owned() };
        // Moving test patterns (every frame differs from the next), shaped like the
        // library: H.264 High, a keyframe every 250 frames, at the output's rate (the
        // backend's library is all 30 fps); three sizes.
        let specs = [CLIP_A.with_seconds(6.0), CLIP_B, CLIP_C.with_seconds(6.0)].map(|spec| ClipSpec { rate, ..spec });
        let fps: f64 = match rate.split_once('/') {
            Some((num, den)) => num.parse::<f64>().unwrap() / den.parse::<f64>().unwrap(),
            None => rate.parse().unwrap(),
        };
        let fps = (fps * 100.0).round() / 100.0;
        std::thread::scope(|scope| {
            for (key, spec) in CLIPS.iter().zip(specs) {
                let path = library.data.join(key);
                scope.spawn(move || make_textured_clip(&path, &spec));
            }
        });
        media::make_song_wav(&library.data.join("media/song.wav"), 22.0);
        // Five-second moves: crossfades (the first from black), a fade through white and
        // one through black; trims off the GOP grid; the last move runs out of clip and
        // holds its last frame for a second.
        let plan = [
            (CLIPS[0], "crossfade", 0.0),
            (CLIPS[1], "crossfade", 0.4),
            (CLIPS[2], "fade_white", 0.2),
            (CLIPS[0], "fade_black", 2.0),
        ];
        let moves: Vec<Value> = plan
            .iter()
            .enumerate()
            .map(|(index, (clip, transition, trim))| {
                json!({"clip_id": format!("m{index}"), "video_path": clip, "start_time": index as f64 * 5.0, "duration": 5.0,
                       "trim_start": trim, "trim_end": 0.0, "transition_type": transition, "volume_adjustment": 1.0})
            })
            .collect();
        let blueprint = json!({
            "task_id": "prepare-1", "audio_path": "media/song.wav", "moves": moves, "total_duration": 20.0,
            "output_config": {"output_path": "output/x.mp4", "width": width, "height": height, "frame_rate": fps, "video_bitrate": "2M",
                              "transition_duration": 0.5, "fade_duration": 0.3},
        });
        std::fs::write(library.blueprint(), blueprint.to_string()).unwrap();
        library
    }

    fn blueprint(&self) -> PathBuf {
        self.root.path().join("blueprint.json")
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(["--log-format", "text", "prepare"])
            .arg(self.blueprint())
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--work-dir")
            .arg(&self.work)
            .arg("--cache-dir")
            .arg(cache_dir())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for variable in [
            "BLUEPRINT_JSON",
            "DATA_DIR",
            "WORK_DIR",
            "CLOUD_RUN_TASK_INDEX",
            "CLOUD_RUN_TASK_COUNT",
            "GUEST_COMPONENT",
        ] {
            command.env_remove(variable);
        }
        command
    }

    /// Runs `prepare`; returns the exit code and the JSON summary.
    fn prepare(&self, extra: &[&str]) -> (Option<i32>, Value) {
        summarise(self.command(extra).output().unwrap())
    }

    fn prepared(&self, key: &str) -> PathBuf {
        self.data.join("prepared").join(&self.profile).join(key)
    }

    fn manifest(&self, key: &str) -> Value {
        let text = std::fs::read(self.data.join("prepared").join(&self.profile).join(format!("{key}.json"))).unwrap();
        serde_json::from_slice(&text).unwrap()
    }

    /// No `.partial` file anywhere, and the work folder empty.
    fn assert_nothing_half_written(&self) {
        let mut folders = vec![self.data.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(folder).unwrap() {
                let path = entry.unwrap().path();
                assert!(!path.to_string_lossy().contains(".partial"), "left behind: {}", path.display());
                if path.is_dir() {
                    folders.push(path);
                }
            }
        }
        let left: Vec<_> = std::fs::read_dir(&self.work).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "the work folder holds {left:?}");
    }

    /// Each clip's prepared version is whole and as the profile says.
    fn assert_all_prepared(&self) {
        for key in CLIPS {
            assert_prepared_clip(&self.prepared(key), &self.data.join(key));
            let manifest = self.manifest(key);
            assert_eq!(manifest["profile_id"], PROFILE);
            assert_eq!(manifest["source_key"], key);
            assert_eq!((manifest["gop_frames"].as_u64(), manifest["first_gop_frames"].as_u64()), (Some(15), Some(8)));
            assert_eq!(manifest["frames"].as_u64(), Some(packet_flags(&self.prepared(key)).len() as u64));
        }
        self.assert_nothing_half_written();
    }
}

fn make_textured_clip(path: &Path, spec: &media::ClipSpec) {
    let source = format!("testsrc2=size={}x{}:rate={}:duration={}", spec.width, spec.height, spec.rate, spec.seconds);
    let output = Command::new(media::ffmpeg_binary())
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &source,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
        ])
        .args(["-pix_fmt", "yuv420p", "-g", "250", "-b:v", "2M"])
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn summarise(output: std::process::Output) -> (Option<i32>, Value) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line.get("profile_id").is_some())
        .unwrap_or_else(|| {
            panic!("no summary\nstdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&output.stderr))
        });
    (output.status.code(), summary)
}

/// The key-frame flag of every video packet, in order.
fn packet_flags(path: &Path) -> Vec<bool> {
    let output = Command::new(media::ffprobe_binary())
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|line| line.starts_with('K')).collect()
}

fn assert_prepared_clip(prepared: &Path, source: &Path) {
    let stream = Command::new(media::ffprobe_binary())
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,r_frame_rate,has_b_frames,pix_fmt",
            "-of",
            "json",
        ])
        .arg(prepared)
        .output()
        .unwrap();
    let stream: Value = serde_json::from_slice(&stream.stdout).unwrap();
    let stream = &stream["streams"][0];
    assert_eq!(
        (stream["codec_name"].as_str(), stream["width"].as_u64(), stream["height"].as_u64()),
        (Some("h264"), Some(1280), Some(720)),
        "{stream}"
    );
    assert_eq!(
        (stream["r_frame_rate"].as_str(), stream["pix_fmt"].as_str()),
        (Some("30/1"), Some("yuv420p")),
        "{stream}"
    );
    assert_eq!(stream["has_b_frames"], 0, "B-frames would make copied GOPs inexact: {stream}");
    let flags = packet_flags(prepared);
    let keyframes: Vec<usize> = flags.iter().enumerate().filter(|(_, key)| **key).map(|(at, _)| at).collect();
    // Frame 0, frame 8 (where the backend's half-second crossfade into the clip ends), then
    // every 15 frames.
    let grid: Vec<usize> = (0..flags.len()).filter(|&at| at == 0 || (at >= 8 && (at - 8) % 15 == 0)).collect();
    assert_eq!(keyframes, grid, "keyframes at 0, 8, then every 15 frames");
    // Every source second is there: 6 s (6.2 s for the 29.97 fps clip) at 30 fps.
    let probe = media::probe(source);
    let source_seconds: f64 =
        probe.json["format"]["duration"].as_str().and_then(|d| d.parse().ok()).expect("source duration");
    let expected = (source_seconds * 30.0).round() as i64;
    assert!((flags.len() as i64 - expected).abs() <= 1, "{} frames for {source_seconds} s", flags.len());
}

#[test]
fn a_blueprints_clips_are_prepared_once() {
    let library = Library::new();
    let (code, summary) = library.prepare(&[]);
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!((summary["prepared"].as_u64(), summary["up_to_date"].as_u64()), (Some(3), Some(0)), "{summary}");
    assert_eq!(summary["profile_id"], PROFILE);
    library.assert_all_prepared();

    // Again: nothing to do, nothing rewritten.
    let before: Vec<_> =
        CLIPS.iter().map(|key| std::fs::metadata(library.prepared(key)).unwrap().modified().unwrap()).collect();
    let (code, summary) = library.prepare(&[]);
    assert_eq!(code, Some(0));
    assert_eq!((summary["prepared"].as_u64(), summary["up_to_date"].as_u64()), (Some(0), Some(3)), "{summary}");
    let after: Vec<_> =
        CLIPS.iter().map(|key| std::fs::metadata(library.prepared(key)).unwrap().modified().unwrap()).collect();
    assert_eq!(before, after);

    // A source that changes is prepared again; the others are not.
    media::make_clip(&library.data.join("media/c.mp4"), &ClipSpec { rate: "30", ..CLIP_C.with_seconds(4.0) });
    let (code, summary) = library.prepare(&[]);
    assert_eq!(code, Some(0));
    assert_eq!((summary["prepared"].as_u64(), summary["up_to_date"].as_u64()), (Some(1), Some(2)), "{summary}");
    library.assert_all_prepared();
}

#[test]
fn two_runs_at_once_and_an_interrupted_run_leave_every_clip_whole() {
    let library = Library::new();
    let first = library.command(&[]).spawn().unwrap();
    let second = library.command(&[]).spawn().unwrap();
    let (code_1, summary_1) = summarise(first.wait_with_output().unwrap());
    let (code_2, summary_2) = summarise(second.wait_with_output().unwrap());
    assert_eq!((code_1, code_2), (Some(0), Some(0)), "{summary_1}\n{summary_2}");
    for summary in [&summary_1, &summary_2] {
        assert_eq!(summary["prepared"].as_u64().unwrap() + summary["up_to_date"].as_u64().unwrap(), 3, "{summary}");
    }
    library.assert_all_prepared();

    // Interrupted in the middle of the second clip, then run again.
    std::fs::remove_dir_all(library.data.join("prepared")).unwrap();
    let child = library.command(&[]).spawn().unwrap();
    let manifest = library.data.join("prepared").join(PROFILE).join("media/a.mp4.json");
    let started = std::time::Instant::now();
    while !manifest.exists() {
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "the first clip was never prepared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: kill sends a signal to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (code, summary) = summarise(child.wait_with_output().unwrap());
    assert_eq!(code, Some(8), "{summary}");
    library.assert_nothing_half_written();
    let (code, summary) = library.prepare(&[]);
    assert_eq!(code, Some(0), "{summary}");
    assert!(summary["up_to_date"].as_u64().unwrap() >= 1, "{summary}");
    library.assert_all_prepared();
}

#[test]
fn shards_share_the_library_without_overlap() {
    let library = Library::new();
    let children: Vec<_> =
        (0..3).map(|index| library.command(&["--shard", &format!("{index}/3")]).spawn().unwrap()).collect();
    let summaries: Vec<Value> =
        children.into_iter().map(|child| summarise(child.wait_with_output().unwrap()).1).collect();
    for summary in &summaries {
        assert_eq!((summary["clips"].as_u64(), summary["prepared"].as_u64()), (Some(1), Some(1)), "{summary}");
    }
    library.assert_all_prepared();
    // `--all` finds the same three clips and leaves the prepared ones out.
    let mut command = Command::new(BIN);
    command
        .args(["--log-format", "text", "prepare", "--all", "media/", "--data-dir"])
        .arg(&library.data)
        .arg("--work-dir")
        .arg(&library.work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (code, summary) = summarise(command.output().unwrap());
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!((summary["clips"].as_u64(), summary["up_to_date"].as_u64()), (Some(3), Some(3)), "{summary}");
}

/// `run` of the library's blueprint; returns the exit code and the last status line.
fn render(library: &Library, output: &str, extra: &[&str]) -> (Option<i32>, Value) {
    let text = std::fs::read_to_string(library.blueprint()).unwrap().replace("output/x.mp4", output);
    let file = library.root.path().join(format!("{}.json", output.replace('/', "_")));
    std::fs::write(&file, text).unwrap();
    let result = Command::new(BIN)
        .args(["--log-format", "text", "run"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&library.data)
        .arg("--work-dir")
        .arg(&library.work)
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(extra)
        .env_remove("PREPARED")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let last = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Value>(line).ok().filter(|l| l.get("status").is_some()));
    let last = last.unwrap_or_else(|| panic!("no status\nstderr:\n{}", String::from_utf8_lossy(&result.stderr)));
    (result.status.code(), last)
}

/// SSIM of each frame of `b` against the same frame of `a`.
fn ssim_per_frame(a: &Path, b: &Path) -> Vec<f64> {
    let stats = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new(media::ffmpeg_binary())
        .args(["-v", "error", "-i"])
        .arg(a)
        .arg("-i")
        .arg(b)
        .args(["-lavfi", &format!("[0:v][1:v]ssim=stats_file={}", stats.path().display()), "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    std::fs::read_to_string(stats.path())
        .unwrap()
        .lines()
        .filter_map(|line| {
            line.split_whitespace().find_map(|field| field.strip_prefix("All:")).and_then(|v| v.parse().ok())
        })
        .collect()
}

/// The default guest as built at contract 0.9.0, before 0.10.0 told guests where a
/// prepared clip's GOPs start (tests/fixtures/guests/README.md).
const GUEST_0_9_0: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/guests/default-guest-0.9.0.wasm");

/// With prepared clips the job copies most frames and renders only the rest, and the
/// video is the same video: same frame count, every frame close to the full render's
/// (transitions and the off-grid trim included), a clean bitstream, exact A/V lengths.
#[test]
fn a_job_with_prepared_clips_makes_the_same_video() {
    let library = Library::new();
    let (code, full) = render(&library, "output/full.mp4", &["--prepared", "off"]);
    assert_eq!(code, Some(0), "{full}");
    let (code, summary) = library.prepare(&[]);
    assert_eq!(code, Some(0), "{summary}");
    let (code, smart) = render(&library, "output/smart.mp4", &[]);
    assert_eq!(code, Some(0), "{smart}");
    assert_eq!(smart["result"]["timings"]["prepared_clips"], 3, "{smart}");
    let steps = smart["result"]["steps"].as_array().unwrap();
    let copies = steps.iter().filter(|step| step["label"].as_str().unwrap_or_default().contains(" copy ")).count();
    assert_eq!(copies, 4, "one copied run of GOPs per move: {steps:?}");
    let shared = steps.iter().filter(|step| step["label"].as_str().unwrap_or_default().contains(" + ")).count();
    assert!(shared >= 1, "the bridges out of a move and into the next share a step: {steps:?}");
    let full_file = library.data.join("output/full.mp4");
    assert_same_video(&full_file, &library.data.join("output/smart.mp4"), 600);

    // A guest of contract 0.9.0 is not told where these clips' GOPs start (recipe 4: 0, 8,
    // then every 15) and would cut them every 15: it is given none, and renders in full.
    let (code, older) = render(&library, "output/older.mp4", &["--guest", GUEST_0_9_0]);
    assert_eq!(code, Some(0), "{older}");
    assert_eq!(older["result"]["timings"]["prepared_clips"], 0, "{older}");
    assert_same_video(&full_file, &library.data.join("output/older.mp4"), 600);

    // A source replaced after it was prepared (same pattern, new file): its prepared
    // clip is stale and not used, the others are; the video is still the same.
    make_textured_clip(&library.data.join(CLIPS[2]), &ClipSpec { rate: "30", ..CLIP_C.with_seconds(6.0) });
    let (code, mixed) = render(&library, "output/mixed.mp4", &[]);
    assert_eq!(code, Some(0), "{mixed}");
    assert_eq!(mixed["result"]["timings"]["prepared_clips"], 2, "{mixed}");
    assert_same_video(&full_file, &library.data.join("output/mixed.mp4"), 600);

    // A clip at another rate (25 fps) is not prepared: its copied frames would fall a
    // fraction of a frame off the ones its move shows. The job renders it in full.
    make_textured_clip(&library.data.join(CLIPS[2]), &CLIP_C.with_seconds(6.0));
    let (code, summary) = library.prepare(&[]);
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["not_preparable"][0]["key"], CLIPS[2], "{summary}");
    assert!(summary["not_preparable"][0]["reason"].as_str().unwrap().contains("(25)"), "{summary}");
    let (code, full) = render(&library, "output/full-25.mp4", &["--prepared", "off"]);
    assert_eq!(code, Some(0), "{full}");
    let (code, mixed) = render(&library, "output/mixed-25.mp4", &[]);
    assert_eq!(code, Some(0), "{mixed}");
    assert_eq!(mixed["result"]["timings"]["prepared_clips"], 2, "{mixed}");
    assert_same_video(&library.data.join("output/full-25.mp4"), &library.data.join("output/mixed-25.mp4"), 600);
}

/// A guest of contract 0.9.0 is not told where a clip's GOPs start and cuts them every 15
/// frames: `prepare` for it makes clips of recipe 3 (a keyframe every 15 frames from the
/// first), its jobs copy from them and make the same video; today's guest, given only
/// clips of recipe 4, renders those clips in full.
#[test]
fn an_older_guest_gets_clips_prepared_on_the_grid_it_knows() {
    let library = Library::new();
    let (code, full) = render(&library, "output/full.mp4", &["--prepared", "off"]);
    assert_eq!(code, Some(0), "{full}");
    let (code, summary) = library.prepare(&["--guest", GUEST_0_9_0]);
    assert_eq!(code, Some(0), "{summary}");
    let even = "h264-1280x720-30fps-2000k-g15-r3";
    assert_eq!(summary["profile_id"], even, "{summary}");
    for key in CLIPS {
        let flags = packet_flags(&library.data.join("prepared").join(even).join(key));
        let keyframes: Vec<usize> = flags.iter().enumerate().filter(|(_, key)| **key).map(|(at, _)| at).collect();
        assert_eq!(keyframes, (0..flags.len()).step_by(15).collect::<Vec<_>>(), "{key}: every 15 frames");
    }
    assert!(!library.data.join("prepared").join(PROFILE).exists(), "nothing of recipe 4");
    let (code, older) = render(&library, "output/older.mp4", &["--guest", GUEST_0_9_0]);
    assert_eq!(code, Some(0), "{older}");
    assert_eq!(older["result"]["timings"]["prepared_clips"], 3, "{older}");
    let steps = older["result"]["steps"].as_array().unwrap();
    assert!(steps.iter().any(|step| step["label"].as_str().unwrap_or_default().contains(" copy ")), "{steps:?}");
    assert_same_video(&library.data.join("output/full.mp4"), &library.data.join("output/older.mp4"), 600);
    let (code, newer) = render(&library, "output/newer.mp4", &[]);
    assert_eq!(code, Some(0), "{newer}");
    assert_eq!(newer["result"]["timings"]["prepared_clips"], 0, "{newer}");
}

/// The same at a 1080p profile and NTSC's 29.97 fps: 20 s is 599.4 frames, so the video
/// has 599, every move on its frame, the copied GOPs and the bridges joined exactly.
#[test]
fn a_1080p_ntsc_profile_makes_the_same_video_too() {
    let library = Library::with_output(1920, 1080, "30000/1001", "h264-1920x1080-30000_1001fps-2000k-g15-r4");
    let (code, full) = render(&library, "output/full.mp4", &["--prepared", "off"]);
    assert_eq!(code, Some(0), "{full}");
    let (code, summary) = library.prepare(&[]);
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["profile_id"], library.profile, "{summary}");
    let (code, smart) = render(&library, "output/smart.mp4", &[]);
    assert_eq!(code, Some(0), "{smart}");
    assert_eq!(smart["result"]["timings"]["prepared_clips"], 3, "{smart}");
    let prepared = media::probe(&library.prepared(CLIPS[0]));
    assert_eq!((prepared.video().int("width"), prepared.video().int("height")), (1920, 1080));
    assert_eq!(prepared.video().text("r_frame_rate"), "30000/1001");
    assert_same_video(&library.data.join("output/full.mp4"), &library.data.join("output/smart.mp4"), 599);
}

/// `smart` is `full` up to encoder noise: the same `frames` frames of a 20 s
/// blueprint, each in its place.
fn assert_same_video(full: &Path, smart: &Path, frames: u64) {
    let (full_probe, smart_probe) = (media::probe(full), media::probe(smart));
    assert_eq!(full_probe.video().packets(), frames);
    assert_eq!(smart_probe.video().packets(), frames);
    let video_seconds = smart_probe.video().duration();
    let audio_seconds = smart_probe.audio().duration();
    let frame_rate: f64 = {
        let rate = smart_probe.video().text("r_frame_rate").to_owned();
        let (num, den) = rate.split_once('/').unwrap_or((rate.as_str(), "1"));
        num.parse::<f64>().unwrap() / den.parse::<f64>().unwrap()
    };
    let expected_seconds = frames as f64 / frame_rate;
    assert!((video_seconds - expected_seconds).abs() < 0.001, "video {video_seconds} s, expected {expected_seconds}");
    assert!((audio_seconds - video_seconds).abs() < 0.001, "audio {audio_seconds} s, video {video_seconds} s");
    let decode = Command::new(media::ffmpeg_binary())
        .args(["-v", "error", "-i"])
        .arg(smart)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "decoding says: {}",
        String::from_utf8_lossy(&decode.stderr)
    );

    let ssim = ssim_per_frame(full, smart);
    assert_eq!(ssim.len() as u64, frames);
    let (at, worst) =
        ssim.iter().enumerate().fold((0, 1.0), |(at, low), (i, &v)| if v < low { (i, v) } else { (at, low) });
    println!("SSIM of {} against the full render: worst {worst:.4} at frame {at}", smart.display());
    // Two generations of encoding score about 0.99 here; the same pattern one frame off
    // scores about 0.95, so 0.97 tells a misplaced frame from encoder noise. This covers
    // move midpoints, the middle of each crossfade and fade, and the held last frame.
    assert!(worst >= 0.97, "frame {at} differs: SSIM {worst}");
}
