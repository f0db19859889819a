//! The planning maths of a run, as plain functions: how a phase's
//! concurrency, iterations and rate shape are split across agents (even,
//! by cores, by weights; largest remainder), which windows are warm-up,
//! where the steps of a step load begin and end, when `until` is met, and
//! which windows a stop condition (`until`, a threshold with `abort =
//! true`) is judged on.
//!
//! Nothing here talks to agents or the log; `phase` drives with it.

use fleetbench_fold::WindowAgg;
use fleetbench_workload::{Load, Phase, Split, Until, WINDOW, Workload};

use crate::agent_id;

/// Splits `total` by `weights` (largest remainder): the parts add up to
/// `total` exactly and each is within one of `total * w / sum(w)`.
pub(super) fn split_by_weight(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty() || sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut parts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let mut left = total.saturating_sub(parts.iter().sum());
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest fractional part first; ties to the lower index (stable).
    order.sort_by(|a, b| {
        let fa = exact[*a] - exact[*a].floor();
        let fb = exact[*b] - exact[*b].floor();
        fb.partial_cmp(&fa).unwrap_or(std::cmp::Ordering::Equal)
    });
    for i in order {
        if left == 0 {
            break;
        }
        if weights[i] > 0.0 {
            parts[i] += 1;
            left -= 1;
        }
    }
    parts
}

/// Each agent's weight, by the workload's `[agents] split`; `cores` gives an
/// attached agent's logical cores (from its Hello).
pub(super) fn weights(
    workload: &Workload,
    ids: &[String],
    cores: impl Fn(&str) -> Option<u32>,
) -> Vec<f64> {
    match &workload.agents.split {
        Split::Even => vec![1.0; ids.len()],
        Split::Cores => ids
            .iter()
            .map(|id| cores(id).map_or(1.0, |c| f64::from(c.max(1))))
            .collect(),
        // A pool run: one weight per agent taken, in the order taken.
        Split::Weights(w) if workload.agents.pool.is_some() => (0..ids.len())
            .map(|i| w.get(i).copied().unwrap_or(1.0))
            .collect(),
        Split::Weights(w) => {
            // Weights are listed in the planned order of agents; an agent
            // whose host failed to come up takes its weight with it.
            let planned = planned_agent_ids(workload);
            ids.iter()
                .map(|id| {
                    planned
                        .iter()
                        .position(|p| p == id)
                        .and_then(|i| w.get(i))
                        .copied()
                        .unwrap_or(1.0)
                })
                .collect()
        }
    }
}

/// Agent ids in the order the workload lists them: local, then per host.
fn planned_agent_ids(workload: &Workload) -> Vec<String> {
    let mut ids: Vec<String> = (1..=workload.agents.local).map(agent_id::local).collect();
    for host in &workload.agents.hosts {
        ids.extend((1..=workload.agents.per_host).map(|i| agent_id::remote(host, i)));
    }
    ids
}

/// What one agent is asked to do in a phase.
#[derive(Debug, PartialEq)]
pub(super) struct AgentPlan {
    pub share: f64,
    pub concurrency: u32,
    pub rate: f64,
    pub iterations: u64,
}

/// The least one worker costs an agent's memory: measured at ~2.2 KiB for a
/// synthetic worker (100,000 of them: 216 MB); a connection costs more.
pub(super) const WORKER_FLOOR_BYTES: u64 = 2048;

/// Refuses a phase whose workers cannot fit in their hosts' memory even at
/// [`WORKER_FLOOR_BYTES`] each: per host (agents sharing one add up),
/// `workers` being (host, workers, the memory an agent there may use).
pub(super) fn fits_in_memory(phase: &str, workers: &[(&str, u32, u64)]) -> anyhow::Result<()> {
    let mut hosts: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for &(host, n, memory) in workers {
        let e = hosts.entry(host).or_default();
        e.0 += u64::from(n);
        e.1 = e.1.max(memory);
    }
    for (host, (n, memory)) in hosts {
        let need = n * WORKER_FLOOR_BYTES;
        if memory > 0 && need > memory {
            anyhow::bail!(
                "phase {phase:?} puts {n} workers on host {host}: at least {} of memory (~2 KiB each, more with connections), more than the {} it has; lower `concurrency`, or spread the load over more hosts",
                mib(need),
                mib(memory)
            );
        }
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Each agent's part of `phase`, by `weights` (one per agent).
pub(super) fn plan_agents(phase: &Phase, weights: &[f64]) -> Vec<AgentPlan> {
    let sum: f64 = weights.iter().sum();
    let concurrency = split_by_weight(u64::from(phase.load.concurrency()), weights);
    let iterations = split_by_weight(phase.iterations.unwrap_or(0), weights);
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let share = if sum > 0.0 { w / sum } else { 0.0 };
            let (concurrency, rate) = match &phase.load {
                Load::Closed { .. } => (concurrency[i] as u32, 0.0),
                // An open-loop agent with a share needs a connection.
                Load::Open { shape, .. } if share > 0.0 => {
                    ((concurrency[i] as u32).max(1), shape.rate_at(0.0) * share)
                }
                Load::Open { .. } => (0, 0.0),
            };
            AgentPlan {
                share,
                concurrency,
                rate,
                iterations: iterations[i],
            }
        })
        .collect()
}

