//! The hub over real TLS sockets: a hub, its server and its writer on a
//! port and a log of their own, and clients dialing in as agents (and as
//! strangers) would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fleetbench::pb;
use fleetbench::pb::coordinator_client::CoordinatorClient;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tonic::transport::Channel;

use super::{Hub, Serving};
use crate::log::EventLog;
use crate::trust::{Trust, new_secret};

mod hostile;

/// A hub and its TLS server on a port of their own, over a log and a TLS
/// identity in a directory of their own.
struct Harness {
    data: std::path::PathBuf,
    run_id: String,
    hub: Arc<Hub>,
    addr: SocketAddr,
    fingerprint: String,
    writer_stop: CancellationToken,
    writer: tokio::task::JoinHandle<()>,
    server: Serving,
}

impl Harness {
    async fn start() -> Harness {
        let data =
            std::env::temp_dir().join(format!("fleetbench-hub-test-{}", uuid::Uuid::now_v7()));
        let run_id = uuid::Uuid::now_v7().to_string();
        let trust = Trust::load_or_create(&data).unwrap();
        let log = EventLog::open(&data, &run_id).unwrap();
        let writer_stop = CancellationToken::new();
        let (hub, writer) = Hub::start(run_id.clone(), log, writer_stop.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Serving::start(hub.clone(), trust.server_config(), listener);
        Harness {
            data,
            run_id,
            hub,
            addr,
            fingerprint: trust.fingerprint().to_string(),
            writer_stop,
            writer,
            server,
        }
    }

    /// Admits `agent_id` with a fresh secret, returned.
    fn admit(&self, agent_id: &str) -> String {
        let secret = new_secret().unwrap();
        self.hub.admit(agent_id, secret.clone());
        secret
    }

    /// A client over TLS pinned to this coordinator's certificate.
    async fn client(&self) -> CoordinatorClient<Channel> {
        let dialer = fleetbench::tls::Dialer::new(&self.fingerprint).unwrap();
        let endpoint = fleetbench::tls::Dialer::endpoint(&self.addr.to_string()).unwrap();
        CoordinatorClient::new(dialer.connect(&endpoint).await.unwrap())
    }

    /// Waits (with a deadline) until a notice containing `needle` is in
    /// the fold; returns every notice.
    async fn notice(&self, needle: &str) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            self.hub.flush().await.unwrap();
            let notices = self.hub.fold.lock().unwrap().notices.clone();
            if notices.iter().any(|n| n.contains(needle)) {
                return notices;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no notice with {needle:?} in {notices:?}"
            );
            let _ =
                tokio::time::timeout(Duration::from_millis(100), self.hub.changed.notified()).await;
        }
    }

    /// Events of `agent_id` in the log, as the fold counts them.
    async fn logged_events(&self, agent_id: &str) -> u64 {
        self.hub.flush().await.unwrap();
        let report = self.hub.fold.lock().unwrap().report(&Default::default());
        report
            .log
            .agent_events
            .get(agent_id)
            .map_or(0, |e| e.events)
    }

    async fn finish(self) {
        // Graceful: waits for open streams, which each test has ended.
        self.server
            .end(Duration::from_secs(10))
            .await
            .expect("the server stops once its streams have ended")
            .expect("the server task does not panic")
            .expect("the server ends without error");
        self.writer_stop.cancel();
        self.writer.await.unwrap();
        drop(self.hub);
        std::fs::remove_dir_all(&self.data).unwrap();
    }
}

fn event(seq: u64) -> pb::AgentMessage {
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Event(pb::Event {
            seq,
            agent_time_us: 0,
            kind: Some(pb::event::Kind::Notice(pb::AgentNotice {
                level: 1,
                message: format!("event {seq}"),
            })),
        })),
    }
}

fn hello(agent_id: &str, run_id: &str, secret: &str) -> pb::AgentMessage {
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Hello(pb::Hello {
            agent_id: agent_id.into(),
            run_id: run_id.into(),
            protocol: fleetbench::PROTOCOL,
            secret: secret.into(),
            ..Default::default()
        })),
    }
}

