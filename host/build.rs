//! Builds the guest components (wasm32-wasip2) before the host, so that one
//! `cargo build` gives a binary with the default guest embedded.
//!
//! The nested cargo uses its own target folder: the outer cargo holds the lock on
//! the main one for as long as this script runs.
//!
//! What is watched follows the guests' real dependency closure (from `cargo metadata`):
//! a hand-written list once missed `crates/plan`, and a planner change then shipped
//! inside a stale guest. `GUEST_WATCHED_PATHS` hands the list to a host test that
//! checks it against `cargo tree`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";
const GUESTS: [(&str, &str, &str); 5] = [
    ("blueprint-guest", "blueprint_guest.wasm", "DEFAULT_GUEST_WASM"),
    ("hostile-guest", "hostile_guest.wasm", "HOSTILE_GUEST_WASM"),
    ("contract-0-4-guest", "contract_0_4_guest.wasm", "CONTRACT_0_4_GUEST_WASM"),
    ("beat-cuts", "beat_cuts.wasm", "BEAT_CUTS_PLUGIN_WASM"),
    ("practice-mode", "practice_mode.wasm", "PRACTICE_MODE_PLUGIN_WASM"),
];
/// Read by the guests but not cargo dependencies: the contract their bindings are
/// generated from, the lock file and the workspace manifest (versions, profiles).
const ALSO_WATCHED: [&str; 3] = ["wit", "Cargo.lock", "Cargo.toml"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ sits in the workspace").to_path_buf();
    let mut watched: BTreeSet<PathBuf> = ALSO_WATCHED.iter().map(|name| root.join(name)).collect();
    watched.extend(guest_source_dirs(&root));
    for path in &watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let list = watched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join("\n");
    println!("cargo:rustc-env=GUEST_WATCHED_PATHS={}", list.replace('\n', ";"));
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target")).join("guests");
    build_guests(&root, &target_dir);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (_, file, variable) in GUESTS {
        let built = target_dir.join(GUEST_TARGET).join("release").join(file);
        let copy = out_dir.join(file);
        std::fs::copy(&built, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
        println!("cargo:rustc-env={variable}={}", copy.display());
    }
}

/// The folders of the guests and of every path dependency they reach, transitively
/// (normal and build dependencies; dev-dependencies do not go into a component).
fn guest_source_dirs(root: &Path) -> BTreeSet<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .output()
        .expect("running cargo metadata");
    if !output.status.success() {
        panic!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("metadata lists packages");
    let dir_of = |manifest: &str| Path::new(manifest).parent().expect("a manifest sits in a folder").to_path_buf();
    let mut pending: Vec<PathBuf> = GUESTS
        .iter()
        .map(|(name, _, _)| {
            let package = packages.iter().find(|p| p["name"] == *name).unwrap_or_else(|| panic!("no package {name}"));
            dir_of(package["manifest_path"].as_str().expect("manifest_path"))
        })
        .collect();
    let mut found = BTreeSet::new();
    while let Some(dir) = pending.pop() {
        if !found.insert(dir.clone()) {
            continue;
        }
        // A path dependency outside the workspace is not in `--no-deps` metadata: its
        // own folder is still watched, and so are its path dependencies if it is a member.
        let Some(package) = packages.iter().find(|p| p["manifest_path"].as_str().map(dir_of).as_ref() == Some(&dir))
        else {
            continue;
        };
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            if dependency["kind"] == "dev" {
                continue;
            }
            if let Some(path) = dependency["path"].as_str() {
                pending.push(PathBuf::from(path));
            }
        }
    }
    found
}

fn build_guests(root: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root).args(["build", "--release", "--target", GUEST_TARGET, "--target-dir"]).arg(target_dir);
    for (package, _, _) in GUESTS {
        command.args(["-p", package]);
    }
    // The outer build's settings are for the host target; they must not leak into
    // the guest build.
    for variable in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "TARGET",
        "HOST",
        "OPT_LEVEL",
        "PROFILE",
        "DEBUG",
        "OUT_DIR",
        "NUM_JOBS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(variable);
    }
    let status = command.status().expect("running cargo for the guests");
    if !status.success() {
        panic!(
            "building the guest components failed (see above). If the target is missing: \
             `rustup target add {GUEST_TARGET}`"
        );
    }
}
