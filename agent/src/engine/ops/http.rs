//! The `http` op: one request per try, HTTP/1.1 or HTTP/2 over cleartext
//! (h2c with prior knowledge) or over TLS (https, the protocol picked by
//! ALPN), on the worker's own kept-alive connection.
//! This is the agent's hot path: a request with no templates allocates
//! nothing beyond what hyper needs, and an HTTP/1.1 connection is driven in
//! the worker's own poll (see [`drive`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use fleetbench::pb;
use fleetbench::window::{ErrorClass, Stage};
use fleetbench_gen::{GenSpec, Template};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};

use super::conn::{Opener, Target, micros};
use super::headers;
use super::slot::{Conn, Outcome, Scratch, Slot};
use super::tls::Alpn;

pub(crate) struct HttpOp {
    /// How its connections are opened.
    conn: Opener,
    method: http::Method,
    /// The path and query, when it holds no template: as HTTP/1.1 sends it
    /// (origin form), and as HTTP/2 does (with scheme and authority).
    path_h1: Option<http::Uri>,
    path_h2: Option<http::Uri>,
    path_template: Template,
    /// Headers with no template, for HTTP/1.1 (Host included) and HTTP/2
    /// (whose authority is in the URI).
    headers_h1: http::HeaderMap,
    headers_h2: http::HeaderMap,
    templated_headers: headers::Templated,
    body: Option<Bytes>,
    body_template: Template,
    pub timeout: Duration,
    expect: Vec<u16>,
    /// `http[s]://host:port`, the prefix of an HTTP/2 request's URI.
    origin: String,
    /// Requests per connection before it is closed (0: no limit).
    max_per_conn: u32,
}

impl HttpOp {
    pub(super) async fn compile(h: &pb::HttpWorkload, gens: &[GenSpec]) -> Result<HttpOp> {
        let url = h.url.as_str();
        let target = Target::parse(url)?;
        let path_text = if target.rest.is_empty() {
            "/"
        } else {
            target.rest
        };
        let path_template = Template::compile(path_text, gens).map_err(|e| anyhow!("URL: {e}"))?;
        let alpn = match h.version.as_str() {
            "" | "1.1" => Alpn::Http1,
            "2" => Alpn::Http2,
            "auto" if target.https => Alpn::Either,
            other => bail!("HTTP version {other:?} is not 1.1, 2 or (https) auto"),
        };
        let timeout = Duration::from_millis(h.timeout_ms.max(1));
        let conn = Opener::to(&target, h.tls.as_ref(), alpn, false, timeout).await?;
        let origin = target.origin();
        // HTTP/2 carries the scheme and authority in the URI itself.
        let (path_h1, path_h2) = match path_template.literal() {
            Some(p) => (
                Some(http::Uri::try_from(p).with_context(|| format!("URL path {path_text:?}"))?),
                Some(
                    http::Uri::try_from(format!("{origin}{}", String::from_utf8_lossy(p)))
                        .with_context(|| format!("URL {url:?}"))?,
                ),
            ),
            None => (None, None),
        };
        let method = http::Method::from_bytes(h.method.as_bytes()).context("HTTP method")?;
        let mut headers = http::HeaderMap::new();
        let templated_headers = headers::compile(&h.headers, gens, "header", &mut headers)?;
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
        let headers_h2 = headers.clone();
        let mut headers_h1 = headers;
        headers_h1.insert(
            http::header::HOST,
            http::HeaderValue::from_str(target.authority.as_str()).context("host header")?,
        );
        Ok(HttpOp {
            conn,
            method,
            path_h1,
            path_h2,
            path_template,
            headers_h1,
            headers_h2,
            templated_headers,
            body,
            body_template,
            timeout,
            expect: h.expect_status.iter().map(|s| *s as u16).collect(),
            origin,
            max_per_conn: h.max_requests_per_connection,
        })
    }

