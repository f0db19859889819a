//! `coordinator preview`: the requests one worker of one agent would send,
//! rendered from the workload file without sending anything.
//!
//! It walks the same streams the agent's worker walks (the op choice from
//! [`fleetbench_gen::worker_seed`] with [`fleetbench_gen::STREAM_OPS`], the generators from
//! [`WorkerGen`] on the same lane, the think-time draws from the op stream),
//! so what it prints is what the agent sends, iteration for iteration.
//! Before a benchmark, it shows that the templates say what was meant;
//! after one, it shows exactly which keys a run asked for.

use serde::Serialize;

use fleetbench_gen::rng::Rng;
use fleetbench_gen::{Lane, OpPicker, Template, WorkerGen};

use crate::ops::OpKind;
use crate::phase::{Load, Phase};
use crate::service::expand_service_hosts;
use crate::spec::Workload;

/// One rendered iteration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    /// The worker's iteration number, from 0.
    pub iteration: u64,
    /// The op chosen ("" for a phase's single op).
    pub op: String,
    /// "http", "grpc", "tcp", "exec" or "synthetic".
    pub kind: &'static str,
    /// http: method and URL; grpc: URL/method; tcp: the address; exec: the
    /// argv joined by spaces; synthetic: empty.
    pub target: String,
    /// http headers or grpc metadata, rendered; empty for the other kinds.
    pub headers: Vec<(String, String)>,
    /// http body, grpc message (JSON), tcp payload (lossy UTF-8).
    pub body: String,
}

/// Where in the fleet the previewed worker sits.
#[derive(Debug, Clone, Copy)]
pub struct Seat {
    /// The agent's index, from 0.
    pub agent: u32,
    /// Agents in the run.
    pub agents: u32,
    /// The worker's index within the agent, from 0.
    pub worker: u32,
}

/// The lane layout the coordinator gives the agents with an even split:
/// each agent's workers, the largest count of any agent.
fn lanes(phase: &Phase, agents: u32) -> u32 {
    phase.load.concurrency().div_ceil(agents.max(1))
}

/// The first `n` iterations of `seat` in `phase`.
pub fn render(workload: &Workload, phase: &Phase, seat: Seat, n: u64) -> Vec<Request> {
    let mut out = Vec::with_capacity(n.min(1 << 16) as usize);
    let _ = render_each(workload, phase, seat, n, |r| {
        out.push(r);
        Ok::<(), std::convert::Infallible>(())
    });
    out
}

/// The first `n` iterations of `seat` in `phase`, each handed to `each` as
/// it is rendered (nothing is held: `preview -n 1000000` streams), until
/// `each` fails.
pub fn render_each<E>(
    workload: &Workload,
    phase: &Phase,
    seat: Seat,
    n: u64,
    mut each: impl FnMut(Request) -> Result<(), E>,
) -> Result<(), E> {
    let lane = Lane {
        agent: seat.agent,
        agents: seat.agents,
        worker: seat.worker,
        workers: lanes(phase, seat.agents),
    };
    let mut values = WorkerGen::new(&workload.generators, phase.seed, lane);
    let mut rng = Rng::new(fleetbench_gen::worker_seed(
        phase.seed,
        seat.agent,
        seat.worker as usize,
        fleetbench_gen::STREAM_OPS,
    ));
    let picker = OpPicker::new(phase.ops.iter().map(|o| o.weight));
    // Each template compiled once, at its first use.
    let mut compiled: std::collections::HashMap<String, Template> = Default::default();
    let mut buf = Vec::new();
    let mut draw = |values: &mut WorkerGen, text: &str| {
        let t = compiled.entry(text.to_string()).or_insert_with(|| {
            Template::compile(text, &workload.generators).expect("validated with the workload")
        });
        buf.clear();
        values.render(t, &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    };
    for iteration in 0..n {
        let op = &phase.ops[picker.pick(&mut rng)];
        values.begin(iteration);
        let request = match &op.kind {
            OpKind::Http(h) => Request {
                iteration,
                op: op.name.clone(),
                kind: "http",
                target: format!(
                    "{} {}",
                    h.method,
                    draw(
                        &mut values,
                        &expand_service_hosts(&h.url, &workload.services)
                    )
                ),
                headers: h
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), draw(&mut values, v)))
                    .collect(),
                body: draw(&mut values, &h.body),
            },
            OpKind::Tcp(t) => Request {
                iteration,
                op: op.name.clone(),
                kind: "tcp",
                target: expand_service_hosts(&t.address, &workload.services),
                headers: Vec::new(),
                body: draw(&mut values, &t.send),
            },
            OpKind::Exec(e) => Request {
                iteration,
                op: op.name.clone(),
                kind: "exec",
                target: e
                    .argv
                    .iter()
                    .map(|a| draw(&mut values, a))
                    .collect::<Vec<_>>()
                    .join(" "),
                headers: Vec::new(),
                body: String::new(),
            },
            OpKind::Grpc(g) => Request {
                iteration,
                op: op.name.clone(),
                kind: "grpc",
                target: format!(
                    "{}/{}",
                    expand_service_hosts(&g.url, &workload.services),
                    g.method
                ),
                headers: g
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), draw(&mut values, v)))
                    .collect(),
                body: draw(&mut values, &g.message),
            },
            OpKind::Synthetic(_) => Request {
                iteration,
                op: op.name.clone(),
                kind: "synthetic",
                target: String::new(),
                headers: Vec::new(),
                body: String::new(),
            },
        };
        each(request)?;
        // The worker draws its think time from the same stream.
        if let (Some(think), Load::Closed { .. }) = (&phase.think, &phase.load) {
            let _ = think.sample(&mut rng);
        }
    }
    Ok(())
}

