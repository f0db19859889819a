//! The hub: the coordinator's side of every agent link, and the group-commit
//! writer that stands between the links and the event log.
//!
//! The gRPC server speaks TLS only ([`Serving`]): a connection that does not
//! complete a TLS handshake with the coordinator's certificate within 10 s is
//! closed and the refusal logged. An agent's `Attach` stream is served here:
//! Hello is checked (an admitted agent id, its secret, no other live link of
//! the same agent, this protocol and run; anything else is refused, logged as
//! a notice, and nothing more is read from the stream), the agent is
//! welcomed with the highest sequence number already durable for it, pings
//! measure its clock offset (the sample with the smallest round trip wins),
//! and each event it sends is judged (`guard`: size, plausibility, sequence,
//! phase, time, a budget per second; an agent that breaks a rule is cut
//! off for the run), dropped if its sequence number was already received,
//! else queued for the writer. The writer batches whatever is
//! queued, appends the batch to sled, flushes, and only then acks each agent
//! (cumulatively) and applies the records to the live fold. A flush that
//! fails stops all acking: the agents keep those events, and the run fails
//! with the log's error.
//!
//! Run control (`run/`) commands agents through [`Hub::send`] and watches
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
//!
//! # Layout
//! - `guard`: the rules an admitted agent's events must keep, and its
//!   budget; an agent that breaks one is cut off for the run.
//! - `registry`: who may attach and who has ([`AgentState`] per agent).
//! - `writer`: the group commit: batch -> sled -> flush -> handed back to
//!   be acked and folded. It knows the log, not the hub.
//! - `state`: [`Hub`], what run control, the links and the writer share,
//!   and run control's side of it (admit, bench, send, log, flush, fold).
//! - `handshake`: the accept loop, TLS handshakes, Hello checks, refusals.
//! - `link`: one welcomed agent's stream: pings, events, late events.
//! - `service`: the gRPC service (Attach, ReadLog) and [`Serving`].
//!
//! Each uses only modules listed above it.

mod guard;
mod handshake;
mod link;
mod registry;
mod service;
mod state;
mod writer;

#[cfg(test)]
mod tests;

pub(crate) use handshake::short;
pub(crate) use registry::AgentState;
pub(crate) use service::Serving;
pub(crate) use state::Hub;
