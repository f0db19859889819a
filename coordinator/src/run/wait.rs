//! Waiting on the hub: run control's loops check the log's health and the
//! services', then sleep until something changes (or a short while passes).

use std::time::Duration;

use anyhow::{Result, anyhow};
use fleetbench_fold::ServiceReport;

use crate::hub::Hub;

/// Fails once the event log has failed: nothing more of the run can be kept.
pub(super) fn check_log(hub: &Hub) -> Result<()> {
    match hub.failure() {
        Some(why) => Err(anyhow!("the event log failed: {why}")),
        None => Ok(()),
    }
}

/// Sleeps until the hub's state changes, or `at_most` passes.
pub(super) async fn changed(hub: &Hub, at_most: Duration) {
    let _ = tokio::time::timeout(at_most, hub.changed.notified()).await;
}

/// The first service that died during the run, as the fold has it (its
/// "exited" record is durable): the load after its death measures nothing.
pub(super) fn dead_service(hub: &Hub) -> Option<ServiceReport> {
    let fold = hub.fold.lock().expect("never poisoned");
    fold.services().into_iter().find(|s| s.died_during_run)
}
