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
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use fleetbench::pb;
use fleetbench::rng::{Latency, Rng};
use fleetbench::window::{ErrorClass, WindowAcc};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::host::process_cpu_ms;
use crate::outbox::Outbox;

/// What the link hands the engine.
#[derive(Debug)]
pub enum Command {
    Start(Box<pb::StartPhase>),
    Stop(u32),
    /// Stop whatever runs (shutdown).
    StopAll,
}

pub struct EngineConfig {
    /// Stop generating load when the coordinator has been unreachable this
    /// long: an agent never loads a target without someone listening.
    pub lease: Duration,
    /// Worker threads per phase; 0 = one per core.
    pub threads: usize,
}

/// Runs phases until `stop`; `idle` is true whenever no phase runs.
pub async fn run(
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
                        cfg.lease,
                        cfg.threads,
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
    workload: Arc<Workload>,
    /// Connections (closed: workers) on this agent.
    concurrency: u32,
    /// Requests per second on this agent; 0 for closed loop.
    rate: f64,
    agent_index: u32,
    threads: usize,
}

enum Workload {
    Http(Box<HttpTarget>),
    Synthetic {
        latency: Latency,
        error_ratio: f64,
        seed: u64,
    },
}

struct HttpTarget {
    addr: SocketAddr,
    method: http::Method,
    path: http::Uri,
    headers: http::HeaderMap,
    body: Bytes,
    timeout: Duration,
    /// Request line + headers + body, as sent.
    request_bytes: u64,
}

async fn plan(s: pb::StartPhase, threads: usize) -> Result<Plan> {
    let spec = s.spec.context("StartPhase without a spec")?;
    let width = Duration::from_millis(u64::from(spec.window_ms.max(1)));
    let duration = Duration::from_millis(spec.duration_ms);
    if duration.is_zero() {
        bail!("phase {:?} has a zero duration", spec.name);
    }
    let windows = duration.as_micros().div_ceil(width.as_micros()) as u32;
    let workload = match spec.workload.context("phase without a workload")? {
        pb::phase_spec::Workload::Http(h) => Workload::Http(Box::new(http_target(&h).await?)),
        pb::phase_spec::Workload::Synthetic(syn) => Workload::Synthetic {
            latency: syn
                .latency
                .as_ref()
                .and_then(Latency::from_pb)
                .context("synthetic workload without a valid latency distribution")?,
            error_ratio: syn.error_ratio,
            seed: syn.seed,
        },
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
    let threads = match &workload {
        // Sleeping tasks cost nothing: one thread drives any number.
        Workload::Synthetic { .. } => 1,
        Workload::Http(_) if threads > 0 => threads,
        Workload::Http(_) => cores,
    }
    .clamp(1, s.concurrency.max(1) as usize);
    Ok(Plan {
        phase_index: s.phase_index,
        start,
        duration,
        width,
        windows,
        workload: Arc::new(workload),
        concurrency: s.concurrency,
        rate: if s.rate.is_finite() {
            s.rate.max(0.0)
        } else {
            0.0
        },
        agent_index: s.agent_index,
        threads,
    })
}

async fn http_target(h: &pb::HttpWorkload) -> Result<HttpTarget> {
    let uri: http::Uri = h
        .url
        .parse()
        .with_context(|| format!("bad URL {:?}", h.url))?;
    let authority = uri
        .authority()
        .with_context(|| format!("URL {:?} has no host", h.url))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let addr = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host} has no address"))?;
    let path: http::Uri = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .context("URL path")?;
    let method = http::Method::from_bytes(h.method.as_bytes()).context("HTTP method")?;
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::HOST,
        http::HeaderValue::from_str(authority.as_str()).context("host header")?,
    );
    for hd in &h.headers {
        headers.append(
            http::HeaderName::from_bytes(hd.name.as_bytes())
                .with_context(|| format!("header name {:?}", hd.name))?,
            http::HeaderValue::from_str(&hd.value)
                .with_context(|| format!("header value of {:?}", hd.name))?,
        );
    }
    let body = Bytes::from(h.body.clone());
    if !body.is_empty() && !headers.contains_key(http::header::CONTENT_LENGTH) {
        headers.insert(http::header::CONTENT_LENGTH, body.len().into());
    }
    let request_bytes = (method.as_str().len() + path.to_string().len() + 12) as u64
        + headers
            .iter()
            .map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64)
            .sum::<u64>()
        + 2
        + body.len() as u64;
    Ok(HttpTarget {
        addr,
        method,
        path,
        headers,
        body,
        timeout: Duration::from_millis(h.timeout_ms.max(1)),
        request_bytes,
    })
}

