//! The operations an iteration can run: `http` (HTTP/1.1, h2c, https),
//! `grpc` (a unary call over HTTP/2), `tcp`
//! (connect, send, read a reply), `exec` (a command; success is exit 0) and
//! `synthetic` (a drawn latency). An [`Op`] is compiled once per phase from
//! the wire form; each worker keeps its own [`Slot`] per op (a connection)
//! and a reused [`Scratch`], so a request with no templates allocates
//! nothing beyond what hyper needs.
//!
//! # Layout
//! - this file: [`Op`] (compile, grace) and [`execute`], which dispatches a
//!   try to its kind.
//! - `slot`: what a worker keeps between tries ([`Slot`], [`Scratch`]) and
//!   the [`Outcome`] of a try; shared by the kinds.
//! - `counted`: the TCP streams of `http` and `tcp`, counting the bytes
//!   their peer acknowledged (`bytes_sent`).
//! - `tls`: an https op's TLS client and the stream hyper speaks over.
//! - `headers`: http headers and grpc metadata, literal or templated.
//! - `conn`: opening an HTTP connection (dial, TCP, TLS, h2 or h1), each
//!   stage timed; shared by `http` and `grpc`.
//! - `dial`: where an http op's new connections go (a name resolved per
//!   connection, round-robin over its addresses).
//! - `http`, `grpc`, `tcp`, `exec`, `synthetic`: one file per kind, each with its
//!   compile step and its try.

mod conn;
mod counted;
mod dial;
mod exec;
mod grpc;
mod headers;
mod http;
mod slot;
mod synthetic;
mod tcp;
mod tls;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fleetbench::pb;
use fleetbench_gen::GenSpec;

use exec::ExecOp;
use grpc::GrpcOp;
use http::HttpOp;
pub(crate) use slot::{Outcome, Scratch, Slot};
use synthetic::SyntheticOp;
use tcp::TcpOp;

pub(crate) struct Op {
    pub name: String,
    pub kind: OpKind,
}

pub(crate) enum OpKind {
    Http(Box<HttpOp>),
    Grpc(Box<GrpcOp>),
    Tcp(Box<TcpOp>),
    Exec(Box<ExecOp>),
    Synthetic(SyntheticOp),
}

impl Op {
    pub(crate) async fn compile(op: &pb::Operation, gens: &[GenSpec]) -> Result<Op> {
        let what = if op.name.is_empty() {
            "the phase's workload".to_string()
        } else {
            format!("op {:?}", op.name)
        };
        let kind = match op
            .kind
            .as_ref()
            .with_context(|| format!("{what} has no kind"))?
        {
            pb::operation::Kind::Http(h) => OpKind::Http(Box::new(
                HttpOp::compile(h, gens)
                    .await
                    .with_context(|| what.clone())?,
            )),
            pb::operation::Kind::Grpc(g) => OpKind::Grpc(Box::new(
                GrpcOp::compile(g, gens)
                    .await
                    .with_context(|| what.clone())?,
            )),
            pb::operation::Kind::Tcp(t) => OpKind::Tcp(Box::new(
                TcpOp::compile(t, gens)
                    .await
                    .with_context(|| what.clone())?,
            )),
            pb::operation::Kind::Exec(e) => OpKind::Exec(Box::new(
                ExecOp::compile(e, gens).with_context(|| what.clone())?,
            )),
            pb::operation::Kind::Synthetic(s) => OpKind::Synthetic(SyntheticOp::compile(s, &what)?),
        };
        Ok(Op {
            name: op.name.clone(),
            kind,
        })
    }

    /// How long requests in flight may finish after the phase's deadline.
    pub(crate) fn grace(&self) -> Duration {
        let t = match &self.kind {
            OpKind::Http(h) => h.timeout,
            OpKind::Grpc(g) => g.deadline,
            OpKind::Tcp(t) => t.timeout,
            OpKind::Exec(e) => e.timeout,
            OpKind::Synthetic(_) => Duration::from_secs(2),
        };
        t.min(Duration::from_secs(2))
    }

    /// A fresh per-worker slot for this op.
    pub(crate) fn slot(&self) -> Slot {
        Slot::default()
    }

    /// Why its connections failed since the last call (TLS handshakes),
    /// each once with its count, and where a name's connections went: for
    /// notices.
    pub(crate) fn take_failures(&self) -> Vec<String> {
        match &self.kind {
            OpKind::Http(h) => h.take_failures(),
            OpKind::Grpc(g) => g.take_failures(),
            _ => Vec::new(),
        }
    }
}

/// Runs one try of `op` now. Returns when it started (for the send lag,
/// and in closed loop the start of its latency: a connection it had to
/// open is part of it), its outcome and the bytes sent. `in_flight` is bumped around the wait.
pub(crate) async fn execute(
    op: &Op,
    slot: &mut Slot,
    s: &mut Scratch,
    in_flight: &std::cell::Cell<u64>,
) -> (Instant, Outcome, u64) {
    match &op.kind {
        OpKind::Http(h) => h.execute(slot, s, in_flight).await,
        OpKind::Grpc(g) => g.execute(slot, s, in_flight).await,
        OpKind::Tcp(t) => t.execute(slot, s, in_flight).await,
        OpKind::Exec(e) => e.execute(s, in_flight).await,
        OpKind::Synthetic(y) => y.execute(s, in_flight).await,
    }
}
