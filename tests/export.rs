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
