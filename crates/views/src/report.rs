//! Renders a [`Report`] (computed by the fold) for people and for programs:
//! a summary table, JSON, CSV (one row per phase), or an HTML page with
//! charts (drawn by [`crate::html`]). Rendering is pure and deterministic:
//! the same report always renders to the same bytes.

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

use crate::cells::{
    csv_field, latency_cells, latency_of, limited_text, offered_line, right_align, send_lag_line,
    stop_text,
};
use crate::format::Format;
use fleetbench::clock::format_us;
use fleetbench_fold::{LatencyReport, OpReport, PhaseReport, Report};

/// The report in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => table(report),
        Format::Json => json(report),
        Format::Csv => csv(report),
        Format::Html => crate::html::render(report),
    }
}

/// The report as pretty-printed JSON (the model's fields by name), ending
/// in a newline.
pub fn json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("report serializes: plain data");
    s.push('\n');
    s
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
    right_align(&mut t, 1..9);
    let _ = writeln!(out, "{t}");
    for p in &report.phases {
        for line in loud_lines(p) {
            let _ = writeln!(out, "{line}");
        }
        if !p.ops.is_empty() {
            let _ = writeln!(out, "operations of {}:", p.name);
            let _ = writeln!(out, "{}", ops_table(&p.ops));
        }
        if let Some(line) = offered_line(p) {
            let _ = writeln!(out, "{line}");
        }
        if let Some(line) = send_lag_line(p) {
            let _ = writeln!(out, "{line}");
        }
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

/// The lines a phase must not be read without: an agent that limited it
/// (one line per agent) and where run control stopped it.
fn loud_lines(p: &PhaseReport) -> Vec<String> {
    let mut out: Vec<String> = p
        .generator_limited
        .iter()
        .map(|l| format!("LOAD-GENERATOR-LIMITED: {}", limited_text(&p.name, l)))
        .collect();
    if let Some(s) = &p.stopped {
        out.push(format!("{}: {}", p.name, stop_text(s)));
    }
    out
}

/// A phase's operations: requests, share, throughput, errors, latency.
fn ops_table(ops: &[OpReport]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
            "op", "requests", "share", "req/s", "errors", "p50", "p90", "p99", "max",
        ]);
    for op in ops {
        let [p50, p90, p99, _, max] = latency_of(op.latency_us.as_ref());
        t.add_row([
            op.name.clone(),
            op.requests.to_string(),
            format!("{:.1}%", op.share_pct),
            format!("{:.1}", op.throughput_rps),
            op.error_count().to_string(),
            p50,
            p90,
            p99,
            max,
        ]);
    }
    right_align(&mut t, 1..9);
    t
}

