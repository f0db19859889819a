//! Dying with the coordinator: a local agent, or a local service started
//! through `agent exec-child`, asks the kernel for SIGKILL when the
//! coordinator that started it dies (`PR_SET_PDEATHSIG`), so that even a
//! SIGKILLed coordinator leaves nothing of its run behind on its machine
//! (a leftover service would be benchmarked by the next run).
//!
//! The signal is kept across `execve`, so the service exec'd by
//! `exec-child` keeps it. The coordinator passes its pid: if it died
//! before the request was made, the parent is already someone else, and
//! the process exits at once.

use std::ffi::CString;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use nix::unistd::{Pid, getppid};

/// SIGKILL this process when process `parent` dies; an error if it has
/// already died (this process was handed to another parent).
pub(crate) fn die_with(parent: i32) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .context("asking to die with the coordinator")?;
    if getppid() != Pid::from_raw(parent) {
        bail!("the coordinator (pid {parent}) that started this is gone");
    }
    Ok(())
}

/// `agent exec-child --parent PID -- COMMAND ARGS...`: dies with `parent`,
/// then becomes `COMMAND` (found on PATH). Returns only on failure.
pub(crate) fn exec_child(parent: i32, argv: &[String]) -> Result<()> {
    die_with(parent)?;
    let Some(program) = argv.first() else {
        bail!("exec-child: no command given");
    };
    let args = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .context("a command argument holds a NUL byte")?;
    let err = nix::unistd::execvp(&args[0], &args).unwrap_err();
    if err == nix::errno::Errno::ENOENT {
        bail!("cannot run {program:?}: no such file (nor on PATH)");
    }
    bail!("cannot run {program:?}: {}", err.desc())
}

/// `agent supervise --lease-file F --lease D -- COMMAND ARGS...`: how the
/// coordinator starts a service on an SSH host (the host has no process of
/// the coordinator's to die with). Runs COMMAND as a child that dies with
/// this process, and stops it (TERM, then KILL after 5 s) once `F` has not
/// been touched for `D`: the coordinator touches it each time it checks on
/// the service (every second), so a coordinator that is gone (killed, cut
/// off) leaves nothing running for long. A TERM or INT to this process is
/// passed on to the child, which then has its 5 s to stop; this process
/// exits with the child's status.
pub(crate) fn supervise(
    lease_file: &std::path::Path,
    lease: std::time::Duration,
    argv: &[String],
) -> Result<std::process::ExitCode> {
    use std::time::{Duration, SystemTime};
    use tokio::signal::unix::{SignalKind, signal};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let exe = std::env::current_exe().context("finding the agent's own executable")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("exec-child")
            .arg("--parent")
            .arg(std::process::id().to_string())
            .arg("--")
            .args(argv)
            .spawn()
            .context("starting the service")?;
        let pid = Pid::from_raw(child.id().map_or(0, |p| p as i32));
        let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let fresh = || {
            std::fs::metadata(lease_file)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .is_some_and(|age| age <= lease)
        };
        let stop = loop {
            tokio::select! {
                status = child.wait() => {
                    let code = status.map_or(1, |s| s.code().unwrap_or(1));
                    return Ok(std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)));
                }
                _ = term.recv() => break None,
                _ = int.recv() => break None,
                _ = tick.tick() => {
                    if !fresh() {
                        break Some(format!(
                            "fleetbench: the coordinator has not checked on this service for {}s (its lease): stopping it",
                            lease.as_secs()
                        ));
                    }
                }
            }
        };
        if let Some(why) = stop {
            eprintln!("{why}");
        }
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = child.wait().await;
        }
        Ok(std::process::ExitCode::from(1))
    })
}
