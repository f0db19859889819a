//! Comparing two runs: what `coordinator compare` computes and prints.
//!
//! Both sides are [`Report`]s made by the fold, so every number here is one a
//! `report` of either run shows; this module only sets them side by side.
//! Phases are matched by name. Per phase it compares throughput, error rate
//! and latency percentiles, gives the change, and tells whether the change
//! is larger than the run-to-run noise seen in the windows: a two-sided
//! Mann-Whitney U test ([`crate::stats`]) on the per-window values of each
//! run (requests per second of each window for throughput, each window's
//! error share for the error rate, each window's p50/p90/p99/max for those
//! percentiles; p99.9 has no per-window value and is not tested). Warm-up
//! windows are left out, as in the headline numbers.
//!
//! Regression limits (`--max-regression p99=10%,throughput=5%`) are checked
//! here too: throughput lower by more than X %, a latency percentile higher
//! by more than X %, the error rate higher by more than X percentage points.
//!
//! It owns no I/O: loading the runs is the coordinator's.

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use crate::cells::{limited_text, reason_text, right_align};
use crate::format::Format;
use crate::stats::{MannWhitney, mann_whitney_u, smallest_p};
use fleetbench::clock::format_us;
use fleetbench_fold::{LimitedAgent, PhaseReport, Report, RunInfo, TimelinePoint, Verdict};

/// Significance level of the noise test.
pub const ALPHA: f64 = 0.05;

/// How the noise test is done, as the output states it.
pub const TEST: &str = "two-sided Mann-Whitney U test on per-window values (normal approximation with tie and continuity correction), significant at p < 0.05";

/// The formats `compare` offers: no CSV. HTML comes with the HTML report
/// (both runs overlaid on the same axes: `html::render_compare`, which
/// needs the two reports, not just the comparison).
pub const FORMATS: [Format; 3] = [Format::Table, Format::Json, Format::Html];

/// Parses `compare --format`: one of [`FORMATS`].
pub fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse_among(s, &FORMATS)
}

/// A compared quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Requests per second.
    Throughput,
    /// Failed requests, percent of all requests.
    ErrorRate,
    /// Median latency.
    P50,
    /// 90th percentile latency.
    P90,
    /// 99th percentile latency.
    P99,
    /// 99.9th percentile latency (no per-window value: not tested).
    P999,
    /// Largest latency.
    Max,
}

impl Metric {
    /// Every metric, in the order a comparison lists them.
    pub const ALL: [Metric; 7] = [
        Metric::Throughput,
        Metric::ErrorRate,
        Metric::P50,
        Metric::P90,
        Metric::P99,
        Metric::P999,
        Metric::Max,
    ];

    /// The metric's name in limits, the JSON and the table.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Throughput => "throughput",
            Metric::ErrorRate => "error_rate",
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P99 => "p99",
            Metric::P999 => "p999",
            Metric::Max => "max",
        }
    }

    /// The phase's headline value of this metric.
    fn value(self, p: &PhaseReport) -> Option<f64> {
        let l = p.latency_us.as_ref();
        match self {
            Metric::Throughput => Some(p.throughput_rps),
            Metric::ErrorRate => {
                (p.requests > 0).then(|| 100.0 * p.error_count() as f64 / p.requests as f64)
            }
            Metric::P50 => l.map(|l| l.p50 as f64),
            Metric::P90 => l.map(|l| l.p90 as f64),
            Metric::P99 => l.map(|l| l.p99 as f64),
            Metric::P999 => l.map(|l| l.p999 as f64),
            Metric::Max => l.map(|l| l.max as f64),
        }
    }

    /// This metric in each measured (not warm-up) window of the phase.
    fn per_window(self, p: &PhaseReport) -> Vec<f64> {
        let point = |w: &TimelinePoint| -> Option<f64> {
            match self {
                Metric::Throughput => (p.window_s > 0.0).then(|| w.requests as f64 / p.window_s),
                Metric::ErrorRate => {
                    (w.requests > 0).then(|| 100.0 * w.errors as f64 / w.requests as f64)
                }
                Metric::P50 => w.latency.p50_us.map(|v| v as f64),
                Metric::P90 => w.latency.p90_us.map(|v| v as f64),
                Metric::P99 => w.latency.p99_us.map(|v| v as f64),
                Metric::P999 => None,
                Metric::Max => w.latency.max_us.map(|v| v as f64),
            }
        };
        p.timeline
            .iter()
            .filter(|w| !w.warmup)
            .filter_map(point)
            .collect()
    }

    fn format(self, v: f64) -> String {
        match self {
            Metric::Throughput => format!("{v:.1}/s"),
            Metric::ErrorRate => format!("{v:.2}%"),
            _ => format_us(v),
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                format!("unknown metric {s:?}: use {}", names.join(", "))
            })
    }
}

