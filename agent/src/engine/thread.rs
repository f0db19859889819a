//! One load thread: a single-threaded tokio runtime whose workers share one
//! window recorder, with no lock or atomic on the hot path; and the worker
//! loop itself (pick an op, wait for its time, run it, record it).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fleetbench::window::{Stage, WindowAcc};
use fleetbench_gen::rng::Rng;
use fleetbench_gen::{Lane, WorkerGen};
use fleetbench_gen::{STREAM_DRAWS, STREAM_OPS, STREAM_PACE, worker_seed};
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;

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
    /// Told when the last worker ends.
    all_done: Notify,
    /// Every worker started on this thread, to abort at the end.
    handles: RefCell<Vec<AbortHandle>>,
    recorder: RefCell<Recorder>,
    alarms: Rc<Alarms>,
    /// Open loop: this thread's share of the schedule, which its workers
    /// take sends from in turn, each its next when it is free.
    sends: Option<RefCell<Sends>>,
    /// Open loop: workers waiting for the intended time of a send they took.
    holding: Cell<usize>,
}

/// One thread's walk through the open-loop schedule.
struct Sends {
    walk: Walk,
    rng: Rng,
}

impl Shared {
    #[inline]
    fn should_stop(&self, now: Instant) -> bool {
        self.stopping.get() || now >= self.deadline || self.halt.load(Ordering::Relaxed)
    }

    /// Open loop: the intended time of the thread's next send, taken.
    #[inline]
    fn next_send(&self) -> Option<Instant> {
        let mut sends = self.sends.as_ref()?.borrow_mut();
        let Sends { walk, rng } = &mut *sends;
        let schedule = self.plan.schedule.as_ref()?;
        let t = walk.next(schedule, rng)?;
        Some(self.plan.start + Duration::from_secs_f64(t))
    }
}

/// Starts worker `w` on this thread.
fn spawn_worker(shared: &Rc<Shared>, w: usize) {
    shared.workers.set(shared.workers.get() + 1);
    let task = tokio::task::spawn_local(worker(shared.clone(), w, shared.alarms.alarm()));
    shared.handles.borrow_mut().push(task.abort_handle());
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
    let slack = plan.schedule.as_ref().map_or(Duration::ZERO, |s| s.slack);
    let alarms = match Alarms::new(slack) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("load thread {thread}: no timer: {e}");
            let _ = tx.send(ThreadMsg::Done { abandoned: 0 });
            return;
        }
    };
    let sends = plan.schedule.as_ref().map(|s| {
        let mut rng = Rng::new(worker_seed(
            plan.seed,
            plan.agent_index,
            thread,
            STREAM_PACE,
        ));
        let walk = Walk::new(s, thread, plan.threads, &mut rng);
        RefCell::new(Sends { walk, rng })
    });
    let shared = Rc::new(Shared {
        plan: plan.clone(),
        halt,
        deadline,
        stopping: Cell::new(false),
        in_flight: Cell::new(0),
        workers: Cell::new(0),
        all_done: Notify::new(),
        handles: RefCell::new(Vec::new()),
        recorder: RefCell::new(Recorder {
            start: plan.start,
            width_us: plan.width.as_micros().max(1),
            last: plan.windows.saturating_sub(1),
            ops: plan.ops.len(),
            base: 0,
            windows: VecDeque::new(),
        }),
        alarms: alarms.clone(),
        sends,
        holding: Cell::new(0),
    });
    let alarm_task = tokio::task::spawn_local(alarms.run());
    tokio::time::sleep_until(tokio::time::Instant::from_std(plan.start)).await;

    // This thread's workers: every threads-th of the agent's connections
    // (in open loop the pool grows from there: see `worker`).
    let total = plan.concurrency as usize;
    for w in (thread..total).step_by(plan.threads) {
        spawn_worker(&shared, w);
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
        while shared.workers.get() > 0 {
            shared.all_done.notified().await;
        }
    })
    .await;
    let abandoned = shared.in_flight.get();
    for task in shared.handles.borrow().iter() {
        task.abort();
    }
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

/// Decrements the thread's worker count when a worker ends (even aborted).
struct WorkerGuard(Rc<Shared>);

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let left = self.0.workers.get().saturating_sub(1);
        self.0.workers.set(left);
        if left == 0 {
            self.0.all_done.notify_one();
        }
    }
}

/// One worker: picks an op per iteration, runs it, records it. Closed loop:
/// the next iteration starts when this one is done (plus the think time).
/// Open loop: a free worker takes the thread's next send from the schedule
/// and waits for its intended time; latency counts from it, and a worker
/// that waited for it but woke late records that the agent, not the
/// target, was behind. When a send is due and no other worker of the
/// thread holds a later one, every connection would be busy at the next:
/// the thread opens one more (up to the agent's `max_connections`), which
/// takes that one. A send taken after its time, at the cap, found every
/// connection busy: it is counted (`busy_late`).
async fn worker(shared: Rc<Shared>, w: usize, alarm: Alarm) {
    let _guard = WorkerGuard(shared.clone());
    let plan = shared.plan.clone();
    let agent = plan.agent_index;
    let mut rng = Rng::new(worker_seed(plan.seed, agent, w, STREAM_OPS));
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
    let open = shared.sends.is_some();
    let mut iteration = 0u64;
    // When and for which op the last try ended.
    let mut last: Option<(Instant, usize)> = None;
    loop {
        let intended = if open {
            let Some(at) = shared.next_send() else {
                break;
            };
            if at >= shared.deadline || shared.should_stop(Instant::now()) {
                break;
            }
            Some(at)
        } else {
            if shared.should_stop(Instant::now()) {
                break;
            }
            None
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
                shared.holding.set(shared.holding.get() + 1);
                let slot = &mut slots[op];
                tokio::select! {
                    biased;
                    () = scratch.alarm.send_at(at) => {}
                    () = slot.closed() => scratch.alarm.send_at(at).await,
                }
                shared.holding.set(shared.holding.get() - 1);
                let woke = Instant::now();
                let lag = woke.saturating_duration_since(at).as_micros() as u64;
                shared.recorder.borrow_mut().at(at, op).record_wake_lag(lag);
            } else if at < now && plan.connections() >= plan.max_connections {
                shared.recorder.borrow_mut().at(at, op).busy_late += 1;
            }
            if shared.should_stop(Instant::now()) {
                break;
            }
            if shared.holding.get() == 0
                && let Some(next) = plan.grow()
            {
                spawn_worker(&shared, next);
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
        last = Some((done, op));
        let from = intended.unwrap_or(sent);
        let latency = done.saturating_duration_since(from).as_micros() as u64;
        {
            let mut rec = shared.recorder.borrow_mut();
            let acc = rec.at(done, op);
            if let Some(at) = intended {
                acc.record_send_lag(sent.saturating_duration_since(at).as_micros() as u64);
            }
            acc.bytes_sent += bytes;
            for (stage, us) in Stage::ALL.iter().zip(&mut scratch.stages) {
                if let Some(us) = us.take() {
                    acc.record_stage(*stage, us);
                }
            }
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
    // Closing the worker's connections settles what they never delivered
    // (`bytes_sent`): it comes off the window of the last try.
    drop(slots);
    let (written, undelivered) = scratch.settle();
    if let Some((done, op)) = last {
        let mut rec = shared.recorder.borrow_mut();
        let acc = rec.at(done, op);
        acc.bytes_sent = (acc.bytes_sent + written).saturating_sub(undelivered);
    }
}
