//! What `run`, `report` and `replay` share about a run's verdict: the
//! thresholds `--threshold` gives (checked against the run), the JUnit file
//! `--junit` asks for, and the exit code `--check` asks for.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use fleetbench::pb;
use fleetbench_fold::{Fold, Report};
use fleetbench_workload::Threshold;

use crate::cli::JudgeFlags;
use crate::error::BadInput;

/// The thresholds to judge against: those `--threshold` gives (None when
/// none: the logged ones). Bad input when one does not parse, or names a
/// phase or an operation the run does not have.
pub(crate) fn thresholds(flags: &JudgeFlags, fold: &Fold) -> Result<Option<Vec<pb::Threshold>>> {
    if flags.thresholds.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for text in &flags.thresholds {
        let t = Threshold::parse(text).map_err(|e| BadInput(anyhow!(e)))?;
        in_run(&t, fold).map_err(|e| BadInput(anyhow!("threshold {text:?}: {e}")))?;
        out.push(t.to_pb());
    }
    Ok(Some(out))
}

/// The threshold's phase and operation are the run's.
fn in_run(t: &Threshold, fold: &Fold) -> Result<(), String> {
    let run = fold.run.as_ref().map_or("", |r| r.id.as_str());
    let phases: Vec<_> = fold
        .phases
        .values()
        .filter(|p| t.phase.as_ref().is_none_or(|name| *name == p.name))
        .collect();
    if let Some(name) = &t.phase
        && phases.is_empty()
    {
        let names: Vec<&str> = fold.phases.values().map(|p| p.name.as_str()).collect();
        return Err(format!(
            "run {run} has no phase {name:?} (it has: {})",
            names.join(", ")
        ));
    }
    if let Some(op) = &t.op
        && !phases.iter().any(|p| p.op_names().iter().any(|o| o == op))
    {
        return Err(format!(
            "no phase of run {run} that it holds in has an operation {op:?}"
        ));
    }
    Ok(())
}

/// Writes the report's verdict and thresholds as JUnit XML to `path`.
pub(crate) fn write_junit(path: &Path, report: &Report) -> Result<()> {
    std::fs::write(path, fleetbench_views::junit::render(report))
        .with_context(|| format!("writing the JUnit file {}", path.display()))
}

/// The exit code of `report` or `replay`: the verdict's with `--check`,
/// else 0 (they report; they do not judge unless asked).
pub(crate) fn exit_code(report: &Report, check: bool) -> ExitCode {
    if check {
        ExitCode::from(report.verdict.exit_code())
    } else {
        ExitCode::SUCCESS
    }
}
