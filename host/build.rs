//! Builds the guest components (wasm32-wasip2) before the host, so that one
//! `cargo build` gives a binary with the default guest embedded.
//!
//! The nested cargo uses its own target folder: the outer cargo holds the lock on
//! the main one for as long as this script runs.

use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";
const GUESTS: [(&str, &str, &str); 2] = [
    ("blueprint-guest", "blueprint_guest.wasm", "DEFAULT_GUEST_WASM"),
    ("hostile-guest", "hostile_guest.wasm", "HOSTILE_GUEST_WASM"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ sits in the workspace").to_path_buf();
    for watched in ["guest", "crates/blueprint", "wit", "tests/guests", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests");
    build_guests(&root, &target_dir);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (_, file, variable) in GUESTS {
        let built = target_dir.join(GUEST_TARGET).join("release").join(file);
        let copy = out_dir.join(file);
        std::fs::copy(&built, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
        println!("cargo:rustc-env={variable}={}", copy.display());
    }
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
        "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR",
        "TARGET", "HOST", "OPT_LEVEL", "PROFILE", "DEBUG", "OUT_DIR", "NUM_JOBS", "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER", "CARGO_PRIMARY_PACKAGE",
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
