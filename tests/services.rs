//! `[[service]]` processes that are not ours, or that die: a port another
//! server already holds refuses the run before any load, naming that
//! server's process; a service killed while a phase runs ends the run early,
//! which then says so in every format, with the end of the service's
//! stderr. (A service stopped by the run at its end is not flagged: the
//! quickstart test in `run.rs` and the legacy log in `legacy.rs`.)

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// A port nobody listens on (for a moment).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One local agent; service `target` runs `command` and is ready once
/// `port` accepts; phase `load` (`duration`, closed loop) then phase `after`
/// (2 s) load it.
fn workload(command: &str, port: u16, duration: &str) -> String {
    format!(
        r#"[agents]
local = 1

[[service]]
name = "target"
command = {command}
ready = {{ tcp = {port} }}

[[phase]]
name = "load"
duration = "{duration}"
[phase.http]
url = "http://127.0.0.1:{port}/"
concurrency = 2

[[phase]]
name = "after"
duration = "2s"
[phase.http]
url = "http://127.0.0.1:{port}/"
concurrency = 2
"#
    )
}

/// A port another server already holds: the run is refused before any load
/// (exit 2, bad input) and names the port and the process holding it. The
/// run is logged as failed, with no phase scheduled and no agent started.
#[test]
fn a_taken_port_refuses_the_run_naming_its_holder() {
    let dir = TempDir::new("svc-taken");
    let other = Target::start(&[]);
    let port = other.addr.port();
    let w = dir.write(
        "taken.toml",
        &workload(
            &format!(r#"["{{agent}}", "serve", "--listen", "127.0.0.1:{port}"]"#),
            port,
            "2s",
        ),
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let holder = format!("port {port} is held by pid {} (agent)", other.child.id());
    assert!(stderr.contains(&holder), "no {holder:?} in:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "service \"target\" was not started: 127.0.0.1:{port} already accepts connections"
        )),
        "{stderr}"
    );
    let run = run_id(&out.stderr);
    let events = events(dir.path(), &run);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(!kinds.contains(&"phase_scheduled"), "{kinds:?}");
    assert!(!kinds.contains(&"agent_attached"), "{kinds:?}");
    let report = report_json(dir.path(), &run);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["services"][0]["state"], "failed", "{report}");
    assert_eq!(report["services"][0]["died_during_run"], false);
    assert_eq!(other.served(), 0, "the other server was measured");
}

/// The pid of the running service `name`, from the run's log (its
/// "started" record), once the log has it.
fn service_pid(dir: &TempDir, name: &str) -> u32 {
    wait_for(
        "the service's started record",
        Duration::from_secs(20),
        || {
            let out = coordinator(dir.path(), &["export", "latest", "--events"]);
            text(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|e| {
                    e["kind"] == "service_state" && e["service"] == name && e["state"] == "started"
                })
                .and_then(|e| e["pid"].as_u64())
        },
    ) as u32
}

/// The service is SIGKILLed while a 10 s phase runs: the phase stops in the
/// window it died in, the next phase is not run, and the summary, the
/// report (table, JSON, HTML) and the CSV say the service died, with the
/// last 20 lines of its stderr.
#[test]
fn a_service_killed_mid_run_ends_the_run_and_is_reported() {
    let dir = TempDir::new("svc-killed");
    let port = free_port();
    // 25 lines on stderr, then the built-in target in the shell's place
    // (same pid).
    let command = format!(
        r#"'i=1; while [ $i -le 25 ]; do echo "boot line $i" >&2; i=$((i+1)); done; exec {{agent}} serve --listen 127.0.0.1:{port}'"#
    );
    let w = dir.write("killed.toml", &workload(&command, port, "10s"));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut killed = 0;
    let (status, stdout, stderr) =
        coordinator_while(dir.path(), &["run", w.to_str().unwrap()], || {
            let pid = service_pid(&dir, "target");
            // Mid-phase: the target has served load.
            wait_for("the target to serve load", Duration::from_secs(20), || {
                let served = serve_stats(addr)?["served"].as_u64()?;
                (served >= 200).then_some(())
            });
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill the service");
            killed = pid;
        });
    // The numbers after the death do not measure the service: invalid.
    assert_eq!(status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("VERDICT: INVALID"), "{stdout}");
    let died = format!("SERVICE DIED: target (pid {killed}) exited during phase load, ");
    assert!(stdout.contains(&died), "no {died:?} in:\n{stdout}");
    assert!(stdout.contains("killed by signal 9 (SIGKILL)"), "{stdout}");
    assert!(
        stdout.contains("the last lines target wrote to stderr:\n  | boot line 6\n"),
        "{stdout}"
    );
    assert!(stdout.contains("  | boot line 25\n"), "{stdout}");
    assert!(stderr.contains("phase(s) after not run"), "{stderr}");

    let run = run_id(stderr.as_bytes());
    let report = report_json(dir.path(), &run);
    let service = &report["services"][0];
    assert_eq!(service["name"], "target");
    assert_eq!(service["state"], "exited");
    assert_eq!(service["died_during_run"], true);
    assert_eq!(service["pid"], killed);
    assert_eq!(service["exit_status"], "killed by signal 9 (SIGKILL)");
    let tail: Vec<&str> = service["stderr_tail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let want: Vec<String> = (6..=25).map(|i| format!("boot line {i}")).collect();
    assert_eq!(tail, want);
    // The phase was cut where the service died; `after` never ran.
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 1, "{report}");
    let stopped = &phases[0]["stopped"];
    assert!(
        stopped["reason"]
            .as_str()
            .unwrap()
            .starts_with("service \"target\""),
        "{stopped}"
    );
    assert!(stopped["window_index"].as_u64().unwrap() < 9, "{stopped}");
    assert_eq!(report["status"], "failed");
    assert_eq!(report["verdict"], "invalid");
    let reasons = report["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "the death, once: {report}");
    assert_eq!(reasons[0]["kind"], "service_died");

    let html = coordinator(dir.path(), &["report", &run, "--format", "html"]);
    let html = text(&html.stdout);
    assert!(html.contains("<strong>SERVICE DIED</strong>"), "{html}");
    assert!(html.contains("boot line 25"));
    let csv = coordinator(dir.path(), &["report", &run, "--format", "csv"]);
    let csv = text(&csv.stdout);
    assert!(csv.starts_with("# verdict: invalid\n"), "{csv}");
    assert!(csv.contains(&format!("\n# {}", &died)), "{csv}");
}
