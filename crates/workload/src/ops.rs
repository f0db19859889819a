//! What one iteration of a phase does: an operation of kind `http`, `grpc`,
//! `tcp`, `exec` or `synthetic`, written as a phase's single table
//! (`[phase.http]`) or as named, weighted `[[phase.op]]`s.
//!
//! Templates (`{{name}}`, see [`fleetbench_gen::Template`]) in URLs,
//! headers, bodies, TCP payloads and exec arguments are compiled here, so a
//! reference to an unknown generator is a load-time error. Running the
//! operations is the agent's; how often they run is the phase's.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use fleetbench::clock::parse_duration;
use fleetbench::pb;
use fleetbench_gen::GenSpec;
use fleetbench_gen::rng::Latency;

use crate::grpc::{Grpc, RawGrpc, validate_grpc};
use crate::source::{
    Number, RawCommand, Source, SpecError, duration_text, micros, millis, template, timeout,
};
use crate::tls::{RawTls, Tls, tls_for};

/// One operation of a phase, chosen by weight each iteration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    /// Distinct within the phase; "" for a phase's single unnamed op.
    pub name: String,
    /// Relative weight of the op choice, 1 to 1,000,000.
    pub weight: u32,
    /// What the op does.
    pub kind: OpKind,
}

/// The kinds of operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum OpKind {
    /// One HTTP request.
    Http(Http),
    /// One TCP exchange.
    Tcp(Tcp),
    /// One process run.
    Exec(Exec),
    /// No I/O: a drawn latency and error (for testing the pipeline).
    Synthetic(Synthetic),
    /// One unary gRPC call.
    Grpc(Box<Grpc>),
}

/// An HTTP request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Http {
    /// Upper-case method, GET unless written.
    pub method: String,
    /// May hold `{{templates}}` in its path and query, and
    /// `{service.NAME.host}` in its host.
    pub url: String,
    /// Header names and values (values are templates), in name order.
    pub headers: Vec<(String, String)>,
    /// A template; empty: no body.
    pub body: String,
    /// Limit on connecting and on the whole exchange (10 s unless written).
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// Statuses that count as success; empty: any 1xx, 2xx or 3xx.
    pub expect_status: Vec<u16>,
    /// The protocol spoken.
    pub version: HttpVersion,
    /// For an https:// URL: how to speak TLS (the defaults when the
    /// workload has no `tls` table); `None` for http://.
    pub tls: Option<Box<Tls>>,
    /// Requests a connection carries before it is closed and another
    /// opened; 0: no limit (kept alive), 1: `new_connection = true`.
    pub max_requests_per_connection: u32,
}

/// HTTP protocol versions the agent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HttpVersion {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2: over cleartext with prior knowledge (h2c) for http://, by
    /// ALPN for https://.
    Http2,
    /// https:// only: whichever of h2 and http/1.1 the server picks (ALPN).
    Auto,
}

/// A TCP exchange: connect, send, read a reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tcp {
    /// host:port (`{service.NAME.host}` allowed).
    pub address: String,
    /// A template.
    pub send: String,
    /// When the reply is complete.
    pub read: TcpRead,
    /// Limit on the whole exchange (10 s unless written).
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// Reuse the connection for the next exchange (never with
    /// [`TcpRead::Close`]).
    pub keep_alive: bool,
}

/// When a TCP exchange has its reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum TcpRead {
    /// Up to and including this delimiter.
    Until(Vec<u8>),
    /// Exactly this many bytes.
    Bytes(u64),
    /// Until the peer closes (no keep-alive then).
    Close,
    /// Nothing: send and done.
    Nothing,
}

/// A process run on the agent's host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exec {
    /// argv, each a template; run directly (no shell unless argv says so).
    pub argv: Vec<String>,
    /// Limit on the run (30 s unless written).
    #[serde(with = "duration_text")]
    pub timeout: Duration,
}

/// A simulated operation: no I/O.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Synthetic {
    /// How long each one "takes".
    #[serde(skip)]
    pub latency: Latency,
    /// Share of iterations that fail, 0 to 1.
    pub error_ratio: f64,
    /// Seed of the latency and error draws (1 unless written).
    pub seed: u64,
}

