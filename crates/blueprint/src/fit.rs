//! Fitting a timeline the backend meant but did not write exactly (a lenient check).
//!
//! The choreography backend makes blueprints two ways, and both produce timelines a strict
//! reading refuses: its rule-based generator fills each song section with whole moves and
//! ends it with a remainder move (as short as a few milliseconds) that still enters with a
//! crossfade; its language-model path drops a move whose name matches no clip, leaving a
//! gap (or a first move that starts late). Each rule here turns such a timeline into the
//! video it means, keeps every other move on its frames, and says what it did: one
//! [`Warning`] per adjustment, with the pointer of what it changed.
//!
//! A timeline the strict check accepts comes out unchanged, except that a move shorter than
//! one frame (which the strict check lets through, and no frame would show) is dropped.

use crate::{ErrorCode, MoveSlot, Transition, ValidationError, Warning};

/// Lengths within this of each other are equal: blueprint times are decimal seconds.
const EPSILON: f64 = 1e-6;

/// What the blueprint asks for, before fitting.
pub struct Asked {
    /// Output frames per second: a move shorter than one frame (`1 / frame_rate` seconds)
    /// is dropped, and a transition shorter than one becomes a cut.
    pub frame_rate: f64,
    /// A crossfade's blend, as `output_config.transition_duration` asks.
    pub transition_seconds: f64,
    /// Each half of a fade, as `output_config.fade_duration` asks.
    pub fade_seconds: f64,
}

impl Asked {
    /// How long `transition` lasts as asked, before any fitting (a strict check's answer).
    pub fn seconds(&self, transition: Transition) -> f64 {
        match transition {
            Transition::Cut => 0.0,
            Transition::Crossfade => self.transition_seconds,
            Transition::FadeBlack | Transition::FadeWhite => self.fade_seconds,
        }
    }

    fn frame(&self) -> f64 {
        1.0 / self.frame_rate
    }
}

/// A fitted timeline: [`fit`]'s answer.
#[derive(Debug)]
pub struct Fitted {
    /// The slots that are left, in order, the first starting at 0 (within half a frame);
    /// each keeps its `origin` and has its fitted `transition_seconds`.
    pub moves: Vec<MoveSlot>,
    /// Where the last move ends, in seconds from the video's start.
    pub end: f64,
    /// One per adjustment, with the pointer of what it changed; empty when the timeline
    /// needed none.
    pub warnings: Vec<Warning>,
}

/// Fits `moves` (in the blueprint's order, each with its `origin`). Refuses only what has
/// no meaning to fit: moves out of order.
pub fn fit(mut moves: Vec<MoveSlot>, asked: &Asked) -> Result<Fitted, Vec<ValidationError>> {
    let unsorted: Vec<ValidationError> = moves
        .windows(2)
        .filter(|pair| pair[1].start < pair[0].start)
        .map(|pair| ValidationError {
            pointer: format!("{}/start_time", pair[1].pointer()),
            code: ErrorCode::Timeline,
            message: format!(
                "moves must be sorted by `start_time`: {} comes before the previous move's {}",
                pair[1].start, pair[0].start
            ),
        })
        .collect();
    if !unsorted.is_empty() || moves.is_empty() {
        return Err(unsorted);
    }
    let mut warnings = Vec::new();
    start_at_zero(&mut moves, asked, &mut warnings);
    close_gaps_and_overlaps(&mut moves, asked, &mut warnings);
    drop_subframe_moves(&mut moves, asked, &mut warnings);
    fit_transitions(&mut moves, asked, &mut warnings);
    let end = moves.iter().map(|m| m.start + m.duration).fold(0.0, f64::max);
    Ok(Fitted { moves, end, warnings })
}

/// Seconds of `seconds`, for messages: three decimals, as a person reads a timeline.
fn s(seconds: f64) -> String {
    format!("{seconds:.3} s")
}

/// A first move that starts late starts at 0, earlier in its own clip, so that its footage
/// is still on its beat; where the clip has no earlier footage its first frame is held.
fn start_at_zero(moves: &mut [MoveSlot], asked: &Asked, warnings: &mut Vec<Warning>) {
    let first = &mut moves[0];
    let late = first.start;
    if late <= 0.5 * asked.frame() {
        return;
    }
    let earlier = first.trim_start.max(0.0);
    let how = if earlier + EPSILON >= late {
        format!("{} earlier in its clip, so its footage stays on its beat", s(late))
    } else if earlier > EPSILON {
        format!(
            "with the {} of its clip before `trim_start`, its first frame held for {} before that",
            s(earlier),
            s(late - earlier)
        )
    } else {
        format!("holding its clip's first frame for {}", s(late))
    };
    warnings.push(Warning {
        pointer: format!("{}/start_time", first.pointer()),
        message: format!(
            "the first move starts at {}, leaving the video's start empty: it starts at 0 instead, {how}",
            s(late)
        ),
    });
    first.start = 0.0;
    first.duration += late;
    first.trim_start -= late;
}

