//! The workload language end to end: operation mixes, iteration budgets,
//! ramps, phase barriers and the example workloads, run by the real
//! coordinator and agents against `agent serve` (HTTP, h2c, TCP echo) and
//! real commands. Counts are checked against the target's own.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// These tests load the machine on purpose (a ramp is checked window by
/// window, a mix over 100,000 requests): one at a time, so that each one's
/// timing is its own.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `workload` and expects it to pass; the run id and its report. One
/// reason alone is let through: open loop at these rates, a loaded machine
/// (CI runs tests side by side) can leave an agent short of its schedule,
/// and the verdict rightly says `invalid` (exit 3). What these tests check
/// (counts against the target's, mixes, stops) holds either way.
fn run_ok(data: &Path, workload: &Path) -> (String, serde_json::Value) {
    let out = coordinator(data, &["run", workload.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let behind = out.status.code() == Some(3)
        && report["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["kind"] == "schedule_not_kept"));
    if behind {
        eprintln!(
            "note: the agent fell behind its schedule here: {}",
            report["reasons"]
        );
    }
    assert!(
        out.status.success() || behind,
        "run {} failed: {}{}",
        workload.display(),
        text(&out.stderr),
        report["reasons"]
    );
    assert!(report.is_object(), "run --json printed no report");
    (run_id(&out.stderr), report)
}

fn route(stats: &serde_json::Value, name: &str) -> u64 {
    stats["routes"][name].as_u64().unwrap_or(0)
}

/// 100,000 iterations of an 80/20 mix: the target served exactly 100,000
/// requests (the budget is exact across agents) and each op's share is
/// within 1 percentage point of its weight (the binomial standard deviation
/// is 0.13 points: the bound is ~8 of them, so a fair mix never fails it and
/// a 79/21 mix always would).
#[test]
fn a_mix_keeps_its_weights_over_100k_operations() {
    let _serial = serial();
    let target = Target::start(&[]);
    let dir = TempDir::new("mix");
    let base = target.url();
    let w = dir.write(
        "mix.toml",
        &format!(
            r#"
[agents]
local = 2

[generator.key]
kind = "zipf"
n = 1000
exponent = 1.1

[[phase]]
name = "mix"
iterations = 100000
concurrency = 16
duration = "2m"

[[phase.op]]
name = "read"
weight = 80
http = {{ url = "{base}read/{{{{key}}}}" }}

[[phase.op]]
name = "scan"
weight = 20
http = {{ url = "{base}scan?from={{{{key}}}}", version = "2" }}
"#
        ),
    );
    let (_, report) = run_ok(dir.path(), &w);
    assert_eq!(requests(&report, 0), 100_000, "the agents' count");
    let stats = target.stats();
    assert_eq!(stats["served"], 100_000, "the target's count: {stats}");
    let (read, scan) = (route(&stats, "GET /read"), route(&stats, "GET /scan"));
    assert_eq!(read + scan, 100_000, "{stats}");
    let read_share = read as f64 / 100_000.0;
    assert!(
        (read_share - 0.8).abs() < 0.01,
        "read share {read_share} is not 0.80 ± 0.01: {stats}"
    );
    // The scan op asked for HTTP/2: the target saw exactly those over h2.
    assert_eq!(stats["h2"].as_u64(), Some(scan), "{stats}");
}

/// A ramp from 200/s to 2000/s over 8 s against a target that keeps up
/// (synthetic 1 ms operations): every window's achieved rate is within 5% of
/// the ramp's average over that window.
#[test]
fn a_ramp_is_followed_window_by_window() {
    let _serial = serial();
    let dir = TempDir::new("ramp");
    let w = dir.write(
        "ramp.toml",
        r#"
[agents]
local = 2

[[phase]]
name = "ramp"
ramp = { from = 200, to = 2000, over = "8s" }
concurrency = 32

[phase.synthetic]
latency = "1ms"
"#,
    );
    let (_, report) = run_ok(dir.path(), &w);
    let timeline = report["phases"][0]["timeline"]
        .as_array()
        .expect("timeline");
    assert_eq!(timeline.len(), 8, "{timeline:?}");
    for (k, point) in timeline.iter().enumerate() {
        let k = k as f64;
        // The integral of 200 + 225 t over [k, k + 1].
        let want = 200.0 + 225.0 * (k + 0.5);
        let got = point["requests"].as_f64().unwrap();
        assert!(
            (got - want).abs() / want < 0.05,
            "window {k}: {got} requests, the ramp asks for {want}: {timeline:?}"
        );
    }
}

/// Phase 2 starts on no agent before every agent has ended phase 1. One
/// agent gets three times the other's iterations at the same pace, so it
/// ends phase 1 ~1 s later; from the log's timestamps (each agent's clock
/// mapped to the coordinator's by its measured offset), every phase-2 start
/// comes after the last phase-1 end.
#[test]
fn phases_start_together_after_every_agent_ended() {
    let _serial = serial();
    let dir = TempDir::new("barrier");
    let w = dir.write(
        "barrier.toml",
        r#"
[agents]
local = 2
split = [1, 3]

[[phase]]
name = "one"
iterations = 400
concurrency = 2

[phase.synthetic]
latency = "5ms"

[[phase]]
name = "two"
duration = "1s"
concurrency = 2

[phase.synthetic]
latency = "1ms"
"#,
    );
    let (run, report) = run_ok(dir.path(), &w);
    assert_eq!(requests(&report, 0), 400);
    let events = events(dir.path(), &run);
    let mut ended: Vec<(String, i64)> = Vec::new();
    let mut started: Vec<(String, i64)> = Vec::new();
    for e in &events {
        if e["kind"] != "agent_event" {
            continue;
        }
        let agent = e["agent_id"].as_str().unwrap().to_string();
        let offset = e["clock_offset_us"].as_i64().unwrap();
        match e["event"].as_str() {
            Some("phase_ended") if e["phase_ended"]["phase_index"] == 0 => {
                ended.push((agent, e["agent_time_us"].as_i64().unwrap() - offset));
            }
            Some("phase_started") if e["phase_started"]["phase_index"] == 1 => {
                started.push((
                    agent,
                    e["phase_started"]["started_at_us"].as_i64().unwrap() - offset,
                ));
            }
            _ => {}
        }
    }
    assert_eq!(ended.len(), 2, "{ended:?}");
    assert_eq!(started.len(), 2, "{started:?}");
    let last_end = ended.iter().map(|e| e.1).max().unwrap();
    let first_end = ended.iter().map(|e| e.1).min().unwrap();
    // The shares differ (100 vs 300 iterations at 5 ms): the ends do too.
    assert!(
        last_end - first_end > 500_000,
        "phase 1 ends should be ~1 s apart: {ended:?}"
    );
    for (agent, at) in &started {
        assert!(
            *at >= last_end,
            "agent {agent} started phase 2 at {at}, before the last phase-1 end {last_end}"
        );
    }
    // The per-agent shares are in the log.
    let scheduled = events
        .iter()
        .find(|e| e["kind"] == "phase_scheduled")
        .expect("phase_scheduled");
    let shares = scheduled["shares"].as_array().expect("shares in the log");
    let iterations: Vec<u64> = shares
        .iter()
        .map(|s| s["iterations"].as_u64().unwrap())
        .collect();
    assert_eq!(iterations, vec![100, 300], "{scheduled}");
}

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// The seed's example: zipf keys written at a ramped rate, then an 80/20
/// read/scan mix; the target's own counts match the report's.
#[test]
fn example_ingest_then_query() {
    let _serial = serial();
    let dir = TempDir::new("ex-ingest");
    let (run, report) = run_ok(dir.path(), &example("ingest-then-query.toml"));
    let stats = service_stats(&events(dir.path(), &run), "db");
    let ingest = requests(&report, 0);
    // (200 + 3000) / 2 over 6 s, Poisson: 9,600 expected, sd ~100.
    assert!(
        (9_000..10_200).contains(&ingest),
        "ingest sent {ingest}: {stats}"
    );
    assert_eq!(route(&stats, "PUT /kv"), ingest, "{stats}");
    assert_eq!(report["phases"][0]["errors"], serde_json::json!({}));
    // The query phase: reads and scans, in the mix's proportion.
    let (reads, scans) = (route(&stats, "GET /kv"), route(&stats, "GET /scan"));
    let share = reads as f64 / (reads + scans) as f64;
    assert!((share - 0.8).abs() < 0.05, "read share {share}: {stats}");
}

/// Steps until p99 passes the bound: the run stops the phase and the log
/// and the report say at which window and rate.
#[test]
fn example_step_load_stops_at_the_knee() {
    let _serial = serial();
    let dir = TempDir::new("ex-steps");
    let (run, report) = run_ok(dir.path(), &example("step-load.toml"));
    let events = events(dir.path(), &run);
    let stop = events
        .iter()
        .find(|e| e["kind"] == "phase_stop_requested")
        .unwrap_or_else(|| panic!("no stop: the p99 bound was never passed: {report}"));
    assert_eq!(stop["condition_met"], true, "{stop}");
    assert!(
        stop["reason"].as_str().unwrap().starts_with("p99 "),
        "{stop}"
    );
    let rate = stop["rate"].as_f64().unwrap();
    assert!(
        [500.0, 1500.0, 3000.0, 6000.0, 12000.0].contains(&rate),
        "the stop names a step's rate, not {rate}"
    );
    // It stopped early: the phase is shorter than its 15 s of steps.
    let duration = report["phases"][0]["duration_s"].as_f64().unwrap();
    assert!(duration < 15.0, "{duration}");
}

/// TCP: every line the agents counted was echoed by the target.
#[test]
fn example_tcp_echo() {
    let _serial = serial();
    let dir = TempDir::new("ex-tcp");
    let (run, report) = run_ok(dir.path(), &example("tcp-echo.toml"));
    let stats = service_stats(&events(dir.path(), &run), "echo");
    let sent = requests(&report, 0);
    assert!((9_500..=10_000).contains(&sent), "{sent}");
    assert_eq!(stats["echoed"].as_u64(), Some(sent), "{stats}");
    assert_eq!(report["phases"][0]["errors"], serde_json::json!({}));
}

/// exec: 400 iterations exactly; a non-zero exit is an `exit_status` error
/// (the command fails for one digit in ten).
#[test]
fn example_exec() {
    let _serial = serial();
    let dir = TempDir::new("ex-exec");
    let (_, report) = run_ok(dir.path(), &example("exec.toml"));
    assert_eq!(requests(&report, 0), 400);
    let failed = report["phases"][0]["errors"]["exit_status"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        (15..=70).contains(&failed),
        "{failed} of 400 exited non-zero"
    );
}

/// A budget of iterations ends a phase long before its duration cap, and
/// the phase is rated over the time its load ran (as the agents report
/// it), not over whole windows: its last window counts only up to the end.
#[test]
fn iterations_end_a_phase_early() {
    let _serial = serial();
    let dir = TempDir::new("iterations");
    let w = dir.write(
        "it.toml",
        r#"
[agents]
local = 2

[[phase]]
name = "short"
iterations = 1000
concurrency = 8
duration = "10m"

[phase.synthetic]
latency = "1ms"
"#,
    );
    let started = std::time::Instant::now();
    let (run, report) = run_ok(dir.path(), &w);
    assert_eq!(requests(&report, 0), 1000);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the phase ran to its cap"
    );
    let ran_us = events(dir.path(), &run)
        .iter()
        .filter(|e| e["event"] == "phase_ended")
        .map(|e| e["phase_ended"]["ran_us"].as_u64().expect("ran_us"))
        .max()
        .expect("the agents' phase_ended");
    let p = &report["phases"][0];
    let ran_s = ran_us as f64 / 1e6;
    let duration = p["duration_s"].as_f64().unwrap();
    assert!(
        (duration - ran_s).abs() < 0.0011,
        "{duration}s, ran {ran_s}s"
    );
    let windows = p["timeline"].as_array().unwrap().len() as f64;
    assert!(duration < windows, "{duration}s in {windows} window(s)");
    let rate = p["throughput_rps"].as_f64().unwrap();
    assert!(
        (rate * duration / 1000.0 - 1.0).abs() < 0.01,
        "{rate} req/s over {duration}s"
    );
}

/// An agent that cannot keep its schedule is flagged: the numbers then
/// describe the agent, not the target. The agent process is starved of CPU
/// from outside (stopped 60 ms out of every 100, as a host overloaded by
/// other work would preempt it), so workers waiting for their send times
/// wake late; the report names the agent and says why.
#[test]
fn a_starved_agent_is_flagged_as_load_generator_limited() {
    let _serial = serial();
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = TempDir::new("starved");
    let w = dir.write(
        "starved.toml",
        r#"
[agents]
local = 1

[[phase]]
name = "load"
duration = "5s"
rate = 1000

[phase.synthetic]
latency = "1ms"
"#,
    );
    let mut coordinator = Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", w.to_str().unwrap(), "--json"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coordinator");
    let stderr = coordinator.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("1 agent attached") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the agent attaches");
    // The local agent is the coordinator's child.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", coordinator.id()))
            .expect("children of the coordinator");
    let agent: i32 = children
        .split_whitespace()
        .next()
        .expect("an agent process")
        .parse()
        .unwrap();
    let agent = Pid::from_raw(agent);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while coordinator.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the run never ended");
        let _ = kill(agent, Signal::SIGSTOP);
        std::thread::sleep(Duration::from_millis(60));
        let _ = kill(agent, Signal::SIGCONT);
        std::thread::sleep(Duration::from_millis(40));
    }
    let _ = kill(agent, Signal::SIGCONT);
    let mut stdout = String::new();
    std::io::Read::read_to_string(coordinator.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let status = coordinator.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(status.success(), "run failed: {log}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("run --json");
    let limited = report["phases"][0]["generator_limited"]
        .as_array()
        .unwrap_or_else(|| panic!("the starved agent is not flagged: {}", report["phases"][0]));
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert_eq!(limited[0]["agent"], "local-1");
    let reasons = limited[0]["reasons"].to_string();
    assert!(reasons.contains("late"), "{reasons}");
    // The table says so too.
    let table = coordinator_text(dir.path(), &report);
    assert!(table.contains("LOAD-GENERATOR-LIMITED"), "{table}");
}

fn coordinator_text(data: &Path, report: &serde_json::Value) -> String {
    let run = report["run_id"].as_str().expect("run id in the report");
    text(&coordinator(data, &["report", run]).stdout)
}

/// Determinism end to end: two runs of one seeded workload send the same
/// requests in the same order (recorded by the target itself), and
/// `preview` prints exactly those requests without sending anything; another
/// seed sends other requests.
#[test]
fn the_same_seed_sends_the_same_requests_and_preview_shows_them() {
    let _serial = serial();
    let dir = TempDir::new("seeded");
    let workload = |seed: u64, port: u16| {
        format!(
            r#"
[run]
seed = {seed}

[agents]
local = 1

[generator.key]
kind = "zipf"
n = 10000

[generator.id]
kind = "sequence"
start = 100

[generator.tag]
kind = "string"
length = {{ min = 4, max = 12 }}

[[phase]]
name = "p"
iterations = 300
concurrency = 1

[[phase.op]]
name = "get"
weight = 4
http = {{ url = "http://127.0.0.1:{port}/kv/{{{{key}}}}?tag={{{{tag}}}}" }}

[[phase.op]]
name = "put"
http = {{ method = "PUT", url = "http://127.0.0.1:{port}/kv/{{{{key}}}}/{{{{id}}}}", body = "{{{{tag}}}}" }}
"#
        )
    };
    let mut recorded = Vec::new();
    for (round, seed) in [(0, 5u64), (1, 5), (2, 6)] {
        let file = dir.path().join(format!("requests-{round}.txt"));
        let target = Target::start(&["--record", file.to_str().unwrap()]);
        let w = dir.write(
            &format!("w{round}.toml"),
            &workload(seed, target.addr.port()),
        );
        run_ok(dir.path(), &w);
        target.stop();
        let lines: Vec<String> = std::fs::read_to_string(&file)
            .expect("the target's record")
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(lines.len(), 300, "round {round}");
        recorded.push((w, lines));
    }
    assert_eq!(recorded[0].1, recorded[1].1, "same seed, other requests");
    assert_ne!(recorded[0].1, recorded[2].1, "another seed, same requests");
    let puts = recorded[0]
        .1
        .iter()
        .filter(|l| l.starts_with("PUT "))
        .count();
    assert!((30..90).contains(&puts), "{puts} puts of 300 at weight 1:4");

    // preview prints what was sent, in order.
    let out = coordinator(
        dir.path(),
        &[
            "preview",
            recorded[0].0.to_str().unwrap(),
            "-n",
            "300",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let previewed: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let target = v["target"].as_str().unwrap();
            let (method, url) = target.split_once(' ').unwrap();
            let path = url.splitn(4, '/').nth(3).unwrap();
            format!("{method} /{path}")
        })
        .collect();
    assert_eq!(previewed, recorded[0].1);
    // A phase that is not there is bad input.
    let bad = coordinator(
        dir.path(),
        &[
            "preview",
            recorded[0].0.to_str().unwrap(),
            "--phase",
            "nope",
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("has no phase \"nope\" (it has: p)"));
}

/// A data file split across agents: each agent reads only its own slice,
/// in order, so two agents with one worker each and one iteration per row
/// send every row exactly once (the target's record), no overlap.
#[test]
fn a_split_data_file_feeds_every_row_once_across_agents() {
    let _serial = serial();
    let dir = TempDir::new("datafile");
    let rows: Vec<String> = (0..40).map(|i| format!("user{i:02}")).collect();
    dir.write(
        "users.csv",
        &format!(
            "id,name\n{}\n",
            rows.iter()
                .enumerate()
                .map(|(i, r)| format!("{i},{r}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    );
    let record = dir.path().join("requests.txt");
    let target = Target::start(&["--record", record.to_str().unwrap()]);
    let w = dir.write(
        "w.toml",
        &format!(
            r#"
[agents]
local = 2

[generator.user]
kind = "file"
file = "users.csv"
column = "name"
order = "sequential"
split = true

[[phase]]
name = "p"
iterations = 40
concurrency = 2

[phase.http]
url = "http://{}/u/{{{{user}}}}"
"#,
            target.addr
        ),
    );
    run_ok(dir.path(), &w);
    target.stop();
    let mut sent: Vec<String> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("GET /u/").to_string())
        .collect();
    sent.sort();
    assert_eq!(sent, rows, "every row once, across both agents");
}
