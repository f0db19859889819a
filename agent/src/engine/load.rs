//! The load engine: runs one phase at a time, as the coordinator commands.
//!
//! A phase runs on `threads` OS threads, each with its own single-threaded
//! tokio runtime (as wrk runs one event loop per thread): workers, their
//! connections and their window accumulator live on one thread and share
//! nothing on the hot path. Each thread cuts its results into windows aligned
//! on the phase's common start instant and hands every finished window to the
//! phase task, which merges the threads' windows and pushes one
//! `ResultWindow` per window index into the outbox.
//!
//! Closed loop: each worker sends its next request when the previous one
//! completes; latency runs from the send. Open loop: each worker (one
//! connection) has a fixed schedule of intended send times at its share of
//! the rate; latency runs from the *intended* time, so a stalled target shows
//! in the percentiles instead of silently lowering the offered load
//! (coordinated omission, as wrk2 corrects it).
//!
//! The engine does not talk to the coordinator: it only reads commands and
//! pushes events into the outbox.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fleetbench::pb;
use fleetbench::window::WindowAcc;
use fleetbench_gen::rng::{Latency, Rng};
use fleetbench_gen::{GenSpec, Lane, WorkerGen};
use fleetbench_gen::{OpPicker, STREAM_DRAWS, STREAM_OPS, STREAM_PACE, worker_seed};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::ops::{self, Op, OpKind, Scratch, Slot};
use super::schedule::{Schedule, Walk};
use crate::host::process_cpu_ms;
use crate::outbox::Outbox;

/// What the link hands the engine.
#[derive(Debug)]
pub(crate) enum Command {
    Start(Box<pb::StartPhase>),
    Stop(u32),
    /// Stop whatever runs (shutdown).
    StopAll,
}

#[derive(Clone, Copy)]
pub(crate) struct EngineConfig {
    /// Stop generating load when the coordinator has been unreachable this
    /// long: an agent never loads a target without someone listening.
    pub lease: Duration,
    /// Worker threads per phase; 0 = one per core.
    pub threads: usize,
}

