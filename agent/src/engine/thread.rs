//! One load thread: a single-threaded tokio runtime whose workers share one
//! window recorder, with no lock or atomic on the hot path; and the worker
//! loop itself (pick an op, wait for its time, run it, record it).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fleetbench::window::WindowAcc;
use fleetbench_gen::rng::Rng;
use fleetbench_gen::{Lane, WorkerGen};
use fleetbench_gen::{STREAM_DRAWS, STREAM_OPS, STREAM_PACE, worker_seed};
use tokio::sync::mpsc;

use super::alarm::{Alarm, Alarms};
use super::ops::{self, Op, Scratch, Slot};
use super::plan::Plan;
use super::schedule::Walk;

/// What a worker thread reports to the phase task.
pub(super) enum ThreadMsg {
    Window(u32, Vec<WindowAcc>),
    Done { abandoned: u64 },
}

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

pub(super) fn thread_main(
    plan: Arc<Plan>,
    thread: usize,
    halt: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<ThreadMsg>,
) {
    // The kernel may defer this thread's sleeps (epoll's timeouts: the
    // probe, think times) by its timer slack, 50 µs by default; 1 ns keeps
    // them to the instant. (The send timer, a timerfd, has no slack.)
    if let Err(e) = nix::sys::prctl::set_timerslack(1) {
        tracing::debug!("load thread {thread}: timer slack stays: {e}");
    }
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
    let alarms = match Alarms::new() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("load thread {thread}: no timer: {e}");
            let _ = tx.send(ThreadMsg::Done { abandoned: 0 });
            return;
        }
    };
    let alarm_task = tokio::task::spawn_local(alarms.clone().run());
    tokio::time::sleep_until(tokio::time::Instant::from_std(plan.start)).await;

    // This thread's workers: every threads-th of the agent's connections.
    let mut workers = tokio::task::JoinSet::new();
    let total = plan.concurrency as usize;
    for w in (thread..total).step_by(plan.threads) {
        shared.workers.set(shared.workers.get() + 1);
        workers.spawn_local(worker(shared.clone(), w, alarms.alarm()));
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
    alarm_task.abort();

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
async fn worker(shared: Rc<Shared>, w: usize, alarm: Alarm) {
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
    let mut scratch = Scratch::new(values, op_rng, alarm);
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
            // Wait for the intended time (on the thread's precise timer),
            // watching the idle connection so that a server-side close is
            // noticed before sending.
            let now = Instant::now();
            if at > now {
                let slot = &mut slots[op];
                tokio::select! {
                    biased;
                    () = scratch.alarm.until(at) => {}
                    () = slot.closed() => scratch.alarm.until(at).await,
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
