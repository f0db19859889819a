//! Is an agent, rather than the target, setting the numbers? The rules
//! that make a phase load-generator-limited, and their thresholds.

use fleetbench::window::LATE_WAKE_US;

/// Open loop: late wakes above this share of the scheduled sends mean the
/// agent could not keep its schedule (rule a).
pub const LATE_WAKE_SHARE: f64 = 0.01;
/// Rule (a) needs at least this many scheduled sends to judge.
pub const LATE_WAKE_MIN_SCHEDULED: u64 = 100;
/// The agent process at or above this share of the CPU it can use
/// (min(threads, cores) cores) is saturated (rule b).
pub const AGENT_CPU_SATURATED: f64 = 0.90;
/// Open loop: sends short of the schedule by more than this share, while
/// wakes were late, mean the agent fell behind (rule c).
pub const SEND_SHORTFALL: f64 = 0.05;
/// Rule (c) needs late wakes in at least this share of the scheduled sends:
/// a handful of late wakes on a busy host do not make a shortfall the
/// agent's (a target past its knee falls short on its own).
pub const SHORTFALL_LATE_SHARE: f64 = 0.001;

/// What the limited rule looks at for one agent in one phase (its measured,
/// not warm-up, windows; CPU from its metrics inside the phase).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AgentLoad {
    /// Sends the schedule called for (open loop; 0 for closed loop).
    pub scheduled: u64,
    /// Requests the agent finished (ok or failed).
    pub sent: u64,
    /// Sends whose worker woke more than 5 ms after the intended time.
    pub late_wakes: u64,
    /// The largest such lag, µs.
    pub max_wake_lag_us: u64,
    /// Event-loop probes of the agent's load threads (one per 10 ms per
    /// thread).
    pub loop_probes: u64,
    /// Probes that fired more than 5 ms late.
    pub loop_late: u64,
    /// The largest probe lag, µs.
    pub max_loop_lag_us: u64,
    /// Open loop: sends that found every connection busy at their intended
    /// time with the agent at its `max_connections`, and started late.
    pub busy_late: u64,
    /// Open loop: the largest send lag, µs.
    pub max_send_lag_us: u64,
    /// Open loop: the most connections the agent had open.
    pub connections: u32,
    /// The agent process's CPU averaged over the phase, percent of one core
    /// (None: the agent reported none).
    pub cpu_pct_mean: Option<f64>,
    /// Worker threads the agent ran the phase on (0: not known).
    pub threads: u32,
    /// The host's logical cores (0: not known).
    pub cores: u32,
}

/// Whether an agent's numbers in a phase describe the agent rather than
/// the target, and why, in words. The agent is limited when any of:
///
/// (a) late wakes exceed [`LATE_WAKE_SHARE`] (1 %) of the scheduled sends,
///     given at least [`LATE_WAKE_MIN_SCHEDULED`] (100) scheduled: its
///     workers woke more than 5 ms after the intended time, so the agent,
///     not the target, delayed the sends;
/// (b) its process CPU, averaged over the phase, is at least
///     [`AGENT_CPU_SATURATED`] (90 %) of min(threads, cores) × 100 %: it had
///     no CPU left to send faster or time requests accurately;
/// (c) open loop, it sent fewer than (1 − [`SEND_SHORTFALL`]) (95 %) of the
///     scheduled requests while over [`SHORTFALL_LATE_SHARE`] (0.1 %) of
///     them woke late, or while rule (e) held: it fell behind;
/// (d) its load threads' event-loop probes (a timer every 10 ms) fired more
///     than 5 ms late in over [`LATE_WAKE_SHARE`] (1 %) of at least
///     [`LATE_WAKE_MIN_SCHEDULED`] (100) probes: the agent's threads were
///     not running when due (CPU starvation, preemption), open or closed
///     loop alike, so its latencies include its own delays;
/// (e) open loop, over [`LATE_WAKE_SHARE`] (1 %) of at least
///     [`LATE_WAKE_MIN_SCHEDULED`] (100) scheduled sends found every
///     connection busy at their intended time with the agent at its
///     `max_connections`, so they started late: the agent's connections,
///     not the target, set the pace ("all 2 connections busy; 410 requests
///     started late by up to 1.2 s").
///
/// An empty list: not limited.
pub fn limited_reasons(load: &AgentLoad) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(late) = too_often_late(
        "sends woke",
        load.late_wakes,
        load.scheduled,
        load.max_wake_lag_us,
    ) {
        reasons.push(late);
    }
    let usable = match (load.threads, load.cores) {
        (0, c) => c,
        (t, 0) => t,
        (t, c) => t.min(c),
    };
    if let Some(cpu) = load.cpu_pct_mean
        && usable > 0
        && cpu >= AGENT_CPU_SATURATED * f64::from(usable) * 100.0
    {
        reasons.push(format!(
            "agent CPU {} of its {usable} thread{}",
            percent(cpu / (f64::from(usable) * 100.0)),
            if usable == 1 { "" } else { "s" }
        ));
    }
    if let Some(short) = schedule_not_kept(load) {
        reasons.push(short);
    }
    if let Some(late) = too_often_late(
        "its 10 ms probes fired",
        load.loop_late,
        load.loop_probes,
        load.max_loop_lag_us,
    ) {
        reasons.push(format!("its event loop ran late: {late}"));
    }
    if load.scheduled >= LATE_WAKE_MIN_SCHEDULED
        && load.busy_late as f64 > LATE_WAKE_SHARE * load.scheduled as f64
    {
        reasons.push(format!(
            "all {} connections busy; {} requests started late by up to {}",
            load.connections,
            load.busy_late,
            format_lag(load.max_send_lag_us)
        ));
    }
    reasons
}