/// A regression limit: `p99=10%` (latency up by more than 10 %),
/// `throughput=5%` (down by more than 5 %), `error_rate=1%` (up by more than
/// one percentage point).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limit {
    /// What is limited.
    pub metric: Metric,
    /// By how much it may get worse: percent, or percentage points for the
    /// error rate.
    pub percent: f64,
}

/// Parses `p99=10%,throughput=5%,error_rate=1%` (the `%` is optional).
pub fn parse_limits(text: &str) -> Result<Vec<Limit>, String> {
    let mut out: Vec<Limit> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: write limits like p99=10%,throughput=5%"))?;
        let metric: Metric = key.trim().parse()?;
        let number = value.trim().trim_end_matches('%').trim();
        let percent: f64 = number
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                format!("{part:?}: the limit must be a percentage of zero or more, like 10%")
            })?;
        if out.iter().any(|l| l.metric == metric) {
            return Err(format!("{} is limited twice", metric.name()));
        }
        out.push(Limit { metric, percent });
    }
    if out.is_empty() {
        return Err("no limit given: write limits like p99=10%,throughput=5%".into());
    }
    Ok(out)
}

// ---------------------------------------------------------------- the model

/// Two runs side by side. Field names are part of the JSON interface.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// How "beyond noise" is decided.
    pub test: &'static str,
    /// The run compared against.
    pub base: RunSide,
    /// The run judged.
    pub candidate: RunSide,
    /// What differs between the runs' set-ups (empty when nothing does).
    pub differences: Differences,
    /// Each phase of both runs (by name), in the base run's order.
    pub phases: Vec<PhaseComparison>,
    /// Phases present in one run only.
    pub unmatched: Vec<Unmatched>,
    /// Every limit checked, per phase.
    pub limits: Vec<LimitCheck>,
    /// Some limit was crossed.
    pub regressed: bool,
    /// Compared phases whose numbers, in either run, describe an agent
    /// rather than the target: such a comparison is not trustworthy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub generator_limited: Vec<LimitedPhase>,
}

/// A compared phase that a load generator limited in one run.
#[derive(Debug, Clone, Serialize)]
pub struct LimitedPhase {
    /// The phase's name.
    pub phase: String,
    /// "base" or "candidate".
    pub run: &'static str,
    /// The agents that limited it, and why.
    pub agents: Vec<LimitedAgent>,
}

/// One compared run's facts.
#[derive(Debug, Clone, Serialize)]
pub struct RunSide {
    /// The run's id.
    pub run_id: String,
    /// The run's name.
    pub name: String,
    /// How it ended (its report's status).
    pub status: String,
    /// Its verdict; a comparison with a run that did not pass says so.
    pub verdict: Verdict,
    /// Why it is not passed (empty: passed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// SHA-256 of the agent binary it shipped, hex.
    pub agent_binary_hash: String,
    /// The version of the coordinator that ran it.
    pub coordinator_version: String,
}

/// What differs between two runs' set-ups.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Differences {
    /// The agent binaries differ.
    pub agent_binary_hash: bool,
    /// The coordinators' versions differ.
    pub coordinator_version: bool,
    /// A line diff of the workload texts: `-` base only, `+` candidate only.
    pub workload: Vec<String>,
}

impl Differences {
    /// Something differs.
    pub fn any(&self) -> bool {
        self.agent_binary_hash || self.coordinator_version || !self.workload.is_empty()
    }
}