/// Runs phases until `stop`; `idle` is true whenever no phase runs.
pub(crate) async fn run(
    cfg: EngineConfig,
    mut commands: mpsc::Receiver<Command>,
    outbox: Arc<Outbox>,
    connected: watch::Receiver<bool>,
    idle: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut current: Option<(u32, CancellationToken, tokio::task::JoinHandle<()>)> = None;
    loop {
        let finished = async {
            match current.as_mut() {
                Some((_, _, handle)) => {
                    let _ = handle.await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = finished => {
                current = None;
                idle.send_replace(true);
            }
            cmd = commands.recv() => match cmd {
                None => break,
                Some(Command::Start(s)) => {
                    if let Some((index, token, handle)) = current.take() {
                        tracing::warn!("phase {} still running when phase {} was started: stopping it", index, s.phase_index);
                        token.cancel();
                        let _ = handle.await;
                    }
                    let token = stop.child_token();
                    let index = s.phase_index;
                    idle.send_replace(false);
                    let handle = tokio::spawn(run_phase(
                        *s,
                        outbox.clone(),
                        token.clone(),
                        connected.clone(),
                        cfg,
                    ));
                    current = Some((index, token, handle));
                }
                Some(Command::Stop(index)) => {
                    if let Some((i, token, _)) = &current && *i == index {
                        token.cancel();
                    }
                }
                Some(Command::StopAll) => {
                    if let Some((_, token, _)) = &current {
                        token.cancel();
                    }
                }
            }
        }
    }
    if let Some((_, token, handle)) = current {
        token.cancel();
        let _ = handle.await;
    }
}

/// The phase as this agent runs it.
struct Plan {
    phase_index: u32,
    start: Instant,
    duration: Duration,
    width: Duration,
    windows: u32,
    ops: Vec<Op>,
    picker: OpPicker,
    /// Connections (closed: workers) on this agent.
    concurrency: u32,
    /// Open loop: when this agent's sends are due.
    schedule: Option<Schedule>,
    /// Iterations this agent may still start (its share of the phase's).
    budget: Option<AtomicU64>,
    think: Option<Latency>,
    seed: u64,
    gens: Vec<GenSpec>,
    agent_index: u32,
    agent_count: u32,
    /// Workers per agent that generator lanes are laid out by.
    lanes: u32,
    threads: usize,
}

impl Plan {
    /// Claims one iteration of the budget; false when it is spent.
    #[inline]
    fn claim(&self) -> bool {
        match &self.budget {
            None => true,
            Some(b) => b
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

async fn plan(s: pb::StartPhase, threads: usize) -> Result<Plan> {
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
    Ok(Plan {
        phase_index: s.phase_index,
        start,
        duration,
        width,
        windows,
        ops,
        picker,
        concurrency: s.concurrency,
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

/// What a worker thread reports to the phase task.
enum ThreadMsg {
    Window(u32, Vec<WindowAcc>),
    Done { abandoned: u64 },
}

async fn run_phase(
    s: pb::StartPhase,
    outbox: Arc<Outbox>,
    stop: CancellationToken,
    connected: watch::Receiver<bool>,
    cfg: EngineConfig,
) {
    let phase_index = s.phase_index;
    let plan = match plan(s, cfg.threads).await {
        Ok(p) => Arc::new(p),
        Err(e) => {
            outbox.push(notice(
                pb::agent_notice::Level::Error,
                format!("phase {phase_index} cannot run: {e:#}"),
            ));
            outbox.push(pb::event::Kind::PhaseEnded(pb::PhaseEnded {
                phase_index,
                stopped_early: true,
                ..Default::default()
            }));
            return;
        }
    };
    let halt = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::unbounded_channel::<ThreadMsg>();
    let cpu_before = process_cpu_ms();
    let joins = start_threads(&plan, &halt, tx, &outbox);
    let mut phase = PhaseTask::new(&plan, &outbox, &halt, joins.len() as u32);
    phase.collect(rx, &stop, connected, cfg.lease).await;
    phase.close();
    for j in joins {
        let _ = tokio::task::spawn_blocking(move || j.join()).await;
    }
    let cpu_ms = process_cpu_ms().saturating_sub(cpu_before);
    phase.end(cpu_ms);
}

/// Starts the phase's load threads. None when this agent has no workers in
/// the phase (it just reports its empty end); a thread that cannot start is
/// reported and halts the others.
fn start_threads(
    plan: &Arc<Plan>,
    halt: &Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<ThreadMsg>,
    outbox: &Outbox,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut joins = Vec::new();
    let thread_count = if plan.concurrency == 0 {
        0
    } else {
        plan.threads
    };
    for t in 0..thread_count {
        let (plan, thread_halt, tx) = (plan.clone(), halt.clone(), tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || thread_main(plan, t, thread_halt, tx));
        match spawned {
            Ok(j) => joins.push(j),
            Err(e) => {
                outbox.push(notice(
                    pb::agent_notice::Level::Error,
                    format!("cannot start load thread {t}: {e}"),
                ));
                halt.store(true, Ordering::Relaxed);
            }
        }
    }
    joins
}

/// The phase task while its threads run: it merges their windows, pushes
/// each once all threads reported it, and reports the phase's start and end.
struct PhaseTask<'a> {
    plan: &'a Plan,
    outbox: &'a Outbox,
    halt: &'a AtomicBool,
    /// Threads that started (each reports every window, then Done).
    threads: u32,
    /// Windows not every thread has reported yet: (reports, merged).
    pending: BTreeMap<u32, (u32, Vec<WindowAcc>)>,
    /// Where a stop (by run control, a lease, a budget spent) cut the
    /// schedule: nothing after it was asked of the agent. µs since the
    /// phase start; `u64::MAX`: not stopped.
    cut_at: u64,
    requests: u64,
    abandoned: u64,
    windows_sent: u32,
    stopped_early: bool,
    reported_start: bool,
}

impl<'a> PhaseTask<'a> {
    fn new(plan: &'a Plan, outbox: &'a Outbox, halt: &'a AtomicBool, threads: u32) -> Self {
        PhaseTask {
            plan,
            outbox,
            halt,
            threads,
            pending: BTreeMap::new(),
            cut_at: u64::MAX,
            requests: 0,
            abandoned: 0,
            windows_sent: 0,
            stopped_early: false,
            reported_start: false,
        }
    }

    /// Runs until every thread is done: reports the start when it comes,
    /// merges windows as they arrive, and halts the threads on a stop or
    /// when the coordinator has been gone for longer than `lease`.
    async fn collect(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<ThreadMsg>,
        stop: &CancellationToken,
        mut connected: watch::Receiver<bool>,
        lease: Duration,
    ) {
        let started = tokio::time::Instant::from_std(self.plan.start);
        let lease_expired = lease_expired(&mut connected, lease);
        tokio::pin!(lease_expired);
        if self.threads == 0 {
            // Nothing to run; still wait for the start so the end follows it.
            tokio::time::sleep_until(started).await;
        }
        let mut done = 0u32;
        while done < self.threads {
            tokio::select! {
                biased;
                () = stop.cancelled(), if !self.stopped_early => self.halt_early(),
                () = &mut lease_expired, if !self.stopped_early => {
                    self.halt_early();
                    self.outbox.push(notice(
                        pb::agent_notice::Level::Error,
                        format!("coordinator unreachable for {lease:?}: stopped phase {}", self.plan.phase_index),
                    ));
                }
                () = tokio::time::sleep_until(started), if !self.reported_start => self.report_start(),
                m = rx.recv() => match m {
                    Some(ThreadMsg::Window(index, accs)) => self.merge(index, &accs),
                    Some(ThreadMsg::Done { abandoned }) => {
                        self.abandoned += abandoned;
                        done += 1;
                    }
                    None => break,
                }
            }
        }
    }

    fn halt_early(&mut self) {
        self.stopped_early = true;
        self.cut();
        self.halt.store(true, Ordering::Relaxed);
    }

    fn report_start(&mut self) {
        self.reported_start = true;
        self.outbox
            .push(pb::event::Kind::PhaseStarted(pb::PhaseStarted {
                phase_index: self.plan.phase_index,
                started_at_us: fleetbench::clock::now_us(),
            }));
    }

    /// Cuts the schedule now.
    fn cut(&mut self) {
        let since = Instant::now().saturating_duration_since(self.plan.start);
        self.cut_at = since.as_micros() as u64;
    }

    /// Adds one thread's window; pushes it once all threads reported it.
    fn merge(&mut self, index: u32, accs: &[WindowAcc]) {
        self.requests += accs.iter().map(WindowAcc::requests).sum::<u64>();
        let ops = &self.plan.ops;
        let entry = self
            .pending
            .entry(index)
            .or_insert_with(|| (0, ops.iter().map(|_| WindowAcc::new()).collect()));
        entry.0 += 1;
        for (a, b) in entry.1.iter_mut().zip(accs.iter()) {
            a.merge(b);
        }
        if entry.0 == self.threads {
            let (_, mut accs) = self.pending.remove(&index).expect("entry exists");
            self.push_window(index, &mut accs);
        }
    }

    /// What the schedule called for in window `index` (open loop), whether
    /// or not the workers got to it: sends due in [index·w, (index+1)·w),
    /// cut at the phase's end or where it was stopped. Whole counts that add
    /// up over the phase.
    fn due(&self, index: u32) -> u64 {
        let Some(schedule) = &self.plan.schedule else {
            return 0;
        };
        let planned = self.plan.duration.as_secs_f64();
        let end = match self.cut_at {
            u64::MAX => planned,
            us => (us as f64 / 1e6).min(planned),
        };
        let w = self.plan.width.as_secs_f64();
        let from = (f64::from(index) * w).min(end);
        let to = (f64::from(index + 1) * w).min(end);
        let workers_due = |t: f64| schedule.count_at(t).ceil() as u64;
        workers_due(to).saturating_sub(workers_due(from))
    }

    fn push_window(&mut self, index: u32, accs: &mut [WindowAcc]) {
        if let Some(first) = accs.first_mut() {
            first.scheduled = self.due(index);
        }
        let plan = self.plan;
        for (op, acc) in plan.ops.iter().zip(accs.iter()) {
            // A named op that no iteration picked in this window sends
            // nothing; the single op always sends (an empty window is a fact).
            if plan.ops.len() > 1 && acc.is_empty() {
                continue;
            }
            let mut w = acc.to_pb(plan.phase_index, index, plan.width.as_millis() as u32);
            w.op = op.name.clone();
            self.outbox.push(pb::event::Kind::Window(w));
        }
        self.windows_sent += 1;
    }

    /// After the threads are done: the start if it never was reported, the
    /// schedule's cut if the phase ended early, and the windows not every
    /// thread reached (a thread stopped a window early).
    fn close(&mut self) {
        if !self.reported_start {
            self.report_start();
        }
        // Ended before the deadline (a budget spent): the schedule ends here.
        if !self.stopped_early && Instant::now() < self.plan.start + self.plan.duration {
            self.cut();
        }
        for (index, (_, mut accs)) in std::mem::take(&mut self.pending) {
            self.push_window(index, &mut accs);
        }
    }

    /// Reports the phase's end.
    fn end(&self, cpu_ms: u64) {
        let iterations_done = self
            .plan
            .budget
            .as_ref()
            .is_some_and(|b| b.load(Ordering::Relaxed) == 0);
        self.outbox
            .push(pb::event::Kind::PhaseEnded(pb::PhaseEnded {
                phase_index: self.plan.phase_index,
                windows: self.windows_sent,
                requests: self.requests,
                abandoned_in_flight: self.abandoned,
                stopped_early: self.stopped_early,
                cpu_ms,
                threads: self.threads,
                iterations_done,
            }));
    }
}

/// Resolves once the coordinator has been unreachable for longer than
/// `lease` at a stretch; never if the link is gone for good.
async fn lease_expired(connected: &mut watch::Receiver<bool>, lease: Duration) {
    loop {
        if connected.wait_for(|c| !*c).await.is_err() {
            return std::future::pending().await;
        }
        let back = tokio::time::timeout(lease, connected.wait_for(|c| *c)).await;
        if back.is_err() {
            return;
        }
    }
}

fn notice(level: pb::agent_notice::Level, message: String) -> pb::event::Kind {
    tracing::warn!("{message}");
    pb::event::Kind::Notice(pb::AgentNotice {
        level: level as i32,
        message,
    })
}

// ---------------------------------------------------------------- one thread

/// How often a load thread's event-loop probe fires.
const PROBE: Duration = Duration::from_millis(10);

/// Per-thread state shared by the thread's workers (never across threads).
struct Shared {
    plan: Arc<Plan>,
    halt: Arc<AtomicBool>,
    deadline: Instant,
    /// Set when the thread stops issuing requests.
    stopping: Cell<bool>,
    in_flight: Cell<u64>,
    /// Workers still running (an iteration budget can end them early).
    workers: Cell<usize>,
    recorder: RefCell<Recorder>,
}

impl Shared {
    #[inline]
    fn should_stop(&self, now: Instant) -> bool {
        self.stopping.get() || now >= self.deadline || self.halt.load(Ordering::Relaxed)
    }
}

/// Windows of one thread, indexed from the phase start; one accumulator per
/// op in each.
struct Recorder {
    start: Instant,
    width_us: u128,
    last: u32,
    ops: usize,
    /// Index of `windows[0]`.
    base: u32,
    windows: VecDeque<Vec<WindowAcc>>,
}

impl Recorder {
    fn index_at(&self, at: Instant) -> u32 {
        let since = at.saturating_duration_since(self.start).as_micros();
        ((since / self.width_us) as u32).min(self.last)
    }

    /// The accumulator of `op` in the window that holds instant `at`
    /// (completions after the phase end land in the last window).
    #[inline]
    fn at(&mut self, at: Instant, op: usize) -> &mut WindowAcc {
        let index = self.index_at(at).max(self.base);
        let slot = (index - self.base) as usize;
        while self.windows.len() <= slot {
            let fresh = (0..self.ops).map(|_| WindowAcc::new()).collect();
            self.windows.push_back(fresh);
        }
        &mut self.windows[slot][op]
    }

    /// Takes every window before `index`, empty ones included.
    fn take_before(&mut self, index: u32) -> Vec<(u32, Vec<WindowAcc>)> {
        let mut out = Vec::new();
        while self.base < index {
            let accs = self
                .windows
                .pop_front()
                .unwrap_or_else(|| (0..self.ops).map(|_| WindowAcc::new()).collect());
            out.push((self.base, accs));
            self.base += 1;
        }
        out
    }
}

fn thread_main(
    plan: Arc<Plan>,
    thread: usize,
    halt: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<ThreadMsg>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("load thread {thread}: no runtime: {e}");
            let _ = tx.send(ThreadMsg::Done { abandoned: 0 });
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, thread_loop(plan, thread, halt, tx));
}

async fn thread_loop(
    plan: Arc<Plan>,
    thread: usize,
    halt: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<ThreadMsg>,
) {
    let deadline = plan.start + plan.duration;
    let shared = Rc::new(Shared {
        plan: plan.clone(),
        halt,
        deadline,
        stopping: Cell::new(false),
        in_flight: Cell::new(0),
        workers: Cell::new(0),
        recorder: RefCell::new(Recorder {
            start: plan.start,
            width_us: plan.width.as_micros().max(1),
            last: plan.windows.saturating_sub(1),
            ops: plan.ops.len(),
            base: 0,
            windows: VecDeque::new(),
        }),
    });
    tokio::time::sleep_until(tokio::time::Instant::from_std(plan.start)).await;

    // This thread's workers: every threads-th of the agent's connections.
    let mut workers = tokio::task::JoinSet::new();
    let total = plan.concurrency as usize;
    for w in (thread..total).step_by(plan.threads) {
        shared.workers.set(shared.workers.get() + 1);
        workers.spawn_local(worker(shared.clone(), w));
    }

    // Tick: hand over each window as soon as it is over. Every wake-up of
    // this loop (at least every PROBE) also measures how late the thread's
    // timer fired: the event-loop probe.
    let mut next = 1u32;
    loop {
        let now = Instant::now();
        if shared.should_stop(now) || shared.workers.get() == 0 {
            break;
        }
        let tick = plan.start + plan.width * next;
        if now >= tick {
            let closed = shared.recorder.borrow_mut().take_before(next);
            for (i, accs) in closed {
                let _ = tx.send(ThreadMsg::Window(i, accs));
            }
            next += 1;
            continue;
        }
        let wake = tick.min(now + PROBE).min(deadline);
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
        let woke = Instant::now();
        let lag = woke.saturating_duration_since(wake).as_micros() as u64;
        shared
            .recorder
            .borrow_mut()
            .at(wake.min(deadline), 0)
            .record_loop_lag(lag);
    }

    // Stop issuing; let requests in flight finish for a moment.
    shared.stopping.set(true);
    let grace = plan
        .ops
        .iter()
        .map(Op::grace)
        .max()
        .unwrap_or(Duration::from_secs(2));
    let _ = tokio::time::timeout(grace, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    let abandoned = shared.in_flight.get();
    workers.abort_all();

    let now = Instant::now();
    let stopped_at = shared.recorder.borrow().index_at(now.min(deadline));
    let last = if now >= deadline {
        plan.windows.saturating_sub(1)
    } else {
        stopped_at
    };
    let rest = shared.recorder.borrow_mut().take_before(last + 1);
    for (i, accs) in rest {
        let _ = tx.send(ThreadMsg::Window(i, accs));
    }
    let _ = tx.send(ThreadMsg::Done { abandoned });
}

/// When a worker sends.
enum Pace {
    Closed,
    Open(Walk),
}

/// Decrements the thread's worker count when a worker ends (even aborted).
struct WorkerGuard(Rc<Shared>);

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        self.0.workers.set(self.0.workers.get().saturating_sub(1));
    }
}

/// One worker: picks an op per iteration, runs it, records it. Closed loop:
/// the next iteration starts when this one is done (plus the think time).
/// Open loop: each send has an intended time from the schedule; latency
/// counts from it, and a worker that waited for it but woke late records
/// that the agent, not the target, was behind.
async fn worker(shared: Rc<Shared>, w: usize) {
    let _guard = WorkerGuard(shared.clone());
    let plan = shared.plan.clone();
    let agent = plan.agent_index;
    let mut rng = Rng::new(worker_seed(plan.seed, agent, w, STREAM_OPS));
    let mut pace_rng = Rng::new(worker_seed(plan.seed, agent, w, STREAM_PACE));
    let lane = Lane {
        agent,
        agents: plan.agent_count,
        worker: w as u32,
        workers: plan.lanes,
    };
    let values = WorkerGen::new(&plan.gens, plan.seed, lane);
    // Draws inside ops (synthetic latencies and errors).
    let op_rng = Rng::new(worker_seed(plan.seed, agent, w, STREAM_DRAWS));
    let mut scratch = Scratch::new(values, op_rng);
    let mut slots: Vec<Slot> = plan.ops.iter().map(Op::slot).collect();
    let mut pace = match &plan.schedule {
        Some(s) => Pace::Open(Walk::new(s, w, plan.concurrency as usize, &mut pace_rng)),
        None => Pace::Closed,
    };
    let mut iteration = 0u64;
    loop {
        let intended = match &mut pace {
            Pace::Closed => {
                if shared.should_stop(Instant::now()) {
                    break;
                }
                None
            }
            Pace::Open(walk) => {
                let schedule = plan.schedule.as_ref().expect("open loop has a schedule");
                let Some(t) = walk.next(schedule, &mut pace_rng) else {
                    break;
                };
                let at = plan.start + Duration::from_secs_f64(t);
                if at >= shared.deadline || shared.should_stop(Instant::now()) {
                    break;
                }
                Some(at)
            }
        };
        if !plan.claim() {
            break;
        }
        let op = plan.picker.pick(&mut rng);
        if let Some(at) = intended {
            // Wait for the intended time, watching the idle connection so
            // that a server-side close is noticed before sending.
            let now = Instant::now();
            if at > now {
                let slot = &mut slots[op];
                tokio::select! {
                    biased;
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                    () = slot.closed() => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    }
                }
                let woke = Instant::now();
                let lag = woke.saturating_duration_since(at).as_micros() as u64;
                shared.recorder.borrow_mut().at(at, op).record_wake_lag(lag);
            }
            if shared.should_stop(Instant::now()) {
                break;
            }
        }
        scratch.values.begin(iteration);
        iteration += 1;
        let (sent, outcome, bytes) = ops::execute(
            &plan.ops[op],
            &mut slots[op],
            &mut scratch,
            &shared.in_flight,
        )
        .await;
        let done = Instant::now();
        let from = intended.unwrap_or(sent);
        let latency = done.saturating_duration_since(from).as_micros() as u64;
        {
            let mut rec = shared.recorder.borrow_mut();
            let acc = rec.at(done, op);
            if let Some(at) = intended {
                acc.record_send_lag(sent.saturating_duration_since(at).as_micros() as u64);
            }
            acc.bytes_sent += bytes;
            match outcome {
                Ok(received) => {
                    acc.bytes_received += received;
                    acc.record_ok(latency);
                }
                Err((class, timed)) => acc.record_error(class, timed.then_some(latency)),
            }
        }
        if let Some(think) = &plan.think {
            let pause = Duration::from_micros(think.sample(&mut rng));
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
}
