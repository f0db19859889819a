//! Services on SSH hosts: shipped like the agent (`{agent}` or `binary`,
//! content-addressed), started detached with `setsid` (output to a log file
//! on the host), checked for readiness from the coordinator, watched while
//! the run runs (the host is asked each second whether the process lives),
//! and at the end stopped (TERM, then KILL) with the tail of their output
//! logged, unless `keep`.
//!
//! Before a service starts on a host, the port its readiness checks must
//! not answer yet; when it does, the process holding it is read from the
//! host's /proc through the shell and named, and the run is refused.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleetbench::pb;
use fleetbench_workload::{Command, Ready, Service};
use tokio::task::JoinHandle;

use super::lifecycle::{End, log_state, state};
use super::readiness::{accepts, describe, own_port, probe, refusal, secs, taken};
use crate::hosts::bootstrap::{self, AgentBinary, Timeouts, sh_quote};
use crate::hosts::listeners;
use crate::hosts::ssh::{self, Session};
use crate::hub::Hub;

/// A service process on an SSH host.
pub(crate) struct RemoteRunning {
    process: Process,
    keep: bool,
    /// Asks the host whether the process lives, once it is ready.
    watcher: Option<JoinHandle<()>>,
}

/// A service's process on one host, and how to ask about it.
#[derive(Clone)]
struct Process {
    name: String,
    session: Arc<Session>,
    pid: u32,
    /// Shell word of its log file on the host.
    log: String,
    /// Shell word of its lease file, which each check touches (`launch`).
    lease: Option<String>,
    end: End,
}

/// How services reach their hosts.
pub(crate) struct RemoteContext<'a> {
    pub ssh: &'a ssh::Options,
    pub remote_dir: &'a str,
    pub agent: &'a AgentBinary,
    pub timeouts: &'a Timeouts,
}

/// Starts the services that have SSH hosts, on every one of their hosts,
/// each ready before the next starts. Ships `binary` (or the agent, for
/// `{agent}`) content-addressed, like the agent itself.
pub(crate) async fn start_remote(
    hub: &Arc<Hub>,
    services: &[Service],
    ctx: &RemoteContext<'_>,
    started: &mut Vec<RemoteRunning>,
) -> Result<()> {
    let bar = indicatif::ProgressBar::hidden();
    for s in services.iter().filter(|s| !s.hosts.is_empty()) {
        let shipped_file = service_binary(s, ctx)?;
        for host in &s.hosts {
            let session = bootstrap::open(host, ctx.ssh, ctx.timeouts, ctx.agent, &bar)
                .await
                .with_context(|| format!("service \"{}\"", s.name))?;
            if let Some(ready) = &s.ready {
                refuse_taken(hub, &s.name, ready, &session).await?;
            }
            let dir = bootstrap::remote_path(ctx.remote_dir);
            let words = ship_words(&session, &dir, s, shipped_file.as_ref(), ctx, &bar).await?;
            let (pid, log, lease) = launch(&session, &dir, s, host, &words).await?;
            let on = |st: &str, detail: String| pb::ServiceState {
                host: host.to_string(),
                ..state(&s.name, st, detail)
            };
            let started_state = pb::ServiceState {
                pid,
                ..on("started", format!("{host}: pid {pid}"))
            };
            log_state(hub, started_state).await;
            started.push(RemoteRunning {
                process: Process {
                    name: s.name.clone(),
                    session: Arc::new(session),
                    pid,
                    log,
                    lease,
                    end: End::new(),
                },
                keep: s.keep,
                watcher: None,
            });
            let running = started.last_mut().expect("just pushed");
            if let Some(ready) = &s.ready {
                wait_remote_ready(&running.process, ready, host, s.ready_timeout).await?;
            }
            log_state(hub, on("ready", host.to_string())).await;
            let watched = running.process.clone();
            running.watcher = Some(tokio::spawn(watch(hub.clone(), watched)));
            tracing::info!("service {} is ready on {host}", s.name);
        }
    }
    Ok(())
}

