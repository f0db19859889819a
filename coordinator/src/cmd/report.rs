//! `coordinator report RUN`: a run's report and verdict, from its log alone
//! (judged again: against `--threshold`s instead of the logged ones, if
//! given; exit code the verdict's with `--check`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use fleetbench_fold::ReportOptions;

use crate::cli::ReportArgs;
use crate::cmd::judge;
use crate::error::BadInput;
use crate::log::history;
use crate::output;

pub(crate) async fn report(data_dir: &Path, a: ReportArgs) -> Result<ExitCode> {
    let id = history::resolve(data_dir, &a.run).map_err(BadInput)?;
    let loaded = history::load(data_dir, &id).await?;
    let report = loaded.fold.report(&ReportOptions {
        include_warmup: a.include_warmup,
        live: loaded.live,
        thresholds: judge::thresholds(&a.judge, &loaded.fold)?,
        ..Default::default()
    });
    output::print(fleetbench_views::report::render(&report, a.format))?;
    if let Some(path) = &a.judge.junit {
        judge::write_junit(path, &report)?;
    }
    Ok(judge::exit_code(&report, a.judge.check))
}