/// A phase only one of the runs has.
#[derive(Debug, Clone, Serialize)]
pub struct Unmatched {
    /// The phase's name.
    pub phase: String,
    /// "base" or "candidate".
    pub only_in: &'static str,
}

/// One phase of both runs.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseComparison {
    /// The phase's name.
    pub name: String,
    /// Every metric, in [`Metric::ALL`]'s order.
    pub metrics: Vec<MetricComparison>,
}

/// One metric of one phase in both runs.
#[derive(Debug, Clone, Serialize)]
pub struct MetricComparison {
    /// The metric.
    pub metric: Metric,
    /// Its headline value in the base run (requests/s, percent, or µs).
    pub base: Option<f64>,
    /// Its headline value in the candidate run.
    pub candidate: Option<f64>,
    /// (candidate − base) / base, percent; None when base is zero or either
    /// value is missing.
    pub change_pct: Option<f64>,
    /// candidate − base, for the error rate (percentage points).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_points: Option<f64>,
    /// The noise test on per-window values; None when a run has no such
    /// values (or p99.9, which has none per window).
    pub test: Option<MannWhitney>,
    /// `test.p < 0.05`.
    pub significant: bool,
    /// So few windows that even completely separated values would not be
    /// significant (fewer than 4 on a side): the test cannot tell.
    pub too_few_windows: bool,
}

/// One limit held against one phase.
#[derive(Debug, Clone, Serialize)]
pub struct LimitCheck {
    /// The phase's name.
    pub phase: String,
    /// The limited metric.
    pub metric: Metric,
    /// The limit, percent (percentage points for the error rate).
    pub limit: f64,
    /// The change it was held against, in the same unit, signed so that
    /// positive is worse; None when it could not be computed.
    pub worse_by: Option<f64>,
    /// It got worse by more than the limit.
    pub crossed: bool,
}

/// One run to compare: its first record's facts and its report.
pub struct Side<'a> {
    /// The run's facts (its binaries, versions and workload).
    pub run: &'a RunInfo,
    /// The run's report.
    pub report: &'a Report,
}

/// Compares `candidate` with `base`, phase by phase (only `phase` if given),
/// holding the changes against `limits`.
pub fn compare(
    base: &Side<'_>,
    candidate: &Side<'_>,
    phase: Option<&str>,
    limits: &[Limit],
) -> Comparison {
    let wanted = |name: &str| phase.is_none_or(|p| p == name);
    let mut phases = Vec::new();
    let mut unmatched = Vec::new();
    let mut checks = Vec::new();
    let mut limited = Vec::new();
    for b in base.report.phases.iter().filter(|p| wanted(&p.name)) {
        let Some(c) = candidate.report.phases.iter().find(|c| c.name == b.name) else {
            unmatched.push(Unmatched {
                phase: b.name.clone(),
                only_in: "base",
            });
            continue;
        };
        for (run, p) in [("base", b), ("candidate", c)] {
            if !p.generator_limited.is_empty() {
                limited.push(LimitedPhase {
                    phase: p.name.clone(),
                    run,
                    agents: p.generator_limited.clone(),
                });
            }
        }
        let metrics: Vec<MetricComparison> = Metric::ALL.iter().map(|m| metric(*m, b, c)).collect();
        for limit in limits {
            let m = metrics
                .iter()
                .find(|m| m.metric == limit.metric)
                .expect("every metric is compared");
            let worse_by = match limit.metric {
                Metric::Throughput => m.change_pct.map(|c| -c),
                Metric::ErrorRate => m.change_points,
                _ => m.change_pct,
            };
            checks.push(LimitCheck {
                phase: b.name.clone(),
                metric: limit.metric,
                limit: limit.percent,
                worse_by,
                crossed: worse_by.is_some_and(|w| w > limit.percent),
            });
        }
        phases.push(PhaseComparison {
            name: b.name.clone(),
            metrics,
        });
    }
    for c in candidate.report.phases.iter().filter(|p| wanted(&p.name)) {
        if !base.report.phases.iter().any(|b| b.name == c.name) {
            unmatched.push(Unmatched {
                phase: c.name.clone(),
                only_in: "candidate",
            });
        }
    }
    Comparison {
        test: TEST,
        base: side(base),
        candidate: side(candidate),
        differences: Differences {
            agent_binary_hash: base.run.agent_binary_hash != candidate.run.agent_binary_hash,
            coordinator_version: base.run.coordinator_version != candidate.run.coordinator_version,
            workload: line_diff(&base.run.workload_text, &candidate.run.workload_text),
        },
        regressed: checks.iter().any(|c| c.crossed),
        phases,
        unmatched,
        limits: checks,
        generator_limited: limited,
    }
}

