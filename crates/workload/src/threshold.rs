//! `[[threshold]]`: pass/fail limits on the run's results, like k6's
//! thresholds. A table names a metric with its comparison and limit, and
//! optionally the phase and the operation it holds for, and whether
//! crossing it stops the run:
//!
//! ```toml
//! [[threshold]]
//! phase = "load"          # default: the whole run
//! op = "get"              # default: every operation
//! p99 = "< 20ms"
//! error_rate = "< 1%"
//! abort = true            # stop the run at the first window that crosses
//! ```
//!
//! Each metric key of a table is one threshold. The same threshold fits on
//! one line, as `report --threshold` takes it: `[PHASE][/OP]:METRIC<LIMIT`
//! (`load:p99<20ms`, `load/get:p99<20ms`, `/get:p99<20ms`,
//! `error_rate<1%`). The log records them (`RunStarted.thresholds`); the
//! fold judges them.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use fleetbench::clock::parse_duration;
use fleetbench::pb;

use crate::phase::{Load, Phase};
use crate::source::{Source, SpecError};

/// The metrics a threshold may limit, in the order a table's keys are read.
pub const METRICS: [&str; 9] = [
    "p50",
    "p90",
    "p95",
    "p99",
    "p999",
    "max",
    "error_rate",
    "throughput",
    "achieved_ratio",
];

/// A validated threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// One of [`METRICS`].
    pub metric: String,
    /// The phase it holds in (None: the whole run).
    pub phase: Option<String>,
    /// The operation it holds for (None: every one).
    pub op: Option<String>,
    /// Latencies in µs and error_rate (a ratio) must stay below it;
    /// throughput (requests/s) and achieved_ratio (a ratio) above it.
    pub limit: f64,
    /// Crossing it in a window stops the run.
    pub abort: bool,
    /// The threshold as one line, like "load:p99<20ms".
    pub text: String,
}

impl Threshold {
    /// Parses a threshold written on one line: `[PHASE][/OP]:METRIC<LIMIT`
    /// (or `>LIMIT` for throughput and achieved_ratio), like `p99<20ms`,
    /// `load:p99<20ms`, `load/get:error_rate<1%`, `throughput>900/s`.
    pub fn parse(line: &str) -> Result<Threshold, String> {
        let line = line.trim();
        let Some(at) = line.find(['<', '>']) else {
            return Err(format!(
                "threshold {line:?} has no < or >: write it like p99<20ms, load:p99<20ms or error_rate<1%"
            ));
        };
        let (left, limit) = line.split_at(at);
        let (scope, metric) = left.rsplit_once(':').unwrap_or(("", left));
        let (phase, op) = scope.rsplit_once('/').unwrap_or((scope, ""));
        let metric = metric.trim();
        if !METRICS.contains(&metric) {
            return Err(format!(
                "threshold {line:?}: unknown metric {metric:?} (use {})",
                METRICS.join(", ")
            ));
        }
        if !op.is_empty() && !plain(op) {
            return Err(format!(
                "threshold {line:?}: operation name {op:?} must be letters, digits, '-', '_' or '.'"
            ));
        }
        let (limit, written) =
            limit_of(metric, limit).map_err(|e| format!("threshold {line:?}: {e}"))?;
        let phase = (!phase.is_empty()).then(|| phase.to_string());
        let op = (!op.is_empty()).then(|| op.to_string());
        Ok(Threshold {
            text: one_line(phase.as_deref(), op.as_deref(), metric, &written),
            metric: metric.to_string(),
            phase,
            op,
            limit,
            abort: false,
        })
    }

    /// The threshold as the log records it.
    pub fn to_pb(&self) -> pb::Threshold {
        pb::Threshold {
            metric: self.metric.clone(),
            phase: self.phase.clone().unwrap_or_default(),
            op: self.op.clone().unwrap_or_default(),
            limit: self.limit,
            abort: self.abort,
            text: self.text.clone(),
        }
    }
}

/// "load/get:p99<20ms": the scope (if any), then the metric and the
/// comparison as written.
fn one_line(phase: Option<&str>, op: Option<&str>, metric: &str, comparison: &str) -> String {
    let scope = match (phase, op) {
        (None, None) => String::new(),
        (Some(p), None) => format!("{p}:"),
        (p, Some(o)) => format!("{}/{o}:", p.unwrap_or("")),
    };
    format!("{scope}{metric}{comparison}")
}

