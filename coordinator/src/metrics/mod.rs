//! Live metrics for Prometheus-compatible systems (the series themselves are
//! `fleetbench_fold::Fold::series`, their formats `fleetbench_views::metrics`).
//!
//! - `serve`: `GET /metrics` (Prometheus text or OpenMetrics) over HTTP/1.1.
//! - `endpoint`: a remote-write endpoint: URL, auth headers, one POST with
//!   retries and backoff.
//! - `session`: a run's metrics: the server and the once-per-window pushes,
//!   started with the run and finished after its end.

pub(crate) mod endpoint;
pub(crate) mod serve;
pub(crate) mod session;