fn side(s: &Side<'_>) -> RunSide {
    RunSide {
        run_id: s.report.run_id.clone(),
        name: s.report.name.clone(),
        status: s.report.status.clone(),
        verdict: s.report.verdict,
        reasons: s.report.reasons.iter().map(reason_text).collect(),
        started_at: s.report.started_at.clone(),
        agent_binary_hash: s.run.agent_binary_hash.clone(),
        coordinator_version: s.run.coordinator_version.clone(),
    }
}

fn metric(m: Metric, b: &PhaseReport, c: &PhaseReport) -> MetricComparison {
    let (base, candidate) = (m.value(b), m.value(c));
    let change_pct = match (base, candidate) {
        (Some(b), Some(c)) if b != 0.0 => Some(round2((c - b) / b * 100.0)),
        (Some(b), Some(c)) if b == c => Some(0.0),
        _ => None,
    };
    let change_points = match (m, base, candidate) {
        (Metric::ErrorRate, Some(b), Some(c)) => Some(round4(c - b)),
        _ => None,
    };
    let test = mann_whitney_u(&m.per_window(b), &m.per_window(c));
    MetricComparison {
        too_few_windows: test.is_some_and(|t| smallest_p(t.n_a, t.n_b) >= ALPHA),
        metric: m,
        base,
        candidate,
        change_pct,
        change_points,
        significant: test.is_some_and(|t| t.significant(ALPHA)),
        test,
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// A line diff (longest common subsequence): `- line` only in `a`, `+ line`
/// only in `b`, in order; unchanged lines are left out. Empty when equal.
pub fn line_diff(a: &str, b: &str) -> Vec<String> {
    if a == b {
        return Vec::new();
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    // lcs[i][j]: longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    if out.is_empty() {
        // Same lines, other line endings or trailing newline.
        out.push("~ the texts differ only in line endings or a final newline".into());
    }
    out
}

// ---------------------------------------------------------------- rendering

/// The comparison as a table or as pretty-printed JSON.
pub fn render(c: &Comparison, format: Format) -> String {
    match format {
        // The HTML page is drawn from the reports (see [`FORMATS`]), and a
        // comparison has no CSV (`compare` does not offer it): the
        // comparison alone renders as its table.
        Format::Table | Format::Html | Format::Csv => table(c),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(c).expect("comparison serializes: plain data");
            s.push('\n');
            s
        }
    }
}

/// How many workload diff lines the table shows (the JSON has them all).
const DIFF_LINES: usize = 40;

/// The comparison for people: the two runs and what differs in their
/// set-ups, a table per phase, the limited warnings, the noise verdict and
/// the limits.
pub fn table(c: &Comparison) -> String {
    let mut out = String::new();
    runs_and_differences(&mut out, c);
    for p in &c.phases {
        let _ = writeln!(out, "phase {}", p.name);
        let _ = writeln!(out, "{}", phase_table(p));
    }
    for u in &c.unmatched {
        let _ = writeln!(out, "phase {} is only in the {} run", u.phase, u.only_in);
    }
    limited_warnings(&mut out, c);
    verdict_warnings(&mut out, c);
    let _ = writeln!(out, "noise test: {}", c.test);
    noise_verdict(&mut out, c);
    for l in &c.limits {
        let _ = writeln!(out, "{}", limit_line(l));
    }
    out
}

/// Both runs' facts, then their binaries, versions and workloads where
/// they differ.
fn runs_and_differences(out: &mut String, c: &Comparison) {
    for (label, s) in [("base", &c.base), ("candidate", &c.candidate)] {
        let _ = writeln!(
            out,
            "{label:<9}  run {} ({}) {}, started {}",
            s.run_id, s.name, s.status, s.started_at
        );
    }
    let d = &c.differences;
    if d.agent_binary_hash {
        let _ = writeln!(
            out,
            "agent binaries differ: base {}, candidate {}",
            c.base.agent_binary_hash, c.candidate.agent_binary_hash
        );
    }
    if d.coordinator_version {
        let _ = writeln!(
            out,
            "coordinator versions differ: base {}, candidate {}",
            c.base.coordinator_version, c.candidate.coordinator_version
        );
    }
    if !d.workload.is_empty() {
        let _ = writeln!(out, "workload texts differ (- base, + candidate):");
        for line in d.workload.iter().take(DIFF_LINES) {
            let _ = writeln!(out, "  {line}");
        }
        if d.workload.len() > DIFF_LINES {
            let _ = writeln!(out, "  ... {} more lines", d.workload.len() - DIFF_LINES);
        }
    }
}

/// One phase's metrics: both values, the change, and the noise test.
fn phase_table(p: &PhaseComparison) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
            "metric",
            "base",
            "candidate",
            "change",
            "windows",
            "p",
            "beyond noise",
        ]);
    for m in &p.metrics {
        let value = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| m.metric.format(v));
        let change = match (m.metric, m.change_points, m.change_pct) {
            (Metric::ErrorRate, Some(pt), _) => format!("{pt:+.2}pt"),
            (_, _, Some(pct)) => format!("{pct:+.1}%"),
            _ => "-".into(),
        };
        let (windows, p, beyond) = match &m.test {
            Some(t) => (
                format!("{}/{}", t.n_a, t.n_b),
                format!("{:.3}", t.p),
                if m.significant {
                    "yes"
                } else if m.too_few_windows {
                    "too few windows"
                } else {
                    "no"
                }
                .to_string(),
            ),
            None => ("-".into(), "-".into(), "not tested".into()),
        };
        t.add_row([
            m.metric.name().to_string(),
            value(m.base),
            value(m.candidate),
            change,
            windows,
            p,
            beyond,
        ]);
    }
    right_align(&mut t, 1..6);
    t
}

