//! Thresholds: pass/fail limits on a run's results, like k6's. A workload's
//! `[[threshold]]`s are logged in `RunStarted`; `report --threshold` may
//! judge a run against others. Each is measured over the report's headline
//! windows (warm-up left out) of its scope: one phase or every reported
//! phase, one operation or all. Run control judges those with `abort = true`
//! window by window ([`crossed_in`]), as it judges `until`.

use fleetbench::clock::format_us;
use fleetbench::pb;

use crate::model::{ThresholdReport, ThresholdResult};
use crate::options::ReportOptions;
use crate::state::{Fold, PhaseAgg, WindowAgg};
use crate::windowing::Windowing;

/// What a threshold limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency at a quantile (0 to 1; 1 is the largest), µs.
    Latency(f64),
    /// Failed requests / requests, 0 to 1.
    ErrorRate,
    /// Requests per second of measured time.
    Throughput,
    /// Open loop: requests finished / requests the schedule called for.
    AchievedRatio,
}

impl Metric {
    /// The metric a threshold names: p50, p90, p95, p99, p999, max,
    /// error_rate, throughput or achieved_ratio.
    pub fn parse(name: &str) -> Option<Metric> {
        Some(match name {
            "p50" => Metric::Latency(0.5),
            "p90" => Metric::Latency(0.9),
            "p95" => Metric::Latency(0.95),
            "p99" => Metric::Latency(0.99),
            "p999" => Metric::Latency(0.999),
            "max" => Metric::Latency(1.0),
            "error_rate" => Metric::ErrorRate,
            "throughput" => Metric::Throughput,
            "achieved_ratio" => Metric::AchievedRatio,
            _ => return None,
        })
    }

    /// The value must stay below the limit (latencies, the error rate);
    /// else above it (throughput, the achieved ratio).
    pub fn below(self) -> bool {
        matches!(self, Metric::Latency(_) | Metric::ErrorRate)
    }

    /// The unit of its values in the JSON: "us", "ratio" or "rps".
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Latency(_) => "us",
            Metric::ErrorRate | Metric::AchievedRatio => "ratio",
            Metric::Throughput => "rps",
        }
    }

    /// A value as people read it: "5.21ms", "2.35%", "812.3/s".
    pub fn format(self, v: f64) -> String {
        match self {
            Metric::Latency(_) => format_us(v),
            Metric::ErrorRate | Metric::AchievedRatio => {
                let pct = v * 100.0;
                if pct == pct.round() {
                    format!("{pct:.0}%")
                } else {
                    format!("{pct:.2}%")
                }
            }
            Metric::Throughput => {
                if v == v.round() {
                    format!("{v:.0}/s")
                } else {
                    format!("{v:.1}/s")
                }
            }
        }
    }

    /// The metric's value over `w`, which covers `seconds`; None when it
    /// cannot be told (no request finished; no schedule for the achieved
    /// ratio).
    pub fn measure(self, w: &WindowAgg, seconds: f64) -> Option<f64> {
        let requests = w.requests();
        match self {
            Metric::Latency(_) if w.latency.is_empty() => None,
            Metric::Latency(q) if q >= 1.0 => Some(w.latency.max() as f64),
            Metric::Latency(q) => Some(w.latency.value_at_quantile(q) as f64),
            Metric::ErrorRate => (requests > 0).then(|| w.error_count() as f64 / requests as f64),
            Metric::Throughput => (seconds > 0.0).then(|| requests as f64 / seconds),
            Metric::AchievedRatio => {
                (w.scheduled > 0).then(|| requests as f64 / w.scheduled as f64)
            }
        }
    }

    /// `value` is on the wrong side of `limit` (equal is on the wrong side:
    /// `p99 < 20ms` wants strictly less).
    pub fn crosses(self, value: f64, limit: f64) -> bool {
        if self.below() {
            value >= limit
        } else {
            value <= limit
        }
    }
}

/// Whether threshold `t` is crossed by windows merged into `w`, which
/// cover `seconds`: "threshold load:p99<20ms crossed: p99 25.10ms". Not
/// judged (None) when the metric cannot be told from them: no request, no
/// schedule. Run control calls it for `abort = true`.
pub fn crossed_in(t: &pb::Threshold, w: &WindowAgg, seconds: f64) -> Option<String> {
    let metric = Metric::parse(&t.metric)?;
    let value = metric.measure(w, seconds)?;
    metric.crosses(value, t.limit).then(|| {
        format!(
            "threshold {} crossed: {} {}",
            t.text,
            t.metric,
            metric.format(value)
        )
    })
}

