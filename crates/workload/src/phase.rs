//! One `[[phase]]` of a workload file: how long it runs, how load is offered
//! (closed loop, or an open-loop rate that is constant, ramps or steps), and
//! what each iteration does (one operation, or a weighted mix of named
//! operations of kind `http`, `tcp`, `exec` or `synthetic`).
//!
//! Like the rest of the spec, the raw TOML keeps spans and validation turns
//! it into types that cannot hold a bad value; every rejection names the
//! file, line and column. Templates (`{{name}}`, see [`fleetbench_gen::Template`]) in URLs,
//! headers, bodies, TCP payloads and exec arguments are compiled here, so a
//! reference to an unknown generator is a load-time error.

use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use fleetbench::clock::parse_duration;
use fleetbench::pb;
use fleetbench_gen::rng::Latency;
use fleetbench_gen::{GenSpec, Template};

use crate::source::{Number, RawCommand, Source, SpecError, WINDOW, duration_text, positive};

/// A phase with `iterations` and no `duration` is cut off after this long.
pub const ITERATIONS_CAP: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    pub name: String,
    /// How long the phase runs; with `iterations`, its cap.
    #[serde(with = "duration_text")]
    pub duration: Duration,
    /// Iterations in total across agents; the phase ends when they are done.
    pub iterations: Option<u64>,
    /// Recorded in the log, left out of the headline numbers. A whole number
    /// of windows.
    #[serde(with = "duration_text")]
    pub warmup: Duration,
    pub load: Load,
    /// Closed loop: a worker's pause between iterations.
    #[serde(skip)]
    pub think: Option<Latency>,
    /// Run control stops the phase when a window meets this.
    pub until: Option<Until>,
    /// Seeds the op choice and the generators (with the agent and worker).
    pub seed: u64,
    /// At least one. A phase written with a single `[phase.http]` (or tcp,
    /// exec, synthetic) table has one op named "".
    pub ops: Vec<Op>,
}

/// How load is offered, in totals across all agents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Load {
    /// Closed loop: `concurrency` workers, each starting its next iteration
    /// when the previous one completes (after the think time).
    Closed { concurrency: u32 },
    /// Open loop: sends on a schedule of intended times over `concurrency`
    /// connections; latency counts from the intended time.
    Open { shape: Shape, concurrency: u32 },
}

impl Load {
    pub fn concurrency(&self) -> u32 {
        match self {
            Load::Closed { concurrency } | Load::Open { concurrency, .. } => *concurrency,
        }
    }
}

/// An open-loop rate over time: segments in order, each linear from `from`
/// to `to` requests per second; the last one's `to` holds after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shape {
    pub segments: Vec<Segment>,
    pub arrival: Arrival,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Segment {
    #[serde(with = "duration_text")]
    pub duration: Duration,
    pub from: f64,
    pub to: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Arrival {
    /// Evenly spaced sends.
    Uniform,
    /// Exponential gaps (a Poisson process at the scheduled rate).
    Poisson,
}

impl Shape {
    /// The highest rate the shape reaches.
    pub fn peak(&self) -> f64 {
        self.segments
            .iter()
            .flat_map(|s| [s.from, s.to])
            .fold(0.0, f64::max)
    }

    /// The rate at `t` seconds into the phase.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut at = 0.0;
        for s in &self.segments {
            let d = s.duration.as_secs_f64();
            if t < at + d {
                return s.from + (s.to - s.from) * (t - at) / d;
            }
            at += d;
        }
        self.segments.last().map_or(0.0, |s| s.to)
    }

    pub fn to_pb(&self, scale: f64) -> pb::LoadShape {
        pb::LoadShape {
            segments: self
                .segments
                .iter()
                .map(|s| pb::RateSegment {
                    duration_ms: millis(s.duration),
                    from: s.from * scale,
                    to: s.to * scale,
                })
                .collect(),
            arrival: match self.arrival {
                Arrival::Uniform => "uniform",
                Arrival::Poisson => "poisson",
            }
            .to_string(),
        }
    }
}