impl Op {
    /// The op as the agents receive it.
    pub(crate) fn to_pb(&self) -> pb::Operation {
        let kind = match &self.kind {
            OpKind::Http(h) => pb::operation::Kind::Http(pb::HttpWorkload {
                method: h.method.clone(),
                url: h.url.clone(),
                headers: h
                    .headers
                    .iter()
                    .map(|(name, value)| pb::Header {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                body: h.body.clone().into_bytes(),
                timeout_ms: millis(h.timeout),
                expect_status: h.expect_status.iter().map(|s| u32::from(*s)).collect(),
                version: match h.version {
                    HttpVersion::Http1 => "1.1",
                    HttpVersion::Http2 => "2",
                    HttpVersion::Auto => "auto",
                }
                .to_string(),
                connect_timeout_ms: millis(h.timeout),
                tls: h.tls.as_ref().map(|t| t.to_pb()),
                max_requests_per_connection: h.max_requests_per_connection,
            }),
            OpKind::Tcp(t) => pb::operation::Kind::Tcp(pb::TcpOperation {
                address: t.address.clone(),
                payload: t.send.clone(),
                until_delimiter: match &t.read {
                    TcpRead::Until(d) => d.clone(),
                    _ => Vec::new(),
                },
                read_bytes: match t.read {
                    TcpRead::Bytes(n) => n,
                    _ => 0,
                },
                timeout_ms: millis(t.timeout),
                keep_alive: t.keep_alive && !matches!(t.read, TcpRead::Close),
            }),
            OpKind::Exec(e) => pb::operation::Kind::Exec(pb::ExecOperation {
                argv: e.argv.clone(),
                timeout_ms: millis(e.timeout),
            }),
            OpKind::Synthetic(s) => pb::operation::Kind::Synthetic(pb::SyntheticWorkload {
                latency: Some(s.latency.to_pb()),
                error_ratio: s.error_ratio,
                seed: s.seed,
            }),
            OpKind::Grpc(g) => pb::operation::Kind::Grpc(g.to_pb()),
        };
        pb::Operation {
            name: self.name.clone(),
            weight: self.weight,
            kind: Some(kind),
        }
    }
}

// ---------------------------------------------------------------- raw TOML

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOp {
    name: Spanned<String>,
    weight: Option<Spanned<i64>>,
    http: Option<Spanned<RawHttp>>,
    synthetic: Option<Spanned<RawSynthetic>>,
    tcp: Option<Spanned<RawTcp>>,
    exec: Option<Spanned<RawExec>>,
    grpc: Option<Spanned<RawGrpc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    url: Spanned<String>,
    method: Option<Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    body: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    expect_status: Option<Spanned<RawStatus>>,
    version: Option<Spanned<String>>,
    tls: Option<Spanned<RawTls>>,
    new_connection: Option<Spanned<bool>>,
    max_requests_per_connection: Option<Spanned<i64>>,
    // The load, written inside the table (the original single-workload form).
    concurrency: Option<Spanned<i64>>,
    rate: Option<Spanned<Number>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawStatus {
    One(i64),
    Many(Vec<i64>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSynthetic {
    latency: Spanned<RawLatency>,
    error_ratio: Option<Spanned<Number>>,
    seed: Option<u64>,
    // The load, as in `RawHttp`.
    concurrency: Option<Spanned<i64>>,
    rate: Option<Spanned<Number>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTcp {
    address: Spanned<String>,
    send: Option<Spanned<String>>,
    until: Option<Spanned<String>>,
    read_bytes: Option<Spanned<i64>>,
    read_to_close: Option<bool>,
    timeout: Option<Spanned<String>>,
    keep_alive: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExec {
    command: Spanned<RawCommand>,
    timeout: Option<Spanned<String>>,
}

/// A latency: a duration, or a distribution table.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawLatency {
    Constant(String),
    Dist(RawDist),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDist {
    dist: String,
    value: Option<String>,
    min: Option<String>,
    max: Option<String>,
    mean: Option<String>,
    stddev: Option<String>,
    median: Option<String>,
    sigma: Option<f64>,
}

/// The workload tables of a phase (its single-workload form) or of an op.
pub(crate) struct Tables {
    pub(crate) http: Option<Spanned<RawHttp>>,
    pub(crate) synthetic: Option<Spanned<RawSynthetic>>,
    pub(crate) tcp: Option<Spanned<RawTcp>>,
    pub(crate) exec: Option<Spanned<RawExec>>,
    pub(crate) grpc: Option<Spanned<RawGrpc>>,
}

impl Tables {
    /// The spans of the tables present, in the order http, synthetic, tcp,
    /// exec.
    pub(crate) fn present(&self) -> Vec<Range<usize>> {
        [
            self.http.as_ref().map(Spanned::span),
            self.synthetic.as_ref().map(Spanned::span),
            self.tcp.as_ref().map(Spanned::span),
            self.exec.as_ref().map(Spanned::span),
            self.grpc.as_ref().map(Spanned::span),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// `concurrency` and `rate` written inside an http or synthetic table
    /// (the original single-workload form keeps the load there).
    pub(crate) fn inner_load(&self) -> (Option<Spanned<i64>>, Option<Spanned<Number>>) {
        match (&self.http, &self.synthetic) {
            (Some(h), _) => (h.get_ref().concurrency.clone(), h.get_ref().rate.clone()),
            (_, Some(s)) => (s.get_ref().concurrency.clone(), s.get_ref().rate.clone()),
            _ => (None, None),
        }
    }
}

// ---------------------------------------------------------------- validation

/// Validates one `[[phase.op]]`; `earlier` are the phase's ops before it.
pub(crate) fn validate_op(
    src: &Source,
    raw: Spanned<RawOp>,
    generators: &[GenSpec],
    earlier: &[Op],
) -> Result<Op, SpecError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    src.plain_name(&name, name_span.clone(), "op")?;
    if earlier.iter().any(|o| o.name == name) {
        return Err(src.error(
            name_span,
            format!("op {name:?} is defined twice in this phase"),
        ));
    }
    let weight = match &raw.weight {
        Some(w) => src.int_within(w, 1..=1_000_000, |v| {
            format!("op {name:?}: weight must be a whole number from 1 to 1000000, not {v}")
        })? as u32,
        None => 1,
    };
    let tables = Tables {
        http: raw.http,
        synthetic: raw.synthetic,
        tcp: raw.tcp,
        exec: raw.exec,
        grpc: raw.grpc,
    };
    let count = tables.present().len();
    if count != 1 {
        return Err(src.error(
            span,
            format!("op {name:?} needs exactly one of http, grpc, tcp, exec or synthetic (as [phase.op.http] or http = {{ ... }}), not {count}"),
        ));
    }
    let kind = validate_kind(src, tables, generators, Some(&format!("op {name:?}")))?
        .expect("exactly one kind, counted above");
    Ok(Op { name, weight, kind })
}

/// The first workload table present, validated (`None`: there is none).
/// `op` names the op the tables belong to; `None` is a phase's single
/// table, which may still hold the load (`concurrency`, `rate`) as the
/// original syntax did.
pub(crate) fn validate_kind(
    src: &Source,
    t: Tables,
    generators: &[GenSpec],
    op: Option<&str>,
) -> Result<Option<OpKind>, SpecError> {
    let what = |table: &str| op.map_or_else(|| format!("phase.{table}"), str::to_string);
    let single = op.is_none();
    Ok(Some(if let Some(h) = t.http {
        OpKind::Http(validate_http(src, h, generators, &what("http"), single)?)
    } else if let Some(s) = t.synthetic {
        OpKind::Synthetic(validate_synthetic(src, s, &what("synthetic"), single)?)
    } else if let Some(tcp) = t.tcp {
        OpKind::Tcp(validate_tcp(src, tcp, generators, &what("tcp"))?)
    } else if let Some(e) = t.exec {
        OpKind::Exec(validate_exec(src, e, generators, &what("exec"))?)
    } else if let Some(g) = t.grpc {
        OpKind::Grpc(Box::new(validate_grpc(src, g, generators, &what("grpc"))?))
    } else {
        return Ok(None);
    }))
}

/// An operation's table holds `concurrency` or `rate`: those are the
/// phase's (the single-table form allows them, for the original syntax).
fn no_load_in_op(
    src: &Source,
    what: &str,
    concurrency: Option<&Spanned<i64>>,
    rate: Option<&Spanned<Number>>,
) -> Result<(), SpecError> {
    for (key, span) in [
        ("concurrency", concurrency.map(Spanned::span)),
        ("rate", rate.map(Spanned::span)),
    ] {
        if let Some(span) = span {
            return Err(src.error(
                span,
                format!("{what}: `{key}` belongs to the phase, not to one operation"),
            ));
        }
    }
    Ok(())
}

/// A template that may be left out (then empty).
fn optional_template(
    src: &Source,
    value: Option<Spanned<String>>,
    what: &str,
    generators: &[GenSpec],
) -> Result<String, SpecError> {
    match value {
        Some(v) => {
            template(src, v.span(), v.get_ref(), what, generators)?;
            Ok(v.into_inner())
        }
        None => Ok(String::new()),
    }
}

fn validate_http(
    src: &Source,
    h: Spanned<RawHttp>,
    generators: &[GenSpec],
    what: &str,
    load_allowed: bool,
) -> Result<Http, SpecError> {
    let h = h.into_inner();
    if !load_allowed {
        no_load_in_op(src, what, h.concurrency.as_ref(), h.rate.as_ref())?;
    }
    let url = h.url.get_ref().trim().to_string();
    check_url(&url).map_err(|why| src.error(h.url.span(), format!("{what}: url {url:?} {why}")))?;
    template(src, h.url.span(), &url, &format!("{what}: url"), generators)?;
    let method = match &h.method {
        Some(m) => {
            let text = m.get_ref().to_ascii_uppercase();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(src.error(
                    m.span(),
                    format!(
                        "{what}: method {:?} is not an HTTP method like GET or POST",
                        m.get_ref()
                    ),
                ));
            }
            text
        }
        None => "GET".to_string(),
    };
    let timeout = timeout(src, h.timeout.as_ref(), what, Duration::from_secs(10))?;
    let headers = validate_headers(src, h.headers, generators, what)?;
    let body = optional_template(src, h.body, &format!("{what}: body"), generators)?;
    let expect_status = match h.expect_status {
        None => Vec::new(),
        Some(s) => {
            let span = s.span();
            let list = match s.into_inner() {
                RawStatus::One(n) => vec![n],
                RawStatus::Many(v) => v,
            };
            if list.is_empty() || list.iter().any(|n| !(100..=599).contains(n)) {
                return Err(src.error(
                    span,
                    format!("{what}: expect_status must be a status from 100 to 599 or a list of them, like [200, 404]"),
                ));
            }
            list.into_iter().map(|n| n as u16).collect()
        }
    };
    let https = url.starts_with("https://");
    let version = match &h.version {
        None if https => HttpVersion::Auto,
        None => HttpVersion::Http1,
        Some(v) => {
            match v.get_ref().as_str() {
                "1.1" | "1" | "http/1.1" => HttpVersion::Http1,
                "2" | "h2" | "h2c" | "http/2" => HttpVersion::Http2,
                "auto" if https => HttpVersion::Auto,
                "auto" => {
                    return Err(src.error(
                    v.span(),
                    format!("{what}: version \"auto\" picks by TLS ALPN, so it needs an https:// URL; over http:// write \"1.1\" or \"2\" (h2c)"),
                ));
                }
                other => {
                    return Err(src.error(
                    v.span(),
                    format!("{what}: version {other:?} is not \"1.1\", \"2\" or \"auto\" (https only)"),
                ));
                }
            }
        }
    };
    let max_requests_per_connection = match (&h.new_connection, &h.max_requests_per_connection) {
        (Some(n), Some(_)) => {
            return Err(src.error(
                n.span(),
                format!("{what}: give new_connection or max_requests_per_connection, not both (new_connection = true is max_requests_per_connection = 1)"),
            ));
        }
        (Some(n), None) => u32::from(*n.get_ref()),
        (None, Some(m)) => src.int_within(m, 1..=1_000_000_000, |v| {
            format!("{what}: max_requests_per_connection must be a whole number from 1 to 1000000000, not {v}")
        })? as u32,
        (None, None) => 0,
    };
    let tls = tls_for(src, h.tls, https, what)?;
    Ok(Http {
        method,
        url,
        headers,
        body,
        timeout,
        expect_status,
        version,
        tls,
        max_requests_per_connection,
    })
}

/// `headers`: valid names, values without line breaks, each a template.
fn validate_headers(
    src: &Source,
    raw: BTreeMap<String, Spanned<String>>,
    generators: &[GenSpec],
    what: &str,
) -> Result<Vec<(String, String)>, SpecError> {
    let mut headers = Vec::new();
    for (name, value) in raw {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !ok {
            return Err(src.error(
                value.span(),
                format!("{what}: header name {name:?} is not a valid HTTP header name"),
            ));
        }
        if value.get_ref().bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(src.error(
                value.span(),
                format!("{what}: header {name:?} holds a line break"),
            ));
        }
        template(
            src,
            value.span(),
            value.get_ref(),
            &format!("{what}: header {name:?}"),
            generators,
        )?;
        headers.push((name, value.into_inner()));
    }
    Ok(headers)
}

fn validate_synthetic(
    src: &Source,
    s: Spanned<RawSynthetic>,
    what: &str,
    load_allowed: bool,
) -> Result<Synthetic, SpecError> {
    let s = s.into_inner();
    if !load_allowed {
        no_load_in_op(src, what, s.concurrency.as_ref(), s.rate.as_ref())?;
    }
    let latency_span = s.latency.span();
    let latency = validate_latency(s.latency.into_inner())
        .map_err(|why| src.error(latency_span, format!("{what}: latency: {why}")))?;
    let error_ratio = match s.error_ratio {
        Some(r) => {
            let v = r.get_ref().get();
            if !(0.0..=1.0).contains(&v) {
                return Err(src.error(
                    r.span(),
                    format!("{what}: error_ratio must be between 0 and 1, not {v}"),
                ));
            }
            v
        }
        None => 0.0,
    };
    Ok(Synthetic {
        latency,
        error_ratio,
        seed: s.seed.unwrap_or(1),
    })
}

fn validate_tcp(
    src: &Source,
    t: Spanned<RawTcp>,
    generators: &[GenSpec],
    what: &str,
) -> Result<Tcp, SpecError> {
    let span = t.span();
    let mut t = t.into_inner();
    let address = t.address.get_ref().trim().to_string();
    let ok = address.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains("{{") && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !ok {
        return Err(src.error(
            t.address.span(),
            format!("{what}: address {address:?} must be host:port, like \"127.0.0.1:9000\""),
        ));
    }
    let send = optional_template(src, t.send.take(), &format!("{what}: send"), generators)?;
    let read = validate_tcp_read(src, &t, span.clone(), what)?;
    if send.is_empty() && matches!(read, TcpRead::Nothing) {
        return Err(src.error(
            span,
            format!("{what}: sends nothing and reads nothing; give `send` and/or a read (until, read_bytes, read_to_close)"),
        ));
    }
    let keep_alive = t.keep_alive.unwrap_or(true);
    if t.keep_alive == Some(true) && matches!(read, TcpRead::Close) {
        return Err(src.error(
            span,
            format!("{what}: keep_alive cannot go with read_to_close (the reply ends when the connection does)"),
        ));
    }
    let timeout = timeout(src, t.timeout.as_ref(), what, Duration::from_secs(10))?;
    Ok(Tcp {
        address,
        send,
        keep_alive: keep_alive && !matches!(read, TcpRead::Close),
        read,
        timeout,
    })
}

/// At most one of `until`, `read_bytes` and `read_to_close = true`.
fn validate_tcp_read(
    src: &Source,
    t: &RawTcp,
    table: Range<usize>,
    what: &str,
) -> Result<TcpRead, SpecError> {
    let (until, read_bytes, read_to_close) = (&t.until, &t.read_bytes, t.read_to_close);
    let reads = [
        until.is_some(),
        read_bytes.is_some(),
        read_to_close == Some(true),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if reads > 1 {
        return Err(src.error(
            table,
            format!(
                "{what}: give one of `until` (a delimiter), `read_bytes` or `read_to_close = true`"
            ),
        ));
    }
    Ok(if let Some(u) = until {
        if u.get_ref().is_empty() {
            return Err(src.error(u.span(), format!("{what}: until must not be empty")));
        }
        TcpRead::Until(u.get_ref().as_bytes().to_vec())
    } else if let Some(n) = read_bytes {
        let n = src.int_within(n, 1..=1 << 30, |v| {
            format!("{what}: read_bytes must be from 1 to 1073741824, not {v}")
        })?;
        TcpRead::Bytes(n as u64)
    } else if read_to_close == Some(true) {
        TcpRead::Close
    } else {
        TcpRead::Nothing
    })
}

fn validate_exec(
    src: &Source,
    e: Spanned<RawExec>,
    generators: &[GenSpec],
    what: &str,
) -> Result<Exec, SpecError> {
    let e = e.into_inner();
    let span = e.command.span();
    let argv = match e.command.into_inner() {
        RawCommand::Shell(s) if s.trim().is_empty() => Vec::new(),
        RawCommand::Shell(s) => vec!["/bin/sh".to_string(), "-c".to_string(), s],
        RawCommand::Argv(a) => a,
    };
    if argv.is_empty() || argv[0].is_empty() {
        return Err(src.error(
            span,
            format!("{what}: command must not be empty; write a string (run by /bin/sh -c) or a list [\"program\", \"arg\", ...]"),
        ));
    }
    for a in &argv {
        template(
            src,
            span.clone(),
            a,
            &format!("{what}: command"),
            generators,
        )?;
    }
    let timeout = timeout(src, e.timeout.as_ref(), what, Duration::from_secs(30))?;
    Ok(Exec { argv, timeout })
}

/// Why a URL cannot be dialed by the agent's HTTP client, if it cannot.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err("must start with http:// or https://, like \"http://127.0.0.1:8080/\"".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains("{{") {
        return Err("has a {{template}} in its host; templates go in the path and query".into());
    }
    if authority.contains('@') {
        return Err("must not hold credentials".into());
    }
    if let Some((host, port)) = authority.rsplit_once(':')
        && !host.ends_with(']')
    {
        if host.is_empty() {
            return Err("has no host".into());
        }
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("has a bad port {port:?}"));
        }
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters".into());
    }
    Ok(())
}

/// A synthetic op's latency or a phase's think time.
pub(crate) fn validate_latency(raw: RawLatency) -> Result<Latency, String> {
    fn us(field: &str, v: Option<&String>) -> Result<u64, String> {
        let text = v.ok_or_else(|| format!("needs `{field}`, a duration like \"2ms\""))?;
        let d = parse_duration(text)
            .map_err(|e| format!("{field} {text:?} is not a duration ({e})"))?;
        Ok(micros(d))
    }
    match raw {
        RawLatency::Constant(text) => {
            let d = parse_duration(&text)
                .map_err(|e| format!("{text:?} is not a duration ({e}); write \"2ms\" or a table like {{ dist = \"exponential\", mean = \"2ms\" }}"))?;
            Ok(Latency::Constant(micros(d)))
        }
        RawLatency::Dist(d) => match d.dist.as_str() {
            "constant" => Ok(Latency::Constant(us("value", d.value.as_ref())?)),
            "uniform" => {
                let (min, max) = (us("min", d.min.as_ref())?, us("max", d.max.as_ref())?);
                if min > max {
                    return Err("uniform needs min <= max".into());
                }
                Ok(Latency::Uniform { min, max })
            }
            "exponential" => Ok(Latency::Exponential {
                mean: us("mean", d.mean.as_ref())?,
            }),
            "normal" => Ok(Latency::Normal {
                mean: us("mean", d.mean.as_ref())?,
                stddev: us("stddev", d.stddev.as_ref())?,
            }),
            "lognormal" => {
                let sigma = d
                    .sigma
                    .ok_or("lognormal needs `sigma`, a number like 0.5")?;
                if !sigma.is_finite() || sigma < 0.0 {
                    return Err(format!("lognormal sigma must be zero or more, not {sigma}"));
                }
                Ok(Latency::LogNormal {
                    median: us("median", d.median.as_ref())?,
                    sigma,
                })
            }
            other => Err(format!(
                "unknown dist {other:?}; expected constant, uniform, exponential, normal or lognormal"
            )),
        },
    }
}
