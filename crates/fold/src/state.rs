//! The fold's state: per phase one aggregate per window index, per op and
//! per agent their own; hosts' samples; what the run's records said.

use std::collections::{BTreeMap, HashMap, HashSet};

use hdrhistogram::Histogram;

use fleetbench::pb;
use fleetbench::window::{merge_encoded, new_growing_histogram};

use crate::services::ServiceLog;

/// Facts about the run from its first record (`RunStarted`).
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// The run's id.
    pub id: String,
    /// The run's name, from the workload file.
    pub name: String,
    /// When the run started, µs since the Unix epoch (coordinator clock).
    pub started_at_us: i64,
    /// The workload file's path, as the coordinator was given it.
    pub workload_path: String,
    /// The workload file, byte for byte.
    pub workload_text: String,
    /// The validated workload, as JSON.
    pub resolved_json: String,
    /// The version of the coordinator that ran it.
    pub coordinator_version: String,
    /// SHA-256 of the agent binary the run shipped, hex.
    pub agent_binary_hash: String,
    /// The workload's thresholds, in the file's order.
    pub thresholds: Vec<pb::Threshold>,
}

/// An agent as its attach and detach records tell it.
#[derive(Debug, Clone, Default)]
pub struct AgentInfo {
    /// The agent's id.
    pub id: String,
    /// The host it runs on (its hostname).
    pub host: String,
    /// The host's logical cores.
    pub cores: u32,
    /// The host's memory, bytes.
    pub memory_bytes: u64,
    /// The agent's version.
    pub version: String,
    /// SHA-256 of the agent's binary, hex.
    pub binary_hash: String,
    /// The agent's clock minus the coordinator's, µs, measured at its
    /// latest attach (the ping with the smallest round trip).
    pub clock_offset_us: i64,
    /// That ping's round trip, µs.
    pub rtt_us: u64,
    /// How many times it attached (more than once: it reconnected).
    pub attaches: u32,
    /// How many times it detached.
    pub detaches: u32,
}

/// All agents' results for one window of one phase (or of one operation,
/// or of one agent's operation).
#[derive(Debug, Clone)]
pub struct WindowAgg {
    /// Requests that succeeded.
    pub ok: u64,
    /// Failed requests per error class (`timeout`, `status_5xx`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Bytes sent to the target.
    pub bytes_sent: u64,
    /// Bytes received from the target.
    pub bytes_received: u64,
    /// Every request's latency, µs, all agents' histograms merged.
    pub latency: Histogram<u64>,
    /// Latencies beyond the histogram's range, recorded at its top.
    pub latency_clamped: u64,
    /// The largest delay between a request's intended and actual send, µs.
    pub max_send_lag_us: u64,
    /// Open loop: every send's delay between its intended and actual send,
    /// µs, all agents' histograms merged (`None` in closed loop and in logs
    /// from before agents sent it; kept only where there is one, as a
    /// histogram is 16 KiB even empty).
    pub send_lag: Option<Histogram<u64>>,
    /// Open loop: sends the schedule called for (the offered load).
    pub scheduled: u64,
    /// Open loop: sends whose worker woke more than 5 ms after the intended
    /// time (the agent was late, not the target).
    pub late_wakes: u64,
    /// Open loop: the largest such lag, µs.
    pub max_wake_lag_us: u64,
    /// How many agents' windows were merged here (an agent sends one window
    /// per operation; it counts once).
    pub agents: u32,
    /// Where requests' time went, per stage ("connect", "tls", "ttfb"), µs,
    /// all agents' histograms merged (only stages that hold a value).
    pub stages: BTreeMap<String, Histogram<u64>>,
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
            send_lag: None,
            scheduled: 0,
            late_wakes: 0,
            max_wake_lag_us: 0,
            agents: 0,
            stages: BTreeMap::new(),
        }
    }

    /// Failed requests, all classes.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Requests finished, ok or failed.
    pub fn requests(&self) -> u64 {
        self.ok + self.error_count()
    }

    /// Adds one agent's window (of one operation); its histograms are merged
    /// straight from the wire bytes (`Err` if one does not decode: the
    /// window is not counted). The caller counts the agent in `agents`.
    pub(crate) fn add(&mut self, w: &pb::ResultWindow) -> Result<(), String> {
        // A bad histogram changes nothing (each is decoded whole before it
        // is merged; the send lag's, rarer, into its own first).
        let send_lag = if w.send_lag_histogram.is_empty() {
            None
        } else {
            let mut h = new_growing_histogram();
            merge_encoded(&mut h, &w.send_lag_histogram)?;
            Some(h)
        };
        let mut stages = Vec::with_capacity(w.stage_histograms.len());
        for (name, bytes) in &w.stage_histograms {
            let mut h = new_growing_histogram();
            merge_encoded(&mut h, bytes)?;
            stages.push((name, h));
        }
        merge_encoded(&mut self.latency, &w.latency_histogram)?;
        for (name, h) in stages {
            add_stage(&mut self.stages, name, &h);
        }
        if let Some(h) = send_lag {
            match &mut self.send_lag {
                Some(lag) => lag.add(&h).expect("auto-resizing histogram"),
                None => self.send_lag = Some(h),
            }
        }
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
        if let Some(h) = &other.send_lag {
            match &mut self.send_lag {
                Some(lag) => lag.add(h).expect("auto-resizing histogram"),
                None => self.send_lag = Some(h.clone()),
            }
        }
        self.scheduled += other.scheduled;
        self.late_wakes += other.late_wakes;
        self.max_wake_lag_us = self.max_wake_lag_us.max(other.max_wake_lag_us);
        self.agents = self.agents.max(other.agents);
        for (name, h) in &other.stages {
            add_stage(&mut self.stages, name, h);
        }
    }
}

