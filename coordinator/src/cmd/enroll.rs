//! `coordinator enroll POOL`: an agent started by something else admitted
//! to a pool, with the credentials it needs.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::EnrollArgs;
use crate::pool;

pub(crate) async fn enroll(data_dir: &Path, a: EnrollArgs) -> Result<ExitCode> {
    pool::enroll(data_dir, a).await?;
    Ok(ExitCode::SUCCESS)
}
