//! Long-lived agent pools: agents bootstrapped once that stay up between
//! runs, so that a run needs no SSH at all.
//!
//! A pool lives in `DATA/pools/NAME/`:
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
//! On a host, a pool agent's files are `REMOTE/pools/NAME/<id>.creds` (0600)
//! and `<id>.log`, beside the content-addressed `REMOTE/bin/agent-<sha256>`
//! that runs too use. Pool agents dial the pool's fixed port; every
//! coordinator process that serves the pool (a run using it, `pool ls`,
//! `pool up`, `pool upgrade`) listens there with the one TLS identity of
//! `DATA/tls`, holding the `holder` lock, so one process at a time serves a
//! pool and two runs never hold the same agent.
//!
//! This module owns the pool commands and the record; the agents' side of a
//! pool is in the agent's `link`, the admission rules in `hub`, and a run
//! that takes its agents from a pool in `run`.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::hosts::bootstrap::{
    self, AgentBinary, BootstrapError, Step, Timeouts, remote_path, sh_quote,
};
use crate::hosts::fleet;
use crate::hosts::ssh::{self, Target};
use crate::hub::{self, AgentState, Hub};
use crate::log::EventLog;
use crate::trust::{self, Trust};

/// Where a pool listens unless `pool up --listen` says otherwise.
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:7717";
/// A pool agent stops its load after this long without its coordinator.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(5);
/// Hosts upgraded at once unless `--parallel` says otherwise.
pub(crate) const UPGRADE_PARALLEL: usize = 2;

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

