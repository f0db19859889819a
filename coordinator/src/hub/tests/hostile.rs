//! Admitted agents that break the hub's rules (`guard`), over real TLS
//! streams: each is cut off with its reason logged and refused for good,
//! what it logged before stays, and an honest agent beside it loses and
//! gains nothing. Then a property test: seeded random streams of honest,
//! repeated, skipping and rule-breaking events, each checked against a
//! model of what the log must hold.

use fleetbench::window::WindowAcc;
use fleetbench_gen::rng::Rng;

use super::*;
use crate::hub::guard::Limits;

/// An agent's link as the test drives it.
struct Agent {
    id: String,
    secret: String,
    tx: mpsc::Sender<pb::AgentMessage>,
    inbound: Streaming<pb::CoordinatorMessage>,
    _client: CoordinatorClient<Channel>,
}

impl Agent {
    /// Admits `id` and attaches it (welcomed), with phase 0 started on it.
    async fn attach(h: &Harness, id: &str) -> Agent {
        let secret = h.admit(id);
        let mut client = h.client().await;
        let (tx, inbound, answer) = attach(&mut client, hello(id, &h.run_id, &secret), &[]).await;
        assert!(
            matches!(answer, pb::coordinator_message::Msg::Welcome(_)),
            "{answer:?}"
        );
        assert!(h.hub.send(
            id,
            pb::coordinator_message::Msg::StartPhase(pb::StartPhase {
                phase_index: 0,
                ..Default::default()
            })
        ));
        Agent {
            id: id.into(),
            secret,
            tx,
            inbound,
            _client: client,
        }
    }

    /// Sends an event; false once the link is gone.
    async fn send(&self, ev: pb::Event) -> bool {
        self.tx
            .send(pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Event(ev)),
            })
            .await
            .is_ok()
    }

    /// Reads until the coordinator acks `through`; false if the link ends
    /// first. Answers pings (agent clock = coordinator clock).
    async fn acked(&mut self, through: u64) -> bool {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.inbound.message())
                .await
                .unwrap_or_else(|_| panic!("{}: no ack of {through} within 10 s", self.id));
            match m.ok().flatten().and_then(|m| m.msg) {
                Some(pb::coordinator_message::Msg::Ack(a)) if a.through >= through => {
                    return true;
                }
                Some(pb::coordinator_message::Msg::Ping(p)) => self.pong(&p).await,
                Some(_) => {}
                None => return false,
            }
        }
    }

    async fn pong(&self, p: &pb::Ping) {
        let _ = self
            .tx
            .send(pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Pong(pb::Pong {
                    coordinator_time_us: p.coordinator_time_us,
                    agent_time_us: fleetbench::clock::now_us(),
                })),
            })
            .await;
    }

    /// Answers pings until the hub has measured the agent's clock.
    async fn sync(&mut self, h: &Harness) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !h.hub.agents()[&self.id].synced {
            assert!(tokio::time::Instant::now() < deadline, "never synced");
            if let Ok(Ok(Some(m))) =
                tokio::time::timeout(Duration::from_millis(100), self.inbound.message()).await
                && let Some(pb::coordinator_message::Msg::Ping(p)) = m.msg
            {
                self.pong(&p).await;
            }
        }
    }

    /// Reads until the coordinator ends the link (with a deadline).
    async fn ended(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, self.inbound.message()).await {
                Err(_) => panic!("{}: the link was not ended", self.id),
                Ok(Ok(Some(_))) => {}
                Ok(_) => return,
            }
        }
    }
}

fn ev(seq: u64, kind: pb::event::Kind) -> pb::Event {
    pb::Event {
        seq,
        agent_time_us: fleetbench::clock::now_us(),
        kind: Some(kind),
    }
}

fn notice(seq: u64, message: String) -> pb::Event {
    ev(
        seq,
        pb::event::Kind::Notice(pb::AgentNotice { level: 1, message }),
    )
}

/// An honest window of `phase` with `ok` requests.
fn window(seq: u64, phase: u32, index: u32, ok: u64) -> pb::Event {
    let mut acc = WindowAcc::new();
    for i in 0..ok {
        acc.record_ok(100 + i);
    }
    ev(seq, pb::event::Kind::Window(acc.to_pb(phase, index, 1000)))
}

