//! `[generator.NAME]` tables of a workload file: the raw TOML and its
//! validation into [`GenSpec`]s (the runtime types of `fleetbench-gen`). A
//! data file is read and checked here, at parse time.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use fleetbench_gen::{
    Alphabet, BUILTINS, DEFAULT_PRECISION, EXACT, GenKind, GenSpec, Length, MAX_LENGTH, Order,
    TimeFormat,
};
use serde::Deserialize;
use toml::Spanned;

use crate::data_file;
use crate::source::{Number, Source, SpecError, count};

#[cfg(test)]
mod tests;

// ---------------------------------------------------------------- raw TOML

/// One `[generator.NAME]` table as written. Which keys a kind takes is
/// checked in [`validate`], so a key of another kind is named in the error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGenerator {
    kind: Spanned<String>,
    seed: Option<Spanned<i64>>,
    start: Option<Spanned<i64>>,
    step: Option<Spanned<i64>>,
    min: Option<Spanned<RawNumber>>,
    max: Option<Spanned<RawNumber>>,
    precision: Option<Spanned<i64>>,
    n: Option<Spanned<RawNumber>>,
    exponent: Option<Spanned<RawNumber>>,
    mean: Option<Spanned<RawNumber>>,
    stddev: Option<Spanned<RawNumber>>,
    scale: Option<Spanned<RawNumber>>,
    shape: Option<Spanned<RawNumber>>,
    values: Option<Spanned<Vec<Spanned<RawScalar>>>>,
    weights: Option<Spanned<Vec<Spanned<RawNumber>>>>,
    length: Option<Spanned<RawLength>>,
    alphabet: Option<Spanned<String>>,
    chars: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    column: Option<Spanned<String>>,
    order: Option<Spanned<String>>,
    split: Option<Spanned<bool>>,
}

/// A number in a generator table: [`Number`] under another name, because
/// serde names the type in the error for a value that is neither an integer
/// nor a float ("… untagged enum RawNumber"), and error messages stay as
/// they are.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum RawNumber {
    Int(i64),
    Float(f64),
}

impl From<RawNumber> for Number {
    fn from(n: RawNumber) -> Number {
        match n {
            RawNumber::Int(i) => Number::Int(i),
            RawNumber::Float(f) => Number::Float(f),
        }
    }
}

