//! The cells and sentences every view shares: a phase's latency cells, the
//! lines that say a load generator limited a phase, where run control
//! stopped it, what load it was offered and how late the generator sent,
//! the verdict's headline, its reasons and the thresholds' cells, what
//! became of a service that died, a quoted CSV field, and the
//! right-aligned number columns of a text table. They
//! live here, used by the table, CSV, HTML, compare and export views alike,
//! so that every format says a thing in the same words.

use std::ops::Range;

use comfy_table::{CellAlignment, Table};

use fleetbench::clock::format_us;
use fleetbench_fold::{
    LatencyReport, LimitedAgent, Metric, PhaseReport, Reason, Report, ServiceReport, StopReport,
    ThresholdReport, ThresholdResult, Verdict,
};

/// p50, p90, p99, p99.9 and max of a phase, as people read them ("-" when
/// the phase has no latency).
pub(crate) fn latency_cells(p: &PhaseReport) -> [String; 5] {
    latency_of(p.latency_us.as_ref())
}

/// p50, p90, p99, p99.9 and max, as people read them ("-" without latency).
pub(crate) fn latency_of(l: Option<&LatencyReport>) -> [String; 5] {
    match l {
        Some(l) => [
            format_us(l.p50 as f64),
            format_us(l.p90 as f64),
            format_us(l.p99 as f64),
            format_us(l.p999 as f64),
            format_us(l.max as f64),
        ],
        None => std::array::from_fn(|_| "-".to_string()),
    }
}

/// "in phase P the numbers describe agent A, not the target: REASONS", as
/// every format says it.
pub(crate) fn limited_text(phase: &str, l: &LimitedAgent) -> String {
    format!(
        "in phase {phase} the numbers describe agent {}, not the target: {}",
        l.agent,
        l.reasons.join("; ")
    )
}

/// "stopped at window 12 (t=12s, rate 1200/s): p99 23ms > 20ms".
pub(crate) fn stop_text(s: &StopReport) -> String {
    let rate = if s.rate > 0.0 {
        format!(", rate {}/s", trim_number(s.rate))
    } else {
        String::new()
    };
    format!(
        "stopped at window {} (t={}s{rate}): {}",
        s.window_index,
        trim_number(s.at_s),
        if s.reason.is_empty() {
            "no reason given"
        } else {
            &s.reason
        }
    )
}

/// What became of a service that exited by itself, as every format says
/// it: "SERVICE DIED: target (pid 42) exited during phase load, 3.2s in:
/// killed by signal 9 (SIGKILL); the results after that are not the
/// service's". None for a service that was never started: the run's reason
/// says why.
pub(crate) fn service_text(s: &ServiceReport) -> Option<String> {
    if s.state != "exited" {
        return None;
    }
    let who = match (s.host.is_empty(), s.pid) {
        (true, 0) => s.name.clone(),
        (true, pid) => format!("{} (pid {pid})", s.name),
        (false, 0) => format!("{} on {}", s.name, s.host),
        (false, pid) => format!("{} on {} (pid {pid})", s.name, s.host),
    };
    let how = if s.exit_status.is_empty() {
        "exit status unknown".to_string()
    } else {
        s.exit_status.clone()
    };
    Some(if s.died_during_run {
        format!(
            "SERVICE DIED: {who} exited {}: {how}; the results after that do not measure the service",
            s.when
        )
    } else {
        format!("service {who} exited before it was ready: {how}")
    })
}

/// The heading of a service's stderr tail.
pub(crate) fn stderr_heading(s: &ServiceReport) -> String {
    format!("the last lines {} wrote to stderr:", s.name)
}

/// Open loop: what the schedule offered against what was sent.
pub(crate) fn offered_line(p: &PhaseReport) -> Option<String> {
    (p.scheduled > 0).then(|| {
        format!(
            "{}: offered {} requests (the schedule), achieved {} ({:.1}%)",
            p.name,
            p.scheduled,
            p.requests,
            p.requests as f64 * 100.0 / p.scheduled as f64
        )
    })
}

/// The verdict's headline: "VERDICT: FAILED — REASON" for one reason,
/// "VERDICT: INVALID — 3 reasons:" for several (listed after it by
/// [`reason_text`]), "VERDICT: PASSED" (with "— 2 thresholds met" when it
/// had thresholds, and ", with a warning: 1 phase load-generator-limited"
/// when a limited rule that does not void the run held).
pub(crate) fn verdict_head(r: &Report) -> String {
    let head = format!("VERDICT: {}", r.verdict.name().to_uppercase());
    match r.reasons.as_slice() {
        [] if r.verdict == Verdict::Passed => {
            let met = r
                .thresholds
                .iter()
                .filter(|t| t.result == ThresholdResult::Passed)
                .count();
            let head = match met {
                0 => head,
                1 => format!("{head} — 1 threshold met"),
                n => format!("{head} — {n} thresholds met"),
            };
            // Limited by rules that do not void the run (the agent was busy,
            // its sends still went out on time): passed, not silently.
            match r
                .phases
                .iter()
                .filter(|p| !p.generator_limited.is_empty())
                .count()
            {
                0 => head,
                n => format!(
                    "{head}, with a warning: {n} phase{} load-generator-limited",
                    if n == 1 { "" } else { "s" }
                ),
            }
        }
        [one] => format!("{head} — {}", one.message),
        many => format!("{head} — {} reasons:", many.len()),
    }
}

/// One reason as a list item: "failed: MESSAGE".
pub(crate) fn reason_text(r: &Reason) -> String {
    format!("{}: {}", r.verdict.name(), r.message)
}

/// A threshold's cells: the threshold, its result, the value measured and
/// the limit ("-" when nothing was measured).
pub(crate) fn threshold_cells(t: &ThresholdReport) -> [String; 4] {
    let metric = Metric::parse(&t.metric);
    let value = |v: f64| metric.map_or_else(|| v.to_string(), |m| m.format(v));
    let side = if metric.is_none_or(Metric::below) {
        "<"
    } else {
        ">"
    };
    [
        t.threshold.clone(),
        t.result.name().to_uppercase(),
        t.measured.map_or_else(|| "-".to_string(), value),
        format!("{side} {}", value(t.limit)),
    ]
}

/// Open loop: how late the generator itself sent ("load: send lag p50 12us
/// p99 48us max 310us (...)").
pub(crate) fn send_lag_line(p: &PhaseReport) -> Option<String> {
    p.send_lag_us.map(|l| {
        let slack = if p.send_slack_us > 0 {
            format!(
                "; send_slack {} let sends wait to share a wake-up",
                format_us(f64::from(p.send_slack_us))
            )
        } else {
            String::new()
        };
        format!(
            "{}: send lag p50 {} p99 {} max {} (the generator's own delay, included in the latency above{slack})",
            p.name,
            format_us(l.p50 as f64),
            format_us(l.p99 as f64),
            format_us(l.max as f64),
        )
    })
}

/// `12.0` -> "12", `12.5` -> "12.5".
fn trim_number(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A CSV field, quoted when it holds a separator, a quote or a line break.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Right-aligns `columns` of a text table (its numbers).
pub(crate) fn right_align(t: &mut Table, columns: Range<usize>) {
    for i in columns {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}