/// Judges every threshold of the report (`options.thresholds`, else the
/// logged ones) over the reported phases.
pub(crate) fn judge_all(fold: &Fold, options: &ReportOptions) -> Vec<ThresholdReport> {
    let run = fold.run.as_ref();
    let thresholds: &[pb::Threshold] = match &options.thresholds {
        Some(given) => given,
        None => run.map_or(&[], |r| &r.thresholds),
    };
    let start = run.map_or(0, |r| r.started_at_us);
    thresholds
        .iter()
        .enumerate()
        .map(|(i, t)| {
            // A logged threshold that stopped the run: where, and why.
            let aborted = options
                .thresholds
                .is_none()
                .then(|| aborted_by(fold, i))
                .flatten();
            judge(fold, t, start, options, aborted)
        })
        .collect()
}

/// Where threshold `index` of the log stopped the run, and the value that
/// crossed: "window 3 of phase load (p99 25.10ms)".
fn aborted_by(fold: &Fold, index: usize) -> Option<String> {
    fold.phases.values().find_map(|p| {
        let stop = p.stop.as_ref()?;
        (stop.threshold == Some(index as u32)).then(|| {
            // The reason run control logged: "threshold T crossed: VALUE".
            let value = stop
                .reason
                .split_once(" crossed: ")
                .map_or(stop.reason.as_str(), |(_, v)| v);
            format!("window {} of phase {} ({value})", stop.window_index, p.name)
        })
    })
}

fn judge(
    fold: &Fold,
    t: &pb::Threshold,
    run_start_us: i64,
    options: &ReportOptions,
    aborted: Option<String>,
) -> ThresholdReport {
    let mut report = ThresholdReport {
        threshold: t.text.clone(),
        metric: t.metric.clone(),
        phase: (!t.phase.is_empty()).then(|| t.phase.clone()),
        op: (!t.op.is_empty()).then(|| t.op.clone()),
        limit: t.limit,
        measured: None,
        unit: "",
        result: ThresholdResult::Failed,
        abort: t.abort,
        aborted: aborted.clone(),
        text: String::new(),
    };
    let Some(metric) = Metric::parse(&t.metric) else {
        report.result = ThresholdResult::Skipped;
        report.text = format!(
            "not judged: this fleetbench does not know metric {:?}",
            t.metric
        );
        return report;
    };
    report.unit = metric.unit();
    let bound = format!(
        "{} {}",
        if metric.below() { "below" } else { "above" },
        metric.format(t.limit)
    );
    let scope = match scope(fold, t) {
        Ok(scope) => scope,
        Err(why) => {
            report.result = ThresholdResult::Skipped;
            report.text = format!("not judged: {why}");
            return report;
        }
    };
    let mut total = WindowAgg::new();
    let mut seconds = 0.0;
    for p in scope {
        let at = Windowing::new(p, run_start_us, options);
        let phase = at.series(&p.windows);
        // Throughput is per second of the phase's measured time, an op's too.
        seconds += phase.counted_us as f64 / 1e6;
        if t.op.is_empty() {
            total.merge(&phase.total);
        } else if let Some(windows) = p.ops.get(&t.op) {
            total.merge(&at.series(windows).total);
        }
    }
    report.measured = metric.measure(&total, seconds);
    let (result, text) = match report.measured {
        None => (
            ThresholdResult::Failed,
            format!(
                "{} not measured ({bound} wanted): {}",
                t.metric,
                unmeasured(metric)
            ),
        ),
        Some(v) if metric.crosses(v, t.limit) => (
            ThresholdResult::Failed,
            format!("{} {}, not {bound}", t.metric, metric.format(v)),
        ),
        Some(v) => (
            ThresholdResult::Passed,
            format!("{} {}, {bound}", t.metric, metric.format(v)),
        ),
    };
    report.result = result;
    report.text = text;
    if let Some(at) = aborted {
        report.result = ThresholdResult::Failed;
        report.text = format!("{}; crossed in {at}, it stopped the run", report.text);
    }
    report
}

/// The phases a threshold holds in: the one it names, or every reported
/// one. Err (not judged) when its phase or op is not in this report (a
/// replay filter left it out).
fn scope<'a>(fold: &'a Fold, t: &pb::Threshold) -> Result<Vec<&'a PhaseAgg>, String> {
    let reported = fold.reported_phases();
    let chosen: Vec<&PhaseAgg> = if t.phase.is_empty() {
        reported.collect()
    } else {
        let named: Vec<&PhaseAgg> = reported.filter(|p| p.name == t.phase).collect();
        if named.is_empty() {
            return Err(format!("phase {} is not in this report", t.phase));
        }
        named
    };
    if !t.op.is_empty() && !fold.filter.ops.is_empty() && !fold.filter.ops.contains(&t.op) {
        return Err(format!("operation {} is not in this report", t.op));
    }
    Ok(chosen)
}

/// Why a metric had no value.
fn unmeasured(metric: Metric) -> &'static str {
    match metric {
        Metric::AchievedRatio => "no open-loop schedule in its scope",
        Metric::Throughput => "no measured time in its scope",
        Metric::Latency(_) | Metric::ErrorRate => "no request finished in its scope",
    }
}
