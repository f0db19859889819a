//! The `grpc` op: one unary call per try on the worker's HTTP/2 connection
//! (h2c for http://, h2 by ALPN for https://). The request message is
//! built from its JSON (rendered when it holds templates) with the
//! descriptors the coordinator compiled from the workload's `.proto`, and
//! framed as gRPC; the call's status comes from the response's trailers
//! (or its headers, for a trailers-only answer). A status other than the
//! expected ones is its error class (`grpc_unavailable`, ...); a call past
//! its deadline is `grpc_deadline_exceeded`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::{BufMut, Bytes, BytesMut};
use fleetbench::pb;
use fleetbench::window::{ErrorClass, Stage};
use fleetbench_gen::{GenSpec, Template};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use super::conn::{Opener, Target, micros};
use super::headers;
use super::slot::{Outcome, Scratch, Slot};
use super::tls::Alpn;

pub(crate) struct GrpcOp {
    conn: Opener,
    /// `scheme://authority/package.Service/Method`.
    uri: http::Uri,
    /// The method's input type.
    input: MessageDescriptor,
    /// The framed request, when the message holds no template.
    body: Option<Bytes>,
    message: Template,
    metadata: http::HeaderMap,
    templated_metadata: headers::Templated,
    pub(crate) deadline: Duration,
    expect: Vec<u32>,
}

impl GrpcOp {
    pub(super) async fn compile(g: &pb::GrpcOperation, gens: &[GenSpec]) -> Result<GrpcOp> {
        let target = Target::parse(g.url.trim_end_matches('/'))?;
        if !target.rest.is_empty() {
            bail!("URL {:?} must have no path", g.url);
        }
        let deadline = Duration::from_millis(g.deadline_ms.max(1));
        let conn = Opener::to(&target, g.tls.as_ref(), Alpn::Http2, true, deadline).await?;
        let uri = http::Uri::try_from(format!("{}/{}", target.origin(), g.method))
            .with_context(|| format!("method {:?}", g.method))?;
        let pool = DescriptorPool::decode(g.descriptor_set.as_slice())
            .context("the .proto's descriptors do not decode")?;
        let (service, method) = g
            .method
            .split_once('/')
            .ok_or_else(|| anyhow!("method {:?} is not package.Service/Method", g.method))?;
        let input = pool
            .get_service_by_name(service)
            .and_then(|s| s.methods().find(|m| m.name() == method))
            .map(|m| m.input())
            .ok_or_else(|| anyhow!("the .proto has no method {:?}", g.method))?;
        let message =
            Template::compile(&g.message_json, gens).map_err(|e| anyhow!("message: {e}"))?;
        let body = match message.literal() {
            Some(json) => Some(frame(&input, json).map_err(|e| anyhow!("message: {e}"))?),
            None => None,
        };
        let mut metadata = http::HeaderMap::new();
        metadata.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        metadata.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        metadata.insert(
            "grpc-timeout",
            http::HeaderValue::from_str(&format!("{}m", deadline.as_millis()))
                .context("grpc-timeout")?,
        );
        let templated_metadata = headers::compile(&g.metadata, gens, "metadata", &mut metadata)?;
        if g.expect_codes.iter().any(|c| *c > 16) {
            bail!("expected status codes must be 0 to 16");
        }
        Ok(GrpcOp {
            conn,
            uri,
            input,
            body,
            message,
            metadata,
            templated_metadata,
            deadline,
            expect: if g.expect_codes.is_empty() {
                vec![0]
            } else {
                g.expect_codes.clone()
            },
        })
    }

    /// Why connections failed, and where a name's went: for notices.
    pub(super) fn take_failures(&self) -> Vec<String> {
        self.conn.take_notes()
    }

    /// This call's request (templates rendered); `Err`: the message does
    /// not render into its type, or metadata into a header.
    fn request(&self, s: &mut Scratch) -> Result<hyper::Request<Full<Bytes>>, ()> {
        let body = match &self.body {
            Some(b) => b.clone(),
            None => {
                s.buf.clear();
                s.values.render(&self.message, &mut s.buf);
                frame(&self.input, &s.buf).map_err(|_| ())?
            }
        };
        let mut req = hyper::Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.uri.clone();
        let mut headers = self.metadata.clone();
        headers::render(&self.templated_metadata, s, &mut headers)?;
        *req.headers_mut() = headers;
        Ok(req)
    }

