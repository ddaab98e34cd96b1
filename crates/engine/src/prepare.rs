//! `prepare`: re-encodes library clips once at an output profile (`br_plan::prepare`),
//! so later jobs can copy their packets from a keyframe on. Each prepared clip is stored as
//! `prepared/<profile-id>/<key>` with a manifest beside it (`<key>.json`).
//!
//! Why it is safe to run twice at once, to interrupt and to run again: every clip is
//! independent; the prepared clip is stored first and its manifest last, each
//! atomically, so a manifest always describes a whole clip; a clip whose manifest names
//! the source's current identity and this profile is skipped. Two runs preparing the
//! same clip write the same bytes. A manifest also records the prepared clip's own
//! identity, so a reader can tell a clip replaced after its manifest was written.

use std::path::Path;
use std::time::Instant;

use br_plan::prepare::Profile;
use br_plan::{Plan, Step, VideoFacts};
use br_policy::PolicyLimits;
use serde_json::json;

use crate::cancel::Cancel;
use crate::ffmpeg::{ChildLimits, Runner};
use crate::media::Keyframes;
use crate::storage::{Storage, StorageError};
use crate::work::{PathTable, Staging};
use crate::{exit, media};

/// Which share of the clips this process prepares: clip `i` (in key order) when
/// `i % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// `I/N`, with `0 <= I < N <= 10000` (Cloud Run's largest task array).
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let parsed = text
            .split_once('/')
            .and_then(|(index, count)| Some((index.trim().parse().ok()?, count.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count && count <= 10_000 => Ok(Shard { index, count }),
            _ => Err(ShardError { text: text.to_owned() }),
        }
    }

    fn takes(self, position: usize) -> bool {
        position % self.count as usize == self.index as usize
    }
}

