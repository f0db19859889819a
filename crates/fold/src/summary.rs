//! From the fold's state to a [`Report`]: windows selected and merged
//! (`windowing`), percentiles read from merged histograms, timelines,
//! per-agent rows; then the thresholds judged (`threshold`) and the verdict
//! (`verdict`).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::limited::{AgentLoad, limited_reasons};
use crate::model::{
    AgentEvents, AgentPoint, AgentReport, HostPoint, HostReport, LatencyReport, LimitedAgent,
    LogReport, OpPoint, OpReport, PhaseAgentReport, PhaseReport, Report, SendLagReport,
    ServiceReport, SpectrumPoint, StageReport, StopReport, TimelinePoint, WindowLatency,
};
use crate::options::ReportOptions;
use crate::reasons::Verdict;
use crate::services::PhaseSpan;
use crate::shape::intended_mean;
use crate::state::{AgentInfo, AgentPhase, AgentWindow, CpuSample, Fold, HostSample, PhaseAgg};
use crate::threshold;
use crate::verdict::{self, Evidence};
use crate::windowing::{Series, Windowing};

impl Fold {
    /// The notices kept, and a last line counting those that were not.
    fn notices_with_count(&self) -> Vec<String> {
        let mut notices = self.notices.clone();
        if self.notices_unkept > 0 {
            notices.push(format!(
                "warn: {} more agent notice(s) not kept (at most {} per agent)",
                self.notices_unkept,
                crate::apply::MAX_AGENT_NOTICES
            ));
        }
        notices
    }

