//! `coordinator runs`: the runs in the log, one line each, with their
//! verdict and each phase's throughput and p99.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use fleetbench_fold::{Report, ReportOptions};

use crate::cli::RunsArgs;
use crate::log;
use crate::log::history;
use crate::output::outln;

pub(crate) async fn runs(data_dir: &Path, a: RunsArgs) -> Result<ExitCode> {
    let ids = log::list_runs(data_dir)
        .with_context(|| format!("listing runs in {}", data_dir.display()))?;
    outln!(
        "{:<36}  {:<20}  {:<20}  {:>9}  {:<10}  {:<11}  {:>10}  {:>8}  phases (req/s, p99)",
        "id",
        "name",
        "started",
        "duration",
        "status",
        "verdict",
        "requests",
        "errors"
    )?;
    for id in ids {
        // A run id is a UUIDv7: its time says, without opening the
        // log, that a run is older than --since (a second of slack:
        // the id is drawn just before the start is taken).
        if let (Some(since), Some(t)) = (a.since, history::id_time_us(&id))
            && t < since - 1_000_000
        {
            continue;
        }
        let loaded = match history::load(data_dir, &id).await {
            Ok(loaded) => loaded,
            Err(e) => {
                if a.name.is_none() && a.since.is_none() && a.status.is_empty() {
                    outln!("{id:<36}  (unreadable: {e:#})")?;
                }
                continue;
            }
        };
        let r = loaded.fold.report(&ReportOptions {
            live: loaded.live,
            ..Default::default()
        });
        let started_us = loaded.fold.run.as_ref().map_or(0, |r| r.started_at_us);
        if a.name
            .as_ref()
            .is_some_and(|n| !r.name.contains(n.as_str()))
            || a.since.is_some_and(|s| started_us < s)
            || (!a.status.is_empty() && !a.status.contains(&r.status))
        {
            continue;
        }
        outln!("{}", line(&r))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One run's line.
fn line(r: &Report) -> String {
    let requests: u64 = r.phases.iter().map(|p| p.requests).sum();
    let errors: u64 = r.phases.iter().map(|p| p.error_count()).sum();
    let headline: Vec<String> = r
        .phases
        .iter()
        .map(|p| {
            format!(
                "{} {:.1}/s p99 {}",
                p.name,
                p.throughput_rps,
                p.latency_us.as_ref().map_or_else(
                    || "-".to_string(),
                    |l| fleetbench::clock::format_us(l.p99 as f64)
                )
            )
        })
        .collect();
    format!(
        "{:<36}  {:<20}  {:<20}  {:>8.1}s  {:<10}  {:<11}  {:>10}  {:>8}  {}",
        r.run_id,
        r.name,
        r.started_at,
        r.duration_s,
        r.status,
        r.verdict.name(),
        requests,
        errors,
        headline.join("; ")
    )
}
