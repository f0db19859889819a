//! The `synthetic` op: no I/O, a latency drawn from a distribution and an
//! error drawn at a ratio (for trying out workloads and reports). It waits
//! on the worker's precise alarm, so it records the drawn latency plus only
//! the thread's wake-up delay.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fleetbench::pb;
use fleetbench::window::ErrorClass;
use fleetbench_gen::rng::Latency;

use super::slot::{Outcome, Scratch};

pub(crate) struct SyntheticOp {
    latency: Latency,
    error_ratio: f64,
}

impl SyntheticOp {
    pub(super) fn compile(s: &pb::SyntheticWorkload, what: &str) -> Result<SyntheticOp> {
        Ok(SyntheticOp {
            latency: s
                .latency
                .as_ref()
                .and_then(Latency::from_pb)
                .with_context(|| format!("{what}: no valid latency distribution"))?,
            error_ratio: s.error_ratio,
        })
    }

    pub(super) async fn execute(
        &self,
        s: &mut Scratch,
        in_flight: &std::cell::Cell<u64>,
    ) -> (Instant, Outcome, u64) {
        let sent = Instant::now();
        let wait = Duration::from_micros(self.latency.sample(&mut s.rng));
        in_flight.set(in_flight.get() + 1);
        // The precise timer: tokio's would add up to a millisecond.
        s.alarm.until(sent + wait).await;
        in_flight.set(in_flight.get() - 1);
        let outcome = if s.rng.next_f64() < self.error_ratio {
            Err((ErrorClass::Synthetic, true))
        } else {
            Ok(0)
        };
        (sent, outcome, 0)
    }
}
