//! Precise wake-ups for one load thread's workers: an open-loop send is due
//! at an instant, and so is the end of a synthetic op's drawn latency, both
//! finer than tokio's timer keeps (it rounds up to whole milliseconds, which
//! made every send 0.5–1 ms late).
//!
//! A load thread has one [`Alarms`]: a `timerfd` (CLOCK_MONOTONIC, armed
//! with an absolute expiry, which the kernel keeps to the microsecond with
//! no timer slack), registered with the thread's own tokio reactor, and the
//! instants its workers wait for in a min-heap. The timer is armed for the
//! earliest of them only; when it fires, the thread's epoll wakes, the alarm
//! task ([`Alarms::run`]) wakes every worker whose instant has come and arms
//! the timer for the next. So a thread wakes once per due instant (one per
//! second at 1 req/s), never spins, and many workers share one timer.
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

/// One load thread's precise timer and the instants its workers wait for.
pub(crate) struct Alarms {
    timer: TimerFd,
    /// The same timer (a duplicate of its fd) on the thread's reactor: it
    /// reads as readable once expired. Tokio's `pipe::Receiver` takes any
    /// readable special file as an owned fd (`AsyncFd` would need `unsafe`).
    expiries: pipe::Receiver,
    /// An `Instant` and CLOCK_MONOTONIC read just after it: the timer's
    /// expiry for an instant `at` is `clock + (at - base)`, never early.
    base: Instant,
    clock: Duration,
    /// (instant, worker), earliest first; an entry whose worker no longer
    /// waits for that instant is stale and skipped.
    due: RefCell<BinaryHeap<Reverse<(Instant, usize)>>>,
    waiting: RefCell<Vec<Waiting>>,
    /// The instant the timer is armed for, if it is.
    armed: Cell<Option<Instant>>,
}

impl Alarms {
    /// A disarmed timer on the current thread's tokio reactor.
    pub(crate) fn new() -> io::Result<Rc<Alarms>> {
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
            due: RefCell::new(BinaryHeap::new()),
            waiting: RefCell::new(Vec::new()),
            armed: Cell::new(None),
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
        let mut expired = [0u8; 8];
        loop {
            let read = match self.expiries.readable().await {
                // Reading the count of expiries clears the timer's
                // readiness; WouldBlock (a stale readiness) clears tokio's.
                Ok(()) => self.expiries.try_read(&mut expired),
                Err(e) => Err(e),
            };
            match read {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    tracing::error!("load thread's timer failed: {e}");
                    self.wake_due(None);
                    return;
                }
            }
            self.armed.set(None);
            self.wake_due(Some(Instant::now()));
            self.arm_next();
        }
    }

    /// Wakes every worker due by `now` (all of them: `None`).
    fn wake_due(&self, now: Option<Instant>) {
        loop {
            let waker = {
                let mut due = self.due.borrow_mut();
                let Some(&Reverse((at, id))) = due.peek() else {
                    return;
                };
                if now.is_some_and(|now| at > now) {
                    return;
                }
                due.pop();
                let mut waiting = self.waiting.borrow_mut();
                let w = &mut waiting[id];
                if w.at != Some(at) {
                    continue;
                }
                w.at = None;
                w.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// Arms the timer for the earliest instant still waited for.
    fn arm_next(&self) {
        let next = self.due.borrow().peek().map(|r| r.0.0);
        if let Some(at) = next {
            self.arm(at);
        }
    }

    /// Arms the timer to fire at `at` (replacing what it was armed for).
    fn arm(&self, at: Instant) {
        if self.armed.get() == Some(at) {
            return;
        }
        let expiry = self.clock + at.saturating_duration_since(self.base);
        let set = self.timer.set(
            Expiration::OneShot(TimeSpec::from_duration(expiry)),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME,
        );
        match set {
            Ok(()) => self.armed.set(Some(at)),
            // Cannot happen with a valid fd and expiry; the worker would
            // wait forever, so wake everyone instead (they poll the clock).
            Err(e) => {
                tracing::error!("arming the load thread's timer: {e}");
                self.wake_due(None);
            }
        }
    }

    /// Worker `id` waits for `at` with `waker`.
    fn wait(&self, id: usize, at: Instant, waker: &Waker) {
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
        if fresh {
            self.due.borrow_mut().push(Reverse((at, id)));
            if self.armed.get().is_none_or(|armed| at < armed) {
                self.arm(at);
            }
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
        Until { alarm: self, at }
    }
}

/// The future of [`Alarm::until`].
pub(crate) struct Until<'a> {
    alarm: &'a Alarm,
    at: Instant,
}

impl Future for Until<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        self.alarm.alarms.wait(self.alarm.id, self.at, cx.waker());
        Poll::Pending
    }
}

impl Drop for Until<'_> {
    fn drop(&mut self) {
        self.alarm.alarms.cancel(self.alarm.id);
    }
}
