//! Who ends a service, and what its life leaves in the log.
//!
//! A service ends either by itself (it died: logged as "exited", and the
//! run's numbers after that do not measure the service) or because the run
//! stopped it. Both the watcher that sees the process go and the run that
//! stops it claim the end through one [`End`], under one lock: whoever
//! claims first decides, so a death is never taken for a stop, nor a stop
//! for a death.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};

use fleetbench::pb;

use crate::hub::Hub;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Running,
    /// The run is stopping it: its exit from now on is the run's doing.
    Stopping,
    /// It exited while running: it died.
    Died,
}

/// A service's end, claimed once: by its death or by the run's stop.
#[derive(Debug, Clone)]
pub(super) struct End(Arc<Mutex<Fate>>);

impl End {
    pub(super) fn new() -> End {
        End(Arc::new(Mutex::new(Fate::Running)))
    }

    /// Its process is gone: true when the run was not stopping it (it died).
    pub(super) fn exited(&self) -> bool {
        let mut fate = self.0.lock().expect("never poisoned");
        let died = *fate == Fate::Running;
        if died {
            *fate = Fate::Died;
        }
        died
    }

    /// The run stops it: false when it had died already.
    pub(super) fn stopping(&self) -> bool {
        let mut fate = self.0.lock().expect("never poisoned");
        if *fate == Fate::Died {
            return false;
        }
        *fate = Fate::Stopping;
        true
    }
}

/// Logs one `ServiceState` record.
pub(super) async fn log_state(hub: &Hub, state: pb::ServiceState) {
    hub.log(pb::log_record::Record::ServiceState(state)).await;
}

/// `service`'s state `state`, with `detail`; the other fields unset.
pub(super) fn state(service: &str, state: &str, detail: String) -> pb::ServiceState {
    pb::ServiceState {
        service: service.into(),
        state: state.into(),
        detail,
        ..Default::default()
    }
}

/// How a process ended, as a shell user says it: "exit code 1", "killed by
/// signal 9 (SIGKILL)".
pub(super) fn exit_text(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(n) => match nix::sys::signal::Signal::try_from(n) {
            Ok(sig) => format!("killed by signal {n} ({})", sig.as_str()),
            Err(_) => format!("killed by signal {n}"),
        },
        None => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A death claimed first stays a death; a stop claimed first makes the
    /// exit that follows the run's.
    #[test]
    fn the_first_claim_decides() {
        let died = End::new();
        assert!(died.exited());
        assert!(!died.stopping());
        let stopped = End::new();
        assert!(stopped.stopping());
        assert!(!stopped.exited());
        assert!(stopped.stopping());
    }

    #[test]
    fn exits_read_as_a_shell_says_them() {
        assert_eq!(exit_text(ExitStatus::from_raw(1 << 8)), "exit code 1");
        assert_eq!(
            exit_text(ExitStatus::from_raw(9)),
            "killed by signal 9 (SIGKILL)"
        );
    }
}