fn with_window(seq: u64, f: impl FnOnce(&mut pb::ResultWindow)) -> pb::Event {
    let mut e = window(seq, 0, 0, 3);
    if let Some(pb::event::Kind::Window(w)) = e.kind.as_mut() {
        f(w);
    }
    e
}

/// Requests of agent `id` in the run's results so far.
async fn requests(h: &Harness, id: &str) -> u64 {
    h.hub.flush().await.unwrap();
    let report = h.hub.fold.lock().unwrap().report(&Default::default());
    report
        .phases
        .iter()
        .flat_map(|p| p.agents.iter())
        .filter(|a| a.id == id)
        .map(|a| a.requests)
        .sum()
}

/// Each rule, broken by an agent of its own after one honest event: the
/// agent is cut off, the notice names it and the rule, its honest event
/// stays, its next Hello is refused for good, run control counts it
/// lost, and an honest agent's windows beside it are exact.
#[tokio::test]
async fn an_agent_that_breaks_a_rule_is_cut_off_and_refused_for_good() {
    let h = Harness::start().await;
    let mut honest = Agent::attach(&h, "honest").await;
    let mut honest_seq = 0;
    let cases: Vec<(&str, pb::Event, &str)> = vec![
        (
            "huge",
            notice(2, "x".repeat(2 << 20)),
            "bytes (at most 1048576)",
        ),
        (
            "chatty",
            notice(2, "y".repeat(9000)),
            "a notice of 9000 bytes",
        ),
        (
            "garbled",
            with_window(2, |w| {
                w.latency_histogram = b"\x1c\x84\x93\x14garbage".to_vec()
            }),
            "latency histogram does not decode",
        ),
        (
            "inflated",
            with_window(2, |w| w.ok = 5_000_000_000_000),
            "ok = 5000000000000 in one window",
        ),
        (
            "wide",
            with_window(2, |w| w.width_ms = 0),
            "window width 0 ms",
        ),
        (
            "elsewhere",
            window(2, 7, 0, 3),
            "phase 7, which was never started on it",
        ),
        (
            "jumpy",
            notice(5_000_000, "far ahead".into()),
            "jumped from 1 to 5000000",
        ),
        ("zero", notice(0, "seq zero".into()), "sequence number 0"),
        (
            "nan",
            ev(
                2,
                pb::event::Kind::HostMetrics(pb::HostMetrics {
                    cpu_pct: f32::NAN,
                    cores: 2,
                    ..Default::default()
                }),
            ),
            "host metric cpu_pct = NaN",
        ),
        (
            "ancient",
            pb::Event {
                agent_time_us: 1,
                ..notice(2, "from 1970".into())
            },
            "is stamped 1970-01-01",
        ),
    ];
    for (id, bad, why) in cases {
        let mut agent = Agent::attach(&h, id).await;
        if id == "ancient" {
            // The time rule holds once the agent's clock is measured.
            agent.sync(&h).await;
        }
        assert!(agent.send(window(1, 0, 0, 2)).await);
        assert!(agent.acked(1).await, "{id}: its honest event");
        agent.send(bad).await;
        // More after the bad one: none of it may reach the log.
        agent.send(window(3, 0, 1, 50)).await;
        agent.ended().await;

        let notices = h.notice(&format!("agent {id} is cut off")).await;
        let said = notices
            .iter()
            .find(|n| n.contains("is cut off") && n.contains(&format!("agent {id} ")))
            .unwrap();
        assert!(said.contains(why), "{id}: {said}");
        assert_eq!(
            requests(&h, id).await,
            2,
            "{id}: only its honest window counts"
        );
        assert_eq!(h.logged_events(id).await, 1, "{id}");
        let lost = h.hub.agent_lost(id).expect("a cut-off agent is lost");
        assert!(lost.contains(why), "{id}: {lost}");

        let mut client = h.client().await;
        let (_tx, _in, answer) =
            attach(&mut client, hello(id, &h.run_id, &agent.secret), &[]).await;
        let r = refused(answer);
        assert!(!r.retry && r.reason.contains("cut off"), "{id}: {r:?}");

        honest_seq += 1;
        assert!(
            honest
                .send(window(honest_seq, 0, honest_seq as u32, 10))
                .await
        );
        assert!(honest.acked(honest_seq).await);
    }
    assert_eq!(requests(&h, "honest").await, 10 * honest_seq);
    let report = h.hub.fold.lock().unwrap().report(&Default::default());
    assert_eq!(report.log.bad_windows, 0, "no bad window reached the log");
    drop(honest);
    h.finish().await;
}

