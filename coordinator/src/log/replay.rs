//! `replay --follow` and `replay --speed N`: a run's timeline in the same
//! live view a user watched during the run, fed by the same fold.
//!
//! `--follow` streams a running run's records from its coordinator as they
//! become durable (ReadLog with follow); `--speed` reads a finished run's
//! log and applies its records at N times the pace they were logged. Both
//! end with the fold's report, as `replay` without them prints it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use fleetbench_fold::{Filter, Fold};

use super::history;
use crate::live::LiveView;

/// Agents attached now, as the fold saw attach and detach records.
fn attached(fold: &Fold) -> usize {
    fold.agents
        .values()
        .filter(|a| a.attaches > a.detaches)
        .count()
}

fn show(live: &mut LiveView, fold: &Fold, now_us: i64) {
    let Some((&index, phase)) = fold.phases.iter().next_back() else {
        return;
    };
    live.show(fold, index, now_us, attached(fold), phase.agent_ids.len());
}

/// Follows a running run until it ends; a finished run is just folded.
pub(crate) async fn follow(data_dir: &Path, run_id: &str, filter: Filter) -> Result<(Fold, bool)> {
    let loaded = history::load_filtered(data_dir, run_id, filter.clone()).await?;
    if !loaded.live {
        return Ok((loaded.fold, false));
    }
    let mut fold = Fold::with_filter(filter);
    let mut live = LiveView::new(0);
    let mut shown = Instant::now();
    history::stream_live(data_dir, run_id, true, |rec| {
        fold.apply(&rec);
        if shown.elapsed() >= Duration::from_millis(250) {
            show(&mut live, &fold, fleetbench::clock::now_us());
            shown = Instant::now();
        }
    })
    .await?;
    show(&mut live, &fold, fleetbench::clock::now_us());
    live.finish();
    Ok((fold, false))
}

/// Plays a finished run back at `speed` times its pace.
pub(crate) async fn playback(
    data_dir: &Path,
    run_id: &str,
    speed: f64,
    filter: Filter,
) -> Result<Fold> {
    if !(speed.is_finite() && speed > 0.0) {
        bail!("--speed must be a number above zero, not {speed}");
    }
    let records = match history::records(data_dir, run_id).await {
        Ok(r) => r,
        Err(e) => {
            return Err(e.context(format!(
                "run {run_id} cannot be played back while it runs: use --follow"
            )));
        }
    };
    let t0 = records.first().map_or(0, |r| r.logged_at_us);
    let started = Instant::now();
    let mut fold = Fold::with_filter(filter);
    let mut live = LiveView::new(0);
    let mut shown = Instant::now();
    for rec in &records {
        let due = Duration::from_secs_f64(((rec.logged_at_us - t0).max(0) as f64 / 1e6) / speed);
        let now = started.elapsed();
        if due > now + Duration::from_millis(20) {
            // While waiting for the next record, keep the view moving.
            let mut wait = due - now;
            while wait > Duration::ZERO {
                let step = wait.min(Duration::from_millis(250));
                tokio::time::sleep(step).await;
                wait = wait.saturating_sub(step);
                let virtual_now = t0 + (started.elapsed().as_secs_f64() * speed * 1e6) as i64;
                show(&mut live, &fold, virtual_now);
            }
        }
        fold.apply(rec);
        if shown.elapsed() >= Duration::from_millis(250) {
            let virtual_now = t0 + (started.elapsed().as_secs_f64() * speed * 1e6) as i64;
            show(&mut live, &fold, virtual_now);
            shown = Instant::now();
        }
    }
    live.finish();
    Ok(fold)
}
