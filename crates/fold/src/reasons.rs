//! A run's verdict and the reasons for it, as the report carries them:
//! [`Verdict`] (passed, failed, invalid, interrupted), [`Reason`] (one fact
//! that calls for a verdict, in words) and [`ReasonKind`] (which rule found
//! it, and so which verdict it calls for). The rules themselves are
//! `verdict`'s.

use serde::Serialize;

/// How a run ended, judged from its log alone. The variants are ordered by
/// weight: a run's verdict is the heaviest its reasons call for (passed
/// when there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// It ran as planned and met every threshold.
    Passed,
    /// A threshold was crossed, every request of a phase (or operation)
    /// failed, or run control failed.
    Failed,
    /// Its numbers cannot be trusted: a service died, an agent was lost, the generator did
    /// not keep the schedule, the log has gaps or repeats, or it has no end.
    Invalid,
    /// The user stopped it (Ctrl-C, SIGTERM).
    Interrupted,
}

impl Verdict {
    /// The verdict's name, as the JSON has it ("passed", ...).
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Invalid => "invalid",
            Verdict::Interrupted => "interrupted",
        }
    }

    /// The exit code that says it: 0 passed, 1 failed, 3 invalid, 130
    /// interrupted (2 stays bad input).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::Failed => 1,
            Verdict::Invalid => 3,
            Verdict::Interrupted => 130,
        }
    }
}

/// Which rule found a reason. Each kind calls for one verdict
/// ([`ReasonKind::verdict`]). Adding a reason: a kind here, its verdict in
/// that match, and a rule in `verdict.rs`'s list (ARCHITECTURE.md, The
/// fold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// The run was stopped by the user (RunFinished "aborted").
    Interrupted,
    /// Run control failed (RunFinished "failed"), with its error.
    RunFailed,
    /// The log has no RunFinished: the run is still running, or its
    /// coordinator died.
    Incomplete,
    /// A `[[service]]` exited during the run, after it was ready.
    ServiceDied,
    /// An agent scheduled in a phase never said it ended it.
    AgentLost,
    /// Open loop: an agent did not keep the schedule (limited rule c).
    ScheduleNotKept,
    /// Agents' sequence numbers are missing from the log.
    LogGaps,
    /// Agent events are in the log more than once.
    LogDuplicates,
    /// Windows whose latency histogram could not be read, or that cannot be
    /// true (absurd width, index or counts: a buggy or hostile agent).
    BadWindows,
    /// Every request of a phase (or of one of its operations) failed.
    AllErrors,
    /// A phase ended without a single request: its agents could not run it
    /// (a target name that does not resolve, a broken message: see the
    /// notices).
    NoRequests,
    /// Requests could not be sent as rendered (error class
    /// `invalid_request`): the workload is broken.
    InvalidRequests,
    /// A threshold was crossed.
    Threshold,
    /// A threshold with `abort = true` stopped the run, and that threshold
    /// is not among those judged (`report --threshold` replaced them).
    ThresholdAbort,
}

impl ReasonKind {
    /// The verdict a reason of this kind calls for.
    pub fn verdict(self) -> Verdict {
        match self {
            ReasonKind::Interrupted => Verdict::Interrupted,
            ReasonKind::Incomplete
            | ReasonKind::ServiceDied
            | ReasonKind::AgentLost
            | ReasonKind::ScheduleNotKept
            | ReasonKind::LogGaps
            | ReasonKind::LogDuplicates
            | ReasonKind::BadWindows => Verdict::Invalid,
            ReasonKind::RunFailed
            | ReasonKind::AllErrors
            | ReasonKind::NoRequests
            | ReasonKind::InvalidRequests
            | ReasonKind::Threshold
            | ReasonKind::ThresholdAbort => Verdict::Failed,
        }
    }
}

/// One fact of the run that calls for a verdict other than passed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// The verdict it calls for (its kind's).
    pub verdict: Verdict,
    /// The rule that found it.
    pub kind: ReasonKind,
    /// The phase it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The operation it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// The agent it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// What happened, in one sentence with the measured value.
    pub message: String,
}

impl Reason {
    /// A reason of `kind` about the whole run.
    pub fn new(kind: ReasonKind, message: impl Into<String>) -> Reason {
        Reason {
            verdict: kind.verdict(),
            kind,
            phase: None,
            op: None,
            agent: None,
            message: message.into(),
        }
    }

    /// This reason, about phase `phase`.
    pub fn in_phase(mut self, phase: &str) -> Reason {
        self.phase = Some(phase.to_string());
        self
    }

    /// This reason, about operation `op` (none for "").
    pub fn for_op(mut self, op: &str) -> Reason {
        self.op = (!op.is_empty()).then(|| op.to_string());
        self
    }

    /// This reason, about agent `agent`.
    pub fn of_agent(mut self, agent: &str) -> Reason {
        self.agent = Some(agent.to_string());
        self
    }
}

/// The verdict `reasons` call for: the heaviest, passed when none.
pub fn verdict_of(reasons: &[Reason]) -> Verdict {
    reasons
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(Verdict::Passed)
}
