//! The song's audio, kept in the storage for the next job on the same song: the finished
//! track a plan's song step writes (`prepared/audio/<digest>.<format>` with a manifest
//! beside it) and the song's loudness measurement (`prepared/loudness/<digest>.json`).
//!
//! What makes an entry trustworthy:
//! - its digest covers everything that determines it: the song object's address and
//!   identity ([`Storage::identity`]: generation in GCS; size, times and inode locally),
//!   FFmpeg's own build (its `-version` text), the step's whole command line as the host
//!   runs it (window, volume plan, gain, codec, rate, bitrate, the host's own flags), and
//!   [`RECIPE_VERSION`]; a guest names none of it and cannot choose a key;
//! - a manifest is written after its track, each atomically, and records the track's
//!   identity, size and SHA-256: a track replaced or damaged after its manifest, a
//!   manifest that is not this host's, a song rewritten since, all read as a miss (the
//!   step then runs, says why in the log, and writes the entry again);
//! - two jobs writing one entry at once write the same bytes (the same FFmpeg on the
//!   same command line); whichever manifest lands last names its own track, and a reader
//!   that finds the other's track checks its identity and encodes instead.
//!
//! A failure to read or write the cache never fails the job: it costs the encode.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use br_plan::{Arg, Loudness, Plan, Step, TempFormat};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ffmpeg::ChildLimits;
use crate::storage::{Storage, StorageError};
use crate::work::StepCache;

/// Bumped whenever the host changes how a cached song is made or checked in a way its
/// command line does not show: every earlier entry is then a miss.
pub const RECIPE_VERSION: u32 = 1;
/// Where the tracks and their manifests live (beside the prepared clips, whose profile
/// folders start with the codec's name).
pub const TRACKS_PREFIX: &str = "prepared/audio/";
/// Where the loudness measurements live.
pub const LOUDNESS_PREFIX: &str = "prepared/loudness/";
/// Steps of one plan whose output may be cached: the built-in planner has one song step;
/// a plugin's plan gets no more, so no job writes more than this many tracks.
const MOST_CACHED_STEPS: usize = 2;
/// A manifest or a measurement is a few hundred bytes of the host's own JSON.
const MAX_RECORD_BYTES: usize = 16 * 1024;
/// `ffmpeg -version` is a few KiB; its start takes milliseconds.
const VERSION_MEMORY: u64 = 64 << 20;
const VERSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The FFmpeg build a job runs, as a digest of its `-version` text; None when it cannot
/// be asked (the job then does without the cache).
pub async fn ffmpeg_identity(ffmpeg: &Path) -> Option<String> {
    let limits = ChildLimits::reader(VERSION_MEMORY, VERSION_TIMEOUT);
    let run = crate::ffmpeg::child_command(ffmpeg, limits)
        .args(["-hide_banner", "-version"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let why = match tokio::time::timeout(VERSION_TIMEOUT, run).await {
        Ok(Ok(output)) if output.status.success() && !output.stdout.is_empty() => {
            return Some(hex_digest(&output.stdout));
        }
        Ok(Ok(output)) => format!("`-version` ended with {} and {} bytes", output.status, output.stdout.len()),
        Ok(Err(error)) => format!("it cannot be run: {error}"),
        Err(_) => format!("`-version` did not answer within {} s", VERSION_TIMEOUT.as_secs()),
    };
    tracing::warn!(ffmpeg = %ffmpeg.display(), "cannot tell which FFmpeg this is ({why}): no audio cache");
    None
}

/// The song of one job as the cache knows it: its key, the storage's address and its
/// identity when the job started, and the FFmpeg that makes its entries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SongIdentity {
    pub key: String,
    pub address: String,
    pub identity: String,
    pub ffmpeg: String,
}

impl SongIdentity {
    /// The song at `key` now; None when the storage cannot say (no cache for this job).
    pub async fn of(storage: &dyn Storage, key: &str, ffmpeg: String) -> Option<SongIdentity> {
        match storage.identity(key).await {
            Ok(identity) => Some(SongIdentity { key: key.to_owned(), address: storage.url(key), identity, ffmpeg }),
            Err(error) => {
                tracing::info!(key, "cannot look the song up ({error}): no audio cache");
                None
            }
        }
    }

    /// Whether the song is still the object this identity was taken of: an entry is
    /// written only then (a song replaced while the job ran would file its audio under
    /// the identity of the song it replaced).
    async fn unchanged(&self, storage: &dyn Storage) -> bool {
        matches!(storage.identity(&self.key).await, Ok(now) if now == self.identity)
    }
}

/// A loudness measurement as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoudnessRecord {
    recipe: u32,
    digest: String,
    song_key: String,
    song_identity: String,
    loudness: Loudness,
}