/// Opens an Attach stream that sends `first` and then `then` right away,
/// without waiting for the answer (as an impatient intruder would).
/// Returns the sender, the inbound stream and the first answer.
async fn attach(
    client: &mut CoordinatorClient<Channel>,
    first: pb::AgentMessage,
    then: &[pb::AgentMessage],
) -> (
    mpsc::Sender<pb::AgentMessage>,
    Streaming<pb::CoordinatorMessage>,
    pb::coordinator_message::Msg,
) {
    let (tx, rx) = mpsc::channel(64);
    tx.send(first).await.unwrap();
    for m in then {
        tx.send(m.clone()).await.unwrap();
    }
    let mut inbound = client
        .attach(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let answer = inbound
        .message()
        .await
        .unwrap()
        .and_then(|m| m.msg)
        .expect("an answer");
    (tx, inbound, answer)
}

fn refused(answer: pb::coordinator_message::Msg) -> pb::Refused {
    match answer {
        pb::coordinator_message::Msg::Refused(r) => r,
        other => panic!("expected Refused, got {other:?}"),
    }
}

/// Sends `seqs` on one attach; returns the Welcome's acked_through and
/// the highest Ack seen once `want_ack` is acked.
async fn attach_and_send(h: &Harness, secret: &str, seqs: &[u64], want_ack: u64) -> (u64, u64) {
    let mut client = h.client().await;
    let (tx, mut inbound, answer) =
        attach(&mut client, hello("buggy", &h.run_id, secret), &[]).await;
    let welcome = match answer {
        pb::coordinator_message::Msg::Welcome(w) => w.acked_through,
        other => panic!("expected Welcome, got {other:?}"),
    };
    for &s in seqs {
        tx.send(event(s)).await.unwrap();
    }
    let mut acked = 0;
    while acked < want_ack {
        match inbound.message().await.unwrap().unwrap().msg {
            Some(pb::coordinator_message::Msg::Ack(a)) => acked = a.through,
            Some(_) => {}
            None => panic!("empty message"),
        }
    }
    (welcome, acked)
}

/// A buggy (or merely reconnecting) agent that resends sequence numbers
/// the coordinator already holds gets them dropped: each is logged once,
/// acks stay cumulative, and a reattach is welcomed with what is durable.
#[tokio::test]
async fn repeated_sequence_numbers_are_logged_once() {
    let h = Harness::start().await;
    let secret = h.admit("buggy");
    let (welcome, acked) = attach_and_send(&h, &secret, &[1, 2, 3, 2, 3], 3).await;
    assert_eq!((welcome, acked), (0, 3));
    // The first link is gone once the hub says so; then reattach and
    // resend from an older point, as a confused agent would.
    wait_detached(&h, "buggy").await;
    let (welcome, acked) = attach_and_send(&h, &secret, &[2, 3, 4, 5], 5).await;
    assert_eq!((welcome, acked), (3, 5));

    h.hub.flush().await.unwrap();
    let states = h.hub.agents();
    assert_eq!(states["buggy"].duplicates, 4);
    let report = h.hub.fold.lock().unwrap().report(&Default::default());
    assert_eq!(report.log.duplicate_events, 0, "duplicates reached the log");
    assert_eq!(report.log.agent_events["buggy"].events, 5);
    assert_eq!(report.log.agent_events["buggy"].highest_seq, 5);
    h.finish().await;
}

async fn wait_detached(h: &Harness, agent_id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.hub.agents().get(agent_id).is_some_and(|s| s.connected) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{agent_id} still attached"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), h.hub.changed.notified()).await;
    }
}

/// An agent started for another run is refused, and the refusal logged.
#[tokio::test]
async fn an_agent_of_another_run_is_refused() {
    let h = Harness::start().await;
    let secret = h.admit("a1");
    let mut client = h.client().await;
    let (_tx, _inbound, answer) =
        attach(&mut client, hello("a1", "some-other-run", &secret), &[]).await;
    let r = refused(answer);
    assert!(r.reason.contains("some-other-run"), "{}", r.reason);
    assert!(!r.retry);
    h.notice("refused agent \"a1\"").await;
    assert!(h.hub.agents().is_empty());
    h.finish().await;
}

/// A client that does not speak TLS never reaches the service, even with
/// a valid secret: the connection is closed at the TLS layer, the refusal
/// is logged with the peer's address, and nothing it sent is logged.
#[tokio::test]
async fn a_plaintext_client_is_refused_at_the_tls_layer() {
    let h = Harness::start().await;
    let secret = h.admit("a1");
    let outcome = async {
        let mut client = CoordinatorClient::connect(format!("http://{}", h.addr)).await?;
        let (tx, rx) = mpsc::channel(4);
        tx.send(hello("a1", &h.run_id, &secret)).await?;
        tx.send(event(1)).await?;
        let mut inbound = client.attach(ReceiverStream::new(rx)).await?.into_inner();
        Ok::<_, Box<dyn std::error::Error>>(inbound.message().await?)
    }
    .await;
    assert!(outcome.is_err(), "a plaintext client got {outcome:?}");
    let notices = h.notice("refused a connection from 127.0.0.1:").await;
    assert!(notices.iter().any(|n| n.contains("no TLS")), "{notices:?}");
    assert_eq!(h.logged_events("a1").await, 0);
    assert!(h.hub.agents().is_empty());
    h.finish().await;
}

