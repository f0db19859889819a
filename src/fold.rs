//! The fold: one aggregation over a run's log records, and the only one.
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
//! rate the load shape intended per window ([`intended_rate`]).
//!
//! This module owns no I/O: it neither reads the log nor prints.

use std::collections::{BTreeMap, HashMap, HashSet};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::pb;
use crate::pb::log_record::Record;
use crate::window::{merge_encoded, new_growing_histogram};

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
    fn new() -> Self {
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
    fn add(&mut self, w: &pb::ResultWindow) -> Result<(), String> {
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

    fn merge(&mut self, other: &WindowAgg) {
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
    fn is_warmup(&self, index: u32) -> bool {
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
struct HostAgg {
    /// Per whole second (coordinator clock): the highest sample, so that two
    /// agents on one host count once and order does not matter.
    seconds: BTreeMap<i64, HostSample>,
}

/// One agent process's CPU over a metrics interval.
#[derive(Debug, Clone, Copy, Default)]
struct CpuSample {
    /// Percent of one core.
    pct: f64,
    /// The host's logical cores.
    cores: u32,
    interval_ms: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct HostSample {
    cpu_pct: f64,
    mem_used: u64,
    net_rx: u64,
    net_tx: u64,
    load_1: f64,
}

/// Everything known about a run, built from its log records.
#[derive(Debug, Default)]
pub struct Fold {
    pub run: Option<RunInfo>,
    pub agents: BTreeMap<String, AgentInfo>,
    pub phases: BTreeMap<u32, PhaseAgg>,
    hosts: BTreeMap<String, HostAgg>,
    /// Per agent, by the sample's instant (coordinator clock, µs): the agent
    /// process's CPU, from agents that report it (`HostMetrics.cores` > 0).
    agent_cpu: BTreeMap<String, BTreeMap<i64, CpuSample>>,
    /// Sequence numbers seen, per agent.
    seen: HashMap<String, HashSet<u64>>,
    /// Per agent: (highest seq seen, distinct seqs seen).
    seqs: BTreeMap<String, (u64, u64)>,
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

    fn admits(&self, agent: &str, host: &str) -> bool {
        (self.agents.is_empty() || self.agents.iter().any(|a| a == agent))
            && !self.exclude_agents.iter().any(|a| a == agent)
            && (self.hosts.is_empty() || self.hosts.iter().any(|h| h == host))
    }
}

impl Fold {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fold that keeps only what `filter` admits.
    pub fn with_filter(filter: Filter) -> Self {
        Fold {
            filter,
            ..Self::default()
        }
    }

    /// This fold, also keeping each agent's windows whole (with their
    /// latency histograms), for `export`.
    pub fn keeping_agent_windows(mut self) -> Self {
        self.keep_agent_windows = true;
        self
    }

    /// Applies one log record.
    pub fn apply(&mut self, rec: &pb::LogRecord) {
        self.records += 1;
        self.last_logged_at_us = self.last_logged_at_us.max(rec.logged_at_us);
        let Some(record) = &rec.record else { return };
        match record {
            Record::RunStarted(r) => {
                self.run = Some(RunInfo {
                    id: r.run_id.clone(),
                    name: r.name.clone(),
                    started_at_us: r.started_at_us,
                    workload_path: r.workload_path.clone(),
                    workload_text: r.workload_text.clone(),
                    resolved_json: r.resolved_json.clone(),
                    coordinator_version: r.coordinator_version.clone(),
                    agent_binary_hash: r.agent_binary_hash.clone(),
                });
            }
            Record::AgentAttached(a) => {
                let Some(h) = &a.hello else { return };
                let info = self.agents.entry(h.agent_id.clone()).or_default();
                info.id = h.agent_id.clone();
                info.host = h.hostname.clone();
                info.cores = h.cores;
                info.memory_bytes = h.memory_bytes;
                info.version = h.agent_version.clone();
                info.binary_hash = h.binary_hash.clone();
                info.clock_offset_us = a.clock_offset_us;
                info.rtt_us = a.rtt_us;
                info.attaches += 1;
            }
            Record::AgentDetached(d) => {
                self.agents.entry(d.agent_id.clone()).or_default().detaches += 1;
            }
            Record::PhaseScheduled(p) => {
                let phase = self.phase_mut(p.phase_index);
                phase.name = p.name.clone();
                phase.start_at_us = p.start_at_us;
                phase.duration_ms = p.duration_ms;
                phase.warmup_ms = p.warmup_ms;
                phase.window_ms = p.window_ms.max(1);
                phase.agent_ids = p.agent_ids.clone();
                phase.op_names = p.ops.clone();
                phase.shares = p.shares.clone();
                phase.iterations = p.iterations;
                phase.shape = p.shape.clone().filter(|s| !s.segments.is_empty());
            }
            Record::PhaseStopRequested(s) => {
                // Of several requests, the earliest window counts (then the
                // reason, so that arrival order does not matter).
                let phase = self.phase_mut(s.phase_index);
                let key = |s: &pb::PhaseStopRequested| {
                    (
                        s.window_index,
                        s.reason.clone(),
                        s.condition_met,
                        s.rate.to_bits(),
                    )
                };
                let earlier = phase.stop.as_ref().is_none_or(|old| key(s) < key(old));
                if earlier {
                    phase.stop = Some(s.clone());
                }
            }
            Record::AgentEvent(e) => self.apply_agent_event(e),
            Record::RunFinished(f) => self.finished = Some(f.clone()),
            Record::Notice(n) => {
                let who = if n.agent_id.is_empty() {
                    String::new()
                } else {
                    format!("agent {}: ", n.agent_id)
                };
                self.notices
                    .push(format!("{}: {who}{}", n.level, n.message));
            }
            Record::ServiceOutput(_) | Record::ServiceState(_) => {}
        }
    }

    fn phase_mut(&mut self, index: u32) -> &mut PhaseAgg {
        self.phases.entry(index).or_insert_with(|| PhaseAgg {
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
        })
    }

    fn apply_agent_event(&mut self, e: &pb::AgentEvent) {
        let Some(ev) = &e.event else { return };
        let fresh = match self.seen.get_mut(&e.agent_id) {
            Some(set) => set.insert(ev.seq),
            None => {
                self.seen
                    .insert(e.agent_id.clone(), HashSet::from([ev.seq]));
                true
            }
        };
        if !fresh {
            self.duplicate_events += 1;
            return;
        }
        if !self.seqs.contains_key(&e.agent_id) {
            self.seqs.insert(e.agent_id.clone(), (0, 0));
        }
        let (high, count) = self.seqs.get_mut(&e.agent_id).expect("just ensured");
        *high = (*high).max(ev.seq);
        *count += 1;
        let Some(kind) = &ev.kind else { return };
        if !self.filter.is_empty() {
            let host = self.agents.get(&e.agent_id).map_or("", |a| a.host.as_str());
            if !self.filter.admits(&e.agent_id, host) {
                return;
            }
        }
        use pb::event::Kind;
        match kind {
            Kind::Window(w) => {
                if !self.filter.ops.is_empty() && !self.filter.ops.contains(&w.op) {
                    return;
                }
                let keep = self.keep_agent_windows;
                let phase = self.phase_mut(w.phase_index);
                let agent = phase.agents.get(&e.agent_id);
                // The agent's first window (of any op) at this index.
                let new_index = agent.is_none_or(|a| !a.by_window.contains_key(&w.index));
                let window = phase.windows.entry(w.index).or_insert_with(WindowAgg::new);
                if window.add(w).is_err() {
                    self.bad_windows += 1;
                    return;
                }
                if new_index {
                    window.agents += 1;
                }
                if !w.op.is_empty() {
                    let window = phase
                        .ops
                        .entry(w.op.clone())
                        .or_default()
                        .entry(w.index)
                        .or_insert_with(WindowAgg::new);
                    window.add(w).expect("the same bytes decoded just above");
                    if new_index {
                        window.agents += 1;
                    }
                }
                if !phase.agents.contains_key(&e.agent_id) {
                    phase
                        .agents
                        .insert(e.agent_id.clone(), AgentPhase::default());
                }
                let agent = phase.agents.get_mut(&e.agent_id).expect("just ensured");
                if keep {
                    let kept = agent
                        .kept
                        .entry((w.index, w.op.clone()))
                        .or_insert_with(WindowAgg::new);
                    if kept.add(w).is_ok() {
                        kept.agents = 1;
                    }
                }
                let errors = w.errors.values().sum::<u64>();
                if new_index {
                    agent.windows += 1;
                }
                agent.ok += w.ok;
                agent.errors += errors;
                let slot = agent.by_window.entry(w.index).or_default();
                slot.ok += w.ok;
                slot.errors += errors;
                slot.scheduled += w.scheduled;
                slot.late_wakes += w.late_wakes;
                slot.max_wake_lag_us = slot.max_wake_lag_us.max(w.max_wake_lag_us);
                slot.loop_probes += w.loop_probes;
                slot.loop_late += w.loop_late;
                slot.max_loop_lag_us = slot.max_loop_lag_us.max(w.max_loop_lag_us);
            }
            Kind::PhaseEnded(p) => {
                self.phase_mut(p.phase_index)
                    .agents
                    .entry(e.agent_id.clone())
                    .or_default()
                    .ended = Some(*p);
            }
            Kind::PhaseStarted(_) => {}
            Kind::HostMetrics(m) => {
                if m.cores > 0 {
                    // Two samples at one instant: the busier, whatever the order.
                    let sample = CpuSample {
                        pct: f64::from(m.agent_cpu_pct),
                        cores: m.cores,
                        interval_ms: m.interval_ms,
                    };
                    self.agent_cpu
                        .entry(e.agent_id.clone())
                        .or_default()
                        .entry(ev.agent_time_us - e.clock_offset_us)
                        .and_modify(|s| {
                            if (sample.pct, sample.cores) > (s.pct, s.cores) {
                                *s = sample;
                            }
                        })
                        .or_insert(sample);
                }
                let host = self
                    .agents
                    .get(&e.agent_id)
                    .map_or_else(|| e.agent_id.clone(), |a| a.host.clone());
                let t = (ev.agent_time_us - e.clock_offset_us).div_euclid(1_000_000);
                let s = self
                    .hosts
                    .entry(host)
                    .or_default()
                    .seconds
                    .entry(t)
                    .or_default();
                s.cpu_pct = s.cpu_pct.max(f64::from(m.cpu_pct));
                s.mem_used = s.mem_used.max(m.mem_used_bytes);
                s.net_rx = s.net_rx.max(m.net_rx_bytes);
                s.net_tx = s.net_tx.max(m.net_tx_bytes);
                s.load_1 = s.load_1.max(m.load_1);
            }
            Kind::Notice(n) => {
                self.notices.push(format!(
                    "{}: agent {}: {}",
                    notice_level(n),
                    e.agent_id,
                    n.message
                ));
            }
        }
    }

    /// The run's status as its records tell it. `live` says a coordinator is
    /// still writing the run (so a missing end record means "running").
    pub fn status(&self, live: bool) -> String {
        match &self.finished {
            Some(f) => f.status.clone(),
            None if live => "running".into(),
            None => "incomplete".into(),
        }
    }

    /// Sequence numbers an agent skipped (never logged), summed over agents.
    pub fn seq_gaps(&self) -> u64 {
        self.seqs
            .values()
            .map(|(high, count)| high.saturating_sub(*count))
            .sum()
    }

    /// The report of this run, as the user reads it.
    pub fn report(&self, options: &ReportOptions) -> Report {
        let run = self.run.clone().unwrap_or_default();
        let phases: Vec<PhaseReport> = self
            .phases
            .values()
            .filter(|p| self.filter.phases.is_empty() || self.filter.phases.contains(&p.name))
            .map(|p| phase_report(p, run.started_at_us, &self.agents, &self.agent_cpu, options))
            .collect();
        let hosts = self
            .hosts
            .iter()
            .map(|(host, agg)| {
                let n = agg.seconds.len().max(1) as f64;
                HostReport {
                    host: host.clone(),
                    cpu_pct_mean: round2(agg.seconds.values().map(|s| s.cpu_pct).sum::<f64>() / n),
                    cpu_pct_max: round2(
                        agg.seconds.values().map(|s| s.cpu_pct).fold(0.0, f64::max),
                    ),
                    mem_used_max_bytes: agg.seconds.values().map(|s| s.mem_used).max().unwrap_or(0),
                    net_rx_bytes: agg.seconds.values().map(|s| s.net_rx).sum(),
                    net_tx_bytes: agg.seconds.values().map(|s| s.net_tx).sum(),
                    load_1_max: round2(agg.seconds.values().map(|s| s.load_1).fold(0.0, f64::max)),
                    samples: agg.seconds.len() as u64,
                    timeline: agg
                        .seconds
                        .iter()
                        .map(|(sec, s)| HostPoint {
                            t_s: (sec * 1_000_000 - run.started_at_us) as f64 / 1e6,
                            cpu_pct: round2(s.cpu_pct),
                            mem_used_bytes: s.mem_used,
                            net_rx_bytes: s.net_rx,
                            net_tx_bytes: s.net_tx,
                        })
                        .collect(),
                }
            })
            .collect();
        let duration_us = (self.last_logged_at_us - run.started_at_us).max(0);
        Report {
            run_id: run.id,
            name: run.name,
            status: self.status(options.live),
            reason: self
                .finished
                .as_ref()
                .map(|f| f.reason.clone())
                .unwrap_or_default(),
            started_at: crate::clock::rfc3339(run.started_at_us),
            duration_s: round3(duration_us as f64 / 1e6),
            coordinator_version: run.coordinator_version,
            agent_binary_hash: run.agent_binary_hash,
            agents: self
                .agents
                .values()
                .map(|a| AgentReport {
                    id: a.id.clone(),
                    host: a.host.clone(),
                    cores: a.cores,
                    version: a.version.clone(),
                    clock_offset_us: a.clock_offset_us,
                    attaches: a.attaches,
                    detaches: a.detaches,
                })
                .collect(),
            phases,
            hosts,
            log: LogReport {
                records: self.records,
                duplicate_events: self.duplicate_events,
                seq_gaps: self.seq_gaps(),
                bad_windows: self.bad_windows,
                agent_events: self
                    .seqs
                    .iter()
                    .map(|(id, (highest_seq, events))| {
                        (
                            id.clone(),
                            AgentEvents {
                                highest_seq: *highest_seq,
                                events: *events,
                            },
                        )
                    })
                    .collect(),
            },
            notices: self.notices.clone(),
        }
    }
}

/// An agent notice's level by name (an unset level reads as "info").
pub fn notice_level(n: &pb::AgentNotice) -> &'static str {
    match pb::agent_notice::Level::try_from(n.level) {
        Ok(pb::agent_notice::Level::Error) => "error",
        Ok(pb::agent_notice::Level::Warn) => "warn",
        _ => "info",
    }
}

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
    pub to_s: Option<f64>,
    /// Extra percentiles to report (like 99.99).
    pub percentiles: Vec<f64>,
    /// The fold was built with a filter: list only agents that left results.
    pub filtered: bool,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn latency_report(h: &Histogram<u64>) -> Option<LatencyReport> {
    if h.is_empty() {
        return None;
    }
    Some(LatencyReport {
        min: h.min(),
        mean: round2(h.mean()),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        percentiles: BTreeMap::new(),
    })
}

/// The windows of one series (a phase's, or one operation's) that a report
/// takes, totalled and bucketed into the report's timeline windows.
struct Series {
    /// The headline windows (warm-up left out unless asked for) merged.
    total: WindowAgg,
    /// Time the headline windows cover, ms.
    counted_ms: u64,
    /// Per timeline bucket, every window inside the range merged.
    buckets: BTreeMap<u64, WindowAgg>,
}

/// How a phase's logged windows map onto a report: which count, which are
/// warm-up, how long each covers, which timeline bucket each falls in.
struct Windowing<'a> {
    p: &'a PhaseAgg,
    options: &'a ReportOptions,
    width_ms: u64,
    per_bucket: u64,
    bucket_ms: u64,
    phase_start_ms: f64,
}

impl<'a> Windowing<'a> {
    fn new(p: &'a PhaseAgg, run_start_us: i64, options: &'a ReportOptions) -> Self {
        let width_ms = u64::from(p.window_ms);
        // Report windows: whole multiples of the logged ones.
        let per_bucket = options
            .window_s
            .map_or(1, |w| (u64::from(w) * 1000 / width_ms).max(1));
        Windowing {
            p,
            options,
            width_ms,
            per_bucket,
            bucket_ms: width_ms * per_bucket,
            phase_start_ms: (p.start_at_us - run_start_us) as f64 / 1000.0,
        }
    }

    /// A logged window counts when it lies inside [from, to] (run time).
    fn inside(&self, index: u32) -> bool {
        let start = self.phase_start_ms + (u64::from(index) * self.width_ms) as f64;
        let end = start + self.width_ms as f64;
        self.options
            .from_s
            .is_none_or(|f| start >= f * 1000.0 - 0.5)
            && self.options.to_s.is_none_or(|t| end <= t * 1000.0 + 0.5)
    }

    /// The window is in the headline numbers.
    fn headline(&self, index: u32) -> bool {
        self.inside(index) && (self.options.include_warmup || !self.p.is_warmup(index))
    }

    /// Time a logged window covers: the last one may be cut by the phase end.
    fn covers(&self, index: u32) -> u64 {
        let start = u64::from(index) * self.width_ms;
        self.width_ms
            .min(self.p.duration_ms.max(1).saturating_sub(start))
    }

    fn bucket(&self, index: u32) -> u64 {
        u64::from(index) / self.per_bucket
    }

    fn series(&self, windows: &BTreeMap<u32, WindowAgg>) -> Series {
        let growing = || {
            let mut agg = WindowAgg::new();
            agg.latency.auto(true);
            agg
        };
        let mut total = growing();
        let mut counted_ms = 0u64;
        let mut buckets: BTreeMap<u64, WindowAgg> = BTreeMap::new();
        for (&index, w) in windows.iter().filter(|(i, _)| self.inside(**i)) {
            if self.options.include_warmup || !self.p.is_warmup(index) {
                total.merge(w);
                counted_ms += self.covers(index);
            }
            buckets
                .entry(self.bucket(index))
                .or_insert_with(growing)
                .merge(w);
        }
        Series {
            total,
            counted_ms,
            buckets,
        }
    }
}

fn quantile(h: &Histogram<u64>, q: f64) -> Option<u64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q))
}

