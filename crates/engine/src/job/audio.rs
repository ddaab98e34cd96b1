//! `prepare`'s fill of the audio cache (`Job::fill_audio_cache`): the blueprint's song
//! track made as its job would make it (the same fetch, measurement, plan and policy),
//! and kept, so that even the first job on the song copies it.

use super::*;
use crate::work::StepCache;

/// What `prepare` did for a blueprint's song.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioFill {
    /// The plan's song steps were made and kept (their labels).
    Kept(Vec<String>),
    /// The song steps were made but are not in the cache now (the log says why: the
    /// song changed meanwhile, the storage refused a write).
    NotKept(Vec<String>),
    /// The cache already held every song step of the plan.
    AlreadyThere(Vec<String>),
    /// Nothing to fill: the cache is off, the blueprint adds no song, the storage cannot
    /// name the song's version, or the plan has no step the cache covers.
    Nothing(&'static str),
}

impl Job<'_> {
    /// Fetches, measures and plans the blueprint as [`Job::run`] would, then runs only
    /// the steps the audio cache covers (the song's track), which keeps them. Nothing
    /// else of the plan runs and no video is written.
    pub async fn fill_audio_cache(
        &self,
        checked: Checked,
        reporter: &mut Reporter<'_>,
    ) -> Result<AudioFill, (Stage, Failure)> {
        if !self.config.audio_cache {
            return Ok(AudioFill::Nothing("the audio cache is off"));
        }
        if !checked.validated.output.add_audio_overlay {
            return Ok(AudioFill::Nothing("the blueprint adds no song"));
        }
        let Prepared {
            validated,
            plan,
            paths,
            keys,
            remux_inputs,
            input_bytes,
            work,
            prepared_inputs,
            song,
            facts,
            ..
        } = self.prepare(checked, reporter).await?;
        let Some(song) = song else {
            return Ok(AudioFill::Nothing("the storage cannot name the song's version"));
        };
        let video_seconds = validated.total_duration;
        let whole = crate::audio_cache::AudioCache::for_plan(
            self.storage,
            song.clone(),
            plan.plan(),
            video_seconds,
            work.path(),
        );
        let Some(alone) = plan.steps_alone(|step| whole.covers(step)) else {
            return Ok(AudioFill::Nothing("the plan has no step the audio cache covers"));
        };
        let cache =
            crate::audio_cache::AudioCache::for_plan(self.storage, song, alone.plan(), video_seconds, work.path());
        let refetch = Refetch {
            storage: self.storage,
            keys: &keys,
            remux_inputs: &remux_inputs,
            input_bytes: &input_bytes,
            config: self.config,
        };
        let runner = self.steps_runner(video_seconds).ok_or_else(|| self.deadline_passed())?;
        reporter.running(Stage::Encode, Stage::Encode.at(0.0), "making the song's track for the audio cache");
        let steps = runner
            .run(
                &alone,
                &paths,
                video_seconds,
                br_plan::output_frame(&validated, &facts),
                crate::schedule::FileRates::of_output(validated.output.video_bitrate, validated.output.audio_bitrate),
                &prepared_inputs,
                &refetch,
                &cache,
                self.cancel,
                |_| {},
            )
            .await;
        let steps = match steps {
            Ok(steps) => steps,
            Err(error) => return Err(self.steps_failure(error, &alone, &paths, &keys, &refetch).await),
        };
        let mut held = true;
        for step in 0..alone.plan().steps.len() {
            held &= cache.holds(step).await;
        }
        drop(work);
        let restored = steps.iter().all(|step| step.restored);
        let labels = steps.into_iter().map(|step| step.label).collect();
        Ok(match (restored, held) {
            (true, true) => AudioFill::AlreadyThere(labels),
            (false, true) => AudioFill::Kept(labels),
            (_, false) => AudioFill::NotKept(labels),
        })
    }
}
