//! `coordinator run WORKLOAD` and `coordinator rerun RUN`: a run from start
//! to summary (`crate::run`); the exit code is the run's verdict's. Ctrl-C
//! (SIGINT) or SIGTERM stops it in order (the phase where it is, agents and
//! services, the end logged; verdict interrupted, exit 130); a second
//! signal of either kind forces a fast exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::cli::{RerunArgs, RunArgs, RunFlags};
use crate::error::BadInput;
use crate::log::history;
use crate::reaper::Reaper;
use crate::run::{self, Stop};

/// The exit code of a run stopped by a signal (128 + SIGINT, as shells say).
const INTERRUPTED: u8 = 130;

/// How long a forced exit waits for the run to log its end.
const FORCED_GRACE: std::time::Duration = std::time::Duration::from_millis(1500);

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

/// `run` and `rerun`: a signal stops the run gracefully (its verdict is
/// then interrupted, exit 130), a second forces (exit 130 at once).
async fn start_run(
    workload: PathBuf,
    data_dir: PathBuf,
    flags: RunFlags,
    rerun_of: Option<String>,
) -> Result<ExitCode> {
    let halt = Stop {
        graceful: CancellationToken::new(),
        forced: CancellationToken::new(),
        reaper: Reaper::default(),
    };
    let signals = Signals::listen()?;
    let watcher = tokio::spawn(signals.watch(
        halt.graceful.clone(),
        halt.forced.clone(),
        halt.reaper.clone(),
    ));
    let code = run::run(
        run::RunArgs {
            workload,
            data_dir,
            flags,
            rerun_of,
        },
        halt,
    )
    .await;
    watcher.abort();
    Ok(ExitCode::from(code?))
}

/// SIGINT and SIGTERM, taken from their default (which kills the process
/// at once) for as long as a run lasts.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn listen() -> Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("handling SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("handling SIGTERM")?,
        })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    /// The first signal stops the run in order. A second kills what the run
    /// started on this machine and exits: the run logs its end if it can
    /// within `FORCED_GRACE`.
    async fn watch(
        mut self,
        graceful: CancellationToken,
        forced: CancellationToken,
        reaper: Reaper,
    ) {
        let first = self.next().await;
        eprintln!("interrupted ({first}): stopping the run (a second Ctrl-C or SIGTERM forces)");
        graceful.cancel();
        let second = self.next().await;
        eprintln!("{second} again: forced exit; killing the local agents and services");
        reaper.kill_all();
        forced.cancel();
        tokio::time::sleep(FORCED_GRACE).await;
        std::process::exit(i32::from(INTERRUPTED));
    }
}
