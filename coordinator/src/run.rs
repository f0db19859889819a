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
//!    so the same numbers `report` prints later.
//!
//! A run with `[agents] pool = "NAME"` starts no agent: it holds the pool
//! (its `holder` lock), serves the pool's fixed port, admits the pool's
//! agents, waits for `count` of those matching `labels` to dial in (stale
//! ones, on another agent binary, are named and never used), and at the end
//! releases them (Shutdown: a pool agent acks out and goes back to waiting)
//! instead of stopping them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use fleetbench::credentials::Credentials;
use fleetbench::pb;
use fleetbench::pb::coordinator_message::Msg;
use fleetbench_fold::ReportOptions;
use fleetbench_workload::{Load, Phase, Split, Until, Workload};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use crate::hosts::bootstrap::{AgentBinary, HostJob, Timeouts};
use crate::hosts::fleet::Fleet;
use crate::hosts::services;
use crate::hosts::ssh;
use crate::hub::{self, Hub};
use crate::live::LiveView;
use crate::log::{EventLog, run_dir};
use crate::trust::{self, Trust};

pub(crate) struct RunArgs {
    pub workload: PathBuf,
    pub data_dir: PathBuf,
    pub json: bool,
    /// Default: 127.0.0.1:0, or 0.0.0.0:0 when anything runs on SSH hosts.
    pub listen: Option<std::net::SocketAddr>,
    pub advertise: Option<String>,
    pub agent_binary: Option<PathBuf>,
    pub accept_new_host_keys: bool,
    /// Leave the SSH hosts' agents running after the run.
    pub keep_agents: bool,
    /// The run whose recorded workload text this one runs again (`rerun`).
    pub rerun_of: Option<String>,
}

/// How a run ended, for the exit code.
pub(crate) enum Outcome {
    Completed,
    Failed,
}

/// Input errors (exit 2) are distinguished from run failures (exit 1).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct BadInput(#[from] pub anyhow::Error);

/// How long after a phase's planned end to wait for agents to report it ended.
const PHASE_GRACE: Duration = Duration::from_secs(15);
/// Lead time between scheduling a phase and its start.
const START_LEAD: Duration = Duration::from_millis(300);

