//! An admitted but hostile agent in a real run: a pool agent enrolled with
//! `coordinator enroll`, whose "agent" is this test speaking the protocol
//! over pinned TLS, beside a real agent loading a real target. It sends
//! a window no agent can measure. The run cuts it off and says why, does
//! not wait for it, ends `invalid`, and its numbers are exactly the honest
//! agent's, which equal the target's own count.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fleetbench::pb;
use fleetbench::pb::coordinator_client::CoordinatorClient;
use tokio_stream::wrappers::ReceiverStream;

/// What the hostile client saw.
#[derive(Debug, Default)]
struct Seen {
    /// It was welcomed, and got a StartPhase.
    started: bool,
    /// The coordinator ended its link.
    ended: bool,
    /// Its next Hello's refusal: (retry, reason).
    refused: Option<(bool, String)>,
}

fn hello(c: &fleetbench::credentials::Credentials, hash: &str) -> pb::AgentMessage {
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Hello(pb::Hello {
            agent_id: c.agent_id.clone(),
            secret: c.secret.clone(),
            pool: c.pool.clone(),
            protocol: fleetbench::PROTOCOL,
            binary_hash: hash.into(),
            hostname: "hostile".into(),
            cores: 2,
            memory_bytes: 8 << 30,
            ..Default::default()
        })),
    }
}

/// Dials as the agent of `creds` until welcomed (the run may not be up
/// yet), answers pings, and at its StartPhase sends a window of five
/// trillion requests. Once its link is ended, dials once more and notes
/// the refusal.
async fn hostile(creds: &Path) -> Seen {
    let c = fleetbench::credentials::Credentials::read(creds).expect("hostile credentials");
    let hash = fleetbench::binary::file_hash(&bin("agent")).expect("agent binary hash");
    let dialer = fleetbench::tls::Dialer::new(&c.fingerprint).unwrap();
    let endpoint = fleetbench::tls::Dialer::endpoint(&c.coordinator).unwrap();
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "never welcomed: {seen:?}");
        let Ok(channel) = dialer.connect(&endpoint).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut client = CoordinatorClient::new(channel);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tx.send(hello(&c, &hash)).await.unwrap();
        let Ok(response) = client.attach(ReceiverStream::new(rx)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut inbound = response.into_inner();
        let mut welcomed = false;
        while let Ok(Some(m)) = inbound.message().await {
            match m.msg {
                Some(pb::coordinator_message::Msg::Welcome(_)) => welcomed = true,
                Some(pb::coordinator_message::Msg::Refused(r)) if seen.ended => {
                    seen.refused = Some((r.retry, r.reason));
                    return seen;
                }
                Some(pb::coordinator_message::Msg::Ping(p)) => {
                    let pong = pb::Pong {
                        coordinator_time_us: p.coordinator_time_us,
                        agent_time_us: fleetbench::clock::now_us(),
                    };
                    let _ = tx
                        .send(pb::AgentMessage {
                            msg: Some(pb::agent_message::Msg::Pong(pong)),
                        })
                        .await;
                }
                Some(pb::coordinator_message::Msg::StartPhase(s)) => {
                    seen.started = true;
                    let mut acc = fleetbench::window::WindowAcc::new();
                    acc.record_ok(500);
                    let mut w = acc.to_pb(s.phase_index, 0, 1000);
                    w.ok = 5_000_000_000_000;
                    let ev = pb::Event {
                        seq: 1,
                        agent_time_us: fleetbench::clock::now_us(),
                        kind: Some(pb::event::Kind::Window(w)),
                    };
                    let _ = tx
                        .send(pb::AgentMessage {
                            msg: Some(pb::agent_message::Msg::Event(ev)),
                        })
                        .await;
                }
                _ => {}
            }
        }
        if welcomed && seen.started {
            seen.ended = true;
        } else {
            // Refused before the run took it (benched, or not yet up).
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[test]
fn a_hostile_pool_agent_is_cut_off_and_the_honest_numbers_stand() {
    let dir = TempDir::new("hostile-agent");
    let data = dir.path();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .to_string();
    let up = coordinator(data, &["pool", "up", "h", "--listen", &listen]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let enroll = |name: &str| {
        let path = data.join(name);
        let out = coordinator(data, &["enroll", "h", "--output", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        path
    };
    let (honest_creds, hostile_creds) = (enroll("honest.creds"), enroll("hostile.creds"));
    let _honest = KillOnDrop(
        Command::new(bin("agent"))
            .args(["attach", "--credentials"])
            .arg(&honest_creds)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the honest agent"),
    );
    let hostile = std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(hostile(&hostile_creds))
    });
    let target = Target::start(&[]);
    let w = dir.write(
        "w.toml",
        &format!(
            "[agents]\npool = \"h\"\ncount = 2\nattach_timeout = \"30s\"\n\n[[phase]]\nname = \"load\"\nduration = \"4s\"\nrate = 200\n\n[phase.http]\nurl = \"{}\"\n",
            target.url()
        ),
    );
    let started = Instant::now();
    let out = coordinator(data, &["run", w.to_str().unwrap()]);
    let took = started.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "the run is invalid:\n{stderr}");
    let seen = hostile.join().expect("the hostile client");
    assert!(seen.started && seen.ended, "{seen:?}");
    let (retry, reason) = seen.refused.expect("a refusal after the cut");
    assert!(
        !retry && reason.contains("cut off") && reason.contains("ok = 5000000000000"),
        "{reason}"
    );

    let run = run_id(&out.stderr);
    let report = report_json(data, &run);
    let notices = report["notices"].to_string();
    assert!(
        notices.contains("agent enrolled-2 is cut off for the rest of the run")
            && notices.contains("ok = 5000000000000 in one window"),
        "{notices}"
    );
    assert_eq!(report["verdict"], "invalid", "{report}");
    let reasons = report["reasons"].to_string();
    assert!(
        reasons.contains("enrolled-2") && reasons.contains("lost"),
        "{reasons}"
    );
    // Only the honest agent's requests, each of them served.
    let phase = &report["phases"][0];
    let honest: Vec<_> = phase["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["id"] == "enrolled-1")
        .collect();
    assert_eq!(honest.len(), 1, "{phase}");
    assert_eq!(requests(&report, 0), target.served(), "{report}");
    assert!(requests(&report, 0) > 0);
    assert_eq!(
        report["log"]["bad_windows"], 0,
        "the bad window never reached the log"
    );
    // The phase did not wait out a lease for the cut-off agent.
    assert!(
        took < Duration::from_secs(30),
        "the run took {took:?}:\n{stderr}"
    );
}