    /// The request of this iteration (templates rendered), as HTTP/2
    /// (`h2`) or HTTP/1.1 sends it.
    fn request(&self, s: &mut Scratch, h2: bool) -> Result<hyper::Request<Full<Bytes>>, ()> {
        let body = match &self.body {
            Some(b) => b.clone(),
            None => {
                let mut out = Vec::with_capacity(256);
                s.values.render(&self.body_template, &mut out);
                Bytes::from(out)
            }
        };
        let body_len = body.len();
        let mut req = hyper::Request::new(Full::new(body));
        *req.method_mut() = self.method.clone();
        let path = if h2 { &self.path_h2 } else { &self.path_h1 };
        *req.uri_mut() = match path {
            Some(p) => p.clone(),
            None => {
                s.buf.clear();
                if h2 {
                    s.buf.extend_from_slice(self.origin.as_bytes());
                }
                s.values.render(&self.path_template, &mut s.buf);
                http::Uri::try_from(s.buf.as_slice()).map_err(|_| ())?
            }
        };
        let mut headers = if h2 {
            self.headers_h2.clone()
        } else {
            self.headers_h1.clone()
        };
        headers::render(&self.templated_headers, s, &mut headers)?;
        if self.body.is_none() && body_len > 0 {
            headers.insert(http::header::CONTENT_LENGTH, body_len.into());
        }
        *req.headers_mut() = headers;
        Ok(req)
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

    /// Why connections failed, and where a name's went, since the last
    /// call: for notices.
    pub(super) fn take_failures(&self) -> Vec<String> {
        self.conn.take_notes()
    }

    pub(super) async fn execute(
        &self,
        slot: &mut Slot,
        s: &mut Scratch,
        in_flight: &std::cell::Cell<u64>,
    ) -> (Instant, Outcome, u64) {
        if matches!(slot, Slot::H1(c) if c.closed) {
            *slot = Slot::Empty;
        }
        // The request starts here: a connection it has to open (and its
        // TLS handshake) is part of its time.
        let started = Instant::now();
        if matches!(slot, Slot::Empty) {
            // Boxed: connecting is rare, and an unboxed connect future
            // would make every request's future as large as the handshake's.
            match Box::pin(self.conn.open(s)).await {
                Ok(c) => *slot = c,
                Err(class) => {
                    // Do not spin on a dead target.
                    let now = Instant::now();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return (now, Err((class, false)), s.sent_bytes());
                }
            }
        }
        let h2 = matches!(slot, Slot::H2(..));
        // The connection's last request (max_requests_per_connection): an
        // HTTP/1.1 one says so, and the server closes first (its side keeps
        // the TIME_WAIT, not the agent's ports).
        let last = self.max_per_conn > 0 && slot.served() + 1 >= self.max_per_conn;
        let req = match self.request(s, h2) {
            Ok(mut r) => {
                if last && !h2 {
                    r.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                r
            }
            Err(()) => {
                // Nothing was sent. Do not spin on a broken template either
                // (a loop of them counted 13 million "requests" a second).
                let now = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                return (now, Err((ErrorClass::InvalidRequest, false)), 0);
            }
        };
        let sent = Instant::now();
        s.timer
            .as_mut()
            .reset(tokio::time::Instant::from_std(sent + self.timeout));
        in_flight.set(in_flight.get() + 1);
        let mut head_at = None;
        let result = match slot {
            Slot::H1(c) => drive(c, req, s.timer.as_mut(), &mut head_at).await,
            Slot::H2(sender, _) => {
                tokio::select! {
                    r = round_trip(
                        sender,
                        req,
                        http2::SendRequest::poll_ready,
                        http2::SendRequest::send_request,
                        &mut head_at,
                    ) => Ok(r),
                    () = s.timer.as_mut() => Err(()),
                }
            }
            _ => Ok(Err(())),
        };
        in_flight.set(in_flight.get() - 1);
        if let Some(at) = head_at {
            s.stages[Stage::Ttfb as usize] = Some(micros(at.saturating_duration_since(sent)));
            if matches!(result, Ok(Ok(_))) {
                s.stages[Stage::Receive as usize] = Some(micros(at.elapsed()));
            }
        }
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
        if last || matches!(slot, Slot::H1(c) if c.closed) {
            *slot = Slot::Empty;
        } else {
            slot.count_request();
        }
        (started, outcome, s.sent_bytes())
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
    head_at: &mut Option<Instant>,
) -> Result<Result<(http::StatusCode, u64), ()>, ()> {
    let Conn {
        sender,
        driver,
        closed,
        ..
    } = c;
    let exchange = round_trip(
        sender,
        req,
        http1::SendRequest::poll_ready,
        http1::SendRequest::send_request,
        head_at,
    );
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

/// One request and its whole response on a connection's sender, HTTP/1.1 or
/// HTTP/2: wait until the sender takes a request, send it, read the body.
///
/// hyper gives `http1::SendRequest` and `http2::SendRequest` the same two
/// methods but no trait in common, so the caller names them
/// (`poll_ready`, `send_request`). They are function items: zero-sized,
/// known at compile time, so each protocol gets its own copy of this
/// function, as if written out for it (no box, no dynamic dispatch, no
/// extra await on the hot path).
async fn round_trip<S, F>(
    sender: &mut S,
    req: hyper::Request<Full<Bytes>>,
    mut poll_ready: impl FnMut(&mut S, &mut Context<'_>) -> Poll<hyper::Result<()>>,
    send_request: impl FnOnce(&mut S, hyper::Request<Full<Bytes>>) -> F,
    head_at: &mut Option<Instant>,
) -> Result<(http::StatusCode, u64), ()>
where
    F: Future<Output = hyper::Result<hyper::Response<Incoming>>>,
{
    std::future::poll_fn(|cx| poll_ready(sender, cx))
        .await
        .map_err(|_| ())?;
    let resp = send_request(sender, req).await.map_err(|_| ())?;
    *head_at = Some(Instant::now());
    read_body(resp).await
}

async fn read_body(resp: hyper::Response<Incoming>) -> Result<(http::StatusCode, u64), ()> {
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
