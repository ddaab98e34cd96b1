//! Render hooks: how the built-in planner shows each slot and plays the song, beyond
//! what the blueprint says. A plugin that changes *how* a move renders (slower, held,
//! mirrored) states it here and calls [`crate::plan_with`]; the built-in planner still
//! does the frame-exact timing, the transitions, the letterboxing, the copies of prepared
//! clips (for every slot rendered as shot) and the one-gain loudness. Nothing here names
//! an FFmpeg argument a plugin would have to rewrite.

use br_blueprint::Validated;

use crate::types::PlanError;

/// Footage speeds a slot may take: a quarter to four times as shot.
pub const SPEEDS: std::ops::RangeInclusive<f64> = 0.25..=4.0;
/// Filters one slot may add (each is checked again by the host's policy).
pub const MAX_SLOT_FILTERS: usize = 8;
/// Bytes of one slot's filters.
pub const MAX_FILTER_BYTES: usize = 1024;
/// Sections the song may be made of: each is one more read of the song file, four
/// arguments of the song's step (`-ss S -i input(0)`), which the policy holds to 256.
pub const MAX_SONG_SECTIONS: usize = 56;

/// Everything the hooks change; [`Render::default`] changes nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Render {
    /// Per slot of `validated.moves`, in order; slots past its end render as shot.
    pub slots: Vec<SlotRender>,
    /// The song track as sections of the song file, played one after the other from the
    /// video's start (the rest of the video silent). Empty: the song from 0, as the
    /// blueprint says.
    pub song: Vec<SongSection>,
}

/// How one slot shows its clip. Times are seconds of the video (output seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct SlotRender {
    /// Seconds of footage per second of video: 1 as shot, 0.75 a quarter slower (the slot
    /// shows 0.75 × its length of its clip from `trim_start`). Within [`SPEEDS`].
    pub speed: f64,
    /// How long the slot's first frame stands still before its footage plays (a pose
    /// preview). A crossfade into the slot blends into the still frame.
    pub hold_first: f64,
    /// How long the frame the footage stops on stands still at the slot's end.
    pub hold_last: f64,
    /// Per-pixel filters applied to the clip's frames before they are fitted to the
    /// output (e.g. `hflip`: mirrored). Each is one filter with its options, no labels;
    /// the host's policy checks them as it checks any plan (`policy list`).
    pub filters: Vec<String>,
}

impl Default for SlotRender {
    fn default() -> SlotRender {
        SlotRender { speed: 1.0, hold_first: 0.0, hold_last: 0.0, filters: Vec::new() }
    }
}

impl SlotRender {
    /// Rendered exactly as shot: such a slot may be copied from a prepared clip.
    pub fn is_as_shot(&self) -> bool {
        self.speed == 1.0 && self.hold_first == 0.0 && self.hold_last == 0.0 && self.filters.is_empty()
    }
}

/// `duration` seconds of the song file from `start`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SongSection {
    /// Seconds into the song file where the section begins; 0 or more.
    pub start: f64,
    /// Seconds of the song file the section plays; more than 0.
    pub duration: f64,
}

impl Render {
    /// How slot `index` renders.
    pub(crate) fn slot(&self, index: usize) -> &SlotRender {
        static AS_SHOT: std::sync::OnceLock<SlotRender> = std::sync::OnceLock::new();
        self.slots.get(index).unwrap_or_else(|| AS_SHOT.get_or_init(SlotRender::default))
    }

    /// Every value a hook set that no plan can honour, each with the pointer of the
    /// blueprint's move the slot shows (the song's sections point at `/audio_path`).
    pub(crate) fn problems(&self, validated: &Validated) -> Vec<PlanError> {
        let mut problems = Vec::new();
        let mut problem = |pointer: String, message: String| problems.push(PlanError { pointer, message });
        if self.slots.len() > validated.moves.len() {
            problem(
                "/moves".into(),
                format!(
                    "the render hooks describe {} slots; the timeline has {}",
                    self.slots.len(),
                    validated.moves.len()
                ),
            );
        }
        for (slot, render) in validated.moves.iter().zip(&self.slots) {
            let pointer = slot.pointer();
            if !(render.speed.is_finite() && SPEEDS.contains(&render.speed)) {
                problem(
                    pointer.clone(),
                    format!("a render speed of {} is outside {} to {}", render.speed, SPEEDS.start(), SPEEDS.end()),
                );
            }
            for (what, hold) in [("hold_first", render.hold_first), ("hold_last", render.hold_last)] {
                if !(hold.is_finite() && hold >= 0.0) {
                    problem(pointer.clone(), format!("{what} {hold} is not a number of seconds from 0"));
                }
            }
            if render.filters.len() > MAX_SLOT_FILTERS {
                problem(
                    pointer.clone(),
                    format!("{} filters; a slot may add at most {MAX_SLOT_FILTERS}", render.filters.len()),
                );
            }
            if render.filters.iter().map(String::len).sum::<usize>() > MAX_FILTER_BYTES {
                problem(pointer.clone(), format!("its filters take more than {MAX_FILTER_BYTES} bytes"));
            }
            if let Some(bad) = render.filters.iter().find(|filter| !is_one_filter(filter)) {
                problem(
                    pointer.clone(),
                    format!("{bad:?} is not one filter (no labels, and commas or semicolons only inside quotes)"),
                );
            }
        }
        if self.song.len() > MAX_SONG_SECTIONS {
            problem(
                "/audio_path".into(),
                format!("the song is made of {} sections; at most {MAX_SONG_SECTIONS}", self.song.len()),
            );
        }
        for (number, section) in self.song.iter().enumerate() {
            let valid = section.start.is_finite()
                && section.start >= 0.0
                && section.duration.is_finite()
                && section.duration > 0.0;
            if !valid {
                problem(
                    "/audio_path".into(),
                    format!(
                        "song section {number} ({} s from {} s) is not a stretch of the song",
                        section.duration, section.start
                    ),
                );
            }
        }
        problems
    }
}