fn check_name(name: &str) -> Result<()> {
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
    fn hosts(&self) -> Result<Vec<Target>> {
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

    fn members_on(&self, host: &Target) -> Vec<&Member> {
        let shown = host.to_string();
        self.record
            .agents
            .iter()
            .filter(|m| m.host.as_deref() == Some(shown.as_str()))
            .collect()
    }

    /// Each host's members, owned (for the per-host tasks), by host name.
    fn members_by_host(&self, hosts: &[Target]) -> BTreeMap<String, Vec<Member>> {
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

    fn lease(&self) -> String {
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

/// A coordinator that serves a pool's port only to see who dials in: it
/// checks each agent's secret, notes its Hello, and sends it away to dial
/// again (`Hub::look_only`). For `pool ls`, `pool up` and `pool upgrade`.
pub(crate) struct Lookout {
    pub hub: Arc<Hub>,
    tmp: PathBuf,
    server: hub::Serving,
    writer_stop: CancellationToken,
    writer: tokio::task::JoinHandle<()>,
}

impl Lookout {
    pub(crate) async fn start(data_dir: &Path, pool: &Pool, trust: &Trust) -> Result<Lookout> {
        let listener = bind(&pool.record).await?;
        // The hub needs a log; this one holds refusals only and is thrown away.
        let id = uuid::Uuid::now_v7().to_string();
        let tmp = data_dir.join("tmp").join(format!("pool-look-{id}"));
        let log = EventLog::open(&tmp, &id)?;
        let writer_stop = CancellationToken::new();
        let (hub, writer) = Hub::start(id, log, writer_stop.clone());
        hub.look_only();
        for (id, secret) in &pool.secrets {
            hub.admit_pool(id.clone(), secret.clone());
        }
        let server = hub::Serving::start(hub.clone(), trust.server_config(), listener);
        Ok(Lookout {
            hub,
            tmp,
            server,
            writer_stop,
            writer,
        })
    }

    /// Waits until each of `ids` has been seen since `since_us` (and, with
    /// `hash`, on that binary), or `timeout`; returns those seen.
    pub(crate) async fn wait_seen(
        &self,
        ids: &[String],
        since_us: i64,
        hash: Option<&str>,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let states = self.hub.agents();
            let seen: Vec<String> = ids
                .iter()
                .filter(|id| {
                    states.get(*id).is_some_and(|s| {
                        s.seen_at_us >= since_us && hash.is_none_or(|h| s.hello.binary_hash == h)
                    })
                })
                .cloned()
                .collect();
            if seen.len() == ids.len() || tokio::time::Instant::now() >= deadline {
                return seen;
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(100), self.hub.changed.notified()).await;
        }
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
        self.writer_stop.cancel();
        let _ = self.writer.await;
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// The agent binary to ship, hashed.
async fn local_agent(flag: Option<&Path>) -> Result<AgentBinary> {
    let path = crate::run::find_agent_binary(flag).map_err(crate::run::BadInput)?;
    let hash = {
        let p = path.clone();
        tokio::task::spawn_blocking(move || fleetbench::binary::file_hash(&p))
            .await?
            .with_context(|| format!("hashing agent binary {}", path.display()))?
    };
    let size = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    Ok(AgentBinary {
        path,
        hash,
        size,
        arch: std::env::consts::ARCH.to_string(),
    })
}

fn load_trust(data_dir: &Path) -> Result<Trust> {
    Trust::load_or_create(data_dir).with_context(|| {
        format!(
            "loading the coordinator's TLS identity from {}",
            data_dir.join("tls").display()
        )
    })
}

/// `k=v,k2=v2` -> a map.
pub(crate) fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("label {pair:?} is not key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("label {pair:?} has an empty key"));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
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

/// Finds the agents started with the credentials file `creds` (a shell
/// word), or with any under the directory `creds` when it ends in `/`, on a
/// host: a shell snippet setting `$pids`.
fn find_agents_sh(creds: &str) -> String {
    let end = if creds.ends_with('/') { "" } else { " " };
    format!(
        "pids=''; pat={creds}; for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null) || continue; \
         case \"$c\" in *\" attach --credentials $pat{end}\"*) pids=\"$pids ${{p#/proc/}}\";; esac; done; "
    )
}

/// Stops the processes in `$pids` (TERM, then KILL after 5 s).
const STOP_PIDS_SH: &str = "if [ -n \"$pids\" ]; then kill $pids 2>/dev/null; i=0; \
     while [ $i -lt 50 ]; do alive=''; for p in $pids; do [ -d /proc/$p ] && alive=\"$alive $p\"; done; \
     [ -z \"$alive\" ] && break; sleep 0.1; i=$((i+1)); done; \
     [ -n \"$alive\" ] && kill -9 $alive 2>/dev/null; fi; ";

/// Starts an agent detached: the last command of a script, printing its pid.
fn start_agent_sh(bin: &str, creds: &str, log: &str, lease: &str) -> String {
    format!(
        "if command -v setsid >/dev/null 2>&1; then d=setsid; else d=nohup; fi; \
         $d {bin} attach --credentials {creds} --lease {lease} </dev/null >{log} 2>&1 & echo $!"
    )
}

/// Paths of one pool agent on a host, as shell words.
struct AgentPaths {
    dir: String,
    creds: String,
    log: String,
}

fn agent_paths(remote_dir: &str, pool: &str, id: &str) -> AgentPaths {
    let dir = format!("{}/pools/{}", remote_path(remote_dir), sh_quote(pool));
    AgentPaths {
        creds: format!("{dir}/{}.creds", sh_quote(id)),
        log: format!("{dir}/{}.log", sh_quote(id)),
        dir,
    }
}

fn binary_path(remote_dir: &str, hash: &str) -> String {
    format!("{}/bin/agent-{hash}", remote_path(remote_dir))
}

fn step_failed(host: &Target, step: Step, reason: String) -> BootstrapError {
    BootstrapError {
        host: host.to_string(),
        step,
        reason,
    }
}

async fn exec(
    session: &ssh::Session,
    step: Step,
    script: &str,
    stdin: Option<&[u8]>,
    limit: Duration,
) -> Result<ssh::Output, BootstrapError> {
    let mut input: &[u8] = stdin.unwrap_or_default();
    let reader: Option<&mut (dyn tokio::io::AsyncRead + Unpin + Send)> = if stdin.is_some() {
        Some(&mut input)
    } else {
        None
    };
    let run = session.exec(script, reader);
    let out = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| {
            step_failed(
                &session.target,
                step,
                format!("timed out after {:.0}s", limit.as_secs_f64()),
            )
        })?
        .map_err(|e| step_failed(&session.target, step, e.to_string()))?;
    if !out.success() {
        return Err(step_failed(
            &session.target,
            step,
            format!("exit {:?}: {}", out.status, out.stderr_text()),
        ));
    }
    Ok(out)
}

// ------------------------------------------------------------------ pool up

pub(crate) struct UpArgs {
    pub name: String,
    pub hosts: Vec<String>,
    pub per_host: u32,
    pub labels: BTreeMap<String, String>,
    pub identity: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub accept_new_host_keys: bool,
    pub listen: Option<SocketAddr>,
    pub advertise: Option<String>,
    pub remote_dir: Option<String>,
    pub lease: Option<Duration>,
    pub agent_binary: Option<PathBuf>,
}

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
    check_name(&args.name).map_err(crate::run::BadInput)?;
    if !(1..=256).contains(&args.per_host) {
        return Err(crate::run::BadInput(anyhow!(
            "--per-host must be between 1 and 256, not {}",
            args.per_host
        ))
        .into());
    }
    let targets = parse_hosts(&args.hosts).map_err(crate::run::BadInput)?;
    let mut pool = match Pool::load(data_dir, &args.name) {
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
    };
    {
        // Settings that running agents already depend on cannot change here.
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
            return Err(crate::run::BadInput(fixed("--listen", r.listen.to_string())).into());
        }
        if let Some(d) = &args.remote_dir
            && d != &r.remote_dir
        {
            return Err(crate::run::BadInput(fixed("--remote-dir", r.remote_dir.clone())).into());
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
    }
    let _holder = pool.hold("pool up")?;
    let trust = load_trust(data_dir)?;
    let binary = local_agent(args.agent_binary.as_deref()).await?;

    // Members: new ones get a secret; existing ones keep theirs.
    for t in &targets {
        for i in 1..=args.per_host {
            let id = crate::run::remote_agent_id(t, i);
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
    // Serve the port while agents start, to see them dial in.
    let lookout = Lookout::start(data_dir, &pool, &trust).await?;
    let started_at_us = fleetbench::clock::now_us();
    let ssh = pool.ssh_options(args.accept_new_host_keys);
    let timeouts = Timeouts::default();
    let per_host = args.per_host;
    let results = {
        let pool_name = pool.name().to_string();
        let record = pool.record.clone();
        let secrets = pool.secrets.clone();
        let fingerprint = trust.fingerprint().to_string();
        let binary = binary.clone();
        fleet::each_host(targets.clone(), fleet::PARALLEL, move |target, bar| {
            let agents: Vec<(String, String)> = (1..=per_host)
                .map(|i| {
                    let id = crate::run::remote_agent_id(&target, i);
                    let secret = secrets.get(&id).cloned().unwrap_or_default();
                    (id, secret)
                })
                .collect();
            let (pool_name, record, fingerprint, binary, ssh, timeouts) = (
                pool_name.clone(),
                record.clone(),
                fingerprint.clone(),
                binary.clone(),
                ssh.clone(),
                timeouts.clone(),
            );
            async move {
                up_host(
                    &target,
                    &ssh,
                    &timeouts,
                    &binary,
                    &bar,
                    &pool_name,
                    &record,
                    &fingerprint,
                    &agents,
                )
                .await
            }
        })
        .await
    };
    let mut ok = true;
    let mut started_ids = Vec::new();
    let mut failed_hosts = Vec::new();
    for (target, result) in &results {
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
    // A host that failed its first `pool up` is not part of the pool.
    pool.record.agents.retain(|m| {
        !(m.binary_hash.is_none() && m.host.as_ref().is_some_and(|h| failed_hosts.contains(h)))
    });
    let members: Vec<String> = pool.record.agents.iter().map(|m| m.id.clone()).collect();
    pool.secrets.retain(|id, _| members.contains(id));
    pool.save()?;
    // The agents started now must dial in; so should those already running.
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
        ok = false;
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

#[allow(clippy::too_many_arguments)]
async fn up_host(
    target: &Target,
    ssh: &ssh::Options,
    timeouts: &Timeouts,
    binary: &AgentBinary,
    bar: &indicatif::ProgressBar,
    pool: &str,
    record: &Record,
    fingerprint: &str,
    agents: &[(String, String)],
) -> Result<HostUp, BootstrapError> {
    let session = bootstrap::open(target, ssh, timeouts, binary, bar).await?;
    let result = async {
        let dir = remote_path(&record.remote_dir);
        let shipped = bootstrap::ship(&session, &dir, "agent", binary, bar, timeouts)
            .await
            .map_err(|(step, reason)| step_failed(target, step, reason))?;
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
                &session,
                Step::Start,
                &script,
                Some(creds.as_bytes()),
                timeouts.start,
            )
            .await?;
            let said = out.stdout_text();
            if said == "running" {
                up.running.push(id.clone());
            } else {
                let pid = said.parse::<u32>().map_err(|_| {
                    step_failed(
                        target,
                        Step::Start,
                        format!("starting agent {id}: said {said:?}"),
                    )
                })?;
                up.started.push((id.clone(), pid));
            }
        }
        Ok(up)
    }
    .await;
    session.close().await;
    result
}

// ------------------------------------------------------------------ pool ls

/// `coordinator pool ls [NAME]`. When no coordinator serves a pool, it
/// serves the pool's port for up to `wait` (pool agents dial at least once a
/// second) to see who is up; when one does (a run), it shows what that
/// coordinator last recorded.
pub(crate) async fn ls(data_dir: &Path, name: Option<&str>, wait: Duration) -> Result<()> {
    let names = match name {
        Some(n) => vec![n.to_string()],
        None => Pool::names(data_dir)?,
    };
    if names.is_empty() {
        println!(
            "no pools in {} (make one with `coordinator pool up NAME --hosts ...`)",
            pools_dir(data_dir).display()
        );
        return Ok(());
    }
    let local_hash = match local_agent(None).await {
        Ok(b) => Some(b.hash),
        Err(_) => None,
    };
    let trust = load_trust(data_dir)?;
    for name in names {
        let pool = Pool::load(data_dir, &name).map_err(crate::run::BadInput)?;
        let (live, held_by) = match pool.hold("pool ls") {
            Ok(holder) => {
                let lookout = Lookout::start(data_dir, &pool, &trust).await?;
                let ids: Vec<String> = pool.record.agents.iter().map(|m| m.id.clone()).collect();
                let since = fleetbench::clock::now_us();
                lookout.wait_seen(&ids, since, None, wait).await;
                let states = lookout.hub.agents();
                pool.note_seen(&states);
                lookout.stop().await;
                drop(holder);
                (Some((states, since)), None)
            }
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        println!(
            "pool {} (listens on {}, {} agent(s), lease {})",
            pool.name(),
            pool.record.listen,
            pool.record.agents.len(),
            pool.lease()
        );
        if let Some(why) = held_by {
            println!("  {why}; showing the agents as last seen");
        }
        let seen = pool.seen();
        let now = fleetbench::clock::now_us();
        println!(
            "  {:<32} {:<24} {:<16} {:<10} {:<20} {:<10} {:>10} {:>10}",
            "agent", "host", "labels", "version", "binary", "state", "last seen", "uptime"
        );
        for m in &pool.record.agents {
            let s = seen.get(&m.id);
            let state = match &live {
                Some((states, since)) => {
                    if states.get(&m.id).is_some_and(|s| s.seen_at_us >= *since) {
                        "attached"
                    } else {
                        "not seen"
                    }
                }
                None => "?",
            };
            let hash = s
                .map(|s| s.binary_hash.as_str())
                .or(m.binary_hash.as_deref());
            let binary = match (hash, &local_hash) {
                (Some(h), Some(l)) if h != l => format!("{} STALE", hub::short(h)),
                (Some(h), _) => hub::short(h).to_string(),
                (None, _) => "-".into(),
            };
            let ago = |us: i64| age((now - us).max(0));
            println!(
                "  {:<32} {:<24} {:<16} {:<10} {:<20} {:<10} {:>10} {:>10}",
                m.id,
                m.host.as_deref().unwrap_or("(enrolled)"),
                show_labels(&m.labels),
                s.map_or("-", |s| s.agent_version.as_str()),
                binary,
                state,
                s.map_or_else(|| "never".into(), |s| format!("{} ago", ago(s.seen_at_us))),
                s.filter(|s| s.started_at_us > 0)
                    .map_or_else(|| "-".into(), |s| ago(s.started_at_us)),
            );
        }
    }
    Ok(())
}

/// A span of time as people say it: 850ms, 42s, 16m45s, 3h02m, 5d04h.
fn age(us: i64) -> String {
    let s = us / 1_000_000;
    match s {
        0 => format!("{}ms", us / 1000),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

// ------------------------------------------------------------- pool upgrade

/// `coordinator pool upgrade NAME`: replaces agents whose binary differs
/// from the local one, host by host (at most `parallel` at once): upload,
/// stop the old agents, start the new binary with the same credentials, and
/// wait until each dials in on the new binary. A host where any of that
/// fails gets its old agents back and is reported. Returns false if a host
/// failed.
pub(crate) async fn upgrade(
    data_dir: &Path,
    name: &str,
    parallel: usize,
    agent_binary: Option<&Path>,
    accept_new_host_keys: bool,
) -> Result<bool> {
    let mut pool = Pool::load(data_dir, name).map_err(crate::run::BadInput)?;
    let _holder = pool.hold("pool upgrade")?;
    let trust = load_trust(data_dir)?;
    let binary = local_agent(agent_binary).await?;
    let hosts: Vec<Target> = pool
        .hosts()?
        .into_iter()
        .filter(|h| {
            pool.members_on(h)
                .iter()
                .any(|m| m.binary_hash.as_deref() != Some(binary.hash.as_str()))
        })
        .collect();
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
        parallel.max(1)
    );
    let lookout = Arc::new(Lookout::start(data_dir, &pool, &trust).await?);
    let ssh = pool.ssh_options(accept_new_host_keys);
    let results = {
        let record = pool.record.clone();
        let binary = binary.clone();
        let lookout = lookout.clone();
        let members = pool.members_by_host(&hosts);
        fleet::each_host(hosts.clone(), parallel, move |target, bar| {
            let (record, binary, lookout, ssh) =
                (record.clone(), binary.clone(), lookout.clone(), ssh.clone());
            let members = members.get(&target.to_string()).cloned().unwrap_or_default();
            async move {
                upgrade_host(&target, &ssh, &binary, &bar, &record, &members, &lookout).await
            }
        })
        .await
    };
    let mut ok = true;
    for (target, result) in &results {
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

async fn upgrade_host(
    target: &Target,
    ssh: &ssh::Options,
    binary: &AgentBinary,
    bar: &indicatif::ProgressBar,
    record: &Record,
    members: &[Member],
    lookout: &Lookout,
) -> Result<String, BootstrapError> {
    let timeouts = Timeouts::default();
    let started = Instant::now();
    let session = bootstrap::open(target, ssh, &timeouts, binary, bar).await?;
    let result = async {
        let dir = remote_path(&record.remote_dir);
        let shipped = bootstrap::ship(&session, &dir, "agent", binary, bar, &timeouts)
            .await
            .map_err(|(step, reason)| step_failed(target, step, reason))?;
        eprintln!(
            "{target}: {}",
            if shipped.reused {
                "new agent binary already there".to_string()
            } else {
                format!("uploaded the new agent binary ({} bytes)", shipped.uploaded)
            }
        );
        bar.set_message(format!("{target}: restarting agents"));
        let lease = format!("{}ms", record.lease_ms);
        let restart = |bin: String| {
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
        };
        let since = fleetbench::clock::now_us();
        exec(&session, Step::Start, &restart(shipped.path.clone()), None, timeouts.start).await?;
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
                    &session,
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
            return Err(step_failed(
                target,
                Step::Start,
                format!(
                    "{} did not dial in on the new binary within 15s{back}",
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        // The old binary is no longer used by this pool's agents here.
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
            let _ = exec(&session, Step::Start, &format!("rm -f {}", rm.join(" ")), None, timeouts.start).await;
        }
        Ok(format!(
            "{} agent(s) restarted on agent {} and dialed in ({:.1}s)",
            members.len(),
            hub::short(&binary.hash),
            started.elapsed().as_secs_f64()
        ))
    }
    .await;
    session.close().await;
    result
}

// ---------------------------------------------------------------- pool down

/// `coordinator pool down NAME`: stops the pool's agents on every host and
/// removes what fleetbench put there (credentials, logs, the agent binary,
/// and `remote_dir` itself once empty), then the pool's record. A host that
/// fails is reported and stays in the record (run it again). Returns false
/// if a host failed.
pub(crate) async fn down(data_dir: &Path, name: &str, accept_new_host_keys: bool) -> Result<bool> {
    let mut pool = Pool::load(data_dir, name).map_err(crate::run::BadInput)?;
    let holder = pool.hold("pool down")?;
    let binary = local_agent(None).await?;
    let hosts = pool.hosts()?;
    let ssh = pool.ssh_options(accept_new_host_keys);
    let results = {
        let record = pool.record.clone();
        let binary = binary.clone();
        let members = pool.members_by_host(&hosts);
        fleet::each_host(hosts.clone(), fleet::PARALLEL, move |target, bar| {
            let (record, binary, ssh) = (record.clone(), binary.clone(), ssh.clone());
            let members = members
                .get(&target.to_string())
                .cloned()
                .unwrap_or_default();
            async move { down_host(&target, &ssh, &binary, &bar, &record, &members).await }
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
    }
    Ok(ok)
}

async fn down_host(
    target: &Target,
    ssh: &ssh::Options,
    binary: &AgentBinary,
    bar: &indicatif::ProgressBar,
    record: &Record,
    members: &[Member],
) -> Result<usize, BootstrapError> {
    let timeouts = Timeouts::default();
    let session = bootstrap::open(target, ssh, &timeouts, binary, bar).await?;
    let result = async {
        bar.set_message(format!("{target}: stopping agents"));
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
        let out = exec(&session, Step::Start, &script, None, Duration::from_secs(30)).await?;
        Ok(out.stdout_text().trim().parse().unwrap_or(0))
    }
    .await;
    session.close().await;
    result
}

// ------------------------------------------------------------------- enroll

pub(crate) struct EnrollArgs {
    pub name: String,
    pub id: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub advertise: Option<String>,
    pub output: Option<PathBuf>,
}

/// `coordinator enroll NAME`: admits a new agent to the pool (a fresh id and
/// secret in the record) and writes the credentials file it needs, for an
/// agent started by something else (Kubernetes, systemd, cloud-init).
pub(crate) async fn enroll(data_dir: &Path, args: EnrollArgs) -> Result<()> {
    let mut pool = Pool::load(data_dir, &args.name).map_err(crate::run::BadInput)?;
    let trust = load_trust(data_dir)?;
    let id = match &args.id {
        Some(id) => {
            if id.is_empty()
                || id.len() > 200
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:@#".contains(&b))
            {
                return Err(crate::run::BadInput(anyhow!(
                    "agent id {id:?}: 1 to 200 letters, digits or ._-:@#"
                ))
                .into());
            }
            if pool.record.agents.iter().any(|m| &m.id == id) {
                return Err(crate::run::BadInput(anyhow!(
                    "pool {}: agent {id} exists already",
                    args.name
                ))
                .into());
            }
            id.clone()
        }
        None => (1..)
            .map(|n| format!("enrolled-{n}"))
            .find(|id| !pool.record.agents.iter().any(|m| &m.id == id))
            .expect("some number is free"),
    };
    let coordinator = match args.advertise.clone().or(pool.record.advertise.clone()) {
        Some(a) => a,
        None if !pool.record.listen.ip().is_unspecified() => pool.record.listen.to_string(),
        None => {
            return Err(crate::run::BadInput(anyhow!(
                "pool {} listens on {}: pass --advertise HOST:{}, the address the agent reaches this machine at",
                args.name,
                pool.record.listen,
                pool.record.listen.port()
            ))
            .into());
        }
    };
    let secret = trust::new_secret()?;
    let creds = fleetbench::credentials::Credentials {
        coordinator: coordinator.clone(),
        fingerprint: trust.fingerprint().to_string(),
        agent_id: id.clone(),
        secret: secret.clone(),
        run_id: String::new(),
        pool: args.name.clone(),
    };
    if let Some(path) = &args.output {
        trust::write_private(path, &creds.to_json())
            .with_context(|| format!("writing the credentials of agent {id}"))?;
    }
    pool.record.agents.push(Member {
        id: id.clone(),
        host: None,
        labels: args.labels.clone(),
        binary_hash: None,
    });
    pool.secrets.insert(id.clone(), secret);
    pool.save()?;
    match &args.output {
        Some(path) => {
            eprintln!(
                "agent {id} enrolled in pool {}; its credentials are in {} (mode 0600).\n\
                 Start it where it runs with:\n  agent attach --credentials {}\n\
                 (it dials {coordinator}, pinned to certificate {})",
                args.name,
                path.display(),
                path.display(),
                hub::short(trust.fingerprint())
            );
        }
        None => {
            println!("{}", creds.to_json());
            eprintln!(
                "agent {id} enrolled in pool {}: put the line above in a file only its user can read (chmod 600) and run `agent attach --credentials FILE`",
                args.name
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_hosts_parse_and_ages_read_well() {
        let l = parse_labels("zone=a, tier=big").unwrap();
        assert_eq!(l["zone"], "a");
        assert_eq!(l["tier"], "big");
        assert!(parse_labels("zone").unwrap_err().contains("key=value"));
        assert!(parse_labels("=a").unwrap_err().contains("empty key"));
        assert!(parse_labels("").unwrap().is_empty());
        let hosts = parse_hosts(&["bench@10.0.0.1".into(), "bench@10.0.0.1".into()]).unwrap();
        assert_eq!(hosts.len(), 1, "a host listed twice is one host");
        assert_eq!(age(850_000), "850ms");
        assert_eq!(age(42_000_000), "42s");
        assert_eq!(age(1_005_000_000), "16m45s");
        assert_eq!(age(10_920_000_000), "3h02m");
    }

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
