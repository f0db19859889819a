//! The generators' wire form: a [`GenSpec`] as agent `i` of `n` receives it
//! in `StartPhase`, and back.

use fleetbench::pb;

use crate::rows::Rows;
use crate::spec::{Alphabet, EXACT, GenKind, GenSpec, Length, MAX_LENGTH, Order, TimeFormat};

// ---------------------------------------------------------------- wire form

impl GenSpec {
    /// The generator as agent `agent_index` of `agent_count` receives it. A
    /// split file sends only that agent's rows: the contiguous slice
    /// `[len·i/count, len·(i+1)/count)`, so slices are disjoint and cover the
    /// file.
    pub fn to_pb(&self, agent_index: u32, agent_count: u32) -> pb::Generator {
        let mut g = pb::Generator {
            name: self.name.clone(),
            seed: self.seed.unwrap_or(0),
            has_seed: self.seed.is_some(),
            ..Default::default()
        };
        let mut params: Vec<(&str, f64)> = Vec::new();
        let kind = match &self.kind {
            GenKind::Sequence { start, step } => {
                params = vec![("start", *start as f64), ("step", *step as f64)];
                "sequence"
            }
            GenKind::UniformInt { min, max } => {
                params = vec![("min", *min as f64), ("max", *max as f64)];
                "uniform_int"
            }
            GenKind::UniformFloat {
                min,
                max,
                precision,
            } => {
                params = vec![
                    ("min", *min),
                    ("max", *max),
                    ("precision", f64::from(*precision)),
                ];
                "uniform_float"
            }
            GenKind::Zipf { n, exponent } => {
                params = vec![("n", *n as f64), ("exponent", *exponent)];
                "zipf"
            }
            GenKind::Normal {
                mean,
                stddev,
                precision,
            } => {
                params = vec![
                    ("mean", *mean),
                    ("stddev", *stddev),
                    ("precision", f64::from(*precision)),
                ];
                "normal"
            }
            GenKind::Exponential { mean, precision } => {
                params = vec![("mean", *mean), ("precision", f64::from(*precision))];
                "exponential"
            }
            GenKind::Pareto {
                scale,
                shape,
                precision,
            } => {
                params = vec![
                    ("scale", *scale),
                    ("shape", *shape),
                    ("precision", f64::from(*precision)),
                ];
                "pareto"
            }
            GenKind::Choice { values, weights } => {
                g.values = values.clone();
                g.weights = weights.clone();
                "choice"
            }
            GenKind::String { length, alphabet } => {
                length_params(length, &mut params);
                g.text = match alphabet {
                    Alphabet::Custom(c) => c.iter().collect(),
                    named => named.name().to_string(),
                };
                params.push((
                    "custom",
                    f64::from(u8::from(matches!(alphabet, Alphabet::Custom(_)))),
                ));
                "string"
            }
            GenKind::Bytes { length } => {
                length_params(length, &mut params);
                "bytes"
            }
            GenKind::Uuid => "uuid",
            GenKind::Timestamp { format } => {
                g.text = format.name().to_string();
                "timestamp"
            }
            GenKind::File {
                path,
                column,
                order,
                split,
                rows,
            } => {
                let len = rows.len();
                let (lo, hi) = if *split {
                    let count = agent_count.max(1) as usize;
                    let i = (agent_index as usize).min(count - 1);
                    (len * i / count, len * (i + 1) / count)
                } else {
                    (0, len)
                };
                g.values = (lo..hi).map(|i| rows.get(i).to_string()).collect();
                g.text = path.clone();
                params = vec![
                    ("random", f64::from(u8::from(*order == Order::Random))),
                    ("split", f64::from(u8::from(*split))),
                ];
                // The column is not sent: the rows are its values already,
                // and the agent's `GenSpec` has `column: None`.
                let _ = column;
                "file"
            }
        };
        g.kind = kind.to_string();
        g.params = params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        g
    }

