//! The generators' domain types: a validated [`GenSpec`] per
//! `[generator.NAME]` table, as the coordinator builds it from the workload
//! file and the agent rebuilds it from the wire.

use serde::Serialize;

use crate::rng::Rng;
use crate::rows::Rows;

/// Names a template may use without a generator: the agent index, the worker
/// index (within the agent), the worker's iteration number.
pub const BUILTINS: [&str; 3] = ["agent", "worker", "iteration"];

/// Digits after the point of floating-point generators, unless set.
pub const DEFAULT_PRECISION: u32 = 3;

/// Longest string or byte run a `string` / `bytes` generator draws.
pub const MAX_LENGTH: u32 = 1 << 20;

/// Integers travel as doubles on the wire: keep them exact.
pub const EXACT: i64 = 1 << 53;

/// A validated generator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenSpec {
    /// The table's name: `{{name}}` in a template draws from it.
    pub name: String,
    /// What it draws.
    pub kind: GenKind,
    /// Its own seed; `None`: the run's.
    pub seed: Option<u64>,
}

/// The kinds of generator and their parameters (as validated: bounds
/// ordered, counts in range).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GenKind {
    /// `start`, `start + step`, … (interleaved across lanes, see the module doc).
    Sequence {
        /// The first value (within ±2^53).
        start: i64,
        /// The difference between values, not 0 (within ±2^53).
        step: i64,
    },
    /// Integers in `min..=max`, uniform.
    UniformInt {
        /// The lowest value (within ±2^53).
        min: i64,
        /// The highest value, `>= min` (within ±2^53).
        max: i64,
    },
    /// Reals in `[min, max)`, uniform, printed with `precision` digits.
    UniformFloat {
        /// The lower bound, included.
        min: f64,
        /// The upper bound, `>= min`.
        max: f64,
        /// Digits after the point, 0 to 12.
        precision: u32,
    },
    /// Integers in `1..=n`, `P(k) ∝ k^-exponent`: 1 is the most frequent.
    Zipf {
        /// The largest value, at least 1 (up to 2^53).
        n: u64,
        /// Skew, above 0: the larger, the more often the small values.
        exponent: f64,
    },
    /// Reals from a normal distribution.
    Normal {
        /// The distribution's mean.
        mean: f64,
        /// Its standard deviation, `>= 0`.
        stddev: f64,
        /// Digits after the point, 0 to 12.
        precision: u32,
    },
    /// Reals `>= 0` from an exponential distribution.
    Exponential {
        /// The distribution's mean, above 0.
        mean: f64,
        /// Digits after the point, 0 to 12.
        precision: u32,
    },
    /// `scale · U^(-1/shape)`: at least `scale`, heavy-tailed.
    Pareto {
        /// The smallest value, above 0.
        scale: f64,
        /// The tail index, above 0: the smaller, the heavier the tail.
        shape: f64,
        /// Digits after the point, 0 to 12.
        precision: u32,
    },
    /// One of `values`; `weights` empty: all equally likely.
    Choice {
        /// At least one, rendered as written.
        values: Vec<String>,
        /// One per value, `>= 0`, not all 0; or empty.
        weights: Vec<f64>,
    },
    /// Random text.
    String {
        /// Characters per value.
        length: Length,
        /// Which characters.
        alphabet: Alphabet,
    },
    /// Raw random bytes (not text: for bodies).
    Bytes {
        /// Bytes per value.
        length: Length,
    },
    /// A version 4 UUID from the generator's stream.
    Uuid,
    /// The current time.
    Timestamp {
        /// How it is written.
        format: TimeFormat,
    },
    /// Rows of a data file.
    File {
        /// As written in the workload file.
        path: String,
        /// The CSV column; `None`: a file of lines.
        column: Option<String>,
        /// How a worker walks the rows.
        order: Order,
        /// Each agent holds only its own contiguous slice of the rows.
        split: bool,
        /// The rows this side holds: the whole file on the coordinator, an
        /// agent's slice (when split) on the agent.
        rows: Rows,
    },
}

