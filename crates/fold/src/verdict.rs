//! The verdict of a run, from its log alone: a list of rules, each reading
//! the fold and the report computed from it and giving the [`Reason`]s it
//! finds; the run's verdict is the heaviest verdict they call for (passed
//! when none). `run`, `report`, `replay` and `compare` all judge here, so
//! they agree, and a past run can be judged again.
//!
//! Adding a reason: a [`ReasonKind`] (with the verdict it calls for, in
//! `reasons.rs`), a rule below that finds it, and the rule in [`RULES`].

use crate::limited::schedule_not_kept;
use crate::model::{Report, ThresholdResult};
use crate::options::ReportOptions;
use crate::reasons::{Reason, ReasonKind, Verdict, verdict_of};
use crate::state::Fold;

/// What a rule reads: the fold, the report made from it (its thresholds
/// judged already), and what the report was asked for.
pub(crate) struct Evidence<'a> {
    pub(crate) fold: &'a Fold,
    pub(crate) report: &'a Report,
    pub(crate) options: &'a ReportOptions,
}

/// One rule: the reasons it finds (none: nothing to say).
type Rule = fn(&Evidence<'_>) -> Vec<Reason>;

/// Every rule, in the order their reasons are listed.
const RULES: &[Rule] = &[
    how_it_ended,
    services_died,
    agents_lost,
    schedule_kept,
    log_whole,
    all_errors,
    no_requests,
    invalid_requests,
    thresholds,
];

/// The run's verdict and every reason for it.
pub(crate) fn judge(e: &Evidence<'_>) -> (Verdict, Vec<Reason>) {
    let reasons: Vec<Reason> = RULES.iter().flat_map(|rule| rule(e)).collect();
    (verdict_of(&reasons), reasons)
}

/// The run's last record: aborted (by the user: interrupted), failed, or
/// missing (still running, or its coordinator died: incomplete).
fn how_it_ended(e: &Evidence<'_>) -> Vec<Reason> {
    let reason = match &e.fold.finished {
        // A threshold that stopped the run aborts it too; that is a failure
        // (the `thresholds` rule says which), not an interruption.
        Some(f) if f.status == "aborted" && !stopped_by_threshold(e.fold) => Reason::new(
            ReasonKind::Interrupted,
            format!(
                "the run was aborted before its end: {}",
                if f.reason.is_empty() {
                    "no reason logged"
                } else {
                    &f.reason
                }
            ),
        ),
        // A service that died fails run control too; the `services_died`
        // rule says it, as what makes the numbers untrustworthy.
        Some(f) if f.status == "failed" && e.report.dead_services().next().is_some() => {
            return Vec::new();
        }
        Some(f) if f.status == "failed" => Reason::new(
            ReasonKind::RunFailed,
            format!("the run failed: {}", f.reason),
        ),
        Some(_) => return Vec::new(),
        None if e.options.live => Reason::new(
            ReasonKind::Incomplete,
            "the run is still running: its numbers are not final",
        ),
        None => Reason::new(
            ReasonKind::Incomplete,
            "the log has no end (no RunFinished record): its coordinator went away before the run finished",
        ),
    };
    vec![reason]
}

/// A `[[service]]` that exited after it was ready, before the run stopped
/// it: from then on the load met no service (or another process on its
/// port), so the numbers do not measure it.
fn services_died(e: &Evidence<'_>) -> Vec<Reason> {
    e.report
        .dead_services()
        .map(|s| {
            Reason::new(
                ReasonKind::ServiceDied,
                format!("{}; the numbers after that do not measure it", s.death()),
            )
        })
        .collect()
}

fn stopped_by_threshold(fold: &Fold) -> bool {
    fold.phases
        .values()
        .any(|p| p.stop.as_ref().is_some_and(|s| s.threshold.is_some()))
}

/// An agent a phase was scheduled on that never said it ended the phase:
/// its share of the load is missing. Judged once the run has ended (a live
/// or cut-off run is incomplete already).
fn agents_lost(e: &Evidence<'_>) -> Vec<Reason> {
    let fold = e.fold;
    if fold.finished.is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for p in fold.reported_phases() {
        for id in &p.agent_ids {
            let info = fold.agents.get(id);
            let host = info.map_or("", |a| a.host.as_str());
            if !fold.filter.admits(id, host) || p.agents.get(id).is_some_and(|a| a.ended.is_some())
            {
                continue;
            }
            let how = match info {
                None => "it never attached".to_string(),
                Some(a) if a.detaches >= a.attaches => format!(
                    "it was lost (detached {} time{} and did not come back)",
                    a.detaches,
                    if a.detaches == 1 { "" } else { "s" }
                ),
                Some(_) => "it stayed attached but never reported the end".to_string(),
            };
            let last = match p
                .agents
                .get(id)
                .and_then(|a| a.by_window.keys().next_back())
            {
                Some(&w) => format!(
                    "; its last window: {w} (up to t={}s)",
                    u64::from(w + 1) * u64::from(p.window_ms) / 1000
                ),
                None => "; it sent no window".to_string(),
            };
            out.push(
                Reason::new(
                    ReasonKind::AgentLost,
                    format!("agent {id} never ended phase {}: {how}{last}", p.name),
                )
                .in_phase(&p.name)
                .of_agent(id),
            );
        }
    }
    out
}

/// Open loop: an agent that fell behind its schedule (the limited rule
/// (c)): the load offered was not the one asked for.
fn schedule_kept(e: &Evidence<'_>) -> Vec<Reason> {
    let mut out = Vec::new();
    for p in &e.report.phases {
        for a in &p.agents {
            if let Some(short) = schedule_not_kept(&a.load) {
                out.push(
                    Reason::new(
                        ReasonKind::ScheduleNotKept,
                        format!(
                            "in phase {} agent {} did not keep the open-loop schedule: {short}",
                            p.name, a.id
                        ),
                    )
                    .in_phase(&p.name)
                    .of_agent(&a.id),
                );
            }
        }
    }
    out
}

/// The log lacks agents' events, repeats some, or holds unreadable windows.
fn log_whole(e: &Evidence<'_>) -> Vec<Reason> {
    let log = &e.report.log;
    let mut out = Vec::new();
    if log.seq_gaps > 0 {
        out.push(Reason::new(
            ReasonKind::LogGaps,
            format!(
                "the log lacks {} of the agents' events (missing sequence numbers): results may be missing",
                log.seq_gaps
            ),
        ));
    }
    if log.duplicate_events > 0 {
        out.push(Reason::new(
            ReasonKind::LogDuplicates,
            format!(
                "{} agent event(s) are in the log more than once (each counted once): the log was not written exactly once",
                log.duplicate_events
            ),
        ));
    }
    if log.bad_windows > 0 {
        out.push(Reason::new(
            ReasonKind::BadWindows,
            format!(
                "{} window(s) hold a latency histogram that cannot be read, or counts no window can hold (not counted)",
                log.bad_windows
            ),
        ));
    }
    out
}

/// A phase (or one of its operations) whose every request failed: the
/// default error-rate limit, 100 %, which no threshold loosens.
fn all_errors(e: &Evidence<'_>) -> Vec<Reason> {
    let mut out = Vec::new();
    for p in &e.report.phases {
        if p.requests > 0 && p.ok == 0 {
            out.push(
                Reason::new(
                    ReasonKind::AllErrors,
                    format!(
                        "every one of the {} requests of phase {} failed (error rate 100%: {})",
                        p.requests,
                        p.name,
                        classes(&p.errors)
                    ),
                )
                .in_phase(&p.name),
            );
            continue;
        }
        for op in p.ops.iter().filter(|op| op.requests > 0 && op.ok == 0) {
            out.push(
                Reason::new(
                    ReasonKind::AllErrors,
                    format!(
                        "every one of the {} requests of operation {} in phase {} failed (error rate 100%: {})",
                        op.requests,
                        op.name,
                        p.name,
                        classes(&op.errors)
                    ),
                )
                .in_phase(&p.name)
                .for_op(&op.name),
            );
        }
    }
    out
}

/// A phase whose agents all ended it without making one request, and that
/// run control did not stop: nothing was measured (its agents said why in
/// notices: a phase that cannot run on an agent ends at once).
fn no_requests(e: &Evidence<'_>) -> Vec<Reason> {
    e.report
        .phases
        .iter()
        .filter(|p| p.ended && p.requests == 0 && p.stopped.is_none() && !p.agents.is_empty())
        .map(|p| {
            Reason::new(
                ReasonKind::NoRequests,
                format!(
                    "phase {} ended without a single request: its agents could not run it (see the notices)",
                    p.name
                ),
            )
            .in_phase(&p.name)
        })
        .collect()
}

/// A phase some of whose requests could not be sent as rendered (error
/// class `invalid_request`): the workload is broken, whatever the target
/// did with the rest, so the run fails.
fn invalid_requests(e: &Evidence<'_>) -> Vec<Reason> {
    e.report
        .phases
        .iter()
        .filter_map(|p| {
            let n = p.errors.get("invalid_request").copied().unwrap_or(0);
            (n > 0).then(|| {
                Reason::new(
                    ReasonKind::InvalidRequests,
                    format!(
                        "{n} request(s) of phase {} could not be sent: a template rendered bytes a URL or header cannot hold (CR, LF, NUL, a space in a path)",
                        p.name
                    ),
                )
                .in_phase(&p.name)
            })
        })
        .collect()
}

/// "connect=12, timeout=3".
fn classes(errors: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(", ")
}

/// Each threshold that failed; and a logged threshold's stop when
/// `report --threshold` judges against others (the run still stopped).
fn thresholds(e: &Evidence<'_>) -> Vec<Reason> {
    let mut out: Vec<Reason> = e
        .report
        .thresholds
        .iter()
        .filter(|t| t.result == ThresholdResult::Failed)
        .map(|t| {
            let mut r = Reason::new(
                ReasonKind::Threshold,
                format!("threshold {}: {}", t.threshold, t.text),
            );
            r.phase = t.phase.clone();
            r.op = t.op.clone();
            r
        })
        .collect();
    if e.options.thresholds.is_some() {
        for p in e.fold.phases.values() {
            if let Some(s) = p.stop.as_ref().filter(|s| s.threshold.is_some()) {
                out.push(
                    Reason::new(
                        ReasonKind::ThresholdAbort,
                        format!(
                            "a logged threshold stopped the run in window {} of phase {}: {}",
                            s.window_index, p.name, s.reason
                        ),
                    )
                    .in_phase(&p.name),
                );
            }
        }
    }
    out
}
