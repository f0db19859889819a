//! Zipf sampling by rejection-inversion (W. Hörmann and G. Derflinger,
//! "Rejection-inversion to generate variates from monotone discrete
//! distributions", ACM TOMACS 6(3), 1996). O(1) expected time and memory per
//! sample for any `n`: no table of the `n` probabilities is built.
//!
//! Values are `1..=n`, with `P(k)` proportional to `k^-exponent`: rank 1 is
//! the most frequent.

use crate::rng::Rng;

#[derive(Debug, Clone)]
pub(crate) struct Zipf {
    n: f64,
    exponent: f64,
    /// `H(1.5) - 1`: the top of the inversion interval.
    h_x1: f64,
    /// `H(n + 0.5)`: its bottom.
    h_n: f64,
    /// Below this distance from the rounded point, a candidate is accepted
    /// without evaluating `H` again.
    squeeze: f64,
}

impl Zipf {
    /// `n >= 1`, `exponent > 0` and finite (checked by the caller).
    pub(crate) fn new(n: u64, exponent: f64) -> Zipf {
        let mut z = Zipf {
            n: n as f64,
            exponent,
            h_x1: 0.0,
            h_n: 0.0,
            squeeze: 0.0,
        };
        z.h_x1 = z.big_h(1.5) - 1.0;
        z.h_n = z.big_h(z.n + 0.5);
        z.squeeze = 2.0 - z.big_h_inv(z.big_h(2.5) - z.h(2.0));
        z
    }

    pub(crate) fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            // Uniform on (h_x1, h_n]: the area under the hat function.
            let u = self.h_n + rng.next_f64() * (self.h_x1 - self.h_n);
            let x = self.big_h_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.squeeze || u >= self.big_h(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    /// The (unnormalized) density `x^-exponent`.
    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    /// An antiderivative of `h`: `(x^(1-s) - 1) / (1 - s)`, and `ln x` at
    /// `s = 1`, computed without cancellation near `s = 1`.
    fn big_h(&self, x: f64) -> f64 {
        let log_x = x.ln();
        expm1_over_x((1.0 - self.exponent) * log_x) * log_x
    }

    fn big_h_inv(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (log1p_over_x(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, exact enough near 0.
fn log1p_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1) / x`, exact enough near 0.
fn expm1_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chi-square goodness of fit against the exact pmf. 200,000 samples of
    /// zipf(n = 100, s = 1.1) with a fixed seed; bins with an expected count
    /// under 5 are pooled into the tail. Tolerance: the statistic must stay
    /// below the chi-square critical value at p = 0.001 for its degrees of
    /// freedom (Wilson-Hilferty approximation), i.e. a correct sampler fails
    /// this with probability 0.1% for a random seed, and never for this one.
    #[test]
    fn zipf_frequencies_fit_the_pmf() {
        let (n, s, samples) = (100u64, 1.1, 200_000usize);
        let z = Zipf::new(n, s);
        let mut rng = Rng::new(20_261_129);
        let mut counts = vec![0u64; n as usize + 1];
        for _ in 0..samples {
            let k = z.sample(&mut rng);
            assert!((1..=n).contains(&k), "{k} out of range");
            counts[k as usize] += 1;
        }
        let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
        let total: f64 = weights.iter().sum();
        // Bins from rank 1 up; the tail from the first rank whose expected
        // count is under 5 is one bin.
        let mut observed = Vec::new();
        let mut expected = Vec::new();
        for k in 1..=n as usize {
            let e = samples as f64 * weights[k - 1] / total;
            if e < 5.0 {
                let e_tail: f64 = weights[k - 1..].iter().sum::<f64>() / total * samples as f64;
                observed.push(counts[k..].iter().sum::<u64>() as f64);
                expected.push(e_tail);
                break;
            }
            observed.push(counts[k] as f64);
            expected.push(e);
        }
        let chi2: f64 = observed
            .iter()
            .zip(&expected)
            .map(|(o, e)| (o - e) * (o - e) / e)
            .sum();
        let df = (observed.len() - 1) as f64;
        // Wilson-Hilferty: chi2_crit = df (1 - 2/(9 df) + z sqrt(2/(9 df)))^3,
        // z = 3.0902 the standard normal quantile at 0.999.
        let a = 2.0 / (9.0 * df);
        let critical = df * (1.0 - a + 3.0902 * a.sqrt()).powi(3);
        assert!(
            chi2 < critical,
            "chi2 {chi2:.1} >= critical {critical:.1} (df {df})"
        );
        eprintln!("chi2 {chi2:.1}, df {df}, critical {critical:.1}");
        // And the most frequent value is rank 1, by a wide margin.
        assert!(counts[1] > counts[2] && counts[2] > counts[3]);
    }

    /// The chi-square test above must be able to fail: a sampler with the
    /// wrong exponent is rejected by the same statistic.
    #[test]
    fn zipf_fit_rejects_a_wrong_exponent() {
        let z = Zipf::new(100, 1.0);
        let mut rng = Rng::new(20_261_129);
        let mut counts = [0u64; 101];
        for _ in 0..200_000 {
            counts[z.sample(&mut rng) as usize] += 1;
        }
        let w: Vec<f64> = (1..=100).map(|k| (k as f64).powf(-1.1)).collect();
        let t: f64 = w.iter().sum();
        let chi2: f64 = (1..=100)
            .map(|k| {
                let e = 200_000.0 * w[k - 1] / t;
                (counts[k] as f64 - e).powi(2) / e
            })
            .sum();
        assert!(chi2 > 148.2, "chi2 {chi2}");
    }

    #[test]
    fn zipf_exponent_one_and_large_n() {
        for (n, s) in [
            (1_000_000_000u64, 1.1),
            (1_000_000_000, 1.0),
            (1, 2.0),
            (2, 0.5),
        ] {
            let z = Zipf::new(n, s);
            let mut rng = Rng::new(5);
            let mut ones = 0;
            for _ in 0..100_000 {
                let k = z.sample(&mut rng);
                assert!((1..=n).contains(&k), "{k} out of 1..={n}");
                ones += u32::from(k == 1);
            }
            assert!(ones > 0, "n {n} s {s}: rank 1 never drawn");
        }
    }
}
