//! Open-loop send times from a rate shape.
//!
//! The agent's share of a phase's rate is a list of segments, each linear
//! from one rate to another over its length; after the last, its end rate
//! holds. Let A(t) be the number of sends due by time t (the integral of the
//! rate). Send number u (counting from 0) is due at A⁻¹(u): a constant rate r
//! gives u / r, a ramp solves a quadratic. Worker w of c takes the sends
//! w, w + c, w + 2c, … (evenly spaced arrivals), or advances by c times an
//! exponential draw of mean 1 (Poisson arrivals: the merged stream of the c
//! workers is then a Poisson process at the scheduled rate).

use std::time::Duration;

use fleetbench::pb;
use fleetbench_gen::rng::Rng;

#[derive(Debug, Clone, Copy)]
struct Seg {
    /// Seconds from the phase start.
    start: f64,
    len: f64,
    from: f64,
    to: f64,
    /// A(start).
    count0: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    segs: Vec<Seg>,
    /// Rate after the last segment.
    tail: f64,
    /// Start of the tail, and A() there.
    tail_start: f64,
    tail_count0: f64,
    pub poisson: bool,
    /// How late a send may go out so that sends close together share one
    /// wake-up of the thread (the phase's `send_slack`).
    pub slack: Duration,
}

impl Schedule {
    /// From a shape already scaled to this agent's share.
    pub(crate) fn from_pb(shape: &pb::LoadShape) -> Option<Schedule> {
        if shape.segments.is_empty() {
            return None;
        }
        let mut segs = Vec::with_capacity(shape.segments.len());
        let (mut start, mut count) = (0.0f64, 0.0f64);
        for s in &shape.segments {
            let len = s.duration_ms as f64 / 1000.0;
            let (from, to) = (s.from.max(0.0), s.to.max(0.0));
            segs.push(Seg {
                start,
                len,
                from,
                to,
                count0: count,
            });
            count += (from + to) / 2.0 * len;
            start += len;
        }
        let tail = segs.last().map_or(0.0, |s| s.to);
        Some(Schedule {
            segs,
            tail,
            tail_start: start,
            tail_count0: count,
            poisson: shape.arrival == "poisson",
            slack: Duration::from_micros(u64::from(shape.send_slack_us)),
        })
    }

    /// A constant rate (the original single-rate form).
    pub(crate) fn constant(rate: f64) -> Schedule {
        Schedule {
            segs: Vec::new(),
            tail: rate.max(0.0),
            tail_start: 0.0,
            tail_count0: 0.0,
            poisson: false,
            slack: Duration::ZERO,
        }
    }

    /// The rate at `t` seconds.
    #[cfg(test)]
    pub(crate) fn rate_at(&self, t: f64) -> f64 {
        for s in &self.segs {
            if t < s.start + s.len {
                return s.from + (s.to - s.from) * (t - s.start) / s.len;
            }
        }
        self.tail
    }

    /// Sends due in the first `t` seconds (A(t), fractional).
    pub(crate) fn count_at(&self, t: f64) -> f64 {
        for s in &self.segs {
            if t < s.start + s.len {
                let tau = (t - s.start).max(0.0);
                let slope = (s.to - s.from) / s.len;
                return s.count0 + s.from * tau + slope * tau * tau / 2.0;
            }
        }
        self.tail_count0 + (t - self.tail_start).max(0.0) * self.tail
    }

    /// Seconds from the start at which send `u` is due; `None` if never (the
    /// rate stays at zero from there on). `cursor` remembers the segment of
    /// the previous call (callers ask for increasing `u`).
    pub(crate) fn time_of(&self, u: f64, cursor: &mut usize) -> Option<f64> {
        while *cursor < self.segs.len() {
            let s = self.segs[*cursor];
            let end_count = s.count0 + (s.from + s.to) / 2.0 * s.len;
            if u < end_count {
                let x = u - s.count0;
                let slope = (s.to - s.from) / s.len;
                let tau = if slope.abs() < 1e-12 {
                    if s.from <= 0.0 {
                        // Cannot happen: a zero-rate segment has no count.
                        s.len
                    } else {
                        x / s.from
                    }
                } else {
                    // from·τ + slope·τ²/2 = x
                    let disc = (s.from * s.from + 2.0 * slope * x).max(0.0);
                    (disc.sqrt() - s.from) / slope
                };
                return Some(s.start + tau.clamp(0.0, s.len));
            }
            *cursor += 1;
        }
        if self.tail <= 0.0 {
            return None;
        }
        Some(self.tail_start + (u - self.tail_count0) / self.tail)
    }
}

/// One worker's walk through the schedule.
pub(crate) struct Walk {
    u: f64,
    step: f64,
    cursor: usize,
}

