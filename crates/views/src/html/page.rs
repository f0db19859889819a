//! The HTML around the charts: the page's frame (head, CSS, footer), the
//! escaping of every text that comes from the log, and the tables and notes
//! a page shows: a run's headline, operations and hosts tables, its phase
//! notes, log integrity and notices, the load-generator-limited banners,
//! the banner of a service that died, and a compared phase's table of
//! changes. The charts are `draw`'s.

use std::fmt::Write as _;

use super::axis::bytes;
use crate::cells::{
    latency_cells, latency_of, limited_text, offered_line, reason_text, send_lag_line,
    service_text, stderr_heading, stop_text, threshold_cells, verdict_head,
};
use fleetbench::clock::format_us;
use fleetbench_fold::{LatencyReport, PhaseReport, Report};

/// The page is also well-formed XML (void elements closed, no bare `&` or
/// `<`), so tests can parse it whole.
pub(super) fn page_start(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        esc(title)
    )
}

pub(super) fn page_end() -> String {
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
.verdict { padding: 0.5em 0.8em; margin: 0.6em 0; border: 2px solid; font-weight: 600; }
.verdict.passed { background: #e8f5e9; border-color: #2e7d32; color: #1b5e20; }
.verdict.failed, .verdict.invalid { background: #fdecea; border-color: #c62828; color: #8e0000; }
.verdict.interrupted { background: #fff4e0; border-color: #ef8f00; color: #8a4b00; }
footer { margin-top: 2em; font-size: 0.85em; }
";

/// Escapes text for HTML content and attribute values.
pub(super) fn esc(s: &str) -> String {
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

pub(super) fn run_meta(r: &Report) -> String {
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

pub(super) fn headline_table(r: &Report) -> String {
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

/// Extra percentiles, error classes, warm-up, stops, offered load and send
/// lag per phase, as the table report lists them.
pub(super) fn phase_notes(r: &Report) -> String {
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
        if let Some(line) = send_lag_line(p) {
            items.push(esc(&line));
        }
    }
    list("notes", &items)
}

/// The verdict, on top: green passed, red failed or invalid, amber
/// interrupted; several reasons listed.
pub(super) fn verdict_banner(r: &Report) -> String {
    let mut out = format!(
        "<div class=\"verdict {}\">{}",
        r.verdict.name(),
        esc(&verdict_head(r))
    );
    if r.reasons.len() > 1 {
        let items: Vec<String> = r.reasons.iter().map(|x| esc(&reason_text(x))).collect();
        out.push('\n');
        out.push_str(list("reasons", &items).trim_end());
    }
    out.push_str("</div>\n");
    out
}

/// Each threshold: its result, the value measured, the limit, in words.
pub(super) fn thresholds_table(r: &Report) -> String {
    if r.thresholds.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Thresholds</h2>\n<table class=\"thresholds\">\n<tr><th>threshold</th><th>result</th>\
         <th>measured</th><th>limit</th><th>judged</th></tr>\n",
    );
    for t in &r.thresholds {
        out.push_str("<tr>");
        for cell in threshold_cells(t) {
            let _ = write!(out, "<td>{}</td>", esc(&cell));
        }
        let _ = writeln!(out, "<td>{}</td></tr>", esc(&t.text));
    }
    out.push_str("</table>\n");
    out
}

/// The warning a load-generator-limited phase must not be read without.
pub(super) fn limited_banner(p: &PhaseReport, run: &str) -> String {
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

/// The warning a run whose service exited by itself must not be read
/// without, with the end of the service's stderr.
pub(super) fn services_banner(r: &Report) -> String {
    let mut out = String::new();
    for s in &r.services {
        let Some(text) = service_text(s) else {
            continue;
        };
        let (head, rest) = text.split_once(": ").unwrap_or(("", &text));
        let _ = write!(out, "<div class=\"limited service\">");
        if s.died_during_run {
            let _ = write!(out, "<strong>{}</strong>: {}", esc(head), esc(rest));
        } else {
            out.push_str(&esc(&text));
        }
        if !s.stderr_tail.is_empty() {
            let _ = write!(
                out,
                "<br/>{}\n<pre>{}</pre>",
                esc(&stderr_heading(s)),
                esc(&s.stderr_tail.join("\n"))
            );
        }
        out.push_str("</div>\n");
    }
    out
}

/// Per phase with named operations, each operation's numbers.
pub(super) fn ops_table(r: &Report) -> String {
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

pub(super) fn hosts_table(r: &Report) -> String {
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

pub(super) fn log_integrity(r: &Report) -> String {
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

pub(super) fn notices(title: &str, notices: &[String]) -> String {
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

pub(super) fn compare_table(b: &PhaseReport, c: &PhaseReport) -> String {
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
