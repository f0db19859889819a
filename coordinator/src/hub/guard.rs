//! What the hub takes from an admitted agent. An agent that holds a secret
//! writes into the log, but it may be buggy or hostile: each event is
//! checked before it is queued, and an agent that breaks a rule is cut off
//! for the rest of the run (its link ended, a notice logged with the
//! reason, every later Hello refused for good), so that it can neither
//! fill the coordinator's memory or disk nor put numbers into the results
//! that no agent measured. What it logged before stays, and counts.
//!
//! The rules, each one that no honest agent can break:
//! - an event is at most [`MAX_EVENT_BYTES`] encoded;
//! - its content is plausible (`fleetbench_fold::event_fault`: counts,
//!   window width and index, histograms that decode, host samples, notice
//!   length, a sequence number above 0);
//! - its sequence number skips at most [`MAX_SEQ_SKIP`] ahead (an agent's
//!   outbox drops its oldest events when full, so a skip is possible, but
//!   not of millions);
//! - a window, or a phase start or end, belongs to a phase run control
//!   started on that agent;
//! - once its clock offset is known, its time is within [`CLOCK_SLACK`] of
//!   the run (no earlier than the hub's start, no later than now);
//! - it keeps to a budget of events and bytes per second (a token bucket
//!   per agent, with a burst larger than a full outbox resent at once).
//!   Over budget, the link reads no more until the budget refills
//!   (backpressure); an agent held back for long ([`Limits`]) is flooding,
//!   and is cut off.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fleetbench::pb;
use fleetbench::pb::event::Kind;

/// The largest event an agent may send, encoded. An honest window (two
/// histograms, deflated) is a few KiB, rarely tens.
pub(super) const MAX_EVENT_BYTES: usize = 1 << 20;
/// How far a sequence number may skip ahead of the highest received.
pub(super) const MAX_SEQ_SKIP: u64 = 1_000_000;
/// How far, after its clock offset, an event's time may lie outside the
/// run: before the hub started, or after now.
pub(super) const CLOCK_SLACK: Duration = Duration::from_secs(3600);
/// The budget per agent ([`Limits::default`]): a burst of 200,000 events
/// or 256 MiB, refilled at 2,000 events and 4 MiB a second. An honest
/// agent sends a few events a second (a window per operation, a host
/// sample, a notice now and then), and after a long cut resends at most its
/// whole outbox (100,000 events) at once. Held back for 60 s in all, it is
/// flooding.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) burst_events: f64,
    pub(super) events_per_s: f64,
    pub(super) burst_bytes: f64,
    pub(super) bytes_per_s: f64,
    pub(super) max_throttled: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            burst_events: 200_000.0,
            events_per_s: 2_000.0,
            burst_bytes: 256.0 * 1024.0 * 1024.0,
            bytes_per_s: 4.0 * 1024.0 * 1024.0,
            max_throttled: Duration::from_secs(60),
        }
    }
}

/// What the hub holds per agent to judge its events.
#[derive(Debug)]
pub(super) struct Guard {
    /// The phases run control started on this agent.
    pub(super) phases: BTreeSet<u32>,
    events: Bucket,
    bytes: Bucket,
    /// How long its link was held back by the budget, in all, and how long
    /// makes it a flood.
    throttled: Duration,
    max_throttled: Duration,
    /// Events and bytes taken, for the flood's reason.
    taken_events: u64,
    taken_bytes: u64,
    since: Instant,
}

impl Guard {
    pub(super) fn new(limits: &Limits) -> Guard {
        let now = Instant::now();
        Guard {
            phases: BTreeSet::new(),
            events: Bucket::full(limits.burst_events, limits.events_per_s, now),
            bytes: Bucket::full(limits.burst_bytes, limits.bytes_per_s, now),
            throttled: Duration::ZERO,
            max_throttled: limits.max_throttled,
            taken_events: 0,
            taken_bytes: 0,
            since: now,
        }
    }
}

/// A token bucket: `tokens` refill at `rate` a second up to `cap`, and
/// may go below zero, which is the time the taker must wait.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    cap: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    fn full(cap: f64, rate: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: cap,
            cap,
            rate,
            at: now,
        }
    }

    /// Takes `n`; returns how long until the bucket is back at zero.
    fn take(&mut self, n: f64, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.cap) - n;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// What becomes of an event that broke no rule.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Take {
    /// Log it, with this clock offset.
    Log { offset_us: i64 },
    /// Received before: dropped (and counted).
    Duplicate,
}

