//! One `[[phase]]` of a workload file: how long it runs, how load is offered
//! (closed loop, or an open-loop rate that is constant, ramps or steps), when
//! run control stops it early (`until`), and which operations its
//! iterations run (their kinds are [`crate::ops`]'s).
//!
//! Like the rest of the spec, the raw TOML keeps spans and validation turns
//! it into types that cannot hold a bad value; every rejection names the
//! file, line and column. Splitting a phase across agents is the
//! coordinator's job.

use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use fleetbench::pb;
use fleetbench_gen::GenSpec;
use fleetbench_gen::rng::Latency;

use crate::grpc::RawGrpc;
use crate::ops::{
    Op, RawExec, RawHttp, RawLatency, RawOp, RawSynthetic, RawTcp, Tables, validate_kind,
    validate_latency, validate_op,
};
use crate::source::{Number, Source, SpecError, WINDOW, duration_text, micros, millis, positive};

/// A phase with `iterations` and no `duration` is cut off after this long.
pub(crate) const ITERATIONS_CAP: Duration = Duration::from_secs(3600);

/// A validated `[[phase]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    /// Distinct among the workload's phases.
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
    /// How load is offered.
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
    Closed {
        /// Workers in total, 1 to 1,000,000.
        concurrency: u32,
    },
    /// Open loop: sends on a schedule of intended times over `concurrency`
    /// connections at the start; latency counts from the intended time.
    /// When every connection of an agent is busy at a send's time, the
    /// agent opens one more, up to `max_connections`.
    Open {
        /// The rate over time.
        shape: Shape,
        /// Connections in total at the start (by default enough for the
        /// peak rate at ~2 ms per request).
        concurrency: u32,
        /// The most connections each agent may open (`None`: the agent's
        /// default, [`DEFAULT_MAX_CONNECTIONS`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        max_connections: Option<u32>,
    },
}

impl Load {
    /// Workers (closed loop) or connections (open loop), in total.
    pub fn concurrency(&self) -> u32 {
        match self {
            Load::Closed { concurrency } | Load::Open { concurrency, .. } => *concurrency,
        }
    }
}

/// Open loop: the most connections an agent opens when its phase does not
/// say (`max_connections`); the agent holds the same number.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1_000;

/// An open-loop rate over time: segments in order, each linear from `from`
/// to `to` requests per second; the last one's `to` holds after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shape {
    /// At least one.
    pub segments: Vec<Segment>,
    /// How sends are spaced at the scheduled rate.
    pub arrival: Arrival,
    /// How late a send may go out so that sends close together share one
    /// wake-up of the agent (`send_slack`, 0 to [`MAX_SEND_SLACK`]): less
    /// CPU per send at high rates, for up to this much send lag (which the
    /// latencies include). Zero: every send at its own instant.
    #[serde(skip_serializing_if = "Duration::is_zero", with = "duration_text")]
    pub send_slack: Duration,
}

/// The most `send_slack` a phase may ask for: well under the 5 ms at which
/// a late send counts against the agent (the limited rule).
pub const MAX_SEND_SLACK: Duration = Duration::from_millis(1);

/// One stretch of an open-loop rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Segment {
    /// How long the stretch lasts.
    #[serde(with = "duration_text")]
    pub duration: Duration,
    /// Requests per second at its start.
    pub from: f64,
    /// Requests per second at its end.
    pub to: f64,
}

/// How an open loop spaces its sends.
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

    /// The shape as the wire carries it, every rate times `scale`.
    pub(crate) fn to_pb(&self, scale: f64) -> pb::LoadShape {
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
            send_slack_us: u32::try_from(self.send_slack.as_micros()).unwrap_or(u32::MAX),
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
            max_connections: match &self.load {
                Load::Open {
                    max_connections: Some(n),
                    ..
                } => *n,
                _ => 0,
            },
        }
    }

    /// Names of the ops ("" for a single unnamed one).
    pub fn op_names(&self) -> Vec<String> {
        self.ops.iter().map(|o| o.name.clone()).collect()
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
    max_connections: Option<Spanned<i64>>,
    rate: Option<Spanned<Number>>,
    ramp: Option<Spanned<RawRamp>>,
    steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
    arrival: Option<Spanned<String>>,
    send_slack: Option<Spanned<String>>,
    think: Option<Spanned<RawLatency>>,
    until: Option<Spanned<RawUntil>>,
    seed: Option<Spanned<i64>>,
    // The single-workload form: one of these, and no `op`.
    http: Option<Spanned<RawHttp>>,
    synthetic: Option<Spanned<RawSynthetic>>,
    tcp: Option<Spanned<RawTcp>>,
    exec: Option<Spanned<RawExec>>,
    grpc: Option<Spanned<RawGrpc>>,
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

// ---------------------------------------------------------------- validation

/// What validation needs from the rest of the file.
pub(crate) struct Context<'a> {
    /// Agents the run asks for (for default connection counts).
    pub(crate) agents: u32,
    /// The file's generators, which templates may name.
    pub(crate) generators: &'a [GenSpec],
    /// The run's seed (`[run] seed`), the default of every phase's.
    pub(crate) seed: u64,
}

