//! `coordinator rerun` and `coordinator runs` with filters, on real runs.

mod common;

use common::*;

/// The first record (`run_started`) of a run, from `export --events`.
fn run_started(data: &std::path::Path, run: &str) -> serde_json::Value {
    let out = coordinator(data, &["export", run, "--events"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = text(&out.stdout).lines().next().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["kind"], "run_started", "{v}");
    v
}

fn synthetic(name: Option<&str>, seed: u32) -> String {
    let run = name.map_or(String::new(), |n| format!("[run]\nname = \"{n}\"\n\n"));
    format!(
        "{run}# a comment, kept byte for byte\n[agents]\nlocal = 1\n\n[[phase]]\nname = \"only\"\nduration = \"1s\"\n\n[phase.synthetic]\nlatency = {{ dist = \"exponential\", mean = \"1ms\" }}   \nerror_ratio = 0.1\nconcurrency = 4\nseed = {seed}\n"
    )
}

fn run_id(out: &std::process::Output) -> String {
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["run_id"].as_str().unwrap().to_string()
}

/// `rerun` runs the recorded workload text again as a new run: the new
/// run's `RunStarted` holds the same text byte for byte (and so the same
/// seed), and the same name even when the name came from the file's name.
#[test]
fn rerun_runs_the_recorded_workload_text_again() {
    let dir = TempDir::new("rerun");
    let body = synthetic(None, 7);
    let w = dir.write("nightly.toml", &body);
    let first = run_id(&coordinator(
        dir.path(),
        &["run", w.to_str().unwrap(), "--json"],
    ));
    // The file is gone or changed: the log is what counts.
    std::fs::write(&w, "garbage").unwrap();
    let again = coordinator(dir.path(), &["rerun", &first[..13], "--json"]);
    let second = run_id(&again);
    assert_ne!(first, second);
    let a = run_started(dir.path(), &first);
    let b = run_started(dir.path(), &second);
    assert_eq!(a["workload_text"].as_str().unwrap(), body);
    assert_eq!(
        a["workload_text"], b["workload_text"],
        "byte-identical text"
    );
    assert_eq!(b["name"], "nightly", "named after the original file");
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["status"], "completed");
    assert!(
        report["notices"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains(&format!("rerun of run {first}"))),
        "{}",
        report["notices"]
    );
    // The temporary workload file is cleaned up.
    let tmp = dir.path().join("tmp");
    assert!(
        std::fs::read_dir(&tmp).map_or(true, |mut d| d.next().is_none()),
        "left behind in {}",
        tmp.display()
    );
    let unknown = coordinator(dir.path(), &["rerun", "ffffffff"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));
}

/// `runs --name`, `--status` and `--since` keep exactly the matching runs,
/// and each line carries its phases' throughput and p99.
#[test]
fn runs_filters_by_name_status_and_start() {
    let dir = TempDir::new("runs");
    let alpha = dir.write("alpha.toml", &synthetic(Some("alpha"), 1));
    let beta = dir.write("beta.toml", &synthetic(Some("beta"), 2));
    let broken = dir.write("broken.toml", &synthetic(Some("alpha-broken"), 3));
    let a = run_id(&coordinator(
        dir.path(),
        &["run", alpha.to_str().unwrap(), "--json"],
    ));
    // Into the next whole second (`--since` below is an RFC 3339 time in
    // seconds), so that it falls strictly between the two runs.
    let secs = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let after_a = secs();
    wait_for(
        "the clock to reach the next second",
        std::time::Duration::from_secs(5),
        || (secs() > after_a).then_some(()),
    );
    let between = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let b = run_id(&coordinator(
        dir.path(),
        &["run", beta.to_str().unwrap(), "--json"],
    ));
    // An "agent" that exits at once never attaches: the run fails.
    let failed = coordinator(
        dir.path(),
        &[
            "run",
            broken.to_str().unwrap(),
            "--agent-binary",
            "/bin/true",
            "--json",
        ],
    );
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    let c = run_id_of_failed(&failed);

    let listed = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["runs"];
        all.extend_from_slice(args);
        let out = coordinator(dir.path(), &all);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let mut lines = stdout.lines();
        assert!(lines.next().unwrap().starts_with("id "), "{stdout}");
        lines
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed(&[]), vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(listed(&["--name", "alpha"]), vec![a.clone(), c.clone()]);
    assert_eq!(listed(&["--status", "failed"]), vec![c.clone()]);
    assert_eq!(
        listed(&["--status", "completed", "--name", "alph"]),
        vec![a.clone()]
    );
    assert_eq!(
        listed(&["--status", "failed,completed"]),
        vec![a.clone(), b.clone(), c.clone()]
    );
    assert!(listed(&["--status", "running"]).is_empty());
    assert_eq!(listed(&["--since", "1h"]).len(), 3);
    assert_eq!(listed(&["--since", "1h ago"]).len(), 3);
    assert!(listed(&["--since", "2100-01-01T00:00:00Z"]).is_empty());
    assert_eq!(listed(&["--since", &between]), vec![b.clone(), c.clone()]);

    // Headline numbers: each phase's throughput and p99.
    let out = text(&coordinator(dir.path(), &["runs", "--name", "beta"]).stdout);
    let line = out.lines().nth(1).unwrap();
    assert!(line.contains("completed"), "{line}");
    assert!(line.contains("only ") && line.contains("/s p99 "), "{line}");

    let bad = coordinator(dir.path(), &["runs", "--status", "done"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = coordinator(dir.path(), &["runs", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// A failed run prints its report too; its id is there.
fn run_id_of_failed(out: &std::process::Output) -> String {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "failed", "{v}");
    v["run_id"].as_str().unwrap().to_string()
}
