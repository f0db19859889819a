//! `coordinator generate-run` (hidden): a synthetic run written straight
//! into the log, for replay benchmarks.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::GenerateRunArgs;
use crate::log::generate;
use crate::output::outln;

pub(crate) async fn generate_run(data_dir: &Path, a: GenerateRunArgs) -> Result<ExitCode> {
    let id = generate::run(data_dir, a.agents, a.seconds, a.seed).await?;
    outln!("{id}")?;
    Ok(ExitCode::SUCCESS)
}
