//! The run's own agents: local ones started with a credentials file, those
//! bootstrapped on SSH hosts (load agents, and a metrics-only agent on each
//! service host that runs no load), waiting until all are attached, and
//! shutting them down at the end.
//!
//! Agents taken from a pool are `pool_use`'s.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use fleetbench::credentials::Credentials;
use fleetbench::pb;
use fleetbench::pb::coordinator_message::Msg;
use fleetbench_workload::Workload;
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use super::wait::{changed, check_log};
use crate::agent_id;
use crate::hosts::bootstrap::{AgentBinary, HostJob, Timeouts};
use crate::hosts::fleet::Fleet;
use crate::hosts::ssh;
use crate::hub::Hub;
use crate::reaper::Reaper;
use crate::trust;

/// What agents need to reach this coordinator, and how to reach hosts.
pub(super) struct Attach<'a> {
    /// host:port local agents dial.
    pub advertise: &'a str,
    /// host:port remote agents dial (`--advertise`); None: the address of
    /// our SSH connection to each host, with `grpc_port`.
    pub remote_advertise: Option<&'a str>,
    pub grpc_port: u16,
    /// Of the coordinator's certificate.
    pub fingerprint: &'a str,
    pub ssh: &'a ssh::Options,
    pub timeouts: &'a Timeouts,
    /// The agent binary: run locally, shipped to hosts.
    pub shipped: &'a AgentBinary,
    /// Where local agents' process groups are listed.
    pub reaper: &'a Reaper,
}