fn throughput(requests: u64, duration_s: f64) -> f64 {
    if duration_s > 0.0 {
        round2(requests as f64 / duration_s)
    } else {
        0.0
    }
}

fn phase_report(
    p: &PhaseAgg,
    run_start_us: i64,
    agents: &BTreeMap<String, AgentInfo>,
    agent_cpu: &BTreeMap<String, BTreeMap<i64, CpuSample>>,
    options: &ReportOptions,
) -> PhaseReport {
    let at = Windowing::new(p, run_start_us, options);
    let Series {
        total,
        counted_ms,
        buckets,
    } = at.series(&p.windows);
    let timeline = buckets
        .iter()
        .map(|(&b, w)| {
            let t_ms = b * at.bucket_ms;
            TimelinePoint {
                t_s: round3(t_ms as f64 / 1000.0),
                warmup: t_ms < p.warmup_ms,
                requests: w.requests(),
                errors: w.error_count(),
                p50_us: quantile(&w.latency, 0.5),
                p90_us: quantile(&w.latency, 0.9),
                p99_us: quantile(&w.latency, 0.99),
                max_us: (!w.latency.is_empty()).then(|| w.latency.max()),
                agents: w.agents,
                scheduled: w.scheduled,
                intended_rps: p.shape.as_ref().map(|shape| {
                    round2(intended_mean(
                        shape,
                        t_ms as f64 / 1000.0,
                        (t_ms + at.bucket_ms) as f64 / 1000.0,
                    ))
                }),
            }
        })
        .collect();
    let duration_s = counted_ms as f64 / 1000.0;
    let requests = total.requests();
    let spectrum = spectrum(&total.latency);
    let mut latency = latency_report(&total.latency);
    if let Some(l) = latency.as_mut() {
        for &q in &options.percentiles {
            l.percentiles.insert(
                format!("p{}", trim_float(q)),
                total.latency.value_at_quantile(q / 100.0),
            );
        }
    }
    let ops = op_reports(p, &at, requests, duration_s);
    let no_agent = AgentPhase::default();
    let agent_reports: Vec<PhaseAgentReport> = p
        .agent_ids
        .iter()
        .chain(p.agents.keys().filter(|id| !p.agent_ids.contains(id)))
        .filter(|id| p.agents.contains_key(*id) || !options.filtered)
        .map(|id| {
            let a = p.agents.get(id).unwrap_or(&no_agent);
            agent_report(p, &at, id, a, agents, agent_cpu.get(id))
        })
        .collect();
    let generator_limited = agent_reports
        .iter()
        .filter_map(|a| {
            let reasons = limited_reasons(&a.load);
            (!reasons.is_empty()).then(|| LimitedAgent {
                agent: a.id.clone(),
                reasons,
            })
        })
        .collect();
    let stopped = p.stop.as_ref().map(|s| StopReport {
        reason: s.reason.clone(),
        window_index: s.window_index,
        at_s: round3(f64::from(s.window_index) * f64::from(p.window_ms) / 1000.0),
        rate: round2(s.rate),
        condition_met: s.condition_met,
    });
    PhaseReport {
        name: p.name.clone(),
        index: p.index,
        start_s: round3(at.phase_start_ms / 1000.0),
        window_s: round3(at.bucket_ms as f64 / 1000.0),
        requests,
        ok: total.ok,
        errors: total.errors.clone(),
        bytes_sent: total.bytes_sent,
        bytes_received: total.bytes_received,
        duration_s: round3(duration_s),
        warmup_s: round3(p.warmup_ms as f64 / 1000.0),
        throughput_rps: throughput(requests, duration_s),
        latency_us: latency,
        latency_spectrum: spectrum,
        latency_clamped: total.latency_clamped,
        max_send_lag_us: total.max_send_lag_us,
        ended: p.ended(),
        agents: agent_reports,
        timeline,
        scheduled: total.scheduled,
        late_wakes: total.late_wakes,
        max_wake_lag_us: total.max_wake_lag_us,
        iterations: p.iterations,
        arrival: p
            .shape
            .as_ref()
            .map(|s| s.arrival.clone())
            .filter(|a| !a.is_empty()),
        ops,
        generator_limited,
        stopped,
    }
}

