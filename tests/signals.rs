//! Signals to a running `coordinator run`: Ctrl-C (SIGINT to the job's
//! process group, as a terminal sends it) and SIGTERM stop the run in
//! order and exit 130; a second signal forces a fast exit. The stopped
//! phase names the window where it stopped and is rated over the time it
//! ran.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// `phase_scheduled`'s start and `phase_stop_requested`'s logged instant of
/// phase 0, µs, from the run's records.
fn stop_instant_s(events: &[serde_json::Value]) -> f64 {
    let of = |kind: &str, field: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind)
            .and_then(|e| e[field].as_i64())
            .unwrap_or_else(|| panic!("no {kind} in the log"))
    };
    (of("phase_stop_requested", "logged_at_us") - of("phase_scheduled", "start_at_us")) as f64 / 1e6
}

/// The running run's id, once its phase 0, as the running coordinator
/// reports it, is as `ready` wants (`what`).
fn phase_until(
    run: &mut Background,
    data: &std::path::Path,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> String {
    let id = run
        .wait_line("logging to", Duration::from_secs(30))
        .split_whitespace()
        .nth(1)
        .expect("run id")
        .to_string();
    wait_for(what, Duration::from_secs(30), || {
        let out = coordinator(data, &["report", &id, "--format", "json"]);
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        ready(&r["phases"][0]).then_some(())
    });
    id
}

/// The log's last record.
fn last_record(events: &[serde_json::Value]) -> &serde_json::Value {
    events.last().expect("the log has records")
}

/// Ctrl-C 3 s into a 10 s closed-loop phase: the run ends "aborted",
/// exit 130; the report names the window the stop fell in (not window 0)
/// and rates the phase over the time it ran, within 25 % of its rate in
/// its whole windows (not over the planned 10 s).
#[test]
fn ctrl_c_names_the_window_it_stopped_in_and_rates_the_time_it_ran() {
    let target = Target::start(&["--delay", "10ms"]);
    let dir = TempDir::new("ctrl-c");
    let w = dir.write(
        "w.toml",
        &format!(
            "[agents]\nlocal = 1\n\n[[phase]]\nname = \"load\"\nduration = \"10s\"\nconcurrency = 2\n\n[phase.http]\nurl = \"{}\"\n",
            target.url()
        ),
    );
    let mut run = Background::coordinator(dir.path(), &["run", w.to_str().unwrap()]);
    let id = phase_until(&mut run, dir.path(), "three windows logged", |p| {
        p["timeline"].as_array().is_some_and(|t| t.len() >= 3)
    });
    // As a terminal does: to the whole job, the coordinator and whatever
    // it started in its group.
    run.signal(Signal::SIGINT, true);
    let code = run.wait(Duration::from_secs(30));
    assert_eq!(code, Some(130), "exit code; stderr:\n{}", run.stderr);

    let events = events(dir.path(), &id);
    let last = last_record(&events);
    assert_eq!(
        (&last["kind"], &last["status"], &last["reason"]),
        (
            &serde_json::json!("run_finished"),
            &serde_json::json!("aborted"),
            &serde_json::json!("interrupted")
        ),
        "{last}"
    );
    let report = report_json(dir.path(), &id);
    let p = &report["phases"][0];
    let stopped = &p["stopped"];
    let at = stop_instant_s(&events);
    assert!(at >= 3.0, "stopped {at:.2}s in");
    let window = stopped["window_index"].as_u64().unwrap();
    assert_eq!(
        window,
        at.floor() as u64,
        "the window the stop fell in: {p}"
    );
    assert_eq!(stopped["at_s"].as_f64(), Some(window as f64));
    assert_eq!(stopped["reason"], "interrupted");
    // The rate of the whole windows before the stop, against the phase's.
    let whole: Vec<u64> = p["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["t_s"].as_f64().unwrap() < window as f64)
        .map(|t| t["requests"].as_u64().unwrap())
        .collect();
    let per_second = whole.iter().sum::<u64>() as f64 / whole.len() as f64;
    let rate = p["throughput_rps"].as_f64().unwrap();
    assert!(
        (rate / per_second - 1.0).abs() <= 0.25,
        "req/s {rate} against {per_second:.1} in each whole window {whole:?}"
    );
    let ran = p["duration_s"].as_f64().unwrap();
    assert!(ran < at + 0.5, "rated over {ran}s, stopped {at:.2}s in");
    let table = coordinator(dir.path(), &["report", &id]);
    assert!(
        text(&table.stdout).contains(&format!(
            "load: stopped at window {window} (t={window}s): interrupted"
        )),
        "{}",
        text(&table.stdout)
    );
}

/// A workload of two local agents loading the built-in target, run as a
/// service on `port` (its shell command given by `service`), for 30 s.
fn served_workload(service: &str, port: u16) -> String {
    format!(
        "[agents]\nlocal = 2\n\n[[service]]\nname = \"target\"\ncommand = {service:?}\nready = {{ tcp = \"127.0.0.1:{port}\" }}\n\n[[phase]]\nname = \"load\"\nduration = \"30s\"\nconcurrency = 4\n\n[phase.http]\nurl = \"http://127.0.0.1:{port}/\"\n"
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The service's pid, as the run logged it ("pid N (process group N)").
fn service_pid(data: &std::path::Path, id: &str) -> i32 {
    events(data, id)
        .iter()
        .find(|e| e["kind"] == "service_state" && e["state"] == "started")
        .and_then(|e| {
            e["detail"]
                .as_str()?
                .strip_prefix("pid ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .expect("the service's pid in the log")
}

/// The run is going: both agents started and a window logged. The run id,
/// and the pids of the agents and the service.
fn running(run: &mut Background, data: &std::path::Path) -> (String, Vec<i32>, i32) {
    let id = phase_until(run, data, "a window logged", |p| {
        p["requests"].as_u64().is_some_and(|n| n > 0)
    });
    let agents = pids_mentioning(&format!("{id}/agents/local-"));
    assert_eq!(agents.len(), 2, "two local agents: {agents:?}");
    (id.clone(), agents, service_pid(data, &id))
}

/// SIGTERM, as a service manager sends it, does what Ctrl-C does: the
/// agents and the service are stopped (the service's own stats line is
/// logged), the log ends with RunFinished, and the exit code is 130.
#[test]
fn sigterm_stops_the_run_in_order_and_exits_130() {
    let dir = TempDir::new("sigterm");
    let port = free_port();
    let w = dir.write(
        "w.toml",
        &served_workload(&format!("{{agent}} serve --listen 127.0.0.1:{port}"), port),
    );
    let mut run = Background::coordinator(dir.path(), &["run", w.to_str().unwrap()]);
    let (id, agents, service) = running(&mut run, dir.path());
    run.signal(Signal::SIGTERM, false);
    let code = run.wait(Duration::from_secs(40));
    assert_eq!(code, Some(130), "exit code; stderr:\n{}", run.stderr);
    for pid in agents.iter().chain([&service]) {
        wait_for("agent or service gone", Duration::from_secs(5), || {
            gone(*pid).then_some(())
        });
    }
    let events = events(dir.path(), &id);
    let last = last_record(&events);
    assert_eq!(last["kind"], "run_finished", "{last}");
    assert_eq!(
        (&last["status"], &last["reason"]),
        (&"aborted".into(), &"interrupted".into())
    );
    let stats = service_stats(&events, "target");
    assert!(stats["served"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(report_json(dir.path(), &id)["status"], "aborted");
}

/// A second signal during the orderly stop (here: slow, the service
/// ignores SIGTERM and would get 5 s before SIGKILL) forces the exit at
/// once: exit 130 within a few seconds, nothing of the run left running.
#[test]
fn a_second_signal_forces_a_fast_exit() {
    let dir = TempDir::new("forced");
    let port = free_port();
    let w = dir.write(
        "w.toml",
        &served_workload(
            &format!("trap '' TERM; exec {{agent}} serve --listen 127.0.0.1:{port}"),
            port,
        ),
    );
    let mut run = Background::coordinator(dir.path(), &["run", w.to_str().unwrap()]);
    let (id, agents, service) = running(&mut run, dir.path());
    run.signal(Signal::SIGTERM, false);
    run.wait_line("stopping the run", Duration::from_secs(10));
    let forced = Instant::now();
    run.signal(Signal::SIGINT, false);
    let code = run.wait(Duration::from_secs(30));
    let took = forced.elapsed();
    assert_eq!(code, Some(130), "exit code; stderr:\n{}", run.stderr);
    assert!(
        took < Duration::from_secs(4),
        "exit {took:?} after the second signal (the orderly stop takes over 5 s)"
    );
    for pid in agents.iter().chain([&service]) {
        wait_for("agent or service gone", Duration::from_secs(5), || {
            gone(*pid).then_some(())
        });
    }
    assert_eq!(report_json(dir.path(), &id)["status"], "aborted");
}

/// Ctrl-C while the coordinator is stuck reading its workload (a FIFO no
/// one writes to: `open` blocks): it ends at once, interrupted, having
/// started nothing. It used to print "stopping the run" and hang there.
#[test]
fn ctrl_c_while_reading_a_blocked_workload_file_ends_the_coordinator() {
    let dir = TempDir::new("signal-fifo");
    let fifo = dir.path().join("w.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let mut run = Background::coordinator(dir.path(), &["run", fifo.to_str().unwrap()]);
    // Blocked in openat (x86-64 syscall 257) on some thread.
    let pid = run.child.id();
    wait_for(
        "the coordinator to block opening the FIFO",
        Duration::from_secs(20),
        || {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
            tasks
                .filter_map(Result::ok)
                .any(|t| {
                    std::fs::read_to_string(t.path().join("syscall"))
                        .is_ok_and(|s| s.split(' ').next() == Some("257"))
                })
                .then_some(())
        },
    );
    run.signal(Signal::SIGINT, true);
    let code = run.wait(Duration::from_secs(10));
    assert_eq!(code, Some(130), "{}", run.stderr);
    assert!(run.stderr.contains("nothing was started"), "{}", run.stderr);
    assert!(!dir.path().join("runs").exists(), "a run was started");
}
