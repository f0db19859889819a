//! `coordinator export`: a run's windows, or its raw log records, as rows for
//! notebooks and analytics engines (JSON Lines or CSV).
//!
//! Window rows come from a fold made with [`Fold::keeping_agent_windows`]:
//! one row per agent per logged window, read from the same fold state every
//! report is made of (duplicates already dropped, filters applied), so the
//! rows add up to the report's totals. Raw records are written as they are
//! logged, one JSON object per record, with their fields by name; latency
//! histograms are base64 of their V2 + deflate bytes, with their count.
//!
//! It owns no I/O of its own beyond writing to the `Write` it is given.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use data_encoding::BASE64;
use serde::Serialize;
use serde_json::{Value, json};

use crate::cells::csv_field;
use fleetbench::pb;
use fleetbench::pb::log_record::Record;
use fleetbench::window::{ErrorClass, decode_histogram};
use fleetbench_fold::{Fold, WindowLatency, notice_level};

/// One agent's results in one logged window of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct WindowRow {
    /// The run's id.
    pub run_id: String,
    /// Start of the window, seconds from the run's start.
    pub t_s: f64,
    /// The phase's name.
    pub phase: String,
    /// The phase's index in the workload file (0 first).
    pub phase_index: u32,
    /// Index of the window within the phase.
    pub window: u32,
    /// Width of the window, seconds.
    pub window_s: f64,
    /// The window starts inside the phase's warm-up.
    pub warmup: bool,
    /// The agent's id.
    pub agent: String,
    /// The host it ran on.
    pub host: String,
    /// The operation ("" for a single-workload phase): an agent has one row
    /// per operation per window.
    pub op: String,
    /// Requests finished, ok or failed.
    pub requests: u64,
    /// Requests that succeeded.
    pub ok: u64,
    /// Failed requests per error class.
    pub errors: BTreeMap<String, u64>,
    /// Bytes sent to the target.
    pub bytes_sent: u64,
    /// Bytes received from the target.
    pub bytes_received: u64,
    /// The window's latency percentiles (`p50_us`, `p90_us`, `p99_us`,
    /// `max_us`).
    #[serde(flatten)]
    pub latency: WindowLatency,
    /// Latencies beyond the histogram's range, recorded at its top.
    pub latency_clamped: u64,
    /// Open loop: sends the schedule called for.
    pub scheduled: u64,
    /// Open loop: sends whose worker woke more than 5 ms late.
    pub late_wakes: u64,
    /// Open loop: the largest such lag, µs.
    pub max_wake_lag_us: u64,
    /// Median TCP connect of the window's new connections, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_p50_us: Option<u64>,
    /// Median TLS handshake of the window's new connections, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_p50_us: Option<u64>,
    /// Median time to first byte, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb_p50_us: Option<u64>,
    /// 99th percentile time to first byte, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb_p99_us: Option<u64>,
}

impl WindowRow {
    /// Failed requests, all classes.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Every agent's every window, in time order (phase, window, agent). The
/// fold must have been made with [`Fold::keeping_agent_windows`].
pub fn window_rows(fold: &Fold) -> Vec<WindowRow> {
    debug_assert!(fold.keeps_agent_windows(), "the fold kept no agent windows");
    let run = fold.run.clone().unwrap_or_default();
    let mut rows = Vec::new();
    for p in fold.reported_phases() {
        let phase_start_us = p.start_at_us - run.started_at_us;
        for (agent, a) in &p.agents {
            let host = fold.agents.get(agent).map(|i| i.host.clone());
            for ((index, op), w) in &a.kept {
                let index = *index;
                let t_us = phase_start_us + i64::from(index) * i64::from(p.window_ms) * 1000;
                rows.push(WindowRow {
                    run_id: run.id.clone(),
                    t_s: (t_us as f64 / 1000.0).round() / 1000.0,
                    phase: p.name.clone(),
                    phase_index: p.index,
                    window: index,
                    window_s: f64::from(p.window_ms) / 1000.0,
                    warmup: p.is_warmup(index),
                    agent: agent.clone(),
                    host: host.clone().unwrap_or_default(),
                    op: op.clone(),
                    requests: w.requests(),
                    ok: w.ok,
                    errors: w.errors.clone(),
                    bytes_sent: w.bytes_sent,
                    bytes_received: w.bytes_received,
                    latency: WindowLatency::of(&w.latency),
                    latency_clamped: w.latency_clamped,
                    scheduled: w.scheduled,
                    late_wakes: w.late_wakes,
                    max_wake_lag_us: w.max_wake_lag_us,
                    connect_p50_us: stage_at(w, "connect", 0.5),
                    tls_p50_us: stage_at(w, "tls", 0.5),
                    ttfb_p50_us: stage_at(w, "ttfb", 0.5),
                    ttfb_p99_us: stage_at(w, "ttfb", 0.99),
                });
            }
        }
    }
    rows.sort_by(|a, b| {
        (a.phase_index, a.window, &a.agent, &a.op).cmp(&(b.phase_index, b.window, &b.agent, &b.op))
    });
    rows
}

/// Quantile `q` of stage `name` of a window, if it has the stage.
fn stage_at(w: &fleetbench_fold::WindowAgg, name: &str, q: f64) -> Option<u64> {
    w.stages
        .get(name)
        .filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(q))
}

