//! The `tcp` op: connect (or reuse the kept-alive connection), send the
//! rendered payload, read a reply (through a delimiter, a byte count, or to
//! the peer's close).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use fleetbench::pb;
use fleetbench::window::{ErrorClass, Stage};
use fleetbench_gen::{GenSpec, Template};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::counted::Counted;

use super::slot::{Outcome, Scratch, Slot};

pub(crate) struct TcpOp {
    addr: SocketAddr,
    send: Template,
    until: Vec<u8>,
    read_bytes: u64,
    read_to_close: bool,
    pub timeout: Duration,
    keep_alive: bool,
}

impl TcpOp {
    pub(super) async fn compile(t: &pb::TcpOperation, gens: &[GenSpec]) -> Result<TcpOp> {
        let (host, port) = t
            .address
            .rsplit_once(':')
            .with_context(|| format!("TCP address {:?} is not host:port", t.address))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("TCP address {:?} has a bad port", t.address))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} has no address"))?;
        let send = Template::compile(&t.payload, gens).map_err(|e| anyhow!("send: {e}"))?;
        let read_to_close = !t.keep_alive && t.until_delimiter.is_empty() && t.read_bytes == 0;
        Ok(TcpOp {
            addr,
            send,
            until: t.until_delimiter.clone(),
            read_bytes: t.read_bytes,
            read_to_close,
            timeout: Duration::from_millis(t.timeout_ms.max(1)),
            keep_alive: t.keep_alive,
        })
    }

    pub(super) async fn execute(
        &self,
        slot: &mut Slot,
        s: &mut Scratch,
        in_flight: &std::cell::Cell<u64>,
    ) -> (Instant, Outcome, u64) {
        if !matches!(slot, Slot::Tcp(_)) {
            let started = Instant::now();
            match tokio::time::timeout(self.timeout, TcpStream::connect(self.addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    s.stages[Stage::Connect as usize] =
                        Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
                    *slot = Slot::Tcp(s.counted(stream));
                }
                Ok(Err(_)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return (started, Err((ErrorClass::Connect, false)), 0);
                }
                Err(_) => return (started, Err((ErrorClass::Timeout, true)), 0),
            }
        }
        let Slot::Tcp(stream) = slot else {
            unreachable!("connected above")
        };
        s.buf.clear();
        s.values.render(&self.send, &mut s.buf);
        let sent = Instant::now();
        in_flight.set(in_flight.get() + 1);
        let exchange = exchange_tcp(
            stream,
            &s.buf,
            &mut s.read,
            &self.until,
            self.read_bytes,
            self.read_to_close,
        );
        let result = tokio::time::timeout(self.timeout, exchange).await;
        in_flight.set(in_flight.get() - 1);
        let outcome = match result {
            Ok(Ok(received)) => Ok(received),
            Ok(Err(())) => Err((ErrorClass::Io, false)),
            Err(_) => Err((ErrorClass::Timeout, true)),
        };
        if outcome.is_err() || !self.keep_alive {
            *slot = Slot::Empty;
        }
        (sent, outcome, s.sent_bytes())
    }
}

/// Sends `payload`, then reads the reply: through `until`, or `read_bytes`
/// bytes, or to the peer's close (`to_close`); nothing when none is set.
async fn exchange_tcp(
    stream: &mut Counted,
    payload: &[u8],
    read: &mut Vec<u8>,
    until: &[u8],
    read_bytes: u64,
    to_close: bool,
) -> Result<u64, ()> {
    if !payload.is_empty() {
        stream.write_all(payload).await.map_err(|_| ())?;
    }
    read.clear();
    let mut searched = 0usize;
    loop {
        if !until.is_empty() {
            if let Some(_at) = read[searched..]
                .windows(until.len())
                .position(|w| w == until)
            {
                return Ok(read.len() as u64);
            }
            searched = read.len().saturating_sub(until.len() - 1);
        } else if read_bytes > 0 {
            if read.len() as u64 >= read_bytes {
                return Ok(read.len() as u64);
            }
        } else if !to_close {
            return Ok(0);
        }
        // Straight into the reused buffer: a stack chunk would live in
        // every request's future.
        read.reserve(4096);
        let n = stream.read_buf(read).await.map_err(|_| ())?;
        if n == 0 {
            // Closed: the reply is whole only if we read to the close.
            return if to_close {
                Ok(read.len() as u64)
            } else {
                Err(())
            };
        }
    }
}
