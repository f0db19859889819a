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
    pub name: String,
    pub kind: GenKind,
    /// Its own seed; `None`: the run's.
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GenKind {
    /// `start`, `start + step`, … (interleaved across lanes, see the module doc).
    Sequence {
        start: i64,
        step: i64,
    },
    /// Integers in `min..=max`, uniform.
    UniformInt {
        min: i64,
        max: i64,
    },
    /// Reals in `[min, max)`, uniform, printed with `precision` digits.
    UniformFloat {
        min: f64,
        max: f64,
        precision: u32,
    },
    /// Integers in `1..=n`, `P(k) ∝ k^-exponent`: 1 is the most frequent.
    Zipf {
        n: u64,
        exponent: f64,
    },
    Normal {
        mean: f64,
        stddev: f64,
        precision: u32,
    },
    Exponential {
        mean: f64,
        precision: u32,
    },
    /// `scale · U^(-1/shape)`: at least `scale`, heavy-tailed.
    Pareto {
        scale: f64,
        shape: f64,
        precision: u32,
    },
    /// One of `values`; `weights` empty: all equally likely.
    Choice {
        values: Vec<String>,
        weights: Vec<f64>,
    },
    String {
        length: Length,
        alphabet: Alphabet,
    },
    /// Raw random bytes (not text: for bodies).
    Bytes {
        length: Length,
    },
    /// A version 4 UUID from the generator's stream.
    Uuid,
    /// The current time.
    Timestamp {
        format: TimeFormat,
    },
    /// Rows of a data file.
    File {
        /// As written in the workload file.
        path: String,
        /// The CSV column; `None`: a file of lines.
        column: Option<String>,
        order: Order,
        split: bool,
        rows: Rows,
    },
}

/// How many characters (or bytes) a `string` (or `bytes`) generator draws.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Length {
    Fixed(u32),
    Uniform {
        min: u32,
        max: u32,
    },
    /// Rounded and clamped to `0..=MAX_LENGTH`.
    Normal {
        mean: f64,
        stddev: f64,
    },
    /// Rounded and clamped to `0..=MAX_LENGTH`.
    Exponential {
        mean: f64,
    },
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    UnixS,
    UnixMs,
    UnixUs,
    /// `2026-11-29T22:13:02.123Z`.
    Rfc3339,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Sequential,
    Random,
}

impl Alphabet {
    pub const NAMES: &str = "alnum, alpha, hex or numeric";

    pub fn from_name(name: &str) -> Option<Alphabet> {
        Some(match name {
            "alnum" => Alphabet::Alnum,
            "alpha" => Alphabet::Alpha,
            "hex" => Alphabet::Hex,
            "numeric" => Alphabet::Numeric,
            _ => return None,
        })
    }

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
    pub const NAMES: &str = "unix_s, unix_ms, unix_us or rfc3339";

    pub fn from_name(name: &str) -> Option<TimeFormat> {
        Some(match name {
            "unix_s" => TimeFormat::UnixS,
            "unix_ms" => TimeFormat::UnixMs,
            "unix_us" => TimeFormat::UnixUs,
            "rfc3339" => TimeFormat::Rfc3339,
            _ => return None,
        })
    }

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