/// How many characters (or bytes) a `string` (or `bytes`) generator draws.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Length {
    /// Always this many (at most [`MAX_LENGTH`]).
    Fixed(u32),
    /// Uniform in `min..=max` (at most [`MAX_LENGTH`]).
    Uniform {
        /// The fewest.
        min: u32,
        /// The most, `>= min`.
        max: u32,
    },
    /// Rounded and clamped to `0..=MAX_LENGTH`.
    Normal {
        /// The distribution's mean.
        mean: f64,
        /// Its standard deviation.
        stddev: f64,
    },
    /// Rounded and clamped to `0..=MAX_LENGTH`.
    Exponential {
        /// The distribution's mean.
        mean: f64,
    },
}

/// The characters a `string` generator draws from, each equally likely.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Alphabet {
    /// `A-Z a-z 0-9`.
    Alnum,
    /// `A-Z a-z`.
    Alpha,
    /// `0-9 a-f`.
    Hex,
    /// `0-9`.
    Numeric,
    /// These characters, each equally likely.
    Custom(Vec<char>),
}

/// How a `timestamp` generator writes the current time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// Whole seconds since the Unix epoch.
    UnixS,
    /// Whole milliseconds since the Unix epoch.
    UnixMs,
    /// Whole microseconds since the Unix epoch.
    UnixUs,
    /// `2026-11-29T22:13:02.123Z`.
    Rfc3339,
}

/// How a `file` generator walks its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Worker `w` of `W` takes rows `w, w+W, w+2W, …`, wrapping around.
    Sequential,
    /// Rows drawn uniformly, with replacement.
    Random,
}

impl Alphabet {
    /// The named alphabets, as an error message lists them.
    pub const NAMES: &str = "alnum, alpha, hex or numeric";

    /// A named alphabet; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Alphabet> {
        Some(match name {
            "alnum" => Alphabet::Alnum,
            "alpha" => Alphabet::Alpha,
            "hex" => Alphabet::Hex,
            "numeric" => Alphabet::Numeric,
            _ => return None,
        })
    }

    /// The alphabet's name (`custom` for [`Alphabet::Custom`]).
    pub fn name(&self) -> &'static str {
        match self {
            Alphabet::Alnum => "alnum",
            Alphabet::Alpha => "alpha",
            Alphabet::Hex => "hex",
            Alphabet::Numeric => "numeric",
            Alphabet::Custom(_) => "custom",
        }
    }

    pub(crate) fn chars(&self) -> Vec<char> {
        let s = match self {
            Alphabet::Alnum => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            Alphabet::Alpha => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            Alphabet::Hex => "0123456789abcdef",
            Alphabet::Numeric => "0123456789",
            Alphabet::Custom(c) => return c.clone(),
        };
        s.chars().collect()
    }
}

impl TimeFormat {
    /// The format names, as an error message lists them.
    pub const NAMES: &str = "unix_s, unix_ms, unix_us or rfc3339";

    /// A format by name; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<TimeFormat> {
        Some(match name {
            "unix_s" => TimeFormat::UnixS,
            "unix_ms" => TimeFormat::UnixMs,
            "unix_us" => TimeFormat::UnixUs,
            "rfc3339" => TimeFormat::Rfc3339,
            _ => return None,
        })
    }

    /// The format's name, as a workload file writes it.
    pub fn name(self) -> &'static str {
        match self {
            TimeFormat::UnixS => "unix_s",
            TimeFormat::UnixMs => "unix_ms",
            TimeFormat::UnixUs => "unix_us",
            TimeFormat::Rfc3339 => "rfc3339",
        }
    }
}

impl Length {
    pub(crate) fn sample(&self, rng: &mut Rng) -> usize {
        let v = match *self {
            Length::Fixed(n) => return n as usize,
            Length::Uniform { min, max } => {
                return min as usize + below(rng, u64::from(max - min) + 1) as usize;
            }
            Length::Normal { mean, stddev } => mean + stddev * rng.next_normal(),
            Length::Exponential { mean } => -mean * (1.0 - rng.next_f64()).ln(),
        };
        v.round().clamp(0.0, f64::from(MAX_LENGTH)) as usize
    }
}

/// Uniform in `0..span` (`span > 0`), by Lemire's multiply-shift (the bias is
/// below 2^-64 · span: nothing a benchmark can see).
pub(crate) fn below(rng: &mut Rng, span: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(span)) >> 64) as u64
}