/// One request as text: `#N op: TARGET`, headers, the body.
pub fn to_text(r: &Request) -> String {
    let mut s = format!(
        "#{} {}{}",
        r.iteration,
        if r.op.is_empty() {
            String::new()
        } else {
            format!("{}: ", r.op)
        },
        match r.kind {
            "tcp" => format!("tcp {} <- {:?}", r.target, r.body),
            "exec" => format!("exec {}", r.target),
            "synthetic" => "synthetic".to_string(),
            _ => r.target.clone(),
        }
    );
    s.push('\n');
    for (k, v) in &r.headers {
        s.push_str(&format!("  {k}: {v}\n"));
    }
    if r.kind == "http" && !r.body.is_empty() {
        s.push_str(&format!("  {}\n", r.body));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: &str = r#"
[run]
seed = 42

[agents]
local = 2

[generator.key]
kind = "zipf"
n = 1000

[generator.id]
kind = "sequence"

[[phase]]
name = "p"
duration = "1s"
concurrency = 4

[[phase.op]]
name = "get"
weight = 3
http = { url = "http://h:1/kv/{{key}}", headers = { x-id = "{{id}}" } }

[[phase.op]]
name = "put"
http = { method = "PUT", url = "http://h:1/kv/{{key}}", body = "{\"id\": {{id}}}" }
"#;

    fn first(text: &str, seat: Seat, n: u64) -> Vec<Request> {
        let w = Workload::parse("w.toml", text).unwrap();
        render(&w, &w.phases[0], seat, n)
    }

    const SEAT: Seat = Seat {
        agent: 1,
        agents: 2,
        worker: 0,
    };

    #[test]
    fn the_same_seed_gives_the_same_1000_requests_and_another_does_not() {
        let a = first(W, SEAT, 1000);
        assert_eq!(a, first(W, SEAT, 1000));
        let b = first(&W.replace("seed = 42", "seed = 43"), SEAT, 1000);
        assert_ne!(a, b);
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        assert!(same < 900, "{same} of 1000 equal under another seed");
        // Another worker, another stream.
        let other = first(W, Seat { worker: 1, ..SEAT }, 1000);
        assert_ne!(a, other);
    }

    #[test]
    fn one_iteration_draws_each_generator_once() {
        for r in first(W, SEAT, 200) {
            if r.op == "put" {
                let id = r.body.trim_start_matches("{\"id\": ").trim_end_matches('}');
                assert!(id.parse::<u64>().is_ok(), "{r:?}");
            } else {
                assert_eq!(r.headers.len(), 1, "{r:?}");
            }
            assert!(r.target.contains("http://h:1/kv/"), "{r:?}");
        }
        let ops: Vec<&str> = first(W, SEAT, 1000)
            .iter()
            .map(|r| if r.op == "get" { "g" } else { "p" })
            .collect();
        let gets = ops.iter().filter(|o| **o == "g").count();
        assert!(
            (700..800).contains(&gets),
            "{gets} gets of 1000 at weight 3:1"
        );
    }
}
