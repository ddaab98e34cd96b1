//! Runs a Blueprint Runner guest component (see `wit/`) in a sandbox.
//!
//! The guest gets WASI p2 with no capabilities (no preopened folder, no environment,
//! no arguments, no network, frozen clocks, stdio captured into small buffers) plus the
//! contract's bounded `log` import. Each call runs in a fresh store under three caps:
//! fuel (instructions), memory (linear memory bytes) and a wall-time deadline. Every
//! way a call can end maps to a distinct [`SandboxError`]. What the guest returns is
//! treated as untrusted and re-checked ([`output`]).
//!
//! Guests of contract 0.9.0 (`wit/blueprint-runner.wit`) and of every older version kept
//! in `wit/v*/` back to 0.2.0 load; which one a component implements is found from the
//! `host` version it imports (0.4.0 and later) and the type of its `validate` (0.3.0 or
//! 0.2.0).

mod cache;
mod engine;
mod guest_log;
mod output;
mod request;
mod settings;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use cache::LoadSource;
pub use guest_log::GuestLog;
pub use output::limits as output_limits;
pub use settings::{GuestSettings, SettingsError};

/// The contract versions this host loads, newest first.
pub const CONTRACT_VERSIONS: [&str; 9] =
    ["0.10.0", "0.9.0", "0.8.0", "0.7.0", "0.6.0", "0.5.0", "0.4.0", "0.3.0", "0.2.0"];

mod bindings {
    /// The current contract, 0.10.0.
    pub mod v10 {
        wasmtime::component::bindgen!({
            world: "guest",
            path: "../../wit",
            exports: { default: async },
        });
    }

    /// Contract 0.9.0: as 0.10.0, without `host.keyframes` (and the `keyframe-grid` record).
    pub mod v9 {
        wasmtime::component::bindgen!({
            world: "guest",
            path: "../../wit/v0.9.0",
            exports: { default: async },
            with: { "blueprint:runner/types": crate::bindings::v10::blueprint::runner::types },
        });
    }

    /// Contract 0.8.0: as 0.9.0, without `host.keep` and `host.kept`.
    pub mod v8 {
        wasmtime::component::bindgen!({
            world: "guest",
            path: "../../wit/v0.8.0",
            exports: { default: async },
            with: { "blueprint:runner/types": crate::bindings::v10::blueprint::runner::types },
        });
    }

    /// Contract 0.7.0: `validate` takes no options and returns the validated blueprint
    /// alone (always strict), and `plan` is given no fit. Its types are 0.9.0's, which
    /// are not generated twice: one conversion serves every version (wasmtime checks a
    /// record by its fields when the guest is loaded, not by the interface that declared
    /// it). `host` is generated again: the guest imports it under its own version, and
    /// the linker offers each.
    pub mod v7 {
        wasmtime::component::bindgen!({
            world: "guest",
            path: "../../wit/v0.7.0",
            exports: { default: async },
            with: { "blueprint:runner/types": crate::bindings::v10::blueprint::runner::types },
        });
    }

    /// Contract 0.6.0: as 0.7.0, without `host.loudness` (and the `loudness` record).
    pub mod v6 {
        wasmtime::component::bindgen!({
            world: "guest",
            path: "../../wit/v0.6.0",
            exports: { default: async },
            with: { "blueprint:runner/types": crate::bindings::v10::blueprint::runner::types },
        });
    }

    /// Contract 0.5.0: as 0.6.0, without `host.settings`.
    pub mod v5 {
        wasmtime::component::bindgen!({
            world: "guest",
            path: "../../wit/v0.5.0",
            exports: { default: async },
            with: { "blueprint:runner/types": crate::bindings::v10::blueprint::runner::types },
        });
    }

    /// Contract 0.4.0: as 0.5.0, without the `manifest-entry` record and the
    /// `validate-manifest` export.
    pub mod v4 {
        wasmtime::component::bindgen!({
            world: "guest",
            path: "../../wit/v0.4.0",
            exports: { default: async },
            with: { "blueprint:runner/types": crate::bindings::v10::blueprint::runner::types },
        });
    }

    /// Contract 0.3.0: as 0.4.0, without `host.prepared`.
    pub mod v3 {
        wasmtime::component::bindgen!({
            world: "guest",
            path: "../../wit/v0.3.0",
            exports: { default: async },
            with: { "blueprint:runner/types": crate::bindings::v10::blueprint::runner::types },
        });
    }

