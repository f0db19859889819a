//! Open loop is never silently limited by its connections: against a slow
//! target (`agent serve --delay 50ms`), an agent whose connections are all
//! busy at a send's intended time opens another, up to `max_connections`;
//! at the cap, the phase is flagged load-generator-limited, with the reason.

mod common;

use common::*;

/// One open-loop phase at 200 requests/s against a target that answers in
/// 50 ms (`extra`: more phase keys); the report, and the run's exit code
/// as `want` expects it.
fn run_slow(tag: &str, extra: &str, want: i32) -> serde_json::Value {
    let target = Target::start(&["--delay", "50ms"]);
    let dir = TempDir::new(tag);
    let url = target.url();
    let w = dir.write(
        "w.toml",
        &format!(
            r#"
[agents]
local = 1

[[phase]]
name = "slow"
duration = "4s"
warmup = "1s"
rate = 200
{extra}

[phase.http]
url = "{url}"
"#
        ),
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(want),
        "{}{}",
        text(&out.stderr),
        report["reasons"]
    );
    report
}

/// Offered (the schedule's sends) and achieved (requests finished) in the
/// measured windows of the first phase.
fn offered_achieved(report: &serde_json::Value) -> (u64, u64) {
    let phase = &report["phases"][0];
    let offered = phase["scheduled"]
        .as_u64()
        .unwrap_or_else(|| panic!("no schedule: {phase}"));
    (offered, requests(report, 0))
}

/// 200 requests/s × 50 ms needs ~10 connections; the default starts with
/// 4 (at 2 ms per request the rate needs fewer), which reached 39 % of the
/// rate before the pool grew. Now it grows to what the target's latency
/// needs and sends at the offered rate, and nothing is flagged.
#[test]
fn the_pool_grows_to_the_offered_rate() {
    let report = run_slow("growth", "", 0);
    let (offered, achieved) = offered_achieved(&report);
    let agent = &report["phases"][0]["agents"][0];
    eprintln!(
        "offered {offered}, achieved {achieved}, connections {}",
        agent["connections"]
    );
    assert!(offered >= 500, "offered {offered}: {report}");
    assert!(
        achieved * 10 >= offered * 9,
        "achieved {achieved} of {offered} offered: {report}"
    );
    let connections = agent["connections"].as_u64().unwrap_or(0);
    assert!(
        (10..=100).contains(&connections),
        "the pool holds rate × latency connections, not {connections}: {agent}"
    );
    let limited = &report["phases"][0]["generator_limited"];
    assert!(
        !limited.to_string().contains("connections busy"),
        "flagged for connections under the cap: {limited}"
    );
}

/// At `max_connections = 2` the pool cannot grow: sends find both busy and
/// start late, and the phase says so: limited, with the reason; the
/// schedule was not kept, so the run is invalid (exit 3).
#[test]
fn a_capped_pool_is_flagged() {
    let report = run_slow("growth-cap", "max_connections = 2\nconcurrency = 2", 3);
    let (offered, achieved) = offered_achieved(&report);
    assert!(
        achieved * 2 < offered,
        "2 connections at 50 ms cannot carry 200/s: achieved {achieved} of {offered}"
    );
    let limited = report["phases"][0]["generator_limited"].to_string();
    eprintln!("offered {offered}, achieved {achieved}, {limited}");
    assert!(
        limited.contains("all 2 connections busy;")
            && limited.contains("requests started late by up to"),
        "{limited}"
    );
}
