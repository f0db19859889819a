//! `coordinator pool upgrade NAME`: agents that run another binary than the
//! local agent are replaced, host by host; a host that fails keeps (or gets
//! back) its old agents.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::lookout::Lookout;
use super::record::{Member, Pool};
use super::remote::{
    self, OnHost, PoolHosts, STOP_PIDS_SH, agent_paths, binary_path, exec, find_agents_sh,
};
use crate::agent_binary;
use crate::cli::UpgradeArgs;
use crate::error::BadInput;
use crate::hosts::bootstrap::{self, AgentBinary, BootstrapError, Step, Timeouts, remote_path};
use crate::hosts::ssh::{self, Target};
use crate::hub;
use crate::trust::Trust;

/// `coordinator pool upgrade NAME`: replaces agents whose binary differs
/// from the local one, host by host (at most `parallel` at once): upload,
/// stop the old agents, start the new binary with the same credentials, and
/// wait until each dials in on the new binary. A host where any of that
/// fails gets its old agents back and is reported. Returns false if a host
/// failed.
pub(crate) async fn upgrade(data_dir: &Path, args: UpgradeArgs) -> Result<bool> {
    let name = args.name.as_str();
    let mut pool = Pool::load(data_dir, name).map_err(BadInput)?;
    let _holder = pool.hold("pool upgrade")?;
    let trust = Trust::load_or_create(data_dir)?;
    let binary = agent_binary::local(args.agent_binary.as_deref()).await?;
    let hosts = stale_hosts(&pool, &binary)?;
    let enrolled = pool
        .record
        .agents
        .iter()
        .filter(|m| m.host.is_none())
        .count();
    if enrolled > 0 {
        eprintln!(
            "pool {name}: {enrolled} enrolled agent(s) are started by something else: upgrade them where they run"
        );
    }
    if hosts.is_empty() {
        eprintln!(
            "pool {name}: every host runs agent {} already",
            hub::short(&binary.hash)
        );
        return Ok(true);
    }
    eprintln!(
        "pool {name}: upgrading {} host(s) to agent {}, {} at a time",
        hosts.len(),
        hub::short(&binary.hash),
        args.parallel.max(1)
    );
    let lookout = Arc::new(Lookout::start(data_dir, &pool, &trust).await?);
    let results = {
        let shared = PoolHosts {
            ssh: pool.ssh_options(args.accept_new_host_keys),
            binary: binary.clone(),
            record: pool.record.clone(),
            timeouts: Timeouts::default(),
        };
        let lookout = lookout.clone();
        let members = pool.members_by_host(&hosts);
        remote::each_host(hosts.clone(), args.parallel, shared, move |host| {
            let lookout = lookout.clone();
            let members = members
                .get(&host.target.to_string())
                .cloned()
                .unwrap_or_default();
            async move { upgrade_host(&host, &members, &lookout).await }
        })
        .await
    };
    let ok = note_results(&mut pool, &results, &binary);
    pool.note_seen(&lookout.hub.agents());
    pool.save()?;
    if let Ok(lookout) = Arc::try_unwrap(lookout) {
        lookout.stop().await;
    }
    let upgraded = results.iter().filter(|(_, r)| r.is_ok()).count();
    eprintln!(
        "pool {name}: {upgraded} of {} host(s) upgraded",
        results.len()
    );
    Ok(ok)
}

/// The hosts with an agent on another binary than `binary`.
fn stale_hosts(pool: &Pool, binary: &AgentBinary) -> Result<Vec<Target>> {
    Ok(pool
        .hosts()?
        .into_iter()
        .filter(|h| {
            pool.members_on(h)
                .iter()
                .any(|m| m.binary_hash.as_deref() != Some(binary.hash.as_str()))
        })
        .collect())
}

/// Says how each host went and records the new binary of those upgraded;
/// false if a host failed.
fn note_results(
    pool: &mut Pool,
    results: &[(Target, Result<String, BootstrapError>)],
    binary: &AgentBinary,
) -> bool {
    let mut ok = true;
    for (target, result) in results {
        match result {
            Ok(line) => {
                let shown = target.to_string();
                for m in pool.record.agents.iter_mut() {
                    if m.host.as_deref() == Some(shown.as_str()) {
                        m.binary_hash = Some(binary.hash.clone());
                    }
                }
                eprintln!("{target}: {line}");
            }
            Err(e) => {
                ok = false;
                let old: Vec<String> = pool
                    .members_on(target)
                    .iter()
                    .filter_map(|m| m.binary_hash.as_deref().map(|h| hub::short(h).to_string()))
                    .collect();
                eprintln!(
                    "{e}; it keeps agent {}",
                    if old.is_empty() {
                        "-".into()
                    } else {
                        old.join(", ")
                    }
                );
            }
        }
    }
    ok
}

