//! The verdict's rules and the thresholds, each on a synthetic log
//! (`testlog`): what makes a run passed, failed, invalid or interrupted,
//! and which verdict wins when several reasons hold.

use fleetbench::pb;
use fleetbench::pb::log_record::Record;

use crate::testlog::{
    OpWindow, dead_service, finished, fold_of, limited_agent_log, phase_ended, scheduled,
    scheduled_with, started_with, stop, threshold,
};
use crate::{
    Filter, Fold, Metric, ReasonKind, Report, ReportOptions, ThresholdResult, Verdict, crossed_in,
};

/// Phase `load` on agents a and b: `windows` windows each of 100 requests
/// at `latency_us`, `errors` of them failed; both end the phase.
fn ran(latency_us: u64, errors: u64) -> Vec<pb::LogRecord> {
    let mut out = vec![scheduled()];
    for agent in ["a", "b"] {
        for i in 0..20u32 {
            out.push(
                OpWindow {
                    requests: 100 - errors,
                    errors,
                    latency_us,
                    ..OpWindow::new(agent, u64::from(i) + 1, i)
                }
                .record(),
            );
        }
        out.push(phase_ended(agent, 21, pb::PhaseEnded::default()));
    }
    out
}

fn report(records: &[pb::LogRecord]) -> Report {
    fold_of(records).report(&ReportOptions::default())
}

fn kinds(r: &Report) -> Vec<ReasonKind> {
    r.reasons.iter().map(|x| x.kind).collect()
}

fn with(mut records: Vec<pb::LogRecord>, more: Vec<pb::LogRecord>) -> Vec<pb::LogRecord> {
    records.extend(more);
    records
}

#[test]
fn a_run_that_ended_as_planned_passes() {
    let r = report(&with(ran(500, 0), vec![finished("completed", "")]));
    assert_eq!(r.verdict, Verdict::Passed, "{:?}", r.reasons);
    assert!(r.reasons.is_empty());
    // The JSON says it, and leaves out the empty lists.
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("\"verdict\":\"passed\""), "{json}");
    assert!(!json.contains("\"reasons\"") && !json.contains("\"thresholds\""));
}

#[test]
fn how_the_run_ended_decides_first() {
    // No end: incomplete, invalid (live: still running).
    let r = report(&ran(500, 0));
    assert_eq!(
        (r.verdict, kinds(&r)),
        (Verdict::Invalid, vec![ReasonKind::Incomplete])
    );
    assert!(r.reasons[0].message.contains("no RunFinished"));
    let live = fold_of(&ran(500, 0)).report(&ReportOptions {
        live: true,
        ..Default::default()
    });
    assert!(
        live.reasons[0].message.contains("still running"),
        "{:?}",
        live.reasons
    );
    // Ctrl-C: interrupted, whatever else holds (here every request failed).
    let r = report(&with(
        ran(500, 100),
        vec![finished("aborted", "interrupted")],
    ));
    assert_eq!(r.verdict, Verdict::Interrupted);
    assert_eq!(
        kinds(&r),
        vec![ReasonKind::Interrupted, ReasonKind::AllErrors]
    );
    // Run control failed: failed, with its error.
    let r = report(&with(
        ran(500, 0),
        vec![finished("failed", "the log broke")],
    ));
    assert_eq!(r.verdict, Verdict::Failed);
    assert_eq!(r.reasons[0].message, "the run failed: the log broke");
}

