//! Per-worker streams of the load engine: which seed each of a worker's
//! random streams starts from, and the weighted op choice drawn from one.

use crate::rng::Rng;

/// The streams of a worker, as [`worker_seed`]'s `stream`: the op choice
/// (and a closed loop's think time).
pub const STREAM_OPS: u64 = 1;
/// Open-loop arrivals (Poisson gaps).
pub const STREAM_PACE: u64 = 2;
/// Draws inside ops (synthetic latencies and errors).
pub const STREAM_DRAWS: u64 = 3;

/// The seed of one stream of worker `worker` of agent `agent`: the same
/// inputs give the same stream in every run, on every machine.
pub fn worker_seed(seed: u64, agent: u32, worker: usize, stream: u64) -> u64 {
    let mut r = Rng::new(seed ^ stream.wrapping_mul(0xA24B_AED4_963E_E407));
    let a = r.next_u64() ^ (u64::from(agent) << 32) ^ worker as u64;
    Rng::new(a).next_u64()
}

/// Picks an op per iteration by weight (one draw, binary search).
#[derive(Debug, Clone)]
pub struct OpPicker {
    /// Cumulative weights; empty with a single op (no draw at all).
    cumulative: Vec<u64>,
}

impl OpPicker {
    /// A picker over ops of these weights, in order (a weight of 0 counts
    /// as 1).
    pub fn new(weights: impl IntoIterator<Item = u32>) -> OpPicker {
        let cumulative: Vec<u64> = weights
            .into_iter()
            .scan(0u64, |acc, w| {
                *acc += u64::from(w.max(1));
                Some(*acc)
            })
            .collect();
        OpPicker {
            cumulative: if cumulative.len() > 1 {
                cumulative
            } else {
                Vec::new()
            },
        }
    }

    /// The index of the next op: one draw from `rng`, none with a single op.
    #[inline]
    pub fn pick(&self, rng: &mut Rng) -> usize {
        match self.cumulative.last() {
            None => 0,
            Some(total) => {
                let x = rng.next_u64() % total;
                self.cumulative.partition_point(|c| *c <= x)
            }
        }
    }
}
