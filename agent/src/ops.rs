//! The operations an iteration can run: `http` (HTTP/1.1 or h2c), `tcp`
//! (connect, send, read a reply), `exec` (a command; success is exit 0) and
//! `synthetic` (a drawn latency). An [`Op`] is compiled once per phase from
//! the wire form; each worker keeps its own [`Slot`] per op (a connection)
//! and a reused buffer, so a request with no templates allocates nothing
//! beyond what hyper needs.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use fleetbench::pb;
use fleetbench::window::ErrorClass;
use fleetbench_gen::rng::{Latency, Rng};
use fleetbench_gen::{GenSpec, Template, WorkerGen};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What an operation's try came to: bytes received, or an error class and
/// whether its latency means something (an error status, a timeout).
pub(crate) type Outcome = Result<u64, (ErrorClass, bool)>;

pub(crate) struct Op {
    pub name: String,
    pub kind: OpKind,
}

pub(crate) enum OpKind {
    Http(Box<HttpOp>),
    Tcp(Box<TcpOp>),
    Exec(Box<ExecOp>),
    Synthetic { latency: Latency, error_ratio: f64 },
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
            pb::operation::Kind::Tcp(t) => OpKind::Tcp(Box::new(
                TcpOp::compile(t, gens)
                    .await
                    .with_context(|| what.clone())?,
            )),
            pb::operation::Kind::Exec(e) => OpKind::Exec(Box::new(
                ExecOp::compile(e, gens).with_context(|| what.clone())?,
            )),
            pb::operation::Kind::Synthetic(s) => OpKind::Synthetic {
                latency: s
                    .latency
                    .as_ref()
                    .and_then(Latency::from_pb)
                    .with_context(|| format!("{what}: no valid latency distribution"))?,
                error_ratio: s.error_ratio,
            },
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
            OpKind::Tcp(t) => t.timeout,
            OpKind::Exec(e) => e.timeout,
            OpKind::Synthetic { .. } => Duration::from_secs(2),
        };
        t.min(Duration::from_secs(2))
    }

    /// A fresh per-worker slot for this op.
    pub(crate) fn slot(&self) -> Slot {
        Slot::default()
    }
}

/// One worker's connection for one op.
#[derive(Default)]
pub(crate) enum Slot {
    #[default]
    Empty,
    H1(Conn),
    H2(http2::SendRequest<Full<Bytes>>),
    Tcp(TcpStream),
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
}