/// Rule (c) alone, in words: open loop, the agent sent fewer than 95 % of
/// the scheduled requests while waking late, or while its connections, at
/// their cap, were all busy (rule e), so the load offered was not the
/// schedule's. It is the rule that makes a run's verdict invalid (the
/// others are warnings; ARCHITECTURE.md, The fold).
pub fn schedule_not_kept(load: &AgentLoad) -> Option<String> {
    let short =
        load.scheduled > 0 && (load.sent as f64) < (1.0 - SEND_SHORTFALL) * load.scheduled as f64;
    let waking_late = load.late_wakes as f64 > SHORTFALL_LATE_SHARE * load.scheduled as f64;
    let busy = load.busy_late as f64 > LATE_WAKE_SHARE * load.scheduled as f64;
    (short && (waking_late || busy)).then(|| {
        format!(
            "sent {} of {} scheduled requests ({} short) {}",
            load.sent,
            load.scheduled,
            percent(load.scheduled.saturating_sub(load.sent) as f64 / load.scheduled as f64),
            if waking_late {
                "while waking late"
            } else {
                "with every connection busy at max_connections"
            }
        )
    })
}

/// A lag as people read it: "850 µs", "12 ms", "1.2 s".
fn format_lag(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format_ms(us)
    } else {
        format!("{:.1} s", us as f64 / 1e6)
    }
}

/// Rules (a) and (d): `late` of `of` things (at least
/// [`LATE_WAKE_MIN_SCHEDULED`]) were more than [`LATE_WAKE_US`] late, over
/// [`LATE_WAKE_SHARE`] of them: "34% of THINGS more than 5 ms late (max
/// 230 ms)".
fn too_often_late(things: &str, late: u64, of: u64, max_lag_us: u64) -> Option<String> {
    (of >= LATE_WAKE_MIN_SCHEDULED && late as f64 > LATE_WAKE_SHARE * of as f64).then(|| {
        format!(
            "{} of {things} more than {} late (max {})",
            percent(late as f64 / of as f64),
            format_ms(LATE_WAKE_US),
            format_ms(max_lag_us)
        )
    })
}

/// A share as people read it: "34%", "1.5%".
fn percent(share: f64) -> String {
    let pct = (share * 1000.0).round() / 10.0;
    if pct >= 10.0 {
        format!("{pct:.0}%")
    } else {
        format!("{pct:.1}%")
    }
}

/// Microseconds as whole milliseconds when they are: "5 ms", "230 ms", "0.8 ms".
fn format_ms(us: u64) -> String {
    if us.is_multiple_of(1000) || us >= 10_000 {
        format!("{} ms", (us as f64 / 1000.0).round())
    } else {
        format!("{:.1} ms", us as f64 / 1000.0)
    }
}
