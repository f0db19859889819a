//! The hub: the coordinator's side of every agent link, and the group-commit
//! writer that stands between the links and the event log.
//!
//! An agent's `Attach` stream is served here: Hello is checked, the agent is
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

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetbench::fold::Fold;
use fleetbench::pb;
use fleetbench::pb::coordinator_server::Coordinator;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::log::{EventLog, LogError, LogReader};

type Outgoing = mpsc::Sender<Result<pb::CoordinatorMessage, Status>>;

/// Records queued for the log at most; a full queue slows the links down
/// (backpressure) rather than growing without bound.
const QUEUE: usize = 65_536;
/// Records per group commit at most.
const BATCH: usize = 8_192;
/// Pings sent right after attach to measure the clock offset.
const SYNC_PINGS: u32 = 5;

/// One agent as the hub knows it.
#[derive(Debug, Clone, Default)]
pub struct AgentState {
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
    generation: u64,
}

struct Slot {
    state: AgentState,
    tx: Option<Outgoing>,
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

pub struct Hub {
    run_id: String,
    agents: Mutex<BTreeMap<String, Slot>>,
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
}

impl Hub {
    /// Starts the hub and its writer over `log`.
    pub fn start(
        run_id: String,
        log: EventLog,
        stop: CancellationToken,
    ) -> (Arc<Hub>, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let reader = log.reader();
        let hub = Arc::new(Hub {
            run_id,
            agents: Mutex::new(BTreeMap::new()),
            queue,
            fold: Arc::new(Mutex::new(Fold::new())),
            changed: Notify::new(),
            failure: Mutex::new(None),
            durable_lsn: watch::Sender::new(log.next_lsn().saturating_sub(1)),
            reader,
            finished: watch::Sender::new(false),
        });
        let writer = tokio::spawn(write_loop(hub.clone(), log, rx, stop));
        (hub, writer)
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Queues a coordinator record for the log.
    pub async fn log(&self, record: pb::log_record::Record) {
        let rec = pb::LogRecord {
            logged_at_us: fleetbench::clock::now_us(),
            record: Some(record),
        };
        let _ = self.queue.send(WriteItem::Record(rec)).await;
    }

    pub async fn notice(&self, level: &str, agent_id: &str, message: impl Into<String>) {
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
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(WriteItem::Flush(tx))
            .await
            .map_err(|_| "the log writer has stopped".to_string())?;
        rx.await
            .map_err(|_| "the log writer has stopped".to_string())?
    }

    /// Why the log cannot be written, if it cannot.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("never poisoned").clone()
    }

    pub fn agents(&self) -> BTreeMap<String, AgentState> {
        self.agents
            .lock()
            .expect("never poisoned")
            .iter()
            .map(|(id, s)| (id.clone(), s.state.clone()))
            .collect()
    }

    /// Sends a command to an agent; false if it is not connected.
    pub fn send(&self, agent_id: &str, msg: pb::coordinator_message::Msg) -> bool {
        let agents = self.agents.lock().expect("never poisoned");
        let Some(tx) = agents.get(agent_id).and_then(|s| s.tx.clone()) else {
            return false;
        };
        tx.try_send(Ok(pb::CoordinatorMessage { msg: Some(msg) }))
            .is_ok()
    }

    /// Marks the run finished for ReadLog followers.
    pub fn finish(&self) {
        self.finished.send_replace(true);
    }

    fn fail(&self, why: String) {
        tracing::error!("{why}");
        *self.failure.lock().expect("never poisoned") = Some(why);
        self.changed.notify_waiters();
    }

