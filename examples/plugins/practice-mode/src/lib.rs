//! practice-mode: each move as choreographed, then once more slower (see README.md).
//! The timeline changes in `validate` (the host checks the video against it); how the
//! repeats render is said with the planner's hooks in `plan`, so the built-in planner
//! still copies prepared clips for the moves shown as shot and keeps the one-gain loudness.

use br_guest_sdk::blueprint::{CheckOptions, Refusal, Transition, Validated};
use br_guest_sdk::plan::render::{Render, SlotRender, SongSection};
use br_guest_sdk::plan::{FrameRate, Plan, PlanError, PlanRequest};
use br_guest_sdk::{defaults, settings, Plugin, SettingsError};

pub struct PracticeMode;

/// How slow the repeat plays: 0.75 by default (the operator's `speed`, 0.25 to 1).
fn repeat_speed() -> Result<f64, SettingsError> {
    Ok(settings()?.number("speed", 0.25..=1.0)?.unwrap_or(0.75))
}

impl Plugin for PracticeMode {
    fn validate(blueprint: &str, options: &CheckOptions) -> Result<Validated, Refusal> {
        let speed = repeat_speed()?;
        let mut validated = defaults::validate(blueprint, options)?;
        with_repeats(&mut validated, speed);
        Ok(validated)
    }

    fn plan(request: PlanRequest) -> Result<Plan, Vec<PlanError>> {
        let render = repeats_render(&request.validated, repeat_speed()?);
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
    let end_frame = |index: usize| if index + 1 == slots.len() { rate.frame_at(validated.total_duration) } else { first_frame(index + 1) };
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
}
