//! Run control: `coordinator run WORKLOAD.toml` from start to summary.
//!
//! 1. Validate the workload (bad input exits 2 before anything starts).
//! 2. Open the run's log and write its first record (the workload text, the
//!    resolved configuration, versions and the agent binary's hash).
//! 3. Load (or create) the coordinator's TLS identity, serve gRPC over TLS,
//!    start the services, admit each local agent with a fresh secret, write
//!    its credentials file (0600) and start it with only that file's path,
//!    then wait until every agent is attached with a measured clock offset.
//! 4. Per phase: pick a common start instant, log it, send each agent its
//!    share of the load, and wait until every agent says it ended (or the
//!    phase's deadline passes), showing live progress from the fold.
//! 5. Shut the agents down (each exits once all its events are acked), stop
//!    the services, log the run's end and print the summary: the same fold,
//!    so the same numbers and verdict `report` prints later. The exit code
//!    is the verdict's.
//!
//! A run with `[agents] pool = "NAME"` starts no agent: it holds the pool
//! (its `holder` lock), serves the pool's fixed port, admits the pool's
//! agents, waits for `count` of those matching `labels` to dial in (stale
//! ones, on another agent binary, are named and never used), and at the end
//! releases them (Shutdown: a pool agent acks out and goes back to waiting)
//! instead of stopping them.
//!
//! # Layout
//! This file is the lifecycle, step by step. `plan` holds the maths (shares,
//! steps, `until`), `phase` drives one phase, `agents` the run's own agents
//! (local and on SSH hosts), `pool_use` agents taken from a pool, `wait` the
//! waiting on the hub that all of them share.

mod agents;
mod phase;
mod plan;
mod pool_use;
mod wait;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use fleetbench::pb;
use fleetbench_fold::{Report, ReportOptions};
use fleetbench_workload::Workload;
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::agents::Attach;
use crate::agent_binary;
use crate::cli::RunFlags;
use crate::error::BadInput;
use crate::hosts::bootstrap::Timeouts;
use crate::hosts::fleet::Fleet;
use crate::hosts::services;
use crate::hosts::ssh;
use crate::hub::{self, Hub};
use crate::live::LiveView;
use crate::log::{EventLog, run_dir};
use crate::output;
use crate::pool::record::{Holder, Pool};
use crate::reaper::Reaper;
use crate::trust::Trust;

pub(crate) struct RunArgs {
    pub workload: PathBuf,
    pub data_dir: PathBuf,
    /// How to reach agents and print. `listen` defaults to 127.0.0.1:0, or
    /// 0.0.0.0:0 when anything runs on SSH hosts; `keep_agents` leaves the
    /// SSH hosts' agents running after the run.
    pub flags: RunFlags,
    /// The run whose recorded workload text this one runs again (`rerun`).
    pub rerun_of: Option<String>,
}

/// How a run is told to stop (`cmd::run` turns signals into these).
pub(crate) struct Stop {
    /// Winds the run down in order: the phase stopped where it is, agents
    /// and services stopped, the end logged, the summary printed.
    pub graceful: CancellationToken,
    /// No time for that: whoever cancels it has killed the process groups
    /// in `reaper`; the run logs its end if it can, and the process exits.
    pub forced: CancellationToken,
    /// The process groups the run starts on this machine.
    pub reaper: Reaper,
}

