//! The HTML report: one self-contained page per run ([`render`]), or per
//! pair of runs ([`render_compare`]), with the headline tables on top, the
//! notices listed, and SVG charts drawn inline by plotters' SVG backend.
//!
//! A run's page charts throughput and errors (with the offered and the
//! intended rate of open-loop phases), latency percentiles (p50/p90/p99/max),
//! the latency distribution (the percentile spectrum on a log axis,
//! x = 1/(1-p), as HdrHistogram plots it), per-agent throughput, throughput
//! and p99 per operation (phases with named operations), and CPU, memory and
//! network per host, on the run's time axis with phase starts, warm-ups and
//! phase stops marked. A phase whose numbers describe a load generator
//! rather than the target gets a warning banner. The compare page overlays
//! two runs per phase (matched by name) on the same axes, time measured from
//! each phase's start.
//!
//! This module only draws a [`Report`]: the numbers come from the fold, and
//! judging whether a difference between runs matters is `compare`'s job.
//! The page fetches nothing (no scripts, stylesheets, images or fonts), so it
//! opens offline; every text that comes from the log (names, notices,
//! reasons) is escaped. Chart colours are saturated and everything else on a
//! chart (axes, grid, phase marks, warm-up shading) is grey, which the
//! screenshot test relies on to tell a drawn chart from an empty one.

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;

use crate::cells::{latency_cells, latency_of, limited_text, offered_line, stop_text};
use fleetbench::clock::format_us;
use fleetbench_fold::{HostPoint, LatencyReport, PhaseReport, Report, TimelinePoint};

/// Size of every chart, in SVG pixels (the page scales them down to fit).
const WIDTH: u32 = 960;
const HEIGHT: u32 = 300;

/// Tableau 10 without its grey: distinct, saturated, readable on white.
const PALETTE: [RGBColor; 9] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];
const BLUE: RGBColor = PALETTE[0];
const ORANGE: RGBColor = PALETTE[1];
const GREEN: RGBColor = PALETTE[2];
const RED: RGBColor = PALETTE[3];
/// Phase starts and their labels.
const MARK: RGBColor = RGBColor(0x70, 0x70, 0x70);
/// Warm-up spans.
const SHADE: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);
/// Where run control stopped a phase (dashed), and its label.
const STOP: RGBColor = RGBColor(0x30, 0x30, 0x30);
const PURPLE: RGBColor = PALETTE[4];

fn palette(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

// ---------------------------------------------------------------- pages

/// The HTML report of one run.
pub fn render(report: &Report) -> String {
    let title = format!("fleetbench run {} ({})", report.name, report.run_id);
    let mut out = page_start(&title);
    let _ = writeln!(out, "<h1>fleetbench run {}</h1>", esc(&report.name));
    let _ = writeln!(out, "<p class=\"meta\">{}</p>", run_meta(report));
    if !report.reason.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"reason\">reason: {}</p>",
            esc(&report.reason)
        );
    }
    out.push_str(&headline_table(report));
    for p in &report.phases {
        out.push_str(&limited_banner(p, ""));
    }
    out.push_str(&phase_notes(report));
    out.push_str(&ops_table(report));
    out.push_str(&hosts_table(report));
    out.push_str(&log_integrity(report));
    out.push_str(&notices("Notices", &report.notices));
    let charts = run_charts(report);
    out.push_str("<h2>Charts</h2>\n");
    if charts.is_empty() {
        out.push_str("<p class=\"empty\">This run logged no results to chart.</p>\n");
    }
    for c in &charts {
        out.push_str(&figure(c));
    }
    out.push_str(&page_end());
    out
}

/// The HTML report comparing two runs: both runs' facts, then per phase
/// (matched by name) the headline numbers side by side and the two runs'
/// timelines and latency distributions overlaid, time measured from each
/// phase's start.
pub fn render_compare(base: &Report, candidate: &Report) -> String {
    let title = format!(
        "fleetbench compare {} ({}) with {} ({})",
        base.name, base.run_id, candidate.name, candidate.run_id
    );
    let mut out = page_start(&title);
    let _ = writeln!(
        out,
        "<h1>fleetbench compare: {} vs {}</h1>",
        esc(&base.name),
        esc(&candidate.name)
    );
    out.push_str(
        "<p class=\"meta\">The base run is drawn dashed, the candidate solid.</p>\n\
         <table class=\"runs\">\n<tr><th></th><th>base</th><th>candidate</th></tr>\n",
    );
    let facts = |r: &Report| {
        [
            ("run", r.run_id.clone()),
            ("name", r.name.clone()),
            ("status", r.status.clone()),
            ("started", r.started_at.clone()),
            ("duration", format!("{:.1}s", r.duration_s)),
            ("agents", r.agents.len().to_string()),
            ("coordinator", r.coordinator_version.clone()),
            ("agent binary", r.agent_binary_hash.clone()),
        ]
    };
    for ((label, b), (_, c)) in facts(base).into_iter().zip(facts(candidate)) {
        let _ = writeln!(
            out,
            "<tr><th>{label}</th><td>{}</td><td>{}</td></tr>",
            esc(&b),
            esc(&c)
        );
    }
    out.push_str("</table>\n");

    let in_both: Vec<(&PhaseReport, &PhaseReport)> = base
        .phases
        .iter()
        .filter_map(|b| {
            candidate
                .phases
                .iter()
                .find(|c| c.name == b.name)
                .map(|c| (b, c))
        })
        .collect();
    let only = |a: &Report, b: &Report| -> Vec<String> {
        a.phases
            .iter()
            .filter(|p| !b.phases.iter().any(|q| q.name == p.name))
            .map(|p| esc(&p.name))
            .collect()
    };
    let (only_base, only_candidate) = (only(base, candidate), only(candidate, base));
    if in_both.is_empty() {
        out.push_str("<p class=\"empty\">The two runs have no phase in common.</p>\n");
    }
    if !only_base.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"note\">Only in the base run: {}.</p>",
            only_base.join(", ")
        );
    }
    if !only_candidate.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"note\">Only in the candidate run: {}.</p>",
            only_candidate.join(", ")
        );
    }
    for (i, (b, c)) in in_both.iter().enumerate() {
        let _ = writeln!(out, "<h2>Phase {}</h2>", esc(&b.name));
        out.push_str(&limited_banner(b, "base run: "));
        out.push_str(&limited_banner(c, "candidate run: "));
        if !b.generator_limited.is_empty() || !c.generator_limited.is_empty() {
            out.push_str(
                "<p class=\"reason\">This comparison is not trustworthy: a load generator, \
                 not the target, set the numbers of this phase.</p>\n",
            );
        }
        out.push_str(&compare_table(b, c));
        for chart in compare_charts(i, b, c) {
            out.push_str(&figure(&chart));
        }
    }
    out.push_str(&notices("Notices of the base run", &base.notices));
    out.push_str(&notices("Notices of the candidate run", &candidate.notices));
    out.push_str(&page_end());
    out
}

/// The page is also well-formed XML (void elements closed, no bare `&` or
/// `<`), so tests can parse it whole.
fn page_start(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        esc(title)
    )
}

fn page_end() -> String {
    format!(
        "<footer>Drawn by fleetbench {} from the run's log.</footer>\n</body>\n</html>\n",
        fleetbench::VERSION
    )
}

