//! Replay: any past run re-aggregated from its log alone, with other
//! windows, a time range, or without an agent; followed live; played back.

mod common;

use std::time::Duration;

use common::*;

const WORKLOAD: &str = r#"
[agents]
local = 2

[[phase]]
name = "load"
duration = "4s"
warmup = "1s"

[phase.synthetic]
latency = { dist = "exponential", mean = "1ms" }
error_ratio = 0.02
concurrency = 6
"#;

fn finished_run(dir: &TempDir) -> serde_json::Value {
    let w = dir.write("w.toml", WORKLOAD);
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn replay(dir: &TempDir, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["replay", "latest", "--format", "json"];
    all.extend_from_slice(args);
    let out = coordinator(dir.path(), &all);
    assert!(
        out.status.success(),
        "replay {args:?} failed: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Replay of a finished run reproduces the run's own summary exactly;
/// re-windowing keeps the totals; a time range keeps exactly the windows
/// inside it; excluding an agent removes exactly that agent's counts.
#[test]
fn replay_reproduces_rewindows_ranges_and_excludes_exactly() {
    let dir = TempDir::new("replay");
    let summary = finished_run(&dir);
    assert_eq!(
        replay(&dir, &[]),
        summary,
        "replay differs from the run's summary"
    );

    let phase = &summary["phases"][0];
    for window in ["2s", "3s", "10s"] {
        let r = replay(&dir, &["--window", window]);
        let p = &r["phases"][0];
        for key in ["requests", "ok", "errors", "bytes_sent", "latency_us"] {
            assert_eq!(p[key], phase[key], "--window {window}: {key}");
        }
        let sum: u64 = p["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["requests"].as_u64().unwrap())
            .sum();
        let all: u64 = phase["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(
            sum, all,
            "--window {window}: the timeline keeps every request"
        );
    }

    // Windows 2 and 3 of the phase, in run time.
    let start = phase["start_s"].as_f64().unwrap();
    let (from, to) = (start + 2.0, start + 4.0);
    let want: u64 = phase["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| {
            let t = start + w["t_s"].as_f64().unwrap();
            t >= from - 0.001 && t + 1.0 <= to + 0.001
        })
        .map(|w| w["requests"].as_u64().unwrap())
        .sum();
    let ranged = replay(
        &dir,
        &[
            "--from",
            &format!("{from:.3}s"),
            "--to",
            &format!("{to:.3}s"),
        ],
    );
    assert_eq!(ranged["phases"][0]["requests"].as_u64().unwrap(), want);
    assert_eq!(ranged["phases"][0]["timeline"].as_array().unwrap().len(), 2);

    let agents = phase["agents"].as_array().unwrap();
    let one = agents.iter().find(|a| a["id"] == "local-1").unwrap()["requests"]
        .as_u64()
        .unwrap();
    let without = replay(&dir, &["--exclude-agent", "local-1"]);
    assert_eq!(
        without["phases"][0]["requests"].as_u64().unwrap(),
        phase["requests"].as_u64().unwrap() - one
    );
    let only = replay(&dir, &["--agent", "local-1"]);
    assert_eq!(only["phases"][0]["requests"].as_u64().unwrap(), one);

    let extra = replay(&dir, &["--percentiles", "99.99,50"]);
    let l = &extra["phases"][0]["latency_us"];
    assert_eq!(l["percentiles"]["p50"], l["p50"]);
    assert!(l["percentiles"]["p99.99"].as_u64().unwrap() >= l["p99"].as_u64().unwrap());

    // Played back at 20x, the fold ends where the run ended.
    let played = replay(&dir, &["--speed", "20"]);
    assert_eq!(played, summary);
}

/// `--follow` shows a run in progress from another process until it ends,
/// then prints the same report as the run.
#[test]
fn follow_watches_a_running_run_to_its_end() {
    let dir = TempDir::new("follow");
    let w = dir.write("w.toml", &WORKLOAD.replace("\"4s\"", "\"5s\""));
    let child = std::process::Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", w.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the run to be logging windows",
        Duration::from_secs(20),
        || {
            let out = coordinator(dir.path(), &["report", "latest", "--format", "json"]);
            let r: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (r["status"] == "running" && !r["phases"][0]["timeline"].as_array()?.is_empty())
                .then_some(())
        },
    );
    let followed = coordinator(
        dir.path(),
        &["replay", "latest", "--follow", "--format", "json"],
    );
    assert!(followed.status.success(), "{}", text(&followed.stderr));
    let run = child.wait_with_output().unwrap();
    assert!(run.status.success());
    let f: serde_json::Value = serde_json::from_slice(&followed.stdout).unwrap();
    let r: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(f["status"], "completed", "follow ends with the run");
    assert_eq!(f["phases"], r["phases"]);
}

#[test]
fn replay_rejects_bad_windows_and_percentiles() {
    let dir = TempDir::new("replay-bad");
    finished_run(&dir);
    let out = coordinator(dir.path(), &["replay", "latest", "--window", "1.5s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("whole number of seconds"),
        "{}",
        text(&out.stderr)
    );
    let out = coordinator(dir.path(), &["replay", "latest", "--percentiles", "101"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not between 0 and 100"));
    let out = coordinator(dir.path(), &["replay", "nosuchrun"]);
    assert_eq!(out.status.code(), Some(2));
}
