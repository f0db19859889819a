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
