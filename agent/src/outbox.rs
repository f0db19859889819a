//! The agent's outbox: every event it produced and the coordinator has not
//! yet acked, in sequence order.
//!
//! Producers (the load engine, the host-metrics sampler) `push` event kinds;
//! the outbox stamps each with the next sequence number and the agent's clock.
//! The link sends what is newer than what it already sent on the current
//! connection, and on a reconnect starts over from the coordinator's
//! `acked_through`. An event leaves the outbox only when acked. If the
//! coordinator stays away long enough for the outbox to fill, the oldest
//! events are dropped and the drop is itself reported as an event: never
//! silently.
//!
//! A pool agent serves one run after another. Sequence numbers are per run:
//! the outbox belongs to one run at a time ([`Outbox::run_id`]), and
//! [`Outbox::start_run`] moves it to the next run with a fresh sequence space,
//! handing back whatever was still unacked for the previous one so that it is
//! never sent into another run's log.

use std::collections::VecDeque;
use std::sync::Mutex;

use fleetbench::pb;
use tokio::sync::watch;

/// Events kept at most; at ~3 small events a second that is over 9 hours.
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;

pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    /// The newest sequence number pushed.
    latest: watch::Sender<u64>,
    /// The newest sequence number acked.
    acked: watch::Sender<u64>,
}

struct Inner {
    events: VecDeque<pb::Event>,
    next_seq: u64,
    acked_through: u64,
    capacity: usize,
    dropped: u64,
    /// The run these events belong to (empty until a pool agent's first run).
    run_id: String,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Outbox {
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                next_seq: 1,
                acked_through: 0,
                capacity: capacity.max(2),
                dropped: 0,
                run_id: String::new(),
            }),
            latest: watch::Sender::new(0),
            acked: watch::Sender::new(0),
        }
    }

    /// Queues an event; returns its sequence number.
    pub(crate) fn push(&self, kind: pb::event::Kind) -> u64 {
        let mut inner = self.inner.lock().expect("outbox lock is never poisoned");
        let seq = push_locked(&mut inner, kind);
        let before = inner.dropped;
        trim(&mut inner);
        // Full: the oldest were dropped. Say so in the stream itself (on the
        // first drop and then at each power of two, not on every one).
        let crossed = (before + 1..=inner.dropped).any(|n| n == 1 || n.is_power_of_two());
        if crossed {
            let (n, cap) = (inner.dropped, inner.capacity);
            push_locked(
                &mut inner,
                pb::event::Kind::Notice(pb::AgentNotice {
                    level: pb::agent_notice::Level::Error as i32,
                    message: format!(
                        "outbox full ({cap} events unacked): dropped the {n} oldest event(s)"
                    ),
                }),
            );
            trim(&mut inner);
        }
        let latest = inner.next_seq - 1;
        drop(inner);
        self.latest.send_replace(latest);
        seq
    }

    /// Drops every event with `seq <= through`.
    pub(crate) fn ack(&self, through: u64) {
        let mut inner = self.inner.lock().expect("outbox lock is never poisoned");
        if through <= inner.acked_through {
            return;
        }
        inner.acked_through = through;
        while inner.events.front().is_some_and(|e| e.seq <= through) {
            inner.events.pop_front();
        }
        drop(inner);
        self.acked.send_replace(through);
    }

    /// Clones the unacked events with `seq > after`, at most `max` of them.
    pub(crate) fn after(&self, after: u64, max: usize) -> Vec<pb::Event> {
        let inner = self.inner.lock().expect("outbox lock is never poisoned");
        let skip = inner.events.partition_point(|e| e.seq <= after);
        inner.events.iter().skip(skip).take(max).cloned().collect()
    }

    /// (lowest unacked, highest) sequence numbers; (0, 0) when empty.
    pub(crate) fn bounds(&self) -> (u64, u64) {
        let inner = self.inner.lock().expect("outbox lock is never poisoned");
        match (inner.events.front(), inner.events.back()) {
            (Some(f), Some(b)) => (f.seq, b.seq),
            _ => (0, 0),
        }
    }

    /// The run the queued events belong to.
    pub(crate) fn run_id(&self) -> String {
        let inner = self.inner.lock().expect("outbox lock is never poisoned");
        inner.run_id.clone()
    }

    /// Moves the outbox to `run_id`. The same run, or a first run with
    /// nothing queued from another, changes nothing but the name. Another
    /// run starts a fresh sequence space (from 1) and returns the events still
    /// unacked for the previous run (its coordinator went away before acking
    /// them): they must not reach the new run's log.
    pub(crate) fn start_run(&self, run_id: &str) -> Option<(String, Vec<pb::Event>)> {
        let mut inner = self.inner.lock().expect("outbox lock is never poisoned");
        if inner.run_id == run_id {
            return None;
        }
        if inner.run_id.is_empty() {
            // Events from before the first run (notices at most) join it.
            inner.run_id = run_id.to_string();
            return None;
        }
        let old_run = std::mem::replace(&mut inner.run_id, run_id.to_string());
        let left: Vec<pb::Event> = inner.events.drain(..).collect();
        inner.next_seq = 1;
        inner.acked_through = 0;
        inner.dropped = 0;
        drop(inner);
        self.latest.send_replace(0);
        self.acked.send_replace(0);
        (!left.is_empty()).then_some((old_run, left))
    }

    /// Highest sequence number pushed so far.
    pub(crate) fn latest(&self) -> u64 {
        *self.latest.borrow()
    }

    pub(crate) fn subscribe_latest(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    pub(crate) fn subscribe_acked(&self) -> watch::Receiver<u64> {
        self.acked.subscribe()
    }

    /// Waits until every event pushed so far is acked.
    pub(crate) async fn drained(&self) {
        let target = self.latest();
        let mut acked = self.subscribe_acked();
        let _ = acked.wait_for(|a| *a >= target).await;
    }
}

