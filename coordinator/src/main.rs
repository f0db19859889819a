//! `coordinator`: runs a benchmark across agents and keeps every result.
//!
//! # Layout
//! - `run`: `coordinator run`, from workload file to summary.
//! - `hub`: the gRPC service agents attach to (TLS only; Hello checked
//!   against the admitted agents and their secrets), and the group-commit
//!   writer between their events and the log.
//! - `trust`: the coordinator's TLS identity in `DATA/tls/`, agent secrets,
//!   private (0600) files.
//! - `log`: the append-only sled event log, one database per run.
//! - `history`: reading runs back (directly, or through a running coordinator).
//! - `services`: `[[service]]` processes around a run.
//! - `live`: the live progress line.
//! - `pool`: long-lived agent pools (`pool up|ls|upgrade|down`, `enroll`).
//!
//! Reading runs again (`runs`, `report`, `replay`, `compare`, `export`,
//! `rerun`) is a fold over the log through `history`; the numbers and their
//! rendering live in the library (`fold`, `report`, `compare`, `export`).
//!
//! Exit codes: 0 success, 1 the run failed (or was interrupted), or
//! `compare` found a regression past a limit, 2 bad input (a workload file
//! that does not validate, a missing binary, an unknown run, phase or
//! metric).

#![forbid(unsafe_code)]

