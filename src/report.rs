//! Renders a [`Report`] (computed by the fold) for people and for programs:
//! a summary table, JSON, CSV (one row per phase), or an HTML page with
//! charts (drawn by [`crate::html`]). Rendering is pure and deterministic:
//! the same report always renders to the same bytes.

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use crate::clock::format_us;
use crate::fold::{PhaseReport, Report};

/// Output formats of `report` and `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
    /// One self-contained HTML page with SVG charts.
    Html,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "html" => Ok(Format::Html),
            other => Err(format!(
                "unknown format {other:?}: use table, json, csv or html"
            )),
        }
    }
}

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => table(report),
        Format::Json => json(report),
        Format::Csv => csv(report),
        Format::Html => crate::html::render(report),
    }
}

pub fn json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("report serializes: plain data");
    s.push('\n');
    s
}

/// p50, p90, p99, p99.9 and max of a phase, as people read them ("-" when
/// the phase has no latency).
pub(crate) fn latency_cells(p: &PhaseReport) -> [String; 5] {
    match &p.latency_us {
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

/// The summary people read at the end of a run and from `report`.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {} ({}) {}: started {}, {:.1}s, {} agent(s)",
        report.run_id,
        report.name,
        report.status,
        report.started_at,
        report.duration_s,
        report.agents.len()
    );
    if !report.reason.is_empty() {
        let _ = writeln!(out, "reason: {}", report.reason);
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
            "phase", "requests", "errors", "req/s", "p50", "p90", "p99", "p99.9", "max",
        ]);
    for p in &report.phases {
        let [p50, p90, p99, p999, max] = latency_cells(p);
        let mut row = vec![
            p.name.clone(),
            p.requests.to_string(),
            p.error_count().to_string(),
            format!("{:.1}", p.throughput_rps),
        ];
        row.extend([p50, p90, p99, p999, max]);
        t.add_row(row);
    }
    for i in 1..9 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let _ = writeln!(out, "{t}");
    for p in &report.phases {
        if let Some(l) = &p.latency_us
            && !l.percentiles.is_empty()
        {
            let cells: Vec<String> = l
                .percentiles
                .iter()
                .map(|(k, v)| format!("{k} {}", format_us(*v as f64)))
                .collect();
            let _ = writeln!(out, "{}: {}", p.name, cells.join(", "));
        }
        if p.error_count() > 0 {
            let classes: Vec<String> = p.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "errors in {}: {}", p.name, classes.join(", "));
        }
        if p.warmup_s > 0.0 {
            let _ = writeln!(
                out,
                "{}: first {}s are warm-up, left out of the numbers above",
                p.name, p.warmup_s
            );
        }
    }
    if !report.hosts.is_empty() {
        let mut h = Table::new();
        h.load_style(UTF8_FULL_CONDENSED).set_header([
            "host",
            "cpu mean",
            "cpu max",
            "mem max",
            "load1 max",
        ]);
        for host in &report.hosts {
            h.add_row([
                host.host.clone(),
                format!("{:.1}%", host.cpu_pct_mean),
                format!("{:.1}%", host.cpu_pct_max),
                format!("{:.1} MiB", host.mem_used_max_bytes as f64 / 1048576.0),
                format!("{:.2}", host.load_1_max),
            ]);
        }
        let _ = writeln!(out, "{h}");
    }
    let log = &report.log;
    if log.duplicate_events > 0 || log.seq_gaps > 0 || log.bad_windows > 0 {
        let _ = writeln!(
            out,
            "log integrity: {} duplicate events, {} missing sequence numbers, {} unreadable windows",
            log.duplicate_events, log.seq_gaps, log.bad_windows
        );
    }
    for n in &report.notices {
        let _ = writeln!(out, "{n}");
    }
    out
}

/// One CSV row per phase.
pub fn csv(report: &Report) -> String {
    let mut out = String::from(
        "run_id,name,status,phase,requests,ok,errors,duration_s,throughput_rps,p50_us,p90_us,p99_us,p999_us,max_us\n",
    );
    for p in &report.phases {
        let l = p.latency_us.as_ref();
        let cell = |f: fn(&crate::fold::LatencyReport) -> u64| {
            l.map_or(String::new(), |l| f(l).to_string())
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            report.run_id,
            csv_field(&report.name),
            report.status,
            csv_field(&p.name),
            p.requests,
            p.ok,
            p.error_count(),
            p.duration_s,
            p.throughput_rps,
            cell(|l| l.p50),
            cell(|l| l.p90),
            cell(|l| l.p99),
            cell(|l| l.p999),
            cell(|l| l.max),
        );
    }
    out
}

/// A CSV field, quoted when it holds a separator, a quote or a line break.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
