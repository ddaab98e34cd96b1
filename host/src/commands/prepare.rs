//! `blueprint-runner prepare`: clips re-encoded once at an output profile, for jobs to
//! copy from (see [`br_engine::prepare`]).

use std::sync::Arc;

use crate::cli::{JobFlags, PrepareFlags};
use crate::commands::execute::read_blueprint;
use crate::settings::{Environment, Settings};
use br_engine::budget::ledger::Ledger;
use br_engine::cancel::Cancel;
use br_engine::exit;
use br_engine::ffmpeg;
use br_engine::storage::StorageError;

/// `prepare`: a blueprint's clips (or every clip under `--all PREFIX`) prepared at the
/// blueprint's (or the flags') output profile. The blueprint is validated in the guest
/// like any other; the clips are re-encoded by the host under the same policy and
/// limits as a job's steps.
pub async fn prepare(flags: JobFlags, options: PrepareFlags, env: &Environment) -> u8 {
    let cancel = Cancel::on_signals();
    let fail = |code: u8, message: String| {
        tracing::error!("{message}");
        eprintln!("error: {message}");
        code
    };
    let shard = match (options.shard, crate::settings::cloud_run_shard(&env.lookup())) {
        (Some(shard), _) => shard,
        (None, Ok(Some(shard))) => shard,
        (None, Ok(None)) => br_engine::prepare::Shard::WHOLE,
        (None, Err(message)) => return fail(exit::USAGE, format!("CLOUD_RUN_TASK_INDEX/COUNT: {message}")),
    };
    let settings = match Settings::resolve(flags, env) {
        Ok(settings) => settings,
        Err(message) => return fail(exit::USAGE, message),
    };
    let storage = match settings.storage.open().await {
        Ok(storage) => storage,
        Err(message) => return fail(exit::USAGE, message),
    };
    let runner = settings.runner(Arc::new(Ledger::of(&settings.budget)));
    let ffprobe = settings.ffprobe().to_owned();
    let preparer = br_engine::prepare::Preparer {
        storage: storage.as_ref(),
        runner: &runner,
        ffprobe: &ffprobe,
        work_root: settings.work_root(),
        cancel: &cancel,
    };
    let (profile, keys, given) = match &options.all {
        Some(prefix) => {
            if let Some(problem) = br_engine::storage::folder_prefix_problem(prefix) {
                return fail(exit::USAGE, format!("--all {prefix:?}: {problem}"));
            }
            let keys = match storage.list(prefix).await {
                Ok(keys) => br_engine::prepare::clips_among(keys, settings.storage.strip_prefix()),
                Err(error) => return fail(exit::STORAGE, format!("cannot list {prefix:?}: {error}")),
            };
            let rate = br_plan::FrameRate::from_fps(options.frame_rate.clamp(1.0, 120.0));
            let profile = br_plan::prepare::Profile::new(options.width, options.height, rate, options.video_bitrate);
            let sandbox = match settings.load_sandbox() {
                Ok(sandbox) => sandbox,
                Err((code, message)) => return fail(code, message),
            };
            (for_guest(profile, &sandbox), keys, None)
        }
        None => match blueprint_profile(&settings, &preparer).await {
            Ok((profile, keys, given)) => (for_guest(profile, &given.sandbox), keys, Some(given)),
            Err((code, message)) => return fail(code, message),
        },
    };
    let (code, mut summary) = preparer.prepare_all(&profile, &keys, shard).await;
    // A blueprint's song too (once per task array), unless the clips were cancelled.
    let mut song_code = exit::OK;
    if let Some(given) = given.filter(|_| shard.index == 0 && code != exit::CANCELLED) {
        let (fill_code, song) = fill_audio_cache(&settings, storage.as_ref(), &cancel, given).await;
        summary["song"] = song;
        song_code = fill_code;
    }
    println!("{summary}");
    if code != exit::OK {
        code
    } else {
        song_code
    }
}

/// The profile in the recipe the jobs' guest can copy from: a guest of contract 0.9.0 or
/// older is not told where a clip's GOPs start and assumes one every GOP from the first, so
/// its clips are prepared that way (recipe 3), where a job gives it them.
fn for_guest(profile: br_plan::prepare::Profile, sandbox: &br_sandbox::Sandbox) -> br_plan::prepare::Profile {
    if sandbox.knows_keyframe_grids() {
        return profile;
    }
    let even = profile.with_even_grid();
    tracing::info!(
        contract = sandbox.contract_version(),
        profile = %even.id(),
        "the guest knows only keyframes every GOP from the first: prepared so"
    );
    even
}

/// The blueprint `prepare` was given, as read once (stdin cannot be read twice) and the
/// guest that validated it.
struct GivenBlueprint {
    text: String,
    sandbox: br_sandbox::Sandbox,
}

