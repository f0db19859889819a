//! `coordinator run WORKLOAD` and `coordinator rerun RUN`: a run from start
//! to summary (`crate::run`), with Ctrl-C stopping it gracefully.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::cli::{RerunArgs, RunArgs, RunFlags};
use crate::error::BadInput;
use crate::log::history;
use crate::run::{self, Outcome};

/// `coordinator run WORKLOAD`.
pub(crate) async fn run(data_dir: &Path, args: RunArgs) -> Result<ExitCode> {
    start_run(args.workload, data_dir.to_path_buf(), args.flags, None).await
}

/// `coordinator rerun RUN`: the recorded workload text, written to a file
/// named as the original was, run as a new run.
pub(crate) async fn rerun(data_dir: &Path, args: RerunArgs) -> Result<ExitCode> {
    let id = history::resolve(data_dir, &args.run).map_err(BadInput)?;
    let loaded = history::load(data_dir, &id).await?;
    let info = loaded.fold.run.clone().unwrap_or_default();
    if info.workload_text.is_empty() {
        return Err(BadInput(anyhow::anyhow!(
            "run {id} recorded no workload text: nothing to run again"
        ))
        .into());
    }
    // The file keeps the original's name: a workload without
    // [run] name is named after its file.
    let stem = std::path::Path::new(&info.workload_path)
        .file_stem()
        .map_or_else(|| "workload".into(), |s| s.to_os_string());
    let dir = data_dir
        .join("tmp")
        .join(format!("rerun-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(stem).with_extension("toml");
    std::fs::write(&path, &info.workload_text)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("rerun of run {id} ({}): {}", info.name, path.display());
    let outcome = start_run(path, data_dir.to_path_buf(), args.flags, Some(id)).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// `run` and `rerun`: Ctrl-C stops the run gracefully, twice forces.
async fn start_run(
    workload: PathBuf,
    data_dir: PathBuf,
    flags: RunFlags,
    rerun_of: Option<String>,
) -> Result<ExitCode> {
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping the run (Ctrl-C again to force)");
                stop.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        }
    });
    let outcome = run::run(
        run::RunArgs {
            workload,
            data_dir,
            flags,
            rerun_of,
        },
        stop,
    )
    .await?;
    Ok(match outcome {
        Outcome::Completed => ExitCode::SUCCESS,
        Outcome::Failed => ExitCode::FAILURE,
        Outcome::Refused => ExitCode::from(2),
    })
}