/// One CSV row per phase. A report with operations, a load-generator-limited
/// phase or a stopped phase gets three more columns (`op`,
/// `generator_limited`, `stopped_at_window`) and a row per operation after
/// its phase's row (`op` empty on phase rows); other reports keep the
/// columns they always had.
pub fn csv(report: &Report) -> String {
    let extended = report
        .phases
        .iter()
        .any(|p| !p.ops.is_empty() || !p.generator_limited.is_empty() || p.stopped.is_some());
    let mut out = String::from(
        "run_id,name,status,phase,requests,ok,errors,duration_s,throughput_rps,p50_us,p90_us,p99_us,p999_us,max_us",
    );
    out.push_str(if extended {
        ",op,generator_limited,stopped_at_window\n"
    } else {
        "\n"
    });
    for p in &report.phases {
        let limited: Vec<&str> = p
            .generator_limited
            .iter()
            .map(|l| l.agent.as_str())
            .collect();
        let stopped = p
            .stopped
            .as_ref()
            .map_or(String::new(), |s| s.window_index.to_string());
        let mut row = |op: &str, requests, ok, errors, throughput, l: Option<&LatencyReport>| {
            let cell = |f: fn(&LatencyReport) -> u64| l.map_or(String::new(), |l| f(l).to_string());
            let _ = write!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                report.run_id,
                csv_field(&report.name),
                report.status,
                csv_field(&p.name),
                requests,
                ok,
                errors,
                p.duration_s,
                throughput,
                cell(|l| l.p50),
                cell(|l| l.p90),
                cell(|l| l.p99),
                cell(|l| l.p999),
                cell(|l| l.max),
            );
            if extended {
                let _ = write!(
                    out,
                    ",{},{},{}",
                    csv_field(op),
                    csv_field(&limited.join(" ")),
                    stopped
                );
            }
            out.push('\n');
        };
        row(
            "",
            p.requests,
            p.ok,
            p.error_count(),
            p.throughput_rps,
            p.latency_us.as_ref(),
        );
        for op in &p.ops {
            row(
                &op.name,
                op.requests,
                op.ok,
                op.error_count(),
                op.throughput_rps,
                op.latency_us.as_ref(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use fleetbench_fold::testlog::{
        OpWindow, fold_of, limited_agent_log, op_less_log, scheduled, stop, stream,
    };
    use fleetbench_fold::{Fold, ReportOptions};

    use super::*;

    /// An op-less log (every log written before operations existed) reports
    /// byte for byte as it did then, in table, JSON and CSV.
    #[test]
    fn an_op_less_log_reports_exactly_as_before_operations() {
        let mut f = Fold::new();
        op_less_log().iter().for_each(|r| f.apply(r));
        let report = f.report(&ReportOptions::default());
        let pinned = [
            (Format::Table, include_str!("testdata/op-less.txt")),
            (Format::Json, include_str!("testdata/op-less.json")),
            (Format::Csv, include_str!("testdata/op-less.csv")),
        ];
        for (format, want) in pinned {
            let got = render(&report, format);
            assert_eq!(got, want, "{format:?}");
        }
    }

    /// The limited agent is named loudly in the table, and listed in the
    /// JSON and the CSV.
    #[test]
    fn a_limited_agent_is_named_in_every_format() {
        let report = fold_of(&limited_agent_log()).report(&ReportOptions::default());
        let table = table(&report);
        assert!(
            table.contains(
                "LOAD-GENERATOR-LIMITED: in phase load the numbers describe agent a, not the target: \
                 40% of sends woke more than 5 ms late (max 30 ms); agent CPU 97% of its 1 thread"
            ),
            "{table}"
        );
        assert!(
            table.contains("load: offered 3600 requests (the schedule), achieved 3600 (100.0%)")
        );
        let json = json(&report);
        assert!(json.contains("\"generator_limited\""), "{json}");
        let csv = csv(&report);
        assert!(
            csv.lines()
                .next()
                .unwrap()
                .ends_with(",op,generator_limited,stopped_at_window")
        );
        assert!(csv.lines().nth(1).unwrap().ends_with(",,a,"), "{csv}");
    }

    /// A stop is said with its window, time and rate.
    #[test]
    fn a_stopped_phase_says_where_and_why() {
        let mut records = stream(6);
        records.push(stop(14, "p99 23.1ms > 20ms"));
        let report = fold_of(&records).report(&ReportOptions::default());
        let table = table(&report);
        assert!(
            table.contains("load: stopped at window 14 (t=14s, rate 1200/s): p99 23.1ms > 20ms"),
            "{table}"
        );
        assert!(json(&report).contains("\"stopped\": {"));
    }

    /// An open-loop phase's send lag is a line of the table and of the
    /// HTML notes, and an object in the JSON.
    #[test]
    fn the_send_lag_is_said_in_every_format() {
        let mut records = vec![scheduled()];
        for (seq, i) in (1..).zip(0..20u32) {
            let w = OpWindow {
                requests: 100,
                latency_us: 300,
                send_lag_us: Some(12),
                ..OpWindow::new("a", seq, i)
            };
            records.push(w.record());
        }
        let report = fold_of(&records).report(&ReportOptions::default());
        let line = "load: send lag p50 12us p99 12us max 12us \
                    (the generator's own delay, included in the latency above)";
        assert!(table(&report).contains(line), "{}", table(&report));
        assert!(
            crate::html::render(&report).contains(&line.replace('\'', "&#39;")),
            "the HTML notes"
        );
        let json = json(&report);
        assert!(
            json.contains("\"send_lag_us\": {\n        \"p50\": 12,"),
            "{json}"
        );
        // A closed-loop phase has none.
        let closed = fold_of(&stream(1)).report(&ReportOptions::default());
        assert!(!table(&closed).contains("send lag"));
    }
}
