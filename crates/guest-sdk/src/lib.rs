//! The guest SDK: everything a Blueprint Runner plugin needs, so that a plugin is the one
//! decision it changes and nothing else.
//!
//! A plugin is a type implementing [`Plugin`]. Each method has the built-in behaviour as
//! its default, so a plugin overrides only what it changes, and may call the default
//! ([`defaults`]) and adjust its answer:
//!
//! ```
//! use br_guest_sdk::{defaults, plan::{Plan, PlanError, PlanRequest}, Plugin};
//!
//! struct HardCuts;
//!
//! impl Plugin for HardCuts {
//!     fn plan(mut request: PlanRequest) -> Result<Plan, Vec<PlanError>> {
//!         for slot in &mut request.validated.moves {
//!             slot.transition = br_guest_sdk::blueprint::Transition::Cut;
//!         }
//!         defaults::plan(&request)
//!     }
//! }
//!
//! br_guest_sdk::export_plugin!(HardCuts);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (a `cdylib`). On other
//! targets the crate has no bindings and [`export_plugin!`] expands to nothing, so a
//! plugin's decisions are ordinary functions its native tests can call, and
//! [`check::plan_passes`] holds a plan to the host's own policy there.
//!
//! The plugin sees the crates' own types ([`blueprint`], [`plan`]); the SDK converts them to
//! and from the contract's (`wit/blueprint-runner.wit`, the version in [`CONTRACT`]).
//! Tested with Rust 1.95 and wit-bindgen 0.62.

#![warn(missing_docs)]

pub use br_blueprint as blueprint;
pub use br_plan as plan;
pub use serde_json;

pub mod defaults;
pub mod graph;
pub mod kept;
pub mod settings;

#[cfg(not(target_arch = "wasm32"))]
pub mod check;

/// The bindings of the contract, generated for `wasm32` builds only.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings;

pub use settings::{settings, Settings, SettingsError};

/// The contract version a plugin built with this SDK implements.
pub const CONTRACT: &str = "0.10.0";

/// The decisions a plugin makes. Every method defaults to the built-in guest's.
pub trait Plugin {
    /// Checks an untrusted blueprint and normalises it (the contract's `validate`). A
    /// refusal lists every problem, each with a JSON pointer. Unless `options.strict`, the
    /// built-in check fits the timeline the backend meant and lists each adjustment in
    /// [`blueprint::Validated::warnings`]; a plugin may change the fit, which its `plan`
    /// gets back (each slot's `origin` and `transition_seconds`).
    fn validate(
        blueprint: &str,
        options: &blueprint::CheckOptions,
    ) -> Result<blueprint::Validated, blueprint::Refusal> {
        defaults::validate(blueprint, options)
    }

    /// Turns a validated blueprint and the host's facts about its media into FFmpeg steps
    /// (the contract's `plan`). The host holds the plan to its policy and checks the video
    /// it makes against the timeline.
    fn plan(request: plan::PlanRequest) -> Result<plan::Plan, Vec<plan::PlanError>> {
        defaults::plan(&request)
    }

    /// Checks a task array's manifest (the contract's `validate-manifest`).
    fn validate_manifest(
        manifest: &str,
    ) -> Result<Vec<blueprint::manifest::ManifestEntry>, Vec<blueprint::ValidationError>> {
        defaults::validate_manifest(manifest)
    }
}

/// Records a line in the job's log (at `debug`, shown with `BLUEPRINT_RUNNER_LOG=debug`;
/// the last lines are shown when the guest traps). Natively, it prints to stderr.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use bindings::blueprint::runner::host::LogLevel as Wit;
        let level = match level {
            LogLevel::Debug => Wit::Debug,
            LogLevel::Info => Wit::Info,
            LogLevel::Warn => Wit::Warn,
            LogLevel::Error => Wit::Error,
        };
        bindings::blueprint::runner::host::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{level:?}: {message}");
}

/// How much a line of the job's log matters (the contract's `host.log-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Detail for whoever develops or debugs the plugin.
    Debug,
    /// What the plugin decided, in the ordinary course of a job.
    Info,
    /// Something unexpected the plugin worked around.
    Warn,
    /// Something that went wrong.
    Error,
}

/// Exports a [`Plugin`] as the component's implementation of the contract. Use it once,
/// at the top of the plugin's crate. On targets other than `wasm32` it expands to nothing.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ident) => {
        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::Guest for $plugin {
            fn validate(
                blueprint: ::std::string::String,
                options: $crate::bindings::wit::CheckOptions,
            ) -> ::std::result::Result<$crate::bindings::wit::Checked, $crate::bindings::wit::Refusal> {
                $crate::bindings::glue::validate::<$plugin>(blueprint, options)
            }

            fn plan(
                request: $crate::bindings::wit::PlanRequest,
                fit: $crate::bindings::wit::TimelineFit,
            ) -> ::std::result::Result<$crate::bindings::wit::Plan, ::std::vec::Vec<$crate::bindings::wit::PlanError>> {
                $crate::bindings::glue::plan::<$plugin>(request, fit)
            }

            fn validate_manifest(
                manifest: ::std::string::String,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::bindings::wit::ManifestEntry>,
                ::std::vec::Vec<$crate::bindings::wit::ValidationError>,
            > {
                $crate::bindings::glue::validate_manifest::<$plugin>(manifest)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export_guest!($plugin with_types_in $crate::bindings);
    };
}
