//! Which of a phase's logged windows a report takes, and how: inside the
//! time range or not, warm-up or measured, how long each covers, which
//! timeline bucket each falls in; and a series of windows totalled that
//! way. The report's phases and its thresholds both measure through it.

use std::collections::BTreeMap;

use crate::options::ReportOptions;
use crate::state::{PhaseAgg, WindowAgg};

/// The windows of one series (a phase's, or one operation's) that a report
/// takes, totalled and bucketed into the report's timeline windows.
pub(crate) struct Series {
    /// The headline windows (warm-up left out unless asked for) merged.
    pub(crate) total: WindowAgg,
    /// Time the headline windows cover, µs.
    pub(crate) counted_us: u64,
    /// Per timeline bucket, every window inside the range merged.
    pub(crate) buckets: BTreeMap<u64, WindowAgg>,
    /// Open loop: the requests the phase's schedule (its whole shape, all
    /// agents) called for over the headline windows, whether or not every
    /// agent sent its windows (a lost agent's share stays offered).
    pub(crate) offered: f64,
}

/// How a phase's logged windows map onto a report: which count, which are
/// warm-up, how long each covers, which timeline bucket each falls in.
pub(crate) struct Windowing<'a> {
    pub(crate) p: &'a PhaseAgg,
    options: &'a ReportOptions,
    width_ms: u64,
    per_bucket: u64,
    pub(crate) bucket_ms: u64,
    pub(crate) phase_start_ms: f64,
    /// How long the load ran, µs from the phase's start (`PhaseAgg::ran_us`).
    ran_us: u64,
}

impl<'a> Windowing<'a> {
    pub(crate) fn new(p: &'a PhaseAgg, run_start_us: i64, options: &'a ReportOptions) -> Self {
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
            ran_us: p.ran_us(),
        }
    }

    /// A logged window counts when it lies inside [from, to] (run time).
    pub(crate) fn inside(&self, index: u32) -> bool {
        let start = self.phase_start_ms + (u64::from(index) * self.width_ms) as f64;
        let end = start + self.width_ms as f64;
        self.options
            .from_s
            .is_none_or(|f| start >= f * 1000.0 - 0.5)
            && self.options.to_s.is_none_or(|t| end <= t * 1000.0 + 0.5)
    }

    /// The window is in the headline numbers.
    pub(crate) fn headline(&self, index: u32) -> bool {
        self.inside(index) && (self.options.include_warmup || !self.p.is_warmup(index))
    }

    /// Time a logged window covers, µs: the last one may be cut by the
    /// phase's end, or by where its load stopped early.
    pub(crate) fn covers(&self, index: u32) -> u64 {
        let width = self.width_ms * 1000;
        let start = u64::from(index) * width;
        width.min(self.ran_us.saturating_sub(start))
    }

    pub(crate) fn bucket(&self, index: u32) -> u64 {
        u64::from(index) / self.per_bucket
    }

    /// Open loop: the sends the phase's shape called for over the headline
    /// windows of the time it ran, whether or not any agent logged them.
    fn offered(&self) -> f64 {
        let Some(shape) = &self.p.shape else {
            return 0.0;
        };
        let width_us = self.width_ms * 1000;
        let windows = self.ran_us.div_ceil(width_us.max(1));
        (0..windows)
            .filter_map(|i| u32::try_from(i).ok())
            .filter(|&i| self.inside(i) && (self.options.include_warmup || !self.p.is_warmup(i)))
            .map(|i| {
                let from = (u64::from(i) * self.width_ms) as f64 / 1000.0;
                let to = from + self.covers(i) as f64 / 1e6;
                crate::shape::intended_mean(shape, from, to) * (to - from)
            })
            .sum()
    }

    pub(crate) fn series(&self, windows: &BTreeMap<u32, WindowAgg>) -> Series {
        let growing = || {
            let mut agg = WindowAgg::new();
            agg.latency.auto(true);
            agg
        };
        let mut total = growing();
        let mut counted_us = 0u64;
        let mut buckets: BTreeMap<u64, WindowAgg> = BTreeMap::new();
        for (&index, w) in windows.iter().filter(|(i, _)| self.inside(**i)) {
            if self.options.include_warmup || !self.p.is_warmup(index) {
                total.merge(w);
                counted_us += self.covers(index);
            }
            buckets
                .entry(self.bucket(index))
                .or_insert_with(growing)
                .merge(w);
        }
        Series {
            total,
            counted_us,
            buckets,
            offered: self.offered(),
        }
    }
}
