//! The phase language through the public API: a phase's load shapes, its
//! ops, and every rejection of a phase or op with where it points.

use fleetbench_workload::{Arrival, Load, Workload};

const BASE: &str = r#"[agents]
local = 2

[generator.key]
kind = "zipf"
n = 100
exponent = 1.1

[[phase]]
name = "p"
duration = "10s"
concurrency = 4

[[phase.op]]
name = "read"
weight = 3
http = { url = "http://127.0.0.1:8080/kv/{{key}}" }

[[phase.op]]
name = "echo"
tcp = { address = "127.0.0.1:9000", send = "{{key}}\n", until = "\n" }
"#;

fn parse(text: &str) -> Result<Workload, String> {
    Workload::parse("w.toml", text).map_err(|e| e.to_string())
}

#[test]
fn the_base_parses_into_ops() {
    let w = parse(BASE).unwrap();
    let p = &w.phases[0];
    assert_eq!(p.op_names(), vec!["read", "echo"]);
    assert_eq!(p.ops[0].weight, 3);
    assert_eq!(p.ops[1].weight, 1);
    assert_eq!(p.load, Load::Closed { concurrency: 4 });
    let ramp = parse(&BASE.replace(
        "duration = \"10s\"\nconcurrency = 4",
        "ramp = { from = 10, to = 100, over = \"1m\" }\narrival = \"poisson\"",
    ))
    .unwrap();
    let p = &ramp.phases[0];
    assert_eq!(p.duration, std::time::Duration::from_secs(60));
    match &p.load {
        Load::Open { shape, .. } => {
            assert_eq!(shape.arrival, Arrival::Poisson);
            assert_eq!(shape.rate_at(30.0), 55.0);
            assert_eq!(shape.rate_at(90.0), 100.0);
        }
        other => panic!("{other:?}"),
    }
    let steps = parse(&BASE.replace(
        "duration = \"10s\"\nconcurrency = 4",
        "steps = [{ rate = 10, for = \"5s\" }, { rate = 20, for = \"5s\" }]\nuntil = { p99 = \"20ms\", error_rate = 0.01 }",
    ))
    .unwrap();
    assert_eq!(steps.phases[0].duration, std::time::Duration::from_secs(10));
    // Open loop: connections to start with (by default enough for ~2 ms a
    // request at the peak, at least 4 per agent) and the most per agent.
    match &steps.phases[0].load {
        Load::Open {
            concurrency: 8,
            max_connections: None,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    let capped = parse(&BASE.replace(
        "duration = \"10s\"\nconcurrency = 4",
        "duration = \"10s\"\nrate = 100000\nmax_connections = 50",
    ))
    .unwrap();
    match &capped.phases[0].load {
        Load::Open {
            concurrency: 100,
            max_connections: Some(50),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    // No slack unless asked; `send_slack` takes a duration up to 1 ms.
    match &steps.phases[0].load {
        Load::Open { shape, .. } => assert!(shape.send_slack.is_zero()),
        other => panic!("{other:?}"),
    }
    let slack = parse(&BASE.replace(
        "duration = \"10s\"\nconcurrency = 4",
        "duration = \"10s\"\nrate = 10000\nsend_slack = \"250us\"",
    ))
    .unwrap();
    match &slack.phases[0].load {
        Load::Open { shape, .. } => {
            assert_eq!(shape.send_slack, std::time::Duration::from_micros(250));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        slack.phases[0].to_pb().shape.unwrap().send_slack_us,
        250,
        "the agents are told the slack"
    );
    assert_eq!(
        steps.phases[0].until.as_ref().unwrap().latency,
        vec![("p99".to_string(), 0.99, 20_000)]
    );
}

/// Every rejection of the phase language, with where it points.
#[test]
fn every_rejection_names_its_place_and_says_why() {
    let phase_load = "duration = \"10s\"\nconcurrency = 4";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            BASE.replace("weight = 3", "weight = 3\nsynthetic = { latency = \"1ms\" }"),
            "w.toml:14:1:",
            "needs exactly one of http, grpc, tcp, exec or synthetic",
        ),
        (
            BASE.replace("concurrency = 4", "concurrency = 4\n[phase.synthetic]\nlatency = \"1ms\""),
            "w.toml:",
            "both a single workload table and [[phase.op]]",
        ),
        (
            BASE.replace("concurrency = 4", "concurrency = 4\nop = []").split("[[phase.op]]").next().unwrap().to_string(),
            "w.toml:13:6:",
            "[[phase.op]] is empty",
        ),
        (
            BASE.split("[[phase.op]]").next().unwrap().to_string(),
            "w.toml:9:1:",
            "has no workload",
        ),
        (BASE.replace(phase_load, "iterations = 0\nconcurrency = 4"), "w.toml:11:14:", "iterations must be a whole number above zero"),
        (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 0"), "w.toml:12:15:", "concurrency must be a whole number from 1"),
        (BASE.replace(phase_load, "duration = \"1s\"\nrate = 5\nsteps = [{ rate = 1, for = \"1s\" }]"), "w.toml:13:9:", "one of `rate`, `ramp` and `steps`"),
        (BASE.replace(phase_load, "ramp = { from = 0, to = 0, over = \"1s\" }"), "w.toml:11:8:", "ramp goes from 0 to 0"),
        (BASE.replace(phase_load, "ramp = { from = -1, to = 5, over = \"1s\" }"), "w.toml:11:17:", "ramp.from must be a number of requests per second zero or more"),
        (BASE.replace(phase_load, "ramp = { from = 1, to = 5, over = \"soon\" }"), "w.toml:11:35:", "ramp.over: \"soon\" is not a duration"),
        (BASE.replace(phase_load, "steps = []"), "w.toml:11:9:", "steps is empty"),
        (BASE.replace(phase_load, "steps = [{ rate = 5, for = \"0s\" }]"), "w.toml:11:28:", "steps.for must be longer than zero"),
        (BASE.replace(phase_load, "concurrency = 4"), "w.toml:10:8:", "needs `duration = \"30s\"` or `iterations = N`"),
        (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\narrival = \"poisson\""), "w.toml:13:11:", "arrival is for open-loop phases"),
        (BASE.replace(phase_load, "duration = \"1s\"\nrate = 5\narrival = \"bursty\""), "w.toml:13:11:", "arrival \"bursty\" is not \"uniform\""),
        (BASE.replace(phase_load, "duration = \"1s\""), "w.toml:9:1:", "needs `concurrency = N` (closed loop) or `rate = R`"),
        (BASE.replace(phase_load, "duration = \"1s\"\nrate = 5\nthink = \"1ms\""), "w.toml:13:9:", "think time is for closed-loop phases"),
        (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\nmax_connections = 8"), "w.toml:13:19:", "max_connections is for open loop"),
        (BASE.replace(phase_load, "duration = \"1s\"\nrate = 5\nmax_connections = 0"), "w.toml:13:19:", "max_connections must be a whole number from 1 to 1000000, not 0"),
        (BASE.replace(phase_load, "duration = \"1s\"\nrate = 5\nconcurrency = 10\nmax_connections = 4"), "w.toml:14:19:", "max_connections = 4 (per agent) is below the 5 connections per agent that `concurrency = 10` starts with"),
        (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\nsend_slack = \"1ms\""), "w.toml:13:14:", "send_slack is for open loop"),
        (BASE.replace(phase_load, "duration = \"1s\"\nrate = 5\nsend_slack = \"2ms\""), "w.toml:13:14:", "send_slack = \"2ms\" is over the most a send may wait, \"1ms\""),
        (BASE.replace(phase_load, "duration = \"1s\"\nrate = 5\nsend_slack = \"soon\""), "w.toml:13:14:", "send_slack: \"soon\" is not a duration"),
        (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\nthink = { dist = \"gamma\" }"), "w.toml:13:9:", "think: unknown dist \"gamma\""),
        (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\nuntil = {}"), "w.toml:13:9:", "until needs a condition"),
        (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\nuntil = { error_rate = 2 }"), "w.toml:13:24:", "until.error_rate must be at least 0 and below 1"),
        (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\nuntil = { p99 = \"fast\" }"), "w.toml:13:17:", "phase.until.p99: \"fast\" is not a duration"),
        (BASE.replace(phase_load, "duration = \"1s\"\nconcurrency = 4\nseed = -1"), "w.toml:13:8:", "seed must be zero or more"),
        (BASE.replace("name = \"read\"", "name = \"read me\""), "w.toml:15:8:", "op name \"read me\" must be"),
        (BASE.replace("name = \"echo\"", "name = \"read\""), "w.toml:20:8:", "op \"read\" is defined twice in this phase"),
        (BASE.replace("weight = 3", "weight = 0"), "w.toml:16:10:", "weight must be a whole number from 1 to 1000000"),
        (BASE.replace("kv/{{key}}\" }", "kv/{{key}}\", rate = 5 }"), "w.toml:17:", "`rate` belongs to the phase, not to one operation"),
        (BASE.replace("kv/{{key}}", "kv/{{nope}}"), "w.toml:17:16:", "op \"read\": url: "),
        (BASE.replace("http://127.0.0.1:8080/kv/{{key}}", "http://{{key}}:8080/kv"), "w.toml:17:16:", "has a {{template}} in its host"),
        (BASE.replace("{{key}}\" }", "{{key}}\", headers = { \"bad name\" = \"x\" } }"), "w.toml:17:", "header name \"bad name\" is not a valid HTTP header name"),
        (BASE.replace("{{key}}\" }", "{{key}}\", expect_status = [200, 700] }"), "w.toml:17:", "expect_status must be a status from 100 to 599"),
        (BASE.replace("{{key}}\" }", "{{key}}\", version = \"3\" }"), "w.toml:17:", "version \"3\" is not \"1.1\", \"2\" or \"auto\""),
        (BASE.replace("{{key}}\" }", "{{key}}\", timeout = \"0s\" }"), "w.toml:17:", "timeout must be longer than zero"),
        (BASE.replace("127.0.0.1:9000", "localhost"), "w.toml:21:19:", "address \"localhost\" must be host:port"),
        (BASE.replace("until = \"\\n\"", "until = \"\\n\", read_bytes = 4"), "w.toml:21:", "give one of `until` (a delimiter), `read_bytes` or `read_to_close = true`"),
        (BASE.replace("until = \"\\n\"", "until = \"\""), "w.toml:21:", "until must not be empty"),
        (BASE.replace("until = \"\\n\"", "read_bytes = 0"), "w.toml:21:", "read_bytes must be from 1 to 1073741824"),
        (BASE.replace("send = \"{{key}}\\n\", until = \"\\n\"", "keep_alive = true"), "w.toml:21:", "sends nothing and reads nothing"),
        (BASE.replace("until = \"\\n\"", "read_to_close = true, keep_alive = true"), "w.toml:21:", "keep_alive cannot go with read_to_close"),
        (BASE.replace("tcp = { address = \"127.0.0.1:9000\", send = \"{{key}}\\n\", until = \"\\n\" }", "exec = { command = [] }"), "w.toml:21:", "command must not be empty"),
        (BASE.replace("tcp = { address = \"127.0.0.1:9000\", send = \"{{key}}\\n\", until = \"\\n\" }", "exec = { command = \"echo {{nope}}\" }"), "w.toml:21:", "op \"echo\": command: "),
        (BASE.replace("name = \"p\"", "name = \"p\"\nhttp = { url = \"http://a:1/\" }\ntcp = { address = \"a:1\", send = \"x\" }"), "w.toml:", "has more than one of [phase.http], [phase.synthetic]"),
        (format!("{BASE}\n[[phase]]\nname = \"p\"\nduration = \"1s\"\n[phase.synthetic]\nlatency = \"1ms\"\nconcurrency = 1\n"), "w.toml:23:1:", "phase \"p\" is defined twice"),
        (BASE.replace("local = 2", "local = 2\nsplit = \"random\""), "w.toml:3:9:", "agents.split \"random\" is not \"even\", \"cores\""),
        (BASE.replace("local = 2", "local = 2\nsplit = [1, -1]"), "w.toml:3:9:", "agents.split weights must be zero or more"),
        (BASE.replace("local = 2", "local = 2\nsplit = [1, 2, 3]"), "w.toml:1:1:", "agents.split lists 3 weights for 2 agents"),
        (format!("[run]\nseed = -5\n{BASE}"), "w.toml:2:8:", "run.seed must be zero or more"),
        (BASE.replace("local = 2", "pool = \"p\"\nsplit = [1, 2]"), "w.toml:1:1:", "agents.split weights need agents.count with a pool"),
    ];
    let mut wrong = Vec::new();
    for (text, at, why) in cases {
        match parse(&text) {
            Ok(_) => wrong.push(format!("accepted, expected {why:?}:\n{text}")),
            Err(e) if !(e.starts_with(at) && e.contains(why)) => {
                wrong.push(format!("expected {at} ... {why:?}, got {e:?}"));
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
