//! The SSH fleet of a run: every host bootstrapped in parallel (with a
//! bound), one progress bar per host, and the agents started there kept
//! track of so that a failed or interrupted run leaves no stray agent
//! process behind. [`each_host`] is the same parallel, progress-barred walk
//! over hosts for the pool commands (`pool.rs`).

use std::sync::Arc;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Semaphore;

use super::bootstrap::{self, AgentBinary, BootstrapError, Deployed, HostJob};

/// Hosts bootstrapped at once, at most.
pub(crate) const PARALLEL: usize = 16;

pub(crate) struct Fleet {
    pub deployed: Vec<Deployed>,
    pub failures: Vec<BootstrapError>,
}

impl Fleet {
    /// Deploys every job; never fails as a whole: failed hosts are listed.
    pub(crate) async fn deploy(jobs: Vec<HostJob>, binary: &AgentBinary) -> Fleet {
        let (progress, style) = progress();
        let limit = Arc::new(Semaphore::new(PARALLEL));
        let binary = Arc::new(binary.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for job in jobs {
            let bar = progress.add(ProgressBar::new(0).with_style(style.clone()));
            bar.set_message(format!("{}: queued", job.target));
            let (limit, binary) = (limit.clone(), binary.clone());
            tasks.spawn(async move {
                let _permit = limit
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                let host = job.target.to_string();
                let started = Instant::now();
                let result = bootstrap::deploy(job, &binary, &bar).await;
                let line = match &result {
                    Ok(d) => format!(
                        "{host}: {} agent(s) started in {:.2}s ({})",
                        d.agents.len(),
                        started.elapsed().as_secs_f64(),
                        if d.reused_binary {
                            "agent binary already there, nothing uploaded".to_string()
                        } else {
                            format!("uploaded {} bytes", d.uploaded_bytes)
                        }
                    ),
                    Err(e) => format!("{e}"),
                };
                bar.finish_and_clear();
                eprintln!("{line}");
                result
            });
        }
        let mut fleet = Fleet {
            deployed: Vec::new(),
            failures: Vec::new(),
        };
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(d)) => fleet.deployed.push(d),
                Ok(Err(e)) => fleet.failures.push(e),
                Err(e) => fleet.failures.push(BootstrapError {
                    host: "?".into(),
                    step: bootstrap::Step::Connect,
                    reason: format!("bootstrap task failed: {e}"),
                }),
            }
        }
        fleet.deployed.sort_by(|a, b| a.target.cmp(&b.target));
        fleet
    }

    /// Every agent id started on the fleet.
    pub(crate) fn agent_ids(&self) -> Vec<String> {
        self.deployed
            .iter()
            .flat_map(|d| d.agents.iter().map(|(id, _)| id.clone()))
            .collect()
    }

    /// Kills this run's agents on every host: those of `ids`, or all.
    pub(crate) async fn kill(&self, ids: Option<&[String]>) {
        for d in &self.deployed {
            let mine: Vec<String> = d
                .agents
                .iter()
                .map(|(id, _)| id.clone())
                .filter(|id| ids.is_none_or(|ids| ids.contains(id)))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let only = ids.is_some().then_some(mine.as_slice());
            bootstrap::kill_run_agents(&d.session, &d.dir, &d.run_id, only).await;
        }
    }

    pub(crate) async fn close(self) {
        for d in self.deployed {
            d.session.close().await;
        }
    }
}

/// Progress bars on stderr when it is a terminal, hidden otherwise.
fn progress() -> (MultiProgress, ProgressStyle) {
    let progress = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8))
    } else {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    };
    let style = ProgressStyle::with_template("{spinner} {msg} {bytes}/{total_bytes}")
        .expect("static template is valid");
    (progress, style)
}

/// Runs `work` on every host, at most `parallel` at once, each with a
/// progress bar; results in the order of `targets`.
pub(crate) async fn each_host<T, F, Fut>(
    targets: Vec<super::ssh::Target>,
    parallel: usize,
    work: F,
) -> Vec<(super::ssh::Target, Result<T, BootstrapError>)>
where
    T: Send + 'static,
    F: Fn(super::ssh::Target, ProgressBar) -> Fut,
    Fut: std::future::Future<Output = Result<T, BootstrapError>> + Send + 'static,
{
    let (progress, style) = progress();
    let limit = Arc::new(Semaphore::new(parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, target) in targets.iter().enumerate() {
        let bar = progress.add(ProgressBar::new(0).with_style(style.clone()));
        bar.set_message(format!("{target}: queued"));
        let limit = limit.clone();
        let job = work(target.clone(), bar.clone());
        tasks.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let result = job.await;
            bar.finish_and_clear();
            (i, result)
        });
    }
    let mut results: Vec<Option<Result<T, BootstrapError>>> =
        targets.iter().map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, r)) => results[i] = Some(r),
            Err(e) => tracing::error!("a host task failed: {e}"),
        }
    }
    targets
        .into_iter()
        .zip(results)
        .map(|(t, r)| {
            let r = r.unwrap_or_else(|| {
                Err(BootstrapError {
                    host: t.to_string(),
                    step: bootstrap::Step::Connect,
                    reason: "the host's task failed".into(),
                })
            });
            (t, r)
        })
        .collect()
}
