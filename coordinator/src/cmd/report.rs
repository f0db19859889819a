//! `coordinator report RUN`: a run's report, from its log alone.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use fleetbench_fold::ReportOptions;

use crate::cli::ReportArgs;
use crate::error::BadInput;
use crate::log::history;
use crate::output;

pub(crate) async fn report(data_dir: &Path, a: ReportArgs) -> Result<ExitCode> {
    let id = history::resolve(data_dir, &a.run).map_err(BadInput)?;
    let loaded = history::load(data_dir, &id).await?;
    let report = loaded.fold.report(&ReportOptions {
        include_warmup: a.include_warmup,
        live: loaded.live,
        ..Default::default()
    });
    output::print(fleetbench_views::report::render(&report, a.format))?;
    Ok(ExitCode::SUCCESS)
}