/// The key of the song's loudness over `(seconds, song_seconds)` ([`crate::media::measure_loudness`]).
fn loudness_digest(song: &SongIdentity, (seconds, song_seconds): (f64, f64)) -> String {
    let material = serde_json::json!({
        "recipe": RECIPE_VERSION,
        "what": "loudness",
        "song": song,
        "seconds": format!("{seconds:.6}"),
        "song_seconds": format!("{song_seconds:.6}"),
        "filter": crate::formats::LOUDNESS_FILTER,
    });
    hex_digest(material.to_string().as_bytes())
}

/// Where the song's loudness over `lengths` is kept, and the digest that names it.
fn loudness_entry(song: &SongIdentity, lengths: (f64, f64)) -> (String, String) {
    let digest = loudness_digest(song, lengths);
    (format!("{LOUDNESS_PREFIX}{digest}.json"), digest)
}

pub fn loudness_key(song: &SongIdentity, lengths: (f64, f64)) -> String {
    loudness_entry(song, lengths).0
}

/// The song's loudness over `lengths` as an earlier job measured it, when its record is
/// there and is this song's, this FFmpeg's and this recipe's.
pub async fn cached_loudness(storage: &dyn Storage, song: &SongIdentity, lengths: (f64, f64)) -> Option<Loudness> {
    let (key, digest) = loudness_entry(song, lengths);
    let bytes = read_record(storage, &key).await?;
    let record: LoudnessRecord = match serde_json::from_slice(&bytes) {
        Ok(record) => record,
        Err(error) => {
            tracing::warn!(key, "not a loudness record ({error}): the song is measured");
            return None;
        }
    };
    let figures =
        [record.loudness.integrated, record.loudness.range, record.loudness.true_peak, record.loudness.seconds];
    let problem = if record.recipe != RECIPE_VERSION || record.digest != digest {
        Some("it is another recipe's or another song's")
    } else if record.song_key != song.key || record.song_identity != song.identity {
        Some("it names another song")
    } else if !figures.iter().all(|value| value.is_finite()) || record.loudness.seconds < 0.0 {
        Some("its figures are not numbers")
    } else {
        None
    };
    if let Some(problem) = problem {
        tracing::warn!(key, "the cached loudness is not this song's ({problem}): the song is measured");
        return None;
    }
    tracing::info!(key, song = %song.key, "the song's loudness from the audio cache");
    Some(record.loudness)
}

/// Keeps the song's measured loudness for later jobs, through a file in `work`.
pub async fn keep_loudness(
    storage: &dyn Storage,
    work: &Path,
    song: &SongIdentity,
    lengths: (f64, f64),
    loudness: Loudness,
) {
    if !song.unchanged(storage).await {
        tracing::info!(song = %song.key, "the song changed while it was measured: its loudness is not cached");
        return;
    }
    let (key, digest) = loudness_entry(song, lengths);
    let record = LoudnessRecord {
        recipe: RECIPE_VERSION,
        digest,
        song_key: song.key.clone(),
        song_identity: song.identity.clone(),
        loudness,
    };
    if let Err(error) = store_record(storage, work, &key, &record).await {
        tracing::warn!(key, "cannot cache the song's loudness: {error}");
    }
}

/// A cached track's manifest: written after the track, read before it is used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackManifest {
    pub recipe: u32,
    pub digest: String,
    pub song_key: String,
    pub song_identity: String,
    pub track_key: String,
    /// The track object's identity once stored: a track replaced since is not this one.
    pub track_identity: String,
    pub bytes: u64,
    pub sha256: String,
    /// The step's label, for operators.
    pub label: String,
}

/// Why a track was not taken from the cache.
enum Miss {
    /// No entry: the first job on this song with this step.
    Absent,
    /// An entry that is not this step's, or not what its manifest says.
    Unusable(String),
}

impl From<String> for Miss {
    fn from(why: String) -> Miss {
        Miss::Unusable(why)
    }
}