async fn upgrade_host(
    host: &OnHost,
    members: &[Member],
    lookout: &Lookout,
) -> Result<String, BootstrapError> {
    let started = Instant::now();
    host.in_session(async |session| {
        let (target, record, binary) = (&host.target, &host.pool.record, &host.pool.binary);
        let timeouts = &host.pool.timeouts;
        let dir = remote_path(&record.remote_dir);
        let shipped = bootstrap::ship(session, &dir, "agent", binary, &host.bar, timeouts)
            .await
            .map_err(|(step, reason)| host.failed(step, reason))?;
        eprintln!(
            "{target}: {}",
            if shipped.reused {
                "new agent binary already there".to_string()
            } else {
                format!("uploaded the new agent binary ({} bytes)", shipped.uploaded)
            }
        );
        host.bar.set_message(format!("{target}: restarting agents"));
        let restart = |bin: String| restart_sh(record, members, &bin);
        let since = fleetbench::clock::now_us();
        exec(
            session,
            Step::Start,
            &restart(shipped.path.clone()),
            None,
            timeouts.start,
        )
        .await?;
        let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        let seen = lookout
            .wait_seen(&ids, since, Some(&binary.hash), Duration::from_secs(15))
            .await;
        if seen.len() < ids.len() {
            let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains(id)).collect();
            // Roll back to what ran before, if we know what that was.
            let old = members.iter().find_map(|m| m.binary_hash.clone());
            let back = match &old {
                Some(h) => exec(
                    session,
                    Step::Start,
                    &restart(binary_path(&record.remote_dir, h)),
                    None,
                    timeouts.start,
                )
                .await
                .map(|_| format!("; restarted agent {}", hub::short(h)))
                .unwrap_or_else(|e| format!("; restarting the old agent failed too: {}", e.reason)),
                None => String::new(),
            };
            return Err(host.failed(
                Step::Start,
                format!(
                    "{} did not dial in on the new binary within 15s{back}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        remove_old_binaries(session, host, members).await;
        Ok(format!(
            "{} agent(s) restarted on agent {} and dialed in ({:.1}s)",
            members.len(),
            hub::short(&binary.hash),
            started.elapsed().as_secs_f64()
        ))
    })
    .await
}

/// A script that stops each of `members` and starts it again on `bin` with
/// the same credentials.
fn restart_sh(record: &super::record::Record, members: &[Member], bin: &str) -> String {
    let lease = format!("{}ms", record.lease_ms);
    let mut script = String::from("set -e; ");
    for m in members {
        let p = agent_paths(&record.remote_dir, &record.name, &m.id);
        script.push_str(&format!(
            "{find}{stop}if command -v setsid >/dev/null 2>&1; then d=setsid; else d=nohup; fi; \
             $d {bin} attach --credentials {creds} --lease {lease} </dev/null >>{log} 2>&1 & ",
            find = find_agents_sh(&p.creds),
            stop = STOP_PIDS_SH,
            creds = p.creds,
            log = p.log,
        ));
    }
    script.push_str("echo ok");
    script
}

/// The old binary is no longer used by this pool's agents on the host.
async fn remove_old_binaries(session: &ssh::Session, host: &OnHost, members: &[Member]) {
    let (record, binary) = (&host.pool.record, &host.pool.binary);
    let mut olds: Vec<String> = members
        .iter()
        .filter_map(|m| m.binary_hash.clone())
        .filter(|h| h != &binary.hash)
        .collect();
    olds.dedup();
    if !olds.is_empty() {
        let rm: Vec<String> = olds
            .iter()
            .map(|h| binary_path(&record.remote_dir, h))
            .collect();
        let _ = exec(
            session,
            Step::Start,
            &format!("rm -f {}", rm.join(" ")),
            None,
            host.pool.timeouts.start,
        )
        .await;
    }
}
