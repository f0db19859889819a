//! Precise wake-ups for one load thread's workers: an open-loop send is due
//! at an instant, and so is the end of a synthetic op's drawn latency, both
//! finer than tokio's timer keeps (it rounds up to whole milliseconds, which
//! made every send 0.5–1 ms late).
//!
//! A load thread has one [`Alarms`]: a `timerfd` (CLOCK_MONOTONIC, armed
//! with an absolute expiry; timer slack does not apply to it), registered
//! with the thread's own tokio reactor, and the instants its workers wait
//! for in a min-heap. The timer is armed for the earliest of them only;
//! when it fires, the thread's epoll wakes, the alarm task ([`Alarms::run`])
//! wakes every worker whose instant has come and arms the timer for the
//! next. So a thread wakes once per due instant (one per second at
//! 1 req/s), and many workers share one timer.
//!
//! Waking a thread is not instant: between the timer's expiry and the alarm
//! task running lie the interrupt, the scheduler and the return from epoll,
//! 30–70 µs on a VM. So the timer is armed that much *early* (the
//! [`Advance`], learned per thread from how late it actually woke), and the
//! alarm task spins, reading the clock, over the few microseconds left to
//! the instant. A send is then on time to about a microsecond, at the cost
//! of spinning the difference between the advance and the actual wake-up:
//! a few microseconds per wake, nothing between wakes.
//!
//! Each wake-up has a price: on a VM, putting a thread to sleep and waking
//! it costs ~20 µs of its CPU (bench/wake-cost.sh), so 10,000 sends a
//! second, each its own wake-up, cost a fifth of a core in wake-ups alone.
//! A phase that would rather spend less CPU than send on the microsecond
//! sets a slack (`send_slack`): a send ([`Alarm::send_at`]) may then go out
//! up to the slack after its instant. The timer is armed for the earliest
//! send plus the slack, every send due by then goes out on that one
//! wake-up, and a thread awake anyway (a worker just finished a request)
//! sends whatever is already due. Each send is at most the slack late (its
//! send lag shows it; its latency includes it). Waits that must end on time
//! ([`Alarm::until`]: a synthetic op's drawn latency) never take a slack.
//!
//! A worker holds an [`Alarm`] (its place in the thread's table) and awaits
//! [`Alarm::until`]. Nothing here knows about sends, ops or windows.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::net::unix::pipe;

/// What one worker waits for.
#[derive(Default)]
struct Waiting {
    at: Option<Instant>,
    waker: Option<Waker>,
}

/// The two queues of instants: waits that end on time, and sends that may
/// take the slack.
const PRECISE: usize = 0;
const SLACK: usize = 1;

/// (instant, worker), earliest first; an entry whose worker no longer
/// waits for that instant is stale and skipped.
type Queue = BinaryHeap<Reverse<(Instant, usize)>>;

/// How early the timer is armed before an instant: an estimate of the
/// thread's wake-up delay (timer expiry to the alarm task running), at the
/// [`Advance::QUANTILE`] of the delays seen, so that most wakes come a
/// little early and spin the rest, and few come late. A stochastic quantile
/// estimate: each delay above it raises it by `UP`, each below lowers it by
/// `DOWN` (UP / DOWN = q / (1 − q)); one delay, however long (the thread
/// preempted, or busy with responses), moves it by `UP` only.
///
/// What a wake spins is the advance less the actual delay: the spread of
/// the delays, a few microseconds. The advance is kept under
/// [`Advance::MAX_NS`] and under a quarter of the mean time between the
/// thread's wakes, so that even delays that vary wildly (a busy machine)
/// never make spinning more than a quarter of the thread's time.
struct Advance {
    ns: Cell<u64>,
    /// Mean time between the thread's timer wakes, ns (an EWMA, weight 1/8).
    interval_ns: Cell<u64>,
    last_wake: Cell<Option<Instant>>,
}

impl Advance {
    /// Which quantile of the wake-up delays the advance tracks: 3/4.
    const QUANTILE: (u64, u64) = (3, 4);
    /// Where it starts: about a VM's wake-up delay.
    const INITIAL_NS: u64 = 30_000;
    /// Never more: a thread spins at most this long per wake.
    const MAX_NS: u64 = 150_000;
    const DOWN_NS: u64 = 250;
    const UP_NS: u64 = Self::DOWN_NS * Self::QUANTILE.0 / (Self::QUANTILE.1 - Self::QUANTILE.0);
    /// At most this share of the time between wakes: 1/4.
    const SHARE: u64 = 4;