impl RawNumber {
    fn get(self) -> f64 {
        Number::from(self).get()
    }
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawScalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl RawScalar {
    fn text(&self) -> String {
        match self {
            RawScalar::Int(i) => i.to_string(),
            RawScalar::Float(f) => f.to_string(),
            RawScalar::Bool(b) => b.to_string(),
            RawScalar::Text(s) => s.clone(),
        }
    }

    fn number(&self) -> Option<f64> {
        match *self {
            RawScalar::Int(i) => Some(i as f64),
            RawScalar::Float(f) => Some(f),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawLength {
    Scalar(RawScalar),
    Table(BTreeMap<String, RawScalar>),
}

impl RawGenerator {
    /// The keys present besides `kind` and `seed`, with their spans.
    fn present(&self) -> Vec<(&'static str, Range<usize>)> {
        let mut keys = Vec::new();
        macro_rules! keys {
            ($($key:ident),*) => {$(
                if let Some(v) = &self.$key {
                    keys.push((stringify!($key), v.span()));
                }
            )*};
        }
        keys!(
            start, step, min, max, precision, n, exponent, mean, stddev, scale, shape, values,
            weights, length, alphabet, chars, format, file, column, order, split
        );
        keys
    }
}

// ---------------------------------------------------------------- validation

/// The kinds and the keys each takes (besides `kind` and `seed`).
const KINDS: &[(&str, &[&str])] = &[
    ("sequence", &["start", "step"]),
    ("uniform", &["min", "max", "precision"]),
    ("uniform_int", &["min", "max"]),
    ("uniform_float", &["min", "max", "precision"]),
    ("zipf", &["n", "exponent"]),
    ("normal", &["mean", "stddev", "precision"]),
    ("exponential", &["mean", "precision"]),
    ("pareto", &["scale", "shape", "precision"]),
    ("choice", &["values", "weights"]),
    ("string", &["length", "alphabet", "chars"]),
    ("bytes", &["length"]),
    ("uuid", &[]),
    ("timestamp", &["format"]),
    ("file", &["file", "column", "order", "split"]),
];

/// The top-level `generator` key of a workload file: its `[generator.NAME]`
/// tables by name (a `Spanned` key points errors at the table header).
pub(crate) type RawGenerators = BTreeMap<Spanned<String>, RawGenerator>;

/// Validates every `[generator.NAME]` table, in name order (the order
/// templates are compiled against and `WorkerGen`s are built from).
/// `base_dir` is the workload file's directory, against which a data
/// file's path is resolved.
pub(crate) fn validate_all(
    src: &Source,
    raw: RawGenerators,
    base_dir: &Path,
) -> Result<Vec<GenSpec>, SpecError> {
    raw.into_iter()
        .map(|(name, g)| validate(src, &name, &g, base_dir))
        .collect()
}

/// Validates one `[generator.NAME]` table. `name` is the table's key (its
/// span points at the header). The data file is read here.
fn validate(
    src: &Source,
    name: &Spanned<String>,
    raw: &RawGenerator,
    base_dir: &Path,
) -> Result<GenSpec, SpecError> {
    let gname = name.get_ref();
    src.plain_name(gname, name.span(), "generator")?;
    if BUILTINS.contains(&gname.as_str()) {
        return Err(src.error(
            name.span(),
            format!(
                "generator name {gname:?} is built in ({{{{{gname}}}}} is always there); pick another name"
            ),
        ));
    }
    let t = Table {
        src,
        name,
        kind: raw.kind.get_ref(),
        raw,
    };
    t.check_keys()?;
    let seed = match &raw.seed {
        Some(s) => Some(src.int_within(s, 0..=i64::MAX, |v| {
            t.says(format!("seed must be zero or more, not {v}"))
        })? as u64),
        None => None,
    };
    let precision = match &raw.precision {
        Some(p) => src.int_within(p, 0..=12, |v| {
            t.says(format!(
                "precision must be 0 to 12 digits after the point, not {v}"
            ))
        })? as u32,
        None => DEFAULT_PRECISION,
    };
    let kind = match t.kind {
        "sequence" => t.sequence()?,
        "uniform" | "uniform_int" | "uniform_float" => t.uniform(precision)?,
        "zipf" => t.zipf()?,
        "normal" => t.normal(precision)?,
        "exponential" => GenKind::Exponential {
            mean: t.positive(t.required(&raw.mean, "mean", "mean = 100")?, "mean")?,
            precision,
        },
        "pareto" => GenKind::Pareto {
            scale: t.positive(t.required(&raw.scale, "scale", "scale = 1")?, "scale")?,
            shape: t.positive(t.required(&raw.shape, "shape", "shape = 1.5")?, "shape")?,
            precision,
        },
        "choice" => t.choice()?,
        "string" | "bytes" => t.string_or_bytes()?,
        "uuid" => GenKind::Uuid,
        "timestamp" => t.timestamp()?,
        "file" => t.file(base_dir)?,
        _ => unreachable!("check_keys accepts only the names of KINDS"),
    };
    Ok(GenSpec {
        name: gname.clone(),
        kind,
        seed,
    })
}

/// One generator table under validation: its errors say
/// `generator "NAME": ...`.
struct Table<'a> {
    src: &'a Source<'a>,
    name: &'a Spanned<String>,
    kind: &'a str,
    raw: &'a RawGenerator,
}

impl Table<'_> {
    fn says(&self, msg: String) -> String {
        format!("generator {:?}: {msg}", self.name.get_ref())
    }

    fn at(&self, span: Range<usize>, msg: String) -> SpecError {
        self.src.error(span, self.says(msg))
    }

    /// `key`, which this kind needs; its absence is reported at the table's
    /// header with an example.
    fn required<'v, T>(
        &self,
        value: &'v Option<Spanned<T>>,
        key: &str,
        example: &str,
    ) -> Result<&'v Spanned<T>, SpecError> {
        value.as_ref().ok_or_else(|| {
            self.at(
                self.name.span(),
                format!("{} needs `{key}`, like {example}", self.kind),
            )
        })
    }

