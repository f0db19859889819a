//! The process groups a run starts on this machine (each local agent and
//! each local service leads its own, so a terminal's Ctrl-C reaches only
//! the coordinator, which stops them in order). A forced exit (a second
//! signal) has no time for that order: it kills every group still listed.
//!
//! Agents on SSH hosts are not here: they stop loading within their lease
//! once the coordinator is gone.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The process groups to kill on a forced exit; cloned, it is the same list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reaper(Arc<Mutex<BTreeSet<i32>>>);

impl Reaper {
    /// Lists the group led by process `pid` (started with `process_group(0)`).
    pub(crate) fn add(&self, pid: Option<u32>) {
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            self.0.lock().expect("never poisoned").insert(pid);
        }
    }

    /// Takes the group of `pid` off the list once its leader is reaped (the
    /// number may be reused by then).
    pub(crate) fn forget(&self, pid: Option<u32>) {
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            self.0.lock().expect("never poisoned").remove(&pid);
        }
    }

    /// SIGKILLs every listed group, and empties the list.
    pub(crate) fn kill_all(&self) {
        let groups = std::mem::take(&mut *self.0.lock().expect("never poisoned"));
        for pgid in groups {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}
