//! A small seeded random generator (SplitMix64) and the latency distributions
//! of the synthetic workload. Written here rather than taken from `rand` so
//! that the same seed gives the same stream on every platform and with every
//! future dependency update: runs must be re-runnable exactly.

use fleetbench::pb;

/// SplitMix64: fast, 64-bit state, passes BigCrush; plenty for load shaping.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A stream from `seed`: the same seed, the same stream, everywhere.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 uniform bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box-Muller; one of the pair is discarded for simplicity).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A latency distribution, in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Latency {
    /// Always this many µs.
    Constant(u64),
    /// Uniform between `min` and `max` µs (`min <= max`).
    Uniform {
        /// The shortest, in µs.
        min: u64,
        /// The longest, in µs.
        max: u64,
    },
    /// Exponential with this mean.
    Exponential {
        /// The mean, in µs.
        mean: u64,
    },
    /// Normal, cut at zero.
    Normal {
        /// The mean, in µs.
        mean: u64,
        /// The standard deviation, in µs.
        stddev: u64,
    },
    /// Log-normal: `median · e^(sigma · N(0, 1))`.
    LogNormal {
        /// The median, in µs.
        median: u64,
        /// The spread of the log, `>= 0`.
        sigma: f64,
    },
}

impl Latency {
    /// Draws one latency in microseconds (never negative).
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let v = match *self {
            Latency::Constant(v) => v as f64,
            Latency::Uniform { min, max } => min as f64 + rng.next_f64() * (max - min) as f64,
            Latency::Exponential { mean } => -(mean as f64) * (1.0 - rng.next_f64()).ln(),
            Latency::Normal { mean, stddev } => mean as f64 + stddev as f64 * rng.next_normal(),
            Latency::LogNormal { median, sigma } => {
                median as f64 * (sigma * rng.next_normal()).exp()
            }
        };
        v.max(0.0).round() as u64
    }

    /// The distribution as the wire carries it.
    pub fn to_pb(&self) -> pb::LatencyDistribution {
        use pb::latency_distribution::Dist;
        let dist = match *self {
            Latency::Constant(v) => Dist::ConstantUs(v),
            Latency::Uniform { min, max } => Dist::Uniform(pb::Uniform {
                min_us: min,
                max_us: max,
            }),
            Latency::Exponential { mean } => Dist::Exponential(pb::Exponential { mean_us: mean }),
            Latency::Normal { mean, stddev } => Dist::Normal(pb::Normal {
                mean_us: mean,
                stddev_us: stddev,
            }),
            Latency::LogNormal { median, sigma } => Dist::Lognormal(pb::LogNormal {
                median_us: median,
                sigma,
            }),
        };
        pb::LatencyDistribution { dist: Some(dist) }
    }

    /// A distribution from the wire; `None` if it is missing or invalid
    /// (`min > max`, a negative or non-finite sigma).
    pub fn from_pb(p: &pb::LatencyDistribution) -> Option<Self> {
        use pb::latency_distribution::Dist;
        Some(match p.dist.as_ref()? {
            Dist::ConstantUs(v) => Latency::Constant(*v),
            Dist::Uniform(u) if u.min_us <= u.max_us => Latency::Uniform {
                min: u.min_us,
                max: u.max_us,
            },
            Dist::Uniform(_) => return None,
            Dist::Exponential(e) => Latency::Exponential { mean: e.mean_us },
            Dist::Normal(n) => Latency::Normal {
                mean: n.mean_us,
                stddev: n.stddev_us,
            },
            Dist::Lognormal(l) if l.sigma.is_finite() && l.sigma >= 0.0 => Latency::LogNormal {
                median: l.median_us,
                sigma: l.sigma,
            },
            Dist::Lognormal(_) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let mut c = Rng::new(43);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn exponential_mean_is_close() {
        let mut rng = Rng::new(7);
        let d = Latency::Exponential { mean: 1000 };
        let n = 200_000;
        let mean = (0..n).map(|_| d.sample(&mut rng)).sum::<u64>() as f64 / n as f64;
        assert!((mean - 1000.0).abs() < 15.0, "mean {mean}");
    }

    #[test]
    fn lognormal_median_is_close() {
        let mut rng = Rng::new(9);
        let d = Latency::LogNormal {
            median: 2000,
            sigma: 0.5,
        };
        let mut xs: Vec<u64> = (0..100_001).map(|_| d.sample(&mut rng)).collect();
        xs.sort_unstable();
        let median = xs[50_000] as f64;
        assert!((median - 2000.0).abs() < 30.0, "median {median}");
    }
}
