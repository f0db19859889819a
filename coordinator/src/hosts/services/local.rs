//! Services on this machine: started in order (each ready before the
//! next), watched while the run runs, stopped in reverse order at the end.
//!
//! Each runs in its own process group (so stopping it reaches every process
//! its shell started); its stdout and stderr go to the log as
//! `ServiceOutput` records. A watcher task owns the process: when it exits
//! before the run stops it, the watcher logs "exited" with the exit status
//! (after its last output), and run control, which reads that from the
//! fold, ends the run's load. Stopping sends SIGTERM to the group, waits,
//! then SIGKILLs. A coordinator killed with SIGKILL cannot stop its
//! services: they are then left running (their process group id is logged).

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleetbench::pb;
use fleetbench_workload::{Command, Ready, Service};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::lifecycle::{End, exit_text, log_state, state};
use super::readiness::{accepts, describe, own_port, probe, refusal, secs, taken};
use crate::hosts::bootstrap::sh_quote;
use crate::hosts::listeners;
use crate::hub::Hub;
use crate::reaper::Reaper;

/// Where local services are reached.
const LOCALHOST: &str = "127.0.0.1";

/// A service process on this machine.
pub(crate) struct Running {
    name: String,
    pid: u32,
    end: End,
    /// Its exit status, once it has exited.
    exit: watch::Receiver<Option<ExitStatus>>,
    /// Owns the process (killed if dropped) and its output pumps.
    watcher: JoinHandle<()>,
}

/// Starts the services in order, each ready before the next starts (each
/// process group listed in `reaper`). On failure the ones already started
/// are returned for stopping. A service whose readiness port already
/// answers is not started (bad input).
pub(crate) async fn start(
    hub: &Arc<Hub>,
    services: &[Service],
    agent_binary: &Path,
    started: &mut Vec<Running>,
    reaper: &Reaper,
) -> Result<()> {
    for s in services.iter().filter(|s| s.hosts.is_empty()) {
        if let Some(ready) = &s.ready {
            refuse_taken(hub, &s.name, ready).await?;
        }
        let expand = |text: &str| expand(text, agent_binary, s.binary.as_deref());
        // Started through `agent exec-child`, which asks the kernel to kill
        // it when this coordinator dies (even by SIGKILL), then becomes it.
        let mut cmd = tokio::process::Command::new(agent_binary);
        cmd.arg("exec-child")
            .arg("--parent")
            .arg(std::process::id().to_string())
            .arg("--");
        let shown = match &s.command {
            Command::Shell(text) => {
                cmd.arg("sh").arg("-c").arg(expand(text));
                format!("sh -c {}", sh_quote(&expand(text)))
            }
            Command::Argv(argv) => {
                cmd.args(argv.iter().map(|a| expand(a)));
                let words: Vec<String> = argv.iter().map(|a| shell_word(&expand(a))).collect();
                let shown = words.join(" ");
                // exec-child would fail only once started: say it now.
                let program = expand(&argv[0]);
                if !runnable(&program) {
                    return Err(std::io::Error::from(std::io::ErrorKind::NotFound)).with_context(
                        || format!("starting service \"{}\" ({shown}): no such program", s.name),
                    );
                }
                shown
            }
        };
        cmd.envs(s.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting service \"{}\" ({shown})", s.name))?;
        reaper.add(child.id());
        let pid = child.id().unwrap_or(0);
        log_state(
            hub,
            pb::ServiceState {
                pid,
                ..state(
                    &s.name,
                    "started",
                    format!("pid {pid} (process group {pid})"),
                )
            },
        )
        .await;
        started.push(watch_child(hub, &s.name, child));
        let running = started.last().expect("just pushed");
        if let Some(ready) = &s.ready {
            wait_ready(running, ready, s.ready_timeout).await?;
        }
        log_state(hub, state(&s.name, "ready", String::new())).await;
        tracing::info!("service {} is ready", s.name);
    }
    Ok(())
}

/// Refuses to start service `name` when the port its readiness checks
/// already accepts connections, naming the process that holds it.
async fn refuse_taken(hub: &Hub, name: &str, ready: &Ready) -> Result<()> {
    let Some((addr, port)) = own_port(ready, LOCALHOST) else {
        return Ok(());
    };
    if !accepts(&addr).await {
        return Ok(());
    }
    let sockets = listeners::local_listening(port);
    let holders = listeners::local_holders(&sockets);
    let why = taken(&addr, port, &listeners::describe(&sockets, &holders), "");
    log_state(hub, state(name, "failed", why.clone())).await;
    Err(refusal(name, &why))
}

