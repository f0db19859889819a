//! The charts of one run's page, on the run's time axis (`RunAxis`: its
//! span, its phase starts, warm-ups and stops): throughput and errors (with
//! the offered and the intended rate), latency percentiles over time, the
//! latency distribution, and throughput per agent, per operation (with its
//! p99) and CPU, memory and network per host.

use super::chart::{
    BLUE, Chart, GREEN, Marks, ORANGE, PURPLE, RED, Series, XAxis, YAxis, drawn, mid, palette,
    per_second, percentile_lines, phase_length, spectrum_chart, spectrum_points, stop_label,
};
use fleetbench_fold::{HostPoint, PhaseReport, Report};

/// The charts of one run: throughput, latency over time, the latency
/// distribution, per agent, per operation and per host, on the run's time
/// axis (but the distribution).
pub(super) fn run_charts(r: &Report) -> Vec<Chart> {
    let axis = RunAxis::of(r);
    let (ops, op_p99) = op_series(r);
    let (cpu, mem, net) = host_series(r);
    let charts = vec![
        axis.chart(
            "throughput",
            "Throughput and errors",
            "per second",
            YAxis::Rate,
            throughput_series(r),
        ),
        axis.chart(
            "latency",
            "Latency percentiles over time",
            "latency (log scale)",
            YAxis::LatencyLog,
            latency_series(r),
        ),
        spectrum_chart("distribution", "Latency distribution", phase_spectra(r)),
        axis.chart(
            "stages",
            "Where the time goes (medians: whole request, DNS, connect, TLS, first byte)",
            "p50 (log scale)",
            YAxis::LatencyLog,
            stage_series(r),
        ),
        axis.chart(
            "agents",
            "Throughput per agent",
            "requests/s",
            YAxis::Rate,
            agent_series(r),
        ),
        axis.chart(
            "ops",
            "Throughput per operation",
            "requests/s",
            YAxis::Rate,
            ops,
        ),
        axis.chart(
            "op-latency",
            "p99 latency per operation",
            "p99 (log scale)",
            YAxis::LatencyLog,
            op_p99,
        ),
        axis.chart("host-cpu", "CPU per host", "CPU busy", YAxis::Percent, cpu),
        axis.chart(
            "host-memory",
            "Memory used per host",
            "memory used",
            YAxis::Bytes,
            mem,
        ),
        axis.chart(
            "host-network",
            "Network per host (sent dashed)",
            "bytes/s",
            YAxis::BytesPerSecond,
            net,
        ),
    ];
    drawn(charts)
}

/// A run's time axis: its span (every phase and host sample) and its marks
/// (phase starts, warm-ups, stops).
struct RunAxis {
    x_range: (f64, f64),
    marks: Marks,
}

impl RunAxis {
    fn of(r: &Report) -> RunAxis {
        let mut x_lo: f64 = 0.0;
        let mut x_hi: f64 = 0.0;
        for p in &r.phases {
            x_lo = x_lo.min(p.start_s);
            x_hi = x_hi.max(p.start_s + phase_length(p));
        }
        for h in &r.hosts {
            for pt in &h.timeline {
                x_lo = x_lo.min(pt.t_s);
                x_hi = x_hi.max(pt.t_s + 1.0);
            }
        }
        if x_hi <= x_lo {
            x_hi = x_lo + 1.0;
        }
        let marks = Marks {
            lines: r
                .phases
                .iter()
                .map(|p| (p.start_s, p.name.clone()))
                .collect(),
            shaded: r
                .phases
                .iter()
                .filter(|p| p.warmup_s > 0.0)
                .map(|p| (p.start_s, p.start_s + p.warmup_s))
                .collect(),
            stops: r
                .phases
                .iter()
                .filter_map(|p| {
                    p.stopped
                        .as_ref()
                        .map(|s| (p.start_s + s.at_s, stop_label(s)))
                })
                .collect(),
        };
        RunAxis {
            x_range: (x_lo, x_hi),
            marks,
        }
    }

