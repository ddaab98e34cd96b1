//! The blueprints and media facts `plugin check` tries a plugin on: built-in cases
//! (the backend's example, edge shapes, 220 moves) and the author's own.

use super::*;

/// Moves in the longest built-in case: past the concat demuxer's and filters' small
/// limits (the `concat` filter joins at most 64 parts), so that a planner that joins every
/// move in one list or graph shows it here rather than in production.
const MANY_MOVES: usize = 220;

/// What an author adds to `plugin check`'s built-in cases.
pub struct Given {
    pub blueprints: Vec<crate::cli::GivenBlueprint>,
    /// Media facts for the given blueprints, found by key.
    pub facts: Option<PathBuf>,
    /// Only the given blueprints are tried.
    pub skip_built_in: bool,
}

/// One blueprint `plugin check` tries the plugin on.
pub(super) struct Case {
    pub name: String,
    pub text: String,
    /// Whether the author's `--facts` are its media facts (else made-up ones).
    pub given_facts: bool,
    pub expected_frames: Option<u64>,
}

/// The blueprints every plugin is tried on: the backend's own, and variants that reach
/// the other paths of a planner (every transition, NTSC rates, volume runs, no song,
/// a clip shorter than its move, a long choreography).
fn cases() -> Vec<(String, String)> {
    let backend: Value =
        serde_json::from_str(include_str!("../../../../examples/backend-blueprint.json")).unwrap_or_default();
    let mut variants = vec![("backend blueprint (22 moves, crossfades, loudness)".to_owned(), backend.clone())];
    let mut mixed = backend.clone();
    if let Some(moves) = mixed["moves"].as_array_mut() {
        let transitions = ["cut", "crossfade", "fade_black", "fade_white"];
        for (index, step) in moves.iter_mut().enumerate() {
            step["transition_type"] = json!(transitions[index % transitions.len()]);
            step["volume_adjustment"] = json!(if index % 5 == 3 { 0.0 } else { 1.0 });
            step["trim_start"] = json!((index % 3) as f64 * 0.7);
        }
    }
    mixed["output_config"]["frame_rate"] = json!(29.97);
    variants.push(("every transition, volume runs, trims, 29.97 fps".to_owned(), mixed));
    let mut silent = backend.clone();
    silent["output_config"]["add_audio_overlay"] = json!(false);
    silent["output_config"]["normalize_audio"] = json!(false);
    variants.push(("no song".to_owned(), silent));
    variants.push(many_moves(&backend));
    variants.into_iter().map(|(name, blueprint)| (name, blueprint.to_string())).collect()
}

/// The backend's moves repeated to [`MANY_MOVES`] of 8 s each, over the same clips.
fn many_moves(backend: &Value) -> (String, Value) {
    let mut long = backend.clone();
    let moves: Vec<Value> = backend["moves"].as_array().cloned().unwrap_or_default();
    let seconds_each = 8.0;
    let repeated: Vec<Value> = moves
        .iter()
        .cycle()
        .take(if moves.is_empty() { 0 } else { MANY_MOVES })
        .enumerate()
        .map(|(index, step)| {
            let mut step = step.clone();
            step["clip_id"] = json!(format!("move_{}", index + 1));
            step["start_time"] = json!(index as f64 * seconds_each);
            step["duration"] = json!(seconds_each);
            step["original_duration"] = json!(seconds_each);
            step
        })
        .collect();
    let total = repeated.len() as f64 * seconds_each;
    long["moves"] = json!(repeated);
    long["total_duration"] = json!(total);
    let minutes = (total / 60.0).round();
    (format!("{MANY_MOVES} moves ({minutes} min, the backend's repeated)"), long)
}