/// The phase's named operations, in the file's order (then any other op
/// that logged windows, by name).
fn op_reports(
    p: &PhaseAgg,
    at: &Windowing<'_>,
    phase_requests: u64,
    duration_s: f64,
) -> Vec<OpReport> {
    let names = p
        .op_names
        .iter()
        .filter(|n| p.ops.contains_key(*n))
        .chain(p.ops.keys().filter(|n| !p.op_names.contains(n)));
    names
        .map(|name| {
            let Series { total, buckets, .. } = at.series(&p.ops[name]);
            let requests = total.requests();
            OpReport {
                name: name.clone(),
                requests,
                ok: total.ok,
                errors: total.errors.clone(),
                share_pct: if phase_requests > 0 {
                    round2(requests as f64 * 100.0 / phase_requests as f64)
                } else {
                    0.0
                },
                bytes_sent: total.bytes_sent,
                bytes_received: total.bytes_received,
                throughput_rps: throughput(requests, duration_s),
                latency_us: latency_report(&total.latency),
                timeline: buckets
                    .iter()
                    .map(|(&b, w)| OpPoint {
                        t_s: round3((b * at.bucket_ms) as f64 / 1000.0),
                        requests: w.requests(),
                        errors: w.error_count(),
                        p50_us: quantile(&w.latency, 0.5),
                        p99_us: quantile(&w.latency, 0.99),
                    })
                    .collect(),
            }
        })
        .collect()
}

