//! `coordinator pool up NAME --hosts ...`: pool agents bootstrapped on the
//! hosts (those not running already) and the pool recorded; again with the
//! same hosts, it starts and uploads nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use super::lookout::Lookout;
use super::record::{DEFAULT_LEASE, DEFAULT_LISTEN, Member, Pool, Record, check_name, pools_dir};
use super::remote::{self, OnHost, PoolHosts, agent_paths, exec, find_agents_sh, start_agent_sh};
use crate::agent_binary;
use crate::agent_id;
use crate::cli::UpArgs;
use crate::error::BadInput;
use crate::hosts::bootstrap::{self, AgentBinary, BootstrapError, Step, Timeouts, remote_path};
use crate::hosts::fleet;
use crate::hosts::ssh::Target;
use crate::hub;
use crate::trust;
use crate::trust::Trust;

/// What `pool up` did on one host.
struct HostUp {
    /// (agent id, pid) of agents started now.
    started: Vec<(String, u32)>,
    /// Agents found running already.
    running: Vec<String>,
    reused_binary: bool,
    uploaded: u64,
}

/// `coordinator pool up`: bootstraps pool agents on the hosts (those not
/// running already) and records the pool. Running it again with the same
/// hosts starts and uploads nothing. Exit 1 if a host failed.
pub(crate) async fn up(data_dir: &Path, args: UpArgs) -> Result<bool> {
    check_name(&args.name).map_err(BadInput)?;
    if !(1..=256).contains(&args.per_host) {
        return Err(BadInput(anyhow!(
            "--per-host must be between 1 and 256, not {}",
            args.per_host
        ))
        .into());
    }
    let targets = parse_hosts(&args.hosts).map_err(BadInput)?;
    let mut pool = load_or_make(data_dir, &args)?;
    apply_settings(&mut pool, &args)?;
    let _holder = pool.hold("pool up")?;
    let trust = Trust::load_or_create(data_dir)?;
    let binary = agent_binary::local(args.agent_binary.as_deref()).await?;
    add_members(&mut pool, &targets, &args)?;
    // Serve the port while agents start, to see them dial in.
    let lookout = Lookout::start(data_dir, &pool, &trust).await?;
    let started_at_us = fleetbench::clock::now_us();
    let results = start_on_hosts(&pool, &targets, &args, trust.fingerprint(), &binary).await;
    let (mut ok, started_ids) = note_results(&mut pool, &results, &binary);
    pool.save()?;
    ok &= check_dialed(&pool, lookout, &results, started_at_us, &binary).await;
    eprintln!(
        "pool {}: {} agent(s) on {} host(s) dial {}; {} started now",
        pool.name(),
        pool.record.agents.len(),
        pool.hosts()?.len(),
        pool.record.listen,
        started_ids.len()
    );
    Ok(ok)
}

/// Starts the pool's agents on each target (at most `fleet::PARALLEL`
/// hosts at once).
async fn start_on_hosts(
    pool: &Pool,
    targets: &[Target],
    args: &UpArgs,
    fingerprint: &str,
    binary: &AgentBinary,
) -> Vec<(Target, Result<HostUp, BootstrapError>)> {
    let shared = PoolHosts {
        ssh: pool.ssh_options(args.accept_new_host_keys),
        binary: binary.clone(),
        record: pool.record.clone(),
        timeouts: Timeouts::default(),
    };
    let per_host = args.per_host;
    let secrets = pool.secrets.clone();
    let fingerprint = fingerprint.to_string();
    remote::each_host(targets.to_vec(), fleet::PARALLEL, shared, move |host| {
        let agents: Vec<(String, String)> = (1..=per_host)
            .map(|i| {
                let id = agent_id::remote(&host.target, i);
                let secret = secrets.get(&id).cloned().unwrap_or_default();
                (id, secret)
            })
            .collect();
        let fingerprint = fingerprint.clone();
        async move { up_host(&host, &fingerprint, &agents).await }
    })
    .await
}

/// The pool as recorded, or a new one made of the flags (defaults filled in).
fn load_or_make(data_dir: &Path, args: &UpArgs) -> Result<Pool> {
    Ok(match Pool::load(data_dir, &args.name) {
        Ok(pool) => pool,
        Err(_)
            if !pools_dir(data_dir)
                .join(&args.name)
                .join("pool.json")
                .exists() =>
        {
            let listen = args
                .listen
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("static address"));
            Pool {
                dir: pools_dir(data_dir).join(&args.name),
                record: Record {
                    name: args.name.clone(),
                    listen,
                    advertise: args.advertise.clone(),
                    remote_dir: args
                        .remote_dir
                        .clone()
                        .unwrap_or_else(|| "~/.fleetbench".into()),
                    identity: args.identity.clone(),
                    known_hosts: args
                        .known_hosts
                        .clone()
                        .unwrap_or_else(crate::hosts::known_hosts::default_path),
                    lease_ms: args.lease.unwrap_or(DEFAULT_LEASE).as_millis() as u64,
                    agents: Vec::new(),
                },
                secrets: BTreeMap::new(),
            }
        }
        Err(e) => return Err(e),
    })
}

