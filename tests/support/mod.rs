//! What the end-to-end tests start and make: media made with FFmpeg's `lavfi` sources
//! (`media`), a real PostgreSQL on a temporary data folder (`postgres`), fake-gcs-server
//! and a fault-injecting proxy in front of it (`gcs`), memory cgroups (`cgroup`), and the
//! backend's blueprint with its variants (`variants`, also read by `crates/blueprint`).

pub mod cgroup;
pub mod gcs;
pub mod media;
pub mod postgres;
pub mod variants;

/// Runs `command` with `text` on its standard input and waits for its output. The text is
/// written from a thread, so a child that writes before it has read everything cannot block
/// both on full pipes.
pub fn output_with_stdin(command: &mut std::process::Command, text: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut stdin = child.stdin.take().expect("piped");
    let text = text.to_owned();
    let writer = std::thread::spawn(move || {
        // A child that exits without reading all of it closes the pipe: its output says why.
        let _ = stdin.write_all(text.as_bytes());
    });
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for {command:?}: {e}"));
    writer.join().expect("the stdin writer");
    output
}
