//! `coordinator export RUN`: a run's windows (per agent) as JSON Lines or
//! CSV, its latencies as an HdrHistogram interval log, or every raw log
//! record as JSON Lines.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{ExportArgs, ExportFormat};
use crate::error::BadInput;
use crate::log::history;

pub(crate) async fn export(data_dir: &Path, a: ExportArgs) -> Result<ExitCode> {
    if a.events && a.format != ExportFormat::Jsonl {
        return Err(BadInput(anyhow::anyhow!(
            "--events writes JSON Lines: records have fields of their own kind (use --format jsonl)"
        ))
        .into());
    }
    let id = history::resolve(data_dir, &a.run).map_err(BadInput)?;
    let sink: Box<dyn std::io::Write> = match &a.output {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(sink);
    if a.events {
        history::scan(data_dir, &id, &mut |lsn, rec| {
            // As an io::Error, so that a closed pipe is seen as one.
            serde_json::to_writer(&mut out, &fleetbench_views::export::record_json(lsn, rec))
                .map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            Ok(())
        })
        .await?;
    } else {
        let loaded = history::load_into(
            data_dir,
            &id,
            fleetbench_fold::Fold::new().keeping_agent_windows(),
        )
        .await?;
        let rows = fleetbench_views::export::window_rows(&loaded.fold);
        match a.format {
            ExportFormat::Jsonl => fleetbench_views::export::write_rows_jsonl(&rows, &mut out),
            ExportFormat::Csv => fleetbench_views::export::write_rows_csv(&rows, &mut out),
            ExportFormat::Hlog => fleetbench_views::export::write_hlog(&loaded.fold, &mut out),
        }
        .context("writing the export")?;
    }
    out.flush().context("writing the export")?;
    Ok(ExitCode::SUCCESS)
}
