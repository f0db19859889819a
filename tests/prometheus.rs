//! Live metrics against a real Prometheus (Debian's `prometheus`): one run
//! scraped through `run --metrics-listen`, a second pushed with
//! `run --remote-write`, the first pushed again from its log with `export
//! --remote-write`. Prometheus's HTTP API must then give the report's
//! request totals exactly and its p99 within the histogram's bucket; the
//! Grafana dashboard may name only metrics Prometheus got from us.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A real Prometheus on 127.0.0.1 with its own config and storage, taking
/// remote writes, scraping `scrape` (host:port) every second.
struct Prometheus {
    _process: KillOnDrop,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, scrape: &str) -> Prometheus {
        let port = free_tcp_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: fleetbench\n    static_configs:\n      - targets: ['{scrape}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("Debian's prometheus (apt install prometheus; .ci/run installs it)");
        let prometheus = Prometheus {
            _process: KillOnDrop(child),
            port,
        };
        wait_for("Prometheus to be ready", Duration::from_secs(60), || {
            let (status, _) = http_get(port, "/-/ready")?;
            (status == 200).then_some(())
        });
        prometheus
    }

    /// An instant query's vector, as (labels, value) pairs.
    fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let (status, body) = http_get(
            self.port,
            &format!("/api/v1/query?query={}", encode(promql)),
        )
        .expect("Prometheus answers");
        assert_eq!(status, 200, "{promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// The single value `promql` gives, once there is one.
    fn value(&self, promql: &str) -> Option<f64> {
        match self.query(promql).as_slice() {
            [(_, v)] => Some(*v),
            _ => None,
        }
    }

    fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }
}

/// GET `path` on 127.0.0.1:`port`: (status, body), None if nobody answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    // HTTP/1.0: the answer comes whole, never chunked.
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    Some((status, body.trim().to_string()))
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A workload of two ops against `target`, one of them refused (a closed
/// port), so that errors by class are served too.
fn workload(name: &str, target: &str, closed: u16) -> String {
    format!(
        r#"
[run]
name = "{name}"

[agents]
local = 2

[[phase]]
name = "load"
duration = "4s"
rate = 400

[[phase.op]]
name = "get"
weight = 9
http = {{ url = "{target}" }}

[[phase.op]]
name = "refused"
weight = 1
http = {{ url = "http://127.0.0.1:{closed}/" }}
"#
    )
}

/// The bucket bounds (lower, upper] of the latency histogram around `s`.
fn bucket_around(s: f64) -> (f64, f64) {
    let steps = [1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0];
    let bounds: Vec<f64> = (-5..=1)
        .flat_map(|e| steps.iter().map(move |m| m * 10f64.powi(e)))
        .collect();
    let i = bounds.partition_point(|b| *b < s * (1.0 - 1e-9));
    (if i == 0 { 0.0 } else { bounds[i - 1] }, bounds[i])
}

fn run_json(dir: &Path, args: &[&str]) -> (serde_json::Value, String) {
    let out = coordinator(dir, args);
    let err = text(&out.stderr);
    // Exit 1: failed, for the op whose every request was refused.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "run failed: {err}"
    );
    (serde_json::from_slice(&out.stdout).unwrap(), err)
}