pub(crate) async fn run(args: RunArgs, stop: CancellationToken) -> Result<Outcome> {
    let started = std::time::Instant::now();
    let (workload, text) = Workload::load(&args.workload).map_err(|e| BadInput(e.into()))?;
    let agent_binary = find_agent_binary(args.agent_binary.as_deref()).map_err(BadInput)?;
    let agent_hash = {
        let path = agent_binary.clone();
        tokio::task::spawn_blocking(move || fleetbench::binary::file_hash(&path))
            .await?
            .with_context(|| format!("hashing agent binary {}", agent_binary.display()))?
    };
    let trust = Trust::load_or_create(&args.data_dir).with_context(|| {
        format!(
            "loading the coordinator's TLS identity from {}",
            args.data_dir.join("tls").display()
        )
    })?;

    let run_id = uuid::Uuid::now_v7().to_string();
    // A pool is held (one run at a time) before anything of the run exists.
    let pool = match &workload.agents.pool {
        Some(want) => {
            let pool = crate::pool::Pool::load(&args.data_dir, &want.name).map_err(BadInput)?;
            if let Some(l) = args.listen
                && l != pool.record.listen
            {
                return Err(BadInput(anyhow!(
                    "pool {} is served on its own address {}, not --listen {l}",
                    want.name,
                    pool.record.listen
                ))
                .into());
            }
            let holder = pool.hold(&format!("run {run_id}"))?;
            Some((pool, holder))
        }
        None => None,
    };
    let dir = run_dir(&args.data_dir, &run_id);
    std::fs::create_dir_all(dir.join("agents"))
        .with_context(|| format!("creating run directory {}", dir.display()))?;
    let log = EventLog::open(&args.data_dir, &run_id)?;
    let writer_stop = CancellationToken::new();
    let (hub, writer) = Hub::start(run_id.clone(), log, writer_stop.clone());
    let started_at_us = fleetbench::clock::now_us();
    hub.log(pb::log_record::Record::RunStarted(pb::RunStarted {
        run_id: run_id.clone(),
        name: workload.name.clone(),
        workload_path: args.workload.display().to_string(),
        workload_text: text,
        resolved_json: workload.resolved_json(),
        coordinator_version: fleetbench::VERSION.into(),
        agent_binary_hash: agent_hash.clone(),
        started_at_us,
        hostname: hostname(),
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
    hub.flush().await.map_err(|e| anyhow!(e))?;
    eprintln!(
        "run {run_id} ({}) logging to {}",
        workload.name,
        dir.display()
    );

    // gRPC over TLS on an already-bound listener. Remote agents must reach
    // it, so with SSH hosts it listens on every interface by default.
    let remote =
        !workload.agents.hosts.is_empty() || workload.services.iter().any(|s| !s.hosts.is_empty());
    let listen = args.listen.unwrap_or_else(|| {
        let ip = if remote {
            std::net::Ipv4Addr::UNSPECIFIED
        } else {
            std::net::Ipv4Addr::LOCALHOST
        };
        std::net::SocketAddr::from((ip, 0))
    });
    let listener = match &pool {
        Some((pool, _)) => crate::pool::bind(&pool.record).await?,
        None => tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the coordinator's gRPC address {listen}"))?,
    };
    if let (Some((pool, _)), Some(want)) = (&pool, &workload.agents.pool) {
        for (id, secret) in &pool.secrets {
            hub.admit_pool(id.clone(), secret.clone());
        }
        hub.expect_binary(&agent_hash);
        hub.accept_late(&args.data_dir);
        let others: Vec<String> = pool
            .record
            .agents
            .iter()
            .filter(|m| !pool.matching(&want.labels).contains(m))
            .map(|m| m.id.clone())
            .collect();
        hub.bench(&others);
    }
    let local = listener.local_addr()?;
    // Local agents dial loopback when we listen on every interface.
    let local_dial = if local.ip().is_unspecified() {
        std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, local.port()))
    } else {
        local
    };
    let advertise = args
        .advertise
        .clone()
        .unwrap_or_else(|| local_dial.to_string());
    let server = hub::Serving::start(hub.clone(), trust.server_config(), listener);
    let addr_file = dir.join("coordinator.addr");
    std::fs::write(&addr_file, local_dial.to_string())
        .with_context(|| format!("writing {}", addr_file.display()))?;

    let shipped = AgentBinary {
        size: std::fs::metadata(&agent_binary)
            .with_context(|| format!("reading {}", agent_binary.display()))?
            .len(),
        path: agent_binary.clone(),
        hash: agent_hash.clone(),
        arch: std::env::consts::ARCH.to_string(),
    };
    let ssh = ssh_options(&workload, args.accept_new_host_keys);
    let mut running_services = Vec::new();
    let mut agents: Vec<(String, Child)> = Vec::new();
    let mut remote_parts = Remote {
        pool: pool.is_some(),
        ..Remote::default()
    };
    let result = drive(
        &hub,
        &workload,
        &dir,
        &shipped,
        &Attach {
            advertise: &advertise,
            remote_advertise: args.advertise.as_deref(),
            grpc_port: local.port(),
            fingerprint: trust.fingerprint(),
            ssh: &ssh,
            pool: pool.as_ref().map(|(p, _)| p),
            started,
        },
        &mut running_services,
        &mut agents,
        &mut remote_parts,
        &stop,
    )
    .await;

    // Wind down, whatever happened: agents, services, the log's last record.
    shutdown_agents(&hub, &mut agents, &mut remote_parts, args.keep_agents).await;
    services::stop_remote(&hub, std::mem::take(&mut remote_parts.services)).await;
    services::stop(&hub, running_services, Duration::from_secs(5)).await;
    let (status, reason) = match (&result, stop.is_cancelled()) {
        (Ok(()), false) => ("completed", String::new()),
        (Ok(()), true) => ("aborted", "interrupted".to_string()),
        (Err(e), _) => ("failed", format!("{e:#}")),
    };
    hub.log(pb::log_record::Record::RunFinished(pb::RunFinished {
        status: status.into(),
        reason: reason.clone(),
    }))
    .await;
    let flushed = hub.flush().await;
    hub.finish();
    // Let ReadLog followers see the end before the server goes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.stop().await;
    writer_stop.cancel();
    let _ = writer.await;
    let _ = std::fs::remove_file(&addr_file);
    if let Some((pool, holder)) = pool {
        pool.note_seen(&hub.agents());
        drop(holder);
    }

    let report = hub
        .fold
        .lock()
        .expect("never poisoned")
        .report(&ReportOptions::default());
    if args.json {
        print!("{}", fleetbench_views::report::json(&report));
    } else {
        print!("{}", fleetbench_views::report::table(&report));
    }
    if let Err(e) = flushed {
        eprintln!("error: the event log could not be completed: {e}");
        return Ok(Outcome::Failed);
    }
    match result {
        Ok(()) if status == "completed" => Ok(Outcome::Completed),
        Ok(()) => Ok(Outcome::Failed),
        Err(e) => {
            eprintln!("error: run {run_id} failed: {e:#}");
            Ok(Outcome::Failed)
        }
    }
}

/// What agents need to reach this coordinator, and how to reach hosts.
struct Attach<'a> {
    /// host:port local agents dial.
    advertise: &'a str,
    /// host:port remote agents dial (`--advertise`); None: the address of
    /// our SSH connection to each host, with `grpc_port`.
    remote_advertise: Option<&'a str>,
    grpc_port: u16,
    /// Of the coordinator's certificate.
    fingerprint: &'a str,
    ssh: &'a ssh::Options,
    /// The pool the run takes its agents from.
    pool: Option<&'a crate::pool::Pool>,
    /// When `run` started.
    started: std::time::Instant,
}

