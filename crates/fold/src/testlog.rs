//! Builders of synthetic log records, for tests of the fold and of the
//! views that render it (feature `test-support`): two agents `a` and `b`,
//! one phase `load` of 20 one-second windows with 2 s of warm-up.

use fleetbench::pb;
use fleetbench::pb::event::Kind;
use fleetbench::pb::log_record::Record;
use fleetbench::window::{ErrorClass, WindowAcc};
use fleetbench_gen::rng::Rng;

use crate::Fold;

/// Window `index` of phase 0 from `agent` (event `seq`): up to 49 random
/// latencies of 1 µs to 10 ms, and a 5xx error one time in three.
pub fn window_event(agent: &str, seq: u64, index: u32, rng: &mut Rng) -> pb::LogRecord {
    let mut w = WindowAcc::new();
    let n = rng.next_u64() % 50;
    for _ in 0..n {
        w.record_ok(1 + rng.next_u64() % 10_000);
    }
    if rng.next_u64().is_multiple_of(3) {
        w.record_error(ErrorClass::Status5xx, Some(42));
    }
    agent_event(agent, seq, 0, Kind::Window(w.to_pb(0, index, 1000)))
}

/// Phase 0, `load`: 20 s of one-second windows, 2 s of warm-up, on agents
/// `a` and `b`.
pub fn scheduled() -> pb::LogRecord {
    pb::LogRecord {
        logged_at_us: 0,
        record: Some(Record::PhaseScheduled(pb::PhaseScheduled {
            phase_index: 0,
            name: "load".into(),
            start_at_us: 0,
            duration_ms: 20_000,
            warmup_ms: 2_000,
            window_ms: 1000,
            agent_ids: vec!["a".into(), "b".into()],
            ..Default::default()
        })),
    }
}

/// The schedule, then 20 random windows of each agent.
pub fn stream(seed: u64) -> Vec<pb::LogRecord> {
    let mut rng = Rng::new(seed);
    let mut out = vec![scheduled()];
    for agent in ["a", "b"] {
        for i in 0..20u32 {
            out.push(window_event(agent, u64::from(i) + 1, i, &mut rng));
        }
    }
    out
}

/// `agent`'s event `seq` of `kind`, at `agent_time_us` on its clock (which
/// is the coordinator's: no offset).
pub fn agent_event(agent: &str, seq: u64, agent_time_us: i64, kind: Kind) -> pb::LogRecord {
    pb::LogRecord {
        logged_at_us: 1,
        record: Some(Record::AgentEvent(pb::AgentEvent {
            agent_id: agent.into(),
            clock_offset_us: 0,
            event: Some(pb::Event {
                seq,
                agent_time_us,
                kind: Some(kind),
            }),
        })),
    }
}

/// One window of one op: `requests` of `latency_us` each, `errors` 5xx
/// (of the same latency), and the open-loop counts.
#[derive(Debug, Clone, Copy)]
pub struct OpWindow<'a> {
    /// The agent that sends it.
    pub agent: &'a str,
    /// Its event's sequence number.
    pub seq: u64,
    /// The window's index in phase 0.
    pub index: u32,
    /// The operation ("": a single-workload phase).
    pub op: &'a str,
    /// Requests that succeeded.
    pub requests: u64,
    /// Every request's latency, µs.
    pub latency_us: u64,
    /// Requests that failed (5xx).
    pub errors: u64,
    /// Sends the schedule called for.
    pub scheduled: u64,
    /// Sends whose worker woke late.
    pub late_wakes: u64,
    /// The largest such lag, µs.
    pub max_wake_lag_us: u64,
    /// Open loop: every request's send lag, µs (`None`: closed loop, no
    /// send-lag histogram).
    pub send_lag_us: Option<u64>,
}