    /// Contract 0.2.0: as 0.3.0, without the `refusal` record (`validate` refuses with
    /// the errors alone).
    pub mod v2 {
        wasmtime::component::bindgen!({
            world: "guest",
            path: "../../wit/v0.2.0",
            exports: { default: async },
            with: { "blueprint:runner/types": crate::bindings::v10::blueprint::runner::types },
        });
    }

    pub use v10::blueprint::runner::types as wit;
}

use bindings::wit;

/// The limits of one guest call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Fuel units (roughly wasm instructions) one call may spend.
    pub fuel: u64,
    /// Cap on the guest's linear memory, in bytes.
    pub memory_bytes: u64,
    /// Wall time of one call, instantiation included.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { fuel: 2_000_000_000, memory_bytes: 64 * 1024 * 1024, deadline: Duration::from_secs(10) }
    }
}

/// How a guest call failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// wasmtime could not compile, load or link the component; the message keeps
    /// wasmtime's causes, the source is wasmtime's error.
    #[error("could not load the guest component: {message}")]
    Load { message: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("the guest component does not fit the contract (blueprint:runner@0.10.0, @0.9.0, @0.8.0, @0.7.0, @0.6.0, @0.5.0, @0.4.0, @0.3.0 or @0.2.0): {0}")]
    Incompatible(String),
    #[error("sandbox limit: the guest ran out of fuel ({limit} units)")]
    OutOfFuel { limit: u64 },
    #[error("sandbox limit: the guest tried to grow its memory past the cap of {} MiB", limit_bytes / (1024 * 1024))]
    MemoryCap { limit_bytes: u64 },
    #[error("sandbox limit: the guest did not answer within the deadline of {} ms", limit.as_millis())]
    Deadline { limit: Duration },
    #[error("sandbox limit: guest output too large: {what} is {size} (limit {limit})")]
    OutputTooLarge { what: String, size: usize, limit: usize },
    /// wasmtime's hostcall fuel ran out: one answer or one log call would have made the
    /// host allocate more than the guest's memory cap (see [`hostcall_fuel`]).
    #[error(
        "sandbox limit: guest output too large: copying it to the host would take more than the guest's memory cap \
         of {} MiB",
        limit_bytes / (1024 * 1024)
    )]
    CopyTooLarge { limit_bytes: u64 },
    #[error("the guest trapped: {reason}{}", format_last_lines(last_log))]
    GuestTrap { reason: String, last_log: Vec<String> },
    #[error("the guest returned an answer the host refuses: {0}")]
    BadOutput(String),
}

impl SandboxError {
    /// A load failure from wasmtime's error, its causes in the message.
    fn load(error: wasmtime::Error) -> SandboxError {
        SandboxError::Load { message: format!("{error:#}"), source: error.into() }
    }
}

impl SandboxError {
    /// Which limit was hit, for exit codes and status messages; None for other failures.
    pub fn limit_name(&self) -> Option<&'static str> {
        match self {
            SandboxError::OutOfFuel { .. } => Some("fuel"),
            SandboxError::MemoryCap { .. } => Some("memory"),
            SandboxError::Deadline { .. } => Some("deadline"),
            SandboxError::OutputTooLarge { .. } | SandboxError::CopyTooLarge { .. } => Some("output-size"),
            _ => None,
        }
    }
}

fn format_last_lines(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; last guest output:\n  {}", lines.join("\n  "))
    }
}

/// Result of a successful `validate` call: the guest's verdict plus what it cost. A
/// refusal's task id has passed the host's own task-id rule (a guest of contract 0.2.0
/// never gives one).
#[derive(Debug)]
pub struct Validation {
    pub verdict: Result<br_blueprint::Validated, br_blueprint::Refusal>,
    pub report: CallReport,
}

/// Result of a successful `validate-manifest` call: the entries (each with its problem,
/// if it has one), or why the whole manifest is refused.
#[derive(Debug)]
pub struct ManifestCheck {
    pub verdict: Result<Vec<br_blueprint::manifest::ManifestEntry>, Vec<br_blueprint::ValidationError>>,
    pub report: CallReport,
}

/// Result of a successful `plan` call: a plan (not yet checked against the host's
/// policy) or the guest's reasons for making none.
#[derive(Debug)]
pub struct Planning {
    pub verdict: Result<br_plan::Plan, Vec<br_plan::PlanError>>,
    pub report: CallReport,
}

#[derive(Debug, Clone)]
pub struct CallReport {
    pub fuel_used: u64,
    /// The largest size the guest's linear memories reached, in bytes.
    pub memory_high_water: u64,
    pub elapsed: Duration,
    pub log: Vec<String>,
}

