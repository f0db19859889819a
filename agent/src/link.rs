//! The agent's link to the coordinator: dial, attach, resend, reconnect.
//!
//! The coordinator is dialed over TLS pinned to its certificate's fingerprint
//! (`fleetbench::tls`), and Hello carries this agent's secret. A refusal ends
//! the link (the agent exits), except one the coordinator marks as worth
//! retrying (this agent's previous link still looks live to it), which is
//! retried like a failed dial.
//!
//! One `Attach` stream at a time. The agent speaks first (Hello, with the
//! range of sequence numbers it still holds), the coordinator answers Welcome
//! with what it already has durable, and the agent then sends every event
//! after that, in order, and keeps sending new ones as they are pushed. Acks
//! release events from the outbox. When the stream breaks, the agent dials
//! again with capped exponential backoff and starts over from the Welcome;
//! the coordinator drops any sequence number it already holds, so nothing is
//! lost and nothing is logged twice.
//!
//! Commands (start/stop phase, shutdown) are handed to the load engine;
//! pings are answered here, on the same stream, at once.
//!
//! A pool agent (its credentials name a pool) outlives runs: it never gives
//! up dialing (backoff capped at [`POOL_BACKOFF_CAP`], so it attaches within
//! half a second of a coordinator starting), and a Shutdown only releases it:
//! once every event is acked it closes the stream and dials again for the next
//! run. Its Hello names the run its outbox belongs to; the Welcome names the
//! run it joins, and a different run moves the outbox to a fresh sequence
//! space (`Outbox::start_run`). Events a dead coordinator never acked are
//! kept aside (and said so in a notice), never sent as the new run's events:
//! they go to the new coordinator as `LateEvents` of their own run, which it
//! appends to that run's log, and leave only when it acks them (`LateAck`).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleetbench::pb;
use fleetbench::pb::coordinator_client::CoordinatorClient;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::engine::Command;
use crate::outbox::Outbox;

/// Events sent per wake-up of the sender; keeps one reconnect from cloning
/// the whole outbox at once.
const SEND_BATCH: usize = 256;
/// Longest wait between dials of a run's agent.
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Longest wait between dials of a pool agent.
pub(crate) const POOL_BACKOFF_CAP: Duration = Duration::from_millis(500);
/// Events of earlier runs kept aside at most (oldest dropped first).
const PARKED_MAX: usize = crate::outbox::DEFAULT_CAPACITY;
/// Late events per LateEvents message at most, and their bytes.
const LATE_BATCH: usize = 1000;
const LATE_BATCH_BYTES: usize = 8 << 20;

pub(crate) struct LinkConfig {
    /// `host:port` of the coordinator.
    pub coordinator: String,
    /// TLS pinned to the coordinator's certificate.
    pub dialer: fleetbench::tls::Dialer,
    /// Hello without the outbox bounds (filled in per attach).
    pub hello: pb::Hello,
    /// Exit when no coordinator could be reached for this long (never, for
    /// a pool agent).
    pub give_up_after: Duration,
    /// A pool agent: it outlives runs (see the module's doc).
    pub pool: bool,
    /// Write the highest acked seq to this file on every ack (set from
    /// `$FLEETBENCH_ACK_TRACE/<agent id>`; tests of durability read it).
    pub ack_trace: Option<std::path::PathBuf>,
}

/// How the link ended.
#[derive(Debug)]
pub(crate) enum LinkEnd {
    /// The coordinator said to shut down and every event is acked.
    Shutdown(String),
    /// The coordinator refused this agent.
    Refused(String),
    /// No coordinator for `give_up_after`.
    GaveUp,
    /// The process is stopping (signal).
    Cancelled,
}

/// The link's side of the load engine: commands go in, idleness comes out.
pub(crate) struct Engine {
    /// Start/stop phase and shutdown, as the coordinator says them.
    pub commands: mpsc::Sender<Command>,
    /// True while no phase is running.
    pub idle: watch::Receiver<bool>,
}

