//! `coordinator export` on a real run: window rows add up to the report,
//! one row per logged window, and raw records come out one JSON per line.

// Its test runs the workload once and reads every output of that run in turn.
#![allow(clippy::too_many_lines)]

mod common;

use common::*;

const WORKLOAD: &str = r#"
[run]
name = "export"

[agents]
local = 2

[[phase]]
name = "warm"
duration = "3s"
warmup = "1s"

[phase.synthetic]
latency = { dist = "exponential", mean = "1ms" }
error_ratio = 0.05
concurrency = 8

[[phase]]
name = "paced"
duration = "2s"

[phase.synthetic]
latency = "1ms"
rate = 200
"#;

fn report_with_warmup(data: &std::path::Path, run: &str) -> serde_json::Value {
    let out = coordinator(
        data,
        &["report", run, "--format", "json", "--include-warmup"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn export_rows_add_up_to_the_report_and_records_parse_line_by_line() {
    let dir = TempDir::new("export");
    let w = dir.write("export.toml", WORKLOAD);
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_id = report["run_id"].as_str().unwrap().to_string();
    let all = report_with_warmup(dir.path(), &run_id);

    // CSV: one row per agent per logged window.
    let csv_path = dir.path().join("windows.csv");
    let csv = coordinator(
        dir.path(),
        &[
            "export",
            &run_id,
            "--format",
            "csv",
            "--output",
            csv_path.to_str().unwrap(),
        ],
    );
    assert!(csv.status.success(), "{}", text(&csv.stderr));
    assert!(csv.stdout.is_empty(), "--output writes nothing to stdout");
    let csv_text = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = csv_text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let logged_windows: u64 = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["agents"].as_array().unwrap())
        .map(|a| a["windows"].as_u64().unwrap())
        .sum();
    assert_eq!(rows.len() as u64, logged_windows, "{csv_text}");
    let num = |r: &Vec<&str>, c: &str| r[col(c)].parse::<u64>().unwrap();
    for (i, phase) in ["warm", "paced"].iter().enumerate() {
        let of_phase: Vec<&Vec<&str>> = rows.iter().filter(|r| r[col("phase")] == *phase).collect();
        let measured = of_phase.iter().filter(|r| r[col("warmup")] == "false");
        assert_eq!(
            measured.clone().map(|r| num(r, "requests")).sum::<u64>(),
            requests(&report, i),
            "phase {phase}: measured rows against the report"
        );
        assert_eq!(
            of_phase.iter().map(|r| num(r, "requests")).sum::<u64>(),
            requests(&all, i),
            "phase {phase}: all rows against the report with warm-up"
        );
        let errors: u64 = measured.clone().map(|r| num(r, "errors")).sum();
        let reported: u64 = report["phases"][i]["errors"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(errors, reported, "phase {phase}: errors");
        assert_eq!(
            measured.map(|r| num(r, "errors_synthetic")).sum::<u64>(),
            report["phases"][i]["errors"]["synthetic"]
                .as_u64()
                .unwrap_or(0)
        );
        for r in &of_phase {
            assert_eq!(num(r, "requests"), num(r, "ok") + num(r, "errors"));
            assert!(r[col("agent")].starts_with("local-"), "{r:?}");
            assert!(!r[col("p99_us")].is_empty(), "{r:?}");
        }
    }
    assert!(report["phases"][0]["errors"]["synthetic"].as_u64().unwrap() > 0);

    // JSON Lines: the same rows, each line its own document.
    let jsonl = coordinator(dir.path(), &["export", &run_id, "--format", "jsonl"]);
    assert!(jsonl.status.success(), "{}", text(&jsonl.stderr));
    let json_rows: Vec<serde_json::Value> = text(&jsonl.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(json_rows.len(), rows.len());
    let total: u64 = json_rows
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, requests(&all, 0) + requests(&all, 1));
    assert!(json_rows.windows(2).all(|w| {
        let t = |r: &serde_json::Value| (r["phase_index"].as_u64(), r["window"].as_u64());
        t(&w[0]) <= t(&w[1])
    }));

    // Raw records: every record of the log, in order, one JSON per line.
    let events = coordinator(dir.path(), &["export", "latest", "--events"]);
    assert!(events.status.success(), "{}", text(&events.stderr));
    let events_text = text(&events.stdout);
    let records: Vec<serde_json::Value> = events_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        records.len() as u64,
        report["log"]["records"].as_u64().unwrap()
    );
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["lsn"].as_u64(), Some(i as u64 + 1), "{r}");
        assert!(r["logged_at_us"].as_i64().unwrap() > 0, "{r}");
    }
    assert_eq!(records[0]["kind"], "run_started");
    assert_eq!(records[0]["workload_text"], WORKLOAD);
    assert_eq!(records.last().unwrap()["kind"], "run_finished");
    let windows: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["kind"] == "agent_event" && r["event"] == "window")
        .collect();
    assert_eq!(windows.len(), rows.len());
    let counted: u64 = windows
        .iter()
        .map(|r| r["window"]["latency_count"].as_u64().unwrap())
        .sum();
    assert!(counted > 0);
    assert!(!events_text.contains("secret"), "no secret in the export");

    // --events is JSON Lines only.
    let bad = coordinator(
        dir.path(),
        &["export", &run_id, "--events", "--format", "csv"],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
}