/// Applies the flags to a recorded pool: settings that running agents
/// already depend on (`--listen`, `--remote-dir`) cannot change here.
fn apply_settings(pool: &mut Pool, args: &UpArgs) -> Result<()> {
    let r = &mut pool.record;
    let fixed = |what: &str, was: String| {
        anyhow!(
            "pool {} was made with {what} {was}; agents already use it (`coordinator pool down {}` to start over)",
            args.name,
            args.name
        )
    };
    if let Some(l) = args.listen
        && l != r.listen
    {
        return Err(BadInput(fixed("--listen", r.listen.to_string())).into());
    }
    if let Some(d) = &args.remote_dir
        && d != &r.remote_dir
    {
        return Err(BadInput(fixed("--remote-dir", r.remote_dir.clone())).into());
    }
    if args.identity.is_some() {
        r.identity = args.identity.clone();
    }
    if let Some(k) = &args.known_hosts {
        r.known_hosts = k.clone();
    }
    if let Some(l) = args.lease {
        r.lease_ms = l.as_millis() as u64;
    }
    if args.advertise.is_some() {
        r.advertise = args.advertise.clone();
    }
    Ok(())
}

/// Adds `per_host` members on each target: new ones get a secret; existing
/// ones keep theirs (and take `--labels` if given).
fn add_members(pool: &mut Pool, targets: &[Target], args: &UpArgs) -> Result<()> {
    for t in targets {
        for i in 1..=args.per_host {
            let id = agent_id::remote(t, i);
            match pool.record.agents.iter_mut().find(|m| m.id == id) {
                Some(m) => {
                    if !args.labels.is_empty() {
                        m.labels = args.labels.clone();
                    }
                }
                None => pool.record.agents.push(Member {
                    id: id.clone(),
                    host: Some(t.to_string()),
                    labels: args.labels.clone(),
                    binary_hash: None,
                }),
            }
            if let std::collections::btree_map::Entry::Vacant(e) = pool.secrets.entry(id) {
                e.insert(trust::new_secret()?);
            }
        }
    }
    Ok(())
}

/// Says how each host went and records the binary of agents started now;
/// a host that failed its first `pool up` is not part of the pool. Whether
/// every host went well, and the agents started now.
fn note_results(
    pool: &mut Pool,
    results: &[(Target, Result<HostUp, BootstrapError>)],
    binary: &AgentBinary,
) -> (bool, Vec<String>) {
    let mut ok = true;
    let mut started_ids = Vec::new();
    let mut failed_hosts = Vec::new();
    for (target, result) in results {
        match result {
            Ok(h) => {
                for (id, _) in &h.started {
                    if let Some(m) = pool.record.agents.iter_mut().find(|m| &m.id == id) {
                        m.binary_hash = Some(binary.hash.clone());
                    }
                    started_ids.push(id.clone());
                }
                let what = if h.reused_binary {
                    "agent binary already there, nothing uploaded".to_string()
                } else {
                    format!("uploaded {} bytes", h.uploaded)
                };
                eprintln!(
                    "{target}: {} agent(s) started, {} already running ({what})",
                    h.started.len(),
                    h.running.len()
                );
            }
            Err(e) => {
                ok = false;
                eprintln!("{e}");
                failed_hosts.push(target.to_string());
            }
        }
    }
    pool.record.agents.retain(|m| {
        !(m.binary_hash.is_none() && m.host.as_ref().is_some_and(|h| failed_hosts.contains(h)))
    });
    let members: Vec<String> = pool.record.agents.iter().map(|m| m.id.clone()).collect();
    pool.secrets.retain(|id, _| members.contains(id));
    (ok, started_ids)
}

