//! End-to-end runs on this machine: the real coordinator, real local agents
//! over real gRPC sockets, the real sled log, and the built-in HTTP target.

mod common;

use std::time::Duration;

use common::*;

fn http_workload(
    name: &str,
    url: &str,
    agents: u32,
    duration: &str,
    warmup: &str,
    load: &str,
) -> String {
    format!(
        r#"
[run]
name = "{name}"

[agents]
local = {agents}

[[phase]]
name = "load"
duration = "{duration}"
warmup = "{warmup}"

[phase.http]
url = "{url}"
{load}
"#
    )
}

/// The numbers must match the target's own count: every request the agents
/// counted was served, and the target served no request the agents did not
/// count, but for those in flight when the phase ended.
#[test]
fn request_count_matches_what_the_target_served() {
    let target = Target::start(&[]);
    let dir = TempDir::new("count");
    let concurrency = 8;
    let w = dir.write(
        "w.toml",
        &http_workload(
            "count",
            &target.url(),
            2,
            "3s",
            "0s",
            &format!("concurrency = {concurrency}"),
        ),
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counted = requests(&report, 0);
    let served = target.served();
    assert!(counted > 1000, "too few requests to judge: {counted}");
    assert_eq!(
        report["phases"][0]["errors"].as_object().unwrap().len(),
        0,
        "{report}"
    );
    let in_flight = served.abs_diff(counted);
    assert!(
        served >= counted && in_flight <= concurrency,
        "agents counted {counted}, target served {served}: off by {in_flight} (> {concurrency} in flight)"
    );
    // Both agents took part, each with every window of the phase.
    for a in report["phases"][0]["agents"].as_array().unwrap() {
        assert_eq!(a["windows"], 3, "{a}");
        assert!(a["requests"].as_u64().unwrap() > 0, "{a}");
    }
    assert_eq!(report["status"], "completed");
}

/// Open loop at a fixed rate against a target that freezes for 1 s every
/// 3 s: latency counted from each request's intended send time shows the
/// freeze (hundreds of ms at p90/p99), as wrk2 reports it. Measured from the
/// actual send it would hide behind a sub-millisecond service time.
#[test]
fn open_loop_latency_shows_a_stalled_target() {
    let target = Target::start(&["--stall", "3s:1s"]);
    let dir = TempDir::new("stall");
    let w = dir.write(
        "w.toml",
        &http_workload(
            "stall",
            &target.url(),
            1,
            "6s",
            "0s",
            "rate = 200\nconcurrency = 4",
        ),
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let phase = &report["phases"][0];
    let lat = &phase["latency_us"];
    let (p50, p90, p99) = (
        lat["p50"].as_u64().unwrap(),
        lat["p90"].as_u64().unwrap(),
        lat["p99"].as_u64().unwrap(),
    );
    assert!(p90 >= 200_000, "p90 {p90} us hides the stall: {lat}");
    assert!(p99 >= 500_000, "p99 {p99} us hides the stall: {lat}");
    assert!(p50 < p90, "{lat}");
    // The offered load held: about 200/s over 6 s.
    let n = requests(&report, 0);
    assert!(
        (1000..=1300).contains(&n),
        "offered {n} requests, expected ~1200"
    );
}

/// `run --json` and `report --format json` come from one fold: identical.
/// And `report` twice prints the same bytes.
#[test]
fn live_summary_equals_report_and_report_is_byte_stable() {
    let dir = TempDir::new("stable");
    let w = dir.write(
        "w.toml",
        r#"
[agents]
local = 2

[[phase]]
name = "warm"
duration = "3s"
warmup = "1s"

[phase.synthetic]
latency = { dist = "exponential", mean = "2ms" }
error_ratio = 0.05
concurrency = 10

[[phase]]
name = "paced"
duration = "2s"

[phase.synthetic]
latency = "1ms"
rate = 300
"#,
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    let live = text(&out.stdout);
    let run_id = serde_json::from_str::<serde_json::Value>(&live).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = coordinator(dir.path(), &["report", &run_id, "--format", "json"]);
    let b = coordinator(dir.path(), &["report", &run_id, "--format", "json"]);
    assert!(a.status.success(), "{}", text(&a.stderr));
    assert_eq!(a.stdout, b.stdout, "report is not byte-stable");
    assert_eq!(
        text(&a.stdout),
        live,
        "report differs from the live summary"
    );
    let t1 = coordinator(dir.path(), &["report", "latest"]);
    let t2 = coordinator(dir.path(), &["report", "latest"]);
    assert_eq!(t1.stdout, t2.stdout);
    let report: serde_json::Value = serde_json::from_str(&live).unwrap();
    assert_eq!(report["name"], "w", "run name defaults to the file stem");
    // Synthetic errors are drawn at 5%.
    let p = &report["phases"][0];
    let errors = p["errors"]["synthetic"].as_u64().unwrap_or(0) as f64;
    let share = errors / p["requests"].as_u64().unwrap() as f64;
    assert!((0.02..0.09).contains(&share), "error share {share}");
    // The paced phase offered ~300/s.
    let n = requests(&report, 1);
    assert!((500..=650).contains(&n), "paced phase: {n} requests");
    let csv = coordinator(dir.path(), &["report", "latest", "--format", "csv"]);
    // A header and a row per phase, after the verdict's comment lines.
    let rows = text(&csv.stdout);
    assert_eq!(
        rows.lines().filter(|l| !l.starts_with('#')).count(),
        3,
        "{rows}"
    );
}

/// The quick start: a `[[service]]` target started and stopped by the run.
#[test]
fn quickstart_example_runs_with_its_service() {
    let dir = TempDir::new("quickstart");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/quickstart.toml"
    ))
    .unwrap()
    .replace("duration = \"10s\"", "duration = \"3s\"")
    .replace("warmup = \"2s\"", "warmup = \"1s\"");
    let w = dir.write("quickstart.toml", &example);
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(requests(&report, 0) > 100, "{report}");
    assert_eq!(report["phases"][0]["errors"].as_object().unwrap().len(), 0);
    // Stopped by the run at its end, the service is not flagged.
    assert!(report.get("services").is_none(), "{report}");
    // The service was stopped: its port is free again.
    wait_for(
        "the service's port to close",
        Duration::from_secs(5),
        || {
            std::net::TcpStream::connect("127.0.0.1:18080")
                .is_err()
                .then_some(())
        },
    );
    assert!(
        !report["hosts"].as_array().unwrap().is_empty(),
        "no host metrics"
    );
}

/// A run can be reported on while it is still in progress (the sled log is
/// locked by the running coordinator; `report` reads through it).
#[test]
fn report_works_while_the_run_is_in_progress() {
    let dir = TempDir::new("inprogress");
    let w = dir.write(
        "w.toml",
        r#"
[agents]
local = 1

[[phase]]
name = "long"
duration = "6s"

[phase.synthetic]
latency = "1ms"
concurrency = 4
"#,
    );
    let mut child = std::process::Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", w.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let report = wait_for(
        "a live report with windows",
        Duration::from_secs(20),
        || {
            let out = coordinator(dir.path(), &["report", "latest", "--format", "json"]);
            if !out.status.success() {
                return None;
            }
            let r: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (r["phases"][0]["timeline"].as_array()?.len() >= 2).then_some(r)
        },
    );
    assert_eq!(report["status"], "running", "{}", report["status"]);
    let runs = coordinator(dir.path(), &["runs"]);
    assert!(
        text(&runs.stdout).contains("running"),
        "{}",
        text(&runs.stdout)
    );
    assert!(child.wait().unwrap().success());
    let done = report_json(dir.path(), "latest");
    assert_eq!(done["status"], "completed");
}