impl Walk {
    /// Worker `w` of `c` on this agent.
    pub(crate) fn new(schedule: &Schedule, w: usize, c: usize, rng: &mut Rng) -> Walk {
        let step = c.max(1) as f64;
        let u = if schedule.poisson {
            step * exp1(rng)
        } else {
            w as f64
        };
        Walk { u, step, cursor: 0 }
    }

    /// Seconds from the start of this worker's next send.
    #[inline]
    pub(crate) fn next(&mut self, schedule: &Schedule, rng: &mut Rng) -> Option<f64> {
        let t = schedule.time_of(self.u, &mut self.cursor)?;
        self.u += if schedule.poisson {
            self.step * exp1(rng)
        } else {
            self.step
        };
        Some(t)
    }
}

/// An exponential draw of mean 1.
#[inline]
fn exp1(rng: &mut Rng) -> f64 {
    -(1.0 - rng.next_f64()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(segs: &[(u64, f64, f64)], arrival: &str) -> Schedule {
        Schedule::from_pb(&pb::LoadShape {
            segments: segs
                .iter()
                .map(|&(ms, from, to)| pb::RateSegment {
                    duration_ms: ms,
                    from,
                    to,
                })
                .collect(),
            arrival: arrival.into(),
            send_slack_us: 0,
        })
        .unwrap()
    }

    /// Sends of `c` workers per whole second over `secs` seconds.
    fn per_second(s: &Schedule, c: usize, secs: usize) -> Vec<u64> {
        let mut counts = vec![0u64; secs];
        let mut rng = Rng::new(7);
        for w in 0..c {
            let mut walk = Walk::new(s, w, c, &mut rng);
            while let Some(t) = walk.next(s, &mut rng) {
                if t >= secs as f64 {
                    break;
                }
                counts[t as usize] += 1;
            }
        }
        counts
    }

    #[test]
    fn a_constant_rate_is_evenly_spaced() {
        let s = Schedule::constant(100.0);
        let mut rng = Rng::new(1);
        let mut walk = Walk::new(&s, 1, 4, &mut rng);
        let times: Vec<f64> = (0..3).map(|_| walk.next(&s, &mut rng).unwrap()).collect();
        assert_eq!(times, vec![0.01, 0.05, 0.09]);
        assert_eq!(per_second(&s, 4, 3), vec![100, 100, 100]);
    }

    #[test]
    fn a_ramp_follows_the_integral() {
        // 100 -> 1100 over 10 s: second k holds 100 + 100k + 50 sends.
        let s = shape(&[(10_000, 100.0, 1100.0)], "uniform");
        let got = per_second(&s, 8, 12);
        for (k, n) in got.iter().enumerate().take(10) {
            let want = 150.0 + 100.0 * k as f64;
            assert!((*n as f64 - want).abs() <= 2.0, "second {k}: {n} vs {want}");
        }
        // After the ramp its end rate holds.
        assert!((got[11] as f64 - 1100.0).abs() <= 2.0, "{got:?}");
        assert_eq!(s.rate_at(5.0), 600.0);
    }

    #[test]
    fn steps_and_zero_rates() {
        let s = shape(
            &[(2000, 50.0, 50.0), (1000, 0.0, 0.0), (2000, 200.0, 200.0)],
            "uniform",
        );
        let got = per_second(&s, 3, 6);
        assert_eq!(got[0], 50);
        assert_eq!(got[1], 50);
        assert_eq!(got[2], 0);
        assert!((got[3] as i64 - 200).abs() <= 1, "{got:?}");
        assert!((got[4] as i64 - 200).abs() <= 1, "{got:?}");
        // A shape ending at zero ends the schedule.
        let end = shape(&[(1000, 10.0, 10.0), (1000, 0.0, 0.0)], "uniform");
        let mut rng = Rng::new(1);
        let mut walk = Walk::new(&end, 0, 1, &mut rng);
        let mut n = 0;
        while walk.next(&end, &mut rng).is_some() {
            n += 1;
            assert!(n < 100);
        }
        assert_eq!(n, 10);
    }

    #[test]
    fn poisson_arrivals_keep_the_rate_and_vary_the_gaps() {
        let s = shape(&[(20_000, 500.0, 500.0)], "poisson");
        let got = per_second(&s, 4, 20);
        let total: u64 = got.iter().sum();
        // 10,000 expected; a Poisson count's sd is 100: 4 sd.
        assert!((total as f64 - 10_000.0).abs() < 400.0, "{total}");
        // Per-second counts vary (evenly spaced would give 500 every time).
        assert!(got.iter().any(|n| *n != 500), "{got:?}");
    }
}
