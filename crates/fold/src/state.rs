//! The fold's state: per phase one aggregate per window index, per op and
//! per agent their own; hosts' samples; what the run's records said.

use std::collections::{BTreeMap, HashMap, HashSet};

use hdrhistogram::Histogram;

use fleetbench::pb;
use fleetbench::window::{merge_encoded, new_growing_histogram};

/// Facts about the run from its first record.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub id: String,
    pub name: String,
    pub started_at_us: i64,
    pub workload_path: String,
    pub workload_text: String,
    pub resolved_json: String,
    pub coordinator_version: String,
    pub agent_binary_hash: String,
}

#[derive(Debug, Clone, Default)]
pub struct AgentInfo {
    pub id: String,
    pub host: String,
    pub cores: u32,
    pub memory_bytes: u64,
    pub version: String,
    pub binary_hash: String,
    pub clock_offset_us: i64,
    pub rtt_us: u64,
    pub attaches: u32,
    pub detaches: u32,
}

/// All agents' results for one window of one phase.
#[derive(Debug, Clone)]
pub struct WindowAgg {
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub latency: Histogram<u64>,
    pub latency_clamped: u64,
    pub max_send_lag_us: u64,
    /// Open loop: sends the schedule called for (the offered load).
    pub scheduled: u64,
    /// Open loop: sends whose worker woke more than 5 ms after the intended
    /// time (the agent was late, not the target), and the largest such lag.
    pub late_wakes: u64,
    pub max_wake_lag_us: u64,
    /// How many agents' windows were merged here (an agent sends one window
    /// per operation; it counts once).
    pub agents: u32,
}

impl WindowAgg {
    pub(crate) fn new() -> Self {
        WindowAgg {
            ok: 0,
            errors: BTreeMap::new(),
            bytes_sent: 0,
            bytes_received: 0,
            latency: new_growing_histogram(),
            latency_clamped: 0,
            max_send_lag_us: 0,
            scheduled: 0,
            late_wakes: 0,
            max_wake_lag_us: 0,
            agents: 0,
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.error_count()
    }

    /// Adds one agent's window (of one operation); its histogram is merged
    /// straight from the wire bytes (`Err` if they do not decode: the window
    /// is not counted). The caller counts the agent in `agents`.
    pub(crate) fn add(&mut self, w: &pb::ResultWindow) -> Result<(), String> {
        // A bad histogram changes nothing (it is decoded whole first).
        merge_encoded(&mut self.latency, &w.latency_histogram)?;
        self.ok += w.ok;
        for (class, n) in &w.errors {
            *self.errors.entry(class.clone()).or_default() += n;
        }
        self.bytes_sent += w.bytes_sent;
        self.bytes_received += w.bytes_received;
        self.latency_clamped += w.latency_clamped;
        self.max_send_lag_us = self.max_send_lag_us.max(w.max_send_lag_us);
        self.scheduled += w.scheduled;
        self.late_wakes += w.late_wakes;
        self.max_wake_lag_us = self.max_wake_lag_us.max(w.max_wake_lag_us);
        Ok(())
    }

    pub(crate) fn merge(&mut self, other: &WindowAgg) {
        self.ok += other.ok;
        for (class, n) in &other.errors {
            *self.errors.entry(class.clone()).or_default() += n;
        }
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.latency
            .add(&other.latency)
            .expect("auto-resizing histogram");
        self.latency_clamped += other.latency_clamped;
        self.max_send_lag_us = self.max_send_lag_us.max(other.max_send_lag_us);
        self.scheduled += other.scheduled;
        self.late_wakes += other.late_wakes;
        self.max_wake_lag_us = self.max_wake_lag_us.max(other.max_wake_lag_us);
        self.agents = self.agents.max(other.agents);
    }
}

/// One agent's counts in one logged window, all its operations together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentWindow {
    pub ok: u64,
    pub errors: u64,
    pub scheduled: u64,
    pub late_wakes: u64,
    pub max_wake_lag_us: u64,
    pub loop_probes: u64,
    pub loop_late: u64,
    pub max_loop_lag_us: u64,
}

impl AgentWindow {
    pub fn requests(&self) -> u64 {
        self.ok + self.errors
    }
}

/// One agent's part in one phase.
#[derive(Debug, Clone, Default)]
pub struct AgentPhase {
    /// Distinct window indexes logged (an agent sends one window per
    /// operation per index).
    pub windows: u32,
    pub ok: u64,
    pub errors: u64,
    pub ended: Option<pb::PhaseEnded>,
    /// Per logged window index, all operations together.
    pub by_window: BTreeMap<u32, AgentWindow>,
    /// Per logged (window index, operation), everything including the
    /// latency histogram: kept only by a fold made with
    /// [`Fold::keeping_agent_windows`] (`export`).
    pub kept: BTreeMap<(u32, String), WindowAgg>,
}

