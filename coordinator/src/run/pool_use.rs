//! A run that takes its agents from a pool (`[agents] pool = "NAME"`): it
//! holds the pool, admits the pool's agents, waits for `count` of those
//! matching `labels` (stale ones are named and never used), benches the
//! others, and at the end releases the ones it took.
//!
//! The pool's record and lock are `pool`'s; this is only a run's use of it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use fleetbench::pb;
use fleetbench::pb::coordinator_message::Msg;
use fleetbench_workload::{PoolUse, Workload};
use tokio_util::sync::CancellationToken;

use super::wait::{changed, check_log};
use crate::error::BadInput;
use crate::hub::{self, Hub};
use crate::pool::record::{Holder, Member, Pool};

/// Loads and holds the workload's pool, if it names one: one run at a time.
/// A `--listen` other than the pool's own address is bad input.
pub(super) fn hold(
    data_dir: &Path,
    workload: &Workload,
    listen: Option<SocketAddr>,
    run_id: &str,
) -> Result<Option<(Pool, Holder)>> {
    let Some(want) = &workload.agents.pool else {
        return Ok(None);
    };
    let pool = Pool::load(data_dir, &want.name).map_err(BadInput)?;
    if let Some(l) = listen
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
    Ok(Some((pool, holder)))
}

/// Lets the pool's agents in (on the binary this run ships, late events of
/// an earlier run accepted), and benches those that do not match the labels.
pub(super) fn admit(hub: &Hub, pool: &Pool, want: &PoolUse, agent_hash: &str, data_dir: &Path) {
    for (id, secret) in &pool.secrets {
        hub.admit_pool(id.clone(), secret.clone());
    }
    hub.expect_binary(agent_hash);
    hub.accept_late(data_dir);
    let others: Vec<String> = pool
        .record
        .agents
        .iter()
        .filter(|m| !pool.matching(&want.labels).contains(m))
        .map(|m| m.id.clone())
        .collect();
    hub.bench(&others);
}

/// Waits until `count` agents of the pool that match the labels are
/// attached (every matching one without `count`), takes them, and benches
/// the others; fails at `timeout` naming who is missing and who is stale.
pub(super) async fn wait(
    hub: &Arc<Hub>,
    pool: &Pool,
    want: &PoolUse,
    timeout: Duration,
    stop: &CancellationToken,
) -> Result<Vec<String>> {
    let name = pool.name();
    let candidates: Vec<&Member> = pool.matching(&want.labels);
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
                    hub::short(&s.hello.binary_hash),
                    hub::short(&pool_hash(hub))
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
                            hub::short(&s.hello.binary_hash)
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
        changed(hub, Duration::from_millis(100)).await;
    }
}

/// The agent binary hash the hub expects of pool agents.
fn pool_hash(hub: &Hub) -> String {
    hub.expected_binary().unwrap_or_default()
}

/// Releases a pool's agents: no more attaches, Shutdown to each attached
/// one (a pool agent acks out, closes its link and waits for the next run),
/// and waits until they have left.
pub(super) async fn release(hub: &Arc<Hub>) {
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
        changed(hub, Duration::from_millis(100)).await;
    }
}