/// Runs the workload; the exit code: the verdict's (0 passed, 1 failed, 3
/// invalid, 130 interrupted), 2 when refused for bad input found only now
/// (a service's port already taken), or 1 when the log could not be
/// completed.
pub(crate) async fn run(args: RunArgs, halt: Stop) -> Result<u8> {
    let stop = &halt.graceful;
    let started = std::time::Instant::now();
    // Read on a blocking thread, so that a signal is heard while a read
    // blocks (a FIFO, a hung network mount): nothing has started yet, so
    // the process just ends, interrupted (the stuck thread with it).
    let path = args.workload.clone();
    let loading = tokio::task::spawn_blocking(move || Workload::load(&path));
    let (workload, text) = tokio::select! {
        loaded = loading => loaded.context("reading the workload")?.map_err(|e| BadInput(e.into()))?,
        () = stop.cancelled() => {
            eprintln!(
                "interrupted while reading {} (or a file it names): nothing was started",
                args.workload.display()
            );
            std::process::exit(130);
        }
    };
    let shipped = agent_binary::local(args.flags.agent_binary.as_deref()).await?;
    let trust = Trust::load_or_create(&args.data_dir)?;

    let flags = &args.flags;
    let metrics = crate::metrics::session::prepare(
        flags.metrics_listen,
        flags.metrics_linger,
        flags.remote_write.as_deref(),
        &flags.remote_write_headers,
    )
    .await
    .map_err(BadInput)?;

    let run_id = uuid::Uuid::now_v7().to_string();
    // A pool is held (one run at a time) before anything of the run exists.
    let pool = pool_use::hold(&args.data_dir, &workload, args.flags.listen, &run_id)?;
    let log = open_log(&args, &workload, text, &run_id, &shipped.hash).await?;
    let forced = tokio::spawn(end_when_forced(log.hub.clone(), halt.forced.clone()));
    let metrics = if metrics.is_empty() {
        None
    } else {
        Some(metrics.start(&log.hub.fold)?)
    };
    if let (Some((pool, _)), Some(want)) = (&pool, &workload.agents.pool) {
        pool_use::admit(&log.hub, pool, want, &shipped.hash, &args.data_dir);
    }
    let served = serve(
        &args,
        &workload,
        &log,
        &trust,
        pool.as_ref().map(|(p, _)| p),
    )
    .await?;

    let ssh = ssh_options(&workload, args.flags.accept_new_host_keys);
    let timeouts = Timeouts::default();
    let mut running = Started {
        from_pool: pool.is_some(),
        ..Started::default()
    };
    let result = drive(
        &Drive {
            hub: &log.hub,
            workload: &workload,
            dir: &log.dir,
            attach: Attach {
                advertise: &served.advertise,
                remote_advertise: args.flags.advertise.as_deref(),
                grpc_port: served.port,
                fingerprint: trust.fingerprint(),
                ssh: &ssh,
                timeouts: &timeouts,
                shipped: &shipped,
                reaper: &halt.reaper,
            },
            pool: pool.as_ref().map(|(p, _)| p),
            started,
        },
        &mut running,
        stop,
    )
    .await;

    let ending = wind_down(
        &log.hub,
        running,
        (args.flags.keep_agents, &halt.reaper),
        result,
        stop,
    )
    .await;
    forced.abort();
    let report = close(log, served, pool).await;
    let code = summary(&report, &args.flags, &run_id, ending);
    if let Some(metrics) = metrics {
        metrics.finish().await;
    }
    code
}

/// A forced stop: the process groups are killed already; the run's end is
/// logged (unless it is) with what happened, and the process exits with
/// the interrupted code. The log gets a second to take it.
async fn end_when_forced(hub: Arc<Hub>, forced: CancellationToken) {
    forced.cancelled().await;
    let running = hub.fold.lock().expect("never poisoned").status(true) == "running";
    if running {
        hub.notice(
            "warn",
            "",
            "forced exit (a second signal): local agents and services killed, their unacked results lost; agents on SSH hosts stop loading within their lease",
        )
        .await;
        hub.log(pb::log_record::Record::RunFinished(pb::RunFinished {
            status: "aborted".into(),
            reason: "interrupted".into(),
        }))
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), hub.flush()).await;
    }
    std::process::exit(130);
}

/// The run's log and the hub that writes it.
struct RunLog {
    /// `DATA/runs/<id>`.
    dir: PathBuf,
    hub: Arc<Hub>,
    writer: JoinHandle<()>,
    writer_stop: CancellationToken,
}

