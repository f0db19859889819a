//! The statistics `compare` uses to tell a change from run-to-run noise.
//!
//! One test: the two-sided Mann-Whitney U test (Wilcoxon rank-sum) on two
//! independent samples, with the p-value from the normal approximation,
//! corrected for ties (the variance term) and for continuity (½). It makes
//! no assumption about the shape of the distributions, which suits
//! per-window throughput and per-window percentiles: they are skewed, and a
//! stall shows up as a few wild windows.
//!
//! This module owns only arithmetic on slices of numbers; it knows nothing of
//! runs, windows or reports.

use serde::Serialize;

/// The outcome of a Mann-Whitney U test of sample `a` against sample `b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MannWhitney {
    /// U of the first sample: the number of (a, b) pairs with a > b, ties
    /// counting one half. U of the second is `n_a * n_b - u`.
    pub u: f64,
    /// The standardized statistic (continuity-corrected); 0 when every value
    /// is the same.
    pub z: f64,
    /// Two-sided p-value from the normal approximation.
    pub p: f64,
    /// Size of the first sample.
    pub n_a: usize,
    /// Size of the second sample.
    pub n_b: usize,
}

impl MannWhitney {
    /// The difference is unlikely to be noise at the given level (`p < alpha`).
    pub fn significant(&self, alpha: f64) -> bool {
        self.p < alpha
    }
}

/// The two-sided Mann-Whitney U test of `a` against `b`, normal
/// approximation with tie and continuity corrections (as R's `wilcox.test`
/// with `exact = FALSE` and SciPy's `mannwhitneyu(method="asymptotic")`).
/// `None` when either sample is empty or holds a value that is not finite.
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    if a.is_empty() || b.is_empty() || a.iter().chain(b).any(|v| !v.is_finite()) {
        return None;
    }
    let (n_a, n_b) = (a.len(), b.len());
    let n = n_a + n_b;
    // (value, from a) sorted by value; equal values share their mean rank.
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&v| (v, true))
        .chain(b.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut rank_sum_a = 0.0;
    // Σ (t³ − t) over groups of t tied values.
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && all[j].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their mean.
        let rank = (i + 1 + j) as f64 / 2.0;
        let from_a = all[i..j].iter().filter(|(_, is_a)| *is_a).count();
        rank_sum_a += rank * from_a as f64;
        let t = (j - i) as f64;
        ties += t * t * t - t;
        i = j;
    }
    let (na, nb, nf) = (n_a as f64, n_b as f64, n as f64);
    let u = rank_sum_a - na * (na + 1.0) / 2.0;
    let mean = na * nb / 2.0;
    let variance = if n > 1 {
        na * nb / 12.0 * ((nf + 1.0) - ties / (nf * (nf - 1.0)))
    } else {
        0.0
    };
    let (z, p) = if variance > 0.0 {
        let d = u - mean;
        let z = d.signum() * (d.abs() - 0.5).max(0.0) / variance.sqrt();
        let p = if z == 0.0 {
            1.0
        } else {
            erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
        };
        (z, p)
    } else {
        // Every value is equal: nothing tells the samples apart.
        (0.0, 1.0)
    };
    Some(MannWhitney { u, z, p, n_a, n_b })
}

/// The smallest p-value [`mann_whitney_u`] can give for samples of these
/// sizes (completely separated, no ties). When it is not below the chosen
/// level, no difference can be told from noise with so few values: 3 and 3
/// give 0.081; 4 and 4 give 0.030.
pub fn smallest_p(n_a: usize, n_b: usize) -> f64 {
    if n_a == 0 || n_b == 0 {
        return 1.0;
    }
    let (na, nb) = (n_a as f64, n_b as f64);
    let variance = na * nb * (na + nb + 1.0) / 12.0;
    let z = ((na * nb / 2.0) - 0.5).max(0.0) / variance.sqrt();
    if z == 0.0 {
        1.0
    } else {
        erfc(z / std::f64::consts::SQRT_2).min(1.0)
    }
}

