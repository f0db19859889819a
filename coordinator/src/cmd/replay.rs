//! `coordinator replay RUN`: a run re-aggregated from its raw events (other
//! windows, a time range, some phases, agents or hosts), followed live, or
//! played back; judged over what it shows (`--threshold`, `--check`,
//! `--junit` as `report`'s).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use fleetbench_fold::ReportOptions;

use crate::cli::ReplayArgs;
use crate::cmd::judge;
use crate::error::BadInput;
use crate::log::history;
use crate::log::replay;
use crate::output;

pub(crate) async fn replay(data_dir: &Path, a: ReplayArgs) -> Result<ExitCode> {
    for p in &a.percentiles {
        if !(0.0..=100.0).contains(p) {
            return Err(
                BadInput(anyhow::anyhow!("percentile {p} is not between 0 and 100")).into(),
            );
        }
    }
    let id = history::resolve(data_dir, &a.run).map_err(BadInput)?;
    let filter = fleetbench_fold::Filter {
        phases: a.phases,
        agents: a.agents,
        exclude_agents: a.exclude_agents,
        hosts: a.hosts,
        ops: a.ops,
    };
    let filtered = !filter.is_empty();
    let (fold, live) = if a.follow {
        replay::follow(data_dir, &id, filter).await?
    } else if let Some(speed) = a.speed {
        (replay::playback(data_dir, &id, speed, filter).await?, false)
    } else {
        let loaded = history::load_filtered(data_dir, &id, filter).await?;
        (loaded.fold, loaded.live)
    };
    let report = fold.report(&ReportOptions {
        include_warmup: a.include_warmup,
        live,
        window_s: a.window,
        from_s: a.from,
        to_s: a.to,
        percentiles: a.percentiles,
        filtered,
        thresholds: judge::thresholds(&a.judge, &fold)?,
    });
    let text = fleetbench_views::report::render(&report, a.format);
    match a.output {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => output::print(text)?,
    }
    if let Some(path) = &a.judge.junit {
        judge::write_junit(path, &report)?;
    }
    Ok(judge::exit_code(&report, a.judge.check))
}
