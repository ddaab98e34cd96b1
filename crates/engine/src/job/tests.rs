use super::render::nonconformity;
use super::*;
use crate::storage::StorageFuture;

/// Names objects the way the GCS backend does with its default rule (`data/` stripped).
struct Bucket;

impl Storage for Bucket {
    fn identity<'a>(&'a self, _key: &'a str) -> StorageFuture<'a, String> {
        Box::pin(async { Ok("generation 1".to_owned()) })
    }
    fn describe(&self) -> String {
        "gs://bucket".into()
    }
    fn url(&self, key: &str) -> String {
        format!("gs://bucket/{}", key.strip_prefix("data/").unwrap_or(key))
    }
    fn fetch<'a>(&'a self, _: &'a str, _: &'a Path, _: &'a dyn crate::budget::ledger::Gate) -> StorageFuture<'a, u64> {
        unreachable!("not fetched")
    }
    fn store<'a>(&'a self, _: &'a Path, _: &'a str) -> StorageFuture<'a, u64> {
        unreachable!("not stored")
    }
    fn list<'a>(&'a self, _: &'a str) -> StorageFuture<'a, Vec<String>> {
        unreachable!("not listed")
    }
    fn read_small<'a>(&'a self, _: &'a str, _: usize) -> StorageFuture<'a, Option<Vec<u8>>> {
        unreachable!("not read")
    }
}

#[test]
fn an_output_must_have_the_timelines_frames_and_audio_as_long() {
    let example = include_str!("../../../../examples/backend-blueprint.json");
    let validated = br_blueprint::validate(example).unwrap_or_else(|e| panic!("{e:?}"));
    let output = |audio_seconds: Option<f64>| br_plan::MediaFacts {
        key: "out.mp4".into(),
        duration: 176.0,
        video: Some(br_plan::VideoFacts {
            codec: "h264".into(),
            width: 1280,
            height: 720,
            frame_rate: 30.0,
            pixel_format: "yuv420p".into(),
            duration: 176.0,
        }),
        audio: audio_seconds.map(|duration| br_plan::AudioFacts {
            codec: "aac".into(),
            sample_rate: 48_000,
            channels: 2,
            duration,
        }),
    };
    let hd = (1280, 720);
    assert_eq!(nonconformity(&validated, &output(Some(176.0)), 5_280, hd), None);
    assert_eq!(nonconformity(&validated, &output(Some(176.02)), 5_280, hd), None, "within one AAC frame");
    let more = nonconformity(&validated, &output(Some(176.0)), 5_281, hd).unwrap();
    assert!(more.contains("5281 video frames; the timeline has 5280"), "{more}");
    assert!(nonconformity(&validated, &output(Some(175.9)), 5_280, hd).unwrap().contains("audio lasts 175.900 s"));
    assert!(nonconformity(&validated, &output(None), 5_280, hd).unwrap().contains("no audio stream"));
    let small = nonconformity(&validated, &output(Some(176.0)), 5_280, (1920, 1080)).unwrap();
    assert_eq!(small, "its video is h264 1280x720; the blueprint's is h264 1920x1080");
    let mut hevc = output(Some(176.0));
    hevc.video.as_mut().unwrap().codec = "hevc".into();
    assert!(nonconformity(&validated, &hevc, 5_280, hd).unwrap().contains("its video is hevc 1280x720"));
}

/// A probe whose child could not even start (its libraries did not load under its
/// limit) is the budget's failure, retried; it is never blamed on a valid input.
#[test]
fn a_probe_that_could_not_start_is_the_budgets_failure_not_the_inputs() {
    let starved = media::MediaError {
        source: None,
        message:
            "media/a.mp4: not a readable media file (ffprobe: error while loading shared libraries: libavcodec.so.59: \
                  failed to map segment from shared object)"
                .into(),
    };
    let (stage, failure) = probe_failure("/moves/1/video_path", starved);
    assert_eq!(stage, Stage::Probe);
    assert!(matches!(failure, Failure::MemoryBudget(_)), "{failure}");
    assert_eq!(failure.exit_code(), exit::FFMPEG);
    assert!(
        failure.to_string().starts_with("probing /moves/1/video_path ran out of the job's memory budget"),
        "{failure}"
    );
    let broken = media::MediaError::new("media/a.mp4: not a readable media file (moov atom not found)".into());
    let (_, failure) = probe_failure("/moves/1/video_path", broken);
    assert!(matches!(&failure, Failure::Media { pointer, .. } if pointer == "/moves/1/video_path"), "{failure}");
    assert_eq!(failure.exit_code(), exit::MEDIA);
}

#[test]
fn one_rule_refuses_an_output_not_an_mp4_naming_an_input_object_or_outside_the_prefix() {
    let example = include_str!("../../../../examples/backend-blueprint.json");
    let mut validated = br_blueprint::validate(example).unwrap_or_else(|e| panic!("{e:?}"));
    let problem = |validated: &Validated| output_key_problem(&Bucket, validated, "data/", "output/");
    assert!(problem(&validated).is_none(), "{:?}", problem(&validated));
    validated.output_key = "output/user_1/video.json".into();
    let error = problem(&validated).expect("not an MP4");
    assert_eq!(error.pointer, "/output_config/output_path");
    assert!(error.message.contains("does not end in .mp4"), "{}", error.message);
    // `data/Bachata_steps/...` is a clip; without the prefix it is the same object.
    let clip = validated.clip_keys[3].clone();
    validated.output_key = clip.trim_start_matches("data/").to_owned();
    let error = problem(&validated).expect("an input's object");
    assert_eq!(error.pointer, "/output_config/output_path");
    assert!(error.message.contains(&format!("the input {clip:?}")), "{}", error.message);
    validated.output_key = "clips/elsewhere.mp4".into();
    let error = problem(&validated).expect("outside the prefix");
    assert!(error.message.contains("outside the output prefix"), "{}", error.message);
}
