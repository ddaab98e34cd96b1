//! `blueprint-runner memcheck`: runs a real job (`run`, status lines kept out of
//! stdout) one or more times in this process and reports where the memory went, as
//! the container's limit counts it: per stage and per FFmpeg step, the host's own
//! resident memory, the peak of the whole process tree and of the work folder's files,
//! the guest's linear memory and fuel per call, and, over several iterations, whether
//! the host grows (a leak). Written as JSON, with a table on stdout.

use std::path::Path;

use br_status::LogOnly;
use serde::Serialize;

use crate::cli::JobFlags;
use crate::commands::execute::{self, Launch, Mode};
use crate::settings::{Environment, Settings};
use br_engine::budget::tree;
use br_engine::budget::watchdog::{Peaks, Record, MEMCHECK_SAMPLE_EVERY};
use br_engine::budget::{mib, MIB};
use br_engine::cancel::Cancel;
use br_engine::exit;

/// Host growth per iteration, after the first, that still counts as flat: allocator
/// caches and the runtime's buffers settle within about this much.
const LEAK_TOLERANCE_MIB: f64 = 1.0;

pub async fn memcheck(flags: JobFlags, iterations: u32, out: &Path, env: &Environment) -> u8 {
    let cancel = Cancel::on_signals();
    let settings = match Settings::resolve(flags, env) {
        Ok(settings) => settings,
        Err(message) => return execute::refused(&mut LogOnly, None, message),
    };
    let baseline = tree::measure(None).host;
    let mut records = Vec::new();
    let mut host_after = Vec::new();
    for iteration in 1..=iterations.max(1) {
        let (code, record) = execute::execute_recorded(
            &settings,
            Mode::Run,
            &mut LogOnly,
            Launch::standalone(),
            &cancel,
            MEMCHECK_SAMPLE_EVERY,
        )
        .await;
        if code != exit::OK {
            eprintln!("error: iteration {iteration} of the job failed (exit {code}); no report");
            return code;
        }
        host_after.push(tree::measure(None).host);
        records.push(record);
    }
    let Some(first) = records.first() else {
        return exit::USAGE;
    };
    let report = report(first, &records, baseline, &host_after, settings.budget.total, settings.budget.guest);
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    if let Err(error) = std::fs::write(out, text + "\n") {
        eprintln!("error: cannot write {}: {error}", out.display());
        return exit::USAGE;
    }
    print_table(&report);
    println!("report written to {}", out.display());
    exit::OK
}

/// What `memcheck` writes (JSON) and prints (a table).
#[derive(Debug, Serialize)]
struct MemcheckReport {
    budget_mib: u64,
    baseline_mib: f64,
    /// The worst total peak of any iteration as a share of the budget.
    utilization: f64,
    headroom_mib: f64,
    stages: Vec<StageReport>,
    peak: PeakReport,
    guest: GuestReport,
    iterations: usize,
    leak: LeakReport,
}

/// One stage or FFmpeg step of the first iteration.
#[derive(Debug, Serialize)]
struct StageReport {
    name: String,
    host_rss_mib: f64,
    delta_from_baseline_mib: f64,
    host_peak_mib: f64,
    tree_peak_mib: f64,
    work_folder_mib: f64,
    total_peak_mib: f64,
}

#[derive(Debug, Serialize)]
struct PeakReport {
    tree_mib: f64,
    host_mib: f64,
    work_folder_mib: f64,
    total_mib: f64,
}

#[derive(Debug, Serialize)]
struct GuestReport {
    calls: Vec<GuestCallReport>,
}

#[derive(Debug, Serialize)]
struct GuestCallReport {
    call: &'static str,
    fuel: u64,
    memory_high_water_mib: f64,
    cap_mib: f64,
}

#[derive(Debug, Serialize)]
struct LeakReport {
    host_rss_after_iteration_mib: Vec<f64>,
    growth_per_iteration_mib: f64,
    tolerance_mib: f64,
    flat: bool,
}

