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
//!
//! This binary never links sled or SSH: it is shipped to every host.

#![forbid(unsafe_code)]

mod attach;
mod engine;
mod host;
mod link;
mod outbox;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    Attach {
        /// The credentials file the coordinator wrote for this agent: its
        /// address, certificate fingerprint, this agent's id and secret. It
        /// must not be accessible by group or others (mode 0600).
        #[arg(long)]
        credentials: PathBuf,
        /// Stop generating load after the coordinator has been unreachable
        /// this long (default 15s; 5s for a pool agent).
        #[arg(long, value_parser = duration)]
        lease: Option<Duration>,
        /// Exit after failing to reach any coordinator for this long
        /// (a pool agent never gives up).
        #[arg(long, default_value = "2m", value_parser = duration)]
        give_up_after: Duration,
        /// Load threads per phase (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Serve HTTP: a small target for demos and tests.
    Serve {
        /// Address to listen on, like 127.0.0.1:18080 (port 0 picks one).
        #[arg(long)]
        listen: SocketAddr,
        /// Delay every response by this long.
        #[arg(long, default_value = "0s", value_parser = duration)]
        delay: Duration,
        /// Freeze for FOR out of every EVERY, like 3s:1s.
        #[arg(long)]
        stall: Option<serve::Stall>,
        /// Size of the response body in bytes.
        #[arg(long, default_value_t = 100)]
        body_size: usize,
        /// Also serve a line echo over TCP on this address (each line sent
        /// is answered with itself; counted in the stats as `echoed`).
        #[arg(long)]
        echo_listen: Option<SocketAddr>,
        /// Write every request's method and path (in arrival order) to this
        /// file on exit (for tests; keeps them all in memory).
        #[arg(long)]
        record: Option<std::path::PathBuf>,
    },
}

fn duration(s: &str) -> Result<Duration, String> {
    fleetbench::clock::parse_duration(s)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
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
            Cmd::Serve {
                listen,
                delay,
                stall,
                body_size,
                echo_listen,
                record,
            } => {
                let cfg = serve::ServeConfig {
                    listen,
                    delay,
                    stall,
                    body_size,
                    echo_listen,
                    record,
                };
                serve::serve(cfg, stop).await?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Attach {
                credentials,
                lease,
                give_up_after,
                threads,
            } => {
                let opts = attach::Options {
                    credentials,
                    lease,
                    give_up_after,
                    threads,
                };
                attach::attach(opts, stop).await
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