/// Starts the workload's local agents, each admitted with a fresh secret
/// and given only the path of its credentials file (0600). Each leads a
/// process group of its own: a terminal's Ctrl-C is the coordinator's to
/// handle (it stops the agents in order), not theirs.
pub(super) fn start_local(
    hub: &Hub,
    count: u32,
    dir: &Path,
    attach: &Attach<'_>,
    started: &mut Vec<(String, Child)>,
) -> Result<()> {
    let agent_binary = attach.shipped.path.as_path();
    for i in 1..=count {
        let id = agent_id::local(i);
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
            // Dies with this coordinator, even a SIGKILLed one.
            .arg("--parent")
            .arg(std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting local agent {id} ({})", agent_binary.display()))?;
        attach.reaper.add(child.id());
        if let Some(pid) = child.id() {
            hub.set_local_pid(&id, pid);
        }
        started.push((id, child));
    }
    Ok(())
}

/// The agents started on SSH hosts, by what they are for.
#[derive(Default)]
pub(super) struct HostAgents {
    /// Load agents.
    pub load: Vec<String>,
    /// Metrics-only agents (never given load).
    pub metrics: Vec<String>,
}

/// Bootstraps the agents on SSH hosts: `per_host` load agents on each of
/// `[agents] hosts`, and a metrics-only agent on each service host that runs
/// no load agent (so the report shows its CPU, memory and network). The
/// fleet is kept in `fleet` (to be stopped at the end) even when too few
/// hosts came up for `min_hosts`.
pub(super) async fn deploy_hosts(
    hub: &Hub,
    workload: &Workload,
    attach: &Attach<'_>,
    fleet_slot: &mut Option<Fleet>,
) -> Result<HostAgents> {
    let agents = &workload.agents;
    let mut metrics_hosts: Vec<ssh::Target> = Vec::new();
    for s in &workload.services {
        for h in &s.hosts {
            if !agents.hosts.contains(h) && !metrics_hosts.contains(h) {
                metrics_hosts.push(h.clone());
            }
        }
    }
    let mut started = HostAgents::default();
    if agents.hosts.is_empty() && metrics_hosts.is_empty() {
        return Ok(started);
    }
    let mut jobs = Vec::new();
    for host in &agents.hosts {
        let ids = (1..=agents.per_host)
            .map(|i| agent_id::remote(host, i))
            .collect();
        jobs.push(host_job(hub, workload, attach, host, ids)?);
    }
    for host in &metrics_hosts {
        jobs.push(host_job(
            hub,
            workload,
            attach,
            host,
            vec![agent_id::metrics(host)],
        )?);
    }
    let fleet = Fleet::deploy(jobs, attach.shipped).await;
    for f in &fleet.failures {
        hub.notice("error", "", f.to_string()).await;
    }
    for d in &fleet.deployed {
        let agent_ids = d.agents.iter().map(|(id, _)| id.clone());
        if metrics_hosts.contains(&d.target) {
            started.metrics.extend(agent_ids);
        } else {
            started.load.extend(agent_ids);
        }
    }
    let up = fleet
        .deployed
        .iter()
        .filter(|d| agents.hosts.contains(&d.target))
        .count();
    let wanted = agents.hosts.len();
    let failures: Vec<String> = fleet.failures.iter().map(|f| format!("  {f}")).collect();
    *fleet_slot = Some(fleet);
    if up < agents.min_hosts {
        return Err(anyhow!(
            "{} of {wanted} host(s) failed to bootstrap and min_hosts is {}:\n{}",
            wanted - up,
            agents.min_hosts,
            failures.join("\n")
        ));
    }
    if up < wanted {
        eprintln!(
            "going on with {up} of {wanted} hosts (min_hosts = {})",
            agents.min_hosts
        );
    }
    Ok(started)
}

/// One host's bootstrap job, its agents admitted with fresh secrets.
fn host_job(
    hub: &Hub,
    workload: &Workload,
    attach: &Attach<'_>,
    host: &ssh::Target,
    ids: Vec<String>,
) -> Result<HostJob> {
    let mut host_agents = Vec::new();
    for id in ids {
        let secret = trust::new_secret()?;
        hub.admit(&id, secret.clone());
        host_agents.push((id, secret));
    }
    Ok(HostJob {
        target: host.clone(),
        ssh: attach.ssh.clone(),
        remote_dir: workload.agents.remote_dir.clone(),
        agents: host_agents,
        run_id: hub.run_id().to_string(),
        fingerprint: attach.fingerprint.to_string(),
        advertise: attach.remote_advertise.map(str::to_string),
        grpc_port: attach.grpc_port,
        timeouts: attach.timeouts.clone(),
    })
}

/// Waits until each of `ids` is attached with a measured clock offset; a
/// local agent that exits first, or the timeout, fails the run.
pub(super) async fn wait_attached(
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
                let said = match tail(&log, 10) {
                    t if t.trim().is_empty() => format!("its log {} is empty", log.display()),
                    t => format!("last lines of {}:\n{t}", log.display()),
                };
                return Err(anyhow!(
                    "local agent {id} exited ({status}) before attaching; {said}"
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
        changed(hub, Duration::from_millis(100)).await;
    }
}

/// Asks every agent to shut down, waits for each to exit (an agent exits only
/// once all its events are acked), then kills stragglers.
pub(super) async fn shutdown(
    hub: &Arc<Hub>,
    local: &mut Vec<(String, Child)>,
    fleet: Option<Fleet>,
    keep_remote: bool,
    reaper: &Reaper,
) {
    let remote_ids: Vec<String> = fleet.as_ref().map(Fleet::agent_ids).unwrap_or_default();
    let shut = |id: &str| {
        hub.send(
            id,
            Msg::Shutdown(pb::Shutdown {
                reason: "run ended".into(),
            }),
        )
    };
    for (id, _) in local.iter() {
        shut(id);
    }
    if !keep_remote {
        for id in &remote_ids {
            shut(id);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    stop_local(hub, local, deadline, reaper).await;
    let Some(fleet) = fleet else {
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
    stop_remote(hub, fleet, &remote_ids, deadline).await;
}

/// Waits until `deadline` for each local agent to exit, then kills it.
async fn stop_local(
    hub: &Hub,
    local: &mut Vec<(String, Child)>,
    deadline: tokio::time::Instant,
    reaper: &Reaper,
) {
    for (id, child) in local.iter_mut() {
        let pid = child.id();
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
        reaper.forget(pid);
    }
    local.clear();
}

/// A remote agent says goodbye by closing its link once all it sent is
/// acked; one that never attached, or does not leave by `deadline`, is
/// killed over SSH.
async fn stop_remote(
    hub: &Hub,
    fleet: Fleet,
    remote_ids: &[String],
    deadline: tokio::time::Instant,
) {
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
        changed(hub, Duration::from_millis(100)).await;
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

/// The last `lines` lines of a file (empty if it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
