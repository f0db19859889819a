//! `agent`: fleetbench's load generator. `agent attach --credentials FILE`
//! reads what the coordinator wrote for it (address, certificate fingerprint,
//! agent id, secret; the file must be 0600, or the agent refuses to start),
//! dials the coordinator over pinned TLS, runs the phases it is told to run,
//! and streams back result windows and host metrics. `agent serve` is a small
//! HTTP target for demos and tests.
//!
//! Credentials that name a pool make a pool agent: it outlives runs, dials
//! forever (at most half a second apart), sends host metrics only while a run
//! holds it, and goes back to waiting when a run releases it (see `link`).
//!
//! Exit codes of `attach`: 0 shut down with every event acked, 1 an error,
//! 3 refused by the coordinator, 4 no coordinator for `--give-up-after`
//! (never, for a pool agent), 130 stopped by a signal.
//!
//! # Layout
//! - this file: the command line, tracing, the runtime and signals; it
//!   hands each subcommand to its module.
//! - `attach`: `agent attach`: credentials, then the parts below side by
//!   side, and the exit code.
//! - `link`: the gRPC stream to the coordinator (pinned TLS, attach, resend,
//!   reconnect, pool mode).
//! - `outbox`: unacked events, in sequence order.
//! - `engine`: the load engine (one phase at a time, threads, windows; the
//!   ops an iteration runs).
//! - `host`: host facts and per-second host metrics.
//! - `serve`: `agent serve`, the built-in HTTP target.
//! - `parent`: dying with the coordinator (local agents, and local
//!   services through the hidden `agent exec-child`).
//!
//! This binary never links sled or SSH: it is shipped to every host.

#![forbid(unsafe_code)]

mod attach;
mod engine;
mod host;
mod link;
mod outbox;
mod parent;
mod serve;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "agent", version, about = "fleetbench load-generating agent")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Dial a coordinator and generate the load it commands.
    Attach(attach::Options),
    /// Serve HTTP: a small target for demos and tests.
    Serve(serve::ServeConfig),
    /// Run COMMAND, and stop it once LEASE_FILE is older than LEASE (how
    /// the coordinator starts a service on an SSH host).
    #[command(hide = true)]
    Supervise {
        /// The file the coordinator touches each time it checks on the
        /// service.
        #[arg(long)]
        lease_file: std::path::PathBuf,
        /// Stop the service when the file is older than this.
        #[arg(long, value_parser = fleetbench::clock::parse_duration)]
        lease: std::time::Duration,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run COMMAND so that it dies with the coordinator PARENT (how the
    /// coordinator starts a local service).
    #[command(hide = true)]
    ExecChild {
        /// The coordinator's pid.
        #[arg(long)]
        parent: i32,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    // Before any thread or runtime: this process becomes the service.
    if let Cmd::ExecChild { parent, command } = &cli.command {
        let err = parent::exec_child(*parent, command).unwrap_err();
        eprintln!("agent: error: {err:#}");
        return ExitCode::from(127);
    }
    if let Cmd::Supervise {
        lease_file,
        lease,
        command,
    } = &cli.command
    {
        return parent::supervise(lease_file, *lease, command).unwrap_or_else(|e| {
            eprintln!("agent: error: {e:#}");
            ExitCode::from(127)
        });
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                wait_for_signal().await;
                stop.cancel();
            }
        });
        match cli.command {
            Cmd::Serve(cfg) => {
                serve::serve(cfg, stop).await?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Attach(opts) => attach::attach(opts, stop).await,
            Cmd::ExecChild { .. } | Cmd::Supervise { .. } => {
                unreachable!("handled before the runtime")
            }
        }
    })
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