/// Waits until the agents started now, and those already running, dial in
/// (the lookout is stopped then); names those that did not, and those on
/// another binary than the local one. False if any did not dial in.
async fn check_dialed(
    pool: &Pool,
    lookout: Lookout,
    results: &[(Target, Result<HostUp, BootstrapError>)],
    started_at_us: i64,
    binary: &AgentBinary,
) -> bool {
    let expected: Vec<String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flat_map(|h| {
            h.started
                .iter()
                .map(|(id, _)| id.clone())
                .chain(h.running.iter().cloned())
        })
        .collect();
    let seen = lookout
        .wait_seen(&expected, started_at_us, None, Duration::from_secs(15))
        .await;
    pool.note_seen(&lookout.hub.agents());
    let stale = lookout.hub.agents();
    lookout.stop().await;
    let missing: Vec<&String> = expected.iter().filter(|id| !seen.contains(id)).collect();
    if !missing.is_empty() {
        eprintln!(
            "pool {}: {} agent(s) did not dial in to {} within 15s: {} (their logs are in {}/pools/{}/ on the hosts)",
            pool.name(),
            missing.len(),
            pool.record.listen,
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            pool.record.remote_dir,
            pool.name()
        );
    }
    for id in &seen {
        if let Some(s) = stale.get(id)
            && s.hello.binary_hash != binary.hash
        {
            eprintln!(
                "pool {}: agent {id} runs agent binary {}, not the local {}: `coordinator pool upgrade {}`",
                pool.name(),
                hub::short(&s.hello.binary_hash),
                hub::short(&binary.hash),
                pool.name()
            );
        }
    }
    missing.is_empty()
}

/// Ships the agent binary to one host and starts each of `agents` (id,
/// secret) there that is not running already.
async fn up_host(
    host: &OnHost,
    fingerprint: &str,
    agents: &[(String, String)],
) -> Result<HostUp, BootstrapError> {
    host.in_session(async |session| {
        let (target, record, bar) = (&host.target, &host.pool.record, &host.bar);
        let pool = record.name.as_str();
        let dir = remote_path(&record.remote_dir);
        let shipped = bootstrap::ship(
            session,
            &dir,
            "agent",
            &host.pool.binary,
            bar,
            &host.pool.timeouts,
        )
        .await
        .map_err(|(step, reason)| host.failed(step, reason))?;
        let coordinator = record.advertise.clone().unwrap_or_else(|| {
            SocketAddr::new(session.local_addr.ip(), record.listen.port()).to_string()
        });
        bar.set_message(format!("{target}: starting pool agents"));
        let mut up = HostUp {
            started: Vec::new(),
            running: Vec::new(),
            reused_binary: shipped.reused,
            uploaded: shipped.uploaded,
        };
        for (id, secret) in agents {
            let p = agent_paths(&record.remote_dir, pool, id);
            // Running already (any binary): left alone; else credentials
            // through stdin into a 0600 file, then started detached.
            let script = format!(
                "set -e; umask 077; mkdir -p {dir}; {find}\
                 if [ -n \"$pids\" ]; then cat >/dev/null; echo running; exit 0; fi; \
                 cat > {creds}; {start}",
                dir = p.dir,
                find = find_agents_sh(&p.creds),
                creds = p.creds,
                start = start_agent_sh(
                    &shipped.path,
                    &p.creds,
                    &p.log,
                    &format!("{}ms", record.lease_ms)
                ),
            );
            let creds = fleetbench::credentials::Credentials {
                coordinator: coordinator.clone(),
                fingerprint: fingerprint.to_string(),
                agent_id: id.clone(),
                secret: secret.clone(),
                run_id: String::new(),
                pool: pool.to_string(),
            }
            .to_json();
            let out = exec(
                session,
                Step::Start,
                &script,
                Some(creds.as_bytes()),
                host.pool.timeouts.start,
            )
            .await?;
            let said = out.stdout_text();
            if said == "running" {
                up.running.push(id.clone());
            } else {
                let pid = said.parse::<u32>().map_err(|_| {
                    host.failed(Step::Start, format!("starting agent {id}: said {said:?}"))
                })?;
                up.started.push((id.clone(), pid));
            }
        }
        Ok(up)
    })
    .await
}

/// `--hosts` values: `user@host[:port]`, or files listing one per line
/// (blank lines and `#` comments skipped).
fn parse_hosts(args: &[String]) -> Result<Vec<Target>> {
    let mut hosts: Vec<Target> = Vec::new();
    let mut add = |s: &str, from: &str| -> Result<()> {
        let t: Target = s
            .parse()
            .map_err(|e| anyhow!("{from}host {s:?}: {e}; write it like bench@10.0.0.11"))?;
        if !hosts.contains(&t) {
            hosts.push(t);
        }
        Ok(())
    };
    for a in args {
        let path = Path::new(a);
        if !a.contains('@') && path.is_file() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading hosts file {}", path.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if !line.is_empty() {
                    add(line, &format!("{}:{}: ", path.display(), n + 1))?;
                }
            }
        } else {
            add(a, "")?;
        }
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::parse_hosts;

    #[test]
    fn a_host_listed_twice_is_one_host() {
        let hosts = parse_hosts(&["bench@10.0.0.1".into(), "bench@10.0.0.1".into()]).unwrap();
        assert_eq!(hosts.len(), 1, "a host listed twice is one host");
    }
}
