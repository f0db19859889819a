//! Faults: a link cut mid-phase, a coordinator killed mid-run. Nothing acked
//! may be lost and nothing may be logged twice.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// A TCP proxy that can cut every connection through it and refuse new ones
/// until restored: a network partition between agents and coordinator.
struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
}

struct ProxyState {
    open: bool,
    conns: Vec<TcpStream>,
    accepted: u64,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState {
            open: true,
            conns: Vec::new(),
            accepted: 0,
        }));
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mut s = st.lock().unwrap();
                if !s.open {
                    drop(client); // refused: closed at once
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                s.accepted += 1;
                s.conns.push(client.try_clone().unwrap());
                s.conns.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { addr, state }
    }

    /// Breaks every connection and refuses new ones.
    fn cut(&self) {
        let mut s = self.state.lock().unwrap();
        s.open = false;
        for c in s.conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.state.lock().unwrap().open = true;
    }

    fn accepted(&self) -> u64 {
        self.state.lock().unwrap().accepted
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn live_report(dir: &TempDir) -> Option<serde_json::Value> {
    let out = coordinator(dir.path(), &["report", "latest", "--format", "json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// `coordinator run WORKLOAD --json` in the background, its agents dialing
/// it through `proxy` (which forwards to `listen`); stdout piped.
fn run_through(
    dir: &TempDir,
    workload: &Path,
    listen: SocketAddr,
    proxy: &Proxy,
) -> std::process::Child {
    std::process::Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", workload.to_str().unwrap(), "--json"])
        .args([
            "--listen",
            &listen.to_string(),
            "--advertise",
            &proxy.addr.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The pid of local agent `agent` of the running run in `dir`, once it has
/// sent requests in phase 0.
fn pid_of_loading_agent(dir: &TempDir, agent: &str) -> nix::unistd::Pid {
    let needle = format!("{}/runs/", dir.path().display());
    let creds = format!("{agent}.creds");
    let pid = wait_for(
        &format!("agent {agent} to load phase 0"),
        Duration::from_secs(20),
        || {
            let r = live_report(dir)?;
            let agents = r["phases"][0]["agents"].as_array()?;
            if !agents
                .iter()
                .any(|a| a["id"] == agent && a["requests"].as_u64() > Some(0))
            {
                return None;
            }
            pids_mentioning(&needle).into_iter().find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&creds))
            })
        },
    );
    nix::unistd::Pid::from_raw(pid)
}

/// Two local agents, then two open-loop synthetic phases, "one" (`first`
/// long) and "two" (2 s), at 400/s; `agents_extra` goes into `[agents]`.
fn two_phases(agents_extra: &str, first: &str) -> String {
    format!(
        "[agents]\nlocal = 2\n{agents_extra}\n[[phase]]\nname = \"one\"\nduration = \"{first}\"\nrate = 400\n\n[phase.synthetic]\nlatency = \"1ms\"\n\n[[phase]]\nname = \"two\"\nduration = \"2s\"\nrate = 400\n\n[phase.synthetic]\nlatency = \"1ms\"\n"
    )
}

/// Kills (SIGKILL) every process whose command line holds `needle` when
/// dropped: what a failed test leaves running.
struct KillMentioning(String);

impl Drop for KillMentioning {
    fn drop(&mut self) {
        for pid in pids_mentioning(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The agent-to-coordinator link is cut mid-phase, then restored: the agents
/// reconnect, resend what was not acked, and the log holds every window of
/// every agent exactly once, with no gap in any agent's sequence numbers.
#[test]
fn cut_link_reconnects_and_logs_each_window_exactly_once() {
    let dir = TempDir::new("cut");
    let w = dir.write("w.toml", &synthetic_workload("8s"));
    let listen = free_port();
    let proxy = Proxy::start(listen);
    let child = run_through(&dir, &w, listen, &proxy);
    wait_for("two windows logged", Duration::from_secs(20), || {
        let r = live_report(&dir)?;
        (r["phases"][0]["timeline"].as_array()?.len() >= 2).then_some(())
    });
    proxy.cut();
    wait_for("both agents detached", Duration::from_secs(10), || {
        let r = live_report(&dir)?;
        let agents = r["agents"].as_array()?;
        (agents.len() == 2 && agents.iter().all(|a| a["detaches"].as_u64() >= Some(1)))
            .then_some(())
    });
    // The partition lasts a while: windows pile up unacked on the agents.
    std::thread::sleep(Duration::from_secs(2));
    let before = proxy.accepted();
    proxy.restore();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "run failed");
    assert!(
        proxy.accepted() >= before + 2,
        "agents did not reconnect through the proxy"
    );

    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for a in report["agents"].as_array().unwrap() {
        assert!(
            a["attaches"].as_u64().unwrap() >= 2,
            "agent did not reattach: {a}"
        );
    }
    for a in report["phases"][0]["agents"].as_array().unwrap() {
        assert_eq!(a["windows"], 8, "every window once: {a}");
        assert_eq!(a["ended"], true, "{a}");
    }
    let log = &report["log"];
    assert_eq!(log["duplicate_events"], 0, "{log}");
    assert_eq!(log["seq_gaps"], 0, "{log}");
    for (id, e) in log["agent_events"].as_object().unwrap() {
        assert_eq!(e["highest_seq"], e["events"], "agent {id} has a gap: {e}");
    }
    // The log read back agrees with what the run printed.
    assert_eq!(report_json(dir.path(), "latest"), report);
}

/// The coordinator is killed with SIGKILL mid-run: the log opens, the run is
/// listed as incomplete, it can be reported on, and every event an agent saw
/// acked is in the log.
#[test]
fn sigkill_of_the_coordinator_loses_no_acked_event() {
    let dir = TempDir::new("kill");
    let acks = dir.path().join("acks");
    std::fs::create_dir_all(&acks).unwrap();
    let w = dir.write("w.toml", &synthetic_workload("60s"));
    let mut child = std::process::Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", w.to_str().unwrap()])
        .env("FLEETBENCH_ACK_TRACE", &acks)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    wait_for("three windows logged", Duration::from_secs(20), || {
        let r = live_report(&dir)?;
        (r["phases"][0]["timeline"].as_array()?.len() >= 3).then_some(())
    });
    nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    // The agents die with their coordinator (see the test below); what
    // they saw acked is in their trace files. Stop any that has not yet.
    let acked: Vec<(String, u64)> = std::fs::read_dir(&acks)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let n = std::fs::read_to_string(e.path())
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            (e.file_name().to_string_lossy().into_owned(), n)
        })
        .collect();
    // Each local agent leads a process group of its own.
    for pid in pids_mentioning(&dir.path().display().to_string()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert_eq!(acked.len(), 2, "both agents saw acks: {acked:?}");

    let runs = coordinator(dir.path(), &["runs"]);
    assert!(runs.status.success(), "{}", text(&runs.stderr));
    assert!(
        text(&runs.stdout).contains("incomplete"),
        "{}",
        text(&runs.stdout)
    );
    let report = report_json(dir.path(), "latest");
    assert_eq!(report["status"], "incomplete");
    assert!(report["phases"][0]["timeline"].as_array().unwrap().len() >= 3);
    let events = &report["log"]["agent_events"];
    for (agent, acked) in &acked {
        let e = &events[agent];
        assert!(
            e["highest_seq"].as_u64().unwrap() >= *acked,
            "agent {agent}: acked through {acked} but the log holds {e}"
        );
        assert_eq!(e["highest_seq"], e["events"], "agent {agent}: gap in {e}");
    }
    let table = coordinator(dir.path(), &["report", "latest"]);
    assert!(text(&table.stdout).contains("incomplete"));
}

/// Nothing of a run outlives its coordinator on its machine, even a
/// SIGKILLed one: the local agents and the local service die with it (the
/// kernel's parent-death signal), so the next run cannot benchmark a
/// leftover. Before, the service ran on forever and the agents for minutes.
#[test]
fn a_sigkilled_coordinator_leaves_no_local_agent_or_service() {
    let dir = TempDir::new("kill-orphans");
    let record = dir.path().join("served.txt");
    let w = dir.write(
        "w.toml",
        &format!(
            "{}\n[[service]]\nname = \"target\"\ncommand = [\"{{agent}}\", \"serve\", \"--listen\", \"127.0.0.1:0\", \"--record\", {:?}]\n",
            synthetic_workload("60s"),
            record.display().to_string()
        ),
    );
    let mut child = std::process::Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", w.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let coordinator_pid = child.id() as i32;
    let needle = dir.path().display().to_string();
    let others = || -> Vec<i32> {
        pids_mentioning(&needle)
            .into_iter()
            .filter(|p| *p != coordinator_pid && !gone(*p))
            .collect()
    };
    wait_for(
        "both agents and the service",
        Duration::from_secs(20),
        || {
            let pids = others();
            (pids.len() >= 3 && live_report(&dir).is_some()).then_some(pids)
        },
    );
    let started = others();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(coordinator_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    // Whatever outlives the wait below is killed when the test ends.
    let _leftovers = KillMentioning(needle.clone());
    wait_for(
        "the agents and the service to die with their coordinator",
        Duration::from_secs(10),
        || started.iter().all(|p| gone(*p)).then_some(()),
    );
}

/// A local agent killed mid-phase: the phase goes on without it and ends on
/// time (no waiting out the 15 s grace for an agent whose process is gone,
/// which failed the run with exit 1), the next phase runs without it, its
/// unsent share stays in "offered" (so "achieved" reads short), and the
/// verdict is invalid, naming the agent and its last window.
#[test]
fn a_local_agent_killed_mid_phase_is_not_waited_for_and_its_share_stays_offered() {
    let dir = TempDir::new("kill-agent");
    let w = dir.write("w.toml", &two_phases("", "4s"));
    let mut run = Background::coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    let victim = pid_of_loading_agent(&dir, "local-2");
    nix::sys::signal::kill(victim, nix::sys::signal::Signal::SIGKILL).unwrap();
    let code = run.wait(Duration::from_secs(60));
    assert_eq!(code, Some(3), "{}", run.stderr);
    let report = report_json(dir.path(), "latest");
    let reasons = report["reasons"].as_array().unwrap();
    for phase in ["one", "two"] {
        assert!(
            reasons.iter().any(|r| r["kind"] == "agent_lost"
                && r["phase"] == phase
                && r["agent"] == "local-2"),
            "{phase}: {reasons:?}"
        );
    }
    for i in 0..2 {
        let p = &report["phases"][i];
        let (offered, sent) = (
            p["scheduled"].as_u64().unwrap(),
            p["requests"].as_u64().unwrap(),
        );
        // Phase one: 1,600 offered, the lost agent's last two seconds or
        // so unsent; phase two: 800 offered, half of it unsent.
        assert!(
            offered >= 790 * (2 - i as u64),
            "phase {i}: offered {offered}"
        );
        assert!(
            sent * 10 < offered * 9,
            "phase {i}: achieved {sent} of {offered}"
        );
    }
}

/// `[agents] on_loss = "fail"`: losing an agent mid-phase stops the run at
/// once (the second phase never runs), and the run says why.
#[test]
fn on_loss_fail_stops_the_run_when_an_agent_is_lost() {
    let dir = TempDir::new("on-loss-fail");
    let w = dir.write("w.toml", &two_phases("on_loss = \"fail\"\n", "20s"));
    let mut run = Background::coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    let victim = pid_of_loading_agent(&dir, "local-2");
    nix::sys::signal::kill(victim, nix::sys::signal::Signal::SIGKILL).unwrap();
    let code = run.wait(Duration::from_secs(30));
    assert_ne!(code, Some(0), "{}", run.stderr);
    let report = report_json(dir.path(), "latest");
    assert_eq!(report["status"], "failed", "{}", report["reason"]);
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("on_loss = \"fail\""),
        "{}",
        report["reason"]
    );
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 1, "phase two ran: {phases:?}");
    assert!(
        phases[0]["duration_s"].as_f64().unwrap() < 15.0,
        "{}",
        phases[0]
    );
}

/// Agents whose link stays down past their lease are lost: the phase stops
/// waiting for them (rather than waiting out its planned end and a 15 s
/// grace, then failing with exit 1), and the verdict says they were lost,
/// with what they sent counted and their unsent share still offered.
#[test]
fn agents_cut_off_past_their_lease_are_lost_not_waited_for() {
    let dir = TempDir::new("cut-for-good");
    let w = dir.write(
        "w.toml",
        "[agents]\nlocal = 2\n\n[[phase]]\nname = \"load\"\nduration = \"60s\"\nrate = 200\n\n[phase.synthetic]\nlatency = \"1ms\"\n",
    );
    let listen = free_port();
    let proxy = Proxy::start(listen);
    let started = std::time::Instant::now();
    let child = run_through(&dir, &w, listen, &proxy);
    wait_for("two windows logged", Duration::from_secs(20), || {
        let r = live_report(&dir)?;
        (r["phases"][0]["timeline"].as_array()?.len() >= 2).then_some(())
    });
    proxy.cut();
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(3), "the run did not end invalid");
    // The 60 s phase ended ~15 s after the cut, not at 60 s + 15 s.
    assert!(
        took < Duration::from_secs(50),
        "the phase waited for them: {took:?}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lost: Vec<&serde_json::Value> = report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "agent_lost")
        .collect();
    assert_eq!(lost.len(), 2, "{}", report["reasons"]);
    let p = &report["phases"][0];
    assert!(
        p["requests"].as_u64().unwrap() < p["scheduled"].as_u64().unwrap(),
        "{p}"
    );
}

/// An agent frozen mid-phase (SIGSTOP: its link stays up, it just never
/// answers) is lost once it has said nothing, not even a pong, for 15 s:
/// the run ends invalid, naming it, instead of waiting out the phase's
/// grace and failing with exit 1 ("did not report its end").
#[test]
fn a_frozen_agent_is_lost_once_silent_past_its_lease() {
    let dir = TempDir::new("frozen-agent");
    let w = dir.write(
        "w.toml",
        "[agents]\nlocal = 2\n\n[[phase]]\nname = \"load\"\nduration = \"8s\"\nrate = 200\n\n[phase.synthetic]\nlatency = \"1ms\"\n",
    );
    let mut run = Background::coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    let victim = pid_of_loading_agent(&dir, "local-2");
    nix::sys::signal::kill(victim, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let code = run.wait(Duration::from_secs(60));
    let _ = nix::sys::signal::kill(victim, nix::sys::signal::Signal::SIGCONT);
    assert_eq!(code, Some(3), "{}", run.stderr);
    let report = report_json(dir.path(), "latest");
    assert!(
        report["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "agent_lost" && r["agent"] == "local-2"),
        "{}",
        report["reasons"]
    );
}

/// Chaos, bounded: four agents load a real HTTP target for 16 s while the
/// test cuts every agent's link to the coordinator and heals it (three
/// times, a few seconds each) and freezes and thaws agents (SIGSTOP for
/// up to 2 s). At the end every window is in the log exactly once (no
/// duplicate, no gap in any agent's sequence), every agent ended the
/// phase, and the report's request count is the target's own count.
#[test]
fn cuts_and_freezes_together_lose_and_double_nothing() {
    let target = Target::start(&[]);
    let dir = TempDir::new("chaos");
    let w = dir.write(
        "w.toml",
        &format!(
            "[agents]\nlocal = 4\n\n[[phase]]\nname = \"load\"\nduration = \"16s\"\nrate = 400\n\n[phase.http]\nurl = \"{}\"\n",
            target.url()
        ),
    );
    let listen = free_port();
    let proxy = Proxy::start(listen);
    let child = run_through(&dir, &w, listen, &proxy);
    let needle = format!("{}/runs/", dir.path().display());
    let agents: Vec<nix::unistd::Pid> =
        wait_for("four agents loading", Duration::from_secs(30), || {
            let r = live_report(&dir)?;
            (!r["phases"][0]["timeline"].as_array()?.is_empty()).then_some(())?;
            let pids: Vec<nix::unistd::Pid> = pids_mentioning(&needle)
                .into_iter()
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(".creds"))
                })
                .map(nix::unistd::Pid::from_raw)
                .collect();
            (pids.len() == 4).then_some(pids)
        });
    use nix::sys::signal::{Signal, kill};
    // A fixed script (no randomness: a failure reproduces), each step
    // bounded: cut 2 s, freeze one agent 1.5 s, heal, freeze two...
    for round in 0..3usize {
        proxy.cut();
        let frozen = agents[round % 4];
        let _ = kill(frozen, Signal::SIGSTOP);
        std::thread::sleep(Duration::from_millis(1500));
        let _ = kill(frozen, Signal::SIGCONT);
        std::thread::sleep(Duration::from_millis(500));
        proxy.restore();
        let (a, b) = (agents[(round + 1) % 4], agents[(round + 2) % 4]);
        let _ = kill(a, Signal::SIGSTOP);
        let _ = kill(b, Signal::SIGSTOP);
        std::thread::sleep(Duration::from_millis(800));
        let _ = kill(a, Signal::SIGCONT);
        let _ = kill(b, Signal::SIGCONT);
        std::thread::sleep(Duration::from_millis(1200));
    }
    for pid in &agents {
        let _ = kill(*pid, Signal::SIGCONT);
    }
    let out = child.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report (exit {:?})", out.status.code()));
    let log = &report["log"];
    assert_eq!(log["duplicate_events"], 0, "{log}");
    assert_eq!(log["seq_gaps"], 0, "{log}");
    for (id, e) in log["agent_events"].as_object().unwrap() {
        assert_eq!(e["highest_seq"], e["events"], "agent {id} has a gap: {e}");
    }
    let phase = &report["phases"][0];
    for a in phase["agents"].as_array().unwrap() {
        assert_eq!(a["ended"], true, "{a}");
        assert_eq!(a["abandoned_in_flight"], 0, "{a}");
    }
    // The log's count is the target's: nothing lost, nothing counted twice.
    let logged = phase["requests"].as_u64().unwrap();
    let warmup_free = phase["warmup_s"].as_f64() == Some(0.0);
    assert!(warmup_free, "{phase}");
    assert_eq!(
        logged,
        target.served(),
        "the report and the target disagree"
    );
    assert!(logged > 1_000, "{phase}");
}

/// `coordinator run WORKLOAD --json` in the background: stdout piped,
/// stderr into `stderr`.
fn run_pool(dir: &TempDir, workload: &Path, stderr: &Path) -> std::process::Child {
    std::process::Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", workload.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

/// Pool `c` listening at `listen`, dialed through `proxy`, with four
/// agents enrolled and started by hand.
fn pool_of_four(dir: &TempDir, listen: SocketAddr, proxy: &Proxy) -> Vec<KillOnDrop> {
    let up = coordinator(
        dir.path(),
        &[
            "pool",
            "up",
            "c",
            "--listen",
            &listen.to_string(),
            "--advertise",
            &proxy.addr.to_string(),
        ],
    );
    assert!(up.status.success(), "{}", text(&up.stderr));
    (0..4)
        .map(|i| {
            let creds = dir.path().join(format!("{i}.creds"));
            let out = coordinator(
                dir.path(),
                &["enroll", "c", "--output", creds.to_str().unwrap()],
            );
            assert!(out.status.success(), "{}", text(&out.stderr));
            KillOnDrop(
                std::process::Command::new(bin("agent"))
                    .args(["attach", "--credentials"])
                    .arg(&creds)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::fs::File::create(dir.path().join(format!("{i}.log"))).unwrap())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect()
}

/// Run `name`'s log holds each of its four agents' events once, with no
/// gap; its phase's requests, and those abandoned in flight.
fn whole_log(name: &str, report: &serde_json::Value) -> (u64, u64) {
    let log = &report["log"];
    assert_eq!(log["duplicate_events"], 0, "run {name}: {log}");
    assert_eq!(log["seq_gaps"], 0, "run {name}: {log}");
    let events = log["agent_events"].as_object().unwrap();
    assert_eq!(events.len(), 4, "run {name}: {log}");
    for (id, e) in events {
        assert_eq!(e["highest_seq"], e["events"], "run {name}: agent {id}: {e}");
    }
    let phase = &report["phases"][0];
    assert_eq!(phase["warmup_s"].as_f64(), Some(0.0), "{phase}");
    let abandoned = phase["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["abandoned_in_flight"].as_u64().unwrap_or(0))
        .sum::<u64>();
    (phase["requests"].as_u64().unwrap(), abandoned)
}

/// Chaos with a pool, a few tens of seconds: four pool agents (enrolled,
/// dialing the pool's address through a proxy) load a real target for run
/// A while the test cuts and heals their links and freezes and thaws them;
/// then the test cuts the links and SIGKILLs A's coordinator, so that the
/// agents hold windows A never acked. Run B, on the same pool, takes the
/// agents (with another cut and freeze): they hand A's held windows to B,
/// which writes them into A's log. At the end A's and B's logs each hold
/// every agent's events exactly once with no gap, and the two runs'
/// requests are the target's own count (but for requests the agents
/// abandoned in flight when they stopped A's load, which the target may or
/// may not have served).
#[test]
fn a_pool_coordinator_killed_amid_cuts_and_freezes_loses_and_doubles_nothing() {
    use nix::sys::signal::{Signal, kill};
    let target = Target::start(&[]);
    let dir = TempDir::new("pool-chaos");
    let listen = free_port();
    let proxy = Proxy::start(listen);
    let agents = pool_of_four(&dir, listen, &proxy);
    let pids: Vec<nix::unistd::Pid> = agents
        .iter()
        .map(|a| nix::unistd::Pid::from_raw(a.0.id() as i32))
        .collect();
    let workload = |name: &str, duration: &str| {
        dir.write(
            &format!("{name}.toml"),
            &format!(
                "[agents]\npool = \"c\"\ncount = 4\nattach_timeout = \"30s\"\n\n[[phase]]\nname = \"load\"\nduration = \"{duration}\"\nrate = 400\n\n[phase.http]\nurl = \"{}\"\n",
                target.url()
            ),
        )
    };
    // One round of chaos: cut the links for 1.5 s with one agent frozen,
    // heal, then freeze two agents for 0.8 s.
    let chaos = |round: usize| {
        proxy.cut();
        let frozen = pids[round % 4];
        let _ = kill(frozen, Signal::SIGSTOP);
        std::thread::sleep(Duration::from_millis(1500));
        let _ = kill(frozen, Signal::SIGCONT);
        proxy.restore();
        let (a, b) = (pids[(round + 1) % 4], pids[(round + 2) % 4]);
        let _ = kill(a, Signal::SIGSTOP);
        let _ = kill(b, Signal::SIGSTOP);
        std::thread::sleep(Duration::from_millis(800));
        let _ = kill(a, Signal::SIGCONT);
        let _ = kill(b, Signal::SIGCONT);
    };

    let a_stderr = dir.path().join("a.stderr");
    let mut a = run_pool(&dir, &workload("a", "60s"), &a_stderr);
    let run_a = wait_for("run A to load", Duration::from_secs(60), || {
        let r = live_report(&dir)?;
        (r["phases"][0]["requests"].as_u64()? > 200)
            .then(|| r["run_id"].as_str().map(String::from))?
    });
    chaos(0);
    chaos(1);
    // Windows A will never ack: cut, let the agents load on a second, kill.
    proxy.cut();
    std::thread::sleep(Duration::from_millis(1000));
    a.kill().unwrap();
    a.wait().unwrap();
    proxy.restore();

    let b_stderr = dir.path().join("b.stderr");
    let b = run_pool(&dir, &workload("b", "6s"), &b_stderr);
    wait_for("run B to load", Duration::from_secs(60), || {
        let r = live_report(&dir)?;
        (r["run_id"].as_str()? != run_a && r["phases"][0]["requests"].as_u64()? > 100).then_some(())
    });
    chaos(2);
    let out = b.wait_with_output().unwrap();
    let b_report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no report from run B (exit {:?}): {}",
            out.status.code(),
            std::fs::read_to_string(&b_stderr).unwrap_or_default()
        )
    });
    let a_report = report_json(dir.path(), &run_a);
    assert_eq!(a_report["status"], "incomplete", "{}", a_report["status"]);
    let late = a_report["notices"].to_string();
    assert!(
        late.contains("late event(s)"),
        "A's held windows came late: {late}"
    );
    let (a_logged, a_abandoned) = whole_log("A", &a_report);
    let (b_logged, b_abandoned) = whole_log("B", &b_report);
    let (logged, abandoned) = (a_logged + b_logged, a_abandoned + b_abandoned);
    let served = target.served();
    assert!(
        logged <= served && served <= logged + abandoned,
        "the runs logged {logged} requests (and abandoned {abandoned} in flight), the target served {served}"
    );
    assert!(logged > 2_000, "{logged}");
    drop(agents);
}
