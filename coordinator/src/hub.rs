//! The hub: the coordinator's side of every agent link, and the group-commit
//! writer that stands between the links and the event log.
//!
//! The gRPC server speaks TLS only ([`serve`]): a connection that does not
//! complete a TLS handshake with the coordinator's certificate within 10 s is
//! closed and the refusal logged. An agent's `Attach` stream is served here:
//! Hello is checked (an admitted agent id, its secret, no other live link of
//! the same agent, this protocol and run; anything else is refused, logged as
//! a notice, and nothing more is read from the stream), the agent is
//! welcomed with the highest sequence number already durable for it, pings
//! measure its clock offset (the sample with the smallest round trip wins),
//! and each event it sends is dropped if its sequence number was already
//! received, else queued for the writer. The writer batches whatever is
//! queued, appends the batch to sled, flushes, and only then acks each agent
//! (cumulatively) and applies the records to the live fold. A flush that
//! fails stops all acking: the agents keep those events, and the run fails
//! with the log's error.
//!
//! Run control (`run.rs`) commands agents through [`Hub::send`] and watches
//! the fold; it never touches a stream directly.
//!
//! Pool agents ([`Hub::admit_pool`]) outlive runs, so their Hello may name an
//! earlier run; they are let in only with the agent binary this coordinator
//! ships ([`Hub::expect_binary`]; a stale one is refused with `retry` and
//! listed by [`Hub::stale`]), not once the run [`Hub::close_doors`] (they
//! would come straight back after being released), and not when the run
//! [`Hub::bench`]es them. A look-only hub ([`Hub::look_only`], for `pool
//! ls` and `pool upgrade`) checks an agent's secret, notes its Hello, and
//! sends it away to dial again. A run's hub set to [`Hub::accept_late`]
//! takes a pool agent's `LateEvents` (events of an earlier run whose
//! coordinator died before acking them) and appends them to that run's own
//! log, which opens now that its coordinator is gone.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetbench::pb;
use fleetbench::pb::coordinator_server::{Coordinator, CoordinatorServer};
use fleetbench_fold::Fold;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::log::{EventLog, LogError, LogReader};
use crate::trust::secrets_match;

type Outgoing = mpsc::Sender<Result<pb::CoordinatorMessage, Status>>;

/// Records queued for the log at most; a full queue slows the links down
/// (backpressure) rather than growing without bound.
const QUEUE: usize = 65_536;
/// Records per group commit at most.
const BATCH: usize = 8_192;
/// Pings sent right after attach to measure the clock offset.
const SYNC_PINGS: u32 = 5;
/// A connection must complete its TLS handshake within this, and then send
/// Hello within this.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Refusals logged per window at most: anyone who can reach the port can be
/// refused, and must not be able to fill the log. The rest are counted, and
/// the count is logged with the next refusal that is.
const REFUSALS_PER_WINDOW: u32 = 20;
const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

/// One agent as the hub knows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct AgentState {
    pub hello: pb::Hello,
    pub peer: String,
    pub connected: bool,
    /// Clock offset measured (attach record logged) on the current link.
    pub synced: bool,
    /// agent clock - coordinator clock, from the smallest-RTT ping.
    pub offset_us: i64,
    pub rtt_us: u64,
    /// Highest seq received (queued or durable).
    pub received_through: u64,
    /// Highest seq durable in the log (acked).
    pub acked_through: u64,
    pub duplicates: u64,
    /// When its last Hello passed (coordinator clock, Unix µs).
    pub seen_at_us: i64,
    generation: u64,
}

struct Slot {
    state: AgentState,
    tx: Option<Outgoing>,
}

/// Who may attach, and who has.
#[derive(Default)]
struct Registry {
    /// Agent id -> secret, from [`Hub::admit`].
    admitted: HashMap<String, String>,
    /// Agents that have attached at least once.
    slots: BTreeMap<String, Slot>,
    /// Admitted agents that are pool agents.
    pool: std::collections::HashSet<String>,
    /// Pool agents this run does not use: sent away to dial again.
    benched: std::collections::HashSet<String>,
    /// The agent binary pool agents must run (hex SHA-256).
    expected_hash: Option<String>,
    /// Pool agents refused for running another binary, as last seen.
    stale: BTreeMap<String, AgentState>,
    /// The run is ending: no attach is welcomed any more.
    closing: bool,
    /// (pool agent, kind of refusal) already logged.
    told: std::collections::HashSet<(String, String)>,
    /// Check and note every Hello, welcome none.
    look_only: bool,
}

/// Why an attach was refused.
struct Refusal {
    /// What the agent is told.
    reason: String,
    /// What the log is told (may say more than the agent is).
    detail: String,
    /// The refusal may clear by itself: the agent should try again later.
    retry: bool,
    /// A pool agent running another binary than the one expected.
    stale: bool,
    /// Not logged (an expected turn-away, like a released agent redialing
    /// a run that is ending).
    quiet: bool,
    /// Which rule refused, for logging a pool agent's refusal once per kind.
    kind: String,
}

impl Refusal {
    fn new(reason: impl Into<String>) -> Refusal {
        let reason = reason.into();
        Refusal {
            detail: reason.clone(),
            reason,
            retry: false,
            stale: false,
            quiet: false,
            kind: String::new(),
        }
    }
}

/// How many refusals were logged in the current window, and how many not.
struct RefusalBudget {
    window_start: Instant,
    logged: u32,
    unlogged: u64,
}

enum WriteItem {
    Record(pb::LogRecord),
    Agent {
        agent_id: String,
        seq: u64,
        record: pb::LogRecord,
    },
    Flush(oneshot::Sender<Result<(), String>>),
}

pub(crate) struct Hub {
    run_id: String,
    registry: Mutex<Registry>,
    refusals: Mutex<RefusalBudget>,
    queue: mpsc::Sender<WriteItem>,
    /// The live fold, fed after each durable batch.
    pub fold: Arc<Mutex<Fold>>,
    /// Signalled after each durable batch and each agent state change.
    pub changed: Notify,
    /// Set when the log cannot be written.
    failure: Mutex<Option<String>>,
    /// The newest durable log sequence number, for followers of ReadLog.
    durable_lsn: watch::Sender<u64>,
    reader: LogReader,
    /// Set once the run has ended; ReadLog followers then finish.
    finished: watch::Sender<bool>,
    /// The data directory whose other runs' logs take late events.
    late_dir: Mutex<Option<std::path::PathBuf>>,
    /// One late delivery at a time (sled locks a log per open).
    late_lock: tokio::sync::Mutex<()>,
}

