//! The gRPC service agents and readers call, and the server that serves it.
//!
//! `Attach`: the Hello is read and checked (`handshake.rs`), the agent
//! claimed in the registry, welcomed with the highest sequence number
//! already durable for it, and its link served (`link.rs`); a refused
//! stream gets a Refused and nothing more of it is read. `ReadLog`: a run's
//! records as they become durable, for `report`, `runs` and `replay
//! --follow` while this coordinator writes the run. [`Serving`] runs the
//! server over TLS until it is stopped.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fleetbench::pb;
use fleetbench::pb::coordinator_server::{Coordinator, CoordinatorServer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::handshake::{
    Refusal, accept_tls, check_hello, quoted, read_hello, refuse, tell_refused,
};
use super::link::Link;
use super::registry::Outgoing;
use super::state::Hub;
use crate::log::LogError;

/// Records per ReadLog batch at most.
const READ_BATCH: usize = 4096;

/// The gRPC service; clones share the hub.
#[derive(Clone)]
struct Service {
    hub: Arc<Hub>,
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
        let (tx, rx) = mpsc::channel(1024);
        let reply = Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as AttachStream
        ));
        if let Some(link) = welcome_or_refuse(self.hub.clone(), peer, &mut inbound, tx).await {
            tokio::spawn(link.serve(inbound));
        }
        // A refused stream's `inbound` is dropped unread: nothing a refused
        // agent sent can reach the log.
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
        tokio::spawn(read_log(self.hub.clone(), req, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Reads and checks an Attach stream's Hello: welcomes the agent and
/// returns its link, or turns the stream away.
async fn welcome_or_refuse(
    hub: Arc<Hub>,
    peer: String,
    inbound: &mut Streaming<pb::AgentMessage>,
    tx: Outgoing,
) -> Option<Link> {
    let mut hello = match read_hello(inbound).await {
        Ok(hello) => hello,
        Err(why) => {
            let who = format!("a stream from {peer}");
            refuse(&hub, &tx, "", &who, Refusal::new(why)).await;
            return None;
        }
    };
    // The secret has done its work: it goes no further (not into the
    // agent's state, not into the log's AgentAttached record).
    let secret = std::mem::take(&mut hello.secret);
    let (generation, acked_through) = match claim(&hub, &hello, &secret, &peer, &tx) {
        Ok(Some(claimed)) => claimed,
        Ok(None) => {
            hub.changed.notify_waiters();
            let reason = "only looked at (pool ls or pool upgrade): dial again";
            tell_refused(&tx, reason.into(), true).await;
            return None;
        }
        Err(refusal) => {
            turn_away(&hub, &tx, &hello, &peer, refusal).await;
            return None;
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
        "agent {} attached from {peer} (link {generation}), acked through {acked_through}",
        hello.agent_id
    );
    Some(Link::new(hub, hello, peer, generation, tx))
}

/// Checks `hello` and claims its agent's slot for this link under one
/// lock: of two links presenting the same secret at once, one gets in.
/// None: a look-only hub noted the Hello.
fn claim(
    hub: &Hub,
    hello: &pb::Hello,
    secret: &str,
    peer: &str,
    tx: &Outgoing,
) -> Result<Option<(u64, u64)>, Refusal> {
    let mut registry = hub.registry.lock().expect("never poisoned");
    check_hello(&hub.run_id, &registry, hello, secret)?;
    Ok(registry.claim(hello, peer, tx))
}

/// Turns a refused Hello away, telling it why: logged, but a pool agent's
/// refusal to retry only once per kind, and an expected one not at all.
async fn turn_away(hub: &Hub, tx: &Outgoing, hello: &pb::Hello, peer: &str, refusal: Refusal) {
    let agent_id = &hello.agent_id;
    let (known, told) = hub.registry.lock().expect("never poisoned").note_refused(
        hello,
        peer,
        refusal.stale,
        refusal.retry,
        &refusal.kind,
    );
    if refusal.stale {
        hub.changed.notify_waiters();
    }
    if told || refusal.quiet {
        tell_refused(tx, refusal.reason, refusal.retry).await;
        return;
    }
    let who = format!("agent {} from {peer}", quoted(agent_id));
    refuse(hub, tx, if known { agent_id } else { "" }, &who, refusal).await;
}

/// Sends `req`'s run from its first asked record on, batch by batch as
/// records become durable; with `follow`, until the run has finished.
async fn read_log(
    hub: Arc<Hub>,
    req: pb::ReadLogRequest,
    tx: mpsc::Sender<Result<pb::LogRecordBatch, Status>>,
) {
    let mut next = req.from_lsn.max(1);
    let mut durable = hub.durable_lsn.subscribe();
    let mut finished = hub.finished.subscribe();
    loop {
        let upto = *durable.borrow_and_update();
        let done = *finished.borrow_and_update();
        let reader = hub.reader.clone();
        let from = next;
        let batch = tokio::task::spawn_blocking(move || read_batch(&reader, from, upto)).await;
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
        let full = batch.lsns.len() >= READ_BATCH;
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
}

/// The records from `from` through `upto`, [`READ_BATCH`] at most.
fn read_batch(
    reader: &crate::log::LogReader,
    from: u64,
    upto: u64,
) -> Result<pb::LogRecordBatch, LogError> {
    let mut b = pb::LogRecordBatch::default();
    for item in reader.scan_from(from) {
        let (lsn, rec) = item?;
        if lsn > upto {
            break;
        }
        b.lsns.push(lsn);
        b.records.push(prost::Message::encode_to_vec(&rec));
        if b.lsns.len() >= READ_BATCH {
            break;
        }
    }
    Ok(b)
}

/// The hub's gRPC server, running until [`Serving::stop`].
pub(crate) struct Serving {
    stop: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Serving {
    /// Serves `hub` on `listener`, over TLS only, in a task of its own.
    pub(crate) fn start(
        hub: Arc<Hub>,
        tls: Arc<rustls::ServerConfig>,
        listener: TcpListener,
    ) -> Serving {
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(hub, tls, listener, stop.clone()));
        Serving { stop, server }
    }

    /// Stops serving and waits (5 s at most) for the server to end.
    pub(crate) async fn stop(self) {
        let _ = self.end(Duration::from_secs(5)).await;
    }

    /// Stops serving and waits (`within` at most) for the server to end:
    /// gracefully, once its open streams have ended.
    pub(super) async fn end(
        self,
        within: Duration,
    ) -> Result<
        Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
        tokio::time::error::Elapsed,
    > {
        self.stop.cancel();
        tokio::time::timeout(within, self.server).await
    }
}

/// Serves the gRPC service on `listener` until `stop`, over TLS only: each
/// connection's handshake runs in its own task (a stalled or plaintext
/// client holds up no other), and one that fails or takes longer than
/// [`HANDSHAKE`](super::handshake::HANDSHAKE) is closed and the refusal
/// logged.
async fn serve(
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
