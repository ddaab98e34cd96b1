//! A guest that misbehaves on request, to prove the sandbox's limits and the host's
//! plan policy. The blueprint text selects the misbehaviour; `plan:<name>` validates
//! to a fixed one-move blueprint (see [`fixed_blueprint`]) whose `plan` returns the
//! hostile plan `<name>`; anything else is refused politely.
#![cfg(target_arch = "wasm32")]

// Built against contract 0.2.0 on purpose (the text kept in `wit/v0.2.0/`), not the
// current one: the tests that run it also prove that the host still loads a guest of the
// previous contract version (its refusals carry no task id).
wit_bindgen::generate!({ world: "guest", path: "../../../wit/v0.2.0" });

use blueprint::runner::host::{log, LogLevel};
use blueprint::runner::types as wit;

struct HostileGuest;

fn refusal(message: String) -> Vec<wit::ValidationError> {
    vec![wit::ValidationError { pointer: String::new(), code: wit::ErrorCode::NotAllowed, message }]
}

impl Guest for HostileGuest {
    fn validate(blueprint: String) -> Result<wit::Validated, Vec<wit::ValidationError>> {
        log(LogLevel::Info, &format!("hostile guest asked to {blueprint}"));
        match blueprint.as_str() {
            "spin" => {
                // Pure computation the optimiser cannot remove: only fuel stops it.
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "allocate" => {
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                for _ in 0..1024 {
                    chunks.push(vec![1u8; 1024 * 1024]);
                    log(LogLevel::Debug, &format!("holding {} MiB", chunks.len()));
                }
                Err(refusal(format!("allocated {} MiB", chunks.len())))
            }
            "sleep" => {
                // A WASI sleep: the guest blocks in the host, where fuel does not count.
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Err(refusal("woke up".into()))
            }
            "huge-output" => Err(refusal("x".repeat(100 * 1024 * 1024))),
            "many-errors" => Err((0..200_000)
                .map(|i| wit::ValidationError {
                    pointer: format!("/moves/{i}"),
                    code: wit::ErrorCode::Timeline,
                    message: "no".into(),
                })
                .collect()),
            "panic" => panic!("the hostile guest panics on purpose"),
            "log-flood" => {
                for i in 0..100_000 {
                    log(LogLevel::Warn, &format!("flood line {i} {}", "y".repeat(1000)));
                }
                println!("{}", "z".repeat(1 << 20));
                Err(refusal("flooded".into()))
            }
            "bad-pointer" => Err(vec![wit::ValidationError {
                pointer: "not a pointer".into(),
                code: wit::ErrorCode::Timeline,
                message: "x".into(),
            }]),
            other if other.starts_with("plan:") => Ok(fixed_blueprint(&other["plan:".len()..])),
            other => Err(refusal(format!("unknown misbehaviour {other:?}"))),
        }
    }

    fn plan(request: wit::PlanRequest) -> Result<wit::Plan, Vec<wit::PlanError>> {
        use wit::Arg::{Input, Literal, Output, Temp};
        let behaviour = request.validated.moves[0].clip_id.clone();
        log(LogLevel::Info, &format!("hostile plan {behaviour}"));
        let lit = |s: &str| Literal(s.to_owned());
        let one = |args: Vec<wit::Arg>| wit::Plan {
            temps: vec![wit::TempFormat::Nut],
            steps: vec![wit::Step::Ffmpeg(wit::Invocation { args, media_seconds: 2.0, label: behaviour.clone() })],
            warnings: vec![],
        };
        let filtered = |option: &str, graph: &str| {
            one(vec![
                lit("-i"),
                Input(1),
                lit(option),
                lit(graph),
                lit("-c:v"),
                lit("libx264"),
                lit("-c:a"),
                lit("aac"),
                lit("-f"),
                lit("mp4"),
                Output,
            ])
        };
        let plan = match behaviour.as_str() {
            // Writes a file the host never named.
            "path-literal" => {
                one(vec![lit("-i"), Input(1), lit("-c:v"), lit("libx264"), lit("/tmp/escaped.mp4"), Output])
            }
            "url" => one(vec![lit("-i"), lit("http://169.254.169.254/computeMetadata/v1/"), Output]),
            "lavfi-movie" => one(vec![lit("-f"), lit("lavfi"), lit("-i"), lit("movie=/etc/passwd"), Output]),
            "forbidden-filter" => one(vec![
                lit("-i"),
                Input(1),
                lit("-filter_complex"),
                lit("[0:v]null[a];movie=/etc/passwd[b];[a][b]overlay[v]"),
                lit("-map"),
                lit("[v]"),
                Output,
            ]),
            "temp-before-write" => one(vec![lit("-i"), Temp(0), lit("-c:v"), lit("copy"), Output]),
            "ten-thousand-steps" => wit::Plan {
                temps: vec![],
                steps: (0..10_000)
                    .map(|_| {
                        wit::Step::Ffmpeg(wit::Invocation {
                            args: vec![lit("-i"), Input(1), Output],
                            media_seconds: 1.0,
                            label: "x".into(),
                        })
                    })
                    .collect(),
                warnings: vec![],
            },
            // Values that took FFmpeg gigabytes before the policy bounded filter values.
            "huge-scale" => filtered("-vf", "scale=8000:8000"),
            "huge-pad" => filtered("-vf", "pad=16000:16000"),
            // The same size as an expression: sizes are literal pixels or nothing.
            "huge-scale-expression" => filtered("-vf", "scale=iw*25:ih*44"),
            "huge-fps" => filtered("-vf", "fps=1000000000"),
            // An expression that never ends: FFmpeg's output time would stand still.
            "stall" => filtered("-vf", "setpts='while(1,1)'"),
            // Every value within its bound, and still a memory hog: `concat` plays the first
            // branch to its end while `split` queues every decoded frame for the second. Only
            // the host's limit on the child (and its watchdog) holds this one.
            "buffer-whole-clip" => one(vec![
                lit("-i"),
                Input(1),
                lit("-filter_complex"),
                lit("[0:v]split=2[first][second];[first][second]concat=n=2:v=1:a=0[v]"),
                lit("-map"),
                lit("[v]"),
                lit("-c:v"),
                lit("libx264"),
                lit("-preset"),
                lit("ultrafast"),
                lit("-f"),
                lit("mp4"),
                Output,
            ]),
            "many-threads" => filtered("-threads", "16"),
            "huge-frames" => one(vec![
                lit("-i"),
                Input(1),
                lit("-r"),
                lit("240"),
                lit("-frames:v"),
                lit("10000000"),
                lit("-f"),
                lit("mp4"),
                Output,
            ]),
            "volume-state" => filtered("-af", "volume='st(0,ld(0)+1)':eval=frame"),
            // One 475 KB segment listed 2,000 times at 1 µs each: FFmpeg copies it whole
            // every time (gigabytes), whatever the declared durations say.
            "concat-amplification" => wit::Plan {
                temps: vec![wit::TempFormat::Nut, wit::TempFormat::Ffconcat],
                steps: vec![
                    wit::Step::Ffmpeg(wit::Invocation {
                        args: vec![lit("-i"), Input(1), lit("-c:v"), lit("libx264"), lit("-f"), lit("nut"), Temp(0)],
                        media_seconds: 2.0,
                        label: "segment".into(),
                    }),
                    wit::Step::WriteConcatList(wit::ConcatList {
                        list: 1,
                        parts: (0..2_000).map(|_| wit::ConcatPart { temp: 0, duration: 0.000_001 }).collect(),
                    }),
                    wit::Step::Ffmpeg(wit::Invocation {
                        args: vec![
                            lit("-f"),
                            lit("concat"),
                            lit("-i"),
                            Temp(1),
                            lit("-c:v"),
                            lit("copy"),
                            lit("-f"),
                            lit("mp4"),
                            Output,
                        ],
                        media_seconds: 2.0,
                        label: "join".into(),
                    }),
                ],
                warnings: vec![],
            },
            // Every rule kept, and the wrong video: the whole 3 s clip for a 2 s blueprint.
            "whole-clip" => one(vec![
                lit("-i"),
                Input(1),
                lit("-c:v"),
                lit("libx264"),
                lit("-c:a"),
                lit("aac"),
                lit("-f"),
                lit("mp4"),
                Output,
            ]),
            // Two copy steps side by side, each writing its input three times over: within
            // every rule, and each child's file is held to its own share of the budget.
            "twin-copies" => {
                let copy = |temp: u32| {
                    wit::Step::Ffmpeg(wit::Invocation {
                        args: vec![
                            lit("-i"),
                            Input(1),
                            lit("-i"),
                            Input(1),
                            lit("-i"),
                            Input(1),
                            lit("-map"),
                            lit("0:v"),
                            lit("-map"),
                            lit("1:v"),
                            lit("-map"),
                            lit("2:v"),
                            lit("-c:v"),
                            lit("copy"),
                            lit("-an"),
                            lit("-f"),
                            lit("nut"),
                            Temp(temp),
                        ],
                        media_seconds: 2.0,
                        label: format!("copy {temp}"),
                    })
                };
                wit::Plan {
                    temps: vec![wit::TempFormat::Nut, wit::TempFormat::Nut],
                    steps: vec![
                        copy(0),
                        copy(1),
                        wit::Step::Ffmpeg(wit::Invocation {
                            args: vec![
                                lit("-i"),
                                Temp(0),
                                lit("-i"),
                                Temp(1),
                                lit("-map"),
                                lit("0:v"),
                                lit("-c:v"),
                                lit("copy"),
                                lit("-f"),
                                lit("mp4"),
                                Output,
                            ],
                            media_seconds: 2.0,
                            label: "join".into(),
                        }),
                    ],
                    warnings: vec![],
                }
            }
            // Not hostile, only a shape the built-in planner never makes: part b (temp 1) is
            // read by a slow step through a concat list, which opens it only after part a,
            // and directly by a later-indexed quick copy that can finish first. Part b must
            // stay until both have finished (it went with the step of the highest index).
            "shared-part" => {
                let encode = |args: Vec<wit::Arg>, label: &str| {
                    wit::Step::Ffmpeg(wit::Invocation { args, media_seconds: 2.0, label: label.into() })
                };
                let x264 = |preset: &str| {
                    vec![lit("-c:v"), lit("libx264"), lit("-preset"), lit(preset), lit("-an"), lit("-f"), lit("nut")]
                };
                let mut part_a = vec![lit("-i"), Input(1), lit("-t"), lit("1.6")];
                part_a.extend(x264("ultrafast"));
                part_a.push(Temp(0));
                let mut part_b = vec![lit("-ss"), lit("1.6"), lit("-i"), Input(1), lit("-t"), lit("0.4")];
                part_b.extend(x264("ultrafast"));
                part_b.push(Temp(1));
                let mut slow_join = vec![lit("-f"), lit("concat"), lit("-i"), Temp(2)];
                slow_join.extend(x264("veryslow"));
                slow_join.push(Temp(3));
                wit::Plan {
                    temps: vec![
                        wit::TempFormat::Nut,
                        wit::TempFormat::Nut,
                        wit::TempFormat::Ffconcat,
                        wit::TempFormat::Nut,
                        wit::TempFormat::Nut,
                    ],
                    steps: vec![
                        encode(part_a, "part a"),
                        encode(part_b, "part b"),
                        wit::Step::WriteConcatList(wit::ConcatList {
                            list: 2,
                            parts: vec![
                                wit::ConcatPart { temp: 0, duration: 1.6 },
                                wit::ConcatPart { temp: 1, duration: 0.4 },
                            ],
                        }),
                        encode(slow_join, "slow join"),
                        encode(
                            vec![lit("-i"), Temp(1), lit("-c:v"), lit("copy"), lit("-f"), lit("nut"), Temp(4)],
                            "quick copy",
                        ),
                        encode(
                            vec![
                                lit("-i"),
                                Temp(3),
                                lit("-i"),
                                Temp(4),
                                lit("-i"),
                                Input(0),
                                lit("-map"),
                                lit("0:v"),
                                lit("-map"),
                                lit("2:a"),
                                lit("-c:v"),
                                lit("copy"),
                                lit("-c:a"),
                                lit("aac"),
                                lit("-t"),
                                lit("2"),
                                lit("-f"),
                                lit("mp4"),
                                Output,
                            ],
                            "output",
                        ),
                    ],
                    warnings: vec![],
                }
            }
            "huge-asetnsamples" => filtered("-af", "asetnsamples=n=100000000"),
            "huge-aresample" => filtered("-af", "aresample=2000000000"),
            "spin" => loop {
                std::hint::black_box(());
            },
            other => {
                return Err(vec![wit::PlanError {
                    pointer: String::new(),
                    message: format!("unknown hostile plan {other:?}"),
                }])
            }
        };
        Ok(plan)
    }
}

/// One 2-second move of `media/clip.mp4` over `media/song.wav`, written to
/// `output/hostile.mp4`; the move's `clip-id` carries the plan misbehaviour.
fn fixed_blueprint(behaviour: &str) -> wit::Validated {
    wit::Validated {
        task_id: "hostile-plan".into(),
        audio_key: "media/song.wav".into(),
        clip_keys: vec!["media/clip.mp4".into()],
        // A plugin's own validator may name any output: these two break the blueprint's rules.
        output_key: match behaviour {
            "output-json" => "precious.json".into(),
            "output-is-input" => "media/clip.mp4".into(),
            // Outside the host's OUTPUT_PREFIX (`output/`).
            "output-elsewhere" => "clips/hostile.mp4".into(),
            _ => "output/hostile.mp4".into(),
        },
        total_duration: 2.0,
        moves: vec![wit::MoveSlot {
            clip: 0,
            clip_id: behaviour.into(),
            start: 0.0,
            duration: 2.0,
            trim_start: 0.0,
            trim_end: 0.0,
            transition: wit::Transition::Cut,
            volume: 1.0,
        }],
        output: wit::OutputSettings {
            format: "mp4".into(),
            video_codec: "libx264".into(),
            audio_codec: "aac".into(),
            video_bitrate: 1_000_000,
            audio_bitrate: 128_000,
            frame_rate: 25.0,
            width: None,
            height: None,
            transition_duration: 0.5,
            fade_duration: 0.3,
            normalize_audio: false,
            add_audio_overlay: true,
        },
    }
}

export!(HostileGuest);
