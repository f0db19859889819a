//! The phase as this agent runs it: its share of the load, its ops compiled,
//! its schedule and budget, on how many threads.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fleetbench::pb;
use fleetbench_gen::OpPicker;
use fleetbench_gen::rng::Latency;
use fleetbench_gen::{GenKind, GenSpec};

use super::ops::{Op, OpKind};
use super::schedule::Schedule;

/// The phase as this agent runs it.
pub(super) struct Plan {
    pub(super) phase_index: u32,
    pub(super) start: Instant,
    pub(super) duration: Duration,
    pub(super) width: Duration,
    pub(super) windows: u32,
    pub(super) ops: Vec<Op>,
    pub(super) picker: OpPicker,
    /// Connections (closed: workers) on this agent at the start.
    pub(super) concurrency: u32,
    /// Open loop: the most connections (workers) this agent may open when
    /// every one is busy at a send's time (see [`Plan::grow`]).
    pub(super) max_connections: u32,
    /// Workers started on this agent so far, across its threads.
    workers: AtomicU32,
    /// Open loop: when this agent's sends are due.
    pub(super) schedule: Option<Schedule>,
    /// Iterations this agent may still start (its share of the phase's).
    pub(super) budget: Option<AtomicU64>,
    pub(super) think: Option<Latency>,
    pub(super) seed: u64,
    pub(super) gens: Vec<GenSpec>,
    pub(super) agent_index: u32,
    pub(super) agent_count: u32,
    /// Workers per agent that generator lanes are laid out by.
    pub(super) lanes: u32,
    pub(super) threads: usize,
}

impl Plan {
    /// Claims one iteration of the budget; false when it is spent.
    #[inline]
    pub(super) fn claim(&self) -> bool {
        match &self.budget {
            None => true,
            Some(b) => b
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    /// Takes the index of one more worker, if the agent may open one more
    /// connection (open loop, under `max_connections`).
    pub(super) fn grow(&self) -> Option<usize> {
        self.workers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .ok()
            .map(|n| n as usize)
    }

    /// Connections (workers) this agent has opened so far.
    pub(super) fn connections(&self) -> u32 {
        self.workers.load(Ordering::Relaxed)
    }
}

/// Open loop: the most connections an agent opens when its phase does
/// not say (`max_connections`).
const DEFAULT_MAX_CONNECTIONS: u32 = 1_000;

pub(super) async fn plan(s: pb::StartPhase, threads: usize) -> Result<Plan> {
    let spec = s.spec.context("StartPhase without a spec")?;
    let width = Duration::from_millis(u64::from(spec.window_ms.max(1)));
    let duration = Duration::from_millis(spec.duration_ms);
    if duration.is_zero() {
        bail!("phase {:?} has a zero duration", spec.name);
    }
    let windows = duration.as_micros().div_ceil(width.as_micros()) as u32;
    let gens = s
        .generators
        .iter()
        .map(GenSpec::from_pb)
        .collect::<std::result::Result<Vec<_>, String>>()
        .map_err(|e| anyhow::anyhow!("generators: {e}"))?;
    // The coordinator always sends `ops` (agents of another version are
    // refused as stale before any phase reaches them).
    let op_specs = &spec.ops;
    if op_specs.is_empty() {
        bail!("phase {:?} has no operation", spec.name);
    }
    let mut ops = Vec::with_capacity(op_specs.len());
    for o in op_specs {
        ops.push(Op::compile(o, &gens).await?);
    }
    let picker = OpPicker::new(op_specs.iter().map(|o| o.weight));
    let schedule = match spec.shape.as_ref().and_then(Schedule::from_pb) {
        Some(sch) => Some(sch),
        None if s.rate.is_finite() && s.rate > 0.0 => Some(Schedule::constant(s.rate)),
        None => None,
    };
    let now_us = fleetbench::clock::now_us();
    let now = Instant::now();
    let until_start = s.start_at_agent_us - now_us;
    let start = if until_start >= 0 {
        now + Duration::from_micros(until_start as u64)
    } else {
        // Late (a slow link): keep the common time base, lose the head.
        now.checked_sub(Duration::from_micros(until_start.unsigned_abs()))
            .unwrap_or(now)
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let io = ops.iter().any(|o| !matches!(o.kind, OpKind::Synthetic(_)));
    let threads = match () {
        // Sleeping tasks cost nothing: one thread drives any number.
        () if !io => 1,
        () if threads > 0 => threads,
        () => cores,
    }
    .clamp(1, s.concurrency.max(1) as usize);
    // A sequence's values are laid out by the workers the phase starts
    // with (`lanes`): a worker beyond them would repeat another's values,
    // so such a phase keeps its workers.
    let sequences = gens
        .iter()
        .any(|g| matches!(g.kind, GenKind::Sequence { .. }));
    let max_connections = match spec.max_connections {
        _ if schedule.is_none() || sequences => s.concurrency,
        0 => DEFAULT_MAX_CONNECTIONS,
        n => n,
    }
    .max(s.concurrency);
    Ok(Plan {
        phase_index: s.phase_index,
        start,
        duration,
        width,
        windows,
        ops,
        picker,
        concurrency: s.concurrency,
        max_connections,
        workers: AtomicU32::new(s.concurrency),
        schedule,
        budget: spec.has_iterations.then(|| AtomicU64::new(s.iterations)),
        think: spec.think.as_ref().and_then(Latency::from_pb),
        seed: spec.seed,
        gens,
        agent_index: s.agent_index,
        agent_count: s.agent_count,
        lanes: spec.max_agent_concurrency.max(s.concurrency),
        threads,
    })
}
