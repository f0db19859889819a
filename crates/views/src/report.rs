//! Renders a [`Report`] (computed by the fold) for people and for programs:
//! a summary table, JSON, CSV (one row per phase), or an HTML page with
//! charts (drawn by [`crate::html`]). Rendering is pure and deterministic:
//! the same report always renders to the same bytes.

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

use crate::cells::{
    csv_field, latency_cells, latency_of, limited_text, offered_line, reason_text, right_align,
    send_lag_line, service_text, stderr_heading, stop_text, threshold_cells, verdict_head,
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
    for s in &report.services {
        let Some(text) = service_text(s) else {
            continue;
        };
        let _ = writeln!(out, "{text}");
        if !s.stderr_tail.is_empty() {
            let _ = writeln!(out, "{}", stderr_heading(s));
            for line in &s.stderr_tail {
                let _ = writeln!(out, "  | {line}");
            }
        }
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
    if report.phases.is_empty() {
        // A run that failed before its first phase: its status and reason
        // above say all there is.
        let _ = writeln!(out, "no phase ran");
    } else {
        let _ = writeln!(out, "{t}");
    }
    for p in &report.phases {
        phase_lines(&mut out, p);
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
    verdict_block(&mut out, report);
    out
}

/// The thresholds' table, then the verdict, last: the line a run ends on.
fn verdict_block(out: &mut String, report: &Report) {
    if !report.thresholds.is_empty() {
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(["threshold", "result", "measured", "limit"]);
        for th in &report.thresholds {
            t.add_row(threshold_cells(th));
        }
        right_align(&mut t, 2..4);
        let _ = writeln!(out, "thresholds:\n{t}");
    }
    let _ = writeln!(out, "{}", verdict_head(report));
    if report.reasons.len() > 1 {
        for r in &report.reasons {
            let _ = writeln!(out, "  {}", reason_text(r));
        }
    }
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

/// What the table says of phase `p` below the phases' table: its loud
/// lines, operations, offered load, send lag, stages, percentiles, errors
/// and warm-up.
fn phase_lines(out: &mut String, p: &PhaseReport) {
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
    if !p.stages_us.is_empty() {
        let _ = writeln!(out, "where the time went in {}:", p.name);
        let _ = writeln!(out, "{}", stages_table(p));
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

/// A phase's stages (connect, TLS handshake, time to first byte) beside
/// the whole request's latency.
fn stages_table(p: &PhaseReport) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(["stage", "requests", "p50", "p90", "p99", "max"]);
    let us = |v: u64| format_us(v as f64);
    // In the order a request goes through them; any other after.
    let known = ["dns", "connect", "tls", "ttfb", "receive"];
    let order = known
        .iter()
        .filter_map(|k| p.stages_us.get_key_value(*k))
        .chain(
            p.stages_us
                .iter()
                .filter(|(k, _)| !known.contains(&k.as_str())),
        );
    for (name, st) in order {
        let what = match name.as_str() {
            "dns" => "DNS lookup (new connections)",
            "connect" => "connect (new connections)",
            "tls" => "TLS handshake",
            "ttfb" => "time to first byte",
            "receive" => "receiving the body",
            other => other,
        };
        t.add_row([
            what.to_string(),
            st.count.to_string(),
            us(st.p50),
            us(st.p90),
            us(st.p99),
            us(st.max),
        ]);
    }
    if let Some(l) = &p.latency_us {
        let [p50, p90, p99, _, max] = latency_of(Some(l));
        t.add_row([
            "whole request".to_string(),
            p.requests.to_string(),
            p50,
            p90,
            p99,
            max,
        ]);
    }
    right_align(&mut t, 1..6);
    t
}

/// The lines the CSV opens with, each a comment ("# "): the verdict, then
/// each reason, each service that died or never started, and each
/// threshold judged. A reader skips lines starting
/// with '#' (pandas: `comment='#'`; DuckDB: `comment = '#'`).
fn csv_comments(report: &Report) -> String {
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    let mut out = format!("# verdict: {}\n", report.verdict.name());
    for r in &report.reasons {
        let _ = writeln!(out, "# reason: {}", one_line(&reason_text(r)));
    }
    for s in report.services.iter().filter_map(service_text) {
        let _ = writeln!(out, "# {}", one_line(&s));
    }
    for t in &report.thresholds {
        let _ = writeln!(
            out,
            "# threshold: {} {}: {}",
            one_line(&t.threshold),
            t.result.name(),
            one_line(&t.text)
        );
    }
    out
}

/// The verdict, its reasons and the thresholds as comment lines ("# "),
/// then one CSV row per phase. A report with operations, a load-generator-limited
/// phase or a stopped phase gets three more columns (`op`,
/// `generator_limited`, `stopped_at_window`) and a row per operation after
/// its phase's row (`op` empty on phase rows); other reports keep the
/// columns they always had. A service that exited by itself is said in a
/// `# ` line before the header.
pub fn csv(report: &Report) -> String {
    let mut out = csv_comments(report);
    let extended = report
        .phases
        .iter()
        .any(|p| !p.ops.is_empty() || !p.generator_limited.is_empty() || p.stopped.is_some());
    out.push_str(
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
    use fleetbench::pb::log_record::Record;
    use fleetbench_fold::testlog::{
        OpWindow, dead_service, finished, fold_of, limited_agent_log, op_less_log, phase_ended,
        scheduled, started_with, stop, stream, threshold,
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
        // After the comment lines (the verdict: this log has no end).
        let mut rows = csv.lines().skip_while(|l| l.starts_with('#'));
        assert!(
            rows.next()
                .unwrap()
                .ends_with(",op,generator_limited,stopped_at_window")
        );
        assert!(rows.next().unwrap().ends_with(",,a,"), "{csv}");
    }

    /// A limited agent that still sent on schedule does not void the run,
    /// but its passed verdict is not a plain one: the last line says it.
    #[test]
    fn a_passed_run_with_a_limited_phase_says_so_in_its_verdict() {
        // (This synthetic log has no end and sequence gaps, so the fold
        // judges it invalid; the rendering of a passed one is tested.)
        let mut report = fold_of(&limited_agent_log()).report(&ReportOptions::default());
        report.verdict = fleetbench_fold::Verdict::Passed;
        report.reasons.clear();
        let table = table(&report);
        assert!(
            table.ends_with("VERDICT: PASSED, with a warning: 1 phase load-generator-limited\n"),
            "{table}"
        );
    }

    /// A run that failed a threshold and lost an agent: the table ends on
    /// the thresholds and the verdict with both reasons; the CSV opens with
    /// them as comment lines, then the rows it always had.
    #[test]
    fn the_verdict_and_thresholds_close_the_table_and_open_the_csv() {
        let mut records = vec![started_with(vec![threshold(
            "p99",
            "load",
            1.0,
            "load:p99<1us",
        )])];
        records.extend(stream(3));
        records.push(phase_ended("a", 21, fleetbench::pb::PhaseEnded::default()));
        records.push(finished("completed", ""));
        let report = fold_of(&records).report(&ReportOptions::default());
        let table = table(&report);
        let tail: Vec<&str> = table.lines().rev().take(3).collect();
        assert_eq!(tail[2], "VERDICT: INVALID — 2 reasons:", "{table}");
        assert_eq!(
            tail[1],
            "  invalid: agent b never ended phase load: it never attached; its last window: 19 (up to t=20s)"
        );
        assert!(
            tail[0].starts_with("  failed: threshold load:p99<1us: p99 ")
                && tail[0].ends_with(", not below 1us"),
            "{table}"
        );
        assert!(table.contains("│ load:p99<1us ┆ FAILED ┆"), "{table}");
        let csv = csv(&report);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "# verdict: invalid");
        assert!(lines[1].starts_with("# reason: invalid: agent b never ended"));
        assert!(lines[3].starts_with("# threshold: load:p99<1us failed: p99 "));
        assert!(lines[4].starts_with("run_id,name,status,phase,"), "{csv}");
        assert_eq!(lines.len(), 6, "{csv}");
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

    /// A service that died during the run is said loudly in the table, with
    /// the end of its stderr; listed in the JSON; said before the CSV header.
    #[test]
    fn a_dead_service_is_said_in_every_format() {
        let mut records = stream(3);
        records.extend(dead_service());
        let report = fold_of(&records).report(&ReportOptions::default());
        let died = "SERVICE DIED: target (pid 4242) exited during phase load, 5.5s in: \
                    killed by signal 9 (SIGKILL); the results after that do not measure the service";
        let table = table(&report);
        assert!(table.contains(&format!("{died}\n")), "{table}");
        let tail_start = table
            .find("the last lines target wrote to stderr:\n  | target: line 6 <&>\n")
            .expect("the tail's heading and first line");
        assert!(table[tail_start..].contains("  | target: line 25 <&>\n"));
        assert!(!table.contains("line 5 <&>"), "only the last 20 lines");
        let json: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
        let s = &json["services"][0];
        assert_eq!(s["name"], "target");
        assert_eq!(s["state"], "exited");
        assert_eq!(s["died_during_run"], true);
        assert_eq!(s["exit_status"], "killed by signal 9 (SIGKILL)");
        assert_eq!(s["stderr_tail"].as_array().unwrap().len(), 20);
        assert_eq!(s["stderr_tail"][19], "target: line 25 <&>");
        let csv = csv(&report);
        // After the verdict and its reasons, before the header.
        assert!(csv.starts_with("# verdict: "), "{csv}");
        assert!(csv.contains(&format!("\n# {died}\nrun_id,")), "{csv}");
    }

    /// Services that ran until the run stopped them add nothing to any
    /// format: not even an empty `services` list in the JSON.
    #[test]
    fn services_stopped_by_the_run_add_nothing() {
        let mut records = stream(3);
        records.extend(dead_service().into_iter().filter(
            |r| !matches!(&r.record, Some(Record::ServiceState(s)) if s.state == "exited"),
        ));
        let report = fold_of(&records).report(&ReportOptions::default());
        assert!(report.services.is_empty());
        let json: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
        assert!(json.get("services").is_none(), "{json}");
        assert!(!table(&report).contains("target"));
        let csv = csv(&report);
        assert!(!csv.contains("target"), "{csv}");
        assert!(csv.contains("\nrun_id,"), "{csv}");
        assert!(!crate::html::render(&report).contains("class=\"limited service\""));
    }

    /// A run that failed before any phase shows its failure, not an empty
    /// table.
    #[test]
    fn a_run_that_failed_before_any_phase_prints_no_empty_table() {
        use fleetbench::pb;
        use fleetbench::pb::log_record::Record;
        let rec = |r| pb::LogRecord {
            logged_at_us: 1,
            record: Some(r),
        };
        let records = [
            rec(Record::RunStarted(pb::RunStarted {
                run_id: "r".into(),
                name: "w".into(),
                ..Default::default()
            })),
            rec(Record::RunFinished(pb::RunFinished {
                status: "failed".into(),
                reason: "local agent local-1 exited (exit status: 0) before attaching".into(),
            })),
        ];
        let table = table(&fold_of(&records).report(&ReportOptions::default()));
        assert!(table.starts_with("run r (w) failed: "), "{table}");
        assert!(
            table.contains("\nreason: local agent local-1 exited (exit status: 0) before attaching\nno phase ran\n"),
            "{table}"
        );
        assert!(
            !table.contains("requests") && !table.contains('┌'),
            "{table}"
        );
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
