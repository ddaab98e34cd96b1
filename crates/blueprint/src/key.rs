//! Rules for object keys (`audio_path`, `video_path`, `output_path`).
//!
//! A key names an object inside the job's storage root and nothing else: it must not
//! be able to name an absolute path, a parent folder, a URL or FFmpeg protocol
//! (`file:`, `concat:`, `http:`...), or look like a command-line option.

use crate::limits::{MAX_KEY_BYTES, MAX_KEY_SEGMENTS};

/// Why a key was refused; the text completes "object key ...".
pub fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("is empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Some(format!("is {} bytes long; the limit is {MAX_KEY_BYTES}", key.len()));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Some(format!("contains the control character U+{:04X}", c as u32));
    }
    if key.contains(':') {
        return Some("contains ':' (URLs, drive letters and FFmpeg protocols are not allowed)".into());
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Some("is an absolute path; keys are relative to the storage root".into());
    }
    if let Some(c) = key.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))) {
        return Some(format!("contains {c:?}; allowed are ASCII letters, digits, '_', '-', '.' and '/'"));
    }
    let segments: Vec<&str> = key.split('/').collect();
    if segments.len() > MAX_KEY_SEGMENTS {
        return Some(format!("has {} segments; the limit is {MAX_KEY_SEGMENTS}", segments.len()));
    }
    for segment in segments {
        match segment {
            "" => return Some("has an empty segment ('//' or a trailing '/')".into()),
            "." | ".." => return Some(format!("has a '{segment}' segment")),
            s if s.starts_with('-') => {
                return Some(format!("has a segment starting with '-' ({s:?}), which could be read as an option"))
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::key_problem;

    #[test]
    fn backend_keys_are_accepted() {
        for key in ["data/Bachata_steps/basic/basic.mp4", "songs/Amor.mp3", "a", "x-1/y_2.z"] {
            assert_eq!(key_problem(key), None, "{key}");
        }
    }

    #[test]
    fn escaping_keys_are_refused() {
        for key in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "file:///etc/passwd",
            "gs://b/k",
            "http://h/x",
            "concat:a|b",
            "C:\\x",
            "\\\\srv\\x",
            "-i",
            "a/-y",
            "a\0b",
            "a\nb",
            "a b",
            "caf\u{e9}.mp4",
            "a%2e%2e",
            "a?b",
            "a;rm",
        ] {
            assert!(key_problem(key).is_some(), "{key:?} should be refused");
        }
        assert!(key_problem(&"a".repeat(1025)).is_some());
        assert!(key_problem("a/".repeat(40).trim_end_matches('/')).is_some());
    }

    /// 1,024 bytes and 32 segments are keys; one byte or one segment more is not.
    #[test]
    fn keys_at_the_limits_are_taken_and_one_more_is_refused() {
        assert_eq!(key_problem(&"a".repeat(1024)), None);
        assert!(key_problem(&"a".repeat(1025)).is_some_and(|why| why.contains("1025 bytes")));
        let segments = |count: usize| vec!["a"; count].join("/");
        assert_eq!(key_problem(&segments(32)), None);
        assert!(key_problem(&segments(33)).is_some_and(|why| why.contains("33 segments")));
    }

    /// Either slash starts an absolute path, and says so.
    #[test]
    fn a_leading_slash_of_either_kind_is_an_absolute_path() {
        for key in ["/a", "\\a"] {
            assert!(key_problem(key).is_some_and(|why| why.contains("absolute path")), "{key:?}");
        }
    }
}