/// One operation's running totals over a whole phase (warm-up included),
/// each window added as it lands: what live metrics count
/// ([`Fold::keeping_totals`]). Only what a counter or the latency histogram
/// needs, so that keeping them costs one histogram merge per window.
#[derive(Debug, Clone)]
pub(crate) struct Totals {
    pub(crate) ok: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) scheduled: u64,
    pub(crate) latency: Histogram<u64>,
}

impl Totals {
    pub(crate) fn new() -> Self {
        Totals {
            ok: 0,
            errors: BTreeMap::new(),
            bytes_sent: 0,
            bytes_received: 0,
            scheduled: 0,
            latency: new_growing_histogram(),
        }
    }

    /// Adds one agent's window (its histogram already decoded once by the
    /// caller, so it decodes).
    pub(crate) fn add(&mut self, w: &pb::ResultWindow) -> Result<(), String> {
        merge_encoded(&mut self.latency, &w.latency_histogram)?;
        self.ok += w.ok;
        for (class, n) in &w.errors {
            *self.errors.entry(class.clone()).or_default() += n;
        }
        self.bytes_sent += w.bytes_sent;
        self.bytes_received += w.bytes_received;
        self.scheduled += w.scheduled;
        Ok(())
    }
}

/// Adds `h` into stage `name` of `stages`.
fn add_stage(stages: &mut BTreeMap<String, Histogram<u64>>, name: &str, h: &Histogram<u64>) {
    match stages.get_mut(name) {
        Some(mine) => mine.add(h).expect("auto-resizing histogram"),
        None => {
            stages.insert(name.to_string(), h.clone());
        }
    }
}

/// One agent's counts in one logged window, all its operations together
/// (or over several windows: what the limited rule looks at).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AgentWindow {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    /// Open loop: sends the schedule called for, those whose worker woke
    /// late, and the largest such lag.
    pub(crate) scheduled: u64,
    pub(crate) late_wakes: u64,
    pub(crate) max_wake_lag_us: u64,
    /// Event-loop probes of the agent's load threads, those that fired
    /// late, and the largest lag.
    pub(crate) loop_probes: u64,
    pub(crate) loop_late: u64,
    pub(crate) max_loop_lag_us: u64,
    /// Open loop: sends that found every connection busy at the cap, the
    /// largest send lag, and the most connections open.
    pub(crate) busy_late: u64,
    pub(crate) max_send_lag_us: u64,
    pub(crate) connections: u32,
}

