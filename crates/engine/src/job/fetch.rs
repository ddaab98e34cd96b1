//! The fetch and probe stage (`Job::prepare`): inputs downloaded a few at a time and
//! probed as they land, the song measured, the guest asked for its plan.

use super::*;

impl Job<'_> {
    /// Probes a staged input within its own reservation.
    pub(super) async fn probe_staged(
        &self,
        room: &ChildRoom<'_>,
        file: &Path,
        key: &str,
    ) -> Result<media::Probed, (Stage, Failure)> {
        let (_memory, _permit) = room.take(media::PROBE_MEMORY).await?;
        let limits = ChildLimits::reader(media::PROBE_MEMORY, media::PROBE_TIMEOUT);
        media::probe_container(&self.config.ffprobe, file, key, limits)
            .await
            .map_err(|e| probe_failure(room.pointer, e))
    }

    /// Copies a staged clip into MP4 in place (its copy sits beside it until it replaces
    /// it, both charged) and probes it again.
    /// `shift_micros`: a late video's delay, so that it starts with the file (see
    /// [`media::LATE_VIDEO_MICROS`]); checked on the copy.
    pub(super) async fn remux_staged(
        &self,
        room: &ChildRoom<'_>,
        file: &Path,
        key: &str,
        shift_micros: u64,
    ) -> Result<media::Probed, (Stage, Failure)> {
        let size = room.ledger.charged(file).unwrap_or(0);
        let writes = size + size / 8 + crate::budget::MIB;
        {
            let (memory, _permit) = room.take(media::REMUX_MEMORY + writes).await?;
            let limits = ChildLimits::of_share(memory.bytes(), writes, media::PROBE_TIMEOUT);
            media::remux_for_exact_seeks(&self.config.runner.ffmpeg, file, key, shift_micros, limits)
                .await
                .map_err(|e| probe_failure(room.pointer, e))?;
            room.ledger.charge_as_found(file);
        }
        let probed = self.probe_staged(room, file, key).await?;
        if probed.late_video_micros() > 0 {
            let message = format!(
                "{key}: its video starts {:.6} s after its file does, even once copied to start with it",
                probed.video_delay_micros as f64 / 1e6
            );
            return Err((Stage::Probe, Failure::Media { pointer: room.pointer.to_owned(), message }));
        }
        Ok(probed)
    }

    /// Fetches one input into the work folder and probes it: a clip is copied into MP4
    /// when it cannot be sought by frame (or its keyframe index lies), a prepared clip
    /// that is not as prepared is set aside for the original, the song is measured.
    async fn stage_input(
        &self,
        shared: &StagingShared<'_>,
        input: InputToStage<'_>,
    ) -> Result<StagedInput, (Stage, Failure)> {
        let InputToStage { index, key, pointer, destination, mut expected, original } = input;
        let StagingShared { ledger, probes, ceiling, measure_song, song_seconds, song, work } = *shared;
        let room = ChildRoom { ledger, probes, pointer };
        // A prepared clip that is not what its profile and manifest say is set
        // aside for the original clip (once: `expected` is then None).
        let mut key = key;
        let mut fell_back = false;
        let (probed, remuxed) = 'stage: loop {
            // The object's declared size is reserved before its first byte is
            // written; it waits while others hold the room.
            let gate = crate::budget::ledger::Reserving::new(ledger, FETCH_KEEP_FREE, ceiling);
            self.storage.fetch(key, &destination, &gate).await.map_err(|error| staging_failure(pointer, error))?;
            gate.into_file(&destination);
            let mut probed = self.probe_staged(&room, &destination, key).await?;
            // Input 0 is the song (read from its start); the others are clips, which
            // steps read from a point inside them.
            // A clip's trims count from its first video frame: a late video is shifted to the file's start.
            let shift = if index > 0 { probed.late_video_micros() } else { 0 };
            let mut remuxed = index > 0 && (!probed.seeks_exactly() || shift > 0);
            if remuxed {
                probed = self.remux_staged(&room, &destination, key, shift).await?;
                tracing::info!(key = %key, container = %probed.container, "copied into MP4 to seek in it by frame");
            }
            // A clip's seek points are its bitstream's keyframes, not its container's
            // claims: a keyframe index that lists other frames is rebuilt by copying the
            // packets into MP4 (the muxer indexes the parser's keyframes), checked again.
            let mut keyframes = None;
            while index > 0 && probed.facts.video.is_some() {
                let started = Instant::now();
                let found = {
                    // Two ffprobe passes at once (the container's flags, the parser's).
                    let (_memory, _permit) = room.take(2 * media::PROBE_MEMORY).await?;
                    let limits = ChildLimits::reader(2 * media::PROBE_MEMORY, media::PROBE_TIMEOUT);
                    media::keyframes(&self.config.ffprobe, &destination, key, limits)
                        .await
                        .map_err(|e| probe_failure(pointer, e))?
                };
                let Some(at) = found.false_keyframe() else {
                    tracing::debug!(key = %key, seconds = started.elapsed().as_secs_f64(), "keyframe index checked");
                    keyframes = Some(found);
                    break;
                };
                if remuxed {
                    let message = format!(
                        "{key}: its container's keyframe index does not match its frames (the frame at \
                         {at:.3} s is listed as a keyframe, its bitstream does not start a GOP there)"
                    );
                    return Err((Stage::Probe, Failure::Media { pointer: pointer.to_owned(), message }));
                }
                tracing::warn!(key = %key, at, "its keyframe index lists a non-keyframe: copied into MP4");
                probed = self.remux_staged(&room, &destination, key, 0).await?;
                remuxed = true;
            }
            if let Some((clip, profile)) = &expected {
                let found = keyframes.as_ref().zip(probed.facts.video.as_ref());
                let mismatch = found.map_or_else(
                    || Some("it has no video stream".to_owned()),
                    |(keyframes, video)| crate::prepare::mismatch(profile, clip, video, keyframes),
                );
                if let (Some(why), Some(original)) = (mismatch, original) {
                    tracing::warn!(key = %key, "not as prepared ({why}): {original} is used");
                    ledger.remove(&destination);
                    (key, expected, fell_back) = (original, None, true);
                    continue 'stage;
                }
            }
            break (probed, remuxed.then_some(shift));
        };
        if let Some(reason) = probed.unshowable_pixels().filter(|_| index > 0) {
            let message = format!("{key}: {reason}");
            return Err((Stage::Probe, Failure::Media { pointer: pointer.to_owned(), message }));
        }
        let facts = probed.facts;
        let role = if index == 0 { formats::Role::Song } else { formats::Role::Clip };
        if let Some(reason) = formats::undecodable(&facts, role) {
            return Err((
                Stage::Probe,
                Failure::Media { pointer: pointer.to_owned(), message: format!("{key}: {reason}") },
            ));
        }
        let loudness = match &facts.audio {
            Some(audio) if index == 0 && measure_song => {
                let lengths = (song_seconds, audio.duration.max(facts.duration));
                let cached = match song {
                    Some(song) => crate::audio_cache::cached_loudness(self.storage, song, lengths).await,
                    None => None,
                };
                match cached {
                    Some(loudness) => Some(loudness),
                    None => {
                        let measured = {
                            let (_memory, _permit) = room.take(media::LOUDNESS_MEMORY).await?;
                            let limits = ChildLimits::reader(media::LOUDNESS_MEMORY, media::LOUDNESS_TIMEOUT);
                            measured_loudness(&self.config.runner.ffmpeg, &destination, key, lengths, limits).await
                        };
                        if let (Some(loudness), Some(song)) = (measured, song) {
                            crate::audio_cache::keep_loudness(self.storage, work, song, lengths, loudness).await;
                        }
                        measured
                    }
                }
            }
            _ => None,
        };
        Ok(StagedInput { index, path: destination, facts, remuxed, loudness, fell_back })
    }

    /// The guest's plan for `request`, checked: the media within the budget first (a clip
    /// too large to decode is a bad input, exit 4), then the plan against the policy and
    /// the memory estimate.
    async fn checked_plan(
        &self,
        request: &PlanRequest,
        reporter: &mut Reporter<'_>,
    ) -> Result<br_policy::CheckedPlan, (Stage, Failure)> {
        let (validated, facts) = (&request.validated, &request.inputs);
        estimate::check_with_media(validated, facts, &self.config.runner.budget)
            .map_err(|e| (Stage::Probe, Failure::Invalid(vec![e])))?;
        // A clip whose own frames are too large to decode in this budget is a bad input
        // for this job (exit 4, its pointer), not a step that fails and is retried.
        let frame = br_plan::output_frame(validated, facts);
        for (clip, input) in facts.iter().enumerate().skip(1) {
            let Some(video) = &input.video else { continue };
            if let Some(problem) =
                estimate::clip_frame_problem((video.width, video.height), frame, &self.config.runner.budget)
            {
                let message = format!("{}: {problem}", input.key);
                return Err((Stage::Probe, Failure::Media { pointer: first_use(validated, clip - 1), message }));
            }
        }
        reporter.running(Stage::Plan, Stage::Plan.at(0.0), "planning in the sandbox");
        // Written before the call: a request whose plan traps is the one most worth replaying.
        if let Some(path) = &self.config.save_plan_request {
            crate::plan_request::write(path, request)
                .map_err(|error| (Stage::Plan, Failure::Setup(error.to_string())))?;
        }
        let planning = self
            .unless_cancelled(Stage::Plan, async {
                self.sandbox.plan(request).await.map_err(|e| (Stage::Plan, Failure::Sandbox(e)))
            })
            .await?;
        self.watchdog.guest_call("plan", &planning.report);
        let plan = match planning {
            Planning { verdict: Ok(plan), .. } => plan,
            Planning { verdict: Err(errors), .. } => return Err((Stage::Plan, Failure::Plan(errors))),
        };
        let plan = br_policy::check(&plan, request.inputs.len() as u32, &PolicyLimits::for_request(request))
            .map_err(|v| (Stage::Plan, Failure::Policy(v)))?;
        estimate::check_plan(plan.plan(), &self.config.runner.budget)
            .map_err(|(_, message)| (Stage::Plan, Failure::PlanTooLarge(message)))?;
        for warning in &plan.plan().warnings {
            tracing::warn!(pointer = %warning.pointer, "{}", warning.message);
        }
        Ok(plan)
    }

    /// Fetches, probes, plans and checks the plan. On failure returns the stage it
    /// failed in.
    pub async fn prepare(&self, checked: Checked, reporter: &mut Reporter<'_>) -> Result<Prepared, (Stage, Failure)> {
        let Checked { validated, validate_seconds } = checked;
        let mut timings = serde_json::Map::new();
        timings.insert("validate_seconds".into(), json!(validate_seconds));
        let mut clock = Instant::now();
        let mut lap = |name: &str, timings: &mut serde_json::Map<String, serde_json::Value>| {
            timings.insert(format!("{name}_seconds"), json!(clock.elapsed().as_secs_f64()));
            clock = Instant::now();
        };

        // One deadline for the whole job, from here: fetch, probes, loudness, plan, steps.
        let limit = self.config.runner.job_limit(validated.total_duration);
        let _ = self.deadline.set((tokio::time::Instant::now() + limit, limit));
        let work = make_work_folder(&self.config.work_root, &validated.task_id).map_err(|e| (Stage::Fetch, e))?;
        self.watchdog.watch_folder(work.path());
        let use_prepared = self.config.use_prepared && self.sandbox.takes_prepared_clips();
        // The lookups (a manifest each, a marker, perhaps a probe; the song's identity and
        // the FFmpeg build for the audio cache) are cancellable too.
        let lookups = async {
            let prepared_clips = async {
                match use_prepared {
                    true => self.fresh_prepared_clips(&validated, work.path()).await,
                    false => (None, Vec::new()),
                }
            };
            let song = async {
                if !(self.config.audio_cache && validated.output.add_audio_overlay) {
                    return None;
                }
                let ffmpeg = crate::audio_cache::ffmpeg_identity(&self.config.runner.ffmpeg).await?;
                crate::audio_cache::SongIdentity::of(self.storage, &validated.audio_key, ffmpeg).await
            };
            Ok(tokio::join!(prepared_clips, song))
        };
        let ((profile, found), song) = self.unless_cancelled(Stage::Fetch, lookups).await?;
        let mut keys: Vec<(String, String)> = std::iter::once((validated.audio_key.clone(), "/audio_path".to_owned()))
            .chain(validated.clip_keys.iter().enumerate().map(|(clip, key)| {
                let staged =
                    found.get(clip).cloned().flatten().map_or_else(|| key.clone(), |(prepared_key, _)| prepared_key);
                (staged, first_use(&validated, clip))
            }))
            .collect();
        // Per input, as the plan request has them: the song is never prepared.
        let mut prepared: Vec<Option<br_plan::PreparedClip>> =
            std::iter::once(None).chain(found.iter().map(|clip| clip.clone().map(|(_, facts)| facts))).collect();
        let prepared_count = found.iter().flatten().count();
        let mut prepared_inputs: Vec<bool> = prepared.iter().map(Option::is_some).collect();
        if use_prepared {
            tracing::info!(prepared = prepared_count, clips = validated.clip_keys.len(), "prepared clips found fresh");
        }
        timings.insert("prepared_clips".into(), json!(prepared_count));
        reporter.running(
            Stage::Fetch,
            Stage::Fetch.at(0.0),
            format!(
                "fetching {} objects from {}, {} at a time",
                keys.len(),
                self.storage.describe(),
                self.config.download_concurrency
            ),
        );
        // Each object is probed as soon as it is down, while others still download;
        // probes are few at a time (each ffprobe is a process of its own).
        let probes = tokio::sync::Semaphore::new(PARALLEL_PROBES);
        // The song's loudness, for a guest that can be told it: one exact gain then
        // replaces loudnorm's dynamic mode (host.loudness, contract 0.7.0).
        let measure_song = validated.output.normalize_audio && self.sandbox.takes_loudness();
        let song_seconds = validated.total_duration;
        let ledger = self.config.runner.ledger.as_ref();
        // Probed inputs stay while they fit in a quarter of the shared budget; the rest
        // are fetched again before the step that reads them (see `work`).
        let cache_bytes = self.config.runner.budget.shared / 4;
        // An object larger than this could wait for ever: refused at once.
        let ceiling = ledger.ceiling(FETCH_KEEP_FREE, cache_bytes);
        let shared = StagingShared {
            ledger,
            probes: &probes,
            ceiling,
            measure_song,
            song_seconds,
            song: song.as_ref(),
            work: work.path(),
        };
        let staging = keys.iter().enumerate().map(|(index, (key, pointer))| {
            let input = InputToStage {
                index,
                key,
                pointer,
                destination: work.path().join(staged_name(index, key)),
                expected: prepared.get(index).cloned().flatten().zip(profile.as_ref()),
                original: index.checked_sub(1).and_then(|clip| validated.clip_keys.get(clip)).map(String::as_str),
            };
            self.stage_input(&shared, input)
        });
        let mut staged = futures::stream::iter(staging).buffer_unordered(self.config.download_concurrency.max(1));
        let mut inputs = vec![PathBuf::new(); keys.len()];
        let mut facts: Vec<Option<MediaFacts>> = vec![None; keys.len()];
        let mut remux_inputs = vec![None; keys.len()];
        let mut input_bytes = vec![0u64; keys.len()];
        let mut song_loudness = None;
        let mut fell_back_to_originals = Vec::new();
        let mut done = 0;
        let mut kept_bytes = 0;
        // The first failure ends the job: dropping the stream cancels the transfers
        // still running, and the work folder goes with them.
        while let Some(result) = self.unless_cancelled(Stage::Fetch, async { Ok(staged.next().await) }).await? {
            let StagedInput { index, path, facts: found, remuxed, loudness, fell_back } = result?;
            if fell_back {
                fell_back_to_originals.push(index);
            }
            remux_inputs[index] = remuxed;
            song_loudness = song_loudness.or(loudness);
            let size = ledger.charged(&path).unwrap_or(0);
            input_bytes[index] = size;
            if kept_bytes + size <= cache_bytes {
                kept_bytes += size;
            } else {
                ledger.remove(&path);
            }
            inputs[index] = path;
            facts[index] = Some(found);
            done += 1;
            reporter.running(
                Stage::Fetch,
                Stage::Fetch.at(done as f64 / keys.len() as f64),
                format!("fetched and probed {} ({done}/{})", keys[index].0, keys.len()),
            );
        }
        drop(staged);
        for index in fell_back_to_originals {
            keys[index].0 = validated.clip_keys[index - 1].clone();
            prepared[index] = None;
            prepared_inputs[index] = false;
        }
        timings.insert("prepared_clips".into(), json!(prepared_inputs.iter().filter(|p| **p).count()));
        let facts: Vec<MediaFacts> = facts.into_iter().flatten().collect();
        reporter.running(Stage::Probe, Stage::Probe.at(1.0), format!("{} inputs probed", facts.len()));
        lap("fetch_and_probe", &mut timings);

        let request = PlanRequest {
            validated: validated.clone(),
            inputs: facts.clone(),
            strict: self.config.strict,
            prepared,
            song_loudness,
        };
        let plan = self.checked_plan(&request, reporter).await?;
        lap("plan", &mut timings);
        let paths = PathTable { inputs, work: work.path().to_owned(), output: work.path().join("output.mp4") };
        Ok(Prepared {
            validated,
            plan,
            paths,
            facts,
            prepared_inputs,
            keys,
            remux_inputs,
            input_bytes,
            work,
            timings,
            song,
        })
    }
}

