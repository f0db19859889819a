//! The chart model both pages draw: a `Chart` of `Series` (lines, broken
//! where the data has gaps) on an x and a y axis, with phase starts,
//! warm-ups and stops marked; and the palette (saturated for data, grey for
//! everything else). Also what the run's charts and the compare charts
//! both take from a phase: its length, its windows as per-second points at
//! their middles, the percentile lines, the spectrum chart, stop labels,
//! and `drawn` (a chart or a series without points is left out).
//!
//! Which charts a page shows is `run_charts`' and `compare_charts`' job;
//! drawing them is `draw`'s.

use plotters::style::RGBColor;

use super::axis::{axis_us, bytes, nice_log, percentile_label, si, trim};
use fleetbench_fold::{PhaseReport, TimelinePoint};

/// Tableau 10 without its grey: distinct, saturated, readable on white.
const PALETTE: [RGBColor; 9] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];
pub(super) const BLUE: RGBColor = PALETTE[0];
pub(super) const ORANGE: RGBColor = PALETTE[1];
pub(super) const GREEN: RGBColor = PALETTE[2];
pub(super) const RED: RGBColor = PALETTE[3];
/// Phase starts and their labels.
pub(super) const MARK: RGBColor = RGBColor(0x70, 0x70, 0x70);
/// Warm-up spans.
pub(super) const SHADE: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);
/// Where run control stopped a phase (dashed), and its label.
pub(super) const STOP: RGBColor = RGBColor(0x30, 0x30, 0x30);
pub(super) const PURPLE: RGBColor = PALETTE[4];

