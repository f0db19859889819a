//! `agent attach`: reads the credentials file, then runs the agent's three
//! parts side by side until the link ends: the host-metrics thread (`host`),
//! the load engine (`engine`) and the link to the coordinator (`link`), all
//! pushing into one outbox (`outbox`). How the link ended becomes the exit
//! code (the crate's doc lists them).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleetbench::credentials::Credentials;
use tokio_util::sync::CancellationToken;

use crate::link::LinkEnd;
use crate::{engine, host, link, outbox};

/// `agent attach`'s options (the command line is parsed in `main`).
#[derive(clap::Args)]
pub(crate) struct Options {
    /// The credentials file the coordinator wrote for this agent: its
    /// address, certificate fingerprint, this agent's id and secret. It
    /// must not be accessible by group or others (mode 0600).
    #[arg(long)]
    pub credentials: PathBuf,
    /// Stop generating load after the coordinator has been unreachable
    /// this long (default 15s; 5s for a pool agent).
    #[arg(long, value_parser = fleetbench::clock::parse_duration)]
    pub lease: Option<Duration>,
    /// Exit after failing to reach any coordinator for this long
    /// (a pool agent never gives up).
    #[arg(long, default_value = "2m", value_parser = fleetbench::clock::parse_duration)]
    pub give_up_after: Duration,
    /// Load threads per phase (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Die with this process (the coordinator that started this local
    /// agent), even when it is SIGKILLed.
    #[arg(long, hide = true)]
    pub parent: Option<i32>,
}

/// Runs the agent until the link ends; returns the exit code.
pub(crate) async fn attach(opts: Options, stop: CancellationToken) -> Result<ExitCode> {
    if let Some(parent) = opts.parent {
        crate::parent::die_with(parent)?;
    }
    let creds = read_credentials(&opts.credentials)?;
    let lease = opts.lease.unwrap_or(if creds.pool.is_empty() {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(5)
    });
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
        engine::EngineConfig {
            lease,
            threads: opts.threads,
        },
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
            give_up_after: opts.give_up_after,
            pool,
            ack_trace,
        },
        outbox.clone(),
        link::Engine {
            commands: commands_tx,
            idle: idle_rx,
        },
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
    Ok(exit_code(end, unacked))
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

/// Says how the link ended (on stderr, or in the log for a shutdown) and
/// returns the exit code for it.
fn exit_code(end: LinkEnd, unacked: u64) -> ExitCode {
    match end {
        LinkEnd::Shutdown(reason) => {
            tracing::info!("shut down by the coordinator ({reason}); all events acked");
            ExitCode::SUCCESS
        }
        LinkEnd::Refused(reason) => {
            eprintln!("agent: the coordinator refused this agent: {reason}");
            ExitCode::from(3)
        }
        LinkEnd::GaveUp => {
            eprintln!("agent: no coordinator reachable; exiting with {unacked} unacked event(s)");
            ExitCode::from(4)
        }
        LinkEnd::Cancelled => {
            eprintln!("agent: stopped by signal with {unacked} unacked event(s)");
            ExitCode::from(130)
        }
    }
}