/// The complementary error function, by the Chebyshev fit of Numerical
/// Recipes (`erfcc`): fractional error below 1.2e-7 everywhere, ample for a
/// p-value compared with 0.05.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// The worked example of SciPy's `mannwhitneyu` documentation (ages at
    /// diagnosis of type II diabetes, 5 men and 4 women): U = 17, and the
    /// asymptotic two-sided p-value (continuity-corrected) is
    /// 0.11134688653314041. By hand: ranks of the men 3+5+7+8+9 = 32,
    /// U = 32 − 15 = 17, σ² = 5·4·10/12, z = (17 − 10 − ½)/σ = 1.5922.
    #[test]
    fn textbook_example_gives_known_u_and_p() {
        let men = [19.0, 22.0, 16.0, 29.0, 24.0];
        let women = [20.0, 11.0, 17.0, 12.0];
        let t = mann_whitney_u(&men, &women).unwrap();
        assert_eq!(t.u, 17.0);
        assert!(close(t.p, 0.111_346_886_533_140_41, 1e-6), "{t:?}");
        assert!(close(t.z, 1.592_168, 1e-5), "{t:?}");
        // The test is symmetric: the other way round, U' = n_a·n_b − U.
        let back = mann_whitney_u(&women, &men).unwrap();
        assert_eq!(back.u, 20.0 - 17.0);
        assert!(close(back.p, t.p, 1e-12));
        assert!(close(back.z, -t.z, 1e-12));
    }

    /// Ties share their mean rank and shrink the variance. By hand for
    /// a = [1, 2, 2, 3], b = [2, 3, 4, 4]: sorted 1 2 2 2 3 3 4 4, ranks
    /// 1, 3, 3, 3, 5.5, 5.5, 7.5, 7.5; a's rank sum 1+3+3+5.5 = 12.5, so
    /// U = 12.5 − 10 = 2.5. Ties: groups of 3, 2 and 2 give Σ(t³−t) = 36,
    /// σ² = 16/12 · (9 − 36/56) = 11.142857; z = (2.5 − 8 + ½)/σ = −1.497862,
    /// p = 2·Φ(−1.497862) = 0.134169.
    #[test]
    fn ties_take_mean_ranks_and_correct_the_variance() {
        let t = mann_whitney_u(&[1.0, 2.0, 2.0, 3.0], &[2.0, 3.0, 4.0, 4.0]).unwrap();
        assert_eq!(t.u, 2.5);
        assert!(close(t.z, -1.497_862, 1e-6), "{t:?}");
        assert!(close(t.p, 0.134_169, 1e-6), "{t:?}");
    }

    #[test]
    fn identical_samples_give_p_one() {
        let a = [120.0, 118.0, 131.0, 99.0, 140.0, 125.0];
        let t = mann_whitney_u(&a, &a).unwrap();
        assert_eq!(t.u, 18.0);
        assert_eq!(t.z, 0.0);
        assert_eq!(t.p, 1.0);
        assert!(!t.significant(0.05));
        // All values equal: no variance at all.
        let flat = mann_whitney_u(&[5.0; 4], &[5.0; 3]).unwrap();
        assert_eq!((flat.z, flat.p), (0.0, 1.0));
    }

    #[test]
    fn separated_samples_are_significant() {
        let fast: Vec<f64> = (0..10).map(|i| 1000.0 + f64::from(i)).collect();
        let slow: Vec<f64> = (0..10).map(|i| 6000.0 + f64::from(i)).collect();
        let t = mann_whitney_u(&fast, &slow).unwrap();
        assert_eq!(t.u, 0.0);
        // z = (0 − 50 + ½)/√175 = −3.7418: p ≈ 0.000183.
        assert!(close(t.p, 0.000_182_7, 2e-6), "{t:?}");
        assert!(t.significant(0.05));
    }

    #[test]
    fn smallest_p_says_how_many_values_can_show_a_difference() {
        assert!(close(smallest_p(3, 3), 0.080_856, 1e-5));
        assert!(close(smallest_p(4, 4), 0.030_383, 1e-5));
        assert!(smallest_p(3, 4) > 0.05 && smallest_p(4, 4) < 0.05);
        let sep = mann_whitney_u(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0]).unwrap();
        assert!(close(sep.p, smallest_p(4, 4), 1e-12));
        assert_eq!(smallest_p(0, 5), 1.0);
    }

    #[test]
    fn empty_or_non_finite_samples_are_not_tested() {
        assert!(mann_whitney_u(&[], &[1.0]).is_none());
        assert!(mann_whitney_u(&[1.0, f64::NAN], &[1.0]).is_none());
    }

    #[test]
    fn erfc_matches_known_values() {
        assert!(close(erfc(0.0), 1.0, 1e-7));
        assert!(close(erfc(1.0), 0.157_299_207, 1e-7));
        assert!(close(erfc(-1.0), 1.842_700_793, 1e-7));
        assert!(close(erfc(3.0), 2.209_049_7e-5, 1e-10));
    }
}