#[derive(Debug, Clone)]
pub struct PhaseAgg {
    pub index: u32,
    pub name: String,
    pub start_at_us: i64,
    pub duration_ms: u64,
    pub warmup_ms: u64,
    pub window_ms: u32,
    pub agent_ids: Vec<String>,
    /// Per window index, every agent and every operation merged.
    pub windows: BTreeMap<u32, WindowAgg>,
    pub agents: BTreeMap<String, AgentPhase>,
    /// Per named operation, per window index: every agent merged. Windows of
    /// the unnamed op "" (a single-workload phase) are only in `windows`.
    pub ops: BTreeMap<String, BTreeMap<u32, WindowAgg>>,
    /// From `PhaseScheduled`: the operations in the file's order, each
    /// agent's share, the iteration budget and the open-loop shape.
    pub op_names: Vec<String>,
    pub shares: Vec<pb::AgentShare>,
    pub iterations: u64,
    pub shape: Option<pb::LoadShape>,
    /// Run control cut the phase short (the earliest request, if several).
    pub stop: Option<pb::PhaseStopRequested>,
}

impl PhaseAgg {
    pub(crate) fn is_warmup(&self, index: u32) -> bool {
        u64::from(index) * u64::from(self.window_ms) < self.warmup_ms
    }

    /// Every agent the phase was scheduled on has said it ended.
    pub fn ended(&self) -> bool {
        !self.agent_ids.is_empty()
            && self
                .agent_ids
                .iter()
                .all(|id| self.agents.get(id).is_some_and(|a| a.ended.is_some()))
    }

    /// Windows `from..=to` merged into one, warm-up windows left out
    /// (`None` if none of them is there): a step of a step load, judged
    /// whole by run control's stop conditions.
    pub fn merged(&self, from: u32, to: u32) -> Option<WindowAgg> {
        let mut acc: Option<WindowAgg> = None;
        for (_, w) in self
            .windows
            .range(from..=to)
            .filter(|(i, _)| !self.is_warmup(**i))
        {
            acc.get_or_insert_with(WindowAgg::new).merge(w);
        }
        acc
    }

    /// The newest window that every scheduled agent has reported.
    pub fn last_complete_window(&self) -> Option<(u32, &WindowAgg)> {
        let want = self.agent_ids.len() as u32;
        self.windows
            .iter()
            .rev()
            .find(|(_, w)| w.agents >= want)
            .map(|(i, w)| (*i, w))
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct HostAgg {
    /// Per whole second (coordinator clock): the highest sample, so that two
    /// agents on one host count once and order does not matter.
    pub(crate) seconds: BTreeMap<i64, HostSample>,
}

/// One agent process's CPU over a metrics interval.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuSample {
    /// Percent of one core.
    pub(crate) pct: f64,
    /// The host's logical cores.
    pub(crate) cores: u32,
    pub(crate) interval_ms: u32,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HostSample {
    pub(crate) cpu_pct: f64,
    pub(crate) mem_used: u64,
    pub(crate) net_rx: u64,
    pub(crate) net_tx: u64,
    pub(crate) load_1: f64,
}

/// Everything known about a run, built from its log records.
#[derive(Debug, Default)]
pub struct Fold {
    pub run: Option<RunInfo>,
    pub agents: BTreeMap<String, AgentInfo>,
    pub phases: BTreeMap<u32, PhaseAgg>,
    pub(crate) hosts: BTreeMap<String, HostAgg>,
    /// Per agent, by the sample's instant (coordinator clock, µs): the agent
    /// process's CPU, from agents that report it (`HostMetrics.cores` > 0).
    pub(crate) agent_cpu: BTreeMap<String, BTreeMap<i64, CpuSample>>,
    /// Sequence numbers seen, per agent.
    pub(crate) seen: HashMap<String, HashSet<u64>>,
    /// Per agent: (highest seq seen, distinct seqs seen).
    pub(crate) seqs: BTreeMap<String, (u64, u64)>,
    pub duplicate_events: u64,
    pub finished: Option<pb::RunFinished>,
    pub notices: Vec<String>,
    pub records: u64,
    pub last_logged_at_us: i64,
    /// Windows whose histogram could not be decoded (counted, not merged).
    pub bad_windows: u64,
    /// Which results to keep (replay filters).
    pub filter: Filter,
    /// Keep each agent's own windows whole ([`AgentPhase::kept`]), not only
    /// their counts. Off by default: it holds a histogram per agent and window.
    pub keep_agent_windows: bool,
}

/// Which agents' results (and which phases) a fold keeps. Empty lists keep
/// everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub phases: Vec<String>,
    pub agents: Vec<String>,
    pub exclude_agents: Vec<String>,
    pub hosts: Vec<String>,
    /// Only these operations' windows (by name).
    pub ops: Vec<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.phases.is_empty()
            && self.agents.is_empty()
            && self.exclude_agents.is_empty()
            && self.hosts.is_empty()
            && self.ops.is_empty()
    }

    pub(crate) fn admits(&self, agent: &str, host: &str) -> bool {
        (self.agents.is_empty() || self.agents.iter().any(|a| a == agent))
            && !self.exclude_agents.iter().any(|a| a == agent)
            && (self.hosts.is_empty() || self.hosts.iter().any(|h| h == host))
    }
}
