//! `blueprint-runner run` and `plan`: wiring flags to a [`job::Job`] and its outcome
//! to status lines, stderr and the exit code.

use std::time::Duration;

use crate::input::{self, Loaded, Source};
use crate::job::{Failure, Job, JobConfig, Reporter};
use crate::status::{JsonLines, LogOnly, Stage, StatusSink};
use crate::storage::{GcsConfig, GcsStorage, LocalFolder, Storage};
use crate::{exit, ffmpeg, JobFlags, StorageFlags};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    Local,
    Gcs,
}

/// The storage backend the flags and environment ask for.
pub async fn open_storage(flags: &StorageFlags) -> Result<Box<dyn Storage>, String> {
    let use_gcs = std::env::var("USE_GCS").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let kind = flags.kind.unwrap_or(if use_gcs { StorageKind::Gcs } else { StorageKind::Local });
    match kind {
        StorageKind::Local => {
            let dir = flags.data_dir.as_ref().ok_or("local storage needs --data-dir (or DATA_DIR)")?;
            Ok(Box::new(LocalFolder::open(dir).map_err(|e| e.to_string())?))
        }
        StorageKind::Gcs => {
            let bucket = flags.bucket.clone().ok_or("GCS storage needs --bucket (or GCS_BUCKET_NAME)")?;
            Ok(Box::new(GcsStorage::connect(gcs_config(flags, bucket)).await.map_err(|e| e.to_string())?))
        }
    }
}

fn gcs_config(flags: &StorageFlags, bucket: String) -> GcsConfig {
    GcsConfig {
        emulator_host: std::env::var("STORAGE_EMULATOR_HOST").ok().filter(|h| !h.is_empty()),
        strip_prefix: flags.strip_prefix.clone(),
        object_prefix: flags.object_prefix.clone(),
        max_attempts: flags.storage_attempts,
        object_deadline: Duration::from_secs(flags.storage_deadline.max(1)),
        first_backoff: Duration::from_millis(flags.storage_backoff_ms),
        ..GcsConfig::new(bucket)
    }
}

/// The blueprint text from a file, stdin, `BLUEPRINT_JSON` or a `gs://` URI.
async fn read_blueprint(source: &Source, flags: &StorageFlags) -> Result<Loaded, String> {
    let Source::Uri(uri) = source else {
        return input::read(source).map_err(|e| format!("cannot read the blueprint from {}: {e}", source.describe()));
    };
    let (bucket, key) = crate::storage::parse_gs_uri(uri).ok_or_else(|| format!("{uri} is not a gs://BUCKET/KEY address"))?;
    // The blueprint's bucket may differ from the media's; the key is used as given.
    let config = GcsConfig { strip_prefix: String::new(), object_prefix: String::new(), ..gcs_config(flags, bucket.to_owned()) };
    let store = GcsStorage::connect(config).await.map_err(|e| e.to_string())?;
    let limit = br_blueprint::limits::MAX_BLUEPRINT_BYTES;
    match store.read_small(key, limit).await.map_err(|e| format!("cannot read the blueprint {uri}: {e}"))? {
        None => Ok(Loaded::TooLarge(limit as u64 + 1)),
        Some(bytes) => Ok(String::from_utf8(bytes).map(Loaded::Text).unwrap_or(Loaded::NotUtf8)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    PlanOnly,
}

pub async fn run(flags: JobFlags, mode: Mode) -> u8 {
    let source = match Source::choose(flags.file.as_deref()) {
        Ok(source) => source,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::USAGE;
        }
    };
    let storage = match open_storage(&flags.storage).await {
        Ok(storage) => storage,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::USAGE;
        }
    };
    let sandbox = match flags.sandbox.load() {
        Ok(sandbox) => sandbox,
        Err(code) => return code,
    };
    let (ffmpeg_binary, ffprobe) = ffmpeg::binaries();
    let config = JobConfig {
        download_concurrency: usize::from(flags.storage.download_concurrency),
        work_root: flags.work_dir.clone().unwrap_or_else(std::env::temp_dir),
        strict: flags.strict,
        ffprobe,
        runner: ffmpeg::Runner { ffmpeg: ffmpeg_binary, step_timeout: flags.step_timeout.map(Duration::from_secs) },
    };
    let job = Job { sandbox: &sandbox, storage: storage.as_ref(), config: &config };
    let (mut lines, mut log_only) = (JsonLines, LogOnly);
    let sink: &mut dyn StatusSink = if mode == Mode::Run { &mut lines } else { &mut log_only };
    let mut reporter = Reporter::new(sink);

    let text = match read_blueprint(&source, &flags.storage).await {
        Ok(loaded) => match loaded.into_text() {
            Ok(text) => text,
            Err(refusal) => return fail(&mut reporter, Stage::Validate, Failure::Invalid(vec![refusal])),
        },
        Err(message) => {
            eprintln!("error: {message}");
            return exit::USAGE;
        }
    };

    match mode {
        Mode::Run => match job.run(&text, &mut reporter).await {
            Ok(outcome) => {
                tracing::info!(task_id = %outcome.validated.task_id, output = %outcome.validated.output_key, "job completed");
                exit::OK
            }
            Err((stage, failure)) => fail(&mut reporter, stage, failure),
        },
        Mode::PlanOnly => match job.prepare(&text, &mut reporter).await {
            Ok(prepared) => {
                let shown = serde_json::json!({
                    "task_id": prepared.validated.task_id,
                    "inputs": prepared.facts,
                    "plan": prepared.plan.plan(),
                });
                match serde_json::to_string_pretty(&shown) {
                    Ok(text) => println!("{text}"),
                    Err(error) => eprintln!("error: cannot print the plan: {error}"),
                }
                exit::OK
            }
            Err((stage, failure)) => fail(&mut reporter, stage, failure),
        },
    }
}

fn fail(reporter: &mut Reporter<'_>, stage: Stage, failure: Failure) -> u8 {
    tracing::error!(stage = ?stage, "{failure}");
    reporter.failed(stage, &failure);
    eprintln!("error: {failure}");
    failure.exit_code()
}

/// `bench-fetch`: downloads keys into a fresh folder with the job's storage settings and
/// prints timings as JSON (used by `scripts/bench` and the streaming test).
pub async fn bench_fetch(flags: &StorageFlags, keys: &[String]) -> u8 {
    use futures::StreamExt;
    let storage = match open_storage(flags).await {
        Ok(storage) => storage,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::USAGE;
        }
    };
    let folder = match tempfile::tempdir() {
        Ok(folder) => folder,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::STORAGE;
        }
    };
    let started = std::time::Instant::now();
    let downloads = keys.iter().enumerate().map(|(index, key)| {
        let destination = folder.path().join(format!("object-{index}"));
        let storage = storage.as_ref();
        async move { storage.fetch(key, &destination).await }
    });
    let results: Vec<_> = futures::stream::iter(downloads).buffer_unordered(usize::from(flags.download_concurrency)).collect().await;
    let seconds = started.elapsed().as_secs_f64();
    let mut bytes = 0;
    for result in results {
        match result {
            Ok(size) => bytes += size,
            Err(error) => {
                eprintln!("error: {error}");
                return exit::STORAGE;
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "objects": keys.len(),
            "bytes": bytes,
            "concurrency": flags.download_concurrency,
            "seconds": seconds,
            "mib_per_second": bytes as f64 / 1048576.0 / seconds.max(1e-9),
            "peak_rss_kib": peak_rss_kib(),
        })
    );
    exit::OK
}

/// This process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}
