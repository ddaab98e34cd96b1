//! The render stage (`Job::run`): the checked plan's FFmpeg steps, the output checked
//! against the timeline, the result stored.

use super::*;

impl Job<'_> {
    pub async fn run(&self, checked: Checked, reporter: &mut Reporter<'_>) -> Result<Outcome, (Stage, Failure)> {
        let prepared = self.prepare(checked, reporter).await?;
        let Prepared {
            validated,
            plan,
            paths,
            keys,
            remux_inputs,
            input_bytes,
            work,
            mut timings,
            facts,
            prepared_inputs,
            song,
        } = prepared;
        let frame = br_plan::output_frame(&validated, &facts);
        let rates =
            crate::schedule::FileRates::of_output(validated.output.video_bitrate, validated.output.audio_bitrate);
        let refetch = Refetch {
            storage: self.storage,
            keys: &keys,
            remux_inputs: &remux_inputs,
            input_bytes: &input_bytes,
            config: self.config,
        };
        let mut current_step: Option<String> = None;
        let started = Instant::now();
        reporter.running(Stage::Encode, Stage::Encode.at(0.0), format!("running {} steps", plan.plan().steps.len()));
        let runner = self.steps_runner(validated.total_duration).ok_or_else(|| self.deadline_passed())?;
        let audio_cache = song.map(|song| {
            crate::audio_cache::AudioCache::for_plan(
                self.storage,
                song,
                plan.plan(),
                validated.total_duration,
                work.path(),
            )
        });
        let cache: &dyn crate::work::StepCache = match &audio_cache {
            Some(cache) => cache,
            None => &crate::work::NoCache,
        };
        let steps = runner
            .run(
                &plan,
                &paths,
                validated.total_duration,
                frame,
                rates,
                &prepared_inputs,
                &refetch,
                cache,
                self.cancel,
                |progress| {
                    if current_step.as_deref() != Some(progress.label) {
                        current_step = Some(progress.label.to_owned());
                        self.watchdog.enter(&format!("encode: {}", progress.label));
                    }
                    let now = Instant::now();
                    if reporter.last_encode_update.is_none_or(|last| now.duration_since(last).as_secs_f64() >= 1.0) {
                        reporter.last_encode_update = Some(now);
                        reporter.running(Stage::Encode, Stage::Encode.at(progress.fraction), progress.label.to_owned());
                    }
                },
            )
            .await;
        let steps = match steps {
            Ok(steps) => steps,
            Err(error) => return Err(self.steps_failure(error, &plan, &paths, &keys, &refetch).await),
        };
        timings.insert("encode_seconds".into(), json!(started.elapsed().as_secs_f64()));

        let limits =
            ChildLimits::reader(self.config.runner.ledger.free().min(media::PROBE_MEMORY), media::PROBE_TIMEOUT);
        let output =
            media::probe(&self.config.ffprobe, &paths.output, &validated.output_key, limits).await.map_err(|e| {
                (
                    Stage::Encode,
                    Failure::Media {
                        pointer: "/output_config/output_path".into(),
                        message: format!("the result is unreadable: {}", e.message),
                    },
                )
            })?;
        let frames = media::count_video_frames(&self.config.ffprobe, &paths.output, limits).await.map_err(|e| {
            (
                Stage::Encode,
                Failure::Media {
                    pointer: "/output_config/output_path".into(),
                    message: format!("the result is unreadable: {}", e.message),
                },
            )
        })?;
        if let Some(problem) = nonconformity(&validated, &output, frames, frame) {
            // FFmpeg reads a clip cut short as far as it goes: the video comes out short.
            let inputs: Vec<u32> = (0..keys.len() as u32).collect();
            let failed = format!("the output does not match the blueprint: {problem}");
            if let Some(failure) = self.broken_input(&inputs, &paths, &keys, &refetch, &failed, "").await {
                return Err((Stage::Encode, failure));
            }
            return Err((Stage::Encode, Failure::Nonconforming(problem)));
        }
        let file_size = std::fs::metadata(&paths.output).map(|m| m.len()).unwrap_or(0);

        let started = Instant::now();
        reporter.running(Stage::Upload, Stage::Upload.at(0.0), format!("storing {}", validated.output_key));
        let upload = async {
            self.storage.store(&paths.output, &validated.output_key).await.map_err(|error| {
                (Stage::Upload, Failure::Storage { pointer: Some("/output_config/output_path".into()), error })
            })
        };
        self.unless_cancelled(Stage::Upload, upload).await?;
        timings.insert("upload_seconds".into(), json!(started.elapsed().as_secs_f64()));
        drop(work);

        // What the check adjusted in the timeline, then what the plan could not do as asked.
        let adjusted = validated.warnings.iter().map(|w| (&w.pointer, &w.message));
        let planned = plan.plan().warnings.iter().map(|w| (&w.pointer, &w.message));
        let warnings = adjusted
            .chain(planned)
            .map(|(pointer, message)| Warning { pointer: pointer.clone(), message: message.clone() });
        let result = JobResult {
            video_url: self.storage.url(&validated.output_key),
            output_path: validated.output_key.clone(),
            storage: self.storage.describe(),
            duration: output.duration,
            file_size,
            moves_count: validated.moves_shown(),
            warnings: warnings.collect(),
            timings,
            steps,
            memory: self.watchdog.peaks().figures(&self.config.runner.budget),
            cloud_run: crate::logging::cloud_run_fields(),
        };
        let timings = serde_json::Value::Object(result.timings.clone());
        reporter.completed(serde_json::to_value(&result).unwrap_or_default());
        Ok(Outcome { validated, timings })
    }
}