fn agent_report(
    p: &PhaseAgg,
    at: &Windowing<'_>,
    id: &str,
    a: &AgentPhase,
    agents: &BTreeMap<String, AgentInfo>,
    cpu: Option<&BTreeMap<i64, CpuSample>>,
) -> PhaseAgentReport {
    let mut points: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let (mut requests, mut errors, mut windows) = (0, 0, 0);
    let mut load = AgentLoad::default();
    for (&index, w) in a.by_window.iter().filter(|(i, _)| at.inside(**i)) {
        let e = points.entry(at.bucket(index)).or_default();
        e.0 += w.requests();
        e.1 += w.errors;
        windows += 1;
        if at.headline(index) {
            requests += w.requests();
            errors += w.errors;
        }
        // The limited rule looks at the measured windows, warm-up or not
        // asked for: a warm-up is where an agent may still be settling. Nor
        // at windows after the one a stop request names: run control cut
        // them short, so what they lack against the schedule is the stop's.
        let cut = p.stop.as_ref().is_some_and(|s| index > s.window_index);
        if !p.is_warmup(index) && !cut {
            load.scheduled += w.scheduled;
            load.late_wakes += w.late_wakes;
            load.max_wake_lag_us = load.max_wake_lag_us.max(w.max_wake_lag_us);
            load.loop_probes += w.loop_probes;
            load.loop_late += w.loop_late;
            load.max_loop_lag_us = load.max_loop_lag_us.max(w.max_loop_lag_us);
            load.sent += w.requests();
        }
    }
    load.threads = a.ended.map_or(0, |e| e.threads);
    // CPU samples whose interval's middle lies inside the phase's logged
    // span (its duration, or less when it ended early).
    if let Some(samples) = cpu {
        let logged_ms = a
            .by_window
            .keys()
            .next_back()
            .map_or(0, |i| (u64::from(*i) + 1) * u64::from(p.window_ms));
        let span_ms = if p.duration_ms > 0 {
            p.duration_ms.min(logged_ms.max(1))
        } else {
            logged_ms
        };
        let (from, to) = (p.start_at_us, p.start_at_us + span_ms as i64 * 1000);
        let inside: Vec<&CpuSample> = samples
            .range(from..to + 60_000_000)
            .filter(|(t, s)| {
                let mid = **t - i64::from(s.interval_ms) * 500;
                (from..to).contains(&mid)
            })
            .map(|(_, s)| s)
            .collect();
        if !inside.is_empty() {
            load.cpu_pct_mean =
                Some(inside.iter().map(|s| s.pct).sum::<f64>() / inside.len() as f64);
            load.cores = inside.iter().map(|s| s.cores).max().unwrap_or(0);
        }
    }
    if load.cores == 0 {
        load.cores = agents.get(id).map_or(0, |a| a.cores);
    }
    let share = p.shares.iter().find(|s| s.agent_id == id);
    PhaseAgentReport {
        id: id.to_string(),
        host: agents.get(id).map(|a| a.host.clone()).unwrap_or_default(),
        windows,
        requests,
        errors,
        ended: a.ended.is_some(),
        abandoned_in_flight: a.ended.map_or(0, |e| e.abandoned_in_flight),
        cpu_s: a.ended.map_or(0.0, |e| e.cpu_ms as f64 / 1000.0),
        timeline: points
            .into_iter()
            .map(|(b, (requests, errors))| AgentPoint {
                t_s: round3((b * at.bucket_ms) as f64 / 1000.0),
                requests,
                errors,
            })
            .collect(),
        share: share.map(|s| round3(s.share)),
        concurrency: share.map(|s| s.concurrency),
        rate: share.map(|s| round2(s.rate)),
        iterations: share.map(|s| s.iterations),
        iterations_done: a.ended.is_some_and(|e| e.iterations_done),
        agent_cpu_pct: load.cpu_pct_mean.map(round2),
        load,
    }
}

// ---------------------------------------------------------------- load shape

/// The intended total rate (requests/s across agents) `t_s` seconds into
/// the phase: piecewise linear over the shape's segments, the last
/// segment's `to` holding after it ends; 0 for a shape without segments.
pub fn intended_rate(shape: &pb::LoadShape, t_s: f64) -> f64 {
    let mut start = 0.0;
    for seg in &shape.segments {
        let len = seg.duration_ms as f64 / 1000.0;
        if t_s < start + len {
            let f = if len > 0.0 {
                ((t_s - start) / len).clamp(0.0, 1.0)
            } else {
                1.0
            };
            return seg.from + (seg.to - seg.from) * f;
        }
        start += len;
    }
    shape.segments.last().map_or(0.0, |s| s.to)
}

/// The intended rate averaged over `[from_s, to_s)`: the sends a window of
/// that span should hold, per second. Exact for piecewise-linear shapes
/// (the mean of a linear piece is its value in the middle).
pub fn intended_mean(shape: &pb::LoadShape, from_s: f64, to_s: f64) -> f64 {
    if to_s <= from_s {
        return intended_rate(shape, from_s);
    }
    // Cut [from, to) at segment boundaries; each piece is linear.
    let mut cuts = vec![from_s];
    let mut edge = 0.0;
    for seg in &shape.segments {
        edge += seg.duration_ms as f64 / 1000.0;
        if edge > from_s && edge < to_s {
            cuts.push(edge);
        }
    }
    cuts.push(to_s);
    let area: f64 = cuts
        .windows(2)
        .map(|c| (c[1] - c[0]) * intended_rate(shape, (c[0] + c[1]) / 2.0))
        .sum();
    area / (to_s - from_s)
}

// ---------------------------------------------------------------- load-generator-limited

/// Open loop: late wakes above this share of the scheduled sends mean the
/// agent could not keep its schedule (rule a).
pub const LATE_WAKE_SHARE: f64 = 0.01;
/// Rule (a) needs at least this many scheduled sends to judge.
pub const LATE_WAKE_MIN_SCHEDULED: u64 = 100;
/// How late a wake must be to count, as the agent applies it (µs).
pub const LATE_WAKE_US: u64 = 5_000;
/// The agent process at or above this share of the CPU it can use
/// (min(threads, cores) cores) is saturated (rule b).
pub const AGENT_CPU_SATURATED: f64 = 0.90;
/// Open loop: sends short of the schedule by more than this share, while
/// wakes were late, mean the agent fell behind (rule c).
pub const SEND_SHORTFALL: f64 = 0.05;
/// Rule (c) needs late wakes in at least this share of the scheduled sends:
/// a handful of late wakes on a busy host do not make a shortfall the
/// agent's (a target past its knee falls short on its own).
pub const SHORTFALL_LATE_SHARE: f64 = 0.001;

/// What the limited rule looks at for one agent in one phase (its measured,
/// not warm-up, windows; CPU from its metrics inside the phase).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AgentLoad {
    /// Sends the schedule called for (open loop; 0 for closed loop).
    pub scheduled: u64,
    /// Requests the agent finished (ok or failed).
    pub sent: u64,
    pub late_wakes: u64,
    pub max_wake_lag_us: u64,
    /// Event-loop probes of the agent's load threads (one per 10 ms per
    /// thread), those that fired more than 5 ms late, the largest lag.
    pub loop_probes: u64,
    pub loop_late: u64,
    pub max_loop_lag_us: u64,
    /// The agent process's CPU averaged over the phase, percent of one core
    /// (None: the agent reported none).
    pub cpu_pct_mean: Option<f64>,
    /// Worker threads the agent ran the phase on (0: not known).
    pub threads: u32,
    /// The host's logical cores (0: not known).
    pub cores: u32,
}

/// Whether an agent's numbers in a phase describe the agent rather than
/// the target, and why, in words. The agent is limited when any of:
///
/// (a) late wakes exceed [`LATE_WAKE_SHARE`] (1 %) of the scheduled sends,
///     given at least [`LATE_WAKE_MIN_SCHEDULED`] (100) scheduled: its
///     workers woke more than 5 ms after the intended time, so the agent,
///     not the target, delayed the sends;
/// (b) its process CPU, averaged over the phase, is at least
///     [`AGENT_CPU_SATURATED`] (90 %) of min(threads, cores) × 100 %: it had
///     no CPU left to send faster or time requests accurately;
/// (c) open loop, it sent fewer than (1 − [`SEND_SHORTFALL`]) (95 %) of the
///     scheduled requests while over [`SHORTFALL_LATE_SHARE`] (0.1 %) of
///     them woke late: it fell behind;
/// (d) its load threads' event-loop probes (a timer every 10 ms) fired more
///     than 5 ms late in over [`LATE_WAKE_SHARE`] (1 %) of at least
///     [`LATE_WAKE_MIN_SCHEDULED`] (100) probes: the agent's threads were
///     not running when due (CPU starvation, preemption), open or closed
///     loop alike, so its latencies include its own delays.
///
/// An empty list: not limited.
pub fn limited_reasons(load: &AgentLoad) -> Vec<String> {
    let mut reasons = Vec::new();
    if load.scheduled >= LATE_WAKE_MIN_SCHEDULED
        && load.late_wakes as f64 > LATE_WAKE_SHARE * load.scheduled as f64
    {
        reasons.push(format!(
            "{} of sends woke more than {} late (max {})",
            percent(load.late_wakes as f64 / load.scheduled as f64),
            format_ms(LATE_WAKE_US),
            format_ms(load.max_wake_lag_us)
        ));
    }
    let usable = match (load.threads, load.cores) {
        (0, c) => c,
        (t, 0) => t,
        (t, c) => t.min(c),
    };
    if let Some(cpu) = load.cpu_pct_mean
        && usable > 0
        && cpu >= AGENT_CPU_SATURATED * f64::from(usable) * 100.0
    {
        reasons.push(format!(
            "agent CPU {} of its {usable} thread{}",
            percent(cpu / (f64::from(usable) * 100.0)),
            if usable == 1 { "" } else { "s" }
        ));
    }
    if load.scheduled > 0
        && load.late_wakes as f64 > SHORTFALL_LATE_SHARE * load.scheduled as f64
        && (load.sent as f64) < (1.0 - SEND_SHORTFALL) * load.scheduled as f64
    {
        reasons.push(format!(
            "sent {} of {} scheduled requests ({} short) while waking late",
            load.sent,
            load.scheduled,
            percent(load.scheduled.saturating_sub(load.sent) as f64 / load.scheduled as f64)
        ));
    }
    if load.loop_probes >= LATE_WAKE_MIN_SCHEDULED
        && load.loop_late as f64 > LATE_WAKE_SHARE * load.loop_probes as f64
    {
        reasons.push(format!(
            "its event loop ran late: {} of its 10 ms probes fired more than {} late (max {})",
            percent(load.loop_late as f64 / load.loop_probes as f64),
            format_ms(LATE_WAKE_US),
            format_ms(load.max_loop_lag_us)
        ));
    }
    reasons
}

