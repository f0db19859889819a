//! Views of what the fold computed: a [`Report`](fleetbench_fold::Report) as
//! a table, JSON, CSV or a self-contained HTML page; two reports compared
//! (with the Mann-Whitney U test); a run's windows and raw records exported.
//!
//! - `report`: table, JSON and CSV, and the [`Format`] dispatch (to `html`
//!   for a page); `html`: the HTML pages and their SVG charts; `compare`:
//!   two reports side by side, with `stats` (the noise test); `junit`: the
//!   verdict and thresholds as JUnit XML for CI; `export`:
//!   window rows and raw records; `metrics`: the fold's metric families as
//!   Prometheus text, OpenMetrics and remote write; `cells`: the cells and sentences every
//!   view shares; `format`: the formats' names.
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
pub mod junit;
pub mod metrics;
pub mod report;
pub mod stats;

pub use format::Format;