impl Job<'_> {
    /// The runner of the job's steps: they get what is left of the job's deadline (their
    /// `JobTimeout` is it passing); None when none is left ([`Job::deadline_passed`]).
    pub(super) fn steps_runner(&self, video_seconds: f64) -> Option<Runner> {
        let limit = self.time_left(video_seconds);
        (!limit.is_zero()).then(|| Runner { job_deadline: Some(limit), ..self.config.runner.clone() })
    }

    /// The job's failure once its deadline has passed before the steps start.
    pub(super) fn deadline_passed(&self) -> (Stage, Failure) {
        let whole = self.deadline.get().map(|(_, whole)| *whole).unwrap_or_default();
        (Stage::Encode, Failure::Deadline { limit: whole, stage: Stage::Encode.as_str() })
    }

    /// The job's failure for the steps' `error` running `plan`: a stop, the job's deadline,
    /// an input that could not be fetched again (at its pointer among `keys`), an input
    /// that is itself broken, or FFmpeg's.
    pub(super) async fn steps_failure(
        &self,
        error: FfmpegError,
        plan: &CheckedPlan,
        paths: &PathTable,
        keys: &[(String, String)],
        refetch: &Refetch<'_>,
    ) -> (Stage, Failure) {
        match error {
            // A plain failure (no limit, no stop) may be an input that is itself broken,
            // which the container probe could not see (a clip cut short after its header):
            // that is the input's fault, exit 4 at its pointer, not FFmpeg's (exit 5, retried).
            FfmpegError::Failed { step, label, status, stderr, limits } => {
                let inputs: Vec<u32> = crate::work::Uses::of(plan.plan()).inputs_of(step).collect();
                let failed = format!("step {step} ({label}) failed on it");
                if let Some(failure) = self.broken_input(&inputs, paths, keys, refetch, &failed, &stderr).await {
                    tracing::warn!(step, label, "the step failed: FFmpeg {status}: {}", stderr.trim());
                    return (Stage::Encode, failure);
                }
                (Stage::Encode, Failure::Ffmpeg(FfmpegError::Failed { step, label, status, stderr, limits }))
            }
            FfmpegError::Cancelled { step, label, reason } => {
                stopped(Stage::Encode, reason, format!("running step {step} ({label})"))
            }
            FfmpegError::JobTimeout { limit, .. } => {
                let whole = self.deadline.get().map_or(limit, |(_, whole)| *whole);
                (Stage::Encode, Failure::Deadline { limit: whole, stage: Stage::Encode.as_str() })
            }
            FfmpegError::Staging { input, error, .. } => {
                let pointer = keys.get(input as usize).map(|(_, pointer)| pointer.clone());
                (Stage::Encode, Failure::Storage { pointer, error })
            }
            e => (Stage::Encode, Failure::Ffmpeg(e)),
        }
    }
}

/// How the output differs from the video the blueprint describes, whoever planned it:
/// `round(total_duration × frame_rate)` frames of the output's `frame` size (as
/// `br_plan::output_frame` chose it) in the blueprint's codec, and (with the song) audio
/// as long as the video within one AAC frame. A plugin's plan passes the policy on its
/// form alone; this is where a wrong video is caught before it is stored.
pub(super) fn nonconformity(
    validated: &Validated,
    output: &br_plan::MediaFacts,
    frames: u64,
    frame: (u32, u32),
) -> Option<String> {
    let Some(video) = &output.video else {
        return Some("it has no video stream".into());
    };
    let codec = match validated.output.video_codec.as_str() {
        "libx264" => "h264",
        "libx265" => "hevc",
        other => other,
    };
    if (video.width, video.height) != frame || video.codec != codec {
        return Some(format!(
            "its video is {} {}x{}; the blueprint's is {codec} {}x{}",
            video.codec, video.width, video.height, frame.0, frame.1
        ));
    }
    let rate = br_plan::FrameRate::from_fps(validated.output.frame_rate);
    let expected = rate.frame_at(validated.total_duration).max(1);
    if frames != expected {
        return Some(format!(
            "it has {frames} video frames; the timeline has {expected} ({} s at {} fps)",
            validated.total_duration,
            rate.as_ffmpeg()
        ));
    }
    if validated.output.add_audio_overlay {
        let video = rate.seconds(frames);
        let Some(audio) = &output.audio else {
            return Some("it has no audio stream; the blueprint adds the song".into());
        };
        // One AAC frame at 48 kHz, and rounding.
        const ONE_AUDIO_FRAME: f64 = 1024.0 / 48_000.0 + 0.001;
        if (audio.duration - video).abs() > ONE_AUDIO_FRAME {
            return Some(format!("its audio lasts {:.3} s, its video {video:.3} s", audio.duration));
        }
    }
    None
}
