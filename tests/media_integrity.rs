//! Inputs whose files claim what their frames are not (issue 27, §2 and §3): each ends
//! in the right video, or in a refusal with exit 4 naming the blueprint input, never in a
//! wrong video with exit 0. The clips are counter clips (`support/media.rs`): every
//! frame's luma names its source frame, so a sampled frame of the result says which
//! source frame it shows.

use crate::support::media;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use media::{StreamFacts, Yuv};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_blueprint-runner");
const FPS: f64 = 30.0;

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("media-integrity-guest-cache")
}

/// A data folder (with a song) and a work folder.
struct Folder {
    root: tempfile::TempDir,
}

impl Folder {
    fn new() -> Folder {
        let root = tempfile::Builder::new().prefix("media-integrity-").tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("data/media")).unwrap();
        std::fs::create_dir_all(root.path().join("work")).unwrap();
        media::make_song_mp3(&root.path().join("data/media/song.mp3"), 6.0);
        Folder { root }
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn path(&self, key: &str) -> PathBuf {
        self.data().join(key)
    }

    fn command(&self, subcommand: &str, blueprint: &Value, extra: &[&str]) -> Command {
        let file = self.root.path().join("blueprint.json");
        std::fs::write(&file, blueprint.to_string()).unwrap();
        let mut command = Command::new(BIN);
        command
            .args(["--log-format", "text", subcommand])
            .arg(&file)
            .arg("--data-dir")
            .arg(self.data())
            .arg("--work-dir")
            .arg(self.root.path().join("work"))
            .arg("--cache-dir")
            .arg(cache_dir())
            .args(extra)
            .stdin(Stdio::null());
        let settings = ["BLUEPRINT_JSON", "DATA_DIR", "WORK_DIR", "GUEST_COMPONENT", "TIMELINE", "OUTPUT_PREFIX"];
        let more = ["PREPARED", "JOB_MEMORY_MIB", "CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_COUNT"];
        for variable in settings.into_iter().chain(more) {
            command.env_remove(variable);
        }
        command
    }