    fn new() -> Advance {
        Advance {
            ns: Cell::new(Self::INITIAL_NS),
            interval_ns: Cell::new(1_000_000_000),
            last_wake: Cell::new(None),
        }
    }

    fn get(&self) -> Duration {
        Duration::from_nanos(self.ns.get().min(self.interval_ns.get() / Self::SHARE))
    }

    /// The thread's timer woke it at `now`.
    fn woke(&self, now: Instant) {
        if let Some(last) = self.last_wake.replace(Some(now)) {
            let gap = u64::try_from(now.saturating_duration_since(last).as_nanos())
                .unwrap_or(u64::MAX)
                .min(1_000_000_000);
            let mean = self.interval_ns.get();
            self.interval_ns.set(mean - mean / 8 + gap / 8);
        }
    }

    /// The timer, due at some instant, woke the thread `delay` after it.
    fn learn(&self, delay: Duration) {
        let ns = self.ns.get();
        let next = if delay.as_nanos() > u128::from(ns) {
            (ns + Self::UP_NS).min(Self::MAX_NS)
        } else {
            ns.saturating_sub(Self::DOWN_NS)
        };
        self.ns.set(next);
    }
}

/// What the timer is armed for: the instant the thread must be awake by
/// (a worker's instant, plus the slack for a send), and the (earlier)
/// expiry set, if it was still to come when set.
#[derive(Clone, Copy, PartialEq)]
struct Armed {
    at: Instant,
    fire: Option<Instant>,
}

/// One load thread's precise timer and the instants its workers wait for.
pub(crate) struct Alarms {
    timer: TimerFd,
    /// The same timer (a duplicate of its fd) on the thread's reactor: it
    /// reads as readable once expired. Tokio's `pipe::Receiver` takes any
    /// readable special file as an owned fd (`AsyncFd` would need `unsafe`).
    /// Its count of expiries is never read (see [`Alarms::run`]).
    expiries: pipe::Receiver,
    /// An `Instant` and CLOCK_MONOTONIC read just after it: the timer's
    /// expiry for an instant `at` is `clock + (at - base)`.
    base: Instant,
    clock: Duration,
    /// The instants waited for: [`PRECISE`] and [`SLACK`].
    due: [RefCell<Queue>; 2],
    waiting: RefCell<Vec<Waiting>>,
    /// What the timer is armed for, if it is.
    armed: Cell<Option<Armed>>,
    advance: Advance,
    /// How late a send may go out (the phase's `send_slack`): sends due by
    /// the earliest one's instant plus it share a wake-up.
    slack: Duration,
    /// Times the timer woke the thread.
    fires: Cell<u64>,
}