const CSS: &str = "\
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; color: #222; \
background: #fff; max-width: 1000px; margin: 1.5em auto; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.5em; margin: 0 0 0.2em; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.4em; border-bottom: 1px solid #ddd; }
.meta, footer { color: #555; }
.reason { color: #a00; }
table { border-collapse: collapse; margin: 0.6em 0; font-variant-numeric: tabular-nums; }
th, td { padding: 0.2em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th { background: #f4f4f4; }
th:first-child, td:first-child { text-align: left; }
table.runs th { text-align: left; }
table.runs td { text-align: left; font-family: ui-monospace, monospace; font-size: 0.9em; }
ul.notes, ul.notices { padding-left: 1.2em; }
ul.notices li { font-family: ui-monospace, monospace; font-size: 0.9em; }
figure.chart { margin: 1.2em 0 1.8em; }
figure.chart figcaption { font-weight: 600; margin-bottom: 0.2em; }
figure.chart svg { display: block; max-width: 100%; height: auto; }
ul.legend { list-style: none; padding: 0; margin: 0.2em 0 0 4em; font-size: 0.85em; }
ul.legend li { display: inline-block; margin-right: 1.2em; }
.swatch { display: inline-block; width: 22px; height: 0; margin: 0 0.4em 0.25em 0; \
vertical-align: middle; border-top: 3px solid #999; }
.swatch.dashed { border-top-style: dashed; }
.swatch.shade { height: 10px; border: 0; background: #e4e4e4; }
.swatch.mark { border-top: 1px solid #707070; }
.swatch.stop { border-top: 2px dashed #303030; }
.empty, .note { color: #555; font-style: italic; }
.limited { background: #fdecea; border: 2px solid #c62828; color: #8e0000; \
padding: 0.5em 0.8em; margin: 0.6em 0; }
.limited strong { letter-spacing: 0.03em; }
footer { margin-top: 2em; font-size: 0.85em; }
";

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn run_meta(r: &Report) -> String {
    format!(
        "run {} &#183; {} &#183; started {} &#183; {:.1}s &#183; {} agent(s) &#183; coordinator {}",
        esc(&r.run_id),
        esc(&r.status),
        esc(&r.started_at),
        r.duration_s,
        r.agents.len(),
        esc(&r.coordinator_version)
    )
}

fn headline_table(r: &Report) -> String {
    let mut out = String::from(
        "<table class=\"headline\">\n<tr><th>phase</th><th>requests</th><th>errors</th>\
         <th>req/s</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n",
    );
    for p in &r.phases {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td>",
            esc(&p.name),
            p.requests,
            p.error_count(),
            p.throughput_rps
        );
        for cell in latency_cells(p) {
            let _ = write!(out, "<td>{}</td>", esc(&cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// Extra percentiles, error classes and warm-up per phase, as the table
/// report lists them.
fn phase_notes(r: &Report) -> String {
    let mut items = Vec::new();
    for p in &r.phases {
        let name = esc(&p.name);
        if let Some(l) = &p.latency_us
            && !l.percentiles.is_empty()
        {
            let cells: Vec<String> = l
                .percentiles
                .iter()
                .map(|(k, v)| format!("{} {}", esc(k), format_us(*v as f64)))
                .collect();
            items.push(format!("{name}: {}", cells.join(", ")));
        }
        if p.error_count() > 0 {
            let classes: Vec<String> = p
                .errors
                .iter()
                .map(|(k, v)| format!("{}={v}", esc(k)))
                .collect();
            items.push(format!("errors in {name}: {}", classes.join(", ")));
        }
        if p.warmup_s > 0.0 {
            items.push(format!(
                "{name}: the first {}s are warm-up, left out of the numbers above \
                 (shaded on the charts)",
                p.warmup_s
            ));
        }
        if let Some(s) = &p.stopped {
            items.push(format!(
                "{name}: {} (marked on the charts)",
                esc(&stop_text(s))
            ));
        }
        if let Some(line) = offered_line(p) {
            items.push(esc(&line));
        }
    }
    list("notes", &items)
}

/// The warning a load-generator-limited phase must not be read without.
fn limited_banner(p: &PhaseReport, run: &str) -> String {
    let mut out = String::new();
    for l in &p.generator_limited {
        let _ = writeln!(
            out,
            "<div class=\"limited\"><strong>LOAD-GENERATOR-LIMITED</strong>: {}{}.</div>",
            esc(run),
            esc(&limited_text(&p.name, l))
        );
    }
    out
}

/// Per phase with named operations, each operation's numbers.
fn ops_table(r: &Report) -> String {
    if r.phases.iter().all(|p| p.ops.is_empty()) {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Operations</h2>\n<table class=\"ops\">\n<tr><th>phase</th><th>op</th>\
         <th>requests</th><th>share</th><th>req/s</th><th>errors</th><th>p50</th><th>p90</th>\
         <th>p99</th><th>max</th></tr>\n",
    );
    for p in &r.phases {
        for op in &p.ops {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{:.1}</td><td>{}</td>",
                esc(&p.name),
                esc(&op.name),
                op.requests,
                op.share_pct,
                op.throughput_rps,
                op.error_count()
            );
            let [p50, p90, p99, _, max] = latency_of(op.latency_us.as_ref());
            for cell in [p50, p90, p99, max] {
                let _ = write!(out, "<td>{}</td>", esc(&cell));
            }
            out.push_str("</tr>\n");
        }
    }
    out.push_str("</table>\n");
    out
}

fn hosts_table(r: &Report) -> String {
    if r.hosts.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<table class=\"hosts\">\n<tr><th>host</th><th>cpu mean</th><th>cpu max</th>\
         <th>mem max</th><th>load1 max</th></tr>\n",
    );
    for h in &r.hosts {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{:.1}%</td><td>{:.1}%</td><td>{}</td><td>{:.2}</td></tr>",
            esc(&h.host),
            h.cpu_pct_mean,
            h.cpu_pct_max,
            bytes(h.mem_used_max_bytes as f64),
            h.load_1_max
        );
    }
    out.push_str("</table>\n");
    out
}

fn log_integrity(r: &Report) -> String {
    let log = &r.log;
    if log.duplicate_events == 0 && log.seq_gaps == 0 && log.bad_windows == 0 {
        return String::new();
    }
    format!(
        "<p class=\"reason\">log integrity: {} duplicate events, {} missing sequence numbers, \
         {} unreadable windows</p>\n",
        log.duplicate_events, log.seq_gaps, log.bad_windows
    )
}

fn notices(title: &str, notices: &[String]) -> String {
    if notices.is_empty() {
        return String::new();
    }
    let items: Vec<String> = notices.iter().map(|n| esc(n)).collect();
    format!("<h2>{}</h2>\n{}", esc(title), list("notices", &items))
}

/// A list of already escaped items.
fn list(class: &str, items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = format!("<ul class=\"{class}\">\n");
    for i in items {
        let _ = writeln!(out, "<li>{i}</li>");
    }
    out.push_str("</ul>\n");
    out
}

fn compare_table(b: &PhaseReport, c: &PhaseReport) -> String {
    let mut out = String::from(
        "<table class=\"compare\">\n<tr><th></th><th>base</th><th>candidate</th><th>change</th></tr>\n",
    );
    let mut row = |label: &str, base: String, cand: String, change: String| {
        let _ = writeln!(
            out,
            "<tr><th>{label}</th><td>{base}</td><td>{cand}</td><td>{change}</td></tr>"
        );
    };
    row(
        "requests",
        b.requests.to_string(),
        c.requests.to_string(),
        change(b.requests as f64, c.requests as f64),
    );
    row(
        "req/s",
        format!("{:.1}", b.throughput_rps),
        format!("{:.1}", c.throughput_rps),
        change(b.throughput_rps, c.throughput_rps),
    );
    let rate = |p: &PhaseReport| {
        if p.requests == 0 {
            0.0
        } else {
            p.error_count() as f64 * 100.0 / p.requests as f64
        }
    };
    row(
        "error rate",
        format!("{:.2}%", rate(b)),
        format!("{:.2}%", rate(c)),
        change(rate(b), rate(c)),
    );
    let (lb, lc) = (b.latency_us.as_ref(), c.latency_us.as_ref());
    let (cb, cc) = (latency_cells(b), latency_cells(c));
    let values = |l: Option<&LatencyReport>| l.map(|l| [l.p50, l.p90, l.p99, l.p999, l.max]);
    for (i, label) in ["p50", "p90", "p99", "p99.9", "max"].iter().enumerate() {
        let delta = match (values(lb), values(lc)) {
            (Some(x), Some(y)) => change(x[i] as f64, y[i] as f64),
            _ => "-".to_string(),
        };
        row(label, cb[i].clone(), cc[i].clone(), delta);
    }
    out.push_str("</table>\n");
    out
}

/// The candidate's change against the base, in percent of the base.
fn change(base: f64, candidate: f64) -> String {
    if base == candidate {
        "0%".into()
    } else if base == 0.0 {
        "-".into()
    } else {
        format!("{:+.1}%", (candidate - base) / base * 100.0)
    }
}

// ---------------------------------------------------------------- chart model

/// One line of a chart, broken into segments where the data has gaps (a
/// run's timeline breaks between phases).
struct Series {
    name: String,
    color: RGBColor,
    dashed: bool,
    segments: Vec<Vec<(f64, f64)>>,
}

impl Series {
    fn new(name: impl Into<String>, color: RGBColor) -> Series {
        Series {
            name: name.into(),
            color,
            dashed: false,
            segments: Vec::new(),
        }
    }

    fn dashed(mut self, dashed: bool) -> Series {
        self.dashed = dashed;
        self
    }

    fn segment(&mut self, points: Vec<(f64, f64)>) {
        let points: Vec<(f64, f64)> = points
            .into_iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if !points.is_empty() {
            self.segments.push(points);
        }
    }

    fn points(&self) -> impl Iterator<Item = &(f64, f64)> {
        self.segments.iter().flatten()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum XAxis {
    /// Seconds, from the run's start or from a phase's start.
    Seconds,
    /// 1/(1-p): the percentile spectrum.
    Percentile,
}

#[derive(Clone, Copy, PartialEq)]
enum YAxis {
    /// Per second, linear.
    Rate,
    /// Latency, logarithmic.
    LatencyLog,
    /// Latency, linear.
    Latency,
    Percent,
    Bytes,
    BytesPerSecond,
}

/// Instants and spans marked on a time axis.
#[derive(Clone, Default)]
struct Marks {
    /// Phase starts: (x, label).
    lines: Vec<(f64, String)>,
    /// Warm-ups: (from, to).
    shaded: Vec<(f64, f64)>,
    /// Where run control stopped a phase: (x, label).
    stops: Vec<(f64, String)>,
}

struct Chart {
    id: String,
    title: String,
    x_desc: String,
    y_desc: String,
    x_axis: XAxis,
    y_axis: YAxis,
    x_range: (f64, f64),
    series: Vec<Series>,
    marks: Marks,
}

impl Chart {
    fn y_range(&self) -> (f64, f64) {
        let ys = || self.series.iter().flat_map(Series::points).map(|p| p.1);
        let max = ys().fold(0.0, f64::max);
        match self.y_axis {
            YAxis::LatencyLog => {
                let min = ys().filter(|y| *y > 0.0).fold(f64::INFINITY, f64::min);
                if min.is_finite() {
                    // From and to a tick, so both ends are labelled.
                    let lo = nice_log(min / 1.2, false).max(1.0);
                    (lo, nice_log(max * 1.2, true).max(lo * 10.0))
                } else {
                    (1.0, 10.0)
                }
            }
            YAxis::Percent if max <= 100.0 => (0.0, (max * 1.15).clamp(10.0, 100.0)),
            _ if max > 0.0 => (0.0, max * 1.1),
            _ => (0.0, 1.0),
        }
    }

    fn x_label(&self, v: f64) -> String {
        match self.x_axis {
            XAxis::Seconds => format!("{}s", trim(v, 1)),
            XAxis::Percentile => percentile_label(v),
        }
    }

    fn y_label(&self, v: f64) -> String {
        match self.y_axis {
            YAxis::Rate => si(v),
            YAxis::Latency | YAxis::LatencyLog => axis_us(v),
            YAxis::Percent => format!("{}%", trim(v, 1)),
            YAxis::Bytes => bytes(v),
            YAxis::BytesPerSecond => format!("{}/s", bytes(v)),
        }
    }
}

/// `1/(1-p)` at a power of ten as its percentile: 1 -> 0%, 10 -> 90%,
/// 1000 -> 99.9%; other points get no label.
fn percentile_label(x: f64) -> String {
    let nines = x.log10();
    if (nines - nines.round()).abs() > 1e-6 || nines < -1e-6 {
        return String::new();
    }
    match nines.round() as usize {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        n => format!("99.{}%", "9".repeat(n - 2)),
    }
}

/// `v` with at most `places` decimals, trailing zeros dropped.
fn trim(v: f64, places: usize) -> String {
    let s = format!("{v:.places$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".into() } else { s }
}

/// 1234 -> "1.23k".
fn si(v: f64) -> String {
    let a = v.abs();
    for (scale, unit) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if a >= scale {
            return format!("{}{unit}", trim(v / scale, 2));
        }
    }
    trim(v, 2)
}

/// A latency for an axis: `format_us` without trailing zeros ("1ms", "2.5ms").
fn axis_us(us: f64) -> String {
    let s = format_us(us);
    let unit_at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(unit_at);
    match number.parse::<f64>() {
        Ok(n) => format!("{}{unit}", trim(n, 2)),
        Err(_) => s,
    }
}

fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut i) = (v, 0);
    while v.abs() >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{} {}", trim(v, 1), UNITS[i])
}

// ---------------------------------------------------------------- charts of a run

/// Where a phase ends on its own time axis (seconds from its start).
fn phase_length(p: &PhaseReport) -> f64 {
    match p.timeline.last() {
        Some(last) => last.t_s + p.window_s,
        None => p.warmup_s + p.duration_s,
    }
}

/// The middle of a window, seconds from the phase's start.
fn mid(p: &PhaseReport, t_s: f64) -> f64 {
    t_s + p.window_s / 2.0
}

/// Per second, over a window of the phase.
fn per_second(p: &PhaseReport, n: u64) -> f64 {
    n as f64 / p.window_s.max(1e-3)
}

/// The charts of one run: throughput, latency over time, the latency
/// distribution, per agent, per operation and per host, on the run's time
/// axis (but the distribution).
fn run_charts(r: &Report) -> Vec<Chart> {
    let axis = RunAxis::of(r);
    let (ops, op_p99) = op_series(r);
    let (cpu, mem, net) = host_series(r);
    let charts = vec![
        axis.chart(
            "throughput",
            "Throughput and errors",
            "per second",
            YAxis::Rate,
            throughput_series(r),
        ),
        axis.chart(
            "latency",
            "Latency percentiles over time",
            "latency (log scale)",
            YAxis::LatencyLog,
            latency_series(r),
        ),
        spectrum_chart("distribution", "Latency distribution", phase_spectra(r)),
        axis.chart(
            "agents",
            "Throughput per agent",
            "requests/s",
            YAxis::Rate,
            agent_series(r),
        ),
        axis.chart(
            "ops",
            "Throughput per operation",
            "requests/s",
            YAxis::Rate,
            ops,
        ),
        axis.chart(
            "op-latency",
            "p99 latency per operation",
            "p99 (log scale)",
            YAxis::LatencyLog,
            op_p99,
        ),
        axis.chart("host-cpu", "CPU per host", "CPU busy", YAxis::Percent, cpu),
        axis.chart(
            "host-memory",
            "Memory used per host",
            "memory used",
            YAxis::Bytes,
            mem,
        ),
        axis.chart(
            "host-network",
            "Network per host (sent dashed)",
            "bytes/s",
            YAxis::BytesPerSecond,
            net,
        ),
    ];
    drawn(charts)
}

/// A run's time axis: its span (every phase and host sample) and its marks
/// (phase starts, warm-ups, stops).
struct RunAxis {
    x_range: (f64, f64),
    marks: Marks,
}

impl RunAxis {
    fn of(r: &Report) -> RunAxis {
        let mut x_lo: f64 = 0.0;
        let mut x_hi: f64 = 0.0;
        for p in &r.phases {
            x_lo = x_lo.min(p.start_s);
            x_hi = x_hi.max(p.start_s + phase_length(p));
        }
        for h in &r.hosts {
            for pt in &h.timeline {
                x_lo = x_lo.min(pt.t_s);
                x_hi = x_hi.max(pt.t_s + 1.0);
            }
        }
        if x_hi <= x_lo {
            x_hi = x_lo + 1.0;
        }
        let marks = Marks {
            lines: r
                .phases
                .iter()
                .map(|p| (p.start_s, p.name.clone()))
                .collect(),
            shaded: r
                .phases
                .iter()
                .filter(|p| p.warmup_s > 0.0)
                .map(|p| (p.start_s, p.start_s + p.warmup_s))
                .collect(),
            stops: r
                .phases
                .iter()
                .filter_map(|p| {
                    p.stopped
                        .as_ref()
                        .map(|s| (p.start_s + s.at_s, stop_label(s)))
                })
                .collect(),
        };
        RunAxis {
            x_range: (x_lo, x_hi),
            marks,
        }
    }

    /// A chart of `series` on this axis.
    fn chart(
        &self,
        id: &str,
        title: &str,
        y_desc: &str,
        y_axis: YAxis,
        series: Vec<Series>,
    ) -> Chart {
        Chart {
            id: id.into(),
            title: title.into(),
            x_desc: "seconds since the run's start".into(),
            y_desc: y_desc.into(),
            x_axis: XAxis::Seconds,
            y_axis,
            x_range: self.x_range,
            series,
            marks: self.marks.clone(),
        }
    }
}

/// Where a window of phase `p` sits on the run's time axis (its middle).
fn run_time(p: &PhaseReport, t_s: f64) -> f64 {
    p.start_s + mid(p, t_s)
}

/// Requests and errors per second; for open-loop phases, also what the
/// schedule offered and what the load shape intended.
fn throughput_series(r: &Report) -> Vec<Series> {
    let (mut requests, mut errors) = (
        Series::new("requests/s", BLUE),
        Series::new("errors/s", RED),
    );
    for p in &r.phases {
        requests.segment(
            p.timeline
                .iter()
                .map(|w| (run_time(p, w.t_s), per_second(p, w.requests)))
                .collect(),
        );
        errors.segment(
            p.timeline
                .iter()
                .map(|w| (run_time(p, w.t_s), per_second(p, w.errors)))
                .collect(),
        );
    }
    let (mut offered, mut intended) = (
        Series::new("offered/s", PURPLE),
        Series::new("intended rate", GREEN).dashed(true),
    );
    for p in &r.phases {
        if p.timeline.iter().any(|w| w.scheduled > 0) {
            offered.segment(
                p.timeline
                    .iter()
                    .map(|w| (run_time(p, w.t_s), per_second(p, w.scheduled)))
                    .collect(),
            );
        }
        intended.segment(
            p.timeline
                .iter()
                .filter_map(|w| w.intended_rps.map(|v| (run_time(p, w.t_s), v)))
                .collect(),
        );
    }
    vec![requests, errors, offered, intended]
}

/// p50, p90, p99 and max per window, across phases.
fn latency_series(r: &Report) -> Vec<Series> {
    percentile_lines()
        .into_iter()
        .map(|(name, color, get)| {
            let mut s = Series::new(name, color);
            for p in &r.phases {
                s.segment(
                    p.timeline
                        .iter()
                        .filter_map(|w| get(w).map(|v| (run_time(p, w.t_s), v as f64)))
                        .collect(),
                );
            }
            s
        })
        .collect()
}

/// Each phase's percentile spectrum.
fn phase_spectra(r: &Report) -> Vec<Series> {
    r.phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut s = Series::new(p.name.clone(), palette(i));
            s.segment(spectrum_points(p));
            s
        })
        .collect()
}

/// One line per agent across phases, in the order agents first appear.
fn agent_series(r: &Report) -> Vec<Series> {
    let mut agents: Vec<Series> = Vec::new();
    for p in &r.phases {
        for a in &p.agents {
            let label = agent_label(&a.id, &a.host);
            let i = match agents.iter().position(|s| s.name == label) {
                Some(i) => i,
                None => {
                    agents.push(Series::new(label, palette(agents.len())));
                    agents.len() - 1
                }
            };
            agents[i].segment(
                a.timeline
                    .iter()
                    .map(|w| (run_time(p, w.t_s), per_second(p, w.requests)))
                    .collect(),
            );
        }
    }
    agents
}

/// Per operation across phases, in the order ops first appear: its
/// throughput, and its p99.
fn op_series(r: &Report) -> (Vec<Series>, Vec<Series>) {
    let (mut ops, mut op_p99): (Vec<Series>, Vec<Series>) = (Vec::new(), Vec::new());
    for p in &r.phases {
        for op in &p.ops {
            let i = match ops.iter().position(|s| s.name == op.name) {
                Some(i) => i,
                None => {
                    ops.push(Series::new(op.name.clone(), palette(ops.len())));
                    op_p99.push(Series::new(op.name.clone(), palette(op_p99.len())));
                    ops.len() - 1
                }
            };
            ops[i].segment(
                op.timeline
                    .iter()
                    .map(|w| (run_time(p, w.t_s), per_second(p, w.requests)))
                    .collect(),
            );
            op_p99[i].segment(
                op.timeline
                    .iter()
                    .filter_map(|w| w.p99_us.map(|v| (run_time(p, w.t_s), v as f64)))
                    .collect(),
            );
        }
    }
    (ops, op_p99)
}

/// Per host: its CPU, its memory, and its network (received solid, sent
/// dashed).
fn host_series(r: &Report) -> (Vec<Series>, Vec<Series>, Vec<Series>) {
    let mut cpu = Vec::new();
    let mut mem = Vec::new();
    let mut net = Vec::new();
    for (i, h) in r.hosts.iter().enumerate() {
        let color = palette(i);
        let line = |name: String, dashed: bool, value: &dyn Fn(&HostPoint) -> f64| {
            let mut s = Series::new(name, color).dashed(dashed);
            for run in host_runs(&h.timeline) {
                s.segment(run.iter().map(|pt| (pt.t_s + 0.5, value(pt))).collect());
            }
            s
        };
        cpu.push(line(h.host.clone(), false, &|pt| pt.cpu_pct));
        mem.push(line(h.host.clone(), false, &|pt| pt.mem_used_bytes as f64));
        net.push(line(format!("{} received", h.host), false, &|pt| {
            pt.net_rx_bytes as f64
        }));
        net.push(line(format!("{} sent", h.host), true, &|pt| {
            pt.net_tx_bytes as f64
        }));
    }
    (cpu, mem, net)
}

/// The charts with something to draw, each with only the series that have
/// points: every line in a legend is on its chart.
fn drawn(mut charts: Vec<Chart>) -> Vec<Chart> {
    for c in &mut charts {
        c.series.retain(|s| s.points().next().is_some());
    }
    charts.retain(|c| !c.series.is_empty());
    charts
}

/// A stop mark's label: "stopped: p99 23ms > 20ms".
fn stop_label(s: &fleetbench_fold::StopReport) -> String {
    if s.reason.is_empty() {
        "stopped".into()
    } else {
        format!("stopped: {}", s.reason)
    }
}

fn agent_label(id: &str, host: &str) -> String {
    if host.is_empty() {
        id.to_string()
    } else {
        format!("{id} ({host})")
    }
}

/// A host's samples, split where more than two seconds are missing.
fn host_runs(points: &[HostPoint]) -> Vec<&[HostPoint]> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..points.len() {
        if points[i].t_s - points[i - 1].t_s > 2.5 {
            runs.push(&points[start..i]);
            start = i;
        }
    }
    if start < points.len() {
        runs.push(&points[start..]);
    }
    runs
}

type Percentile = fn(&TimelinePoint) -> Option<u64>;

fn percentile_lines() -> [(&'static str, RGBColor, Percentile); 4] {
    [
        ("p50", BLUE, |w| w.latency.p50_us),
        ("p90", GREEN, |w| w.latency.p90_us),
        ("p99", ORANGE, |w| w.latency.p99_us),
        ("max", RED, |w| w.latency.max_us),
    ]
}

/// The spectrum as (1/(1-p), latency): every point but p100, which lies at
/// infinity on this axis (the max is in the table).
fn spectrum_points(p: &PhaseReport) -> Vec<(f64, f64)> {
    p.latency_spectrum
        .iter()
        .filter(|s| s.percentile < 100.0)
        .map(|s| (1.0 / (1.0 - s.percentile / 100.0), s.value_us as f64))
        .collect()
}

fn spectrum_chart(id: &str, title: &str, series: Vec<Series>) -> Chart {
    let x_max = series
        .iter()
        .flat_map(Series::points)
        .map(|p| p.0)
        .fold(10.0, f64::max);
    Chart {
        id: id.into(),
        title: title.into(),
        x_desc: "percentile (log scale of 1/(1-p))".into(),
        y_desc: "latency".into(),
        x_axis: XAxis::Percentile,
        y_axis: YAxis::Latency,
        x_range: (1.0, 10f64.powf(x_max.log10().ceil())),
        series,
        marks: Marks::default(),
    }
}

// ---------------------------------------------------------------- charts of a comparison

fn compare_charts(i: usize, b: &PhaseReport, c: &PhaseReport) -> Vec<Chart> {
    let x_hi = phase_length(b).max(phase_length(c)).max(1e-3);
    let mut shaded = vec![(0.0, b.warmup_s)];
    if c.warmup_s != b.warmup_s {
        shaded.push((0.0, c.warmup_s));
    }
    shaded.retain(|s| s.1 > 0.0);
    let runs = [("base", b, true), ("candidate", c, false)];
    let chart = |id: &str, title: &str, y_desc: &str, y_axis, series| Chart {
        id: format!("{id}-{i}"),
        title: title.into(),
        x_desc: "seconds since the phase's start".into(),
        y_desc: y_desc.into(),
        x_axis: XAxis::Seconds,
        y_axis,
        x_range: (0.0, x_hi),
        series,
        marks: Marks {
            lines: Vec::new(),
            shaded: shaded.clone(),
            stops: runs
                .iter()
                .filter_map(|(run, p, _)| {
                    p.stopped
                        .as_ref()
                        .map(|s| (s.at_s, format!("{run} {}", stop_label(s))))
                })
                .collect(),
        },
    };

    let mut throughput = Vec::new();
    for (run, p, dashed) in runs {
        let mut s = Series::new(format!("{run} requests/s"), BLUE).dashed(dashed);
        s.segment(
            p.timeline
                .iter()
                .map(|w| (mid(p, w.t_s), per_second(p, w.requests)))
                .collect(),
        );
        throughput.push(s);
        let mut s = Series::new(format!("{run} errors/s"), RED).dashed(dashed);
        s.segment(
            p.timeline
                .iter()
                .map(|w| (mid(p, w.t_s), per_second(p, w.errors)))
                .collect(),
        );
        throughput.push(s);
    }

    let mut latency = Vec::new();
    for (name, color, get) in percentile_lines() {
        for (run, p, dashed) in runs {
            let mut s = Series::new(format!("{run} {name}"), color).dashed(dashed);
            s.segment(
                p.timeline
                    .iter()
                    .filter_map(|w| get(w).map(|v| (mid(p, w.t_s), v as f64)))
                    .collect(),
            );
            latency.push(s);
        }
    }

    let spectra = runs
        .iter()
        .map(|(run, p, dashed)| {
            let color = if *dashed { BLUE } else { ORANGE };
            let mut s = Series::new(*run, color).dashed(*dashed);
            s.segment(spectrum_points(p));
            s
        })
        .collect();

    let charts = vec![
        chart(
            "throughput",
            "Throughput and errors",
            "per second",
            YAxis::Rate,
            throughput,
        ),
        chart(
            "latency",
            "Latency percentiles over time",
            "latency (log scale)",
            YAxis::LatencyLog,
            latency,
        ),
        spectrum_chart(
            &format!("distribution-{i}"),
            "Latency distribution",
            spectra,
        ),
    ];
    drawn(charts)
}

// ---------------------------------------------------------------- drawing

/// A chart with its caption and legend. The legend is HTML, so it wraps
/// with many series and keeps the SVG's colours to the data alone.
fn figure(c: &Chart) -> String {
    let mut out = format!(
        "<figure class=\"chart\" id=\"chart-{}\">\n<figcaption>{}</figcaption>\n",
        esc(&c.id),
        esc(&c.title)
    );
    match svg(c) {
        Ok(svg) => out.push_str(&svg),
        Err(e) => {
            let _ = writeln!(out, "<p class=\"reason\">chart failed: {}</p>", esc(&e));
        }
    }
    out.push_str("<ul class=\"legend\">\n");
    for s in &c.series {
        let RGBColor(r, g, b) = s.color;
        let color = format!("#{r:02X}{g:02X}{b:02X}");
        let _ = writeln!(
            out,
            "<li class=\"series\" data-color=\"{color}\"><span class=\"swatch{}\" \
             style=\"border-top-color: {color}\"></span>{}</li>",
            if s.dashed { " dashed" } else { "" },
            esc(&s.name)
        );
    }
    if !c.marks.shaded.is_empty() {
        out.push_str("<li><span class=\"swatch shade\"></span>warm-up</li>\n");
    }
    if !c.marks.lines.is_empty() {
        out.push_str("<li><span class=\"swatch mark\"></span>phase start</li>\n");
    }
    if !c.marks.stops.is_empty() {
        out.push_str("<li><span class=\"swatch stop\"></span>phase stopped</li>\n");
    }
    out.push_str("</ul>\n</figure>\n");
    out
}

/// The chart as an `<svg>` element, drawn by plotters.
fn svg(c: &Chart) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (x0, x1) = c.x_range;
        let (y0, y1) = c.y_range();
        match (c.x_axis, c.y_axis) {
            (XAxis::Percentile, _) => {
                let decades = x1.log10().round() as i32;
                let keys: Vec<f64> = (0..=decades).map(|n| 10f64.powi(n)).collect();
                draw(&root, c, (x0..x1).log_scale().with_key_points(keys), y0..y1)?;
            }
            (XAxis::Seconds, YAxis::LatencyLog) => {
                let keys = log_keys(y0, y1);
                draw(&root, c, x0..x1, (y0..y1).log_scale().with_key_points(keys))?;
            }
            (XAxis::Seconds, YAxis::Bytes | YAxis::BytesPerSecond) => {
                draw(&root, c, x0..x1, (y0..y1).step(byte_step(y1)))?;
            }
            (XAxis::Seconds, _) => draw(&root, c, x0..x1, y0..y1)?,
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The 1, 2 or 5 times a power of ten next to `v`: at or above it when `up`,
/// else at or below it.
fn nice_log(v: f64, up: bool) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    let m = v / decade;
    let steps = [1.0, 2.0, 5.0, 10.0];
    let pick = if up {
        steps.iter().find(|s| **s >= m - 1e-9)
    } else {
        steps.iter().rev().find(|s| **s <= m + 1e-9)
    };
    decade * pick.copied().unwrap_or(1.0)
}

/// Ticks of a logarithmic axis: 1, 2 and 5 times the powers of ten in
/// `[lo, hi]` (only the powers when that makes too many).
fn log_keys(lo: f64, hi: f64) -> Vec<f64> {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let keys = |steps: &[f64]| -> Vec<f64> {
        (first..=last)
            .flat_map(|e| steps.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let all = keys(&[1.0, 2.0, 5.0]);
    if all.len() > 10 { keys(&[1.0]) } else { all }
}

/// The tick step of a byte axis from 0 to `hi`: a round number of KiB, MiB
/// or GiB, for at most 7 steps.
fn byte_step(hi: f64) -> f64 {
    let mut unit = 1.0;
    while hi / unit >= 1024.0 && unit < 1024f64.powi(4) {
        unit *= 1024.0;
    }
    [
        0.125, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0,
    ]
    .iter()
    .map(|m| m * unit)
    .find(|step| hi / step <= 7.0)
    .unwrap_or(1024.0 * unit)
}

fn draw<X, Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    c: &Chart,
    x: X,
    y: Y,
) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let err = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();
    let (y_lo, y_hi) = c.y_range();
    let mut chart = ChartBuilder::on(root)
        .margin(10)
        .margin_right(30)
        .x_label_area_size(44)
        .y_label_area_size(96)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    let x_label = |v: &f64| c.x_label(*v);
    let y_label = |v: &f64| c.y_label(*v);
    chart
        .configure_mesh()
        .x_desc(c.x_desc.as_str())
        .y_desc(c.y_desc.as_str())
        .x_labels(12)
        .y_labels(7)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .bold_line_style(BLACK.mix(0.1))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            c.marks
                .shaded
                .iter()
                .map(|&(a, b)| Rectangle::new([(a, y_lo), (b, y_hi)], SHADE.mix(0.7).filled())),
        )
        .map_err(err)?;
    let label = ("sans-serif", 14).into_font().color(&MARK);
    for (at, name) in &c.marks.lines {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(*at, y_lo), (*at, y_hi)],
                MARK.stroke_width(1),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((*at, y_hi)) + Text::new(name.clone(), (5, 4), label.clone()),
            ))
            .map_err(err)?;
    }
    let stop_label = ("sans-serif", 14).into_font().color(&STOP);
    for (at, name) in &c.marks.stops {
        chart
            .draw_series(DashedLineSeries::new(
                [(*at, y_lo), (*at, y_hi)],
                6,
                4,
                STOP.stroke_width(2),
            ))
            .map_err(err)?;
        // Below the phase-start labels, so the two never overlap; left of
        // the line in the chart's right half, so the label stays inside.
        let (x0, x1) = c.x_range;
        let dx = if (at - x0) > (x1 - x0) / 2.0 {
            -(name.chars().count() as i32 * 8 + 5)
        } else {
            5
        };
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((*at, y_hi))
                    + Text::new(name.clone(), (dx, 22), stop_label.clone()),
            ))
            .map_err(err)?;
    }
    for s in &c.series {
        let style = s.color.stroke_width(2);
        for seg in &s.segments {
            let points = seg.iter().copied();
            if seg.len() == 1 {
                chart
                    .draw_series(points.map(|p| Circle::new(p, 3, s.color.filled())))
                    .map_err(err)?;
            } else if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(points, 7, 4, style))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(points, style))
                    .map_err(err)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbench::pb;
    use fleetbench::pb::event::Kind;
    use fleetbench::pb::log_record::Record;
    use fleetbench::window::{ErrorClass, WindowAcc};
    use fleetbench_fold::testlog::{agent_event, host_metrics, shape};
    use fleetbench_fold::{Fold, ReportOptions};
    use fleetbench_gen::rng::Rng;

    const T0: i64 = 1_700_000_000_000_000;
    const NOTICE: &str = "<script>alert('x')</script> & \"more\"";

    fn record(record: Record) -> pb::LogRecord {
        pb::LogRecord {
            logged_at_us: T0 + 20_000_000,
            record: Some(record),
        }
    }

    /// A finished run of two agents on two hosts: phase "warm & up" (6 s,
    /// 2 s of warm-up) then "load" (5 s), windows with errors, host metrics
    /// for every second, and a notice full of markup. `slow` scales the
    /// latencies; `extra` adds a third phase.
    fn report(slow: u64, extra: bool) -> Report {
        let agents = [("a1", "host-1"), ("a2", "host<2>")];
        let mut phases = vec![("warm & up", 1_000, 6u32, 2_000), ("load", 8_000, 5, 0)];
        if extra {
            phases.push(("extra", 14_000, 3, 0));
        }
        let mut records = vec![record(Record::RunStarted(pb::RunStarted {
            run_id: "run-1".into(),
            name: "demo <&>".into(),
            started_at_us: T0,
            coordinator_version: "0.1.0".into(),
            ..Default::default()
        }))];
        for (id, host) in agents {
            records.push(record(Record::AgentAttached(pb::AgentAttached {
                hello: Some(pb::Hello {
                    agent_id: id.into(),
                    hostname: host.into(),
                    cores: 4,
                    ..Default::default()
                }),
                ..Default::default()
            })));
        }
        let mut rng = Rng::new(slow);
        let mut seq = [0u64; 2];
        for (index, (name, start_ms, seconds, warmup_ms)) in phases.iter().enumerate() {
            records.push(record(Record::PhaseScheduled(pb::PhaseScheduled {
                phase_index: index as u32,
                name: (*name).into(),
                start_at_us: T0 + start_ms * 1000,
                duration_ms: u64::from(*seconds) * 1000,
                warmup_ms: *warmup_ms,
                window_ms: 1000,
                agent_ids: agents.iter().map(|a| a.0.to_string()).collect(),
                ..Default::default()
            })));
            for (a, (id, _)) in agents.iter().enumerate() {
                for i in 0..*seconds {
                    let mut w = WindowAcc::new();
                    for _ in 0..200 + rng.next_u64() % 100 {
                        w.record_ok(slow * (200 + rng.next_u64() % 2_000));
                    }
                    for _ in 0..rng.next_u64() % 5 {
                        w.record_error(ErrorClass::Status5xx, Some(slow * 50));
                    }
                    seq[a] += 1;
                    records.push(agent_event(
                        id,
                        seq[a],
                        0,
                        Kind::Window(w.to_pb(index as u32, i, 1000)),
                    ));
                }
            }
        }
        for (a, (id, _)) in agents.iter().enumerate() {
            for s in 0..18i64 {
                seq[a] += 1;
                records.push(host_metrics(
                    id,
                    seq[a],
                    T0 + s * 1_000_000,
                    pb::HostMetrics {
                        cpu_pct: 20.0 + (s % 7) as f32 * 5.0 + a as f32 * 10.0,
                        mem_used_bytes: (1 << 30) + (s as u64) * (8 << 20),
                        net_rx_bytes: 100_000 + s as u64 * 1_000,
                        net_tx_bytes: 50_000 + a as u64 * 20_000,
                        ..Default::default()
                    },
                ));
            }
        }
        records.push(record(Record::Notice(pb::CoordinatorNotice {
            level: "warn".into(),
            message: NOTICE.into(),
            agent_id: String::new(),
        })));
        records.push(record(Record::RunFinished(pb::RunFinished {
            status: "completed".into(),
            reason: String::new(),
        })));
        let mut fold = Fold::new();
        records.iter().for_each(|r| fold.apply(r));
        fold.report(&ReportOptions::default())
    }

    fn parse(html: &str) -> roxmltree::Document<'_> {
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        roxmltree::Document::parse_with_options(html, options)
            .unwrap_or_else(|e| panic!("the page is not well-formed: {e}\n{html}"))
    }

    /// Nothing in the page makes the browser fetch anything.
    fn assert_self_contained(doc: &roxmltree::Document) {
        for node in doc.descendants().filter(|n| n.is_element()) {
            let name = node.tag_name().name();
            assert!(
                ![
                    "script", "link", "img", "image", "iframe", "object", "embed", "use"
                ]
                .contains(&name),
                "<{name}> in the page"
            );
            for attr in node.attributes() {
                assert!(
                    !["src", "href", "srcset", "action", "data", "poster"].contains(&attr.name()),
                    "<{name} {}={:?}>",
                    attr.name(),
                    attr.value()
                );
                assert!(
                    !attr.value().contains("url("),
                    "url() in <{name} {}>",
                    attr.name()
                );
            }
            if name == "style" {
                let css = node.text().unwrap_or_default();
                assert!(!css.contains("url(") && !css.contains("@import"), "{css}");
            }
        }
    }

    /// A chart of the page: its id, its legend (series name, colour) and its svg.
    struct Figure<'a> {
        id: String,
        legend: Vec<(String, String)>,
        svg: roxmltree::Node<'a, 'a>,
    }

    fn charts<'a>(doc: &'a roxmltree::Document) -> Vec<Figure<'a>> {
        doc.descendants()
            .filter(|n| n.has_tag_name("figure"))
            .map(|f| {
                let id = f.attribute("id").expect("figure id").to_string();
                let legend = f
                    .descendants()
                    .filter(|n| n.attribute("class") == Some("series"))
                    .map(|li| {
                        let name: String = li
                            .descendants()
                            .filter(|n| n.is_text())
                            .map(|t| t.text().unwrap())
                            .collect();
                        (name, li.attribute("data-color").unwrap().to_string())
                    })
                    .collect();
                let svg = f
                    .children()
                    .find(|n| n.has_tag_name("svg"))
                    .unwrap_or_else(|| panic!("{id} has no svg"));
                Figure { id, legend, svg }
            })
            .collect()
    }

    /// The texts an svg shows.
    fn texts(svg: roxmltree::Node) -> Vec<String> {
        svg.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or_default().trim().to_string())
            .collect()
    }

    fn polylines<'a>(svg: roxmltree::Node<'a, 'a>, color: &str) -> Vec<Vec<(f64, f64)>> {
        svg.descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(color))
            .map(|n| {
                n.attribute("points")
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(|xy| {
                        let (x, y) = xy.split_once(',').expect("x,y");
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    /// Every series of every chart of `r` has its points, and the svg draws
    /// them: a solid segment is one polyline of its colour with all its
    /// points.
    fn assert_every_series_drawn(r: &Report, charts: &[Figure]) {
        for model in run_charts(r) {
            let Figure { svg, .. } = charts
                .iter()
                .find(|c| c.id == format!("chart-{}", model.id))
                .unwrap_or_else(|| panic!("chart-{} not on the page", model.id));
            for s in &model.series {
                assert!(
                    s.points().count() >= 2,
                    "{}: {} has no line",
                    model.id,
                    s.name
                );
                let RGBColor(r, g, b) = s.color;
                let drawn = polylines(*svg, &format!("#{r:02X}{g:02X}{b:02X}"));
                assert!(!drawn.is_empty(), "{}: {} not drawn", model.id, s.name);
                if !s.dashed {
                    for seg in &s.segments {
                        assert!(
                            drawn.iter().any(|p| p.len() == seg.len()),
                            "{}: a segment of {} with {} points is not drawn",
                            model.id,
                            s.name,
                            seg.len()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn run_report_is_well_formed_and_fetches_nothing() {
        let html = render(&report(1, false));
        let doc = parse(&html);
        assert_self_contained(&doc);
        // The headline table comes first, one row per phase.
        let table = doc
            .descendants()
            .find(|n| n.attribute("class") == Some("headline"))
            .expect("headline table");
        let rows: Vec<_> = table.children().filter(|n| n.has_tag_name("tr")).collect();
        assert_eq!(rows.len(), 3, "header + 2 phases");
        let first = rows[1].children().next().unwrap().text().unwrap();
        assert_eq!(first, "warm & up");
    }

    #[test]
    fn run_report_draws_one_chart_per_expected_series() {
        let r = report(1, false);
        let html = render(&r);
        let doc = parse(&html);
        let charts = charts(&doc);
        let names = |c: &Figure| -> Vec<String> { c.legend.iter().map(|l| l.0.clone()).collect() };
        let expected: Vec<(&str, Vec<&str>)> = vec![
            ("chart-throughput", vec!["requests/s", "errors/s"]),
            ("chart-latency", vec!["p50", "p90", "p99", "max"]),
            ("chart-distribution", vec!["warm & up", "load"]),
            ("chart-agents", vec!["a1 (host-1)", "a2 (host<2>)"]),
            ("chart-host-cpu", vec!["host-1", "host<2>"]),
            ("chart-host-memory", vec!["host-1", "host<2>"]),
            (
                "chart-host-network",
                vec![
                    "host-1 received",
                    "host-1 sent",
                    "host<2> received",
                    "host<2> sent",
                ],
            ),
        ];
        assert_eq!(
            charts.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            expected.iter().map(|e| e.0).collect::<Vec<_>>()
        );
        for (chart, (id, series)) in charts.iter().zip(&expected) {
            assert_eq!(names(chart), *series, "{id}");
        }
        assert_every_series_drawn(&r, &charts);
        // Two phases: each series of a run-time chart is drawn in two pieces.
        let throughput = &run_charts(&r)[0];
        assert_eq!(throughput.series[0].segments.len(), 2);
        assert_eq!(throughput.series[0].segments[0].len(), 6);
        assert_eq!(throughput.series[0].segments[1].len(), 5);
    }

    #[test]
    fn phase_starts_and_warmup_are_marked_on_the_time_axis() {
        let r = report(1, false);
        let html = render(&r);
        let doc = parse(&html);
        let charts = charts(&doc);
        for Figure { id, svg, .. } in charts.iter().filter(|c| c.id != "chart-distribution") {
            let texts = texts(*svg);
            for phase in ["warm & up", "load"] {
                assert!(texts.iter().any(|t| t == phase), "{id}: {phase} not marked");
            }
            let marks = polylines(*svg, "#707070");
            assert_eq!(marks.len(), 2, "{id}: one line per phase start");
            let shaded: Vec<_> = svg
                .descendants()
                .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some("#E4E4E4"))
                .collect();
            assert_eq!(shaded.len(), 1, "{id}: one warm-up");
            let width: f64 = shaded[0].attribute("width").unwrap().parse().unwrap();
            assert!(width > 10.0, "{id}: warm-up {width} px wide");
        }
        // Phases sit on the run's time axis by their start.
        assert_eq!(r.phases[0].start_s, 1.0);
        assert_eq!(r.phases[1].start_s, 8.0);
        let model = run_charts(&r);
        assert_eq!(model[0].marks.lines[1], (8.0, "load".to_string()));
        assert_eq!(model[0].marks.shaded, vec![(1.0, 3.0)]);
        assert_eq!(model[0].series[0].segments[1][0].0, 8.5);
    }

    #[test]
    fn text_from_the_log_is_escaped() {
        let html = render(&report(1, false));
        assert!(!html.contains("<script"), "raw markup from the log");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("<title>fleetbench run demo &lt;&amp;&gt; (run-1)</title>"));
        let doc = parse(&html);
        let notice = doc
            .descendants()
            .find(|n| n.attribute("class") == Some("notices"))
            .expect("notices listed");
        let items: Vec<&str> = notice
            .children()
            .filter(|n| n.has_tag_name("li"))
            .map(|n| n.text().unwrap())
            .collect();
        assert_eq!(items, vec![format!("warn: {NOTICE}")]);
    }

    #[test]
    fn compare_overlays_both_runs_per_phase() {
        let (base, candidate) = (report(1, false), report(3, true));
        let html = render_compare(&base, &candidate);
        let doc = parse(&html);
        assert_self_contained(&doc);
        let charts = charts(&doc);
        let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "chart-throughput-0",
                "chart-latency-0",
                "chart-distribution-0",
                "chart-throughput-1",
                "chart-latency-1",
                "chart-distribution-1"
            ]
        );
        for Figure { id, legend, svg } in &charts {
            let names: Vec<&str> = legend.iter().map(|l| l.0.as_str()).collect();
            assert!(
                names.iter().any(|n| n.starts_with("base")),
                "{id}: {names:?}"
            );
            assert!(
                names.iter().any(|n| n.starts_with("candidate")),
                "{id}: {names:?}"
            );
            for (name, color) in legend {
                assert!(!polylines(*svg, color).is_empty(), "{id}: {name} not drawn");
            }
        }
        let latency = &charts[1].legend;
        assert_eq!(latency.len(), 8, "p50/p90/p99/max of both runs");
        // Time runs from each phase's start: the "load" phase of both runs
        // starts at 0 on its charts.
        let model = compare_charts(1, &base.phases[1], &candidate.phases[1]);
        assert_eq!(model[0].series[0].segments[0][0].0, 0.5);
        assert_eq!(model[0].x_range, (0.0, 5.0));
        // The candidate is three times slower: its p99 change is positive.
        let text: String = doc
            .descendants()
            .filter(|n| n.is_text())
            .map(|n| n.text().unwrap())
            .collect();
        assert!(text.contains("Only in the candidate run: extra."), "{text}");
        let p99 = doc
            .descendants()
            .filter(|n| n.has_tag_name("tr"))
            .find(|tr| tr.first_element_child().and_then(|c| c.text()) == Some("p99"))
            .expect("p99 row");
        let change = p99.last_element_child().unwrap().text().unwrap();
        assert!(change.starts_with('+'), "p99 change {change}");
    }

    #[test]
    fn a_run_without_results_renders_without_charts() {
        let html = render(&Fold::new().report(&ReportOptions::default()));
        let doc = parse(&html);
        assert_self_contained(&doc);
        assert_eq!(
            doc.descendants().filter(|n| n.has_tag_name("svg")).count(),
            0
        );
        assert!(html.contains("logged no results"));
    }

    /// A step-load run: one open-loop phase of two operations on two
    /// agents, rate stepping 100 -> 200 -> 400/s, stopped at window 7; agent
    /// a1 wakes late (limited), a2 keeps up.
    fn step_report() -> Report {
        let agents = [("a1", "host-1"), ("a2", "host-2")];
        let mut records = vec![record(Record::RunStarted(pb::RunStarted {
            run_id: "run-2".into(),
            name: "steps".into(),
            started_at_us: T0,
            ..Default::default()
        }))];
        let steps = [
            (3_000, 100.0, 100.0),
            (3_000, 200.0, 200.0),
            (4_000, 400.0, 400.0),
        ];
        records.push(record(Record::PhaseScheduled(pb::PhaseScheduled {
            phase_index: 0,
            name: "step <load>".into(),
            start_at_us: T0 + 1_000_000,
            duration_ms: 10_000,
            window_ms: 1000,
            agent_ids: agents.iter().map(|a| a.0.to_string()).collect(),
            ops: vec!["read".into(), "write".into()],
            shape: Some(shape(&steps, "poisson")),
            ..Default::default()
        })));
        let mut rng = Rng::new(9);
        let mut seq = [0u64; 2];
        for i in 0..8u32 {
            let rate = if i < 3 {
                100
            } else if i < 6 {
                200
            } else {
                400
            };
            for (a, (id, _)) in agents.iter().enumerate() {
                for (op, share, latency) in [("read", 4, 300), ("write", 1, 2_000)] {
                    let n = rate / 2 * share / 5;
                    let mut w = WindowAcc::new();
                    for _ in 0..n {
                        w.record_ok(latency * (1 + u64::from(i) / 3) + rng.next_u64() % 100);
                    }
                    let mut w = w.to_pb(0, i, 1000);
                    w.op = op.into();
                    w.scheduled = n;
                    if a == 0 {
                        w.late_wakes = n / 5;
                        w.max_wake_lag_us = 40_000;
                    }
                    seq[a] += 1;
                    records.push(agent_event(id, seq[a], 0, Kind::Window(w)));
                }
            }
        }
        records.push(record(Record::PhaseStopRequested(pb::PhaseStopRequested {
            phase_index: 0,
            reason: "p99 8.1ms > 5ms".into(),
            window_index: 7,
            rate: 400.0,
            condition_met: true,
        })));
        let mut fold = Fold::new();
        records.iter().for_each(|r| fold.apply(r));
        fold.report(&ReportOptions::default())
    }

    #[test]
    fn operations_offered_load_and_stops_are_drawn() {
        let r = step_report();
        let html = render(&r);
        let doc = parse(&html);
        assert_self_contained(&doc);
        let charts = charts(&doc);
        let legend = |id: &str| -> Vec<String> {
            charts
                .iter()
                .find(|c| c.id == id)
                .unwrap_or_else(|| panic!("no {id}"))
                .legend
                .iter()
                .map(|l| l.0.clone())
                .collect()
        };
        assert_eq!(
            legend("chart-throughput"),
            ["requests/s", "errors/s", "offered/s", "intended rate"]
        );
        assert_eq!(legend("chart-ops"), ["read", "write"]);
        assert_eq!(legend("chart-op-latency"), ["read", "write"]);
        assert_every_series_drawn(&r, &charts);
        // The intended rate is the steps, the offered rate what was scheduled.
        let throughput = &run_charts(&r)[0];
        let intended: Vec<f64> = throughput.series[3].points().map(|p| p.1).collect();
        assert_eq!(
            intended,
            [100.0, 100.0, 100.0, 200.0, 200.0, 200.0, 400.0, 400.0]
        );
        let offered: Vec<f64> = throughput.series[2].points().map(|p| p.1).collect();
        assert_eq!(offered[0], 100.0);
        // The stop is marked on every time-axis chart, labelled, at the
        // start of window 7 (phase start 1 s + 7 s).
        assert_eq!(
            throughput.marks.stops,
            [(8.0, "stopped: p99 8.1ms > 5ms".to_string())]
        );
        for Figure { id, svg, .. } in charts.iter().filter(|c| c.id != "chart-distribution") {
            let texts = texts(*svg);
            assert!(
                texts.iter().any(|t| t == "stopped: p99 8.1ms > 5ms"),
                "{id}: stop not labelled"
            );
            assert!(!polylines(*svg, "#303030").is_empty(), "{id}: no stop line");
        }
        // The banner names the limited agent; the other is not named.
        let banners: Vec<String> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("limited"))
            .map(|n| {
                n.descendants()
                    .filter(|t| t.is_text())
                    .filter_map(|t| t.text())
                    .collect()
            })
            .collect();
        assert_eq!(banners.len(), 1, "{banners:?}");
        assert!(
            banners[0].starts_with(
                "LOAD-GENERATOR-LIMITED: in phase step <load> the numbers describe agent a1, \
                 not the target: 20% of sends woke more than 5 ms late (max 40 ms)"
            ),
            "{}",
            banners[0]
        );
        // The operations table: one row per op, shares adding up.
        let table = doc
            .descendants()
            .find(|n| n.attribute("class") == Some("ops"))
            .expect("ops table");
        let rows: Vec<Vec<&str>> = table
            .children()
            .filter(|n| n.has_tag_name("tr"))
            .skip(1)
            .map(|tr| tr.children().filter_map(|td| td.text()).collect())
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][..4], ["step <load>", "read", "1360", "80.0%"]);
        assert_eq!(&rows[1][..4], ["step <load>", "write", "340", "20.0%"]);
        assert!(html.contains("stopped at window 7 (t=7s, rate 400/s): p99 8.1ms &gt; 5ms"));
    }

    #[test]
    fn compare_warns_about_a_limited_run_and_marks_stops() {
        let (base, candidate) = (report(1, false), step_report());
        let mut limited = candidate.clone();
        limited.phases[0].name = "load".into();
        let html = render_compare(&base, &limited);
        let doc = parse(&html);
        assert_self_contained(&doc);
        assert!(html.contains("candidate run: in phase load the numbers describe agent a1"));
        assert!(html.contains("This comparison is not trustworthy"));
        let model = compare_charts(0, &base.phases[1], &limited.phases[0]);
        assert_eq!(model[0].marks.stops.len(), 1);
        assert_eq!(model[0].marks.stops[0].0, 7.0);
    }

    #[test]
    fn axis_labels_read_as_people_write_them() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(10_000.0), "99.99%");
        assert_eq!(percentile_label(20.0), "");
        assert_eq!(axis_us(1000.0), "1ms");
        assert_eq!(axis_us(2500.0), "2.5ms");
        assert_eq!(axis_us(250.0), "250us");
        assert_eq!(si(1234.0), "1.23k");
        assert_eq!(si(12.5), "12.5");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3 GiB");
        assert_eq!(trim(-0.01, 1), "0");
        assert_eq!(nice_log(2_600.0, false), 2_000.0);
        assert_eq!(nice_log(2_600.0, true), 5_000.0);
        assert_eq!(nice_log(7_000.0, true), 10_000.0);
        assert_eq!(nice_log(1_000.0, false), 1_000.0);
        assert_eq!(log_keys(2_000.0, 50_000.0), [2e3, 5e3, 1e4, 2e4, 5e4]);
    }
}
