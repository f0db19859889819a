//! What a worker keeps from one try to the next: a [`Slot`] per op (its
//! connection, if the op has one) and one [`Scratch`] (reused buffers, the
//! worker's generators and draws, its timers), so that a request with no
//! templates allocates nothing beyond what hyper needs. Also the
//! [`Outcome`] every op's try comes to.
//!
//! The op kinds (`http`, `tcp`, `exec`, `synthetic`) use these; nothing here
//! knows how an op runs.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use fleetbench::window::{ErrorClass, Stage};
use fleetbench_gen::WorkerGen;
use fleetbench_gen::rng::Rng;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::TokioIo;
use std::sync::Arc;

use super::counted::{Counted, Tally};
use super::tls::Stream;
use crate::engine::alarm::Alarm;

/// What an operation's try came to: bytes received, or an error class and
/// whether its latency means something (an error status, a timeout).
pub(crate) type Outcome = Result<u64, (ErrorClass, bool)>;

/// One worker's connection for one op.
#[derive(Default)]
pub(crate) enum Slot {
    #[default]
    Empty,
    H1(Conn),
    /// An HTTP/2 connection, and the requests it has carried.
    H2(http2::SendRequest<Full<Bytes>>, u32),
    Tcp(Counted),
}

impl Slot {
    /// Resolves when an idle HTTP/1.1 connection is closed by the server
    /// (so the worker notices before sending on it); never otherwise.
    pub(crate) async fn closed(&mut self) {
        match self {
            Slot::H1(c) if !c.closed => {
                let _ = c.driver.as_mut().await;
                *self = Slot::Empty;
            }
            _ => std::future::pending().await,
        }
    }

    /// Requests the connection has carried (0: none, or no connection).
    pub(super) fn served(&self) -> u32 {
        match self {
            Slot::H1(c) => c.served,
            Slot::H2(_, served) => *served,
            _ => 0,
        }
    }

    /// Counts a request the connection carried.
    pub(super) fn count_request(&mut self) {
        match self {
            Slot::H1(c) => c.served += 1,
            Slot::H2(_, served) => *served += 1,
            _ => {}
        }
    }
}

/// One HTTP/1.1 connection of a worker. The connection future is driven
/// inline by the worker's own task (no task per connection, no cross-task
/// wake-up per request).
pub(crate) struct Conn {
    pub(super) sender: http1::SendRequest<Full<Bytes>>,
    pub(super) driver: Pin<Box<http1::Connection<TokioIo<Stream>, Full<Bytes>>>>,
    /// The driver finished: the server closed the connection.
    pub(super) closed: bool,
    /// Requests it has carried.
    pub(super) served: u32,
}

/// Per-worker scratch state for the ops.
pub(crate) struct Scratch {
    pub values: WorkerGen,
    pub(super) buf: Vec<u8>,
    pub(super) read: Vec<u8>,
    pub rng: Rng,
    /// One timer per worker, re-armed per request: no allocation.
    pub(super) timer: Pin<Box<tokio::time::Sleep>>,
    /// The worker's precise timer (intended send times, synthetic latencies).
    pub alarm: Alarm,
    /// What the worker's connections carried (made by its first connect),
    /// and what closed ones never delivered beyond what was counted since.
    tally: Option<Arc<Tally>>,
    debt: u64,
    /// What the last try spent in each stage (`Stage`), µs: set by the op,
    /// taken by the worker into its window.
    pub stages: [Option<u64>; Stage::ALL.len()],
}

impl Scratch {
    pub(crate) fn new(values: WorkerGen, rng: Rng, alarm: Alarm) -> Scratch {
        Scratch {
            values,
            buf: Vec::with_capacity(256),
            // Grown by the first TCP read only: most workers never read.
            read: Vec::new(),
            rng,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            alarm,
            tally: None,
            debt: 0,
            stages: [None; Stage::ALL.len()],
        }
    }
}

impl Scratch {
    /// `stream`, counting what it carries into the worker's tally.
    pub(super) fn counted(&mut self, stream: tokio::net::TcpStream) -> Counted {
        let tally = self.tally.get_or_insert_with(Arc::default);
        Counted::new(stream, tally.clone())
    }

    /// Bytes the worker's connections carried to the peer since the last
    /// call (what its try sent, less what closed connections never
    /// delivered).
    pub(super) fn sent_bytes(&mut self) -> u64 {
        match &self.tally {
            Some(t) => t.take(&mut self.debt),
            None => 0,
        }
    }

    /// Once the worker's connections are closed: bytes written since the
    /// last try (none, unless a close wrote), and the bytes counted for
    /// earlier tries that never reached the peer.
    pub(crate) fn settle(&mut self) -> (u64, u64) {
        let written = self.sent_bytes();
        (written, std::mem::take(&mut self.debt))
    }
}