/// What the hub knows of an agent's stream, as [`judge`] reads and moves it.
pub(super) struct Stream<'a> {
    /// Highest seq received (raised here).
    pub(super) received_through: &'a mut u64,
    /// Events received twice (counted here).
    pub(super) duplicates: &'a mut u64,
    /// Its clock offset (agent - coordinator, µs), as last measured.
    pub(super) offset_us: i64,
    /// Whether the offset was measured on this link.
    pub(super) synced: bool,
}

/// Judges event `ev` (`size` bytes encoded) of the agent whose stream and
/// guard these are, under the registry's lock: takes it from the budget,
/// then checks what only the hub knows (its sequence, its phase, its
/// time). `Ok` says what to do with it and how long the link must then
/// wait before it reads on; `Err` is the rule it broke.
pub(super) fn judge(
    state: Stream<'_>,
    guard: &mut Guard,
    ev: &pb::Event,
    size: usize,
    hub_started_us: i64,
) -> Result<(Take, Duration), String> {
    let now = Instant::now();
    let wait = guard
        .events
        .take(1.0, now)
        .max(guard.bytes.take(size as f64, now));
    guard.taken_events += 1;
    guard.taken_bytes += size as u64;
    guard.throttled += wait;
    if guard.throttled > guard.max_throttled {
        let secs = guard.since.elapsed().as_secs_f64().max(1.0);
        return Err(format!(
            "flooding: {} events ({:.1} MiB) in {secs:.0} s, held back by its budget ({:.0} events and {:.1} MiB a second) for {:.0} s",
            guard.taken_events,
            guard.taken_bytes as f64 / 1048576.0,
            guard.events.rate,
            guard.bytes.rate / 1048576.0,
            guard.throttled.as_secs_f64()
        ));
    }
    if ev.seq <= *state.received_through {
        *state.duplicates += 1;
        return Ok((Take::Duplicate, wait));
    }
    if ev.seq - *state.received_through > MAX_SEQ_SKIP {
        return Err(format!(
            "its sequence numbers jumped from {} to {}",
            state.received_through, ev.seq
        ));
    }
    let phase = match &ev.kind {
        Some(Kind::Window(w)) => Some(w.phase_index),
        Some(Kind::PhaseStarted(p)) => Some(p.phase_index),
        Some(Kind::PhaseEnded(p)) => Some(p.phase_index),
        _ => None,
    };
    if let Some(phase) = phase.filter(|p| !guard.phases.contains(p)) {
        return Err(format!(
            "it sent results for phase {phase}, which was never started on it"
        ));
    }
    if state.synced {
        let at = ev.agent_time_us.saturating_sub(state.offset_us);
        let slack = CLOCK_SLACK.as_micros() as i64;
        let now_us = fleetbench::clock::now_us();
        if at < hub_started_us - slack || at > now_us + slack {
            return Err(format!(
                "event {} is stamped {}, {:.0} h away from this run",
                ev.seq,
                fleetbench::clock::rfc3339(at),
                (if at < hub_started_us {
                    hub_started_us - at
                } else {
                    at - now_us
                }) as f64
                    / 3.6e9
            ));
        }
    }
    *state.received_through = ev.seq;
    Ok((
        Take::Log {
            offset_us: state.offset_us,
        },
        wait,
    ))
}

/// Why `ev`, `size` bytes encoded, cannot come from an honest agent, by
/// itself: too large, or not plausible.
pub(super) fn event_fault(ev: &pb::Event, size: usize) -> Option<String> {
    if size > MAX_EVENT_BYTES {
        return Some(format!(
            "event {} is {size} bytes (at most {MAX_EVENT_BYTES})",
            ev.seq
        ));
    }
    fleetbench_fold::event_fault(ev).map(|why| format!("event {}: {why}", ev.seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lets_its_burst_through_then_makes_the_taker_wait() {
        let t0 = Instant::now();
        let mut b = Bucket::full(10.0, 5.0, t0);
        for _ in 0..10 {
            assert_eq!(b.take(1.0, t0), Duration::ZERO);
        }
        // The 11th is one token short: 1/5 s at 5 a second.
        assert_eq!(b.take(1.0, t0), Duration::from_millis(200));
        // A second later 5 came back: 4 to spare after the debt.
        assert_eq!(b.take(0.0, t0 + Duration::from_secs(1)), Duration::ZERO);
        assert!((b.tokens - 4.0).abs() < 1e-9);
        // Never above the cap, however long it rests.
        b.take(0.0, t0 + Duration::from_secs(3600));
        assert!((b.tokens - 10.0).abs() < 1e-9);
    }
}
