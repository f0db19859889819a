//! Driving one phase: pick a common start instant, log the schedule, send
//! each agent its share, then watch the fold until every agent says the
//! phase ended: showing live progress, judging `until` and the thresholds
//! with `abort = true`, stopping the phase when one is met or the run is
//! interrupted, failing past the deadline. A threshold that stops the phase
//! stops the run: `run` tells its caller, which skips the later phases.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use fleetbench::pb;
use fleetbench::pb::coordinator_message::Msg;
use fleetbench_fold::PhaseAgg;
use fleetbench_workload::{Phase, Workload};
use tokio_util::sync::CancellationToken;

use super::plan::{self, AgentPlan, Met, StopJudge};
use super::wait::{changed, check_log, dead_service};
use crate::error::BadInput;
use crate::hub::{AgentState, Hub};
use crate::live::LiveView;

/// How long after a phase's planned end to wait for agents to report it ended.
const PHASE_GRACE: Duration = Duration::from_secs(15);
/// Lead time between scheduling a phase and its start.
const START_LEAD: Duration = Duration::from_millis(300);

/// One phase of the run, on the agents that run load.
pub(super) struct PhaseRun<'a> {
    pub hub: &'a Arc<Hub>,
    pub index: u32,
    pub phase: &'a Phase,
    pub workload: &'a Workload,
    /// The load agents, in plan order.
    pub ids: &'a [String],
}

/// Runs the phase to its end (or its stop, or the run's interrupt). Some
/// (why) when a threshold with `abort = true` stopped it: the run stops.
pub(super) async fn run(
    r: &PhaseRun<'_>,
    live: &mut LiveView,
    stop: &CancellationToken,
) -> Result<Option<String>> {
    let start_at_us = schedule(r).await?;
    let aborted = watch(r, start_at_us, live, stop).await?;
    live.phase_done();
    Ok(aborted)
}

/// Plans the phase, logs its schedule, and sends each agent its part; the
/// start instant (coordinator clock).
async fn schedule(r: &PhaseRun<'_>) -> Result<i64> {
    let (hub, phase, ids) = (r.hub, r.phase, r.ids);
    let states = hub.agents();
    let max_rtt = states.values().map(|s| s.rtt_us).max().unwrap_or(0);
    let lead = START_LEAD + Duration::from_micros(max_rtt * 4);
    let start_at_us = fleetbench::clock::now_us() + lead.as_micros() as i64;
    let mut spec = spec(phase, r.workload);
    let cores = hub.agents();
    let weights = plan::weights(r.workload, ids, |id| cores.get(id).map(|s| s.hello.cores));
    let plans = plan::plan_agents(phase, &weights);
    let workers: Vec<(&str, u32, u64)> = ids
        .iter()
        .zip(&plans)
        .filter_map(|(id, p)| {
            let hello = &states.get(id)?.hello;
            Some((hello.hostname.as_str(), p.concurrency, hello.memory_bytes))
        })
        .collect();
    plan::fits_in_memory(&phase.name, &workers).map_err(BadInput)?;
    hub.log(pb::log_record::Record::PhaseScheduled(pb::PhaseScheduled {
        phase_index: r.index,
        name: phase.name.clone(),
        start_at_us,
        duration_ms: spec.duration_ms,
        warmup_ms: spec.warmup_ms,
        window_ms: spec.window_ms,
        agent_ids: ids.to_vec(),
        shares: ids
            .iter()
            .zip(&plans)
            .map(|(id, p)| pb::AgentShare {
                agent_id: id.clone(),
                share: p.share,
                concurrency: p.concurrency,
                rate: p.rate,
                iterations: p.iterations,
            })
            .collect(),
        iterations: phase.iterations.unwrap_or(0),
        shape: spec.shape.clone(),
        ops: phase.op_names(),
    }))
    .await;
    hub.flush()
        .await
        .map_err(|e| anyhow!("the event log failed: {e}"))?;
    spec.max_agent_concurrency = plans.iter().map(|p| p.concurrency).max().unwrap_or(0);
    start(r, &spec, &plans, start_at_us, &states).await;
    Ok(start_at_us)
}