impl Hub {
    /// Starts the hub and its writer over `log`.
    pub(crate) fn start(
        run_id: String,
        log: EventLog,
        stop: CancellationToken,
    ) -> (Arc<Hub>, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let reader = log.reader();
        let hub = Arc::new(Hub {
            run_id,
            registry: Mutex::new(Registry::default()),
            refusals: Mutex::new(RefusalBudget {
                window_start: Instant::now(),
                logged: 0,
                unlogged: 0,
            }),
            queue,
            fold: Arc::new(Mutex::new(Fold::new())),
            changed: Notify::new(),
            failure: Mutex::new(None),
            durable_lsn: watch::Sender::new(log.next_lsn().saturating_sub(1)),
            reader,
            finished: watch::Sender::new(false),
            late_dir: Mutex::new(None),
            late_lock: tokio::sync::Mutex::new(()),
        });
        let writer = tokio::spawn(write_loop(hub.clone(), log, rx, stop));
        (hub, writer)
    }

    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Lets `agent_id` attach, with this secret. Agents not admitted are
    /// refused; admitting an id again replaces its secret.
    pub(crate) fn admit(&self, agent_id: impl Into<String>, secret: String) {
        self.registry
            .lock()
            .expect("never poisoned")
            .admitted
            .insert(agent_id.into(), secret);
    }

    /// Lets pool agent `agent_id` attach with this secret, whatever run its
    /// Hello names.
    pub(crate) fn admit_pool(&self, agent_id: impl Into<String>, secret: String) {
        let agent_id = agent_id.into();
        let mut registry = self.registry.lock().expect("never poisoned");
        registry.pool.insert(agent_id.clone());
        registry.admitted.insert(agent_id, secret);
    }

    /// Pool agents must run this agent binary (hex SHA-256) to get in.
    pub(crate) fn expect_binary(&self, hash: &str) {
        self.registry.lock().expect("never poisoned").expected_hash = Some(hash.to_string());
    }

    /// The agent binary pool agents must run, if set.
    pub(crate) fn expected_binary(&self) -> Option<String> {
        self.registry
            .lock()
            .expect("never poisoned")
            .expected_hash
            .clone()
    }

    /// This run does not use these pool agents: they are turned away (to
    /// dial again later), and told to go if attached.
    pub(crate) fn bench(&self, ids: &[String]) {
        let mut registry = self.registry.lock().expect("never poisoned");
        for id in ids {
            registry.benched.insert(id.clone());
            if let Some(tx) = registry.slots.get(id).and_then(|s| s.tx.clone()) {
                let _ = tx.try_send(Ok(pb::CoordinatorMessage {
                    msg: Some(pb::coordinator_message::Msg::Shutdown(pb::Shutdown {
                        reason: format!("run {} does not use this agent", self.run_id),
                    })),
                }));
            }
        }
    }

    /// From now on every attach is refused, for the agent to retry later
    /// (with another coordinator): the run is ending.
    pub(crate) fn close_doors(&self) {
        self.registry.lock().expect("never poisoned").closing = true;
    }

    /// Takes pool agents' late events of other runs under `data_dir` into
    /// those runs' logs.
    pub(crate) fn accept_late(&self, data_dir: &std::path::Path) {
        *self.late_dir.lock().expect("never poisoned") = Some(data_dir.to_path_buf());
    }

    /// Appends `events` of `agent_id` for run `run_id` (not this one) to that
    /// run's log, leaving out those it holds already; returns the highest
    /// seq now durable there.
    async fn deliver_late(&self, agent_id: &str, late: pb::LateEvents) -> Result<u64, String> {
        let dir = self.late_dir.lock().expect("never poisoned").clone();
        let pooled = self
            .registry
            .lock()
            .expect("never poisoned")
            .pool
            .contains(agent_id);
        let (Some(dir), true) = (dir, pooled) else {
            return Err("this coordinator takes no late events from this agent".into());
        };
        if late.run_id == self.run_id || uuid::Uuid::parse_str(&late.run_id).is_err() {
            return Err(format!("{:?} is not another run", late.run_id));
        }
        if !crate::log::run_dir(&dir, &late.run_id).join("log").exists() {
            return Err(format!("there is no run {} here", late.run_id));
        }
        let _one = self.late_lock.lock().await;
        let (agent, by) = (agent_id.to_string(), self.run_id.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let fail = |e: LogError| format!("run {}: {:#}", late.run_id, anyhow::Error::new(e));
            let mut log = EventLog::open(&dir, &late.run_id).map_err(fail)?;
            // What the log holds of this agent already, and its clock offset.
            let (mut have, mut offset, mut attached) = (0u64, 0i64, false);
            for item in log.scan() {
                match item.map_err(fail)?.1.record {
                    Some(pb::log_record::Record::AgentEvent(e)) if e.agent_id == agent => {
                        have = have.max(e.event.map_or(0, |e| e.seq));
                        offset = e.clock_offset_us;
                    }
                    Some(pb::log_record::Record::AgentAttached(a))
                        if a.hello.as_ref().is_some_and(|h| h.agent_id == agent) =>
                    {
                        offset = a.clock_offset_us;
                        attached = true;
                    }
                    _ => {}
                }
            }
            if !attached {
                return Err(format!("agent {agent} never attached to run {}", late.run_id));
            }
            let through = late.events.iter().map(|e| e.seq).max().unwrap_or(0).max(have);
            let now = fleetbench::clock::now_us();
            let mut records: Vec<pb::LogRecord> = late
                .events
                .into_iter()
                .filter(|e| e.seq > have)
                .map(|event| pb::LogRecord {
                    logged_at_us: now,
                    record: Some(pb::log_record::Record::AgentEvent(pb::AgentEvent {
                        agent_id: agent.clone(),
                        event: Some(event),
                        clock_offset_us: offset,
                    })),
                })
                .collect();
            if records.is_empty() {
                return Ok(through);
            }
            let n = records.len();
            records.push(pb::LogRecord {
                logged_at_us: now,
                record: Some(pb::log_record::Record::Notice(pb::CoordinatorNotice {
                    level: "info".into(),
                    message: format!(
                        "{n} late event(s) of agent {agent} (never acked: this run's coordinator went away) delivered by the coordinator of run {by}"
                    ),
                    agent_id: agent.clone(),
                })),
            });
            log.append(&records).map_err(fail)?;
            handle.block_on(log.flush()).map_err(fail)?;
            Ok(through)
        })
        .await
        .map_err(|e| format!("delivering late events: {e}"))?
    }

    /// Makes this hub check and note every Hello, and welcome none.
    pub(crate) fn look_only(&self) {
        self.registry.lock().expect("never poisoned").look_only = true;
    }

    /// Pool agents refused for running another binary, as last seen.
    pub(crate) fn stale(&self) -> BTreeMap<String, AgentState> {
        self.registry.lock().expect("never poisoned").stale.clone()
    }

    /// Logs a refusal as a notice, unless too many were logged lately.
    /// `agent_id` is set only for an admitted agent: an unknown one is
    /// whatever a stranger sent, and is only quoted in the message.
    async fn log_refusal(&self, agent_id: &str, message: String) {
        let unlogged = {
            let mut budget = self.refusals.lock().expect("never poisoned");
            if budget.window_start.elapsed() >= REFUSAL_WINDOW {
                budget.window_start = Instant::now();
                budget.logged = 0;
            }
            if budget.logged >= REFUSALS_PER_WINDOW {
                budget.unlogged += 1;
                return;
            }
            budget.logged += 1;
            std::mem::take(&mut budget.unlogged)
        };
        let message = if unlogged > 0 {
            format!("{message} ({unlogged} earlier refusal(s) not logged: too many)")
        } else {
            message
        };
        self.notice("warn", agent_id, message).await;
    }

    /// Queues a coordinator record for the log.
    pub(crate) async fn log(&self, record: pb::log_record::Record) {
        let rec = pb::LogRecord {
            logged_at_us: fleetbench::clock::now_us(),
            record: Some(record),
        };
        let _ = self.queue.send(WriteItem::Record(rec)).await;
    }

    pub(crate) async fn notice(&self, level: &str, agent_id: &str, message: impl Into<String>) {
        let message = message.into();
        match level {
            "error" => tracing::error!("{message}"),
            "warn" => tracing::warn!("{message}"),
            _ => tracing::info!("{message}"),
        }
        self.log(pb::log_record::Record::Notice(pb::CoordinatorNotice {
            level: level.into(),
            message,
            agent_id: agent_id.into(),
        }))
        .await;
    }

    /// Waits until everything queued so far is durable.
    pub(crate) async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(WriteItem::Flush(tx))
            .await
            .map_err(|_| "the log writer has stopped".to_string())?;
        rx.await
            .map_err(|_| "the log writer has stopped".to_string())?
    }

    /// Why the log cannot be written, if it cannot.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.lock().expect("never poisoned").clone()
    }

    pub(crate) fn agents(&self) -> BTreeMap<String, AgentState> {
        self.registry
            .lock()
            .expect("never poisoned")
            .slots
            .iter()
            .map(|(id, s)| (id.clone(), s.state.clone()))
            .collect()
    }

    /// Sends a command to an agent; false if it is not connected.
    pub(crate) fn send(&self, agent_id: &str, msg: pb::coordinator_message::Msg) -> bool {
        let registry = self.registry.lock().expect("never poisoned");
        let Some(tx) = registry.slots.get(agent_id).and_then(|s| s.tx.clone()) else {
            return false;
        };
        tx.try_send(Ok(pb::CoordinatorMessage { msg: Some(msg) }))
            .is_ok()
    }

    /// Marks the run finished for ReadLog followers.
    pub(crate) fn finish(&self) {
        self.finished.send_replace(true);
    }

    fn fail(&self, why: String) {
        tracing::error!("{why}");
        *self.failure.lock().expect("never poisoned") = Some(why);
        self.changed.notify_waiters();
    }

    fn slot_mut<R>(&self, agent_id: &str, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        self.registry
            .lock()
            .expect("never poisoned")
            .slots
            .get_mut(agent_id)
            .map(f)
    }
}