/// Makes the run's directory, opens its log and writes the first record
/// (flushed, so the run exists on disk before anything starts).
async fn open_log(
    args: &RunArgs,
    workload: &Workload,
    text: String,
    run_id: &str,
    agent_hash: &str,
) -> Result<RunLog> {
    let dir = run_dir(&args.data_dir, run_id);
    std::fs::create_dir_all(dir.join("agents"))
        .with_context(|| format!("creating run directory {}", dir.display()))?;
    let log = EventLog::open(&args.data_dir, run_id)?;
    let writer_stop = CancellationToken::new();
    let (hub, writer) = Hub::start(run_id.to_string(), log, writer_stop.clone());
    let started_at_us = fleetbench::clock::now_us();
    hub.log(pb::log_record::Record::RunStarted(pb::RunStarted {
        run_id: run_id.to_string(),
        name: workload.name.clone(),
        workload_path: args.workload.display().to_string(),
        workload_text: text,
        resolved_json: workload.resolved_json(),
        coordinator_version: fleetbench::VERSION.into(),
        agent_binary_hash: agent_hash.to_string(),
        started_at_us,
        hostname: hostname(),
        thresholds: workload.thresholds.iter().map(|t| t.to_pb()).collect(),
    }))
    .await;
    if let Some(of) = &args.rerun_of {
        hub.notice(
            "info",
            "",
            format!("rerun of run {of}: the same workload text, byte for byte"),
        )
        .await;
    }
    for warning in insecure_tls(workload) {
        hub.notice("warn", "", warning).await;
    }
    hub.flush().await.map_err(|e| anyhow!(e))?;
    eprintln!(
        "run {run_id} ({}) logging to {}",
        workload.name,
        dir.display()
    );
    Ok(RunLog {
        dir,
        hub,
        writer,
        writer_stop,
    })
}

/// A warning per https op whose `tls.insecure` accepts any certificate.
fn insecure_tls(workload: &Workload) -> Vec<String> {
    let mut warnings = Vec::new();
    for phase in &workload.phases {
        for op in &phase.ops {
            if let fleetbench_workload::OpKind::Http(h) = &op.kind
                && h.tls.as_ref().is_some_and(|t| t.insecure)
            {
                let which = if op.name.is_empty() {
                    String::new()
                } else {
                    format!(", op {:?}", op.name)
                };
                warnings.push(format!(
                    "phase {:?}{which}: tls.insecure = true: {}'s certificate is not checked (anyone on the path could answer for it)",
                    phase.name, h.url
                ));
            }
        }
    }
    warnings
}

/// The gRPC server agents attach to, and how they reach it.
struct Served {
    /// host:port local agents dial (`--advertise`, else `local_dial`).
    advertise: String,
    /// The port we listen on.
    port: u16,
    server: hub::Serving,
    /// `DATA/runs/<id>/coordinator.addr`, for readers of the running log.
    addr_file: PathBuf,
}

/// gRPC over TLS on an already-bound listener (the pool's fixed port for a
/// pool run). Remote agents must reach it, so with SSH hosts it listens on
/// every interface by default.
async fn serve(
    args: &RunArgs,
    workload: &Workload,
    log: &RunLog,
    trust: &Trust,
    pool: Option<&Pool>,
) -> Result<Served> {
    let hub = &log.hub;
    let remote =
        !workload.agents.hosts.is_empty() || workload.services.iter().any(|s| !s.hosts.is_empty());
    let listen = args.flags.listen.unwrap_or_else(|| {
        let ip = if remote {
            std::net::Ipv4Addr::UNSPECIFIED
        } else {
            std::net::Ipv4Addr::LOCALHOST
        };
        SocketAddr::from((ip, 0))
    });
    let listener = match pool {
        Some(pool) => crate::pool::record::bind(&pool.record).await?,
        None => tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the coordinator's gRPC address {listen}"))?,
    };
    let local = listener.local_addr()?;
    // Local agents dial loopback when we listen on every interface.
    let local_dial = if local.ip().is_unspecified() {
        SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, local.port()))
    } else {
        local
    };
    let advertise = args
        .flags
        .advertise
        .clone()
        .unwrap_or_else(|| local_dial.to_string());
    let server = hub::Serving::start(hub.clone(), trust.server_config(), listener);
    let addr_file = log.dir.join("coordinator.addr");
    std::fs::write(&addr_file, local_dial.to_string())
        .with_context(|| format!("writing {}", addr_file.display()))?;
    Ok(Served {
        advertise,
        port: local.port(),
        server,
        addr_file,
    })
}

/// What `drive` works with.
struct Drive<'a> {
    hub: &'a Arc<Hub>,
    workload: &'a Workload,
    /// The run's directory.
    dir: &'a Path,
    attach: Attach<'a>,
    /// The pool the run takes its agents from.
    pool: Option<&'a Pool>,
    /// When `run` started.
    started: std::time::Instant,
}

