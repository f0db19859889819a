//! Views of what the fold computed: a [`Report`](fleetbench_fold::Report) as
//! a table, JSON, CSV or a self-contained HTML page; two reports compared
//! (with the Mann-Whitney U test); a run's windows and raw records exported.
//!
//! Depends on `fleetbench-fold` and the root `fleetbench` crate; only the
//! coordinator depends on it (never the agent: it links plotters and
//! comfy-table).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cells;
pub mod compare;
pub mod export;
mod format;
pub mod html;
pub mod report;
pub mod stats;

pub use format::Format;
