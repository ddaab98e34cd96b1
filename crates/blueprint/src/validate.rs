use serde_json::{Map, Value};

use crate::key::key_problem;
use crate::limits::*;
use crate::{
    CheckOptions, ErrorCode, MoveSlot, OutputSettings, Refusal, Transition, Validated, ValidationError, Warning,
};

const VIDEO_CODECS: [&str; 2] = ["libx264", "libx265"];
const AUDIO_CODECS: [&str; 1] = ["aac"];
const OUTPUT_FORMATS: [&str; 1] = ["mp4"];
const DIFFICULTY_LEVELS: [&str; 3] = ["beginner", "intermediate", "advanced"];

const DEFAULT_VIDEO_CODEC: &str = "libx264";
const DEFAULT_AUDIO_CODEC: &str = "aac";
const DEFAULT_VIDEO_BITRATE: u64 = 2_000_000;
const DEFAULT_AUDIO_BITRATE: u64 = 128_000;
const DEFAULT_FRAME_RATE: f64 = 30.0;
const DEFAULT_TRANSITION_SECONDS: f64 = 0.5;
const DEFAULT_FADE_SECONDS: f64 = 0.3;

/// Validates an untrusted blueprint strictly (every irregular timeline refused). Returns
/// every problem found (up to [`MAX_REPORTED_ERRORS`]), never panics on any input.
pub fn validate(text: &str) -> Result<Validated, Vec<ValidationError>> {
    validate_with_task_id(text).map_err(|refusal| refusal.errors)
}

/// As [`validate`]; a refusal also names the blueprint's task when `/task_id` itself
/// passed its rule, whatever else failed.
pub fn validate_with_task_id(text: &str) -> Result<Validated, Refusal> {
    check(text, &CheckOptions::strict())
}

/// Checks an untrusted blueprint. Unless `options.strict`, a timeline the backend meant
/// but did not write exactly is fitted (see [`crate::fit`]) and every adjustment is a
/// warning in [`Validated::warnings`]; what cannot be fitted is refused as in strict mode.
pub fn check(text: &str, options: &CheckOptions) -> Result<Validated, Refusal> {
    let unknown_task = |errors| Refusal { task_id: None, errors };
    let document = parse(text).map_err(unknown_task)?;
    let mut checker = Checker { options: options.clone(), ..Checker::default() };
    let validated = checker.blueprint(&document);
    match validated {
        Some(mut validated) if checker.errors.is_empty() => {
            validated.warnings = std::mem::take(&mut checker.warnings);
            Ok(validated)
        }
        _ => {
            let task_id = checker.task_id.take();
            Err(Refusal { task_id, errors: checker.finish() })
        }
    }
}

/// The document, within the size and nesting limits.
fn parse(text: &str) -> Result<Value, Vec<ValidationError>> {
    if text.len() > MAX_BLUEPRINT_BYTES {
        return Err(vec![ValidationError {
            pointer: String::new(),
            code: ErrorCode::TooLarge,
            message: format!("the blueprint is {} bytes; the limit is {MAX_BLUEPRINT_BYTES} bytes", text.len()),
        }]);
    }
    // serde_json refuses nesting beyond 128 on its own; the explicit, lower limit gives
    // a clearer message and keeps the recursive parser's stack use small.
    if let Some(depth) = nesting_exceeding(text, MAX_NESTING_DEPTH) {
        return Err(vec![ValidationError {
            pointer: String::new(),
            code: ErrorCode::TooLarge,
            message: format!("JSON is nested more than {MAX_NESTING_DEPTH} levels deep (at least {depth})"),
        }]);
    }
    serde_json::from_str(text).map_err(|error| {
        vec![ValidationError {
            pointer: String::new(),
            code: ErrorCode::InvalidJson,
            message: format!("not valid JSON: {error}"),
        }]
    })
}

/// Depth of `[`/`{` nesting outside strings, if it goes beyond `limit`.
fn nesting_exceeding(text: &str, limit: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Shortens untrusted text echoed into a message.
fn excerpt(text: &str) -> String {
    const LIMIT: usize = 60;
    if text.chars().count() <= LIMIT {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(LIMIT).collect();
        format!("{head:?}... ({} bytes)", text.len())
    }
}

#[derive(Default)]
struct Checker {
    errors: Vec<ValidationError>,
    overflowed: usize,
    /// `/task_id`, once it passed its rule: a refusal names it.
    task_id: Option<String>,
    options: CheckOptions,
    /// What a lenient check changed (keys read from addresses, an ignored field); the
    /// timeline's own adjustments are added by [`crate::fit`].
    warnings: Vec<Warning>,
}

/// A JSON object being read, with its pointer.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    pointer: String,
}

impl<'a> Fields<'a> {
    fn at(&self, name: &str) -> String {
        format!("{}/{}", self.pointer, crate::escape_pointer_token(name))
    }
    /// The value of a field; null counts as absent.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }
}