/// How many of the phase's first windows are warm-up.
pub(super) fn warmup_windows(phase: &Phase) -> u32 {
    (phase.warmup.as_millis() / fleetbench_workload::WINDOW.as_millis()) as u32
}

/// The windows (first, last) of each step of a step load: a shape of two or
/// more segments of whole windows. Empty for anything else (judged per
/// window).
pub(super) fn step_windows(phase: &Phase) -> Vec<(u32, u32)> {
    let width = fleetbench_workload::WINDOW.as_millis() as u64;
    let Load::Open { shape, .. } = &phase.load else {
        return Vec::new();
    };
    if shape.segments.len() < 2
        || shape
            .segments
            .iter()
            .any(|s| !(s.duration.as_millis() as u64).is_multiple_of(width))
    {
        return Vec::new();
    }
    let mut at = 0u32;
    shape
        .segments
        .iter()
        .map(|s| {
            let n = (s.duration.as_millis() as u64 / width) as u32;
            let step = (at, at + n - 1);
            at += n;
            step
        })
        .collect()
}

/// The planned rate in the middle of window `w` (0 for a closed loop).
pub(super) fn rate_in_window(phase: &Phase, w: u32) -> f64 {
    match &phase.load {
        Load::Open { shape, .. } => shape.rate_at(f64::from(w) + 0.5),
        Load::Closed { .. } => 0.0,
    }
}

/// The window that `since_start_us` (µs from the phase's start) falls in:
/// where an interrupted phase stopped. Before the start is window 0; past
/// the end, the last window.
pub(super) fn window_at(phase: &Phase, since_start_us: i64) -> u32 {
    let width = WINDOW.as_micros() as i64;
    let last = (phase.duration.as_micros() as i64 - 1).max(0) / width;
    (since_start_us.max(0) / width).min(last) as u32
}

/// The first stop condition of `until` that window `w` meets, as a reason.
pub(super) fn until_met(until: &Until, w: &WindowAgg) -> Option<String> {
    let requests = w.requests();
    if requests == 0 {
        return None;
    }
    for (name, q, bound_us) in &until.latency {
        let v = if *q >= 1.0 {
            w.latency.max()
        } else {
            w.latency.value_at_quantile(*q)
        };
        if v > *bound_us {
            return Some(format!(
                "{name} {} > {}",
                fleetbench::clock::format_us(v as f64),
                fleetbench::clock::format_us(*bound_us as f64)
            ));
        }
    }
    if let Some(limit) = until.error_rate {
        let rate = w.error_count() as f64 / requests as f64;
        if rate > limit {
            return Some(format!(
                "error rate {:.2}% > {:.2}%",
                rate * 100.0,
                limit * 100.0
            ));
        }
    }
    None
}

/// A stop condition that windows met: why, and which threshold when it
/// was one with `abort = true` (its index in the workload's list).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Met {
    pub why: String,
    pub threshold: Option<u32>,
}

impl Met {
    /// `until` met.
    pub(super) fn until(why: String) -> Met {
        Met {
            why,
            threshold: None,
        }
    }
}

/// What run control judges a phase's stop conditions on (`until`, and
/// thresholds with `abort = true`), in order and none skipped: each step of
/// a step load as a whole (its p99 over all its windows), else each window
/// after the warm-up.
pub(super) struct StopJudge {
    steps: Vec<(u32, u32)>,
    next_step: usize,
    next_window: u32,
}