/// `export --format hlog` is an HdrHistogram interval log that
/// HdrHistogram's Python port reads (`hdrh`, PyPI `hdrhistogram`): per
/// tag (the phase, and each operation), the intervals' counts add up to
/// the report's requests (warm-up included), and the merged p99 is the
/// report's within the histograms' resolution.
#[test]
fn hlog_export_reads_back_with_hdrhistogram() {
    let dir = TempDir::new("export-hlog");
    let w = dir.write(
        "hlog.toml",
        "[agents]\nlocal = 2\n\n[[phase]]\nname = \"mixed load\"\nduration = \"3s\"\nconcurrency = 8\n\n\
         [[phase.op]]\nname = \"fast\"\nweight = 3\nsynthetic = { latency = { dist = \"exponential\", mean = \"1ms\" } }\n\n\
         [[phase.op]]\nname = \"slow\"\nweight = 1\nsynthetic = { latency = \"5ms\" }\n",
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_id = report["run_id"].as_str().unwrap().to_string();
    let all = report_with_warmup(dir.path(), &run_id);
    let hlog = dir.path().join("run.hlog");
    let export = coordinator(
        dir.path(),
        &[
            "export",
            &run_id,
            "--format",
            "hlog",
            "--output",
            hlog.to_str().unwrap(),
        ],
    );
    assert!(export.status.success(), "{}", text(&export.stderr));
    let script = r#"
import json, sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
path = sys.argv[1]
# The whole file through the reader (its format), then each tag on its own.
reader = HistogramLogReader(path, HdrHistogram(1, 3600000000, 3))
intervals = 0
while reader.get_next_interval_histogram() is not None:
    intervals += 1
tags = {}
for line in open(path):
    if not line.startswith("Tag="):
        continue
    tag, rest = line[4:].split(",", 1)
    h = HdrHistogram.decode(rest.strip().split(",")[3])
    acc = tags.setdefault(tag, HdrHistogram(1, 3600000000, 3))
    acc.add(h)
print(json.dumps({"intervals": intervals, "tags": {t: {"count": h.get_total_count(), "p99": h.get_value_at_percentile(99)} for t, h in tags.items()}}))
"#;
    let py = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&hlog)
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "HdrHistogram's Python port (pip install hdrhistogram) could not read the log: {}",
        text(&py.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    let phase = &all["phases"][0];
    let tags = &read["tags"];
    assert_eq!(tags["mixed_load"]["count"], phase["requests"], "{read}");
    for op in phase["ops"].as_array().unwrap() {
        let tag = format!("mixed_load/{}", op["name"].as_str().unwrap());
        assert_eq!(tags[&tag]["count"], op["requests"], "{tag}: {read}");
    }
    assert_eq!(
        read["intervals"].as_u64().unwrap(),
        3 * phase["timeline"].as_array().unwrap().len() as u64,
        "an interval per window, for the phase and each op: {read}"
    );
    let p99 = phase["latency_us"]["p99"].as_f64().unwrap();
    let theirs = tags["mixed_load"]["p99"].as_f64().unwrap();
    assert!(
        (theirs - p99).abs() <= p99 * 0.002 + 1.0,
        "p99 {theirs} against {p99}"
    );
}