/// Per-worker scratch state for the ops.
pub(crate) struct Scratch {
    pub values: WorkerGen,
    buf: Vec<u8>,
    read: Vec<u8>,
    pub rng: Rng,
    /// One timer per worker, re-armed per request: no allocation.
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Scratch {
    pub(crate) fn new(values: WorkerGen, rng: Rng) -> Scratch {
        Scratch {
            values,
            buf: Vec::with_capacity(256),
            read: Vec::with_capacity(4096),
            rng,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }
}

/// Runs one try of `op` now. Returns when it was sent (for the send lag),
/// its outcome and the bytes sent. `in_flight` is bumped around the wait.
pub(crate) async fn execute(
    op: &Op,
    slot: &mut Slot,
    s: &mut Scratch,
    in_flight: &std::cell::Cell<u64>,
) -> (Instant, Outcome, u64) {
    match &op.kind {
        OpKind::Http(h) => h.execute(slot, s, in_flight).await,
        OpKind::Tcp(t) => t.execute(slot, s, in_flight).await,
        OpKind::Exec(e) => e.execute(s, in_flight).await,
        OpKind::Synthetic {
            latency,
            error_ratio,
        } => {
            let sent = Instant::now();
            let wait = Duration::from_micros(latency.sample(&mut s.rng));
            in_flight.set(in_flight.get() + 1);
            tokio::time::sleep(wait).await;
            in_flight.set(in_flight.get() - 1);
            let outcome = if s.rng.next_f64() < *error_ratio {
                Err((ErrorClass::Synthetic, true))
            } else {
                Ok(0)
            };
            (sent, outcome, 0)
        }
    }
}

// ---------------------------------------------------------------- http

pub(crate) struct HttpOp {
    addr: SocketAddr,
    method: http::Method,
    /// The path and query, when it holds no template.
    path: Option<http::Uri>,
    path_template: Template,
    /// Headers with no template (Host included).
    headers: http::HeaderMap,
    templated_headers: Vec<(http::HeaderName, Template)>,
    body: Option<Bytes>,
    body_template: Template,
    pub timeout: Duration,
    expect: Vec<u16>,
    h2: bool,
    /// `http://host:port`, the prefix of an HTTP/2 request's URI.
    origin: String,
    /// Request line + constant headers, as sent (templated parts are added
    /// per request).
    fixed_bytes: u64,
}

/// One HTTP/1.1 connection of a worker. The connection future is driven
/// inline by the worker's own task (no task per connection, no cross-task
/// wake-up per request).
pub(crate) struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
    /// The driver finished: the server closed the connection.
    closed: bool,
}

impl HttpOp {
    async fn compile(h: &pb::HttpWorkload, gens: &[GenSpec]) -> Result<HttpOp> {
        let url = h.url.as_str();
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("URL {url:?} is not http://"))?;
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority_text, path_text) = rest.split_at(split);
        let path_text = if path_text.is_empty() { "/" } else { path_text };
        let authority: http::uri::Authority = authority_text
            .parse()
            .with_context(|| format!("URL {url:?} has a bad host"))?;
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
        let path_template = Template::compile(path_text, gens).map_err(|e| anyhow!("URL: {e}"))?;
        let h2 = match h.version.as_str() {
            "" | "1.1" => false,
            "2" => true,
            other => bail!("HTTP version {other:?} is not 1.1 or 2"),
        };
        let origin = format!("http://{authority}");
        // HTTP/2 carries the scheme and authority in the URI itself.
        let path = match path_template.literal() {
            Some(p) if h2 => Some(
                http::Uri::try_from(format!("{origin}{}", String::from_utf8_lossy(p)))
                    .with_context(|| format!("URL {url:?}"))?,
            ),
            Some(p) => {
                Some(http::Uri::try_from(p).with_context(|| format!("URL path {path_text:?}"))?)
            }
            None => None,
        };
        let method = http::Method::from_bytes(h.method.as_bytes()).context("HTTP method")?;
        let mut headers = http::HeaderMap::new();
        if !h2 {
            headers.insert(
                http::header::HOST,
                http::HeaderValue::from_str(authority.as_str()).context("host header")?,
            );
        }
        let mut templated_headers = Vec::new();
        for hd in &h.headers {
            let name = http::HeaderName::from_bytes(hd.name.as_bytes())
                .with_context(|| format!("header name {:?}", hd.name))?;
            let t = Template::compile(&hd.value, gens)
                .map_err(|e| anyhow!("header {:?}: {e}", hd.name))?;
            match t.literal() {
                Some(v) => {
                    headers.append(
                        name,
                        http::HeaderValue::from_bytes(v)
                            .with_context(|| format!("header value of {:?}", hd.name))?,
                    );
                }
                None => templated_headers.push((name, t)),
            }
        }
        let body_text = String::from_utf8_lossy(&h.body);
        let body_template =
            Template::compile(&body_text, gens).map_err(|e| anyhow!("body: {e}"))?;
        let body = body_template.literal().map(Bytes::copy_from_slice);
        if let Some(b) = &body
            && !b.is_empty()
            && !headers.contains_key(http::header::CONTENT_LENGTH)
        {
            headers.insert(http::header::CONTENT_LENGTH, b.len().into());
        }
        let fixed_bytes = (h.method.len() + path_text.len() + 12) as u64
            + headers
                .iter()
                .map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64)
                .sum::<u64>()
            + 2;
        Ok(HttpOp {
            addr,
            method,
            path,
            path_template,
            headers,
            templated_headers,
            body,
            body_template,
            timeout: Duration::from_millis(h.timeout_ms.max(1)),
            expect: h.expect_status.iter().map(|s| *s as u16).collect(),
            h2,
            origin,
            fixed_bytes,
        })
    }

    /// The request of this iteration (templates rendered), and its size.
    fn request(&self, s: &mut Scratch) -> Result<(hyper::Request<Full<Bytes>>, u64), ()> {
        let mut bytes = self.fixed_bytes;
        let body = match &self.body {
            Some(b) => b.clone(),
            None => {
                let mut out = Vec::with_capacity(256);
                s.values.render(&self.body_template, &mut out);
                Bytes::from(out)
            }
        };
        let body_len = body.len();
        bytes += body_len as u64;
        let mut req = hyper::Request::new(Full::new(body));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = match &self.path {
            Some(p) => p.clone(),
            None => {
                s.buf.clear();
                if self.h2 {
                    s.buf.extend_from_slice(self.origin.as_bytes());
                }
                s.values.render(&self.path_template, &mut s.buf);
                bytes += s.buf.len() as u64;
                http::Uri::try_from(s.buf.as_slice()).map_err(|_| ())?
            }
        };
        let mut headers = self.headers.clone();
        for (name, t) in &self.templated_headers {
            s.buf.clear();
            s.values.render(t, &mut s.buf);
            bytes += (name.as_str().len() + s.buf.len() + 4) as u64;
            headers.append(
                name.clone(),
                http::HeaderValue::from_bytes(&s.buf).map_err(|_| ())?,
            );
        }
        if self.body.is_none() && body_len > 0 {
            headers.insert(http::header::CONTENT_LENGTH, body_len.into());
        }
        *req.headers_mut() = headers;
        Ok((req, bytes))
    }

    fn classify(&self, status: http::StatusCode) -> Result<(), ErrorClass> {
        let ok = if self.expect.is_empty() {
            status.is_success() || status.is_redirection() || status.is_informational()
        } else {
            self.expect.contains(&status.as_u16())
        };
        if ok {
            Ok(())
        } else if status.is_client_error() {
            Err(ErrorClass::Status4xx)
        } else if status.is_server_error() {
            Err(ErrorClass::Status5xx)
        } else {
            Err(ErrorClass::StatusOther)
        }
    }

    async fn execute(
        &self,
        slot: &mut Slot,
        s: &mut Scratch,
        in_flight: &std::cell::Cell<u64>,
    ) -> (Instant, Outcome, u64) {
        if matches!(slot, Slot::H1(c) if c.closed) {
            *slot = Slot::Empty;
        }
        if matches!(slot, Slot::Empty) {
            // Boxed: connecting is rare, and an unboxed connect future
            // would make every request's future as large as the handshake's.
            let connected = if self.h2 {
                Box::pin(connect_h2(self.addr, self.timeout))
                    .await
                    .map(Slot::H2)
            } else {
                Box::pin(connect_h1(self.addr, self.timeout))
                    .await
                    .map(Slot::H1)
            };
            match connected {
                Ok(c) => *slot = c,
                Err(()) => {
                    // Do not spin on a dead target.
                    let now = Instant::now();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return (now, Err((ErrorClass::Connect, false)), 0);
                }
            }
        }
        let (req, bytes) = match self.request(s) {
            Ok(r) => r,
            Err(()) => return (Instant::now(), Err((ErrorClass::Io, false)), 0),
        };
        let sent = Instant::now();
        s.timer
            .as_mut()
            .reset(tokio::time::Instant::from_std(sent + self.timeout));
        in_flight.set(in_flight.get() + 1);
        let result = match slot {
            Slot::H1(c) => drive(c, req, s.timer.as_mut()).await,
            Slot::H2(sender) => {
                tokio::select! {
                    r = h2_exchange(sender, req) => Ok(r),
                    () = s.timer.as_mut() => Err(()),
                }
            }
            _ => Ok(Err(())),
        };
        in_flight.set(in_flight.get() - 1);
        let outcome = match result {
            Ok(Ok((status, received))) => match self.classify(status) {
                Ok(()) => Ok(received),
                Err(class) => Err((class, true)),
            },
            Ok(Err(())) => {
                *slot = Slot::Empty;
                Err((ErrorClass::Io, false))
            }
            Err(()) => {
                // The response may still come: this connection is unusable.
                *slot = Slot::Empty;
                Err((ErrorClass::Timeout, true))
            }
        };
        if matches!(slot, Slot::H1(c) if c.closed) {
            *slot = Slot::Empty;
        }
        (sent, outcome, bytes)
    }
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
    let exchange = h1_exchange(sender, req);
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

