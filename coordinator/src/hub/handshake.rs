//! Letting a connection, then an agent, in, or refusing it.
//!
//! Every TCP connection gets its TLS handshake in a task of its own (a
//! stalled or plaintext client holds up no other); one that fails or takes
//! longer than [`HANDSHAKE`] is closed and the refusal logged. On an Attach
//! stream, the first message must be a Hello, and it is checked against the
//! registry: an admitted agent id, its secret, no other live link of the
//! same agent, this protocol and run, and for pool agents the binary this
//! coordinator ships, doors open and not benched. A refusal tells the agent
//! why (and whether to retry) and the log a little more, within the hub's
//! cap on logged refusals ([`Hub::log_refusal`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fleetbench::pb;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use super::registry::{Outgoing, Registry};
use super::state::Hub;
use crate::trust::secrets_match;

/// A connection must complete its TLS handshake within this, and then send
/// Hello within this.
pub(super) const HANDSHAKE: Duration = Duration::from_secs(10);

/// Why an attach was refused.
pub(super) struct Refusal {
    /// What the agent is told.
    pub(super) reason: String,
    /// What the log is told (may say more than the agent is).
    pub(super) detail: String,
    /// The refusal may clear by itself: the agent should try again later.
    pub(super) retry: bool,
    /// A pool agent running another binary than the one expected.
    pub(super) stale: bool,
    /// Not logged (an expected turn-away, like a released agent redialing
    /// a run that is ending).
    pub(super) quiet: bool,
    /// Which rule refused, for logging a pool agent's refusal once per kind.
    pub(super) kind: String,
}

impl Refusal {
    pub(super) fn new(reason: impl Into<String>) -> Refusal {
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

type Handshake = (SocketAddr, Result<TlsStream<TcpStream>, String>);

/// Accepts connections on `listener` until `stop`, and hands each one whose
/// TLS handshake completes to `conns`.
pub(super) async fn accept_tls(
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
                    handshakes.spawn(tls_handshake(acceptor.clone(), tcp, peer));
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

/// One connection's TLS handshake, within [`HANDSHAKE`].
async fn tls_handshake(acceptor: TlsAcceptor, tcp: TcpStream, peer: SocketAddr) -> Handshake {
    let done = match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("no TLS: {e}")),
        Err(_) => Err(format!("no TLS handshake within {}s", HANDSHAKE.as_secs())),
    };
    (peer, done)
}

/// The first message of an Attach stream, which must be Hello.
pub(super) async fn read_hello(
    inbound: &mut Streaming<pb::AgentMessage>,
) -> Result<pb::Hello, String> {
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
pub(super) fn check_hello(
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
    if let Some(why) = registry.cut_off.get(&hello.agent_id) {
        return Err(Refusal::new(format!(
            "this agent was cut off from run {run_id}: {why}"
        )));
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
pub(super) async fn refuse(hub: &Hub, tx: &Outgoing, agent_id: &str, who: &str, refusal: Refusal) {
    hub.log_refusal(agent_id, format!("refused {who}: {}", refusal.detail))
        .await;
    tell_refused(tx, refusal.reason, refusal.retry).await;
}

/// Tells a stream it is not let in, why, and whether to try again later.
pub(super) async fn tell_refused(tx: &Outgoing, reason: String, retry: bool) {
    let _ = tx
        .send(Ok(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Refused(pb::Refused {
                reason,
                retry,
            })),
        }))
        .await;
}

/// The first 12 hex digits of a hash, as people compare them.
pub(crate) fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// An agent id someone sent, fit for a log line: escaped, and cut short.
pub(super) fn quoted(agent_id: &str) -> String {
    const MAX: usize = 64;
    match agent_id.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &agent_id[..cut]),
        None => format!("{agent_id:?}"),
    }
}