fn plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A comparison and limit, like "< 20ms", for `metric`: the limit in the
/// metric's unit (µs, ratio, requests/s), and the comparison as it reads on
/// one line ("<20ms").
fn limit_of(metric: &str, text: &str) -> Result<(f64, String), String> {
    let text = text.trim();
    let below = !matches!(metric, "throughput" | "achieved_ratio");
    let (want, name) = if below {
        ('<', "below")
    } else {
        ('>', "above")
    };
    let Some(value) = text.strip_prefix(want) else {
        return Err(format!(
            "{metric} must stay {name} its limit: write it as {metric} {want} LIMIT, like {}",
            example(metric)
        ));
    };
    let value = value.trim();
    if value.starts_with('=') {
        return Err(format!(
            "{metric} takes {want} (strictly {name}), not {want}=: write it like {}",
            example(metric)
        ));
    }
    let limit = match metric {
        "error_rate" => {
            let v = ratio(value)?;
            if !(v > 0.0 && v <= 1.0) {
                return Err(format!(
                    "error_rate's limit must be above 0 and at most 1 (100%), not {value}"
                ));
            }
            v
        }
        "achieved_ratio" => {
            let v = ratio(value)?;
            if !(0.0..1.0).contains(&v) {
                return Err(format!(
                    "achieved_ratio's limit must be at least 0 and below 1 (100%), not {value}"
                ));
            }
            v
        }
        "throughput" => {
            let n = value.strip_suffix("/s").unwrap_or(value).trim();
            match n.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => v,
                _ => {
                    return Err(format!(
                        "throughput's limit {value:?} is not a rate: write requests per second, like 900 or 900/s"
                    ));
                }
            }
        }
        _ => {
            let d = parse_duration(value).map_err(|e| {
                format!("{metric}'s limit {value:?} is not a duration ({e}); write it like 20ms")
            })?;
            if d.is_zero() {
                return Err(format!("{metric}'s limit must be longer than zero"));
            }
            d.as_secs_f64() * 1e6
        }
    };
    Ok((limit, format!("{want}{value}")))
}

/// "1%" -> 0.01, "0.01" -> 0.01.
fn ratio(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(n) => (n.trim(), 0.01),
        None => (text, 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| v * scale)
        .ok_or_else(|| format!("{text:?} is not a ratio: write it like 0.01 or 1%"))
}

fn example(metric: &str) -> String {
    let limit = match metric {
        "error_rate" => "< 1%",
        "throughput" => "> 900/s",
        "achieved_ratio" => "> 95%",
        _ => "< 20ms",
    };
    format!("{metric} = \"{limit}\"")
}

// ---------------------------------------------------------------- raw TOML

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawThreshold {
    phase: Option<Spanned<String>>,
    op: Option<Spanned<String>>,
    abort: Option<bool>,
    p50: Option<Spanned<String>>,
    p90: Option<Spanned<String>>,
    p95: Option<Spanned<String>>,
    p99: Option<Spanned<String>>,
    p999: Option<Spanned<String>>,
    max: Option<Spanned<String>>,
    error_rate: Option<Spanned<String>>,
    throughput: Option<Spanned<String>>,
    achieved_ratio: Option<Spanned<String>>,
}

impl RawThreshold {
    /// The metric keys given, in [`METRICS`]' order.
    fn limits(&self) -> Vec<(&'static str, &Spanned<String>)> {
        let keys = [
            &self.p50,
            &self.p90,
            &self.p95,
            &self.p99,
            &self.p999,
            &self.max,
            &self.error_rate,
            &self.throughput,
            &self.achieved_ratio,
        ];
        METRICS
            .iter()
            .zip(keys)
            .filter_map(|(m, v)| v.as_ref().map(|v| (*m, v)))
            .collect()
    }
}

// ---------------------------------------------------------------- validation

/// Every `[[threshold]]` table, against the file's phases: its phase and
/// operation exist, an achieved_ratio has an open-loop phase to hold in.
pub(crate) fn validate_thresholds(
    src: &Source,
    raw: Vec<Spanned<RawThreshold>>,
    phases: &[Phase],
) -> Result<Vec<Threshold>, SpecError> {
    let mut out = Vec::new();
    for table in raw {
        let span = table.span();
        let t = table.into_inner();
        let phase = match &t.phase {
            Some(p) => Some(named_phase(src, p, phases)?),
            None => None,
        };
        let scope: Vec<&Phase> = match phase {
            Some(p) => vec![p],
            None => phases.iter().collect(),
        };
        if let Some(op) = &t.op {
            check_op(src, op, &scope)?;
        }
        let limits = t.limits();
        if limits.is_empty() {
            return Err(src.error(
                span,
                "this [[threshold]] has no limit: give one, like p99 = \"< 20ms\" or error_rate = \"< 1%\"",
            ));
        }
        for (metric, value) in limits {
            out.push(threshold(src, &t, metric, value, &scope, span.clone())?);
        }
    }
    Ok(out)
}

