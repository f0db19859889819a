//! The look-only hub: a coordinator that serves a pool's fixed port only to
//! see which agents dial in (their secrets checked, their Hellos noted, then
//! sent away to dial again). `pool ls`, `pool up` and `pool upgrade` use it;
//! a run serves the pool with a full hub instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::record::{Pool, bind};
use crate::hub::{self, Hub};
use crate::log::EventLog;
use crate::trust::Trust;

/// A coordinator that serves a pool's port only to see who dials in: it
/// checks each agent's secret, notes its Hello, and sends it away to dial
/// again (`Hub::look_only`). For `pool ls`, `pool up` and `pool upgrade`.
pub(crate) struct Lookout {
    pub hub: Arc<Hub>,
    tmp: PathBuf,
    server: hub::Serving,
    writer_stop: CancellationToken,
    writer: tokio::task::JoinHandle<()>,
}

impl Lookout {
    pub(crate) async fn start(data_dir: &Path, pool: &Pool, trust: &Trust) -> Result<Lookout> {
        let listener = bind(&pool.record).await?;
        // The hub needs a log; this one holds refusals only and is thrown away.
        let id = uuid::Uuid::now_v7().to_string();
        let tmp = data_dir.join("tmp").join(format!("pool-look-{id}"));
        let log = EventLog::open(&tmp, &id)?;
        let writer_stop = CancellationToken::new();
        let (hub, writer) = Hub::start(id, log, writer_stop.clone());
        hub.look_only();
        for (id, secret) in &pool.secrets {
            hub.admit_pool(id.clone(), secret.clone());
        }
        let server = hub::Serving::start(hub.clone(), trust.server_config(), listener);
        Ok(Lookout {
            hub,
            tmp,
            server,
            writer_stop,
            writer,
        })
    }

    /// Waits until each of `ids` has been seen since `since_us` (and, with
    /// `hash`, on that binary), or `timeout`; returns those seen.
    pub(crate) async fn wait_seen(
        &self,
        ids: &[String],
        since_us: i64,
        hash: Option<&str>,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let states = self.hub.agents();
            let seen: Vec<String> = ids
                .iter()
                .filter(|id| {
                    states.get(*id).is_some_and(|s| {
                        s.seen_at_us >= since_us && hash.is_none_or(|h| s.hello.binary_hash == h)
                    })
                })
                .cloned()
                .collect();
            if seen.len() == ids.len() || tokio::time::Instant::now() >= deadline {
                return seen;
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(100), self.hub.changed.notified()).await;
        }
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
        self.writer_stop.cancel();
        let _ = self.writer.await;
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}