/// A share as people read it: "34%", "1.5%".
fn percent(share: f64) -> String {
    let pct = (share * 1000.0).round() / 10.0;
    if pct >= 10.0 {
        format!("{pct:.0}%")
    } else {
        format!("{pct:.1}%")
    }
}

/// Microseconds as whole milliseconds when they are: "5 ms", "230 ms", "0.8 ms".
fn format_ms(us: u64) -> String {
    if us.is_multiple_of(1000) || us >= 10_000 {
        format!("{} ms", (us as f64 / 1000.0).round())
    } else {
        format!("{:.1} ms", us as f64 / 1000.0)
    }
}

/// The percentile spectrum of a histogram, as HdrHistogram plots it: points
/// evenly spaced in log(1 / (1 - p)), from p0 up to the last recorded value.
fn spectrum(h: &Histogram<u64>) -> Vec<SpectrumPoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    // 1 - p = 10^(-k/10): ten points per decade ("nines").
    let last = (h.len() as f64).log10() * 10.0;
    let mut k = 0.0;
    while k <= last.min(70.0) {
        let q = 1.0 - 10f64.powf(-k / 10.0);
        out.push(SpectrumPoint {
            percentile: (q * 100.0 * 1e6).round() / 1e6,
            value_us: h.value_at_quantile(q),
        });
        k += 1.0;
    }
    out.push(SpectrumPoint {
        percentile: 100.0,
        value_us: h.max(),
    });
    out
}

