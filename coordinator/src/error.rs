//! The one error kind the exit code tells apart: bad input (exit 2), as
//! opposed to a run that failed (exit 1). `main` maps it.

/// Input errors (exit 2) are distinguished from run failures (exit 1).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct BadInput(#[from] pub anyhow::Error);
