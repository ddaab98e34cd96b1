//! FFmpeg arithmetic expressions (`libavutil/eval.c`), as filters such as `setpts`,
//! `volume` and `pad` evaluate them, restricted to plain arithmetic.
//!
//! Why an allow-list of functions and variables: the expression language is a small
//! program. `while(1, 1)` never ends, `st`/`ld` keep state between frames, `random`
//! and the `RTCTIME` variable make a render differ from run to run, `print` writes to
//! the log on every frame, and `root` and `taylor` loop inside one evaluation. None of
//! them is needed to place frames or ramp a volume, so only arithmetic, comparisons,
//! `if` and rounding are accepted. Numbers are plain decimals: FFmpeg's exponents and
//! SI suffixes (`1e9`, `2G`) would hide a large value from the bounds elsewhere.

use crate::{excerpt, Refusal, Rule};

/// Functions that evaluate their arguments once each and return a number.
const FUNCTIONS: &[&str] = &[
    "abs", "between", "ceil", "clip", "cos", "eq", "exp", "floor", "gt", "gte", "if", "ifnot", "lerp", "log", "lt",
    "lte", "max", "min", "mod", "not", "pow", "round", "sin", "sqrt", "trunc",
];

/// Variables of the allowed filters (`setpts`, `asetpts`, `volume`, `pad`, `setts`) and eval's
/// constants. Not `RTCTIME`/`RTCSTART` (the wall clock) nor `POS` (a byte offset).
const VARIABLES: &[&str] = &[
    // setpts, asetpts
    "PTS",
    "STARTPTS",
    "N",
    "T",
    "TB",
    "STARTT",
    "FR",
    "SR",
    "S",
    "PREV_INPTS",
    "PREV_INT",
    "PREV_OUTPTS",
    "PREV_OUTT",
    "NB_CONSUMED_SAMPLES",
    "NB_SAMPLES",
    "INTERLACED", // volume
    "t",
    "n",
    "pts",
    "tb",
    "startpts",
    "startt",
    "sample_rate",
    "nb_channels",
    "nb_samples",
    "nb_consumed_samples",
    "volume",   // setts (the audio bitstream filter that trims the last packet)
    "DURATION", // pad
    "in_w",
    "iw",
    "in_h",
    "ih",
    "out_w",
    "ow",
    "out_h",
    "oh",
    "x",
    "y",
    "a",
    "sar",
    "dar",
    "hsub",
    "vsub",
    // eval's constants
    "PI",
    "E",
    "PHI",
];

/// Deeper nesting is no use to a timing or volume formula, and FFmpeg's parser recurses.
const MAX_DEPTH: usize = 32;

/// Checks one expression, after every level of filtergraph quoting has been removed.
pub(crate) fn check(filter: &str, option: &str, expression: &str) -> Result<(), Refusal> {
    let refuse = |why: String| Refusal::new(Rule::BadExpression, format!("the {filter} option {option}: {why}"));
    let bytes = expression.as_bytes();
    if bytes.iter().all(|b| *b == b' ') {
        return Err(refuse("the expression is empty".to_owned()));
    }
    let mut depth = 0usize;
    let mut at = 0usize;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b' ' | b'+' | b'-' | b'*' | b'/' | b'^' | b',' => at += 1,
            b'(' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(refuse(format!("parentheses nest deeper than {MAX_DEPTH}")));
                }
                at += 1;
            }
            b')' => {
                depth = depth.checked_sub(1).ok_or_else(|| refuse("a ')' closes nothing".to_owned()))?;
                at += 1;
            }
            b'0'..=b'9' | b'.' => {
                let start = at;
                while bytes.get(at).is_some_and(|b| b.is_ascii_digit() || *b == b'.') {
                    at += 1;
                }
                let number = String::from_utf8_lossy(bytes.get(start..at).unwrap_or_default()).into_owned();
                let plain = number.matches('.').count() <= 1 && number.bytes().any(|b| b.is_ascii_digit());
                if !plain || bytes.get(at).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
                    let shown = String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned();
                    return Err(refuse(format!(
                        "the number at {} is not a plain decimal (no exponents or SI suffixes)",
                        excerpt(&shown)
                    )));
                }
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let start = at;
                while bytes.get(at).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
                    at += 1;
                }
                let name = String::from_utf8_lossy(bytes.get(start..at).unwrap_or_default()).into_owned();
                let mut next = at;
                while bytes.get(next) == Some(&b' ') {
                    next += 1;
                }
                if bytes.get(next) == Some(&b'(') {
                    if !FUNCTIONS.contains(&name.as_str()) {
                        return Err(refuse(format!("the function {} is not on the allow-list", excerpt(&name))));
                    }
                } else if !VARIABLES.contains(&name.as_str()) {
                    return Err(refuse(format!("the variable {} is not on the allow-list", excerpt(&name))));
                }
            }
            other => {
                return Err(refuse(format!(
                    "the character {:?} has no place in an arithmetic expression",
                    other as char
                )))
            }
        }
    }
    if depth != 0 {
        return Err(refuse("a '(' is never closed".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(expression: &str) -> bool {
        check("volume", "volume", expression).is_ok()
    }

    #[test]
    fn the_planners_expressions_pass() {
        for expression in [
            "PTS-STARTPTS",
            "1-0.5*clip((t-(0-1))/0.02+0.5,0,1)*clip((16-t)/0.02+0.5,0,1)",
            "(ow-iw)/2",
            "N/(30*TB)",
            "if(lt(t, 2), 0.5, 1)",
            "0.5",
            ".5*PI",
        ] {
            assert!(accepted(expression), "{expression}");
        }
    }

    #[test]
    fn loops_state_clocks_and_randomness_are_refused() {
        for expression in [
            "while(1,1)",
            "st(0,1)",
            "ld(0)",
            "random(0)",
            "RTCTIME",
            "RTCSTART",
            "print(t)",
            "root(t,1)",
            "taylor(t,1)",
            "time(0)",
            "1;2",
        ] {
            assert!(!accepted(expression), "{expression}");
        }
    }

    #[test]
    fn numbers_are_plain() {
        for expression in ["1e9", "2G", "1.2.3", "0x10", "5Ki", "."] {
            assert!(!accepted(expression), "{expression}");
        }
    }

    #[test]
    fn nesting_and_parentheses_are_checked() {
        assert!(accepted(&format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH))));
        assert!(!accepted(&format!("{}1{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1))));
        assert!(!accepted("(1"));
        assert!(!accepted("1)"));
        assert!(!accepted(""));
        assert!(!accepted("'1'"));
    }

    /// `2PI` is no product in FFmpeg: a number may not run into a name, even an allowed one.
    #[test]
    fn a_number_runs_into_no_name() {
        for expression in ["2PI", "5t", "1_", "0.5volume"] {
            assert!(!accepted(expression), "{expression}");
        }
        assert!(accepted("2*PI"));
    }

    /// FFmpeg skips spaces between a name and its `(`: the name is then a function, and a
    /// variable followed by `(` is refused as one.
    #[test]
    fn a_name_before_spaces_and_a_parenthesis_is_a_function() {
        assert!(accepted("abs (t)"));
        assert!(accepted("if  (lt (t, 2), 0, 1)"));
        assert!(accepted("t + 1"), "a variable followed by spaces and no '(' is a variable");
        assert!(!accepted("t (1)"));
        assert!(!accepted("random  (0)"));
    }
}