pub(crate) async fn run(
    cfg: LinkConfig,
    outbox: Arc<Outbox>,
    engine: Engine,
    connected: watch::Sender<bool>,
    stop: CancellationToken,
) -> LinkEnd {
    let mut backoff = Duration::from_millis(100);
    let mut last_contact = Instant::now();
    let cap = if cfg.pool {
        POOL_BACKOFF_CAP
    } else {
        BACKOFF_CAP
    };
    let mut link = Link {
        cfg,
        outbox,
        engine,
        connected,
        shutting_down: None,
        parked: Parked::default(),
    };
    loop {
        let result = tokio::select! {
            biased;
            () = stop.cancelled() => return LinkEnd::Cancelled,
            r = link.attach_once(&stop) => r,
        };
        link.connected.send_replace(false);
        let cfg = &link.cfg;
        match result {
            Ok(Attached::Ended(LinkEnd::Shutdown(reason))) if cfg.pool => {
                tracing::info!("released by the coordinator ({reason}); waiting for the next run");
                backoff = Duration::from_millis(100);
                last_contact = Instant::now();
            }
            Ok(Attached::Ended(end)) => return end,
            Ok(Attached::Lost(why)) => {
                // We were attached: start backing off from scratch.
                tracing::warn!("link to coordinator lost: {why:#}");
                backoff = Duration::from_millis(100);
                last_contact = Instant::now();
            }
            // A pool agent hears this whenever another run holds the pool's
            // coordinator, or `pool ls` looks: not worth a line a second.
            Ok(Attached::Deferred(why)) if cfg.pool => {
                tracing::debug!("coordinator {} says try again: {why}", cfg.coordinator)
            }
            Ok(Attached::Deferred(why)) => {
                tracing::warn!("coordinator {} says try again: {why}", cfg.coordinator)
            }
            Err(e) => tracing::debug!("dialing coordinator {}: {e:#}", cfg.coordinator),
        }
        if !cfg.pool && last_contact.elapsed() > cfg.give_up_after {
            tracing::error!(
                "no coordinator at {} for {:?}: giving up",
                cfg.coordinator,
                cfg.give_up_after
            );
            return LinkEnd::GaveUp;
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => return LinkEnd::Cancelled,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(cap);
    }
}

/// Events of earlier runs that their coordinator never acked, kept aside.
#[derive(Default)]
struct Parked {
    /// (run, events), oldest run first.
    runs: Vec<(String, Vec<pb::Event>)>,
}

impl Parked {
    fn keep(&mut self, run: String, events: Vec<pb::Event>) -> usize {
        self.runs.push((run, events));
        let mut total: usize = self.runs.iter().map(|(_, e)| e.len()).sum();
        while total > PARKED_MAX {
            let (_, oldest) = &mut self.runs[0];
            let cut = (total - PARKED_MAX).min(oldest.len());
            oldest.drain(..cut);
            total -= cut;
            if oldest.is_empty() {
                self.runs.remove(0);
            }
        }
        total
    }

    /// Drops the kept events of `run` up to `through`.
    fn ack(&mut self, run: &str, through: u64) -> usize {
        let mut dropped = 0;
        for (_, events) in self.runs.iter_mut().filter(|(r, _)| r == run) {
            let before = events.len();
            events.retain(|e| e.seq > through);
            dropped += before - events.len();
        }
        self.runs.retain(|(_, e)| !e.is_empty());
        dropped
    }

    /// The kept events as LateEvents messages.
    fn messages(&self) -> Vec<pb::AgentMessage> {
        self.runs
            .iter()
            .flat_map(|(run, events)| {
                late_chunks(events).map(|chunk| {
                    msg(pb::agent_message::Msg::LateEvents(pb::LateEvents {
                        run_id: run.clone(),
                        events: chunk.to_vec(),
                    }))
                })
            })
            .collect()
    }
}

/// `events` cut into runs of at most [`LATE_BATCH`] events and
/// [`LATE_BATCH_BYTES`] (one event more when a single one is larger), so
/// that no message comes near the coordinator's limit.
fn late_chunks(events: &[pb::Event]) -> impl Iterator<Item = &[pb::Event]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let n = rest
            .iter()
            .take(LATE_BATCH)
            .take_while(|e| {
                bytes += e.encoded_len();
                bytes <= LATE_BATCH_BYTES
            })
            .count()
            .max(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

enum Attached {
    /// The stream was up, then broke.
    Lost(anyhow::Error),
    /// Refused for now; dial again after a backoff.
    Deferred(String),
    Ended(LinkEnd),
}

/// The link across its attaches: what it was given, and what it carries
/// from one stream to the next.
struct Link {
    cfg: LinkConfig,
    outbox: Arc<Outbox>,
    engine: Engine,
    /// True while attached (and, for a pool agent, held by a run).
    connected: watch::Sender<bool>,
    /// The coordinator said Shutdown (why): the link ends once the engine
    /// is idle and every event is acked.
    shutting_down: Option<String>,
    /// Events of earlier runs (a pool agent), for their own logs.
    parked: Parked,
}

/// One open `Attach` stream. (Fields drop in this order.)
struct Stream {
    /// The coordinator's half.
    inbound: tonic::Streaming<pb::CoordinatorMessage>,
    /// The agent's half.
    tx: mpsc::Sender<pb::AgentMessage>,
    /// The client the stream was opened on, kept as long as the stream.
    _client: CoordinatorClient<tonic::transport::Channel>,
}

impl Link {
    /// One attach: dial, Hello, Welcome, then resend and serve the stream
    /// until it breaks or the link ends.
    async fn attach_once(&mut self, stop: &CancellationToken) -> Result<Attached> {
        let mut stream = self.dial().await?;
        let welcome = match welcome(&mut stream.inbound).await? {
            Ok(w) => w,
            Err(not_welcomed) => return Ok(not_welcomed),
        };
        self.join_run(&welcome).await;
        self.outbox.ack(welcome.acked_through);
        self.connected.send_replace(true);
        // Whatever earlier runs left unacked goes to their own logs through
        // this coordinator.
        for late in self.parked.messages() {
            if stream.tx.send(late).await.is_err() {
                return Ok(Attached::Lost(anyhow::anyhow!("outgoing stream closed")));
            }
        }
        tracing::info!(
            "attached to {} (run {}), resending from seq {}",
            self.cfg.coordinator,
            welcome.run_id,
            welcome.acked_through + 1
        );

        // Sender: everything after what the coordinator holds, then new events.
        let sender_stop = stop.child_token();
        let sender_dead = CancellationToken::new();
        tokio::spawn({
            let (outbox, tx, stop, dead) = (
                self.outbox.clone(),
                stream.tx.clone(),
                sender_stop.clone(),
                sender_dead.clone(),
            );
            async move {
                send_events(outbox, tx, welcome.acked_through, stop).await;
                dead.cancel();
            }
        });
        let _stop_sender = sender_stop.drop_guard();
        Ok(self.serve(&mut stream, &sender_dead).await)
    }

    /// Dials the coordinator and opens the stream with Hello (which carries
    /// the outbox's bounds and, for a pool agent, the run they belong to).
    async fn dial(&self) -> Result<Stream> {
        let cfg = &self.cfg;
        let endpoint = fleetbench::tls::Dialer::endpoint(&cfg.coordinator)
            .context("coordinator address")?
            .connect_timeout(if cfg.pool {
                // Redial soon after a coordinator's host comes back.
                Duration::from_secs(2)
            } else {
                Duration::from_secs(5)
            })
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(10));
        let channel = cfg.dialer.connect(&endpoint).await.context("connecting")?;
        let mut client = CoordinatorClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);

        let (tx, rx) = mpsc::channel::<pb::AgentMessage>(1024);
        let mut hello = cfg.hello.clone();
        (hello.lowest_unacked, hello.highest_seq) = self.outbox.bounds();
        if cfg.pool {
            hello.run_id = self.outbox.run_id();
        }
        tx.send(msg(pb::agent_message::Msg::Hello(hello)))
            .await
            .expect("receiver is alive: held below");
        let inbound = client
            .attach(ReceiverStream::new(rx))
            .await
            .context("attaching")?
            .into_inner();
        Ok(Stream {
            inbound,
            tx,
            _client: client,
        })
    }

    /// A pool agent moves to the run the Welcome names: a phase of another
    /// run still running ends first, then the outbox starts the new run's
    /// sequence space, and what the old run never had acked is kept aside.
    async fn join_run(&mut self, welcome: &pb::Welcome) {
        if !self.cfg.pool {
            return;
        }
        let current = self.outbox.run_id();
        if !current.is_empty() && current != welcome.run_id {
            // A phase of the old run may still be running (its coordinator
            // died less than a lease ago): it ends here, before the switch,
            // so none of its windows lands in the new run.
            let _ = self.engine.commands.send(Command::StopAll).await;
            let mut idle = self.engine.idle.clone();
            let _ = tokio::time::timeout(Duration::from_secs(10), idle.wait_for(|i| *i)).await;
        }
        if let Some((old_run, left)) = self.outbox.start_run(&welcome.run_id) {
            let n = left.len();
            let kept = self.parked.keep(old_run.clone(), left);
            let message = format!(
                "holding {n} event(s) of run {old_run} that its coordinator never acked; kept aside ({kept} in all) for run {old_run}'s own log, never logged into run {}",
                welcome.run_id
            );
            tracing::warn!("{message}");
            self.outbox.push(pb::event::Kind::Notice(pb::AgentNotice {
                level: pb::agent_notice::Level::Warn as i32,
                message,
            }));
        }
    }

    /// Serves an attached stream: the coordinator's messages as they come,
    /// until the stream breaks, the sender dies, or a shutdown has drained.
    async fn serve(&mut self, stream: &mut Stream, sender_dead: &CancellationToken) -> Attached {
        let mut idle = self.engine.idle.clone();
        loop {
            let drained = async {
                if self.shutting_down.is_none() {
                    return std::future::pending().await;
                }
                let _ = idle.wait_for(|i| *i).await;
                self.outbox.drained().await;
            };
            tokio::select! {
                biased;
                () = drained => {
                    let reason = self.shutting_down.take().unwrap_or_default();
                    return Attached::Ended(LinkEnd::Shutdown(reason));
                }
                m = stream.inbound.message() => {
                    let m = match m {
                        Ok(Some(m)) => m,
                        Ok(None) => return Attached::Lost(anyhow::anyhow!("coordinator closed the stream")),
                        Err(status) => return Attached::Lost(anyhow::Error::new(status).context("stream broke")),
                    };
                    if let ControlFlow::Break(end) = self.handle(m, &stream.tx).await {
                        return end;
                    }
                }
                () = sender_dead.cancelled() => {
                    return Attached::Lost(anyhow::anyhow!("outgoing stream closed"));
                }
            }
        }
    }

    /// One message from the coordinator; `Break` ends this attach.
    async fn handle(
        &mut self,
        m: pb::CoordinatorMessage,
        tx: &mpsc::Sender<pb::AgentMessage>,
    ) -> ControlFlow<Attached> {
        use pb::coordinator_message::Msg;
        match m.msg {
            Some(Msg::Ack(a)) => {
                self.outbox.ack(a.through);
                if let Some(path) = &self.cfg.ack_trace {
                    // Tests read this to check that every acked event is in the log.
                    let _ = std::fs::write(path, format!("{}\n", a.through));
                }
            }
            Some(Msg::Ping(p)) => {
                let pong = pb::Pong {
                    coordinator_time_us: p.coordinator_time_us,
                    agent_time_us: fleetbench::clock::now_us(),
                };
                if tx
                    .send(msg(pb::agent_message::Msg::Pong(pong)))
                    .await
                    .is_err()
                {
                    return ControlFlow::Break(Attached::Lost(anyhow::anyhow!(
                        "outgoing stream closed"
                    )));
                }
            }
            Some(Msg::StartPhase(s)) => {
                let _ = self.engine.commands.send(Command::Start(Box::new(s))).await;
            }
            Some(Msg::StopPhase(s)) => {
                let _ = self
                    .engine
                    .commands
                    .send(Command::Stop(s.phase_index))
                    .await;
            }
            Some(Msg::Shutdown(s)) => {
                tracing::info!("coordinator asks us to shut down: {}", s.reason);
                let _ = self.engine.commands.send(Command::StopAll).await;
                if self.cfg.pool {
                    // Released: no more host metrics for this run.
                    self.connected.send_replace(false);
                }
                self.shutting_down = Some(s.reason);
            }
            Some(Msg::Refused(r)) => {
                return ControlFlow::Break(Attached::Ended(LinkEnd::Refused(r.reason)));
            }
            Some(Msg::LateAck(a)) if a.error.is_empty() => {
                let n = self.parked.ack(&a.run_id, a.through);
                tracing::info!("{n} late event(s) of run {} are in its log now", a.run_id);
                self.outbox.push(pb::event::Kind::Notice(pb::AgentNotice {
                    level: pb::agent_notice::Level::Info as i32,
                    message: format!(
                        "delivered {n} late event(s) into the log of run {}",
                        a.run_id
                    ),
                }));
            }
            Some(Msg::LateAck(a)) => {
                tracing::warn!(
                    "late events of run {} not taken (kept): {}",
                    a.run_id,
                    a.error
                );
            }
            Some(Msg::Welcome(_)) | None => {}
        }
        ControlFlow::Continue(())
    }
}

