//! The charts of one phase of two runs, overlaid (the base run dashed, the
//! candidate solid) on time measured from the phase's start: throughput
//! and errors, latency percentiles over time, and the latency distribution.

use super::chart::{
    BLUE, Chart, Marks, ORANGE, RED, Series, XAxis, YAxis, drawn, mid, per_second,
    percentile_lines, phase_length, spectrum_chart, spectrum_points, stop_label,
};
use fleetbench_fold::PhaseReport;

/// The charts of phase number `i` of the compare page, base `b` against
/// candidate `c`.
pub(super) fn compare_charts(i: usize, b: &PhaseReport, c: &PhaseReport) -> Vec<Chart> {
    let x_hi = phase_length(b).max(phase_length(c)).max(1e-3);
    let mut shaded = vec![(0.0, b.warmup_s)];
    if c.warmup_s != b.warmup_s {
        shaded.push((0.0, c.warmup_s));
    }
    shaded.retain(|s| s.1 > 0.0);
    let runs = [("base", b, true), ("candidate", c, false)];
    let chart = |id: &str, title: &str, y_desc: &str, y_axis, series| Chart {
        id: format!("{id}-{i}"),
        title: title.into(),
        x_desc: "seconds since the phase's start".into(),
        y_desc: y_desc.into(),
        x_axis: XAxis::Seconds,
        y_axis,
        x_range: (0.0, x_hi),
        series,
        marks: Marks {
            lines: Vec::new(),
            shaded: shaded.clone(),
            stops: runs
                .iter()
                .filter_map(|(run, p, _)| {
                    p.stopped
                        .as_ref()
                        .map(|s| (s.at_s, format!("{run} {}", stop_label(s))))
                })
                .collect(),
        },
    };

    let mut throughput = Vec::new();
    for (run, p, dashed) in runs {
        let mut s = Series::new(format!("{run} requests/s"), BLUE).dashed(dashed);
        s.segment(
            p.timeline
                .iter()
                .map(|w| (mid(p, w.t_s), per_second(p, w.requests)))
                .collect(),
        );
        throughput.push(s);
        let mut s = Series::new(format!("{run} errors/s"), RED).dashed(dashed);
        s.segment(
            p.timeline
                .iter()
                .map(|w| (mid(p, w.t_s), per_second(p, w.errors)))
                .collect(),
        );
        throughput.push(s);
    }

    let mut latency = Vec::new();
    for (name, color, get) in percentile_lines() {
        for (run, p, dashed) in runs {
            let mut s = Series::new(format!("{run} {name}"), color).dashed(dashed);
            s.segment(
                p.timeline
                    .iter()
                    .filter_map(|w| get(w).map(|v| (mid(p, w.t_s), v as f64)))
                    .collect(),
            );
            latency.push(s);
        }
    }

    let spectra = runs
        .iter()
        .map(|(run, p, dashed)| {
            let color = if *dashed { BLUE } else { ORANGE };
            let mut s = Series::new(*run, color).dashed(*dashed);
            s.segment(spectrum_points(p));
            s
        })
        .collect();

    let charts = vec![
        chart(
            "throughput",
            "Throughput and errors",
            "per second",
            YAxis::Rate,
            throughput,
        ),
        chart(
            "latency",
            "Latency percentiles over time",
            "latency (log scale)",
            YAxis::LatencyLog,
            latency,
        ),
        spectrum_chart(
            &format!("distribution-{i}"),
            "Latency distribution",
            spectra,
        ),
    ];
    drawn(charts)
}
