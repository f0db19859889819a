//! Every run ends with a verdict, and the exit code says it: real runs of
//! the real binaries against `agent serve`, judged by the fold. A target
//! that is down fails the run; thresholds fail it, pass it, or stop it
//! (`abort = true`); `report --threshold` judges a past run again; Ctrl-C
//! interrupts it (exit 130); an agent killed mid-phase makes it invalid
//! (exit 3). The `--junit` file is read back by junitparser (PyPI), a
//! standard JUnit parser, through `tests/junit_check.py`.

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// One closed-loop HTTP phase `load` of `duration` on `agents` local
/// agents against `url`, then `extra` (more phases, thresholds).
fn workload(url: &str, agents: u32, duration: &str, extra: &str) -> String {
    format!(
        r#"
[agents]
local = {agents}

[[phase]]
name = "load"
duration = "{duration}"

[phase.http]
url = "{url}"
concurrency = 2
{extra}
"#
    )
}

/// `run WORKLOAD ARGS`, to completion.
fn run(data: &Path, workload: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["run", workload.to_str().unwrap()];
    all.extend_from_slice(args);
    coordinator(data, &all)
}

/// What junitparser read in a JUnit file (see tests/junit_check.py).
fn junit(path: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/junit_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(path)
        .output()
        .expect("python3 runs (the JUnit check needs python3 and the PyPI package junitparser)");
    assert!(
        out.status.success(),
        "junitparser could not read {}: {}",
        path.display(),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("junit_check.py prints JSON")
}

/// A JUnit case by name: its result ("passed", "failure", "skipped") and
/// message.
fn case<'a>(junit: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    junit["suites"][0]["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no JUnit case {name:?} in {junit}"))
}

/// The rows of a CSV report as Python's csv module reads them, the
/// comment lines ('#') it opens with skipped.
fn csv_rows(csv: &str) -> Vec<serde_json::Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys\n\
             rows = csv.DictReader(l for l in sys.stdin if not l.startswith('#'))\n\
             print(json.dumps(list(rows)))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(csv.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python's csv module could not read:\n{csv}"
    );
    serde_json::from_slice(&out.stdout).expect("rows as JSON")
}

/// A local port with nothing listening on it.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

/// Every request fails when nothing listens on the target's port: the run
/// fails (exit 1), saying so in the table and the JSON.
#[test]
fn a_target_that_is_down_fails_the_run() {
    let dir = TempDir::new("verdict-down");
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let w = dir.write("down.toml", &workload(&url, 1, "2s", ""));
    let out = run(dir.path(), &w, &[]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}{}", text(&out.stderr));
    let last = table.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("VERDICT: FAILED — every one of the ")
            && last.contains(" requests of phase load failed (error rate 100%: connect="),
        "{table}"
    );
    let report = report_json(dir.path(), "latest");
    assert_eq!(report["verdict"], "failed", "{report}");
    assert_eq!(report["reasons"][0]["kind"], "all_errors", "{report}");
    assert_eq!(report["reasons"][0]["phase"], "load");
    // The CSV opens with the verdict as comment lines; a reader that skips
    // them (Python's csv module here) reads the rows it always read.
    let out = coordinator(dir.path(), &["report", "latest", "--format", "csv"]);
    let csv = text(&out.stdout);
    assert!(
        csv.starts_with("# verdict: failed\n# reason: failed: every one of the "),
        "{csv}"
    );
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 1, "{csv}");
    assert_eq!(rows[0]["phase"], "load");
    assert_eq!(rows[0]["status"], "completed");
    assert_eq!(
        rows[0]["requests"],
        report["phases"][0]["requests"].to_string()
    );
    assert_eq!(rows[0]["ok"], "0");
    // `report` reports; with --check it exits with the verdict's code.
    let plain = coordinator(dir.path(), &["report", "latest"]);
    assert_eq!(plain.status.code(), Some(0));
    let checked = coordinator(dir.path(), &["report", "latest", "--check"]);
    assert_eq!(checked.status.code(), Some(1));
}