/// What a worker thread reports to the phase task.
enum ThreadMsg {
    Window(u32, Box<WindowAcc>),
    Done { abandoned: u64 },
}

async fn run_phase(
    s: pb::StartPhase,
    outbox: Arc<Outbox>,
    stop: CancellationToken,
    mut connected: watch::Receiver<bool>,
    lease: Duration,
    threads: usize,
) {
    let phase_index = s.phase_index;
    let plan = match plan(s, threads).await {
        Ok(p) => p,
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
    let plan = Arc::new(plan);
    let halt = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::unbounded_channel::<ThreadMsg>();
    let cpu_before = process_cpu_ms();
    let mut joins = Vec::new();
    for t in 0..plan.threads {
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
    drop(tx);
    let started = tokio::time::Instant::from_std(plan.start);
    let mut reported_start = false;

    // Merge the threads' windows; push each once all threads reported it.
    let threads = joins.len() as u32;
    let mut pending: BTreeMap<u32, (u32, WindowAcc)> = BTreeMap::new();
    let mut abandoned = 0u64;
    let mut requests = 0u64;
    let mut windows_sent = 0u32;
    let mut done = 0u32;
    let mut stopped_early = false;
    let push_window = |index: u32, acc: &WindowAcc| {
        outbox.push(pb::event::Kind::Window(acc.to_pb(
            plan.phase_index,
            index,
            plan.width.as_millis() as u32,
        )));
    };
    let lease_expired = async {
        loop {
            if connected.wait_for(|c| !*c).await.is_err() {
                return std::future::pending().await;
            }
            let back = tokio::time::timeout(lease, connected.wait_for(|c| *c)).await;
            if back.is_err() {
                return;
            }
        }
    };
    tokio::pin!(lease_expired);
    while done < threads {
        tokio::select! {
            biased;
            () = stop.cancelled(), if !stopped_early => {
                stopped_early = true;
                halt.store(true, Ordering::Relaxed);
            }
            () = &mut lease_expired, if !stopped_early => {
                stopped_early = true;
                halt.store(true, Ordering::Relaxed);
                outbox.push(notice(
                    pb::agent_notice::Level::Error,
                    format!("coordinator unreachable for {lease:?}: stopped phase {}", plan.phase_index),
                ));
            }
            () = tokio::time::sleep_until(started), if !reported_start => {
                reported_start = true;
                outbox.push(pb::event::Kind::PhaseStarted(pb::PhaseStarted {
                    phase_index: plan.phase_index,
                    started_at_us: fleetbench::clock::now_us(),
                }));
            }
            m = rx.recv() => match m {
                Some(ThreadMsg::Window(index, acc)) => {
                    requests += acc.requests();
                    let entry = pending.entry(index).or_insert_with(|| (0, WindowAcc::new()));
                    entry.0 += 1;
                    entry.1.merge(&acc);
                    if entry.0 == threads {
                        let (_, acc) = pending.remove(&index).expect("entry exists");
                        push_window(index, &acc);
                        windows_sent += 1;
                    }
                }
                Some(ThreadMsg::Done { abandoned: a }) => {
                    abandoned += a;
                    done += 1;
                }
                None => break,
            }
        }
    }
    // Windows not every thread reached (a thread stopped a window early).
    for (index, (_, acc)) in std::mem::take(&mut pending) {
        push_window(index, &acc);
        windows_sent += 1;
    }
    for j in joins {
        let _ = tokio::task::spawn_blocking(move || j.join()).await;
    }
    let cpu_ms = process_cpu_ms().saturating_sub(cpu_before);
    outbox.push(pb::event::Kind::PhaseEnded(pb::PhaseEnded {
        phase_index: plan.phase_index,
        windows: windows_sent,
        requests,
        abandoned_in_flight: abandoned,
        stopped_early,
        cpu_ms,
        threads,
        iterations_done: false,
    }));
}

fn notice(level: pb::agent_notice::Level, message: String) -> pb::event::Kind {
    tracing::warn!("{message}");
    pb::event::Kind::Notice(pb::AgentNotice {
        level: level as i32,
        message,
    })
}

// ---------------------------------------------------------------- one thread

/// Per-thread state shared by the thread's workers (never across threads).
struct Shared {
    plan: Arc<Plan>,
    halt: Arc<AtomicBool>,
    deadline: Instant,
    /// Set when the thread stops issuing requests.
    stopping: Cell<bool>,
    in_flight: Cell<u64>,
    recorder: RefCell<Recorder>,
}

impl Shared {
    #[inline]
    fn should_stop(&self, now: Instant) -> bool {
        self.stopping.get() || now >= self.deadline || self.halt.load(Ordering::Relaxed)
    }
}

/// Windows of one thread, indexed from the phase start.
struct Recorder {
    start: Instant,
    width_us: u128,
    last: u32,
    /// Index of `windows[0]`.
    base: u32,
    windows: VecDeque<WindowAcc>,
}

impl Recorder {
    fn index_at(&self, at: Instant) -> u32 {
        let since = at.saturating_duration_since(self.start).as_micros();
        ((since / self.width_us) as u32).min(self.last)
    }

    /// The window that holds instant `at` (completions after the phase end
    /// land in the last window).
    #[inline]
    fn at(&mut self, at: Instant) -> &mut WindowAcc {
        let index = self.index_at(at).max(self.base);
        let slot = (index - self.base) as usize;
        while self.windows.len() <= slot {
            self.windows.push_back(WindowAcc::new());
        }
        &mut self.windows[slot]
    }

    /// Takes every window before `index`, empty ones included.
    fn take_before(&mut self, index: u32) -> Vec<(u32, WindowAcc)> {
        let mut out = Vec::new();
        while self.base < index {
            let acc = self.windows.pop_front().unwrap_or_default();
            out.push((self.base, acc));
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
        recorder: RefCell::new(Recorder {
            start: plan.start,
            width_us: plan.width.as_micros().max(1),
            last: plan.windows.saturating_sub(1),
            base: 0,
            windows: VecDeque::new(),
        }),
    });
    tokio::time::sleep_until(tokio::time::Instant::from_std(plan.start)).await;

    // This thread's workers: every threads-th of the agent's connections.
    let mut workers = tokio::task::JoinSet::new();
    let total = plan.concurrency as usize;
    let per_worker_interval =
        (plan.rate > 0.0).then(|| Duration::from_secs_f64(total.max(1) as f64 / plan.rate));
    for w in (thread..total).step_by(plan.threads) {
        // Open loop: stagger the workers' schedules evenly over one interval.
        let pace = match per_worker_interval {
            Some(interval) => Pace::Open {
                next: plan.start + interval.mul_f64(w as f64 / total as f64),
                interval,
            },
            None => Pace::Closed,
        };
        let seed = (u64::from(plan.agent_index) << 32) ^ (w as u64);
        match plan.workload.as_ref() {
            Workload::Http(_) => {
                workers.spawn_local(http_worker(shared.clone(), pace));
            }
            Workload::Synthetic { .. } => {
                workers.spawn_local(synthetic_worker(shared.clone(), pace, seed));
            }
        }
    }

    // Tick: hand over each window as soon as it is over.
    let mut next = 1u32;
    loop {
        let now = Instant::now();
        if shared.should_stop(now) {
            break;
        }
        let tick = plan.start + plan.width * next;
        if now >= tick {
            let closed = shared.recorder.borrow_mut().take_before(next);
            for (i, acc) in closed {
                let _ = tx.send(ThreadMsg::Window(i, Box::new(acc)));
            }
            next += 1;
            continue;
        }
        let wake = tick.min(now + Duration::from_millis(50)).min(deadline);
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
    }

    // Stop issuing; let requests in flight finish for a moment.
    shared.stopping.set(true);
    let grace = match plan.workload.as_ref() {
        Workload::Http(h) => h.timeout.min(Duration::from_secs(2)),
        Workload::Synthetic { .. } => Duration::from_secs(2),
    };
    let _ = tokio::time::timeout(grace, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    let abandoned = shared.in_flight.get();
    workers.abort_all();

    let stopped_at = shared
        .recorder
        .borrow()
        .index_at(Instant::now().min(deadline));
    let last = if Instant::now() >= deadline {
        plan.windows.saturating_sub(1)
    } else {
        stopped_at
    };
    let rest = shared.recorder.borrow_mut().take_before(last + 1);
    for (i, acc) in rest {
        let _ = tx.send(ThreadMsg::Window(i, Box::new(acc)));
    }
    let _ = tx.send(ThreadMsg::Done { abandoned });
}

/// When a worker sends.
enum Pace {
    Closed,
    Open { next: Instant, interval: Duration },
}

impl Pace {
    /// The next send: `Some(None)` now (closed loop), `Some(Some(t))` at
    /// intended time `t` (open loop; the caller waits for it), or `None` to
    /// stop.
    #[inline]
    fn next(&mut self, shared: &Shared) -> Option<Option<Instant>> {
        match self {
            Pace::Closed => (!shared.should_stop(Instant::now())).then_some(None),
            Pace::Open { next, interval } => {
                let intended = *next;
                if intended >= shared.deadline || shared.should_stop(Instant::now()) {
                    return None;
                }
                *next += *interval;
                Some(Some(intended))
            }
        }
    }
}

/// Sleeps until `intended`, if that is in the future.
async fn wait_until(intended: Option<Instant>) {
    if let Some(t) = intended
        && t > Instant::now()
    {
        tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
    }
}

/// Records one finished operation.
#[inline]
fn record(
    shared: &Shared,
    intended: Option<Instant>,
    sent: Instant,
    outcome: Result<u64, (ErrorClass, bool)>,
    bytes_sent: u64,
) {
    let done = Instant::now();
    let from = intended.unwrap_or(sent);
    let latency = done.saturating_duration_since(from).as_micros() as u64;
    let mut rec = shared.recorder.borrow_mut();
    let w = rec.at(done);
    if let Some(intended) = intended {
        w.record_send_lag(sent.saturating_duration_since(intended).as_micros() as u64);
    }
    w.bytes_sent += bytes_sent;
    match outcome {
        Ok(received) => {
            w.bytes_received += received;
            w.record_ok(latency);
        }
        Err((class, timed)) => w.record_error(class, timed.then_some(latency)),
    }
}

/// One HTTP/1.1 connection of a worker. The connection future is driven
/// inline by the worker's own task (no task per connection, no cross-task
/// wake-up per request).
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Pin<Box<http1::Connection<TokioIo<tokio::net::TcpStream>, Full<Bytes>>>>,
    /// The driver finished: the server closed the connection.
    closed: bool,
}

/// Runs one exchange on `c`, driving its connection in the same poll: hand
/// the request over, let the connection write and read, then look at the
/// exchange again, so a response that has arrived completes it in this very
/// poll instead of after another wake-up. `Err` on timeout.
async fn drive(
    c: &mut Conn,
    req: hyper::Request<Full<Bytes>>,
    mut timer: Pin<&mut tokio::time::Sleep>,
) -> Result<Result<(http::StatusCode, u64), ()>, ()> {
    let Conn {
        sender,
        driver,
        closed,
    } = c;
    let exchange = exchange(sender, req);
    tokio::pin!(exchange);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = exchange.as_mut().poll(cx) {
            return Poll::Ready(Ok(r));
        }
        if !*closed && driver.as_mut().poll(cx).is_ready() {
            *closed = true;
        }
        if let Poll::Ready(r) = exchange.as_mut().poll(cx) {
            return Poll::Ready(Ok(r));
        }
        if *closed {
            // No driver any more: the exchange can only fail now.
            return Poll::Ready(Ok(Err(())));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(()));
        }
        Poll::Pending
    })
    .await
}