/// Waits for the coordinator's answer to Hello: its Welcome, or (`Err`)
/// how the attach ends instead (a refusal, final or for now).
async fn welcome(
    inbound: &mut tonic::Streaming<pb::CoordinatorMessage>,
) -> Result<Result<pb::Welcome, Attached>> {
    match inbound.message().await.context("waiting for welcome")? {
        Some(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Welcome(w)),
        }) => Ok(Ok(w)),
        Some(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Refused(r)),
        }) if r.retry => Ok(Err(Attached::Deferred(r.reason))),
        Some(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Refused(r)),
        }) => Ok(Err(Attached::Ended(LinkEnd::Refused(r.reason)))),
        Some(_) => bail!("coordinator did not welcome us: it answered Hello with another message"),
        None => bail!("coordinator did not welcome us: it closed the stream"),
    }
}

async fn send_events(
    outbox: Arc<Outbox>,
    tx: mpsc::Sender<pb::AgentMessage>,
    mut sent_through: u64,
    stop: CancellationToken,
) {
    let mut latest = outbox.subscribe_latest();
    loop {
        let batch = outbox.after(sent_through, SEND_BATCH);
        if batch.is_empty() {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                changed = latest.changed() => if changed.is_err() { return },
            }
            continue;
        }
        for event in batch {
            let seq = event.seq;
            if tx
                .send(msg(pb::agent_message::Msg::Event(event)))
                .await
                .is_err()
            {
                return;
            }
            sent_through = seq;
        }
    }
}

