//! One phase on this agent: starts its load threads, merges their windows
//! into one `ResultWindow` per op and index, stops on command, lease or
//! budget, and reports the phase's start and end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fleetbench::pb;
use fleetbench::window::WindowAcc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::plan::{Plan, plan};
use super::thread::{ThreadMsg, thread_main};
use crate::host::process_cpu_ms;
use crate::outbox::Outbox;

/// Runs one phase to its end on `threads` load threads (0: one per core),
/// stopping when `stop` fires or the coordinator is away longer than
/// `lease`.
pub(super) async fn run_phase(
    s: pb::StartPhase,
    outbox: Arc<Outbox>,
    stop: CancellationToken,
    connected: watch::Receiver<bool>,
    (lease, threads): (Duration, usize),
) {
    let phase_index = s.phase_index;
    let plan = match plan(s, threads).await {
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
    phase.collect(rx, &stop, connected, lease).await;
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
            if self.plan.schedule.is_some() {
                first.connections = self.plan.connections();
            }
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
        for op in &self.plan.ops {
            for why in op.take_failures() {
                let who = if op.name.is_empty() {
                    String::new()
                } else {
                    format!("op {:?}: ", op.name)
                };
                self.outbox.push(notice(
                    pb::agent_notice::Level::Error,
                    format!("phase {}: {who}{why}", self.plan.phase_index),
                ));
            }
        }
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
                ran_us: Some(self.ran_us()),
            }));
    }

    /// How long the load ran, µs from the phase's start: to where it was
    /// cut, or the planned duration.
    fn ran_us(&self) -> u64 {
        let planned = self.plan.duration.as_micros() as u64;
        self.cut_at.min(planned)
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
