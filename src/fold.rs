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
    /// How many agents' windows were merged here.
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
            agents: 0,
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.error_count()
    }

    /// Adds one agent's window; its histogram is merged straight from the
    /// wire bytes (`Err` if they do not decode: the window is not counted).
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
        self.agents += 1;
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
        self.agents = self.agents.max(other.agents);
    }
}

/// One agent's part in one phase.
#[derive(Debug, Clone, Default)]
pub struct AgentPhase {
    pub windows: u32,
    pub ok: u64,
    pub errors: u64,
    pub ended: Option<pb::PhaseEnded>,
    /// Per logged window: (ok, errors).
    pub by_window: BTreeMap<u32, (u64, u64)>,
    /// Per logged window, everything including the latency histogram: kept
    /// only by a fold made with [`Fold::keeping_agent_windows`] (`export`).
    pub kept: BTreeMap<u32, WindowAgg>,
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
    pub windows: BTreeMap<u32, WindowAgg>,
    pub agents: BTreeMap<String, AgentPhase>,
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
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.phases.is_empty()
            && self.agents.is_empty()
            && self.exclude_agents.is_empty()
            && self.hosts.is_empty()
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
            Record::PhaseStopRequested(_) => {}
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
                let keep = self.keep_agent_windows;
                let phase = self.phase_mut(w.phase_index);
                let added = phase
                    .windows
                    .entry(w.index)
                    .or_insert_with(WindowAgg::new)
                    .add(w);
                if added.is_err() {
                    self.bad_windows += 1;
                    return;
                }
                let phase = self.phase_mut(w.phase_index);
                if !phase.agents.contains_key(&e.agent_id) {
                    phase
                        .agents
                        .insert(e.agent_id.clone(), AgentPhase::default());
                }
                let agent = phase.agents.get_mut(&e.agent_id).expect("just ensured");
                if keep {
                    let _ = agent
                        .kept
                        .entry(w.index)
                        .or_insert_with(WindowAgg::new)
                        .add(w);
                }
                let errors = w.errors.values().sum::<u64>();
                agent.windows += 1;
                agent.ok += w.ok;
                agent.errors += errors;
                let slot = agent.by_window.entry(w.index).or_default();
                slot.0 += w.ok;
                slot.1 += errors;
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
            .map(|p| phase_report(p, run.started_at_us, &self.agents, options))
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

fn phase_report(
    p: &PhaseAgg,
    run_start_us: i64,
    agents: &BTreeMap<String, AgentInfo>,
    options: &ReportOptions,
) -> PhaseReport {
    let width_ms = u64::from(p.window_ms);
    // Report windows: whole multiples of the logged ones.
    let per_bucket = options
        .window_s
        .map_or(1, |w| (u64::from(w) * 1000 / width_ms).max(1));
    let bucket_ms = width_ms * per_bucket;
    let phase_start_ms = (p.start_at_us - run_start_us) as f64 / 1000.0;
    // A logged window counts when it lies inside [from, to] (run time).
    let inside = |index: u32| {
        let start = phase_start_ms + (u64::from(index) * width_ms) as f64;
        let end = start + width_ms as f64;
        options.from_s.is_none_or(|f| start >= f * 1000.0 - 0.5)
            && options.to_s.is_none_or(|t| end <= t * 1000.0 + 0.5)
    };
    // Time a logged window covers: the last one may be cut by the phase end.
    let covers = |index: u32| {
        let start = u64::from(index) * width_ms;
        width_ms.min(p.duration_ms.max(1).saturating_sub(start))
    };

    let no_agent = AgentPhase::default();
    let mut total = WindowAgg::new();
    total.latency.auto(true);
    let mut counted_ms = 0u64;
    let mut buckets: BTreeMap<u64, WindowAgg> = BTreeMap::new();
    for (&index, w) in p.windows.iter().filter(|(i, _)| inside(**i)) {
        if options.include_warmup || !p.is_warmup(index) {
            total.merge(w);
            counted_ms += covers(index);
        }
        buckets
            .entry(u64::from(index) / per_bucket)
            .or_insert_with(|| {
                let mut agg = WindowAgg::new();
                agg.latency.auto(true);
                agg
            })
            .merge(w);
    }
    let timeline = buckets
        .iter()
        .map(|(&b, w)| {
            let t_ms = b * bucket_ms;
            let q = |q: f64| (!w.latency.is_empty()).then(|| w.latency.value_at_quantile(q));
            TimelinePoint {
                t_s: round3(t_ms as f64 / 1000.0),
                warmup: t_ms < p.warmup_ms,
                requests: w.requests(),
                errors: w.error_count(),
                p50_us: q(0.5),
                p90_us: q(0.9),
                p99_us: q(0.99),
                max_us: (!w.latency.is_empty()).then(|| w.latency.max()),
                agents: w.agents,
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
    PhaseReport {
        name: p.name.clone(),
        index: p.index,
        start_s: round3(phase_start_ms / 1000.0),
        window_s: round3(bucket_ms as f64 / 1000.0),
        requests,
        ok: total.ok,
        errors: total.errors.clone(),
        bytes_sent: total.bytes_sent,
        bytes_received: total.bytes_received,
        duration_s: round3(duration_s),
        warmup_s: round3(p.warmup_ms as f64 / 1000.0),
        throughput_rps: if duration_s > 0.0 {
            round2(requests as f64 / duration_s)
        } else {
            0.0
        },
        latency_us: latency,
        latency_spectrum: spectrum,
        latency_clamped: total.latency_clamped,
        max_send_lag_us: total.max_send_lag_us,
        ended: p.ended(),
        agents: p
            .agent_ids
            .iter()
            .chain(p.agents.keys().filter(|id| !p.agent_ids.contains(id)))
            .filter(|id| p.agents.contains_key(*id) || !options.filtered)
            .map(|id| {
                let a = p.agents.get(id).unwrap_or(&no_agent);
                let mut points: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
                let (mut requests, mut errors, mut windows) = (0, 0, 0);
                for (&index, &(ok, err)) in a.by_window.iter().filter(|(i, _)| inside(**i)) {
                    let e = points.entry(u64::from(index) / per_bucket).or_default();
                    e.0 += ok + err;
                    e.1 += err;
                    windows += 1;
                    if options.include_warmup || !p.is_warmup(index) {
                        requests += ok + err;
                        errors += err;
                    }
                }
                PhaseAgentReport {
                    id: id.clone(),
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
                            t_s: round3((b * bucket_ms) as f64 / 1000.0),
                            requests,
                            errors,
                        })
                        .collect(),
                }
            })
            .collect(),
        timeline,
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
mod tests {
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
        let event = |agent: &str, seq: u64, agent_time_us: i64, kind: pb::event::Kind| {
            rec(
                9_000_000,
                Record::AgentEvent(pb::AgentEvent {
                    agent_id: agent.into(),
                    clock_offset_us: 0,
                    event: Some(pb::Event {
                        seq,
                        agent_time_us,
                        kind: Some(kind),
                    }),
                }),
            )
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
                out.push(event(
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
            out.push(event(
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
}