impl Alarms {
    /// A disarmed timer on the current thread's tokio reactor; sends may go
    /// out up to `slack` late (zero: each at its instant).
    pub(crate) fn new(slack: Duration) -> io::Result<Rc<Alarms>> {
        let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, flags).map_err(io::Error::from)?;
        let expiries =
            pipe::Receiver::from_owned_fd_unchecked(timer.as_fd().try_clone_to_owned()?)?;
        let base = Instant::now();
        let clock = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map_err(io::Error::from)?;
        Ok(Rc::new(Alarms {
            timer,
            expiries,
            base,
            clock: Duration::from(clock),
            due: [RefCell::new(Queue::new()), RefCell::new(Queue::new())],
            waiting: RefCell::new(Vec::new()),
            armed: Cell::new(None),
            advance: Advance::new(),
            slack,
            fires: Cell::new(0),
        }))
    }

    /// A worker's alarm on this thread.
    pub(crate) fn alarm(self: &Rc<Self>) -> Alarm {
        let mut waiting = self.waiting.borrow_mut();
        waiting.push(Waiting::default());
        Alarm {
            alarms: self.clone(),
            id: waiting.len() - 1,
        }
    }

    /// Wakes workers as their instants come; runs as long as the thread
    /// does (its task is aborted with the thread's workers). Ends only if
    /// the reactor fails, after waking everyone (they then fall back on
    /// reading the clock when polled).
    pub(crate) async fn run(self: Rc<Self>) {
        loop {
            if let Err(e) = self.expiries.readable().await {
                tracing::error!("load thread's timer failed: {e}");
                self.wake_due(None);
                return;
            }
            // The timer fired (a one-shot: disarmed now). Its count is not
            // read (a syscall): an operation that "would block" clears
            // tokio's readiness, and each later expiry is a new epoll event
            // (the fd is edge-triggered), arming included.
            let _ = self
                .expiries
                .try_io(|| Err::<(), _>(io::ErrorKind::WouldBlock.into()));
            let now = Instant::now();
            self.fires.set(self.fires.get() + 1);
            self.advance.woke(now);
            if let Some(Armed {
                fire: Some(fire), ..
            }) = self.armed.take()
                && now >= fire
            {
                self.advance.learn(now - fire);
            }
            if self.wake_due(Some(now)) {
                // Let the workers just woken send before arming (a
                // syscall): a few microseconds sooner.
                tokio::task::yield_now().await;
            }
            self.arm_next();
        }
    }

    /// Wakes every worker due by `now`: those whose wait must end on time
    /// (sends too, without a slack) and is due within the advance are spun
    /// to their instant (the timer was armed that early for them); sends
    /// that may take a slack go if their instant has passed. With `None`,
    /// wakes everyone at once. Whether it woke any.
    fn wake_due(&self, now: Option<Instant>) -> bool {
        let advance = self.advance.get();
        let precise = self.wake_queue(PRECISE, now, advance);
        let now = now.map(|_| Instant::now());
        let spin = if self.slack.is_zero() {
            advance
        } else {
            Duration::ZERO
        };
        let slack = self.wake_queue(SLACK, now, spin);
        precise || slack
    }

    /// [`Alarms::wake_due`] for one queue, spinning to instants up to
    /// `spin` after `now`.
    fn wake_queue(&self, queue: usize, now: Option<Instant>, spin: Duration) -> bool {
        let mut now = now;
        let mut woke = false;
        loop {
            let waker = {
                let mut due = self.due[queue].borrow_mut();
                let Some(&Reverse((at, id))) = due.peek() else {
                    return woke;
                };
                let mut waiting = self.waiting.borrow_mut();
                let w = &mut waiting[id];
                if w.at != Some(at) {
                    due.pop();
                    continue;
                }
                if let Some(t) = now
                    && at > t
                {
                    if at - t > spin {
                        return woke;
                    }
                    // The last microseconds: read the clock until `at`.
                    while Instant::now() < at {
                        std::hint::spin_loop();
                    }
                    now = Some(at);
                }
                due.pop();
                w.at = None;
                w.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
                woke = true;
            }
        }
    }

    /// The earliest live instant of `queue` (stale entries on top dropped).
    fn earliest(&self, queue: usize) -> Option<Instant> {
        let mut due = self.due[queue].borrow_mut();
        let waiting = self.waiting.borrow();
        while let Some(&Reverse((at, id))) = due.peek() {
            if waiting[id].at == Some(at) {
                return Some(at);
            }
            due.pop();
        }
        None
    }

    /// Arms the timer for the earliest instant the thread must be awake by:
    /// the earliest wait that ends on time, or the earliest send plus the
    /// slack.
    fn arm_next(&self) {
        let precise = self.earliest(PRECISE);
        let send = self.earliest(SLACK).map(|at| at + self.slack);
        if let Some(by) = precise.into_iter().chain(send).min() {
            self.arm(by);
        }
    }

    /// Arms the timer to fire the advance before `by`, the instant the
    /// thread must be awake by (replacing what it was armed for).
    fn arm(&self, by: Instant) {
        if self.armed.get().is_some_and(|a| a.at == by) {
            return;
        }
        let fire = by.checked_sub(self.advance.get()).unwrap_or(by);
        let expiry = self.clock + fire.saturating_duration_since(self.base);
        let set = self.timer.set(
            Expiration::OneShot(TimeSpec::from_duration(expiry)),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME,
        );
        match set {
            Ok(()) => self.armed.set(Some(Armed {
                at: by,
                // An expiry already past fires at once: its delay says
                // nothing about the thread's wake-ups.
                fire: (fire > Instant::now()).then_some(fire),
            })),
            // Cannot happen with a valid fd and expiry; the worker would
            // wait forever, so wake everyone instead (they poll the clock).
            Err(e) => {
                tracing::error!("arming the load thread's timer: {e}");
                self.wake_due(None);
            }
        }
    }

    /// Worker `id` waits for `at` with `waker`, in `queue`. The thread is
    /// awake: sends already due that were waiting for the timer go now.
    fn wait(&self, id: usize, at: Instant, queue: usize, waker: &Waker) {
        let fresh = {
            let mut waiting = self.waiting.borrow_mut();
            let w = &mut waiting[id];
            if !w.waker.as_ref().is_some_and(|old| old.will_wake(waker)) {
                w.waker = Some(waker.clone());
            }
            let fresh = w.at != Some(at);
            w.at = Some(at);
            fresh
        };
        if !fresh {
            return;
        }
        self.due[queue].borrow_mut().push(Reverse((at, id)));
        if queue == SLACK && !self.slack.is_zero() {
            self.wake_queue(SLACK, Some(Instant::now()), Duration::ZERO);
        }
        let by = if queue == SLACK { at + self.slack } else { at };
        if self.armed.get().is_none_or(|armed| by < armed.at) {
            self.arm(by);
        }
    }

    /// Worker `id` no longer waits.
    fn cancel(&self, id: usize) {
        let mut waiting = self.waiting.borrow_mut();
        waiting[id] = Waiting::default();
    }
}

