//! The report model: what every view renders. Field names are part of
//! fleetbench's interface (scripts read the JSON): add fields, never rename.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::limited::AgentLoad;
use crate::reasons::{Reason, Verdict};

/// A run's report. Field names are part of fleetbench's interface: scripts
/// read the JSON. Add fields; do not rename them.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run's id.
    pub run_id: String,
    /// The run's name, from the workload file.
    pub name: String,
    /// How the run ended, as its last record says (`completed`, `aborted`,
    /// `failed`); without one, `running` while a coordinator still writes
    /// it, else `incomplete`.
    pub status: String,
    /// Why it ended so (empty for a run that completed).
    pub reason: String,
    /// The run judged from its log: passed, failed, invalid or interrupted
    /// (see [`Verdict`]).
    pub verdict: Verdict,
    /// Why it is not passed, every fact that says so (empty: passed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// Each threshold judged: measured value, limit, result.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<ThresholdReport>,
    /// When the run started, RFC 3339 (UTC).
    pub started_at: String,
    /// Seconds from the run's start to its last logged record (ms
    /// precision).
    pub duration_s: f64,
    /// The version of the coordinator that ran it.
    pub coordinator_version: String,
    /// SHA-256 of the agent binary the run shipped, hex.
    pub agent_binary_hash: String,
    /// Every agent that attached, by id.
    pub agents: Vec<AgentReport>,
    /// The phases, in the workload's order (only those a filter names).
    pub phases: Vec<PhaseReport>,
    /// Per host that sent metrics, by name.
    pub hosts: Vec<HostReport>,
    /// What the log holds and lacks.
    pub log: LogReport,
    /// The run's notices in log order, as "LEVEL: [agent ID: ]MESSAGE".
    pub notices: Vec<String>,
    /// Services that died or were never started (left out of the JSON when
    /// every service ran until the run stopped it). One that
    /// `died_during_run` makes the numbers after its death not the
    /// service's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceReport>,
}

/// A `[[service]]` that did not run as the run needed it: it ended by
/// itself, or was never started.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    /// The service's name.
    pub name: String,
    /// The SSH host it ran on (left out for this machine).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// "exited" (it ended by itself) or "failed" (never started).
    pub state: String,
    /// How it ended, as a shell says it ("exit code 1", "killed by signal
    /// 9 (SIGKILL)"); left out when unknown.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub exit_status: String,
    /// Its process id on its host (left out when unknown).
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub pid: u32,
    /// It exited after it was ready, before the run stopped it.
    pub died_during_run: bool,
    /// When, seconds from the run's start (ms precision).
    pub at_s: f64,
    /// When, among the phases ("during phase load, 3.2s in").
    pub when: String,
    /// What run control said about it (why it was never started).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The last lines it wrote to stderr (at most 20).
    pub stderr_tail: Vec<String>,
}

impl ServiceReport {
    /// Its end in words: `service "target" on HOST (pid 42) died during
    /// phase load, 3.2s in: killed by signal 9 (SIGKILL)`.
    pub fn death(&self) -> String {
        let on = if self.host.is_empty() {
            String::new()
        } else {
            format!(" on {}", self.host)
        };
        let pid = if self.pid > 0 {
            format!(" (pid {})", self.pid)
        } else {
            String::new()
        };
        let how = if self.exit_status.is_empty() {
            "exit status unknown"
        } else {
            &self.exit_status
        };
        format!(
            "service \"{}\"{on}{pid} died {}: {how}",
            self.name, self.when
        )
    }
}

impl Report {
    /// The services that died during the run: its numbers after each
    /// death do not measure the service.
    pub fn dead_services(&self) -> impl Iterator<Item = &ServiceReport> {
        self.services.iter().filter(|s| s.died_during_run)
    }
}

/// An agent of the run.
#[derive(Debug, Clone, Serialize)]
pub struct AgentReport {
    /// The agent's id.
    pub id: String,
    /// The host it ran on.
    pub host: String,
    /// The host's logical cores.
    pub cores: u32,
    /// The agent's version.
    pub version: String,
    /// The agent's clock minus the coordinator's, µs, at its latest attach.
    pub clock_offset_us: i64,
    /// How many times it attached (more than once: it reconnected).
    pub attaches: u32,
    /// How many times it detached.
    pub detaches: u32,
}