    /// A generator from the wire, checked as the parser checks it (but
    /// without positions: the coordinator sent it).
    pub fn from_pb(g: &pb::Generator) -> Result<GenSpec, String> {
        let what = format!("generator {:?}", g.name);
        let param = |key: &str| -> Result<f64, String> {
            match g.params.get(key) {
                Some(v) if v.is_finite() => Ok(*v),
                Some(v) => Err(format!("{what}: {key} is {v}")),
                None => Err(format!("{what}: {} without `{key}`", g.kind)),
            }
        };
        let int = |key: &str| -> Result<i64, String> {
            let v = param(key)?;
            if v.fract() != 0.0 || v.abs() > EXACT as f64 {
                return Err(format!(
                    "{what}: {key} {v} is not a whole number within 2^53"
                ));
            }
            Ok(v as i64)
        };
        let precision = || -> Result<u32, String> {
            match int("precision")? {
                p @ 0..=12 => Ok(p as u32),
                p => Err(format!("{what}: precision {p} is not 0 to 12")),
            }
        };
        let length = || -> Result<Length, String> {
            let l = match int("len_dist")? {
                0 => Length::Fixed(int("len_fixed")?.clamp(0, MAX_LENGTH.into()) as u32),
                1 => {
                    let (min, max) = (int("len_min")?, int("len_max")?);
                    if !(0 <= min && min <= max && max <= MAX_LENGTH.into()) {
                        return Err(format!("{what}: length {min}..{max}"));
                    }
                    Length::Uniform {
                        min: min as u32,
                        max: max as u32,
                    }
                }
                2 => Length::Normal {
                    mean: param("len_mean")?,
                    stddev: param("len_stddev")?,
                },
                3 => Length::Exponential {
                    mean: param("len_mean")?,
                },
                d => return Err(format!("{what}: unknown length dist {d}")),
            };
            Ok(l)
        };
        let positive = |key: &str| -> Result<f64, String> {
            let v = param(key)?;
            if v <= 0.0 {
                return Err(format!("{what}: {key} must be > 0, not {v}"));
            }
            Ok(v)
        };
        let kind = match g.kind.as_str() {
            "sequence" => GenKind::Sequence {
                start: int("start")?,
                step: int("step")?,
            },
            "uniform_int" => {
                let (min, max) = (int("min")?, int("max")?);
                if min > max {
                    return Err(format!("{what}: min {min} > max {max}"));
                }
                GenKind::UniformInt { min, max }
            }
            "uniform_float" => {
                let (min, max) = (param("min")?, param("max")?);
                if min > max {
                    return Err(format!("{what}: min {min} > max {max}"));
                }
                GenKind::UniformFloat {
                    min,
                    max,
                    precision: precision()?,
                }
            }
            "zipf" => {
                let n = int("n")?;
                if n < 1 {
                    return Err(format!("{what}: zipf n {n} < 1"));
                }
                GenKind::Zipf {
                    n: n as u64,
                    exponent: positive("exponent")?,
                }
            }
            "normal" => {
                let stddev = param("stddev")?;
                if stddev < 0.0 {
                    return Err(format!("{what}: stddev {stddev} < 0"));
                }
                GenKind::Normal {
                    mean: param("mean")?,
                    stddev,
                    precision: precision()?,
                }
            }
            "exponential" => GenKind::Exponential {
                mean: positive("mean")?,
                precision: precision()?,
            },
            "pareto" => GenKind::Pareto {
                scale: positive("scale")?,
                shape: positive("shape")?,
                precision: precision()?,
            },
            "choice" => {
                if g.values.is_empty() {
                    return Err(format!("{what}: choice without values"));
                }
                if !g.weights.is_empty()
                    && (g.weights.len() != g.values.len()
                        || g.weights.iter().any(|w| !w.is_finite() || *w < 0.0)
                        || g.weights.iter().sum::<f64>() <= 0.0)
                {
                    return Err(format!("{what}: bad weights {:?}", g.weights));
                }
                GenKind::Choice {
                    values: g.values.clone(),
                    weights: g.weights.clone(),
                }
            }
            "string" => {
                let alphabet = if int("custom")? == 1 {
                    if g.text.is_empty() {
                        return Err(format!("{what}: empty alphabet"));
                    }
                    Alphabet::Custom(g.text.chars().collect())
                } else {
                    Alphabet::from_name(&g.text)
                        .ok_or_else(|| format!("{what}: unknown alphabet {:?}", g.text))?
                };
                GenKind::String {
                    length: length()?,
                    alphabet,
                }
            }
            "bytes" => GenKind::Bytes { length: length()? },
            "uuid" => GenKind::Uuid,
            "timestamp" => GenKind::Timestamp {
                format: TimeFormat::from_name(&g.text)
                    .ok_or_else(|| format!("{what}: unknown format {:?}", g.text))?,
            },
            "file" => {
                if g.values.is_empty() {
                    return Err(format!("{what}: no rows of {:?} for this agent", g.text));
                }
                GenKind::File {
                    path: g.text.clone(),
                    column: None,
                    order: if int("random")? == 1 {
                        Order::Random
                    } else {
                        Order::Sequential
                    },
                    split: int("split")? == 1,
                    rows: Rows::new(&g.values),
                }
            }
            other => return Err(format!("{what}: unknown kind {other:?}")),
        };
        Ok(GenSpec {
            name: g.name.clone(),
            kind,
            seed: g.has_seed.then_some(g.seed),
        })
    }

    /// Whether a split data file has at least one row for each of
    /// `agent_count` agents. The error reads after a position, like the
    /// parser's.
    pub fn check_split(&self, agent_count: u32) -> Result<(), String> {
        match &self.kind {
            GenKind::File {
                path,
                split: true,
                rows,
                ..
            } if rows.len() < agent_count as usize => Err(format!(
                "generator {:?}: {path:?} has {} rows, fewer than the {agent_count} agents it is split across",
                self.name,
                rows.len()
            )),
            _ => Ok(()),
        }
    }
}

fn length_params(length: &Length, params: &mut Vec<(&str, f64)>) {
    match *length {
        Length::Fixed(n) => params.extend([("len_dist", 0.0), ("len_fixed", f64::from(n))]),
        Length::Uniform { min, max } => {
            params.extend([
                ("len_dist", 1.0),
                ("len_min", f64::from(min)),
                ("len_max", f64::from(max)),
            ]);
        }
        Length::Normal { mean, stddev } => {
            params.extend([
                ("len_dist", 2.0),
                ("len_mean", mean),
                ("len_stddev", stddev),
            ]);
        }
        Length::Exponential { mean } => params.extend([("len_dist", 3.0), ("len_mean", mean)]),
    }
}