/// One filter with its options: a label, a second filter in a chain or a second chain
/// would rewire the step, so `[`, `]`, `,` and `;` may appear only inside FFmpeg's
/// single quotes (`crop=w='min(iw,ih)'`), and no control character anywhere.
fn is_one_filter(text: &str) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        match c {
            _ if c.is_control() => return false,
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '\'' => quoted = !quoted,
            '[' | ']' | ',' | ';' if !quoted => return false,
            _ => {}
        }
    }
    !text.is_empty() && !quoted && !escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_filter_is_one_filter_and_quotes_hide_commas() {
        assert!(is_one_filter("hflip"));
        assert!(is_one_filter("crop=w='min(iw,ih)':h=ih"));
        for bad in ["", "hflip,vflip", "hflip;[0:v]null", "[in]hflip", "crop=w='min(iw", "hflip\n", "a\\"] {
            assert!(!is_one_filter(bad), "{bad:?}");
        }
    }

    /// A backslash escapes the next character: an escaped comma or quote is part of the
    /// filter's options.
    #[test]
    fn a_backslash_escapes_one_character() {
        assert!(is_one_filter("drawtext=text=a\\,b"));
        assert!(is_one_filter("drawtext=text=it\\'s"));
        assert!(!is_one_filter("drawtext=text=a\\\\,b"), "an escaped backslash escapes nothing more");
    }

    fn validated() -> Validated {
        br_blueprint::validate(include_str!("../../../examples/backend-blueprint.json"))
            .unwrap_or_else(|errors| panic!("{errors:?}"))
    }

    /// Each limit allows exactly its own value: 8 filters, 1,024 bytes of them, 56 song
    /// sections; one more is refused, with a message that says so.
    #[test]
    fn each_hook_limit_allows_exactly_its_value() {
        let validated = validated();
        let slot = |filters: Vec<String>| Render {
            slots: vec![SlotRender { filters, ..SlotRender::default() }],
            song: Vec::new(),
        };
        let messages = |render: &Render| {
            render.problems(&validated).into_iter().map(|p| format!("{} {}", p.pointer, p.message)).collect::<Vec<_>>()
        };
        assert_eq!(messages(&slot(vec!["hflip".into(); 8])), Vec::<String>::new());
        assert_eq!(messages(&slot(vec!["hflip".into(); 9])), ["/moves/0 9 filters; a slot may add at most 8"]);
        let bytes = |n: usize| format!("drawtext=text={}", "x".repeat(n - 14));
        assert_eq!(messages(&slot(vec![bytes(1000), bytes(24)])), Vec::<String>::new());
        assert_eq!(messages(&slot(vec![bytes(1000), bytes(25)])), ["/moves/0 its filters take more than 1024 bytes"]);
        let song =
            |count: usize| Render { slots: Vec::new(), song: vec![SongSection { start: 0.0, duration: 1.0 }; count] };
        assert_eq!(messages(&song(56)), Vec::<String>::new());
        assert_eq!(messages(&song(57)), ["/audio_path the song is made of 57 sections; at most 56"]);
    }

    /// A held frame lasts a finite number of seconds from 0; a song section lasts more than 0.
    #[test]
    fn holds_are_finite_seconds_from_0_and_sections_last_more_than_0() {
        let validated = validated();
        let held = |hold_first: f64, hold_last: f64| Render {
            slots: vec![SlotRender { hold_first, hold_last, ..SlotRender::default() }],
            song: Vec::new(),
        };
        assert!(held(0.0, 0.0).problems(&validated).is_empty());
        let problems = held(f64::INFINITY, -0.5).problems(&validated);
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            ["hold_first inf is not a number of seconds from 0", "hold_last -0.5 is not a number of seconds from 0"]
        );
        let section = |duration: f64| Render { slots: Vec::new(), song: vec![SongSection { start: 3.0, duration }] };
        let problems = section(0.0).problems(&validated);
        assert_eq!(
            problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>(),
            ["song section 0 (0 s from 3 s) is not a stretch of the song"]
        );
        assert!(section(0.25).problems(&validated).is_empty());
    }
}
