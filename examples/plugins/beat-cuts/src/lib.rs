//! beat-cuts: every move enters with a hard cut on the song's beat grid (see README.md).

use br_guest_sdk::blueprint::{CheckOptions, ErrorCode, Refusal, Transition, Validated, ValidationError};
use br_guest_sdk::plan::{FrameRate, Plan, PlanError, PlanRequest};
use br_guest_sdk::{defaults, settings, LogLevel, Plugin, SettingsError};

pub struct BeatCuts;

/// What the operator chose, within the plugin's own bounds.
struct Tempo {
    beat_seconds: f64,
    offset_seconds: f64,
}

fn tempo() -> Result<Tempo, SettingsError> {
    let settings = settings()?;
    let bpm = settings.number("bpm", 40.0..=240.0)?.unwrap_or(120.0);
    let offset_seconds = settings.number("offset_seconds", 0.0..=10.0)?.unwrap_or(0.0);
    Ok(Tempo { beat_seconds: 60.0 / bpm, offset_seconds })
}

impl Plugin for BeatCuts {
    fn validate(blueprint: &str, options: &CheckOptions) -> Result<Validated, Refusal> {
        // Every setting is checked before the blueprint: a wrong one fails the job at
        // once (exit 2), before a clip is fetched, naming the setting.
        tempo()?;
        let max_moves = settings()?.integer("max_moves", 1..=2000)?;
        let validated = defaults::validate(blueprint, options)?;
        if let Some(limit) = max_moves.filter(|&limit| validated.moves.len() as u64 > limit) {
            let message = format!("{} moves; this job allows at most {limit} (max_moves)", validated.moves.len());
            return Err(Refusal {
                task_id: Some(validated.task_id.clone()),
                errors: vec![ValidationError { pointer: "/moves".into(), code: ErrorCode::TooLarge, message }],
            });
        }
        Ok(validated)
    }

    fn plan(mut request: PlanRequest) -> Result<Plan, Vec<PlanError>> {
        let tempo = tempo()?;
        let rate = FrameRate::from_fps(request.validated.output.frame_rate);
        snap_to_beats(&mut request.validated, &tempo, rate);
        br_guest_sdk::log(LogLevel::Debug, &format!("cuts on a beat of {:.3} s", tempo.beat_seconds));
        defaults::plan(&request)
    }
}

/// Moves each boundary to the nearest beat (on the output's frame grid) and makes it a cut.
/// A boundary whose beat would not leave the moves around it at least one frame stays where
/// the blueprint put it, so the timeline keeps its order and its total length.
fn snap_to_beats(validated: &mut Validated, tempo: &Tempo, rate: FrameRate) {
    let frame = rate.seconds(1);
    let total = validated.total_duration;
    let moves = &mut validated.moves;
    for index in 1..moves.len() {
        let previous_start = moves[index - 1].start;
        let start = moves[index].start;
        let beats = ((start - tempo.offset_seconds) / tempo.beat_seconds).round();
        let on_beat = rate.seconds(rate.frame_at(tempo.offset_seconds + beats * tempo.beat_seconds));
        let next_start = moves.get(index + 1).map_or(total, |next| next.start);
        let fits = on_beat >= previous_start + frame && on_beat <= next_start.min(total) - frame;
        moves[index].start = if fits { on_beat } else { start };
        moves[index].transition = Transition::Cut;
    }
    if let Some(first) = moves.first_mut() {
        first.transition = Transition::Cut;
    }
    for index in 0..moves.len() {
        let end = moves.get(index + 1).map_or(total, |next| next.start);
        moves[index].duration = end - moves[index].start;
    }
}

br_guest_sdk::export_plugin!(BeatCuts);

#[cfg(test)]
mod tests {
    use super::*;
    use br_guest_sdk::check::{plan_passes, request_over_made_up_media, BACKEND_BLUEPRINT};
    use br_guest_sdk::{settings::use_settings_in_tests, Settings};

    #[test]
    fn boundaries_land_on_the_nearest_beat_and_become_cuts() {
        let mut request = request_over_made_up_media(BACKEND_BLUEPRINT, 12.0).unwrap();
        let tempo = Tempo { beat_seconds: 0.6, offset_seconds: 0.3 };
        snap_to_beats(&mut request.validated, &tempo, FrameRate::from_fps(30.0));
        let moves = &request.validated.moves;
        // The backend's moves start every 8 s: 8.0 is nearest 8.1 (0.3 + 13 * 0.6), and
        // 16.0 nearest 15.9 (0.3 + 26 * 0.6), both on the 30 fps frame grid.
        assert!((moves[1].start - 8.1).abs() < 1e-9, "{}", moves[1].start);
        assert!((moves[2].start - 15.9).abs() < 1e-9, "{}", moves[2].start);
        assert!(moves.iter().all(|slot| slot.transition == Transition::Cut));
        let covered: f64 = moves.iter().map(|slot| slot.duration).sum();
        assert!((covered - request.validated.total_duration).abs() < 1e-9);
    }

    #[test]
    fn the_plan_passes_the_hosts_policy() {
        use_settings_in_tests(Settings::from_json(r#"{"bpm": 96}"#).unwrap());
        let request = request_over_made_up_media(BACKEND_BLUEPRINT, 12.0).unwrap();
        let plan = BeatCuts::plan(request.clone()).unwrap();
        assert_eq!(plan_passes(&request, &plan), Ok(()));
    }

    #[test]
    fn more_moves_than_allowed_are_refused_and_a_wrong_setting_is_named() {
        use_settings_in_tests(Settings::from_json(r#"{"max_moves": 10}"#).unwrap());
        let refusal = BeatCuts::validate(BACKEND_BLUEPRINT, &CheckOptions::default()).unwrap_err();
        assert_eq!(refusal.errors[0].pointer, "/moves");
        use_settings_in_tests(Settings::from_json(r#"{"bpm": 1000}"#).unwrap());
        let refusal = BeatCuts::validate(BACKEND_BLUEPRINT, &CheckOptions::default()).unwrap_err();
        assert_eq!(refusal.errors[0].pointer, "", "a setting is not in the blueprint");
        assert_eq!(refusal.errors[0].message, "GUEST_SETTINGS/bpm: is 1000; it must be from 40 to 240");
        let request = request_over_made_up_media(BACKEND_BLUEPRINT, 12.0).unwrap();
        assert_eq!(
            BeatCuts::plan(request).unwrap_err()[0].message,
            "GUEST_SETTINGS/bpm: is 1000; it must be from 40 to 240"
        );
    }
}
