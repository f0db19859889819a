//! Rendering per worker: a [`WorkerGen`] holds one worker's generator
//! streams and draws each generator at most once per iteration.

use std::io::Write as _;

use crate::rng::Rng;
use crate::rows::Rows;
use crate::seed::{names_fingerprint, stream_seed};
use crate::spec::{GenKind, GenSpec, Length, Order, TimeFormat, below};
use crate::template::{Part, Template};
use crate::zipf::Zipf;

// ---------------------------------------------------------------- rendering

/// Where a worker sits in the fleet: agent `agent` of `agents`, worker
/// `worker` of `workers` on that agent. Pass the same `workers` on every
/// agent (the largest count) for sequences without duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    /// The agent's index, from 0.
    pub agent: u32,
    /// Agents in the run.
    pub agents: u32,
    /// The worker's index on its agent, from 0.
    pub worker: u32,
    /// Workers per agent (the largest count of any agent).
    pub workers: u32,
}

/// One worker's generators: their streams, their cursors and the value each
/// drew in the current iteration.
pub struct WorkerGen {
    lane: Lane,
    iteration: u64,
    /// Bumped by `begin`; a generator whose `drawn` differs draws again.
    epoch: u64,
    fingerprint: u64,
    states: Vec<State>,
}

struct State {
    rng: Rng,
    drawn: u64,
    value: Vec<u8>,
    draw: Draw,
}

enum Draw {
    Sequence {
        next: i64,
        stride: i64,
    },
    /// `span == 0`: the whole `i64` range.
    UniformInt {
        min: i64,
        span: u64,
    },
    Real {
        dist: Real,
        precision: usize,
    },
    Zipf(Zipf),
    Choice {
        values: Vec<String>,
        cumulative: Vec<f64>,
    },
    String {
        length: Length,
        alphabet: Symbols,
    },
    Bytes {
        length: Length,
    },
    Uuid,
    Timestamp(TimeFormat),
    File {
        rows: Rows,
        random: bool,
        next: u64,
        stride: u64,
    },
}

enum Real {
    Uniform { min: f64, width: f64 },
    Normal { mean: f64, stddev: f64 },
    Exponential { mean: f64 },
    Pareto { scale: f64, inv_shape: f64 },
}

enum Symbols {
    Ascii(Vec<u8>),
    Chars(Vec<char>),
}

impl WorkerGen {
    /// The generators of one worker. `gens` must be the list the templates
    /// were compiled against; `run_seed` stands for generators without a
    /// seed of their own.
    pub fn new(gens: &[GenSpec], run_seed: u64, lane: Lane) -> WorkerGen {
        let agents = u64::from(lane.agents.max(1));
        let workers = u64::from(lane.workers.max(1));
        let lane_index = u64::from(lane.agent) * workers + u64::from(lane.worker);
        let states = gens
            .iter()
            .map(|g| {
                let seed =
                    stream_seed(g.seed.unwrap_or(run_seed), &g.name, lane.agent, lane.worker);
                let draw = match &g.kind {
                    GenKind::Sequence { start, step } => Draw::Sequence {
                        next: start.wrapping_add(step.wrapping_mul(lane_index as i64)),
                        stride: step.wrapping_mul((agents * workers) as i64),
                    },
                    GenKind::UniformInt { min, max } => Draw::UniformInt {
                        min: *min,
                        span: (max.wrapping_sub(*min) as u64).wrapping_add(1),
                    },
                    GenKind::UniformFloat {
                        min,
                        max,
                        precision,
                    } => Draw::Real {
                        dist: Real::Uniform {
                            min: *min,
                            width: max - min,
                        },
                        precision: *precision as usize,
                    },
                    GenKind::Normal {
                        mean,
                        stddev,
                        precision,
                    } => Draw::Real {
                        dist: Real::Normal {
                            mean: *mean,
                            stddev: *stddev,
                        },
                        precision: *precision as usize,
                    },
                    GenKind::Exponential { mean, precision } => Draw::Real {
                        dist: Real::Exponential { mean: *mean },
                        precision: *precision as usize,
                    },
                    GenKind::Pareto {
                        scale,
                        shape,
                        precision,
                    } => Draw::Real {
                        dist: Real::Pareto {
                            scale: *scale,
                            inv_shape: 1.0 / shape,
                        },
                        precision: *precision as usize,
                    },
                    GenKind::Zipf { n, exponent } => Draw::Zipf(Zipf::new(*n, *exponent)),
                    GenKind::Choice { values, weights } => Draw::Choice {
                        values: values.clone(),
                        cumulative: weights
                            .iter()
                            .scan(0.0, |sum, w| {
                                *sum += w;
                                Some(*sum)
                            })
                            .collect(),
                    },
                    GenKind::String { length, alphabet } => {
                        let chars = alphabet.chars();
                        let alphabet = if chars.iter().all(char::is_ascii) {
                            Symbols::Ascii(chars.iter().map(|&c| c as u8).collect())
                        } else {
                            Symbols::Chars(chars)
                        };
                        Draw::String {
                            length: *length,
                            alphabet,
                        }
                    }
                    GenKind::Bytes { length } => Draw::Bytes { length: *length },
                    GenKind::Uuid => Draw::Uuid,
                    GenKind::Timestamp { format } => Draw::Timestamp(*format),
                    GenKind::File { order, rows, .. } => {
                        let len = rows.len().max(1) as u64;
                        Draw::File {
                            rows: rows.clone(),
                            random: *order == Order::Random,
                            next: u64::from(lane.worker) % len,
                            stride: workers % len,
                        }
                    }
                };
                State {
                    rng: Rng::new(seed),
                    drawn: 0,
                    value: Vec::new(),
                    draw,
                }
            })
            .collect();
        WorkerGen {
            lane,
            iteration: 0,
            epoch: 1,
            fingerprint: names_fingerprint(gens),
            states,
        }
    }