/// A loaded guest, ready for any number of calls.
pub struct Sandbox {
    engine: Arc<engine::SandboxEngine>,
    pre: GuestPre,
    limits: Limits,
    load_source: LoadSource,
    /// What the component imports (interface names), for `plugin check`.
    imports: Vec<String>,
    /// The operator's settings, given to 0.6.0 guests through `host.settings`.
    settings: Option<GuestSettings>,
}

/// The linked guest, by the contract version it implements.
enum GuestPre {
    V10(bindings::v10::GuestPre<CallState>),
    V9(bindings::v9::GuestPre<CallState>),
    V8(bindings::v8::GuestPre<CallState>),
    V7(bindings::v7::GuestPre<CallState>),
    V6(bindings::v6::GuestPre<CallState>),
    V5(bindings::v5::GuestPre<CallState>),
    V4(bindings::v4::GuestPre<CallState>),
    V3(bindings::v3::GuestPre<CallState>),
    V2(bindings::v2::GuestPre<CallState>),
}

/// Where compiled guests are cached; `None` compiles on every start.
#[derive(Debug, Clone, Default)]
pub struct CacheConfig {
    pub dir: Option<PathBuf>,
}

/// One call into a guest of 0.8.0 or later: `validate` takes the check's options and
/// returns a `checked` blueprint, `plan` is given the fit. The bindings of each version are
/// their own types, so the body is written once here and expanded per version.
macro_rules! call_with_fit {
    ($pre:ident, $store:ident, $call:ident) => {{
        let guest = $pre.instantiate_async(&mut $store).await?;
        match $call {
            Call::Validate(text, options) => {
                guest.call_validate(&mut $store, text, options).await.map(Answer::ValidateChecked)
            }
            Call::Plan(request, _, fit, _) => guest.call_plan(&mut $store, request, fit).await.map(Answer::Plan),
            Call::ValidateManifest(text) => {
                guest.call_validate_manifest(&mut $store, text).await.map(Answer::ValidateManifest)
            }
        }
    }};
}

/// One call into a guest of 0.5.0 to 0.7.0: `validate` takes the text alone (strict), `plan`
/// no fit.
macro_rules! call_strict {
    ($pre:ident, $store:ident, $call:ident) => {{
        let guest = $pre.instantiate_async(&mut $store).await?;
        match $call {
            Call::Validate(text, _) => guest.call_validate(&mut $store, text).await.map(Answer::Validate),
            Call::Plan(request, ..) => guest.call_plan(&mut $store, request).await.map(Answer::Plan),
            Call::ValidateManifest(text) => {
                guest.call_validate_manifest(&mut $store, text).await.map(Answer::ValidateManifest)
            }
        }
    }};
}

/// One call into a guest of 0.3.0 or 0.4.0: as `call_strict!`, without `validate-manifest`.
macro_rules! call_without_manifests {
    ($pre:ident, $store:ident, $call:ident) => {{
        let guest = $pre.instantiate_async(&mut $store).await?;
        match $call {
            Call::Validate(text, _) => guest.call_validate(&mut $store, text).await.map(Answer::Validate),
            Call::Plan(request, ..) => guest.call_plan(&mut $store, request).await.map(Answer::Plan),
            Call::ValidateManifest(_) => unreachable!("checked by validate_manifest"),
        }
    }};
}

impl Sandbox {
    /// Compiles (or loads from the cache) a guest component and links it against the
    /// capability-free WASI and the contract's host interface.
    pub fn load(wasm: &[u8], limits: Limits, cache: &CacheConfig) -> Result<Sandbox, SandboxError> {
        let engine = engine::SandboxEngine::shared().map_err(SandboxError::load)?;
        let (component, load_source) = cache::load_component(&engine.engine, wasm, cache.dir.as_deref())?;
        Self::link(engine, component, limits, load_source)
    }

    /// Compiles a guest to its precompiled form (for shipping it beside the binary).
    pub fn precompile(wasm: &[u8]) -> Result<Vec<u8>, SandboxError> {
        let engine = engine::SandboxEngine::shared().map_err(SandboxError::load)?;
        engine.engine.precompile_component(wasm).map_err(SandboxError::load)
    }

