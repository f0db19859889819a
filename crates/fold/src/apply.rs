//! Applying one log record to the fold: order-independent, each
//! `(agent, seq)` once.

use std::collections::HashSet;

use fleetbench::pb;
use fleetbench::pb::event::Kind;
use fleetbench::pb::log_record::Record;

use crate::plausible::{host_metrics_fault, implausible_window};

use crate::state::{
    AgentPhase, AgentWindow, CpuSample, Filter, Fold, PhaseAgg, RunInfo, Totals, WindowAgg,
};

impl Fold {
    /// An empty fold that keeps everything.
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

    /// This fold, also keeping each phase's running totals per operation,
    /// warm-up included, for live metrics ([`Fold::series`]): one more
    /// histogram merge per window.
    pub fn keeping_totals(mut self) -> Self {
        self.keep_totals = true;
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
                    thresholds: r.thresholds.clone(),
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
                let at = rec.logged_at_us;
                phase.stop_logged_at_us = Some(phase.stop_logged_at_us.map_or(at, |t| t.min(at)));
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
            Record::ServiceOutput(o) => self.services.output(o),
            Record::ServiceState(s) => self.services.state(s, rec.logged_at_us),
        }
    }

    fn phase_mut(&mut self, index: u32) -> &mut PhaseAgg {
        self.phases
            .entry(index)
            .or_insert_with(|| PhaseAgg::new(index))
    }

    /// An agent's event: counted once per `(agent, seq)`, then applied if
    /// the filter admits the agent.
    fn apply_agent_event(&mut self, e: &pb::AgentEvent) {
        let Some(ev) = &e.event else { return };
        if !self.first_sight(&e.agent_id, ev.seq) {
            self.duplicate_events += 1;
            return;
        }
        let Some(kind) = &ev.kind else { return };
        if !self.filter.is_empty() {
            let host = self.agents.get(&e.agent_id).map_or("", |a| a.host.as_str());
            if !self.filter.admits(&e.agent_id, host) {
                return;
            }
        }
        match kind {
            Kind::Window(w) => self.apply_window(&e.agent_id, w),
            Kind::PhaseEnded(p) => {
                self.phase_mut(p.phase_index)
                    .agents
                    .entry(e.agent_id.clone())
                    .or_default()
                    .ended = Some(*p);
            }
            Kind::PhaseStarted(_) => {}
            // A sample no host can give is left out (the hub cuts off the
            // agent that sends one).
            Kind::HostMetrics(m) if host_metrics_fault(m).is_none() => {
                let at_us = ev.agent_time_us.saturating_sub(e.clock_offset_us);
                self.apply_host_metrics(&e.agent_id, at_us, m);
            }
            Kind::HostMetrics(_) => {}
            Kind::Notice(n) => {
                let said = self.agent_notices.entry(e.agent_id.clone()).or_default();
                *said += 1;
                if *said > MAX_AGENT_NOTICES {
                    self.notices_unkept += 1;
                    return;
                }
                self.notices.push(format!(
                    "{}: agent {}: {}",
                    notice_level(n),
                    e.agent_id,
                    n.message
                ));
            }
        }
    }

    /// Notes event `seq` of `agent`: false when it was seen before. Keeps
    /// the agent's highest sequence number and its count of distinct ones.
    fn first_sight(&mut self, agent: &str, seq: u64) -> bool {
        let fresh = match self.seen.get_mut(agent) {
            Some(set) => set.insert(seq),
            None => {
                self.seen.insert(agent.to_string(), HashSet::from([seq]));
                true
            }
        };
        if !fresh {
            return false;
        }
        if !self.seqs.contains_key(agent) {
            self.seqs.insert(agent.to_string(), (0, 0));
        }
        let (high, count) = self.seqs.get_mut(agent).expect("just ensured");
        *high = (*high).max(seq);
        *count += 1;
        true
    }

    /// One agent's window of one operation, if the op filter admits it; a
    /// window that cannot be true (see [`implausible_window`]) or whose histogram
    /// does not decode is counted as bad instead.
    fn apply_window(&mut self, agent: &str, w: &pb::ResultWindow) {
        if !self.filter.ops.is_empty() && !self.filter.ops.contains(&w.op) {
            return;
        }
        if implausible_window(w).is_some() {
            self.bad_windows += 1;
            return;
        }
        let (keep, totals) = (self.keep_agent_windows, self.keep_totals);
        let phase = self.phase_mut(w.phase_index);
        if phase.add_window(agent, w, keep).is_err() {
            self.bad_windows += 1;
        } else if totals {
            phase
                .totals
                .entry(w.op.clone())
                .or_insert_with(Totals::new)
                .add(w)
                .expect("the same bytes decoded just above");
        }
    }

    /// A host metrics sample taken at `at_us` (coordinator clock): the
    /// agent process's CPU, and the host's CPU, memory, network and load.
    fn apply_host_metrics(&mut self, agent: &str, at_us: i64, m: &pb::HostMetrics) {
        if m.cores > 0 {
            // Two samples at one instant: the busier, whatever the order.
            let sample = CpuSample {
                pct: f64::from(m.agent_cpu_pct),
                cores: m.cores,
                interval_ms: m.interval_ms,
            };
            self.agent_cpu
                .entry(agent.to_string())
                .or_default()
                .entry(at_us)
                .and_modify(|s| {
                    if (sample.pct, sample.cores) > (s.pct, s.cores) {
                        *s = sample;
                    }
                })
                .or_insert(sample);
        }
        let host = self
            .agents
            .get(agent)
            .map_or_else(|| agent.to_string(), |a| a.host.clone());
        let s = self
            .hosts
            .entry(host)
            .or_default()
            .seconds
            .entry(at_us.div_euclid(1_000_000))
            .or_default();
        s.cpu_pct = s.cpu_pct.max(f64::from(m.cpu_pct));
        s.mem_used = s.mem_used.max(m.mem_used_bytes);
        s.net_rx = s.net_rx.max(m.net_rx_bytes);
        s.net_tx = s.net_tx.max(m.net_tx_bytes);
        s.load_1 = s.load_1.max(m.load_1);
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
}

