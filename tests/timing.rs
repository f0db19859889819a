//! Open-loop timing end to end: the real coordinator and agent against the
//! built-in HTTP target. Latency counts from each request's intended send
//! time, so it carries whatever delay the generator adds before sending:
//! that delay must stay small (the agent waits on a precise timer, not on
//! tokio's millisecond one), and the report says how large it was.
//!
//! The bounds compare runs against each other (open loop against closed
//! loop on the same target), with margins a loaded CI machine keeps; the
//! benchmark with numbers is bench/accuracy.sh.

mod common;

use common::*;

/// p50 of phase `i`, µs.
fn p50(report: &serde_json::Value, i: usize) -> u64 {
    report["phases"][i]["latency_us"]["p50"]
        .as_u64()
        .unwrap_or_else(|| panic!("phase {i} has no p50: {report}"))
}

/// Open loop reads the target's service time: its p50 is within a small
/// margin of the closed-loop p50 with one connection (one request at a
/// time, sent the moment the last one returned). Waiting for send times on
/// tokio's timer made it ~0.5–1 ms more (every send late by up to a tick).
/// The closed-loop worker thinks 2 ms between requests, so both phases send
/// a few hundred requests a second to a target left idle in between (a
/// busy machine then wakes both alike); and the two alternate three times,
/// the closest pair judged, so that one burst of other work on the machine
/// does not decide. Open-loop phases report their send lag; closed-loop
/// ones have none.
#[test]
fn open_loop_latency_is_the_service_time_not_the_timer() {
    let target = Target::start(&[]);
    let dir = TempDir::new("timing");
    let url = target.url();
    let pair = |i: usize| {
        format!(
            r#"
[[phase]]
name = "closed-{i}"
duration = "2s"
concurrency = 1
think = "2ms"

[phase.http]
url = "{url}"

[[phase]]
name = "open-{i}"
duration = "2s"
rate = 400
arrival = "poisson"
concurrency = 8

[phase.http]
url = "{url}"
"#
        )
    };
    let w = dir.write(
        "w.toml",
        &format!(
            "[run]\nname = \"timing\"\n\n[agents]\nlocal = 1\n{}{}{}",
            pair(1),
            pair(2),
            pair(3)
        ),
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pairs: Vec<(u64, u64)> = (0..3)
        .map(|i| (p50(&report, 2 * i), p50(&report, 2 * i + 1)))
        .collect();
    eprintln!("p50 (closed loop, open loop), us: {pairs:?}");
    for i in 0..6 {
        assert!(
            requests(&report, i) > 300,
            "phase {i}: too few requests to judge: {report}"
        );
    }
    let (closed, open) = *pairs
        .iter()
        .min_by_key(|(closed, open)| open.saturating_sub(*closed))
        .unwrap();
    assert!(
        open <= closed + 250,
        "open-loop p50 {open} us is the generator's timer, not the target's \
         service time (closed loop, 1 connection: p50 {closed} us); all pairs: {pairs:?}"
    );

    let lag = &report["phases"][1]["send_lag_us"];
    for q in ["p50", "p99", "max"] {
        assert!(lag[q].is_u64(), "open loop reports its send lag {q}: {lag}");
    }
    assert!(
        lag["p50"].as_u64() <= lag["max"].as_u64(),
        "p50 above max: {lag}"
    );
    assert!(
        report["phases"][0].get("send_lag_us").is_none(),
        "closed loop has no send lag: {}",
        report["phases"][0]
    );
    let summary = coordinator(
        dir.path(),
        &[
            "report",
            report["run_id"].as_str().unwrap(),
            "--format",
            "table",
        ],
    );
    let table = text(&summary.stdout);
    assert!(
        table.contains("open-1: send lag p50 ") && !table.contains("closed-1: send lag"),
        "{table}"
    );
}

/// The synthetic op records its drawn latency, plus only the thread's
/// wake-up: `latency = "1ms"` reads 1 ms, not 2 (tokio's timer rounded
/// every sleep up to the next millisecond tick and past it), in closed and
/// in open loop (where the send lag adds to it), and never less.
#[test]
fn synthetic_latency_is_what_was_drawn() {
    let dir = TempDir::new("synthetic-exact");
    let w = dir.write(
        "w.toml",
        r#"
[agents]
local = 1

[[phase]]
name = "closed"
duration = "3s"
concurrency = 4

[phase.synthetic]
latency = "1ms"

[[phase]]
name = "open"
duration = "3s"
rate = 500
arrival = "poisson"
concurrency = 4

[phase.synthetic]
latency = "1ms"
"#,
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (i, phase) in ["closed", "open"].into_iter().enumerate() {
        let lat = &report["phases"][i]["latency_us"];
        let (min, p50) = (lat["min"].as_u64().unwrap(), lat["p50"].as_u64().unwrap());
        eprintln!("{phase}: {lat}");
        assert!(requests(&report, i) > 1000, "{phase}: too few requests");
        // Tokio's timer read ~2,080 us; a loaded CI box has read 1,269 us
        // (open loop, where each send's own lag adds to it).
        assert!(
            p50 <= 1_600,
            "{phase}: a 1 ms synthetic latency reads p50 {p50} us: {lat}"
        );
        assert!(min >= 1_000, "{phase}: min {min} us below the drawn 1 ms");
    }
}

/// `send_slack` trades send precision for fewer wake-ups: sends may go out
/// up to the slack late, so that sends close together share one. The same
/// open-loop phase with and without a 1 ms slack: with it, the median send
/// lag is hundreds of microseconds (sends 250 µs apart go out in batches);
/// without it, a few. The synthetic op's own latency takes no slack (it stays the
/// drawn 200 µs, never less), and the report names the slack.
#[test]
fn send_slack_batches_sends_and_says_so() {
    let dir = TempDir::new("send-slack");
    let phase = |name: &str, slack: &str| {
        format!(
            r#"
[[phase]]
name = "{name}"
duration = "2s"
rate = 4000
concurrency = 8
{slack}

[phase.synthetic]
latency = "200us"
"#
        )
    };
    let w = dir.write(
        "w.toml",
        &format!(
            "[agents]\nlocal = 1\n{}{}",
            phase("exact", ""),
            phase("slack", "send_slack = \"1ms\"")
        ),
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", text(&out.stderr)));
    let lag = |i: usize, q: &str| {
        report["phases"][i]["send_lag_us"][q]
            .as_u64()
            .unwrap_or_else(|| panic!("phase {i}: no send lag {q}: {report}"))
    };
    eprintln!(
        "send lag p50: exact {} us, slack {} us",
        lag(0, "p50"),
        lag(1, "p50")
    );
    for i in 0..2 {
        assert!(requests(&report, i) > 4000, "phase {i}: too few requests");
    }
    // A thread awake anyway (an op just finished) sends what is due, so the
    // median is below half the slack; the machine's own delays add to both.
    assert!(
        lag(1, "p50") >= lag(0, "p50") + 100,
        "a 1 ms slack at 4,000/s batches sends: median send lag {} us, {} us without",
        lag(1, "p50"),
        lag(0, "p50")
    );
    assert_eq!(report["phases"][1]["send_slack_us"], 1000, "{report}");
    assert!(report["phases"][0].get("send_slack_us").is_none());
    assert!(
        report["phases"][1]["latency_us"]["min"].as_u64().unwrap() >= 200,
        "the synthetic latency never reads less than drawn"
    );
    let table = text(
        &coordinator(
            dir.path(),
            &[
                "report",
                report["run_id"].as_str().unwrap(),
                "--format",
                "table",
            ],
        )
        .stdout,
    );
    assert!(
        table.contains("send_slack 1.00ms let sends wait to share a wake-up"),
        "{table}"
    );
}