/// The file a service ships to its hosts, if any: the agent itself or a
/// file of the user's.
fn service_binary(s: &Service, ctx: &RemoteContext<'_>) -> Result<Option<AgentBinary>> {
    let agent_path = ctx.agent.path.display().to_string();
    Ok(match s.binary.as_deref() {
        None => None,
        Some(b) if b == "{agent}" || b == agent_path => Some(ctx.agent.clone()),
        Some(b) => {
            let path = std::path::PathBuf::from(b);
            let meta = std::fs::metadata(&path)
                .with_context(|| format!("service \"{}\": binary {b}", s.name))?;
            let hash = fleetbench::binary::file_hash(&path)
                .with_context(|| format!("service \"{}\": hashing {b}", s.name))?;
            Some(AgentBinary {
                path,
                hash,
                size: meta.len(),
                arch: ctx.agent.arch.clone(),
            })
        }
    })
}

/// Shell words of the files a service's command names on its host.
struct Words {
    /// `{binary}`: the service's shipped file.
    binary: Option<String>,
    /// `{agent}`: the agent.
    agent: Option<String>,
}

/// Ships what the service's command names (`{binary}`, `{agent}`) to the
/// host under `dir`, unless there already.
async fn ship_words(
    session: &Session,
    dir: &str,
    s: &Service,
    shipped_file: Option<&AgentBinary>,
    ctx: &RemoteContext<'_>,
    bar: &indicatif::ProgressBar,
) -> Result<Words> {
    let ship = |name: &'static str, file: AgentBinary| async move {
        bootstrap::ship(session, dir, name, &file, bar, ctx.timeouts)
            .await
            .map(|s| s.path)
            .map_err(|(step, why)| anyhow::anyhow!("host {}: {step} failed: {why}", session.target))
    };
    let binary = match shipped_file {
        Some(f) if f.hash == ctx.agent.hash => Some(ship("agent", f.clone()).await?),
        Some(f) => Some(ship("service", f.clone()).await?),
        None => None,
    };
    // The agent also supervises every service that does not outlive the
    // run (`launch`).
    let agent = if s.command_mentions("{agent}") || !s.keep {
        Some(ship("agent", ctx.agent.clone()).await?)
    } else {
        None
    };
    Ok(Words { binary, agent })
}

impl Words {
    /// `text` as shell words: placeholders become the shipped files' words;
    /// the rest is quoted.
    fn expand(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        loop {
            let next = [
                ("{binary}", self.binary.as_deref()),
                ("{agent}", self.agent.as_deref()),
            ]
            .into_iter()
            .filter_map(|(p, w)| rest.find(p).map(|i| (i, p, w)))
            .min_by_key(|(i, _, _)| *i);
            match next {
                Some((i, p, w)) => {
                    if i > 0 {
                        out.push_str(&sh_quote(&rest[..i]));
                    }
                    out.push_str(w.unwrap_or(""));
                    rest = &rest[i + p.len()..];
                }
                None => {
                    if !rest.is_empty() || out.is_empty() {
                        out.push_str(&sh_quote(rest));
                    }
                    return out;
                }
            }
        }
    }
}

/// How long a service on an SSH host outlives its coordinator's last check
/// (each second, while it runs): `agent supervise` stops it after that.
const SERVICE_LEASE: Duration = Duration::from_secs(15);