/// Each limited agent of either run, then which phases that makes
/// untrustworthy.
fn limited_warnings(out: &mut String, c: &Comparison) {
    for l in &c.generator_limited {
        for a in &l.agents {
            let _ = writeln!(
                out,
                "LOAD-GENERATOR-LIMITED: {} run: {}",
                l.run,
                limited_text(&l.phase, a)
            );
        }
    }
    if !c.generator_limited.is_empty() {
        let phases: Vec<String> = c
            .generator_limited
            .iter()
            .map(|l| format!("{} ({})", l.phase, l.run))
            .collect();
        let _ = writeln!(
            out,
            "this comparison is not trustworthy for {}: a load generator, not the target, set those numbers",
            phases.join(", ")
        );
    }
}

/// Each run whose verdict is not passed, with its reasons: its numbers
/// may not be what they seem, whatever the comparison says.
fn verdict_warnings(out: &mut String, c: &Comparison) {
    for (label, s) in [("base", &c.base), ("candidate", &c.candidate)] {
        if s.verdict == Verdict::Passed {
            continue;
        }
        let _ = writeln!(
            out,
            "the {label} run's verdict is {}: {}",
            s.verdict.name().to_uppercase(),
            s.reasons.join("; ")
        );
    }
}

/// Whether any run had too few windows to tell, and which changes are
/// beyond noise.
fn noise_verdict(out: &mut String, c: &Comparison) {
    let significant: Vec<String> = c
        .phases
        .iter()
        .flat_map(|p| {
            p.metrics
                .iter()
                .filter(|m| m.significant)
                .map(move |m| format!("{} {}", p.name, m.metric.name()))
        })
        .collect();
    let too_few = c
        .phases
        .iter()
        .flat_map(|p| &p.metrics)
        .any(|m| m.too_few_windows);
    if too_few {
        let _ = writeln!(
            out,
            "too few windows: with fewer than 4 measured windows in a run, no change can be told from noise (run longer phases)"
        );
    }
    if significant.is_empty() {
        let _ = writeln!(out, "no significant change");
    } else {
        let _ = writeln!(out, "significant change in: {}", significant.join(", "));
    }
}