/// The phase as agents are sent it: service host names in targets expanded.
fn spec(phase: &Phase, workload: &Workload) -> pb::PhaseSpec {
    let services = &workload.services;
    let mut spec = phase.to_pb();
    for op in &mut spec.ops {
        match op.kind.as_mut() {
            Some(pb::operation::Kind::Http(h)) => {
                h.url = fleetbench_workload::expand_service_hosts(&h.url, services);
            }
            Some(pb::operation::Kind::Tcp(t)) => {
                t.address = fleetbench_workload::expand_service_hosts(&t.address, services);
            }
            _ => {}
        }
    }
    spec
}

/// Sends each agent its StartPhase (its share of the shape, its generator
/// streams, the start on its own clock); one not connected is noted.
async fn start(
    r: &PhaseRun<'_>,
    spec: &pb::PhaseSpec,
    plans: &[AgentPlan],
    start_at_us: i64,
    states: &BTreeMap<String, AgentState>,
) {
    let n = r.ids.len() as u32;
    for (i, (id, plan)) in r.ids.iter().zip(plans).enumerate() {
        let mut agent_spec = spec.clone();
        if let Some(shape) = agent_spec.shape.as_mut() {
            for s in &mut shape.segments {
                s.from *= plan.share;
                s.to *= plan.share;
            }
        }
        let generators = r
            .workload
            .generators
            .iter()
            .map(|g| g.to_pb(i as u32, n))
            .collect();
        let offset = states.get(id).map_or(0, |s| s.offset_us);
        let sent = r.hub.send(
            id,
            Msg::StartPhase(pb::StartPhase {
                phase_index: r.index,
                spec: Some(agent_spec),
                start_at_agent_us: start_at_us + offset,
                agent_index: i as u32,
                agent_count: n,
                concurrency: plan.concurrency,
                rate: plan.rate,
                iterations: plan.iterations,
                share: plan.share,
                generators,
            }),
        );
        if !sent {
            r.hub
                .notice(
                    "error",
                    id,
                    format!(
                        "agent {id} is not connected: phase {:?} runs without it",
                        r.phase.name
                    ),
                )
                .await;
        }
    }
}

/// Watches the phase until every agent says it ended: live progress, the
/// stop conditions, the run's interrupt, and the deadline past its planned
/// end. Some(why) when a threshold with `abort = true` stopped it.
async fn watch(
    r: &PhaseRun<'_>,
    start_at_us: i64,
    live: &mut LiveView,
    stop: &CancellationToken,
) -> Result<Option<String>> {
    let planned_end = start_at_us + r.phase.duration.as_micros() as i64;
    let deadline = planned_end + PHASE_GRACE.as_micros() as i64;
    let mut stopping = false;
    let mut aborted = None;
    let mut judge = StopJudge::new(r.phase);
    let aborts = aborts(r);
    let mut gone: Vec<String> = Vec::new();
    loop {
        check_log(r.hub)?;
        let (ended, met) = look(r, live, &mut judge, &aborts, stopping);
        if ended {
            break;
        }
        // An agent lost (a local one whose process exited, any one whose
        // link stayed down past its lease) will never report the end: the
        // phase goes on without it (the verdict says it was lost).
        let waiting = waiting_for(r);
        for id in &waiting {
            if gone.contains(id) {
                continue;
            }
            if let Some(how) = r.hub.agent_lost(id) {
                gone.push(id.clone());
                r.hub
                    .notice(
                        "error",
                        id,
                        format!(
                            "agent {id} is lost during phase {:?} ({how}): the rest of its share is not sent, and the phase does not wait for it",
                            r.phase.name
                        ),
                    )
                    .await;
            }
        }
        if !gone.is_empty() {
            lost_policy(r, &gone)?;
        }
        if !waiting.is_empty() && waiting.iter().all(|id| gone.contains(id)) {
            if !stopping && fleetbench::clock::now_us() < planned_end {
                // Nothing is running the phase any more: say where it ended.
                stop_now(
                    r,
                    start_at_us,
                    &format!("agent(s) {} lost", waiting.join(", ")),
                )
                .await;
            }
            break;
        }
        if let Some((w, met)) = met {
            stopping = true;
            if met.threshold.is_some() {
                aborted = Some(format!(
                    "{} in window {w} of phase {} (abort = true): the later phases were skipped",
                    met.why, r.phase.name
                ));
            }
            stop_met(r, w, met).await;
        }
        if !stopping && let Some(dead) = dead_service(r.hub) {
            stopping = true;
            stop_dead(r, start_at_us, &dead.death()).await;
        }
        if stop.is_cancelled() && !stopping {
            stopping = true;
            stop_interrupted(r, start_at_us).await;
        }
        if fleetbench::clock::now_us() > deadline {
            return Err(overdue(r));
        }
        changed(r.hub, Duration::from_millis(250)).await;
    }
    Ok(aborted)
}