fn trim(inner: &mut Inner) {
    while inner.events.len() > inner.capacity {
        inner.events.pop_front();
        inner.dropped += 1;
    }
}

fn push_locked(inner: &mut Inner, kind: pb::event::Kind) -> u64 {
    let seq = inner.next_seq;
    inner.next_seq += 1;
    inner.events.push_back(pb::Event {
        seq,
        agent_time_us: fleetbench::clock::now_us(),
        kind: Some(kind),
    });
    seq
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(text: &str) -> pb::event::Kind {
        pb::event::Kind::Notice(pb::AgentNotice {
            level: 1,
            message: text.into(),
        })
    }

    #[test]
    fn ack_drops_only_what_was_acked() {
        let o = Outbox::new(100);
        for i in 0..5 {
            assert_eq!(o.push(notice(&i.to_string())), i + 1);
        }
        o.ack(3);
        assert_eq!(o.bounds(), (4, 5));
        assert_eq!(o.after(0, 10).len(), 2);
        assert_eq!(o.after(4, 10)[0].seq, 5);
        o.ack(2); // a late, smaller ack changes nothing
        assert_eq!(o.bounds(), (4, 5));
    }

    #[test]
    fn a_new_run_starts_a_fresh_sequence_and_hands_back_the_old_runs_events() {
        let o = Outbox::new(100);
        o.push(notice("before any run"));
        assert_eq!(o.start_run("a"), None, "a first run adopts what is queued");
        o.push(notice("a2"));
        o.push(notice("a3"));
        o.ack(2);
        assert_eq!(o.start_run("a"), None, "the same run changes nothing");
        assert_eq!(o.bounds(), (3, 3));
        let (old, left) = o.start_run("b").expect("run a left one event unacked");
        assert_eq!(old, "a");
        assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        assert_eq!(o.bounds(), (0, 0));
        assert_eq!(o.run_id(), "b");
        assert_eq!(o.push(notice("b1")), 1, "run b numbers from 1");
        o.ack(1);
        assert_eq!(
            o.start_run("c"),
            None,
            "nothing unacked: nothing handed back"
        );
        assert_eq!(o.push(notice("c1")), 1);
    }

    #[test]
    fn a_full_outbox_drops_oldest_and_says_so() {
        let o = Outbox::new(4);
        for i in 0..6 {
            o.push(notice(&i.to_string()));
        }
        let events = o.after(0, 100);
        assert_eq!(events.len(), 4);
        assert!(events.iter().any(|e| matches!(
            &e.kind,
            Some(pb::event::Kind::Notice(n)) if n.message.contains("dropped")
        )));
        // Sequence numbers still grow by one per event: the coordinator sees
        // the gap and the notice explaining it.
        assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    }
}