/// Why one clip could not be prepared (the message its report line gives).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("work folder: {0}")]
    WorkFolder(#[source] std::io::Error),
    #[error(transparent)]
    Media(#[from] media::MediaError),
    /// The clip cannot be shown or decoded as the job would need.
    #[error("{0}")]
    Unusable(String),
    #[error(transparent)]
    Policy(#[from] br_policy::PolicyViolation),
    #[error(transparent)]
    Ffmpeg(#[from] crate::ffmpeg::FfmpegError),
    #[error("writing {what}: {source}")]
    Write { what: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
}

/// A shard that is not `I/N` with `0 <= I < N <= 10000`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a shard I/N with 0 <= I < N <= 10000")]
pub struct ShardError {
    pub text: String,
}

/// Where a clip's prepared version and its manifest live.
pub fn prepared_key(profile: &Profile, key: &str) -> String {
    format!("prepared/{}/{key}", profile.id())
}

pub fn manifest_key(profile: &Profile, key: &str) -> String {
    format!("{}.json", prepared_key(profile, key))
}

/// Says that `key` was prepared for some profile: a job that must probe its first clip
/// to know its profile looks here first, so jobs over a library never prepared cost one
/// small request, not a download.
pub fn source_marker_key(key: &str) -> String {
    format!("prepared/sources/{key}.prepared")
}

/// What happened to one clip.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Prepared {
        frames: u64,
        seconds: f64,
    },
    UpToDate,
    /// A clip whose prepared frames could not be the ones a job shows (see
    /// [`rate_mismatch`]): jobs render it in full.
    NotPreparable(String),
    Failed(String),
}

/// Why a clip at `source_fps` cannot be prepared for `profile`, if it cannot. A move
/// renders its clip on a grid that starts at the first source frame of its window; a
/// prepared clip's grid starts at the clip's start. At the profile's own rate both
/// grids fall on the source's frames and agree; at another rate they are offset by a
/// fraction of a frame, and a copied GOP would show a neighbouring source frame now
/// and then (measured: 25 fps into 29.97, one frame in a hundred).
fn rate_mismatch(source_fps: f64, profile: &Profile) -> Option<String> {
    let source = br_plan::FrameRate::from_fps(source_fps);
    (source != profile.rate).then(|| {
        format!(
            "its frame rate ({}) is not the profile's ({}); a job renders its frames in full",
            source.as_ffmpeg(),
            profile.rate.as_ffmpeg()
        )
    })
}

/// How a staged prepared clip differs from what its profile and manifest say, if it does:
/// its video codec, size and rate must be the profile's, its packets as many as the
/// manifest's `frames`, and its keyframes (as its container lists them, and as its
/// bitstream starts GOPs) exactly on its grid (packet 0, `first_gop_frames`, then every
/// `gop_frames`). Anything
/// else (another video swapped in, a manifest edited) would have the job copy foreign
/// or undecodable GOPs.
pub fn mismatch(
    profile: &Profile,
    clip: &br_plan::PreparedClip,
    video: &VideoFacts,
    keyframes: &Keyframes,
) -> Option<String> {
    if video.codec != "h264" || (video.width, video.height) != (profile.width, profile.height) {
        return Some(format!(
            "it is {} {}x{}, the profile {}x{} H.264",
            video.codec, video.width, video.height, profile.width, profile.height
        ));
    }
    let rate = br_plan::FrameRate::from_fps(video.frame_rate);
    if rate != profile.rate {
        return Some(format!("its frame rate is {}, the profile's {}", rate.as_ffmpeg(), profile.rate.as_ffmpeg()));
    }
    if keyframes.packets != clip.frames {
        return Some(format!("it has {} frames, its manifest says {}", keyframes.packets, clip.frames));
    }
    let grid: Vec<u64> = (0..keyframes.packets).filter(|&packet| clip.is_keyframe(packet)).collect();
    for (whose, found) in [("container's index", &keyframes.container), ("bitstream", &keyframes.bitstream)] {
        let at: Vec<u64> = found.iter().map(|(index, _)| *index).collect();
        if at != grid {
            let off = at.iter().chain(&grid).find(|index| !(at.contains(index) && grid.contains(index)));
            let off = off.unwrap_or(&0);
            let (first, gop) = (clip.first_gop_frames, clip.gop_frames);
            return Some(format!(
                "its {whose} has keyframes off its GOP grid (0, {first}, then every {gop}) at frame {off}"
            ));
        }
    }
    None
}

/// Why a clip whose video starts `start` seconds into its file (an MP4 edit list, a
/// Matroska offset) cannot be prepared at `rate`, if it cannot. A job's segments count
/// the clip's frames from its first one; a prepared clip is made on the file's grid, on
/// which a start off the frame grid shifts every frame, and a copied GOP would show a
/// neighbouring frame. Half a frame either way is taken as none.
fn start_offset(start: f64, rate: br_plan::FrameRate) -> Option<String> {
    let frame = rate.seconds(1);
    (start.abs() > frame / 2.0)
        .then(|| format!("its video starts {start:.3} s into the file, not at 0; a job renders its frames in full"))
}

pub struct Preparer<'a> {
    pub storage: &'a dyn Storage,
    pub runner: &'a Runner,
    pub ffprobe: &'a Path,
    pub work_root: &'a Path,
    pub cancel: &'a Cancel,
}

impl Preparer<'_> {
    /// Prepares this shard's share of `keys` (sorted and deduplicated first, so every
    /// task of an array agrees on the order), one clip after another. Prints a JSON
    /// summary on stdout; the exit code says whether every clip is prepared.
    /// Prepares this shard's share of `keys`: the exit code and the JSON summary to print.
    pub async fn prepare_all(&self, profile: &Profile, keys: &[String], shard: Shard) -> (u8, serde_json::Value) {
        let started = Instant::now();
        let mut keys: Vec<&String> = keys.iter().filter(|key| !key.starts_with("prepared/")).collect();
        keys.sort();
        keys.dedup();
        let mine: Vec<&String> =
            keys.iter().enumerate().filter(|(position, _)| shard.takes(*position)).map(|(_, key)| *key).collect();
        let shard_text = format!("{}/{}", shard.index, shard.count);
        tracing::info!(profile = %profile.id(), clips = keys.len(), this_shard = mine.len(), shard = %shard_text, "preparing");
        let (mut prepared, mut up_to_date, mut failed, mut not_preparable) = (0usize, 0usize, Vec::new(), Vec::new());
        for (done, key) in mine.iter().enumerate() {
            if let Some(reason) = self.cancel.reason() {
                failed.push(json!({"key": key, "error": format!("cancelled: {reason}")}));
                break;
            }
            let outcome = self.prepare_one(profile, key).await;
            match &outcome {
                Outcome::Prepared { frames, seconds } => {
                    prepared += 1;
                    tracing::info!(key = %key, frames, seconds, progress = format!("{}/{}", done + 1, mine.len()), "prepared");
                }
                Outcome::UpToDate => {
                    up_to_date += 1;
                    tracing::info!(key = %key, progress = format!("{}/{}", done + 1, mine.len()), "already prepared");
                }
                Outcome::NotPreparable(reason) => {
                    tracing::warn!(key = %key, "not prepared: {reason}");
                    not_preparable.push(json!({"key": key, "reason": reason}));
                }
                Outcome::Failed(error) => {
                    tracing::error!(key = %key, "cannot prepare: {error}");
                    failed.push(json!({"key": key, "error": error}));
                }
            }
        }
        let summary = json!({
            "profile_id": profile.id(),
            "shard": format!("{}/{}", shard.index, shard.count),
            "clips": mine.len(),
            "prepared": prepared,
            "up_to_date": up_to_date,
            "not_preparable": not_preparable,
            "failed": failed,
            "seconds": started.elapsed().as_secs_f64(),
        });
        let code = match (self.cancel.reason(), failed.is_empty()) {
            (Some(_), _) => exit::CANCELLED,
            (None, true) => exit::OK,
            (None, false) => exit::MEDIA,
        };
        (code, summary)
    }

    pub async fn prepare_one(&self, profile: &Profile, key: &str) -> Outcome {
        match self.try_prepare(profile, key).await {
            Ok(outcome) => outcome,
            Err(error) => Outcome::Failed(error.to_string()),
        }
    }

    async fn try_prepare(&self, profile: &Profile, key: &str) -> Result<Outcome, PrepareError> {
        let started = Instant::now();
        let source = self.storage.identity(key).await?;
        let manifest_key = manifest_key(profile, key);
        let work = tempfile::Builder::new()
            .prefix("blueprint-runner-prepare-")
            .tempdir_in(self.work_root)
            .map_err(PrepareError::WorkFolder)?;
        // Whatever this clip charged goes with its work folder, however it ends.
        let ledger = self.runner.ledger.as_ref();
        let _release = ReleaseUnder { ledger, folder: work.path() };
        let found = read_manifest(self.storage, &manifest_key).await?;
        if let Some(manifest) = found {
            if manifest.source_identity == source && manifest.profile_id == profile.id() {
                return Ok(Outcome::UpToDate);
            }
        }
        let input = work.path().join("source");
        // The clip must fit beside the step that re-encodes it.
        let encode = crate::budget::estimate::step_bytes(profile.width, profile.height);
        let gate = crate::budget::ledger::Reserving::new(ledger, encode, ledger.ceiling(encode, 0));
        self.storage.fetch(key, &input, &gate).await?;
        gate.into_file(&input);
        let limits = ChildLimits::reader(ledger.free().min(media::PROBE_MEMORY), media::PROBE_TIMEOUT);
        let probed = media::probe_container(self.ffprobe, &input, key, limits).await?;
        if let Some(reason) = probed.unshowable_pixels() {
            return Err(PrepareError::Unusable(format!("{key}: {reason}")));
        }
        let facts = probed.facts;
        let Some(video) = &facts.video else {
            return Err(PrepareError::Unusable(format!("{key} has no video stream")));
        };
        if let Some(reason) = crate::formats::undecodable(&facts, crate::formats::Role::Clip) {
            return Err(PrepareError::Unusable(format!("{key}: {reason}")));
        }
        if let Some(reason) = rate_mismatch(video.frame_rate, profile) {
            return Ok(Outcome::NotPreparable(reason));
        }
        if let Some(reason) = start_offset(probed.video_start, profile.rate) {
            return Ok(Outcome::NotPreparable(reason));
        }
        let seconds = if video.duration > 0.0 { video.duration } else { facts.duration };
        let step = Step::Ffmpeg(profile.invocation(&format!("prepare {key}"), seconds));
        let plan = Plan { temps: Vec::new(), steps: vec![step], warnings: Vec::new() };
        let limits = PolicyLimits::for_job(profile.width, profile.height, seconds);
        let checked = br_policy::check(&plan, 1, &limits)?;
        let output = work.path().join("prepared.mp4");
        let paths = PathTable { inputs: vec![input], work: work.path().to_owned(), output: output.clone() };
        let rates = crate::schedule::FileRates::of_output(profile.video_bitrate, PREPARED_AUDIO_BITS);
        self.runner
            .run(
                &checked,
                &paths,
                seconds,
                (profile.width, profile.height),
                rates,
                &[],
                &NoRefetch,
                &crate::work::NoCache,
                self.cancel,
                |_| {},
            )
            .await?;
        let limits = ChildLimits::reader(ledger.free().min(media::PROBE_MEMORY), media::PROBE_TIMEOUT);
        let frames = media::count_video_frames(self.ffprobe, &output, limits).await?;
        let prepared_key = prepared_key(profile, key);
        self.storage.store(&output, &prepared_key).await?;
        let prepared_identity = self.storage.identity(&prepared_key).await?;
        let manifest = PreparedManifest {
            manifest_version: PreparedManifest::VERSION,
            source_key: key.to_owned(),
            source_identity: source,
            prepared_key,
            prepared_identity,
            profile_id: profile.id(),
            settings: profile.settings().into_iter().map(|(name, value)| (name.to_owned(), value)).collect(),
            frames,
            gop_frames: br_plan::prepare::GOP_FRAMES,
            first_gop_frames: Some(profile.first_gop_frames()),
            source_seconds: seconds,
        };
        let manifest_file = work.path().join("manifest.json");
        let text = serde_json::to_string(&manifest)
            .map_err(|e| PrepareError::Write { what: "the manifest", source: e.into() })?;
        std::fs::write(&manifest_file, text)
            .map_err(|e| PrepareError::Write { what: "the manifest", source: e.into() })?;
        self.storage.store(&manifest_file, &manifest_key).await?;
        std::fs::write(&manifest_file, profile.id())
            .map_err(|e| PrepareError::Write { what: "the marker", source: e.into() })?;
        self.storage.store(&manifest_file, &source_marker_key(key)).await?;
        Ok(Outcome::Prepared { frames, seconds: started.elapsed().as_secs_f64() })
    }
}