/// What runs on SSH hosts for this run.
#[derive(Default)]
struct Remote {
    services: Vec<services::RemoteRunning>,
    fleet: Option<Fleet>,
    /// The agents come from a pool: released at the end, not stopped.
    pool: bool,
}

pub(crate) fn expand_home(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => crate::hosts::known_hosts::home().join(rest),
        None => PathBuf::from(path),
    }
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

/// The id of agent `i` on `host`: `user@host#i`, or `user@host:port#i`
/// off port 22 (unique per host entry; `#` and `@` never occur in local ids).
pub(crate) fn remote_agent_id(host: &ssh::Target, i: u32) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_:".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let (user, name) = (clean(&host.user), clean(&host.host));
    if host.port == 22 {
        format!("{user}@{name}#{i}")
    } else {
        format!("{user}@{name}:{}#{i}", host.port)
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    hub: &Arc<Hub>,
    workload: &Workload,
    dir: &Path,
    shipped: &AgentBinary,
    attach: &Attach<'_>,
    running_services: &mut Vec<services::Running>,
    agents: &mut Vec<(String, Child)>,
    remote: &mut Remote,
    stop: &CancellationToken,
) -> Result<()> {
    let agent_binary = shipped.path.as_path();
    let timeouts = Timeouts::default();
    services::start(hub, &workload.services, agent_binary, running_services).await?;
    services::start_remote(
        hub,
        &workload.services,
        &services::RemoteContext {
            ssh: attach.ssh,
            remote_dir: &workload.agents.remote_dir,
            agent: shipped,
            timeouts: &timeouts,
        },
        &mut remote.services,
    )
    .await?;
    let deploying = std::time::Instant::now();

    for i in 1..=workload.agents.local {
        let id = format!("local-{i}");
        let log_path = dir.join("agents").join(format!("{id}.log"));
        let log_file = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let secret = trust::new_secret()?;
        let creds_path = dir.join("agents").join(format!("{id}.creds"));
        let creds = Credentials {
            coordinator: attach.advertise.to_string(),
            fingerprint: attach.fingerprint.to_string(),
            agent_id: id.clone(),
            secret: secret.clone(),
            run_id: hub.run_id().to_string(),
            pool: String::new(),
        };
        trust::write_private(&creds_path, &creds.to_json())
            .with_context(|| format!("writing the credentials of local agent {id}"))?;
        hub.admit(&id, secret);
        // Only the file's path is in argv: the process list is public.
        let child = tokio::process::Command::new(agent_binary)
            .arg("attach")
            .arg("--credentials")
            .arg(&creds_path)
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting local agent {id} ({})", agent_binary.display()))?;
        agents.push((id, child));
    }
    let mut ids: Vec<String> = agents.iter().map(|(id, _)| id.clone()).collect();

    // Service hosts that run no load agent get a metrics-only agent (it is
    // never given load), so the report shows their CPU, memory and network.
    let mut metrics_hosts: Vec<ssh::Target> = Vec::new();
    for s in &workload.services {
        for h in &s.hosts {
            if !workload.agents.hosts.contains(h) && !metrics_hosts.contains(h) {
                metrics_hosts.push(h.clone());
            }
        }
    }
    let mut metrics_ids = Vec::new();
    if !workload.agents.hosts.is_empty() || !metrics_hosts.is_empty() {
        let mut jobs = Vec::new();
        let mut job = |host: &ssh::Target, ids: Vec<String>| -> Result<()> {
            let mut host_agents = Vec::new();
            for id in ids {
                let secret = trust::new_secret()?;
                hub.admit(&id, secret.clone());
                host_agents.push((id, secret));
            }
            jobs.push(HostJob {
                target: host.clone(),
                ssh: attach.ssh.clone(),
                remote_dir: workload.agents.remote_dir.clone(),
                agents: host_agents,
                run_id: hub.run_id().to_string(),
                fingerprint: attach.fingerprint.to_string(),
                advertise: attach.remote_advertise.map(str::to_string),
                grpc_port: attach.grpc_port,
                timeouts: timeouts.clone(),
            });
            Ok(())
        };
        for host in &workload.agents.hosts {
            job(
                host,
                (1..=workload.agents.per_host)
                    .map(|i| remote_agent_id(host, i))
                    .collect(),
            )?;
        }
        for host in &metrics_hosts {
            job(host, vec![format!("metrics:{}", remote_agent_id(host, 1))])?;
        }
        let fleet = Fleet::deploy(jobs, shipped).await;
        for f in &fleet.failures {
            hub.notice("error", "", f.to_string()).await;
        }
        for d in &fleet.deployed {
            let agent_ids = d.agents.iter().map(|(id, _)| id.clone());
            if metrics_hosts.contains(&d.target) {
                metrics_ids.extend(agent_ids);
            } else {
                ids.extend(agent_ids);
            }
        }
        let load_hosts = |targets: Vec<&ssh::Target>| {
            targets
                .into_iter()
                .filter(|t| workload.agents.hosts.contains(t))
                .count()
        };
        let up = load_hosts(fleet.deployed.iter().map(|d| &d.target).collect());
        let wanted = workload.agents.hosts.len();
        let failures: Vec<String> = fleet.failures.iter().map(|f| format!("  {f}")).collect();
        remote.fleet = Some(fleet);
        if up < workload.agents.min_hosts {
            return Err(anyhow!(
                "{} of {wanted} host(s) failed to bootstrap and min_hosts is {}:\n{}",
                wanted - up,
                workload.agents.min_hosts,
                failures.join("\n")
            ));
        }
        if up < wanted {
            eprintln!(
                "going on with {up} of {wanted} hosts (min_hosts = {})",
                workload.agents.min_hosts
            );
        }
    }
    if let (Some(pool), Some(want)) = (attach.pool, &workload.agents.pool) {
        ids.extend(wait_pool(hub, pool, want, workload.agents.attach_timeout, stop).await?);
    }
    if ids.is_empty() {
        return Err(anyhow!("no agent to run the workload"));
    }
    let everyone: Vec<String> = ids.iter().chain(&metrics_ids).cloned().collect();
    wait_attached(
        hub,
        &everyone,
        agents,
        dir,
        workload.agents.attach_timeout,
        stop,
    )
    .await?;
    eprintln!(
        "all {} agents attached in {:.2}s",
        everyone.len(),
        deploying.elapsed().as_secs_f64()
    );
    if attach.pool.is_some() {
        eprintln!(
            "pool agents attached {:.2}s after the run started",
            attach.started.elapsed().as_secs_f64()
        );
    }

    let mut live = LiveView::new(workload.phases.len());
    for (index, phase) in workload.phases.iter().enumerate() {
        if stop.is_cancelled() {
            break;
        }
        run_phase(hub, index as u32, phase, workload, &ids, &mut live, stop).await?;
    }
    live.finish();
    Ok(())
}