/// Why an entry could not be kept (logged; the job goes on).
#[derive(Debug, thiserror::Error)]
enum KeepError {
    #[error("the song changed while the job ran")]
    SongChanged,
    #[error("reading what the step wrote: {0}")]
    Read(#[source] std::io::Error),
    #[error("writing the record: {0}")]
    Record(#[source] std::io::Error),
    #[error("the record: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// One step whose output the cache may hold.
struct Entry {
    digest: String,
    track_key: String,
    manifest_key: String,
    label: String,
}

/// The audio cache of one job's plan: which steps it covers and where their entries live.
pub struct AudioCache<'a> {
    storage: &'a dyn Storage,
    song: SongIdentity,
    /// Per step of the plan.
    entries: Vec<Option<Entry>>,
    /// Where the manifest files are written before they are stored.
    work: PathBuf,
}

impl<'a> AudioCache<'a> {
    /// The cache of `plan` for `song`: it covers each FFmpeg step (up to
    /// [`MOST_CACHED_STEPS`]) that reads the song and nothing else (no clip, no temp) and
    /// writes a temp. `video_seconds` is the job's, which bounds a step's output.
    pub fn for_plan(
        storage: &'a dyn Storage,
        song: SongIdentity,
        plan: &Plan,
        video_seconds: f64,
        work: &Path,
    ) -> AudioCache<'a> {
        let mut covered = 0;
        let entries = plan
            .steps
            .iter()
            .map(|step| {
                let Step::Ffmpeg(invocation) = step else { return None };
                let format = reads_only_the_song(&invocation.args, &plan.temps)?;
                if covered == MOST_CACHED_STEPS {
                    return None;
                }
                covered += 1;
                let command = crate::ffmpeg::command_line(invocation, &plan.temps, video_seconds);
                let material = serde_json::json!({
                    "recipe": RECIPE_VERSION,
                    "what": "track",
                    "song": song,
                    "command": command,
                });
                let digest = hex_digest(material.to_string().as_bytes());
                Some(Entry {
                    track_key: format!("{TRACKS_PREFIX}{digest}.{}", format.extension()),
                    manifest_key: format!("{TRACKS_PREFIX}{digest}.json"),
                    digest,
                    label: invocation.label.clone(),
                })
            })
            .collect();
        AudioCache { storage, song, entries, work: work.to_owned() }
    }

    /// Whether the entry of `step` is in the storage as a later job would use it: its
    /// manifest for this song and recipe, its track as the manifest last saw it.
    pub async fn holds(&self, step: usize) -> bool {
        match self.entries.get(step) {
            Some(Some(entry)) => self.manifest(entry).await.is_ok(),
            _ => false,
        }
    }

    /// The track's manifest, if it is one for this entry and this song.
    async fn manifest(&self, entry: &Entry) -> Result<TrackManifest, Miss> {
        let bytes = read_record(self.storage, &entry.manifest_key).await.ok_or(Miss::Absent)?;
        let manifest: TrackManifest =
            serde_json::from_slice(&bytes).map_err(|error| format!("its manifest does not read ({error})"))?;
        if manifest.recipe != RECIPE_VERSION || manifest.digest != entry.digest || manifest.track_key != entry.track_key
        {
            return Err(Miss::Unusable("its manifest is another recipe's or another entry's".into()));
        }
        if manifest.song_key != self.song.key || manifest.song_identity != self.song.identity {
            return Err(Miss::Unusable("its manifest names another song".into()));
        }
        let identity = self.storage.identity(&entry.track_key).await.map_err(|e| format!("its track: {e}"))?;
        if identity != manifest.track_identity {
            return Err(Miss::Unusable("its track was replaced after its manifest was written".into()));
        }
        Ok(manifest)
    }

    async fn try_restore(&self, entry: &Entry, output: &Path, room: u64) -> Result<u64, Miss> {
        let manifest = self.manifest(entry).await?;
        if manifest.bytes > room {
            let why = format!("its track ({} bytes) is larger than the step may write ({room})", manifest.bytes);
            return Err(Miss::Unusable(why));
        }
        let gate = crate::budget::ledger::AtMost(manifest.bytes);
        let fetched = self.storage.fetch(&entry.track_key, output, &gate).await.map_err(|e| e.to_string())?;
        let (bytes, sha256) = file_digest(output).map_err(|e| format!("reading the fetched track: {e}"))?;
        if fetched != manifest.bytes || bytes != manifest.bytes || sha256 != manifest.sha256 {
            return Err(Miss::Unusable(format!(
                "its track is not what its manifest says ({bytes} bytes, SHA-256 {sha256}; the manifest: {} bytes, {})",
                manifest.bytes, manifest.sha256
            )));
        }
        Ok(bytes)
    }

    async fn try_keep(&self, entry: &Entry, output: &Path) -> Result<(), KeepError> {
        if !self.song.unchanged(self.storage).await {
            return Err(KeepError::SongChanged);
        }
        let (bytes, sha256) = file_digest(output).map_err(KeepError::Read)?;
        self.storage.store(output, &entry.track_key).await?;
        let track_identity = self.storage.identity(&entry.track_key).await?;
        let manifest = TrackManifest {
            recipe: RECIPE_VERSION,
            digest: entry.digest.clone(),
            song_key: self.song.key.clone(),
            song_identity: self.song.identity.clone(),
            track_key: entry.track_key.clone(),
            track_identity,
            bytes,
            sha256,
            label: entry.label.clone(),
        };
        store_record(self.storage, &self.work, &entry.manifest_key, &manifest).await
    }
}

impl StepCache for AudioCache<'_> {
    fn covers(&self, step: usize) -> bool {
        matches!(self.entries.get(step), Some(Some(_)))
    }