/// One phase of the run. Its headline numbers (requests, errors, bytes,
/// latency, throughput) count the windows inside the report's time range,
/// warm-up left out unless asked for.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// The phase's name.
    pub name: String,
    /// The phase's index in the workload file (0 first).
    pub index: u32,
    /// Seconds from the run's start to the phase's start.
    pub start_s: f64,
    /// Width of the timeline's windows, seconds.
    pub window_s: f64,
    /// Requests finished, ok or failed.
    pub requests: u64,
    /// Requests that succeeded.
    pub ok: u64,
    /// Failed requests per error class (`timeout`, `status_5xx`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Bytes the target's TCP acknowledged (what reached it).
    pub bytes_sent: u64,
    /// Bytes received from the target.
    pub bytes_received: u64,
    /// Seconds the headline windows cover (the last one may be cut short
    /// by the phase's end).
    pub duration_s: f64,
    /// The phase's warm-up, seconds.
    pub warmup_s: f64,
    /// `requests` per second of `duration_s`.
    pub throughput_rps: f64,
    /// Latency over all requests, µs (`None`: no request finished).
    pub latency_us: Option<LatencyReport>,
    /// Latency by percentile, for the percentile-spectrum chart.
    pub latency_spectrum: Vec<SpectrumPoint>,
    /// Latencies beyond the histogram's range, recorded at its top.
    pub latency_clamped: u64,
    /// Open loop: the largest delay between a request's intended and
    /// actual send, µs.
    pub max_send_lag_us: u64,
    /// Every agent the phase was scheduled on said it ended.
    pub ended: bool,
    /// Per agent: the scheduled ones in order, then any other that logged.
    pub agents: Vec<PhaseAgentReport>,
    /// Per timeline window (`window_s` wide), all inside the time range,
    /// warm-up included.
    pub timeline: Vec<TimelinePoint>,
    // Fields below appeared with operations and load shapes; each is left
    // out of the JSON when empty, so an op-less log reports as it did.
    /// Open loop: sends the schedule called for in the headline windows
    /// (offered load), and sends whose worker woke late (see
    /// [`limited_reasons`](crate::limited_reasons)).
    #[serde(skip_serializing_if = "is_zero")]
    pub scheduled: u64,
    /// Open loop: sends whose worker woke more than 5 ms after the intended
    /// time.
    #[serde(skip_serializing_if = "is_zero")]
    pub late_wakes: u64,
    /// Open loop: the largest such lag, µs.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_wake_lag_us: u64,
    /// Open loop: the lag between each send's intended time and the moment
    /// it was sent, over the headline windows: the generator's own delay,
    /// which the latencies include (they count from the intended time).
    /// `None` in closed loop and for logs from older agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_lag_us: Option<SendLagReport>,
    /// Where the requests' time went, over the headline windows, per stage:
    /// "connect" and "tls" (requests that opened a connection), "ttfb"
    /// (send to response headers). Empty for ops without stages.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stages_us: BTreeMap<String, StageReport>,
    /// The phase's iteration budget (total across agents).
    #[serde(skip_serializing_if = "is_zero")]
    pub iterations: u64,
    /// Open-loop arrivals: "uniform" or "poisson".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrival: Option<String>,
    /// Open loop: how late the phase let a send go out so that sends close
    /// together share a wake-up of the agent (`send_slack`), µs; the send
    /// lag above includes it.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub send_slack_us: u32,
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

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// One operation of a phase: its share of the phase's requests and its own
/// latency. The phase's numbers are the sum over its operations.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    /// The operation's name.
    pub name: String,
    /// Requests finished, ok or failed.
    pub requests: u64,
    /// Requests that succeeded.
    pub ok: u64,
    /// Failed requests per error class.
    pub errors: BTreeMap<String, u64>,
    /// Percent of the phase's requests.
    pub share_pct: f64,
    /// Bytes sent to the target.
    pub bytes_sent: u64,
    /// Bytes received from the target.
    pub bytes_received: u64,
    /// `requests` per second of the phase's `duration_s`.
    pub throughput_rps: f64,
    /// Latency over the operation's requests, µs (`None`: none finished).
    pub latency_us: Option<LatencyReport>,
    /// Per timeline window, as the phase's.
    pub timeline: Vec<OpPoint>,
    /// Open loop: the operation's send lag, as the phase's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_lag_us: Option<SendLagReport>,
}

