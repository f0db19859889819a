//! The command line: every subcommand's arguments as clap types, and the
//! parsers of their values (durations, labels, limits).
//!
//! This module only describes; the work of each subcommand is in `cmd`. It
//! uses nothing else of the crate, so every other module may take these
//! types as they are (a pool command takes its `UpArgs`, a run its
//! `RunFlags`) without a field list written twice.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fleetbench_views::Format;

/// Hosts upgraded at once unless `--parallel` says otherwise.
const UPGRADE_PARALLEL: usize = 2;

#[derive(Parser)]
#[command(
    name = "coordinator",
    version,
    about = "fleetbench coordinator: run benchmarks across agents and report on them"
)]
pub(crate) struct Cli {
    /// Data directory holding the event logs.
    #[arg(
        long,
        global = true,
        env = "FLEETBENCH_DATA",
        default_value = "./fleetbench-data"
    )]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Run a workload file.
    #[command(
        after_help = "Examples:\n  coordinator run examples/quickstart.toml\n  coordinator run load.toml --json > report.json\n  coordinator run load.toml --junit results.xml\n  coordinator run load.toml --metrics-listen 127.0.0.1:9464\n  coordinator run load.toml --remote-write http://prometheus:9090/api/v1/write"
    )]
    Run(RunArgs),
    /// Run again exactly the workload text a past run recorded (same text,
    /// so the same seeds), as a new run.
    #[command(after_help = "Examples:\n  coordinator rerun latest\n  coordinator rerun 01a2291d")]
    Rerun(RerunArgs),
    /// List the runs in the log, with each phase's throughput and p99.
    #[command(
        after_help = "Examples:\n  coordinator runs\n  coordinator --data-dir /var/lib/fleetbench runs"
    )]
    Runs(RunsArgs),
    /// Re-aggregate a run from its raw events: other windows, a time range,
    /// some phases, agents or hosts only.
    #[command(
        after_help = "Examples:\n  coordinator replay latest --window 10s\n  coordinator replay latest --agent local-1 --format json\n  coordinator replay latest --follow"
    )]
    Replay(ReplayArgs),
    /// Compare a candidate run with a base run, phase by phase; exits 1 when
    /// a --max-regression limit is crossed.
    #[command(
        after_help = "Examples:\n  coordinator compare BASE CANDIDATE\n  coordinator compare BASE CANDIDATE --max-regression p99=10% --format html > compare.html"
    )]
    Compare(CompareArgs),
    /// Write a run's windows (per agent) as JSON Lines or CSV, its latencies
    /// as an HdrHistogram interval log, or every raw log record.
    #[command(
        after_help = "Examples:\n  coordinator export latest --format csv > windows.csv\n  coordinator export latest --format hlog > latencies.hlog\n  coordinator export latest --events > records.jsonl\n  coordinator export latest --remote-write http://prometheus:9090/api/v1/write"
    )]
    Export(ExportArgs),
    /// Print the requests one worker of one agent would send (templates
    /// rendered from the seeded generators), without sending anything.
    #[command(
        after_help = "Examples:\n  coordinator preview load.toml\n  coordinator preview load.toml --phase ingest --agent 1 --worker 3 -n 20"
    )]
    Preview(PreviewArgs),
    /// Write a synthetic run straight into the log (for replay benchmarks).
    #[command(hide = true)]
    GenerateRun(GenerateRunArgs),
    /// Long-lived agent pools: bootstrap once, then runs need no SSH.
    Pool {
        #[command(subcommand)]
        command: PoolCmd,
    },
    /// Admit an agent started by something else (Kubernetes, systemd,
    /// cloud-init) to a pool: writes the credentials it needs.
    #[command(
        after_help = "Examples:\n  coordinator enroll fleet --labels zone=a --output agent.creds\n  agent attach --credentials agent.creds"
    )]
    Enroll(EnrollArgs),
    /// Report on a run, from its log alone: its numbers and its verdict
    /// (exit 0 unless --check).
    #[command(
        after_help = "Examples:\n  coordinator report latest\n  coordinator report latest --format html > report.html\n  coordinator report latest --threshold 'p99<50ms' --check"
    )]
    Report(ReportArgs),
    /// Check runs' logs: whole, incomplete (never sealed) or damaged (exit
    /// 4), without writing to them.
    #[command(after_help = "Examples:\n  coordinator verify latest\n  coordinator verify --all")]
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// A run id (or a unique prefix of one), or `latest`.
    pub run: Option<String>,
    /// Every run in the data directory.
    #[arg(long)]
    pub all: bool,
}

