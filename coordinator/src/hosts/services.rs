//! `[[service]]` processes: the system under test (or anything else a run
//! needs) started before the first phase and stopped after the last.
//!
//! Each service runs in its own process group (so stopping it reaches every
//! process its shell started), its stdout and stderr go to the event log as
//! `ServiceOutput` records, and its readiness is a TCP port that accepts
//! connections. Stopping sends SIGTERM to the group, waits, then SIGKILLs.
//! A coordinator killed with SIGKILL cannot stop its services: they are then
//! left running (their process group id is logged).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleetbench::pb;
use fleetbench_workload::{Command, Ready, Service};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Child;

use super::bootstrap::{self, AgentBinary, Timeouts, sh_quote};
use super::ssh::{self, Session};
use crate::hub::Hub;
use crate::reaper::Reaper;

pub(crate) struct Running {
    name: String,
    child: Child,
    pumps: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the services in order, each ready before the next starts (each
/// group listed in `reaper`). On failure the ones already started are
/// returned for stopping.
pub(crate) async fn start(
    hub: &Arc<Hub>,
    services: &[Service],
    agent_binary: &Path,
    started: &mut Vec<Running>,
    reaper: &Reaper,
) -> Result<()> {
    for s in services.iter().filter(|s| s.hosts.is_empty()) {
        let expand = |text: &str| expand(text, agent_binary, s.binary.as_deref());
        let mut cmd = match &s.command {
            Command::Shell(text) => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(expand(text));
                c
            }
            Command::Argv(argv) => {
                let mut c = tokio::process::Command::new(expand(&argv[0]));
                c.args(argv[1..].iter().map(|a| expand(a)));
                c
            }
        };
        cmd.envs(s.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "starting service {:?} ({})",
                s.name,
                command_line(cmd.as_std())
            )
        })?;
        reaper.add(child.id());
        let pid = child.id().unwrap_or(0);
        state(
            hub,
            &s.name,
            "started",
            format!("pid {pid} (process group {pid})"),
        )
        .await;
        let mut pumps = Vec::new();
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(pump(
                hub.clone(),
                s.name.clone(),
                "stdout",
                out,
            )));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(
                hub.clone(),
                s.name.clone(),
                "stderr",
                err,
            )));
        }
        started.push(Running {
            name: s.name.clone(),
            child,
            pumps,
        });
        let running = started.last_mut().expect("just pushed");
        if let Some(ready) = &s.ready {
            wait_ready(running, ready, s.ready_timeout).await?;
        }
        state(hub, &s.name, "ready", String::new()).await;
        tracing::info!("service {} is ready", s.name);
    }
    Ok(())
}