/// Bad input exits 2 before anything starts, naming file, line and column.
#[test]
fn bad_workload_is_rejected_with_file_line_and_column() {
    let dir = TempDir::new("bad");
    let cases = [
        (
            "[agents]\nlocal = 1\n[[phase]]\nname = \"x\"\nduration = \"5s\"\n[phase.http]\nurl = \"http://127.0.0.1:1/\"\nrats = 5\n",
            ":8:1: unknown field `rats`",
        ),
        (
            "[agents]\nlocal = 1\n[[phase]]\nname = \"x\"\nduration = \"5s\"\n[phase.http]\nurl = \"http://127.0.0.1:1/\"\nrate = -3\n",
            ":8:8: phase \"x\": rate must be a number of requests per second above zero (at most 1e9), not -3",
        ),
        (
            "[agents]\nlocal = 1\n[[phase]]\nname = \"x\"\nduration = \"fast\"\n[phase.synthetic]\nlatency = \"1ms\"\nconcurrency = 1\n",
            ":5:12: phase.duration: \"fast\" is not a duration",
        ),
        (
            "[agents]\nlocal = 1\n[[phase]]\nname = \"x\"\nduration = \"5s\"\n[phase.http]\nurl = \"ftp://example\"\nconcurrency = 1\n",
            ":7:7: phase.http: url \"ftp://example\" must start with http://",
        ),
        (
            "[agents]\nlocal = 0\n[[phase]]\nname = \"x\"\nduration = \"5s\"\n[phase.synthetic]\nlatency = \"1ms\"\nconcurrency = 1\n",
            ":2:9: agents.local must be between 1 and 1024, not 0",
        ),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let w = dir.write(&format!("bad{i}.toml"), body);
        let out = coordinator(dir.path(), &["run", w.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {err}");
        let expected = format!("{}{want}", w.display());
        assert!(
            err.contains(&expected),
            "case {i}: expected {expected:?} in {err:?}"
        );
    }
    // Nothing started: no run was logged.
    let runs = coordinator(dir.path(), &["runs"]);
    assert_eq!(
        text(&runs.stdout).lines().count(),
        1,
        "{}",
        text(&runs.stdout)
    );
    let missing = coordinator(dir.path(), &["run", "/nonexistent/w.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("/nonexistent/w.toml"));
}
