//! `coordinator pool up|ls|upgrade|down`: exit 1 when a host failed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::PoolCmd;
use crate::pool;

pub(crate) async fn pool(data_dir: &Path, command: PoolCmd) -> Result<ExitCode> {
    let ok = match command {
        PoolCmd::Up(a) => pool::up(data_dir, a).await?,
        PoolCmd::Ls(a) => {
            pool::ls(data_dir, a).await?;
            true
        }
        PoolCmd::Upgrade(a) => pool::upgrade(data_dir, a).await?,
        PoolCmd::Down(a) => pool::down(data_dir, a).await?,
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