async fn wait_attached(
    hub: &Arc<Hub>,
    ids: &[String],
    children: &mut [(String, Child)],
    dir: &Path,
    timeout: Duration,
    stop: &CancellationToken,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        check_log(hub)?;
        let states = hub.agents();
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !states.get(*id).is_some_and(|s| s.connected && s.synced))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // An agent process that died will never attach: say so now.
        for (id, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = dir.join("agents").join(format!("{id}.log"));
                return Err(anyhow!(
                    "local agent {id} exited ({status}) before attaching; last lines of {}:\n{}",
                    log.display(),
                    tail(&log, 10)
                ));
            }
        }
        if tokio::time::Instant::now() >= deadline || stop.is_cancelled() {
            let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(anyhow!(
                "agents did not attach within {:.0}s: {} (their logs are in {})",
                timeout.as_secs_f64(),
                names.join(", "),
                dir.join("agents").display()
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), hub.changed.notified()).await;
    }
}

/// Waits until `count` agents of the pool that match the labels are
/// attached (every matching one without `count`), takes them, and benches
/// the others; fails at `timeout` naming who is missing and who is stale.
async fn wait_pool(
    hub: &Arc<Hub>,
    pool: &crate::pool::Pool,
    want: &fleetbench_workload::PoolUse,
    timeout: Duration,
    stop: &CancellationToken,
) -> Result<Vec<String>> {
    let name = pool.name();
    let candidates: Vec<&crate::pool::Member> = pool.matching(&want.labels);
    let labels: Vec<String> = want
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let which = if labels.is_empty() {
        String::new()
    } else {
        format!(" with labels {}", labels.join(","))
    };
    let need = want.count.map_or(candidates.len(), |c| c as usize);
    if candidates.is_empty() || need > candidates.len() {
        return Err(anyhow!(
            "pool {name} has {} agent(s){which}, and the workload asks for {need}",
            candidates.len()
        ));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut told_stale = std::collections::BTreeSet::new();
    loop {
        check_log(hub)?;
        let states = hub.agents();
        let stale = hub.stale();
        for m in &candidates {
            if let Some(s) = stale.get(&m.id)
                && told_stale.insert(m.id.clone())
            {
                let message = format!(
                    "pool {name}: agent {} is stale (it runs agent binary {}, this run ships {}): not used; `coordinator pool upgrade {name}` replaces it",
                    m.id,
                    crate::hub::short(&s.hello.binary_hash),
                    crate::hub::short(&pool_hash(hub))
                );
                eprintln!("{message}");
                hub.notice("warn", &m.id, message).await;
            }
        }
        let attached: Vec<String> = candidates
            .iter()
            .filter(|m| states.get(&m.id).is_some_and(|s| s.connected && s.synced))
            .map(|m| m.id.clone())
            .collect();
        if attached.len() >= need {
            let chosen: Vec<String> = attached[..need].to_vec();
            let others: Vec<String> = pool
                .record
                .agents
                .iter()
                .map(|m| m.id.clone())
                .filter(|id| !chosen.contains(id))
                .collect();
            hub.bench(&others);
            return Ok(chosen);
        }
        if tokio::time::Instant::now() >= deadline || stop.is_cancelled() {
            let missing: Vec<String> = candidates
                .iter()
                .filter(|m| !attached.contains(&m.id))
                .map(|m| {
                    let host = m.host.as_deref().unwrap_or("enrolled");
                    match stale.get(&m.id) {
                        Some(s) => format!(
                            "{} ({host}; stale: runs agent binary {})",
                            m.id,
                            crate::hub::short(&s.hello.binary_hash)
                        ),
                        None => format!("{} ({host})", m.id),
                    }
                })
                .collect();
            return Err(anyhow!(
                "pool {name}: {} of the {need} agent(s){which} the run needs attached within {:.0}s; not attached: {}",
                attached.len(),
                timeout.as_secs_f64(),
                missing.join(", ")
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), hub.changed.notified()).await;
    }
}

/// The agent binary hash the hub expects of pool agents.
fn pool_hash(hub: &Hub) -> String {
    hub.expected_binary().unwrap_or_default()
}

/// Releases a pool's agents: no more attaches, Shutdown to each attached
/// one (a pool agent acks out, closes its link and waits for the next run),
/// and waits until they have left.
async fn release_pool(hub: &Arc<Hub>) {
    hub.close_doors();
    let attached: Vec<String> = hub
        .agents()
        .into_iter()
        .filter(|(_, s)| s.connected)
        .map(|(id, _)| id)
        .collect();
    for id in &attached {
        hub.send(
            id,
            Msg::Shutdown(pb::Shutdown {
                reason: "run ended: released to the pool".into(),
            }),
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let states = hub.agents();
        let lingering: Vec<&String> = attached
            .iter()
            .filter(|id| states.get(*id).is_some_and(|s| s.connected))
            .collect();
        if lingering.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            for id in lingering {
                hub.notice(
                    "warn",
                    id,
                    format!("pool agent {id} did not ack out within 15s of the run's end"),
                )
                .await;
            }
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), hub.changed.notified()).await;
    }
}

fn check_log(hub: &Hub) -> Result<()> {
    match hub.failure() {
        Some(why) => Err(anyhow!("the event log failed: {why}")),
        None => Ok(()),
    }
}

/// Splits `total` by `weights` (largest remainder): the parts add up to
/// `total` exactly and each is within one of `total * w / sum(w)`.
fn split_by_weight(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty() || sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut parts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let mut left = total.saturating_sub(parts.iter().sum());
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest fractional part first; ties to the lower index (stable).
    order.sort_by(|a, b| {
        let fa = exact[*a] - exact[*a].floor();
        let fb = exact[*b] - exact[*b].floor();
        fb.partial_cmp(&fa).unwrap_or(std::cmp::Ordering::Equal)
    });
    for i in order {
        if left == 0 {
            break;
        }
        if weights[i] > 0.0 {
            parts[i] += 1;
            left -= 1;
        }
    }
    parts
}

/// Each agent's weight, by the workload's `[agents] split`.
fn weights(workload: &Workload, ids: &[String], hub: &Hub) -> Vec<f64> {
    match &workload.agents.split {
        Split::Even => vec![1.0; ids.len()],
        Split::Cores => {
            let states = hub.agents();
            ids.iter()
                .map(|id| {
                    states
                        .get(id)
                        .map_or(1.0, |s| f64::from(s.hello.cores.max(1)))
                })
                .collect()
        }
        // A pool run: one weight per agent taken, in the order taken.
        Split::Weights(w) if workload.agents.pool.is_some() => (0..ids.len())
            .map(|i| w.get(i).copied().unwrap_or(1.0))
            .collect(),
        Split::Weights(w) => {
            // Weights are listed in the planned order of agents; an agent
            // whose host failed to come up takes its weight with it.
            let planned = planned_agent_ids(workload);
            ids.iter()
                .map(|id| {
                    planned
                        .iter()
                        .position(|p| p == id)
                        .and_then(|i| w.get(i))
                        .copied()
                        .unwrap_or(1.0)
                })
                .collect()
        }
    }
}

/// Agent ids in the order the workload lists them: local, then per host.
fn planned_agent_ids(workload: &Workload) -> Vec<String> {
    let mut ids: Vec<String> = (1..=workload.agents.local)
        .map(|i| format!("local-{i}"))
        .collect();
    for host in &workload.agents.hosts {
        ids.extend((1..=workload.agents.per_host).map(|i| remote_agent_id(host, i)));
    }
    ids
}

/// What one agent is asked to do in a phase.
struct AgentPlan {
    share: f64,
    concurrency: u32,
    rate: f64,
    iterations: u64,
}

fn plan_agents(phase: &Phase, weights: &[f64]) -> Vec<AgentPlan> {
    let sum: f64 = weights.iter().sum();
    let concurrency = split_by_weight(u64::from(phase.load.concurrency()), weights);
    let iterations = split_by_weight(phase.iterations.unwrap_or(0), weights);
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let share = if sum > 0.0 { w / sum } else { 0.0 };
            let (concurrency, rate) = match &phase.load {
                Load::Closed { .. } => (concurrency[i] as u32, 0.0),
                // An open-loop agent with a share needs a connection.
                Load::Open { shape, .. } if share > 0.0 => {
                    ((concurrency[i] as u32).max(1), shape.rate_at(0.0) * share)
                }
                Load::Open { .. } => (0, 0.0),
            };
            AgentPlan {
                share,
                concurrency,
                rate,
                iterations: iterations[i],
            }
        })
        .collect()
}