impl AgentWindow {
    /// The counts of one window of one operation, as the agent sent it.
    pub(crate) fn of(w: &pb::ResultWindow) -> AgentWindow {
        AgentWindow {
            ok: w.ok,
            errors: w.errors.values().sum(),
            scheduled: w.scheduled,
            late_wakes: w.late_wakes,
            max_wake_lag_us: w.max_wake_lag_us,
            loop_probes: w.loop_probes,
            loop_late: w.loop_late,
            max_loop_lag_us: w.max_loop_lag_us,
            busy_late: w.busy_late,
            max_send_lag_us: w.max_send_lag_us,
            connections: w.connections,
        }
    }

    /// Counts add; lags keep the largest.
    pub(crate) fn merge(&mut self, other: &AgentWindow) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.scheduled += other.scheduled;
        self.late_wakes += other.late_wakes;
        self.max_wake_lag_us = self.max_wake_lag_us.max(other.max_wake_lag_us);
        self.loop_probes += other.loop_probes;
        self.loop_late += other.loop_late;
        self.max_loop_lag_us = self.max_loop_lag_us.max(other.max_loop_lag_us);
        self.busy_late += other.busy_late;
        self.max_send_lag_us = self.max_send_lag_us.max(other.max_send_lag_us);
        self.connections = self.connections.max(other.connections);
    }

    pub(crate) fn requests(&self) -> u64 {
        self.ok + self.errors
    }
}

/// One agent's part in one phase.
#[derive(Debug, Clone, Default)]
pub struct AgentPhase {
    /// Distinct window indexes logged (an agent sends one window per
    /// operation per index).
    pub(crate) windows: u32,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    /// The agent's `PhaseEnded`, once logged: it is done with the phase.
    pub ended: Option<pb::PhaseEnded>,
    /// Per logged window index, all operations together.
    pub(crate) by_window: BTreeMap<u32, AgentWindow>,
    /// Per logged (window index, operation), everything including the
    /// latency histogram: kept only by a fold made with
    /// [`Fold::keeping_agent_windows`] (`export`).
    pub kept: BTreeMap<(u32, String), WindowAgg>,
}

/// One phase: its schedule and every result logged for it.
#[derive(Debug, Clone)]
pub struct PhaseAgg {
    /// The phase's index in the workload file (0 first).
    pub index: u32,
    /// The phase's name.
    pub name: String,
    /// When it was scheduled to start, µs since the Unix epoch (coordinator
    /// clock).
    pub start_at_us: i64,
    /// Its scheduled duration, ms (0: it runs on an iteration budget).
    pub duration_ms: u64,
    /// Its warm-up at the start, ms, left out of the headline numbers.
    pub warmup_ms: u64,
    /// Width of the windows the agents log, ms.
    pub window_ms: u32,
    /// The agents it was scheduled on.
    pub agent_ids: Vec<String>,
    /// Per window index, every agent and every operation merged.
    pub windows: BTreeMap<u32, WindowAgg>,
    /// Per agent id, its part in the phase.
    pub agents: BTreeMap<String, AgentPhase>,
    /// Per named operation, per window index: every agent merged. Windows of
    /// the unnamed op "" (a single-workload phase) are only in `windows`.
    pub(crate) ops: BTreeMap<String, BTreeMap<u32, WindowAgg>>,
    /// From `PhaseScheduled`: the operations in the file's order, each
    /// agent's share, the iteration budget and the open-loop shape.
    pub(crate) op_names: Vec<String>,
    pub(crate) shares: Vec<pb::AgentShare>,
    pub(crate) iterations: u64,
    pub(crate) shape: Option<pb::LoadShape>,
    /// Run control cut the phase short (the earliest request, if several).
    pub(crate) stop: Option<pb::PhaseStopRequested>,
    /// When the first stop request was logged, µs since the Unix epoch
    /// (coordinator clock): where the load stopped, for agents that do not
    /// say so themselves (`PhaseEnded.ran_us`).
    pub(crate) stop_logged_at_us: Option<i64>,
    /// Per operation ("" for a single workload), every window so far:
    /// kept only by a fold made with [`Fold::keeping_totals`].
    pub(crate) totals: BTreeMap<String, Totals>,
}