/// A prepared clip's manifest (`prepared/<profile>/<key>.json`), written by `prepare` once
/// the clip is stored: what a job checks before it copies from the prepared clip. A
/// manifest that does not read as this is no manifest: the original clip is used.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PreparedManifest {
    pub manifest_version: u32,
    pub source_key: String,
    /// The source's identity when it was prepared ([`Storage::identity`]): a source
    /// changed since makes the prepared clip stale.
    pub source_identity: String,
    pub prepared_key: String,
    /// The prepared object's own identity: a prepared clip replaced after its manifest is
    /// not the one the manifest describes.
    pub prepared_identity: String,
    /// [`br_plan::prepare::Profile::id`], recipe version included.
    pub profile_id: String,
    /// The encoder's settings, for operators ([`br_plan::prepare::Profile::settings`]).
    pub settings: std::collections::BTreeMap<String, String>,
    /// Video frames of the prepared clip, as counted after encoding.
    pub frames: u64,
    pub gop_frames: u32,
    /// Frames in the first GOP (recipe 4 on); absent in older manifests, whose first GOP is
    /// `gop_frames` long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_gop_frames: Option<u32>,
    /// The source's length in seconds (its video's, else its container's).
    pub source_seconds: f64,
}

impl PreparedManifest {
    pub const VERSION: u32 = 1;
}

