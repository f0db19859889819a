//! Waiting on the hub: run control's loops check the log's health, then
//! sleep until something changes (or a short while passes).

use std::time::Duration;

use anyhow::{Result, anyhow};

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