/// Over pinned TLS, a Hello with no secret, a wrong secret or an unknown
/// agent id is refused without saying which; the log says which, names
/// the agent and its address, and holds none of the events sent.
#[tokio::test]
async fn a_missing_or_wrong_secret_or_unknown_agent_is_refused() {
    let h = Harness::start().await;
    let secret = h.admit("a1");
    let wrong = new_secret().unwrap();
    let cases = [
        ("a1", "", "no secret presented"),
        ("a1", wrong.as_str(), "wrong secret"),
        (
            "stranger",
            secret.as_str(),
            "no agent of that id is admitted",
        ),
    ];
    for (agent_id, presented, why) in cases {
        let mut client = h.client().await;
        let (_tx, mut inbound, answer) = attach(
            &mut client,
            hello(agent_id, &h.run_id, presented),
            &[event(1), event(2)],
        )
        .await;
        let r = refused(answer);
        assert_eq!(r.reason, "unknown agent id or wrong secret");
        assert!(!r.retry);
        // The refused stream ends there.
        assert!(matches!(inbound.message().await, Ok(None)));
        let notices = h
            .notice(&format!("refused agent {agent_id:?} from 127.0.0.1:"))
            .await;
        assert!(
            notices.iter().any(|n| n.contains(why)),
            "{why}: {notices:?}"
        );
        assert!(
            notices
                .iter()
                .all(|n| !n.contains(&secret) && !n.contains(&wrong)),
            "a secret reached the log: {notices:?}"
        );
        assert_eq!(h.logged_events(agent_id).await, 0, "{agent_id}");
    }
    assert!(h.hub.agents().is_empty());
    h.finish().await;
}

/// While an agent is attached, a second link presenting its secret is
/// refused (and told to retry: it may be the agent itself, reconnecting
/// before the coordinator noticed its old link died), and nothing it
/// sends is logged. Once the first link is gone, the secret gets in.
#[tokio::test]
async fn a_second_link_with_a_live_agents_secret_is_refused() {
    let h = Harness::start().await;
    let secret = h.admit("a1");
    let mut first_client = h.client().await;
    let (first_tx, mut first_inbound, answer) =
        attach(&mut first_client, hello("a1", &h.run_id, &secret), &[]).await;
    assert!(matches!(answer, pb::coordinator_message::Msg::Welcome(_)));

    let mut client = h.client().await;
    let (_tx, _inbound, answer) = attach(
        &mut client,
        hello("a1", &h.run_id, &secret),
        &[event(1), event(2), event(3)],
    )
    .await;
    let r = refused(answer);
    assert!(r.retry, "{r:?}");
    assert!(r.reason.contains("already attached"), "{}", r.reason);
    h.notice("already attached").await;
    assert_eq!(h.logged_events("a1").await, 0);

    // The live link still works, and is the one logged.
    first_tx.send(event(1)).await.unwrap();
    loop {
        match first_inbound.message().await.unwrap().unwrap().msg {
            Some(pb::coordinator_message::Msg::Ack(a)) if a.through == 1 => break,
            _ => {}
        }
    }
    assert_eq!(h.logged_events("a1").await, 1);
    drop((first_tx, first_inbound, first_client));
    wait_detached(&h, "a1").await;

    let mut client = h.client().await;
    let (tx, inbound, answer) = attach(&mut client, hello("a1", &h.run_id, &secret), &[]).await;
    match answer {
        pb::coordinator_message::Msg::Welcome(w) => assert_eq!(w.acked_through, 1),
        other => panic!("expected Welcome, got {other:?}"),
    }
    drop((tx, inbound, client));
    h.finish().await;
}

