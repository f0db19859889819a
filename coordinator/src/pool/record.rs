//! A pool's record in `DATA/pools/NAME/` and its holder lock.
//!
//! ```text
//! pool.json     the record: listen address (a fixed port), advertise, remote_dir,
//!               ssh identity and known_hosts, lease, and each agent: id, host,
//!               labels, the agent binary hash started there
//! secrets.json  agent id -> secret (0600)
//! seen.json     each agent's last Hello as a coordinator saw it (for `pool ls`)
//! holder        lock file: whoever serves the pool holds an flock on it and
//!               writes who they are ("run <id>", "pool ls", ...)
//! ```
//!
//! Every coordinator process that serves the pool (a run using it, `pool
//! ls`, `pool up`, `pool upgrade`) binds the pool's fixed port here and holds
//! the `holder` lock, so one process at a time serves a pool and two runs
//! never hold the same agent.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::hosts::ssh::{self, Target};
use crate::hub::AgentState;

/// Where a pool listens unless `pool up --listen` says otherwise.
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:7717";
/// A pool agent stops its load after this long without its coordinator.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(5);

/// `DATA/pools/NAME/pool.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    pub name: String,
    /// The fixed address every coordinator serving the pool listens on.
    pub listen: SocketAddr,
    /// host:port agents dial; None: per host, the address our SSH
    /// connection came from, with the listen port.
    #[serde(default)]
    pub advertise: Option<String>,
    pub remote_dir: String,
    #[serde(default)]
    pub identity: Option<PathBuf>,
    pub known_hosts: PathBuf,
    /// Agents stop load after this long without a coordinator (ms).
    pub lease_ms: u64,
    pub agents: Vec<Member>,
}

/// One agent of a pool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Member {
    pub id: String,
    /// `user@host[:port]` for an agent `pool up` started; None for one
    /// enrolled (started by something else).
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Hash of the agent binary started on the host (None: enrolled).
    #[serde(default)]
    pub binary_hash: Option<String>,
}

/// An agent's last Hello as a coordinator serving the pool saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Seen {
    pub hostname: String,
    pub agent_version: String,
    pub binary_hash: String,
    pub started_at_us: i64,
    pub seen_at_us: i64,
    pub peer: String,
}

/// A pool on disk.
pub(crate) struct Pool {
    pub dir: PathBuf,
    pub record: Record,
    /// Agent id -> secret.
    pub secrets: BTreeMap<String, String>,
}

pub(crate) fn pools_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pools")
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    if !fleetbench_workload::valid_pool_name(name) {
        bail!(
            "{name:?} is not a pool name: 1 to 64 letters, digits, '.', '-' or '_', not starting with '.'"
        );
    }
    Ok(())
}