fn msg(m: pb::agent_message::Msg) -> pb::AgentMessage {
    pb::AgentMessage { msg: Some(m) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(seq: u64, bytes: usize) -> pb::Event {
        pb::Event {
            seq,
            agent_time_us: 0,
            kind: Some(pb::event::Kind::Notice(pb::AgentNotice {
                level: 1,
                message: "n".repeat(bytes),
            })),
        }
    }

    /// Late events go in messages of at most 1,000 events and 8 MiB, in
    /// order, each event once; an event larger than that goes alone.
    #[test]
    fn late_events_are_cut_by_count_and_by_bytes() {
        let small: Vec<pb::Event> = (1..=2500).map(|s| notice(s, 10)).collect();
        let sizes: Vec<usize> = late_chunks(&small).map(<[_]>::len).collect();
        assert_eq!(sizes, [1000, 1000, 500]);

        let big: Vec<pb::Event> = (1..=20).map(|s| notice(s, 1 << 20)).collect();
        let chunks: Vec<&[pb::Event]> = late_chunks(&big).collect();
        assert!(
            chunks
                .iter()
                .all(|c| { c.iter().map(Message::encoded_len).sum::<usize>() <= LATE_BATCH_BYTES })
        );
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 20);
        let seqs: Vec<u64> = chunks
            .iter()
            .flat_map(|c| c.iter().map(|e| e.seq))
            .collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());

        let huge = [notice(1, 9 << 20), notice(2, 1)];
        let sizes: Vec<usize> = late_chunks(&huge).map(<[_]>::len).collect();
        assert_eq!(sizes, [1, 1]);
    }
}
