//! `coordinator export RUN`: a run's windows (per agent) as JSON Lines or
//! CSV, its latencies as an HdrHistogram interval log, its final metrics as
//! OpenMetrics text, or every raw log record as JSON Lines; or its metrics
//! pushed to a Prometheus remote-write endpoint as the run went.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{ExportArgs, ExportFormat};
use crate::error::BadInput;
use crate::log::history;
use crate::metrics::endpoint::Endpoint;

pub(crate) async fn export(data_dir: &Path, a: ExportArgs) -> Result<ExitCode> {
    if a.events && a.format != ExportFormat::Jsonl {
        return Err(BadInput(anyhow::anyhow!(
            "--events writes JSON Lines: records have fields of their own kind (use --format jsonl)"
        ))
        .into());
    }
    let id = history::resolve(data_dir, &a.run).map_err(BadInput)?;
    if let Some(url) = &a.remote_write {
        let endpoint = Endpoint::new(url, &a.remote_write_headers).map_err(BadInput)?;
        return remote_write(data_dir, &id, &endpoint).await;
    }
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
    } else if a.format == ExportFormat::Openmetrics {
        let loaded =
            history::load_into(data_dir, &id, fleetbench_fold::Fold::new().keeping_totals())
                .await?;
        let text = fleetbench_views::metrics::text(&loaded.fold.series(), true);
        out.write_all(text.as_bytes())
            .context("writing the export")?;
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
            ExportFormat::Openmetrics => unreachable!("written above"),
        }
        .context("writing the export")?;
    }
    out.flush().context("writing the export")?;
    Ok(ExitCode::SUCCESS)
}

/// The run's metrics as `run --remote-write` pushes them, replayed from the
/// log: the fold's series at each second of the run (as of the last record
/// logged before it), then the final ones, each with the log's timestamp.
async fn remote_write(data_dir: &Path, id: &str, endpoint: &Endpoint) -> Result<ExitCode> {
    let mut fold = fleetbench_fold::Fold::new().keeping_totals();
    let mut bodies = Vec::new();
    let (mut next_us, mut last_ms) = (i64::MIN, i64::MIN);
    let mut snapshot = |fold: &fleetbench_fold::Fold, bodies: &mut Vec<Vec<u8>>| {
        let at_ms = fold.last_logged_at_us().div_euclid(1000);
        if fold.run.is_some() && at_ms > last_ms {
            last_ms = at_ms;
            bodies.push(fleetbench_views::metrics::remote_write(
                &fold.series(),
                at_ms,
            ));
        }
    };
    history::scan(data_dir, id, &mut |_, rec| {
        if rec.logged_at_us >= next_us {
            snapshot(&fold, &mut bodies);
            next_us = (rec.logged_at_us.div_euclid(1_000_000) + 1) * 1_000_000;
        }
        fold.apply(rec);
        Ok(())
    })
    .await?;
    snapshot(&fold, &mut bodies);
    let bar = indicatif::ProgressBar::new(bodies.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("remote write {bar:30} {pos}/{len} pushes")
            .expect("static template is valid"),
    );
    // Pushes go in time order: after one that failed every attempt, the
    // rest would only fail the same way (or land out of order).
    for (done, body) in bodies.iter().enumerate() {
        if let Err(e) = endpoint.push(body).await {
            bar.finish_and_clear();
            eprintln!(
                "error: run {id}: push {} of {} to {} failed: {e:#} (stopped there)",
                done + 1,
                bodies.len(),
                endpoint.url()
            );
            return Ok(ExitCode::from(1));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "run {id}: {} pushes to {}, all delivered",
        bodies.len(),
        endpoint.url()
    );
    Ok(ExitCode::SUCCESS)
}