/// One metric key of a table.
fn threshold(
    src: &Source,
    t: &RawThreshold,
    metric: &str,
    value: &Spanned<String>,
    scope: &[&Phase],
    span: Range<usize>,
) -> Result<Threshold, SpecError> {
    let (limit, written) = limit_of(metric, value.get_ref())
        .map_err(|e| src.error(value.span(), format!("threshold.{metric}: {e}")))?;
    if metric == "achieved_ratio" && !scope.iter().any(|p| matches!(p.load, Load::Open { .. })) {
        let span = t.phase.as_ref().map_or(span, Spanned::span);
        return Err(src.error(
            span,
            "threshold.achieved_ratio holds for open-loop phases (with a rate), and this threshold's has none",
        ));
    }
    let phase = t.phase.as_ref().map(|p| p.get_ref().clone());
    let op = t.op.as_ref().map(|o| o.get_ref().clone());
    Ok(Threshold {
        text: one_line(phase.as_deref(), op.as_deref(), metric, &written),
        metric: metric.to_string(),
        phase,
        op,
        limit,
        abort: t.abort.unwrap_or(false),
    })
}

fn named_phase<'a>(
    src: &Source,
    name: &Spanned<String>,
    phases: &'a [Phase],
) -> Result<&'a Phase, SpecError> {
    phases
        .iter()
        .find(|p| &p.name == name.get_ref())
        .ok_or_else(|| {
            let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
            src.error(
                name.span(),
                format!(
                    "threshold.phase {:?} is not a phase of this file (its phases: {})",
                    name.get_ref(),
                    names.join(", ")
                ),
            )
        })
}

fn check_op(src: &Source, op: &Spanned<String>, scope: &[&Phase]) -> Result<(), SpecError> {
    src.plain_name(op.get_ref(), op.span(), "threshold.op")?;
    if scope
        .iter()
        .any(|p| p.ops.iter().any(|o| &o.name == op.get_ref()))
    {
        return Ok(());
    }
    let names: Vec<&str> = scope
        .iter()
        .flat_map(|p| p.ops.iter().map(|o| o.name.as_str()))
        .filter(|n| !n.is_empty())
        .collect();
    Err(src.error(
        op.span(),
        if names.is_empty() {
            format!(
                "threshold.op {:?}: the phase has no named operations ([[phase.op]])",
                op.get_ref()
            )
        } else {
            format!(
                "threshold.op {:?} is not an operation of {} (its operations: {})",
                op.get_ref(),
                if scope.len() == 1 {
                    "the phase"
                } else {
                    "any phase"
                },
                names.join(", ")
            )
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::Threshold;

    #[test]
    fn one_line_thresholds_parse_with_their_scope() {
        let t = Threshold::parse("p99<20ms").unwrap();
        assert_eq!(
            (t.metric.as_str(), t.phase, t.op, t.limit, t.text.as_str()),
            ("p99", None, None, 20_000.0, "p99<20ms")
        );
        let t = Threshold::parse(" load:p99 < 1.5ms").unwrap();
        assert_eq!((t.phase.as_deref(), t.limit), (Some("load"), 1500.0));
        assert_eq!(t.text, "load:p99<1.5ms");
        let t = Threshold::parse("load/get:error_rate<1%").unwrap();
        assert_eq!(
            (t.phase.as_deref(), t.op.as_deref()),
            (Some("load"), Some("get"))
        );
        assert!((t.limit - 0.01).abs() < 1e-12);
        let t = Threshold::parse("/get:max<1s").unwrap();
        assert_eq!(
            (t.phase, t.op.as_deref(), t.limit),
            (None, Some("get"), 1e6)
        );
        assert_eq!(t.text, "/get:max<1s");
        // A phase name may hold ':' (the last one before the metric ends it).
        let t = Threshold::parse("a:b:throughput>900/s").unwrap();
        assert_eq!((t.phase.as_deref(), t.limit), (Some("a:b"), 900.0));
        let t = Threshold::parse("achieved_ratio>95%").unwrap();
        assert!((t.limit - 0.95).abs() < 1e-12);
        assert_eq!(Threshold::parse("error_rate<0.5").unwrap().limit, 0.5);
    }

    #[test]
    fn one_line_thresholds_are_rejected_with_what_to_write() {
        for (bad, want) in [
            ("p99 20ms", "has no < or >"),
            ("p98<20ms", "unknown metric \"p98\""),
            ("p99>20ms", "p99 must stay below its limit"),
            ("throughput<900", "throughput must stay above its limit"),
            ("p99<=20ms", "not <="),
            ("p99<fast", "is not a duration"),
            ("p99<0ms", "longer than zero"),
            ("error_rate<0", "above 0 and at most 1"),
            ("error_rate<150%", "above 0 and at most 1"),
            ("achieved_ratio>1", "below 1"),
            ("throughput>lots", "is not a rate"),
            ("load/g t:p99<1ms", "operation name \"g t\""),
        ] {
            let e = Threshold::parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