/// `99.9` -> "99.9", `99.0` -> "99".
fn trim_float(v: f64) -> String {
    let s = format!("{v}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

// ---------------------------------------------------------------- report model

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
    /// [`limited_reasons`]).
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

/// An agent that limited a phase, and why (see [`limited_reasons`]).
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
    pub p50_us: Option<u64>,
    pub p90_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
    pub agents: u32,
    /// Open loop: sends the schedule called for in this window (offered).
    #[serde(skip_serializing_if = "is_zero")]
    pub scheduled: u64,
    /// The phase's load shape's total rate, averaged over this window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intended_rps: Option<f64>,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::window::WindowAcc;

    fn window_event(agent: &str, seq: u64, index: u32, rng: &mut Rng) -> pb::LogRecord {
        let mut w = WindowAcc::new();
        let n = rng.next_u64() % 50;
        for _ in 0..n {
            w.record_ok(1 + rng.next_u64() % 10_000);
        }
        if rng.next_u64().is_multiple_of(3) {
            w.record_error(crate::window::ErrorClass::Status5xx, Some(42));
        }
        pb::LogRecord {
            logged_at_us: 1,
            record: Some(Record::AgentEvent(pb::AgentEvent {
                agent_id: agent.into(),
                clock_offset_us: 0,
                event: Some(pb::Event {
                    seq,
                    agent_time_us: 0,
                    kind: Some(pb::event::Kind::Window(w.to_pb(0, index, 1000))),
                }),
            })),
        }
    }

    fn scheduled() -> pb::LogRecord {
        pb::LogRecord {
            logged_at_us: 0,
            record: Some(Record::PhaseScheduled(pb::PhaseScheduled {
                phase_index: 0,
                name: "load".into(),
                start_at_us: 0,
                duration_ms: 20_000,
                warmup_ms: 2_000,
                window_ms: 1000,
                agent_ids: vec!["a".into(), "b".into()],
                ..Default::default()
            })),
        }
    }

    fn stream(seed: u64) -> Vec<pb::LogRecord> {
        let mut rng = Rng::new(seed);
        let mut out = vec![scheduled()];
        for agent in ["a", "b"] {
            for i in 0..20u32 {
                out.push(window_event(agent, u64::from(i) + 1, i, &mut rng));
            }
        }
        out
    }

    fn json(f: &Fold) -> String {
        serde_json::to_string(&f.report(&ReportOptions::default())).unwrap()
    }

    #[test]
    fn order_of_arrival_does_not_change_the_report() {
        for seed in 0..20 {
            let records = stream(seed);
            let mut forward = Fold::new();
            records.iter().for_each(|r| forward.apply(r));
            let mut shuffled = records.clone();
            let mut rng = Rng::new(seed ^ 0xdead);
            for i in (1..shuffled.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                shuffled.swap(i, j);
            }
            let mut other = Fold::new();
            shuffled.iter().for_each(|r| other.apply(r));
            assert_eq!(json(&forward), json(&other), "seed {seed}");
        }
    }

    #[test]
    fn repeated_events_count_once() {
        let records = stream(3);
        let mut once = Fold::new();
        records.iter().for_each(|r| once.apply(r));
        let mut twice = Fold::new();
        records
            .iter()
            .chain(records[5..12].iter())
            .for_each(|r| twice.apply(r));
        assert_eq!(twice.duplicate_events, 7);
        assert_eq!(
            once.report(&ReportOptions::default()).phases[0].requests,
            twice.report(&ReportOptions::default()).phases[0].requests
        );
    }

    #[test]
    fn warmup_is_left_out_of_headline_numbers() {
        let records = stream(5);
        let mut f = Fold::new();
        records.iter().for_each(|r| f.apply(r));
        let all = f.report(&ReportOptions {
            include_warmup: true,
            ..Default::default()
        });
        let measured = f.report(&ReportOptions::default());
        let warm: u64 = f.phases[&0]
            .windows
            .iter()
            .filter(|(i, _)| **i < 2)
            .map(|(_, w)| w.requests())
            .sum();
        assert_eq!(all.phases[0].requests, measured.phases[0].requests + warm);
        assert_eq!(measured.phases[0].duration_s, 18.0);
        assert_eq!(all.phases[0].duration_s, 20.0);
        assert_eq!(measured.phases[0].timeline.len(), 20);
    }

    /// Property: for random event streams, any window size and any order of
    /// arrival give the same totals and the same merged histogram; the
    /// timeline always adds up to the totals.
    #[test]
    fn any_window_size_and_any_order_give_the_same_totals() {
        for seed in 0..30 {
            let records = stream(seed);
            let mut base = Fold::new();
            records.iter().for_each(|r| base.apply(r));
            let all = ReportOptions {
                include_warmup: true,
                ..Default::default()
            };
            let want = base.report(&all).phases[0].clone();
            let mut rng = Rng::new(seed + 1000);
            for window in 1..=7u32 {
                let mut shuffled = records.clone();
                for i in (1..shuffled.len()).rev() {
                    let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                    shuffled.swap(i, j);
                }
                let mut f = Fold::new();
                shuffled.iter().for_each(|r| f.apply(r));
                let got = f.report(&ReportOptions {
                    window_s: Some(window),
                    ..all.clone()
                });
                let p = &got.phases[0];
                assert_eq!(
                    (p.requests, p.ok, &p.errors, p.bytes_sent),
                    (want.requests, want.ok, &want.errors, want.bytes_sent),
                    "seed {seed} window {window}"
                );
                assert_eq!(
                    serde_json::to_string(&p.latency_us).unwrap(),
                    serde_json::to_string(&want.latency_us).unwrap()
                );
                assert_eq!(p.window_s, f64::from(window));
                assert_eq!(p.timeline.len(), 20usize.div_ceil(window as usize));
                let sum: u64 = p.timeline.iter().map(|w| w.requests).sum();
                assert_eq!(sum, want.requests, "timeline adds up");
            }
        }
    }

    /// `from`/`to` keep exactly the windows inside the range, and excluding
    /// an agent removes exactly its counts.
    #[test]
    fn ranges_and_agent_filters_are_exact() {
        let records = stream(11);
        let mut f = Fold::new();
        records.iter().for_each(|r| f.apply(r));
        let all = ReportOptions {
            include_warmup: true,
            ..Default::default()
        };
        let phase = &f.phases[&0];
        let want: u64 = phase
            .windows
            .iter()
            .filter(|(i, _)| (5..9).contains(*i))
            .map(|(_, w)| w.requests())
            .sum();
        let ranged = f.report(&ReportOptions {
            from_s: Some(5.0),
            to_s: Some(9.0),
            ..all.clone()
        });
        assert_eq!(ranged.phases[0].requests, want);
        assert_eq!(ranged.phases[0].timeline.len(), 4);
        assert_eq!(ranged.phases[0].duration_s, 4.0);

        let whole = f.report(&all).phases[0].clone();
        let a = whole.agents.iter().find(|a| a.id == "a").unwrap().requests;
        let mut without = Fold::with_filter(Filter {
            exclude_agents: vec!["a".into()],
            ..Default::default()
        });
        records.iter().for_each(|r| without.apply(r));
        let rest = without.report(&ReportOptions {
            filtered: true,
            ..all
        });
        assert_eq!(rest.phases[0].requests, whole.requests - a);
        assert_eq!(rest.phases[0].agents.len(), 1);
    }

    /// A finished op-less run as logged before operations existed: run and
    /// agent records, windows with errors, phase ends, host metrics, a
    /// notice. Its reports are pinned in `src/testdata/`.
    fn op_less_log() -> Vec<pb::LogRecord> {
        let rec = |logged_at_us: i64, r: Record| pb::LogRecord {
            logged_at_us,
            record: Some(r),
        };
        let mut out = vec![rec(
            0,
            Record::RunStarted(pb::RunStarted {
                run_id: "old-run".into(),
                name: "old".into(),
                started_at_us: 1_000_000,
                coordinator_version: "0.1.0".into(),
                ..Default::default()
            }),
        )];
        for id in ["a", "b"] {
            out.push(rec(
                1,
                Record::AgentAttached(pb::AgentAttached {
                    hello: Some(pb::Hello {
                        agent_id: id.into(),
                        hostname: format!("host-{id}"),
                        cores: 2,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            ));
        }
        out.push(scheduled());
        let mut rng = Rng::new(77);
        for (a, agent) in ["a", "b"].iter().enumerate() {
            let mut seq = 0;
            for i in 0..20u32 {
                seq += 1;
                let mut r = window_event(agent, seq, i, &mut rng);
                if let Some(Record::AgentEvent(e)) = &mut r.record {
                    e.event.as_mut().unwrap().agent_time_us = 1_000_000 * (i64::from(i) + 1);
                }
                out.push(r);
                seq += 1;
                out.push(agent_event(
                    agent,
                    seq,
                    1_000_000 * (i64::from(i) + 1),
                    pb::event::Kind::HostMetrics(pb::HostMetrics {
                        cpu_pct: 10.0 + a as f32 + i as f32,
                        mem_used_bytes: 1 << 30,
                        interval_ms: 1000,
                        ..Default::default()
                    }),
                ));
            }
            seq += 1;
            out.push(agent_event(
                agent,
                seq,
                21_000_000,
                pb::event::Kind::PhaseEnded(pb::PhaseEnded {
                    phase_index: 0,
                    windows: 20,
                    cpu_ms: 1500,
                    threads: 1,
                    ..Default::default()
                }),
            ));
        }
        out.push(rec(
            9_500_000,
            Record::Notice(pb::CoordinatorNotice {
                level: "warn".into(),
                message: "something".into(),
                agent_id: "a".into(),
            }),
        ));
        out.push(rec(
            10_000_000,
            Record::RunFinished(pb::RunFinished {
                status: "completed".into(),
                reason: String::new(),
            }),
        ));
        out
    }

    /// An op-less log (every log written before operations existed) reports
    /// byte for byte as it did then, in table, JSON and CSV.
    #[test]
    fn an_op_less_log_reports_exactly_as_before_operations() {
        let mut f = Fold::new();
        op_less_log().iter().for_each(|r| f.apply(r));
        let report = f.report(&ReportOptions::default());
        let pinned = [
            (
                crate::report::Format::Table,
                include_str!("testdata/op-less.txt"),
            ),
            (
                crate::report::Format::Json,
                include_str!("testdata/op-less.json"),
            ),
            (
                crate::report::Format::Csv,
                include_str!("testdata/op-less.csv"),
            ),
        ];
        for (format, want) in pinned {
            let got = crate::report::render(&report, format);
            assert_eq!(got, want, "{format:?}");
        }
    }

    #[test]
    fn seq_gaps_are_counted() {
        let records = stream(8);
        let mut f = Fold::new();
        records
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .for_each(|(_, r)| f.apply(r));
        assert_eq!(f.seq_gaps(), 1);
    }

    // ------------------------------------------------------------ operations

    fn agent_event(
        agent: &str,
        seq: u64,
        agent_time_us: i64,
        kind: pb::event::Kind,
    ) -> pb::LogRecord {
        pb::LogRecord {
            logged_at_us: 1,
            record: Some(Record::AgentEvent(pb::AgentEvent {
                agent_id: agent.into(),
                clock_offset_us: 0,
                event: Some(pb::Event {
                    seq,
                    agent_time_us,
                    kind: Some(kind),
                }),
            })),
        }
    }

    /// A window of one op with `n` requests of `latency_us` each, `errors`
    /// 5xx, and open-loop counts.
    #[allow(clippy::too_many_arguments)]
    fn op_window(
        agent: &str,
        seq: u64,
        index: u32,
        op: &str,
        n: u64,
        latency_us: u64,
        errors: u64,
        (scheduled, late_wakes, max_wake_lag_us): (u64, u64, u64),
    ) -> pb::LogRecord {
        let mut w = WindowAcc::new();
        for _ in 0..n {
            w.record_ok(latency_us);
        }
        for _ in 0..errors {
            w.record_error(crate::window::ErrorClass::Status5xx, Some(latency_us));
        }
        let mut w = w.to_pb(0, index, 1000);
        w.op = op.into();
        w.scheduled = scheduled;
        w.late_wakes = late_wakes;
        w.max_wake_lag_us = max_wake_lag_us;
        agent_event(agent, seq, 0, pb::event::Kind::Window(w))
    }

    fn scheduled_with(f: impl FnOnce(&mut pb::PhaseScheduled)) -> pb::LogRecord {
        let mut r = scheduled();
        if let Some(Record::PhaseScheduled(p)) = &mut r.record {
            f(p);
        }
        r
    }

    /// Two agents, 20 windows, ops "read" (fast) and "write" (slow) with
    /// random counts and errors; the file declares "write" first.
    fn op_stream(seed: u64) -> Vec<pb::LogRecord> {
        let mut rng = Rng::new(seed);
        let mut out = vec![scheduled_with(|p| {
            p.ops = vec!["write".into(), "read".into()];
        })];
        for agent in ["a", "b"] {
            let mut seq = 0;
            for i in 0..20u32 {
                for (op, latency) in [("read", 100), ("write", 5000)] {
                    seq += 1;
                    let n = rng.next_u64() % 40;
                    let errors = rng.next_u64() % 3;
                    out.push(op_window(agent, seq, i, op, n, latency, errors, (0, 0, 0)));
                }
            }
        }
        out
    }

    fn fold_of(records: &[pb::LogRecord]) -> Fold {
        let mut f = Fold::new();
        records.iter().for_each(|r| f.apply(r));
        f
    }

    #[test]
    fn operations_add_up_to_their_phase() {
        for seed in 0..10 {
            for options in [
                ReportOptions::default(),
                ReportOptions {
                    include_warmup: true,
                    window_s: Some(3),
                    ..Default::default()
                },
            ] {
                let report = fold_of(&op_stream(seed)).report(&options);
                let p = &report.phases[0];
                let names: Vec<&str> = p.ops.iter().map(|o| o.name.as_str()).collect();
                assert_eq!(names, ["write", "read"], "the file's order");
                let sum = |f: fn(&OpReport) -> u64| p.ops.iter().map(f).sum::<u64>();
                assert_eq!(sum(|o| o.requests), p.requests, "seed {seed}");
                assert_eq!(sum(|o| o.ok), p.ok);
                assert_eq!(sum(|o| o.error_count()), p.error_count());
                let shares: f64 = p.ops.iter().map(|o| o.share_pct).sum();
                assert!((shares - 100.0).abs() < 0.02, "{shares}");
                for op in &p.ops {
                    assert_eq!(op.timeline.len(), p.timeline.len());
                    let l = op.latency_us.as_ref().unwrap();
                    let want = if op.name == "read" { 100 } else { 5000 };
                    assert!(l.p50.abs_diff(want) * 100 <= want, "{}: {l:?}", op.name);
                }
                for (i, w) in p.timeline.iter().enumerate() {
                    let ops: u64 = p.ops.iter().map(|o| o.timeline[i].requests).sum();
                    assert_eq!(ops, w.requests, "window {i} adds up");
                    assert_eq!(w.agents, 2, "an agent counts once per window, not per op");
                }
                let a = &p.agents[0];
                assert_eq!(a.windows, 20, "distinct windows, not one per op");
            }
        }
    }

    #[test]
    fn operations_do_not_change_order_independence() {
        for seed in 0..10 {
            let records = op_stream(seed);
            let want = json(&fold_of(&records));
            let mut shuffled = records.clone();
            let mut rng = Rng::new(seed ^ 0xbeef);
            for i in (1..shuffled.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                shuffled.swap(i, j);
            }
            assert_eq!(json(&fold_of(&shuffled)), want, "seed {seed}");
        }
    }

    #[test]
    fn an_op_filter_keeps_only_that_operation() {
        let records = op_stream(4);
        let all = fold_of(&records).report(&ReportOptions::default());
        let mut f = Fold::with_filter(Filter {
            ops: vec!["read".into()],
            ..Default::default()
        });
        records.iter().for_each(|r| f.apply(r));
        let reads = f.report(&ReportOptions::default());
        let want = all.phases[0].ops.iter().find(|o| o.name == "read").unwrap();
        assert_eq!(reads.phases[0].requests, want.requests);
        assert_eq!(reads.phases[0].ops.len(), 1);
        assert_eq!(reads.phases[0].ops[0].share_pct, 100.0);
    }

    #[test]
    fn a_single_workload_phase_lists_no_operations() {
        let report = fold_of(&stream(2)).report(&ReportOptions::default());
        assert!(report.phases[0].ops.is_empty());
        let text = serde_json::to_string(&report).unwrap();
        for field in [
            "\"ops\"",
            "generator_limited",
            "stopped",
            "intended_rps",
            "scheduled",
        ] {
            assert!(!text.contains(field), "{field} in an op-less report");
        }
    }

    #[test]
    fn shares_come_from_the_schedule() {
        let mut records = op_stream(1);
        records[0] = scheduled_with(|p| {
            p.shares = vec![
                pb::AgentShare {
                    agent_id: "a".into(),
                    share: 0.75,
                    concurrency: 6,
                    rate: 300.0,
                    iterations: 750,
                },
                pb::AgentShare {
                    agent_id: "b".into(),
                    share: 0.25,
                    concurrency: 2,
                    rate: 100.0,
                    iterations: 250,
                },
            ];
            p.iterations = 1000;
        });
        let report = fold_of(&records).report(&ReportOptions::default());
        let p = &report.phases[0];
        assert_eq!(p.iterations, 1000);
        let a = &p.agents[0];
        assert_eq!(
            (a.share, a.concurrency, a.rate, a.iterations),
            (Some(0.75), Some(6), Some(300.0), Some(750))
        );
        assert_eq!(p.agents[1].share, Some(0.25));
    }

    // ------------------------------------------------------------ limited

    fn load() -> AgentLoad {
        AgentLoad {
            scheduled: 10_000,
            sent: 10_000,
            late_wakes: 0,
            max_wake_lag_us: 0,
            loop_probes: 500,
            loop_late: 2,
            max_loop_lag_us: 7_000,
            cpu_pct_mean: Some(40.0),
            threads: 1,
            cores: 4,
        }
    }

    #[test]
    fn a_late_event_loop_limits_the_agent() {
        // 2 late probes of 500: 0.4%, under the 1% bar (the base case).
        assert!(limited_reasons(&load()).is_empty());
        let starved = AgentLoad {
            loop_late: 40,
            max_loop_lag_us: 60_000,
            ..load()
        };
        let reasons = limited_reasons(&starved);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].contains("event loop ran late: 8.0%"),
            "{reasons:?}"
        );
        assert!(reasons[0].contains("max 60"), "{reasons:?}");
        // Too few probes to judge.
        let short = AgentLoad {
            loop_probes: 99,
            loop_late: 50,
            ..load()
        };
        assert!(limited_reasons(&short).is_empty());
    }

    #[test]
    fn an_agent_keeping_its_schedule_is_not_limited() {
        assert!(limited_reasons(&load()).is_empty());
        // Closed loop, nothing scheduled, no CPU reported.
        let closed = AgentLoad {
            scheduled: 0,
            cpu_pct_mean: None,
            ..load()
        };
        assert!(limited_reasons(&closed).is_empty());
    }

    #[test]
    fn late_wakes_over_one_percent_limit_the_agent() {
        let late = AgentLoad {
            late_wakes: 3_400,
            max_wake_lag_us: 230_000,
            ..load()
        };
        assert_eq!(
            limited_reasons(&late),
            ["34% of sends woke more than 5 ms late (max 230 ms)"]
        );
        // Exactly 1 % is not over it.
        let edge = AgentLoad {
            late_wakes: 100,
            ..load()
        };
        assert!(limited_reasons(&edge).is_empty());
        let over = AgentLoad {
            late_wakes: 101,
            max_wake_lag_us: 6_500,
            ..load()
        };
        assert_eq!(
            limited_reasons(&over),
            ["1.0% of sends woke more than 5 ms late (max 6.5 ms)"]
        );
        // Too few scheduled sends to judge.
        let few = AgentLoad {
            scheduled: 99,
            sent: 99,
            late_wakes: 50,
            ..load()
        };
        assert!(limited_reasons(&few).is_empty());
    }

    #[test]
    fn a_saturated_agent_cpu_limits_the_agent() {
        let busy = AgentLoad {
            cpu_pct_mean: Some(98.0),
            ..load()
        };
        assert_eq!(limited_reasons(&busy), ["agent CPU 98% of its 1 thread"]);
        // Four threads on two cores: two cores is what it can use.
        let two = AgentLoad {
            cpu_pct_mean: Some(185.0),
            threads: 4,
            cores: 2,
            ..load()
        };
        assert_eq!(limited_reasons(&two), ["agent CPU 92% of its 2 threads"]);
        let below = AgentLoad {
            cpu_pct_mean: Some(179.0),
            ..two
        };
        assert!(limited_reasons(&below).is_empty());
        // Threads unknown (no PhaseEnded yet): the cores.
        let unknown = AgentLoad {
            cpu_pct_mean: Some(370.0),
            threads: 0,
            ..load()
        };
        assert_eq!(
            limited_reasons(&unknown),
            ["agent CPU 92% of its 4 threads"]
        );
    }

    #[test]
    fn sending_short_of_the_schedule_while_late_limits_the_agent() {
        let short = AgentLoad {
            sent: 9_000,
            late_wakes: 50,
            max_wake_lag_us: 8_000,
            ..load()
        };
        assert_eq!(
            limited_reasons(&short),
            ["sent 9000 of 10000 scheduled requests (10% short) while waking late"]
        );
        // Short but never late: the target (or errors) held it back.
        let not_late = AgentLoad {
            late_wakes: 0,
            ..short
        };
        assert!(limited_reasons(&not_late).is_empty());
        // Short with a handful of late wakes (3 of 10,000: a busy host, a
        // target past its knee): still the target's shortfall.
        let few = AgentLoad {
            late_wakes: 3,
            ..short
        };
        assert!(limited_reasons(&few).is_empty());
        // Late, but within 5 %.
        let close = AgentLoad {
            sent: 9_600,
            ..short
        };
        assert!(limited_reasons(&close).is_empty());
    }

    /// Through the fold: agent "a" wakes late in its measured windows and
    /// its CPU is saturated; "b" keeps up. Warm-up windows do not count.
    #[test]
    fn the_fold_flags_the_limited_agent_only() {
        let mut records = vec![scheduled()];
        for (agent, late) in [("a", 40), ("b", 0)] {
            let mut seq = 0;
            for i in 0..20u32 {
                seq += 1;
                // Late wakes in b's warm-up only: not counted.
                let late = if agent == "b" && i < 2 { 90 } else { late };
                let sched = (100, late, if late > 0 { 30_000 } else { 0 });
                records.push(op_window(agent, seq, i, "", 100, 500, 0, sched));
                seq += 1;
                records.push(agent_event(
                    agent,
                    seq,
                    i64::from(i) * 1_000_000 + 1_000_000,
                    pb::event::Kind::HostMetrics(pb::HostMetrics {
                        agent_cpu_pct: if agent == "a" { 97.0 } else { 30.0 },
                        cores: 2,
                        interval_ms: 1000,
                        ..Default::default()
                    }),
                ));
            }
            seq += 1;
            records.push(agent_event(
                agent,
                seq,
                21_000_000,
                pb::event::Kind::PhaseEnded(pb::PhaseEnded {
                    phase_index: 0,
                    threads: 1,
                    ..Default::default()
                }),
            ));
            // Busy after the phase's 20 s: samples outside it do not count.
            for t in 21..30i64 {
                seq += 1;
                records.push(agent_event(
                    agent,
                    seq,
                    t * 1_000_000,
                    pb::event::Kind::HostMetrics(pb::HostMetrics {
                        agent_cpu_pct: 100.0,
                        cores: 2,
                        interval_ms: 1000,
                        ..Default::default()
                    }),
                ));
            }
        }
        let report = fold_of(&records).report(&ReportOptions::default());
        let p = &report.phases[0];
        assert_eq!(
            p.agents[1].agent_cpu_pct,
            Some(30.0),
            "samples inside the phase"
        );
        assert_eq!(p.generator_limited.len(), 1, "{:?}", p.generator_limited);
        let a = &p.generator_limited[0];
        assert_eq!(a.agent, "a");
        assert_eq!(
            a.reasons,
            [
                "40% of sends woke more than 5 ms late (max 30 ms)",
                "agent CPU 97% of its 1 thread"
            ]
        );
        assert_eq!(p.agents[0].agent_cpu_pct, Some(97.0));
        assert_eq!(p.scheduled, 2 * 18 * 100, "measured windows only");
        let table = crate::report::table(&report);
        assert!(
            table.contains(
                "LOAD-GENERATOR-LIMITED: in phase load the numbers describe agent a, not the target: \
                 40% of sends woke more than 5 ms late (max 30 ms); agent CPU 97% of its 1 thread"
            ),
            "{table}"
        );
        assert!(
            table.contains("load: offered 3600 requests (the schedule), achieved 3600 (100.0%)")
        );
        let json = crate::report::json(&report);
        assert!(json.contains("\"generator_limited\""), "{json}");
        let csv = crate::report::csv(&report);
        assert!(
            csv.lines()
                .next()
                .unwrap()
                .ends_with(",op,generator_limited,stopped_at_window")
        );
        assert!(csv.lines().nth(1).unwrap().ends_with(",,a,"), "{csv}");
    }

    // ------------------------------------------------------------ stop and shape

    fn stop(window_index: u32, reason: &str) -> pb::LogRecord {
        pb::LogRecord {
            logged_at_us: 5,
            record: Some(Record::PhaseStopRequested(pb::PhaseStopRequested {
                phase_index: 0,
                reason: reason.into(),
                window_index,
                rate: 1200.0,
                condition_met: true,
            })),
        }
    }

    #[test]
    fn a_stopped_phase_says_where_and_why() {
        let mut records = stream(6);
        records.push(stop(14, "p99 23.1ms > 20ms"));
        // A later request changes nothing, whichever arrives first.
        records.insert(3, stop(16, "interrupted"));
        let report = fold_of(&records).report(&ReportOptions::default());
        let s = report.phases[0].stopped.as_ref().expect("stopped");
        assert_eq!((s.window_index, s.at_s, s.rate), (14, 14.0, 1200.0));
        assert_eq!(s.reason, "p99 23.1ms > 20ms");
        let table = crate::report::table(&report);
        assert!(
            table.contains("load: stopped at window 14 (t=14s, rate 1200/s): p99 23.1ms > 20ms"),
            "{table}"
        );
        assert!(crate::report::json(&report).contains("\"stopped\": {"));
    }

    /// A window cut short by a stop (the phase ended during it) lacks
    /// its schedule because of the stop, not the agent: it is left out of
    /// the limited rule.
    #[test]
    fn windows_after_a_stop_do_not_make_an_agent_limited() {
        let mut records = vec![scheduled_with(|p| p.warmup_ms = 0)];
        for i in 0..10u32 {
            // Window 9 is cut by the stop after window 8: 5 of 100 sent.
            let n = if i == 9 { 5 } else { 100 };
            // 5 late wakes of 1,000 scheduled: over rule (c)'s 0.1 %,
            // under rule (a)'s 1 %.
            let late = if i == 9 { 5 } else { 0 };
            records.push(op_window(
                "a",
                u64::from(i) + 1,
                i,
                "",
                n,
                500,
                0,
                (100, late, 6_000),
            ));
        }
        let limited = |records: &[pb::LogRecord]| {
            fold_of(records).report(&ReportOptions::default()).phases[0]
                .generator_limited
                .len()
        };
        assert_eq!(limited(&records), 1, "without the stop, window 9 is short");
        records.push(stop(8, "p99 60ms > 50ms"));
        assert_eq!(limited(&records), 0, "window 9 came after the stop");
    }

    /// A load shape of (duration_ms, from, to) segments.
    pub(crate) fn shape(segments: &[(u64, f64, f64)], arrival: &str) -> pb::LoadShape {
        pb::LoadShape {
            segments: segments
                .iter()
                .map(|&(duration_ms, from, to)| pb::RateSegment {
                    duration_ms,
                    from,
                    to,
                })
                .collect(),
            arrival: arrival.into(),
        }
    }

    #[test]
    fn the_intended_rate_follows_the_segments_and_holds_the_last() {
        let ramp = shape(&[(10_000, 100.0, 1100.0), (5_000, 500.0, 500.0)], "uniform");
        assert_eq!(intended_rate(&ramp, 0.0), 100.0);
        assert_eq!(intended_rate(&ramp, 5.0), 600.0);
        assert_eq!(intended_rate(&ramp, 9.999_999), 1099.9999);
        assert_eq!(intended_rate(&ramp, 10.0), 500.0);
        assert_eq!(intended_rate(&ramp, 60.0), 500.0, "the last `to` holds");
        assert_eq!(intended_rate(&shape(&[], "uniform"), 3.0), 0.0);
        // A window's mean: linear pieces average at their middle, and a
        // window across a step averages both sides.
        assert_eq!(intended_mean(&ramp, 2.0, 3.0), 350.0);
        assert_eq!(intended_mean(&ramp, 9.5, 10.5), (1075.0 + 500.0) / 2.0);
    }

    #[test]
    fn the_timeline_carries_the_intended_and_the_offered_rate() {
        let mut records = vec![scheduled_with(|p| {
            p.shape = Some(shape(&[(20_000, 100.0, 2100.0)], "uniform"));
        })];
        for i in 0..20u32 {
            let want = 100 + 100 * u64::from(i) + 50;
            records.push(op_window(
                "a",
                u64::from(i) + 1,
                i,
                "",
                want,
                300,
                0,
                (want, 0, 0),
            ));
        }
        let report = fold_of(&records).report(&ReportOptions::default());
        let p = &report.phases[0];
        assert_eq!(p.arrival.as_deref(), Some("uniform"));
        for w in &p.timeline {
            let intended = w.intended_rps.expect("a shape gives every window its rate");
            assert_eq!(intended, w.scheduled as f64, "t {}", w.t_s);
            assert_eq!(w.requests, w.scheduled);
        }
        assert_eq!(p.timeline[3].intended_rps, Some(450.0));
    }
}
