//! A filtergraph written from parts, in the syntax the host's policy parses: filter names
//! and link labels are plain words, and an option value is quoted when it holds one of
//! FFmpeg's separators (`:` `,` `;` `[` `]`, quotes, backslashes or spaces), so an
//! expression such as `min(DURATION,L/TB-PTS)` stays one value.
//!
//! The builder writes the syntax; which filters and options a plan may use, and their
//! bounds, is the policy's (`blueprint-runner policy list`), and [`crate::check`] applies
//! it in a plugin's native tests.

use std::fmt;

/// One filter: `name=option=value:option=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    name: String,
    options: Vec<(String, String)>,
}

impl Filter {
    /// The filter `name` (e.g. `scale`, `hflip`) with no options yet.
    pub fn new(name: &str) -> Filter {
        Filter { name: name.to_owned(), options: Vec::new() }
    }

    /// Adds `name=value`; options are written in the order they are added.
    pub fn option(mut self, name: &str, value: impl fmt::Display) -> Filter {
        self.options.push((name.to_owned(), value.to_string()));
        self
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (index, (name, value)) in self.options.iter().enumerate() {
            let separator = if index == 0 { '=' } else { ':' };
            write!(f, "{separator}{name}={}", quoted(value))?;
        }
        Ok(())
    }
}

/// Chains of filters between labelled links, joined with `;`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filtergraph {
    chains: Vec<String>,
}

impl Filtergraph {
    /// A graph with no chains yet.
    pub fn new() -> Filtergraph {
        Filtergraph::default()
    }

    /// Adds `[in1][in2]filter,filter[out]`. Inputs are stream specifiers (`0:v`) or the
    /// labels of earlier chains' outputs.
    pub fn chain(&mut self, inputs: &[&str], filters: impl IntoIterator<Item = Filter>, outputs: &[&str]) -> &mut Self {
        let labels = |names: &[&str]| names.iter().map(|name| format!("[{name}]")).collect::<String>();
        let filters: Vec<String> = filters.into_iter().map(|filter| filter.to_string()).collect();
        self.chains.push(format!("{}{}{}", labels(inputs), filters.join(","), labels(outputs)));
        self
    }

    /// The graph as the value of `-filter_complex`.
    pub fn to_arg(&self) -> br_plan::Arg {
        br_plan::Arg::Literal(self.to_string())
    }
}

impl fmt::Display for Filtergraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chains.join(";"))
    }
}

/// FFmpeg's option quoting: inside `'...'` everything is literal except the closing
/// quote, so a quote in the value is written `'\''` (close, escaped quote, reopen).
fn quoted(value: &str) -> String {
    let plain = !value.is_empty() && !value.chars().any(|c| ":,;[]'\\ =".contains(c));
    if plain {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graph_is_written_with_labels_and_quoted_values() {
        let mut graph = Filtergraph::new();
        graph
            .chain(
                &["1:v"],
                [
                    Filter::new("trim").option("start", 1.5).option("duration", 2),
                    Filter::new("setpts").option("expr", "PTS-STARTPTS"),
                ],
                &["a"],
            )
            .chain(
                &["a", "b"],
                [Filter::new("xfade").option("transition", "fade").option("duration", 0.5).option("offset", 1.5)],
                &["v"],
            );
        assert_eq!(
            graph.to_string(),
            "[1:v]trim=start=1.5:duration=2,setpts=expr=PTS-STARTPTS[a];[a][b]xfade=transition=fade:duration=0.5:offset=1.5[v]"
        );
    }

    #[test]
    fn values_with_separators_are_quoted() {
        let filter = Filter::new("volume").option("volume", "if(lt(t,2),0.5,1)").option("eval", "frame");
        assert_eq!(filter.to_string(), "volume=volume='if(lt(t,2),0.5,1)':eval=frame");
        assert_eq!(quoted("it's"), r"'it'\''s'");
        assert_eq!(quoted(""), "''");
    }
}