/// The largest manifest or source marker read: they are the host's own records of a few
/// hundred bytes. A larger object is not one of them and is never held whole.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// A prepared clip's audio is at most AAC's usual rate (the profile copies or encodes it).
const PREPARED_AUDIO_BITS: u64 = 320_000;

/// Releases every charge under `folder` when dropped: prepare's ledger outlives the
/// folders of its clips.
struct ReleaseUnder<'a> {
    ledger: &'a crate::budget::ledger::Ledger,
    folder: &'a Path,
}

impl Drop for ReleaseUnder<'_> {
    fn drop(&mut self) {
        self.ledger.release_under(self.folder);
    }
}

/// The manifest at `key`, read into memory (never into the work folder) through
/// [`Storage::read_small`], when there is one and it is JSON of a sane size; a broken or
/// oversized one counts as none (an oversized one is read only one byte past the limit).
/// Errors other than "not found" are the storage's.
pub async fn read_manifest(storage: &dyn Storage, key: &str) -> Result<Option<PreparedManifest>, StorageError> {
    let Some(bytes) =
        crate::storage::read_record(storage, key, MAX_MANIFEST_BYTES, "a prepared clip's manifest").await?
    else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&bytes)
        .inspect_err(|error| tracing::info!(key, "not a prepared clip's manifest ({error}), ignored"))
        .ok())
}

type StagingFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, StorageError>> + Send + 'a>>;

/// A one-step plan reads its input once: nothing is ever fetched again.
struct NoRefetch;

impl Staging for NoRefetch {
    fn stage<'a>(&'a self, input: u32, _: &'a Path, _: u64) -> StagingFuture<'a> {
        let error = StorageError::Io {
            key: format!("input {input}"),
            store: "prepare".into(),
            message: "not staged".into(),
            source: None,
        };
        Box::pin(async move { Err(error) })
    }

    fn room_for(&self, _: u32) -> u64 {
        0
    }
}

