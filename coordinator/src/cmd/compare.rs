//! `coordinator compare BASE CANDIDATE`: two runs phase by phase; exit 1
//! when a `--max-regression` limit is crossed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use fleetbench_fold::{Report, ReportOptions, RunInfo};
use fleetbench_views::Format;
use fleetbench_views::compare::Side;

use crate::cli::CompareArgs;
use crate::error::BadInput;
use crate::log::history;
use crate::output;

pub(crate) async fn compare(data_dir: &Path, a: CompareArgs) -> Result<ExitCode> {
    let base = load_run(data_dir, &a.base).await?;
    let candidate = load_run(data_dir, &a.candidate).await?;
    if let Some(phase) = &a.phase {
        for (label, (_, report)) in [("base", &base), ("candidate", &candidate)] {
            if !report.phases.iter().any(|p| &p.name == phase) {
                let names: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
                return Err(BadInput(anyhow::anyhow!(
                    "the {label} run {} has no phase {phase:?} (it has: {})",
                    report.run_id,
                    names.join(", ")
                ))
                .into());
            }
        }
    }
    let limits = a.max_regression.map(|l| l.0).unwrap_or_default();
    let comparison = fleetbench_views::compare::compare(
        &Side {
            run: &base.0,
            report: &base.1,
        },
        &Side {
            run: &candidate.0,
            report: &candidate.1,
        },
        a.phase.as_deref(),
        &limits,
    );
    if comparison.phases.is_empty() {
        return Err(BadInput(anyhow::anyhow!(
            "runs {} and {} have no phase name in common: nothing to compare",
            base.1.run_id,
            candidate.1.run_id
        ))
        .into());
    }
    let text = match a.format {
        Format::Html => fleetbench_views::html::render_compare(&base.1, &candidate.1),
        format => fleetbench_views::compare::render(&comparison, format),
    };
    output::print(text)?;
    Ok(if comparison.regressed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Resolves and folds a run: its first record's facts and its report.
async fn load_run(data_dir: &Path, which: &str) -> Result<(RunInfo, Report)> {
    let id = history::resolve(data_dir, which).map_err(BadInput)?;
    let loaded = history::load(data_dir, &id).await?;
    let report = loaded.fold.report(&ReportOptions {
        live: loaded.live,
        ..Default::default()
    });
    let info = loaded.fold.run.clone().unwrap_or_default();
    Ok((info, report))
}