/// The windows (first, last) of each step of a step load: a shape of two or
/// more segments of whole windows. Empty for anything else (judged per
/// window).
fn step_windows(phase: &Phase) -> Vec<(u32, u32)> {
    let width = fleetbench_workload::WINDOW.as_millis() as u64;
    let Load::Open { shape, .. } = &phase.load else {
        return Vec::new();
    };
    if shape.segments.len() < 2
        || shape
            .segments
            .iter()
            .any(|s| !(s.duration.as_millis() as u64).is_multiple_of(width))
    {
        return Vec::new();
    }
    let mut at = 0u32;
    shape
        .segments
        .iter()
        .map(|s| {
            let n = (s.duration.as_millis() as u64 / width) as u32;
            let step = (at, at + n - 1);
            at += n;
            step
        })
        .collect()
}

/// The first stop condition of `until` that window `w` meets, as a reason.
fn until_met(until: &Until, w: &fleetbench_fold::WindowAgg) -> Option<String> {
    let requests = w.requests();
    if requests == 0 {
        return None;
    }
    for (name, q, bound_us) in &until.latency {
        let v = if *q >= 1.0 {
            w.latency.max()
        } else {
            w.latency.value_at_quantile(*q)
        };
        if v > *bound_us {
            return Some(format!(
                "{name} {} > {}",
                fleetbench::clock::format_us(v as f64),
                fleetbench::clock::format_us(*bound_us as f64)
            ));
        }
    }
    if let Some(limit) = until.error_rate {
        let rate = w.error_count() as f64 / requests as f64;
        if rate > limit {
            return Some(format!(
                "error rate {:.2}% > {:.2}%",
                rate * 100.0,
                limit * 100.0
            ));
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
async fn run_phase(
    hub: &Arc<Hub>,
    index: u32,
    phase: &Phase,
    workload: &Workload,
    ids: &[String],
    live: &mut LiveView,
    stop: &CancellationToken,
) -> Result<()> {
    let services = &workload.services;
    let states = hub.agents();
    let max_rtt = states.values().map(|s| s.rtt_us).max().unwrap_or(0);
    let lead = START_LEAD + Duration::from_micros(max_rtt * 4);
    let start_at_us = fleetbench::clock::now_us() + lead.as_micros() as i64;
    let mut spec = phase.to_pb();
    for op in &mut spec.ops {
        match op.kind.as_mut() {
            Some(pb::operation::Kind::Http(h)) => {
                h.url = fleetbench_workload::expand_service_hosts(&h.url, services);
            }
            Some(pb::operation::Kind::Tcp(t)) => {
                t.address = fleetbench_workload::expand_service_hosts(&t.address, services);
            }
            _ => {}
        }
    }
    let weights = weights(workload, ids, hub);
    let plans = plan_agents(phase, &weights);
    hub.log(pb::log_record::Record::PhaseScheduled(pb::PhaseScheduled {
        phase_index: index,
        name: phase.name.clone(),
        start_at_us,
        duration_ms: spec.duration_ms,
        warmup_ms: spec.warmup_ms,
        window_ms: spec.window_ms,
        agent_ids: ids.to_vec(),
        shares: ids
            .iter()
            .zip(&plans)
            .map(|(id, p)| pb::AgentShare {
                agent_id: id.clone(),
                share: p.share,
                concurrency: p.concurrency,
                rate: p.rate,
                iterations: p.iterations,
            })
            .collect(),
        iterations: phase.iterations.unwrap_or(0),
        shape: spec.shape.clone(),
        ops: phase.op_names(),
    }))
    .await;
    hub.flush()
        .await
        .map_err(|e| anyhow!("the event log failed: {e}"))?;
    let n = ids.len() as u32;
    spec.max_agent_concurrency = plans.iter().map(|p| p.concurrency).max().unwrap_or(0);
    for (i, (id, plan)) in ids.iter().zip(&plans).enumerate() {
        let mut agent_spec = spec.clone();
        if let Some(shape) = agent_spec.shape.as_mut() {
            for s in &mut shape.segments {
                s.from *= plan.share;
                s.to *= plan.share;
            }
        }
        let generators = workload
            .generators
            .iter()
            .map(|g| g.to_pb(i as u32, n))
            .collect();
        let offset = states.get(id).map_or(0, |s| s.offset_us);
        let sent = hub.send(
            id,
            Msg::StartPhase(pb::StartPhase {
                phase_index: index,
                spec: Some(agent_spec),
                start_at_agent_us: start_at_us + offset,
                agent_index: i as u32,
                agent_count: n,
                concurrency: plan.concurrency,
                rate: plan.rate,
                iterations: plan.iterations,
                share: plan.share,
                generators,
            }),
        );
        if !sent {
            hub.notice(
                "error",
                id,
                format!(
                    "agent {id} is not connected: phase {:?} runs without it",
                    phase.name
                ),
            )
            .await;
        }
    }

    let planned_end = start_at_us + phase.duration.as_micros() as i64;
    let deadline = planned_end + PHASE_GRACE.as_micros() as i64;
    let mut stopping = false;
    let warmup_windows =
        (phase.warmup.as_millis() / fleetbench_workload::WINDOW.as_millis()) as u32;
    // What `until` judges: each step of a step load as a whole (its p99
    // over all its windows), else each window; in order, none skipped.
    let steps = step_windows(phase);
    let (mut next_step, mut next_window) = (0usize, warmup_windows);
    loop {
        check_log(hub)?;
        let connected = hub.agents().values().filter(|s| s.connected).count();
        let (ended, met) = {
            let fold = hub.fold.lock().expect("never poisoned");
            live.show(
                &fold,
                index,
                fleetbench::clock::now_us(),
                connected,
                ids.len(),
            );
            let p = fold.phases.get(&index);
            let mut met = None;
            if let (Some(until), Some(p)) = (&phase.until, p)
                && !stopping
                && let Some((done, _)) = p.last_complete_window()
            {
                if steps.is_empty() {
                    while met.is_none() && next_window <= done {
                        met = p
                            .merged(next_window, next_window)
                            .and_then(|agg| until_met(until, &agg))
                            .map(|why| (next_window, why));
                        next_window += 1;
                    }
                } else {
                    while met.is_none() && next_step < steps.len() && steps[next_step].1 <= done {
                        let (first, last) = steps[next_step];
                        met = p
                            .merged(first, last)
                            .and_then(|agg| until_met(until, &agg))
                            .map(|why| (last, format!("{why} over step {}", next_step + 1)));
                        next_step += 1;
                    }
                }
            }
            (p.is_some_and(|p| p.ended()), met)
        };
        if ended {
            break;
        }
        if let Some((w, why)) = met {
            stopping = true;
            let rate = match &phase.load {
                Load::Open { shape, .. } => shape.rate_at(f64::from(w) + 0.5),
                Load::Closed { .. } => 0.0,
            };
            hub.log(pb::log_record::Record::PhaseStopRequested(
                pb::PhaseStopRequested {
                    phase_index: index,
                    reason: why.clone(),
                    window_index: w,
                    rate,
                    condition_met: true,
                },
            ))
            .await;
            eprintln!(
                "phase {:?}: stop condition met in window {w}{}: {why}",
                phase.name,
                if rate > 0.0 {
                    format!(" (rate {rate:.0}/s)")
                } else {
                    String::new()
                }
            );
            for id in ids {
                hub.send(id, Msg::StopPhase(pb::StopPhase { phase_index: index }));
            }
        }
        if stop.is_cancelled() && !stopping {
            stopping = true;
            hub.log(pb::log_record::Record::PhaseStopRequested(
                pb::PhaseStopRequested {
                    phase_index: index,
                    reason: "interrupted".to_string(),
                    ..Default::default()
                },
            ))
            .await;
            for id in ids {
                hub.send(id, Msg::StopPhase(pb::StopPhase { phase_index: index }));
            }
        }
        if fleetbench::clock::now_us() > deadline {
            let fold = hub.fold.lock().expect("never poisoned");
            let missing: Vec<&str> = ids
                .iter()
                .filter(|id| {
                    fold.phases
                        .get(&index)
                        .and_then(|p| p.agents.get(*id))
                        .is_none_or(|a| a.ended.is_none())
                })
                .map(|s| s.as_str())
                .collect();
            return Err(anyhow!(
                "phase {:?}: agents did not report its end within {:.0}s of its planned end: {}",
                phase.name,
                PHASE_GRACE.as_secs_f64(),
                missing.join(", ")
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(250), hub.changed.notified()).await;
    }
    live.phase_done();
    Ok(())
}

/// Asks every agent to shut down, waits for each to exit (an agent exits only
/// once all its events are acked), then kills stragglers.
async fn shutdown_agents(
    hub: &Arc<Hub>,
    agents: &mut Vec<(String, Child)>,
    remote: &mut Remote,
    keep_remote: bool,
) {
    if remote.pool {
        release_pool(hub).await;
    }
    let remote_ids: Vec<String> = remote
        .fleet
        .as_ref()
        .map(Fleet::agent_ids)
        .unwrap_or_default();
    let shut = |id: &str| {
        hub.send(
            id,
            Msg::Shutdown(pb::Shutdown {
                reason: "run ended".into(),
            }),
        )
    };
    for (id, _) in agents.iter() {
        shut(id);
    }
    if !keep_remote {
        for id in &remote_ids {
            shut(id);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for (id, child) in agents.iter_mut() {
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                hub.notice("warn", id, format!("agent {id} exited with {status}"))
                    .await
            }
            _ => {
                hub.notice(
                    "warn",
                    id,
                    format!("agent {id} did not exit after shutdown: killed"),
                )
                .await;
                let _ = child.kill().await;
            }
        }
    }
    agents.clear();
    let Some(fleet) = remote.fleet.take() else {
        return;
    };
    if keep_remote {
        eprintln!(
            "{} agent(s) left running on the hosts (--keep-agents)",
            remote_ids.len()
        );
        fleet.close().await;
        return;
    }
    // A remote agent says goodbye by closing its link once all it sent is
    // acked; one that never attached, or does not leave, is killed over SSH.
    loop {
        let states = hub.agents();
        let lingering: Vec<String> = remote_ids
            .iter()
            .filter(|id| states.get(*id).is_some_and(|s| s.connected))
            .cloned()
            .collect();
        if lingering.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), hub.changed.notified()).await;
    }
    let states = hub.agents();
    let stragglers: Vec<String> = remote_ids
        .iter()
        .filter(|id| {
            states
                .get(*id)
                .is_none_or(|s| s.connected || s.hello.agent_id.is_empty())
        })
        .cloned()
        .collect();
    // Agents that exited on their own are gone; killing them again is harmless
    // but the pid could be reused, so only those still attached or never seen.
    if !stragglers.is_empty() {
        fleet.kill(Some(&stragglers)).await;
    }
    fleet.close().await;
}

/// The agent binary: the flag, $FLEETBENCH_AGENT, or `agent` beside this
/// executable.
pub(crate) fn find_agent_binary(flag: Option<&Path>) -> Result<PathBuf> {
    let path = match flag {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("FLEETBENCH_AGENT") {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe()
                .context("locating this executable")?
                .with_file_name("agent"),
        },
    };
    if !path.is_file() {
        return Err(anyhow!(
            "agent binary not found at {} (build it with `cargo build --release -p agent`, or pass --agent-binary)",
            path.display()
        ));
    }
    Ok(path)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::{split_by_weight, step_windows};

    #[test]
    fn steps_are_judged_whole_and_other_shapes_per_window() {
        let parse = |load: &str| {
            let text = format!(
                "[agents]\nlocal = 1\n[[phase]]\nname = \"p\"\n{load}\n[phase.synthetic]\nlatency = \"1ms\"\n"
            );
            fleetbench_workload::Workload::parse("w.toml", &text)
                .unwrap()
                .phases
                .remove(0)
        };
        let steps = parse(
            "steps = [{ rate = 1, for = \"3s\" }, { rate = 2, for = \"2s\" }, { rate = 3, for = \"1s\" }]",
        );
        assert_eq!(step_windows(&steps), vec![(0, 2), (3, 4), (5, 5)]);
        let ramp = parse("ramp = { from = 1, to = 9, over = \"5s\" }");
        assert!(step_windows(&ramp).is_empty());
        let closed = parse("duration = \"5s\"\nconcurrency = 2");
        assert!(step_windows(&closed).is_empty());
        // A step that is not whole windows: judged per window.
        let ragged = parse("steps = [{ rate = 1, for = \"1500ms\" }, { rate = 2, for = \"2s\" }]");
        assert!(step_windows(&ragged).is_empty());
    }

    #[test]
    fn weighted_parts_add_up_and_stay_within_one() {
        for total in [0u64, 1, 2, 7, 16, 1000, 100_001] {
            for weights in [
                vec![1.0],
                vec![1.0, 1.0, 1.0],
                vec![1.0, 3.0],
                vec![2.0, 0.0, 5.0, 1.0],
                vec![0.3, 0.3, 0.4],
            ] {
                let parts = split_by_weight(total, &weights);
                assert_eq!(parts.iter().sum::<u64>(), total, "{total} by {weights:?}");
                let sum: f64 = weights.iter().sum();
                for (p, w) in parts.iter().zip(&weights) {
                    let exact = total as f64 * w / sum;
                    assert!(
                        (*p as f64 - exact).abs() < 1.0,
                        "{total} by {weights:?}: {parts:?}"
                    );
                    if *w == 0.0 {
                        assert_eq!(*p, 0);
                    }
                }
            }
        }
        // Even weights: the first agents take the remainder.
        assert_eq!(split_by_weight(7, &[1.0, 1.0, 1.0]), vec![3, 2, 2]);
    }
}