fn report(
    first: &Record,
    all: &[Record],
    baseline: u64,
    host_after: &[u64],
    budget: u64,
    guest_cap: u64,
) -> MemcheckReport {
    let stages = first
        .parts
        .iter()
        .map(|part| StageReport {
            name: part.name.clone(),
            host_rss_mib: mib(part.host_at_end),
            delta_from_baseline_mib: mib(part.host_at_end.saturating_sub(baseline)),
            host_peak_mib: mib(part.peaks.host),
            tree_peak_mib: mib(part.peaks.processes),
            work_folder_mib: mib(part.peaks.files),
            total_peak_mib: mib(part.peaks.total),
        })
        .collect();
    // The worst of every iteration (`all` holds the first one too).
    let peak = all.iter().fold(Peaks::default(), |worst, record| worst.merge(record.peaks));
    let calls = first
        .guest_calls
        .iter()
        .map(|call| GuestCallReport {
            call: call.call,
            fuel: call.fuel,
            memory_high_water_mib: mib(call.memory_high_water),
            cap_mib: mib(guest_cap),
        })
        .collect();
    // Flat after the first iteration: the first one fills caches (compiled guest, allocator).
    let growth = match host_after {
        [_, second, .., last] => (*last as f64 - *second as f64) / MIB as f64 / (host_after.len() - 2).max(1) as f64,
        _ => 0.0,
    };
    MemcheckReport {
        budget_mib: budget / MIB,
        baseline_mib: mib(baseline),
        utilization: (peak.total as f64 / budget as f64 * 1000.0).round() / 1000.0,
        headroom_mib: mib(budget.saturating_sub(peak.total)),
        stages,
        peak: PeakReport {
            tree_mib: mib(peak.processes),
            host_mib: mib(peak.host),
            work_folder_mib: mib(peak.files),
            total_mib: mib(peak.total),
        },
        guest: GuestReport { calls },
        iterations: host_after.len(),
        leak: LeakReport {
            host_rss_after_iteration_mib: host_after.iter().map(|&b| mib(b)).collect(),
            growth_per_iteration_mib: (growth * 100.0).round() / 100.0,
            tolerance_mib: LEAK_TOLERANCE_MIB,
            flat: host_after.len() < 3 || growth <= LEAK_TOLERANCE_MIB,
        },
    }
}

fn print_table(report: &MemcheckReport) {
    println!(
        "{:<44} {:>9} {:>9} {:>10} {:>11} {:>9}",
        "stage or step", "host MiB", "Δ base", "tree peak", "work folder", "total"
    );
    for stage in &report.stages {
        let name: String = stage.name.chars().take(44).collect();
        println!(
            "{:<44} {:>9.1} {:>9.1} {:>10.1} {:>11.1} {:>9.1}",
            name,
            stage.host_rss_mib,
            stage.delta_from_baseline_mib,
            stage.tree_peak_mib,
            stage.work_folder_mib,
            stage.total_peak_mib,
        );
    }
    let peak = &report.peak;
    println!(
        "peak: {:.1} MiB of {} (processes {:.1}, host {:.1}, work folder {:.1}); utilization {:.1}%, headroom {:.1} MiB",
        peak.total_mib,
        report.budget_mib,
        peak.tree_mib,
        peak.host_mib,
        peak.work_folder_mib,
        report.utilization * 100.0,
        report.headroom_mib,
    );
    for call in &report.guest.calls {
        println!(
            "guest {}: {} fuel, {:.1} MiB of linear memory (cap {:.0})",
            call.call, call.fuel, call.memory_high_water_mib, call.cap_mib
        );
    }
    let leak = &report.leak;
    println!(
        "host after each iteration (MiB): {:?}; growth {:.2} MiB per iteration after the first (tolerance {}): {}",
        leak.host_rss_after_iteration_mib,
        leak.growth_per_iteration_mib,
        leak.tolerance_mib,
        if leak.flat { "flat" } else { "GROWS" }
    );
}