impl Pool {
    /// Reads pool `name`; a missing one is named with the command that makes it.
    pub(crate) fn load(data_dir: &Path, name: &str) -> Result<Pool> {
        check_name(name)?;
        let dir = pools_dir(data_dir).join(name);
        let path = dir.join("pool.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "there is no pool {name:?} in {} (make it with `coordinator pool up {name} --hosts ...`)",
                pools_dir(data_dir).display()
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let record: Record = serde_json::from_str(&text)
            .with_context(|| format!("pool {name}: {} is not valid", path.display()))?;
        let secrets_path = dir.join("secrets.json");
        let secrets = match std::fs::read_to_string(&secrets_path) {
            Ok(t) => serde_json::from_str(&t)
                .with_context(|| format!("pool {name}: {} is not valid", secrets_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", secrets_path.display())),
        };
        Ok(Pool {
            dir,
            record,
            secrets,
        })
    }

    /// Every pool's name, sorted.
    pub(crate) fn names(data_dir: &Path) -> Result<Vec<String>> {
        let dir = pools_dir(data_dir);
        let mut names = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    if e.path().join("pool.json").is_file() {
                        names.push(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        }
        names.sort();
        Ok(names)
    }

    /// Writes the record and the secrets (0600), each replaced whole.
    pub(crate) fn save(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let record = serde_json::to_string_pretty(&self.record).expect("record serializes");
        replace_file(&self.dir.join("pool.json"), &record, 0o644)?;
        let secrets = serde_json::to_string_pretty(&self.secrets).expect("secrets serialize");
        replace_file(&self.dir.join("secrets.json"), &secrets, 0o600)
    }

    pub(crate) fn name(&self) -> &str {
        &self.record.name
    }

    pub(crate) fn seen(&self) -> BTreeMap<String, Seen> {
        std::fs::read_to_string(self.dir.join("seen.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Notes the Hellos a coordinator serving the pool saw.
    pub(crate) fn note_seen(&self, states: &BTreeMap<String, AgentState>) {
        let mut seen = self.seen();
        for (id, s) in states {
            if s.seen_at_us == 0 || !self.record.agents.iter().any(|m| &m.id == id) {
                continue;
            }
            seen.insert(
                id.clone(),
                Seen {
                    hostname: s.hello.hostname.clone(),
                    agent_version: s.hello.agent_version.clone(),
                    binary_hash: s.hello.binary_hash.clone(),
                    started_at_us: s.hello.started_at_us,
                    seen_at_us: s.seen_at_us,
                    peer: s.peer.clone(),
                },
            );
        }
        let text = serde_json::to_string_pretty(&seen).expect("seen serializes");
        if let Err(e) = replace_file(&self.dir.join("seen.json"), &text, 0o644) {
            tracing::warn!("pool {}: {e:#}", self.name());
        }
    }

    pub(crate) fn ssh_options(&self, accept_new_host_keys: bool) -> ssh::Options {
        ssh::Options {
            identity: self.record.identity.clone(),
            known_hosts: self.record.known_hosts.clone(),
            accept_new_host_keys,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Members carrying every one of `labels`.
    pub(crate) fn matching(&self, labels: &BTreeMap<String, String>) -> Vec<&Member> {
        self.record
            .agents
            .iter()
            .filter(|m| labels.iter().all(|(k, v)| m.labels.get(k) == Some(v)))
            .collect()
    }

    /// The hosts of members started over SSH, each once, in record order.
    pub(crate) fn hosts(&self) -> Result<Vec<Target>> {
        let mut hosts: Vec<Target> = Vec::new();
        for m in &self.record.agents {
            if let Some(h) = &m.host {
                let t: Target = h
                    .parse()
                    .map_err(|e| anyhow!("pool {}: agent {}: host {e}", self.name(), m.id))?;
                if !hosts.contains(&t) {
                    hosts.push(t);
                }
            }
        }
        Ok(hosts)
    }

    pub(crate) fn members_on(&self, host: &Target) -> Vec<&Member> {
        let shown = host.to_string();
        self.record
            .agents
            .iter()
            .filter(|m| m.host.as_deref() == Some(shown.as_str()))
            .collect()
    }

    /// Each host's members, owned (for the per-host tasks), by host name.
    pub(crate) fn members_by_host(&self, hosts: &[Target]) -> BTreeMap<String, Vec<Member>> {
        hosts
            .iter()
            .map(|h| {
                (
                    h.to_string(),
                    self.members_on(h).into_iter().cloned().collect(),
                )
            })
            .collect()
    }

    pub(crate) fn lease(&self) -> String {
        format!("{:?}", Duration::from_millis(self.record.lease_ms))
    }

    /// Takes the pool's holder lock (see the module doc).
    pub(crate) fn hold(&self, who: &str) -> Result<Holder> {
        hold(&self.dir, self.name(), who)
    }
}

/// Writes `text` to a temporary file with `mode` and renames it over `path`.
fn replace_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

/// Whoever serves a pool holds this (an flock, released when dropped or when
/// the process dies, even by SIGKILL).
pub(crate) struct Holder {
    _file: std::fs::File,
}

fn hold(dir: &Path, name: &str, who: &str) -> Result<Holder> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("holder");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)
                .and_then(|()| {
                    file.write_all(format!("{who} (pid {})", std::process::id()).as_bytes())
                })
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(Holder { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!(
                "pool {name} is held by {}: one coordinator at a time serves a pool's agents; wait until it ends",
                holder.trim()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Binds the pool's fixed address.
pub(crate) async fn bind(record: &Record) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(record.listen)
        .await
        .with_context(|| {
            format!(
                "pool {}: binding its address {} (is something else listening there?)",
                record.name, record.listen
            )
        })
}

#[cfg(test)]
mod tests {
    use super::hold;

    #[test]
    fn the_holder_lock_names_who_holds_it() {
        let dir =
            std::env::temp_dir().join(format!("fleetbench-pool-hold-{}", uuid::Uuid::now_v7()));
        let first = hold(&dir, "p", "run r1").unwrap();
        let e = hold(&dir, "p", "run r2").err().unwrap().to_string();
        assert!(e.contains("pool p is held by run r1 (pid"), "{e}");
        drop(first);
        let again = hold(&dir, "p", "pool ls");
        assert!(again.is_ok(), "released when dropped");
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