/// A word as a shell would show it: quoted only when it has blanks, quotes
/// or other characters a shell reads.
fn shell_word(w: &str) -> String {
    if w.is_empty() || w.contains(|c: char| c.is_whitespace() || "'\"\\$`;&|<>()*?#~".contains(c)) {
        sh_quote(w)
    } else {
        w.to_string()
    }
}

/// Whether `program` names an executable file: a path (with a `/`) as
/// given, or else a file on `PATH`, as `execvp` finds it.
fn runnable(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

fn expand(text: &str, agent_binary: &Path, binary: Option<&str>) -> String {
    let agent = agent_binary.display().to_string();
    let binary = binary.map_or_else(String::new, |b| b.replace("{agent}", &agent));
    text.replace("{binary}", &binary).replace("{agent}", &agent)
}

/// Pumps the child's output into the log and watches for its exit: one
/// the run did not ask for is logged as "exited", after its last output.
fn watch_child(hub: &Arc<Hub>, name: &str, mut child: Child) -> Running {
    let pid = child.id().unwrap_or(0);
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(hub.clone(), name.into(), "stdout", out)));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(hub.clone(), name.into(), "stderr", err)));
    }
    let end = End::new();
    let (tx, exit) = watch::channel(None);
    let watcher = tokio::spawn({
        let (hub, name, end) = (hub.clone(), name.to_string(), end.clone());
        async move {
            let status = child.wait().await;
            let died = end.exited();
            for p in pumps {
                let _ = tokio::time::timeout(Duration::from_secs(1), p).await;
            }
            let how = status
                .as_ref()
                .map_or_else(|e| format!("unknown ({e})"), |s| exit_text(*s));
            if died {
                tracing::info!("service {name} (pid {pid}) exited: {how}");
                let record = pb::ServiceState {
                    pid,
                    exit_status: how.clone(),
                    ..state(&name, "exited", format!("exited by itself: {how}"))
                };
                log_state(&hub, record).await;
            }
            let _ = tx.send(status.ok());
        }
    });
    Running {
        name: name.to_string(),
        pid,
        end,
        exit,
        watcher,
    }
}

async fn wait_ready(running: &Running, ready: &Ready, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(status) = *running.exit.borrow() {
            bail!(
                "service \"{}\" exited ({}) before it was ready ({}); the last lines it wrote \
                 to stderr are in the report",
                running.name,
                exit_text(status),
                describe(ready, LOCALHOST)
            );
        }
        if probe(ready, LOCALHOST).await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "service \"{}\" was not ready ({}) within {}",
                running.name,
                describe(ready, LOCALHOST),
                secs(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

impl Running {
    /// Waits until the process has exited; its status (None if unknown).
    async fn exited(&self) -> Option<ExitStatus> {
        let mut exit = self.exit.clone();
        exit.wait_for(Option::is_some).await.ok().and_then(|s| *s)
    }
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
        let (detail, status) = if r.end.stopping() {
            let signal = |s: Signal| {
                if r.pid > 0 {
                    let _ = killpg(Pid::from_raw(r.pid as i32), s);
                }
            };
            signal(Signal::SIGTERM);
            match tokio::time::timeout(grace, r.exited()).await {
                Ok(Some(status)) => (format!("stopped: {status}"), Some(status)),
                _ => {
                    signal(Signal::SIGKILL);
                    let status = r.exited().await;
                    (format!("killed after {}", secs(grace)), status)
                }
            }
        } else {
            // Its watcher logs the death, then hands over the status.
            let status = tokio::time::timeout(Duration::from_secs(2), r.exited())
                .await
                .ok()
                .flatten();
            let how = status.map_or_else(|| "unknown".to_string(), exit_text);
            (format!("had already exited: {how}"), status)
        };
        if tokio::time::timeout(Duration::from_secs(2), &mut r.watcher)
            .await
            .is_err()
        {
            r.watcher.abort();
        }
        reaper.forget(Some(r.pid));
        tracing::info!("service {} {detail}", r.name);
        let record = pb::ServiceState {
            exit_status: status.map(exit_text).unwrap_or_default(),
            ..state(&r.name, "stopped", detail)
        };
        log_state(hub, record).await;
    }
}
