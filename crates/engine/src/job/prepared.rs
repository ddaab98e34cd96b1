//! Which of a job's clips have a fresh prepared version for its output profile.

use super::*;

impl Job<'_> {
    /// For each clip, its prepared version's key when one exists for this job's profile
    /// and is fresh: its manifest names the source's current identity and the prepared
    /// object's own. Anything missing, stale or unreadable means the original is used.
    /// The GOP is the profile's (a manifest that says another is stale); what the
    /// manifest says of the prepared clip is checked once it is staged (see `prepare`).
    /// A guest that is not told where GOPs start (before contract 0.10.0) assumes one every
    /// GOP from the first: it is given only clips of the recipe that made them so.
    pub(super) async fn fresh_prepared_clips(
        &self,
        validated: &Validated,
        work: &Path,
    ) -> (Option<br_plan::prepare::Profile>, Vec<Option<(String, br_plan::PreparedClip)>>) {
        let Some(profile) = self.job_profile(validated, work).await else {
            return (None, vec![None; validated.clip_keys.len()]);
        };
        let profile = if self.sandbox.knows_keyframe_grids() { profile } else { profile.with_even_grid() };
        let lookups = validated.clip_keys.iter().map(|key| {
            let profile = &profile;
            async move {
                let manifest_key = crate::prepare::manifest_key(profile, key);
                let prepared_key = crate::prepare::prepared_key(profile, key);
                // Unreadable means the original is used, like a missing manifest.
                let manifest = crate::prepare::read_manifest(self.storage, &manifest_key).await.ok().flatten()?;
                let source = self.storage.identity(key).await.ok()?;
                let prepared = self.storage.identity(&prepared_key).await.ok()?;
                let fresh = manifest.profile_id == profile.id()
                    && manifest.source_identity == source
                    && manifest.prepared_identity == prepared
                    && manifest.gop_frames == br_plan::prepare::GOP_FRAMES
                    && manifest.first_gop_frames.unwrap_or(manifest.gop_frames) == profile.first_gop_frames();
                if !fresh {
                    tracing::info!(key = %key, "its prepared clip is stale: the original is used");
                    return None;
                }
                // The frame count is checked against the staged clip's packets.
                let facts = br_plan::PreparedClip {
                    profile_id: profile.id(),
                    gop_frames: br_plan::prepare::GOP_FRAMES,
                    first_gop_frames: profile.first_gop_frames(),
                    frames: manifest.frames,
                };
                Some((prepared_key, facts))
            }
        });
        let found = futures::stream::iter(lookups).buffered(self.config.download_concurrency.max(1)).collect().await;
        (Some(profile), found)
    }

    /// The profile prepared clips must have: the output's size (the first clip's when the
    /// blueprint gives none, which costs probing that clip), rate and bitrate.
    pub(super) async fn job_profile(&self, validated: &Validated, work: &Path) -> Option<br_plan::prepare::Profile> {
        let placeholder = |key: &String| MediaFacts { key: key.clone(), duration: 0.0, video: None, audio: None };
        let mut inputs: Vec<MediaFacts> =
            std::iter::once(&validated.audio_key).chain(&validated.clip_keys).map(placeholder).collect();
        if validated.output.width.is_none() || validated.output.height.is_none() {
            let first = validated.moves.first()?.clip as usize;
            let key = validated.clip_keys.get(first)?;
            let file = work.join("first-clip-probe");
            let ledger = self.config.runner.ledger.as_ref();
            // Never prepared: not worth downloading the clip twice. The marker is small:
            // read into memory, a larger object is no marker.
            let marker = crate::prepare::source_marker_key(key);
            if !matches!(self.storage.read_small(&marker, crate::prepare::MAX_MANIFEST_BYTES).await, Ok(Some(_))) {
                return None;
            }
            let gate = crate::budget::ledger::Reserving::new(
                ledger,
                media::PROBE_MEMORY,
                ledger.ceiling(media::PROBE_MEMORY, 0),
            );
            self.storage.fetch(key, &file, &gate).await.ok()?;
            gate.into_file(&file);
            let facts = match ledger.reserve(media::PROBE_MEMORY, 0, u64::MAX).await {
                Ok(_memory) => media::probe(
                    &self.config.ffprobe,
                    &file,
                    key,
                    ChildLimits::reader(media::PROBE_MEMORY, media::PROBE_TIMEOUT),
                )
                .await
                .ok(),
                Err(_) => None,
            };
            ledger.remove(&file);
            *inputs.get_mut(1 + first)? = facts?;
        }
        br_plan::prepare::Profile::of(validated, &inputs)
    }
}
