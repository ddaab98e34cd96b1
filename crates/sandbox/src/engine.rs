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
        let engine = Engine::new(&config())?;
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
fn config() -> Config {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .memory_reservation(MEMORY_RESERVATION)
        .memory_guard_size(MEMORY_GUARD)
        .memory_reservation_for_growth(MEMORY_GROWTH_RESERVE)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK);
    config
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