/// What the run started, stopped at the end whatever happened.
#[derive(Default)]
struct Started {
    services: Vec<services::Running>,
    remote_services: Vec<services::RemoteRunning>,
    local_agents: Vec<(String, Child)>,
    fleet: Option<Fleet>,
    /// The agents come from a pool: released at the end, not stopped.
    from_pool: bool,
}

/// The run proper: services, agents (local, on SSH hosts, from a pool),
/// all attached, then each phase in turn. Some(why) when a threshold with
/// `abort = true` stopped it (the later phases are skipped).
async fn drive(
    d: &Drive<'_>,
    started: &mut Started,
    stop: &CancellationToken,
) -> Result<Option<String>> {
    let (hub, workload, attach) = (d.hub, d.workload, &d.attach);
    services::start(
        hub,
        &workload.services,
        &attach.shipped.path,
        &mut started.services,
        attach.reaper,
    )
    .await?;
    services::start_remote(
        hub,
        &workload.services,
        &services::RemoteContext {
            ssh: attach.ssh,
            remote_dir: &workload.agents.remote_dir,
            agent: attach.shipped,
            timeouts: attach.timeouts,
        },
        &mut started.remote_services,
    )
    .await?;
    let deploying = std::time::Instant::now();

    agents::start_local(
        hub,
        workload.agents.local,
        d.dir,
        attach,
        &mut started.local_agents,
    )?;
    let mut ids: Vec<String> = started
        .local_agents
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    let on_hosts = agents::deploy_hosts(hub, workload, attach, &mut started.fleet).await?;
    ids.extend(on_hosts.load);
    if let (Some(pool), Some(want)) = (d.pool, &workload.agents.pool) {
        ids.extend(pool_use::wait(hub, pool, want, workload.agents.attach_timeout, stop).await?);
    }
    if ids.is_empty() {
        return Err(anyhow!("no agent to run the workload"));
    }
    let everyone: Vec<String> = ids.iter().chain(&on_hosts.metrics).cloned().collect();
    agents::wait_attached(
        hub,
        &everyone,
        &mut started.local_agents,
        d.dir,
        workload.agents.attach_timeout,
        stop,
    )
    .await?;
    let took = deploying.elapsed().as_secs_f64();
    match everyone.len() {
        1 => eprintln!("1 agent attached in {took:.2}s"),
        n => eprintln!("all {n} agents attached in {took:.2}s"),
    }
    if d.pool.is_some() {
        eprintln!(
            "pool agents attached {:.2}s after the run started",
            d.started.elapsed().as_secs_f64()
        );
    }

    let mut live = LiveView::new(workload.phases.len());
    let mut aborted = None;
    for (index, phase) in workload.phases.iter().enumerate() {
        if stop.is_cancelled() {
            break;
        }
        if let Some(dead) = wait::dead_service(hub) {
            skip_phases(hub, &workload.phases[index..], &dead).await;
            break;
        }
        let this = phase::PhaseRun {
            hub,
            index: index as u32,
            phase,
            workload,
            ids: &ids,
        };
        aborted = phase::run(&this, &mut live, stop).await?;
        if aborted.is_some() {
            break;
        }
    }
    live.finish();
    Ok(aborted)
}

/// A service died: the phases still to run are not run, and the log says so.
async fn skip_phases(
    hub: &Hub,
    rest: &[fleetbench_workload::Phase],
    dead: &fleetbench_fold::ServiceReport,
) {
    let names: Vec<&str> = rest.iter().map(|p| p.name.as_str()).collect();
    let why = format!("{}: phase(s) {} not run", dead.death(), names.join(", "));
    eprintln!("error: {why}");
    hub.log(pb::log_record::Record::Notice(pb::CoordinatorNotice {
        level: "error".into(),
        message: why,
        agent_id: String::new(),
    }))
    .await;
}

/// How the run ended.
struct Ending {
    /// Whether the log could be completed.
    flushed: Result<(), String>,
    result: Result<()>,
}