/// The workload's thresholds with `abort = true` that hold in this phase
/// (its own, and the run-wide ones), with their index in the workload's list.
fn aborts(r: &PhaseRun<'_>) -> Vec<(u32, pb::Threshold)> {
    r.workload
        .thresholds
        .iter()
        .enumerate()
        .filter(|(_, t)| t.abort && t.phase.as_ref().is_none_or(|p| *p == r.phase.name))
        .map(|(i, t)| (i as u32, t.to_pb()))
        .collect()
}

/// The first stop condition windows first..=last of `p` meet: `until`,
/// then each threshold of `aborts` in order (of its operation's windows,
/// if it names one the phase has).
fn condition(
    r: &PhaseRun<'_>,
    p: &PhaseAgg,
    aborts: &[(u32, pb::Threshold)],
    first: u32,
    last: u32,
) -> Option<Met> {
    if let Some(until) = &r.phase.until
        && let Some(why) = p
            .merged(first, last)
            .and_then(|w| plan::until_met(until, &w))
    {
        return Some(Met::until(why));
    }
    aborts.iter().find_map(|(i, t)| {
        let w = p.merged_op(&t.op, first, last)?;
        fleetbench_fold::crossed_in(t, &w, p.covered_s(first, last)).map(|why| Met {
            why,
            threshold: Some(*i),
        })
    })
}

/// One look at the fold: shows live progress, judges the stop conditions
/// (unless the phase is stopping already). Whether the phase ended, and a
/// condition met.
fn look(
    r: &PhaseRun<'_>,
    live: &mut LiveView,
    judge: &mut StopJudge,
    aborts: &[(u32, pb::Threshold)],
    stopping: bool,
) -> (bool, Option<(u32, Met)>) {
    let connected = r.hub.agents().values().filter(|s| s.connected).count();
    let fold = r.hub.fold.lock().expect("never poisoned");
    live.show(
        &fold,
        r.index,
        fleetbench::clock::now_us(),
        connected,
        r.ids.len(),
    );
    let p = fold.phases.get(&r.index);
    let mut met = None;
    if let Some(p) = p
        && (r.phase.until.is_some() || !aborts.is_empty())
        && !stopping
        && let Some((done, _)) = p.last_complete_window()
    {
        met = judge.judge(done, |first, last| condition(r, p, aborts, first, last));
    }
    (p.is_some_and(|p| p.ended()), met)
}

