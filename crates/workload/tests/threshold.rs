//! `[[threshold]]` through the public API: what a table becomes (one
//! threshold per metric key, as the log records it) and every rejection,
//! positioned at the value at fault.

use fleetbench_workload::Workload;

/// Two phases: `warm` closed loop, `load` open loop with ops get and put.
const BASE: &str = r#"[agents]
local = 1

[[phase]]
name = "warm"
duration = "2s"
[phase.synthetic]
latency = "1ms"
concurrency = 2

[[phase]]
name = "load"
duration = "5s"
rate = 100

[[phase.op]]
name = "get"
synthetic = { latency = "1ms" }

[[phase.op]]
name = "put"
synthetic = { latency = "2ms" }
"#;

fn with(thresholds: &str) -> String {
    format!("{BASE}\n{thresholds}")
}

/// The line of `BASE` + "\n" where the thresholds start.
fn first_line() -> usize {
    BASE.lines().count() + 2
}

fn reject(thresholds: &str) -> String {
    match Workload::parse("w.toml", &with(thresholds)) {
        Ok(w) => panic!("accepted: {:?}", w.thresholds),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_metric_key_is_one_threshold_in_the_files_order() {
    let w = Workload::parse(
        "w.toml",
        &with(
            r#"[[threshold]]
phase = "load"
op = "get"
error_rate = "< 1%"
p99 = "< 20ms"
abort = true

[[threshold]]
throughput = "> 50/s"
"#,
        ),
    )
    .unwrap();
    let texts: Vec<&str> = w.thresholds.iter().map(|t| t.text.as_str()).collect();
    // Within a table, keys are read in the metrics' order (p99 before error_rate).
    assert_eq!(
        texts,
        [
            "load/get:p99<20ms",
            "load/get:error_rate<1%",
            "throughput>50/s"
        ]
    );
    let p99 = w.thresholds[0].to_pb();
    assert_eq!(
        (
            p99.metric.as_str(),
            p99.phase.as_str(),
            p99.op.as_str(),
            p99.limit,
            p99.abort
        ),
        ("p99", "load", "get", 20_000.0, true)
    );
    assert!(!w.thresholds[2].abort);
    assert!(w.resolved_json().contains("\"thresholds\""));
    // Without thresholds, the resolved JSON says nothing of them.
    let plain = Workload::parse("w.toml", BASE).unwrap();
    assert!(!plain.resolved_json().contains("thresholds"));
}

#[test]
fn every_rejection_names_the_line_and_column() {
    let line = first_line();
    for (table, at, want) in [
        (
            "[[threshold]]\nphase = \"lod\"\np99 = \"< 1ms\"\n",
            (line + 1, 9),
            "threshold.phase \"lod\" is not a phase of this file (its phases: warm, load)",
        ),
        (
            "[[threshold]]\nphase = \"load\"\nop = \"del\"\np99 = \"< 1ms\"\n",
            (line + 2, 6),
            "threshold.op \"del\" is not an operation of the phase (its operations: get, put)",
        ),
        (
            "[[threshold]]\nphase = \"warm\"\nop = \"get\"\np99 = \"< 1ms\"\n",
            (line + 2, 6),
            "threshold.op \"get\": the phase has no named operations",
        ),
        (
            "[[threshold]]\nphase = \"load\"\n",
            (line, 1),
            "this [[threshold]] has no limit",
        ),
        (
            "[[threshold]]\np99 = \"> 1ms\"\n",
            (line + 1, 7),
            "threshold.p99: p99 must stay below its limit: write it as p99 < LIMIT, like p99 = \"< 20ms\"",
        ),
        (
            "[[threshold]]\nerror_rate = \"< 2\"\n",
            (line + 1, 14),
            "threshold.error_rate: error_rate's limit must be above 0 and at most 1 (100%), not 2",
        ),
        (
            "[[threshold]]\nphase = \"warm\"\nachieved_ratio = \"> 0.9\"\n",
            (line + 1, 9),
            "threshold.achieved_ratio holds for open-loop phases (with a rate)",
        ),
        (
            "[[threshold]]\np95 = \"< soon\"\n",
            (line + 1, 7),
            "threshold.p95: p95's limit \"soon\" is not a duration",
        ),
        (
            "[[threshold]]\np99 = \"< 1ms\"\nbelow = \"2ms\"\n",
            (line + 2, 1),
            "unknown field `below`",
        ),
    ] {
        let e = reject(table);
        let prefix = format!("w.toml:{}:{}: ", at.0, at.1);
        assert!(e.starts_with(&prefix), "{table}: {e} (want {prefix})");
        assert!(e.contains(want), "{table}: {e}");
    }
}

#[test]
fn achieved_ratio_run_wide_needs_an_open_loop_phase() {
    // The whole run holds `load` (open loop): accepted.
    let w = Workload::parse(
        "w.toml",
        &with("[[threshold]]\nachieved_ratio = \"> 95%\"\n"),
    )
    .unwrap();
    assert_eq!(w.thresholds[0].text, "achieved_ratio>95%");
    // A file of closed-loop phases only: refused.
    let closed = BASE.split("[[phase]]\nname = \"load\"").next().unwrap();
    let e = Workload::parse(
        "w.toml",
        &format!("{closed}\n[[threshold]]\nachieved_ratio = \"> 95%\"\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("holds for open-loop phases"), "{e}");
}