#[test]
#[allow(clippy::too_many_lines)] // one Prometheus, three ways in, checked in turn
fn prometheus_scrapes_and_takes_remote_writes_of_the_reported_numbers() {
    let dir = TempDir::new("prometheus");
    let target = Target::start(&[]);
    let closed = free_tcp_port();
    let metrics_port = free_tcp_port();
    let prom = Prometheus::start(dir.path(), &format!("127.0.0.1:{metrics_port}"));

    // 1. Scraped while it runs: once Prometheus scrapes at all (its scrape
    // manager starts seconds after it is ready), so that scrapes see the
    // run from its start.
    wait_for("Prometheus's first scrape", Duration::from_secs(60), || {
        prom.value("up{job=\"fleetbench\"}")
    });
    let w1 = dir.write("scraped.toml", &workload("scraped", &target.url(), closed));
    let listen = format!("127.0.0.1:{metrics_port}");
    let (r1, err1) = run_json(
        dir.path(),
        &[
            "run",
            w1.to_str().unwrap(),
            "--json",
            "--metrics-listen",
            &listen,
            "--metrics-linger",
            "30s",
        ],
    );
    assert!(!err1.contains("no scrape came"), "{err1}");
    let id1 = r1["run_id"].as_str().unwrap().to_string();
    let total1 = r1["phases"][0]["requests"].as_u64().unwrap();
    let errors1: u64 = r1["phases"][0]["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(total1 > 1000 && errors1 > 0, "{r1}");
    let scraped = format!("run_id=\"{id1}\",job=\"fleetbench\"");
    let got = wait_for(
        "Prometheus to hold the final scrape",
        Duration::from_secs(30),
        || {
            let v = prom.value(&format!("sum(fleetbench_requests_total{{{scraped}}})"))?;
            (v as u64 == total1).then_some(v)
        },
    );
    assert_eq!(got as u64, total1);
    let by_agent = prom
        .value(&format!(
            "sum(fleetbench_agent_requests_total{{{scraped}}})"
        ))
        .unwrap();
    assert_eq!(
        by_agent as u64, total1,
        "per-agent counters add up to the total"
    );
    let failed = prom
        .value(&format!("sum(fleetbench_errors_total{{{scraped}}})"))
        .unwrap();
    assert_eq!(failed as u64, errors1);
    let refused = prom.query(&format!(
        "fleetbench_errors_total{{{scraped},op=\"refused\"}}"
    ));
    assert!(
        refused.iter().all(|(m, _)| m["error_class"] == "connect"),
        "a refused connection is a connect error: {refused:?}"
    );

    // p99 over the whole run, from the buckets: in the report p99's bucket.
    let p99 = r1["phases"][0]["latency_us"]["p99"].as_u64().unwrap() as f64 / 1e6;
    let q = prom
        .value(&format!(
            "histogram_quantile(0.99, sum by (le) (fleetbench_request_duration_seconds_bucket{{{scraped}}}))"
        ))
        .unwrap();
    let (lo, hi) = bucket_around(p99);
    assert!(
        lo - 1e-9 <= q && q <= hi + 1e-9,
        "Prometheus's p99 {q}s is outside ({lo}, {hi}], the bucket of the report's {p99}s"
    );

    // The dashboard names only what Prometheus got from /metrics.
    let (_, names) = http_get(prom.port, "/api/v1/label/__name__/values").unwrap();
    let names: serde_json::Value = serde_json::from_str(&names).unwrap();
    let served: Vec<&str> = names["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/fleetbench.json"),
    )
    .unwrap();
    let used = dashboard_metrics(&dashboard);
    assert!(used.len() >= 10, "{used:?}");
    for name in &used {
        assert!(
            served.contains(&name.as_str()),
            "the dashboard's {name} is not served: {served:?}"
        );
    }

    // 2. Pushed with remote write while it runs.
    let w2 = dir.write("pushed.toml", &workload("pushed", &target.url(), closed));
    let url = prom.write_url();
    let (r2, err2) = run_json(
        dir.path(),
        &[
            "run",
            w2.to_str().unwrap(),
            "--json",
            "--remote-write",
            &url,
        ],
    );
    assert!(err2.contains("all delivered"), "{err2}");
    let id2 = r2["run_id"].as_str().unwrap();
    let total2 = r2["phases"][0]["requests"].as_u64().unwrap();
    let pushed = prom
        .value(&format!(
            "sum(fleetbench_requests_total{{run_id=\"{id2}\"}})"
        ))
        .expect("the pushed run's series");
    assert_eq!(pushed as u64, total2);
    // One push per window: a 4 s phase gives several samples.
    let samples = prom.query(&format!(
        "count_over_time(fleetbench_requests_total{{run_id=\"{id2}\",op=\"get\"}}[10m])"
    ));
    assert!(samples[0].1 >= 3.0, "{samples:?}");

    // 3. The first run again, from its log.
    let out = coordinator(dir.path(), &["export", &id1, "--remote-write", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let replayed = prom
        .value(&format!(
            "sum(fleetbench_requests_total{{run_id=\"{id1}\",job=\"\"}})"
        ))
        .expect("the exported run's series");
    assert_eq!(replayed as u64, total1);
}

/// The metric names in a Grafana dashboard's PromQL expressions.
fn dashboard_metrics(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).expect("the dashboard is JSON");
    assert!(
        v["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "run_id"),
        "the run id is a variable"
    );
    let mut names = Vec::new();
    for panel in v["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("fleetbench_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                let name = tail[..end].to_string();
                if !names.contains(&name) {
                    names.push(name);
                }
                rest = &tail[end..];
            }
        }
    }
    names
}

#[test]
fn a_dead_remote_write_endpoint_does_not_fail_the_run() {
    let dir = TempDir::new("remote-write-dead");
    let target = Target::start(&[]);
    let w = dir.write(
        "dead.toml",
        &format!(
            "[run]\nname = \"dead\"\n[agents]\nlocal = 1\n[[phase]]\nname = \"load\"\nduration = \"2s\"\n\
             rate = 100\n[phase.http]\nurl = \"{}\"\n",
            target.url()
        ),
    );
    let url = format!("http://127.0.0.1:{}/api/v1/write", free_tcp_port());
    let out = coordinator(
        dir.path(),
        &["run", w.to_str().unwrap(), "--remote-write", &url],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: remote write"), "{err}");
    assert!(
        err.contains("pushes to"),
        "the end says how many failed: {err}"
    );
    assert!(
        err.contains("export RUN --remote-write"),
        "and how to send them again: {err}"
    );
}

#[test]
fn a_taken_metrics_port_is_refused_before_the_run() {
    let dir = TempDir::new("metrics-port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let w = dir.write("w.toml", &synthetic_workload("1s"));
    let out = coordinator(
        dir.path(),
        &["run", w.to_str().unwrap(), "--metrics-listen", &addr],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("--metrics-listen {addr}")), "{err}");
    assert!(
        !dir.path().join("runs").exists()
            || std::fs::read_dir(dir.path().join("runs"))
                .unwrap()
                .next()
                .is_none(),
        "no run was started"
    );
}