/// "REGRESSION: phase load p99 +12.00% (limit +10%)", or "ok: ...".
fn limit_line(l: &LimitCheck) -> String {
    let verdict = if l.crossed { "REGRESSION" } else { "ok" };
    let unit = if l.metric == Metric::ErrorRate {
        "pt"
    } else {
        "%"
    };
    // Shown as the change itself: negative for throughput.
    let sign = if l.metric == Metric::Throughput {
        -1.0
    } else {
        1.0
    };
    let change = l
        .worse_by
        .map_or_else(|| "n/a".to_string(), |w| format!("{:+.2}{unit}", sign * w));
    format!(
        "{verdict}: phase {} {} {change} (limit {:+}{unit})",
        l.phase,
        l.metric.name(),
        sign * l.limit
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbench::pb;
    use fleetbench::pb::log_record::Record;
    use fleetbench::window::WindowAcc;
    use fleetbench_fold::testlog::agent_event;
    use fleetbench_fold::{Fold, ReportOptions};

    /// A one-phase run whose windows each hold `per_window` requests of
    /// `latency_us`, plus the given workload text.
    fn run(id: &str, per_window: &[(u64, u64)], workload: &str) -> (RunInfo, Report) {
        let mut f = Fold::new();
        let rec = |r: Record| pb::LogRecord {
            logged_at_us: 1,
            record: Some(r),
        };
        f.apply(&rec(Record::RunStarted(pb::RunStarted {
            run_id: id.into(),
            name: "t".into(),
            workload_text: workload.into(),
            agent_binary_hash: "abc".into(),
            ..Default::default()
        })));
        f.apply(&rec(Record::PhaseScheduled(pb::PhaseScheduled {
            phase_index: 0,
            name: "load".into(),
            start_at_us: 0,
            duration_ms: 1000 * per_window.len() as u64,
            warmup_ms: 0,
            window_ms: 1000,
            agent_ids: vec!["a".into()],
            ..Default::default()
        })));
        for (i, &(n, lat)) in per_window.iter().enumerate() {
            let mut w = WindowAcc::new();
            for _ in 0..n {
                w.record_ok(lat);
            }
            f.apply(&agent_event(
                "a",
                i as u64 + 1,
                0,
                pb::event::Kind::Window(w.to_pb(0, i as u32, 1000)),
            ));
        }
        let report = f.report(&ReportOptions::default());
        (f.run.clone().unwrap(), report)
    }

    fn windows(n: usize, requests: u64, latency: u64) -> Vec<(u64, u64)> {
        (0..n)
            .map(|i| (requests + i as u64 % 3, latency + i as u64 % 5))
            .collect()
    }

    #[test]
    fn a_run_against_itself_changes_nothing() {
        let (info, report) = run("r1", &windows(10, 100, 1000), "x = 1\n");
        let s = Side {
            run: &info,
            report: &report,
        };
        let limits = parse_limits("p99=10%,throughput=5%,error_rate=1%").unwrap();
        let c = compare(&s, &s, None, &limits);
        assert!(!c.regressed);
        assert!(!c.differences.any());
        for m in &c.phases[0].metrics {
            assert!(!m.significant, "{m:?}");
            if m.metric != Metric::P999 {
                assert_eq!(m.test.unwrap().p, 1.0, "{m:?}");
            }
        }
        assert!(table(&c).contains("no significant change"));
    }

    #[test]
    fn a_slower_candidate_crosses_the_p99_limit_and_is_beyond_noise() {
        let (bi, br) = run("b", &windows(10, 100, 1000), "delay = 0\n");
        let (ci, cr) = run("c", &windows(10, 60, 6000), "delay = 5\n");
        let limits = parse_limits("p99=10%,throughput=50%").unwrap();
        let c = compare(
            &Side {
                run: &bi,
                report: &br,
            },
            &Side {
                run: &ci,
                report: &cr,
            },
            None,
            &limits,
        );
        assert!(c.regressed);
        let p99 = c.phases[0]
            .metrics
            .iter()
            .find(|m| m.metric == Metric::P99)
            .unwrap();
        assert!(
            p99.significant && p99.change_pct.unwrap() > 400.0,
            "{p99:?}"
        );
        let crossed: Vec<Metric> = c
            .limits
            .iter()
            .filter(|l| l.crossed)
            .map(|l| l.metric)
            .collect();
        assert_eq!(
            crossed,
            vec![Metric::P99],
            "throughput is down ~40%, within 50%"
        );
        assert_eq!(c.differences.workload, vec!["- delay = 0", "+ delay = 5"]);
        let text = table(&c);
        assert!(text.contains("REGRESSION: phase load p99 +"), "{text}");
        assert!(text.contains("ok: phase load throughput -"), "{text}");
        assert!(text.contains("(limit -50%)"), "{text}");
        assert!(
            text.contains("significant change in: load throughput"),
            "{text}"
        );
    }

    #[test]
    fn a_limited_run_makes_the_comparison_untrustworthy() {
        let (bi, br) = run("b", &windows(10, 100, 1000), "x\n");
        let (ci, mut cr) = run("c", &windows(10, 100, 1000), "x\n");
        cr.phases[0].generator_limited = vec![LimitedAgent {
            agent: "a".into(),
            reasons: vec!["agent CPU 97% of its 1 thread".into()],
        }];
        let (b, c) = (
            Side {
                run: &bi,
                report: &br,
            },
            Side {
                run: &ci,
                report: &cr,
            },
        );
        let cmp = compare(&b, &c, None, &[]);
        assert_eq!(cmp.generator_limited.len(), 1);
        assert_eq!(cmp.generator_limited[0].run, "candidate");
        let text = table(&cmp);
        assert!(
            text.contains(
                "LOAD-GENERATOR-LIMITED: candidate run: in phase load the numbers describe agent a, \
                 not the target: agent CPU 97% of its 1 thread"
            ),
            "{text}"
        );
        assert!(
            text.contains("this comparison is not trustworthy for load (candidate)"),
            "{text}"
        );
        assert!(render(&cmp, Format::Json).contains("\"generator_limited\""));
        // Either side: the same holds with the runs swapped.
        let swapped = compare(&c, &b, None, &[]);
        assert_eq!(swapped.generator_limited[0].run, "base");
        // Neither limited: nothing said, nothing in the JSON.
        let clean = compare(&b, &b, None, &[]);
        assert!(!table(&clean).contains("LIMITED"));
        assert!(!render(&clean, Format::Json).contains("generator_limited"));
    }

    #[test]
    fn limits_parse_and_reject() {
        let l = parse_limits("p99=10%, throughput=5,error_rate=0.5%").unwrap();
        assert_eq!(
            l,
            vec![
                Limit {
                    metric: Metric::P99,
                    percent: 10.0
                },
                Limit {
                    metric: Metric::Throughput,
                    percent: 5.0
                },
                Limit {
                    metric: Metric::ErrorRate,
                    percent: 0.5
                },
            ]
        );
        assert!(
            parse_limits("p98=10%")
                .unwrap_err()
                .contains("unknown metric")
        );
        assert!(
            parse_limits("p99=-1%")
                .unwrap_err()
                .contains("zero or more")
        );
        assert!(parse_limits("p99").unwrap_err().contains("p99=10%"));
        assert!(parse_limits("p99=1,p99=2").unwrap_err().contains("twice"));
    }

    #[test]
    fn line_diff_keeps_order_and_skips_common_lines() {
        assert!(line_diff("a\nb\n", "a\nb\n").is_empty());
        assert_eq!(
            line_diff("a\nb\nc\n", "a\nB\nc\nd\n"),
            vec!["- b", "+ B", "+ d"]
        );
        assert_eq!(line_diff("a\n", "a").len(), 1);
    }
}