#[derive(Subcommand)]
pub(crate) enum PoolCmd {
    /// Bootstrap pool agents on hosts (those not running already) and
    /// record the pool; again with the same hosts, it changes nothing.
    #[command(
        after_help = "Examples:\n  coordinator pool up fleet --hosts root@10.0.0.1 root@10.0.0.2 --identity ~/.ssh/id_ed25519"
    )]
    Up(UpArgs),
    /// Each pool and agent: host, labels, version and binary (STALE when it
    /// is not the local agent's), attached or not, last seen, uptime.
    #[command(
        after_help = "Examples:\n  coordinator pool ls\n  coordinator pool ls fleet --wait 5s"
    )]
    Ls(LsArgs),
    /// Replace agents that run another binary than the local agent, host by
    /// host; a host that fails keeps its old agent.
    #[command(
        after_help = "Examples:\n  coordinator pool upgrade fleet\n  coordinator pool upgrade fleet --parallel 4"
    )]
    Upgrade(UpgradeArgs),
    /// Stop the pool's agents, remove fleetbench's files from its hosts, and
    /// forget the pool.
    #[command(after_help = "Examples:\n  coordinator pool down fleet")]
    Down(DownArgs),
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// The workload file (TOML).
    pub workload: PathBuf,
    #[command(flatten)]
    pub flags: RunFlags,
}

#[derive(clap::Args)]
pub(crate) struct RerunArgs {
    /// A run id (or a unique prefix of one), or `latest`.
    pub run: String,
    #[command(flatten)]
    pub flags: RunFlags,
}

/// How `run` (and `rerun`) reach agents and print.
#[derive(clap::Args)]
pub(crate) struct RunFlags {
    /// Print the report as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Address the gRPC server listens on (default 127.0.0.1:0, or
    /// 0.0.0.0:0 when the workload uses SSH hosts).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// host:port agents dial back to (default: the listen address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// The agent binary to run (default: `agent` beside this binary,
    /// or $FLEETBENCH_AGENT).
    #[arg(long)]
    pub agent_binary: Option<PathBuf>,
    /// Record the host key of SSH hosts not yet in known_hosts.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Leave the agents on SSH hosts running after the run.
    #[arg(long)]
    pub keep_agents: bool,
    /// Also write the verdict and each threshold as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Serve the run's live metrics at http://ADDR/metrics for Prometheus
    /// to scrape (Prometheus text, or OpenMetrics when asked), like
    /// 127.0.0.1:9464 or 0.0.0.0:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// After the run, keep /metrics up until it is scraped once more, so
    /// that Prometheus sees the final numbers: at most this long (0s: exit
    /// at once).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = duration)]
    pub metrics_linger: Duration,
    /// Push the run's metrics once per window to this Prometheus
    /// remote-write URL (Prometheus, Mimir, Thanos, VictoriaMetrics), like
    /// http://127.0.0.1:9090/api/v1/write; a user:password@ in it is sent
    /// as Basic auth.
    #[arg(long, value_name = "URL")]
    pub remote_write: Option<String>,
    /// A header every remote-write request carries (repeatable), like
    /// "Authorization: Bearer TOKEN" or "X-Scope-OrgID: team".
    #[arg(
        long = "remote-write-header",
        value_name = "'NAME: VALUE'",
        requires = "remote_write"
    )]
    pub remote_write_headers: Vec<String>,
}

/// How `report` and `replay` judge the run they show.
#[derive(clap::Args)]
pub(crate) struct JudgeFlags {
    /// Judge the run against this threshold instead of those its workload
    /// logged (repeatable): PHASE/OP:METRIC<LIMIT, PHASE: and /OP optional,
    /// like p99<20ms, load:p99<20ms, load/get:error_rate<1% or
    /// throughput>900/s.
    #[arg(long = "threshold", value_name = "EXPR")]
    pub thresholds: Vec<String>,
    /// Exit with the verdict's code (0 passed, 1 failed, 3 invalid, 130
    /// interrupted) instead of 0.
    #[arg(long)]
    pub check: bool,
    /// Also write the verdict and each threshold as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct RunsArgs {
    /// Only runs whose name contains this.
    #[arg(long)]
    pub name: Option<String>,
    /// Only runs started since then: a duration back from now (1h, "30m
    /// ago") or a time (2026-11-29T19:00:00Z).
    #[arg(long, value_parser = since)]
    pub since: Option<i64>,
    /// Only runs with this status (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = ["completed", "failed", "aborted", "incomplete", "running"])]
    pub status: Vec<String>,
}

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    /// A run id (or a unique prefix of one), or `latest`.
    pub run: String,
    /// Timeline window, a whole number of seconds (like 10s, 1m).
    #[arg(long, value_parser = whole_seconds)]
    pub window: Option<u32>,
    /// Only windows from this long after the run's start.
    #[arg(long, value_parser = seconds)]
    pub from: Option<f64>,
    /// Only windows until this long after the run's start.
    #[arg(long, value_parser = seconds)]
    pub to: Option<f64>,
    /// Only these phases (repeatable).
    #[arg(long = "phase")]
    pub phases: Vec<String>,
    /// Only these agents (repeatable).
    #[arg(long = "agent")]
    pub agents: Vec<String>,
    /// Leave these agents out (repeatable).
    #[arg(long = "exclude-agent")]
    pub exclude_agents: Vec<String>,
    /// Only agents on these hosts (repeatable).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Only these operations of multi-operation phases (repeatable).
    #[arg(long = "op")]
    pub ops: Vec<String>,
    /// Count warm-up windows in the headline numbers.
    #[arg(long)]
    pub include_warmup: bool,
    /// Extra percentiles, like 50,90,99,99.9,99.99.
    #[arg(long, value_delimiter = ',')]
    pub percentiles: Vec<f64>,
    /// What to print: table, json, csv or html.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Show a run in progress live (from another terminal) until it ends.
    #[arg(long, conflicts_with = "speed")]
    pub follow: bool,
    /// Play the run's timeline back in the live view at this many times its pace.
    #[arg(long)]
    pub speed: Option<f64>,
    #[command(flatten)]
    pub judge: JudgeFlags,
}