    pub(super) async fn execute(
        &self,
        slot: &mut Slot,
        s: &mut Scratch,
        in_flight: &std::cell::Cell<u64>,
    ) -> (Instant, Outcome, u64) {
        let started = Instant::now();
        if !matches!(slot, Slot::H2(..)) {
            match Box::pin(self.conn.open(s)).await {
                Ok(c) => *slot = c,
                Err(class) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return (started, Err((class, false)), s.sent_bytes());
                }
            }
        }
        let Ok(req) = self.request(s) else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            return (started, Err((ErrorClass::InvalidRequest, false)), 0);
        };
        let Slot::H2(sender, _) = slot else {
            unreachable!("an h2 connection, opened above")
        };
        let sent = Instant::now();
        // The worker's one timer, re-armed: no timer made per call.
        s.timer
            .as_mut()
            .reset(tokio::time::Instant::from_std(sent + self.deadline));
        in_flight.set(in_flight.get() + 1);
        let mut head_at = None;
        let call = tokio::select! {
            r = unary(sender, req, &mut head_at) => Ok(r),
            () = s.timer.as_mut() => Err(()),
        };
        in_flight.set(in_flight.get() - 1);
        if let Some(at) = head_at {
            s.stages[Stage::Ttfb as usize] = Some(micros(at.saturating_duration_since(sent)));
            if matches!(call, Ok(Ok(_))) {
                s.stages[Stage::Receive as usize] = Some(micros(at.elapsed()));
            }
        }
        let outcome = match call {
            Err(_) => Err((ErrorClass::GrpcDeadlineExceeded, true)),
            Ok(Err(())) => {
                *slot = Slot::Empty;
                Err((ErrorClass::Io, false))
            }
            Ok(Ok((code, received))) if self.expect.contains(&code) => Ok(received),
            Ok(Ok((code, _))) => Err((
                ErrorClass::grpc(code).unwrap_or(ErrorClass::GrpcUnknown),
                true,
            )),
        };
        (started, outcome, s.sent_bytes())
    }
}

/// `json` as a message of type `input`, gRPC-framed: a zero byte (not
/// compressed), the length (4 bytes, big-endian), the encoded message.
fn frame(input: &MessageDescriptor, json: &[u8]) -> Result<Bytes, String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let msg = DynamicMessage::deserialize(input.clone(), &mut de).map_err(|e| e.to_string())?;
    let len = msg.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(u32::try_from(len).map_err(|_| "message too large".to_string())?);
    msg.encode(&mut out).map_err(|e| e.to_string())?;
    Ok(out.freeze())
}

/// One unary call: the status code and the response's bytes. A status
/// in the headers (trailers-only) or the trailers; a response with
/// neither is UNKNOWN (2), as gRPC clients read it. `Err`: the stream broke.
async fn unary(
    sender: &mut http2::SendRequest<Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
    head_at: &mut Option<Instant>,
) -> Result<(u32, u64), ()> {
    std::future::poll_fn(|cx| sender.poll_ready(cx))
        .await
        .map_err(|_| ())?;
    let resp = sender.send_request(req).await.map_err(|_| ())?;
    *head_at = Some(Instant::now());
    let status_of = |h: &http::HeaderMap| {
        h.get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
    };
    let http_ok = resp.status() == http::StatusCode::OK;
    let mut code = status_of(resp.headers());
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ())?;
        if let Some(data) = frame.data_ref() {
            received += data.len() as u64;
        } else if let Some(trailers) = frame.trailers_ref() {
            code = code.or_else(|| status_of(trailers));
        }
    }
    // No status: UNKNOWN; an HTTP error without one: UNAVAILABLE-like, as
    // gRPC maps it (here UNKNOWN, the status the server never gave).
    let code = match code {
        Some(c) => c,
        None if http_ok => 2,
        None => 14,
    };
    Ok((code, received))
}