#[test]
fn an_agent_that_never_ended_the_phase_makes_the_run_invalid() {
    let mut records = ran(500, 0);
    // Agent b's PhaseEnded is not in the log; it detached.
    records.retain(|r| !is_phase_end_of(r, "b"));
    records.push(pb::LogRecord {
        logged_at_us: 2,
        record: Some(Record::AgentAttached(pb::AgentAttached {
            hello: Some(pb::Hello {
                agent_id: "b".into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
    });
    records.push(pb::LogRecord {
        logged_at_us: 3,
        record: Some(Record::AgentDetached(pb::AgentDetached {
            agent_id: "b".into(),
            reason: "stream closed".into(),
        })),
    });
    // Run control failed past the deadline: invalid outweighs failed.
    records.push(finished(
        "failed",
        "phase \"load\": agents did not report its end",
    ));
    let r = report(&records);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(
        kinds(&r),
        vec![ReasonKind::RunFailed, ReasonKind::AgentLost]
    );
    let lost = &r.reasons[1];
    assert_eq!(
        (lost.agent.as_deref(), lost.phase.as_deref()),
        (Some("b"), Some("load"))
    );
    assert_eq!(
        lost.message,
        "agent b never ended phase load: it was lost (detached 1 time and did not come back); its last window: 19 (up to t=20s)"
    );
    // A replay that leaves agent b out does not hold it against the run.
    let mut f = Fold::with_filter(Filter {
        exclude_agents: vec!["b".into()],
        ..Default::default()
    });
    records.iter().for_each(|x| f.apply(x));
    let filtered = f.report(&ReportOptions::default());
    assert_eq!(kinds(&filtered), vec![ReasonKind::RunFailed]);
}

fn is_phase_end_of(r: &pb::LogRecord, agent: &str) -> bool {
    matches!(&r.record, Some(Record::AgentEvent(e))
        if e.agent_id == agent
            && matches!(e.event.as_ref().and_then(|e| e.kind.as_ref()),
                Some(pb::event::Kind::PhaseEnded(_))))
}

#[test]
fn only_a_schedule_not_kept_makes_a_limited_run_invalid() {
    // Agent a woke late and ran hot, but sent all it was scheduled to:
    // loudly limited, yet the run passes.
    let mut records = limited_agent_log();
    records.push(finished("completed", ""));
    let r = report(&records);
    assert!(!r.phases[0].generator_limited.is_empty());
    assert_eq!(r.verdict, Verdict::Passed, "{:?}", r.reasons);
    // An agent that sent 80 of 100 scheduled while waking late did not keep
    // the schedule: invalid.
    let mut records = vec![scheduled()];
    for i in 0..20u32 {
        records.push(
            OpWindow {
                requests: 80,
                latency_us: 500,
                scheduled: 100,
                late_wakes: 10,
                max_wake_lag_us: 9_000,
                ..OpWindow::new("a", u64::from(i) + 1, i)
            }
            .record(),
        );
    }
    records.push(phase_ended("a", 21, pb::PhaseEnded::default()));
    records.push(phase_ended("b", 1, pb::PhaseEnded::default()));
    records.push(finished("completed", ""));
    let r = report(&records);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(kinds(&r), vec![ReasonKind::ScheduleNotKept]);
    assert_eq!(
        r.reasons[0].message,
        "in phase load agent a did not keep the open-loop schedule: sent 1440 of 1800 scheduled requests (20% short) while waking late"
    );
}

#[test]
fn a_log_with_gaps_or_repeats_is_invalid() {
    let mut records = with(ran(500, 0), vec![finished("completed", "")]);
    // Agent a's event 5 never reached the log.
    let gap: Vec<pb::LogRecord> = records
        .iter()
        .filter(|r| !matches!(&r.record, Some(Record::AgentEvent(e)) if e.agent_id == "a" && e.event.as_ref().unwrap().seq == 5))
        .cloned()
        .collect();
    let r = report(&gap);
    assert_eq!(
        (r.verdict, kinds(&r)),
        (Verdict::Invalid, vec![ReasonKind::LogGaps])
    );
    assert!(
        r.reasons[0]
            .message
            .starts_with("the log lacks 1 of the agents' events")
    );
    records.push(records[3].clone());
    let r = report(&records);
    assert_eq!(kinds(&r), vec![ReasonKind::LogDuplicates]);
}

#[test]
fn a_phase_or_an_operation_whose_every_request_failed_fails_the_run() {
    let r = report(&with(ran(500, 100), vec![finished("completed", "")]));
    assert_eq!(
        (r.verdict, kinds(&r)),
        (Verdict::Failed, vec![ReasonKind::AllErrors])
    );
    assert_eq!(
        r.reasons[0].message,
        "every one of the 3600 requests of phase load failed (error rate 100%: status_5xx=3600)"
    );
    // 99 % errors is below the default limit.
    assert_eq!(
        report(&with(ran(500, 99), vec![finished("completed", "")])).verdict,
        Verdict::Passed
    );
    // One operation always fails, the other never: the op is named.
    let mut records = vec![scheduled_with(|p| p.ops = vec!["get".into(), "put".into()])];
    for (seq, (op, errors)) in [("get", 0), ("put", 10)].into_iter().enumerate() {
        records.push(
            OpWindow {
                op,
                requests: 10 - errors,
                errors,
                latency_us: 100,
                ..OpWindow::new("a", seq as u64 + 1, 5)
            }
            .record(),
        );
    }
    records.push(finished("completed", ""));
    let r = report(&records);
    let failed = r
        .reasons
        .iter()
        .find(|x| x.kind == ReasonKind::AllErrors)
        .unwrap();
    assert_eq!(
        (failed.phase.as_deref(), failed.op.as_deref()),
        (Some("load"), Some("put"))
    );
}

#[test]
fn thresholds_are_measured_over_the_headline_windows() {
    let logged = vec![
        threshold("p99", "load", 1_000.0, "load:p99<1ms"),
        threshold("p50", "", 1_000.0, "p50<1ms"),
        threshold("error_rate", "", 0.01, "error_rate<1%"),
        threshold("throughput", "load", 200.0, "load:throughput>200/s"),
        threshold("achieved_ratio", "", 0.9, "achieved_ratio>90%"),
    ];
    let mut records = vec![started_with(logged)];
    records.extend(ran(500, 2));
    records.push(finished("completed", ""));
    let r = report(&records);
    let results: Vec<(ThresholdResult, Option<f64>)> = r
        .thresholds
        .iter()
        .map(|t| (t.result, t.measured))
        .collect();
    assert_eq!(
        results,
        vec![
            (ThresholdResult::Passed, Some(500.0)),
            (ThresholdResult::Passed, Some(500.0)),
            // 2 of every 100 failed: 2 % is not below 1 %.
            (ThresholdResult::Failed, Some(0.02)),
            // 3600 requests over the 18 measured seconds.
            (ThresholdResult::Failed, Some(200.0)),
            // A closed loop has no schedule: nothing to measure, failed.
            (ThresholdResult::Failed, None),
        ]
    );
    assert_eq!(r.thresholds[3].text, "throughput 200/s, not above 200/s");
    assert_eq!(
        r.thresholds[4].text,
        "achieved_ratio not measured (above 90% wanted): no open-loop schedule in its scope"
    );
    assert_eq!(r.verdict, Verdict::Failed);
    let texts: Vec<&str> = r.reasons.iter().map(|x| x.message.as_str()).collect();
    assert_eq!(
        texts[0],
        "threshold error_rate<1%: error_rate 2%, not below 1%"
    );
    assert_eq!(r.reasons[1].phase.as_deref(), Some("load"));
    // Given other thresholds, the logged ones are not judged.
    let other = fold_of(&records).report(&ReportOptions {
        thresholds: Some(vec![threshold("max", "", 1e6, "max<1s")]),
        ..Default::default()
    });
    assert_eq!(other.verdict, Verdict::Passed, "{:?}", other.reasons);
    assert_eq!(other.thresholds.len(), 1);
}

#[test]
fn a_threshold_outside_a_replay_filter_is_skipped() {
    let mut records = vec![started_with(vec![threshold(
        "p99",
        "load",
        1.0,
        "load:p99<1us",
    )])];
    records.extend(ran(500, 0));
    records.push(finished("completed", ""));
    let mut f = Fold::with_filter(Filter {
        phases: vec!["other".into()],
        ..Default::default()
    });
    records.iter().for_each(|r| f.apply(r));
    let r = f.report(&ReportOptions::default());
    assert_eq!(r.thresholds[0].result, ThresholdResult::Skipped);
    assert_eq!(
        r.thresholds[0].text,
        "not judged: phase load is not in this report"
    );
    assert_eq!(r.verdict, Verdict::Passed);
}

#[test]
fn a_threshold_that_aborted_the_run_fails_it_and_is_not_an_interruption() {
    let mut records = vec![started_with(vec![pb::Threshold {
        abort: true,
        ..threshold("p99", "load", 100.0, "load:p99<100us")
    }])];
    records.extend(ran(500, 0));
    let mut s = stop(3, "threshold load:p99<100us crossed: p99 500us");
    if let Some(Record::PhaseStopRequested(p)) = &mut s.record {
        p.threshold = Some(0);
    }
    records.push(s);
    records.push(finished("aborted", "threshold load:p99<100us crossed"));
    let r = report(&records);
    assert_eq!(
        (r.verdict, kinds(&r)),
        (Verdict::Failed, vec![ReasonKind::Threshold])
    );
    assert_eq!(
        r.thresholds[0].aborted.as_deref(),
        Some("window 3 of phase load (p99 500us)")
    );
    assert!(
        r.reasons[0]
            .message
            .ends_with("; crossed in window 3 of phase load (p99 500us), it stopped the run"),
        "{}",
        r.reasons[0].message
    );
    // Judged against other thresholds, the run still stopped early.
    let other = fold_of(&records).report(&ReportOptions {
        thresholds: Some(Vec::new()),
        ..Default::default()
    });
    assert_eq!(kinds(&other), vec![ReasonKind::ThresholdAbort]);
    assert_eq!(other.verdict, Verdict::Failed);
}

#[test]
fn metrics_measure_and_cross_as_their_limits_say() {
    let mut f = fold_of(&ran(500, 10));
    let p = f.phases.get_mut(&0).unwrap();
    let w = p.merged(2, 2).unwrap();
    // Strictly below: equal crosses.
    let at = |t: &pb::Threshold| crossed_in(t, &w, 1.0);
    assert_eq!(at(&threshold("p99", "", 501.0, "p99<501us")), None);
    assert_eq!(
        at(&threshold("p99", "", 500.0, "p99<500us")).as_deref(),
        Some("threshold p99<500us crossed: p99 500us")
    );
    assert_eq!(
        at(&threshold("error_rate", "", 0.05, "error_rate<5%")).as_deref(),
        Some("threshold error_rate<5% crossed: error_rate 10%")
    );
    assert_eq!(
        at(&threshold("throughput", "", 199.0, "throughput>199/s")),
        None
    );
    assert!(at(&threshold("throughput", "", 200.0, "throughput>200/s")).is_some());
    // No schedule: the achieved ratio is not judged.
    assert_eq!(
        at(&threshold("achieved_ratio", "", 0.9, "achieved_ratio>90%")),
        None
    );
    assert_eq!(Metric::Throughput.format(812.34), "812.3/s");
    assert_eq!(Metric::ErrorRate.format(0.0235), "2.35%");
    assert_eq!(Metric::parse("p95"), Some(Metric::Latency(0.95)));
    assert_eq!(Metric::parse("p98"), None);
    assert_eq!(p.covered_s(0, 3), 4.0);
}

/// A service that died mid-run makes the run invalid, said once: run
/// control's "failed" is that same death, not another reason.
#[test]
fn a_service_that_died_makes_the_run_invalid() {
    let r = report(&with(
        with(ran(500, 0), dead_service()),
        vec![finished("failed", "service \"target\" (pid 4242) died")],
    ));
    assert_eq!(r.verdict, Verdict::Invalid, "{:?}", r.reasons);
    assert_eq!(kinds(&r), [ReasonKind::ServiceDied]);
    assert!(
        r.reasons[0]
            .message
            .starts_with("service \"target\" (pid 4242) died during phase load, 5.5s in: killed by signal 9 (SIGKILL)"),
        "{}",
        r.reasons[0].message
    );
    // Run control failing for another reason still says so.
    let r = report(&with(ran(500, 0), vec![finished("failed", "boom")]));
    assert_eq!(kinds(&r), [ReasonKind::RunFailed]);
}

/// A phase its agents ended without a single request (they could not run
/// it: the target's name did not resolve) fails the run; it had passed,
/// with "achieved 0 of 50".
#[test]
fn a_phase_that_made_no_request_fails() {
    let mut records = vec![scheduled()];
    for agent in ["a", "b"] {
        records.push(phase_ended(
            agent,
            1,
            pb::PhaseEnded {
                stopped_early: true,
                ..Default::default()
            },
        ));
    }
    records.push(finished("completed", ""));
    let r = report(&records);
    assert_eq!(r.verdict, Verdict::Failed, "{:?}", r.reasons);
    assert_eq!(kinds(&r), vec![ReasonKind::NoRequests]);
    assert!(
        r.reasons[0]
            .message
            .contains("ended without a single request")
    );
}