    fn link(
        engine: Arc<engine::SandboxEngine>,
        component: Component,
        limits: Limits,
        load_source: LoadSource,
    ) -> Result<Sandbox, SandboxError> {
        let mut linker: Linker<CallState> = Linker::new(&engine.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(SandboxError::load)?;
        // Every version of `host`: each guest imports the one of its own contract.
        type Data = wasmtime::component::HasSelf<CallState>;
        bindings::v10::blueprint::runner::host::add_to_linker::<CallState, Data>(&mut linker, |state| state)
            .map_err(SandboxError::load)?;
        bindings::v9::blueprint::runner::host::add_to_linker::<CallState, Data>(&mut linker, |state| state)
            .map_err(SandboxError::load)?;
        bindings::v8::blueprint::runner::host::add_to_linker::<CallState, Data>(&mut linker, |state| state)
            .map_err(SandboxError::load)?;
        bindings::v7::blueprint::runner::host::add_to_linker::<CallState, Data>(&mut linker, |state| state)
            .map_err(SandboxError::load)?;
        bindings::v6::blueprint::runner::host::add_to_linker::<CallState, Data>(&mut linker, |state| state)
            .map_err(SandboxError::load)?;
        bindings::v5::blueprint::runner::host::add_to_linker::<CallState, Data>(&mut linker, |state| state)
            .map_err(SandboxError::load)?;
        bindings::v4::blueprint::runner::host::add_to_linker::<CallState, Data>(&mut linker, |state| state)
            .map_err(SandboxError::load)?;
        bindings::v3::blueprint::runner::host::add_to_linker::<CallState, Data>(&mut linker, |state| state)
            .map_err(SandboxError::load)?;
        bindings::v2::blueprint::runner::host::add_to_linker::<CallState, Data>(&mut linker, |state| state)
            .map_err(SandboxError::load)?;
        let instance_pre =
            linker.instantiate_pre(&component).map_err(|e| SandboxError::Incompatible(format!("{e:#}")))?;
        // 0.10.0, 0.9.0, 0.8.0, 0.7.0, 0.6.0, 0.5.0, 0.4.0 and 0.3.0 guests are told apart by the `host` version they
        // import (and each `GuestPre::new` checks the exports). 0.3.0 and 0.2.0 differ
        // in `validate`'s type, which each `GuestPre::new` checks.
        let imports = |version: &str| {
            let name = format!("blueprint:runner/host@{version}");
            component.component_type().imports(&engine.engine).any(|(import, _)| import == name)
        };
        let pre = if imports("0.10.0") {
            GuestPre::V10(
                bindings::v10::GuestPre::new(instance_pre)
                    .map_err(|e| SandboxError::Incompatible(format!("as 0.10.0: {e:#}")))?,
            )
        } else if imports("0.9.0") {
            GuestPre::V9(
                bindings::v9::GuestPre::new(instance_pre)
                    .map_err(|e| SandboxError::Incompatible(format!("as 0.9.0: {e:#}")))?,
            )
        } else if imports("0.8.0") {
            GuestPre::V8(
                bindings::v8::GuestPre::new(instance_pre)
                    .map_err(|e| SandboxError::Incompatible(format!("as 0.8.0: {e:#}")))?,
            )
        } else if imports("0.7.0") {
            GuestPre::V7(
                bindings::v7::GuestPre::new(instance_pre)
                    .map_err(|e| SandboxError::Incompatible(format!("as 0.7.0: {e:#}")))?,
            )
        } else if imports("0.6.0") {
            GuestPre::V6(
                bindings::v6::GuestPre::new(instance_pre)
                    .map_err(|e| SandboxError::Incompatible(format!("as 0.6.0: {e:#}")))?,
            )
        } else if imports("0.5.0") {
            GuestPre::V5(
                bindings::v5::GuestPre::new(instance_pre)
                    .map_err(|e| SandboxError::Incompatible(format!("as 0.5.0: {e:#}")))?,
            )
        } else if imports("0.4.0") {
            GuestPre::V4(
                bindings::v4::GuestPre::new(instance_pre)
                    .map_err(|e| SandboxError::Incompatible(format!("as 0.4.0: {e:#}")))?,
            )
        } else {
            match bindings::v3::GuestPre::new(instance_pre.clone()) {
                Ok(pre) => GuestPre::V3(pre),
                Err(as_v3) => match bindings::v2::GuestPre::new(instance_pre) {
                    Ok(pre) => GuestPre::V2(pre),
                    Err(as_v2) => {
                        return Err(SandboxError::Incompatible(format!("as 0.3.0: {as_v3:#}; as 0.2.0: {as_v2:#}")));
                    }
                },
            }
        };
        let imports = component.component_type().imports(&engine.engine).map(|(name, _)| name.to_owned()).collect();
        let sandbox = Sandbox { engine, pre, limits, load_source, imports, settings: None };
        tracing::debug!(contract = sandbox.contract_version(), "guest linked");
        Ok(sandbox)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Gives the guest the operator's settings (`host.settings`). A guest older than
    /// 0.6.0 cannot be told them: refused, so that a setting is never silently ignored.
    pub fn with_settings(mut self, settings: Option<GuestSettings>) -> Result<Sandbox, SandboxError> {
        if settings.is_some() && !self.takes_settings() {
            let version = self.contract_version();
            return Err(SandboxError::Incompatible(format!(
                "GUEST_SETTINGS is set but the guest's contract {version} has no settings (0.6.0 and later)"
            )));
        }
        self.settings = settings;
        Ok(self)
    }

    /// Whether the guest can be given settings (contract 0.6.0 and later).
    pub fn takes_settings(&self) -> bool {
        self.minor() >= 6
    }

    /// Whether the guest can be told the song's loudness (`host.loudness`, contract 0.7.0
    /// and later): measuring it is worth its second only for such a guest.
    pub fn takes_loudness(&self) -> bool {
        self.minor() >= 7
    }

    /// Whether the guest fits a timeline itself (contract 0.8.0 and later): older guests
    /// validate strictly whatever they are asked, and know no `gs://` addresses.
    pub fn fits_timelines(&self) -> bool {
        self.minor() >= 8
    }

    /// Whether the guest's `validate` may keep data for its `plan` (`host.keep`, contract
    /// 0.9.0 and later).
    pub fn keeps_data(&self) -> bool {
        self.minor() >= 9
    }

    /// Whether the compiled guest came from the cache.
    pub fn load_source(&self) -> LoadSource {
        self.load_source
    }

    /// The contract version the guest implements, e.g. `0.3.0`.
    pub fn contract_version(&self) -> &'static str {
        // Newest first, one per minor version down to 0.2.0.
        CONTRACT_VERSIONS[CONTRACT_VERSIONS.len() + 1 - self.minor() as usize]
    }

    /// The contract's minor version (all are 0.x): each version has what the one before
    /// it had, so what a guest can be told is a minimum version.
    fn minor(&self) -> u32 {
        match self.pre {
            GuestPre::V10(_) => 10,
            GuestPre::V9(_) => 9,
            GuestPre::V8(_) => 8,
            GuestPre::V7(_) => 7,
            GuestPre::V6(_) => 6,
            GuestPre::V5(_) => 5,
            GuestPre::V4(_) => 4,
            GuestPre::V3(_) => 3,
            GuestPre::V2(_) => 2,
        }
    }

    /// Whether the guest is told where a prepared clip's GOPs start (`host.keyframes`,
    /// contract 0.10.0 and later). An older guest assumes a keyframe every `gop-frames`
    /// from the first, so it is given only clips prepared that way.
    pub fn knows_keyframe_grids(&self) -> bool {
        self.minor() >= 10
    }

    /// Whether the guest may be given prepared clips (contract 0.4.0 and later).
    pub fn takes_prepared_clips(&self) -> bool {
        self.minor() >= 4
    }

    /// The interfaces the component imports (`blueprint:runner/host@0.5.0`, WASI's...).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Whether the guest checks task-array manifests (contract 0.5.0 and later).
    pub fn checks_manifests(&self) -> bool {
        self.minor() >= 5
    }

    /// Runs the guest's `validate-manifest` on an untrusted task-array manifest. A guest
    /// older than 0.5.0 has none ([`SandboxError::Incompatible`]).
    pub async fn validate_manifest(&self, manifest: &str) -> Result<ManifestCheck, SandboxError> {
        if !self.checks_manifests() {
            let version = self.contract_version();
            return Err(SandboxError::Incompatible(format!(
                "contract {version} has no validate-manifest (0.5.0 and later)"
            )));
        }
        let (answer, report, _) = self.call(Call::ValidateManifest(manifest)).await?;
        let Answer::ValidateManifest(answer) = answer else {
            unreachable!("validate-manifest answers validate-manifest")
        };
        Ok(ManifestCheck { verdict: output::check_manifest(answer)?, report })
    }

    /// Runs the guest's `validate` on untrusted blueprint text. A guest older than 0.8.0
    /// validates strictly whatever `options` say; its slots are the blueprint's moves, and
    /// each transition lasts as the output asks.
    pub async fn validate(
        &self,
        blueprint: &str,
        options: &br_blueprint::CheckOptions,
    ) -> Result<Validation, SandboxError> {
        let options = request::options_to_wit(options);
        let (answer, report, kept) = self.call(Call::Validate(blueprint, &options)).await?;
        let mut verdict = match answer {
            Answer::Validate(answer) => output::check_validation(answer)?.map(br_blueprint::Validated::as_written),
            Answer::ValidateChecked(answer) => output::check_checked(answer)?,
            _ => unreachable!("validate answers validate"),
        };
        if let Ok(validated) = &mut verdict {
            validated.kept = kept;
        }
        Ok(Validation { verdict, report })
    }

    /// Runs the guest's `plan` on a validated blueprint and the probed media facts.
    pub async fn plan(&self, request: &br_plan::PlanRequest) -> Result<Planning, SandboxError> {
        let given = request::given_to_wit(request);
        let fit = request::fit_to_wit(&request.validated);
        let kept = request.validated.kept.clone();
        let request = request::to_wit(request);
        let (answer, report, _) = self.call(Call::Plan(&request, given, &fit, kept)).await?;
        let Answer::Plan(answer) = answer else { unreachable!("plan answers plan") };
        Ok(Planning { verdict: output::check_planning(answer)?, report })
    }

    /// One export call in a fresh store, under the three caps; with what the guest kept
    /// during it (`host.keep`).
    async fn call(&self, call: Call<'_>) -> Result<(Answer, CallReport, Option<String>), SandboxError> {
        let started = Instant::now();
        let mut store = new_store(&self.engine.engine, &self.limits, started);
        let limits = self.limits.clone();
        let name = call.name();
        if let Call::Plan(_, given, _, kept) = &call {
            store.data_mut().given = given.clone();
            store.data_mut().kept_for_plan = kept.clone();
        }
        store.data_mut().settings = self.settings.as_ref().map(|settings| settings.as_str().to_owned());
        let run = async {
            match &self.pre {
                GuestPre::V10(pre) => call_with_fit!(pre, store, call),
                GuestPre::V9(pre) => call_with_fit!(pre, store, call),
                GuestPre::V8(pre) => call_with_fit!(pre, store, call),
                GuestPre::V7(pre) => call_strict!(pre, store, call),
                GuestPre::V6(pre) => call_strict!(pre, store, call),
                GuestPre::V5(pre) => call_strict!(pre, store, call),
                GuestPre::V4(pre) => call_without_manifests!(pre, store, call),
                GuestPre::V3(pre) => call_without_manifests!(pre, store, call),
                GuestPre::V2(pre) => {
                    let guest = pre.instantiate_async(&mut store).await?;
                    match call {
                        Call::Validate(text, _) => {
                            let answer = guest.call_validate(&mut store, text).await?;
                            // A 0.2.0 refusal is only the errors: it names no task.
                            let no_task = |errors| wit::Refusal { task_id: None, errors };
                            Ok(Answer::Validate(answer.map_err(no_task)))
                        }
                        Call::Plan(request, ..) => guest.call_plan(&mut store, request).await.map(Answer::Plan),
                        Call::ValidateManifest(_) => unreachable!("checked by validate_manifest"),
                    }
                }
            }
        };
        let outcome = tokio::time::timeout(limits.deadline, run).await;
        let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let state = store.data_mut();
        let answer = match outcome {
            Err(_elapsed) => return Err(SandboxError::Deadline { limit: limits.deadline }),
            Ok(Err(error)) => return Err(state.classify(error, &limits)),
            Ok(Ok(answer)) => answer,
        };
        let memory_high_water = state.memory.high_water;
        let report = CallReport { fuel_used, memory_high_water, elapsed: started.elapsed(), log: state.log.lines() };
        tracing::debug!(call = name, fuel_used, elapsed_ms = report.elapsed.as_millis() as u64, "guest returned");
        Ok((answer, report, state.kept_by_validate.take()))
    }
}

/// Bytes the host may allocate for what the guest hands it in one go: the `validate` or
/// `plan` answer, or the arguments of one `log` call. wasmtime counts this "hostcall
/// fuel" while it copies strings (their bytes) and lists (length × the host's element
/// size) out of the guest's memory, and fails the call past it. Its default, 128 MiB,
/// does not depend on the guest: equal to the memory cap, a call holds at most the cap
/// in the guest plus the cap in the host's copy, which is what the job's memory budget
/// counts.
pub fn hostcall_fuel(limits: &Limits) -> usize {
    usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX)
}