impl OpReport {
    /// Failed requests, all classes.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One timeline window of one operation (`t_s` from the phase's start).
#[derive(Debug, Clone, Serialize)]
pub struct OpPoint {
    /// Start of the window, seconds from the phase's start.
    pub t_s: f64,
    /// Requests finished, ok or failed.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Median latency, µs (`None`: no request finished).
    pub p50_us: Option<u64>,
    /// 99th percentile latency, µs.
    pub p99_us: Option<u64>,
}

/// One threshold as judged over a report.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdReport {
    /// The threshold as one line, like "load:p99<20ms".
    pub threshold: String,
    /// What it limits: p50, p90, p95, p99, p999, max, error_rate,
    /// throughput or achieved_ratio.
    pub metric: String,
    /// The phase it holds in (none: the whole run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The operation it holds for (none: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// The limit, in `unit`.
    pub limit: f64,
    /// The value measured, in `unit` (none: nothing to measure).
    pub measured: Option<f64>,
    /// "us" (latencies), "ratio" (error_rate, achieved_ratio) or "rps".
    pub unit: &'static str,
    /// Passed, failed, or skipped (not in this report).
    pub result: ThresholdResult,
    /// It stops the run at the first window that crosses it.
    #[serde(skip_serializing_if = "is_false")]
    pub abort: bool,
    /// Where it stopped the run, and the crossing value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// The measured value against the limit, in words: "p99 5.21ms, not
    /// below 1.00ms".
    pub text: String,
}

/// A threshold's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdResult {
    /// The measured value is on the right side of the limit.
    Passed,
    /// It is not, or nothing could be measured, or it stopped the run.
    Failed,
    /// Not judged: its phase or operation is not in this report (a replay
    /// filter), or its metric is unknown.
    Skipped,
}

impl ThresholdResult {
    /// "passed", "failed" or "skipped".
    pub fn name(self) -> &'static str {
        match self {
            ThresholdResult::Passed => "passed",
            ThresholdResult::Failed => "failed",
            ThresholdResult::Skipped => "skipped",
        }
    }
}

/// An agent that limited a phase, and why (see [`limited_reasons`](crate::limited_reasons)).
#[derive(Debug, Clone, Serialize)]
pub struct LimitedAgent {
    /// The agent's id.
    pub agent: String,
    /// Each rule it met, in words.
    pub reasons: Vec<String>,
}

/// Where and why run control stopped a phase early.
#[derive(Debug, Clone, Serialize)]
pub struct StopReport {
    /// The stop condition that held (like "p99 23.1ms > 20ms"), or why the
    /// user stopped.
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
    /// Failed requests, all classes.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Latency of a set of requests, µs, read from their merged histogram.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// The smallest.
    pub min: u64,
    /// The mean (to 0.01 µs).
    pub mean: f64,
    /// The median.
    pub p50: u64,
    /// The 90th percentile.
    pub p90: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The 99.9th percentile.
    pub p999: u64,
    /// The largest.
    pub max: u64,
    /// Percentiles asked for besides these, by name (`p99.99`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub percentiles: BTreeMap<String, u64>,
}

/// How long requests spent in one stage (connect, TLS, time to first
/// byte), µs, read from the merged stage histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StageReport {
    /// Requests that went through the stage.
    pub count: u64,
    /// The median time in it.
    pub p50: u64,
    /// The 90th percentile.
    pub p90: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The longest.
    pub max: u64,
}

/// Open loop: how late the generator sent, µs from each request's intended
/// time to its send, read from the merged send-lag histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SendLagReport {
    /// The median lag.
    pub p50: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The largest.
    pub max: u64,
}

/// One agent's part in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseAgentReport {
    /// The agent's id.
    pub id: String,
    /// The host it ran on.
    pub host: String,
    /// Distinct windows it logged inside the time range, warm-up included.
    pub windows: u32,
    /// Requests it finished in the headline windows, ok or failed.
    pub requests: u64,
    /// Of those, the failed ones.
    pub errors: u64,
    /// It said it ended the phase.
    pub ended: bool,
    /// Requests it still had in flight when the phase was cut off (not
    /// counted).
    pub abandoned_in_flight: u64,
    /// CPU seconds the agent process used during the phase.
    pub cpu_s: f64,
    /// Its requests and errors per timeline window.
    pub timeline: Vec<AgentPoint>,
    /// The agent's part of the load as scheduled: its share (weight / sum
    /// of weights), concurrency, open-loop rate and iterations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// Its concurrency (workers), as scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Its open-loop rate, requests per second, as scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Its part of the iteration budget, as scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u64>,
    /// It spent its iteration budget.
    #[serde(skip_serializing_if = "is_false")]
    pub iterations_done: bool,
    /// Its process CPU averaged over the phase, percent of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_cpu_pct: Option<f64>,
    /// Open loop: the most connections it had open (it opens more when
    /// every one is busy at a send's time, up to `max_connections`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// What the load-generator-limited rule saw (measured windows).
    #[serde(skip)]
    pub load: AgentLoad,
}

