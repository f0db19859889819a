//! The `grpc` op against `agent serve`'s gRPC service (its own count is
//! the reference): echoed calls with templated messages, the health check,
//! status codes as error classes (and `expect_code`), a deadline shorter
//! than the server's delay, and a method the .proto does not define
//! refused before anything starts.

mod common;

use common::*;

/// The test's .proto files, copied next to the workload.
fn protos(dir: &TempDir) {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grpc");
    for f in ["echo.proto", "health.proto"] {
        std::fs::copy(fixtures.join(f), dir.path().join(f)).unwrap();
    }
}

fn grpc_phase(name: &str, load: &str, url: &str, method: &str, extra: &str) -> String {
    format!(
        "\n[[phase]]\nname = \"{name}\"\nduration = \"2s\"\n{load}\n\n[phase.grpc]\nurl = \"{url}\"\nproto = \"echo.proto\"\nmethod = \"{method}\"\n{extra}\n"
    )
}

fn run(dir: &TempDir, workload: &str) -> (std::process::Output, serde_json::Value) {
    let w = dir.write("w.toml", workload);
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", text(&out.stderr)));
    (out, report)
}

/// Calls with a templated message, the health check, and calls the server
/// ends with UNAVAILABLE: every call is one the server counted, the
/// statuses are error classes, and `expect_code` makes one a success.
#[test]
fn grpc_calls_match_the_servers_count_and_statuses_are_classes() {
    let dir = TempDir::new("grpc");
    protos(&dir);
    let target = Target::start(&[]);
    let url = format!("http://{}", target.addr);
    let workload = format!(
        "[agents]\nlocal = 2\n\n[generator.id]\nkind = \"sequence\"\n{}{}{}{}",
        grpc_phase(
            "echo",
            "rate = 200",
            &url,
            "fleetbench.test.Echo/Say",
            "message = '{\"text\": \"hi {{id}}\", \"n\": {{id}}, \"tags\": [\"a\"]}'\nmetadata = { x-call = \"{{id}}\" }"
        ),
        grpc_phase(
            "health",
            "concurrency = 2",
            &url,
            "grpc.health.v1.Health/Check",
            ""
        ),
        grpc_phase(
            "unavailable",
            "rate = 100",
            &url,
            "fleetbench.test.Echo/Say",
            "metadata = { x-fleetbench-status = \"14\" }"
        ),
        grpc_phase(
            "expected",
            "rate = 100",
            &url,
            "fleetbench.test.Echo/Say",
            "metadata = { x-fleetbench-status = \"5\" }\nexpect_code = [\"NOT_FOUND\"]"
        ),
    );
    let (out, report) = run(&dir, &workload);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let phases = report["phases"].as_array().unwrap();
    let requests: Vec<u64> = phases
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .collect();
    assert!(requests.iter().all(|&n| n >= 100), "{requests:?}");
    for i in [0, 1, 3] {
        assert_eq!(phases[i]["errors"], serde_json::json!({}), "{}", phases[i]);
    }
    assert_eq!(
        phases[2]["errors"],
        serde_json::json!({ "grpc_unavailable": requests[2] })
    );
    let stats = target.stats();
    assert_eq!(
        stats["grpc"].as_u64(),
        Some(requests.iter().sum::<u64>()),
        "{stats}"
    );
    assert_eq!(
        stats["routes"]["POST /grpc.health.v1.Health"].as_u64(),
        Some(requests[1])
    );
    assert!(phases[0]["stages_us"]["ttfb"]["count"].as_u64() == Some(requests[0]));
}

/// A deadline shorter than the server's delay: every call ends as
/// `grpc_deadline_exceeded`, after about the deadline.
#[test]
fn a_deadline_shorter_than_the_servers_delay_is_deadline_exceeded() {
    let dir = TempDir::new("grpc-deadline");
    protos(&dir);
    let target = Target::start(&["--delay", "200ms"]);
    let url = format!("http://{}", target.addr);
    let workload = format!(
        "[agents]\nlocal = 1\n{}",
        grpc_phase(
            "late",
            "concurrency = 4",
            &url,
            "fleetbench.test.Echo/Say",
            "deadline = \"30ms\""
        )
    );
    let (_, report) = run(&dir, &workload);
    let phase = &report["phases"][0];
    let n = phase["requests"].as_u64().unwrap();
    assert!(n >= 20, "{phase}");
    assert_eq!(
        phase["errors"],
        serde_json::json!({ "grpc_deadline_exceeded": n })
    );
    let p50 = phase["latency_us"]["p50"].as_u64().unwrap();
    assert!((30_000..100_000).contains(&p50), "{p50}");
}

/// Mistakes are refused before anything starts, at their place: a method
/// the .proto does not define, a streaming one, a message that does not
/// fit its type, a status that is not one.
#[test]
fn grpc_mistakes_are_refused_before_the_run() {
    let dir = TempDir::new("grpc-bad");
    protos(&dir);
    let cases = [
        (
            "fleetbench.test.Echo/Shout",
            "",
            "is not a method of fleetbench.test.Echo (Say, Watch)",
        ),
        (
            "fleetbench.test.Nope/Say",
            "",
            "names a service the proto does not define",
        ),
        (
            "fleetbench.test.Echo/Watch",
            "",
            "streams; only unary calls are supported",
        ),
        (
            "fleetbench.test.Echo/Say",
            "message = '{\"colour\": 1}'",
            "message does not fit fleetbench.test.Ping",
        ),
        (
            "fleetbench.test.Echo/Say",
            "expect_code = [\"SOMETIMES\"]",
            "is not a gRPC status",
        ),
    ];
    for (method, extra, needle) in cases {
        let workload = format!(
            "[agents]\nlocal = 1\n{}",
            grpc_phase("p", "concurrency = 1", "http://127.0.0.1:9", method, extra)
        );
        let w = dir.write("w.toml", &workload);
        let out = coordinator(dir.path(), &["run", w.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{method}: {stderr}");
        assert!(
            stderr.contains("w.toml:") && stderr.contains(needle),
            "{method}: {stderr}"
        );
    }
}
