//! What a report is asked to include: warm-up or not, a time range,
//! timeline width, extra percentiles, and the thresholds to judge against.

use fleetbench::pb;

/// What a report includes.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Count warm-up windows in the headline numbers.
    pub include_warmup: bool,
    /// The run is still being written (status "running", not "incomplete").
    pub live: bool,
    /// Timeline windows of this many seconds (a whole multiple of the
    /// logged windows); None: as logged.
    pub window_s: Option<u32>,
    /// Only windows that lie inside [from_s, to_s], seconds from the run's start.
    pub from_s: Option<f64>,
    /// See `from_s`.
    pub to_s: Option<f64>,
    /// Extra percentiles to report (like 99.99).
    pub percentiles: Vec<f64>,
    /// The fold was built with a filter: list only agents that left results.
    pub filtered: bool,
    /// Judge the run against these thresholds instead of those its log
    /// holds (`report --threshold`); None: the logged ones.
    pub thresholds: Option<Vec<pb::Threshold>>,
}