fn new_store(wasm_engine: &wasmtime::Engine, limits: &Limits, started: Instant) -> Store<CallState> {
    let stdout = MemoryOutputPipe::new(guest_log::STDIO_CAPACITY);
    let stderr = MemoryOutputPipe::new(guest_log::STDIO_CAPACITY);
    let wasi = WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(engine::FrozenClock)
        .monotonic_clock(engine::FrozenClock)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let state = CallState {
        given: request::Given::default(),
        settings: None,
        kept_by_validate: None,
        kept_for_plan: None,
        wasi,
        table: ResourceTable::new(),
        memory: CappedMemory::new(limits.memory_bytes),
        log: GuestLog::default(),
        stdout,
        stderr,
    };
    let mut store = Store::new(wasm_engine, state);
    store.limiter(|state| &mut state.memory);
    // Fuel cannot fail to be set on an engine configured to consume it.
    let _ = store.set_fuel(limits.fuel);
    store.set_hostcall_fuel(hostcall_fuel(limits));
    // The ticker advances the epoch every few milliseconds: check the clock on each
    // tick, and yield so that the outer timeout can also fire.
    let deadline = started + limits.deadline;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

enum Call<'a> {
    /// The text, and how to check it (told to 0.8.0 guests only).
    Validate(&'a str, &'a wit::CheckOptions),
    ValidateManifest(&'a str),
    /// The request, what the host's imports tell about its inputs, the timeline's fit
    /// (given to 0.8.0 guests and later) and what `validate` kept (0.9.0).
    Plan(&'a wit::PlanRequest, request::Given, &'a wit::TimelineFit, Option<String>),
}

impl Call<'_> {
    fn name(&self) -> &'static str {
        match self {
            Call::Validate(..) => "validate",
            Call::ValidateManifest(_) => "validate-manifest",
            Call::Plan(..) => "plan",
        }
    }
}

