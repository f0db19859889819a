//! Where a workload file's values come from, and how a bad one is reported:
//! [`SpecError`] (file:line:column), the [`Source`] that turns a TOML span
//! into a position, and the raw value types and checks every table shares
//! (numbers, names, durations, commands).

use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use std::time::Duration;

use fleetbench::clock::parse_duration;
use fleetbench_gen::{GenSpec, Template};
use serde::Deserialize;
use toml::Spanned;

/// Width of a result window. Fixed for now; replay can re-window later.
pub const WINDOW: Duration = Duration::from_secs(1);

/// A workload file that failed to load.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("reading workload file {path}")]
    Read {
        /// The file asked for.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but says something invalid.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file, as named to the parser.
        path: String,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column (in characters) of the offending value.
        column: usize,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// A command: one string run by `sh -c`, or argv.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawCommand {
    Shell(String),
    Argv(Vec<String>),
}

/// A TOML number, integer or float.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub(crate) fn get(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

/// Where validation errors point.
pub(crate) struct Source<'a> {
    pub(crate) path: &'a str,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    pub(crate) fn error(&self, span: Range<usize>, message: impl Into<String>) -> SpecError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        SpecError::Invalid {
            path: self.path.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    pub(crate) fn duration(
        &self,
        value: &Spanned<String>,
        what: &str,
    ) -> Result<Duration, SpecError> {
        parse_duration(value.get_ref()).map_err(|e| {
            self.error(
                value.span(),
                format!(
                    "{what}: {:?} is not a duration ({e}); write it like \"30s\", \"500ms\" or \"2m\"",
                    value.get_ref()
                ),
            )
        })
    }

    /// The integer `value` if `range` holds it, else an error at its span
    /// whose message `why` writes from the value.
    pub(crate) fn int_within(
        &self,
        value: &Spanned<i64>,
        range: RangeInclusive<i64>,
        why: impl FnOnce(i64) -> String,
    ) -> Result<i64, SpecError> {
        let v = *value.get_ref();
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(self.error(value.span(), why(v)))
        }
    }

    /// A name that other parts of the file (or the log) refer to: non-empty
    /// letters, digits, '-', '_' or '.'. `what` is the table it names
    /// ("service", "op", "generator").
    pub(crate) fn plain_name(
        &self,
        name: &str,
        span: Range<usize>,
        what: &str,
    ) -> Result<(), SpecError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(self.error(
                span,
                format!("{what} name {name:?} must be non-empty letters, digits, '-', '_' or '.'"),
            ));
        }
        Ok(())
    }
}

pub(crate) fn positive(
    src: &Source,
    value: &Spanned<String>,
    what: &str,
) -> Result<Duration, SpecError> {
    let d = src.duration(value, what)?;
    if d.is_zero() {
        return Err(src.error(value.span(), format!("{what} must be longer than zero")));
    }
    Ok(d)
}

/// `n` of `noun`, for messages: "1 field", "3 fields".
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A duration in whole milliseconds, as the wire carries it (saturating).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration in whole microseconds (saturating).
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Durations in the resolved JSON, as people write them (`30s`, `1m 30s`).
pub(crate) mod duration_text {
    use serde::Serializer;
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// Compiles `text` as a template, pointing an error at `span`.
pub(crate) fn template(
    src: &Source,
    span: Range<usize>,
    text: &str,
    what: &str,
    generators: &[GenSpec],
) -> Result<(), SpecError> {
    Template::compile(text, generators)
        .map(|_| ())
        .map_err(|why| src.error(span, format!("{what}: {why}")))
}

/// A `timeout` key, `default` when left out.
pub(crate) fn timeout(
    src: &Source,
    value: Option<&Spanned<String>>,
    what: &str,
    default: Duration,
) -> Result<Duration, SpecError> {
    match value {
        Some(t) => positive(src, t, &format!("{what}: timeout")),
        None => Ok(default),
    }
}