mod bootstrap;
mod fleet;
mod generate;
mod history;
mod hub;
mod known_hosts;
mod live;
mod log;
mod pool;
mod replay;
mod run;
mod services;
mod ssh;
mod trust;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use fleetbench_fold::ReportOptions;
use fleetbench_views::Format;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "coordinator",
    version,
    about = "fleetbench coordinator: run benchmarks across agents and report on them"
)]
struct Cli {
    /// Data directory holding the event logs.
    #[arg(
        long,
        global = true,
        env = "FLEETBENCH_DATA",
        default_value = "./fleetbench-data"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a workload file.
    Run {
        /// The workload file (TOML).
        workload: PathBuf,
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Run again exactly the workload text a past run recorded (same text,
    /// so the same seeds), as a new run.
    Rerun {
        /// A run id (or a unique prefix of one), or `latest`.
        run: String,
        #[command(flatten)]
        flags: RunFlags,
    },
    /// List the runs in the log, with each phase's throughput and p99.
    Runs(RunsArgs),
    /// Re-aggregate a run from its raw events: other windows, a time range,
    /// some phases, agents or hosts only.
    Replay(ReplayArgs),
    /// Compare a candidate run with a base run, phase by phase; exits 1 when
    /// a --max-regression limit is crossed.
    Compare(CompareArgs),
    /// Write a run's windows (per agent), or every raw log record, as JSON
    /// Lines or CSV.
    Export(ExportArgs),
    /// Print the requests one worker of one agent would send (templates
    /// rendered from the seeded generators), without sending anything.
    Preview(PreviewArgs),
    /// Write a synthetic run straight into the log (for replay benchmarks).
    #[command(hide = true)]
    GenerateRun {
        #[arg(long, default_value_t = 100)]
        agents: u32,
        #[arg(long, default_value_t = 3600)]
        seconds: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Long-lived agent pools: bootstrap once, then runs need no SSH.
    Pool {
        #[command(subcommand)]
        command: PoolCmd,
    },
    /// Admit an agent started by something else (Kubernetes, systemd,
    /// cloud-init) to a pool: writes the credentials it needs.
    Enroll {
        /// The pool.
        name: String,
        /// The agent's id (default: enrolled-N).
        #[arg(long)]
        id: Option<String>,
        /// Labels of the agent, like zone=a,tier=big.
        #[arg(long, value_parser = labels, default_value = "")]
        labels: Labels,
        /// host:port the agent dials (default: the pool's --advertise, or
        /// its listen address).
        #[arg(long)]
        advertise: Option<String>,
        /// Write the credentials file here (mode 0600) instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Report on a run, from its log alone.
    Report {
        /// A run id (or a unique prefix of one), or `latest`.
        run: String,
        #[arg(long, default_value = "table")]
        format: Format,
        /// Count warm-up windows in the headline numbers.
        #[arg(long)]
        include_warmup: bool,
    },
}

#[derive(Subcommand)]
enum PoolCmd {
    /// Bootstrap pool agents on hosts (those not running already) and
    /// record the pool; again with the same hosts, it changes nothing.
    Up {
        /// The pool's name.
        name: String,
        /// SSH hosts (`user@host[:port]`), or files listing one per line.
        #[arg(long, num_args = 1.., required = false)]
        hosts: Vec<String>,
        /// Agents per host.
        #[arg(long, default_value_t = 1)]
        per_host: u32,
        /// Labels of these hosts' agents, like zone=a,tier=big.
        #[arg(long, value_parser = labels, default_value = "")]
        labels: Labels,
        /// Private key file for SSH (else ssh-agent, else the default keys).
        #[arg(long)]
        identity: Option<PathBuf>,
        /// known_hosts file (default ~/.ssh/known_hosts).
        #[arg(long)]
        known_hosts: Option<PathBuf>,
        /// Record the host key of hosts not yet in known_hosts.
        #[arg(long)]
        accept_new_host_keys: bool,
        /// The pool's fixed address: every coordinator serving the pool
        /// listens here (default 0.0.0.0:7717; set once, when the pool is made).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// host:port agents dial (default: our address as each host sees it,
        /// with the listen port).
        #[arg(long)]
        advertise: Option<String>,
        /// Where fleetbench keeps its files on the hosts (default ~/.fleetbench).
        #[arg(long)]
        remote_dir: Option<String>,
        /// Agents stop load this long after losing their coordinator (default 5s).
        #[arg(long, value_parser = duration)]
        lease: Option<std::time::Duration>,
        /// The agent binary (default: `agent` beside this binary, or $FLEETBENCH_AGENT).
        #[arg(long)]
        agent_binary: Option<PathBuf>,
    },
    /// Each pool and agent: host, labels, version and binary (STALE when it
    /// is not the local agent's), attached or not, last seen, uptime.
    Ls {
        /// Only this pool.
        name: Option<String>,
        /// How long to wait for agents to dial in.
        #[arg(long, default_value = "3s", value_parser = duration)]
        wait: std::time::Duration,
    },
    /// Replace agents that run another binary than the local agent, host by
    /// host; a host that fails keeps its old agent.
    Upgrade {
        /// The pool's name.
        name: String,
        /// Hosts upgraded at once.
        #[arg(long, default_value_t = pool::UPGRADE_PARALLEL)]
        parallel: usize,
        #[arg(long)]
        agent_binary: Option<PathBuf>,
        #[arg(long)]
        accept_new_host_keys: bool,
    },
    /// Stop the pool's agents, remove fleetbench's files from its hosts, and
    /// forget the pool.
    Down {
        /// The pool's name.
        name: String,
        #[arg(long)]
        accept_new_host_keys: bool,
    },
}

#[derive(Clone)]
struct Labels(std::collections::BTreeMap<String, String>);

fn labels(s: &str) -> Result<Labels, String> {
    pool::parse_labels(s).map(Labels)
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    fleetbench::clock::parse_duration(s)
}

#[derive(clap::Args)]
struct PreviewArgs {
    /// The workload file (TOML).
    workload: PathBuf,
    /// The phase, by name (default: the first).
    #[arg(long)]
    phase: Option<String>,
    /// The agent's index (0 = the first agent of the run).
    #[arg(long, default_value_t = 0)]
    agent: u32,
    /// The worker's index on that agent.
    #[arg(long, default_value_t = 0)]
    worker: u32,
    /// How many iterations.
    #[arg(short = 'n', long, default_value_t = 10)]
    count: u64,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct RunsArgs {
    /// Only runs whose name contains this.
    #[arg(long)]
    name: Option<String>,
    /// Only runs started since then: a duration back from now (1h, "30m
    /// ago") or a time (2026-11-29T19:00:00Z).
    #[arg(long, value_parser = since)]
    since: Option<i64>,
    /// Only runs with this status (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = ["completed", "failed", "aborted", "incomplete", "running"])]
    status: Vec<String>,
}

fn since(s: &str) -> Result<i64, String> {
    fleetbench::clock::parse_since(s, fleetbench::clock::now_us())
}

/// How `run` (and `rerun`) reach agents and print.
#[derive(clap::Args)]
struct RunFlags {
    /// Print the report as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
    /// Address the gRPC server listens on (default 127.0.0.1:0, or
    /// 0.0.0.0:0 when the workload uses SSH hosts).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// host:port agents dial back to (default: the listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// The agent binary to run (default: `agent` beside this binary,
    /// or $FLEETBENCH_AGENT).
    #[arg(long)]
    agent_binary: Option<PathBuf>,
    /// Record the host key of SSH hosts not yet in known_hosts.
    #[arg(long)]
    accept_new_host_keys: bool,
    /// Leave the agents on SSH hosts running after the run.
    #[arg(long)]
    keep_agents: bool,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// A run id (or a unique prefix of one), or `latest`.
    run: String,
    /// Timeline window, a whole number of seconds (like 10s, 1m).
    #[arg(long, value_parser = whole_seconds)]
    window: Option<u32>,
    /// Only windows from this long after the run's start.
    #[arg(long, value_parser = seconds)]
    from: Option<f64>,
    /// Only windows until this long after the run's start.
    #[arg(long, value_parser = seconds)]
    to: Option<f64>,
    /// Only these phases (repeatable).
    #[arg(long = "phase")]
    phases: Vec<String>,
    /// Only these agents (repeatable).
    #[arg(long = "agent")]
    agents: Vec<String>,
    /// Leave these agents out (repeatable).
    #[arg(long = "exclude-agent")]
    exclude_agents: Vec<String>,
    /// Only agents on these hosts (repeatable).
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Only these operations of multi-operation phases (repeatable).
    #[arg(long = "op")]
    ops: Vec<String>,
    /// Count warm-up windows in the headline numbers.
    #[arg(long)]
    include_warmup: bool,
    /// Extra percentiles, like 50,90,99,99.9,99.99.
    #[arg(long, value_delimiter = ',')]
    percentiles: Vec<f64>,
    #[arg(long, default_value = "table")]
    format: Format,
    /// Write to this file instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Show a run in progress live (from another terminal) until it ends.
    #[arg(long, conflicts_with = "speed")]
    follow: bool,
    /// Play the run's timeline back in the live view at this many times its pace.
    #[arg(long)]
    speed: Option<f64>,
}

#[derive(clap::Args)]
struct CompareArgs {
    /// The run to compare against: a run id (or a unique prefix), or `latest`.
    base: String,
    /// The run to judge: a run id (or a unique prefix), or `latest`.
    candidate: String,
    /// Only this phase.
    #[arg(long)]
    phase: Option<String>,
    /// Limits like p99=10%,throughput=5%,error_rate=1%: exit 1 when
    /// throughput is lower by more than 5 %, p99 (p50, p90, p999, max)
    /// higher by more than 10 %, the error rate higher by more than one
    /// percentage point.
    #[arg(long, value_parser = limits)]
    max_regression: Option<Limits>,
    /// table, json, or html (both runs overlaid on the same charts).
    #[arg(long, default_value = "table", value_parser = fleetbench_views::compare::parse_format)]
    format: Format,
}

#[derive(clap::Args)]
struct ExportArgs {
    /// A run id (or a unique prefix of one), or `latest`.
    run: String,
    /// jsonl (one JSON object per line) or csv.
    #[arg(long, default_value = "jsonl")]
    format: ExportFormat,
    /// Every raw log record instead of the windows (jsonl only).
    #[arg(long)]
    events: bool,
    /// Write to this file instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
    Csv,
}

/// `run` and `rerun`: Ctrl-C stops the run gracefully, twice forces.
async fn start_run(
    workload: PathBuf,
    data_dir: PathBuf,
    flags: RunFlags,
    rerun_of: Option<String>,
) -> Result<ExitCode> {
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping the run (Ctrl-C again to force)");
                stop.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        }
    });
    let outcome = run::run(
        run::RunArgs {
            workload,
            data_dir,
            json: flags.json,
            listen: flags.listen,
            advertise: flags.advertise,
            agent_binary: flags.agent_binary,
            accept_new_host_keys: flags.accept_new_host_keys,
            keep_agents: flags.keep_agents,
            rerun_of,
        },
        stop,
    )
    .await?;
    Ok(match outcome {
        run::Outcome::Completed => ExitCode::SUCCESS,
        run::Outcome::Failed => ExitCode::FAILURE,
    })
}

#[derive(Clone)]
struct Limits(Vec<fleetbench_views::compare::Limit>);

fn limits(s: &str) -> Result<Limits, String> {
    fleetbench_views::compare::parse_limits(s).map(Limits)
}

/// Resolves and folds a run: its first record's facts and its report.
async fn load_run(
    data_dir: &std::path::Path,
    which: &str,
) -> Result<(fleetbench_fold::RunInfo, fleetbench_fold::Report)> {
    let id = history::resolve(data_dir, which).map_err(run::BadInput)?;
    let loaded = history::load(data_dir, &id).await?;
    let report = loaded.fold.report(&ReportOptions {
        live: loaded.live,
        ..Default::default()
    });
    let info = loaded.fold.run.clone().unwrap_or_default();
    Ok((info, report))
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coordinator: error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // The reader went away (`export ... | head`): nothing more to say.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coordinator: error: {e:#}");
            if e.downcast_ref::<run::BadInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Run { workload, flags } => start_run(workload, cli.data_dir, flags, None).await,
        Cmd::Rerun { run, flags } => {
            let id = history::resolve(&cli.data_dir, &run).map_err(run::BadInput)?;
            let loaded = history::load(&cli.data_dir, &id).await?;
            let info = loaded.fold.run.clone().unwrap_or_default();
            if info.workload_text.is_empty() {
                return Err(run::BadInput(anyhow::anyhow!(
                    "run {id} recorded no workload text: nothing to run again"
                ))
                .into());
            }
            // The file keeps the original's name: a workload without
            // [run] name is named after its file.
            let stem = std::path::Path::new(&info.workload_path)
                .file_stem()
                .map_or_else(|| "workload".into(), |s| s.to_os_string());
            let dir = cli
                .data_dir
                .join("tmp")
                .join(format!("rerun-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join(stem).with_extension("toml");
            std::fs::write(&path, &info.workload_text)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("rerun of run {id} ({}): {}", info.name, path.display());
            let outcome = start_run(path, cli.data_dir.clone(), flags, Some(id)).await;
            let _ = std::fs::remove_dir_all(&dir);
            outcome
        }
        Cmd::Runs(a) => {
            let ids = log::list_runs(&cli.data_dir)
                .with_context(|| format!("listing runs in {}", cli.data_dir.display()))?;
            println!(
                "{:<36}  {:<20}  {:<20}  {:>9}  {:<10}  {:>10}  {:>8}  phases (req/s, p99)",
                "id", "name", "started", "duration", "status", "requests", "errors"
            );
            for id in ids {
                // A run id is a UUIDv7: its time says, without opening the
                // log, that a run is older than --since (a second of slack:
                // the id is drawn just before the start is taken).
                if let (Some(since), Some(t)) = (a.since, history::id_time_us(&id))
                    && t < since - 1_000_000
                {
                    continue;
                }
                let loaded = match history::load(&cli.data_dir, &id).await {
                    Ok(loaded) => loaded,
                    Err(e) => {
                        if a.name.is_none() && a.since.is_none() && a.status.is_empty() {
                            println!("{id:<36}  (unreadable: {e:#})");
                        }
                        continue;
                    }
                };
                let r = loaded.fold.report(&ReportOptions {
                    live: loaded.live,
                    ..Default::default()
                });
                let started_us = loaded.fold.run.as_ref().map_or(0, |r| r.started_at_us);
                if a.name
                    .as_ref()
                    .is_some_and(|n| !r.name.contains(n.as_str()))
                    || a.since.is_some_and(|s| started_us < s)
                    || (!a.status.is_empty() && !a.status.contains(&r.status))
                {
                    continue;
                }
                let requests: u64 = r.phases.iter().map(|p| p.requests).sum();
                let errors: u64 = r.phases.iter().map(|p| p.error_count()).sum();
                let headline: Vec<String> = r
                    .phases
                    .iter()
                    .map(|p| {
                        format!(
                            "{} {:.1}/s p99 {}",
                            p.name,
                            p.throughput_rps,
                            p.latency_us.as_ref().map_or_else(
                                || "-".to_string(),
                                |l| fleetbench::clock::format_us(l.p99 as f64)
                            )
                        )
                    })
                    .collect();
                println!(
                    "{:<36}  {:<20}  {:<20}  {:>8.1}s  {:<10}  {:>10}  {:>8}  {}",
                    r.run_id,
                    r.name,
                    r.started_at,
                    r.duration_s,
                    r.status,
                    requests,
                    errors,
                    headline.join("; ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::GenerateRun {
            agents,
            seconds,
            seed,
        } => {
            let id = generate::run(&cli.data_dir, agents, seconds, seed).await?;
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay(a) => {
            for p in &a.percentiles {
                if !(0.0..=100.0).contains(p) {
                    return Err(run::BadInput(anyhow::anyhow!(
                        "percentile {p} is not between 0 and 100"
                    ))
                    .into());
                }
            }
            let id = history::resolve(&cli.data_dir, &a.run).map_err(run::BadInput)?;
            let filter = fleetbench_fold::Filter {
                phases: a.phases,
                agents: a.agents,
                exclude_agents: a.exclude_agents,
                hosts: a.hosts,
                ops: a.ops,
            };
            let filtered = !filter.is_empty();
            let (fold, live) = if a.follow {
                replay::follow(&cli.data_dir, &id, filter).await?
            } else if let Some(speed) = a.speed {
                (
                    replay::playback(&cli.data_dir, &id, speed, filter).await?,
                    false,
                )
            } else {
                let loaded = history::load_filtered(&cli.data_dir, &id, filter).await?;
                (loaded.fold, loaded.live)
            };
            let report = fold.report(&ReportOptions {
                include_warmup: a.include_warmup,
                live,
                window_s: a.window,
                from_s: a.from,
                to_s: a.to,
                percentiles: a.percentiles,
                filtered,
            });
            let text = fleetbench_views::report::render(&report, a.format);
            match a.output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Compare(a) => {
            let base = load_run(&cli.data_dir, &a.base).await?;
            let candidate = load_run(&cli.data_dir, &a.candidate).await?;
            if let Some(phase) = &a.phase {
                for (label, (_, report)) in [("base", &base), ("candidate", &candidate)] {
                    if !report.phases.iter().any(|p| &p.name == phase) {
                        let names: Vec<&str> =
                            report.phases.iter().map(|p| p.name.as_str()).collect();
                        return Err(run::BadInput(anyhow::anyhow!(
                            "the {label} run {} has no phase {phase:?} (it has: {})",
                            report.run_id,
                            names.join(", ")
                        ))
                        .into());
                    }
                }
            }
            let limits = a.max_regression.map(|l| l.0).unwrap_or_default();
            let comparison = fleetbench_views::compare::compare(
                &fleetbench_views::compare::Side {
                    run: &base.0,
                    report: &base.1,
                },
                &fleetbench_views::compare::Side {
                    run: &candidate.0,
                    report: &candidate.1,
                },
                a.phase.as_deref(),
                &limits,
            );
            if comparison.phases.is_empty() {
                return Err(run::BadInput(anyhow::anyhow!(
                    "runs {} and {} have no phase name in common: nothing to compare",
                    base.1.run_id,
                    candidate.1.run_id
                ))
                .into());
            }
            let text = match a.format {
                Format::Html => fleetbench_views::html::render_compare(&base.1, &candidate.1),
                format => fleetbench_views::compare::render(&comparison, format),
            };
            print!("{text}");
            Ok(if comparison.regressed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Preview(a) => {
            let (workload, _) = fleetbench_workload::Workload::load(&a.workload)
                .map_err(|e| run::BadInput(e.into()))?;
            let phase = match &a.phase {
                None => &workload.phases[0],
                Some(name) => workload
                    .phases
                    .iter()
                    .find(|p| &p.name == name)
                    .ok_or_else(|| {
                        let names: Vec<&str> =
                            workload.phases.iter().map(|p| p.name.as_str()).collect();
                        run::BadInput(anyhow::anyhow!(
                            "{} has no phase {name:?} (it has: {})",
                            a.workload.display(),
                            names.join(", ")
                        ))
                    })?,
            };
            let agents = workload.agents.count().max(1);
            if a.agent >= agents {
                return Err(run::BadInput(anyhow::anyhow!(
                    "--agent {} is past the workload's {agents} agent(s) (indexes from 0)",
                    a.agent
                ))
                .into());
            }
            let seat = fleetbench_workload::preview::Seat {
                agent: a.agent,
                agents,
                worker: a.worker,
            };
            let mut out = std::io::stdout().lock();
            for r in fleetbench_workload::preview::render(&workload, phase, seat, a.count) {
                let line = if a.json {
                    format!("{}\n", serde_json::to_string(&r).expect("plain data"))
                } else {
                    fleetbench_workload::preview::to_text(&r)
                };
                if std::io::Write::write_all(&mut out, line.as_bytes()).is_err() {
                    break;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Export(a) => {
            if a.events && a.format == ExportFormat::Csv {
                return Err(run::BadInput(anyhow::anyhow!(
                    "--events writes JSON Lines: records have fields of their own kind (use --format jsonl)"
                ))
                .into());
            }
            let id = history::resolve(&cli.data_dir, &a.run).map_err(run::BadInput)?;
            let sink: Box<dyn std::io::Write> = match &a.output {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut out = std::io::BufWriter::new(sink);
            if a.events {
                history::scan(&cli.data_dir, &id, &mut |lsn, rec| {
                    serde_json::to_writer(
                        &mut out,
                        &fleetbench_views::export::record_json(lsn, rec),
                    )?;
                    out.write_all(b"\n")?;
                    Ok(())
                })
                .await?;
            } else {
                let loaded = history::load_into(
                    &cli.data_dir,
                    &id,
                    fleetbench_fold::Fold::new().keeping_agent_windows(),
                )
                .await?;
                let rows = fleetbench_views::export::window_rows(&loaded.fold);
                match a.format {
                    ExportFormat::Jsonl => {
                        fleetbench_views::export::write_rows_jsonl(&rows, &mut out)
                    }
                    ExportFormat::Csv => fleetbench_views::export::write_rows_csv(&rows, &mut out),
                }
                .context("writing the export")?;
            }
            out.flush().context("writing the export")?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Pool { command } => {
            let ok = match command {
                PoolCmd::Up {
                    name,
                    hosts,
                    per_host,
                    labels,
                    identity,
                    known_hosts,
                    accept_new_host_keys,
                    listen,
                    advertise,
                    remote_dir,
                    lease,
                    agent_binary,
                } => {
                    pool::up(
                        &cli.data_dir,
                        pool::UpArgs {
                            name,
                            hosts,
                            per_host,
                            labels: labels.0,
                            identity,
                            known_hosts,
                            accept_new_host_keys,
                            listen,
                            advertise,
                            remote_dir,
                            lease,
                            agent_binary,
                        },
                    )
                    .await?
                }
                PoolCmd::Ls { name, wait } => {
                    pool::ls(&cli.data_dir, name.as_deref(), wait).await?;
                    true
                }
                PoolCmd::Upgrade {
                    name,
                    parallel,
                    agent_binary,
                    accept_new_host_keys,
                } => {
                    pool::upgrade(
                        &cli.data_dir,
                        &name,
                        parallel,
                        agent_binary.as_deref(),
                        accept_new_host_keys,
                    )
                    .await?
                }
                PoolCmd::Down {
                    name,
                    accept_new_host_keys,
                } => pool::down(&cli.data_dir, &name, accept_new_host_keys).await?,
            };
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Enroll {
            name,
            id,
            labels,
            advertise,
            output,
        } => {
            pool::enroll(
                &cli.data_dir,
                pool::EnrollArgs {
                    name,
                    id,
                    labels: labels.0,
                    advertise,
                    output,
                },
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report {
            run,
            format,
            include_warmup,
        } => {
            let id = history::resolve(&cli.data_dir, &run).map_err(run::BadInput)?;
            let loaded = history::load(&cli.data_dir, &id).await?;
            let report = loaded.fold.report(&ReportOptions {
                include_warmup,
                live: loaded.live,
                ..Default::default()
            });
            print!("{}", fleetbench_views::report::render(&report, format));
            Ok(ExitCode::SUCCESS)
        }
    }
}
