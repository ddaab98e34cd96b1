//! For a plugin's native tests (`cargo test` on the build machine): the host's own plan
//! policy, and a plan request over made-up media, so a plugin's plan is checked without
//! a host, media or FFmpeg.

use br_plan::{AudioFacts, MediaFacts, Plan, PlanRequest, VideoFacts};

/// The backend's blueprint: 22 moves of 8 s, a crossfade into every move after the first.
pub const BACKEND_BLUEPRINT: &str = include_str!("../../../examples/backend-blueprint.json");

/// A plan request for `blueprint` (validated with the built-in rules) over made-up media:
/// every clip 1280x720 H.264 at 30 fps with AAC, `clip_seconds` long; the song an MP3 as
/// long as the timeline.
pub fn request_over_made_up_media(blueprint: &str, clip_seconds: f64) -> Result<PlanRequest, String> {
    let validated = br_blueprint::check(blueprint, &br_blueprint::CheckOptions::default()).map_err(|refusal| {
        let errors = refusal.errors;
        errors.iter().map(|e| format!("{}: {}", e.pointer, e.message)).collect::<Vec<_>>().join("; ")
    })?;
    let song_seconds = validated.total_duration;
    let audio = |codec: &str, seconds: f64| AudioFacts {
        codec: codec.into(),
        sample_rate: 48_000,
        channels: 2,
        duration: seconds,
    };
    let mut inputs = vec![MediaFacts {
        key: validated.audio_key.clone(),
        duration: song_seconds,
        video: None,
        audio: Some(audio("mp3", song_seconds)),
    }];
    inputs.extend(validated.clip_keys.iter().map(|key| MediaFacts {
        key: key.clone(),
        duration: clip_seconds,
        video: Some(VideoFacts {
            codec: "h264".into(),
            width: 1280,
            height: 720,
            frame_rate: 30.0,
            pixel_format: "yuv420p".into(),
            duration: clip_seconds,
        }),
        audio: Some(audio("aac", clip_seconds)),
    }));
    Ok(PlanRequest { validated, inputs, strict: false, prepared: Vec::new(), song_loudness: None })
}

/// Whether the host's policy lets `plan` run for `request`; otherwise every violation
/// (`step S, argument A: reason`, up to the policy's cap, then how many more).
pub fn plan_passes(request: &PlanRequest, plan: &Plan) -> Result<(), Vec<String>> {
    let limits = br_policy::PolicyLimits::for_request(request);
    br_policy::check_all(plan, request.inputs.len() as u32, &limits).map(|_| ()).map_err(|violations| {
        let mut listed: Vec<String> = violations.listed().iter().map(|v| v.located_reason()).collect();
        if violations.unlisted() > 0 {
            listed.push(format!("and {} more", violations.unlisted()));
        }
        listed
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Filter, Filtergraph};

    #[test]
    fn the_built_in_plan_for_the_backend_blueprint_passes_the_policy() {
        let request = request_over_made_up_media(BACKEND_BLUEPRINT, 12.0).unwrap();
        let plan = crate::defaults::plan(&request).unwrap();
        assert_eq!(plan_passes(&request, &plan), Ok(()));
    }

    /// The builder's quoting is what the policy parses: a quoted expression with commas
    /// passes as one value, and a forbidden filter is still refused.
    #[test]
    fn a_built_graph_is_read_by_the_policy_as_written() {
        let request = request_over_made_up_media(BACKEND_BLUEPRINT, 12.0).unwrap();
        let step = |graph: &Filtergraph| br_plan::Plan {
            temps: Vec::new(),
            steps: vec![br_plan::Step::Ffmpeg(br_plan::Invocation {
                args: vec![
                    br_plan::Arg::lit("-i"),
                    br_plan::Arg::Input(0),
                    br_plan::Arg::lit("-filter_complex"),
                    graph.to_arg(),
                    br_plan::Arg::lit("-map"),
                    br_plan::Arg::lit("[a]"),
                    br_plan::Arg::lit("-t"),
                    br_plan::Arg::lit("176"),
                    br_plan::Arg::Output,
                ],
                media_seconds: 176.0,
                label: "song".into(),
            })],
            warnings: Vec::new(),
        };
        let mut graph = Filtergraph::new();
        graph.chain(
            &["0:a"],
            [Filter::new("volume").option("volume", "if(lt(t,2),0.5,1)").option("eval", "frame")],
            &["a"],
        );
        assert_eq!(plan_passes(&request, &step(&graph)), Ok(()));
        let mut forbidden = Filtergraph::new();
        forbidden.chain(&["0:a"], [Filter::new("amovie").option("f", "x")], &["a"]);
        let refused = plan_passes(&request, &step(&forbidden)).unwrap_err();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0].contains("amovie"), "{refused:?}");
    }
}
