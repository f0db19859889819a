//! The report model: what every view renders. Field names are part of
//! fleetbench's interface (scripts read the JSON): add fields, never rename.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::limited::AgentLoad;

/// A run's report. Field names are part of fleetbench's interface: scripts
/// read the JSON. Add fields; do not rename them.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: String,
    pub name: String,
    pub status: String,
    pub reason: String,
    pub started_at: String,
    pub duration_s: f64,
    pub coordinator_version: String,
    pub agent_binary_hash: String,
    pub agents: Vec<AgentReport>,
    pub phases: Vec<PhaseReport>,
    pub hosts: Vec<HostReport>,
    pub log: LogReport,
    pub notices: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentReport {
    pub id: String,
    pub host: String,
    pub cores: u32,
    pub version: String,
    pub clock_offset_us: i64,
    pub attaches: u32,
    pub detaches: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub index: u32,
    /// Seconds from the run's start to the phase's start.
    pub start_s: f64,
    /// Width of the timeline's windows, seconds.
    pub window_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub throughput_rps: f64,
    pub latency_us: Option<LatencyReport>,
    /// Latency by percentile, for the percentile-spectrum chart.
    pub latency_spectrum: Vec<SpectrumPoint>,
    pub latency_clamped: u64,
    pub max_send_lag_us: u64,
    pub ended: bool,
    pub agents: Vec<PhaseAgentReport>,
    pub timeline: Vec<TimelinePoint>,
    // Fields below appeared with operations and load shapes; each is left
    // out of the JSON when empty, so an op-less log reports as it did.
    /// Open loop: sends the schedule called for in the headline windows
    /// (offered load), and sends whose worker woke late (see
    /// [`limited_reasons`](crate::limited_reasons)).
    #[serde(skip_serializing_if = "is_zero")]
    pub scheduled: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub late_wakes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_wake_lag_us: u64,
    /// The phase's iteration budget (total across agents).
    #[serde(skip_serializing_if = "is_zero")]
    pub iterations: u64,
    /// Open-loop arrivals: "uniform" or "poisson".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrival: Option<String>,
    /// Per named operation (empty for a single-workload phase).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<OpReport>,
    /// Agents whose numbers describe the agent, not the target: when not
    /// empty, the phase's results are not the target's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub generator_limited: Vec<LimitedAgent>,
    /// Run control cut the phase short.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<StopReport>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// One operation of a phase: its share of the phase's requests and its own
/// latency. The phase's numbers are the sum over its operations.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub name: String,
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Percent of the phase's requests.
    pub share_pct: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub throughput_rps: f64,
    pub latency_us: Option<LatencyReport>,
    pub timeline: Vec<OpPoint>,
}

impl OpReport {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One timeline window of one operation (`t_s` from the phase's start).
#[derive(Debug, Clone, Serialize)]
pub struct OpPoint {
    pub t_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

/// An agent that limited a phase, and why (see [`limited_reasons`](crate::limited_reasons)).
#[derive(Debug, Clone, Serialize)]
pub struct LimitedAgent {
    pub agent: String,
    pub reasons: Vec<String>,
}

/// Where and why run control stopped a phase early.
#[derive(Debug, Clone, Serialize)]
pub struct StopReport {
    pub reason: String,
    /// The window whose results met the stop condition (or during which the
    /// user interrupted).
    pub window_index: u32,
    /// Start of that window, seconds from the phase's start.
    pub at_s: f64,
    /// The open-loop total rate then (0 for closed loop).
    pub rate: f64,
    /// A stop condition held (false: the user interrupted).
    pub condition_met: bool,
}

impl PhaseReport {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    /// Percentiles asked for besides these (`p99.99`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub percentiles: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseAgentReport {
    pub id: String,
    pub host: String,
    pub windows: u32,
    pub requests: u64,
    pub errors: u64,
    pub ended: bool,
    pub abandoned_in_flight: u64,
    /// CPU seconds the agent process used during the phase.
    pub cpu_s: f64,
    pub timeline: Vec<AgentPoint>,
    /// The agent's part of the load as scheduled: its share (weight / sum
    /// of weights), concurrency, open-loop rate and iterations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u64>,
    /// It spent its iteration budget.
    #[serde(skip_serializing_if = "is_false")]
    pub iterations_done: bool,
    /// Its process CPU averaged over the phase, percent of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_cpu_pct: Option<f64>,
    /// What the load-generator-limited rule saw (measured windows).
    #[serde(skip)]
    pub load: AgentLoad,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpectrumPoint {
    pub percentile: f64,
    pub value_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentPoint {
    pub t_s: f64,
    pub requests: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    pub t_s: f64,
    pub warmup: bool,
    pub requests: u64,
    pub errors: u64,
    #[serde(flatten)]
    pub latency: WindowLatency,
    pub agents: u32,
    /// Open loop: sends the schedule called for in this window (offered).
    #[serde(skip_serializing_if = "is_zero")]
    pub scheduled: u64,
    /// The phase's load shape's total rate, averaged over this window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intended_rps: Option<f64>,
}

/// A window's latency percentiles, µs (`None`: no request finished in it).
/// Its fields sit in the JSON of the window that holds it, as
/// `p50_us`, `p90_us`, `p99_us`, `max_us`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WindowLatency {
    /// Median latency, µs.
    pub p50_us: Option<u64>,
    /// 90th percentile latency, µs.
    pub p90_us: Option<u64>,
    /// 99th percentile latency, µs.
    pub p99_us: Option<u64>,
    /// Largest latency, µs.
    pub max_us: Option<u64>,
}

impl WindowLatency {
    /// The percentiles of a window's merged histogram.
    pub fn of(h: &Histogram<u64>) -> WindowLatency {
        let at = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q));
        WindowLatency {
            p50_us: at(0.5),
            p90_us: at(0.9),
            p99_us: at(0.99),
            max_us: (!h.is_empty()).then(|| h.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub cpu_pct_mean: f64,
    pub cpu_pct_max: f64,
    pub mem_used_max_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub load_1_max: f64,
    pub samples: u64,
    pub timeline: Vec<HostPoint>,
}

/// One second of one host; `t_s` from the run's start.
#[derive(Debug, Clone, Serialize)]
pub struct HostPoint {
    pub t_s: f64,
    pub cpu_pct: f64,
    pub mem_used_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogReport {
    pub records: u64,
    pub duplicate_events: u64,
    pub seq_gaps: u64,
    pub bad_windows: u64,
    /// Per agent: the highest sequence number logged and how many distinct
    /// events are logged (equal when nothing is missing).
    pub agent_events: BTreeMap<String, AgentEvents>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentEvents {
    pub highest_seq: u64,
    pub events: u64,
}
