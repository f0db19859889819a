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
                params = with_precision(&[("min", *min), ("max", *max)], *precision);
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
                params = with_precision(&[("mean", *mean), ("stddev", *stddev)], *precision);
                "normal"
            }
            GenKind::Exponential { mean, precision } => {
                params = with_precision(&[("mean", *mean)], *precision);
                "exponential"
            }
            GenKind::Pareto {
                scale,
                shape,
                precision,
            } => {
                params = with_precision(&[("scale", *scale), ("shape", *shape)], *precision);
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
        let w = Wire {
            g,
            what: format!("generator {:?}", g.name),
        };
        let kind = match g.kind.as_str() {
            "sequence" => GenKind::Sequence {
                start: w.int("start")?,
                step: w.int("step")?,
            },
            "uniform_int" => {
                let (min, max) = (w.int("min")?, w.int("max")?);
                w.ordered(min, max)?;
                GenKind::UniformInt { min, max }
            }
            "uniform_float" => {
                let (min, max) = (w.param("min")?, w.param("max")?);
                w.ordered(min, max)?;
                GenKind::UniformFloat {
                    min,
                    max,
                    precision: w.precision()?,
                }
            }
            "zipf" => w.zipf()?,
            "normal" => w.normal()?,
            "exponential" => GenKind::Exponential {
                mean: w.positive("mean")?,
                precision: w.precision()?,
            },
            "pareto" => GenKind::Pareto {
                scale: w.positive("scale")?,
                shape: w.positive("shape")?,
                precision: w.precision()?,
            },
            "choice" => w.choice()?,
            "string" => w.string()?,
            "bytes" => GenKind::Bytes {
                length: w.length()?,
            },
            "uuid" => GenKind::Uuid,
            "timestamp" => GenKind::Timestamp {
                format: TimeFormat::from_name(&g.text)
                    .ok_or_else(|| w.says(format!("unknown format {:?}", g.text)))?,
            },
            "file" => w.file()?,
            other => return Err(w.says(format!("unknown kind {other:?}"))),
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
                "generator {:?}: {path:?} has {} row{}, fewer than the {agent_count} agents it is split across",
                self.name,
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            )),
            _ => Ok(()),
        }
    }
}

/// Real-valued parameters, then `precision`.
fn with_precision<'k>(reals: &[(&'k str, f64)], precision: u32) -> Vec<(&'k str, f64)> {
    let mut params = reals.to_vec();
    params.push(("precision", f64::from(precision)));
    params
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

/// A generator from the wire, under checking: its errors say
/// `generator "NAME": ...`.
struct Wire<'a> {
    g: &'a pb::Generator,
    what: String,
}

impl Wire<'_> {
    fn says(&self, msg: String) -> String {
        format!("{}: {msg}", self.what)
    }

    /// A finite parameter that must be there.
    fn param(&self, key: &str) -> Result<f64, String> {
        match self.g.params.get(key) {
            Some(v) if v.is_finite() => Ok(*v),
            Some(v) => Err(self.says(format!("{key} is {v}"))),
            None => Err(self.says(format!("{} without `{key}`", self.g.kind))),
        }
    }

    /// A whole-number parameter within 2^53.
    fn int(&self, key: &str) -> Result<i64, String> {
        let v = self.param(key)?;
        if v.fract() != 0.0 || v.abs() > EXACT as f64 {
            return Err(self.says(format!("{key} {v} is not a whole number within 2^53")));
        }
        Ok(v as i64)
    }

    fn positive(&self, key: &str) -> Result<f64, String> {
        let v = self.param(key)?;
        if v <= 0.0 {
            return Err(self.says(format!("{key} must be > 0, not {v}")));
        }
        Ok(v)
    }

    fn precision(&self) -> Result<u32, String> {
        match self.int("precision")? {
            p @ 0..=12 => Ok(p as u32),
            p => Err(self.says(format!("precision {p} is not 0 to 12"))),
        }
    }

    /// `min <= max`.
    fn ordered<T: PartialOrd + std::fmt::Display>(&self, min: T, max: T) -> Result<(), String> {
        if min > max {
            return Err(self.says(format!("min {min} > max {max}")));
        }
        Ok(())
    }

    fn length(&self) -> Result<Length, String> {
        let l = match self.int("len_dist")? {
            0 => Length::Fixed(self.int("len_fixed")?.clamp(0, MAX_LENGTH.into()) as u32),
            1 => {
                let (min, max) = (self.int("len_min")?, self.int("len_max")?);
                if !(0 <= min && min <= max && max <= MAX_LENGTH.into()) {
                    return Err(self.says(format!("length {min}..{max}")));
                }
                Length::Uniform {
                    min: min as u32,
                    max: max as u32,
                }
            }
            2 => Length::Normal {
                mean: self.param("len_mean")?,
                stddev: self.param("len_stddev")?,
            },
            3 => Length::Exponential {
                mean: self.param("len_mean")?,
            },
            d => return Err(self.says(format!("unknown length dist {d}"))),
        };
        Ok(l)
    }

    fn zipf(&self) -> Result<GenKind, String> {
        let n = self.int("n")?;
        if n < 1 {
            return Err(self.says(format!("zipf n {n} < 1")));
        }
        Ok(GenKind::Zipf {
            n: n as u64,
            exponent: self.positive("exponent")?,
        })
    }

    fn normal(&self) -> Result<GenKind, String> {
        let stddev = self.param("stddev")?;
        if stddev < 0.0 {
            return Err(self.says(format!("stddev {stddev} < 0")));
        }
        Ok(GenKind::Normal {
            mean: self.param("mean")?,
            stddev,
            precision: self.precision()?,
        })
    }

    fn choice(&self) -> Result<GenKind, String> {
        let g = self.g;
        if g.values.is_empty() {
            return Err(self.says("choice without values".into()));
        }
        if !g.weights.is_empty()
            && (g.weights.len() != g.values.len()
                || g.weights.iter().any(|w| !w.is_finite() || *w < 0.0)
                || g.weights.iter().sum::<f64>() <= 0.0)
        {
            return Err(self.says(format!("bad weights {:?}", g.weights)));
        }
        Ok(GenKind::Choice {
            values: g.values.clone(),
            weights: g.weights.clone(),
        })
    }

    fn string(&self) -> Result<GenKind, String> {
        let text = &self.g.text;
        let alphabet = if self.int("custom")? == 1 {
            if text.is_empty() {
                return Err(self.says("empty alphabet".into()));
            }
            Alphabet::Custom(text.chars().collect())
        } else {
            Alphabet::from_name(text)
                .ok_or_else(|| self.says(format!("unknown alphabet {text:?}")))?
        };
        Ok(GenKind::String {
            length: self.length()?,
            alphabet,
        })
    }

    fn file(&self) -> Result<GenKind, String> {
        let g = self.g;
        if g.values.is_empty() {
            return Err(self.says(format!("no rows of {:?} for this agent", g.text)));
        }
        Ok(GenKind::File {
            path: g.text.clone(),
            column: None,
            order: if self.int("random")? == 1 {
                Order::Random
            } else {
                Order::Sequential
            },
            split: self.int("split")? == 1,
            rows: Rows::new(&g.values),
        })
    }
}