/// Winds down, whatever happened: pool agents released, our agents and
/// services stopped (`keep_agents`: not those on SSH hosts), the log's
/// last record written: "aborted" for an interrupt (even if it cut a step
/// short with an error) or a threshold that stopped the run, "failed"
/// when run control failed or a service died during the run.
async fn wind_down(
    hub: &Arc<Hub>,
    mut started: Started,
    (keep_agents, reaper): (bool, &Reaper),
    result: Result<Option<String>>,
    stop: &CancellationToken,
) -> Ending {
    if started.from_pool {
        pool_use::release(hub).await;
    }
    agents::shutdown(
        hub,
        &mut started.local_agents,
        started.fleet,
        keep_agents,
        reaper,
    )
    .await;
    services::stop_remote(hub, started.remote_services).await;
    services::stop(hub, started.services, Duration::from_secs(5), reaper).await;
    // A service that died during the run fails it, whatever else happened
    // (its "exited" record is durable once the log is flushed).
    let _ = hub.flush().await;
    let mut result = match (result, wait::dead_service(hub)) {
        (Ok(_), Some(dead)) => Err(anyhow!(
            "{}; the results after that do not measure the service",
            dead.death()
        )),
        (result, _) => result,
    };
    if stop.is_cancelled()
        && let Err(e) = &result
    {
        // What the interrupt cut short (waiting for agents, say).
        hub.notice("warn", "", format!("interrupted: {e:#}")).await;
        result = Ok(None);
    }
    let (status, reason) = match (&result, stop.is_cancelled()) {
        (Ok(None), false) => ("completed", String::new()),
        (Ok(_), true) => ("aborted", "interrupted".to_string()),
        (Ok(Some(why)), false) => ("aborted", why.clone()),
        (Err(e), _) => ("failed", format!("{e:#}")),
    };
    hub.log_refusals_left().await;
    hub.log(pb::log_record::Record::RunFinished(pb::RunFinished {
        status: status.into(),
        reason,
    }))
    .await;
    Ending {
        flushed: hub.flush().await,
        result: result.map(|_| ()),
    }
}

/// Closes the log and the server (followers see the end first), notes the
/// pool's agents as seen and lets the pool go; the run's report.
async fn close(log: RunLog, served: Served, pool: Option<(Pool, Holder)>) -> Report {
    log.hub.finish();
    // Let ReadLog followers see the end before the server goes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    served.server.stop().await;
    log.writer_stop.cancel();
    let _ = log.writer.await;
    // The log is closed: seal it, so that readers never open the database.
    // A run left unsealed is still read (from a copy), as incomplete.
    let hub = log.hub.clone();
    match tokio::task::spawn_blocking(move || hub.seal_log()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("warning: {e:#} (the run stays readable from its log)"),
        Err(e) => eprintln!("warning: sealing the run's log: {e}"),
    }
    let _ = std::fs::remove_file(&served.addr_file);
    if let Some((pool, holder)) = pool {
        pool.note_seen(&log.hub.agents());
        drop(holder);
    }
    log.hub
        .fold
        .lock()
        .expect("never poisoned")
        .report(&ReportOptions::default())
}

/// Prints the summary (the same fold `report` reads later), writes the
/// JUnit file if asked, and says the exit code: the verdict's.
fn summary(report: &Report, flags: &RunFlags, run_id: &str, ending: Ending) -> Result<u8> {
    let text = if flags.json {
        fleetbench_views::report::json(report)
    } else {
        fleetbench_views::report::table(report)
    };
    // The run is over and logged: a reader gone away loses only this.
    if let Err(e) = output::print(text)
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: printing the summary: {e}");
    }
    if let Some(path) = &flags.junit {
        crate::cmd::judge::write_junit(path, report)?;
    }
    if let Err(e) = ending.flushed {
        eprintln!("error: the event log could not be completed: {e}");
        return Ok(1);
    }
    if let Err(e) = ending.result {
        eprintln!("error: run {run_id} failed: {e:#}");
        // Refused before any load for what the user must change (a
        // service's port already taken): bad input.
        if e.downcast_ref::<BadInput>().is_some() {
            return Ok(2);
        }
    }
    Ok(report.verdict.exit_code())
}

fn ssh_options(workload: &Workload, accept_new_host_keys: bool) -> ssh::Options {
    ssh::Options {
        identity: workload.agents.identity.as_deref().map(expand_home),
        known_hosts: workload
            .agents
            .known_hosts
            .as_deref()
            .map_or_else(crate::hosts::known_hosts::default_path, expand_home),
        accept_new_host_keys,
        connect_timeout: Duration::from_secs(10),
    }
}

fn expand_home(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => crate::hosts::known_hosts::home().join(rest),
        None => PathBuf::from(path),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