/// One JSON object per line.
pub fn write_rows_jsonl(rows: &[WindowRow], out: &mut impl Write) -> io::Result<()> {
    for row in rows {
        serde_json::to_writer(&mut *out, row)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// A header, then one line per row. Errors get a column per class: the
/// classes fleetbench knows, always (but the gRPC statuses), then any
/// other found in the rows.
pub fn write_rows_csv(rows: &[WindowRow], out: &mut impl Write) -> io::Result<()> {
    let known: Vec<String> = ErrorClass::ALL
        .iter()
        .filter(|c| !c.is_grpc())
        .map(|c| c.name().to_string())
        .collect();
    let extra: BTreeSet<&String> = rows
        .iter()
        .flat_map(|r| r.errors.keys())
        .filter(|k| !known.contains(k))
        .collect();
    let classes: Vec<&String> = known.iter().chain(extra).collect();
    let mut header = String::from(
        "run_id,t_s,phase,phase_index,window,window_s,warmup,agent,host,op,requests,ok,errors",
    );
    for c in &classes {
        header.push_str(&format!(",errors_{}", csv_field(c)));
    }
    header.push_str(
        ",bytes_sent,bytes_received,p50_us,p90_us,p99_us,max_us,latency_clamped,\
         scheduled,late_wakes,max_wake_lag_us,connect_p50_us,tls_p50_us,ttfb_p50_us,ttfb_p99_us\n",
    );
    out.write_all(header.as_bytes())?;
    let opt = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
    for r in rows {
        let mut line = format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.run_id,
            r.t_s,
            csv_field(&r.phase),
            r.phase_index,
            r.window,
            r.window_s,
            r.warmup,
            csv_field(&r.agent),
            csv_field(&r.host),
            csv_field(&r.op),
            r.requests,
            r.ok,
            r.error_count()
        );
        for c in &classes {
            line.push_str(&format!(",{}", r.errors.get(*c).copied().unwrap_or(0)));
        }
        line.push_str(&format!(
            ",{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.bytes_sent,
            r.bytes_received,
            opt(r.latency.p50_us),
            opt(r.latency.p90_us),
            opt(r.latency.p99_us),
            opt(r.latency.max_us),
            r.latency_clamped,
            r.scheduled,
            r.late_wakes,
            r.max_wake_lag_us,
            opt(r.connect_p50_us),
            opt(r.tls_p50_us),
            opt(r.ttfb_p50_us),
            opt(r.ttfb_p99_us)
        ));
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// One raw log record as `export --events` writes it: `lsn`,
/// `logged_at_us`, `kind` first, then the record's fields.
#[derive(Debug, Clone, Serialize)]
pub struct RecordLine {
    /// The record's position in the log.
    pub lsn: u64,
    /// When the coordinator logged it, µs since the Unix epoch.
    pub logged_at_us: i64,
    /// The record's kind in snake case (`run_started`, `agent_event`, ...).
    pub kind: &'static str,
    /// The record's fields, by their proto names.
    #[serde(flatten)]
    pub fields: Value,
}

/// A `ServiceState`'s fields; those newer logs set (exit status, pid,
/// host) only when set, so an old log's records export as they did.
fn service_state_json(s: &pb::ServiceState) -> Value {
    let mut fields = json!({ "service": s.service, "state": s.state, "detail": s.detail });
    if !s.exit_status.is_empty() {
        fields["exit_status"] = json!(s.exit_status);
    }
    if s.pid > 0 {
        fields["pid"] = json!(s.pid);
    }
    if !s.host.is_empty() {
        fields["host"] = json!(s.host);
    }
    fields
}

/// One raw log record as a JSON object: `lsn`, `logged_at_us`, `kind`, and
/// the record's fields by their proto names. An agent's event carries its
/// `event` kind and that event's fields under the same name. Nothing secret
/// is written (an agent's secret never reaches the log; its field is left
/// out all the same).
pub fn record_json(lsn: u64, rec: &pb::LogRecord) -> RecordLine {
    let (kind, fields) = match &rec.record {
        None => ("unknown", json!({})),
        Some(Record::RunStarted(r)) => ("run_started", run_started_json(r)),
        Some(Record::AgentAttached(a)) => {
            let hello = a.hello.as_ref().map(|h| {
                json!({
                    "agent_id": h.agent_id,
                    "hostname": h.hostname,
                    "cores": h.cores,
                    "memory_bytes": h.memory_bytes,
                    "os": h.os,
                    "arch": h.arch,
                    "agent_version": h.agent_version,
                    "binary_hash": h.binary_hash,
                    "lowest_unacked": h.lowest_unacked,
                    "highest_seq": h.highest_seq,
                    "run_id": h.run_id,
                    "protocol": h.protocol,
                })
            });
            (
                "agent_attached",
                json!({
                    "hello": hello,
                    "peer": a.peer,
                    "clock_offset_us": a.clock_offset_us,
                    "rtt_us": a.rtt_us,
                }),
            )
        }
        Some(Record::AgentDetached(d)) => (
            "agent_detached",
            json!({ "agent_id": d.agent_id, "reason": d.reason }),
        ),
        Some(Record::AgentEvent(e)) => ("agent_event", agent_event_json(e)),
        Some(Record::PhaseScheduled(p)) => (
            "phase_scheduled",
            json!({
                "phase_index": p.phase_index,
                "name": p.name,
                "start_at_us": p.start_at_us,
                "duration_ms": p.duration_ms,
                "warmup_ms": p.warmup_ms,
                "window_ms": p.window_ms,
                "agent_ids": p.agent_ids,
                "shares": p.shares.iter().map(|s| json!({
                    "agent_id": s.agent_id,
                    "share": s.share,
                    "concurrency": s.concurrency,
                    "rate": s.rate,
                    "iterations": s.iterations,
                })).collect::<Vec<_>>(),
                "iterations": p.iterations,
                "shape": p.shape.as_ref().map(|s| json!({
                    "segments": s.segments.iter().map(|g| json!({
                        "duration_ms": g.duration_ms,
                        "from": g.from,
                        "to": g.to,
                    })).collect::<Vec<_>>(),
                    "arrival": s.arrival,
                })),
                "ops": p.ops,
            }),
        ),
        Some(Record::PhaseStopRequested(p)) => ("phase_stop_requested", stop_json(p)),
        Some(Record::ServiceOutput(o)) => (
            "service_output",
            json!({
                "service": o.service,
                "stream": o.stream,
                "data": String::from_utf8_lossy(&o.data),
            }),
        ),
        Some(Record::ServiceState(s)) => ("service_state", service_state_json(s)),
        Some(Record::RunFinished(f)) => (
            "run_finished",
            json!({ "status": f.status, "reason": f.reason }),
        ),
        Some(Record::Notice(n)) => (
            "notice",
            json!({ "level": n.level, "message": n.message, "agent_id": n.agent_id }),
        ),
    };
    RecordLine {
        lsn,
        logged_at_us: rec.logged_at_us,
        kind,
        fields,
    }
}

/// A `RunStarted`'s fields; its thresholds only when it has some (as every
/// run logged before thresholds has none).
fn run_started_json(r: &pb::RunStarted) -> Value {
    let mut fields = json!({
        "run_id": r.run_id,
        "name": r.name,
        "workload_path": r.workload_path,
        "workload_text": r.workload_text,
        "resolved_json": r.resolved_json,
        "coordinator_version": r.coordinator_version,
        "agent_binary_hash": r.agent_binary_hash,
        "started_at_us": r.started_at_us,
        "hostname": r.hostname,
    });
    if !r.thresholds.is_empty() {
        fields["thresholds"] = r
            .thresholds
            .iter()
            .map(|t| {
                json!({
                    "metric": t.metric,
                    "phase": t.phase,
                    "op": t.op,
                    "limit": t.limit,
                    "abort": t.abort,
                    "text": t.text,
                })
            })
            .collect();
    }
    fields
}

/// A `PhaseStopRequested`'s fields; the threshold's index only when a
/// threshold stopped the phase.
fn stop_json(p: &pb::PhaseStopRequested) -> Value {
    let mut fields = json!({
        "phase_index": p.phase_index,
        "reason": p.reason,
        "window_index": p.window_index,
        "rate": p.rate,
        "condition_met": p.condition_met,
    });
    if let Some(t) = p.threshold {
        fields["threshold"] = json!(t);
    }
    fields
}

fn agent_event_json(e: &pb::AgentEvent) -> Value {
    use pb::event::Kind;
    let mut out = json!({ "agent_id": e.agent_id, "clock_offset_us": e.clock_offset_us });
    let Some(ev) = &e.event else { return out };
    let (name, fields) = match &ev.kind {
        None => ("unknown", json!({})),
        Some(Kind::Window(w)) => (
            "window",
            json!({
                "phase_index": w.phase_index,
                "index": w.index,
                "width_ms": w.width_ms,
                "ok": w.ok,
                "errors": w.errors.iter().collect::<BTreeMap<_, _>>(),
                "bytes_sent": w.bytes_sent,
                "bytes_received": w.bytes_received,
                "latency_count": decode_histogram(&w.latency_histogram).ok().map(|h| h.len()),
                "latency_histogram": BASE64.encode(&w.latency_histogram),
                "latency_clamped": w.latency_clamped,
                "max_send_lag_us": w.max_send_lag_us,
                "op": w.op,
                "late_wakes": w.late_wakes,
                "max_wake_lag_us": w.max_wake_lag_us,
                "scheduled": w.scheduled,
            }),
        ),
        Some(Kind::HostMetrics(m)) => (
            "host_metrics",
            json!({
                "cpu_pct": m.cpu_pct,
                "mem_used_bytes": m.mem_used_bytes,
                "mem_total_bytes": m.mem_total_bytes,
                "net_rx_bytes": m.net_rx_bytes,
                "net_tx_bytes": m.net_tx_bytes,
                "load_1": m.load_1,
                "interval_ms": m.interval_ms,
                "agent_cpu_pct": m.agent_cpu_pct,
                "cores": m.cores,
            }),
        ),
        Some(Kind::PhaseStarted(p)) => (
            "phase_started",
            json!({ "phase_index": p.phase_index, "started_at_us": p.started_at_us }),
        ),
        Some(Kind::PhaseEnded(p)) => {
            let mut fields = json!({
                "phase_index": p.phase_index,
                "windows": p.windows,
                "requests": p.requests,
                "abandoned_in_flight": p.abandoned_in_flight,
                "stopped_early": p.stopped_early,
                "cpu_ms": p.cpu_ms,
                "threads": p.threads,
                "iterations_done": p.iterations_done,
            });
            // Older agents did not say how long they ran.
            if let (Some(ran), Value::Object(o)) = (p.ran_us, &mut fields) {
                o.insert("ran_us".into(), json!(ran));
            }
            ("phase_ended", fields)
        }
        Some(Kind::Notice(n)) => (
            "notice",
            json!({ "level": notice_level(n), "message": n.message }),
        ),
    };
    if let Value::Object(o) = &mut out {
        o.insert("seq".into(), json!(ev.seq));
        o.insert("agent_time_us".into(), json!(ev.agent_time_us));
        o.insert("event".into(), json!(name));
        o.insert(name.into(), fields);
    }
    out
}

/// The run's latencies as an HdrHistogram interval log (format version
/// 1.3, what HdrHistogram's `HistogramLogProcessor` and its ports read):
/// one interval per logged window, tagged with its phase (`Tag=PHASE`) and,
/// for a phase of named operations, each operation's too
/// (`Tag=PHASE/OP`). Times are seconds from the run's start (the log's
/// `StartTime`); values are µs, and the interval's max column is in
/// seconds (µs / 10^6, the format's default unit ratio).
pub fn write_hlog(fold: &Fold, out: &mut impl Write) -> io::Result<()> {
    let run = fold.run.clone().unwrap_or_default();
    let start_s = run.started_at_us as f64 / 1e6;
    writeln!(out, "#[Histogram log format version 1.3]")?;
    writeln!(
        out,
        "#[StartTime: {start_s:.3} (seconds since epoch), {}]",
        fleetbench::clock::rfc3339(run.started_at_us)
    )?;
    writeln!(
        out,
        "#[fleetbench run {}: latencies in microseconds]",
        run.id
    )?;
    writeln!(
        out,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )?;
    for p in fold.reported_phases() {
        let phase_start_us = p.start_at_us - run.started_at_us;
        let width_s = f64::from(p.window_ms) / 1000.0;
        let tag = hlog_tag(&p.name);
        let series = std::iter::once((tag.clone(), &p.windows)).chain(
            p.op_windows()
                .map(|(op, w)| (format!("{tag}/{}", hlog_tag(op)), w)),
        );
        for (tag, windows) in series {
            for (index, w) in windows {
                if w.latency.is_empty() {
                    continue;
                }
                let t_us = phase_start_us + i64::from(*index) * i64::from(p.window_ms) * 1000;
                let encoded = fleetbench::window::encode_histogram(&w.latency);
                writeln!(
                    out,
                    "Tag={tag},{:.3},{width_s:.3},{:.6},{}",
                    t_us as f64 / 1e6,
                    w.latency.max() as f64 / 1e6,
                    BASE64.encode(&encoded)
                )?;
            }
        }
    }
    Ok(())
}

/// A tag the interval log can hold: no comma, no space.
fn hlog_tag(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == ',' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbench::window::WindowAcc;
    use fleetbench_fold::ReportOptions;
    use fleetbench_fold::testlog::{agent_event, scheduled_with};

    fn rec(r: Record) -> pb::LogRecord {
        pb::LogRecord {
            logged_at_us: 7,
            record: Some(r),
        }
    }

    fn window(agent: &str, seq: u64, index: u32, n: u64, errors: u64) -> pb::LogRecord {
        let mut w = WindowAcc::new();
        for i in 0..n {
            w.record_ok(100 + i);
        }
        for _ in 0..errors {
            w.record_error(ErrorClass::Timeout, Some(5000));
        }
        agent_event(
            agent,
            seq,
            0,
            pb::event::Kind::Window(w.to_pb(0, index, 1000)),
        )
    }

    fn records() -> Vec<pb::LogRecord> {
        let mut out = vec![
            rec(Record::RunStarted(pb::RunStarted {
                run_id: "r".into(),
                started_at_us: 1_000_000,
                ..Default::default()
            })),
            scheduled_with(|p| {
                p.start_at_us = 3_500_000;
                p.duration_ms = 4000;
                p.warmup_ms = 1000;
            }),
        ];
        for i in 0..4 {
            out.push(window("a", u64::from(i) + 1, i, 10 + u64::from(i), 1));
            out.push(window("b", u64::from(i) + 1, i, 20, 0));
        }
        // A repeated event is not a second row.
        out.push(window("a", 2, 1, 11, 1));
        out
    }

    #[test]
    fn rows_add_up_to_the_report_and_sit_in_time() {
        let mut f = Fold::new().keeping_agent_windows();
        records().iter().for_each(|r| f.apply(r));
        let rows = window_rows(&f);
        assert_eq!(rows.len(), 8);
        let report = f.report(&ReportOptions::default());
        let measured: u64 = rows.iter().filter(|r| !r.warmup).map(|r| r.requests).sum();
        assert_eq!(measured, report.phases[0].requests);
        let errors: u64 = rows
            .iter()
            .filter(|r| !r.warmup)
            .map(|r| r.error_count())
            .sum();
        assert_eq!(errors, report.phases[0].error_count());
        assert_eq!(rows[0].t_s, 2.5);
        assert_eq!(rows[7].t_s, 5.5);
        assert_eq!((rows[0].agent.as_str(), rows[1].agent.as_str()), ("a", "b"));
        assert!(rows[0].warmup && !rows[2].warmup);
        assert_eq!(
            rows[0].latency.p99_us,
            Some(5003),
            "the timeout's 5 ms, in 11"
        );
    }

    #[test]
    fn a_fold_that_keeps_nothing_keeps_no_agent_windows() {
        let mut f = Fold::new();
        records().iter().for_each(|r| f.apply(r));
        assert!(f.phases[&0].agents.values().all(|a| a.kept.is_empty()));
    }

    #[test]
    fn csv_has_a_column_per_error_class_and_a_line_per_row() {
        let mut f = Fold::new().keeping_agent_windows();
        records().iter().for_each(|r| f.apply(r));
        let mut out = Vec::new();
        write_rows_csv(&window_rows(&f), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 9);
        let header: Vec<&str> = lines[0].split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let first: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(first.len(), header.len());
        assert_eq!(first[col("errors_timeout")], "1");
        assert_eq!(first[col("requests")], "11");
    }

    /// A phase of two operations: one row per agent, window and op, with
    /// the op named; the rows still add up to the report.
    #[test]
    fn each_operation_has_its_own_row() {
        let mut records = records();
        records.truncate(2);
        for i in 0..4u32 {
            for (k, op) in ["read", "write"].iter().enumerate() {
                let mut r = window("a", u64::from(i) * 2 + k as u64 + 1, i, 5 + k as u64, 1);
                if let Some(Record::AgentEvent(e)) = &mut r.record
                    && let Some(pb::event::Kind::Window(w)) =
                        e.event.as_mut().and_then(|ev| ev.kind.as_mut())
                {
                    w.op = (*op).into();
                    w.scheduled = 7;
                }
                records.push(r);
            }
        }
        let mut f = Fold::new().keeping_agent_windows();
        records.iter().for_each(|r| f.apply(r));
        let rows = window_rows(&f);
        assert_eq!(rows.len(), 8, "4 windows x 2 ops");
        assert_eq!(
            (rows[0].op.as_str(), rows[1].op.as_str()),
            ("read", "write")
        );
        assert_eq!(rows[0].window, rows[1].window);
        let report = f.report(&ReportOptions::default());
        let measured: u64 = rows.iter().filter(|r| !r.warmup).map(|r| r.requests).sum();
        assert_eq!(measured, report.phases[0].requests);
        let mut out = Vec::new();
        write_rows_csv(&rows, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let second: Vec<&str> = text.lines().nth(2).unwrap().split(',').collect();
        assert_eq!(second.len(), header.len());
        assert_eq!(second[col("op")], "write");
        assert_eq!(second[col("requests")], "7");
        assert_eq!(second[col("scheduled")], "7");
    }

    #[test]
    fn records_become_json_with_their_fields() {
        let all = records();
        let line = serde_json::to_string(&record_json(1, &all[0])).unwrap();
        assert!(
            line.starts_with(r#"{"lsn":1,"logged_at_us":7,"kind":"run_started","#),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "run_started");
        assert_eq!(v["lsn"], 1);
        assert_eq!(v["started_at_us"], 1_000_000);
        let w = serde_json::to_value(record_json(3, &all[2])).unwrap();
        assert_eq!(w["kind"], "agent_event");
        assert_eq!(w["event"], "window");
        assert_eq!(w["window"]["ok"], 10);
        assert_eq!(w["window"]["errors"]["timeout"], 1);
        assert_eq!(w["window"]["latency_count"], 11);
        assert_eq!(w["window"]["op"], "", "a single-workload window");
        assert_eq!(w["window"]["scheduled"], 0);
        let bytes = BASE64
            .decode(
                w["window"]["latency_histogram"]
                    .as_str()
                    .unwrap()
                    .as_bytes(),
            )
            .unwrap();
        assert_eq!(decode_histogram(&bytes).unwrap().len(), 11);
    }

    /// A service's state exports the fields newer logs set, and only those
    /// set: an old log's records export as they did.
    #[test]
    fn service_states_export_only_the_fields_set() {
        let rec = |state: pb::ServiceState| pb::LogRecord {
            logged_at_us: 1,
            record: Some(Record::ServiceState(state)),
        };
        let old = rec(pb::ServiceState {
            service: "t".into(),
            state: "stopped".into(),
            detail: "stopped: exit status: 0".into(),
            ..Default::default()
        });
        assert_eq!(
            serde_json::to_string(&record_json(2, &old)).unwrap(),
            r#"{"lsn":2,"logged_at_us":1,"kind":"service_state","detail":"stopped: exit status: 0","service":"t","state":"stopped"}"#
        );
        let new = rec(pb::ServiceState {
            service: "t".into(),
            state: "exited".into(),
            exit_status: "exit code 3".into(),
            pid: 42,
            host: "h".into(),
            ..Default::default()
        });
        let v = serde_json::to_value(record_json(3, &new)).unwrap();
        assert_eq!(v["exit_status"], "exit code 3");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["host"], "h");
    }
}