    /// Starts an iteration: every generator draws a new value at its next use.
    pub fn begin(&mut self, iteration: u64) {
        self.iteration = iteration;
        self.epoch += 1;
    }

    /// Appends the rendering of `t` to `out`.
    ///
    /// # Panics
    /// If `t` was compiled against another list of generators than this
    /// `WorkerGen` was built from.
    pub fn render(&mut self, t: &Template, out: &mut Vec<u8>) {
        assert_eq!(
            t.fingerprint, self.fingerprint,
            "template compiled against other generators"
        );
        for part in t.parts() {
            match *part {
                Part::Literal { start, end } => out.extend_from_slice(t.literal_bytes(start, end)),
                Part::Generator(i) => {
                    let state = &mut self.states[i as usize];
                    if state.drawn != self.epoch {
                        state.drawn = self.epoch;
                        state.value.clear();
                        state.draw.draw(&mut state.rng, &mut state.value);
                    }
                    out.extend_from_slice(&state.value);
                }
                Part::Agent => push_u64(out, u64::from(self.lane.agent)),
                Part::Worker => push_u64(out, u64::from(self.lane.worker)),
                Part::Iteration => push_u64(out, self.iteration),
            }
        }
    }
}

impl Draw {
    fn draw(&mut self, rng: &mut Rng, out: &mut Vec<u8>) {
        match self {
            Draw::Sequence { next, stride } => {
                push_i64(out, *next);
                *next = next.wrapping_add(*stride);
            }
            Draw::UniformInt { min, span } => {
                let offset = if *span == 0 {
                    rng.next_u64()
                } else {
                    below(rng, *span)
                };
                push_i64(out, min.wrapping_add(offset as i64));
            }
            Draw::Real { dist, precision } => {
                let v = match *dist {
                    Real::Uniform { min, width } => min + width * rng.next_f64(),
                    Real::Normal { mean, stddev } => mean + stddev * rng.next_normal(),
                    Real::Exponential { mean } => -mean * (1.0 - rng.next_f64()).ln(),
                    Real::Pareto { scale, inv_shape } => {
                        scale * (1.0 - rng.next_f64()).powf(-inv_shape)
                    }
                };
                push_fixed(out, v, *precision);
            }
            Draw::Zipf(z) => push_u64(out, z.sample(rng)),
            Draw::Choice { values, cumulative } => {
                let i = if cumulative.is_empty() {
                    below(rng, values.len() as u64) as usize
                } else {
                    let total = cumulative[cumulative.len() - 1];
                    let x = rng.next_f64() * total;
                    // The first value whose cumulative weight exceeds x (a
                    // zero weight is never picked).
                    cumulative
                        .partition_point(|&c| c <= x)
                        .min(values.len() - 1)
                };
                out.extend_from_slice(values[i].as_bytes());
            }
            Draw::String { length, alphabet } => {
                let n = length.sample(rng);
                match alphabet {
                    Symbols::Ascii(a) => {
                        // Two characters per draw, each from 32 bits by
                        // multiply-shift (bias below span / 2^32).
                        let span = a.len() as u64;
                        let pick = |bits: u64| a[(((bits & 0xffff_ffff) * span) >> 32) as usize];
                        out.reserve(n);
                        for _ in 0..n / 2 {
                            let r = rng.next_u64();
                            out.push(pick(r));
                            out.push(pick(r >> 32));
                        }
                        if n % 2 == 1 {
                            out.push(pick(rng.next_u64()));
                        }
                    }
                    Symbols::Chars(c) => {
                        let mut buf = [0; 4];
                        for _ in 0..n {
                            let ch = c[below(rng, c.len() as u64) as usize];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
            }
            Draw::Bytes { length } => {
                let mut n = length.sample(rng);
                while n > 0 {
                    let word = rng.next_u64().to_le_bytes();
                    let take = n.min(8);
                    out.extend_from_slice(&word[..take]);
                    n -= take;
                }
            }
            Draw::Uuid => {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
                b[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
                b[6] = (b[6] & 0x0f) | 0x40;
                b[8] = (b[8] & 0x3f) | 0x80;
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        out.push(b'-');
                    }
                    out.push(HEX[usize::from(byte >> 4)]);
                    out.push(HEX[usize::from(byte & 0xf)]);
                }
            }
            Draw::Timestamp(format) => {
                let now = std::time::SystemTime::now();
                let since = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                match format {
                    TimeFormat::UnixS => push_u64(out, since.as_secs()),
                    TimeFormat::UnixMs => push_u64(out, since.as_millis() as u64),
                    TimeFormat::UnixUs => push_u64(out, since.as_micros() as u64),
                    TimeFormat::Rfc3339 => {
                        let _ = write!(out, "{}", humantime::format_rfc3339_millis(now));
                    }
                }
            }
            Draw::File {
                rows,
                random,
                next,
                stride,
            } => {
                if rows.is_empty() {
                    return;
                }
                let len = rows.len() as u64;
                let i = if *random {
                    below(rng, len)
                } else {
                    let i = *next;
                    *next = (*next + *stride) % len;
                    i
                };
                out.extend_from_slice(rows.get(i as usize).as_bytes());
            }
        }
    }
}

/// Decimal digits of `v`, without going through `fmt`.
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `v` with `precision` digits after the point. Values that fit an exact
/// integer once scaled are printed by hand (the hot path: `fmt`'s exact
/// float formatting costs more than the draw); others through `fmt`. The
/// last digit may round differently from `fmt` on ties; it is always the
/// same for the same value.
fn push_fixed(out: &mut Vec<u8>, v: f64, precision: usize) {
    const POW10: [u64; 13] = [
        1,
        10,
        100,
        1_000,
        10_000,
        100_000,
        1_000_000,
        10_000_000,
        100_000_000,
        1_000_000_000,
        10_000_000_000,
        100_000_000_000,
        1_000_000_000_000,
    ];
    let Some(&unit) = POW10.get(precision) else {
        let _ = write!(out, "{v:.precision$}");
        return;
    };
    let scaled = (v * unit as f64).round();
    // NaN and infinities fail this too.
    if scaled.is_nan() || scaled.abs() >= (1u64 << 53) as f64 {
        let _ = write!(out, "{v:.precision$}");
        return;
    }
    let n = scaled as i64;
    if n < 0 {
        out.push(b'-');
    }
    let n = n.unsigned_abs();
    push_u64(out, n / unit);
    if precision > 0 {
        out.push(b'.');
        let frac = n % unit;
        let mut digits = [b'0'; 12];
        let mut f = frac;
        for d in digits[..precision].iter_mut().rev() {
            *d = b'0' + (f % 10) as u8;
            f /= 10;
        }
        out.extend_from_slice(&digits[..precision]);
    }
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_printing_matches_fmt_within_the_last_digit() {
        let mut rng = Rng::new(3);
        let mut out = Vec::new();
        for i in 0..20_000 {
            let precision = i % 13;
            let v = (rng.next_f64() - 0.5) * 10f64.powi((i % 17) as i32 - 4);
            out.clear();
            push_fixed(&mut out, v, precision);
            let ours = std::str::from_utf8(&out).unwrap();
            let theirs = format!("{v:.precision$}");
            let frac = ours.split_once('.').map_or(0, |(_, f)| f.len());
            assert_eq!(frac, precision, "{ours}");
            // Same digits, or one unit apart in the last place.
            let units = |t: &str| t.replace('.', "").parse::<i128>().unwrap();
            let diff = (units(ours) - units(&theirs)).abs();
            assert!(diff <= 1, "{v}: {ours} vs {theirs}");
        }
        for (v, p, text) in [
            (1.5, 0, "2"),
            (-2.25, 1, "-2.3"),
            (0.0, 3, "0.000"),
            (12.0, 2, "12.00"),
            (-0.004, 2, "0.00"),
            (1e300, 1, ""),
        ] {
            out.clear();
            push_fixed(&mut out, v, p);
            if text.is_empty() {
                assert_eq!(out, format!("{v:.p$}").as_bytes());
            } else {
                assert_eq!(std::str::from_utf8(&out).unwrap(), text);
            }
        }
    }
}
