//! `coordinator`: runs a benchmark across agents and keeps every result.
//!
//! # Layout
//! - `cli`: the command line (clap types); `cmd`: one file per subcommand.
//! - `run`: `coordinator run`, from workload file to summary.
//! - `hub`: the gRPC service agents attach to (TLS only; Hello checked
//!   against the admitted agents and their secrets), and the group-commit
//!   writer between their events and the log.
//! - `trust`: the coordinator's TLS identity in `DATA/tls/`, agent secrets,
//!   private (0600) files.
//! - `log`: the append-only sled event log, one database per run; reading
//!   runs back (directly, or through a running coordinator), replay, and the
//!   hidden generate-run.
//! - `hosts`: SSH to plain Linux hosts: known_hosts, bootstrap of one host,
//!   the fleet in parallel, `[[service]]` processes around a run.
//! - `live`: the live progress line.
//! - `output`: what commands print on stdout, without panicking when the
//!   reader has gone.
//! - `reaper`: the process groups a run starts here, for a forced exit.
//! - `pool`: long-lived agent pools (`pool up|ls|upgrade|down`, `enroll`).
//! - `agent_binary`, `agent_id`: the agent binary we ship, and how the
//!   agents we start are named.
//!
//! Reading runs again (`runs`, `report`, `replay`, `compare`, `export`,
//! `rerun`) is a fold over the log through `log::history`; the numbers and
//! their rendering live in the library crates (`fleetbench_fold`,
//! `fleetbench_views`).
//!
//! Exit codes: `run` and `rerun` exit with the run's verdict: 0 passed, 1
//! failed (a threshold crossed, every request of a phase failed, run
//! control failed), 3 invalid (numbers not to be trusted: an agent lost, the
//! schedule not kept, a service died during the run, the log not whole), 130
//! interrupted (SIGINT or SIGTERM; `cmd::run`); `report` and `replay` do so
//! with `--check` (else 0). `compare` exits 1 when it found a regression
//! past a limit. 2 is bad input (a workload file that does not validate, a
//! missing binary, an unknown run, phase, metric or threshold, a service's
//! port already held by another process); 4 is a damaged log (a reader
//! found a record that does not check out: `log::sealed`; `verify` exits 4
//! when any run it checked is damaged); any other error exits 1. A
//! command whose stdout reader went away exits as if it had printed it all
//! (see `output`).

#![forbid(unsafe_code)]

mod agent_binary;
mod agent_id;
mod cli;
mod cmd;
mod error;
mod hosts;
mod hub;
mod live;
mod log;
mod metrics;
mod output;
mod pool;
mod reaper;
mod run;
mod trust;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Cmd};
use crate::error::BadInput;
use crate::log::history::Damaged;

/// The command line. `--version` says the version, the git commit and
/// the agent binary this coordinator would ship, with its hash (measured
/// only when asked: the binary is tens of MB).
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    if std::env::args().any(|a| a == "--version" || a == "-V") {
        let agent = agent_binary::find(None)
            .ok()
            .and_then(|p| fleetbench::binary::file_hash(&p).ok().map(|h| (p, h)))
            .map_or_else(
                || "agent binary: not found beside this one (set $FLEETBENCH_AGENT)".to_string(),
                |(p, h)| format!("agent binary: {} (sha256 {h})", p.display()),
            );
        let version = format!(
            "{} (commit {})\n{agent}",
            fleetbench::VERSION,
            env!("FLEETBENCH_COMMIT")
        );
        command = command.version(&*Box::leak(version.into_boxed_str()));
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = parse_cli();
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
        // The reader went away (`runs | head`): nothing more to say.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coordinator: error: {e:#}");
            if e.downcast_ref::<BadInput>().is_some() {
                ExitCode::from(2)
            } else if e.downcast_ref::<Damaged>().is_some() {
                ExitCode::from(4)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs the subcommand.
async fn run(cli: Cli) -> Result<ExitCode> {
    let data = cli.data_dir.as_path();
    match cli.command {
        Cmd::Run(a) => cmd::run::run(data, a).await,
        Cmd::Rerun(a) => cmd::run::rerun(data, a).await,
        Cmd::Runs(a) => cmd::runs::runs(data, a).await,
        Cmd::Replay(a) => cmd::replay::replay(data, a).await,
        Cmd::Compare(a) => cmd::compare::compare(data, a).await,
        Cmd::Export(a) => cmd::export::export(data, a).await,
        Cmd::Preview(a) => cmd::preview::preview(a),
        Cmd::GenerateRun(a) => cmd::generate::generate_run(data, a).await,
        Cmd::Pool { command } => cmd::pool::pool(data, command).await,
        Cmd::Enroll(a) => cmd::enroll::enroll(data, a).await,
        Cmd::Report(a) => cmd::report::report(data, a).await,
        Cmd::Verify(a) => cmd::verify::verify(data, a).await,
    }
}
