//! Paths of the guest components the tests load, built by this crate's build script:
//! a dev-dependency of the host, so the image's build never compiles them.

/// A deliberately misbehaving guest (contract 0.2.0): traps, loops, oversized answers,
/// hostile plans, chosen by the blueprint it is given (`tests/guests/hostile`).
pub const HOSTILE_GUEST: &str = env!("HOSTILE_GUEST_WASM");
/// A guest frozen at contract 0.4.0, which older plugins still target.
pub const CONTRACT_0_4_GUEST: &str = env!("CONTRACT_0_4_GUEST_WASM");
/// The beat-cuts example plugin (`examples/plugins/beat-cuts`).
pub const BEAT_CUTS_PLUGIN: &str = env!("BEAT_CUTS_PLUGIN_WASM");
/// The practice-mode example plugin (`examples/plugins/practice-mode`).
pub const PRACTICE_MODE_PLUGIN: &str = env!("PRACTICE_MODE_PLUGIN_WASM");
/// Every folder whose change rebuilds these guests (for the host's check against `cargo tree`).
pub const WATCHED_PATHS: &str = env!("GUEST_WATCHED_PATHS");
