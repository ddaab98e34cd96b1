//! Filtergraph arguments (`-filter_complex`, `-vf`, `-af`): every filter must be on
//! the allow-list.
//!
//! Why parse instead of searching for bad names: FFmpeg's graph syntax has quoting and
//! escaping, so `mo\vie` and `'movie'` are both the `movie` filter, and `;` inside
//! quotes does not end a chain. This parser follows FFmpeg's own
//! (`libavfilter/graphparser.c`: labels, then a name read up to `=,;[`, then options
//! read up to an unquoted `[],;`, with `'...'` quoting and `\` escapes) but is stricter:
//! filter names and link labels must be plain words with no quoting at all, and an
//! unterminated quote or a stray bracket, which FFmpeg may forgive, is refused. When
//! the two parsers could disagree, the plan is refused.
//!
//! Inside a filter's options, FFmpeg 7 reads `/name=path` as "load option `name` from
//! the file or URL `path`", which any filter would do, so option names are checked too.
//! On top of that, as defence in depth, a few things no allowed filter needs are
//! refused anywhere in the graph: URLs (`://`), control characters, and the words
//! `filename`, `file=` and `textfile`.

use crate::filter_options::{self, FilterOptions};
use crate::{excerpt, PolicyLimits, Refusal, Report, Rule, Stop};

/// Compared case-insensitively with the whole graph.
const FORBIDDEN_SUBSTRINGS: &[&str] = &["://", "filename", "file=", "textfile"];

const MAX_LINK_LABEL_BYTES: usize = 32;

/// How much of a filter's name a reason quotes.
const SHOWN_NAME_CHARS: usize = 40;

/// Checks one filtergraph: its filters, their options and their values, and reports
/// each broken rule. A refusal of a filter's name, of one of its options or of a value
/// leaves the rest readable, so the check goes on with the next option or filter; a
/// syntax error does not (FFmpeg would read what follows differently), so it stops there.
pub(crate) fn check(graph: &str, limits: &PolicyLimits, report: &mut Report) -> Result<(), Stop> {
    let max_filters = limits.max_filters_per_graph;
    if let Some(control) = graph.chars().find(|c| c.is_control()) {
        return report(bad(format!("the filtergraph holds the control character {control:?}")));
    }
    let lowercase = graph.to_ascii_lowercase();
    if let Some(word) = FORBIDDEN_SUBSTRINGS.iter().find(|word| lowercase.contains(*word)) {
        return report(bad(format!("the filtergraph contains {word:?}, which no allowed filter needs")));
    }
    let mut parser = Parser { text: graph.as_bytes(), at: 0, limits };
    parser.skip_spaces();
    if parser.at_end() {
        return report(bad("the filtergraph is empty"));
    }
    let mut filters = 0usize;
    loop {
        if let Err(refusal) = parser.link_labels() {
            return report(refusal);
        }
        if !parser.filter(filters, report)? {
            return Ok(());
        }
        filters += 1;
        if filters > max_filters {
            let reason = format!("more than {max_filters} filters in one filtergraph");
            return report(Refusal::new(Rule::TooManyFilters, reason));
        }
        if let Err(refusal) = parser.link_labels() {
            return report(refusal);
        }
        match parser.next_byte() {
            None => return Ok(()),
            Some(b',' | b';') => {
                parser.at += 1;
                parser.skip_spaces();
                if parser.at_end() {
                    return report(bad("the filtergraph ends with a separator"));
                }
            }
            Some(_) => return report(parser.unexpected("after a filter")),
        }
    }
}

/// Which filter of the graph a reason is about: its index, counted from 0 like steps
/// and arguments, its name once read, and the byte where it starts, so that one filter
/// of a graph of kilobytes can be found.
struct FilterAt<'n> {
    index: usize,
    name: &'n str,
    byte: usize,
}

impl FilterAt<'_> {
    /// `filter 3 (`scale`, byte 412)`, or `filter 3 (byte 412)` before the name is read.
    /// Made only for a refusal, so an accepted graph costs no formatting.
    fn label(&self) -> String {
        let FilterAt { index, name, byte } = self;
        if name.is_empty() {
            return format!("filter {index} (byte {byte})");
        }
        let mut shown: String = name.chars().take(SHOWN_NAME_CHARS).collect();
        if shown.len() < name.len() {
            shown.push_str("...");
        }
        format!("filter {index} (`{shown}`, byte {byte})")
    }

    /// `refusal`, its reason led by this filter's label.
    fn about(&self, refusal: Refusal) -> Refusal {
        Refusal { rule: refusal.rule, reason: format!("{}: {}", self.label(), refusal.reason) }
    }
}