/// Stop conditions, checked by run control on every finished window after
/// the warm-up: any one that holds stops the phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Until {
    /// (name as written, quantile in 0..=1, bound in µs): stop when the
    /// window's latency at that quantile is above the bound.
    pub latency: Vec<(String, f64, u64)>,
    /// Stop when the window's errors / requests is above this.
    pub error_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    pub name: String,
    pub weight: u32,
    pub kind: OpKind,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum OpKind {
    Http(Http),
    Tcp(Tcp),
    Exec(Exec),
    Synthetic(Synthetic),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Http {
    pub method: String,
    /// May hold `{{templates}}` in its path and query, and
    /// `{service.NAME.host}` in its host.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// Statuses that count as success; empty: any 1xx, 2xx or 3xx.
    pub expect_status: Vec<u16>,
    pub version: HttpVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HttpVersion {
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (h2c).
    Http2,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tcp {
    /// host:port (`{service.NAME.host}` allowed).
    pub address: String,
    /// A template.
    pub send: String,
    pub read: TcpRead,
    #[serde(with = "duration_text")]
    pub timeout: Duration,
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exec {
    /// argv, each a template; run directly (no shell unless argv says so).
    pub argv: Vec<String>,
    #[serde(with = "duration_text")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Synthetic {
    #[serde(skip)]
    pub latency: Latency,
    pub error_ratio: f64,
    pub seed: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Phase {
    /// The phase as the agents receive it (shares are set per agent in
    /// StartPhase; the shape here is in totals).
    pub fn to_pb(&self) -> pb::PhaseSpec {
        pb::PhaseSpec {
            name: self.name.clone(),
            duration_ms: millis(self.duration),
            warmup_ms: millis(self.warmup),
            window_ms: millis(WINDOW) as u32,
            workload: None,
            ops: self.ops.iter().map(Op::to_pb).collect(),
            shape: match &self.load {
                Load::Open { shape, .. } => Some(shape.to_pb(1.0)),
                Load::Closed { .. } => None,
            },
            think: self.think.as_ref().map(Latency::to_pb),
            seed: self.seed,
            has_iterations: self.iterations.is_some(),
            max_agent_concurrency: 0,
        }
    }

    /// Names of the ops ("" for a single unnamed one).
    pub fn op_names(&self) -> Vec<String> {
        self.ops.iter().map(|o| o.name.clone()).collect()
    }
}

impl Op {
    fn to_pb(&self) -> pb::Operation {
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
                }
                .to_string(),
                connect_timeout_ms: millis(h.timeout),
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
pub(crate) struct RawPhase {
    name: Spanned<String>,
    duration: Option<Spanned<String>>,
    iterations: Option<Spanned<i64>>,
    warmup: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    rate: Option<Spanned<Number>>,
    ramp: Option<Spanned<RawRamp>>,
    steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
    arrival: Option<Spanned<String>>,
    think: Option<Spanned<RawLatency>>,
    until: Option<Spanned<RawUntil>>,
    seed: Option<Spanned<i64>>,
    http: Option<Spanned<RawHttp>>,
    synthetic: Option<Spanned<RawSynthetic>>,
    tcp: Option<Spanned<RawTcp>>,
    exec: Option<Spanned<RawExec>>,
    op: Option<Spanned<Vec<Spanned<RawOp>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRamp {
    from: Spanned<Number>,
    to: Spanned<Number>,
    over: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    rate: Spanned<Number>,
    #[serde(rename = "for")]
    hold: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUntil {
    p50: Option<Spanned<String>>,
    p90: Option<Spanned<String>>,
    p99: Option<Spanned<String>>,
    p999: Option<Spanned<String>>,
    max: Option<Spanned<String>>,
    error_rate: Option<Spanned<Number>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOp {
    name: Spanned<String>,
    weight: Option<Spanned<i64>>,
    http: Option<Spanned<RawHttp>>,
    synthetic: Option<Spanned<RawSynthetic>>,
    tcp: Option<Spanned<RawTcp>>,
    exec: Option<Spanned<RawExec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    url: Spanned<String>,
    method: Option<Spanned<String>>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, Spanned<String>>,
    body: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    expect_status: Option<Spanned<RawStatus>>,
    version: Option<Spanned<String>>,
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
struct RawSynthetic {
    latency: Spanned<RawLatency>,
    error_ratio: Option<Spanned<Number>>,
    seed: Option<u64>,
    concurrency: Option<Spanned<i64>>,
    rate: Option<Spanned<Number>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcp {
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
struct RawExec {
    command: Spanned<RawCommand>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawLatency {
    Constant(String),
    Dist(RawDist),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDist {
    dist: String,
    value: Option<String>,
    min: Option<String>,
    max: Option<String>,
    mean: Option<String>,
    stddev: Option<String>,
    median: Option<String>,
    sigma: Option<f64>,
}

// ---------------------------------------------------------------- validation

/// What validation needs from the rest of the file.
pub(crate) struct Context<'a> {
    /// Agents the run asks for (for default connection counts).
    pub agents: u32,
    pub generators: &'a [GenSpec],
    /// The run's seed (`[run] seed`), the default of every phase's.
    pub seed: u64,
}

pub(crate) fn validate_phase(
    src: &Source,
    p: Spanned<RawPhase>,
    cx: &Context,
) -> Result<Phase, SpecError> {
    let phase_span = p.span();
    let p = p.into_inner();
    let name_span = p.name.span();
    let name = p.name.into_inner();
    if name.trim().is_empty() {
        return Err(src.error(name_span, "phase name must not be empty"));
    }
    let q = |what: &str| format!("phase {name:?}: {what}");

    // What each iteration does.
    let singles = [
        p.http.as_ref().map(|h| h.span()),
        p.synthetic.as_ref().map(|h| h.span()),
        p.tcp.as_ref().map(|h| h.span()),
        p.exec.as_ref().map(|h| h.span()),
    ];
    let single_count = singles.iter().flatten().count();
    if single_count > 1 {
        let second = singles
            .iter()
            .flatten()
            .nth(1)
            .cloned()
            .unwrap_or(phase_span);
        return Err(src.error(
            second,
            q("has more than one of [phase.http], [phase.synthetic], [phase.tcp], [phase.exec]; give it one, or name several operations with [[phase.op]]"),
        ));
    }
    if single_count == 1 && p.op.is_some() {
        let span = p.op.as_ref().map_or(phase_span.clone(), |o| o.span());
        return Err(src.error(
            span,
            q("has both a single workload table and [[phase.op]]; put every operation in a [[phase.op]]"),
        ));
    }
    // The original form keeps the load inside the workload table.
    let (inner_conc, inner_rate) = match (&p.http, &p.synthetic) {
        (Some(h), _) => (h.get_ref().concurrency.clone(), h.get_ref().rate.clone()),
        (_, Some(s)) => (s.get_ref().concurrency.clone(), s.get_ref().rate.clone()),
        _ => (None, None),
    };
    let mut ops = Vec::new();
    let single = Tables {
        http: p.http,
        synthetic: p.synthetic,
        tcp: p.tcp,
        exec: p.exec,
    };
    if let Some(kind) = validate_kind(src, single, cx, None)? {
        ops.push(Op {
            name: String::new(),
            weight: 1,
            kind,
        });
    } else if let Some(list) = p.op {
        let list_span = list.span();
        let list = list.into_inner();
        if list.is_empty() {
            return Err(src.error(list_span, q("[[phase.op]] is empty")));
        }
        for raw in list {
            let op = validate_op(src, raw, cx, &ops)?;
            ops.push(op);
        }
    } else {
        return Err(src.error(
            phase_span,
            q("has no workload: add a [phase.http], [phase.tcp], [phase.exec] or [phase.synthetic] table, or operations as [[phase.op]]"),
        ));
    }

    // How long.
    let iterations = match &p.iterations {
        Some(n) if *n.get_ref() < 1 => {
            return Err(src.error(
                n.span(),
                q(&format!(
                    "iterations must be a whole number above zero, not {}",
                    n.get_ref()
                )),
            ));
        }
        Some(n) => Some(*n.get_ref() as u64),
        None => None,
    };

    // The load: phase-level keys, or the original keys inside the table.
    if (p.concurrency.is_some() || p.rate.is_some() || p.ramp.is_some() || p.steps.is_some())
        && (inner_conc.is_some() || inner_rate.is_some())
    {
        return Err(src.error(
            phase_span,
            q("sets its load both in the phase and inside its workload table; keep `concurrency`/`rate` in one place (the phase)"),
        ));
    }
    let concurrency_raw = p.concurrency.or(inner_conc);
    let rate_raw = p.rate.or(inner_rate);
    let concurrency = match &concurrency_raw {
        Some(c) if *c.get_ref() < 1 || *c.get_ref() > 1_000_000 => {
            return Err(src.error(
                c.span(),
                q(&format!(
                    "concurrency must be a whole number from 1 to 1000000, not {}",
                    c.get_ref()
                )),
            ));
        }
        Some(c) => Some(*c.get_ref() as u32),
        None => None,
    };
    let shapes = [
        rate_raw.as_ref().map(|r| r.span()),
        p.ramp.as_ref().map(|r| r.span()),
        p.steps.as_ref().map(|r| r.span()),
    ];
    if shapes.iter().flatten().count() > 1 {
        let second = shapes
            .iter()
            .flatten()
            .nth(1)
            .cloned()
            .unwrap_or(phase_span);
        return Err(src.error(
            second,
            q("takes one of `rate`, `ramp` and `steps`, not several"),
        ));
    }
    let duration_given = match &p.duration {
        Some(d) => Some(positive(src, d, "phase.duration")?),
        None => None,
    };
    let mut segments = Vec::new();
    if let Some(r) = &rate_raw {
        let v = rate_value(src, r, &q("rate"), false)?;
        segments.push(Segment {
            duration: duration_given.unwrap_or(ITERATIONS_CAP),
            from: v,
            to: v,
        });
    }
    if let Some(r) = &p.ramp {
        let ramp = r.get_ref();
        let from = rate_value(src, &ramp.from, &q("ramp.from"), true)?;
        let to = rate_value(src, &ramp.to, &q("ramp.to"), true)?;
        if from == 0.0 && to == 0.0 {
            return Err(src.error(r.span(), q("ramp goes from 0 to 0: nothing to send")));
        }
        segments.push(Segment {
            duration: positive(src, &ramp.over, "ramp.over")?,
            from,
            to,
        });
    }
    if let Some(steps) = &p.steps {
        if steps.get_ref().is_empty() {
            return Err(src.error(
                steps.span(),
                q("steps is empty; write steps = [{ rate = 100, for = \"30s\" }, ...]"),
            ));
        }
        for s in steps.get_ref() {
            let step = s.get_ref();
            let v = rate_value(src, &step.rate, &q("steps.rate"), true)?;
            segments.push(Segment {
                duration: positive(src, &step.hold, "steps.for")?,
                from: v,
                to: v,
            });
        }
    }
    let shaped: Duration = if p.ramp.is_some() || p.steps.is_some() {
        segments.iter().map(|s| s.duration).sum()
    } else {
        Duration::ZERO
    };
    let duration = match (duration_given, iterations) {
        (Some(d), _) => d,
        (None, Some(_)) => ITERATIONS_CAP,
        (None, None) if !shaped.is_zero() => shaped,
        (None, None) => {
            return Err(src.error(
                name_span,
                q("needs `duration = \"30s\"` or `iterations = N` (or a ramp/steps whose length is the phase's)"),
            ));
        }
    };
    let arrival = match &p.arrival {
        None => Arrival::Uniform,
        Some(a) if segments.is_empty() => {
            return Err(src.error(
                a.span(),
                q("arrival is for open-loop phases (rate, ramp or steps)"),
            ));
        }
        Some(a) => match a.get_ref().as_str() {
            "uniform" => Arrival::Uniform,
            "poisson" => Arrival::Poisson,
            other => {
                return Err(src.error(
                    a.span(),
                    q(&format!(
                        "arrival {other:?} is not \"uniform\" (evenly spaced) or \"poisson\""
                    )),
                ));
            }
        },
    };
    let load = if segments.is_empty() {
        match concurrency {
            Some(c) => Load::Closed { concurrency: c },
            None => {
                return Err(src.error(
                    phase_span,
                    q("needs `concurrency = N` (closed loop) or `rate = R`, `ramp = {...}` or `steps = [...]` (open loop)"),
                ));
            }
        }
    } else {
        let shape = Shape { segments, arrival };
        // Enough connections for ~2 ms of service time per request at the
        // peak, at least 4 per agent; the user can set it.
        let agents = cx.agents.max(1);
        let default =
            ((shape.peak() / 500.0).ceil() as u32).clamp(4 * agents, 1024.max(4 * agents));
        Load::Open {
            shape,
            concurrency: concurrency.unwrap_or(default),
        }
    };
    let think = match p.think {
        None => None,
        Some(t) if matches!(load, Load::Open { .. }) => {
            return Err(src.error(
                t.span(),
                q("think time is for closed-loop phases; an open loop already paces its sends"),
            ));
        }
        Some(t) => {
            let span = t.span();
            Some(
                validate_latency(t.into_inner())
                    .map_err(|why| src.error(span, q(&format!("think: {why}"))))?,
            )
        }
    };

    let warmup = match &p.warmup {
        Some(w) => {
            let d = src.duration(w, "phase.warmup")?;
            if d.as_millis() % WINDOW.as_millis() != 0 {
                return Err(src.error(
                    w.span(),
                    format!(
                        "phase.warmup must be a whole number of {}s windows, like \"2s\"",
                        WINDOW.as_secs()
                    ),
                ));
            }
            if d >= duration {
                return Err(src.error(
                    w.span(),
                    format!(
                        "phase.warmup ({}) must be shorter than phase.duration ({})",
                        humantime::format_duration(d),
                        humantime::format_duration(duration)
                    ),
                ));
            }
            d
        }
        None => Duration::ZERO,
    };
    let until = match p.until {
        None => None,
        Some(u) => Some(validate_until(src, u, &name)?),
    };
    let seed = match &p.seed {
        Some(s) if *s.get_ref() < 0 => {
            return Err(src.error(s.span(), q("seed must be zero or more")));
        }
        Some(s) => *s.get_ref() as u64,
        None => cx.seed,
    };
    Ok(Phase {
        name,
        duration,
        iterations,
        warmup,
        load,
        think,
        until,
        seed,
        ops,
    })
}

/// An operation's table holds `concurrency` or `rate`: those are the
/// phase's (the single-table form allows them, for the original syntax).
fn no_load_in_op(
    src: &Source,
    what: &str,
    concurrency: Option<Range<usize>>,
    rate: Option<Range<usize>>,
) -> Result<(), SpecError> {
    for (key, span) in [("concurrency", concurrency), ("rate", rate)] {
        if let Some(span) = span {
            return Err(src.error(
                span,
                format!("{what}: `{key}` belongs to the phase, not to one operation"),
            ));
        }
    }
    Ok(())
}

fn rate_value(
    src: &Source,
    r: &Spanned<Number>,
    what: &str,
    zero_ok: bool,
) -> Result<f64, SpecError> {
    let v = r.get_ref().get();
    if !v.is_finite() || v < 0.0 || (v == 0.0 && !zero_ok) || v > 1e9 {
        let lo = if zero_ok {
            "zero or more"
        } else {
            "above zero"
        };
        return Err(src.error(
            r.span(),
            format!("{what} must be a number of requests per second {lo} (at most 1e9), not {v}"),
        ));
    }
    Ok(v)
}

fn validate_until(src: &Source, u: Spanned<RawUntil>, phase: &str) -> Result<Until, SpecError> {
    let span = u.span();
    let u = u.into_inner();
    let mut latency = Vec::new();
    for (key, q, value) in [
        ("p50", 0.5, &u.p50),
        ("p90", 0.9, &u.p90),
        ("p99", 0.99, &u.p99),
        ("p999", 0.999, &u.p999),
        ("max", 1.0, &u.max),
    ] {
        if let Some(v) = value {
            let d = positive(src, v, &format!("phase.until.{key}"))?;
            latency.push((
                key.to_string(),
                q,
                u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            ));
        }
    }
    let error_rate = match &u.error_rate {
        Some(r) => {
            let v = r.get_ref().get();
            if !(0.0..1.0).contains(&v) {
                return Err(src.error(
                    r.span(),
                    format!("phase.until.error_rate must be at least 0 and below 1, not {v}"),
                ));
            }
            Some(v)
        }
        None => None,
    };
    if latency.is_empty() && error_rate.is_none() {
        return Err(src.error(
            span,
            format!("phase {phase:?}: until needs a condition, like until = {{ p99 = \"20ms\" }} or {{ error_rate = 0.01 }}"),
        ));
    }
    Ok(Until {
        latency,
        error_rate,
    })
}

fn validate_op(
    src: &Source,
    raw: Spanned<RawOp>,
    cx: &Context,
    earlier: &[Op],
) -> Result<Op, SpecError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(src.error(
            name_span,
            format!("op name {name:?} must be non-empty letters, digits, '-', '_' or '.'"),
        ));
    }
    if earlier.iter().any(|o| o.name == name) {
        return Err(src.error(
            name_span,
            format!("op {name:?} is defined twice in this phase"),
        ));
    }
    let weight = match &raw.weight {
        Some(w) if *w.get_ref() < 1 || *w.get_ref() > 1_000_000 => {
            return Err(src.error(
                w.span(),
                format!(
                    "op {name:?}: weight must be a whole number from 1 to 1000000, not {}",
                    w.get_ref()
                ),
            ));
        }
        Some(w) => *w.get_ref() as u32,
        None => 1,
    };
    let count = [
        raw.http.is_some(),
        raw.synthetic.is_some(),
        raw.tcp.is_some(),
        raw.exec.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if count != 1 {
        return Err(src.error(
            span,
            format!("op {name:?} needs exactly one of http, tcp, exec or synthetic (as [phase.op.http] or http = {{ ... }}), not {count}"),
        ));
    }
    let tables = Tables {
        http: raw.http,
        synthetic: raw.synthetic,
        tcp: raw.tcp,
        exec: raw.exec,
    };
    let kind = validate_kind(src, tables, cx, Some(&format!("op {name:?}")))?
        .expect("exactly one kind, counted above");
    Ok(Op { name, weight, kind })
}

/// The workload tables of a phase (its single-workload form) or of an op.
struct Tables {
    http: Option<Spanned<RawHttp>>,
    synthetic: Option<Spanned<RawSynthetic>>,
    tcp: Option<Spanned<RawTcp>>,
    exec: Option<Spanned<RawExec>>,
}

/// The first workload table present, validated (`None`: there is none).
/// `op` names the op the tables belong to; `None` is a phase's single
/// table, which may still hold the load (`concurrency`, `rate`) as the
/// original syntax did.
fn validate_kind(
    src: &Source,
    t: Tables,
    cx: &Context,
    op: Option<&str>,
) -> Result<Option<OpKind>, SpecError> {
    let what = |table: &str| op.map_or_else(|| format!("phase.{table}"), str::to_string);
    let single = op.is_none();
    Ok(Some(if let Some(h) = t.http {
        OpKind::Http(validate_http(src, h, cx, &what("http"), single)?)
    } else if let Some(s) = t.synthetic {
        OpKind::Synthetic(validate_synthetic(src, s, &what("synthetic"), single)?)
    } else if let Some(tcp) = t.tcp {
        OpKind::Tcp(validate_tcp(src, tcp, cx, &what("tcp"))?)
    } else if let Some(e) = t.exec {
        OpKind::Exec(validate_exec(src, e, cx, &what("exec"))?)
    } else {
        return Ok(None);
    }))
}

/// Compiles `text` as a template, pointing an error at `span`.
fn template(
    src: &Source,
    span: Range<usize>,
    text: &str,
    what: &str,
    cx: &Context,
) -> Result<(), SpecError> {
    Template::compile(text, cx.generators)
        .map(|_| ())
        .map_err(|why| src.error(span, format!("{what}: {why}")))
}

fn validate_http(
    src: &Source,
    h: Spanned<RawHttp>,
    cx: &Context,
    what: &str,
    load_allowed: bool,
) -> Result<Http, SpecError> {
    let h = h.into_inner();
    if !load_allowed {
        no_load_in_op(
            src,
            what,
            h.concurrency.as_ref().map(|c| c.span()),
            h.rate.as_ref().map(|c| c.span()),
        )?;
    }
    let url = h.url.get_ref().trim().to_string();
    check_url(&url).map_err(|why| src.error(h.url.span(), format!("{what}: url {url:?} {why}")))?;
    template(src, h.url.span(), &url, &format!("{what}: url"), cx)?;
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
    let timeout = match &h.timeout {
        Some(t) => positive(src, t, &format!("{what}: timeout"))?,
        None => Duration::from_secs(10),
    };
    let mut headers = Vec::new();
    for (name, value) in h.headers {
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
            cx,
        )?;
        headers.push((name, value.into_inner()));
    }
    let body = match h.body {
        Some(b) => {
            template(src, b.span(), b.get_ref(), &format!("{what}: body"), cx)?;
            b.into_inner()
        }
        None => String::new(),
    };
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
    let version = match &h.version {
        None => HttpVersion::Http1,
        Some(v) => match v.get_ref().as_str() {
            "1.1" | "1" | "http/1.1" => HttpVersion::Http1,
            "2" | "h2c" | "http/2" => HttpVersion::Http2,
            other => {
                return Err(src.error(
                    v.span(),
                    format!("{what}: version {other:?} is not \"1.1\" or \"2\" (h2c)"),
                ));
            }
        },
    };
    Ok(Http {
        method,
        url,
        headers,
        body,
        timeout,
        expect_status,
        version,
    })
}

fn validate_synthetic(
    src: &Source,
    s: Spanned<RawSynthetic>,
    what: &str,
    load_allowed: bool,
) -> Result<Synthetic, SpecError> {
    let s = s.into_inner();
    if !load_allowed {
        no_load_in_op(
            src,
            what,
            s.concurrency.as_ref().map(|c| c.span()),
            s.rate.as_ref().map(|c| c.span()),
        )?;
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
    cx: &Context,
    what: &str,
) -> Result<Tcp, SpecError> {
    let span = t.span();
    let t = t.into_inner();
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
    let send = match t.send {
        Some(s) => {
            template(src, s.span(), s.get_ref(), &format!("{what}: send"), cx)?;
            s.into_inner()
        }
        None => String::new(),
    };
    let reads = [
        t.until.is_some(),
        t.read_bytes.is_some(),
        t.read_to_close == Some(true),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if reads > 1 {
        return Err(src.error(
            span,
            format!(
                "{what}: give one of `until` (a delimiter), `read_bytes` or `read_to_close = true`"
            ),
        ));
    }
    let read = if let Some(u) = &t.until {
        if u.get_ref().is_empty() {
            return Err(src.error(u.span(), format!("{what}: until must not be empty")));
        }
        TcpRead::Until(u.get_ref().as_bytes().to_vec())
    } else if let Some(n) = &t.read_bytes {
        if *n.get_ref() < 1 || *n.get_ref() > 1 << 30 {
            return Err(src.error(
                n.span(),
                format!(
                    "{what}: read_bytes must be from 1 to 1073741824, not {}",
                    n.get_ref()
                ),
            ));
        }
        TcpRead::Bytes(*n.get_ref() as u64)
    } else if t.read_to_close == Some(true) {
        TcpRead::Close
    } else {
        TcpRead::Nothing
    };
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
    let timeout = match &t.timeout {
        Some(d) => positive(src, d, &format!("{what}: timeout"))?,
        None => Duration::from_secs(10),
    };
    Ok(Tcp {
        address,
        send,
        keep_alive: keep_alive && !matches!(read, TcpRead::Close),
        read,
        timeout,
    })
}

fn validate_exec(
    src: &Source,
    e: Spanned<RawExec>,
    cx: &Context,
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
        template(src, span.clone(), a, &format!("{what}: command"), cx)?;
    }
    let timeout = match &e.timeout {
        Some(d) => positive(src, d, &format!("{what}: timeout"))?,
        None => Duration::from_secs(30),
    };
    Ok(Exec { argv, timeout })
}

/// Why a URL cannot be dialed by the agent's HTTP client, if it cannot.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("https://") {
        return Err("uses https, which this version does not support yet: use http://".into());
    } else {
        return Err("must start with http://, like \"http://127.0.0.1:8080/\"".into());
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

fn validate_latency(raw: RawLatency) -> Result<Latency, String> {
    fn us(field: &str, v: Option<&String>) -> Result<u64, String> {
        let text = v.ok_or_else(|| format!("needs `{field}`, a duration like \"2ms\""))?;
        let d = parse_duration(text)
            .map_err(|e| format!("{field} {text:?} is not a duration ({e})"))?;
        Ok(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
    match raw {
        RawLatency::Constant(text) => {
            let d = parse_duration(&text)
                .map_err(|e| format!("{text:?} is not a duration ({e}); write \"2ms\" or a table like {{ dist = \"exponential\", mean = \"2ms\" }}"))?;
            Ok(Latency::Constant(
                u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            ))
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

#[cfg(test)]
mod tests {
    use crate::spec::Workload;

    const BASE: &str = r#"[agents]
local = 2

[generator.key]
kind = "zipf"
n = 100
exponent = 1.1

[[phase]]
name = "p"
duration = "10s"
concurrency = 4

[[phase.op]]
name = "read"
weight = 3
http = { url = "http://127.0.0.1:8080/kv/{{key}}" }

[[phase.op]]
name = "echo"
tcp = { address = "127.0.0.1:9000", send = "{{key}}\n", until = "\n" }
"#;

    fn parse(text: &str) -> Result<Workload, String> {
        Workload::parse("w.toml", text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_base_parses_into_ops() {
        let w = parse(BASE).unwrap();
        let p = &w.phases[0];
        assert_eq!(p.op_names(), vec!["read", "echo"]);
        assert_eq!(p.ops[0].weight, 3);
        assert_eq!(p.ops[1].weight, 1);
        assert_eq!(p.load, super::Load::Closed { concurrency: 4 });
        let ramp = parse(&BASE.replace(
            "duration = \"10s\"\nconcurrency = 4",
            "ramp = { from = 10, to = 100, over = \"1m\" }\narrival = \"poisson\"",
        ))
        .unwrap();
        let p = &ramp.phases[0];
        assert_eq!(p.duration, std::time::Duration::from_secs(60));
        match &p.load {
            super::Load::Open { shape, .. } => {
                assert_eq!(shape.arrival, super::Arrival::Poisson);
                assert_eq!(shape.rate_at(30.0), 55.0);
                assert_eq!(shape.rate_at(90.0), 100.0);
            }
            other => panic!("{other:?}"),
        }
        let steps = parse(&BASE.replace(
            "duration = \"10s\"\nconcurrency = 4",
            "steps = [{ rate = 10, for = \"5s\" }, { rate = 20, for = \"5s\" }]\nuntil = { p99 = \"20ms\", error_rate = 0.01 }",
        ))
        .unwrap();
        assert_eq!(steps.phases[0].duration, std::time::Duration::from_secs(10));
        assert_eq!(
            steps.phases[0].until.as_ref().unwrap().latency,
            vec![("p99".to_string(), 0.99, 20_000)]
        );
    }

    /// Every rejection of the phase language, with where it points.
    #[test]
    fn every_rejection_names_its_place_and_says_why() {
        let phase_load = "duration = \"10s\"\nconcurrency = 4";
        let cases: Vec<(String, &str, &str)> = vec![
            (
                BASE.replace("weight = 3", "weight = 3\nsynthetic = { latency = \"1ms\" }"),
                "w.toml:14:1:",
                "needs exactly one of http, tcp, exec or synthetic",
            ),
            (
                BASE.replace("concurrency = 4", "concurrency = 4\n[phase.synthetic]\nlatency = \"1ms\""),
                "w.toml:",
                "both a single workload table and [[phase.op]]",
            ),
            (
                BASE.replace("concurrency = 4", "concurrency = 4\nop = []").split("[[phase.op]]").next().unwrap().to_string(),
                "w.toml:13:6:",
                "[[phase.op]] is empty",
            ),
            (
                BASE.split("[[phase.op]]").next().unwrap().to_string(),
                "w.toml:9:1:",
                "has no workload",
            ),
            (BASE.replace(phase_load, "iterations = 0\nconcurrency = 4"), "w.toml:11:14:", "iterations must be a whole number above zero"),
            (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 0"), "w.toml:12:15:", "concurrency must be a whole number from 1"),
            (BASE.replace(phase_load, "duration = \"1s\"\nrate = 5\nsteps = [{ rate = 1, for = \"1s\" }]"), "w.toml:13:9:", "one of `rate`, `ramp` and `steps`"),
            (BASE.replace(phase_load, "ramp = { from = 0, to = 0, over = \"1s\" }"), "w.toml:11:8:", "ramp goes from 0 to 0"),
            (BASE.replace(phase_load, "ramp = { from = -1, to = 5, over = \"1s\" }"), "w.toml:11:17:", "ramp.from must be a number of requests per second zero or more"),
            (BASE.replace(phase_load, "ramp = { from = 1, to = 5, over = \"soon\" }"), "w.toml:11:35:", "ramp.over: \"soon\" is not a duration"),
            (BASE.replace(phase_load, "steps = []"), "w.toml:11:9:", "steps is empty"),
            (BASE.replace(phase_load, "steps = [{ rate = 5, for = \"0s\" }]"), "w.toml:11:28:", "steps.for must be longer than zero"),
            (BASE.replace(phase_load, "concurrency = 4"), "w.toml:10:8:", "needs `duration = \"30s\"` or `iterations = N`"),
            (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\narrival = \"poisson\""), "w.toml:13:11:", "arrival is for open-loop phases"),
            (BASE.replace(phase_load, "duration = \"1s\"\nrate = 5\narrival = \"bursty\""), "w.toml:13:11:", "arrival \"bursty\" is not \"uniform\""),
            (BASE.replace(phase_load, "duration = \"1s\""), "w.toml:9:1:", "needs `concurrency = N` (closed loop) or `rate = R`"),
            (BASE.replace(phase_load, "duration = \"1s\"\nrate = 5\nthink = \"1ms\""), "w.toml:13:9:", "think time is for closed-loop phases"),
            (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\nthink = { dist = \"gamma\" }"), "w.toml:13:9:", "think: unknown dist \"gamma\""),
            (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\nuntil = {}"), "w.toml:13:9:", "until needs a condition"),
            (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\nuntil = { error_rate = 2 }"), "w.toml:13:24:", "until.error_rate must be at least 0 and below 1"),
            (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\nuntil = { p99 = \"fast\" }"), "w.toml:13:17:", "phase.until.p99: \"fast\" is not a duration"),
            (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\nseed = -1"), "w.toml:13:8:", "seed must be zero or more"),
            (BASE.replace("name = \"read\"", "name = \"read me\""), "w.toml:15:8:", "op name \"read me\" must be"),
            (BASE.replace("name = \"echo\"", "name = \"read\""), "w.toml:20:8:", "op \"read\" is defined twice in this phase"),
            (BASE.replace("weight = 3", "weight = 0"), "w.toml:16:10:", "weight must be a whole number from 1 to 1000000"),
            (BASE.replace("kv/{{key}}\" }", "kv/{{key}}\", rate = 5 }"), "w.toml:17:", "`rate` belongs to the phase, not to one operation"),
            (BASE.replace("kv/{{key}}", "kv/{{nope}}"), "w.toml:17:16:", "op \"read\": url: "),
            (BASE.replace("http://127.0.0.1:8080/kv/{{key}}", "http://{{key}}:8080/kv"), "w.toml:17:16:", "has a {{template}} in its host"),
            (BASE.replace("{{key}}\" }", "{{key}}\", headers = { \"bad name\" = \"x\" } }"), "w.toml:17:", "header name \"bad name\" is not a valid HTTP header name"),
            (BASE.replace("{{key}}\" }", "{{key}}\", expect_status = [200, 700] }"), "w.toml:17:", "expect_status must be a status from 100 to 599"),
            (BASE.replace("{{key}}\" }", "{{key}}\", version = \"3\" }"), "w.toml:17:", "version \"3\" is not \"1.1\" or \"2\""),
            (BASE.replace("{{key}}\" }", "{{key}}\", timeout = \"0s\" }"), "w.toml:17:", "timeout must be longer than zero"),
            (BASE.replace("127.0.0.1:9000", "localhost"), "w.toml:21:19:", "address \"localhost\" must be host:port"),
            (BASE.replace("until = \"\\n\"", "until = \"\\n\", read_bytes = 4"), "w.toml:21:", "give one of `until` (a delimiter), `read_bytes` or `read_to_close = true`"),
            (BASE.replace("until = \"\\n\"", "until = \"\""), "w.toml:21:", "until must not be empty"),
            (BASE.replace("until = \"\\n\"", "read_bytes = 0"), "w.toml:21:", "read_bytes must be from 1 to 1073741824"),
            (BASE.replace("send = \"{{key}}\\n\", until = \"\\n\"", "keep_alive = true"), "w.toml:21:", "sends nothing and reads nothing"),
            (BASE.replace("until = \"\\n\"", "read_to_close = true, keep_alive = true"), "w.toml:21:", "keep_alive cannot go with read_to_close"),
            (BASE.replace("tcp = { address = \"127.0.0.1:9000\", send = \"{{key}}\\n\", until = \"\\n\" }", "exec = { command = [] }"), "w.toml:21:", "command must not be empty"),
            (BASE.replace("tcp = { address = \"127.0.0.1:9000\", send = \"{{key}}\\n\", until = \"\\n\" }", "exec = { command = \"echo {{nope}}\" }"), "w.toml:21:", "op \"echo\": command: "),
            (BASE.replace("name = \"p\"", "name = \"p\"\nhttp = { url = \"http://a:1/\" }\ntcp = { address = \"a:1\", send = \"x\" }"), "w.toml:", "has more than one of [phase.http], [phase.synthetic]"),
            (format!("{BASE}\n[[phase]]\nname = \"p\"\nduration = \"1s\"\n[phase.synthetic]\nlatency = \"1ms\"\nconcurrency = 1\n"), "w.toml:23:1:", "phase \"p\" is defined twice"),
            (BASE.replace("local = 2", "local = 2\nsplit = \"random\""), "w.toml:3:9:", "agents.split \"random\" is not \"even\", \"cores\""),
            (BASE.replace("local = 2", "local = 2\nsplit = [1, -1]"), "w.toml:3:9:", "agents.split weights must be zero or more"),
            (BASE.replace("local = 2", "local = 2\nsplit = [1, 2, 3]"), "w.toml:1:1:", "agents.split lists 3 weights for 2 agents"),
            (format!("[run]\nseed = -5\n{BASE}"), "w.toml:2:8:", "run.seed must be zero or more"),
            (BASE.replace("local = 2", "pool = \"p\"\nsplit = [1, 2]"), "w.toml:1:1:", "agents.split weights need agents.count with a pool"),
        ];
        let mut wrong = Vec::new();
        for (text, at, why) in cases {
            match parse(&text) {
                Ok(_) => wrong.push(format!("accepted, expected {why:?}:\n{text}")),
                Err(e) if !(e.starts_with(at) && e.contains(why)) => {
                    wrong.push(format!("expected {at} ... {why:?}, got {e:?}"));
                }
                Err(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