impl PhaseAgg {
    /// Per named operation, its windows (every agent merged).
    pub fn op_windows(&self) -> impl Iterator<Item = (&String, &BTreeMap<u32, WindowAgg>)> {
        self.ops.iter()
    }

    /// Phase `index` before its `PhaseScheduled` is applied: named
    /// `phase-INDEX`, windows of a second, nothing logged.
    pub(crate) fn new(index: u32) -> PhaseAgg {
        PhaseAgg {
            index,
            name: format!("phase-{index}"),
            start_at_us: 0,
            duration_ms: 0,
            warmup_ms: 0,
            window_ms: 1000,
            agent_ids: Vec::new(),
            windows: BTreeMap::new(),
            agents: BTreeMap::new(),
            ops: BTreeMap::new(),
            op_names: Vec::new(),
            shares: Vec::new(),
            iterations: 0,
            shape: None,
            stop: None,
            stop_logged_at_us: None,
            totals: BTreeMap::new(),
        }
    }

    /// Window `index` starts inside the warm-up.
    pub fn is_warmup(&self, index: u32) -> bool {
        u64::from(index) * u64::from(self.window_ms) < self.warmup_ms
    }

    /// Time windows `from..=to` cover, in seconds: the last one may be cut
    /// by the phase's end.
    pub fn covered_s(&self, from: u32, to: u32) -> f64 {
        let width = u64::from(self.window_ms);
        let end = self.duration_ms.max(1);
        (from..=to)
            .map(|i| width.min(end.saturating_sub(u64::from(i) * width)))
            .sum::<u64>() as f64
            / 1000.0
    }

    /// The phase's operations, in the file's order (empty for a single
    /// workload).
    pub fn op_names(&self) -> &[String] {
        &self.op_names
    }

    /// Every agent the phase was scheduled on has said it ended.
    pub fn ended(&self) -> bool {
        !self.agent_ids.is_empty()
            && self
                .agent_ids
                .iter()
                .all(|id| self.agents.get(id).is_some_and(|a| a.ended.is_some()))
    }

    /// How long the phase's load ran, µs from its start, at most its
    /// planned duration: as long as the agent that ran longest says
    /// (`PhaseEnded.ran_us`); for agents too old to say, or when none
    /// ended it (every one lost), up to the stop request when one cut the
    /// phase short; else the planned duration.
    pub fn ran_us(&self) -> u64 {
        // A phase never scheduled (duration 0) counts its windows as 1 ms.
        let planned = self.duration_ms.max(1).saturating_mul(1000);
        let ended = || self.agents.values().filter_map(|a| a.ended.as_ref());
        if let Some(ran) = ended().filter_map(|e| e.ran_us).max() {
            return ran.min(planned);
        }
        match self.stop_logged_at_us {
            // Stopped early, or abandoned with every agent lost.
            Some(at) if ended().any(|e| e.stopped_early) || ended().next().is_none() => {
                u64::try_from(at - self.start_at_us).map_or(0, |us| us.min(planned))
            }
            _ => planned,
        }
    }

    /// Windows `from..=to` merged into one, warm-up windows left out
    /// (`None` if none of them is there): a step of a step load, judged
    /// whole by run control's stop conditions.
    pub fn merged(&self, from: u32, to: u32) -> Option<WindowAgg> {
        self.merged_op("", from, to)
    }