/// A move's frames run to the next move's start: a gap is filled by the move before it
/// running on, and an overlap a crossfade does not explain shortens the earlier move.
fn close_gaps_and_overlaps(moves: &mut [MoveSlot], asked: &Asked, warnings: &mut Vec<Warning>) {
    let tolerance = 0.5 * asked.frame();
    for index in 1..moves.len() {
        let (before, after) = moves.split_at_mut(index);
        let (previous, current) = (&mut before[index - 1], &after[0]);
        let previous_end = previous.start + previous.duration;
        let allowed_overlap = if current.transition == Transition::Crossfade { asked.transition_seconds } else { 0.0 };
        if current.start > previous_end + tolerance {
            warnings.push(Warning {
                pointer: format!("{}/start_time", current.pointer()),
                message: format!(
                    "gap of {} before this move (move {} ends at {}): move {} runs on with its clip's next frames",
                    s(current.start - previous_end),
                    previous.origin,
                    s(previous_end),
                    previous.origin
                ),
            });
            previous.duration = current.start - previous.start;
        } else if current.start < previous_end - allowed_overlap - tolerance {
            let what = if allowed_overlap > 0.0 {
                format!("more than its crossfade of {}", s(allowed_overlap))
            } else {
                "and it enters without a crossfade".to_owned()
            };
            warnings.push(Warning {
                pointer: format!("{}/start_time", current.pointer()),
                message: format!(
                    "overlaps move {} by {}, {what}: move {} is shortened to end at {}",
                    previous.origin,
                    s(previous_end - current.start),
                    previous.origin,
                    s(current.start)
                ),
            });
            previous.duration = current.start - previous.start;
        }
    }
}

/// How long move `index` is on screen: to the next move's start, the last one to its end.
/// The move's own duration where the timeline agrees with it, so that a transition fitted
/// to it is the number the blueprint wrote, not a difference of two starts.
fn slot(moves: &[MoveSlot], index: usize) -> f64 {
    let this = &moves[index];
    match moves.get(index + 1) {
        Some(next) if (next.start - this.start - this.duration).abs() > EPSILON => next.start - this.start,
        _ => this.duration,
    }
}

/// A move shorter than one frame cannot be shown: it is dropped, and the move before it
/// takes its time (the one after it, for a first move), so every other move keeps its frames.
fn drop_subframe_moves(moves: &mut Vec<MoveSlot>, asked: &Asked, warnings: &mut Vec<Warning>) {
    let mut index = 0;
    while index < moves.len() && moves.len() > 1 {
        let length = slot(moves, index);
        if length + EPSILON >= asked.frame() {
            index += 1;
            continue;
        }
        let dropped = moves.remove(index);
        let taken_by = if index == 0 {
            let next = &mut moves[0];
            let lead = next.start - dropped.start;
            next.start = dropped.start;
            next.duration += lead;
            next.trim_start -= lead;
            format!("move {} starts {} earlier in its clip instead", next.origin, s(lead))
        } else {
            let end = match moves.get(index) {
                Some(next) => next.start,
                None => dropped.start + dropped.duration,
            };
            let previous = &mut moves[index - 1];
            previous.duration = end - previous.start;
            format!("move {} runs on through its time", previous.origin)
        };
        warnings.push(Warning {
            pointer: dropped.pointer(),
            message: format!(
                "the move lasts {}, less than one frame at {} fps: it is dropped and {taken_by}",
                s(length),
                asked.frame_rate
            ),
        });
    }
}