/// Starts the service detached on the host (its output to a log file under
/// `dir`); returns its pid, the shell word of its log, and of its lease
/// file when it runs under `agent supervise` (every service but a `keep`
/// one: it stops once this coordinator stops checking on it).
async fn launch(
    session: &Session,
    dir: &str,
    s: &Service,
    host: &ssh::Target,
    words: &Words,
) -> Result<(u32, String, Option<String>)> {
    let program = match &s.command {
        Command::Argv(argv) => argv
            .iter()
            .map(|a| words.expand(a))
            .collect::<Vec<_>>()
            .join(" "),
        Command::Shell(text) => format!("sh -c {}", words.expand(text)),
    };
    let env: String = s
        .env
        .iter()
        .map(|(k, v)| format!("{}={} ", k, sh_quote(v)))
        .collect();
    let svc_dir = format!("{dir}/services");
    let log = format!("{svc_dir}/{}.log", sh_quote(&s.name));
    let lease = match (&words.agent, s.keep) {
        (Some(_), false) => Some(format!("{svc_dir}/{}.lease", sh_quote(&s.name))),
        _ => None,
    };
    let (touch, program) = match (&lease, &words.agent) {
        (Some(file), Some(agent)) => (
            format!("touch {file}; "),
            format!(
                "{agent} supervise --lease-file {file} --lease {}s -- {program}",
                SERVICE_LEASE.as_secs()
            ),
        ),
        _ => (String::new(), program),
    };
    let script = format!(
        "set -e; mkdir -p {svc_dir}; cd {svc_dir}; {touch}\
         if command -v setsid >/dev/null 2>&1; then d=setsid; else d=nohup; fi; \
         {env}$d {program} </dev/null >{log} 2>&1 & echo $!"
    );
    let out = session
        .exec(&script, None)
        .await
        .with_context(|| format!("starting service \"{}\" on {host}", s.name))?;
    let pid: u32 = out.stdout_text().parse().map_err(|_| {
        let status = out.status.map_or_else(
            || "no exit status".to_string(),
            |c| format!("exit code {c}"),
        );
        anyhow::anyhow!(
            "starting service \"{}\" on {host}: {status}: {}",
            s.name,
            out.stderr_text()
        )
    })?;
    Ok((pid, log, lease))
}