impl PhaseAgg {
    /// Adds one agent's window of one operation: to the phase's window of
    /// that index, to the operation's (a named one), and to the agent's own
    /// counts. `keep`: also keep the agent's window whole. `Err` when its
    /// histogram does not decode: then nothing is counted.
    fn add_window(&mut self, agent: &str, w: &pb::ResultWindow, keep: bool) -> Result<(), String> {
        // The agent's first window (of any op) at this index.
        let new_index = self
            .agents
            .get(agent)
            .is_none_or(|a| !a.by_window.contains_key(&w.index));
        let window = self.windows.entry(w.index).or_insert_with(WindowAgg::new);
        window.add(w)?;
        if new_index {
            window.agents += 1;
        }
        if !w.op.is_empty() {
            let window = self
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
        if !self.agents.contains_key(agent) {
            self.agents.insert(agent.to_string(), AgentPhase::default());
        }
        let agent = self.agents.get_mut(agent).expect("just ensured");
        agent.add_window(w, new_index, keep);
        Ok(())
    }
}

impl AgentPhase {
    /// Counts one of the agent's windows (of one operation); `new_index`:
    /// the first at its index.
    fn add_window(&mut self, w: &pb::ResultWindow, new_index: bool, keep: bool) {
        if keep {
            let kept = self
                .kept
                .entry((w.index, w.op.clone()))
                .or_insert_with(WindowAgg::new);
            if kept.add(w).is_ok() {
                kept.agents = 1;
            }
        }
        let counts = AgentWindow::of(w);
        if new_index {
            self.windows += 1;
        }
        self.ok += counts.ok;
        self.errors += counts.errors;
        self.by_window.entry(w.index).or_default().merge(&counts);
    }
}

/// Notices kept per agent: the rest are counted (an agent that says more
/// is broken; its notices must not fill the coordinator's memory).
pub(crate) const MAX_AGENT_NOTICES: u64 = 1_000;

/// An agent notice's level by name (an unset level reads as "info").
pub fn notice_level(n: &pb::AgentNotice) -> &'static str {
    match pb::agent_notice::Level::try_from(n.level) {
        Ok(pb::agent_notice::Level::Error) => "error",
        Ok(pb::agent_notice::Level::Warn) => "warn",
        _ => "info",
    }
}