pub(super) fn palette(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One line of a chart, broken into segments where the data has gaps (a
/// run's timeline breaks between phases).
pub(super) struct Series {
    pub(super) name: String,
    pub(super) color: RGBColor,
    pub(super) dashed: bool,
    pub(super) segments: Vec<Vec<(f64, f64)>>,
}

impl Series {
    pub(super) fn new(name: impl Into<String>, color: RGBColor) -> Series {
        Series {
            name: name.into(),
            color,
            dashed: false,
            segments: Vec::new(),
        }
    }

    pub(super) fn dashed(mut self, dashed: bool) -> Series {
        self.dashed = dashed;
        self
    }

    pub(super) fn segment(&mut self, points: Vec<(f64, f64)>) {
        let points: Vec<(f64, f64)> = points
            .into_iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if !points.is_empty() {
            self.segments.push(points);
        }
    }

    pub(super) fn points(&self) -> impl Iterator<Item = &(f64, f64)> {
        self.segments.iter().flatten()
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum XAxis {
    /// Seconds, from the run's start or from a phase's start.
    Seconds,
    /// 1/(1-p): the percentile spectrum.
    Percentile,
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum YAxis {
    /// Per second, linear.
    Rate,
    /// Latency, logarithmic.
    LatencyLog,
    /// Latency, linear.
    Latency,
    Percent,
    Bytes,
    BytesPerSecond,
}

/// Instants and spans marked on a time axis.
#[derive(Clone, Default)]
pub(super) struct Marks {
    /// Phase starts: (x, label).
    pub(super) lines: Vec<(f64, String)>,
    /// Warm-ups: (from, to).
    pub(super) shaded: Vec<(f64, f64)>,
    /// Where run control stopped a phase: (x, label).
    pub(super) stops: Vec<(f64, String)>,
}

pub(super) struct Chart {
    pub(super) id: String,
    pub(super) title: String,
    pub(super) x_desc: String,
    pub(super) y_desc: String,
    pub(super) x_axis: XAxis,
    pub(super) y_axis: YAxis,
    pub(super) x_range: (f64, f64),
    pub(super) series: Vec<Series>,
    pub(super) marks: Marks,
}

impl Chart {
    pub(super) fn y_range(&self) -> (f64, f64) {
        let ys = || self.series.iter().flat_map(Series::points).map(|p| p.1);
        let max = ys().fold(0.0, f64::max);
        match self.y_axis {
            YAxis::LatencyLog => {
                let min = ys().filter(|y| *y > 0.0).fold(f64::INFINITY, f64::min);
                if min.is_finite() {
                    // From and to a tick, so both ends are labelled.
                    let lo = nice_log(min / 1.2, false).max(1.0);
                    (lo, nice_log(max * 1.2, true).max(lo * 10.0))
                } else {
                    (1.0, 10.0)
                }
            }
            YAxis::Percent if max <= 100.0 => (0.0, (max * 1.15).clamp(10.0, 100.0)),
            _ if max > 0.0 => (0.0, max * 1.1),
            _ => (0.0, 1.0),
        }
    }

    pub(super) fn x_label(&self, v: f64) -> String {
        match self.x_axis {
            XAxis::Seconds => format!("{}s", trim(v, 1)),
            XAxis::Percentile => percentile_label(v),
        }
    }

    pub(super) fn y_label(&self, v: f64) -> String {
        match self.y_axis {
            YAxis::Rate => si(v),
            YAxis::Latency | YAxis::LatencyLog => axis_us(v),
            YAxis::Percent => format!("{}%", trim(v, 1)),
            YAxis::Bytes => bytes(v),
            YAxis::BytesPerSecond => format!("{}/s", bytes(v)),
        }
    }
}

// ---------------------------------------------------------------- what both pages' charts share

/// Where a phase ends on its own time axis (seconds from its start).
pub(super) fn phase_length(p: &PhaseReport) -> f64 {
    match p.timeline.last() {
        Some(last) => last.t_s + p.window_s,
        None => p.warmup_s + p.duration_s,
    }
}

/// The middle of a window, seconds from the phase's start.
pub(super) fn mid(p: &PhaseReport, t_s: f64) -> f64 {
    t_s + p.window_s / 2.0
}

/// Per second, over a window of the phase.
pub(super) fn per_second(p: &PhaseReport, n: u64) -> f64 {
    n as f64 / p.window_s.max(1e-3)
}

/// The charts with something to draw, each with only the series that have
/// points: every line in a legend is on its chart.
pub(super) fn drawn(mut charts: Vec<Chart>) -> Vec<Chart> {
    for c in &mut charts {
        c.series.retain(|s| s.points().next().is_some());
    }
    charts.retain(|c| !c.series.is_empty());
    charts
}

/// A stop mark's label: "stopped: p99 23ms > 20ms".
pub(super) fn stop_label(s: &fleetbench_fold::StopReport) -> String {
    if s.reason.is_empty() {
        "stopped".into()
    } else {
        format!("stopped: {}", s.reason)
    }
}

type Percentile = fn(&TimelinePoint) -> Option<u64>;

pub(super) fn percentile_lines() -> [(&'static str, RGBColor, Percentile); 4] {
    [
        ("p50", BLUE, |w| w.latency.p50_us),
        ("p90", GREEN, |w| w.latency.p90_us),
        ("p99", ORANGE, |w| w.latency.p99_us),
        ("max", RED, |w| w.latency.max_us),
    ]
}

/// The spectrum as (1/(1-p), latency): every point but p100, which lies at
/// infinity on this axis (the max is in the table).
pub(super) fn spectrum_points(p: &PhaseReport) -> Vec<(f64, f64)> {
    p.latency_spectrum
        .iter()
        .filter(|s| s.percentile < 100.0)
        .map(|s| (1.0 / (1.0 - s.percentile / 100.0), s.value_us as f64))
        .collect()
}

pub(super) fn spectrum_chart(id: &str, title: &str, series: Vec<Series>) -> Chart {
    let x_max = series
        .iter()
        .flat_map(Series::points)
        .map(|p| p.0)
        .fold(10.0, f64::max);
    Chart {
        id: id.into(),
        title: title.into(),
        x_desc: "percentile (log scale of 1/(1-p))".into(),
        y_desc: "latency".into(),
        x_axis: XAxis::Percentile,
        y_axis: YAxis::Latency,
        x_range: (1.0, 10f64.powf(x_max.log10().ceil())),
        series,
        marks: Marks::default(),
    }
}
