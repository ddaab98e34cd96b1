//! The image's runtime stage without Docker: `scripts/container-layout` lays out the
//! binary, the precompiled guest cache and the work folder as the Dockerfile does, and
//! runs the entrypoint (`blueprint-runner job`) as the non-root user `runner` from an
//! env-only configuration, with the cache read-only. Needs root (it creates the user),
//! as CI has.

use std::process::Command;

#[test]
fn the_runtime_layout_runs_the_job_as_the_non_root_user() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/container-layout");
    let output = Command::new("bash")
        .arg(script)
        .env("BIN", env!("CARGO_BIN_EXE_blueprint-runner"))
        .output()
        .expect("run scripts/container-layout");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/container-layout failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
}