enum Answer {
    Validate(Result<wit::Validated, wit::Refusal>),
    ValidateChecked(Result<wit::Checked, wit::Refusal>),
    ValidateManifest(Result<Vec<wit::ManifestEntry>, Vec<wit::ValidationError>>),
    Plan(Result<wit::Plan, Vec<wit::PlanError>>),
}

/// Per-call store data.
struct CallState {
    /// For `host.prepared` and `host.loudness`: what the host tells about the inputs of
    /// the `plan` call (empty for the other calls).
    given: request::Given,
    /// For `host.settings`.
    settings: Option<String>,
    /// What the guest kept during `validate` (`host.keep`), for the host to hand to `plan`.
    kept_by_validate: Option<String>,
    /// What `host.kept` returns during `plan`.
    kept_for_plan: Option<String>,
    wasi: WasiCtx,
    table: ResourceTable,
    memory: CappedMemory,
    log: GuestLog,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// `host.log` is the same in every contract version; each version has its own
/// `LogLevel` type, so the body is written once here and expanded per version.
macro_rules! host_log {
    ($version:ident) => {
        fn log(&mut self, level: bindings::$version::blueprint::runner::host::LogLevel, message: String) {
            use bindings::$version::blueprint::runner::host::LogLevel;
            let level = match level {
                LogLevel::Debug => "debug",
                LogLevel::Info => "info",
                LogLevel::Warn => "warn",
                LogLevel::Error => "error",
            };
            self.log.record(level, &message);
        }
    };
}

/// `host.prepared`, `host.settings` and `host.loudness` are the same in every version that has them.
macro_rules! host_prepared {
    () => {
        fn prepared(&mut self, input: u32) -> Option<wit::PreparedClip> {
            self.given.prepared.get(input as usize).cloned().flatten()
        }
    };
}

macro_rules! host_settings {
    () => {
        fn settings(&mut self) -> Option<String> {
            self.settings.clone()
        }
    };
}

/// `host.keep` and `host.kept` (0.9.0 and later).
macro_rules! host_keep {
    () => {
        fn keep(&mut self, data: String) -> Result<(), String> {
            let limit = br_blueprint::limits::MAX_KEPT_BYTES;
            if data.len() > limit {
                self.kept_by_validate = None;
                return Err(format!("{} bytes; at most {limit} may be kept", data.len()));
            }
            self.kept_by_validate = Some(data);
            Ok(())
        }

        fn kept(&mut self) -> Option<String> {
            self.kept_for_plan.clone()
        }
    };
}

macro_rules! host_loudness {
    () => {
        fn loudness(&mut self, input: u32) -> Option<wit::MeasuredLoudness> {
            self.given.loudness.get(input as usize).cloned().flatten()
        }
    };
}

impl bindings::v10::blueprint::runner::host::Host for CallState {
    host_log!(v10);
    host_prepared!();
    host_settings!();
    host_loudness!();
    host_keep!();

