//! A run's live metrics: `/metrics` served while it runs (`--metrics-listen`),
//! and its series pushed once per window to a remote-write endpoint
//! (`--remote-write`). Neither can slow or fail the run: the server reads
//! the fold under its lock only as long as a snapshot takes, and pushes go
//! out from their own task, a slow or failing endpoint costing skipped
//! pushes (each carries every counter whole, so a later one makes up for
//! them), which the end of the run reports.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use fleetbench_fold::Fold;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::endpoint::Endpoint;
use super::serve::{self, Server};

/// How long the end of a run waits for its last push (the endpoint's
/// retries included) before it gives up on it.
const FINAL_PUSH_WAIT: Duration = Duration::from_secs(15);

/// What the user asked for, checked before the run starts.
pub(crate) struct Prepared {
    listener: Option<TcpListener>,
    linger: Duration,
    endpoint: Option<Endpoint>,
}

/// Binds `--metrics-listen` and reads `--remote-write`: a port taken or a
/// bad URL stops the run before anything of it exists.
pub(crate) async fn prepare(
    listen: Option<SocketAddr>,
    linger: Duration,
    remote_write: Option<&str>,
    headers: &[String],
) -> Result<Prepared> {
    let listener = match listen {
        Some(addr) => Some(serve::bind(addr).await?),
        None => None,
    };
    let endpoint = remote_write
        .map(|url| Endpoint::new(url, headers))
        .transpose()?;
    Ok(Prepared {
        listener,
        linger,
        endpoint,
    })
}

/// The run's metrics, running.
pub(crate) struct RunMetrics {
    server: Option<Server>,
    linger: Duration,
    pusher: Option<(watch::Sender<bool>, JoinHandle<PushReport>, String)>,
}

/// How the pushes went.
#[derive(Debug, Default)]
struct PushReport {
    pushes: u64,
    delivered: u64,
    last_error: Option<String>,
}

impl Prepared {
    /// Nothing asked for.
    pub(crate) fn is_empty(&self) -> bool {
        self.listener.is_none() && self.endpoint.is_none()
    }

    /// Starts serving and pushing `fold` (the hub's live fold, which from
    /// now on keeps the running totals the series read).
    pub(crate) fn start(self, fold: &Arc<Mutex<Fold>>) -> Result<RunMetrics> {
        {
            let mut f = fold.lock().expect("never poisoned");
            *f = std::mem::take(&mut *f).keeping_totals();
        }
        let server = match self.listener {
            Some(listener) => {
                let server = serve::start(listener, fold.clone())?;
                eprintln!("metrics: http://{}/metrics", server.addr);
                Some(server)
            }
            None => None,
        };
        let pusher = self.endpoint.map(|endpoint| {
            let url = endpoint.url();
            let (end, ended) = watch::channel(false);
            let task = tokio::spawn(push_loop(endpoint, fold.clone(), ended));
            (end, task, url)
        });
        Ok(RunMetrics {
            server,
            linger: self.linger,
            pusher,
        })
    }
}

impl RunMetrics {
    /// The fold holds the run's end: the last push goes out, and `/metrics`
    /// stays up until a scraper has read the final numbers once (at most
    /// `--metrics-linger`). Says on stderr how the pushes went.
    pub(crate) async fn finish(self) {
        if let Some(server) = &self.server {
            server.scrapes.final_state.store(true, Ordering::SeqCst);
        }
        if let Some((end, mut task, url)) = self.pusher {
            let _ = end.send(true);
            let done = tokio::time::timeout(FINAL_PUSH_WAIT, &mut task).await;
            if done.is_err() {
                task.abort();
            }
            match done.unwrap_or_else(|_| {
                Ok(PushReport {
                    pushes: 1,
                    delivered: 0,
                    last_error: Some("the last push did not finish within 15s".into()),
                })
            }) {
                Ok(r) if r.delivered == r.pushes => {
                    eprintln!("remote write: {} pushes to {url}, all delivered", r.pushes);
                }
                Ok(r) => eprintln!(
                    "warning: remote write: {} of {} pushes to {url} failed (last: {}); the log has \
                     every number: `coordinator export RUN --remote-write URL` sends the run again",
                    r.pushes - r.delivered,
                    r.pushes,
                    r.last_error.as_deref().unwrap_or("?"),
                ),
                Err(e) => eprintln!("warning: remote write to {url} stopped: {e}"),
            }
        }
        let Some(server) = &self.server else { return };
        if self.linger.is_zero() {
            return;
        }
        let scraped = server.scrapes.final_scraped.notified();
        if server.scrapes.final_seen.load(Ordering::SeqCst) {
            return;
        }
        eprintln!(
            "metrics: waiting up to {}s for a last scrape of http://{}/metrics",
            self.linger.as_secs_f64(),
            server.addr
        );
        if tokio::time::timeout(self.linger, scraped).await.is_err() {
            eprintln!("metrics: no scrape came for the final numbers");
        }
    }
}

/// Once a second (a window), the fold's series as of its newest record, if
/// anything was logged since; then, once `ended`, a last push of the final
/// numbers. Timestamps are the records' logging instants, in ms, each push's
/// later than the one before.
async fn push_loop(
    endpoint: Endpoint,
    fold: Arc<Mutex<Fold>>,
    mut ended: watch::Receiver<bool>,
) -> PushReport {
    let mut report = PushReport::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut last_us, mut last_ms) = (i64::MIN, i64::MIN);
    let mut warned = false;
    loop {
        let ending = tokio::select! {
            _ = tick.tick() => false,
            _ = ended.changed() => true,
        };
        let (families, at_us) = {
            let f = fold.lock().expect("never poisoned");
            (f.series(), f.last_logged_at_us())
        };
        let mut at_ms = at_us.div_euclid(1000);
        if at_us == last_us || (at_ms <= last_ms && !ending) {
            if ending {
                break;
            }
            continue;
        }
        // The end's push must not share a millisecond with the one before.
        at_ms = at_ms.max(last_ms.saturating_add(1));
        (last_us, last_ms) = (at_us, at_ms);
        let body = fleetbench_views::metrics::remote_write(&families, at_ms);
        report.pushes += 1;
        match endpoint.push(&body).await {
            Ok(()) => report.delivered += 1,
            Err(e) => {
                if !warned {
                    eprintln!(
                        "warning: remote write to {}: {e:#} (the run goes on; later pushes carry \
                         every counter whole)",
                        endpoint.url()
                    );
                    warned = true;
                }
                report.last_error = Some(format!("{e:#}"));
            }
        }
        if ending {
            break;
        }
    }
    report
}