    /// The report of this run, as the user reads it.
    pub fn report(&self, options: &ReportOptions) -> Report {
        let run = self.run.clone().unwrap_or_default();
        let phases: Vec<PhaseReport> = self
            .reported_phases()
            .map(|p| phase_report(p, run.started_at_us, &self.agents, &self.agent_cpu, options))
            .collect();
        // Host samples count within an hour of the run (an agent's clock
        // can be off, not by more once its offset is known): a sample
        // stamped decades away is no part of it.
        let hour = 3_600_000_000i64;
        let first_s = run.started_at_us.saturating_sub(hour).div_euclid(1_000_000);
        let last_s = self
            .last_logged_at_us
            .saturating_add(hour)
            .div_euclid(1_000_000);
        let hosts = self
            .hosts
            .iter()
            .map(|(host, agg)| {
                let seconds: Vec<(i64, &HostSample)> = agg
                    .seconds
                    .range(first_s..=last_s)
                    .map(|(s, v)| (*s, v))
                    .collect();
                let values = || seconds.iter().map(|(_, v)| *v);
                let n = seconds.len().max(1) as f64;
                HostReport {
                    host: host.clone(),
                    cpu_pct_mean: round2(values().map(|s| s.cpu_pct).sum::<f64>() / n),
                    cpu_pct_max: round2(values().map(|s| s.cpu_pct).fold(0.0, f64::max)),
                    mem_used_max_bytes: values().map(|s| s.mem_used).max().unwrap_or(0),
                    net_rx_bytes: values().fold(0, |a, s| a.saturating_add(s.net_rx)),
                    net_tx_bytes: values().fold(0, |a, s| a.saturating_add(s.net_tx)),
                    load_1_max: round2(values().map(|s| s.load_1).fold(0.0, f64::max)),
                    samples: seconds.len() as u64,
                    timeline: seconds
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
        let mut report = Report {
            run_id: run.id,
            name: run.name,
            status: self.status(options.live),
            reason: self
                .finished
                .as_ref()
                .map(|f| f.reason.clone())
                .unwrap_or_default(),
            verdict: Verdict::Passed,
            reasons: Vec::new(),
            thresholds: threshold::judge_all(self, options),
            started_at: fleetbench::clock::rfc3339(run.started_at_us),
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
            notices: self.notices_with_count(),
            services: self.services(),
        };
        let (verdict, reasons) = verdict::judge(&Evidence {
            fold: self,
            report: &report,
            options,
        });
        report.verdict = verdict;
        report.reasons = reasons;
        report
    }

    /// The services that died or were never started, each placed among the
    /// phases (all of them, whatever the filter: a death concerns the run).
    pub fn services(&self) -> Vec<ServiceReport> {
        let run_start = self.run.as_ref().map_or(0, |r| r.started_at_us);
        let spans: Vec<PhaseSpan<'_>> = self
            .phases
            .values()
            .map(|p| PhaseSpan {
                name: &p.name,
                start_us: p.start_at_us,
                end_us: p.start_at_us + p.duration_ms as i64 * 1000,
            })
            .collect();
        self.services.report(run_start, &spans)
    }
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

/// The send lag of a set of windows (`None` without one: closed loop).
fn send_lag_report(h: Option<&Histogram<u64>>) -> Option<SendLagReport> {
    let h = h.filter(|h| !h.is_empty())?;
    Some(SendLagReport {
        p50: h.value_at_quantile(0.5),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
    })
}

/// Each stage's times (`WindowAgg::stages`).
fn stage_reports(stages: &BTreeMap<String, Histogram<u64>>) -> BTreeMap<String, StageReport> {
    stages
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(name, h)| {
            let report = StageReport {
                count: h.len(),
                p50: h.value_at_quantile(0.5),
                p90: h.value_at_quantile(0.9),
                p99: h.value_at_quantile(0.99),
                max: h.max(),
            };
            (name.clone(), report)
        })
        .collect()
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
        counted_us,
        buckets,
        offered,
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
                latency: WindowLatency::of(&w.latency),
                agents: w.agents,
                scheduled: w.scheduled,
                intended_rps: p.shape.as_ref().map(|shape| {
                    round2(intended_mean(
                        shape,
                        t_ms as f64 / 1000.0,
                        (t_ms + at.bucket_ms) as f64 / 1000.0,
                    ))
                }),
                stages_p50_us: w
                    .stages
                    .iter()
                    .filter(|(_, h)| !h.is_empty())
                    .map(|(name, h)| (name.clone(), h.value_at_quantile(0.5)))
                    .collect(),
            }
        })
        .collect();
    let duration_s = counted_us as f64 / 1e6;
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
        // What the agents said they were scheduled, or (a lost agent's
        // share included) what the phase's shape called for, if more; a
        // replay of some agents only counts theirs.
        scheduled: if options.filtered {
            total.scheduled
        } else {
            total.scheduled.max(offered.round() as u64)
        },
        late_wakes: total.late_wakes,
        max_wake_lag_us: total.max_wake_lag_us,
        send_lag_us: send_lag_report(total.send_lag.as_ref()),
        stages_us: stage_reports(&total.stages),
        iterations: p.iterations,
        arrival: p
            .shape
            .as_ref()
            .map(|s| s.arrival.clone())
            .filter(|a| !a.is_empty()),
        send_slack_us: p.shape.as_ref().map_or(0, |s| s.send_slack_us),
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
                send_lag_us: send_lag_report(total.send_lag.as_ref()),
                timeline: buckets
                    .iter()
                    .map(|(&b, w)| {
                        let latency = WindowLatency::of(&w.latency);
                        OpPoint {
                            t_s: round3((b * at.bucket_ms) as f64 / 1000.0),
                            requests: w.requests(),
                            errors: w.error_count(),
                            p50_us: latency.p50_us,
                            p99_us: latency.p99_us,
                        }
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
    let (mut requests, mut errors, mut windows, mut connections) = (0, 0, 0, 0);
    let mut measured = AgentWindow::default();
    for (&index, w) in a.by_window.iter().filter(|(i, _)| at.inside(**i)) {
        let e = points.entry(at.bucket(index)).or_default();
        e.0 += w.requests();
        e.1 += w.errors;
        windows += 1;
        connections = connections.max(w.connections);
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
            measured.merge(w);
        }
    }
    let mut load = AgentLoad {
        scheduled: measured.scheduled,
        sent: measured.requests(),
        late_wakes: measured.late_wakes,
        max_wake_lag_us: measured.max_wake_lag_us,
        loop_probes: measured.loop_probes,
        loop_late: measured.loop_late,
        max_loop_lag_us: measured.max_loop_lag_us,
        busy_late: measured.busy_late,
        max_send_lag_us: measured.max_send_lag_us,
        connections: measured.connections,
        cpu_pct_mean: None,
        threads: a.ended.map_or(0, |e| e.threads),
        cores: 0,
    };
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
        connections: (connections > 0).then_some(connections),
        load,
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