/// A stop condition was met in window `w`: logged, said, and the phase
/// stopped.
async fn stop_met(r: &PhaseRun<'_>, w: u32, met: Met) {
    let rate = plan::rate_in_window(r.phase, w);
    r.hub
        .log(pb::log_record::Record::PhaseStopRequested(
            pb::PhaseStopRequested {
                phase_index: r.index,
                reason: met.why.clone(),
                window_index: w,
                rate,
                condition_met: true,
                threshold: met.threshold,
            },
        ))
        .await;
    eprintln!(
        "phase {:?}: stop condition met in window {w}{}: {}{}",
        r.phase.name,
        if rate > 0.0 {
            format!(" (rate {rate:.0}/s)")
        } else {
            String::new()
        },
        met.why,
        if met.threshold.is_some() {
            " (abort = true: the run stops)"
        } else {
            ""
        }
    );
    stop_agents(r);
}

/// A service died (`why`): the phase is stopped in the window it died in,
/// logged and said; the rest of the run is skipped by its caller.
async fn stop_dead(r: &PhaseRun<'_>, start_at_us: i64, why: &str) {
    let w = stop_now(r, start_at_us, why).await;
    eprintln!(
        "phase \"{}\": {why}: stopping the phase in window {w}; \
         the results after that do not measure the service",
        r.phase.name
    );
}

/// The run was interrupted: the phase is stopped.
async fn stop_interrupted(r: &PhaseRun<'_>, start_at_us: i64) {
    stop_now(r, start_at_us, "interrupted").await;
}

/// Stops the phase now, for a reason no condition judged: the stop is
/// logged in the window it falls in (with the planned rate then); that
/// window.
async fn stop_now(r: &PhaseRun<'_>, start_at_us: i64, why: &str) -> u32 {
    let w = plan::window_at(r.phase, fleetbench::clock::now_us() - start_at_us);
    r.hub
        .log(pb::log_record::Record::PhaseStopRequested(
            pb::PhaseStopRequested {
                phase_index: r.index,
                reason: why.to_string(),
                window_index: w,
                rate: plan::rate_in_window(r.phase, w),
                condition_met: false,
                ..Default::default()
            },
        ))
        .await;
    stop_agents(r);
    w
}

fn stop_agents(r: &PhaseRun<'_>) {
    for id in r.ids {
        r.hub.send(
            id,
            Msg::StopPhase(pb::StopPhase {
                phase_index: r.index,
            }),
        );
    }
}

/// `[agents] on_loss` and `min` on the agents lost in this phase: an error
/// (the run stops) when they say so.
fn lost_policy(r: &PhaseRun<'_>, gone: &[String]) -> Result<()> {
    let agents = &r.workload.agents;
    if agents.on_loss == fleetbench_workload::OnLoss::Fail {
        anyhow::bail!(
            "agent(s) {} lost during phase {:?}, and [agents] on_loss = \"fail\": the run stops",
            gone.join(", "),
            r.phase.name
        );
    }
    let left = r.ids.len().saturating_sub(gone.len());
    if let Some(min) = agents.min
        && left < min as usize
    {
        anyhow::bail!(
            "agent(s) {} lost during phase {:?}: {left} left, fewer than [agents] min = {min}: the run stops",
            gone.join(", "),
            r.phase.name
        );
    }
    Ok(())
}

/// The phase's agents that have not reported its end.
fn waiting_for(r: &PhaseRun<'_>) -> Vec<String> {
    let fold = r.hub.fold.lock().expect("never poisoned");
    r.ids
        .iter()
        .filter(|id| {
            fold.phases
                .get(&r.index)
                .and_then(|p| p.agents.get(*id))
                .is_none_or(|a| a.ended.is_none())
        })
        .cloned()
        .collect()
}

/// The error when agents have not reported the phase's end in time.
fn overdue(r: &PhaseRun<'_>) -> anyhow::Error {
    anyhow!(
        "phase {:?}: agents did not report its end within {:.0}s of its planned end: {}",
        r.phase.name,
        PHASE_GRACE.as_secs_f64(),
        waiting_for(r).join(", ")
    )
}