/// Waits until the service answers `ready` on `host`, within `timeout`,
/// and its process is still the one that does.
async fn wait_remote_ready(
    running: &Process,
    ready: &Ready,
    host: &ssh::Target,
    timeout: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut checked_alive = tokio::time::Instant::now();
    while !probe(ready, &host.host).await {
        // Something else may hold the port: the process we
        // started must be alive, or it is not ready at all.
        let dead = if checked_alive.elapsed() >= Duration::from_millis(500) {
            checked_alive = tokio::time::Instant::now();
            running.alive().await == Some(false)
        } else {
            false
        };
        if dead || tokio::time::Instant::now() >= deadline {
            let tail = running
                .session
                .exec(&format!("tail -c 2000 {} 2>/dev/null", running.log), None)
                .await
                .map(|o| o.stdout_text())
                .unwrap_or_default();
            let why = if dead {
                "exited before it was ready".to_string()
            } else {
                format!(
                    "was not ready ({}) within {}",
                    describe(ready, &host.host),
                    secs(timeout)
                )
            };
            bail!(
                "service \"{}\" on {host} {why}; its log ends:\n{tail}",
                running.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Ready, and by the process we started (not one left from before)?
    if running.alive().await != Some(true) {
        bail!(
            "service \"{}\" on {host} exited right after starting, although {} (another process holds it?)",
            running.name,
            describe(ready, &host.host)
        );
    }
    Ok(())
}

/// How often a ready service's host is asked whether its process lives.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Asks the host every [`WATCH_EVERY`] whether the service's process lives.
/// Once it is gone (and the run was not stopping it), logs the end of its
/// output and "exited" (its exit status is not known: it is not our child
/// there). A host that cannot be asked is asked again.
async fn watch(hub: Arc<Hub>, p: Process) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if p.alive().await != Some(false) {
            continue;
        }
        if !p.end.exited() {
            return;
        }
        let host = p.session.target.to_string();
        tracing::info!("service {} on {host} (pid {}) exited", p.name, p.pid);
        p.log_output(&hub, 8192).await;
        let record = pb::ServiceState {
            pid: p.pid,
            host: host.clone(),
            ..state(
                &p.name,
                "exited",
                format!("{host}: exited by itself (exit status unknown)"),
            )
        };
        log_state(&hub, record).await;
        return;
    }
}

/// Refuses to start service `name` on the session's host when the port its
/// readiness checks already accepts connections there, naming the process
/// that holds it (read from the host's /proc through the shell).
async fn refuse_taken(hub: &Hub, name: &str, ready: &Ready, session: &Session) -> Result<()> {
    let host = &session.target;
    let Some((addr, port)) = own_port(ready, &host.host) else {
        return Ok(());
    };
    if !accepts(&addr).await {
        return Ok(());
    }
    let ask = |script: String| async move {
        session
            .exec(&script, None)
            .await
            .map(|o| o.stdout_text())
            .unwrap_or_default()
    };
    let sockets = listeners::listening(
        &ask("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; true".into()).await,
        port,
    );
    let holders = if sockets.is_empty() {
        Vec::new()
    } else {
        listeners::parse_holders(&ask(listeners::holders_script(&sockets)).await)
    };
    let held_by = listeners::describe(&sockets, &holders);
    let why = taken(&addr, port, &held_by, &format!(" on {host}"));
    let record = pb::ServiceState {
        host: host.to_string(),
        ..state(name, "failed", why.clone())
    };
    log_state(hub, record).await;
    Err(refusal(name, &why))
}

impl Process {
    /// Whether its process is alive; None if the host could not be asked.
    /// Renews its lease.
    async fn alive(&self) -> Option<bool> {
        let touch = self
            .lease
            .as_ref()
            .map_or_else(String::new, |f| format!("touch {f} 2>/dev/null; "));
        self.session
            .exec(
                &format!(
                    "{touch}kill -0 {pid} 2>/dev/null && echo alive",
                    pid = self.pid
                ),
                None,
            )
            .await
            .ok()
            .map(|o| o.stdout_text() == "alive")
    }

    /// Logs the last `bytes` of its log file on the host as its output.
    async fn log_output(&self, hub: &Hub, bytes: usize) {
        self.log_output_after(hub, bytes, "").await;
    }

    /// Runs `script` on the host, then logs the last `bytes` of its log
    /// file as its output (within 15 s).
    async fn log_output_after(&self, hub: &Hub, bytes: usize, script: &str) {
        let out = tokio::time::timeout(
            Duration::from_secs(15),
            self.session.exec(
                &format!("{script}tail -c {bytes} {} 2>/dev/null; true", self.log),
                None,
            ),
        )
        .await;
        if let Ok(Ok(out)) = out
            && !out.stdout.is_empty()
        {
            hub.log(pb::log_record::Record::ServiceOutput(pb::ServiceOutput {
                service: self.name.clone(),
                stream: "output".into(),
                data: out.stdout,
            }))
            .await;
        }
    }
}

/// Stops remote services in reverse order (SIGTERM, then SIGKILL after 5 s)
/// unless `keep`, and logs the tail of each one's output.
pub(crate) async fn stop_remote(hub: &Arc<Hub>, mut running: Vec<RemoteRunning>) {
    while let Some(r) = running.pop() {
        let p = r.process;
        p.end.stopping();
        if let Some(w) = r.watcher {
            w.abort();
            let _ = w.await;
        }
        let host = p.session.target.to_string();
        let stop = if r.keep {
            String::new()
        } else {
            // Started with setsid, the pid leads its own process group:
            // signal the group, so a shell's children go too.
            format!(
                "kill -TERM -- -{pid} 2>/dev/null || kill {pid} 2>/dev/null; i=0; \
                 while kill -0 {pid} 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
                 kill -KILL -- -{pid} 2>/dev/null || kill -9 {pid} 2>/dev/null; ",
                pid = p.pid
            )
        };
        p.log_output_after(hub, 65536, &stop).await;
        let detail = if r.keep {
            format!("{host}: kept running (pid {})", p.pid)
        } else {
            format!("{host}: stopped")
        };
        let record = pb::ServiceState {
            host,
            ..state(&p.name, if r.keep { "kept" } else { "stopped" }, detail)
        };
        log_state(hub, record).await;
        if let Ok(session) = Arc::try_unwrap(p.session) {
            session.close().await;
        }
    }
}