    /// `run` of `blueprint`.
    fn run(&self, blueprint: &Value, extra: &[&str]) -> Run {
        let output = self.command("run", blueprint, extra).output().expect("run blueprint-runner");
        let left: Vec<_> = std::fs::read_dir(self.root.path().join("work")).unwrap().collect();
        assert!(left.is_empty(), "the work folder was not removed");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            output: self.path(blueprint["output_config"]["output_path"].as_str().unwrap()),
        }
    }

    /// `prepare` of `blueprint`: its exit code and JSON summary.
    fn prepare(&self, blueprint: &Value) -> (Option<i32>, Value) {
        let output = self.command("prepare", blueprint, &[]).output().expect("run blueprint-runner");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line.get("profile_id").is_some())
            .unwrap_or_else(|| panic!("no summary\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
        (output.status.code(), summary)
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    output: PathBuf,
}

impl Run {
    fn describe(&self) -> String {
        format!("exit code {:?}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr)
    }

    fn last(&self) -> Value {
        let line = self.stdout.lines().rfind(|l| l.contains("\"status\""));
        serde_json::from_str(line.unwrap_or_else(|| panic!("no status line\n{}", self.describe()))).unwrap()
    }

    fn error(&self) -> String {
        self.last()["error"].as_str().unwrap_or_default().to_owned()
    }

    fn prepared_clips(&self) -> u64 {
        self.last()["result"]["timings"]["prepared_clips"].as_u64().unwrap_or_else(|| panic!("{}", self.describe()))
    }
}

/// A move of `clip` from `start` for `duration` s, `trim` s into the clip.
fn cut(index: usize, clip: &str, start: f64, duration: f64, trim: f64) -> Value {
    json!({"clip_id": format!("m{index}"), "video_path": clip, "start_time": start, "duration": duration,
           "trim_start": trim, "trim_end": 0.0, "transition_type": "cut", "volume_adjustment": 1.0})
}

/// A blueprint of cuts, its output `size` at 30 fps, stored at `output`.
fn blueprint(task_id: &str, moves: Vec<Value>, size: (u32, u32), output: &str) -> Value {
    let ends = moves.iter().map(|m| m["start_time"].as_f64().unwrap() + m["duration"].as_f64().unwrap());
    let total = ends.fold(0.0, f64::max);
    json!({
        "task_id": task_id, "audio_path": "media/song.mp3", "moves": moves, "total_duration": total,
        "output_config": {"output_path": output, "width": size.0, "height": size.1, "frame_rate": FPS,
                          "video_bitrate": "2M", "transition_duration": 0.5, "fade_duration": 0.3},
    })
}

/// The frame at output frame `frame` (the first whose timestamp is at or after it).
fn frame(output: &Path, frame: i64) -> Yuv {
    media::frame_at(output, (frame as f64 - 0.25) / FPS)
}

/// Output frame `at` shows source frame `source` of the clip of `chroma`.
fn assert_shows(output: &Path, at: i64, chroma: (u8, u8), source: i64, what: &str) {
    let yuv = frame(output, at);
    let same_clip = (yuv.u as i32 - chroma.0 as i32).abs() <= 10 && (yuv.v as i32 - chroma.1 as i32).abs() <= 10;
    assert!(same_clip, "{what}: frame {at} shows another clip than {chroma:?}: {yuv}");
    let shown = media::counter_frame(yuv.y);
    let message = format!("{what}: frame {at} shows source frame {shown:.1}, not {source}: {yuv}");
    assert!((shown - source as f64).abs() <= 0.6, "{message}");
}

/// Exit 4, the failure's message naming `pointer` and saying `says`, and no output.
fn assert_refused(run: &Run, pointer: &str, says: &str) {
    assert_eq!(run.code, Some(4), "{}", run.describe());
    let error = run.error();
    assert!(error.contains(pointer) && error.contains(says), "the refusal names {pointer} and says {says:?}: {error}");
    assert!(!run.output.exists(), "a refused job stores no video");
}

const LIAR: (u8, u8) = (96, 160);

/// An MP4 whose `stss` lists a keyframe every 30 frames while its real IDRs are at
/// frames 0 and 60: a move from frame 45 would seek to frame 30, a P-frame, and the
/// decoder would drop every frame up to 60. The job seeks by the bitstream's keyframes.
#[test]
fn a_lying_keyframe_index_is_not_seeked_by() {
    let folder = Folder::new();
    media::make_lying_keyframe_clip(&folder.path("media/liar.mp4"), LIAR, 108, (320, 180), 60, 30);
    let listed = Command::new(media::ffprobe_binary())
        .args(["-v", "error", "-fflags", "+noparse", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=flags", "-of", "csv=p=0"])
        .arg(folder.path("media/liar.mp4"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    let listed: Vec<usize> = listed.lines().enumerate().filter(|(_, f)| f.starts_with('K')).map(|(i, _)| i).collect();
    assert_eq!(listed, [0, 30, 60, 90], "the container lists a keyframe every 30 frames");

    let moves = vec![cut(0, "media/liar.mp4", 0.0, 1.0, 1.5), cut(1, "media/liar.mp4", 1.0, 1.0, 0.5)];
    let run = folder.run(&blueprint("liar-1", moves, (320, 180), "output/liar.mp4"), &[]);
    if run.code == Some(4) {
        return assert_refused(&run, "/moves/0/video_path", "keyframe index does not match its frames");
    }
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(media::probe(&run.output).video().packets(), 60);
    for at in [0, 10, 29] {
        assert_shows(&run.output, at, LIAR, 45 + at, "the move from frame 45");
    }
    for at in [30, 45, 59] {
        assert_shows(&run.output, at, LIAR, at - 30 + 15, "the move from frame 15");
    }
}

const OWN: (u8, u8) = (160, 96);
const FOREIGN: (u8, u8) = (96, 96);
const PROFILE: &str = "h264-320x180-30fps-2000k-g15-r4";

/// A counter clip `media/own.mp4` prepared for a 320x180 blueprint of two cuts of it: from
/// frame 0 (on the prepared clip's GOP grid: 0, 8, then every 15) and from frame 18 (off
/// it: the job renders frames 18 to 22 and copies the GOPs from 23).
fn prepared_library() -> (Folder, Value) {
    let folder = Folder::new();
    media::make_counter_clip(&folder.path("media/own.mp4"), OWN, 108, (320, 180));
    let moves = vec![cut(0, "media/own.mp4", 0.0, 1.5, 0.0), cut(1, "media/own.mp4", 1.5, 1.5, 0.6)];
    let blueprint = blueprint("prepared-1", moves, (320, 180), "output/own.mp4");
    let (code, summary) = folder.prepare(&blueprint);
    assert_eq!((code, summary["prepared"].as_u64()), (Some(0), Some(1)), "{summary}");
    assert_eq!(summary["profile_id"], PROFILE);
    (folder, blueprint)
}

/// The video of [`prepared_library`]'s blueprint, every frame its own.
fn assert_own_frames(run: &Run) {
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(media::probe(&run.output).video().packets(), 90);
    for at in [0, 14, 15, 30, 44] {
        assert_shows(&run.output, at, OWN, at, "the first cut");
    }
    for at in [45, 50, 60, 89] {
        assert_shows(&run.output, at, OWN, at - 45 + 18, "the second cut");
    }
}

/// What `LocalFolder::identity` says of `path`.
fn local_identity(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).unwrap();
    let modified = metadata.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let changed = i128::from(metadata.ctime()) * 1_000_000_000 + i128::from(metadata.ctime_nsec());
    let (size, inode, device) = (metadata.len(), metadata.ino(), metadata.dev());
    format!("size {size} modified {modified} changed {changed} inode {inode} device {device}")
}

/// `path` rewritten in place (the same inode) with `bytes`, padded to its size with a
/// `free` box, and given its modification time back: what `touch -r` or `exiftool -P`
/// leave.
fn rewrite_keeping_size_and_time(path: &Path, mut bytes: Vec<u8>) {
    let (size, modified) = {
        let metadata = std::fs::metadata(path).unwrap();
        (metadata.len(), metadata.modified().unwrap())
    };
    let padding = size.checked_sub(bytes.len() as u64).filter(|p| *p >= 8).expect("the new content is smaller");
    bytes.extend_from_slice(&(padding as u32).to_be_bytes());
    bytes.extend_from_slice(b"free");
    bytes.resize(size as usize, 0);
    std::fs::write(path, bytes).unwrap();
    std::fs::File::options().write(true).open(path).unwrap().set_modified(modified).unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), size);
}

/// `path` replaced by a short video of `FOREIGN` frames, of its size and time.
fn swap_for_a_foreign_video(path: &Path) {
    // 30 frames of video alone, coarsely encoded: smaller than the prepared clip.
    let foreign = path.with_extension("foreign.mp4");
    let (u, v) = FOREIGN;
    let picture = format!("geq=lum='16+2*N':cb={u}:cr={v},scale=320:180:flags=neighbor,format=yuv420p");
    let made = Command::new(media::ffmpeg_binary())
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "color=c=black:s=64x36:r=30:d=1", "-vf", &picture])
        .args(["-frames:v", "30", "-c:v", "libx264", "-preset", "veryfast", "-crf", "30"])
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let bytes = std::fs::read(&foreign).unwrap();
    std::fs::remove_file(&foreign).unwrap();
    rewrite_keeping_size_and_time(path, bytes);
}

/// A prepared clip swapped for another video of the same size and modification time,
/// and then also its manifest's record of its identity rewritten: the job never copies
/// the foreign frames; it renders the original clip.
#[test]
fn a_prepared_clip_swapped_for_another_video_is_not_copied() {
    let (folder, blueprint) = prepared_library();
    let prepared = folder.path(&format!("prepared/{PROFILE}/media/own.mp4"));
    let run = folder.run(&blueprint, &[]);
    assert_eq!(run.prepared_clips(), 1, "{}", run.describe());
    assert_own_frames(&run);

    swap_for_a_foreign_video(&prepared);
    let run = folder.run(&blueprint, &[]);
    assert_own_frames(&run);

    // The manifest too (whoever can write the data folder can write it).
    let manifest_path = folder.path(&format!("prepared/{PROFILE}/media/own.mp4.json"));
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["prepared_identity"] = json!(local_identity(&prepared));
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let run = folder.run(&blueprint, &[]);
    assert_own_frames(&run);
    assert_eq!(run.prepared_clips(), 0, "the prepared clip is set aside: {}", run.describe());
    assert!(run.stderr.contains("not as prepared"), "the log says why: {}", run.stderr);
}

/// A prepared clip overwritten after its manifest by another clip prepared at the same
/// profile, with as many frames (so it passes every check of the profile): the manifest's
/// record of the prepared clip's own identity no longer matches, and the job renders the
/// original instead of copying the other clip's frames.
#[test]
fn a_prepared_clip_overwritten_after_its_manifest_is_not_used() {
    let (folder, blueprint) = prepared_library();
    media::make_counter_clip(&folder.path("media/foreign.mp4"), FOREIGN, 108, (320, 180));
    let other = one_cut_of("media/foreign.mp4");
    let (code, summary) = folder.prepare(&other);
    assert_eq!((code, summary["prepared"].as_u64()), (Some(0), Some(1)), "{summary}");
    let own = folder.path(&format!("prepared/{PROFILE}/media/own.mp4"));
    std::fs::copy(folder.path(&format!("prepared/{PROFILE}/media/foreign.mp4")), &own).unwrap();
    let run = folder.run(&blueprint, &[]);
    assert_own_frames(&run);
    assert_eq!(run.prepared_clips(), 0, "the overwritten prepared clip is stale: {}", run.describe());
}

/// One 3-second cut of `clip` at [`prepared_library`]'s profile.
fn one_cut_of(clip: &str) -> Value {
    blueprint("prepared-2", vec![cut(0, clip, 0.0, 3.0, 0.0)], (320, 180), "output/other.mp4")
}

/// A manifest edited to say its clip has a keyframe every frame: the GOP is the
/// profile's, and a manifest that says another is stale.
#[test]
fn a_manifests_gop_is_not_believed() {
    let (folder, blueprint) = prepared_library();
    let manifest_path = folder.path(&format!("prepared/{PROFILE}/media/own.mp4.json"));
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["gop_frames"] = json!(1);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let run = folder.run(&blueprint, &[]);
    assert_own_frames(&run);
    let mut decode = Command::new(media::ffmpeg_binary());
    let decode = decode.args(["-v", "error", "-i"]).arg(&run.output).args(["-f", "null", "-"]).output().unwrap();
    assert!(decode.stderr.is_empty(), "the video decodes cleanly: {}", String::from_utf8_lossy(&decode.stderr));
}

/// A source edited in place after it was prepared, keeping its size and modification
/// time: its prepared clip is stale, and the job shows the source's new frames.
#[test]
fn a_source_edited_in_place_keeping_size_and_time_is_not_served_stale() {
    let (folder, blueprint) = prepared_library();
    let source = folder.path("media/own.mp4");
    let edited = folder.path("edited.mp4");
    media::make_counter_clip(&edited, FOREIGN, 90, (320, 180));
    rewrite_keeping_size_and_time(&source, std::fs::read(&edited).unwrap());
    let run = folder.run(&blueprint, &[]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(run.prepared_clips(), 0, "{}", run.describe());
    assert_shows(&run.output, 0, FOREIGN, 0, "the edited source");
    assert_shows(&run.output, 60, FOREIGN, 60 - 45 + 18, "the edited source");
}

/// A clip whose video starts 0.52 s into its MP4 (an edit list): `prepare` leaves it out,
/// saying why, and the job renders it as it does without prepared clips, frame for frame.
#[test]
fn a_clip_starting_late_in_its_file_is_not_prepared() {
    let folder = Folder::new();
    let made = folder.path("made.mp4");
    media::make_counter_clip(&made, OWN, 108, (320, 180));
    let copied = Command::new(media::ffmpeg_binary())
        .args(["-v", "error", "-y", "-i"])
        .arg(&made)
        .args(["-itsoffset", "0.52", "-i"])
        .arg(&made)
        .args(["-map", "1:v", "-map", "0:a", "-c", "copy"])
        .arg(folder.path("media/late.mp4"))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    let probe = media::probe(&folder.path("media/late.mp4"));
    let start: f64 = probe.video()["start_time"].as_str().unwrap().parse().unwrap();
    assert!((start - 0.52).abs() < 0.01, "the video starts 0.52 s in: {start}");

    let moves = vec![cut(0, "media/late.mp4", 0.0, 1.5, 0.0), cut(1, "media/late.mp4", 1.5, 1.5, 0.6)];
    let full = folder.run(&blueprint("late-1", moves.clone(), (320, 180), "output/full.mp4"), &["--prepared", "off"]);
    assert_eq!(full.code, Some(0), "{}", full.describe());
    let blueprint = blueprint("late-1", moves, (320, 180), "output/late.mp4");
    let (code, summary) = folder.prepare(&blueprint);
    assert_eq!((code, summary["prepared"].as_u64()), (Some(0), Some(0)), "{summary}");
    assert_eq!(summary["not_preparable"][0]["key"], "media/late.mp4", "{summary}");
    let reason = summary["not_preparable"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("starts 0.519 s into the file"), "{summary}");

    let run = folder.run(&blueprint, &[]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(run.prepared_clips(), 0, "{}", run.describe());
    for at in [0, 20, 44, 46, 60, 89] {
        let (expected, shown) = (frame(&full.output, at), frame(&run.output, at));
        assert!(expected.y.abs_diff(shown.y) <= 1, "frame {at}: {shown}, without prepared clips {expected}");
    }
}

/// A 64-channel WAV song: FFmpeg's resampler cannot mix it down to stereo. Refused at
/// the probe (exit 4, `/audio_path`), not failed in a step (exit 5, retried).
#[test]
fn a_song_with_more_channels_than_can_be_mixed_down_is_refused() {
    let folder = Folder::new();
    media::make_counter_clip(&folder.path("media/own.mp4"), OWN, 60, (320, 180));
    let channels = vec!["0.1*sin(2*PI*440*t)"; 64].join("|");
    let made = Command::new(media::ffmpeg_binary())
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &format!("aevalsrc={channels}:s=48000:d=3")])
        .args(["-c:a", "pcm_s16le"])
        .arg(folder.path("media/wide.wav"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(media::probe(&folder.path("media/wide.wav")).audio().int("channels"), 64);
    let moves = vec![cut(0, "media/own.mp4", 0.0, 1.5, 0.0)];
    let mut blueprint = blueprint("wide-1", moves, (320, 180), "output/wide.mp4");
    blueprint["audio_path"] = json!("media/wide.wav");
    let run = folder.run(&blueprint, &[]);
    assert_refused(&run, "/audio_path", "its audio has 64 channels");
}

/// A clip of `size` coded pixels, each shown `sar` as wide as high (H.264's VUI and
/// MP4's `pasp`): black with a white box over the middle half of its coded width, with
/// a song-like audio track, 1.5 s at 30 fps.
fn make_anamorphic_clip(path: &Path, size: (u32, u32), sar: &str) {
    let (w, h) = size;
    let video = format!(
        "color=c=black:s={w}x{h}:r=30:d=1.5,drawbox=x={}:y=0:w={}:h={h}:color=white:t=fill,setsar={sar},format=yuv420p",
        w / 4,
        w / 2
    );
    let made = Command::new(media::ffmpeg_binary())
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &video])
        .args(["-f", "lavfi", "-i", "sine=frequency=700:duration=1.5"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-crf", "10", "-c:a", "aac", "-shortest"])
        .arg(path)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
}

/// A 480x360 clip of 4:3 pixels shows as 640x360: in a 640x360 output it fills the frame,
/// and its box (the middle half) spans columns 160 to 480, not 200 to 440 as when the
/// clip was fitted by its coded size (pillarboxed to 480 wide, squeezed).
#[test]
fn an_anamorphic_clip_is_shown_at_its_display_aspect() {
    let folder = Folder::new();
    make_anamorphic_clip(&folder.path("media/wide.mp4"), (480, 360), "4/3");
    assert_eq!(media::probe(&folder.path("media/wide.mp4")).video()["sample_aspect_ratio"], "4:3");
    let moves = vec![cut(0, "media/wide.mp4", 0.0, 1.0, 0.0)];
    let run = folder.run(&blueprint("anamorphic-1", moves, (640, 360), "output/wide.mp4"), &[]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let video = media::probe(&run.output);
    assert_eq!((video.video().int("width"), video.video().int("height")), (640, 360));
    // Strips 12 columns wide, just inside and just outside each edge of the box.
    for (x, white) in [(146, false), (164, true), (464, true), (482, false), (4, false), (624, false)] {
        let strip = media::frame_region_at(&run.output, 0.5, &format!("crop=12:200:{x}:80"));
        let what = if white { "the box" } else { "black" };
        assert_eq!(strip.y > 128, white, "columns {x} to {} show {what}: {strip}", x + 12);
    }
}

/// A clip whose pixels are 10 times as wide as high is no footage: refused at the probe
/// with exit 4 and the pointer of the move that first uses it.
#[test]
fn a_clip_with_an_absurd_sample_aspect_ratio_is_refused() {
    let folder = Folder::new();
    media::make_counter_clip(&folder.path("media/own.mp4"), OWN, 60, (320, 180));
    make_anamorphic_clip(&folder.path("media/smear.mp4"), (96, 180), "10");
    assert_eq!(media::probe(&folder.path("media/smear.mp4")).video()["sample_aspect_ratio"], "10:1");
    let moves = vec![cut(0, "media/own.mp4", 0.0, 1.0, 0.0), cut(1, "media/smear.mp4", 1.0, 1.0, 0.0)];
    let run = folder.run(&blueprint("smear-1", moves, (320, 180), "output/smear.mp4"), &[]);
    assert_refused(&run, "/moves/1/video_path", "its sample aspect ratio is 10:1");
}

/// `source` copied with its video 0.52 s late and its audio from 0, into `late` (MP4:
/// an edit list; Matroska: the video's timestamps), the audio encoded with `audio`.
fn make_late_clip(source: &Path, late: &Path, audio: &str) {
    let copied = Command::new(media::ffmpeg_binary())
        .args(["-v", "error", "-y", "-i"])
        .arg(source)
        .args(["-itsoffset", "0.52", "-i"])
        .arg(source)
        .args(["-map", "1:v", "-map", "0:a", "-c:v", "copy", "-c:a", audio])
        .arg(late)
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    let start: f64 = media::probe(late).video()["start_time"].as_str().unwrap().parse().unwrap();
    // Matroska counts in milliseconds from the audio's first packet, AAC's priming included.
    assert!((start - 0.52).abs() < 0.03, "the video starts about 0.52 s in: {start}");
}

/// A move's `trim_start` counts from the clip's first video frame, whatever the file's
/// time says: in a clip whose video starts 0.52 s into its file, trims 0, 0.6 and 1.0
/// show source frames 0, 18 and 30 (an input seek counts from the file's start: frame 3
/// and 15 for the later two before the staged copy was shifted), in MP4 and Matroska,
/// also with an audio codec MP4 cannot hold (FLAC: the shifted copy leaves it out).
#[test]
fn a_clip_starting_late_in_its_file_is_trimmed_from_its_first_frame() {
    let folder = Folder::new();
    let made = folder.path("made.mp4");
    media::make_counter_clip(&made, OWN, 108, (320, 180));
    let late = [
        ("media/late.mp4", "copy", "MP4"),
        ("media/late.mkv", "copy", "Matroska"),
        ("media/flac.mkv", "flac", "Matroska with FLAC"),
    ];
    for (clip, audio, container) in late {
        make_late_clip(&made, &folder.path(clip), audio);
        let moves = vec![cut(0, clip, 0.0, 1.0, 0.0), cut(1, clip, 1.0, 1.0, 0.6), cut(2, clip, 2.0, 1.0, 1.0)];
        let run = folder.run(&blueprint("late-2", moves, (320, 180), "output/late.mp4"), &["--prepared", "off"]);
        assert_eq!(run.code, Some(0), "{}", run.describe());
        for (at, source) in [(0, 0), (1, 1), (15, 15), (29, 29), (30, 18), (31, 19), (59, 47), (60, 30), (89, 59)] {
            assert_shows(&run.output, at, OWN, source, &format!("{container}, trims 0, 0.6 and 1"));
        }
    }
}