/// A message past the hub's decoding limit (64 MiB) is refused by its
/// length, before it is read, and cuts its agent off.
#[tokio::test]
async fn a_message_past_the_limit_cuts_its_agent_off() {
    let h = Harness::start().await;
    let mut agent = Agent::attach(&h, "bulky").await;
    let bulk = pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::LateEvents(pb::LateEvents {
            run_id: "x".into(),
            events: (0..66)
                .map(|i| notice(i + 1, "z".repeat(1 << 20)))
                .collect(),
        })),
    };
    let _ = agent.tx.send(bulk).await;
    agent.ended().await;
    let notices = h.notice("agent bulky is cut off").await;
    assert!(
        notices
            .iter()
            .any(|n| n.contains("message length too large")),
        "{notices:?}"
    );
    drop(agent);
    h.finish().await;
}

/// An agent that floods is held back by its budget (the link stops
/// reading), then cut off once held back for long; an honest agent's
/// events go through meanwhile.
#[tokio::test]
async fn a_flooding_agent_is_held_back_then_cut_off() {
    let h = Harness::start().await;
    h.hub.set_limits(Limits {
        burst_events: 100.0,
        events_per_s: 500.0,
        burst_bytes: 1e9,
        bytes_per_s: 1e9,
        max_throttled: Duration::from_millis(1500),
    });
    let mut honest = Agent::attach(&h, "honest").await;
    let mut flood = Agent::attach(&h, "flood").await;
    let started = tokio::time::Instant::now();
    let tx = flood.tx.clone();
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        for seq in 1..=100_000u64 {
            let m = pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Event(notice(seq, String::new()))),
            };
            if tx.send(m).await.is_err() {
                break;
            }
            sent = seq;
        }
        sent
    });
    for seq in 1..=3 {
        assert!(honest.send(window(seq, 0, seq as u32, 4)).await);
        assert!(honest.acked(seq).await);
    }
    flood.ended().await;
    let took = started.elapsed();
    drop(flood);
    let sent = sender.await.unwrap();
    let notices = h.notice("agent flood is cut off").await;
    assert!(
        notices.iter().any(|n| n.contains("flooding:")),
        "{notices:?}"
    );
    // What got in: the burst, and the budget's rate for as long as it ran.
    let logged = h.logged_events("flood").await;
    let allowed = 100 + (500.0 * took.as_secs_f64()) as u64 + 100;
    assert!(
        logged <= allowed,
        "{logged} events logged in {took:?}: the budget allows {allowed}"
    );
    assert!(
        sent < 100_000,
        "the flood was never held back ({sent} sent)"
    );
    assert_eq!(requests(&h, "honest").await, 12);
    drop(honest);
    h.finish().await;
}

/// What one random message of a hostile agent's stream is.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// The next sequence number, an honest window of this many requests.
    Next(u64),
    /// A sequence number already sent.
    Repeat,
    /// Skips ahead a little (an outbox that dropped its oldest): honest.
    Skip(u64),
    /// Breaks a rule.
    Break(Rule),
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    Histogram,
    Count,
    Phase,
    Jump,
    Zero,
}

impl Rule {
    fn event(self, next: u64) -> (pb::Event, &'static str) {
        match self {
            Rule::Histogram => (
                with_window(next, |w| {
                    w.send_lag_histogram = vec![0x1c, 0x84, 0x93, 0x14, 1]
                }),
                "send-lag histogram does not decode",
            ),
            Rule::Count => (
                with_window(next, |w| w.scheduled = u64::MAX),
                "scheduled = 18446744073709551615",
            ),
            Rule::Phase => (window(next, 3, 0, 1), "phase 3, which was never"),
            Rule::Jump => (notice(next + 2_000_000, String::new()), "jumped"),
            Rule::Zero => (notice(0, String::new()), "sequence number 0"),
        }
    }
}