fn bad(reason: impl Into<String>) -> Refusal {
    Refusal::new(Rule::BadFiltergraph, reason)
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
    limits: &'a PolicyLimits,
}

impl Parser<'_> {
    fn next_byte(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn at_end(&self) -> bool {
        self.at >= self.text.len()
    }

    /// FFmpeg also skips `\n`, `\t` and `\r`, but control characters are refused earlier.
    fn skip_spaces(&mut self) {
        while self.next_byte() == Some(b' ') {
            self.at += 1;
        }
    }

    fn rest(&self) -> String {
        String::from_utf8_lossy(self.text.get(self.at..).unwrap_or_default()).into_owned()
    }

    fn unexpected(&self, context: &str) -> Refusal {
        bad(format!("cannot parse the filtergraph {context}, at {} (byte {})", excerpt(&self.rest()), self.at))
    }

    fn take_while(&mut self, mut accept: impl FnMut(u8) -> bool) -> &[u8] {
        let start = self.at;
        while self.next_byte().is_some_and(&mut accept) {
            self.at += 1;
        }
        self.text.get(start..self.at).unwrap_or_default()
    }

    /// `[name]` labels, each followed by optional spaces.
    fn link_labels(&mut self) -> Result<(), Refusal> {
        while self.next_byte() == Some(b'[') {
            self.at += 1;
            let name_len = self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.')).len();
            if self.next_byte() != Some(b']') {
                return Err(self.unexpected("in a link label (letters, digits, '_', ':' and '.' only)"));
            }
            if !(1..=MAX_LINK_LABEL_BYTES).contains(&name_len) {
                return Err(bad(format!("a link label must be 1 to {MAX_LINK_LABEL_BYTES} characters long")));
            }
            self.at += 1;
            self.skip_spaces();
        }
        Ok(())
    }

    /// `name[@instance][=options]`, the filter `index` of the graph. Returns false after
    /// reporting a syntax error, past which the graph cannot be read.
    fn filter(&mut self, index: usize, report: &mut Report) -> Result<bool, Stop> {
        let start = self.at;
        // Only letters, digits and '_': safe to quote in a reason as it is.
        let name = String::from_utf8_lossy(self.take_while(|b| b.is_ascii_alphanumeric() || b == b'_')).into_owned();
        let unnamed = FilterAt { index, name: "", byte: start };
        if self.next_byte() == Some(b'@') {
            self.at += 1;
            if self.take_while(|b| b.is_ascii_alphanumeric() || b == b'_').is_empty() {
                report(unnamed.about(self.unexpected("in a filter's instance name")))?;
                return Ok(false);
            }
        }
        // FFmpeg reads the name up to one of `=,;[` and trims spaces; anything else
        // (quotes, escapes, spaces inside the name) is not a plain name.
        self.skip_spaces();
        if !matches!(self.next_byte(), None | Some(b'=' | b',' | b';' | b'[')) {
            report(unnamed.about(self.unexpected("in a filter name")))?;
            return Ok(false);
        }
        if name.is_empty() {
            report(unnamed.about(self.unexpected("where a filter name is expected")))?;
            return Ok(false);
        }
        let filter = FilterAt { index, name: &name, byte: start };
        // The allow-list alone decides: a name is allowed only when it is one of its names.
        let allowed = filter_options::is_allowed_filter(&name);
        if !allowed {
            report(Refusal::new(Rule::ForbiddenFilter, format!("{} is not on the allow-list", filter.label())))?;
        }
        if self.next_byte() == Some(b'=') {
            self.at += 1;
            // Read even for a refused filter: the next filter starts after its options.
            let options = match self.token(b"[],;") {
                Ok(options) => options,
                Err(refusal) => {
                    report(filter.about(refusal))?;
                    return Ok(false);
                }
            };
            if allowed {
                check_options(&filter, &options, self.limits, report)?;
            }
        }
        Ok(true)
    }

    /// FFmpeg's `av_get_token`: text up to an unquoted, unescaped byte of
    /// `terminators`, with `'...'` quotes and `\x` escapes removed. Stricter than
    /// FFmpeg: an unterminated quote or a trailing backslash is refused.
    fn token(&mut self, terminators: &[u8]) -> Result<Vec<u8>, Refusal> {
        let mut unquoted = Vec::new();
        while let Some(byte) = self.next_byte() {
            if terminators.contains(&byte) {
                break;
            }
            self.at += 1;
            match byte {
                b'\\' => match self.next_byte() {
                    Some(escaped) => {
                        unquoted.push(escaped);
                        self.at += 1;
                    }
                    None => return Err(bad("the filtergraph ends with a lone backslash")),
                },
                b'\'' => loop {
                    match self.next_byte() {
                        None => return Err(bad("the filtergraph has an unterminated quote")),
                        Some(b'\'') => {
                            self.at += 1;
                            break;
                        }
                        Some(quoted) => {
                            unquoted.push(quoted);
                            self.at += 1;
                        }
                    }
                },
                other => unquoted.push(other),
            }
        }
        Ok(unquoted)
    }
}