/// A command as a shell would read it: words with blanks or quotes quoted.
fn command_line(cmd: &std::process::Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|w| {
            let w = w.to_string_lossy();
            if w.is_empty() || w.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                sh_quote(&w)
            } else {
                w.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn expand(text: &str, agent_binary: &Path, binary: Option<&str>) -> String {
    let agent = agent_binary.display().to_string();
    let binary = binary.map_or_else(String::new, |b| b.replace("{agent}", &agent));
    text.replace("{binary}", &binary).replace("{agent}", &agent)
}

async fn wait_ready(running: &mut Running, ready: &Ready, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(status) = running.child.try_wait()? {
            bail!(
                "service {:?} exited ({status}) before it was ready ({}); its output is in the log",
                running.name,
                describe(ready, "127.0.0.1")
            );
        }
        if probe(ready, "127.0.0.1").await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "service {:?} was not ready ({}) within {}",
                running.name,
                describe(ready, "127.0.0.1"),
                humantime_secs(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What readiness means, in words, for a service reached at `host`.
pub(crate) fn describe(ready: &Ready, host: &str) -> String {
    match ready {
        Ready::TcpPort(p) => format!("{host}:{p} accepting connections"),
        Ready::TcpAddr(a) => format!("{a} accepting connections"),
        Ready::Http(u) => format!("GET {u} answering 2xx"),
    }
}

/// One readiness check of a service reached at `host`.
pub(crate) async fn probe(ready: &Ready, host: &str) -> bool {
    let attempt = async {
        match ready {
            Ready::TcpPort(p) => tokio::net::TcpStream::connect((host, *p)).await.is_ok(),
            Ready::TcpAddr(a) => tokio::net::TcpStream::connect(a.as_str()).await.is_ok(),
            Ready::Http(url) => http_ok(url).await,
        }
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .unwrap_or(false)
}

/// A bare HTTP/1.0 GET: does `url` answer with a 2xx status?
async fn http_ok(url: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let Ok(n) = s.read(&mut head).await else {
        return false;
    };
    // "HTTP/1.x 2"
    n >= 10 && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

fn humantime_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

async fn pump(
    hub: Arc<Hub>,
    service: String,
    stream: &'static str,
    mut from: impl AsyncReadExt + Unpin,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                hub.log(pb::log_record::Record::ServiceOutput(pb::ServiceOutput {
                    service: service.clone(),
                    stream: stream.into(),
                    data: buf[..n].to_vec(),
                }))
                .await;
            }
        }
    }
}

async fn state(hub: &Hub, service: &str, state: &str, detail: String) {
    hub.log(pb::log_record::Record::ServiceState(pb::ServiceState {
        service: service.into(),
        state: state.into(),
        detail,
    }))
    .await;
}

/// Stops services in reverse order: SIGTERM, then SIGKILL after `grace`;
/// each group stopped is taken off `reaper`'s list.
pub(crate) async fn stop(
    hub: &Arc<Hub>,
    mut running: Vec<Running>,
    grace: Duration,
    reaper: &Reaper,
) {
    while let Some(mut r) = running.pop() {
        let pid = r.child.id();
        let detail = match r.child.try_wait() {
            Ok(Some(status)) => format!("had already exited: {status}"),
            _ => {
                if let Some(pid) = r.child.id() {
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGTERM);
                }
                match tokio::time::timeout(grace, r.child.wait()).await {
                    Ok(Ok(status)) => format!("stopped: {status}"),
                    _ => {
                        if let Some(pid) = r.child.id() {
                            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                        }
                        let _ = r.child.wait().await;
                        format!("killed after {}", humantime_secs(grace))
                    }
                }
            }
        };
        reaper.forget(pid);
        for p in r.pumps {
            let _ = tokio::time::timeout(Duration::from_secs(1), p).await;
        }
        tracing::info!("service {} {detail}", r.name);
        state(hub, &r.name, "stopped", detail).await;
    }
}

// ---------------------------------------------------------------- on SSH hosts

/// A service process on an SSH host.
pub(crate) struct RemoteRunning {
    name: String,
    session: Session,
    pid: u32,
    /// Shell word of its log file on the host.
    log: String,
    keep: bool,
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
                .with_context(|| format!("service {:?}", s.name))?;
            let dir = bootstrap::remote_path(ctx.remote_dir);
            let words = ship_words(&session, &dir, s, shipped_file.as_ref(), ctx, &bar).await?;
            let (pid, log) = launch(&session, &dir, s, host, &words).await?;
            state(hub, &s.name, "started", format!("{host}: pid {pid}")).await;
            started.push(RemoteRunning {
                name: s.name.clone(),
                session,
                pid,
                log,
                keep: s.keep,
            });
            if let Some(ready) = &s.ready {
                let running = started.last().expect("just pushed");
                wait_remote_ready(running, ready, host, s.ready_timeout).await?;
            }
            state(hub, &s.name, "ready", host.to_string()).await;
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
                .with_context(|| format!("service {:?}: binary {b}", s.name))?;
            let hash = fleetbench::binary::file_hash(&path)
                .with_context(|| format!("service {:?}: hashing {b}", s.name))?;
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
    let agent = if s.command_mentions("{agent}") {
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

/// Starts the service detached on the host (its output to a log file under
/// `dir`); returns its pid and the shell word of its log.
async fn launch(
    session: &Session,
    dir: &str,
    s: &Service,
    host: &ssh::Target,
    words: &Words,
) -> Result<(u32, String)> {
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
    let script = format!(
        "set -e; mkdir -p {svc_dir}; cd {svc_dir}; \
         if command -v setsid >/dev/null 2>&1; then d=setsid; else d=nohup; fi; \
         {env}$d {program} </dev/null >{log} 2>&1 & echo $!"
    );
    let out = session
        .exec(&script, None)
        .await
        .with_context(|| format!("starting service {:?} on {host}", s.name))?;
    let pid: u32 = out.stdout_text().parse().map_err(|_| {
        anyhow::anyhow!(
            "starting service {:?} on {host}: {}: {}",
            s.name,
            out.ended(),
            out.stderr_text()
        )
    })?;
    Ok((pid, log))
}

/// Waits until the service answers `ready` on `host`, within `timeout`,
/// and its process is still the one that does.
async fn wait_remote_ready(
    running: &RemoteRunning,
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
                    humantime_secs(timeout)
                )
            };
            bail!(
                "service {:?} on {host} {why}; its log ends:\n{tail}",
                running.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Ready, and by the process we started (not one left from before)?
    if running.alive().await != Some(true) {
        bail!(
            "service {:?} on {host} exited right after starting, although {} (another process holds it?)",
            running.name,
            describe(ready, &host.host)
        );
    }
    Ok(())
}

impl RemoteRunning {
    /// Whether its process is alive; None if the host could not be asked.
    async fn alive(&self) -> Option<bool> {
        self.session
            .exec(
                &format!("kill -0 {pid} 2>/dev/null && echo alive", pid = self.pid),
                None,
            )
            .await
            .ok()
            .map(|o| o.stdout_text() == "alive")
    }
}

/// Stops remote services in reverse order (SIGTERM, then SIGKILL after 5 s)
/// unless `keep`, and logs the tail of each one's output.
pub(crate) async fn stop_remote(hub: &Arc<Hub>, mut running: Vec<RemoteRunning>) {
    while let Some(r) = running.pop() {
        let host = r.session.target.to_string();
        let stop = if r.keep {
            String::new()
        } else {
            // Started with setsid, the pid leads its own process group:
            // signal the group, so a shell's children go too.
            format!(
                "kill -TERM -- -{pid} 2>/dev/null || kill {pid} 2>/dev/null; i=0; \
                 while kill -0 {pid} 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
                 kill -KILL -- -{pid} 2>/dev/null || kill -9 {pid} 2>/dev/null; ",
                pid = r.pid
            )
        };
        let out = tokio::time::timeout(
            Duration::from_secs(15),
            r.session.exec(
                &format!("{stop}tail -c 65536 {} 2>/dev/null; true", r.log),
                None,
            ),
        )
        .await;
        if let Ok(Ok(out)) = out
            && !out.stdout.is_empty()
        {
            hub.log(pb::log_record::Record::ServiceOutput(pb::ServiceOutput {
                service: r.name.clone(),
                stream: "output".into(),
                data: out.stdout,
            }))
            .await;
        }
        let detail = if r.keep {
            format!("{host}: kept running (pid {})", r.pid)
        } else {
            format!("{host}: stopped")
        };
        state(
            hub,
            &r.name,
            if r.keep { "kept" } else { "stopped" },
            detail,
        )
        .await;
        r.session.close().await;
    }
}