impl StopJudge {
    pub(super) fn new(phase: &Phase) -> StopJudge {
        StopJudge {
            steps: step_windows(phase),
            next_step: 0,
            next_window: warmup_windows(phase),
        }
    }

    /// Judges what is complete up to window `done` and not judged yet;
    /// `met(first, last)` says whether windows first..=last meet a stop
    /// condition. The first met: (the window it was met in, what).
    pub(super) fn judge(
        &mut self,
        done: u32,
        met: impl Fn(u32, u32) -> Option<Met>,
    ) -> Option<(u32, Met)> {
        let mut found = None;
        if self.steps.is_empty() {
            while found.is_none() && self.next_window <= done {
                let w = self.next_window;
                found = met(w, w).map(|m| (w, m));
                self.next_window += 1;
            }
        } else {
            while found.is_none()
                && self.next_step < self.steps.len()
                && self.steps[self.next_step].1 <= done
            {
                let (first, last) = self.steps[self.next_step];
                let step = self.next_step + 1;
                found = met(first, last).map(|m| {
                    let why = format!("{} over step {step}", m.why);
                    (last, Met { why, ..m })
                });
                self.next_step += 1;
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fleetbench_fold::WindowAgg;
    use fleetbench_workload::{Phase, Until, Workload};

    use super::{
        AgentPlan, Met, StopJudge, fits_in_memory, plan_agents, rate_in_window, split_by_weight,
        step_windows, until_met, warmup_windows, weights, window_at,
    };

    /// Workers that cannot fit in a host's memory are refused, host by
    /// host (two agents on one host add up), naming the host and sizes.
    #[test]
    fn a_plan_beyond_a_hosts_memory_is_refused() {
        let gib = 1u64 << 30;
        assert!(fits_in_memory("p", &[("a", 500_000, gib), ("b", 500_000, gib)]).is_ok());
        let err = fits_in_memory("p", &[("a", 300_000, gib), ("a", 300_000, gib)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("phase \"p\" puts 600000 workers on host a")
                && err.contains("1172 MiB")
                && err.contains("1024 MiB"),
            "{err}"
        );
        // Memory not known (an old agent): no judgement.
        assert!(fits_in_memory("p", &[("a", 1_000_000, 0)]).is_ok());
    }

    fn workload(agents: &str, load: &str) -> Workload {
        let text = format!(
            "[agents]\n{agents}\n[[phase]]\nname = \"p\"\n{load}\n[phase.synthetic]\nlatency = \"1ms\"\n"
        );
        Workload::parse("w.toml", &text).unwrap()
    }

    fn phase(load: &str) -> Phase {
        workload("local = 1", load).phases.remove(0)
    }

    /// A window of `ok` requests at `latency_us` each and `errors` errors.
    fn window(ok: u64, errors: u64, latency_us: u64) -> WindowAgg {
        let mut latency = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        latency.record_n(latency_us, ok + errors).unwrap();
        WindowAgg {
            ok,
            errors: if errors > 0 {
                BTreeMap::from([("status_500".to_string(), errors)])
            } else {
                BTreeMap::new()
            },
            bytes_sent: 0,
            bytes_received: 0,
            latency,
            latency_clamped: 0,
            max_send_lag_us: 0,
            send_lag: None,
            scheduled: 0,
            late_wakes: 0,
            max_wake_lag_us: 0,
            agents: 1,
            stages: BTreeMap::new(),
        }
    }

    fn until(p99_us: u64, error_rate: Option<f64>) -> Until {
        Until {
            latency: vec![("p99".into(), 0.99, p99_us)],
            error_rate,
        }
    }

    #[test]
    fn steps_are_judged_whole_and_other_shapes_per_window() {
        let steps = phase(
            "steps = [{ rate = 1, for = \"3s\" }, { rate = 2, for = \"2s\" }, { rate = 3, for = \"1s\" }]",
        );
        assert_eq!(step_windows(&steps), vec![(0, 2), (3, 4), (5, 5)]);
        let ramp = phase("ramp = { from = 1, to = 9, over = \"5s\" }");
        assert!(step_windows(&ramp).is_empty());
        let closed = phase("duration = \"5s\"\nconcurrency = 2");
        assert!(step_windows(&closed).is_empty());
        // A step that is not whole windows: judged per window.
        let ragged = phase("steps = [{ rate = 1, for = \"1500ms\" }, { rate = 2, for = \"2s\" }]");
        assert!(step_windows(&ragged).is_empty());
    }

    #[test]
    fn weighted_parts_add_up_and_stay_within_one() {
        for total in [0u64, 1, 2, 7, 16, 1000, 100_001] {
            for weights in [
                vec![1.0],
                vec![1.0, 1.0, 1.0],
                vec![1.0, 3.0],
                vec![2.0, 0.0, 5.0, 1.0],
                vec![0.3, 0.3, 0.4],
            ] {
                let parts = split_by_weight(total, &weights);
                assert_eq!(parts.iter().sum::<u64>(), total, "{total} by {weights:?}");
                let sum: f64 = weights.iter().sum();
                for (p, w) in parts.iter().zip(&weights) {
                    let exact = total as f64 * w / sum;
                    assert!(
                        (*p as f64 - exact).abs() < 1.0,
                        "{total} by {weights:?}: {parts:?}"
                    );
                    if *w == 0.0 {
                        assert_eq!(*p, 0);
                    }
                }
            }
        }
        // Even weights: the first agents take the remainder.
        assert_eq!(split_by_weight(7, &[1.0, 1.0, 1.0]), vec![3, 2, 2]);
    }

    #[test]
    fn weights_follow_the_split() {
        let ids: Vec<String> = ["local-1", "local-2"].map(String::from).to_vec();
        let even = workload("local = 2", "duration = \"1s\"\nconcurrency = 2");
        assert_eq!(weights(&even, &ids, |_| None), vec![1.0, 1.0]);
        // By cores: an agent not seen (or saying 0 cores) weighs one core.
        let cores = workload(
            "local = 3\nsplit = \"cores\"",
            "duration = \"1s\"\nconcurrency = 2",
        );
        let ids3: Vec<String> = ["local-1", "local-2", "local-3"].map(String::from).to_vec();
        let seen = |id: &str| match id {
            "local-1" => Some(8),
            "local-2" => Some(0),
            _ => None,
        };
        assert_eq!(weights(&cores, &ids3, seen), vec![8.0, 1.0, 1.0]);
        // Listed weights follow the planned order: a missing agent takes its
        // weight with it, an unlisted one weighs 1.
        let listed = workload(
            "local = 3\nsplit = [5, 3, 2]",
            "duration = \"1s\"\nconcurrency = 2",
        );
        let survivors: Vec<String> = ["local-1", "local-3"].map(String::from).to_vec();
        assert_eq!(weights(&listed, &survivors, |_| None), vec![5.0, 2.0]);
    }

    #[test]
    fn plans_split_closed_and_open_loads() {
        let closed = phase("duration = \"1s\"\nconcurrency = 5\niterations = 7");
        let plans = plan_agents(&closed, &[1.0, 1.0, 0.0]);
        let concurrency: Vec<u32> = plans.iter().map(|p| p.concurrency).collect();
        let iterations: Vec<u64> = plans.iter().map(|p| p.iterations).collect();
        assert_eq!(concurrency, vec![3, 2, 0]);
        assert_eq!(iterations, vec![4, 3, 0]);
        assert!(plans.iter().all(|p| p.rate == 0.0));
        assert_eq!(plans[0].share, 0.5);

        // Open loop: the rate is split by share, and an agent with a share
        // gets a connection even when the concurrency rounds to none.
        let open = phase("rate = 100\nduration = \"1s\"\nconcurrency = 1");
        let plans = plan_agents(&open, &[3.0, 1.0, 0.0]);
        assert_eq!(
            plans[1],
            AgentPlan {
                share: 0.25,
                concurrency: 1,
                rate: 25.0,
                iterations: 0
            }
        );
        assert_eq!((plans[0].concurrency, plans[0].rate), (1, 75.0));
        assert_eq!((plans[2].concurrency, plans[2].rate), (0, 0.0));
    }

    #[test]
    fn warmup_windows_and_rates_in_windows() {
        let warm = phase("duration = \"10s\"\nwarmup = \"3s\"\nconcurrency = 1");
        assert_eq!(warmup_windows(&warm), 3);
        assert_eq!(rate_in_window(&warm, 4), 0.0);
        let steps = phase("steps = [{ rate = 10, for = \"2s\" }, { rate = 20, for = \"2s\" }]");
        assert_eq!(rate_in_window(&steps, 1), 10.0);
        assert_eq!(rate_in_window(&steps, 2), 20.0);
    }

    #[test]
    fn an_interrupt_stops_in_the_window_of_its_instant() {
        let p = phase("duration = \"10s\"\nconcurrency = 1");
        assert_eq!(window_at(&p, -250_000), 0, "before the start");
        assert_eq!(window_at(&p, 999_999), 0);
        assert_eq!(window_at(&p, 3_000_000), 3);
        assert_eq!(window_at(&p, 3_400_000), 3);
        assert_eq!(window_at(&p, 9_999_999), 9);
        assert_eq!(window_at(&p, 12_000_000), 9, "in the grace after the end");
        let short = phase("duration = \"2500ms\"\nconcurrency = 1");
        assert_eq!(window_at(&short, 2_600_000), 2);
    }

    #[test]
    fn until_names_the_first_bound_crossed() {
        let u = until(5_000, Some(0.01));
        assert_eq!(until_met(&u, &window(0, 0, 9_000)), None, "no requests");
        assert_eq!(until_met(&u, &window(100, 0, 4_000)), None);
        let slow = until_met(&u, &window(100, 0, 9_000)).unwrap();
        assert!(
            slow.starts_with("p99 ") && slow.ends_with(" > 5.00ms"),
            "{slow}"
        );
        let failing = until_met(&u, &window(98, 2, 1_000)).unwrap();
        assert_eq!(failing, "error rate 2.00% > 1.00%");
        // One error in a hundred is not above 1 %.
        assert_eq!(until_met(&u, &window(99, 1, 1_000)), None);
    }

    /// `until` over windows first..=last, as run control asks it.
    fn until_over(
        u: &Until,
        merged: impl Fn(u32, u32) -> Option<WindowAgg>,
    ) -> impl Fn(u32, u32) -> Option<Met> {
        move |first, last| {
            merged(first, last)
                .and_then(|w| until_met(u, &w))
                .map(Met::until)
        }
    }

    #[test]
    fn until_judges_each_window_after_the_warmup_once() {
        let p = phase("duration = \"10s\"\nwarmup = \"2s\"\nconcurrency = 1");
        let u = until(5_000, None);
        // Every window is slow: the warm-up's are never judged.
        let slow = until_over(&u, |_, _| Some(window(10, 0, 9_000)));
        let mut judge = StopJudge::new(&p);
        assert_eq!(judge.judge(1, &slow), None);
        assert_eq!(judge.judge(3, &slow).map(|(w, _)| w), Some(2));
        // Window 2 was judged; the next call starts at 3.
        assert_eq!(judge.judge(3, &slow).map(|(w, _)| w), Some(3));
        assert_eq!(judge.judge(3, &slow), None);
    }

    #[test]
    fn until_judges_a_step_only_once_it_is_whole() {
        let p = phase("steps = [{ rate = 1, for = \"3s\" }, { rate = 2, for = \"2s\" }]");
        let u = until(5_000, None);
        let asked = std::cell::RefCell::new(Vec::new());
        let merged = |first: u32, last: u32| {
            asked.borrow_mut().push((first, last));
            // The second step is slow.
            Some(window(10, 0, if first >= 3 { 9_000 } else { 1_000 }))
        };
        let met = until_over(&u, merged);
        let mut judge = StopJudge::new(&p);
        assert_eq!(judge.judge(3, &met), None);
        assert_eq!(*asked.borrow(), vec![(0, 2)], "step 2 is not whole yet");
        let (w, m) = judge.judge(4, &met).unwrap();
        assert_eq!(w, 4);
        assert!(m.why.ends_with(" over step 2"), "{}", m.why);
        assert_eq!(m.threshold, None);
        assert_eq!(*asked.borrow(), vec![(0, 2), (3, 4)]);
    }

    /// A threshold's stop keeps its index through a step.
    #[test]
    fn a_threshold_met_over_a_step_keeps_its_index() {
        let p = phase("steps = [{ rate = 1, for = \"2s\" }, { rate = 2, for = \"2s\" }]");
        let met = |first: u32, _: u32| {
            (first == 2).then(|| Met {
                why: "threshold p99<1ms crossed: p99 2.00ms".into(),
                threshold: Some(3),
            })
        };
        let (w, m) = StopJudge::new(&p).judge(3, met).unwrap();
        assert_eq!((w, m.threshold), (3, Some(3)));
        assert_eq!(m.why, "threshold p99<1ms crossed: p99 2.00ms over step 2");
    }
}