/// Validates one `[[phase]]`, step by step in the order its errors are
/// reported: the ops, the length, the load, think time, warm-up, `until`,
/// the seed.
pub(crate) fn validate_phase(
    src: &Source,
    p: Spanned<RawPhase>,
    cx: &Context,
) -> Result<Phase, SpecError> {
    let span = p.span();
    let mut p = p.into_inner();
    let name_span = p.name.span();
    let name = p.name.get_ref().clone();
    if name.trim().is_empty() {
        return Err(src.error(name_span, "phase name must not be empty"));
    }
    let at = PhaseAt {
        src,
        name: &name,
        span,
        name_span,
    };
    let tables = Tables {
        http: p.http.take(),
        synthetic: p.synthetic.take(),
        tcp: p.tcp.take(),
        exec: p.exec.take(),
        grpc: p.grpc.take(),
    };
    let inner_load = tables.inner_load();
    let ops = at.ops(tables, p.op.take(), cx.generators)?;
    let iterations = match &p.iterations {
        Some(n) => Some(src.int_within(n, 1..=i64::MAX, |v| {
            at.q(&format!(
                "iterations must be a whole number above zero, not {v}"
            ))
        })? as u64),
        None => None,
    };
    let (duration, load) = at.load(&p, inner_load, iterations, cx.agents)?;
    let think = at.think(p.think.take(), &load)?;
    let warmup = match &p.warmup {
        Some(w) => validate_warmup(src, w, duration)?,
        None => Duration::ZERO,
    };
    let until = match p.until.take() {
        None => None,
        Some(u) => Some(validate_until(src, u, &name)?),
    };
    let seed = match &p.seed {
        Some(s) => src.int_within(s, 0..=i64::MAX, |_| at.q("seed must be zero or more"))? as u64,
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

/// One phase under validation: its errors say `phase "NAME": ...`.
struct PhaseAt<'a> {
    src: &'a Source<'a>,
    name: &'a str,
    /// The whole `[[phase]]` table.
    span: Range<usize>,
    name_span: Range<usize>,
}

/// The load keys of a phase's single workload table (the original form).
type InnerLoad = (Option<Spanned<i64>>, Option<Spanned<Number>>);

impl PhaseAt<'_> {
    fn q(&self, what: &str) -> String {
        format!("phase {:?}: {what}", self.name)
    }

    fn error(&self, span: Range<usize>, what: &str) -> SpecError {
        self.src.error(span, self.q(what))
    }

    /// What each iteration does: one single table, or `[[phase.op]]`.
    fn ops(
        &self,
        tables: Tables,
        list: Option<Spanned<Vec<Spanned<RawOp>>>>,
        generators: &[GenSpec],
    ) -> Result<Vec<Op>, SpecError> {
        let singles = tables.present();
        if let Some(second) = singles.get(1) {
            return Err(self.error(
                second.clone(),
                "has more than one of [phase.http], [phase.synthetic], [phase.tcp], [phase.exec]; give it one, or name several operations with [[phase.op]]",
            ));
        }
        if let (1, Some(l)) = (singles.len(), &list) {
            return Err(self.error(
                l.span(),
                "has both a single workload table and [[phase.op]]; put every operation in a [[phase.op]]",
            ));
        }
        if let Some(kind) = validate_kind(self.src, tables, generators, None)? {
            return Ok(vec![Op {
                name: String::new(),
                weight: 1,
                kind,
            }]);
        }
        let Some(list) = list else {
            return Err(self.error(
                self.span.clone(),
                "has no workload: add a [phase.http], [phase.tcp], [phase.exec] or [phase.synthetic] table, or operations as [[phase.op]]",
            ));
        };
        let list_span = list.span();
        let list = list.into_inner();
        if list.is_empty() {
            return Err(self.error(list_span, "[[phase.op]] is empty"));
        }
        let mut ops = Vec::new();
        for raw in list {
            let op = validate_op(self.src, raw, generators, &ops)?;
            ops.push(op);
        }
        Ok(ops)
    }

    /// The load (phase-level keys, or the original keys inside the single
    /// table) and with it the phase's length.
    fn load(
        &self,
        p: &RawPhase,
        (inner_conc, inner_rate): InnerLoad,
        iterations: Option<u64>,
        agents: u32,
    ) -> Result<(Duration, Load), SpecError> {
        if (p.concurrency.is_some() || p.rate.is_some() || p.ramp.is_some() || p.steps.is_some())
            && (inner_conc.is_some() || inner_rate.is_some())
        {
            return Err(self.error(
                self.span.clone(),
                "sets its load both in the phase and inside its workload table; keep `concurrency`/`rate` in one place (the phase)",
            ));
        }
        let rate = p.rate.as_ref().or(inner_rate.as_ref());
        let concurrency = match p.concurrency.as_ref().or(inner_conc.as_ref()) {
            Some(c) => Some(self.src.int_within(c, 1..=1_000_000, |v| {
                self.q(&format!(
                    "concurrency must be a whole number from 1 to 1000000, not {v}"
                ))
            })? as u32),
            None => None,
        };
        let shapes = [
            rate.map(Spanned::span),
            p.ramp.as_ref().map(Spanned::span),
            p.steps.as_ref().map(Spanned::span),
        ];
        if let Some(second) = shapes.into_iter().flatten().nth(1) {
            return Err(self.error(
                second,
                "takes one of `rate`, `ramp` and `steps`, not several",
            ));
        }
        let duration_given = match &p.duration {
            Some(d) => Some(positive(self.src, d, "phase.duration")?),
            None => None,
        };
        let segments = self.segments(rate, p, duration_given)?;
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
                return Err(self.error(
                    self.name_span.clone(),
                    "needs `duration = \"30s\"` or `iterations = N` (or a ramp/steps whose length is the phase's)",
                ));
            }
        };
        let arrival = self.arrival(p.arrival.as_ref(), segments.is_empty())?;
        let load = if segments.is_empty() {
            let Some(concurrency) = concurrency else {
                return Err(self.error(
                    self.span.clone(),
                    "needs `concurrency = N` (closed loop) or `rate = R`, `ramp = {...}` or `steps = [...]` (open loop)",
                ));
            };
            if let Some(m) = &p.max_connections {
                return Err(self.error(
                    m.span(),
                    "max_connections is for open loop (`rate`, `ramp` or `steps`); in closed loop `concurrency` is the connections",
                ));
            }
            if let Some(s) = &p.send_slack {
                return Err(self.error(
                    s.span(),
                    "send_slack is for open loop (`rate`, `ramp` or `steps`); closed loop sends when a worker is free",
                ));
            }
            Load::Closed { concurrency }
        } else {
            let shape = Shape {
                segments,
                arrival,
                send_slack: self.send_slack(p.send_slack.as_ref())?,
            };
            // Enough connections for ~2 ms of service time per request at the
            // peak, at least 4 per agent, to start with; the agents open more
            // when all are busy.
            let agents = agents.max(1);
            let default =
                ((shape.peak() / 500.0).ceil() as u32).clamp(4 * agents, 1024.max(4 * agents));
            let max_connections = self.max_connections(p, concurrency, agents)?;
            let cap = max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
            Load::Open {
                shape,
                concurrency: concurrency.unwrap_or(default.min(cap.saturating_mul(agents))),
                max_connections,
            }
        };
        Ok((duration, load))
    }

    /// Open loop: `send_slack`, zero to [`MAX_SEND_SLACK`] (zero if absent).
    fn send_slack(&self, slack: Option<&Spanned<String>>) -> Result<Duration, SpecError> {
        let Some(s) = slack else {
            return Ok(Duration::ZERO);
        };
        let d = self.src.duration(s, &self.q("send_slack"))?;
        if d > MAX_SEND_SLACK {
            return Err(self.error(
                s.span(),
                &format!(
                    "send_slack = {:?} is over the most a send may wait, \"1ms\" (a send later than 5 ms counts against the agent)",
                    s.get_ref()
                ),
            ));
        }
        Ok(d)
    }

    /// Open loop: `max_connections` (per agent), checked against the
    /// connections the phase starts with (`concurrency`, in total).
    fn max_connections(
        &self,
        p: &RawPhase,
        concurrency: Option<u32>,
        agents: u32,
    ) -> Result<Option<u32>, SpecError> {
        let Some(m) = &p.max_connections else {
            return Ok(None);
        };
        let max = self.src.int_within(m, 1..=1_000_000, |v| {
            self.q(&format!(
                "max_connections must be a whole number from 1 to 1000000, not {v}"
            ))
        })? as u32;
        if let Some(c) = concurrency
            && c.div_ceil(agents) > max
        {
            return Err(self.error(
                m.span(),
                &format!(
                    "max_connections = {max} (per agent) is below the {} connections per agent that `concurrency = {c}` starts with",
                    c.div_ceil(agents)
                ),
            ));
        }
        Ok(Some(max))
    }

    /// The open-loop rate's segments from `rate` (held for the phase),
    /// `ramp` or `steps`; none for a closed loop.
    fn segments(
        &self,
        rate: Option<&Spanned<Number>>,
        p: &RawPhase,
        duration_given: Option<Duration>,
    ) -> Result<Vec<Segment>, SpecError> {
        let mut segments = Vec::new();
        if let Some(r) = rate {
            let v = rate_value(self.src, r, &self.q("rate"), false)?;
            segments.push(Segment {
                duration: duration_given.unwrap_or(ITERATIONS_CAP),
                from: v,
                to: v,
            });
        }
        if let Some(r) = &p.ramp {
            let ramp = r.get_ref();
            let from = rate_value(self.src, &ramp.from, &self.q("ramp.from"), true)?;
            let to = rate_value(self.src, &ramp.to, &self.q("ramp.to"), true)?;
            if from == 0.0 && to == 0.0 {
                return Err(self.error(r.span(), "ramp goes from 0 to 0: nothing to send"));
            }
            segments.push(Segment {
                duration: positive(self.src, &ramp.over, "ramp.over")?,
                from,
                to,
            });
        }
        if let Some(steps) = &p.steps {
            if steps.get_ref().is_empty() {
                return Err(self.error(
                    steps.span(),
                    "steps is empty; write steps = [{ rate = 100, for = \"30s\" }, ...]",
                ));
            }
            for s in steps.get_ref() {
                let step = s.get_ref();
                let v = rate_value(self.src, &step.rate, &self.q("steps.rate"), true)?;
                segments.push(Segment {
                    duration: positive(self.src, &step.hold, "steps.for")?,
                    from: v,
                    to: v,
                });
            }
        }
        Ok(segments)
    }

    /// `arrival`, only for an open loop.
    fn arrival(&self, a: Option<&Spanned<String>>, closed: bool) -> Result<Arrival, SpecError> {
        let Some(a) = a else {
            return Ok(Arrival::Uniform);
        };
        if closed {
            return Err(self.error(
                a.span(),
                "arrival is for open-loop phases (rate, ramp or steps)",
            ));
        }
        match a.get_ref().as_str() {
            "uniform" => Ok(Arrival::Uniform),
            "poisson" => Ok(Arrival::Poisson),
            other => Err(self.error(
                a.span(),
                &format!("arrival {other:?} is not \"uniform\" (evenly spaced) or \"poisson\""),
            )),
        }
    }

    /// `think`, only for a closed loop.
    fn think(
        &self,
        t: Option<Spanned<RawLatency>>,
        load: &Load,
    ) -> Result<Option<Latency>, SpecError> {
        let Some(t) = t else {
            return Ok(None);
        };
        if matches!(load, Load::Open { .. }) {
            return Err(self.error(
                t.span(),
                "think time is for closed-loop phases; an open loop already paces its sends",
            ));
        }
        let span = t.span();
        validate_latency(t.into_inner())
            .map(Some)
            .map_err(|why| self.error(span, &format!("think: {why}")))
    }
}

/// `warmup`: whole windows, shorter than the phase.
fn validate_warmup(
    src: &Source,
    w: &Spanned<String>,
    duration: Duration,
) -> Result<Duration, SpecError> {
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
    Ok(d)
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
            latency.push((key.to_string(), q, micros(d)));
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