/// The blueprint's song track in the audio cache, made as its job would make it
/// ([`br_engine::job::Job::fill_audio_cache`]): the exit code and what the summary says.
async fn fill_audio_cache(
    settings: &Settings,
    storage: &dyn br_engine::storage::Storage,
    cancel: &Cancel,
    GivenBlueprint { text, sandbox }: GivenBlueprint,
) -> (u8, serde_json::Value) {
    use br_engine::job::{AudioFill, Job, Reporter};
    let failed = |code: u8, message: String| {
        tracing::error!("the song's track: {message}");
        (code, serde_json::json!({"outcome": "failed", "error": message}))
    };
    let cancel = cancel.child();
    let watchdog = br_engine::budget::watchdog::Watchdog::start(
        settings.budget,
        cancel.clone(),
        br_engine::budget::watchdog::SAMPLE_EVERY,
    );
    let config = settings.job_config(watchdog.ledger());
    let job = Job {
        sandbox: &sandbox,
        storage,
        config: &config,
        cancel: &cancel,
        watchdog: &watchdog,
        deadline: Default::default(),
    };
    let mut sink = br_status::LogOnly;
    let mut reporter = Reporter::new(&mut sink, None).with_watchdog(&watchdog);
    let filled = match job.validate(&text, &mut reporter).await {
        Ok(checked) => job.fill_audio_cache(checked, &mut reporter).await,
        Err(failure) => Err(failure),
    };
    match filled {
        Ok(AudioFill::Kept(steps)) => {
            tracing::info!(steps = ?steps, "the song's track is in the audio cache");
            (exit::OK, serde_json::json!({"outcome": "kept", "steps": steps}))
        }
        Ok(AudioFill::AlreadyThere(steps)) => {
            tracing::info!(steps = ?steps, "the song's track was already in the audio cache");
            (exit::OK, serde_json::json!({"outcome": "up_to_date", "steps": steps}))
        }
        Ok(AudioFill::NotKept(steps)) => {
            failed(exit::STORAGE, format!("made but not in the audio cache now (the log says why): {steps:?}"))
        }
        Ok(AudioFill::Nothing(reason)) => {
            tracing::info!("the song's track is not cached: {reason}");
            (exit::OK, serde_json::json!({"outcome": "not_cached", "reason": reason}))
        }
        Err((stage, failure)) => failed(failure.exit_code(), format!("failed during {}: {failure}", stage.as_str())),
    }
}

/// The profile and clips of the blueprint `prepare` was given, validated in the guest,
/// and the blueprint itself; the first clip is probed when the blueprint does not give the
/// output's size.
async fn blueprint_profile(
    settings: &Settings,
    preparer: &br_engine::prepare::Preparer<'_>,
) -> Result<(br_plan::prepare::Profile, Vec<String>, GivenBlueprint), (u8, String)> {
    let source = settings.blueprint().map_err(|message| (exit::USAGE, message))?;
    let text = read_blueprint(&source, &settings.storage).await.map_err(|message| (exit::USAGE, message))?;
    let text = text
        .into_text()
        .map_err(|refusal| (exit::INVALID_BLUEPRINT, format!("{}: {}", refusal.pointer, refusal.message)))?;
    let sandbox = settings.load_sandbox()?;
    let validation =
        sandbox.validate(&text, &settings.check_options()).await.map_err(|error| (exit::SANDBOX, error.to_string()))?;
    let validated = validation.verdict.map_err(|refusal| {
        let listed = br_engine::job::list(refusal.errors.iter().map(|e| (e.pointer.as_str(), e.message.as_str())));
        (exit::INVALID_BLUEPRINT, format!("invalid blueprint: {listed}"))
    })?;
    let mut inputs =
        vec![br_plan::MediaFacts { key: validated.audio_key.clone(), duration: 0.0, video: None, audio: None }];
    inputs.extend(validated.clip_keys.iter().map(|key| br_plan::MediaFacts {
        key: key.clone(),
        duration: 0.0,
        video: None,
        audio: None,
    }));
    if validated.output.width.is_none() || validated.output.height.is_none() {
        if let Some(first) = validated.moves.first().map(|m| m.clip as usize) {
            let key = &validated.clip_keys[first.min(validated.clip_keys.len().saturating_sub(1))];
            let folder = tempfile::Builder::new()
                .prefix("blueprint-runner-prepare-")
                .tempdir_in(settings.work_root())
                .map_err(|e| (exit::STORAGE, format!("work folder: {e}")))?;
            let file = folder.path().join("first-clip");
            let ledger = preparer.runner.ledger.as_ref();
            let probe_memory = br_engine::media::PROBE_MEMORY;
            let gate = br_engine::budget::ledger::Reserving::new(ledger, probe_memory, ledger.ceiling(probe_memory, 0));
            let fetched = preparer.storage.fetch(key, &file, &gate).await;
            fetched.map_err(|e| {
                (if matches!(e, StorageError::TooLarge { .. }) { exit::MEDIA } else { exit::STORAGE }, e.to_string())
            })?;
            gate.into_file(&file);
            let limits = ffmpeg::ChildLimits::reader(probe_memory, br_engine::media::PROBE_TIMEOUT);
            let facts = br_engine::media::probe(preparer.ffprobe, &file, key, limits).await;
            ledger.release_under(folder.path());
            let facts = facts.map_err(|e| (exit::MEDIA, e.to_string()))?;
            inputs[1 + first] = facts;
        }
    }
    let profile = br_plan::prepare::Profile::of(&validated, &inputs).ok_or_else(|| {
        (
            exit::USAGE,
            format!(
                "only libx264 outputs have prepared clips; this blueprint asks for {}",
                validated.output.video_codec
            ),
        )
    })?;
    Ok((profile, validated.clip_keys.clone(), GivenBlueprint { text, sandbox }))
}
