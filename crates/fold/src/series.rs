//! The fold as metric series, for Prometheus-compatible stores: the run's
//! counters so far (requests, errors by class, bytes, latency as a
//! histogram), the newest complete window's rates, connections, agents and
//! hosts. `run --metrics-listen` serves them, `--remote-write` pushes them,
//! `export --format openmetrics` prints a finished run's; the views crate
//! writes the formats, this file decides the names, labels and values.
//!
//! Counters count every window the fold holds, warm-up included (the
//! report's headline leaves warm-up windows out), so they only grow as
//! windows land, late ones included. They need a fold made with
//! [`Fold::keeping_totals`]; without it the per-operation counters and the
//! latency histogram are absent.

use hdrhistogram::Histogram;

use crate::state::{Fold, PhaseAgg, Totals};

/// What a family's samples are, in Prometheus's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows; samples end in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative `_bucket{le}` counts, `_count` and `_sum`.
    Histogram,
}

/// One metric family: a name, what it means, and its samples.
#[derive(Debug, Clone)]
pub struct Family {
    /// The family's name, without the `_total` of a counter's samples.
    pub name: &'static str,
    /// One sentence for `# HELP`.
    pub help: &'static str,
    /// The unit the name ends with (`seconds`, `bytes`, `ratio`), or "".
    pub unit: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Its samples; a histogram's in groups of buckets, count and sum.
    pub samples: Vec<Sample>,
}

/// One sample of a family.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Appended to the family's name: `_total` (counters), `_bucket`,
    /// `_count`, `_sum` (histograms), or "".
    pub suffix: &'static str,
    /// Label names and values, in this order (a bucket's `le` last).
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// Upper bounds of the latency histogram's buckets, seconds: 1, 1.25, 1.5,
/// 2, 2.5, 3, 4, 5, 6 and 8 of each decade from 10 µs to 80 s, so that
/// neighbours differ by at most a third and `histogram_quantile` lands
/// within a third of the true value.
pub fn latency_buckets_s() -> Vec<f64> {
    const STEPS: [f64; 10] = [1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0];
    (-5..=1)
        .flat_map(|exp| STEPS.iter().map(move |m| m * 10f64.powi(exp)))
        .collect()
}

impl Fold {
    /// The latest logging instant of any record applied, µs since the
    /// Unix epoch: the time the series are as of.
    pub fn last_logged_at_us(&self) -> i64 {
        self.last_logged_at_us
    }

    /// The run's metric families as the fold has them now (see the module's
    /// doc). Every sample carries `run_id` and `run_name`.
    pub fn series(&self) -> Vec<Family> {
        let run = self.run.clone().unwrap_or_default();
        let base = vec![("run_id", run.id.clone()), ("run_name", run.name.clone())];
        let mut out = Series {
            base,
            families: Vec::new(),
        };
        out.run(self, &run.coordinator_version);
        out.phases(self);
        out.agents(self);
        out.hosts(self);
        out.families
    }
}

/// Families being filled, with the labels every sample starts with.
struct Series {
    base: Vec<(&'static str, String)>,
    families: Vec<Family>,
}

impl Series {
    fn family(
        &mut self,
        name: &'static str,
        kind: MetricKind,
        unit: &'static str,
        help: &'static str,
    ) -> usize {
        self.families.push(Family {
            name,
            help,
            unit,
            kind,
            samples: Vec::new(),
        });
        self.families.len() - 1
    }