/// A client pinned to another certificate refuses the coordinator, and
/// says so.
#[tokio::test]
async fn a_client_pinned_to_another_certificate_does_not_connect() {
    let h = Harness::start().await;
    let other = fleetbench::tls::fingerprint(b"another certificate");
    let dialer = fleetbench::tls::Dialer::new(&other).unwrap();
    let endpoint = fleetbench::tls::Dialer::endpoint(&h.addr.to_string()).unwrap();
    let e = dialer.connect(&endpoint).await.unwrap_err();
    let chain = format!("{:?}", anyhow::Error::new(e));
    assert!(chain.contains(&other), "{chain}");
    h.finish().await;
}

/// A connection that never starts its TLS handshake holds up no other,
/// and neither does a burst of refused ones.
#[tokio::test]
async fn stalled_and_refused_connections_do_not_block_the_server() {
    let h = Harness::start().await;
    let secret = h.admit("a1");
    let _silent = TcpStream::connect(h.addr).await.unwrap();
    for _ in 0..5 {
        let mut junk = TcpStream::connect(h.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut junk, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
    }
    let mut client = h.client().await;
    let (tx, inbound, answer) = attach(&mut client, hello("a1", &h.run_id, &secret), &[]).await;
    assert!(matches!(answer, pb::coordinator_message::Msg::Welcome(_)));
    drop((tx, inbound, client));
    h.finish().await;
}

/// Pool agents: one whose Hello names an earlier run gets in; one on
/// another agent binary is refused as stale (to retry) and listed; a
/// benched one and, once the doors close, any is sent away to retry. A
/// look-only hub checks the secret, notes the Hello and welcomes none.
#[tokio::test]
async fn pool_agents_are_admitted_by_binary_bench_and_doors() {
    let h = Harness::start().await;
    let (s1, s2, s3) = (
        new_secret().unwrap(),
        new_secret().unwrap(),
        new_secret().unwrap(),
    );
    h.hub.admit_pool("p1", s1.clone());
    h.hub.admit_pool("p2", s2.clone());
    h.hub.admit_pool("p3", s3.clone());
    h.hub.expect_binary("aa");
    h.hub.bench(&["p3".to_string()]);
    let pooled = |id: &str, secret: &str, hash: &str| {
        let mut m = hello(id, "an-earlier-run", secret);
        if let Some(pb::agent_message::Msg::Hello(hello)) = m.msg.as_mut() {
            hello.binary_hash = hash.into();
            hello.pool = "p".into();
        }
        m
    };
    let mut client = h.client().await;
    let (tx, inbound, answer) = attach(&mut client, pooled("p1", &s1, "aa"), &[]).await;
    match answer {
        pb::coordinator_message::Msg::Welcome(w) => assert_eq!(w.run_id, h.run_id),
        other => panic!("expected Welcome, got {other:?}"),
    }
    drop((tx, inbound));
    let (_tx, _in, answer) = attach(&mut client, pooled("p2", &s2, "bb"), &[]).await;
    let r = refused(answer);
    assert!(r.retry && r.reason.contains("stale agent"), "{r:?}");
    assert_eq!(h.hub.stale()["p2"].hello.binary_hash, "bb");
    let (_tx, _in, answer) = attach(&mut client, pooled("p3", &s3, "aa"), &[]).await;
    let r = refused(answer);
    assert!(r.retry && r.reason.contains("does not use"), "{r:?}");
    let (_tx, _in, answer) = attach(&mut client, pooled("p1", &s2, "aa"), &[]).await;
    assert!(!refused(answer).retry, "a wrong secret is refused for good");
    h.hub.close_doors();
    let (_tx, _in, answer) = attach(&mut client, pooled("p1", &s1, "aa"), &[]).await;
    let r = refused(answer);
    assert!(r.retry && r.reason.contains("is ending"), "{r:?}");
    drop((_tx, _in, client));
    h.finish().await;

    let h = Harness::start().await;
    h.hub.admit_pool("p1", s1.clone());
    h.hub.look_only();
    let mut client = h.client().await;
    let (_tx, _in, answer) = attach(&mut client, pooled("p1", &s1, "cc"), &[]).await;
    assert!(refused(answer).retry);
    let seen = &h.hub.agents()["p1"];
    assert!(!seen.connected && seen.seen_at_us > 0);
    assert_eq!(seen.hello.binary_hash, "cc");
    let (_tx2, _in2, answer) = attach(&mut client, pooled("p1", &s2, "cc"), &[]).await;
    assert!(!refused(answer).retry, "look-only still checks the secret");
    drop((_tx, _in, _tx2, _in2, client));
    h.finish().await;
}
