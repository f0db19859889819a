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
use fleetbench::spec::{Command, Service};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Child;

use crate::hub::Hub;

pub struct Running {
    name: String,
    child: Child,
    pumps: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the services in order, each ready before the next starts. On
/// failure the ones already started are returned for stopping.
pub async fn start(
    hub: &Arc<Hub>,
    services: &[Service],
    agent_binary: &Path,
    started: &mut Vec<Running>,
) -> Result<()> {
    for s in services {
        let mut cmd = match &s.command {
            Command::Shell(text) => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(expand(text, agent_binary));
                c
            }
            Command::Argv(argv) => {
                let mut c = tokio::process::Command::new(expand(&argv[0], agent_binary));
                c.args(argv[1..].iter().map(|a| expand(a, agent_binary)));
                c
            }
        };
        cmd.envs(s.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting service {:?} ({:?})", s.name, s.command))?;
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
        if let Some(addr) = &s.ready_tcp {
            wait_ready(running, addr, s.ready_timeout)
                .await
                .inspect_err(|_| {})?;
        }
        state(hub, &s.name, "ready", String::new()).await;
        tracing::info!("service {} is ready", s.name);
    }
    Ok(())
}

fn expand(text: &str, agent_binary: &Path) -> String {
    text.replace("{agent}", &agent_binary.display().to_string())
}

async fn wait_ready(running: &mut Running, addr: &str, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(status) = running.child.try_wait()? {
            bail!(
                "service {:?} exited ({status}) before {addr} accepted connections; its output is in the log",
                running.name
            );
        }
        if tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .is_ok_and(|r| r.is_ok())
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "service {:?} did not accept connections on {addr} within {}",
                running.name,
                humantime_secs(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// Stops services in reverse order: SIGTERM, then SIGKILL after `grace`.
pub async fn stop(hub: &Arc<Hub>, mut running: Vec<Running>, grace: Duration) {
    while let Some(mut r) = running.pop() {
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
        for p in r.pumps {
            let _ = tokio::time::timeout(Duration::from_secs(1), p).await;
        }
        tracing::info!("service {} {detail}", r.name);
        state(hub, &r.name, "stopped", detail).await;
    }
}