    fn keyframes(&mut self, input: u32) -> Option<wit::KeyframeGrid> {
        self.given.keyframes.get(input as usize).cloned().flatten()
    }
}

impl bindings::v9::blueprint::runner::host::Host for CallState {
    host_log!(v9);
    host_prepared!();
    host_settings!();
    host_loudness!();
    host_keep!();
}

impl bindings::v8::blueprint::runner::host::Host for CallState {
    host_log!(v8);
    host_prepared!();
    host_settings!();
    host_loudness!();
}

impl bindings::v7::blueprint::runner::host::Host for CallState {
    host_log!(v7);
    host_prepared!();
    host_settings!();
    host_loudness!();
}

impl bindings::v6::blueprint::runner::host::Host for CallState {
    host_log!(v6);
    host_prepared!();
    host_settings!();
}

impl bindings::v5::blueprint::runner::host::Host for CallState {
    host_log!(v5);
    host_prepared!();
}

impl bindings::v4::blueprint::runner::host::Host for CallState {
    host_log!(v4);
    host_prepared!();
}

impl bindings::v3::blueprint::runner::host::Host for CallState {
    host_log!(v3);
}

impl bindings::v2::blueprint::runner::host::Host for CallState {
    host_log!(v2);
}

impl CallState {
    /// Maps a failed call to the limit or fault that ended it.
    fn classify(&mut self, error: wasmtime::Error, limits: &Limits) -> SandboxError {
        // A refused grow makes a Rust guest abort, which looks like any other trap:
        // the limiter's record is what tells the two apart.
        if self.memory.refused_grow {
            return SandboxError::MemoryCap { limit_bytes: limits.memory_bytes };
        }
        if is_hostcall_fuel_exhausted(&error) {
            return SandboxError::CopyTooLarge { limit_bytes: limits.memory_bytes };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => SandboxError::OutOfFuel { limit: limits.fuel },
            Some(Trap::Interrupt) => SandboxError::Deadline { limit: limits.deadline },
            _ if is_link_error(&error) => SandboxError::Incompatible(format!("{error:#}")),
            Some(trap) => SandboxError::GuestTrap { reason: trap.to_string(), last_log: self.last_output() },
            None => SandboxError::GuestTrap { reason: first_line(&format!("{error:#}")), last_log: self.last_output() },
        }
    }

