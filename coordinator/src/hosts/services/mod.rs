//! `[[service]]` processes: the system under test (or anything else a run
//! needs) started before the first phase and stopped after the last, on
//! this machine or on SSH hosts.
//!
//! A service is ready when its `ready` check passes (a TCP port that
//! accepts, a GET that answers 2xx). Before it starts, that port must not
//! answer yet: another server holding it would pass the check and be
//! measured instead, so the run is refused (bad input, exit 2), naming the
//! process that holds the port. Once ready, a service is watched: if it
//! exits before the run stops it, "exited" is logged (with its exit status
//! and, through its output, the end of its stderr), and run control, which
//! reads that from the fold, ends the load.
//!
//! # Layout
//! - `readiness`: the checks, their words, and the port that must be free.
//! - `lifecycle`: who ends a service (itself or the run), its log records.
//! - `local`: services on this machine (a watcher task owns each process).
//! - `remote`: services on SSH hosts (the host is asked whether it lives).

mod lifecycle;
mod local;
mod readiness;
mod remote;

pub(crate) use local::{Running, start, stop};
pub(crate) use remote::{RemoteContext, RemoteRunning, start_remote, stop_remote};