    /// A chart of `series` on this axis.
    fn chart(
        &self,
        id: &str,
        title: &str,
        y_desc: &str,
        y_axis: YAxis,
        series: Vec<Series>,
    ) -> Chart {
        Chart {
            id: id.into(),
            title: title.into(),
            x_desc: "seconds since the run's start".into(),
            y_desc: y_desc.into(),
            x_axis: XAxis::Seconds,
            y_axis,
            x_range: self.x_range,
            series,
            marks: self.marks.clone(),
        }
    }
}

/// Where a window of phase `p` sits on the run's time axis (its middle).
fn run_time(p: &PhaseReport, t_s: f64) -> f64 {
    p.start_s + mid(p, t_s)
}

/// Requests and errors per second; for open-loop phases, also what the
/// schedule offered and what the load shape intended.
fn throughput_series(r: &Report) -> Vec<Series> {
    let (mut requests, mut errors) = (
        Series::new("requests/s", BLUE),
        Series::new("errors/s", RED),
    );
    for p in &r.phases {
        requests.segment(
            p.timeline
                .iter()
                .map(|w| (run_time(p, w.t_s), per_second(p, w.requests)))
                .collect(),
        );
        errors.segment(
            p.timeline
                .iter()
                .map(|w| (run_time(p, w.t_s), per_second(p, w.errors)))
                .collect(),
        );
    }
    let (mut offered, mut intended) = (
        Series::new("offered/s", PURPLE),
        Series::new("intended rate", GREEN).dashed(true),
    );
    for p in &r.phases {
        if p.timeline.iter().any(|w| w.scheduled > 0) {
            offered.segment(
                p.timeline
                    .iter()
                    .map(|w| (run_time(p, w.t_s), per_second(p, w.scheduled)))
                    .collect(),
            );
        }
        intended.segment(
            p.timeline
                .iter()
                .filter_map(|w| w.intended_rps.map(|v| (run_time(p, w.t_s), v)))
                .collect(),
        );
    }
    vec![requests, errors, offered, intended]
}

/// p50, p90, p99 and max per window, across phases.
fn latency_series(r: &Report) -> Vec<Series> {
    percentile_lines()
        .into_iter()
        .map(|(name, color, get)| {
            let mut s = Series::new(name, color);
            for p in &r.phases {
                s.segment(
                    p.timeline
                        .iter()
                        .filter_map(|w| get(w).map(|v| (run_time(p, w.t_s), v as f64)))
                        .collect(),
                );
            }
            s
        })
        .collect()
}

/// The whole request's median and each stage's, per window: drawn only
/// when some phase has stages.
fn stage_series(r: &Report) -> Vec<Series> {
    if r.phases.iter().all(|p| p.stages_us.is_empty()) {
        return Vec::new();
    }
    let stages = [
        ("dns", "DNS lookup (new connections)", RED),
        ("connect", "connect (new connections)", GREEN),
        ("tls", "TLS handshake", PURPLE),
        ("ttfb", "time to first byte", ORANGE),
        ("receive", "receiving the body", palette(5)),
    ];
    let mut whole = Series::new("whole request", BLUE);
    let mut parts: Vec<Series> = stages
        .iter()
        .map(|(_, label, color)| Series::new(*label, *color))
        .collect();
    for p in &r.phases {
        whole.segment(
            p.timeline
                .iter()
                .filter_map(|w| w.latency.p50_us.map(|v| (run_time(p, w.t_s), v as f64)))
                .collect(),
        );
        for ((key, _, _), series) in stages.iter().zip(&mut parts) {
            series.segment(
                p.timeline
                    .iter()
                    .filter_map(|w| {
                        w.stages_p50_us
                            .get(*key)
                            .map(|v| (run_time(p, w.t_s), *v as f64))
                    })
                    .collect(),
            );
        }
    }
    std::iter::once(whole)
        .chain(parts.into_iter().filter(|s| s.points().next().is_some()))
        .collect()
}