    /// The kind is known, and every key present is one it takes.
    fn check_keys(&self) -> Result<(), SpecError> {
        let kind = self.kind;
        let Some((_, takes)) = KINDS.iter().find(|(k, _)| *k == kind) else {
            let known: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
            return Err(self.at(
                self.raw.kind.span(),
                format!(
                    "unknown kind {kind:?}; expected one of: {}",
                    known.join(", ")
                ),
            ));
        };
        for (key, span) in self.raw.present() {
            if !takes.contains(&key) {
                return Err(self.at(
                    span,
                    format!(
                        "{kind} does not take `{key}`; it takes {}",
                        if takes.is_empty() {
                            "no keys but `seed`".to_string()
                        } else {
                            takes
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                                + " (and `seed`)"
                        }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An integer that travels exactly as a double.
    fn exact(&self, v: &Spanned<i64>, key: &str) -> Result<i64, SpecError> {
        self.src.int_within(v, -EXACT..=EXACT, |x| {
            self.says(format!("{key} must be between -2^53 and 2^53, not {x}"))
        })
    }

    fn finite(&self, v: &Spanned<RawNumber>, key: &str) -> Result<f64, SpecError> {
        let x = v.get_ref().get();
        if !x.is_finite() {
            return Err(self.at(v.span(), format!("{key} must be a finite number, not {x}")));
        }
        Ok(x)
    }

    fn positive(&self, v: &Spanned<RawNumber>, key: &str) -> Result<f64, SpecError> {
        let x = self.finite(v, key)?;
        if x <= 0.0 {
            return Err(self.at(v.span(), format!("{} needs {key} > 0, not {x}", self.kind)));
        }
        Ok(x)
    }

    fn sequence(&self) -> Result<GenKind, SpecError> {
        let raw = self.raw;
        let start = raw
            .start
            .as_ref()
            .map_or(Ok(0), |v| self.exact(v, "start"))?;
        let step = raw.step.as_ref().map_or(Ok(1), |v| self.exact(v, "step"))?;
        if step == 0 {
            let span = raw.step.as_ref().map_or(self.name.span(), Spanned::span);
            return Err(self.at(span, "sequence needs a step other than 0".into()));
        }
        Ok(GenKind::Sequence { start, step })
    }

    /// `uniform` draws integers when both bounds are and no precision is
    /// given; `uniform_int` and `uniform_float` say which.
    fn uniform(&self, precision: u32) -> Result<GenKind, SpecError> {
        let raw = self.raw;
        let min = self.required(&raw.min, "min", "min = 1")?;
        let max = self.required(&raw.max, "max", "max = 100")?;
        let ints = matches!(
            (min.get_ref(), max.get_ref()),
            (RawNumber::Int(_), RawNumber::Int(_))
        );
        let min_le_max = |lo: &dyn std::fmt::Display, hi: &dyn std::fmt::Display| {
            self.at(
                max.span(),
                format!("uniform needs min <= max, not min {lo} and max {hi}"),
            )
        };
        if self.kind == "uniform_int" || (self.kind == "uniform" && ints && raw.precision.is_none())
        {
            let whole = |v: &Spanned<RawNumber>, key: &str| match *v.get_ref() {
                RawNumber::Int(i) => self.exact(&Spanned::new(v.span(), i), key),
                RawNumber::Float(f) => Err(self.at(
                    v.span(),
                    format!("uniform_int needs a whole {key}, not {f}"),
                )),
            };
            let (lo, hi) = (whole(min, "min")?, whole(max, "max")?);
            if lo > hi {
                return Err(min_le_max(&lo, &hi));
            }
            Ok(GenKind::UniformInt { min: lo, max: hi })
        } else {
            let (lo, hi) = (self.finite(min, "min")?, self.finite(max, "max")?);
            if lo > hi {
                return Err(min_le_max(&lo, &hi));
            }
            Ok(GenKind::UniformFloat {
                min: lo,
                max: hi,
                precision,
            })
        }
    }

    fn zipf(&self) -> Result<GenKind, SpecError> {
        let n = self.required(&self.raw.n, "n", "n = 1000 (values 1 to n)")?;
        let nv = n.get_ref().get();
        if !(nv >= 1.0 && nv <= EXACT as f64 && nv.fract() == 0.0) {
            return Err(self.at(
                n.span(),
                format!("zipf needs n >= 1, a whole number up to 2^53, not {nv}"),
            ));
        }
        let exponent = match &self.raw.exponent {
            Some(e) => self.positive(e, "exponent")?,
            None => 1.0,
        };
        Ok(GenKind::Zipf {
            n: nv as u64,
            exponent,
        })
    }

    fn normal(&self, precision: u32) -> Result<GenKind, SpecError> {
        let mean = self.finite(self.required(&self.raw.mean, "mean", "mean = 100")?, "mean")?;
        let sd = self.required(&self.raw.stddev, "stddev", "stddev = 15")?;
        let stddev = self.finite(sd, "stddev")?;
        if stddev < 0.0 {
            return Err(self.at(sd.span(), format!("normal needs stddev >= 0, not {stddev}")));
        }
        Ok(GenKind::Normal {
            mean,
            stddev,
            precision,
        })
    }

    fn choice(&self) -> Result<GenKind, SpecError> {
        let vals = self.required(&self.raw.values, "values", "values = [\"GET\", \"PUT\"]")?;
        if vals.get_ref().is_empty() {
            return Err(self.at(vals.span(), "choice needs at least one value".into()));
        }
        let values: Vec<String> = vals.get_ref().iter().map(|v| v.get_ref().text()).collect();
        let weights = match &self.raw.weights {
            None => Vec::new(),
            Some(w) => self.choice_weights(w, values.len())?,
        };
        Ok(GenKind::Choice { values, weights })
    }

    /// One weight `>= 0` per value, not all zero.
    fn choice_weights(
        &self,
        w: &Spanned<Vec<Spanned<RawNumber>>>,
        values: usize,
    ) -> Result<Vec<f64>, SpecError> {
        if w.get_ref().len() != values {
            return Err(self.at(
                w.span(),
                format!(
                    "choice has {} but {}; give one weight per value",
                    count(values, "value"),
                    count(w.get_ref().len(), "weight")
                ),
            ));
        }
        let mut ws = Vec::new();
        for x in w.get_ref() {
            let v = x.get_ref().get();
            if !v.is_finite() || v < 0.0 {
                return Err(self.at(x.span(), format!("a weight must be a number >= 0, not {v}")));
            }
            ws.push(v);
        }
        if ws.iter().sum::<f64>() <= 0.0 {
            return Err(self.at(
                w.span(),
                "the weights add up to 0; give at least one a weight above 0".into(),
            ));
        }
        Ok(ws)
    }

    fn string_or_bytes(&self) -> Result<GenKind, SpecError> {
        let raw = self.raw;
        let l = self.required(
            &raw.length,
            "length",
            "length = 16 or length = { min = 8, max = 32 }",
        )?;
        let length =
            validate_length(l.get_ref()).map_err(|m| self.at(l.span(), format!("length {m}")))?;
        if self.kind == "bytes" {
            return Ok(GenKind::Bytes { length });
        }
        let alphabet = match (&raw.alphabet, &raw.chars) {
            (Some(a), None) => Alphabet::from_name(a.get_ref()).ok_or_else(|| {
                self.at(
                    a.span(),
                    format!(
                        "unknown alphabet {:?}; expected {}, or `chars = \"...\"` for your own",
                        a.get_ref(),
                        Alphabet::NAMES
                    ),
                )
            })?,
            (None, Some(c)) if c.get_ref().is_empty() => {
                return Err(self.at(c.span(), "chars must hold at least one character".into()));
            }
            (None, Some(c)) => Alphabet::Custom(c.get_ref().chars().collect()),
            (Some(a), Some(_)) => {
                return Err(self.at(
                    a.span(),
                    "string takes `alphabet` or `chars`, not both".into(),
                ));
            }
            (None, None) => Alphabet::Alnum,
        };
        Ok(GenKind::String { length, alphabet })
    }

    fn timestamp(&self) -> Result<GenKind, SpecError> {
        let format = match &self.raw.format {
            Some(f) => TimeFormat::from_name(f.get_ref()).ok_or_else(|| {
                self.at(
                    f.span(),
                    format!(
                        "unknown format {:?}; expected {}",
                        f.get_ref(),
                        TimeFormat::NAMES
                    ),
                )
            })?,
            None => TimeFormat::Rfc3339,
        };
        Ok(GenKind::Timestamp { format })
    }

    /// A data file, read now: a CSV column or its lines.
    fn file(&self, base_dir: &Path) -> Result<GenKind, SpecError> {
        let raw = self.raw;
        let f = self.required(
            &raw.file,
            "file",
            "file = \"keys.csv\" (relative to the workload file)",
        )?;
        let order = match &raw.order {
            Some(o) => match o.get_ref().as_str() {
                "sequential" => Order::Sequential,
                "random" => Order::Random,
                other => {
                    return Err(self.at(
                        o.span(),
                        format!("unknown order {other:?}; expected sequential or random"),
                    ));
                }
            },
            None => Order::Sequential,
        };
        let path = f.get_ref().clone();
        if path.trim().is_empty() {
            return Err(self.at(f.span(), "file must name a data file".into()));
        }
        let column = raw.column.as_ref().map(|c| c.get_ref().clone());
        if column.is_none() && path.to_ascii_lowercase().ends_with(".csv") {
            return Err(self.at(
                f.span(),
                format!(
                    "{path:?} looks like CSV: name the column with `column = \"NAME\"` (a file without `column` is read as lines)"
                ),
            ));
        }
        let rows = data_file::load(&base_dir.join(&path), &path, column.as_deref()).map_err(
            |e| match e {
                data_file::FileError::File(m) => self.at(f.span(), m),
                data_file::FileError::Column(m) => {
                    self.at(raw.column.as_ref().map_or(f.span(), Spanned::span), m)
                }
            },
        )?;
        Ok(GenKind::File {
            path,
            column,
            order,
            split: raw.split.as_ref().is_some_and(|s| *s.get_ref()),
            rows,
        })
    }
}

fn validate_length(raw: &RawLength) -> Result<Length, String> {
    let max = f64::from(MAX_LENGTH);
    let count = |v: &RawScalar, key: &str| -> Result<u32, String> {
        match v.number() {
            Some(x) if x >= 0.0 && x <= max && x.fract() == 0.0 => Ok(x as u32),
            _ => Err(format!(
                "{key} must be a whole number from 0 to {MAX_LENGTH}, not {}",
                v.text()
            )),
        }
    };
    let real = |v: &RawScalar, key: &str| -> Result<f64, String> {
        match v.number() {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(format!("{key} must be a number >= 0, not {}", v.text())),
        }
    };
    const FORMS: &str = "write 16, { min = 8, max = 32 }, { dist = \"normal\", mean = 100, stddev = 20 } or { dist = \"exponential\", mean = 100 }";
    match raw {
        RawLength::Scalar(s) => Ok(Length::Fixed(
            count(s, "length").map_err(|e| format!("{e}; {FORMS}"))?,
        )),
        RawLength::Table(t) => {
            let dist = match t.get("dist") {
                None => "uniform".to_string(),
                Some(RawScalar::Text(d)) => d.clone(),
                Some(other) => {
                    return Err(format!(
                        "dist must be a name, not {}; {FORMS}",
                        other.text()
                    ));
                }
            };
            let takes: &[&str] = match dist.as_str() {
                "uniform" => &["dist", "min", "max"],
                "normal" => &["dist", "mean", "stddev"],
                "exponential" => &["dist", "mean"],
                other => {
                    return Err(format!(
                        "has unknown dist {other:?}; expected uniform, normal or exponential"
                    ));
                }
            };
            if let Some(k) = t.keys().find(|k| !takes.contains(&k.as_str())) {
                return Err(format!("{dist} does not take `{k}`; {FORMS}"));
            }
            let get = |k: &str| {
                t.get(k)
                    .ok_or_else(|| format!("{dist} needs `{k}`; {FORMS}"))
            };
            Ok(match dist.as_str() {
                "uniform" => {
                    let (min, max) = (count(get("min")?, "min")?, count(get("max")?, "max")?);
                    if min > max {
                        return Err(format!("needs min <= max, not min {min} and max {max}"));
                    }
                    Length::Uniform { min, max }
                }
                "normal" => Length::Normal {
                    mean: real(get("mean")?, "mean")?,
                    stddev: real(get("stddev")?, "stddev")?,
                },
                _ => Length::Exponential {
                    mean: real(get("mean")?, "mean")?,
                },
            })
        }
    }
}
