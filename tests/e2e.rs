//! The end-to-end tests, one test binary (one link, one pool of test threads) with a
//! module per area: the real `blueprint-runner` binary, the real guests in the sandbox,
//! real FFmpeg, a real PostgreSQL, fake-gcs-server and memory cgroups, started by the
//! tests themselves (`support`). Run one area with a filter: `cargo test --test e2e run_cli::`.

// A test's unwrap is its failure report.
#![allow(clippy::unwrap_used)]

mod support;

mod audio_cache;
mod backend_blueprints;
mod container_layout;
mod gcs_cli;
mod job_pg;
mod launch_pg;
mod media_integrity;
mod memory_budget;
mod memory_cap;
mod plugin_cli;
mod plugin_kit;
mod prepare_cli;
mod run_cli;
mod task_array;
mod validate_cli;
mod work_ledger;
