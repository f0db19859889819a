//! The one aggregation over a run's log records: log records → [`Fold`] →
//! [`Report`]. The live view, `run`'s summary, `report`, `replay`,
//! `compare` and `export` all compute their numbers here, and nowhere else.
//!
//! The coordinator's live view feeds it each record right after the record is
//! durable; the end-of-run summary and `report` read the same state, and
//! `report` rebuilds it from the log alone. So every number a user sees comes
//! from this code, whichever way they look.
//!
//! Applying records is order-independent: windows are keyed by (phase, window
//! index), counts add, histograms merge, and a repeated `(agent, seq)` is
//! ignored. Percentiles are read from merged HDR histograms, never averaged.
//!
//! Per phase it keeps every window index's results (all agents and all
//! operations merged) and, for phases of named operations, each operation's
//! own; per agent, its counts per window. From these the report says, per
//! phase, whether an agent rather than the target set the numbers
//! ([`limited_reasons`]), where run control stopped the phase, and what
//! rate the load shape intended per window ([`intended_rate`]); per run,
//! which `[[service]]` died during it ([`ServiceReport`]).
//!
//! - `state`: what the fold keeps; `apply`: one record into it;
//!   `summary`: the state into a [`Report`]; `model`: the report's types;
//!   `limited`: the load-generator-limited rules; `shape`: intended rates;
//!   `services`: the `[[service]]` processes, which died and their stderr;
//!   `series`: the fold as Prometheus metric families (live metrics);
//!   `testlog` (feature `test-support`): synthetic logs for tests.
//!
//! Depends only on the root `fleetbench` crate (`pb`, the histogram codec),
//! hdrhistogram, and serde for the report's JSON shape (`testlog` also on
//! `fleetbench-gen`'s rng). It owns no I/O: it neither reads
//! the log nor prints. Views depend on it; it depends on no view, and the
//! agent never links it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod apply;
mod limited;
mod model;
mod options;
mod plausible;
mod reasons;
mod series;
mod services;
mod shape;
mod state;
mod summary;
#[cfg(any(test, feature = "test-support"))]
pub mod testlog;
#[cfg(test)]
mod tests;
mod threshold;
mod verdict;
#[cfg(test)]
mod verdict_tests;
mod windowing;

pub use apply::notice_level;
pub use limited::{
    AGENT_CPU_SATURATED, AgentLoad, LATE_WAKE_MIN_SCHEDULED, LATE_WAKE_SHARE, SEND_SHORTFALL,
    SHORTFALL_LATE_SHARE, limited_reasons, schedule_not_kept,
};
pub use model::{
    AgentEvents, AgentPoint, AgentReport, HostPoint, HostReport, LatencyReport, LimitedAgent,
    LogReport, OpPoint, OpReport, PhaseAgentReport, PhaseReport, Report, SendLagReport,
    ServiceReport, SpectrumPoint, StageReport, StopReport, ThresholdReport, ThresholdResult,
    TimelinePoint, WindowLatency,
};
pub use options::ReportOptions;
pub use plausible::{MAX_NOTICE_BYTES, event_fault, host_metrics_fault, window_fault};
pub use reasons::{Reason, ReasonKind, Verdict, verdict_of};
pub use series::{Family, MetricKind, Sample, latency_buckets_s};
pub use services::STDERR_TAIL_LINES;
pub use shape::{intended_mean, intended_rate};
pub use state::{AgentInfo, AgentPhase, Filter, Fold, PhaseAgg, RunInfo, WindowAgg};
pub use threshold::{Metric, crossed_in};
