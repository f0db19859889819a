//! The fold's properties on synthetic logs (`testlog`): order of arrival,
//! repeats, warm-up, windowing, filters, operations, the limited rules,
//! stops and intended rates. Rendering is tested in the views crate.

use fleetbench::pb;
use fleetbench_gen::rng::Rng;

use crate::testlog::{
    OpWindow, fold_of, limited_agent_log, op_stream, phase_ended, scheduled_with, shape, stop,
    stream,
};
use crate::{
    AgentLoad, Filter, Fold, OpReport, ReportOptions, intended_mean, intended_rate, limited_reasons,
};

fn json(f: &Fold) -> String {
    serde_json::to_string(&f.report(&ReportOptions::default())).unwrap()
}

/// `records` in an order drawn from `rng` (Fisher-Yates).
fn shuffled(records: &[pb::LogRecord], rng: &mut Rng) -> Vec<pb::LogRecord> {
    let mut out = records.to_vec();
    for i in (1..out.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

#[test]
fn order_of_arrival_does_not_change_the_report() {
    for seed in 0..20 {
        let records = stream(seed);
        let mut forward = Fold::new();
        records.iter().for_each(|r| forward.apply(r));
        let shuffled = shuffled(&records, &mut Rng::new(seed ^ 0xdead));
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
            let shuffled = shuffled(&records, &mut rng);
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

// ------------------------------------------------------------ operations

#[test]
fn operations_add_up_to_their_phase() {
    for seed in 0..10 {
        for options in [
            ReportOptions::default(),
            ReportOptions {
                include_warmup: true,
                window_s: Some(3),
                ..Default::default()
            },
        ] {
            let report = fold_of(&op_stream(seed)).report(&options);
            let p = &report.phases[0];
            let names: Vec<&str> = p.ops.iter().map(|o| o.name.as_str()).collect();
            assert_eq!(names, ["write", "read"], "the file's order");
            let sum = |f: fn(&OpReport) -> u64| p.ops.iter().map(f).sum::<u64>();
            assert_eq!(sum(|o| o.requests), p.requests, "seed {seed}");
            assert_eq!(sum(|o| o.ok), p.ok);
            assert_eq!(sum(|o| o.error_count()), p.error_count());
            let shares: f64 = p.ops.iter().map(|o| o.share_pct).sum();
            assert!((shares - 100.0).abs() < 0.02, "{shares}");
            for op in &p.ops {
                assert_eq!(op.timeline.len(), p.timeline.len());
                let l = op.latency_us.as_ref().unwrap();
                let want = if op.name == "read" { 100 } else { 5000 };
                assert!(l.p50.abs_diff(want) * 100 <= want, "{}: {l:?}", op.name);
            }
            for (i, w) in p.timeline.iter().enumerate() {
                let ops: u64 = p.ops.iter().map(|o| o.timeline[i].requests).sum();
                assert_eq!(ops, w.requests, "window {i} adds up");
                assert_eq!(w.agents, 2, "an agent counts once per window, not per op");
            }
            let a = &p.agents[0];
            assert_eq!(a.windows, 20, "distinct windows, not one per op");
        }
    }
}

#[test]
fn operations_do_not_change_order_independence() {
    for seed in 0..10 {
        let records = op_stream(seed);
        let want = json(&fold_of(&records));
        let shuffled = shuffled(&records, &mut Rng::new(seed ^ 0xbeef));
        assert_eq!(json(&fold_of(&shuffled)), want, "seed {seed}");
    }
}

#[test]
fn an_op_filter_keeps_only_that_operation() {
    let records = op_stream(4);
    let all = fold_of(&records).report(&ReportOptions::default());
    let mut f = Fold::with_filter(Filter {
        ops: vec!["read".into()],
        ..Default::default()
    });
    records.iter().for_each(|r| f.apply(r));
    let reads = f.report(&ReportOptions::default());
    let want = all.phases[0].ops.iter().find(|o| o.name == "read").unwrap();
    assert_eq!(reads.phases[0].requests, want.requests);
    assert_eq!(reads.phases[0].ops.len(), 1);
    assert_eq!(reads.phases[0].ops[0].share_pct, 100.0);
}

#[test]
fn a_single_workload_phase_lists_no_operations() {
    let report = fold_of(&stream(2)).report(&ReportOptions::default());
    assert!(report.phases[0].ops.is_empty());
    let text = serde_json::to_string(&report).unwrap();
    for field in [
        "\"ops\"",
        "generator_limited",
        "stopped",
        "intended_rps",
        "scheduled",
        "\"send_lag_us\"",
    ] {
        assert!(!text.contains(field), "{field} in an op-less report");
    }
}

#[test]
fn shares_come_from_the_schedule() {
    let mut records = op_stream(1);
    records[0] = scheduled_with(|p| {
        p.shares = vec![
            pb::AgentShare {
                agent_id: "a".into(),
                share: 0.75,
                concurrency: 6,
                rate: 300.0,
                iterations: 750,
            },
            pb::AgentShare {
                agent_id: "b".into(),
                share: 0.25,
                concurrency: 2,
                rate: 100.0,
                iterations: 250,
            },
        ];
        p.iterations = 1000;
    });
    let report = fold_of(&records).report(&ReportOptions::default());
    let p = &report.phases[0];
    assert_eq!(p.iterations, 1000);
    let a = &p.agents[0];
    assert_eq!(
        (a.share, a.concurrency, a.rate, a.iterations),
        (Some(0.75), Some(6), Some(300.0), Some(750))
    );
    assert_eq!(p.agents[1].share, Some(0.25));
}

// ------------------------------------------------------------ limited

fn load() -> AgentLoad {
    AgentLoad {
        scheduled: 10_000,
        sent: 10_000,
        late_wakes: 0,
        max_wake_lag_us: 0,
        loop_probes: 500,
        loop_late: 2,
        max_loop_lag_us: 7_000,
        busy_late: 0,
        max_send_lag_us: 900,
        connections: 8,
        cpu_pct_mean: Some(40.0),
        threads: 1,
        cores: 4,
    }
}

#[test]
fn sends_finding_every_connection_busy_limit_the_agent() {
    let capped = AgentLoad {
        busy_late: 4_100,
        max_send_lag_us: 1_240_000,
        connections: 2,
        ..load()
    };
    assert_eq!(
        limited_reasons(&capped),
        ["all 2 connections busy; 4100 requests started late by up to 1.2 s"]
    );
    // 1 % is not over the bar; too few scheduled sends do not judge.
    let edge = AgentLoad {
        busy_late: 100,
        ..capped
    };
    assert!(limited_reasons(&edge).is_empty());
    let few = AgentLoad {
        scheduled: 99,
        sent: 99,
        busy_late: 60,
        ..capped
    };
    assert!(limited_reasons(&few).is_empty());
    let ms = AgentLoad {
        busy_late: 101,
        max_send_lag_us: 48_000,
        ..capped
    };
    assert_eq!(
        limited_reasons(&ms),
        ["all 2 connections busy; 101 requests started late by up to 48 ms"]
    );
}

#[test]
fn a_late_event_loop_limits_the_agent() {
    // 2 late probes of 500: 0.4%, under the 1% bar (the base case).
    assert!(limited_reasons(&load()).is_empty());
    let starved = AgentLoad {
        loop_late: 40,
        max_loop_lag_us: 60_000,
        ..load()
    };
    let reasons = limited_reasons(&starved);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("event loop ran late: 8.0%"),
        "{reasons:?}"
    );
    assert!(reasons[0].contains("max 60"), "{reasons:?}");
    // Too few probes to judge.
    let short = AgentLoad {
        loop_probes: 99,
        loop_late: 50,
        ..load()
    };
    assert!(limited_reasons(&short).is_empty());
}

#[test]
fn an_agent_keeping_its_schedule_is_not_limited() {
    assert!(limited_reasons(&load()).is_empty());
    // Closed loop, nothing scheduled, no CPU reported.
    let closed = AgentLoad {
        scheduled: 0,
        cpu_pct_mean: None,
        ..load()
    };
    assert!(limited_reasons(&closed).is_empty());
}

#[test]
fn late_wakes_over_one_percent_limit_the_agent() {
    let late = AgentLoad {
        late_wakes: 3_400,
        max_wake_lag_us: 230_000,
        ..load()
    };
    assert_eq!(
        limited_reasons(&late),
        ["34% of sends woke more than 5 ms late (max 230 ms)"]
    );
    // Exactly 1 % is not over it.
    let edge = AgentLoad {
        late_wakes: 100,
        ..load()
    };
    assert!(limited_reasons(&edge).is_empty());
    let over = AgentLoad {
        late_wakes: 101,
        max_wake_lag_us: 6_500,
        ..load()
    };
    assert_eq!(
        limited_reasons(&over),
        ["1.0% of sends woke more than 5 ms late (max 6.5 ms)"]
    );
    // Too few scheduled sends to judge.
    let few = AgentLoad {
        scheduled: 99,
        sent: 99,
        late_wakes: 50,
        ..load()
    };
    assert!(limited_reasons(&few).is_empty());
}

#[test]
fn a_saturated_agent_cpu_limits_the_agent() {
    let busy = AgentLoad {
        cpu_pct_mean: Some(98.0),
        ..load()
    };
    assert_eq!(limited_reasons(&busy), ["agent CPU 98% of its 1 thread"]);
    // Four threads on two cores: two cores is what it can use.
    let two = AgentLoad {
        cpu_pct_mean: Some(185.0),
        threads: 4,
        cores: 2,
        ..load()
    };
    assert_eq!(limited_reasons(&two), ["agent CPU 92% of its 2 threads"]);
    let below = AgentLoad {
        cpu_pct_mean: Some(179.0),
        ..two
    };
    assert!(limited_reasons(&below).is_empty());
    // Threads unknown (no PhaseEnded yet): the cores.
    let unknown = AgentLoad {
        cpu_pct_mean: Some(370.0),
        threads: 0,
        ..load()
    };
    assert_eq!(
        limited_reasons(&unknown),
        ["agent CPU 92% of its 4 threads"]
    );
}

#[test]
fn sending_short_of_the_schedule_while_late_limits_the_agent() {
    let short = AgentLoad {
        sent: 9_000,
        late_wakes: 50,
        max_wake_lag_us: 8_000,
        ..load()
    };
    assert_eq!(
        limited_reasons(&short),
        ["sent 9000 of 10000 scheduled requests (10% short) while waking late"]
    );
    // Short but never late: the target (or errors) held it back.
    let not_late = AgentLoad {
        late_wakes: 0,
        ..short
    };
    assert!(limited_reasons(&not_late).is_empty());
    // Short with a handful of late wakes (3 of 10,000: a busy host, a
    // target past its knee): still the target's shortfall.
    let few = AgentLoad {
        late_wakes: 3,
        ..short
    };
    assert!(limited_reasons(&few).is_empty());
    // Late, but within 5 %.
    let close = AgentLoad {
        sent: 9_600,
        ..short
    };
    assert!(limited_reasons(&close).is_empty());
}

/// Through the fold: agent "a" wakes late in its measured windows and
/// its CPU is saturated; "b" keeps up. Warm-up windows do not count.
#[test]
fn the_fold_flags_the_limited_agent_only() {
    let records = limited_agent_log();
    let report = fold_of(&records).report(&ReportOptions::default());
    let p = &report.phases[0];
    assert_eq!(
        p.agents[1].agent_cpu_pct,
        Some(30.0),
        "samples inside the phase"
    );
    assert_eq!(p.generator_limited.len(), 1, "{:?}", p.generator_limited);
    let a = &p.generator_limited[0];
    assert_eq!(a.agent, "a");
    assert_eq!(
        a.reasons,
        [
            "40% of sends woke more than 5 ms late (max 30 ms)",
            "agent CPU 97% of its 1 thread"
        ]
    );
    assert_eq!(p.agents[0].agent_cpu_pct, Some(97.0));
    assert_eq!(p.scheduled, 2 * 18 * 100, "measured windows only");
}

// ------------------------------------------------------------ stop and shape

#[test]
fn a_stopped_phase_says_where_and_why() {
    let mut records = stream(6);
    records.push(stop(14, "p99 23.1ms > 20ms"));
    // A later request changes nothing, whichever arrives first.
    records.insert(3, stop(16, "interrupted"));
    let report = fold_of(&records).report(&ReportOptions::default());
    let s = report.phases[0].stopped.as_ref().expect("stopped");
    assert_eq!((s.window_index, s.at_s, s.rate), (14, 14.0, 1200.0));
    assert_eq!(s.reason, "p99 23.1ms > 20ms");
}

/// A window cut short by a stop (the phase ended during it) lacks
/// its schedule because of the stop, not the agent: it is left out of
/// the limited rule.
#[test]
fn windows_after_a_stop_do_not_make_an_agent_limited() {
    let mut records = vec![scheduled_with(|p| p.warmup_ms = 0)];
    for i in 0..10u32 {
        // Window 9 is cut by the stop after window 8: 5 of 100 sent.
        let n = if i == 9 { 5 } else { 100 };
        // 5 late wakes of 1,000 scheduled: over rule (c)'s 0.1 %,
        // under rule (a)'s 1 %.
        let late = if i == 9 { 5 } else { 0 };
        records.push(
            OpWindow {
                requests: n,
                latency_us: 500,
                scheduled: 100,
                late_wakes: late,
                max_wake_lag_us: 6_000,
                ..OpWindow::new("a", u64::from(i) + 1, i)
            }
            .record(),
        );
    }
    let limited = |records: &[pb::LogRecord]| {
        fold_of(records).report(&ReportOptions::default()).phases[0]
            .generator_limited
            .len()
    };
    assert_eq!(limited(&records), 1, "without the stop, window 9 is short");
    records.push(stop(8, "p99 60ms > 50ms"));
    assert_eq!(limited(&records), 0, "window 9 came after the stop");
}

#[test]
fn the_intended_rate_follows_the_segments_and_holds_the_last() {
    let ramp = shape(&[(10_000, 100.0, 1100.0), (5_000, 500.0, 500.0)], "uniform");
    assert_eq!(intended_rate(&ramp, 0.0), 100.0);
    assert_eq!(intended_rate(&ramp, 5.0), 600.0);
    assert_eq!(intended_rate(&ramp, 9.999_999), 1099.9999);
    assert_eq!(intended_rate(&ramp, 10.0), 500.0);
    assert_eq!(intended_rate(&ramp, 60.0), 500.0, "the last `to` holds");
    assert_eq!(intended_rate(&shape(&[], "uniform"), 3.0), 0.0);
    // A window's mean: linear pieces average at their middle, and a
    // window across a step averages both sides.
    assert_eq!(intended_mean(&ramp, 2.0, 3.0), 350.0);
    assert_eq!(intended_mean(&ramp, 9.5, 10.5), (1075.0 + 500.0) / 2.0);
}

#[test]
fn the_timeline_carries_the_intended_and_the_offered_rate() {
    let mut records = vec![scheduled_with(|p| {
        p.shape = Some(shape(&[(20_000, 100.0, 2100.0)], "uniform"));
    })];
    for i in 0..20u32 {
        let want = 100 + 100 * u64::from(i) + 50;
        records.push(
            OpWindow {
                requests: want,
                latency_us: 300,
                scheduled: want,
                ..OpWindow::new("a", u64::from(i) + 1, i)
            }
            .record(),
        );
    }
    let report = fold_of(&records).report(&ReportOptions::default());
    let p = &report.phases[0];
    assert_eq!(p.arrival.as_deref(), Some("uniform"));
    for w in &p.timeline {
        let intended = w.intended_rps.expect("a shape gives every window its rate");
        assert_eq!(intended, w.scheduled as f64, "t {}", w.t_s);
        assert_eq!(w.requests, w.scheduled);
    }
    assert_eq!(p.timeline[3].intended_rps, Some(450.0));
}

/// Phase 0 on agent `a` (no warm-up): 100 requests in each of windows
/// 0..=2 and `last` in window 3, where the load stopped.
fn stopped_in_window_3(last: u64) -> Vec<pb::LogRecord> {
    let mut records = vec![scheduled_with(|p| {
        p.warmup_ms = 0;
        p.agent_ids = vec!["a".into()];
    })];
    for i in 0..4u32 {
        let requests = if i == 3 { last } else { 100 };
        records.push(
            OpWindow {
                requests,
                latency_us: 500,
                ..OpWindow::new("a", u64::from(i) + 1, i)
            }
            .record(),
        );
    }
    records
}

fn ended(ran_us: Option<u64>) -> pb::LogRecord {
    phase_ended(
        "a",
        9,
        pb::PhaseEnded {
            phase_index: 0,
            stopped_early: true,
            ran_us,
            ..Default::default()
        },
    )
}

/// A phase stopped early (Ctrl-C, `until`, a budget spent) is rated over
/// the time its load ran, which its agents say; the window where it
/// stopped counts only up to there.
#[test]
fn a_phase_stopped_early_is_rated_over_the_time_it_ran() {
    let mut records = stopped_in_window_3(40);
    records.push(ended(Some(3_400_000)));
    let p = &fold_of(&records).report(&ReportOptions::default()).phases[0];
    assert_eq!((p.requests, p.duration_s), (340, 3.4));
    assert_eq!(p.throughput_rps, 100.0);
    // The agent that ran longest says how long the phase ran.
    records.push(phase_ended(
        "b",
        1,
        pb::PhaseEnded {
            ran_us: Some(3_200_000),
            ..Default::default()
        },
    ));
    let p = &fold_of(&records).report(&ReportOptions::default()).phases[0];
    assert_eq!(p.duration_s, 3.4);
    // Never longer than planned.
    let mut records = stopped_in_window_3(100);
    records.push(ended(Some(25_000_000)));
    let p = &fold_of(&records).report(&ReportOptions::default()).phases[0];
    assert_eq!(p.duration_s, 4.0);
}

/// Agents older than `PhaseEnded.ran_us` said nothing of where they
/// stopped: the stop request's instant stands in for it. A phase that
/// nobody stopped keeps its windows' whole widths.
#[test]
fn without_word_from_the_agents_a_phase_stops_where_it_was_asked_to() {
    let at = |logged_at_us| {
        let mut r = stop(2, "interrupted");
        r.logged_at_us = logged_at_us;
        r
    };
    let mut records = stopped_in_window_3(25);
    records.push(ended(None));
    let p = &fold_of(&records).report(&ReportOptions::default()).phases[0];
    assert_eq!(p.duration_s, 4.0, "not stopped: whole windows");
    records.push(at(3_250_000));
    // A later request does not move the stop, whichever comes first.
    records.insert(1, at(3_900_000));
    let p = &fold_of(&records).report(&ReportOptions::default()).phases[0];
    assert_eq!((p.requests, p.duration_s), (325, 3.25));
    assert_eq!(p.throughput_rps, 100.0);
}

// ------------------------------------------------------------ send lag

/// Send lags merge like latencies: per phase and per op, from every agent,
/// headline windows only; a closed-loop phase has none.
#[test]
fn send_lag_merges_per_phase_and_op() {
    let mut records = vec![scheduled_with(|p| {
        p.ops = vec!["read".into(), "write".into()]
    })];
    let mut seq = 0;
    for i in 0..20u32 {
        for (agent, op, requests, lag) in [("a", "read", 100, 10), ("b", "read", 5, 1000)]
            .into_iter()
            .chain([("a", "write", 10, 50)])
        {
            seq += 1;
            records.push(
                OpWindow {
                    op,
                    requests,
                    latency_us: 2000,
                    // A lag in the warm-up that the headline leaves out.
                    send_lag_us: Some(if i < 2 { 900_000 } else { lag }),
                    ..OpWindow::new(agent, seq, i)
                }
                .record(),
            );
        }
    }
    let report = fold_of(&records).report(&ReportOptions::default());
    let p = &report.phases[0];
    let lag = p.send_lag_us.expect("open loop has a send lag");
    assert_eq!((lag.p50, lag.p99, lag.max), (10, 1000, 1000), "{lag:?}");
    let read = p.ops.iter().find(|o| o.name == "read").unwrap();
    let write = p.ops.iter().find(|o| o.name == "write").unwrap();
    assert_eq!(read.send_lag_us.map(|l| l.p50), Some(10));
    assert_eq!(write.send_lag_us.map(|l| (l.p50, l.max)), Some((50, 50)));
    let all = ReportOptions {
        include_warmup: true,
        ..Default::default()
    };
    let warm = fold_of(&records).report(&all).phases[0]
        .send_lag_us
        .unwrap();
    assert!(warm.max >= 900_000, "{warm:?}");
    // The same records in another order: the same lags.
    let shuffled = shuffled(&records, &mut Rng::new(3));
    assert_eq!(
        fold_of(&shuffled).report(&ReportOptions::default()).phases[0].send_lag_us,
        Some(lag)
    );
}

/// Two agents share a 1,000/s phase of 10 windows; one is lost after
/// window 3. Its unsent share stays offered: the report's offered count is
/// the shape's (10,000), not the sum the agents reported, so "achieved"
/// reads low instead of 100 %.
#[test]
fn a_lost_agents_share_stays_offered() {
    let mut records = vec![scheduled_with(|p| {
        p.warmup_ms = 0;
        p.duration_ms = 10_000;
        p.agent_ids = vec!["a".into(), "b".into()];
        p.shape = Some(shape(&[(10_000, 1000.0, 1000.0)], "uniform"));
    })];
    let mut seq = 0;
    for i in 0..10u32 {
        for agent in ["a", "b"] {
            if agent == "b" && i > 3 {
                continue;
            }
            seq += 1;
            records.push(
                OpWindow {
                    requests: 500,
                    latency_us: 300,
                    scheduled: 500,
                    ..OpWindow::new(agent, seq, i)
                }
                .record(),
            );
        }
    }
    let report = fold_of(&records).report(&ReportOptions::default());
    let p = &report.phases[0];
    assert_eq!(p.requests, 7_000);
    assert_eq!(
        p.scheduled, 10_000,
        "the lost agent's share is still offered"
    );
    // A replay of agent a alone offers only what a reported.
    let mut fold = Fold::with_filter(Filter {
        agents: vec!["a".into()],
        ..Filter::default()
    });
    for r in &records {
        fold.apply(r);
    }
    let only_a = fold.report(&ReportOptions {
        filtered: true,
        ..ReportOptions::default()
    });
    assert_eq!(only_a.phases[0].scheduled, 5_000);
}

/// What a buggy or hostile (but authenticated) agent can send, folded:
/// sequence numbers that jump, repeat and go back; windows of phases that
/// do not exist, at absurd indexes and widths; counts near `u64::MAX`;
/// histograms that are garbage or cut; absurd clocks; unknown error
/// classes; host samples that are not numbers or overflow sums, at
/// clocks past i64's range. Seeded streams: the fold never panics, its report
/// renders to JSON, and the honest agent's numbers next to it stay exact.
#[test]
fn hostile_agent_streams_never_break_the_fold_or_the_honest_agents_numbers() {
    use crate::testlog::{agent_event, scheduled};
    use fleetbench::pb::event::Kind;
    let mut rng = Rng::new(0xbad_a9e47);
    for round in 0..300u64 {
        let mut records = vec![scheduled()];
        // The honest agent `a`: 20 windows of 10 requests of 1 ms.
        for i in 0..20u32 {
            records.push(
                OpWindow {
                    requests: 10,
                    latency_us: 1_000,
                    ..OpWindow::new("a", u64::from(i) + 1, i)
                }
                .record(),
            );
        }
        // The hostile agent `b`.
        for _ in 0..40 {
            let pick = |rng: &mut Rng, options: &[u64]| {
                options[(rng.next_u64() % options.len() as u64) as usize]
            };
            let any = rng.next_u64();
            let seq = pick(&mut rng, &[0, 1, 2, 3, u64::MAX, u64::MAX - 1, any]);
            let index = pick(&mut rng, &[0, 1, 19, 20, 1_000_000, u64::from(u32::MAX)]) as u32;
            let mut w = fleetbench::window::WindowAcc::new();
            w.record_ok(1 + rng.next_u64() % 1_000_000);
            let mut w = w.to_pb(0, index, 1000);
            w.phase_index = pick(&mut rng, &[0, 0, 0, 1, 7, u64::from(u32::MAX)]) as u32;
            w.width_ms = pick(&mut rng, &[1000, 1000, 0, 1, u64::from(u32::MAX)]) as u32;
            w.ok = pick(&mut rng, &[1, 0, u64::MAX, u64::MAX / 2, any]);
            w.bytes_sent = pick(&mut rng, &[0, u64::MAX]);
            w.scheduled = pick(&mut rng, &[0, 5, u64::MAX]);
            w.late_wakes = pick(&mut rng, &[0, u64::MAX]);
            w.errors.insert(
                ["io", "status_5xx", "no_such_class", ""][(rng.next_u64() % 4) as usize].into(),
                pick(&mut rng, &[1, u64::MAX]),
            );
            match rng.next_u64() % 4 {
                0 => {
                    w.latency_histogram = (0..rng.next_u64() % 64)
                        .map(|_| rng.next_u64() as u8)
                        .collect()
                }
                1 => {
                    let cut = w.latency_histogram.len() / 2;
                    w.latency_histogram.truncate(cut);
                }
                2 => w.send_lag_histogram = vec![0xff; 40],
                _ => {}
            }
            let clock = pick(&mut rng, &[0, i64::MAX as u64, i64::MIN as u64, 1]) as i64;
            records.push(agent_event("b", seq, clock, Kind::Window(w)));
            // Host samples with absurd values and clocks, and a clock
            // offset that takes the time past i64's range.
            let m = pb::HostMetrics {
                cpu_pct: [f32::NAN, f32::INFINITY, -1.0, 50.0][(rng.next_u64() % 4) as usize],
                net_rx_bytes: pick(&mut rng, &[0, u64::MAX, u64::MAX / 2]),
                net_tx_bytes: pick(&mut rng, &[0, u64::MAX]),
                load_1: [f64::NAN, 1.0, f64::MAX][(rng.next_u64() % 3) as usize],
                cores: 2,
                interval_ms: 1000,
                ..Default::default()
            };
            let mut sample = agent_event("b", rng.next_u64(), clock, Kind::HostMetrics(m));
            if let Some(pb::log_record::Record::AgentEvent(e)) = sample.record.as_mut() {
                e.clock_offset_us = pick(&mut rng, &[0, 1_000_000, i64::MAX as u64]) as i64;
            }
            records.push(sample);
        }
        let fold = std::panic::catch_unwind(|| {
            let mut fold = fold_of(&records);
            let report = fold.report(&ReportOptions::default());
            let json = serde_json::to_string(&report).expect("the report renders");
            fold = Fold::keeping_agent_windows(Fold::new());
            for r in &records {
                fold.apply(r);
            }
            (report, json)
        });
        let (report, _json) = fold.unwrap_or_else(|_| panic!("round {round}: the fold panicked"));
        let a = report.phases[0]
            .agents
            .iter()
            .find(|x| x.id == "a")
            .unwrap_or_else(|| panic!("round {round}: agent a is gone"));
        // 18 of its windows count (2 s of warm-up).
        assert_eq!(a.requests, 180, "round {round}: agent a's numbers changed");
    }
}

/// Stage histograms (connect, TLS, first byte) merge across agents and
/// windows like latencies: counts add, percentiles come from the merged
/// histograms, in any order; a window whose stage histogram does not
/// decode counts as bad and adds nothing.
#[test]
fn stages_merge_across_agents_in_any_order() {
    use fleetbench::pb::event::Kind;
    use fleetbench::window::{Stage, WindowAcc};
    let window = |agent: &str, seq: u64, index: u32, ttfb: u64, connects: u64| {
        let mut w = WindowAcc::new();
        for _ in 0..10 {
            w.record_ok(ttfb + 50);
            w.record_stage(Stage::Ttfb, ttfb);
        }
        for _ in 0..connects {
            w.record_stage(Stage::Connect, 80);
        }
        crate::testlog::agent_event(agent, seq, 0, Kind::Window(w.to_pb(0, index, 1000)))
    };
    let mut records = vec![crate::testlog::scheduled()];
    for i in 0..6u32 {
        records.push(window("a", u64::from(i) + 1, i, 100, 1));
        records.push(window("b", u64::from(i) + 1, i, 1000, 0));
    }
    let mut broken = window("c", 1, 3, 5, 5);
    if let Some(pb::log_record::Record::AgentEvent(e)) = broken.record.as_mut()
        && let Some(Kind::Window(w)) = e.event.as_mut().and_then(|e| e.kind.as_mut())
    {
        w.stage_histograms
            .insert("ttfb".into(), vec![0x1c, 0x84, 0x93, 0x14, 9]);
    }
    records.push(broken);
    let forward = fold_of(&records);
    let back = fold_of(&shuffled(&records, &mut Rng::new(7)));
    assert_eq!(json(&forward), json(&back));
    let f = forward;
    let r = f.report(&ReportOptions::default());
    let p = &r.phases[0];
    // 2 s of warm-up leave windows 2..6 of each agent.
    assert_eq!(p.stages_us["ttfb"].count, 80, "{:?}", p.stages_us);
    assert_eq!(p.stages_us["connect"].count, 4);
    assert_eq!(p.stages_us["connect"].p50, 80);
    let ttfb = p.stages_us["ttfb"];
    assert!(
        (100..=101).contains(&ttfb.p50) || (999..=1001).contains(&ttfb.p50),
        "{ttfb:?}"
    );
    assert!((999..=1001).contains(&ttfb.p99), "{ttfb:?}");
    assert_eq!(r.log.bad_windows, 1);
    let point = &p.timeline[p.timeline.len() - 1];
    assert!(point.stages_p50_us.contains_key("ttfb"), "{point:?}");
}