/// Each phase's percentile spectrum.
fn phase_spectra(r: &Report) -> Vec<Series> {
    r.phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut s = Series::new(p.name.clone(), palette(i));
            s.segment(spectrum_points(p));
            s
        })
        .collect()
}

/// One line per agent across phases, in the order agents first appear.
fn agent_series(r: &Report) -> Vec<Series> {
    let mut agents: Vec<Series> = Vec::new();
    for p in &r.phases {
        for a in &p.agents {
            let label = agent_label(&a.id, &a.host);
            let i = match agents.iter().position(|s| s.name == label) {
                Some(i) => i,
                None => {
                    agents.push(Series::new(label, palette(agents.len())));
                    agents.len() - 1
                }
            };
            agents[i].segment(
                a.timeline
                    .iter()
                    .map(|w| (run_time(p, w.t_s), per_second(p, w.requests)))
                    .collect(),
            );
        }
    }
    agents
}

/// Per operation across phases, in the order ops first appear: its
/// throughput, and its p99.
fn op_series(r: &Report) -> (Vec<Series>, Vec<Series>) {
    let (mut ops, mut op_p99): (Vec<Series>, Vec<Series>) = (Vec::new(), Vec::new());
    for p in &r.phases {
        for op in &p.ops {
            let i = match ops.iter().position(|s| s.name == op.name) {
                Some(i) => i,
                None => {
                    ops.push(Series::new(op.name.clone(), palette(ops.len())));
                    op_p99.push(Series::new(op.name.clone(), palette(op_p99.len())));
                    ops.len() - 1
                }
            };
            ops[i].segment(
                op.timeline
                    .iter()
                    .map(|w| (run_time(p, w.t_s), per_second(p, w.requests)))
                    .collect(),
            );
            op_p99[i].segment(
                op.timeline
                    .iter()
                    .filter_map(|w| w.p99_us.map(|v| (run_time(p, w.t_s), v as f64)))
                    .collect(),
            );
        }
    }
    (ops, op_p99)
}

/// Per host: its CPU, its memory, and its network (received solid, sent
/// dashed).
fn host_series(r: &Report) -> (Vec<Series>, Vec<Series>, Vec<Series>) {
    let mut cpu = Vec::new();
    let mut mem = Vec::new();
    let mut net = Vec::new();
    for (i, h) in r.hosts.iter().enumerate() {
        let color = palette(i);
        let line = |name: String, dashed: bool, value: &dyn Fn(&HostPoint) -> f64| {
            let mut s = Series::new(name, color).dashed(dashed);
            for run in host_runs(&h.timeline) {
                s.segment(run.iter().map(|pt| (pt.t_s + 0.5, value(pt))).collect());
            }
            s
        };
        cpu.push(line(h.host.clone(), false, &|pt| pt.cpu_pct));
        mem.push(line(h.host.clone(), false, &|pt| pt.mem_used_bytes as f64));
        net.push(line(format!("{} received", h.host), false, &|pt| {
            pt.net_rx_bytes as f64
        }));
        net.push(line(format!("{} sent", h.host), true, &|pt| {
            pt.net_tx_bytes as f64
        }));
    }
    (cpu, mem, net)
}

fn agent_label(id: &str, host: &str) -> String {
    if host.is_empty() {
        id.to_string()
    } else {
        format!("{id} ({host})")
    }
}

/// A host's samples, split where more than two seconds are missing.
fn host_runs(points: &[HostPoint]) -> Vec<&[HostPoint]> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..points.len() {
        if points[i].t_s - points[i - 1].t_s > 2.5 {
            runs.push(&points[start..i]);
            start = i;
        }
    }
    if start < points.len() {
        runs.push(&points[start..]);
    }
    runs
}
