//! practice-mode: each move as choreographed, then once more slower (see README.md).
//! The timeline changes in `validate` (the host checks the video against it); how the
//! repeats render is said with the planner's hooks in `plan`, so the built-in planner
//! still copies prepared clips for the moves shown as shot and keeps the one-gain loudness.
//! How slow comes from the blueprint's `difficulty_level`, a field the validated timeline
//! has no place for: `validate` keeps the speed it chose for `plan` (contract 0.9.0).

use br_guest_sdk::blueprint::{CheckOptions, Refusal, Transition, Validated};
use br_guest_sdk::plan::render::{Render, SlotRender, SongSection};
use br_guest_sdk::plan::{FrameRate, Plan, PlanError, PlanRequest};
use br_guest_sdk::{defaults, kept, settings, Plugin, SettingsError};

pub struct PracticeMode;

/// What `validate` keeps for `plan`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    speed: f64,
}

/// How slow the repeat plays: the operator's `speed` (0.25 to 1) when set, else by the
/// blueprint's `difficulty_level` (beginner 0.5, intermediate 0.75, advanced 0.9), else 0.75.
fn repeat_speed(blueprint: &str) -> Result<f64, SettingsError> {
    if let Some(speed) = settings()?.number("speed", 0.25..=1.0)? {
        return Ok(speed);
    }
    let picked = kept::pick(blueprint, &["/difficulty_level"]);
    Ok(match picked.get("/difficulty_level").and_then(|level| level.as_str()) {
        Some("beginner") => 0.5,
        Some("advanced") => 0.9,
        _ => 0.75,
    })
}

impl Plugin for PracticeMode {
    fn validate(blueprint: &str, options: &CheckOptions) -> Result<Validated, Refusal> {
        let speed = repeat_speed(blueprint)?;
        let mut validated = defaults::validate(blueprint, options)?;
        with_repeats(&mut validated, speed);
        kept::keep(&mut validated, &Kept { speed })?;
        Ok(validated)
    }

    fn plan(request: PlanRequest) -> Result<Plan, Vec<PlanError>> {
        // The speed `validate` chose: the timeline's repeats were made for it.
        let Some(Kept { speed }) = kept::kept(&request.validated) else {
            return Err(vec![PlanError { pointer: String::new(), message: "validate kept no repeat speed".into() }]);
        };
        let render = repeats_render(&request.validated, speed);
        defaults::plan_with(&request, &render)
    }
}

/// Each slot, then its repeat: the same footage from the same `trim_start`, lasting
/// `1 / speed` as long and entering with a cut, the rest of the timeline moved on. Both
/// keep the blueprint move's `origin`, so warnings and errors point at it.
fn with_repeats(validated: &mut Validated, speed: f64) {
    let mut moves = Vec::with_capacity(2 * validated.moves.len());
    let mut start = 0.0;
    for (index, slot) in validated.moves.iter().enumerate() {
        // The slot as the blueprint times it: up to the next slot's start, or the end.
        let next = validated.moves.get(index + 1).map_or(validated.total_duration, |next| next.start);
        let length = next - slot.start;
        let mut shown = slot.clone();
        shown.start = start;
        shown.duration = length;
        let mut repeat = slot.clone();
        repeat.start = start + length;
        repeat.duration = length / speed;
        repeat.transition = Transition::Cut;
        repeat.transition_seconds = 0.0;
        start = repeat.start + repeat.duration;
        moves.push(shown);
        moves.push(repeat);
    }
    validated.moves = moves;
    validated.total_duration = start;
}

/// The repeats (every second slot) at `speed`; the song plays each move's music again
/// for its repeat, every section as long as its slot is on the output's frame grid (the
/// planner's own rounding), so the music never drifts from the picture.
fn repeats_render(validated: &Validated, speed: f64) -> Render {
    let rate = FrameRate::from_fps(validated.output.frame_rate);
    let slots = &validated.moves;
    let first_frame = |index: usize| if index == 0 { 0 } else { rate.frame_at(slots[index].start) };
    let end_frame = |index: usize| {
        if index + 1 == slots.len() {
            rate.frame_at(validated.total_duration)
        } else {
            first_frame(index + 1)
        }
    };
    let mut render = Render::default();
    // Where the move's music is in the song: the moves as the blueprint had them, back to back.
    let mut music_at = 0.0;
    for index in 0..slots.len() {
        let repeat = index % 2 == 1;
        let length = rate.seconds(end_frame(index).saturating_sub(first_frame(index)));
        render.slots.push(if repeat { SlotRender { speed, ..SlotRender::default() } } else { SlotRender::default() });
        render.song.push(SongSection { start: music_at, duration: length });
        if repeat {
            music_at += rate.seconds(end_frame(index - 1).saturating_sub(first_frame(index - 1)));
        }
    }
    render
}

br_guest_sdk::export_plugin!(PracticeMode);

#[cfg(test)]
mod tests {
    use super::*;
    use br_guest_sdk::check::{plan_passes, request_over_made_up_media, BACKEND_BLUEPRINT};

    #[test]
    fn every_move_is_followed_by_its_slower_repeat() {
        let mut validated = defaults::validate(BACKEND_BLUEPRINT, &CheckOptions::default()).unwrap();
        let moves = validated.moves.len();
        with_repeats(&mut validated, 0.5);
        assert_eq!(validated.moves.len(), 2 * moves);
        assert_eq!(validated.moves[1].origin, validated.moves[0].origin, "a repeat points at its move");
        assert!((validated.moves[1].start - 8.0).abs() < 1e-9 && (validated.moves[1].duration - 16.0).abs() < 1e-9);
        assert!((validated.total_duration - 3.0 * 176.0).abs() < 1e-9);
    }

    #[test]
    fn the_plan_passes_the_hosts_policy_and_plays_the_music_again() {
        let mut request = request_over_made_up_media(BACKEND_BLUEPRINT, 12.0).unwrap();
        with_repeats(&mut request.validated, 0.75);
        let render = repeats_render(&request.validated, 0.75);
        assert_eq!(render.song[2].start, 8.0, "move 1's music after move 0 and its repeat");
        assert_eq!(render.song[3].start, 8.0);
        let plan = defaults::plan_with(&request, &render).unwrap();
        assert_eq!(plan_passes(&request, &plan), Ok(()));
    }

    #[test]
    fn the_speed_follows_the_difficulty_and_reaches_plan() {
        let beginner = BACKEND_BLUEPRINT.replace("\"intermediate\"", "\"beginner\"");
        assert_eq!(repeat_speed(&beginner), Ok(0.5));
        assert_eq!(repeat_speed(BACKEND_BLUEPRINT), Ok(0.75));
        let validated = PracticeMode::validate(&beginner, &CheckOptions::default()).unwrap();
        assert!((validated.moves[1].duration - 16.0).abs() < 1e-9, "8 s at 0.5x");
        let mut request = request_over_made_up_media(&beginner, 12.0).unwrap();
        request.validated = validated;
        assert!(PracticeMode::plan(request.clone()).is_ok());
        request.validated.kept = None;
        assert!(PracticeMode::plan(request).is_err(), "without what validate kept, plan cannot know the speed");
    }
}