    /// The guest's last log lines, then the tail of its stderr (where a Rust panic
    /// message goes).
    fn last_output(&self) -> Vec<String> {
        let mut lines = self.log.lines();
        lines.extend(guest_log::tail_lines("stdout", &self.stdout.contents()));
        lines.extend(guest_log::tail_lines("stderr", &self.stderr.contents()));
        lines
    }
}

fn is_link_error(error: &wasmtime::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("import") && text.contains("not found") || text.contains("type mismatch")
}

/// wasmtime's error for exhausted hostcall fuel is a private type: its message is what
/// identifies it ("... fuel allocated for hostcalls has been exhausted" in 48.0.8).
fn is_hostcall_fuel_exhausted(error: &wasmtime::Error) -> bool {
    format!("{error:#}").contains("fuel allocated for hostcalls has been exhausted")
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().chars().take(500).collect()
}

/// `StoreLimits` that remembers whether it refused a memory grow, and how large the
/// memory grew.
struct CappedMemory {
    limits: StoreLimits,
    refused_grow: bool,
    high_water: u64,
}

impl CappedMemory {
    fn new(memory_bytes: u64) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(memory_bytes).unwrap_or(usize::MAX))
            .table_elements(100_000)
            .build();
        CappedMemory { limits, refused_grow: false, high_water: 0 }
    }
}

impl ResourceLimiter for CappedMemory {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.refused_grow |= !allowed;
        if allowed {
            self.high_water = self.high_water.max(desired as u64);
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every store copies at most the guest's memory cap out of it per call, whatever
    /// wasmtime's default (128 MiB) is.
    #[test]
    fn each_store_gets_hostcall_fuel_equal_to_the_memory_cap() {
        let engine = engine::SandboxEngine::shared().expect("engine");
        for mib in [16u64, 64, 224] {
            let limits = Limits { memory_bytes: mib * 1024 * 1024, ..Limits::default() };
            let store = new_store(&engine.engine, &limits, Instant::now());
            assert_eq!(store.hostcall_fuel() as u64, mib * 1024 * 1024);
        }
    }

    /// Bytes that are no component fail to load with wasmtime's error kept as the source
    /// and its causes in the message.
    #[test]
    fn a_load_failure_keeps_wasmtimes_error_as_its_source() {
        let error = Sandbox::load(b"not a component", Limits::default(), &CacheConfig { dir: None })
            .err()
            .expect("garbage does not load");
        let SandboxError::Load { message, .. } = &error else { panic!("{error:?}") };
        assert!(error.to_string().starts_with("could not load the guest component: "), "{error}");
        assert!(!message.is_empty());
        assert!(std::error::Error::source(&error).is_some(), "{error:?}");
    }
}