/// A threshold crossed fails the run (exit 1) with its measured value in
/// every format, and the JUnit file says which case failed and why; one
/// met is a passing case. `report --threshold` judges the same run again
/// against other limits.
#[test]
fn thresholds_fail_or_pass_the_run_and_reach_junit() {
    let target = Target::start(&["--delay", "5ms"]);
    let dir = TempDir::new("verdict-threshold");
    let w = dir.write(
        "t.toml",
        &workload(
            &target.url(),
            1,
            "2s",
            "[[threshold]]\nphase = \"load\"\np99 = \"< 1ms\"\n\n[[threshold]]\nmax = \"< 1m\"\n",
        ),
    );
    let xml = dir.path().join("junit.xml");
    let out = run(dir.path(), &w, &["--junit", xml.to_str().unwrap()]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}{}", text(&out.stderr));
    assert!(
        table.contains("VERDICT: FAILED — threshold load:p99<1ms: p99 "),
        "{table}"
    );
    let report = report_json(dir.path(), "latest");
    let p99 = &report["thresholds"][0];
    assert_eq!(p99["result"], "failed", "{report}");
    let measured = p99["measured"].as_f64().expect("a measured p99");
    // The target waits 5 ms: p99 is at least that.
    assert!(measured >= 5_000.0, "{p99}");
    assert_eq!(report["thresholds"][1]["result"], "passed", "{report}");

    let read = junit(&xml);
    let suite = &read["suites"][0];
    assert_eq!(
        (suite["tests"].as_u64(), suite["failures"].as_u64()),
        (Some(5), Some(1)),
        "{read}"
    );
    let failed = case(&read, "threshold load:p99<1ms");
    assert_eq!(failed["result"], "failure", "{read}");
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.starts_with("p99 ") && message.ends_with("ms, not below 1.00ms"),
        "{message}"
    );
    assert_eq!(case(&read, "threshold max<1m")["result"], "passed");
    assert_eq!(case(&read, "run valid")["result"], "passed");

    // Judged again against limits it meets: passed, exit 0 with --check.
    let again = dir.path().join("again.xml");
    let out = coordinator(
        dir.path(),
        &[
            "report",
            "latest",
            "--threshold",
            "load:p99<1m",
            "--threshold",
            "error_rate<1%",
            "--check",
            "--junit",
            again.to_str().unwrap(),
        ],
    );
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}{}", text(&out.stderr));
    // (A loaded machine may add ", with a warning: 1 phase
    // load-generator-limited"; that does not change the verdict.)
    assert!(
        table.contains("\nVERDICT: PASSED — 2 thresholds met"),
        "{table}"
    );
    let read = junit(&again);
    assert_eq!(read["suites"][0]["failures"].as_u64(), Some(0), "{read}");
    assert_eq!(case(&read, "threshold load:p99<1m")["result"], "passed");
    // And against one it crosses: exit 1 with --check, 0 without.
    let strict = [
        "report",
        "latest",
        "--threshold",
        "p50<1ms",
        "--format",
        "json",
    ];
    let out = coordinator(dir.path(), &[&strict[..], &["--check"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(coordinator(dir.path(), &strict).status.code(), Some(0));
    // A threshold on a phase the run does not have is bad input.
    let bad = coordinator(
        dir.path(),
        &["report", "latest", "--threshold", "lod:p99<1ms"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("has no phase \"lod\""),
        "{}",
        text(&bad.stderr)
    );
}

/// Thresholds that are all met: exit 0, each a passing JUnit case.
#[test]
fn met_thresholds_pass_the_run() {
    let target = Target::start(&[]);
    let dir = TempDir::new("verdict-pass");
    let w = dir.write(
        "t.toml",
        &workload(
            &target.url(),
            1,
            "2s",
            "[[threshold]]\np99 = \"< 1m\"\nerror_rate = \"< 50%\"\nthroughput = \"> 1/s\"\n",
        ),
    );
    let xml = dir.path().join("junit.xml");
    let out = run(
        dir.path(),
        &w,
        &["--junit", xml.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "passed", "{report}");
    let read = junit(&xml);
    for name in [
        "threshold p99<1m",
        "threshold error_rate<50%",
        "threshold throughput>1/s",
    ] {
        assert_eq!(case(&read, name)["result"], "passed", "{read}");
    }
}

/// A threshold with `abort = true` stops its phase at the first window
/// that crosses it, and the run's later phases never start: the run is
/// aborted, its verdict failed.
#[test]
fn abort_stops_the_run_at_the_crossing_window() {
    let target = Target::start(&["--delay", "5ms"]);
    let dir = TempDir::new("verdict-abort");
    let later = format!(
        "[[phase]]\nname = \"later\"\nduration = \"20s\"\n[phase.http]\nurl = \"{}\"\nconcurrency = 2\n\n\
         [[threshold]]\nphase = \"load\"\np99 = \"< 1ms\"\nabort = true\n",
        target.url()
    );
    let w = dir.write("a.toml", &workload(&target.url(), 1, "20s", &later));
    let started = std::time::Instant::now();
    let out = run(dir.path(), &w, &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // Not the 40 s the phases would take.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "aborted", "{report}");
    assert_eq!(report["verdict"], "failed");
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 1, "the later phase never started: {report}");
    // Every window is slow: the first one judged (window 0) crossed.
    let stopped = &phases[0]["stopped"];
    assert_eq!(stopped["window_index"], 0, "{stopped}");
    let reason = stopped["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("threshold load:p99<1ms crossed: p99 "),
        "{reason}"
    );
    assert_eq!(report["reasons"][0]["kind"], "threshold");
    assert!(
        report["thresholds"][0]["aborted"]
            .as_str()
            .is_some_and(|a| a.starts_with("window 0 of phase load (p99 ")),
        "{report}"
    );
    // The log names the threshold that stopped the phase.
    let run_id = report["run_id"].as_str().unwrap();
    let stop = events(dir.path(), run_id)
        .into_iter()
        .find(|e| e["kind"] == "phase_stop_requested")
        .expect("a stop request in the log");
    assert_eq!(stop["threshold"], 0, "{stop}");
}

/// A coordinator mid-phase, its stderr dropped, and the run's id once a
/// window of it is logged.
fn run_in_background(dir: &TempDir, workload: &Path) -> (std::process::Child, String) {
    let child = Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", workload.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start coordinator");
    let id = wait_for("a window of the run", Duration::from_secs(30), || {
        let out = coordinator(dir.path(), &["report", "latest", "--format", "json"]);
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (r["phases"][0]["timeline"].as_array()?.len() >= 2).then(|| r["run_id"].to_string())
    });
    (child, id.trim_matches('"').to_string())
}

/// Waits for the child to exit (at most `within`); its status and stdout.
fn finish(mut child: std::process::Child, within: Duration) -> (std::process::ExitStatus, String) {
    let status = wait_for("the coordinator to exit", within, || {
        child.try_wait().unwrap()
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    (status, stdout)
}

/// SIGINT (Ctrl-C) to the coordinator mid-phase: the phase stops, the run
/// ends "interrupted" with exit 130, and its report says so.
#[test]
fn ctrl_c_interrupts_the_run() {
    let target = Target::start(&[]);
    let dir = TempDir::new("verdict-interrupt");
    let w = dir.write("i.toml", &workload(&target.url(), 1, "60s", ""));
    let (child, id) = run_in_background(&dir, &w);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("SIGINT the coordinator");
    let (status, stdout) = finish(child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "{stdout}");
    assert!(
        stdout.contains("VERDICT: INTERRUPTED — the run was aborted before its end: interrupted"),
        "{stdout}"
    );
    let report = report_json(dir.path(), &id);
    assert_eq!(report["status"], "aborted", "{report}");
    assert_eq!(report["verdict"], "interrupted", "{report}");
    assert_eq!(report["reasons"][0]["kind"], "interrupted");
    let checked = coordinator(dir.path(), &["report", &id, "--check"]);
    assert_eq!(checked.status.code(), Some(130));
}

/// An agent SIGKILLed mid-phase is lost and not replaced: the run is
/// invalid (exit 3), and the reason names the agent.
#[test]
fn a_lost_agent_makes_the_run_invalid() {
    let target = Target::start(&[]);
    let dir = TempDir::new("verdict-lost");
    let w = dir.write("l.toml", &workload(&target.url(), 2, "3s", ""));
    let (child, id) = run_in_background(&dir, &w);
    let creds = dir
        .path()
        .join("runs")
        .join(&id)
        .join("agents")
        .join("local-2.creds");
    let pid = agent_pid(&creds).expect("agent local-2's process");
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("SIGKILL agent local-2");
    // The coordinator waits for the phase's end up to 15 s past its plan.
    let (status, stdout) = finish(child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(3), "{stdout}");
    let report = report_json(dir.path(), &id);
    assert_eq!(report["verdict"], "invalid", "{report}");
    let lost = report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "agent_lost")
        .unwrap_or_else(|| panic!("no agent_lost reason: {report}"));
    assert_eq!(lost["agent"], "local-2");
    assert!(
        lost["message"]
            .as_str()
            .unwrap()
            .starts_with("agent local-2 never ended phase load: it was lost"),
        "{lost}"
    );
}

/// The process whose command line names `creds` (an agent started with
/// `attach --credentials CREDS`).
fn agent_pid(creds: &Path) -> Option<i32> {
    let want = creds.to_str()?;
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let dir = entry.ok()?.path();
        let pid: i32 = dir.file_name()?.to_str()?.parse().ok()?;
        let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
        let argv = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        argv.contains(want).then_some(pid)
    })
}

/// Open loop at 200/s against a target that answers in 50 ms, capped at 4
/// connections: they carry at most 80/s, so every connection is busy when
/// sends fall due. Before, the run achieved 39 % of the rate and said
/// nothing; now the phase is load-generator-limited ("all 4 connections
/// busy"), the schedule was not kept, and the run is invalid (exit 3).
/// (tests/growth.rs: without the cap, the pool grows and keeps the rate.)
#[test]
fn too_few_connections_for_the_rate_make_the_run_invalid() {
    let target = Target::start(&["--delay", "50ms"]);
    let dir = TempDir::new("verdict-busy");
    let w = dir.write(
        "busy.toml",
        &format!(
            "[agents]\nlocal = 1\n\n[[phase]]\nname = \"load\"\nduration = \"4s\"\nrate = 200\n\
             concurrency = 4\nmax_connections = 4\n\n[phase.http]\nurl = \"{}\"\n",
            target.url()
        ),
    );
    let out = run(dir.path(), &w, &["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", report["reasons"]);
    let limited = &report["phases"][0]["generator_limited"][0]["reasons"];
    assert!(
        limited
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("all 4 connections busy; ")),
        "{limited}"
    );
    let reasons = report["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r["kind"] == "schedule_not_kept"
            && r["message"]
                .as_str()
                .unwrap()
                .contains("with every connection busy at max_connections")),
        "{}",
        report["reasons"]
    );
}

/// A template that renders bytes a header cannot hold (here a CR LF, as a
/// header injection would) is an error of its own class, `invalid_request`:
/// nothing of it is sent, the run fails (exit 1) whatever the other
/// requests did, and a broken request does not spin (it once counted 13
/// million "requests" a second, all io errors, and passed).
#[test]
fn a_template_rendering_a_crlf_is_an_invalid_request_and_fails_the_run() {
    let target = Target::start(&[]);
    let dir = TempDir::new("verdict-invalid-request");
    let w = dir.write(
        "w.toml",
        &format!(
            r#"
[agents]
local = 1

[generator.v]
kind = "choice"
values = ["fine", "bad\r\ninjected: 1"]

[[phase]]
name = "load"
duration = "1s"
concurrency = 4

[phase.http]
url = "{}"
headers = {{ x-v = "{{{{v}}}}" }}
"#,
            target.url()
        ),
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", text(&out.stderr)));
    assert_eq!(out.status.code(), Some(1), "{}", report["reasons"]);
    assert_eq!(report["verdict"], "failed");
    let reasons = report["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r["kind"] == "invalid_requests"),
        "{reasons:?}"
    );
    let phase = &report["phases"][0];
    let invalid = phase["errors"]["invalid_request"].as_u64().unwrap_or(0);
    let ok = phase["ok"].as_u64().unwrap();
    assert!(invalid > 0 && ok > 0, "{phase}");
    // Four workers, each pausing 10 ms after a request it could not send.
    assert!(invalid < 1_000, "{invalid} invalid requests in 1 s: a spin");
    assert_eq!(phase["errors"].as_object().unwrap().len(), 1, "{phase}");
    assert_eq!(
        target.served(),
        ok,
        "only the valid requests reached the target"
    );
}