/// The clips among listed `keys`: `.mp4` objects, not the prepared versions themselves
/// (`prepared/...` once `strip_prefix`, the backend's `data/`, is taken off).
pub fn clips_among(keys: Vec<String>, strip_prefix: &str) -> Vec<String> {
    keys.into_iter()
        .filter(|key| {
            let name =
                if strip_prefix.is_empty() { key.as_str() } else { key.strip_prefix(strip_prefix).unwrap_or(key) };
            let is_mp4 = std::path::Path::new(key).extension().is_some_and(|ext| ext.eq_ignore_ascii_case("mp4"));
            is_mp4 && !name.starts_with("prepared/") && !key.starts_with("prepared/")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_keeps_clips_and_leaves_prepared_ones_out() {
        let keys = [
            "data/a.mp4",
            "data/b.MP4",
            "data/song.mp3",
            "data/prepared/p/data/a.mp4",
            "prepared/p/a.mp4",
            "data/x.mp4.json",
        ];
        let keys = keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(clips_among(keys, "data/"), ["data/a.mp4", "data/b.MP4"]);
    }

    #[test]
    fn a_prepared_clip_must_be_its_profiles_and_manifests() {
        let rate = br_plan::FrameRate { num: 30, den: 1 };
        let profile = Profile::new(320, 180, rate, 2_000_000);
        let clip = br_plan::PreparedClip { profile_id: profile.id(), gop_frames: 15, first_gop_frames: 8, frames: 40 };
        let video = VideoFacts {
            codec: "h264".into(),
            width: 320,
            height: 180,
            frame_rate: 30.0,
            pixel_format: "yuv420p".into(),
            duration: 40.0 / 30.0,
        };
        let grid = |at: &[u64]| at.iter().map(|&i| (i, i as f64 / 30.0)).collect::<Vec<_>>();
        let keyframes = Keyframes { packets: 40, container: grid(&[0, 8, 23, 38]), bitstream: grid(&[0, 8, 23, 38]) };
        assert_eq!(mismatch(&profile, &clip, &video, &keyframes), None);
        // The even grid of older recipes is off this one's.
        let even = Keyframes { container: grid(&[0, 15, 30]), bitstream: grid(&[0, 15, 30]), ..keyframes.clone() };
        assert!(mismatch(&profile, &clip, &video, &even).unwrap().contains("at frame 15"));
        let older = br_plan::PreparedClip { first_gop_frames: 15, ..clip.clone() };
        assert_eq!(mismatch(&profile.with_even_grid(), &older, &video, &even), None);
        let small = VideoFacts { width: 160, height: 90, ..video.clone() };
        let why = mismatch(&profile, &clip, &small, &keyframes).unwrap();
        assert_eq!(why, "it is h264 160x90, the profile 320x180 H.264");
        let slow = VideoFacts { frame_rate: 25.0, ..video.clone() };
        assert!(mismatch(&profile, &clip, &slow, &keyframes).unwrap().contains("frame rate is 25"));
        let short = Keyframes { packets: 39, ..keyframes.clone() };
        assert_eq!(mismatch(&profile, &clip, &video, &short).unwrap(), "it has 39 frames, its manifest says 40");
        let listed = Keyframes { container: grid(&[0, 8, 10, 23, 38]), ..keyframes.clone() };
        let why = mismatch(&profile, &clip, &video, &listed).unwrap();
        assert!(why.contains("container's index has keyframes off") && why.contains("frame 10"), "{why}");
        let missing = Keyframes { bitstream: grid(&[0, 23, 38]), ..keyframes.clone() };
        assert!(mismatch(&profile, &clip, &video, &missing).unwrap().contains("(0, 8, then every 15) at frame 8"));
    }

    #[test]
    fn a_clip_whose_video_starts_late_in_its_file_is_not_preparable() {
        let rate = br_plan::FrameRate { num: 30, den: 1 };
        assert_eq!(start_offset(0.0, rate), None);
        assert_eq!(start_offset(0.016, rate), None, "under half a frame");
        assert_eq!(start_offset(-0.016, rate), None);
        let late = start_offset(0.52, rate).unwrap();
        assert!(late.starts_with("its video starts 0.520 s into the file"), "{late}");
        assert!(start_offset(0.017, rate).is_some() && start_offset(-0.05, rate).is_some());
    }

    #[test]
    fn shards_split_the_clips_without_overlap() {
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "0/0", "1", "-1/2", "a/b", "0/10001"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let shards: Vec<Shard> = (0..3).map(|index| Shard { index, count: 3 }).collect();
        for position in 0..20 {
            assert_eq!(shards.iter().filter(|shard| shard.takes(position)).count(), 1);
        }
    }
}
