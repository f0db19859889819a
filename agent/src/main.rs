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
//! - `link`: the gRPC stream to the coordinator (pinned TLS, attach, resend,
//!   reconnect).
//! - `outbox`: unacked events, in sequence order.
//! - `load`: the load engine (one phase at a time, threads, windows).
//! - `host`: host facts and per-second host metrics.
//! - `serve`: the built-in HTTP target.
//!
//! This binary never links sled or SSH: it is shipped to every host.

#![forbid(unsafe_code)]

mod engine;
mod host;
mod link;
mod outbox;
mod serve;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use fleetbench::credentials::Credentials;
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
                let body = bytes::Bytes::from(
                    "fleetbench\n".repeat(body_size / 11 + 1)[..body_size].to_string(),
                );
                serve::serve(
                    serve::ServeConfig {
                        listen,
                        delay,
                        stall,
                        body,
                        echo_listen,
                        record,
                    },
                    stop,
                )
                .await?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Attach {
                credentials,
                lease,
                give_up_after,
                threads,
            } => {
                let creds = read_credentials(&credentials)?;
                let lease = lease.unwrap_or(if creds.pool.is_empty() {
                    Duration::from_secs(15)
                } else {
                    Duration::from_secs(5)
                });
                attach(creds, lease, give_up_after, threads, stop).await
            }
        }
    })
}

/// Reads the credentials file, refusing one that group or others could read
/// or change (as ssh refuses such a private key).
fn read_credentials(path: &Path) -> Result<Credentials> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading credentials file {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "credentials file {} is accessible by group or others (mode {:o}): it holds this agent's secret; chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(Credentials::read(path)?)
}

async fn attach(
    creds: Credentials,
    lease: Duration,
    give_up_after: Duration,
    threads: usize,
    stop: CancellationToken,
) -> Result<ExitCode> {
    let started_at_us = fleetbench::clock::now_us();
    let mut hello = tokio::task::spawn_blocking(host::facts)
        .await
        .context("reading host facts")?;
    let ack_trace = std::env::var_os("FLEETBENCH_ACK_TRACE")
        .map(|dir| std::path::PathBuf::from(dir).join(&creds.agent_id));
    hello.agent_id = creds.agent_id;
    hello.run_id = creds.run_id;
    hello.secret = creds.secret;
    hello.started_at_us = started_at_us;
    let pool = !creds.pool.is_empty();
    hello.pool = creds.pool;
    let dialer = fleetbench::tls::Dialer::new(&creds.fingerprint)
        .context("the certificate fingerprint in the credentials file")?;
    let outbox = Arc::new(outbox::Outbox::new(outbox::DEFAULT_CAPACITY));

    let (commands_tx, commands_rx) = tokio::sync::mpsc::channel(16);
    let (connected_tx, connected_rx) = tokio::sync::watch::channel(false);
    let metrics_stop = stop.child_token();
    let metrics = std::thread::Builder::new()
        .name("host-metrics".into())
        .spawn({
            let (outbox, stop) = (outbox.clone(), metrics_stop.clone());
            // A pool agent samples only while a run holds it: idle, it
            // queues nothing and does next to nothing.
            let active = pool.then(|| connected_rx.clone());
            move || host::sample_metrics(outbox, Duration::from_secs(1), active, stop)
        })
        .context("starting the host-metrics thread")?;

    let (idle_tx, idle_rx) = tokio::sync::watch::channel(true);
    let engine_stop = stop.child_token();
    let engine = tokio::spawn(engine::run(
        engine::EngineConfig { lease, threads },
        commands_rx,
        outbox.clone(),
        connected_rx,
        idle_tx,
        engine_stop.clone(),
    ));

    let end = link::run(
        link::LinkConfig {
            coordinator: creds.coordinator,
            dialer,
            hello,
            give_up_after,
            pool,
            ack_trace,
        },
        outbox.clone(),
        commands_tx,
        link::EngineState { idle: idle_rx },
        connected_tx,
        stop.clone(),
    )
    .await;

    engine_stop.cancel();
    let _ = engine.await;
    metrics_stop.cancel();
    let _ = tokio::task::spawn_blocking(move || metrics.join()).await;
    let (low, high) = outbox.bounds();
    let unacked = if high == 0 { 0 } else { high - low + 1 };
    match end {
        link::LinkEnd::Shutdown(reason) => {
            tracing::info!("shut down by the coordinator ({reason}); all events acked");
            Ok(ExitCode::SUCCESS)
        }
        link::LinkEnd::Refused(reason) => {
            eprintln!("agent: the coordinator refused this agent: {reason}");
            Ok(ExitCode::from(3))
        }
        link::LinkEnd::GaveUp => {
            eprintln!("agent: no coordinator reachable; exiting with {unacked} unacked event(s)");
            Ok(ExitCode::from(4))
        }
        link::LinkEnd::Cancelled => {
            eprintln!("agent: stopped by signal with {unacked} unacked event(s)");
            Ok(ExitCode::from(130))
        }
    }
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
