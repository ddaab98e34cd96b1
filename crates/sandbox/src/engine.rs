//! The wasmtime engine every guest runs on, and the ticker behind its deadlines.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine};

/// How often the epoch advances; a deadline is noticed within about this long.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Address space reserved per linear memory. Small on purpose: the default (4 GiB
/// plus guards) cannot be mapped in a container with a 512 MiB address-space limit.
/// Memories that grow past it are moved, which is rare and cheap at these sizes.
const MEMORY_RESERVATION: u64 = 128 * 1024 * 1024;
const MEMORY_GUARD: u64 = 2 * 1024 * 1024;
const MEMORY_GROWTH_RESERVE: u64 = 16 * 1024 * 1024;
/// Deep recursion in a guest ends in a stack-overflow trap, not in a host crash.
const MAX_WASM_STACK: usize = 1024 * 1024;
const ASYNC_STACK: usize = 2 * 1024 * 1024;

pub struct SandboxEngine {
    pub engine: Engine,
}

impl SandboxEngine {
    /// One engine per process, with its epoch ticker thread.
    pub fn shared() -> wasmtime::Result<Arc<SandboxEngine>> {
        static SHARED: OnceLock<Arc<SandboxEngine>> = OnceLock::new();
        if let Some(engine) = SHARED.get() {
            return Ok(engine.clone());
        }
        let engine = Engine::new(&config()?)?;
        let ticking = engine.weak();
        std::thread::Builder::new().name("guest-epoch".into()).spawn(move || {
            while let Some(engine) = ticking.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
        Ok(SHARED.get_or_init(|| Arc::new(SandboxEngine { engine })).clone())
    }
}

/// The configuration is also part of the precompiled artefact's identity: a `.cwasm`
/// only loads into an engine configured the same way.
fn config() -> wasmtime::Result<Config> {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .memory_reservation(MEMORY_RESERVATION)
        .memory_guard_size(MEMORY_GUARD)
        .memory_reservation_for_growth(MEMORY_GROWTH_RESERVE)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK);
    fixed_cpu_baseline(&mut config)?;
    Ok(config)
}

/// Compiles for x86-64-v2 rather than for the features of this machine's CPU. Those
/// features are part of the engine's compatibility hash, and so of a precompiled
/// guest's name: with the machine's own, a guest precompiled where the image is built
/// would be missed (and compiled again at every start) on a Cloud Run host with another
/// CPU. Every x86-64 server of the last decade has v2; the guest's code is too small for
/// newer instructions to matter.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn fixed_cpu_baseline(config: &mut Config) -> wasmtime::Result<()> {
    config.target("x86_64-unknown-linux-gnu")?;
    for feature in ["has_sse3", "has_ssse3", "has_sse41", "has_sse42", "has_popcnt"] {
        // SAFETY: these are cranelift's documented x86 ISA flags; the engine checks at
        // start that this CPU has each of them and refuses to run code otherwise.
        unsafe {
            config.cranelift_flag_enable(feature);
        }
    }
    Ok(())
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn fixed_cpu_baseline(_config: &mut Config) -> wasmtime::Result<()> {
    Ok(())
}

/// A clock that always reads zero: the guest has no business knowing the time, and a
/// frozen clock keeps its results reproducible.
pub struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

#[cfg(all(test, target_arch = "x86_64", target_os = "linux"))]
mod tests {
    use super::*;

    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    /// An engine that believes it runs on a CPU with x86-64-v2 but none of the later
    /// extensions (an older Cloud Run host): loading checks each compiled-in feature
    /// against this.
    fn on_older_cpu(mut config: Config) -> Engine {
        let v2_only = |feature: &str| {
            Some(
                !["avx", "bmi", "lzcnt", "fma", "f16c", "gfni", "vaes", "vpclmul"]
                    .iter()
                    .any(|newer| feature.contains(newer)),
            )
        };
        // SAFETY: code loaded into this engine is never run.
        unsafe {
            config.detect_host_feature(v2_only);
        }
        Engine::new(&config).expect("engine")
    }

    fn load_elsewhere(compiled_with: &Config, load_config: Config) -> wasmtime::Result<()> {
        let artefact = Engine::new(compiled_with)?.precompile_module(EMPTY_MODULE)?;
        // SAFETY: the bytes were just made by wasmtime itself.
        unsafe { wasmtime::Module::deserialize(&on_older_cpu(load_config), &artefact) }.map(drop)
    }

    #[test]
    fn a_guest_precompiled_here_loads_on_an_older_cpu() {
        load_elsewhere(&config().unwrap(), config().unwrap()).expect("the precompiled guest loads");
        // Compiled for this machine's own features, it would not (seen only where this
        // machine has the newer extensions).
        if std::arch::is_x86_feature_detected!("avx2") {
            let error = load_elsewhere(&Config::new(), Config::new()).expect_err("native code loads on an older CPU");
            assert!(format!("{error:#}").contains("not available on the host"), "{error:#}");
        }
    }
}