    /// As [`PhaseAgg::merged`], of operation `op`'s windows only ("": all
    /// operations); None also when the phase has no such operation.
    pub fn merged_op(&self, op: &str, from: u32, to: u32) -> Option<WindowAgg> {
        let windows = if op.is_empty() {
            &self.windows
        } else {
            self.ops.get(op)?
        };
        let mut acc: Option<WindowAgg> = None;
        for (_, w) in windows
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
    /// The run's facts, once its `RunStarted` is applied.
    pub run: Option<RunInfo>,
    /// Per agent id, the agents that attached.
    pub agents: BTreeMap<String, AgentInfo>,
    /// Per phase index, the phases scheduled or reported on.
    pub phases: BTreeMap<u32, PhaseAgg>,
    pub(crate) hosts: BTreeMap<String, HostAgg>,
    /// Per agent, by the sample's instant (coordinator clock, µs): the agent
    /// process's CPU, from agents that report it (`HostMetrics.cores` > 0).
    pub(crate) agent_cpu: BTreeMap<String, BTreeMap<i64, CpuSample>>,
    /// Sequence numbers seen, per agent.
    pub(crate) seen: HashMap<String, HashSet<u64>>,
    /// Per agent: (highest seq seen, distinct seqs seen).
    pub(crate) seqs: BTreeMap<String, (u64, u64)>,
    /// Agent events logged more than once (counted once).
    pub(crate) duplicate_events: u64,
    pub(crate) finished: Option<pb::RunFinished>,
    /// The run's notices in log order, agents' and the coordinator's, as
    /// "LEVEL: [agent ID: ]MESSAGE".
    pub notices: Vec<String>,
    /// Notices per agent, kept or not.
    pub(crate) agent_notices: BTreeMap<String, u64>,
    /// Agent notices past [`MAX_AGENT_NOTICES`](crate::apply::MAX_AGENT_NOTICES), counted only.
    pub(crate) notices_unkept: u64,
    /// Records applied.
    pub(crate) records: u64,
    /// The latest record's logging instant, µs (the run's end so far).
    pub(crate) last_logged_at_us: i64,
    /// Windows whose histogram could not be decoded (counted, not merged).
    pub(crate) bad_windows: u64,
    /// Which results to keep (replay filters).
    pub(crate) filter: Filter,
    /// Keep each agent's own windows whole ([`AgentPhase::kept`]), not only
    /// their counts. Off by default: it holds a histogram per agent and window.
    pub(crate) keep_agent_windows: bool,
    /// Keep each phase's running totals per operation ([`PhaseAgg::totals`]):
    /// live metrics read them.
    pub(crate) keep_totals: bool,
    /// The `[[service]]` processes: ready where, ended how, their stderr's end.
    pub(crate) services: ServiceLog,
}

impl Fold {
    /// The phases a report of this fold shows: all, or those the filter
    /// names.
    pub fn reported_phases(&self) -> impl Iterator<Item = &PhaseAgg> {
        self.phases
            .values()
            .filter(|p| self.filter.phases.is_empty() || self.filter.phases.contains(&p.name))
    }

    /// The fold keeps each agent's windows whole
    /// ([`Fold::keeping_agent_windows`]).
    pub fn keeps_agent_windows(&self) -> bool {
        self.keep_agent_windows
    }
}

/// Which agents' results (and which phases) a fold keeps. Empty lists keep
/// everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these phases (by name) in the report.
    pub phases: Vec<String>,
    /// Only these agents' results (by id).
    pub agents: Vec<String>,
    /// Not these agents' results (by id).
    pub exclude_agents: Vec<String>,
    /// Only results of agents on these hosts.
    pub hosts: Vec<String>,
    /// Only these operations' windows (by name).
    pub ops: Vec<String>,
}

impl Filter {
    /// The filter keeps everything.
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
