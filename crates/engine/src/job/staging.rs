//! Inputs staged for the steps that read them: fetched again when a step needs one that
//! was let go, and an input that breaks a step told from a step that breaks.

use super::*;

/// Fetches an input again for a step that reads it after it was removed.
pub(super) struct Refetch<'a> {
    pub(super) storage: &'a dyn Storage,
    pub(super) keys: &'a [(String, String)],
    pub(super) remux_inputs: &'a [Option<u64>],
    /// Per input: its size when it was first staged.
    pub(super) input_bytes: &'a [u64],
    pub(super) config: &'a JobConfig,
}

impl Staging for Refetch<'_> {
    fn room_for(&self, input: u32) -> u64 {
        let bytes = self.input_bytes.get(input as usize).copied().unwrap_or(0);
        // A clip copied into MP4 again needs room for itself, its copy and the copying FFmpeg.
        if self.remux_inputs.get(input as usize).copied().flatten().is_some() {
            2 * bytes + bytes / 8 + media::REMUX_MEMORY + crate::budget::MIB
        } else {
            bytes
        }
    }

    fn stage<'a>(
        &'a self,
        input: u32,
        path: &'a Path,
        room: u64,
    ) -> Pin<Box<dyn Future<Output = Result<u64, StorageError>> + Send + 'a>> {
        Box::pin(async move {
            let (key, _) = self.keys.get(input as usize).ok_or_else(|| StorageError::Io {
                key: format!("input {input}"),
                store: self.storage.describe(),
                message: "no such input".into(),
                source: None,
            })?;
            let started = Instant::now();
            let remux = self.remux_inputs.get(input as usize).copied().flatten();
            // Inside the room the reading step holds (`room_for`): a clip to copy into MP4
            // needs room for itself, its copy and the copying FFmpeg.
            let most = if remux.is_some() { room.saturating_sub(media::REMUX_MEMORY) / 2 } else { room };
            let bytes = self.storage.fetch(key, path, &crate::budget::ledger::AtMost(most)).await?;
            if let Some(shift) = remux {
                let writes = room.saturating_sub(media::REMUX_MEMORY + bytes);
                let limits = ChildLimits::of_share(room.saturating_sub(bytes), writes, media::PROBE_TIMEOUT);
                let ffmpeg = &self.config.runner.ffmpeg;
                if let Err(e) = media::remux_for_exact_seeks(ffmpeg, path, key, shift, limits).await {
                    crate::files::remove_if_present(path);
                    return Err(StorageError::Io {
                        key: key.clone(),
                        store: self.storage.describe(),
                        message: e.message.clone(),
                        source: Some(Box::new(e)),
                    });
                }
            }
            tracing::info!(key = %key, bytes, seconds = started.elapsed().as_secs_f64(), "fetched again for a later step");
            Ok(bytes)
        })
    }
}

/// Room for one child of the fetch stage: its memory reserved in the ledger first (never
/// more than the fetches keep free, so it always comes once others finish), then one of
/// the probe slots. Nothing holds a slot while it waits for memory.
pub(super) struct ChildRoom<'a> {
    pub(super) ledger: &'a crate::budget::ledger::Ledger,
    pub(super) probes: &'a tokio::sync::Semaphore,
    pub(super) pointer: &'a str,
}

impl ChildRoom<'_> {
    pub(super) async fn take(
        &self,
        bytes: u64,
    ) -> Result<(crate::budget::ledger::Reservation<'_>, tokio::sync::SemaphorePermit<'_>), (Stage, Failure)> {
        let memory =
            self.ledger.reserve(bytes, 0, FETCH_KEEP_FREE).await.map_err(|e| budget_failure(self.pointer, e))?;
        let permit = self.probes.acquire().await.map_err(|e| (Stage::Probe, Failure::WorkFolder(e.to_string())))?;
        Ok((memory, permit))
    }
}

impl Job<'_> {
    /// The first of `inputs` (read by what failed, `failed`) that FFmpeg cannot read to
    /// its end, as the failure of its pointer; None when each reads whole (or cannot be
    /// checked: it cannot be fetched again, the check hit a limit or its time), and the
    /// failure stands. An input no longer staged is fetched again for the check only.
    pub(super) async fn broken_input(
        &self,
        inputs: &[u32],
        paths: &PathTable,
        keys: &[(String, String)],
        staging: &dyn Staging,
        failed: &str,
        step_said: &str,
    ) -> Option<Failure> {
        for &input in inputs {
            let (Some(file), Some((key, pointer))) = (paths.inputs.get(input as usize), keys.get(input as usize))
            else {
                continue;
            };
            let fetched = !file.is_file();
            // Every step has ended: what the ledger leaves is the check's.
            let ledger = self.config.runner.ledger.as_ref();
            if fetched && staging.stage(input, file, ledger.free().saturating_sub(media::PROBE_MEMORY)).await.is_err() {
                continue;
            }
            let limits = ChildLimits::reader(ledger.free().min(media::PROBE_MEMORY), media::PROBE_TIMEOUT);
            let unreadable = first_read_error(&self.config.runner.ffmpeg, file, limits).await;
            if fetched {
                crate::files::remove_if_present(file);
            }
            // The step's own error again is FFmpeg failing whatever it reads (a crash),
            // not this input.
            if let Some(why) = unreadable {
                if !step_said.is_empty() && step_said.contains(why.trim_matches('"')) {
                    continue;
                }
                let message = format!("{key} is broken: FFmpeg cannot read it to its end ({why}); {failed}");
                return Some(Failure::Media { pointer: pointer.clone(), message });
            }
        }
        None
    }
}

/// Whether FFmpeg reads `file` to its end: its video and audio packets demuxed and copied
/// into nothing (`-xerror`: the first error ends it), no decoding, under `limits` and the
/// probe's time. Some: FFmpeg's last error line, short and escaped. Anything that is not
/// FFmpeg saying so (it could not start, was killed by a limit, ran out of time) is None.
pub(super) async fn first_read_error(ffmpeg: &Path, file: &Path, limits: ChildLimits) -> Option<String> {
    let output = crate::ffmpeg::child_command(ffmpeg, limits)
        .args(["-nostdin", "-hide_banner", "-nostats", "-v", "error", "-xerror", "-threads", "1"])
        .args(formats::input_whitelist())
        .arg("-i")
        .arg(file)
        .args(["-map", "0:v?", "-map", "0:a?", "-dn", "-sn", "-c", "copy", "-f", "nut", "pipe:1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output();
    let Ok(Ok(output)) = tokio::time::timeout(media::PROBE_TIMEOUT, output).await else { return None };
    if output.status.success() || output.status.code() != Some(1) {
        return None;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("no message").trim();
    // The file's own path is the host's: shown by its role, not its name.
    let last = last.replace(&file.display().to_string(), "the input");
    Some(format!("{:?}", last.chars().take(200).collect::<String>()))
}