#[derive(clap::Args)]
pub(crate) struct CompareArgs {
    /// The run to compare against: a run id (or a unique prefix), or `latest`.
    pub base: String,
    /// The run to judge: a run id (or a unique prefix), or `latest`.
    pub candidate: String,
    /// Only this phase.
    #[arg(long)]
    pub phase: Option<String>,
    /// Limits like p99=10%,throughput=5%,error_rate=1%: exit 1 when
    /// throughput is lower by more than 5 %, p99 (p50, p90, p999, max)
    /// higher by more than 10 %, the error rate higher by more than one
    /// percentage point.
    #[arg(long, value_parser = limits)]
    pub max_regression: Option<Limits>,
    /// table, json, or html (both runs overlaid on the same charts).
    #[arg(long, default_value = "table", value_parser = fleetbench_views::compare::parse_format)]
    pub format: Format,
}

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    /// A run id (or a unique prefix of one), or `latest`.
    pub run: String,
    /// jsonl (one JSON object per line), csv, hlog (an HdrHistogram
    /// interval log of the latencies), or openmetrics (the final metrics).
    #[arg(long, default_value = "jsonl")]
    pub format: ExportFormat,
    /// Every raw log record instead of the windows (jsonl only).
    #[arg(long)]
    pub events: bool,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Instead of writing a file, push the run's metrics to this
    /// Prometheus remote-write URL, one push per second of the run, with
    /// the log's timestamps (as `run --remote-write` would have).
    #[arg(long, value_name = "URL", conflicts_with_all = ["events", "output"])]
    pub remote_write: Option<String>,
    /// A header every remote-write request carries (repeatable).
    #[arg(
        long = "remote-write-header",
        value_name = "'NAME: VALUE'",
        requires = "remote_write"
    )]
    pub remote_write_headers: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// One JSON object per window row (or record) per line.
    Jsonl,
    /// Comma-separated window rows, a header line first.
    Csv,
    /// An HdrHistogram interval log of latencies (one interval per window
    /// and phase or operation), for HdrHistogram's own tools.
    Hlog,
    /// The run's final metrics in the OpenMetrics text format (what
    /// `run --metrics-listen` served last), e.g. for node_exporter's
    /// textfile collector.
    Openmetrics,
}

#[derive(clap::Args)]
pub(crate) struct PreviewArgs {
    /// The workload file (TOML).
    pub workload: PathBuf,
    /// The phase, by name (default: the first).
    #[arg(long)]
    pub phase: Option<String>,
    /// The agent's index (0 = the first agent of the run).
    #[arg(long, default_value_t = 0)]
    pub agent: u32,
    /// The worker's index on that agent.
    #[arg(long, default_value_t = 0)]
    pub worker: u32,
    /// How many iterations.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub count: u64,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub(crate) struct GenerateRunArgs {
    #[arg(long, default_value_t = 100)]
    pub agents: u32,
    #[arg(long, default_value_t = 3600)]
    pub seconds: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(clap::Args)]
pub(crate) struct ReportArgs {
    /// A run id (or a unique prefix of one), or `latest`.
    pub run: String,
    /// What to print: table, json, csv or html.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Count warm-up windows in the headline numbers.
    #[arg(long)]
    pub include_warmup: bool,
    #[command(flatten)]
    pub judge: JudgeFlags,
}

