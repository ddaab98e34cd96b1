//! `bench-fetch` and `bench-validate`: hidden commands `scripts/bench` measures the
//! storage and the sandbox with; they print JSON.

use crate::cli::StorageFlags;
use crate::settings::{Environment, SandboxSettings, StorageSettings};
use br_engine::exit;

/// `bench-fetch`: downloads keys into a fresh folder with the job's storage settings and
/// prints timings as JSON (used by `scripts/bench` and the streaming test).
pub async fn bench_fetch(flags: &StorageFlags, keys: &[String], env: &Environment) -> u8 {
    use futures::StreamExt;
    let settings = StorageSettings::resolve(flags, env);
    let storage = match settings.open().await {
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
        async move { storage.fetch(key, &destination, &br_engine::budget::ledger::Unbounded).await }
    });
    let results: Vec<_> =
        futures::stream::iter(downloads).buffer_unordered(settings.download_concurrency()).collect().await;
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
        .and_then(|status| {
            status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `bench-validate`: the guest's load time, then `iterations` validations of one
/// blueprint file, as JSON.
pub async fn bench_validate(file: &str, iterations: u32, sandbox: &SandboxSettings) -> u8 {
    let started = std::time::Instant::now();
    let loaded = match sandbox.load() {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: {file}: {error}");
            return exit::USAGE;
        }
    };
    let (mut fuel, mut first_call_ms) = (0, 0.0);
    let loop_started = std::time::Instant::now();
    for i in 0..iterations.max(1) {
        match loaded.validate(&text, &br_blueprint::CheckOptions::default()).await {
            Ok(validation) => {
                fuel = validation.report.fuel_used;
                if i == 0 {
                    first_call_ms = started.elapsed().as_secs_f64() * 1e3;
                }
            }
            Err(error) => return crate::commands::validate::print_sandbox_error(&error, true),
        }
    }
    let seconds = loop_started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "guest_load_ms": load_ms,
            "guest_load_source": format!("{:?}", loaded.load_source()),
            "start_to_first_call_done_ms": first_call_ms,
            "iterations": iterations.max(1),
            "validations_per_second": f64::from(iterations.max(1)) / seconds,
            "fuel_per_validation": fuel,
        })
    );
    exit::OK
}