/// Facts as the host would probe them from the backend's library: the song 10 minutes of
/// MP3 (or as long as the timeline, when that is longer), each clip 720p30 H.264 with AAC,
/// 6 to 17 s long (the third one 6 s: shorter than an 8 s move).
pub(super) fn made_up_facts(validated: &Validated) -> Vec<MediaFacts> {
    let song_seconds = validated.total_duration.ceil().max(600.0);
    let song = MediaFacts {
        key: validated.audio_key.clone(),
        duration: song_seconds,
        video: None,
        audio: Some(AudioFacts { codec: "mp3".into(), sample_rate: 44_100, channels: 2, duration: song_seconds }),
    };
    let clip = |index: usize, key: &String| {
        let seconds = if index == 2 { 6.0 } else { 6.0 + ((index * 5) % 12) as f64 };
        MediaFacts {
            key: key.clone(),
            duration: seconds,
            video: Some(VideoFacts {
                codec: "h264".into(),
                width: 1280,
                height: 720,
                frame_rate: 30.0,
                pixel_format: "yuv420p".into(),
                duration: seconds,
            }),
            audio: Some(AudioFacts { codec: "aac".into(), sample_rate: 48_000, channels: 2, duration: seconds }),
        }
    };
    std::iter::once(song).chain(validated.clip_keys.iter().enumerate().map(|(index, key)| clip(index, key))).collect()
}

/// The author's facts of each input of `validated` (the song, then each clip), found by
/// key; which key the file lacks, if one.
pub(super) fn given_facts_for(validated: &Validated, given: &[MediaFacts]) -> Result<Vec<MediaFacts>, String> {
    std::iter::once(&validated.audio_key)
        .chain(&validated.clip_keys)
        .map(|key| {
            given
                .iter()
                .find(|facts| facts.key == *key)
                .cloned()
                .ok_or_else(|| format!("it has no facts for the input {key:?}"))
        })
        .collect()
}

/// The cases to try: the built-in ones unless skipped, then each given file.
pub(super) fn all_cases(given: &Given) -> Result<Vec<Case>, String> {
    let mut all = Vec::new();
    if !given.skip_built_in {
        all.extend(cases().into_iter().map(|(name, text)| Case {
            name,
            text,
            given_facts: false,
            expected_frames: None,
        }));
    }
    for blueprint in &given.blueprints {
        let limit = br_blueprint::limits::MAX_BLUEPRINT_BYTES as u64;
        let bytes = br_engine::files::read_small_file(&blueprint.path, limit)
            .map_err(|e| format!("--blueprint {}: {e}", blueprint.path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("--blueprint {}: not UTF-8 text", blueprint.path.display()))?;
        all.push(Case {
            name: blueprint.path.display().to_string(),
            text,
            given_facts: given.facts.is_some(),
            expected_frames: blueprint.expected_frames,
        });
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    /// The long built-in case stays within the blueprint's limits, and its song lasts as
    /// long as its timeline.
    #[test]
    fn the_long_case_is_a_valid_blueprint_of_many_moves() {
        let cases = super::cases();
        let (name, text) = cases.iter().find(|(name, _)| name.starts_with("220 moves")).expect("the long case");
        let validated = br_blueprint::validate(text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(validated.moves.len(), super::MANY_MOVES);
        assert!(validated.total_duration <= br_blueprint::limits::MAX_TIMELINE_SECONDS);
        assert_eq!(validated.total_duration, 1760.0);
        assert!(text.len() < br_blueprint::limits::MAX_BLUEPRINT_BYTES);
        assert_eq!(super::made_up_facts(&validated)[0].duration, 1760.0);
    }

    #[test]
    fn a_given_blueprint_may_carry_the_frames_it_must_make() {
        let parse = |text: &str| {
            crate::cli::GivenBlueprint::parse(text)
                .map(|given| (given.path.display().to_string(), given.expected_frames))
        };
        assert_eq!(parse("mine.json"), Ok(("mine.json".into(), None)));
        assert_eq!(parse("mine.json:5280"), Ok(("mine.json".into(), Some(5280))));
        assert_eq!(parse("dir:with:colons/mine.json:12"), Ok(("dir:with:colons/mine.json".into(), Some(12))));
        assert_eq!(parse("dir:x/mine.json"), Ok(("dir:x/mine.json".into(), None)));
        assert!(parse("mine.json:0").unwrap_err().contains("at least one frame"));
        assert!(parse(":12").unwrap_err().contains("names no file"));
        assert!(parse("mine.json:99999999999999999999999").unwrap_err().contains("frame count"));
    }
}