    fn restore<'b>(&'b self, step: usize, output: &'b Path, room: u64) -> BoxFuture<'b, bool> {
        Box::pin(async move {
            let Some(Some(entry)) = self.entries.get(step) else { return false };
            let started = Instant::now();
            match self.try_restore(entry, output, room).await {
                Ok(bytes) => {
                    let seconds = started.elapsed().as_secs_f64();
                    tracing::info!(step, key = %entry.track_key, bytes, seconds, "{} from the audio cache", entry.label);
                    true
                }
                Err(miss) => {
                    crate::files::remove_if_present(output);
                    match miss {
                        Miss::Absent => {
                            tracing::info!(step, key = %entry.track_key, "not in the audio cache: {} is encoded", entry.label)
                        }
                        Miss::Unusable(why) => tracing::warn!(
                            step,
                            key = %entry.track_key,
                            "the audio cache's entry is not used ({why}): {} is encoded",
                            entry.label
                        ),
                    }
                    false
                }
            }
        })
    }

    fn keep<'b>(&'b self, step: usize, output: &'b Path) -> BoxFuture<'b, ()> {
        Box::pin(async move {
            let Some(Some(entry)) = self.entries.get(step) else { return };
            let started = Instant::now();
            match self.try_keep(entry, output).await {
                Ok(()) => {
                    let seconds = started.elapsed().as_secs_f64();
                    tracing::info!(step, key = %entry.track_key, seconds, "{} kept in the audio cache", entry.label)
                }
                Err(why) => tracing::warn!(step, key = %entry.track_key, "{} is not cached: {why}", entry.label),
            }
        })
    }
}

/// The format of the temp a step writes when the song is the only thing it reads, else None.
fn reads_only_the_song(args: &[Arg], temps: &[TempFormat]) -> Option<TempFormat> {
    let (Arg::Temp(written), reading) = args.split_last()? else { return None };
    let inputs: BTreeSet<u32> = reading
        .iter()
        .map(|arg| match arg {
            Arg::Input(n) => Some(Some(*n)),
            Arg::Literal(_) => Some(None),
            Arg::Temp(_) | Arg::Output => None,
        })
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    (inputs == BTreeSet::from([0])).then(|| temps.get(*written as usize).copied()).flatten()
}

/// A cache record (at most [`MAX_RECORD_BYTES`]); None when there is none, it is larger,
/// or the storage cannot say (logged: a cache that cannot be read costs the encode).
async fn read_record(storage: &dyn Storage, key: &str) -> Option<Vec<u8>> {
    crate::storage::read_record(storage, key, MAX_RECORD_BYTES, "an audio cache record")
        .await
        .inspect_err(|error| tracing::warn!(key, "cannot read the audio cache: {error}"))
        .ok()
        .flatten()
}

/// Stores `record` as JSON at `key`, through a file of its own in `work`.
async fn store_record(storage: &dyn Storage, work: &Path, key: &str, record: &impl Serialize) -> Result<(), KeepError> {
    let text = serde_json::to_vec(record)?;
    let file = tempfile::Builder::new()
        .prefix("cache-record-")
        .suffix(".json")
        .tempfile_in(work)
        .map_err(KeepError::Record)?;
    std::fs::write(file.path(), text).map_err(KeepError::Record)?;
    storage.store(file.path(), key).await?;
    Ok(())
}