async fn write_loop(
    hub: Arc<Hub>,
    mut log: EventLog,
    mut rx: mpsc::Receiver<WriteItem>,
    stop: CancellationToken,
) {
    let mut items = Vec::with_capacity(BATCH);
    loop {
        let n = tokio::select! {
            biased;
            n = rx.recv_many(&mut items, BATCH) => n,
            () = stop.cancelled() => {
                // Drain what is queued, then stop.
                rx.close();
                rx.recv_many(&mut items, BATCH).await
            }
        };
        if n == 0 {
            return;
        }
        let mut records = Vec::with_capacity(items.len());
        let mut acks: HashMap<String, u64> = HashMap::new();
        let mut flushes = Vec::new();
        for item in items.drain(..) {
            match item {
                WriteItem::Record(r) => records.push(r),
                WriteItem::Agent {
                    agent_id,
                    seq,
                    record,
                } => {
                    records.push(record);
                    let e = acks.entry(agent_id).or_default();
                    *e = (*e).max(seq);
                }
                WriteItem::Flush(tx) => flushes.push(tx),
            }
        }
        if let Some(why) = hub.failure() {
            for f in flushes {
                let _ = f.send(Err(why.clone()));
            }
            continue;
        }
        let result: Result<(), LogError> = async {
            if !records.is_empty() {
                log.append(&records)?;
                log.flush().await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let why = format!("{:#}", anyhow::Error::new(e));
            hub.fail(why.clone());
            for f in flushes {
                let _ = f.send(Err(why.clone()));
            }
            continue;
        }
        // Durable: now ack, fold, and tell whoever waits.
        for (agent_id, seq) in acks {
            let tx = hub.slot_mut(&agent_id, |slot| {
                slot.state.acked_through = slot.state.acked_through.max(seq);
                slot.tx.clone().map(|tx| (tx, slot.state.acked_through))
            });
            if let Some(Some((tx, through))) = tx {
                let _ = tx.try_send(Ok(pb::CoordinatorMessage {
                    msg: Some(pb::coordinator_message::Msg::Ack(pb::Ack { through })),
                }));
            }
        }
        {
            let mut fold = hub.fold.lock().expect("never poisoned");
            for r in &records {
                fold.apply(r);
            }
        }
        hub.durable_lsn.send_replace(log.next_lsn() - 1);
        hub.changed.notify_waiters();
        for f in flushes {
            let _ = f.send(Ok(()));
        }
    }
}

/// The gRPC service; clones share the hub.
#[derive(Clone)]
pub(crate) struct Service {
    pub hub: Arc<Hub>,
}

type AttachStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;
type ReadLogStream = Pin<Box<dyn Stream<Item = Result<pb::LogRecordBatch, Status>> + Send>>;

#[tonic::async_trait]
impl Coordinator for Service {
    type AttachStream = AttachStream;
    type ReadLogStream = ReadLogStream;

    async fn attach(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<AttachStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        let mut inbound = request.into_inner();
        let hub = self.hub.clone();
        let (tx, rx) = mpsc::channel(1024);
        let reply = Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as AttachStream
        ));
        let mut hello = match read_hello(&mut inbound).await {
            Ok(hello) => hello,
            Err(why) => {
                refuse(
                    &hub,
                    &tx,
                    "",
                    &format!("a stream from {peer}"),
                    Refusal::new(why),
                )
                .await;
                return reply;
            }
        };
        // The secret has done its work: it goes no further (not into the
        // agent's state, not into the log's AgentAttached record).
        let secret = std::mem::take(&mut hello.secret);
        let agent_id = hello.agent_id.clone();
        // Check and claim under one lock: of two links presenting the same
        // secret at once, one gets in.
        let claimed = {
            let mut registry = hub.registry.lock().expect("never poisoned");
            let look_only = registry.look_only;
            check_hello(&hub.run_id, &registry, &hello, &secret).map(|()| {
                let slot = registry
                    .slots
                    .entry(agent_id.clone())
                    .or_insert_with(|| Slot {
                        state: AgentState::default(),
                        tx: None,
                    });
                slot.state.generation += 1;
                slot.state.hello = hello.clone();
                slot.state.peer = peer.clone();
                slot.state.seen_at_us = fleetbench::clock::now_us();
                if look_only {
                    // Noted; not attached.
                    return None;
                }
                slot.state.connected = true;
                slot.state.synced = false;
                slot.tx = Some(tx.clone());
                Some((slot.state.generation, slot.state.acked_through))
            })
        };
        let (generation, acked_through) = match claimed {
            Ok(Some(claimed)) => claimed,
            Ok(None) => {
                hub.changed.notify_waiters();
                let _ = tx
                    .send(Ok(pb::CoordinatorMessage {
                        msg: Some(pb::coordinator_message::Msg::Refused(pb::Refused {
                            reason: "only looked at (pool ls or pool upgrade): dial again".into(),
                            retry: true,
                        })),
                    }))
                    .await;
                return reply;
            }
            Err(refusal) => {
                let (known, told) = {
                    let mut registry = hub.registry.lock().expect("never poisoned");
                    if refusal.stale {
                        registry.stale.insert(
                            agent_id.clone(),
                            AgentState {
                                hello: hello.clone(),
                                peer: peer.clone(),
                                seen_at_us: fleetbench::clock::now_us(),
                                ..Default::default()
                            },
                        );
                    }
                    // A pool agent told to retry redials twice a second:
                    // the log hears each reason once per agent.
                    let told = refusal.retry
                        && registry.pool.contains(&agent_id)
                        && !registry
                            .told
                            .insert((agent_id.clone(), refusal.kind.clone()));
                    (registry.admitted.contains_key(&agent_id), told)
                };
                if refusal.stale {
                    hub.changed.notify_waiters();
                }
                if told || refusal.quiet {
                    let _ = tx
                        .send(Ok(pb::CoordinatorMessage {
                            msg: Some(pb::coordinator_message::Msg::Refused(pb::Refused {
                                reason: refusal.reason,
                                retry: refusal.retry,
                            })),
                        }))
                        .await;
                    return reply;
                }
                let who = format!("agent {} from {peer}", quoted(&agent_id));
                refuse(&hub, &tx, if known { &agent_id } else { "" }, &who, refusal).await;
                // `inbound` is dropped unread: nothing a refused agent sent
                // can reach the log.
                return reply;
            }
        };
        let _ = tx
            .send(Ok(pb::CoordinatorMessage {
                msg: Some(pb::coordinator_message::Msg::Welcome(pb::Welcome {
                    run_id: hub.run_id.clone(),
                    acked_through,
                })),
            }))
            .await;
        tracing::debug!(
            "agent {agent_id} attached from {peer} (link {generation}), acked through {acked_through}"
        );
        tokio::spawn(serve_agent(
            hub, agent_id, generation, hello, peer, inbound, tx,
        ));
        reply
    }

    async fn read_log(
        &self,
        request: Request<pb::ReadLogRequest>,
    ) -> Result<Response<ReadLogStream>, Status> {
        let req = request.into_inner();
        if req.run_id != self.hub.run_id {
            return Err(Status::not_found(format!(
                "this coordinator writes run {}, not {}",
                self.hub.run_id, req.run_id
            )));
        }
        let (tx, rx) = mpsc::channel(16);
        let hub = self.hub.clone();
        tokio::spawn(async move {
            let mut next = req.from_lsn.max(1);
            let mut durable = hub.durable_lsn.subscribe();
            let mut finished = hub.finished.subscribe();
            loop {
                let upto = *durable.borrow_and_update();
                let done = *finished.borrow_and_update();
                let reader = hub.reader.clone();
                let from = next;
                let batch = tokio::task::spawn_blocking(move || {
                    let mut b = pb::LogRecordBatch::default();
                    for item in reader.scan_from(from) {
                        let (lsn, rec) = item?;
                        if lsn > upto {
                            break;
                        }
                        b.lsns.push(lsn);
                        b.records.push(prost::Message::encode_to_vec(&rec));
                        if b.lsns.len() >= 4096 {
                            break;
                        }
                    }
                    Ok::<_, LogError>(b)
                })
                .await;
                let mut batch = match batch {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => {
                        let _ = tx
                            .send(Err(Status::internal(format!(
                                "{:#}",
                                anyhow::Error::new(e)
                            ))))
                            .await;
                        return;
                    }
                    Err(_) => return,
                };
                if let Some(last) = batch.lsns.last() {
                    next = last + 1;
                }
                let caught_up = next > upto;
                batch.finished = done && caught_up;
                let full = batch.lsns.len() >= 4096;
                if (!batch.lsns.is_empty() || batch.finished) && tx.send(Ok(batch)).await.is_err() {
                    return;
                }
                if full {
                    continue;
                }
                if caught_up && (!req.follow || done) {
                    return;
                }
                tokio::select! {
                    r = durable.changed() => if r.is_err() { return },
                    r = finished.changed() => if r.is_err() { return },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The first message of an Attach stream, which must be Hello.
async fn read_hello(inbound: &mut Streaming<pb::AgentMessage>) -> Result<pb::Hello, String> {
    let first = tokio::time::timeout(HANDSHAKE, inbound.message())
        .await
        .map_err(|_| format!("no Hello within {}s", HANDSHAKE.as_secs()))?
        .map_err(|s| format!("reading Hello: {}", s.message()))?;
    match first.and_then(|m| m.msg) {
        Some(pb::agent_message::Msg::Hello(h)) => Ok(h),
        _ => Err("the first message must be Hello".into()),
    }
}

/// Whether `hello` (with the `secret` it presented) may attach to this run.
fn check_hello(
    run_id: &str,
    registry: &Registry,
    hello: &pb::Hello,
    secret: &str,
) -> Result<(), Refusal> {
    if hello.agent_id.is_empty() || hello.agent_id.len() > 200 {
        return Err(Refusal::new("agent id must be 1 to 200 characters"));
    }
    if hello.protocol != fleetbench::PROTOCOL {
        return Err(Refusal::new(format!(
            "agent speaks protocol {}, this coordinator speaks {}",
            hello.protocol,
            fleetbench::PROTOCOL
        )));
    }
    // The agent is told only that it is not let in; the log says why.
    let denied = |detail: &str| Refusal {
        detail: detail.into(),
        ..Refusal::new("unknown agent id or wrong secret")
    };
    match registry.admitted.get(&hello.agent_id) {
        None => return Err(denied("no agent of that id is admitted to this run")),
        Some(_) if secret.is_empty() => return Err(denied("no secret presented")),
        Some(expected) if !secrets_match(expected, secret) => {
            return Err(denied("wrong secret"));
        }
        Some(_) => {}
    }
    let later = |kind: &str, reason: String| Refusal {
        retry: true,
        kind: kind.into(),
        ..Refusal::new(reason)
    };
    if registry.closing {
        return Err(Refusal {
            quiet: true,
            ..later("closing", format!("run {run_id} is ending"))
        });
    }
    if registry.pool.contains(&hello.agent_id) {
        if registry.benched.contains(&hello.agent_id) {
            // The run knows whom it took: nothing to log.
            return Err(Refusal {
                quiet: true,
                ..later("benched", format!("run {run_id} does not use this agent"))
            });
        }
        if let Some(expected) = &registry.expected_hash
            && &hello.binary_hash != expected
        {
            return Err(Refusal {
                stale: true,
                ..later(
                    "stale",
                    format!(
                        "stale agent: it runs agent binary {}, this coordinator ships {}; upgrade the pool (coordinator pool upgrade {})",
                        short(&hello.binary_hash),
                        short(expected),
                        hello.pool
                    ),
                )
            });
        }
    } else if !hello.run_id.is_empty() && hello.run_id != run_id {
        return Err(Refusal::new(format!(
            "agent was started for run {}, this is run {run_id}",
            hello.run_id
        )));
    }
    if let Some(live) = registry
        .slots
        .get(&hello.agent_id)
        .filter(|s| s.state.connected)
    {
        let reason = format!(
            "agent {} is already attached (from {}): a second link with its secret is refused",
            hello.agent_id, live.state.peer
        );
        return Err(Refusal {
            retry: true,
            kind: "attached".into(),
            ..Refusal::new(reason)
        });
    }
    Ok(())
}

/// Logs a refusal and tells the refused stream why; `who` names the agent
/// and its peer address in the log.
async fn refuse(hub: &Hub, tx: &Outgoing, agent_id: &str, who: &str, refusal: Refusal) {
    hub.log_refusal(agent_id, format!("refused {who}: {}", refusal.detail))
        .await;
    let _ = tx
        .send(Ok(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Refused(pb::Refused {
                reason: refusal.reason,
                retry: refusal.retry,
            })),
        }))
        .await;
}

/// The first 12 hex digits of a hash, as people compare them.
pub(crate) fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// An agent id someone sent, fit for a log line: escaped, and cut short.
fn quoted(agent_id: &str) -> String {
    const MAX: usize = 64;
    match agent_id.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &agent_id[..cut]),
        None => format!("{agent_id:?}"),
    }
}

/// Serves the gRPC service on `listener` until `stop`, over TLS only: each
/// connection's handshake runs in its own task (a stalled or plaintext
/// client holds up no other), and one that fails or takes longer than
/// [`HANDSHAKE`] is closed and the refusal logged.
pub(crate) async fn serve(
    hub: Arc<Hub>,
    tls: Arc<rustls::ServerConfig>,
    listener: TcpListener,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (conns_tx, conns_rx) = mpsc::channel(64);
    let accept_stop = stop.child_token();
    let accepting = tokio::spawn(accept_tls(
        hub.clone(),
        TlsAcceptor::from(tls),
        listener,
        conns_tx,
        accept_stop.clone(),
    ));
    let svc = CoordinatorServer::new(Service { hub }).max_decoding_message_size(64 << 20);
    let served = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(svc)
        .serve_with_incoming_shutdown(ReceiverStream::new(conns_rx), stop.cancelled_owned())
        .await;
    accept_stop.cancel();
    let _ = accepting.await;
    served
}

type Handshake = (SocketAddr, Result<TlsStream<TcpStream>, String>);

async fn accept_tls(
    hub: Arc<Hub>,
    acceptor: TlsAcceptor,
    listener: TcpListener,
    conns: mpsc::Sender<std::io::Result<TlsStream<TcpStream>>>,
    stop: CancellationToken,
) {
    let mut handshakes: JoinSet<Handshake> = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(done) = handshakes.join_next(), if !handshakes.is_empty() => match done {
                Ok((_, Ok(stream))) => {
                    if conns.send(Ok(stream)).await.is_err() {
                        break;
                    }
                }
                Ok((peer, Err(why))) => {
                    hub.log_refusal("", format!("refused a connection from {peer}: {why}"))
                        .await;
                }
                Err(e) => tracing::error!("a TLS handshake task failed: {e}"),
            },
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    handshakes.spawn(async move {
                        let done = match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => Ok(stream),
                            Ok(Err(e)) => Err(format!("no TLS: {e}")),
                            Err(_) => Err(format!(
                                "no TLS handshake within {}s",
                                HANDSHAKE.as_secs()
                            )),
                        };
                        (peer, done)
                    });
                }
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Reads one agent link until it ends.
async fn serve_agent(
    hub: Arc<Hub>,
    agent_id: String,
    generation: u64,
    hello: pb::Hello,
    peer: String,
    mut inbound: Streaming<pb::AgentMessage>,
    tx: Outgoing,
) {
    let ping = |tx: &Outgoing| {
        tx.try_send(Ok(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Ping(pb::Ping {
                coordinator_time_us: fleetbench::clock::now_us(),
            })),
        }))
        .is_ok()
    };
    let mut pings = tokio::time::interval(Duration::from_millis(20));
    let mut sent_pings = 0u32;
    let mut pongs = 0u32;
    // Whether this link's AgentAttached is logged: a link that ends before
    // (a pool agent benched right after its Welcome) logs no detach either.
    let mut attach_logged = false;
    let end = loop {
        tokio::select! {
            _ = pings.tick() => {
                if ping(&tx) {
                    sent_pings += 1;
                }
                if sent_pings == SYNC_PINGS {
                    // After the burst, one ping a second keeps the estimate fresh.
                    pings = tokio::time::interval_at(
                        tokio::time::Instant::now() + Duration::from_secs(1),
                        Duration::from_secs(1),
                    );
                }
            }
            m = inbound.message() => match m {
                Ok(Some(m)) => match m.msg {
                    Some(pb::agent_message::Msg::Event(ev)) => {
                        let accept = hub.slot_mut(&agent_id, |slot| {
                            if ev.seq <= slot.state.received_through {
                                slot.state.duplicates += 1;
                                None
                            } else {
                                slot.state.received_through = ev.seq;
                                Some(slot.state.offset_us)
                            }
                        }).flatten();
                        if let Some(offset) = accept {
                            let seq = ev.seq;
                            let record = pb::LogRecord {
                                logged_at_us: fleetbench::clock::now_us(),
                                record: Some(pb::log_record::Record::AgentEvent(pb::AgentEvent {
                                    agent_id: agent_id.clone(),
                                    event: Some(ev),
                                    clock_offset_us: offset,
                                })),
                            };
                            if hub.queue.send(WriteItem::Agent { agent_id: agent_id.clone(), seq, record }).await.is_err() {
                                break "the log writer has stopped".to_string();
                            }
                        }
                    }
                    Some(pb::agent_message::Msg::Pong(p)) => {
                        let now = fleetbench::clock::now_us();
                        let rtt = (now - p.coordinator_time_us).max(0) as u64;
                        let offset = p.agent_time_us - (p.coordinator_time_us + (rtt / 2) as i64);
                        pongs += 1;
                        let first_sync = hub.slot_mut(&agent_id, |slot| {
                            if slot.state.rtt_us == 0 || rtt < slot.state.rtt_us {
                                slot.state.rtt_us = rtt.max(1);
                                slot.state.offset_us = offset;
                            }
                            let first = !slot.state.synced && pongs >= SYNC_PINGS.min(3);
                            if first {
                                slot.state.synced = true;
                            }
                            first.then_some((slot.state.offset_us, slot.state.rtt_us))
                        }).flatten();
                        if let Some((offset, rtt)) = first_sync {
                            attach_logged = true;
                            hub.log(pb::log_record::Record::AgentAttached(pb::AgentAttached {
                                hello: Some(hello.clone()),
                                peer: peer.clone(),
                                clock_offset_us: offset,
                                rtt_us: rtt,
                            })).await;
                            tracing::info!("agent {agent_id} attached from {peer} (clock offset {offset} us, rtt {rtt} us)");
                            hub.changed.notify_waiters();
                        }
                    }
                    Some(pb::agent_message::Msg::LateEvents(late)) => {
                        let run_id = late.run_id.clone();
                        let n = late.events.len();
                        let ack = match hub.deliver_late(&agent_id, late).await {
                            Ok(through) => {
                                tracing::info!("agent {agent_id}: {n} late event(s) of run {run_id} are in its log (through seq {through})");
                                pb::LateAck { run_id, through, error: String::new() }
                            }
                            Err(error) => {
                                tracing::warn!("agent {agent_id}: late events of run {run_id} not taken: {error}");
                                pb::LateAck { run_id, through: 0, error }
                            }
                        };
                        let _ = tx.try_send(Ok(pb::CoordinatorMessage {
                            msg: Some(pb::coordinator_message::Msg::LateAck(ack)),
                        }));
                    }
                    Some(pb::agent_message::Msg::Hello(_)) | None => {}
                },
                Ok(None) => break "closed by the agent".to_string(),
                Err(status) => break format!("link broke: {}", status.message()),
            }
        }
    };
    let current = hub
        .slot_mut(&agent_id, |slot| {
            let current = slot.state.generation == generation;
            if current {
                slot.state.connected = false;
                slot.state.synced = false;
                slot.tx = None;
            }
            current
        })
        .unwrap_or(false);
    if current && !attach_logged {
        hub.changed.notify_waiters();
    }
    if current && attach_logged {
        tracing::info!("agent {agent_id} detached: {end}");
        hub.log(pb::log_record::Record::AgentDetached(pb::AgentDetached {
            agent_id: agent_id.clone(),
            reason: end,
        }))
        .await;
        hub.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbench::pb::coordinator_client::CoordinatorClient;
    use tonic::transport::Channel;

    use crate::trust::{Trust, new_secret};

    /// A hub and its TLS server on a port of their own, over a log and a TLS
    /// identity in a directory of their own.
    struct Harness {
        data: std::path::PathBuf,
        run_id: String,
        hub: Arc<Hub>,
        addr: SocketAddr,
        fingerprint: String,
        writer_stop: CancellationToken,
        writer: tokio::task::JoinHandle<()>,
        server_stop: CancellationToken,
        server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    }

    impl Harness {
        async fn start() -> Harness {
            let data =
                std::env::temp_dir().join(format!("fleetbench-hub-test-{}", uuid::Uuid::now_v7()));
            let run_id = uuid::Uuid::now_v7().to_string();
            let trust = Trust::load_or_create(&data).unwrap();
            let log = EventLog::open(&data, &run_id).unwrap();
            let writer_stop = CancellationToken::new();
            let (hub, writer) = Hub::start(run_id.clone(), log, writer_stop.clone());
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server_stop = CancellationToken::new();
            let server = tokio::spawn(serve(
                hub.clone(),
                trust.server_config(),
                listener,
                server_stop.clone(),
            ));
            Harness {
                data,
                run_id,
                hub,
                addr,
                fingerprint: trust.fingerprint().to_string(),
                writer_stop,
                writer,
                server_stop,
                server,
            }
        }

        /// Admits `agent_id` with a fresh secret, returned.
        fn admit(&self, agent_id: &str) -> String {
            let secret = new_secret().unwrap();
            self.hub.admit(agent_id, secret.clone());
            secret
        }

        /// A client over TLS pinned to this coordinator's certificate.
        async fn client(&self) -> CoordinatorClient<Channel> {
            let dialer = fleetbench::tls::Dialer::new(&self.fingerprint).unwrap();
            let endpoint = fleetbench::tls::Dialer::endpoint(&self.addr.to_string()).unwrap();
            CoordinatorClient::new(dialer.connect(&endpoint).await.unwrap())
        }

        /// Waits (with a deadline) until a notice containing `needle` is in
        /// the fold; returns every notice.
        async fn notice(&self, needle: &str) -> Vec<String> {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                self.hub.flush().await.unwrap();
                let notices = self.hub.fold.lock().unwrap().notices.clone();
                if notices.iter().any(|n| n.contains(needle)) {
                    return notices;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no notice with {needle:?} in {notices:?}"
                );
                let _ =
                    tokio::time::timeout(Duration::from_millis(100), self.hub.changed.notified())
                        .await;
            }
        }

        /// Events of `agent_id` in the log, as the fold counts them.
        async fn logged_events(&self, agent_id: &str) -> u64 {
            self.hub.flush().await.unwrap();
            let report = self.hub.fold.lock().unwrap().report(&Default::default());
            report
                .log
                .agent_events
                .get(agent_id)
                .map_or(0, |e| e.events)
        }

        async fn finish(self) {
            self.server_stop.cancel();
            // Graceful: waits for open streams, which each test has ended.
            tokio::time::timeout(Duration::from_secs(10), self.server)
                .await
                .expect("the server stops once its streams have ended")
                .expect("the server task does not panic")
                .expect("the server ends without error");
            self.writer_stop.cancel();
            self.writer.await.unwrap();
            drop(self.hub);
            std::fs::remove_dir_all(&self.data).unwrap();
        }
    }

    fn event(seq: u64) -> pb::AgentMessage {
        pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Event(pb::Event {
                seq,
                agent_time_us: 0,
                kind: Some(pb::event::Kind::Notice(pb::AgentNotice {
                    level: 1,
                    message: format!("event {seq}"),
                })),
            })),
        }
    }

    fn hello(agent_id: &str, run_id: &str, secret: &str) -> pb::AgentMessage {
        pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Hello(pb::Hello {
                agent_id: agent_id.into(),
                run_id: run_id.into(),
                protocol: fleetbench::PROTOCOL,
                secret: secret.into(),
                ..Default::default()
            })),
        }
    }

    /// Opens an Attach stream that sends `first` and then `then` right away,
    /// without waiting for the answer (as an impatient intruder would).
    /// Returns the sender, the inbound stream and the first answer.
    async fn attach(
        client: &mut CoordinatorClient<Channel>,
        first: pb::AgentMessage,
        then: &[pb::AgentMessage],
    ) -> (
        mpsc::Sender<pb::AgentMessage>,
        Streaming<pb::CoordinatorMessage>,
        pb::coordinator_message::Msg,
    ) {
        let (tx, rx) = mpsc::channel(64);
        tx.send(first).await.unwrap();
        for m in then {
            tx.send(m.clone()).await.unwrap();
        }
        let mut inbound = client
            .attach(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let answer = inbound
            .message()
            .await
            .unwrap()
            .and_then(|m| m.msg)
            .expect("an answer");
        (tx, inbound, answer)
    }

    fn refused(answer: pb::coordinator_message::Msg) -> pb::Refused {
        match answer {
            pb::coordinator_message::Msg::Refused(r) => r,
            other => panic!("expected Refused, got {other:?}"),
        }
    }

    /// Sends `seqs` on one attach; returns the Welcome's acked_through and
    /// the highest Ack seen once `want_ack` is acked.
    async fn attach_and_send(h: &Harness, secret: &str, seqs: &[u64], want_ack: u64) -> (u64, u64) {
        let mut client = h.client().await;
        let (tx, mut inbound, answer) =
            attach(&mut client, hello("buggy", &h.run_id, secret), &[]).await;
        let welcome = match answer {
            pb::coordinator_message::Msg::Welcome(w) => w.acked_through,
            other => panic!("expected Welcome, got {other:?}"),
        };
        for &s in seqs {
            tx.send(event(s)).await.unwrap();
        }
        let mut acked = 0;
        while acked < want_ack {
            match inbound.message().await.unwrap().unwrap().msg {
                Some(pb::coordinator_message::Msg::Ack(a)) => acked = a.through,
                Some(_) => {}
                None => panic!("empty message"),
            }
        }
        (welcome, acked)
    }

    /// A buggy (or merely reconnecting) agent that resends sequence numbers
    /// the coordinator already holds gets them dropped: each is logged once,
    /// acks stay cumulative, and a reattach is welcomed with what is durable.
    #[tokio::test]
    async fn repeated_sequence_numbers_are_logged_once() {
        let h = Harness::start().await;
        let secret = h.admit("buggy");
        let (welcome, acked) = attach_and_send(&h, &secret, &[1, 2, 3, 2, 3], 3).await;
        assert_eq!((welcome, acked), (0, 3));
        // The first link is gone once the hub says so; then reattach and
        // resend from an older point, as a confused agent would.
        wait_detached(&h, "buggy").await;
        let (welcome, acked) = attach_and_send(&h, &secret, &[2, 3, 4, 5], 5).await;
        assert_eq!((welcome, acked), (3, 5));

        h.hub.flush().await.unwrap();
        let states = h.hub.agents();
        assert_eq!(states["buggy"].duplicates, 4);
        let report = h.hub.fold.lock().unwrap().report(&Default::default());
        assert_eq!(report.log.duplicate_events, 0, "duplicates reached the log");
        assert_eq!(report.log.agent_events["buggy"].events, 5);
        assert_eq!(report.log.agent_events["buggy"].highest_seq, 5);
        h.finish().await;
    }

    async fn wait_detached(h: &Harness, agent_id: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while h.hub.agents().get(agent_id).is_some_and(|s| s.connected) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{agent_id} still attached"
            );
            let _ =
                tokio::time::timeout(Duration::from_millis(100), h.hub.changed.notified()).await;
        }
    }

    /// An agent started for another run is refused, and the refusal logged.
    #[tokio::test]
    async fn an_agent_of_another_run_is_refused() {
        let h = Harness::start().await;
        let secret = h.admit("a1");
        let mut client = h.client().await;
        let (_tx, _inbound, answer) =
            attach(&mut client, hello("a1", "some-other-run", &secret), &[]).await;
        let r = refused(answer);
        assert!(r.reason.contains("some-other-run"), "{}", r.reason);
        assert!(!r.retry);
        h.notice("refused agent \"a1\"").await;
        assert!(h.hub.agents().is_empty());
        h.finish().await;
    }

    /// A client that does not speak TLS never reaches the service, even with
    /// a valid secret: the connection is closed at the TLS layer, the refusal
    /// is logged with the peer's address, and nothing it sent is logged.
    #[tokio::test]
    async fn a_plaintext_client_is_refused_at_the_tls_layer() {
        let h = Harness::start().await;
        let secret = h.admit("a1");
        let outcome = async {
            let mut client = CoordinatorClient::connect(format!("http://{}", h.addr)).await?;
            let (tx, rx) = mpsc::channel(4);
            tx.send(hello("a1", &h.run_id, &secret)).await?;
            tx.send(event(1)).await?;
            let mut inbound = client.attach(ReceiverStream::new(rx)).await?.into_inner();
            Ok::<_, Box<dyn std::error::Error>>(inbound.message().await?)
        }
        .await;
        assert!(outcome.is_err(), "a plaintext client got {outcome:?}");
        let notices = h.notice("refused a connection from 127.0.0.1:").await;
        assert!(notices.iter().any(|n| n.contains("no TLS")), "{notices:?}");
        assert_eq!(h.logged_events("a1").await, 0);
        assert!(h.hub.agents().is_empty());
        h.finish().await;
    }

    /// Over pinned TLS, a Hello with no secret, a wrong secret or an unknown
    /// agent id is refused without saying which; the log says which, names
    /// the agent and its address, and holds none of the events sent.
    #[tokio::test]
    async fn a_missing_or_wrong_secret_or_unknown_agent_is_refused() {
        let h = Harness::start().await;
        let secret = h.admit("a1");
        let wrong = new_secret().unwrap();
        let cases = [
            ("a1", "", "no secret presented"),
            ("a1", wrong.as_str(), "wrong secret"),
            (
                "stranger",
                secret.as_str(),
                "no agent of that id is admitted",
            ),
        ];
        for (agent_id, presented, why) in cases {
            let mut client = h.client().await;
            let (_tx, mut inbound, answer) = attach(
                &mut client,
                hello(agent_id, &h.run_id, presented),
                &[event(1), event(2)],
            )
            .await;
            let r = refused(answer);
            assert_eq!(r.reason, "unknown agent id or wrong secret");
            assert!(!r.retry);
            // The refused stream ends there.
            assert!(matches!(inbound.message().await, Ok(None)));
            let notices = h
                .notice(&format!("refused agent {agent_id:?} from 127.0.0.1:"))
                .await;
            assert!(
                notices.iter().any(|n| n.contains(why)),
                "{why}: {notices:?}"
            );
            assert!(
                notices
                    .iter()
                    .all(|n| !n.contains(&secret) && !n.contains(&wrong)),
                "a secret reached the log: {notices:?}"
            );
            assert_eq!(h.logged_events(agent_id).await, 0, "{agent_id}");
        }
        assert!(h.hub.agents().is_empty());
        h.finish().await;
    }

    /// While an agent is attached, a second link presenting its secret is
    /// refused (and told to retry: it may be the agent itself, reconnecting
    /// before the coordinator noticed its old link died), and nothing it
    /// sends is logged. Once the first link is gone, the secret gets in.
    #[tokio::test]
    async fn a_second_link_with_a_live_agents_secret_is_refused() {
        let h = Harness::start().await;
        let secret = h.admit("a1");
        let mut first_client = h.client().await;
        let (first_tx, mut first_inbound, answer) =
            attach(&mut first_client, hello("a1", &h.run_id, &secret), &[]).await;
        assert!(matches!(answer, pb::coordinator_message::Msg::Welcome(_)));

        let mut client = h.client().await;
        let (_tx, _inbound, answer) = attach(
            &mut client,
            hello("a1", &h.run_id, &secret),
            &[event(1), event(2), event(3)],
        )
        .await;
        let r = refused(answer);
        assert!(r.retry, "{r:?}");
        assert!(r.reason.contains("already attached"), "{}", r.reason);
        h.notice("already attached").await;
        assert_eq!(h.logged_events("a1").await, 0);

        // The live link still works, and is the one logged.
        first_tx.send(event(1)).await.unwrap();
        loop {
            match first_inbound.message().await.unwrap().unwrap().msg {
                Some(pb::coordinator_message::Msg::Ack(a)) if a.through == 1 => break,
                _ => {}
            }
        }
        assert_eq!(h.logged_events("a1").await, 1);
        drop((first_tx, first_inbound, first_client));
        wait_detached(&h, "a1").await;

        let mut client = h.client().await;
        let (tx, inbound, answer) = attach(&mut client, hello("a1", &h.run_id, &secret), &[]).await;
        match answer {
            pb::coordinator_message::Msg::Welcome(w) => assert_eq!(w.acked_through, 1),
            other => panic!("expected Welcome, got {other:?}"),
        }
        drop((tx, inbound, client));
        h.finish().await;
    }

    /// A client pinned to another certificate refuses the coordinator, and
    /// says so.
    #[tokio::test]
    async fn a_client_pinned_to_another_certificate_does_not_connect() {
        let h = Harness::start().await;
        let other = fleetbench::tls::fingerprint(b"another certificate");
        let dialer = fleetbench::tls::Dialer::new(&other).unwrap();
        let endpoint = fleetbench::tls::Dialer::endpoint(&h.addr.to_string()).unwrap();
        let e = dialer.connect(&endpoint).await.unwrap_err();
        let chain = format!("{:?}", anyhow::Error::new(e));
        assert!(chain.contains(&other), "{chain}");
        h.finish().await;
    }

    /// A connection that never starts its TLS handshake holds up no other,
    /// and neither does a burst of refused ones.
    #[tokio::test]
    async fn stalled_and_refused_connections_do_not_block_the_server() {
        let h = Harness::start().await;
        let secret = h.admit("a1");
        let _silent = TcpStream::connect(h.addr).await.unwrap();
        for _ in 0..5 {
            let mut junk = TcpStream::connect(h.addr).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut junk, b"GET / HTTP/1.1\r\n\r\n")
                .await
                .unwrap();
        }
        let mut client = h.client().await;
        let (tx, inbound, answer) = attach(&mut client, hello("a1", &h.run_id, &secret), &[]).await;
        assert!(matches!(answer, pb::coordinator_message::Msg::Welcome(_)));
        drop((tx, inbound, client));
        h.finish().await;
    }

    /// Refusals are logged up to a budget per window; the rest are counted,
    /// so a stranger hammering the port cannot fill the log.
    #[tokio::test]
    async fn refusal_notices_are_capped() {
        let h = Harness::start().await;
        for i in 0..REFUSALS_PER_WINDOW + 5 {
            h.hub.log_refusal("", format!("refusal {i}")).await;
        }
        h.hub.flush().await.unwrap();
        let notices = h.hub.fold.lock().unwrap().notices.clone();
        assert_eq!(notices.len(), REFUSALS_PER_WINDOW as usize, "{notices:?}");
        h.finish().await;
    }

    /// Pool agents: one whose Hello names an earlier run gets in; one on
    /// another agent binary is refused as stale (to retry) and listed; a
    /// benched one and, once the doors close, any is sent away to retry. A
    /// look-only hub checks the secret, notes the Hello and welcomes none.
    #[tokio::test]
    async fn pool_agents_are_admitted_by_binary_bench_and_doors() {
        let h = Harness::start().await;
        let (s1, s2, s3) = (
            new_secret().unwrap(),
            new_secret().unwrap(),
            new_secret().unwrap(),
        );
        h.hub.admit_pool("p1", s1.clone());
        h.hub.admit_pool("p2", s2.clone());
        h.hub.admit_pool("p3", s3.clone());
        h.hub.expect_binary("aa");
        h.hub.bench(&["p3".to_string()]);
        let pooled = |id: &str, secret: &str, hash: &str| {
            let mut m = hello(id, "an-earlier-run", secret);
            if let Some(pb::agent_message::Msg::Hello(hello)) = m.msg.as_mut() {
                hello.binary_hash = hash.into();
                hello.pool = "p".into();
            }
            m
        };
        let mut client = h.client().await;
        let (tx, inbound, answer) = attach(&mut client, pooled("p1", &s1, "aa"), &[]).await;
        match answer {
            pb::coordinator_message::Msg::Welcome(w) => assert_eq!(w.run_id, h.run_id),
            other => panic!("expected Welcome, got {other:?}"),
        }
        drop((tx, inbound));
        let (_tx, _in, answer) = attach(&mut client, pooled("p2", &s2, "bb"), &[]).await;
        let r = refused(answer);
        assert!(r.retry && r.reason.contains("stale agent"), "{r:?}");
        assert_eq!(h.hub.stale()["p2"].hello.binary_hash, "bb");
        let (_tx, _in, answer) = attach(&mut client, pooled("p3", &s3, "aa"), &[]).await;
        let r = refused(answer);
        assert!(r.retry && r.reason.contains("does not use"), "{r:?}");
        let (_tx, _in, answer) = attach(&mut client, pooled("p1", &s2, "aa"), &[]).await;
        assert!(!refused(answer).retry, "a wrong secret is refused for good");
        h.hub.close_doors();
        let (_tx, _in, answer) = attach(&mut client, pooled("p1", &s1, "aa"), &[]).await;
        let r = refused(answer);
        assert!(r.retry && r.reason.contains("is ending"), "{r:?}");
        drop((_tx, _in, client));
        h.finish().await;

        let h = Harness::start().await;
        h.hub.admit_pool("p1", s1.clone());
        h.hub.look_only();
        let mut client = h.client().await;
        let (_tx, _in, answer) = attach(&mut client, pooled("p1", &s1, "cc"), &[]).await;
        assert!(refused(answer).retry);
        let seen = &h.hub.agents()["p1"];
        assert!(!seen.connected && seen.seen_at_us > 0);
        assert_eq!(seen.hello.binary_hash, "cc");
        let (_tx2, _in2, answer) = attach(&mut client, pooled("p1", &s2, "cc"), &[]).await;
        assert!(!refused(answer).retry, "look-only still checks the secret");
        drop((_tx, _in, _tx2, _in2, client));
        h.finish().await;
    }
}