impl Checker {
    fn report(&mut self, pointer: String, code: ErrorCode, message: String) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(ValidationError { pointer, code, message });
        } else {
            self.overflowed += 1;
        }
    }

    fn finish(mut self) -> Vec<ValidationError> {
        if self.overflowed > 0 {
            self.errors.push(ValidationError {
                pointer: String::new(),
                code: ErrorCode::TooLarge,
                message: format!("{} more problems not listed", self.overflowed),
            });
        }
        self.errors
    }

    fn object<'a>(&mut self, value: &'a Value, pointer: String, what: &str) -> Option<Fields<'a>> {
        match value {
            Value::Object(map) => Some(Fields { map, pointer }),
            other => {
                self.report(
                    pointer,
                    ErrorCode::WrongType,
                    format!("{what} must be an object, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn required<'a>(&mut self, fields: &Fields<'a>, name: &str) -> Option<&'a Value> {
        let value = fields.get(name);
        if value.is_none() {
            let pointer = fields.at(name);
            self.report(pointer, ErrorCode::MissingField, format!("`{name}` is required"));
        }
        value
    }

    fn string<'a>(&mut self, fields: &Fields<'a>, name: &str, required: bool) -> Option<&'a str> {
        let value = if required { self.required(fields, name)? } else { fields.get(name)? };
        match value {
            Value::String(s) => Some(s),
            other => {
                self.report(
                    fields.at(name),
                    ErrorCode::WrongType,
                    format!("`{name}` must be a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A number field checked against `min..=max` (`min_exclusive` makes the lower
    /// bound strict). Absent optional fields give `None` without an error.
    fn number(
        &mut self,
        fields: &Fields,
        name: &str,
        required: bool,
        min: f64,
        min_exclusive: bool,
        max: f64,
    ) -> Option<f64> {
        let value = if required { self.required(fields, name)? } else { fields.get(name)? };
        let Some(number) = value.as_f64() else {
            self.report(
                fields.at(name),
                ErrorCode::WrongType,
                format!("`{name}` must be a number, found {}", type_name(value)),
            );
            return None;
        };
        let below = if min_exclusive { number <= min } else { number < min };
        if below || number > max || !number.is_finite() {
            let lower = if min_exclusive { format!("greater than {min}") } else { format!("at least {min}") };
            self.report(
                fields.at(name),
                ErrorCode::OutOfRange,
                format!("`{name}` must be {lower} and at most {max}, got {number}"),
            );
            return None;
        }
        Some(number)
    }

    fn boolean(&mut self, fields: &Fields, name: &str, default: bool) -> bool {
        match fields.get(name) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.report(
                    fields.at(name),
                    ErrorCode::WrongType,
                    format!("`{name}` must be true or false, found {}", type_name(other)),
                );
                default
            }
        }
    }

    fn object_key(&mut self, fields: &Fields, name: &str) -> Option<String> {
        let key = self.string(fields, name, true)?;
        if key.starts_with("gs://") && !self.options.strict {
            return self.own_bucket_key(fields, name, key);
        }
        if let Some(problem) = key_problem(key) {
            self.report(fields.at(name), ErrorCode::UnsafePath, format!("object key {} {problem}", excerpt(key)));
            return None;
        }
        Some(key.to_owned())
    }

    /// A key written as a `gs://` address (the backend's production songs): read as the
    /// key that names the same object when it is in the job's own bucket, refused otherwise.
    fn own_bucket_key(&mut self, fields: &Fields, name: &str, address: &str) -> Option<String> {
        let own = self.options.own_bucket.clone();
        let Some(rest) = own.as_ref().and_then(|own| address.strip_prefix(own.address_prefix.as_str())) else {
            let why = match &own {
                Some(own) => format!("is not in the job's own bucket ({})", excerpt(&own.address_prefix)),
                None => "is an address, and this job does not read from a bucket".to_owned(),
            };
            self.report(fields.at(name), ErrorCode::UnsafePath, format!("object key {} {why}", excerpt(address)));
            return None;
        };
        let key = format!("{}{rest}", own.as_ref().map(|own| own.key_prefix.as_str()).unwrap_or_default());
        if let Some(problem) = key_problem(&key) {
            self.report(
                fields.at(name),
                ErrorCode::UnsafePath,
                format!("object key {} (read as {}) {problem}", excerpt(address), excerpt(&key)),
            );
            return None;
        }
        self.warnings.push(Warning {
            pointer: fields.at(name),
            message: format!("{} is in the job's own bucket: read as the key {}", excerpt(address), excerpt(&key)),
        });
        Some(key)
    }

    fn choice(&mut self, fields: &Fields, name: &str, allowed: &[&str]) -> Option<String> {
        let value = self.string(fields, name, false)?;
        if allowed.contains(&value) {
            Some(value.to_owned())
        } else {
            self.report(
                fields.at(name),
                ErrorCode::NotAllowed,
                format!("`{name}` is {}; allowed: {}", excerpt(value), allowed.join(", ")),
            );
            None
        }
    }

    fn blueprint(&mut self, document: &Value) -> Option<Validated> {
        let root = self.object(document, String::new(), "the blueprint")?;

        let task_id = self.task_id(&root);
        let audio_key = self.object_key(&root, "audio_path");
        self.number(&root, "audio_tempo", false, 0.0, true, 1000.0);
        match root.get("difficulty_level") {
            // It does not change the video, and the backend passes the client's value on unchecked.
            Some(level)
                if !self.options.strict && !level.as_str().is_some_and(|level| DIFFICULTY_LEVELS.contains(&level)) =>
            {
                self.warnings.push(Warning {
                    pointer: root.at("difficulty_level"),
                    message: format!(
                        "{} is not one of {}: ignored (it does not change the video)",
                        excerpt(&level.to_string()),
                        DIFFICULTY_LEVELS.join(", ")
                    ),
                });
            }
            Some(_) => {
                self.choice(&root, "difficulty_level", &DIFFICULTY_LEVELS);
            }
            None => {}
        }
        self.string(&root, "generation_timestamp", false);
        if let Some(value) = root.get("generation_parameters") {
            self.object(value, root.at("generation_parameters"), "`generation_parameters`");
        }
        let output = match self.required(&root, "output_config") {
            Some(value) => self
                .object(value, root.at("output_config"), "`output_config`")
                .map(|config| self.output_config(&config)),
            None => None,
        };
        let frame_rate =
            output.as_ref().and_then(|(o, _)| o.as_ref().map(|o| o.frame_rate)).unwrap_or(DEFAULT_FRAME_RATE);
        let timeline = self.moves(&root, output.as_ref().and_then(|(o, _)| o.as_ref()), frame_rate);
        let total_duration = self.total_duration(&root, timeline.as_ref().map(|t| t.end), frame_rate);

        if let Some((_, Some(output_key))) = &output {
            let read_too = audio_key.as_deref() == Some(output_key.as_str())
                || timeline.as_ref().is_some_and(|t| t.clip_keys.iter().any(|clip| clip == output_key));
            if read_too {
                let message = format!(
                    "`output_path` {} is also an input of this blueprint: the video would overwrite what it is made of",
                    excerpt(output_key)
                );
                self.report("/output_config/output_path".to_owned(), ErrorCode::NotAllowed, message);
            }
        }
        let (output, output_key) = output?;
        let timeline = timeline?;
        Some(Validated {
            task_id: task_id?,
            audio_key: audio_key?,
            clip_keys: timeline.clip_keys,
            output_key: output_key?,
            total_duration: total_duration?,
            moves: timeline.moves,
            output: output?,
            warnings: Vec::new(),
            kept: None,
        })
    }

    fn task_id(&mut self, root: &Fields) -> Option<String> {
        let id = self.string(root, "task_id", true)?;
        if !crate::is_task_id(id) {
            self.report(
                root.at("task_id"),
                ErrorCode::OutOfRange,
                format!(
                    "`task_id` must be 1 to {MAX_TASK_ID_BYTES} ASCII letters, digits, '-' or '_', got {}",
                    excerpt(id)
                ),
            );
            return None;
        }
        self.task_id = Some(id.to_owned());
        Some(id.to_owned())
    }

    fn bitrate(&mut self, fields: &Fields, name: &str, default: u64, (min, max): (u64, u64)) -> Option<u64> {
        let bits = match fields.get(name) {
            None => return Some(default),
            Some(Value::String(text)) => parse_bitrate(text),
            Some(Value::Number(n)) => n.as_u64(),
            Some(other) => {
                self.report(
                    fields.at(name),
                    ErrorCode::WrongType,
                    format!("`{name}` must be a string like \"2M\" or \"128k\", found {}", type_name(other)),
                );
                return None;
            }
        };
        match bits {
            Some(bits) if (min..=max).contains(&bits) => Some(bits),
            Some(bits) => {
                self.report(
                    fields.at(name),
                    ErrorCode::OutOfRange,
                    format!("`{name}` is {bits} bit/s; allowed {min} to {max}"),
                );
                None
            }
            None => {
                let shown = fields.get(name).map(|v| excerpt(&v.to_string())).unwrap_or_default();
                self.report(
                    fields.at(name),
                    ErrorCode::NotAllowed,
                    format!("`{name}` {shown} is not a bitrate like \"2M\", \"800k\" or 128000"),
                );
                None
            }
        }
    }

    fn dimension(&mut self, fields: &Fields, name: &str, max: u64) -> Option<Option<u32>> {
        let Some(value) = fields.get(name) else { return Some(None) };
        match value.as_u64() {
            Some(n) if (MIN_DIMENSION..=max).contains(&n) && n % 2 == 0 => Some(Some(n as u32)),
            Some(_) | None if value.is_number() => {
                self.report(
                    fields.at(name),
                    ErrorCode::OutOfRange,
                    format!("`{name}` must be an even whole number from {MIN_DIMENSION} to {max}, got {value}"),
                );
                None
            }
            _ => {
                self.report(
                    fields.at(name),
                    ErrorCode::WrongType,
                    format!("`{name}` must be a number, found {}", type_name(value)),
                );
                None
            }
        }
    }

    /// Returns the settings (None if any is bad) and the output key separately, so a
    /// bad setting and a bad key are both reported.
    fn output_config(&mut self, config: &Fields) -> (Option<OutputSettings>, Option<String>) {
        let output_key = self.object_key(config, "output_path");
        if let Some(key) = &output_key {
            if !key.ends_with(".mp4") {
                self.report(
                    config.at("output_path"),
                    ErrorCode::NotAllowed,
                    format!("`output_path` {} must end in .mp4", excerpt(key)),
                );
            }
        }
        let format = if config.get("output_format").is_some() {
            self.choice(config, "output_format", &OUTPUT_FORMATS)
        } else {
            Some("mp4".into())
        };
        let video_codec = if config.get("video_codec").is_some() {
            self.choice(config, "video_codec", &VIDEO_CODECS)
        } else {
            Some(DEFAULT_VIDEO_CODEC.into())
        };
        let audio_codec = if config.get("audio_codec").is_some() {
            self.choice(config, "audio_codec", &AUDIO_CODECS)
        } else {
            Some(DEFAULT_AUDIO_CODEC.into())
        };
        let video_bitrate = self.bitrate(config, "video_bitrate", DEFAULT_VIDEO_BITRATE, VIDEO_BITRATE_RANGE);
        let audio_bitrate = self.bitrate(config, "audio_bitrate", DEFAULT_AUDIO_BITRATE, AUDIO_BITRATE_RANGE);
        let frame_rate = self.number(config, "frame_rate", false, MIN_FRAME_RATE, false, MAX_FRAME_RATE);
        let transition_duration = self.number(config, "transition_duration", false, 0.0, false, MAX_TRANSITION_SECONDS);
        let fade_duration = self.number(config, "fade_duration", false, 0.0, false, MAX_TRANSITION_SECONDS);
        let width = self.dimension(config, "width", MAX_WIDTH);
        let height = self.dimension(config, "height", MAX_HEIGHT);
        let normalize_audio = self.boolean(config, "normalize_audio", false);
        let add_audio_overlay = self.boolean(config, "add_audio_overlay", true);
        if let (Some(Some(_)), Some(None)) | (Some(None), Some(Some(_))) = (width, height) {
            self.report(
                config.pointer.clone(),
                ErrorCode::MissingField,
                "`width` and `height` must be given together".into(),
            );
        }
        // A bad setting is None here and reported: the blueprint is refused, whatever the
        // settings' own value (Some, with width and height not given together).
        let settings = (|| {
            Some(OutputSettings {
                format: format?,
                video_codec: video_codec?,
                audio_codec: audio_codec?,
                video_bitrate: video_bitrate?,
                audio_bitrate: audio_bitrate?,
                frame_rate: frame_rate.unwrap_or(DEFAULT_FRAME_RATE),
                width: width?,
                height: height?,
                transition_duration: transition_duration.unwrap_or(DEFAULT_TRANSITION_SECONDS),
                fade_duration: fade_duration.unwrap_or(DEFAULT_FADE_SECONDS),
                normalize_audio,
                add_audio_overlay,
            })
        })();
        (settings, output_key)
    }

    fn moves(&mut self, root: &Fields, output: Option<&OutputSettings>, frame_rate: f64) -> Option<Timeline> {
        let value = self.required(root, "moves")?;
        let pointer = root.at("moves");
        let Value::Array(items) = value else {
            self.report(pointer, ErrorCode::WrongType, format!("`moves` must be an array, found {}", type_name(value)));
            return None;
        };
        if items.is_empty() {
            self.report(pointer, ErrorCode::MissingField, "`moves` must list at least one move".into());
            return None;
        }
        if items.len() > MAX_MOVES {
            self.report(pointer, ErrorCode::TooLarge, format!("{} moves; the limit is {MAX_MOVES}", items.len()));
            return None;
        }
        let mut clip_keys: Vec<String> = Vec::new();
        let mut moves: Vec<MoveSlot> = Vec::with_capacity(items.len());
        let mut all_good = true;
        for (index, item) in items.iter().enumerate() {
            match self.one_move(item, format!("{pointer}/{index}"), &mut clip_keys) {
                Some(slot) => moves.push(MoveSlot { origin: index as u32, ..slot }),
                None => all_good = false,
            }
        }
        if !all_good {
            return None;
        }
        let (transition_seconds, fade_seconds) = output
            .map(|o| (o.transition_duration, o.fade_duration))
            .unwrap_or((DEFAULT_TRANSITION_SECONDS, DEFAULT_FADE_SECONDS));
        let asked = crate::fit::Asked { frame_rate, transition_seconds, fade_seconds };
        if self.options.strict {
            let end = self.timeline(&pointer, &moves, output, frame_rate)?;
            for slot in &mut moves {
                slot.transition_seconds = asked.seconds(slot.transition);
            }
            return Some(Timeline { clip_keys, moves, end });
        }
        match crate::fit::fit(moves, &asked) {
            Ok(fitted) => {
                if fitted.end > MAX_TIMELINE_SECONDS {
                    self.report(
                        pointer,
                        ErrorCode::TooLarge,
                        format!("the timeline is {} s long; the limit is {MAX_TIMELINE_SECONDS} s", fitted.end),
                    );
                    return None;
                }
                self.warnings.extend(fitted.warnings);
                Some(Timeline { clip_keys, moves: fitted.moves, end: fitted.end })
            }
            Err(errors) => {
                for error in errors {
                    self.report(error.pointer, error.code, error.message);
                }
                None
            }
        }
    }

    fn one_move(&mut self, item: &Value, pointer: String, clip_keys: &mut Vec<String>) -> Option<MoveSlot> {
        let fields = self.object(item, pointer, "a move")?;
        let clip_id = match self.string(&fields, "clip_id", false) {
            Some(id) if id.len() > MAX_LABEL_BYTES || id.chars().any(char::is_control) => {
                self.report(
                    fields.at("clip_id"),
                    ErrorCode::OutOfRange,
                    format!("`clip_id` must be at most {MAX_LABEL_BYTES} bytes of printable text"),
                );
                None
            }
            Some(id) => Some(id.to_owned()),
            None => Some(String::new()),
        };
        let key = self.object_key(&fields, "video_path");
        let start = self.number(&fields, "start_time", true, 0.0, false, MAX_TIMELINE_SECONDS);
        let duration = self.number(&fields, "duration", true, 0.0, true, MAX_TIMELINE_SECONDS);
        let trim_start = self.number(&fields, "trim_start", false, 0.0, false, 1e6);
        let trim_end = self.number(&fields, "trim_end", false, 0.0, false, 1e6);
        let volume = self.number(&fields, "volume_adjustment", false, 0.0, false, 1.0);
        self.number(&fields, "original_duration", false, 0.0, false, 1e6);
        let transition = match fields.get("transition_type") {
            None => Some(Transition::Cut),
            Some(_) => self
                .choice(&fields, "transition_type", &Transition::NAMES)
                .and_then(|name| Transition::from_name(&name)),
        };
        // Optional numbers come back None both when absent and when bad; only a
        // reported error may stop the move.
        let bad_optional = |name: &str| fields.get(name).is_some();
        let trim_start = match trim_start {
            Some(v) => v,
            None if bad_optional("trim_start") => return None,
            None => 0.0,
        };
        let trim_end = match trim_end {
            Some(v) => v,
            None if bad_optional("trim_end") => return None,
            None => 0.0,
        };
        let volume = match volume {
            Some(v) => v,
            None if bad_optional("volume_adjustment") => return None,
            None => 1.0,
        };
        let (key, start, duration, transition, clip_id) = (key?, start?, duration?, transition?, clip_id?);
        let clip = match clip_keys.iter().position(|k| *k == key) {
            Some(index) => index,
            None => {
                clip_keys.push(key);
                clip_keys.len() - 1
            }
        };
        Some(MoveSlot {
            clip: clip as u32,
            clip_id,
            start,
            duration,
            trim_start,
            trim_end,
            transition,
            volume,
            origin: 0,
            transition_seconds: 0.0,
        })
    }

    /// Moves must tile the timeline from 0: each starts where the previous ends (within
    /// half a frame), or earlier by at most the crossfade that joins them.
    fn timeline(
        &mut self,
        pointer: &str,
        moves: &[MoveSlot],
        output: Option<&OutputSettings>,
        frame_rate: f64,
    ) -> Option<f64> {
        let tolerance = 0.5 / frame_rate;
        let before = self.errors.len() + self.overflowed;
        let transition_seconds = output.map(|o| o.transition_duration).unwrap_or(DEFAULT_TRANSITION_SECONDS);
        let fade_seconds = output.map(|o| o.fade_duration).unwrap_or(DEFAULT_FADE_SECONDS);
        if moves[0].start > tolerance {
            self.report(
                format!("{pointer}/0/start_time"),
                ErrorCode::Timeline,
                format!("the first move must start at 0, not {}: the video would begin with a gap", moves[0].start),
            );
        }
        let mut end = moves[0].start + moves[0].duration;
        for (index, pair) in moves.windows(2).enumerate() {
            let (previous, current) = (&pair[0], &pair[1]);
            let at = index + 1;
            let previous_end = previous.start + previous.duration;
            let allowed_overlap = if current.transition == Transition::Crossfade { transition_seconds } else { 0.0 };
            if current.start < previous.start {
                self.report(
                    format!("{pointer}/{at}/start_time"),
                    ErrorCode::Timeline,
                    format!(
                        "moves must be sorted by `start_time`: {} comes before the previous move's {}",
                        current.start, previous.start
                    ),
                );
            } else if current.start > previous_end + tolerance {
                self.report(
                    format!("{pointer}/{at}/start_time"),
                    ErrorCode::Timeline,
                    format!(
                        "gap of {:.3} s before this move (previous move ends at {previous_end})",
                        current.start - previous_end
                    ),
                );
            } else if current.start < previous_end - allowed_overlap - tolerance {
                self.report(format!("{pointer}/{at}/start_time"), ErrorCode::Timeline, format!("overlaps the previous move by {:.3} s (it ends at {previous_end}); at most {allowed_overlap} s is allowed", previous_end - current.start));
            }
            let needed = match current.transition {
                Transition::Cut => 0.0,
                Transition::Crossfade => transition_seconds,
                Transition::FadeBlack | Transition::FadeWhite => fade_seconds,
            };
            let shortest = previous.duration.min(current.duration);
            if needed > shortest + 1e-9 {
                self.report(
                    format!("{pointer}/{at}/transition_type"),
                    ErrorCode::OutOfRange,
                    format!("the transition lasts {needed} s but an adjoining move lasts only {shortest} s"),
                );
            }
            end = end.max(current.start + current.duration);
        }
        if let Some(first) = moves.first() {
            let needed = match first.transition {
                Transition::FadeBlack | Transition::FadeWhite => fade_seconds,
                Transition::Crossfade => transition_seconds / 2.0,
                Transition::Cut => 0.0,
            };
            if needed > first.duration + 1e-9 {
                self.report(
                    format!("{pointer}/0/transition_type"),
                    ErrorCode::OutOfRange,
                    format!("the transition lasts {needed} s but the move lasts only {} s", first.duration),
                );
            }
        }
        if end > MAX_TIMELINE_SECONDS {
            self.report(
                pointer.to_owned(),
                ErrorCode::TooLarge,
                format!("the timeline is {end} s long; the limit is {MAX_TIMELINE_SECONDS} s"),
            );
        }
        (self.errors.len() + self.overflowed == before).then_some(end)
    }

    fn total_duration(&mut self, root: &Fields, timeline_end: Option<f64>, frame_rate: f64) -> Option<f64> {
        let given = self.number(root, "total_duration", false, 0.0, true, MAX_TIMELINE_SECONDS);
        if given.is_none() && root.get("total_duration").is_some() {
            return None;
        }
        let end = timeline_end?;
        match given {
            // The moves' frames run to the next move's start, the last one's to the video's
            // end: it runs on, as a move before a gap does.
            Some(total) if !self.options.strict && total - end > 1.0 / frame_rate => {
                self.warnings.push(Warning {
                    pointer: root.at("total_duration"),
                    message: format!(
                        "the moves end at {end} s, before `total_duration` {total} s: the last move runs on to the end"
                    ),
                });
                Some(total)
            }
            Some(total) if (total - end).abs() > 1.0 / frame_rate => {
                self.report(
                    root.at("total_duration"),
                    ErrorCode::Timeline,
                    format!("`total_duration` is {total} s but the moves end at {end} s"),
                );
                None
            }
            Some(total) => Some(total),
            None => Some(end),
        }
    }
}

struct Timeline {
    clip_keys: Vec<String>,
    moves: Vec<MoveSlot>,
    end: f64,
}

/// "2M", "800k", "1.5M", "128000" → bits per second.
fn parse_bitrate(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    let (digits, multiplier) = match text.as_bytes()[text.len() - 1] {
        b'k' | b'K' => (&text[..text.len() - 1], 1_000.0),
        b'm' | b'M' => (&text[..text.len() - 1], 1_000_000.0),
        _ => (text, 1.0),
    };
    let well_formed = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
        && !digits.starts_with('.')
        && !digits.ends_with('.');
    if !well_formed {
        return None;
    }
    let value: f64 = digits.parse().ok()?;
    let bits = (value * multiplier).round();
    (bits.is_finite() && bits >= 1.0 && bits <= u64::MAX as f64 / 2.0).then_some(bits as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backend's example with `edit` applied to its JSON, checked with `options`.
    fn checked_with(options: CheckOptions, edit: impl FnOnce(&mut serde_json::Value)) -> Result<Validated, Refusal> {
        let mut document: serde_json::Value =
            serde_json::from_str(include_str!("../../../examples/backend-blueprint.json")).unwrap();
        edit(&mut document);
        check(&document.to_string(), &options)
    }

    /// The backend's example with `edit` applied to its JSON, validated (strictly).
    fn example_with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Validated, Vec<ValidationError>> {
        checked_with(CheckOptions::strict(), edit).map_err(|refusal| refusal.errors)
    }

    /// An output size is an even whole number of pixels from 16 to 3840 wide and 2160 high,
    /// both sides given; anything else is refused at its pointer with its code.
    #[test]
    fn an_output_size_is_even_within_its_bounds_and_given_whole() {
        for (width, height) in [(16, 16), (1280, 720), (3840, 2160)] {
            let validated = example_with(|d| {
                d["output_config"]["width"] = width.into();
                d["output_config"]["height"] = height.into();
            })
            .unwrap_or_else(|e| panic!("{width}x{height}: {e:?}"));
            assert_eq!((validated.output.width, validated.output.height), (Some(width), Some(height)));
        }
        let refused = |width: serde_json::Value, height: serde_json::Value| {
            example_with(|d| {
                d["output_config"]["width"] = width;
                d["output_config"]["height"] = height;
            })
            .unwrap_err()
            .into_iter()
            .map(|e| (e.pointer, e.code))
            .collect::<Vec<_>>()
        };
        let at = |side: &str, code| vec![(format!("/output_config/{side}"), code)];
        assert_eq!(refused(1281.into(), 720.into()), at("width", ErrorCode::OutOfRange), "odd");
        assert_eq!(refused(14.into(), 720.into()), at("width", ErrorCode::OutOfRange), "below 16");
        assert_eq!(refused(3842.into(), 720.into()), at("width", ErrorCode::OutOfRange), "above 3840");
        assert_eq!(refused(1280.into(), 2162.into()), at("height", ErrorCode::OutOfRange), "above 2160");
        assert_eq!(refused(1280.5.into(), 720.into()), at("width", ErrorCode::OutOfRange), "not whole");
        assert_eq!(refused("1280".into(), 720.into()), at("width", ErrorCode::WrongType), "not a number");
        let alone = example_with(|d| d["output_config"]["width"] = 1280.into()).unwrap_err();
        assert_eq!(
            (alone[0].pointer.as_str(), alone[0].code),
            ("/output_config", ErrorCode::MissingField),
            "{alone:?}"
        );
    }

    /// A `clip_id` is echoed into messages: at most 128 bytes of printable text.
    #[test]
    fn a_clip_id_is_short_printable_text() {
        let with_id = |id: &str| example_with(|d| d["moves"][0]["clip_id"] = id.into());
        assert!(with_id(&"a".repeat(128)).is_ok());
        for bad in ["a".repeat(129), "a\u{7}b".to_owned()] {
            let errors = with_id(&bad).unwrap_err();
            assert_eq!(
                (errors[0].pointer.as_str(), errors[0].code),
                ("/moves/0/clip_id", ErrorCode::OutOfRange),
                "{bad:?}"
            );
        }
    }

    /// A bad optional number stops its move, reported at its pointer; an absent one takes
    /// its default.
    #[test]
    fn a_bad_optional_number_is_reported_and_an_absent_one_defaults() {
        for field in ["trim_start", "trim_end", "volume_adjustment"] {
            let errors = example_with(|d| d["moves"][2][field] = "x".into()).unwrap_err();
            assert_eq!(errors.len(), 1, "{field}: {errors:?}");
            assert_eq!(errors[0].pointer, format!("/moves/2/{field}"));
            let defaulted = example_with(|d| {
                d["moves"][2].as_object_mut().unwrap().remove(field);
            })
            .unwrap();
            let slot = &defaulted.moves[2];
            match field {
                "trim_start" => assert_eq!(slot.trim_start, 0.0),
                "trim_end" => assert_eq!(slot.trim_end, 0.0),
                _ => assert_eq!(slot.volume, 1.0),
            }
        }
    }

    /// Leniently, moves that end more than one frame before `total_duration` are run on to
    /// it with a warning; within a frame nothing is said; strictly it is an error.
    #[test]
    fn moves_ending_before_the_total_duration_run_on_unless_strict() {
        let with_total = |seconds: f64, strict: bool| {
            checked_with(CheckOptions { strict, ..CheckOptions::default() }, |d| d["total_duration"] = seconds.into())
        };
        let on_time = with_total(176.0 + 0.9 / 30.0, false).unwrap();
        assert!(on_time.warnings.is_empty(), "{:?}", on_time.warnings);
        let later = with_total(177.0, false).unwrap();
        assert_eq!(later.warnings[0].pointer, "/total_duration");
        assert_eq!(later.total_duration, 177.0);
        let strict = with_total(177.0, true).unwrap_err();
        assert_eq!(
            (strict.errors[0].pointer.as_str(), strict.errors[0].code),
            ("/total_duration", ErrorCode::Timeline)
        );
    }

    /// The example with its moves replaced by `(start, duration, transition)` on one clip and
    /// no `total_duration`, checked strictly or leniently; the refusal as (pointer, code,
    /// message) triples.
    fn timeline_of(moves: &[(f64, f64, &str)], strict: bool) -> Result<Validated, Vec<(String, ErrorCode, String)>> {
        checked_with(CheckOptions { strict, ..CheckOptions::default() }, |document| {
            let template = document["moves"][0].clone();
            document["moves"] = moves
                .iter()
                .map(|&(start, duration, transition)| {
                    let mut one = template.clone();
                    one["start_time"] = start.into();
                    one["duration"] = duration.into();
                    one["original_duration"] = duration.into();
                    one["transition_type"] = transition.into();
                    one
                })
                .collect();
            document.as_object_mut().unwrap().remove("total_duration");
        })
        .map_err(|refusal| refusal.errors.into_iter().map(|e| (e.pointer, e.code, e.message)).collect())
    }

    /// The one problem a strict check reports, as (pointer, code, message).
    fn strict_problem(moves: &[(f64, f64, &str)]) -> (String, ErrorCode, String) {
        let errors = timeline_of(moves, true).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().unwrap()
    }

    /// At 30 fps a strict timeline may be off by half a frame (1/60 s): the first move's
    /// start, a gap, an overlap past what the crossfade allows.
    #[test]
    fn strictly_moves_tile_the_timeline_within_half_a_frame() {
        const UNDER: f64 = 0.016; // just under half a frame
        const OVER: f64 = 0.018; // just over
        assert!(timeline_of(&[(UNDER, 8.0, "cut"), (8.0, 8.0, "cut")], true).is_ok());
        let (pointer, code, message) = strict_problem(&[(OVER, 8.0, "cut"), (8.0 + OVER, 8.0, "cut")]);
        assert_eq!((pointer.as_str(), code), ("/moves/0/start_time", ErrorCode::Timeline));
        assert!(message.contains("must start at 0"), "{message}");

        assert!(timeline_of(&[(0.0, 8.0, "cut"), (8.0 + UNDER, 8.0, "cut")], true).is_ok());
        let (pointer, code, message) = strict_problem(&[(0.0, 8.0, "cut"), (8.0 + OVER, 8.0, "cut")]);
        assert_eq!((pointer.as_str(), code), ("/moves/1/start_time", ErrorCode::Timeline));
        assert!(message.starts_with("gap of 0.018 s"), "{message}");

        assert!(timeline_of(&[(0.0, 8.0, "cut"), (8.0 - UNDER, 8.0, "cut")], true).is_ok());
        let (pointer, code, message) = strict_problem(&[(0.0, 8.0, "cut"), (8.0 - OVER, 8.0, "cut")]);
        assert_eq!((pointer.as_str(), code), ("/moves/1/start_time", ErrorCode::Timeline));
        assert!(
            message.starts_with("overlaps the previous move by 0.018 s") && message.ends_with("at most 0 s is allowed"),
            "{message}"
        );

        // A crossfade may overlap by its own length (0.5 s), and half a frame more.
        assert!(timeline_of(&[(0.0, 8.0, "cut"), (7.5 - UNDER, 8.0, "crossfade")], true).is_ok());
        let (_, _, message) = strict_problem(&[(0.0, 8.0, "cut"), (7.5 - OVER, 8.0, "crossfade")]);
        assert!(message.ends_with("at most 0.5 s is allowed"), "{message}");
        for fade in ["fade_black", "fade_white"] {
            let (_, _, message) = strict_problem(&[(0.0, 8.0, "cut"), (8.0 - OVER, 8.0, fade)]);
            assert!(message.ends_with("at most 0 s is allowed"), "{fade}: {message}");
        }
    }

    /// Strictly, a move that starts before the one above it is out of order; one that starts
    /// at the same time is an overlap, not out of order.
    #[test]
    fn strictly_moves_are_sorted_by_start() {
        let (pointer, _, message) = strict_problem(&[(0.0, 8.0, "cut"), (8.0, 8.0, "cut"), (7.9, 8.1, "crossfade")]);
        assert_eq!(pointer, "/moves/2/start_time");
        assert!(message.starts_with("moves must be sorted"), "{message}");
        let (pointer, _, message) = strict_problem(&[(0.0, 8.0, "cut"), (8.0, 8.0, "cut"), (8.0, 8.0, "crossfade")]);
        assert_eq!(pointer, "/moves/2/start_time");
        assert!(message.starts_with("overlaps the previous move by 8.000 s"), "{message}");
    }

    /// Strictly, a transition lasts no longer than either move it joins: a crossfade its
    /// `transition_duration` (0.5 s), a fade its `fade_duration` (0.3 s); on the first move
    /// a crossfade (from black) half its length. Equal is allowed.
    #[test]
    fn strictly_a_transition_fits_the_moves_it_joins() {
        let refused_at = |moves: &[(f64, f64, &str)]| {
            let (pointer, code, _) = strict_problem(moves);
            assert_eq!(code, ErrorCode::OutOfRange, "{moves:?}");
            pointer
        };
        for (transition, seconds) in [("crossfade", 0.5), ("fade_black", 0.3), ("fade_white", 0.3)] {
            let fits = [(0.0, 8.0, "cut"), (8.0, seconds, transition), (8.0 + seconds, 8.0, "cut")];
            assert!(timeline_of(&fits, true).is_ok(), "{transition}");
            let short = seconds - 0.01;
            let pointer = refused_at(&[(0.0, 8.0, "cut"), (8.0, short, transition), (8.0 + short, 8.0, "cut")]);
            assert_eq!(pointer, "/moves/1/transition_type", "{transition}: the move itself is shorter");
            let pointer = refused_at(&[(0.0, short, "cut"), (short, 8.0, transition)]);
            assert_eq!(pointer, "/moves/1/transition_type", "{transition}: the move before it is shorter");
        }
        for (transition, seconds) in [("crossfade", 0.25), ("fade_black", 0.3), ("fade_white", 0.3)] {
            assert!(
                timeline_of(&[(0.0, seconds, transition), (seconds, 8.0, "cut")], true).is_ok(),
                "first {transition}"
            );
            let short = seconds - 0.01;
            let pointer = refused_at(&[(0.0, short, transition), (short, 8.0, "cut")]);
            assert_eq!(pointer, "/moves/0/transition_type", "first {transition}");
        }
        assert!(timeline_of(&[(0.0, 0.01, "cut"), (0.01, 0.01, "cut")], true).is_ok(), "a cut needs no time");
    }

    /// A timeline may last three hours, strictly or not; a move past that is refused at
    /// `/moves`.
    #[test]
    fn a_timeline_lasts_at_most_three_hours() {
        for strict in [true, false] {
            let whole = timeline_of(&[(0.0, 10_000.0, "cut"), (10_000.0, 800.0, "cut")], strict).unwrap();
            assert_eq!(whole.total_duration, MAX_TIMELINE_SECONDS);
            let errors = timeline_of(&[(0.0, 10_000.0, "cut"), (10_000.0, 801.0, "cut")], strict).unwrap_err();
            assert_eq!(
                (errors[0].0.as_str(), errors[0].1),
                ("/moves", ErrorCode::TooLarge),
                "strict {strict}: {errors:?}"
            );
        }
    }

    /// The exact floating-point boundaries of the strict timeline (half a frame at 30 fps is
    /// `0.5 / 30.0`): a first start, a gap, an overlap of exactly that are allowed.
    #[test]
    fn strictly_exactly_half_a_frame_is_allowed() {
        let tolerance = 0.5 / 30.0;
        assert!(timeline_of(&[(tolerance, 8.0, "cut"), (8.0 + tolerance, 8.0, "cut")], true).is_ok(), "first start");
        assert!(timeline_of(&[(0.0, 8.0, "cut"), (8.0 + tolerance, 8.0, "cut")], true).is_ok(), "gap");
        assert!(timeline_of(&[(0.0, 8.0, "cut"), (8.0 - 0.0 - tolerance, 8.0, "cut")], true).is_ok(), "overlap");
        assert!(
            timeline_of(&[(0.0, 8.0, "cut"), (8.0 - 0.5 - tolerance, 8.0, "crossfade")], true).is_ok(),
            "crossfade"
        );
    }

    /// One move's timeline ends where the move does; a refused timeline adds no second
    /// problem about `total_duration`.
    #[test]
    fn a_timeline_ends_with_its_last_move_and_a_refused_one_says_nothing_more() {
        let one = timeline_of(&[(0.01, 8.0, "cut")], true).unwrap();
        assert_eq!(one.total_duration, 8.01);
        let errors = checked_with(CheckOptions::strict(), |d| {
            d["moves"][3]["start_time"] = 25.0.into(); // a gap of 1 s
            d["moves"][3]["duration"] = 7.0.into();
            d["total_duration"] = 170.0.into();
        })
        .unwrap_err()
        .errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].pointer, "/moves/3/start_time");
        // A problem found before the moves does not stop a sound timeline from being
        // compared with `total_duration`: both are reported.
        let errors = checked_with(CheckOptions::strict(), |d| {
            d["audio_path"] = "../song.mp3".into();
            d["total_duration"] = 170.0.into();
        })
        .unwrap_err()
        .errors;
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/audio_path", "/total_duration"]);
    }

    /// A blueprint of exactly the size limit is read; one byte more is refused whole.
    #[test]
    fn a_blueprint_of_exactly_the_size_limit_is_read() {
        let text = include_str!("../../../examples/backend-blueprint.json");
        let padded = text.to_owned() + &" ".repeat(MAX_BLUEPRINT_BYTES - text.len());
        assert_eq!(padded.len(), MAX_BLUEPRINT_BYTES);
        assert!(validate(&padded).is_ok());
        let errors = validate(&format!("{padded} ")).unwrap_err();
        assert_eq!(errors[0].code, ErrorCode::TooLarge);
    }

    /// Nesting counts brackets outside strings only: a string (with escaped quotes and
    /// backslashes) ends where its closing quote is.
    #[test]
    fn nesting_after_a_string_is_counted() {
        assert_eq!(nesting_exceeding(r#"["a",[[]]]"#, 2), Some(3));
        assert_eq!(nesting_exceeding(r#"["\\",[[]]]"#, 2), Some(3), "an escaped backslash does not escape the quote");
        assert_eq!(nesting_exceeding(r#"["\"[[",[]]"#, 2), None, "an escaped quote does not end the string");
        assert_eq!(nesting_exceeding("[]]][", 1), None, "a stray closing bracket does not go below zero");
    }

    /// A wrong type is named in the message, and untrusted text is echoed quoted, whole up to
    /// 60 characters and cut after that.
    #[test]
    fn messages_name_the_type_found_and_echo_short_text() {
        let found = |value: serde_json::Value| {
            let errors = example_with(|d| d["audio_path"] = value).unwrap_err();
            errors[0].message.clone()
        };
        assert_eq!(found(true.into()), "`audio_path` must be a string, found a boolean");
        assert_eq!(found(1.into()), "`audio_path` must be a string, found a number");
        assert_eq!(found(serde_json::json!([])), "`audio_path` must be a string, found an array");
        assert_eq!(found(serde_json::json!({})), "`audio_path` must be a string, found an object");
        let errors = example_with(|d| d["moves"] = "x".into()).unwrap_err();
        assert_eq!(errors[0].message, "`moves` must be an array, found a string");
        assert_eq!(type_name(&serde_json::Value::Null), "null");
        let sixty = "é".repeat(60);
        assert_eq!(excerpt(&sixty), format!("{sixty:?}"));
        let sixty_one = "é".repeat(61);
        assert_eq!(excerpt(&sixty_one), format!("{sixty:?}... (122 bytes)"));
        let errors = example_with(|d| d["audio_path"] = "../x.mp3".into()).unwrap_err();
        assert!(errors[0].message.starts_with(r#"object key "../x.mp3" "#), "{}", errors[0].message);
    }

    /// Leniently, a `gs://` address in the job's own bucket is read as its key, with a
    /// warning; one elsewhere, or with no bucket, is refused; strictly every address is.
    #[test]
    fn an_address_in_the_jobs_own_bucket_is_read_as_its_key_unless_strict() {
        let own = crate::OwnBucket { address_prefix: "gs://media-bucket/".into(), key_prefix: "data/".into() };
        let lenient = CheckOptions { strict: false, own_bucket: Some(own.clone()) };
        let song = |address: &str, options: CheckOptions| {
            let address = address.to_owned();
            checked_with(options, move |d| d["audio_path"] = address.into())
        };
        let read = song("gs://media-bucket/songs/Amor.mp3", lenient.clone()).unwrap();
        assert_eq!(read.audio_key, "data/songs/Amor.mp3");
        assert_eq!(read.warnings[0].pointer, "/audio_path");
        assert_eq!(
            read.warnings[0].message,
            r#""gs://media-bucket/songs/Amor.mp3" is in the job's own bucket: read as the key "data/songs/Amor.mp3""#
        );
        let refused = |address: &str, options: CheckOptions| {
            let errors = song(address, options).unwrap_err().errors;
            assert_eq!((errors[0].pointer.as_str(), errors[0].code), ("/audio_path", ErrorCode::UnsafePath));
            errors[0].message.clone()
        };
        let other = refused("gs://other-bucket/songs/Amor.mp3", lenient.clone());
        assert!(other.ends_with(r#"is not in the job's own bucket ("gs://media-bucket/")"#), "{other}");
        let none = refused("gs://media-bucket/songs/Amor.mp3", CheckOptions::default());
        assert!(none.ends_with("is an address, and this job does not read from a bucket"), "{none}");
        let escaping = refused("gs://media-bucket/../secret.mp3", lenient.clone());
        assert!(escaping.contains(r#"(read as "data/../secret.mp3")"#), "{escaping}");
        let strict = refused("gs://media-bucket/songs/Amor.mp3", CheckOptions { strict: true, own_bucket: Some(own) });
        assert!(strict.starts_with(r#"object key "gs://media-bucket/songs/Amor.mp3""#), "{strict}");
    }

    /// An unknown `difficulty_level` is ignored with a warning (it does not change the
    /// video), and refused by a strict check; a known one passes either way.
    #[test]
    fn an_unknown_difficulty_level_is_ignored_unless_strict() {
        let lenient = checked_with(CheckOptions::default(), |d| d["difficulty_level"] = "expert".into()).unwrap();
        assert_eq!(lenient.warnings.len(), 1);
        assert_eq!(lenient.warnings[0].pointer, "/difficulty_level");
        let known = checked_with(CheckOptions::default(), |d| d["difficulty_level"] = "advanced".into()).unwrap();
        assert!(known.warnings.is_empty(), "{:?}", known.warnings);
        assert!(checked_with(CheckOptions::strict(), |d| d["difficulty_level"] = "advanced".into()).is_ok());
        let strict = checked_with(CheckOptions::strict(), |d| d["difficulty_level"] = "expert".into()).unwrap_err();
        assert_eq!(
            (strict.errors[0].pointer.as_str(), strict.errors[0].code),
            ("/difficulty_level", ErrorCode::NotAllowed)
        );
    }

    /// A blueprint may list up to 2,000 moves.
    #[test]
    fn at_most_two_thousand_moves() {
        let moves: Vec<(f64, f64, &str)> = (0..MAX_MOVES).map(|i| (i as f64, 1.0, "cut")).collect();
        assert_eq!(timeline_of(&moves, true).unwrap().moves.len(), MAX_MOVES);
        let mut more = moves.clone();
        more.push((MAX_MOVES as f64, 1.0, "cut"));
        let errors = timeline_of(&more, true).unwrap_err();
        assert_eq!((errors[0].0.as_str(), errors[0].1), ("/moves", ErrorCode::TooLarge));
    }

    /// Moves may end up to one frame before or after `total_duration` with nothing said; at
    /// 32 fps a frame is exactly 1/32 s, so the boundary is exact in floating point.
    #[test]
    fn moves_may_end_exactly_one_frame_from_the_total_duration() {
        for strict in [false, true] {
            let options = CheckOptions { strict, ..CheckOptions::default() };
            let validated = checked_with(options, |d| {
                d["output_config"]["frame_rate"] = 32.into();
                d["total_duration"] = (176.0 + 1.0 / 32.0).into();
            })
            .unwrap();
            assert!(validated.warnings.is_empty(), "strict {strict}: {:?}", validated.warnings);
        }
        let early = checked_with(CheckOptions::strict(), |d| {
            d["output_config"]["frame_rate"] = 32.into();
            d["total_duration"] = (176.0 - 1.0 / 32.0).into();
        });
        assert!(early.is_ok(), "{early:?}");
    }

    #[test]
    fn bitrates() {
        assert_eq!(parse_bitrate("2M"), Some(2_000_000));
        assert_eq!(parse_bitrate("800k"), Some(800_000));
        assert_eq!(parse_bitrate("1.5M"), Some(1_500_000));
        assert_eq!(parse_bitrate("128000"), Some(128_000));
        assert_eq!(parse_bitrate("0000000000128000"), Some(128_000), "16 characters");
        for bad in [
            "",
            "M",
            "2G",
            "-2M",
            "2 M",
            "1.2.3k",
            ".5M",
            "2M;",
            "1e9",
            "00000000000128000",
            "0",
            "0.4",
            "999999999999999M",
            "10000000000000M",
        ] {
            assert_eq!(parse_bitrate(bad), None, "{bad}");
        }
    }

    #[test]
    fn nesting() {
        assert_eq!(nesting_exceeding("[[[]]]", 3), None);
        assert_eq!(nesting_exceeding("[[[[]]]]", 3), Some(4));
        assert_eq!(nesting_exceeding(r#"{"a":"[[[[[\"[["}"#, 2), None);
    }
}