/// A filter's options, after graph-level quoting is removed: `key=value` or bare values
/// separated by `:`, with a second level of quoting and escaping (FFmpeg's
/// `ff_filter_opt_parse` / `av_opt_get_key_value`). Each value, fully unquoted, is
/// checked against the filter's option table. Once an option's text is read, a refusal
/// of it leaves the next option readable; an option whose text cannot be read ends the
/// filter's options, though not the graph, which has already found where they end.
fn check_options(at: &FilterAt, options: &[u8], limits: &PolicyLimits, report: &mut Report) -> Result<(), Stop> {
    let filter = at.name;
    let mut refuse = |refusal: Refusal| report(at.about(refusal));
    let Some(mut values) = FilterOptions::new(filter, limits) else {
        let reason = format!("the filter {} is not on the allow-list", excerpt(filter));
        return refuse(Refusal::new(Rule::ForbiddenFilter, reason));
    };
    let mut parser = Parser { text: options, at: 0, limits };
    while !parser.at_end() {
        let start = parser.at;
        let unquoted = match parser.token(b":") {
            Ok(unquoted) => unquoted,
            Err(refusal) => return refuse(bad(format!("in the options of {filter}: {}", refusal.reason))),
        };
        let raw = options.get(start..parser.at).unwrap_or_default();
        match split_option(filter, raw, &unquoted) {
            Err(refusal) => refuse(refusal)?,
            Ok((key, value)) => match String::from_utf8(value.to_vec()) {
                Err(_) => refuse(bad(format!("an option of {filter} is not UTF-8")))?,
                Ok(value) => {
                    if let Err(refusal) = values.check(key.as_deref(), &value) {
                        refuse(refusal)?;
                    }
                }
            },
        }
        if parser.next_byte() == Some(b':') {
            parser.at += 1;
            if parser.at_end() {
                return refuse(bad(format!("the options of {filter} end with ':'")));
            }
        }
    }
    Ok(())
}

/// FFmpeg takes a key from the raw text (letters, digits and `_-./`, then `=`), so
/// the raw text decides what is a key; the value is what is left after unquoting.
/// Returns the key (None for a positional value) and the value.
fn split_option<'u>(filter: &str, raw: &[u8], unquoted: &'u [u8]) -> Result<(Option<String>, &'u [u8]), Refusal> {
    let raw = trim_leading_spaces(raw);
    let show = || excerpt(&String::from_utf8_lossy(raw));
    if raw.first() == Some(&b'/') || trim_leading_spaces(unquoted).first() == Some(&b'/') {
        return Err(bad(format!(
            "the {filter} option {} starts with '/', which makes FFmpeg load it from a file",
            show()
        )));
    }
    let key_len =
        raw.iter().take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/')).count();
    let after_key = trim_leading_spaces(raw.get(key_len..).unwrap_or_default());
    let key = raw.get(..key_len).unwrap_or_default();
    if after_key.first() != Some(&b'=') {
        return Ok((None, unquoted));
    }
    if !key.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(bad(format!("the {filter} option {} has a name that is not a plain word", show())));
    }
    // Key characters are never quoted or escaped, so the unquoted text starts with the
    // same key, spaces and '='.
    let value_at = unquoted.iter().position(|&b| b == b'=').map_or(unquoted.len(), |at| at + 1);
    let value = unquoted.get(value_at..).unwrap_or_default();
    Ok((Some(String::from_utf8_lossy(key).into_owned()), trim_leading_spaces(value)))
}