async fn connect_h1(addr: SocketAddr, timeout: Duration) -> Result<Conn, ()> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
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

async fn connect_h2(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<http2::SendRequest<Full<Bytes>>, ()> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ())?
        .map_err(|_| ())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ())?;
    // HTTP/2 multiplexes: the connection runs as its own task on this
    // thread's runtime.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn h1_exchange(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, u64), ()> {
    sender.ready().await.map_err(|_| ())?;
    let resp = sender.send_request(req).await.map_err(|_| ())?;
    read_body(resp).await
}

async fn h2_exchange(
    sender: &mut http2::SendRequest<Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, u64), ()> {
    sender.ready().await.map_err(|_| ())?;
    let resp = sender.send_request(req).await.map_err(|_| ())?;
    read_body(resp).await
}

async fn read_body(
    resp: hyper::Response<hyper::body::Incoming>,
) -> Result<(http::StatusCode, u64), ()> {
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

// ---------------------------------------------------------------- tcp

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
    async fn compile(t: &pb::TcpOperation, gens: &[GenSpec]) -> Result<TcpOp> {
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

    async fn execute(
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
                    *slot = Slot::Tcp(stream);
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
        let sent_bytes = s.buf.len() as u64;
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
        (sent, outcome, sent_bytes)
    }
}

/// Sends `payload`, then reads the reply: through `until`, or `read_bytes`
/// bytes, or to the peer's close (`to_close`); nothing when none is set.
async fn exchange_tcp(
    stream: &mut TcpStream,
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

// ---------------------------------------------------------------- exec

pub(crate) struct ExecOp {
    argv: Vec<Template>,
    pub timeout: Duration,
}

impl ExecOp {
    fn compile(e: &pb::ExecOperation, gens: &[GenSpec]) -> Result<ExecOp> {
        if e.argv.is_empty() {
            bail!("exec has no command");
        }
        let argv = e
            .argv
            .iter()
            .map(|a| Template::compile(a, gens).map_err(|e| anyhow!("command: {e}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(ExecOp {
            argv,
            timeout: Duration::from_millis(e.timeout_ms.max(1)),
        })
    }

    async fn execute(
        &self,
        s: &mut Scratch,
        in_flight: &std::cell::Cell<u64>,
    ) -> (Instant, Outcome, u64) {
        let mut args = Vec::with_capacity(self.argv.len());
        for t in &self.argv {
            s.buf.clear();
            s.values.render(t, &mut s.buf);
            args.push(std::ffi::OsString::from(
                String::from_utf8_lossy(&s.buf).into_owned(),
            ));
        }
        let sent = Instant::now();
        let child = tokio::process::Command::new(&args[0])
            .args(&args[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(_) => return (sent, Err((ErrorClass::Exit, false)), 0),
        };
        in_flight.set(in_flight.get() + 1);
        let status = tokio::time::timeout(self.timeout, child.wait()).await;
        in_flight.set(in_flight.get() - 1);
        let outcome = match status {
            Ok(Ok(st)) if st.success() => Ok(0),
            Ok(_) => Err((ErrorClass::Exit, true)),
            Err(_) => {
                let _ = child.start_kill();
                Err((ErrorClass::Timeout, true))
            }
        };
        (sent, outcome, 0)
    }
}