#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// The pool's name.
    pub name: String,
    /// SSH hosts (`user@host[:port]`), or files listing one per line.
    #[arg(long, num_args = 1.., required = false)]
    pub hosts: Vec<String>,
    /// Agents per host.
    #[arg(long, default_value_t = 1)]
    pub per_host: u32,
    /// Labels of these hosts' agents, like zone=a,tier=big.
    #[arg(long, value_parser = labels, default_value = "")]
    pub labels: BTreeMap<String, String>,
    /// Private key file for SSH (else ssh-agent, else the default keys).
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// known_hosts file (default ~/.ssh/known_hosts).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Record the host key of hosts not yet in known_hosts.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// The pool's fixed address: every coordinator serving the pool
    /// listens here (default 0.0.0.0:7717; set once, when the pool is made).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// host:port agents dial (default: our address as each host sees it,
    /// with the listen port).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Where fleetbench keeps its files on the hosts (default ~/.fleetbench).
    #[arg(long)]
    pub remote_dir: Option<String>,
    /// Agents stop load this long after losing their coordinator (default 5s).
    #[arg(long, value_parser = duration)]
    pub lease: Option<Duration>,
    /// The agent binary (default: `agent` beside this binary, or $FLEETBENCH_AGENT).
    #[arg(long)]
    pub agent_binary: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct LsArgs {
    /// Only this pool.
    pub name: Option<String>,
    /// How long to wait for agents to dial in.
    #[arg(long, default_value = "3s", value_parser = duration)]
    pub wait: Duration,
}

#[derive(clap::Args)]
pub(crate) struct UpgradeArgs {
    /// The pool's name.
    pub name: String,
    /// Hosts upgraded at once.
    #[arg(long, default_value_t = UPGRADE_PARALLEL)]
    pub parallel: usize,
    /// The agent binary to roll out (default: `agent` beside this binary,
    /// or $FLEETBENCH_AGENT).
    #[arg(long)]
    pub agent_binary: Option<PathBuf>,
    /// Record the host key of hosts not yet in known_hosts.
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

#[derive(clap::Args)]
pub(crate) struct DownArgs {
    /// The pool's name.
    pub name: String,
    /// Record the host key of hosts not yet in known_hosts.
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

#[derive(clap::Args)]
pub(crate) struct EnrollArgs {
    /// The pool.
    pub name: String,
    /// The agent's id (default: enrolled-N).
    #[arg(long)]
    pub id: Option<String>,
    /// Labels of the agent, like zone=a,tier=big.
    #[arg(long, value_parser = labels, default_value = "")]
    pub labels: BTreeMap<String, String>,
    /// host:port the agent dials (default: the pool's --advertise, or
    /// its listen address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Write the credentials file here (mode 0600) instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// `--max-regression`'s limits (one value holding a list).
#[derive(Clone)]
pub(crate) struct Limits(pub Vec<fleetbench_views::compare::Limit>);

fn limits(s: &str) -> Result<Limits, String> {
    fleetbench_views::compare::parse_limits(s).map(Limits)
}

/// `k=v,k2=v2` -> a map.
fn labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("label {pair:?} is not key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("label {pair:?} has an empty key"));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

fn duration(s: &str) -> Result<Duration, String> {
    fleetbench::clock::parse_duration(s)
}

fn since(s: &str) -> Result<i64, String> {
    fleetbench::clock::parse_since(s, fleetbench::clock::now_us())
}

fn seconds(s: &str) -> Result<f64, String> {
    fleetbench::clock::parse_duration(s).map(|d| d.as_secs_f64())
}

fn whole_seconds(s: &str) -> Result<u32, String> {
    let d = fleetbench::clock::parse_duration(s)?;
    if d.subsec_nanos() != 0 || d.as_secs() == 0 || d.as_secs() > u64::from(u32::MAX) {
        return Err(format!(
            "{s:?}: the window must be a whole number of seconds, like 10s"
        ));
    }
    Ok(d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::{labels, whole_seconds};

    #[test]
    fn labels_parse() {
        let l = labels("zone=a, tier=big").unwrap();
        assert_eq!(l["zone"], "a");
        assert_eq!(l["tier"], "big");
        assert!(labels("zone").unwrap_err().contains("key=value"));
        assert!(labels("=a").unwrap_err().contains("empty key"));
        assert!(labels("").unwrap().is_empty());
    }

    #[test]
    fn a_window_is_whole_seconds() {
        assert_eq!(whole_seconds("1m"), Ok(60));
        assert_eq!(whole_seconds("10s"), Ok(10));
        for bad in ["1500ms", "0s"] {
            let e = whole_seconds(bad).unwrap_err();
            assert!(e.contains("whole number of seconds"), "{bad}: {e}");
        }
    }
}