impl<'a> OpWindow<'a> {
    /// Window `index` of agent `agent` (event `seq`), op "", nothing in it.
    pub fn new(agent: &'a str, seq: u64, index: u32) -> OpWindow<'a> {
        OpWindow {
            agent,
            seq,
            index,
            op: "",
            requests: 0,
            latency_us: 0,
            errors: 0,
            scheduled: 0,
            late_wakes: 0,
            max_wake_lag_us: 0,
            send_lag_us: None,
        }
    }

    /// The window as the agent's event in the log.
    pub fn record(&self) -> pb::LogRecord {
        let mut w = WindowAcc::new();
        for _ in 0..self.requests {
            w.record_ok(self.latency_us);
        }
        for _ in 0..self.errors {
            w.record_error(ErrorClass::Status5xx, Some(self.latency_us));
        }
        if let Some(lag) = self.send_lag_us {
            (0..self.requests + self.errors).for_each(|_| w.record_send_lag(lag));
        }
        let mut w = w.to_pb(0, self.index, 1000);
        w.op = self.op.into();
        w.scheduled = self.scheduled;
        w.late_wakes = self.late_wakes;
        w.max_wake_lag_us = self.max_wake_lag_us;
        agent_event(self.agent, self.seq, 0, Kind::Window(w))
    }
}

/// `agent`'s host metrics `m` (event `seq`) over the second up to
/// `agent_time_us`.
pub fn host_metrics(
    agent: &str,
    seq: u64,
    agent_time_us: i64,
    m: pb::HostMetrics,
) -> pb::LogRecord {
    let m = pb::HostMetrics {
        interval_ms: 1000,
        ..m
    };
    agent_event(agent, seq, agent_time_us, Kind::HostMetrics(m))
}

/// `agent` ends phase 0 as `ended` says (event `seq`), at 21 s.
pub fn phase_ended(agent: &str, seq: u64, ended: pb::PhaseEnded) -> pb::LogRecord {
    agent_event(agent, seq, 21_000_000, Kind::PhaseEnded(ended))
}

/// [`scheduled`], changed by `f`.
pub fn scheduled_with(f: impl FnOnce(&mut pb::PhaseScheduled)) -> pb::LogRecord {
    let mut r = scheduled();
    if let Some(Record::PhaseScheduled(p)) = &mut r.record {
        f(p);
    }
    r
}

/// Two agents, 20 windows, ops "read" (fast) and "write" (slow) with
/// random counts and errors; the file declares "write" first.
pub fn op_stream(seed: u64) -> Vec<pb::LogRecord> {
    let mut rng = Rng::new(seed);
    let mut out = vec![scheduled_with(|p| {
        p.ops = vec!["write".into(), "read".into()];
    })];
    for agent in ["a", "b"] {
        let mut seq = 0;
        for i in 0..20u32 {
            for (op, latency) in [("read", 100), ("write", 5000)] {
                seq += 1;
                let n = rng.next_u64() % 40;
                let errors = rng.next_u64() % 3;
                out.push(
                    OpWindow {
                        op,
                        requests: n,
                        latency_us: latency,
                        errors,
                        ..OpWindow::new(agent, seq, i)
                    }
                    .record(),
                );
            }
        }
    }
    out
}

/// A fold of `records`, in their order.
pub fn fold_of(records: &[pb::LogRecord]) -> Fold {
    let mut f = Fold::new();
    records.iter().for_each(|r| f.apply(r));
    f
}

/// A finished op-less run as logged before operations existed: run and
/// agent records, windows with errors, phase ends, host metrics, a
/// notice. Its reports are pinned in `src/testdata/`.
pub fn op_less_log() -> Vec<pb::LogRecord> {
    let rec = |logged_at_us: i64, r: Record| pb::LogRecord {
        logged_at_us,
        record: Some(r),
    };
    let mut out = vec![rec(
        0,
        Record::RunStarted(pb::RunStarted {
            run_id: "old-run".into(),
            name: "old".into(),
            started_at_us: 1_000_000,
            coordinator_version: "0.1.0".into(),
            ..Default::default()
        }),
    )];
    for id in ["a", "b"] {
        out.push(rec(
            1,
            Record::AgentAttached(pb::AgentAttached {
                hello: Some(pb::Hello {
                    agent_id: id.into(),
                    hostname: format!("host-{id}"),
                    cores: 2,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ));
    }
    out.push(scheduled());
    let mut rng = Rng::new(77);
    for (a, agent) in ["a", "b"].iter().enumerate() {
        let mut seq = 0;
        for i in 0..20u32 {
            seq += 1;
            let mut r = window_event(agent, seq, i, &mut rng);
            if let Some(Record::AgentEvent(e)) = &mut r.record {
                e.event.as_mut().unwrap().agent_time_us = 1_000_000 * (i64::from(i) + 1);
            }
            out.push(r);
            seq += 1;
            out.push(host_metrics(
                agent,
                seq,
                1_000_000 * (i64::from(i) + 1),
                pb::HostMetrics {
                    cpu_pct: 10.0 + a as f32 + i as f32,
                    mem_used_bytes: 1 << 30,
                    ..Default::default()
                },
            ));
        }
        seq += 1;
        out.push(phase_ended(
            agent,
            seq,
            pb::PhaseEnded {
                phase_index: 0,
                windows: 20,
                cpu_ms: 1500,
                threads: 1,
                ..Default::default()
            },
        ));
    }
    out.push(rec(
        9_500_000,
        Record::Notice(pb::CoordinatorNotice {
            level: "warn".into(),
            message: "something".into(),
            agent_id: "a".into(),
        }),
    ));
    out.push(rec(
        10_000_000,
        Record::RunFinished(pb::RunFinished {
            status: "completed".into(),
            reason: String::new(),
        }),
    ));
    out
}

/// Run control stops phase 0 after window `window_index` (at 1200/s), for
/// `reason`.
pub fn stop(window_index: u32, reason: &str) -> pb::LogRecord {
    pb::LogRecord {
        logged_at_us: 5,
        record: Some(Record::PhaseStopRequested(pb::PhaseStopRequested {
            phase_index: 0,
            reason: reason.into(),
            window_index,
            rate: 1200.0,
            condition_met: true,
            threshold: None,
        })),
    }
}

/// A load shape of (duration_ms, from, to) segments.
pub fn shape(segments: &[(u64, f64, f64)], arrival: &str) -> pb::LoadShape {
    pb::LoadShape {
        segments: segments
            .iter()
            .map(|&(duration_ms, from, to)| pb::RateSegment {
                duration_ms,
                from,
                to,
            })
            .collect(),
        arrival: arrival.into(),
        send_slack_us: 0,
    }
}

/// Agent `a` is late on 40 % of its sends and at 97 % CPU; agent `b` is
/// late in its warm-up only, and both are busy only after the phase ended:
/// exactly `a` is load-generator-limited.
pub fn limited_agent_log() -> Vec<pb::LogRecord> {
    let mut records = vec![scheduled()];
    for (agent, late) in [("a", 40), ("b", 0)] {
        let mut seq = 0;
        for i in 0..20u32 {
            seq += 1;
            // Late wakes in b's warm-up only: not counted.
            let late = if agent == "b" && i < 2 { 90 } else { late };
            let sched = (100, late, if late > 0 { 30_000 } else { 0 });
            records.push(
                OpWindow {
                    requests: 100,
                    latency_us: 500,
                    scheduled: sched.0,
                    late_wakes: sched.1,
                    max_wake_lag_us: sched.2,
                    ..OpWindow::new(agent, seq, i)
                }
                .record(),
            );
            seq += 1;
            let cpu = if agent == "a" { 97.0 } else { 30.0 };
            records.push(agent_cpu(agent, seq, i64::from(i) + 1, cpu));
        }
        seq += 1;
        records.push(phase_ended(
            agent,
            seq,
            pb::PhaseEnded {
                phase_index: 0,
                threads: 1,
                ..Default::default()
            },
        ));
        // Busy after the phase's 20 s: samples outside it do not count.
        for t in 21..30i64 {
            seq += 1;
            records.push(agent_cpu(agent, seq, t, 100.0));
        }
    }
    records
}

/// `agent`'s process at `cpu_pct` of one core on a two-core host, over
/// the second up to `second` (event `seq`).
fn agent_cpu(agent: &str, seq: u64, second: i64, cpu_pct: f32) -> pb::LogRecord {
    let m = pb::HostMetrics {
        agent_cpu_pct: cpu_pct,
        cores: 2,
        ..Default::default()
    };
    host_metrics(agent, seq, second * 1_000_000, m)
}

/// The run's end: RunFinished with `status` and `reason`.
pub fn finished(status: &str, reason: &str) -> pb::LogRecord {
    pb::LogRecord {
        logged_at_us: 30_000_000,
        record: Some(Record::RunFinished(pb::RunFinished {
            status: status.into(),
            reason: reason.into(),
        })),
    }
}

/// The run's start, logging `thresholds`.
pub fn started_with(thresholds: Vec<pb::Threshold>) -> pb::LogRecord {
    pb::LogRecord {
        logged_at_us: 0,
        record: Some(Record::RunStarted(pb::RunStarted {
            run_id: "r".into(),
            name: "run".into(),
            thresholds,
            ..Default::default()
        })),
    }
}

/// A threshold on `metric` in `phase` ("": the run) with `limit`, written
/// as `text`.
pub fn threshold(metric: &str, phase: &str, limit: f64, text: &str) -> pb::Threshold {
    pb::Threshold {
        metric: metric.into(),
        phase: phase.into(),
        limit,
        text: text.into(),
        ..Default::default()
    }
}

/// Service `target` (pid 4242) started and ready before phase `load`, 25
/// lines on its stderr, then killed by SIGKILL 5.5 s into the phase.
pub fn dead_service() -> Vec<pb::LogRecord> {
    let at = |logged_at_us: i64, record: Record| pb::LogRecord {
        logged_at_us,
        record: Some(record),
    };
    let state = |state: &str, pid: u32, exit_status: &str| {
        Record::ServiceState(pb::ServiceState {
            service: "target".into(),
            state: state.into(),
            pid,
            exit_status: exit_status.into(),
            ..Default::default()
        })
    };
    let mut out = vec![
        at(-2_000_000, state("started", 4242, "")),
        at(-1_000_000, state("ready", 0, "")),
    ];
    for i in 1..=25 {
        out.push(at(
            i,
            Record::ServiceOutput(pb::ServiceOutput {
                service: "target".into(),
                stream: "stderr".into(),
                data: format!("target: line {i} <&>\n").into_bytes(),
            }),
        ));
    }
    out.push(at(
        5_500_000,
        state("exited", 0, "killed by signal 9 (SIGKILL)"),
    ));
    out
}