fn random_step(rng: &mut Rng) -> Step {
    match rng.next_u64() % 100 {
        0..55 => Step::Next(rng.next_u64() % 20),
        55..75 => Step::Repeat,
        75..90 => Step::Skip(2 + (rng.next_u64() % 5)),
        _ => Step::Break(match rng.next_u64() % 5 {
            0 => Rule::Histogram,
            1 => Rule::Count,
            2 => Rule::Phase,
            3 => Rule::Jump,
            _ => Rule::Zero,
        }),
    }
}

/// Seeded random streams from an admitted agent: honest events, repeats,
/// small skips and, now and then, a broken rule. The model: the log holds
/// exactly the events above the highest sequence number received so far,
/// up to the first broken rule; the agent is cut off at that rule, with
/// that reason; and an honest agent's numbers beside it stay exact.
#[tokio::test]
async fn random_streams_log_what_the_model_says() {
    let h = Harness::start().await;
    let mut honest = Agent::attach(&h, "honest").await;
    let mut honest_seq = 0;
    for seed in 0..40u64 {
        let mut rng = Rng::new(seed);
        let id = format!("random-{seed}");
        let mut agent = Agent::attach(&h, &id).await;
        let (mut high, mut events, mut requests_logged) = (0u64, 0u64, 0u64);
        let mut broke: Option<&str> = None;
        for _ in 0..(5 + (rng.next_u64() % 40)) {
            let (event, accepted_requests) = match random_step(&mut rng) {
                Step::Next(ok) => (window(high + 1, 0, high as u32, ok), Some(ok)),
                Step::Repeat if high > 0 => {
                    (notice(1 + (rng.next_u64() % high), String::new()), None)
                }
                Step::Repeat => continue,
                Step::Skip(n) => (notice(high + n, String::new()), Some(0)),
                Step::Break(rule) => {
                    let (event, why) = rule.event(high + 1);
                    broke = Some(why);
                    agent.send(event).await;
                    break;
                }
            };
            let seq = event.seq;
            assert!(agent.send(event).await, "{id}: link ended early");
            if let (Some(ok), true) = (accepted_requests, seq > high) {
                high = seq;
                events += 1;
                requests_logged += ok;
            }
        }
        match broke {
            Some(why) => {
                agent.ended().await;
                let notices = h.notice(&format!("agent {id} is cut off")).await;
                assert!(
                    notices
                        .iter()
                        .any(|n| n.contains(&format!("agent {id} ")) && n.contains(why)),
                    "{id}: {why}: {notices:?}"
                );
            }
            None => {
                // Everything sent is in once the next one is acked.
                assert!(agent.send(notice(high + 1, String::new())).await);
                assert!(agent.acked(high + 1).await, "{id}");
                events += 1;
                high += 1;
                assert!(h.hub.agent_lost(&id).is_none());
            }
        }
        assert_eq!(h.logged_events(&id).await, events, "{id}");
        assert_eq!(requests(&h, &id).await, requests_logged, "{id}");
        let report = h.hub.fold.lock().unwrap().report(&Default::default());
        let highest = report
            .log
            .agent_events
            .get(&id)
            .map_or(0, |e| e.highest_seq);
        assert!(
            highest <= high,
            "{id}: highest logged {highest}, sent {high}"
        );
        drop(agent);

        honest_seq += 1;
        assert!(
            honest
                .send(window(honest_seq, 0, honest_seq as u32, 5))
                .await
        );
        assert!(honest.acked(honest_seq).await);
    }
    assert_eq!(requests(&h, "honest").await, 5 * honest_seq);
    let report = h.hub.fold.lock().unwrap().report(&Default::default());
    assert_eq!(report.log.bad_windows, 0);
    assert_eq!(report.log.duplicate_events, 0);
    drop(honest);
    h.finish().await;
}
