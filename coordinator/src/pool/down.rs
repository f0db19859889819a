//! `coordinator pool down NAME`: the pool's agents stopped, fleetbench's
//! files removed from its hosts, and the pool forgotten.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::record::{Member, Pool};
use super::remote::{self, OnHost, PoolHosts, STOP_PIDS_SH, binary_path, exec, find_agents_sh};
use crate::agent_binary;
use crate::cli::DownArgs;
use crate::error::BadInput;
use crate::hosts::bootstrap::{BootstrapError, Step, Timeouts, remote_path, sh_quote};
use crate::hosts::fleet;
use crate::hosts::ssh::Target;

/// `coordinator pool down NAME`: stops the pool's agents on every host and
/// removes what fleetbench put there (credentials, logs, the agent binary,
/// and `remote_dir` itself once empty), then the pool's record. A host that
/// fails is reported and stays in the record (run it again). Returns false
/// if a host failed.
pub(crate) async fn down(data_dir: &Path, args: DownArgs) -> Result<bool> {
    let name = args.name.as_str();
    let mut pool = Pool::load(data_dir, name).map_err(BadInput)?;
    let holder = pool.hold("pool down")?;
    let binary = agent_binary::local(None).await?;
    let hosts = pool.hosts()?;
    let results = {
        let shared = PoolHosts {
            ssh: pool.ssh_options(args.accept_new_host_keys),
            binary,
            record: pool.record.clone(),
            timeouts: Timeouts::default(),
        };
        let members = pool.members_by_host(&hosts);
        remote::each_host(hosts.clone(), fleet::PARALLEL, shared, move |host| {
            let members = members
                .get(&host.target.to_string())
                .cloned()
                .unwrap_or_default();
            async move { down_host(&host, &members).await }
        })
        .await
    };
    let mut ok = true;
    for (target, result) in &results {
        match result {
            Ok(n) => {
                eprintln!("{target}: {n} agent process(es) stopped, fleetbench's files removed")
            }
            Err(e) => {
                ok = false;
                eprintln!("{e}");
            }
        }
    }
    let enrolled: Vec<String> = pool
        .record
        .agents
        .iter()
        .filter(|m| m.host.is_none())
        .map(|m| m.id.clone())
        .collect();
    if !enrolled.is_empty() {
        eprintln!(
            "pool {name}: enrolled agent(s) {} were started by something else: stop them where they run (their secrets are forgotten now)",
            enrolled.join(", ")
        );
    }
    if ok {
        drop(holder);
        std::fs::remove_dir_all(&pool.dir)
            .with_context(|| format!("removing {}", pool.dir.display()))?;
        eprintln!("pool {name}: removed");
    } else {
        keep_failed(&mut pool, name, &results)?;
    }
    Ok(ok)
}

/// Keeps in the record only the hosts that failed (to run `down` again).
fn keep_failed(
    pool: &mut Pool,
    name: &str,
    results: &[(Target, Result<usize, BootstrapError>)],
) -> Result<()> {
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(t, _)| t.to_string())
        .collect();
    pool.record
        .agents
        .retain(|m| m.host.as_ref().is_some_and(|h| failed.contains(h)));
    let members: Vec<String> = pool.record.agents.iter().map(|m| m.id.clone()).collect();
    pool.secrets.retain(|id, _| members.contains(id));
    pool.save()?;
    eprintln!(
        "pool {name}: kept with the {} host(s) that failed; run `coordinator pool down {name}` again",
        failed.len()
    );
    Ok(())
}

/// Stops the pool's agents on one host and removes fleetbench's files
/// there; how many agent processes it stopped.
async fn down_host(host: &OnHost, members: &[Member]) -> Result<usize, BootstrapError> {
    host.in_session(async |session| {
        let (record, binary) = (&host.pool.record, &host.pool.binary);
        host.bar
            .set_message(format!("{}: stopping agents", host.target));
        let dir = remote_path(&record.remote_dir);
        let pdir = format!("{dir}/pools/{}", sh_quote(&record.name));
        let mut hashes: Vec<String> = members
            .iter()
            .filter_map(|m| m.binary_hash.clone())
            .collect();
        hashes.push(binary.hash.clone());
        hashes.sort();
        hashes.dedup();
        let bins: Vec<String> = hashes
            .iter()
            .map(|h| binary_path(&record.remote_dir, h))
            .collect();
        // Every agent of this pool (found by its credentials directory),
        // then the files, then the directories if nothing else is in them.
        let script = format!(
            "{find}n=$(echo $pids | wc -w); {stop}\
             rm -rf {pdir}; rm -f {bins}; \
             rmdir {dir}/pools 2>/dev/null; rmdir {dir}/bin 2>/dev/null; rmdir {dir} 2>/dev/null; \
             {find}if [ -n \"$pids\" ]; then echo \"still running: $pids\" >&2; exit 1; fi; echo $n",
            find = find_agents_sh(&format!("{pdir}/")),
            stop = STOP_PIDS_SH,
            bins = bins.join(" "),
        );
        let out = exec(session, Step::Start, &script, None, Duration::from_secs(30)).await?;
        Ok(out.stdout_text().trim().parse().unwrap_or(0))
    })
    .await
}