fn trim_leading_spaces(bytes: &[u8]) -> &[u8] {
    let spaces = bytes.iter().take_while(|&&b| b == b' ').count();
    bytes.get(spaces..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal of `graph`, in order.
    fn refusals(graph: &str) -> Vec<Refusal> {
        let mut found = Vec::new();
        let _ended = check(graph, &PolicyLimits::for_job(1280, 720, 60.0), &mut |refusal| {
            found.push(refusal);
            Ok(())
        });
        found
    }

    /// The rule of the first refusal, the one `br_policy::check` reports.
    fn rule_of(graph: &str) -> Option<Rule> {
        refusals(graph).first().map(|refusal| refusal.rule)
    }

    fn rules_and_reasons(graph: &str) -> Vec<(Rule, String)> {
        refusals(graph).into_iter().map(|refusal| (refusal.rule, refusal.reason)).collect()
    }

    fn rules(found: &[(Rule, String)]) -> Vec<Rule> {
        found.iter().map(|(rule, _)| *rule).collect()
    }

    #[test]
    fn planner_shapes_pass() {
        for graph in [
            "[0:v]setpts=PTS-STARTPTS,fps=30000/1001,scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p,settb=1001/30000,tpad=stop_mode=clone:stop_duration=8.5,trim=duration=8[own]",
            "[before][own]xfade=transition=fade:duration=0.5:offset=0[blendin];[blendin]trim=start=0.25,setpts=PTS-STARTPTS,fade=t=in:st=0:d=0.3:color=white[video]",
            "[own]extractplanes=y+u+v[owny][ownu][ownv];[next]extractplanes=y+u+v[nexty][nextu][nextv];[owny][nexty]xfade=transition=fade:duration=0.5:offset=0[blendedy];[blendedy][blendedu][blendedv]mergeplanes=0x001020:yuv420p[blended]",
            "[1:a]atrim=end=16,volume='1-0.5*clip((t-(0-1))/0.02+0.5,0,1)':eval=frame,loudnorm=I=-16:TP=-1.5:LRA=11[audio]",
            "null",
            " [a] null [b] ; [b] anull , volume@gain=0.5 [c]",
            "scale =1280:720",
        ] {
            assert_eq!(rule_of(graph), None, "{graph}");
        }
    }

    #[test]
    fn hidden_or_forbidden_filters_are_refused() {
        assert_eq!(rule_of("movie=x"), Some(Rule::ForbiddenFilter));
        assert_eq!(rule_of("null;sws_flags=bicubic"), Some(Rule::ForbiddenFilter));
        assert_eq!(rule_of("Null"), Some(Rule::ForbiddenFilter));
        assert_eq!(rule_of("null,mo\\vie=x"), Some(Rule::BadFiltergraph));
        assert_eq!(rule_of("null,'movie'=x"), Some(Rule::BadFiltergraph));
        assert_eq!(rule_of("null,scale foo"), Some(Rule::BadFiltergraph));
        assert_eq!(rule_of("volume='1;movie=x"), Some(Rule::BadFiltergraph));
        // Quoted separators stay inside the option: one volume filter, whose value is
        // not an arithmetic expression.
        assert_eq!(rule_of("volume='1;movie=x'"), Some(Rule::BadExpression));
        assert_eq!(rule_of("volume=1\\"), Some(Rule::BadFiltergraph));
        assert_eq!(rule_of("[0:v"), Some(Rule::BadFiltergraph));
        assert_eq!(rule_of("null]"), Some(Rule::BadFiltergraph));
        assert_eq!(rule_of("[]null"), Some(Rule::BadFiltergraph));
        assert_eq!(rule_of("null,"), Some(Rule::BadFiltergraph));
        assert_eq!(rule_of("null;;null"), Some(Rule::BadFiltergraph));
        assert_eq!(rule_of(""), Some(Rule::BadFiltergraph));
        assert_eq!(rule_of("null@"), Some(Rule::BadFiltergraph));
    }

    #[test]
    fn file_loading_options_are_refused() {
        for graph in [
            "volume=/volume=x",
            "volume=eval=frame:/volume=x",
            "volume=eval=frame: /volume=x",
            "volume='/volume'=x",
            "volume=\\/volume=x",
            "volume=a/b=1",
            "volume=a.b=1",
        ] {
            assert_eq!(rule_of(graph), Some(Rule::BadFiltergraph), "{graph}");
        }
    }

    #[test]
    fn every_bad_filter_is_reported_with_its_place() {
        let found = rules_and_reasons("[0:v]null,movie=x,scale=9999:720,fps=30[v]");
        let expected = [
            (Rule::ForbiddenFilter, "filter 1 (`movie`, byte 10) is not on the allow-list".to_owned()),
            (Rule::FilterValueOutOfBounds, "filter 2 (`scale`, byte 18): ".to_owned()),
        ];
        assert_eq!(found.len(), expected.len(), "{found:?}");
        for ((rule, reason), (expected_rule, expected_start)) in found.iter().zip(expected) {
            assert_eq!(*rule, expected_rule, "{reason}");
            assert!(reason.starts_with(&expected_start), "{reason}");
        }
    }

    #[test]
    fn every_bad_option_of_a_filter_is_reported() {
        let found = rules_and_reasons("fade=t=sideways:st=0:d=999:c=white");
        assert_eq!(rules(&found), [Rule::FilterValueOutOfBounds, Rule::FilterValueOutOfBounds], "{found:?}");
        assert!(found.iter().all(|(_, reason)| reason.starts_with("filter 0 (`fade`, byte 0): ")), "{found:?}");
    }

    #[test]
    fn a_syntax_error_ends_the_graph_but_an_unreadable_option_only_its_filter() {
        // After the stray quote nothing can be read as FFmpeg would: one refusal.
        assert_eq!(rules_and_reasons("null'[v],movie=x,movie=y").len(), 1);
        let found = rules_and_reasons("movie=x,null,mo\\vie,movie=y");
        assert_eq!(rules(&found), [Rule::ForbiddenFilter, Rule::BadFiltergraph]);
        assert!(found[1].1.starts_with("filter 2 (byte 13): cannot parse"), "{found:?}");
        // The graph knows where volume's options end, so the filter after them is read.
        let found = rules_and_reasons("volume='1\\',movie=x");
        assert_eq!(rules(&found), [Rule::BadFiltergraph, Rule::ForbiddenFilter], "{found:?}");
    }

    #[test]
    fn a_long_forbidden_name_is_shortened() {
        let name = "x".repeat(500);
        let found = rules_and_reasons(&name);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, format!("filter 0 (`{}...`, byte 0) is not on the allow-list", "x".repeat(40)));
    }

    /// A syntax error quotes the graph from the byte where reading stopped, and names that byte.
    #[test]
    fn a_syntax_error_quotes_the_rest_of_the_graph() {
        let found = rules_and_reasons("null,scale foo");
        let reason = "filter 1 (byte 5): cannot parse the filtergraph in a filter name, at \"foo\" (byte 11)";
        assert_eq!(found, [(Rule::BadFiltergraph, reason.to_owned())]);
    }

    /// An instance name (`volume@gain`) is a plain word of letters, digits and `_`, and ends
    /// where the filter's options or the next filter begin.
    #[test]
    fn an_instance_name_is_a_plain_word() {
        assert_eq!(rule_of("volume@fade_out=0.5"), None);
        assert_eq!(rule_of("null@a,movie=x"), Some(Rule::ForbiddenFilter));
        assert_eq!(rule_of("null@a-b"), Some(Rule::BadFiltergraph));
    }

    /// A backslash escapes exactly the one byte after it, which then stands for itself once.
    #[test]
    fn an_escape_keeps_the_escaped_byte_once() {
        assert_eq!(rule_of("settb=1\\/30"), None);
        assert_eq!(rule_of("scale=12\\80:7\\20"), None);
    }

    /// An option quoted or escaped at the options' own level still loads from a file when
    /// its unquoted text starts with `/`.
    #[test]
    fn a_slash_quoted_inside_the_options_still_loads_a_file() {
        for graph in ["volume=\\'/volume\\'=x", "volume=\\\\/volume=x"] {
            assert_eq!(rule_of(graph), Some(Rule::BadFiltergraph), "{graph}");
        }
    }
}
