//! Builds guest components (wasm32-wasip2) from a build script, for the host (the
//! default guest it embeds) and for the tests (`test-programs`: the hostile, frozen and
//! example guests), so that the production build compiles only what it ships.
//!
//! The nested cargo uses its own target folder (`target/guests-<checkout>`): the outer
//! cargo holds the lock on the main one for as long as a build script runs.
//!
//! What is watched follows the guests' real dependency closure (from `cargo metadata`):
//! a hand-written list once missed `crates/plan`, and a planner change then shipped
//! inside a stale guest. `GUEST_WATCHED_PATHS` hands the list to a test that checks it
//! against `cargo tree`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const GUEST_TARGET: &str = "wasm32-wasip2";
/// Read by the guests but not cargo dependencies: the contract their bindings are
/// generated from, the lock file and the workspace manifest (versions, profiles).
const ALSO_WATCHED: [&str; 3] = ["wit", "Cargo.lock", "Cargo.toml"];

/// One guest to build: its package, the file cargo makes, and the variable the calling
/// crate reads its path from (`env!`).
pub struct Guest {
    pub package: &'static str,
    pub file: &'static str,
    pub variable: &'static str,
}

/// Builds `guests` in release mode, copies each into `OUT_DIR` and sets its variable;
/// tells cargo to rerun when anything they are built from changes, and sets
/// `GUEST_WATCHED_PATHS` to that list. Panics (failing the build) with the reason.
pub fn build(guests: &[Guest]) {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = workspace_root(&manifest_dir);
    let mut watched: BTreeSet<PathBuf> = ALSO_WATCHED.iter().map(|name| root.join(name)).collect();
    watched.extend(guest_source_dirs(&root, guests));
    for path in &watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let list = watched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(";");
    println!("cargo:rustc-env=GUEST_WATCHED_PATHS={list}");
    // One folder per checkout: cargo copies a guest's wasm out of its deps only when it
    // compiles it, so two checkouts sharing a CARGO_TARGET_DIR (a baseline build for
    // `scripts/bench compare`) would otherwise embed whichever guest was compiled last.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(format!("guests-{}", checkout_id(&root)));
    build_guests(&root, &target_dir, guests);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for guest in guests {
        let built = target_dir.join(GUEST_TARGET).join("release").join(guest.file);
        let copy = out_dir.join(guest.file);
        std::fs::copy(&built, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
        println!("cargo:rustc-env={}={}", guest.variable, copy.display());
    }
}

/// A short name for the checkout at `root` (FNV-1a of its path: stable across builds and
/// toolchains, unlike std's hasher).
fn checkout_id(root: &Path) -> String {
    let hash = root
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// The folder of the workspace's `Cargo.lock`, above the calling crate.
fn workspace_root(manifest_dir: &Path) -> PathBuf {
    manifest_dir
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .expect("the calling crate sits in the workspace")
        .to_path_buf()
}

/// The folders of the guests and of every path dependency they reach, transitively
/// (normal and build dependencies; dev-dependencies do not go into a component).
fn guest_source_dirs(root: &Path, guests: &[Guest]) -> BTreeSet<PathBuf> {
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
    let mut pending: Vec<PathBuf> = guests
        .iter()
        .map(|guest| {
            let name = guest.package;
            let package = packages.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no package {name}"));
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

fn build_guests(root: &Path, target_dir: &Path, guests: &[Guest]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root).args(["build", "--release", "--target", GUEST_TARGET, "--target-dir"]).arg(target_dir);
    for guest in guests {
        command.args(["-p", guest.package]);
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