/// A transition longer than its moves can hold is shortened to the shorter adjoining move
/// (a crossfade is centred on the boundary, so it takes half of its length from each side;
/// a first move's crossfade fades in from black over half its length, so up to twice the
/// move); one that would last less than a frame becomes a cut.
fn fit_transitions(moves: &mut [MoveSlot], asked: &Asked, warnings: &mut Vec<Warning>) {
    for index in 0..moves.len() {
        let transition = moves[index].transition;
        let wanted = asked.seconds(transition);
        let own = slot(moves, index);
        let (limit, reason) = match index.checked_sub(1) {
            None if transition == Transition::Crossfade => {
                (2.0 * own, format!("the first move lasts {} and fades in over half of it", s(own)))
            }
            Some(previous) if slot(moves, previous) < own => {
                let before = slot(moves, previous);
                (before, format!("move {} before it lasts {}", moves[previous].origin, s(before)))
            }
            _ => (own, format!("the move lasts {}", s(own))),
        };
        let name = match transition {
            Transition::Cut => "cut",
            Transition::Crossfade => "crossfade",
            Transition::FadeBlack => "fade through black",
            Transition::FadeWhite => "fade through white",
        };
        let slot = &mut moves[index];
        let pointer = format!("{}/transition_type", slot.pointer());
        if wanted <= limit + EPSILON {
            slot.transition_seconds = wanted;
        } else if limit + EPSILON < asked.frame() {
            let message = format!(
                "{name} of {} can last at most {} ({reason}), less than one frame: it is a cut",
                s(wanted),
                s(limit)
            );
            warnings.push(Warning { pointer, message });
            slot.transition = Transition::Cut;
            slot.transition_seconds = 0.0;
        } else {
            warnings.push(Warning {
                pointer,
                message: format!("{name} of {} shortened to {} ({reason})", s(wanted), s(limit)),
            });
            slot.transition_seconds = limit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKED: Asked = Asked { frame_rate: 30.0, transition_seconds: 0.5, fade_seconds: 0.3 };

    fn slot(origin: u32, start: f64, duration: f64, transition: Transition) -> MoveSlot {
        MoveSlot {
            clip: 0,
            clip_id: format!("move_{origin}"),
            start,
            duration,
            trim_start: 0.0,
            trim_end: 0.0,
            transition,
            volume: 1.0,
            origin,
            transition_seconds: 0.0,
        }
    }

    fn consecutive(durations: &[f64], transition: Transition) -> Vec<MoveSlot> {
        let mut start = 0.0;
        durations
            .iter()
            .enumerate()
            .map(|(index, &duration)| {
                let kind = if index == 0 { Transition::Cut } else { transition };
                let m = slot(index as u32, start, duration, kind);
                start += duration;
                m
            })
            .collect()
    }

    /// A first move less than half a frame late is on the grid already; more than half a
    /// frame late it starts at 0 (the rule: `late <= 0.5 * frame`).
    #[test]
    fn a_first_move_more_than_half_a_frame_late_starts_at_zero() {
        let frame = 1.0 / 30.0;
        for (late, moved) in [(0.4 * frame, false), (0.6 * frame, true)] {
            let mut moves = consecutive(&[8.0, 8.0], Transition::Cut);
            moves[0].start = late;
            moves[0].duration = 8.0 - late;
            let fitted = fit(moves, &ASKED).unwrap();
            assert_eq!(fitted.moves[0].start == 0.0, moved, "{late} s late: {:?}", fitted.moves[0]);
            assert_eq!(
                fitted.warnings.iter().any(|w| w.pointer.starts_with("/moves/0")),
                moved,
                "{:?}",
                fitted.warnings
            );
        }
    }

    /// A first move that starts late starts at 0 and shows as much earlier footage as its
    /// clip has before `trim_start`, holding the clip's first frame for the rest; it keeps
    /// its end, and the warning says which.
    #[test]
    fn a_late_first_move_reaches_back_into_its_clip() {
        for (trim_start, says) in [
            (2.0, "it starts at 0 instead, 1.000 s earlier in its clip, so its footage stays on its beat"),
            (0.4, "with the 0.400 s of its clip before `trim_start`, its first frame held for 0.600 s before that"),
            (0.0, "holding its clip's first frame for 1.000 s"),
        ] {
            let mut moves = consecutive(&[9.0, 8.0], Transition::Cut);
            (moves[0].start, moves[0].duration, moves[0].trim_start) = (1.0, 8.0, trim_start);
            let fitted = fit(moves, &ASKED).unwrap();
            let first = &fitted.moves[0];
            assert_eq!((first.start, first.duration, first.trim_start), (0.0, 9.0, trim_start - 1.0), "{trim_start}");
            assert!(fitted.warnings[0].message.ends_with(says), "{}", fitted.warnings[0].message);
            assert_eq!(fitted.warnings[0].pointer, "/moves/0/start_time");
            assert_eq!(fitted.warnings.len(), 1, "it reaches the next move: no gap after it: {:?}", fitted.warnings);
        }
    }

    /// A gap or an overlap of less than half a frame is the grid's rounding; more is
    /// closed: a gap by the move before running on, an overlap (beyond a crossfade's own)
    /// by shortening the move before.
    #[test]
    fn gaps_and_overlaps_past_half_a_frame_are_closed() {
        let frame = 1.0 / 30.0;
        let shifted = |by: f64, transition: Transition| {
            let mut moves = consecutive(&[8.0, 8.0], transition);
            moves[1].start = 8.0 + by;
            moves[1].duration = 8.0 - by;
            fit(moves, &ASKED).unwrap()
        };
        for by in [0.4 * frame, -0.4 * frame] {
            let fitted = shifted(by, Transition::Cut);
            assert!(fitted.warnings.is_empty() && fitted.moves[0].duration == 8.0, "{by}: {:?}", fitted.warnings);
        }
        let gap = shifted(0.6 * frame, Transition::Cut);
        assert_eq!(gap.moves[0].duration, 8.0 + 0.6 * frame, "the move before runs on to the next start");
        assert!(gap.warnings[0].message.starts_with("gap of 0.020 s before this move"), "{:?}", gap.warnings);
        let overlap = shifted(-0.6 * frame, Transition::Cut);
        assert_eq!(overlap.moves[0].duration, 8.0 - 0.6 * frame, "the move before ends where the next starts");
        assert!(overlap.warnings[0].message.contains("and it enters without a crossfade"), "{:?}", overlap.warnings);
        // A crossfade may overlap by its own length, not more.
        let within = shifted(-0.5, Transition::Crossfade);
        assert!(within.warnings.iter().all(|w| !w.message.contains("overlaps")), "{:?}", within.warnings);
        let beyond = shifted(-0.5 - 0.6 * frame, Transition::Crossfade);
        assert!(beyond.warnings[0].message.contains("more than its crossfade of 0.500 s"), "{:?}", beyond.warnings);
    }

    /// A first move's crossfade fades in from black over half its length, so it may last
    /// up to twice the move; between two moves of the same length the limit is the move's own.
    #[test]
    fn a_first_crossfade_may_last_twice_its_move() {
        let mut moves = consecutive(&[0.2, 8.0], Transition::Cut);
        moves[0].transition = Transition::Crossfade;
        let fitted = fit(moves, &ASKED).unwrap();
        assert!((fitted.moves[0].transition_seconds - 0.4).abs() < 1e-9, "{:?}", fitted.moves[0]);
        assert!(
            fitted.warnings[0].message.contains("the first move lasts 0.200 s and fades in over half of it"),
            "{:?}",
            fitted.warnings
        );
        let equal = fit(consecutive(&[0.2, 0.2, 8.0], Transition::Crossfade), &ASKED).unwrap();
        assert!(equal.warnings[0].message.ends_with("(the move lasts 0.200 s)"), "{:?}", equal.warnings);
    }

    #[test]
    fn a_regular_timeline_is_unchanged_and_warns_nothing() {
        let moves = consecutive(&[8.0, 8.0, 8.0], Transition::Crossfade);
        let fitted = fit(moves.clone(), &ASKED).unwrap();
        assert!(fitted.warnings.is_empty(), "{:?}", fitted.warnings);
        assert_eq!(fitted.end, 24.0);
        for (before, after) in moves.iter().zip(&fitted.moves) {
            assert_eq!(
                (before.start, before.duration, before.trim_start),
                (after.start, after.duration, after.trim_start)
            );
        }
        assert_eq!(fitted.moves.iter().map(|m| m.transition_seconds).collect::<Vec<_>>(), [0.0, 0.5, 0.5]);
    }

    #[test]
    fn a_crossfade_longer_than_the_remainder_move_is_shortened_to_it() {
        let fitted = fit(consecutive(&[8.0, 0.2, 8.0], Transition::Crossfade), &ASKED).unwrap();
        let seconds: Vec<f64> = fitted.moves.iter().map(|m| m.transition_seconds).collect();
        assert_eq!(seconds, [0.0, 0.2, 0.2]);
        assert_eq!(fitted.warnings.len(), 2);
        assert_eq!(fitted.warnings[0].pointer, "/moves/1/transition_type");
        assert_eq!(fitted.warnings[0].message, "crossfade of 0.500 s shortened to 0.200 s (the move lasts 0.200 s)");
        assert_eq!(fitted.warnings[1].pointer, "/moves/2/transition_type");
        assert_eq!(
            fitted.warnings[1].message,
            "crossfade of 0.500 s shortened to 0.200 s (move 1 before it lasts 0.200 s)"
        );
    }

    #[test]
    fn a_transition_exactly_as_long_as_the_move_is_kept() {
        let fitted = fit(consecutive(&[8.0, 0.5, 8.0], Transition::Crossfade), &ASKED).unwrap();
        assert!(fitted.warnings.is_empty(), "{:?}", fitted.warnings);
        assert_eq!(fitted.moves[1].transition_seconds, 0.5);
    }

    /// Every move left after the sub-frame ones are dropped lasts a frame or more, so no
    /// fitted transition is shorter than a frame: the moves under a frame are dropped.
    #[test]
    fn a_transition_that_would_last_less_than_a_frame_goes_with_its_move() {
        // One frame at 30 fps is 0.0333 s: the move itself is kept, its crossfades are not.
        let fitted = fit(consecutive(&[8.0, 0.034, 8.0], Transition::Crossfade), &ASKED).unwrap();
        assert_eq!(fitted.moves.len(), 3);
        assert_eq!(fitted.moves[1].transition_seconds, 0.034);
        let fitted = fit(consecutive(&[8.0, 0.04, 0.03, 8.0], Transition::Crossfade), &ASKED).unwrap();
        // 0.03 s is under a frame: dropped; move 1 runs on to 0.07 s.
        assert_eq!(fitted.moves.iter().map(|m| m.origin).collect::<Vec<_>>(), [0, 1, 3]);
        assert!((fitted.moves[1].duration - 0.07).abs() < 1e-9);
    }

    #[test]
    fn a_fade_longer_than_a_move_is_shortened_and_one_under_a_frame_is_a_cut() {
        let mut moves = consecutive(&[8.0, 0.2, 8.0], Transition::FadeBlack);
        moves[2].transition = Transition::Cut;
        let fitted = fit(moves, &ASKED).unwrap();
        assert_eq!(fitted.moves[1].transition_seconds, 0.2);
        assert_eq!(fitted.moves[1].transition, Transition::FadeBlack);
        assert_eq!(
            fitted.warnings[0].message,
            "fade through black of 0.300 s shortened to 0.200 s (the move lasts 0.200 s)"
        );

        let asked = Asked { frame_rate: 10.0, ..ASKED };
        let fitted = fit(consecutive(&[8.0, 0.1, 8.0], Transition::FadeWhite), &asked).unwrap();
        assert_eq!(fitted.moves[1].transition_seconds, 0.1, "exactly one frame stays a fade");
        let fitted =
            fit(consecutive(&[8.0, 0.1, 0.09, 8.0], Transition::FadeWhite), &Asked { frame_rate: 12.0, ..ASKED })
                .unwrap();
        assert_eq!(fitted.moves[1].transition, Transition::FadeWhite);
        assert_eq!(fitted.moves.len(), 4, "0.09 s is more than a frame at 12 fps");
        assert_eq!((fitted.moves[2].transition, fitted.moves[2].transition_seconds), (Transition::FadeWhite, 0.09));
    }

    #[test]
    fn a_first_move_crossfade_may_last_twice_the_move() {
        let mut moves = consecutive(&[0.2, 8.0], Transition::Cut);
        moves[0].transition = Transition::Crossfade;
        let fitted = fit(moves.clone(), &ASKED).unwrap();
        assert_eq!(fitted.moves[0].transition_seconds, 0.4);
        moves[0].duration = 0.25;
        moves[1].start = 0.25;
        let fitted = fit(moves, &ASKED).unwrap();
        assert_eq!(fitted.moves[0].transition_seconds, 0.5);
        assert!(fitted.warnings.is_empty());
    }

    #[test]
    fn a_move_shorter_than_a_frame_is_dropped_and_the_one_before_takes_its_time() {
        let fitted = fit(consecutive(&[8.0, 0.02, 8.0], Transition::Crossfade), &ASKED).unwrap();
        assert_eq!(fitted.moves.iter().map(|m| m.origin).collect::<Vec<_>>(), [0, 2]);
        assert!((fitted.moves[0].duration - 8.02).abs() < 1e-9);
        assert_eq!(fitted.moves[1].start, 8.02);
        assert_eq!(fitted.moves[1].transition_seconds, 0.5);
        assert_eq!(fitted.end, 16.02);
        assert_eq!(fitted.warnings[0].pointer, "/moves/1");
        assert_eq!(
            fitted.warnings[0].message,
            "the move lasts 0.020 s, less than one frame at 30 fps: it is dropped and move 0 runs on through its time"
        );
    }

    #[test]
    fn a_last_move_shorter_than_a_frame_leaves_its_time_to_the_one_before() {
        let fitted = fit(consecutive(&[8.0, 8.0, 0.01], Transition::Crossfade), &ASKED).unwrap();
        assert_eq!(fitted.moves.len(), 2);
        assert!((fitted.moves[1].duration - 8.01).abs() < 1e-9);
        assert!((fitted.end - 16.01).abs() < 1e-9);
    }

    #[test]
    fn a_first_move_shorter_than_a_frame_leaves_its_time_to_the_next_one() {
        let mut moves = consecutive(&[0.01, 8.0], Transition::Cut);
        moves[1].trim_start = 1.0;
        let fitted = fit(moves, &ASKED).unwrap();
        assert_eq!(fitted.moves.len(), 1);
        let only = &fitted.moves[0];
        assert_eq!((only.origin, only.start), (1, 0.0));
        assert!((only.duration - 8.01).abs() < 1e-9 && (only.trim_start - 0.99).abs() < 1e-9);
    }

    #[test]
    fn a_move_of_exactly_one_frame_stays() {
        let fitted = fit(consecutive(&[8.0, 1.0 / 30.0, 8.0], Transition::Cut), &ASKED).unwrap();
        assert_eq!(fitted.moves.len(), 3);
        assert!(fitted.warnings.is_empty());
    }

    #[test]
    fn a_gap_is_filled_by_the_move_before_running_on() {
        let mut moves = consecutive(&[8.0, 8.0], Transition::Crossfade);
        moves[1].start = 16.0;
        let fitted = fit(moves, &ASKED).unwrap();
        assert_eq!(fitted.moves[0].duration, 16.0);
        assert_eq!(fitted.moves[1].start, 16.0);
        assert_eq!(fitted.end, 24.0);
        assert_eq!(fitted.warnings[0].pointer, "/moves/1/start_time");
        assert_eq!(
            fitted.warnings[0].message,
            "gap of 8.000 s before this move (move 0 ends at 8.000 s): move 0 runs on with its clip's next frames"
        );
    }

    #[test]
    fn a_gap_within_half_a_frame_is_not_one() {
        let mut moves = consecutive(&[8.0, 8.0], Transition::Cut);
        moves[1].start = 8.0 + 0.49 / 30.0;
        let fitted = fit(moves, &ASKED).unwrap();
        assert!(fitted.warnings.is_empty());
        assert_eq!(fitted.moves[0].duration, 8.0);
    }

    #[test]
    fn a_late_first_move_starts_at_zero_earlier_in_its_clip() {
        let mut moves = consecutive(&[8.0, 8.0], Transition::Cut);
        for m in &mut moves {
            m.start += 8.0;
        }
        moves[0].trim_start = 10.0;
        let fitted = fit(moves.clone(), &ASKED).unwrap();
        let first = &fitted.moves[0];
        assert_eq!((first.start, first.duration, first.trim_start), (0.0, 16.0, 2.0));
        assert_eq!(fitted.warnings[0].pointer, "/moves/0/start_time");

        moves[0].trim_start = 3.0;
        let fitted = fit(moves.clone(), &ASKED).unwrap();
        assert_eq!(fitted.moves[0].trim_start, -5.0, "held for 5 s before the clip starts");
        assert!(fitted.warnings[0].message.contains("first frame held for 5.000 s"), "{}", fitted.warnings[0].message);

        moves[0].trim_start = 0.0;
        let fitted = fit(moves, &ASKED).unwrap();
        assert_eq!(fitted.moves[0].trim_start, -8.0);
        assert!(fitted.warnings[0].message.ends_with("holding its clip's first frame for 8.000 s"));
    }

    #[test]
    fn an_overlap_without_a_crossfade_shortens_the_earlier_move() {
        let mut moves = consecutive(&[8.0, 8.0], Transition::Cut);
        moves[1].start = 6.0;
        let fitted = fit(moves.clone(), &ASKED).unwrap();
        assert_eq!(fitted.moves[0].duration, 6.0);
        assert_eq!(fitted.warnings[0].pointer, "/moves/1/start_time");

        // Within its crossfade, an overlap is what the strict check allows: unchanged.
        moves[1].transition = Transition::Crossfade;
        moves[1].start = 7.6;
        let fitted = fit(moves, &ASKED).unwrap();
        assert_eq!(fitted.moves[0].duration, 8.0);
        assert!(fitted.warnings.is_empty());
    }

    #[test]
    fn a_move_wholly_overlapped_is_dropped() {
        let mut moves = consecutive(&[8.0, 8.0], Transition::Cut);
        moves[1].start = 0.0;
        let fitted = fit(moves, &ASKED).unwrap();
        assert_eq!(fitted.moves.iter().map(|m| m.origin).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn unsorted_moves_are_refused() {
        let mut moves = consecutive(&[8.0, 8.0, 8.0], Transition::Cut);
        moves[2].start = 4.0;
        let errors = fit(moves, &ASKED).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/moves/2/start_time");
    }

    /// The backend's rule-based generator: four equal sections, each filled with whole
    /// clips and a remainder move, every move after the first entering with a crossfade.
    #[test]
    fn rule_based_sections_keep_every_boundary_on_its_time() {
        for song in [171.3, 180.0, 203.77, 95.02] {
            let section = song / 4.0;
            let clips = [8.0, 9.067, 6.4, 16.9];
            let (mut moves, mut t, mut next) = (Vec::new(), 0.0, 0);
            for _ in 0..4 {
                let mut inside = 0.0;
                while inside < section {
                    let length = f64::min(clips[next % clips.len()], section - inside);
                    let kind = if moves.is_empty() { Transition::Cut } else { Transition::Crossfade };
                    moves.push(slot(moves.len() as u32, t, length, kind));
                    t += length;
                    inside += length;
                    next += 1;
                }
            }
            let fitted = fit(moves.clone(), &ASKED).unwrap();
            assert!((fitted.end - t).abs() < 1e-9, "the video keeps its length");
            for m in &fitted.moves {
                let original = &moves[m.origin as usize];
                assert_eq!(m.start, original.start, "move {} keeps its start", m.origin);
                assert!(m.transition_seconds <= slot_of(&fitted.moves, m) + 1e-9);
            }
        }
    }

    fn slot_of(moves: &[MoveSlot], m: &MoveSlot) -> f64 {
        let index = moves.iter().position(|x| x.origin == m.origin).unwrap();
        super::slot(moves, index)
    }

    /// The boundaries of where a late first move's footage comes from: a `trim_start` equal
    /// to the delay is all earlier footage; one of exactly EPSILON is none (a hold).
    #[test]
    fn a_late_first_move_with_exactly_its_delay_before_trim_start_needs_no_hold() {
        for (trim_start, says) in [
            (1.0, "1.000 s earlier in its clip, so its footage stays on its beat"),
            (EPSILON, "holding its clip's first frame for 1.000 s"),
        ] {
            let mut moves = consecutive(&[9.0, 8.0], Transition::Cut);
            (moves[0].start, moves[0].duration, moves[0].trim_start) = (1.0, 8.0, trim_start);
            let fitted = fit(moves, &ASKED).unwrap();
            assert!(fitted.warnings[0].message.ends_with(says), "{trim_start}: {}", fitted.warnings[0].message);
        }
    }

    /// Exactly half a frame of gap or of overlap (beyond a crossfade's own) is still the
    /// grid's rounding: nothing is closed.
    #[test]
    fn a_gap_or_overlap_of_exactly_half_a_frame_is_left_alone() {
        let tolerance = 0.5 * ASKED.frame();
        for (start, transition) in [
            (8.0 + tolerance, Transition::Cut),
            (8.0 - 0.0 - tolerance, Transition::Cut),
            (8.0 - 0.5 - tolerance, Transition::Crossfade),
        ] {
            let mut moves = consecutive(&[8.0, 8.0], transition);
            moves[1].start = start;
            let fitted = fit(moves, &ASKED).unwrap();
            assert!(fitted.warnings.is_empty(), "{start} {transition:?}: {:?}", fitted.warnings);
            assert_eq!(fitted.moves[0].duration, 8.0);
        }
    }

    /// An overlap's warning says by how much the moves overlap.
    #[test]
    fn an_overlap_warning_gives_its_length() {
        let mut moves = consecutive(&[8.0, 8.0], Transition::Cut);
        moves[1].start = 7.0;
        let fitted = fit(moves, &ASKED).unwrap();
        assert!(
            fitted.warnings[0].message.starts_with("overlaps move 0 by 1.000 s, and it enters without a crossfade"),
            "{:?}",
            fitted.warnings
        );
    }

    /// A move is on screen until the next one starts: a gap of less than half a frame (left
    /// alone) counts as the move's, so a crossfade as long as that time is kept whole.
    #[test]
    fn a_move_is_on_screen_until_the_next_starts() {
        let mut moves = consecutive(&[8.0, 0.49, 8.0], Transition::Crossfade);
        moves[2].start = 8.5; // 0.01 s after move 1's written end: under half a frame
        let fitted = fit(moves, &ASKED).unwrap();
        assert!(fitted.warnings.is_empty(), "{:?}", fitted.warnings);
        assert_eq!(fitted.moves[1].transition_seconds, 0.5);
    }

    /// A transition shortened to a move lasts the duration the blueprint wrote, not the
    /// difference of two starts (8.0 - 7.7 is 0.2999999999999998 in floating point).
    #[test]
    fn a_shortened_transition_lasts_the_written_duration() {
        let mut moves = consecutive(&[7.7, 0.3, 8.0], Transition::Crossfade);
        moves[2].start = 8.0;
        let fitted = fit(moves, &ASKED).unwrap();
        assert_eq!(fitted.moves[2].transition_seconds.to_bits(), 0.3f64.to_bits(), "{:?}", fitted.moves);
    }

    /// A first move shorter than a frame is dropped and the next one starts where it did,
    /// earlier in its own clip by the dropped move's length.
    #[test]
    fn a_dropped_first_move_leaves_its_start_to_the_next() {
        let mut moves = consecutive(&[0.01, 0.02, 8.0], Transition::Cut);
        moves.remove(0);
        (moves[0].start, moves[0].duration) = (0.01, 0.02); // within half a frame of 0
        moves[1].start = 0.03;
        moves[1].duration = 7.97;
        moves[1].trim_start = 1.0;
        let fitted = fit(moves, &ASKED).unwrap();
        let first = &fitted.moves[0];
        assert!((first.start - 0.01).abs() < 1e-12 && (first.duration - 7.99).abs() < 1e-12, "{first:?}");
        assert!((first.trim_start - 0.98).abs() < 1e-12, "{first:?}");
    }

    /// Only a first crossfade (which fades in from black over half its length) may last
    /// twice its move; a first fade lasts at most its move.
    #[test]
    fn a_first_fade_lasts_at_most_its_move() {
        let mut moves = consecutive(&[0.2, 8.0], Transition::Cut);
        moves[0].transition = Transition::FadeBlack;
        let fitted = fit(moves, &ASKED).unwrap();
        assert!((fitted.moves[0].transition_seconds - 0.2).abs() < 1e-12, "{:?}", fitted.moves[0]);
    }

    /// Between two moves equally shorter than the transition, the warning names the move
    /// itself, not the one before.
    #[test]
    fn between_two_equal_moves_the_warning_names_the_move_itself() {
        let fitted = fit(consecutive(&[0.4, 0.4, 8.0], Transition::Crossfade), &ASKED).unwrap();
        let on_second = fitted.warnings.iter().find(|w| w.pointer == "/moves/1/transition_type").unwrap();
        assert!(on_second.message.ends_with("shortened to 0.400 s (the move lasts 0.400 s)"), "{}", on_second.message);
    }

    /// An overlap shortens the move before to end where the next starts, wherever it starts.
    #[test]
    fn an_overlap_shortens_the_move_before_to_the_next_start() {
        let mut moves = consecutive(&[8.0, 8.0, 8.0], Transition::Cut);
        moves[2].start = 15.0;
        let fitted = fit(moves, &ASKED).unwrap();
        assert_eq!(fitted.moves[1].duration, 7.0, "{:?}", fitted.moves);
    }

    /// A move left alone before a gap of under half a frame lasts to the next start: a
    /// transition after it is limited by that time, not by its written duration.
    #[test]
    fn a_transition_after_a_small_gap_is_limited_by_the_time_to_the_next_start() {
        let mut moves = consecutive(&[8.0, 0.3, 8.0], Transition::Crossfade);
        moves[2].start = 8.31;
        let fitted = fit(moves, &ASKED).unwrap();
        assert!((fitted.moves[2].transition_seconds - 0.31).abs() < 1e-9, "{:?}", fitted.moves[2]);
    }
}