    /// Adds a sample to family `f`: the base labels, then `labels`.
    fn add(&mut self, f: usize, labels: &[(&'static str, &str)], value: f64) {
        let suffix = match self.families[f].kind {
            MetricKind::Counter => "_total",
            _ => "",
        };
        let labels = self
            .base
            .iter()
            .cloned()
            .chain(labels.iter().map(|(k, v)| (*k, (*v).to_string())))
            // Prometheus reads an empty label as no label.
            .filter(|(_, v)| !v.is_empty())
            .collect();
        self.families[f].samples.push(Sample {
            suffix,
            labels,
            value,
        });
    }

    fn run(&mut self, fold: &Fold, version: &str) {
        let info = self.family(
            "fleetbench_run_info",
            MetricKind::Gauge,
            "",
            "The run: always 1, its facts in the labels.",
        );
        self.add(info, &[("coordinator_version", version)], 1.0);
        let state = self.family(
            "fleetbench_run_state",
            MetricKind::Gauge,
            "",
            "1 for the run's state: running, or how it finished (completed, aborted, failed).",
        );
        self.add(state, &[("state", &fold.status(true))], 1.0);
        let attached = self.family(
            "fleetbench_agents_attached",
            MetricKind::Gauge,
            "",
            "Agents attached to the coordinator now.",
        );
        let now = fold
            .agents
            .values()
            .filter(|a| a.attaches > a.detaches)
            .count();
        self.add(attached, &[], now as f64);
    }

    fn phases(&mut self, fold: &Fold) {
        let state = self.family(
            "fleetbench_phase_state",
            MetricKind::Gauge,
            "",
            "1 for each phase's state: pending, running or ended.",
        );
        for phase in fold.phases.values() {
            let now = if phase.ended() {
                "ended"
            } else if phase.start_at_us > 0 && fold.last_logged_at_us >= phase.start_at_us {
                "running"
            } else {
                "pending"
            };
            self.add(state, &[("phase", &phase.name), ("state", now)], 1.0);
        }
        self.counters(fold);
        self.latency(fold);
        self.rates(fold);
    }

    /// Per phase and operation: requests, errors by class, bytes, sends.
    fn counters(&mut self, fold: &Fold) {
        let requests = self.family(
            "fleetbench_requests",
            MetricKind::Counter,
            "",
            "Requests finished, ok or failed, warm-up included.",
        );
        let errors = self.family(
            "fleetbench_errors",
            MetricKind::Counter,
            "",
            "Requests failed, by error class.",
        );
        let sent = self.family(
            "fleetbench_sent_bytes",
            MetricKind::Counter,
            "bytes",
            "Bytes sent to the target (acknowledged by its TCP).",
        );
        let received = self.family(
            "fleetbench_received_bytes",
            MetricKind::Counter,
            "bytes",
            "Bytes received from the target.",
        );
        let scheduled = self.family(
            "fleetbench_scheduled_requests",
            MetricKind::Counter,
            "",
            "Open loop: sends the schedule called for (the offered load).",
        );
        for (phase, op, t) in totals(fold) {
            let at = [("phase", phase.name.as_str()), ("op", op)];
            let failed: u64 = t.errors.values().sum();
            self.add(requests, &at, (t.ok + failed) as f64);
            for (class, n) in &t.errors {
                let labels = [at[0], at[1], ("error_class", class.as_str())];
                self.add(errors, &labels, *n as f64);
            }
            self.add(sent, &at, t.bytes_sent as f64);
            self.add(received, &at, t.bytes_received as f64);
            if phase.shape.is_some() {
                self.add(scheduled, &at, t.scheduled as f64);
            }
        }
    }

    /// Per phase and operation: the latency histogram.
    fn latency(&mut self, fold: &Fold) {
        let f = self.family(
            "fleetbench_request_duration_seconds",
            MetricKind::Histogram,
            "seconds",
            "Latency from the intended send (open loop) or the send, to the response's end.",
        );
        let bounds = latency_buckets_s();
        for (phase, op, t) in totals(fold) {
            let at = [("phase", phase.name.as_str()), ("op", op)];
            let counts = bucket_counts(&t.latency, &bounds);
            let mut cumulative = 0;
            for (le, n) in bounds.iter().zip(&counts) {
                cumulative += n;
                self.histogram_sample(f, "_bucket", &at, Some(*le), cumulative as f64);
            }
            let total = t.latency.len();
            self.histogram_sample(f, "_bucket", &at, Some(f64::INFINITY), total as f64);
            self.histogram_sample(f, "_count", &at, None, total as f64);
            let sum_s = t.latency.mean() * total as f64 / 1e6;
            self.histogram_sample(f, "_sum", &at, None, sum_s);
        }
    }

    fn histogram_sample(
        &mut self,
        f: usize,
        suffix: &'static str,
        labels: &[(&'static str, &str)],
        le: Option<f64>,
        value: f64,
    ) {
        self.add(f, labels, value);
        let sample = self.families[f].samples.last_mut().expect("just added");
        sample.suffix = suffix;
        if let Some(le) = le {
            sample.labels.push(("le", format_le(le)));
        }
    }

    /// Per phase, from its newest complete window: the rates offered,
    /// achieved and intended, and each agent's open connections.
    fn rates(&mut self, fold: &Fold) {
        let offered = self.family(
            "fleetbench_offered_requests_per_second",
            MetricKind::Gauge,
            "",
            "Open loop: sends the schedule called for in the newest complete window, per second.",
        );
        let achieved = self.family(
            "fleetbench_achieved_requests_per_second",
            MetricKind::Gauge,
            "",
            "Requests finished in the newest complete window, per second.",
        );
        let intended = self.family(
            "fleetbench_intended_requests_per_second",
            MetricKind::Gauge,
            "",
            "The load shape's rate averaged over the newest complete window.",
        );
        for phase in fold.phases.values() {
            let Some((index, w)) = phase.last_complete_window() else {
                continue;
            };
            let at = [("phase", phase.name.as_str())];
            let width_s = f64::from(phase.window_ms) / 1000.0;
            self.add(achieved, &at, w.requests() as f64 / width_s);
            if let Some(shape) = &phase.shape {
                self.add(offered, &at, w.scheduled as f64 / width_s);
                let from = f64::from(index) * width_s;
                let rate = crate::shape::intended_mean(shape, from, from + width_s);
                self.add(intended, &at, rate);
            }
        }
    }

    /// Per agent and phase: requests, errors, connections; per agent: its
    /// process's CPU.
    fn agents(&mut self, fold: &Fold) {
        let requests = self.family(
            "fleetbench_agent_requests",
            MetricKind::Counter,
            "",
            "Requests an agent finished in a phase, every operation.",
        );
        let errors = self.family(
            "fleetbench_agent_errors",
            MetricKind::Counter,
            "",
            "Requests an agent saw fail in a phase, every operation and class.",
        );
        let connections = self.family(
            "fleetbench_connections",
            MetricKind::Gauge,
            "",
            "Connections an agent had open (the most in its newest window).",
        );
        for phase in fold.phases.values() {
            for (id, agent) in &phase.agents {
                let host = fold.agents.get(id).map_or("", |a| a.host.as_str());
                let at = [
                    ("phase", phase.name.as_str()),
                    ("agent", id),
                    ("host", host),
                ];
                self.add(requests, &at, (agent.ok + agent.errors) as f64);
                self.add(errors, &at, agent.errors as f64);
                if agent.ended.is_none()
                    && let Some((_, w)) = agent.by_window.last_key_value()
                {
                    self.add(connections, &at, f64::from(w.connections));
                }
            }
        }
        let cpu = self.family(
            "fleetbench_agent_cpu_cores",
            MetricKind::Gauge,
            "",
            "CPU the agent process used over its newest sample, in cores.",
        );
        for (id, samples) in &fold.agent_cpu {
            if let Some((_, s)) = samples.last_key_value() {
                let host = fold.agents.get(id).map_or("", |a| a.host.as_str());
                self.add(cpu, &[("agent", id), ("host", host)], s.pct / 100.0);
            }
        }
    }

    /// Per host: its newest CPU, memory and load, and its network so far.
    fn hosts(&mut self, fold: &Fold) {
        let cpu = self.family(
            "fleetbench_host_cpu_utilization_ratio",
            MetricKind::Gauge,
            "ratio",
            "The host's CPU busy over its newest sample, 0 to 1, all cores.",
        );
        let memory = self.family(
            "fleetbench_host_memory_used_bytes",
            MetricKind::Gauge,
            "bytes",
            "The host's memory in use.",
        );
        let load = self.family(
            "fleetbench_host_load1",
            MetricKind::Gauge,
            "",
            "The host's one-minute load average.",
        );
        let rx = self.family(
            "fleetbench_host_network_receive_bytes",
            MetricKind::Counter,
            "bytes",
            "Bytes the host received on every interface during the run.",
        );
        let tx = self.family(
            "fleetbench_host_network_transmit_bytes",
            MetricKind::Counter,
            "bytes",
            "Bytes the host sent on every interface during the run.",
        );
        for (host, agg) in &fold.hosts {
            let Some((_, newest)) = agg.seconds.last_key_value() else {
                continue;
            };
            let at = [("host", host.as_str())];
            self.add(cpu, &at, newest.cpu_pct / 100.0);
            self.add(memory, &at, newest.mem_used as f64);
            self.add(load, &at, newest.load_1);
            let (r, t) = agg
                .seconds
                .values()
                .fold((0u64, 0u64), |(r, t), s| (r + s.net_rx, t + s.net_tx));
            self.add(rx, &at, r as f64);
            self.add(tx, &at, t as f64);
        }
    }
}

/// Every phase's running totals, per operation, in order.
fn totals(fold: &Fold) -> impl Iterator<Item = (&PhaseAgg, &str, &Totals)> {
    fold.phases
        .values()
        .flat_map(|p| p.totals.iter().map(move |(op, t)| (p, op.as_str(), t)))
}

/// How many of `h`'s values fall in each bucket (the bucket of the first
/// bound not below the value; values above the last bound in none): a
/// value is taken as its bucket's highest equivalent, as the report's
/// percentiles are.
pub(crate) fn bucket_counts(h: &Histogram<u64>, bounds_s: &[f64]) -> Vec<u64> {
    let mut counts = vec![0; bounds_s.len()];
    for v in h.iter_recorded() {
        let s = v.value_iterated_to() as f64 / 1e6;
        let i = bounds_s.partition_point(|b| *b < s);
        if let Some(c) = counts.get_mut(i) {
            *c += v.count_at_value();
        }
    }
    counts
}

/// A bucket bound as Prometheus writes it (`+Inf`; else the shortest
/// decimal that reads back the same).
fn format_le(le: f64) -> String {
    if le.is_infinite() {
        "+Inf".into()
    } else {
        // Decades below 1 carry float noise (0.000125 * 10 ≠ 0.00125):
        // round to 9 significant digits first.
        let rounded: f64 = format!("{le:.9e}").parse().expect("a float just printed");
        format!("{rounded}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_round_and_close() {
        let b = latency_buckets_s();
        assert_eq!(b.len(), 70);
        assert_eq!(format_le(b[0]), "0.00001");
        assert_eq!(format_le(b[1]), "0.0000125");
        assert_eq!(format_le(b[26]), "0.004");
        assert_eq!(format_le(*b.last().unwrap()), "80");
        for pair in b.windows(2) {
            assert!(pair[1] / pair[0] <= 4.0 / 3.0 + 1e-9, "{pair:?}");
        }
    }

    #[test]
    fn values_land_in_the_first_bucket_not_below_them() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        h.record_n(1_000, 5).unwrap(); // 1 ms: exactly a bound
        h.record_n(1_100, 2).unwrap(); // 1.1 ms: next bound 1.25 ms
        h.record(60_000_000).unwrap(); // 60 s: its bucket tops 60 s a little
        let b = latency_buckets_s();
        let counts = bucket_counts(&h, &b);
        let at = |s: f64| b.iter().position(|x| (x - s).abs() < 1e-12).unwrap();
        // 1,000 µs is its own highest equivalent at 3 digits.
        assert_eq!(counts[at(0.001)], 5);
        assert_eq!(counts[at(0.00125)], 2);
        assert_eq!(counts[at(80.0)], 1);
        assert_eq!(counts.iter().sum::<u64>(), 8);
    }
}