async fn http_worker(shared: Rc<Shared>, mut pace: Pace) {
    let Workload::Http(target) = shared.plan.workload.as_ref() else {
        return;
    };
    let mut conn: Option<Conn> = None;
    // One timer per worker, re-armed per request: no allocation per request.
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    while let Some(intended) = pace.next(&shared) {
        // Open loop: wait for the intended time, watching the idle
        // connection so that a server-side close is noticed before sending.
        match conn.as_mut() {
            Some(c) => tokio::select! {
                biased;
                () = wait_until(intended) => {}
                _ = c.driver.as_mut(), if !c.closed => conn = None,
            },
            None => wait_until(intended).await,
        }
        if intended.is_some() && shared.should_stop(Instant::now()) {
            break;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(target).await {
                Ok(c) => conn.insert(c),
                Err(()) => {
                    let now = Instant::now();
                    record(&shared, intended, now, Err((ErrorClass::Connect, false)), 0);
                    // Do not spin on a dead target.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let mut req = hyper::Request::new(Full::new(target.body.clone()));
        *req.method_mut() = target.method.clone();
        *req.uri_mut() = target.path.clone();
        *req.headers_mut() = target.headers.clone();
        let sent = Instant::now();
        timer
            .as_mut()
            .reset(tokio::time::Instant::from_std(sent + target.timeout));
        shared.in_flight.set(shared.in_flight.get() + 1);
        let result = drive(c, req, timer.as_mut()).await;
        shared.in_flight.set(shared.in_flight.get() - 1);
        let outcome = match result {
            Ok(Ok((status, received))) => {
                if status.is_success() || status.is_redirection() || status.is_informational() {
                    Ok(received)
                } else if status.is_client_error() {
                    Err((ErrorClass::Status4xx, true))
                } else {
                    Err((ErrorClass::Status5xx, true))
                }
            }
            Ok(Err(())) => {
                conn = None;
                Err((ErrorClass::Io, false))
            }
            Err(()) => {
                // The response may still come: this connection is unusable.
                conn = None;
                Err((ErrorClass::Timeout, true))
            }
        };
        if conn.as_ref().is_some_and(|c| c.closed) {
            conn = None;
        }
        record(&shared, intended, sent, outcome, target.request_bytes);
    }
}

async fn connect(target: &HttpTarget) -> Result<Conn, ()> {
    let stream = tokio::time::timeout(target.timeout, tokio::net::TcpStream::connect(target.addr))
        .await
        .map_err(|_| ())?
        .map_err(|_| ())?;
    let _ = stream.set_nodelay(true);
    let (sender, driver) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ())?;
    Ok(Conn {
        sender,
        driver: Box::pin(driver),
        closed: false,
    })
}

async fn exchange(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, u64), ()> {
    sender.ready().await.map_err(|_| ())?;
    let resp = sender.send_request(req).await.map_err(|_| ())?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.map_err(|_| ())?.data_ref() {
            received += data.len() as u64;
        }
    }
    Ok((status, received))
}

async fn synthetic_worker(shared: Rc<Shared>, mut pace: Pace, worker_seed: u64) {
    let Workload::Synthetic {
        latency,
        error_ratio,
        seed,
    } = shared.plan.workload.as_ref()
    else {
        return;
    };
    let mut rng = Rng::new(seed ^ worker_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    while let Some(intended) = pace.next(&shared) {
        wait_until(intended).await;
        if intended.is_some() && shared.should_stop(Instant::now()) {
            break;
        }
        let sent = Instant::now();
        let wait = Duration::from_micros(latency.sample(&mut rng));
        shared.in_flight.set(shared.in_flight.get() + 1);
        tokio::time::sleep(wait).await;
        shared.in_flight.set(shared.in_flight.get() - 1);
        let outcome = if rng.next_f64() < *error_ratio {
            Err((ErrorClass::Synthetic, true))
        } else {
            Ok(0)
        };
        record(&shared, intended, sent, outcome, 0);
    }
}