/// What staging every input shares: the work folder's ledger, the probes' slots, the
/// largest object that can ever fit, and whether (and how long) the song is measured.
#[derive(Clone, Copy)]
pub(super) struct StagingShared<'a> {
    ledger: &'a crate::budget::ledger::Ledger,
    probes: &'a tokio::sync::Semaphore,
    ceiling: u64,
    measure_song: bool,
    song_seconds: f64,
    /// The song as the audio cache knows it, when the job uses the cache.
    song: Option<&'a crate::audio_cache::SongIdentity>,
    /// The work folder (the cache's records pass through it).
    work: &'a Path,
}

/// One input to stage: its place in the plan request (0 the song, 1 + i clip i), the
/// key fetched (a prepared clip's, when fresh), the blueprint's pointer for its errors,
/// where it goes, the prepared clip it must match, and the original to fall back to.
pub(super) struct InputToStage<'a> {
    index: usize,
    key: &'a str,
    pointer: &'a str,
    destination: PathBuf,
    expected: Option<(br_plan::PreparedClip, &'a br_plan::prepare::Profile)>,
    original: Option<&'a str>,
}

/// One input fetched and probed.
pub(super) struct StagedInput {
    index: usize,
    path: PathBuf,
    facts: MediaFacts,
    /// Copied into MP4 to seek in it by frame, with the video's shift to the file's start (µs).
    remuxed: Option<u64>,
    loudness: Option<br_plan::Loudness>,
    /// A prepared clip that was not as prepared: the original was staged instead.
    fell_back: bool,
}

/// The song's loudness, or None (the plan then takes loudnorm's dynamic mode, as without
/// a measurement): a song FFmpeg cannot measure fails, if at all, in its own step, with
/// that step's message.
pub(super) async fn measured_loudness(
    ffmpeg: &Path,
    file: &Path,
    key: &str,
    lengths: (f64, f64),
    limits: ChildLimits,
) -> Option<br_plan::Loudness> {
    let started = std::time::Instant::now();
    match media::measure_loudness(ffmpeg, file, key, lengths, limits).await {
        Ok(measured) => {
            tracing::info!(
                key = %key,
                integrated_lufs = measured.integrated,
                range_lu = measured.range,
                true_peak_dbtp = measured.true_peak,
                measured_seconds = measured.seconds,
                took_seconds = started.elapsed().as_secs_f64(),
                "song loudness measured"
            );
            Some(measured)
        }
        Err(error) => {
            tracing::warn!(key = %key, "{error}; loudnorm's dynamic mode normalises it");
            None
        }
    }
}