/// One worker's precise timer.
pub(crate) struct Alarm {
    alarms: Rc<Alarms>,
    id: usize,
}

impl Alarm {
    /// Resolves at `at` (at once if it has passed), within microseconds of
    /// it when the thread is not busy.
    pub(crate) fn until(&self, at: Instant) -> Until<'_> {
        Until {
            alarm: self,
            at,
            queue: PRECISE,
        }
    }

    /// Resolves at `at` for a send: like [`Alarm::until`], or up to the
    /// phase's slack later, to share a wake-up with other sends.
    pub(crate) fn send_at(&self, at: Instant) -> Until<'_> {
        Until {
            alarm: self,
            at,
            queue: SLACK,
        }
    }
}

/// The future of [`Alarm::until`] and [`Alarm::send_at`].
pub(crate) struct Until<'a> {
    alarm: &'a Alarm,
    at: Instant,
    queue: usize,
}

impl Future for Until<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        self.alarm
            .alarms
            .wait(self.alarm.id, self.at, self.queue, cx.waker());
        Poll::Pending
    }
}

impl Drop for Until<'_> {
    fn drop(&mut self) {
        self.alarm.alarms.cancel(self.alarm.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a load thread of its own (a current-thread runtime and
    /// a `LocalSet`) with its alarms (`slack`) running beside it.
    fn on_a_load_thread<F, Fut, T>(slack: Duration, f: F) -> T
    where
        F: FnOnce(Rc<Alarms>) -> Fut,
        Fut: Future<Output = T>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let alarms = Alarms::new(slack).unwrap();
            let task = tokio::task::spawn_local(alarms.clone().run());
            let out = f(alarms).await;
            task.abort();
            out
        })
    }

    /// One worker waits for each `(instant, is a send)` in turn; the lag of
    /// each wait's end past its instant, µs (never early).
    async fn lags(alarm: Alarm, waits: Vec<(Instant, bool)>) -> Vec<u64> {
        let mut lags = Vec::new();
        for (at, send) in waits {
            if send {
                alarm.send_at(at).await;
            } else {
                alarm.until(at).await;
            }
            let now = Instant::now();
            assert!(now >= at, "woke early");
            lags.push(now.duration_since(at).as_micros() as u64);
        }
        lags
    }

    /// Many workers on one thread, each waiting for instants a few ms
    /// apart (sends without a slack, and other waits): every wait ends at
    /// or after its instant, and (the thread being idle otherwise) soon
    /// after it, on one fire of the timer.
    #[test]
    fn workers_wake_at_their_instants() {
        let mut lags = on_a_load_thread(Duration::ZERO, |alarms| async move {
            let start = Instant::now() + Duration::from_millis(5);
            let workers: Vec<_> = (0..8u64)
                .map(|w| {
                    // Sends (no slack) and other waits alike.
                    let waits = (0..50u64)
                        .map(|i| {
                            (
                                start + Duration::from_micros(w * 370 + i * 2_900),
                                i % 2 == 0,
                            )
                        })
                        .collect();
                    tokio::task::spawn_local(lags(alarms.alarm(), waits))
                })
                .collect();
            let mut all = Vec::new();
            for w in workers {
                all.extend(w.await.unwrap());
            }
            eprintln!("advance learned: {:?}", alarms.advance.get());
            // Each instant takes one fire at most: a fire armed the advance
            // early spins to its instant rather than firing again.
            let fires = alarms.fires.get();
            assert!(fires <= 8 * 50 + 8, "{fires} fires for 400 instants");
            all
        });
        lags.sort_unstable();
        let p50 = lags[lags.len() / 2];
        eprintln!(
            "p10 {} p50 {p50} p90 {} p99 {} max {}",
            lags[lags.len() / 10],
            lags[lags.len() * 9 / 10],
            lags[lags.len() * 99 / 100],
            lags[lags.len() - 1]
        );
        // Half of tokio's millisecond tick, which this timer replaces.
        assert!(p50 < 250, "median lag {p50} us: {lags:?}");
    }

    /// With a slack, sends close together share a wake-up: one worker
    /// sending at instants 100 µs apart with a 500 µs slack is woken at the
    /// first instant plus the slack, finds the next ones already past, and
    /// sends them at once; so its waits end up to the slack late, about
    /// half of it on the median, and never early. Another worker's waits
    /// that must end on time (a synthetic latency) take no slack.
    #[test]
    fn a_slack_batches_sends_but_not_precise_waits() {
        let slack = Duration::from_micros(500);
        let (mut sends, mut precise) = on_a_load_thread(slack, |alarms| async move {
            let start = Instant::now() + Duration::from_millis(5);
            let at = |us: u64| start + Duration::from_micros(us);
            let sends = (0..300).map(|i| (at(i * 100), true)).collect();
            let waits = (0..10).map(|i| (at(370 + i * 2_900), false)).collect();
            let sends = tokio::task::spawn_local(lags(alarms.alarm(), sends));
            let precise = tokio::task::spawn_local(lags(alarms.alarm(), waits));
            (sends.await.unwrap(), precise.await.unwrap())
        });
        sends.sort_unstable();
        precise.sort_unstable();
        let (p50, precise_p50) = (sends[sends.len() / 2], precise[precise.len() / 2]);
        eprintln!(
            "sends p50 {p50} max {}; precise p50 {precise_p50}",
            sends[sends.len() - 1]
        );
        // Without the slack, the median lag is a few microseconds.
        assert!(
            p50 >= 150,
            "median send lag {p50} us: the slack did not batch"
        );
        assert!(
            precise_p50 < 150,
            "a precise wait took the slack: {precise:?}"
        );
    }

    /// The advance settles at the quantile of the delays it is shown, one
    /// long delay (the thread preempted) moves it by one step only, and it
    /// stays under a quarter of the time between wakes.
    #[test]
    fn advance_tracks_the_wake_up_delay() {
        let advance = Advance::new();
        // Delays of 40, 50, 60 and 70 µs in turn: 3/4 of them are 60 µs or less.
        for i in 0..4_000u64 {
            advance.learn(Duration::from_micros(40 + 10 * (i % 4)));
        }
        let settled = advance.get();
        assert!(
            (Duration::from_micros(58)..=Duration::from_micros(71)).contains(&settled),
            "{settled:?}"
        );
        advance.learn(Duration::from_secs(1));
        assert_eq!(
            advance.get(),
            settled + Duration::from_nanos(Advance::UP_NS)
        );
        for _ in 0..4_000 {
            advance.learn(Duration::from_secs(1));
        }
        assert_eq!(advance.get(), Duration::from_nanos(Advance::MAX_NS));
        // Woken every 100 µs, it spins at most a quarter of that.
        let t = Instant::now();
        for i in 0..200 {
            advance.woke(t + Duration::from_micros(100 * i));
        }
        let capped = advance.get();
        assert!(
            (Duration::from_micros(24)..=Duration::from_micros(26)).contains(&capped),
            "{capped:?}"
        );
    }
}