fn hex_digest(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A file's size and SHA-256. Read in the caller's task: a track is a few MiB of the
/// work folder (memory on Cloud Run), hashed in milliseconds.
fn file_digest(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let (mut hasher, mut chunk, mut bytes) = (Sha256::new(), vec![0u8; 64 * 1024], 0u64);
    loop {
        let read = file.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        hasher.update(&chunk[..read]);
        bytes += read as u64;
    }
    Ok((bytes, format!("{:x}", hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalFolder;
    use br_plan::Invocation;

    fn step(args: Vec<Arg>) -> Step {
        Step::Ffmpeg(Invocation { args, media_seconds: 8.0, label: "the song".into() })
    }

    /// A song step as the planner writes one, at `bitrate`.
    fn song_step(bitrate: &str) -> Step {
        let args = ["-i"].map(Arg::lit).into_iter().chain([Arg::Input(0)]);
        let args = args.chain(["-c:a", "aac", "-b:a", bitrate, "-f", "nut"].map(Arg::lit)).chain([Arg::Temp(0)]);
        step(args.collect())
    }

    fn plan(steps: Vec<Step>) -> Plan {
        Plan { temps: vec![TempFormat::Nut; 4], steps, warnings: Vec::new() }
    }

    fn song(identity: &str, ffmpeg: &str) -> SongIdentity {
        let (key, address) = ("media/song.mp3".to_owned(), "file:///data/media/song.mp3".to_owned());
        SongIdentity { key, address, identity: identity.into(), ffmpeg: ffmpeg.into() }
    }

    fn folder() -> (tempfile::TempDir, LocalFolder) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data/media")).unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        let storage = LocalFolder::open(&dir.path().join("data"), "data/").unwrap();
        (dir, storage)
    }

    /// A folder holding `media/song.mp3`, its work folder, and the song as the cache knows it.
    async fn song_in_folder() -> (tempfile::TempDir, LocalFolder, PathBuf, SongIdentity) {
        let (dir, storage) = folder();
        std::fs::write(dir.path().join("data/media/song.mp3"), b"the song").unwrap();
        let work = dir.path().join("work");
        let song = SongIdentity::of(&storage, "media/song.mp3", "f1".into()).await.unwrap();
        (dir, storage, work, song)
    }

    fn track_key_of(cache: &AudioCache<'_>, step: usize) -> String {
        cache.entries[step].as_ref().map(|entry| entry.track_key.clone()).unwrap_or_default()
    }

    #[test]
    fn only_a_step_that_reads_the_song_alone_into_a_temp_is_cached_and_at_most_two() {
        let (_dir, storage) = folder();
        let reads = |inputs: &[Arg], last: Arg| {
            let mut args = Vec::new();
            for input in inputs {
                args.extend([Arg::lit("-i"), input.clone()]);
            }
            args.extend([Arg::lit("-f"), Arg::lit("nut"), last]);
            step(args)
        };
        let steps = vec![
            song_step("128k"),
            reads(&[Arg::Input(1)], Arg::Temp(1)),
            reads(&[Arg::Input(0), Arg::Input(1)], Arg::Temp(1)),
            reads(&[Arg::Input(0), Arg::Temp(0)], Arg::Temp(2)),
            reads(&[Arg::Input(0)], Arg::Output),
            reads(&[Arg::Input(0)], Arg::Temp(3)),
            reads(&[Arg::Input(0)], Arg::Temp(2)),
        ];
        let cache = AudioCache::for_plan(&storage, song("g1", "f1"), &plan(steps), 8.0, Path::new("/nowhere"));
        let covered: Vec<usize> = (0..7).filter(|&step| cache.covers(step)).collect();
        assert_eq!(covered, vec![0, 5], "the song alone into a temp, two steps at most");
    }

    #[test]
    fn the_key_follows_the_command_line_the_song_and_the_ffmpeg_build() {
        let (_dir, storage) = folder();
        let key = |bitrate: &str, song: SongIdentity, seconds: f64| {
            let cache = AudioCache::for_plan(&storage, song, &plan(vec![song_step(bitrate)]), seconds, Path::new("/"));
            track_key_of(&cache, 0)
        };
        let first = key("128k", song("g1", "f1"), 8.0);
        assert!(first.starts_with(TRACKS_PREFIX) && first.ends_with(".nut"), "{first}");
        assert_eq!(key("128k", song("g1", "f1"), 8.0), first, "the same step on the same song");
        assert_ne!(key("192k", song("g1", "f1"), 8.0), first, "another bitrate");
        assert_ne!(key("128k", song("g2", "f1"), 8.0), first, "the song rewritten");
        assert_ne!(key("128k", song("g1", "f2"), 8.0), first, "another FFmpeg");
        // The host bounds an output without its own `-t` by the video's length: part of it.
        assert_ne!(key("128k", song("g1", "f1"), 9.0), first, "another bound the host adds");
    }

    #[tokio::test]
    async fn a_kept_track_comes_back_whole_and_a_replaced_or_misdescribed_one_does_not() {
        let (dir, storage, work, identity) = song_in_folder().await;
        let cache = AudioCache::for_plan(&storage, identity.clone(), &plan(vec![song_step("128k")]), 8.0, &work);
        let (written, restored) = (work.join("written.nut"), work.join("restored.nut"));
        assert!(!cache.restore(0, &restored, 1 << 20).await, "an empty cache holds nothing");
        std::fs::write(&written, b"encoded audio").unwrap();
        cache.keep(0, &written).await;
        assert!(cache.restore(0, &restored, 1 << 20).await, "kept, then found");
        assert_eq!(std::fs::read(&restored).unwrap(), b"encoded audio");
        std::fs::remove_file(&restored).unwrap();
        assert!(!cache.restore(0, &restored, 5).await, "a track larger than the step may write is not fetched");
        assert!(!restored.exists());

        // Another file where the track was: its identity is not the manifest's.
        let track = dir.path().join("data").join(track_key_of(&cache, 0));
        std::fs::write(&track, b"foreign audio").unwrap();
        assert!(!cache.restore(0, &restored, 1 << 20).await, "a replaced track is not used");
        assert!(!restored.exists(), "nothing is left where the step writes");

        // A manifest that says other bytes than the track holds.
        cache.keep(0, &written).await;
        let manifest_path = track.with_extension("json");
        let mut manifest: TrackManifest = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        manifest.sha256 = hex_digest(b"something else");
        std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
        assert!(!cache.restore(0, &restored, 1 << 20).await, "bytes that are not the manifest's are not used");
        assert!(!restored.exists());

        // Kept again (the job that found it unusable writes it anew), then the song is rewritten.
        cache.keep(0, &written).await;
        assert!(cache.restore(0, &restored, 1 << 20).await);
        std::fs::remove_file(&restored).unwrap();
        std::fs::write(dir.path().join("data/media/song.mp3"), b"another song").unwrap();
        let rewritten = SongIdentity::of(&storage, "media/song.mp3", "f1".into()).await.unwrap();
        assert_ne!(rewritten.identity, identity.identity);
        let cache = AudioCache::for_plan(&storage, rewritten, &plan(vec![song_step("128k")]), 8.0, &work);
        assert!(!cache.restore(0, &restored, 1 << 20).await, "the old song's track is not the new song's");
        // A job whose song changes while it runs does not file its track under the old identity.
        let stale = AudioCache::for_plan(&storage, identity, &plan(vec![song_step("128k")]), 8.0, &work);
        let before = std::fs::read(&manifest_path).unwrap();
        stale.keep(0, &written).await;
        assert_eq!(std::fs::read(&manifest_path).unwrap(), before, "nothing kept for a song that changed");
    }

    #[tokio::test]
    async fn a_kept_loudness_comes_back_only_for_its_song_and_lengths() {
        let (dir, storage, work, song) = song_in_folder().await;
        let loudness = Loudness { integrated: -23.5, range: 4.0, true_peak: -3.25, seconds: 8.0 };
        assert_eq!(cached_loudness(&storage, &song, (8.0, 10.0)).await, None);
        keep_loudness(&storage, &work, &song, (8.0, 10.0), loudness).await;
        assert_eq!(cached_loudness(&storage, &song, (8.0, 10.0)).await, Some(loudness));
        assert_eq!(cached_loudness(&storage, &song, (9.0, 10.0)).await, None, "another stretch of the song");
        let other_ffmpeg = SongIdentity { ffmpeg: "f2".into(), ..song.clone() };
        assert_eq!(cached_loudness(&storage, &other_ffmpeg, (8.0, 10.0)).await, None);

        // A record edited to name this song under another digest's key is refused.
        let path = dir.path().join("data").join(loudness_key(&song, (8.0, 10.0)));
        let mut record: LoudnessRecord = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        record.digest = "0".repeat(64);
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(cached_loudness(&storage, &song, (8.0, 10.0)).await, None);
        std::fs::write(&path, b"{\"not\": \"a record\"}").unwrap();
        assert_eq!(cached_loudness(&storage, &song, (8.0, 10.0)).await, None);
    }
}
