//! Bounded capture of what a guest says: its `log` lines and its stdout/stderr.

use std::collections::VecDeque;

/// Lines kept for error reports (the most recent ones).
const KEPT_LINES: usize = 10;
/// Longer lines are cut.
const MAX_LINE_CHARS: usize = 200;
/// Lines also forwarded to the host's log, per call; the rest are only counted.
const FORWARDED_LINES: usize = 100;
/// Capacity of each captured stdio stream; writes past it fail inside the guest.
pub const STDIO_CAPACITY: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct GuestLog {
    recent: VecDeque<String>,
    total: u64,
}

impl GuestLog {
    pub fn record(&mut self, level: &str, message: &str) {
        self.total += 1;
        let line = format!("[{level}] {}", truncate(message));
        if self.total <= FORWARDED_LINES as u64 {
            tracing::debug!(guest_level = level, "guest: {}", line);
        }
        if self.recent.len() == KEPT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    /// The most recent lines, noting how many were dropped before them.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::with_capacity(self.recent.len() + 1);
        let dropped = self.total.saturating_sub(self.recent.len() as u64);
        if dropped > 0 {
            lines.push(format!("({dropped} earlier log lines not kept)"));
        }
        lines.extend(self.recent.iter().cloned());
        lines
    }
}

fn truncate(text: &str) -> String {
    let mut cut: String = text.chars().filter(|c| !c.is_control()).take(MAX_LINE_CHARS).collect();
    if text.chars().count() > MAX_LINE_CHARS {
        cut.push_str("...");
    }
    cut
}

/// The last few lines of a captured stream, labelled.
pub fn tail_lines(stream: &str, bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].iter().map(|l| format!("[{stream}] {}", truncate(l))).collect()
}
