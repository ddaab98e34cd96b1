//! A guest that asks for 1 GiB stops at its cap, and the host process's own peak RSS
//! stays near cap + baseline. In its own test binary: the peak is per process.

use std::time::Duration;

use br_sandbox::{CacheConfig, Limits, Sandbox, SandboxError};

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

#[tokio::test(flavor = "current_thread")]
async fn allocation_bomb_is_capped_and_host_rss_stays_low() {
    const CAP: u64 = 64 * 1024 * 1024;
    let wasm = std::fs::read(test_programs::HOSTILE_GUEST).unwrap();
    let limits = Limits { fuel: 20_000_000_000, memory_bytes: CAP, deadline: Duration::from_secs(60) };
    let sandbox = Sandbox::load(&wasm, limits, &CacheConfig::default()).unwrap();
    let error = sandbox.validate("allocate", &br_blueprint::CheckOptions::default()).await.unwrap_err();
    assert!(matches!(error, SandboxError::MemoryCap { limit_bytes } if limit_bytes == CAP), "{error}");
    let peak = peak_rss_bytes();
    // The guest wanted 1 GiB; the host saw at most its cap plus its own baseline.
    assert!(peak < CAP + 128 * 1024 * 1024, "peak RSS {} MiB", peak / (1024 * 1024));
    eprintln!("peak RSS {} MiB with a {} MiB guest cap", peak / (1024 * 1024), CAP / (1024 * 1024));
}
