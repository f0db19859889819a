//! The live view of a running phase on stderr: elapsed time, throughput and
//! latency of the newest complete window, errors so far, agents attached.
//! Its numbers are read from the live fold, the same state the summary and
//! `report` use. On a terminal it is one redrawn line (indicatif); otherwise
//! a plain line every few seconds, so CI logs stay readable.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use fleetbench::clock::format_us;
use fleetbench_fold::Fold;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    pub rps: f64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub requests: u64,
    pub errors: u64,
}

pub(crate) struct LiveView {
    bar: ProgressBar,
    phases: usize,
    tty: bool,
    last_plain: Option<Instant>,
    last_line: String,
}

impl LiveView {
    pub(crate) fn new(phases: usize) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = if tty {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}").expect("static template is valid"),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        LiveView {
            bar,
            phases,
            tty,
            last_plain: None,
            last_line: String::new(),
        }
    }

    /// What the view shows of phase `index`, read from the fold.
    fn snapshot(&self, fold: &Fold, index: u32) -> Snapshot {
        let Some(phase) = fold.phases.get(&index) else {
            return Snapshot::default();
        };
        let mut s = Snapshot::default();
        for w in phase.windows.values() {
            s.requests += w.requests();
            s.errors += w.error_count();
        }
        if let Some((_, w)) = phase.last_complete_window() {
            s.rps = w.requests() as f64 / (f64::from(phase.window_ms) / 1000.0);
            if !w.latency.is_empty() {
                s.p50_us = Some(w.latency.value_at_quantile(0.5));
                s.p99_us = Some(w.latency.value_at_quantile(0.99));
            }
        }
        s
    }

    /// Shows phase `index` as the fold has it at instant `now_us`
    /// (coordinator clock; a replay passes its own).
    pub(crate) fn show(
        &mut self,
        fold: &Fold,
        index: u32,
        now_us: i64,
        connected: usize,
        agents: usize,
    ) {
        let s = self.snapshot(fold, index);
        let (name, duration_s, start_at_us) = fold
            .phases
            .get(&index)
            .map_or((String::new(), 0.0, now_us), |p| {
                (p.name.clone(), p.duration_ms as f64 / 1000.0, p.start_at_us)
            });
        let elapsed = ((now_us - start_at_us).max(0) as f64 / 1e6).min(duration_s);
        let lat = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| format_us(v as f64));
        let line = format!(
            "[{name} {}/{}] {elapsed:.0}s/{duration_s:.0}s | {:.0} req/s | p50 {} p99 {} | {} requests, {} errors | agents {connected}/{agents}",
            index + 1,
            self.phases.max(fold.phases.len()),
            s.rps,
            lat(s.p50_us),
            lat(s.p99_us),
            s.requests,
            s.errors,
        );
        if self.tty {
            self.bar.set_message(line.clone());
            self.bar.tick();
        } else if self
            .last_plain
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
        {
            eprintln!("{line}");
            self.last_plain = Some(Instant::now());
        }
        self.last_line = line;
    }

    /// Leaves the phase's last line on screen.
    pub(crate) fn phase_done(&mut self) {
        if self.tty {
            self.bar.println(&self.last_line);
        } else {
            eprintln!("{}", self.last_line);
        }
        self.last_plain = None;
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