/// One point of the percentile spectrum.
#[derive(Debug, Clone, Serialize)]
pub struct SpectrumPoint {
    /// The percentile, 0 to 100.
    pub percentile: f64,
    /// The latency at it, µs.
    pub value_us: u64,
}

/// One agent in one timeline window of a phase.
#[derive(Debug, Clone, Serialize)]
pub struct AgentPoint {
    /// Start of the window, seconds from the phase's start.
    pub t_s: f64,
    /// Requests finished, ok or failed.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
}

/// One timeline window of a phase, every agent and operation merged.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    /// Start of the window, seconds from the phase's start.
    pub t_s: f64,
    /// The window starts inside the warm-up.
    pub warmup: bool,
    /// Requests finished, ok or failed.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Its latency percentiles (`p50_us`, `p90_us`, `p99_us`, `max_us`).
    #[serde(flatten)]
    pub latency: WindowLatency,
    /// How many agents reported it (of a window merged from several logged
    /// ones, the most any of them had).
    pub agents: u32,
    /// Open loop: sends the schedule called for in this window (offered).
    #[serde(skip_serializing_if = "is_zero")]
    pub scheduled: u64,
    /// The phase's load shape's total rate, averaged over this window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intended_rps: Option<f64>,
    /// The median time per stage ("connect", "tls", "ttfb") in this
    /// window, µs; empty for ops without stages.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stages_p50_us: BTreeMap<String, u64>,
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

/// One host's metrics over the run, from its agents' samples (per second,
/// the highest sample of the agents on it).
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    /// The host's name.
    pub host: String,
    /// Its CPU busy, percent of all its cores, averaged over its seconds.
    pub cpu_pct_mean: f64,
    /// Its CPU busy at the busiest second, percent.
    pub cpu_pct_max: f64,
    /// The most memory in use, bytes.
    pub mem_used_max_bytes: u64,
    /// Bytes received over the run, every interface.
    pub net_rx_bytes: u64,
    /// Bytes sent over the run, every interface.
    pub net_tx_bytes: u64,
    /// The highest 1-minute load average.
    pub load_1_max: f64,
    /// Seconds with a sample.
    pub samples: u64,
    /// Per second with a sample.
    pub timeline: Vec<HostPoint>,
}

/// One second of one host; `t_s` from the run's start.
#[derive(Debug, Clone, Serialize)]
pub struct HostPoint {
    /// Start of the second, seconds from the run's start.
    pub t_s: f64,
    /// CPU busy, percent of all the host's cores.
    pub cpu_pct: f64,
    /// Memory in use, bytes.
    pub mem_used_bytes: u64,
    /// Bytes received over the sample's interval, every interface.
    pub net_rx_bytes: u64,
    /// Bytes sent over the sample's interval, every interface.
    pub net_tx_bytes: u64,
}

/// What the run's log holds, and what it lacks.
#[derive(Debug, Clone, Serialize)]
pub struct LogReport {
    /// Records read.
    pub records: u64,
    /// Agent events logged more than once (counted once).
    pub duplicate_events: u64,
    /// Sequence numbers agents skipped (never logged), summed over agents.
    pub seq_gaps: u64,
    /// Windows whose latency histogram could not be decoded (not counted).
    pub bad_windows: u64,
    /// Per agent: the highest sequence number logged and how many distinct
    /// events are logged (equal when nothing is missing).
    pub agent_events: BTreeMap<String, AgentEvents>,
}

/// One agent's events in the log.
#[derive(Debug, Clone, Serialize)]
pub struct AgentEvents {
    /// The highest sequence number logged.
    pub highest_seq: u64,
    /// Distinct events logged.
    pub events: u64,
}