    fn slot_mut<R>(&self, agent_id: &str, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        self.agents
            .lock()
            .expect("never poisoned")
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
pub struct Service {
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
        let first = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10s"))?
            .map_err(|s| Status::invalid_argument(format!("reading Hello: {}", s.message())))?;
        let hello = match first.and_then(|m| m.msg) {
            Some(pb::agent_message::Msg::Hello(h)) => h,
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        let hub = self.hub.clone();
        let (tx, rx) = mpsc::channel(1024);
        if let Err(why) = check_hello(&hub, &hello) {
            hub.notice(
                "warn",
                &hello.agent_id,
                format!("refused agent {:?} from {peer}: {why}", hello.agent_id),
            )
            .await;
            let _ = tx
                .send(Ok(pb::CoordinatorMessage {
                    msg: Some(pb::coordinator_message::Msg::Refused(pb::Refused {
                        reason: why,
                    })),
                }))
                .await;
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        }
        let agent_id = hello.agent_id.clone();
        let (generation, acked_through) = {
            let mut agents = hub.agents.lock().expect("never poisoned");
            let slot = agents.entry(agent_id.clone()).or_insert_with(|| Slot {
                state: AgentState::default(),
                tx: None,
            });
            slot.state.generation += 1;
            slot.state.hello = hello.clone();
            slot.state.peer = peer.clone();
            slot.state.connected = true;
            slot.state.synced = false;
            slot.tx = Some(tx.clone());
            (slot.state.generation, slot.state.acked_through)
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
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
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

fn check_hello(hub: &Hub, hello: &pb::Hello) -> Result<(), String> {
    if hello.agent_id.is_empty() || hello.agent_id.len() > 200 {
        return Err("agent id must be 1 to 200 characters".into());
    }
    if hello.protocol != fleetbench::PROTOCOL {
        return Err(format!(
            "agent speaks protocol {}, this coordinator speaks {}",
            hello.protocol,
            fleetbench::PROTOCOL
        ));
    }
    if !hello.run_id.is_empty() && hello.run_id != hub.run_id {
        return Err(format!(
            "agent was started for run {}, this is run {}",
            hello.run_id, hub.run_id
        ));
    }
    Ok(())
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
    if current {
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
    use tokio_stream::wrappers::TcpListenerStream;

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

    fn hello(run_id: &str) -> pb::AgentMessage {
        pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Hello(pb::Hello {
                agent_id: "buggy".into(),
                run_id: run_id.into(),
                protocol: fleetbench::PROTOCOL,
                ..Default::default()
            })),
        }
    }

    /// Sends `seqs` on one attach; returns the Welcome's acked_through and
    /// the highest Ack seen once `want_ack` is acked.
    async fn attach_and_send(
        addr: std::net::SocketAddr,
        run_id: &str,
        seqs: &[u64],
        want_ack: u64,
    ) -> (u64, u64) {
        let mut client = CoordinatorClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(64);
        tx.send(hello(run_id)).await.unwrap();
        let mut inbound = client
            .attach(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let welcome = match inbound.message().await.unwrap().unwrap().msg {
            Some(pb::coordinator_message::Msg::Welcome(w)) => w.acked_through,
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
        let data =
            std::env::temp_dir().join(format!("fleetbench-hub-test-{}", uuid::Uuid::now_v7()));
        let run_id = uuid::Uuid::now_v7().to_string();
        let log = EventLog::open(&data, &run_id).unwrap();
        let stop = CancellationToken::new();
        let (hub, writer) = Hub::start(run_id.clone(), log, stop.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_stop = CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::coordinator_server::CoordinatorServer::new(Service {
                    hub: hub.clone(),
                }))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    server_stop.clone().cancelled_owned(),
                ),
        );

        let (welcome, acked) = attach_and_send(addr, &run_id, &[1, 2, 3, 2, 3], 3).await;
        assert_eq!((welcome, acked), (0, 3));
        // Reattach and resend from an older point, as a confused agent would.
        let (welcome, acked) = attach_and_send(addr, &run_id, &[2, 3, 4, 5], 5).await;
        assert_eq!((welcome, acked), (3, 5));

        hub.flush().await.unwrap();
        let states = hub.agents();
        assert_eq!(states["buggy"].duplicates, 4);
        let report = hub.fold.lock().unwrap().report(&Default::default());
        assert_eq!(report.log.duplicate_events, 0, "duplicates reached the log");
        assert_eq!(report.log.agent_events["buggy"].events, 5);
        assert_eq!(report.log.agent_events["buggy"].highest_seq, 5);

        server_stop.cancel();
        let _ = server.await;
        stop.cancel();
        writer.await.unwrap();
        drop(hub);
        std::fs::remove_dir_all(&data).unwrap();
    }

    /// An agent started for another run is refused, and the refusal logged.
    #[tokio::test]
    async fn an_agent_of_another_run_is_refused() {
        let data =
            std::env::temp_dir().join(format!("fleetbench-hub-test-{}", uuid::Uuid::now_v7()));
        let run_id = uuid::Uuid::now_v7().to_string();
        let log = EventLog::open(&data, &run_id).unwrap();
        let stop = CancellationToken::new();
        let (hub, writer) = Hub::start(run_id.clone(), log, stop.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_stop = CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::coordinator_server::CoordinatorServer::new(Service {
                    hub: hub.clone(),
                }))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    server_stop.clone().cancelled_owned(),
                ),
        );
        let mut client = CoordinatorClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(4);
        tx.send(hello("some-other-run")).await.unwrap();
        let mut inbound = client
            .attach(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        match inbound.message().await.unwrap().unwrap().msg {
            Some(pb::coordinator_message::Msg::Refused(r)) => {
                assert!(r.reason.contains("some-other-run"), "{}", r.reason)
            }
            other => panic!("expected Refused, got {other:?}"),
        }
        hub.flush().await.unwrap();
        let notices = hub.fold.lock().unwrap().notices.clone();
        assert!(
            notices.iter().any(|n| n.contains("refused agent")),
            "{notices:?}"
        );
        assert!(hub.agents().is_empty());
        server_stop.cancel();
        let _ = server.await;
        stop.cancel();
        writer.await.unwrap();
        drop(hub);
        std::fs::remove_dir_all(&data).unwrap();
    }
}
