//! `coordinator compare` on real runs: a run against itself, and a run
//! against one made slower on purpose (the built-in target with `--delay`).

mod common;

use common::*;

fn closed_loop(url: &str) -> String {
    format!(
        r#"
[run]
name = "cmp"

[agents]
local = 1

[[phase]]
name = "load"
duration = "6s"
warmup = "1s"

[phase.http]
url = "{url}"
concurrency = 4
"#
    )
}

fn run(dir: &TempDir, file: &str, workload: &str) -> String {
    let w = dir.write(file, workload);
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["run_id"].as_str().unwrap().to_string()
}

/// A run compared with itself: every p-value is 1, nothing crosses a limit,
/// the exit code is 0 and the output says so.
#[test]
fn compare_of_a_run_with_itself_finds_no_change_and_exits_0() {
    let target = Target::start(&[]);
    let dir = TempDir::new("compare-self");
    let id = run(&dir, "w.toml", &closed_loop(&target.url()));
    let out = coordinator(
        dir.path(),
        &[
            "compare",
            &id,
            &id,
            "--max-regression",
            "p99=10%,throughput=5%,error_rate=1%",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("no significant change"), "{stdout}");
    assert!(stdout.contains("Mann-Whitney U"), "{stdout}");
    assert!(!stdout.contains("REGRESSION"), "{stdout}");
    assert!(!stdout.contains("workload texts differ"), "{stdout}");

    let json = coordinator(dir.path(), &["compare", &id, &id, "--format", "json"]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let c: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(c["regressed"], false);
    for m in c["phases"][0]["metrics"].as_array().unwrap() {
        assert_eq!(m["significant"], false, "{m}");
        if m["metric"] != "p999" {
            assert_eq!(m["test"]["p"], 1.0, "{m}");
        }
    }
    // HTML: both runs overlaid, one self-contained page.
    let html = coordinator(dir.path(), &["compare", &id, &id, "--format", "html"]);
    assert_eq!(html.status.code(), Some(0));
    let page = text(&html.stdout);
    assert!(
        page.starts_with("<!DOCTYPE html>") && page.contains("<svg"),
        "{}",
        &page[..page.len().min(300)]
    );
    // An unknown phase or metric is bad input too.
    let phase = coordinator(dir.path(), &["compare", &id, &id, "--phase", "nope"]);
    assert_eq!(phase.status.code(), Some(2), "{}", text(&phase.stderr));
    assert!(text(&phase.stderr).contains("no phase \"nope\""));
    let metric = coordinator(
        dir.path(),
        &["compare", &id, &id, "--max-regression", "p98=1%"],
    );
    assert_eq!(metric.status.code(), Some(2));
}

/// The same closed-loop workload against a target that adds 25 ms to every
/// response: p50 goes up by far more than 10 %, beyond the noise of the
/// windows, and compare exits 1 naming the regression. The median, not a
/// tail: on a loaded CI box the fast run's own p99 reached 52 ms (its
/// event loop 217 ms late), while its p50 stayed at 3 ms.
#[test]
fn compare_exits_1_on_a_run_made_slower_on_purpose() {
    let dir = TempDir::new("compare-slow");
    let fast = Target::start(&[]);
    let base = run(&dir, "w.toml", &closed_loop(&fast.url()));
    drop(fast);
    let slow = Target::start(&["--delay", "25ms"]);
    let candidate = run(&dir, "w.toml", &closed_loop(&slow.url()));
    let out = coordinator(
        dir.path(),
        &[
            "compare",
            &base,
            &candidate,
            "--phase",
            "load",
            "--max-regression",
            "p50=10%",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("REGRESSION: phase load p50 +"), "{stdout}");
    assert!(stdout.contains("significant change in:"), "{stdout}");
    assert!(stdout.contains("load p50"), "{stdout}");
    assert!(stdout.contains("(limit +10%)"), "{stdout}");
    assert!(!stdout.contains("too few windows"), "{stdout}");
    // The targets listened on different ports: the workload diff shows it.
    assert!(stdout.contains("workload texts differ"), "{stdout}");
    assert!(
        stdout.contains(&format!("+ url = \"{}\"", slow.url())),
        "{stdout}"
    );

    let json = coordinator(
        dir.path(),
        &[
            "compare",
            &base,
            &candidate,
            "--max-regression",
            "p50=10%",
            "--format",
            "json",
        ],
    );
    assert_eq!(json.status.code(), Some(1));
    let c: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(c["regressed"], true);
    let p50 = c["phases"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "p50")
        .unwrap()
        .clone();
    assert_eq!(p50["significant"], true, "{p50}");
    assert!(p50["test"]["p"].as_f64().unwrap() < 0.05, "{p50}");
    // 25 ms more per request; how much more in % depends on the machine's
    // noise (a loaded CI box has a slow base too): above the 10 % limit.
    assert!(p50["change_pct"].as_f64().unwrap() > 10.0, "{p50}");
    let tput = c["phases"][0]["metrics"][0].clone();
    assert_eq!(tput["metric"], "throughput");
    assert!(tput["change_pct"].as_f64().unwrap() < -50.0, "{tput}");
    assert_eq!(c["limits"][0]["crossed"], true);
    // Reversed, the candidate is faster: nothing regressed.
    let back = coordinator(
        dir.path(),
        &["compare", &candidate, &base, "--max-regression", "p50=10%"],
    );
    assert_eq!(back.status.code(), Some(0), "{}", text(&back.stdout));
}
