//! The SSH bootstrap on bare hosts: network namespaces with their own sshd,
//! chrooted into busybox (tests/hosts). These tests need root (CI runs as
//! root) and share the one machine-wide fixture, so they run one at a time.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::hosts::Hosts;
use common::*;

fn agents_table(hosts: &Hosts, names: &[&str], extra: &str) -> String {
    let list: Vec<String> = names
        .iter()
        .map(|n| format!("\"root@{}\"", hosts.ip(n)))
        .collect();
    format!(
        "[agents]\nhosts = [{}]\nidentity = \"{}\"\nknown_hosts = \"{}\"\n{extra}\n",
        list.join(", "),
        hosts.client_key.display(),
        hosts.known_hosts.display()
    )
}

/// Runs the coordinator with SSH_AUTH_SOCK unset (the identity file is used).
fn run(data: &Path, workload: &Path, extra: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = std::process::Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(data)
        .arg("run")
        .arg(workload)
        .args(extra)
        .env_remove("SSH_AUTH_SOCK")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run coordinator");
    (out, started.elapsed())
}

/// "all N agents attached in X.XXs" from the coordinator's stderr.
fn attach_time(stderr: &str) -> f64 {
    stderr
        .lines()
        .find_map(|l| {
            let rest = l.split("agents attached in ").nth(1)?;
            rest.trim_end_matches('s').parse().ok()
        })
        .unwrap_or_else(|| panic!("no attach time in:\n{stderr}"))
}

fn no_agent_processes(hosts: &Hosts, names: &[&str]) -> bool {
    names.iter().all(|n| {
        hosts.pids(n).iter().all(|pid| {
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !cmd.contains("attach")
        })
    })
}

/// Three bare hosts run the agents; a fourth runs the target, deployed as a
/// `[[service]]`; the counts match what the target served. A second run on
/// the same hosts uploads nothing and attaches faster.
#[test]
fn three_hosts_load_a_service_on_a_fourth_and_reuse_the_upload() {
    let hosts = Hosts::up(4);
    let dir = TempDir::new("ssh-fleet");
    let workload = format!(
        r#"{agents}
[[service]]
name = "target"
hosts = ["root@{h4}"]
binary = "{{agent}}"
args = ["serve", "--listen", "0.0.0.0:8080"]
ready = {{ tcp = 8080, timeout = "20s" }}
keep = true

[[phase]]
name = "load"
duration = "3s"

[phase.http]
url = "http://{{service.target.host}}:8080/"
concurrency = 6
"#,
        agents = agents_table(&hosts, &["h1", "h2", "h3"], ""),
        h4 = hosts.ip("h4"),
    );
    let w = dir.write("fleet.toml", &workload);
    let (first, first_wall) = run(dir.path(), &w, &["--json"]);
    let stderr = text(&first.stderr);
    assert!(first.status.success(), "first run failed:\n{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let agents: Vec<&serde_json::Value> = report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a["id"].as_str().unwrap().starts_with("metrics:"))
        .collect();
    assert_eq!(agents.len(), 3, "{report}");
    assert_eq!(
        report["phases"][0]["agents"].as_array().unwrap().len(),
        3,
        "only load agents get load"
    );
    let mut seen_hosts: Vec<String> = agents
        .iter()
        .map(|a| a["host"].as_str().unwrap().to_string())
        .collect();
    seen_hosts.sort();
    assert_eq!(
        seen_hosts,
        ["h1", "h2", "h3"],
        "agents ran on the bare hosts"
    );
    let metric_hosts: Vec<&str> = report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    for h in ["h1", "h2", "h3"] {
        assert!(
            metric_hosts.contains(&h),
            "no host metrics from {h}: {metric_hosts:?}"
        );
    }
    // The target (kept running) says how many it served.
    let served = {
        let mut s = std::net::TcpStream::connect((hosts.ip("h4"), 8080)).expect("target still up");
        use std::io::{Read, Write};
        write!(
            s,
            "GET /__fleetbench/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut t = String::new();
        s.read_to_string(&mut t).unwrap();
        let body = t.split("\r\n\r\n").nth(1).unwrap().trim().to_string();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["served"]
            .as_u64()
            .unwrap()
    };
    let counted = requests(&report, 0);
    assert!(counted > 100, "{counted} requests");
    assert!(
        served >= counted && served - counted <= 6,
        "agents counted {counted}, the target served {served}"
    );
    assert!(
        stderr.contains("uploaded"),
        "first run should upload:\n{stderr}"
    );
    let t1 = attach_time(&stderr);
    // The kept target goes before the second run, which starts its own.
    for pid in hosts.pids("h4") {
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd.contains("serve") {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    wait_for("the kept target to go", Duration::from_secs(10), || {
        std::net::TcpStream::connect((hosts.ip("h4"), 8080))
            .is_err()
            .then_some(())
    });

    let (second, _) = run(dir.path(), &w, &["--json"]);
    let stderr2 = text(&second.stderr);
    assert!(second.status.success(), "second run failed:\n{stderr2}");
    assert!(
        !stderr2.contains("uploaded "),
        "second run uploaded again:\n{stderr2}"
    );
    assert_eq!(stderr2.matches("nothing uploaded").count(), 4, "{stderr2}");
    let t2 = attach_time(&stderr2);
    eprintln!(
        "time to all agents attached: first run {t1:.2}s (with upload), second {t2:.2}s; first run wall {first_wall:?}"
    );
    // Recorded, not asserted (timings are noisy here): see the closing note.
    // The agents exited at the end of each run.
    wait_for("agents to exit", Duration::from_secs(10), || {
        no_agent_processes(&hosts, &["h1", "h2", "h3", "h4"]).then_some(())
    });
}

/// A dynamically linked binary cannot run on a bare host: the run says so,
/// naming the host and the step, and leaves nothing running.
#[test]
fn a_dynamic_agent_is_refused_by_a_bare_host() {
    let hosts = Hosts::up(1);
    let dir = TempDir::new("ssh-dynamic");
    let w = dir.write(
        "w.toml",
        &format!(
            "{}\n[[phase]]\nname = \"x\"\nduration = \"1s\"\n[phase.synthetic]\nlatency = \"1ms\"\nconcurrency = 1\n",
            agents_table(&hosts, &["h1"], "")
        ),
    );
    // /usr/bin/true of the build machine is dynamically linked.
    let (out, _) = run(dir.path(), &w, &["--agent-binary", "/usr/bin/true"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let host = format!("root@{}", hosts.ip("h1"));
    assert!(
        err.contains(&format!("host {host}: verify failed: exec failed")),
        "{err}"
    );
    assert!(no_agent_processes(&hosts, &["h1"]));
}

/// Host keys: a changed key is refused before anything is uploaded, naming
/// the known_hosts line; an unknown host is refused without the flag and
/// recorded with it; a wrong user fails authentication naming the host.
#[test]
fn host_keys_and_auth_are_checked_before_upload() {
    let hosts = Hosts::up(1);
    let dir = TempDir::new("ssh-keys");
    let phase = "\n[[phase]]\nname = \"x\"\nduration = \"1s\"\n[phase.synthetic]\nlatency = \"1ms\"\nconcurrency = 1\n";
    let ip = hosts.ip("h1");
    let uploaded = hosts.rootfs("h1").join("root/.fleetbench");

    // Changed key: the entry for this host holds another key.
    let other = dir.path().join("other");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let blob: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let bad_known = dir.write(
        "known_bad",
        &format!("# test\n{ip} {} {}\n", blob[0], blob[1]),
    );
    let w = dir.write(
        "changed.toml",
        &format!(
            "[agents]\nhosts = [\"root@{ip}\"]\nidentity = \"{}\"\nknown_hosts = \"{}\"\n{phase}",
            hosts.client_key.display(),
            bad_known.display()
        ),
    );
    let (out, _) = run(dir.path(), &w, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("HOST KEY CHANGED"), "{err}");
    assert!(
        err.contains(&format!("{}:2", bad_known.display())),
        "names the line: {err}"
    );
    assert!(
        !uploaded.exists(),
        "something was uploaded to a host with a changed key"
    );

    // Unknown host: refused without the flag...
    let empty_known = dir.write("known_empty", "");
    let w = dir.write(
        "unknown.toml",
        &format!(
            "[agents]\nhosts = [\"root@{ip}\"]\nidentity = \"{}\"\nknown_hosts = \"{}\"\n{phase}",
            hosts.client_key.display(),
            empty_known.display()
        ),
    );
    let (out, _) = run(dir.path(), &w, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unknown host") && err.contains("--accept-new-host-keys"),
        "{err}"
    );
    assert!(!uploaded.exists());
    // ...and recorded with it.
    let (out, _) = run(dir.path(), &w, &["--accept-new-host-keys"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let recorded = std::fs::read_to_string(&empty_known).unwrap();
    assert!(recorded.contains(&ip.to_string()), "{recorded}");

    // Wrong user: authentication refused, naming host and user.
    let w = dir.write(
        "user.toml",
        &format!(
            "[agents]\nhosts = [\"nobody@{ip}\"]\nidentity = \"{}\"\nknown_hosts = \"{}\"\n{phase}",
            hosts.client_key.display(),
            hosts.known_hosts.display()
        ),
    );
    let (out, _) = run(dir.path(), &w, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("nobody@{ip}")) && err.contains("authentication refused"),
        "{err}"
    );
}

/// A host whose link is cut: the run names that host and the step, stops,
/// and no agent is left running on the hosts that did come up.
#[test]
fn a_cut_host_fails_the_bootstrap_cleanly() {
    let hosts = Hosts::up(3);
    let dir = TempDir::new("ssh-cut");
    let w = dir.write(
        "w.toml",
        &format!(
            "{}\n[[phase]]\nname = \"x\"\nduration = \"2s\"\n[phase.synthetic]\nlatency = \"1ms\"\nconcurrency = 3\n",
            agents_table(&hosts, &["h1", "h2", "h3"], "")
        ),
    );
    hosts.cut("h2");
    let (out, _) = run(dir.path(), &w, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("host root@{}: connect failed", hosts.ip("h2"))),
        "{err}"
    );
    wait_for(
        "no agent left on h1 and h3",
        Duration::from_secs(10),
        || no_agent_processes(&hosts, &["h1", "h3"]).then_some(()),
    );
}

/// A service on a host whose port a kept service of an earlier run still
/// holds: the next run is refused before any load (exit 2), naming the
/// port, the holding process (read from the host's /proc) and the host.
/// With that process gone, a service killed on its host while a 10 s phase
/// runs ends the run early, and the report names the service, its host and
/// the end of its output.
#[test]
fn a_remote_service_whose_port_is_taken_or_that_dies_is_reported() {
    let hosts = Hosts::up(2);
    let dir = TempDir::new("ssh-service-dies");
    let h2 = hosts.ip("h2");
    let workload = |duration: &str, keep: bool| {
        format!(
            r#"{agents}
[[service]]
name = "target"
hosts = ["root@{h2}"]
binary = "{{agent}}"
args = ["serve", "--listen", "0.0.0.0:8080"]
ready = {{ tcp = 8080, timeout = "20s" }}
keep = {keep}

[[phase]]
name = "load"
duration = "{duration}"
[phase.http]
url = "http://{{service.target.host}}:8080/"
concurrency = 2

[[phase]]
name = "after"
duration = "1s"
[phase.http]
url = "http://{{service.target.host}}:8080/"
concurrency = 2
"#,
            agents = agents_table(&hosts, &["h1"], ""),
        )
    };
    // The server itself, and the `agent supervise` it runs under (all but
    // a kept service do).
    let process = |supervisor: bool| {
        hosts.pids("h2").into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains("serve") && c.contains("supervise") == supervisor)
        })
    };
    let serving = || process(false);
    // A host has its own pid namespace: the pid it knows a process by.
    let host_pid = |pid: u32| -> u32 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let nspid = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .unwrap();
        nspid.split_whitespace().last().unwrap().parse().unwrap()
    };
    let kept = dir.write("kept.toml", &workload("1s", true));
    let (first, _) = run(dir.path(), &kept, &[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let holder = serving().expect("the kept service runs on h2");

    let (refused, _) = run(dir.path(), &kept, &[]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    let named = format!("(port 8080 is held by pid {} (agent-", host_pid(holder));
    assert!(stderr.contains(&named), "no {named:?} in:\n{stderr}");
    assert!(stderr.contains(&format!(" on root@{h2})")), "{stderr}");
    let events = events(dir.path(), &run_id(&refused.stderr));
    assert!(!events.iter().any(|e| e["kind"] == "phase_scheduled"));

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_for("the kept service to go", Duration::from_secs(10), || {
        serving().is_none().then_some(())
    });
    let dies = dir.write("dies.toml", &workload("10s", false));
    let target: std::net::SocketAddr = (h2, 8080).into();
    let mut killed = 0;
    let (status, stdout, stderr) =
        coordinator_while(dir.path(), &["run", dies.to_str().unwrap()], || {
            wait_for("the service to serve load", Duration::from_secs(60), || {
                let served = serve_stats(target)?["served"].as_u64()?;
                (served >= 100).then_some(())
            });
            let pid = serving().expect("the service runs on h2");
            // The coordinator knows the service by its supervisor's pid.
            killed = host_pid(process(true).expect("the service runs under agent supervise"));
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill the service");
        });
    // The numbers after the death do not measure the service: invalid.
    assert_eq!(status.code(), Some(3), "{stdout}\n{stderr}");
    let died =
        format!("SERVICE DIED: target on root@{h2} (pid {killed}) exited during phase load, ");
    assert!(stdout.contains(&died), "no {died:?} in:\n{stdout}");
    let report = report_json(dir.path(), &run_id(stderr.as_bytes()));
    let service = &report["services"][0];
    assert_eq!(service["died_during_run"], true, "{report}");
    assert_eq!(report["verdict"], "invalid", "{report}");
    assert_eq!(service["host"], format!("root@{h2}"));
    assert!(service.get("exit_status").is_none(), "unknown on a host");
    assert_eq!(report["phases"].as_array().unwrap().len(), 1, "{report}");
}

/// A service on an SSH host does not outlive its coordinator for long,
/// even a SIGKILLed one: it runs under `agent supervise`, which stops it
/// once the coordinator has not checked on it for its 15 s lease. Before,
/// it ran on forever, and the next run benchmarked the leftover.
#[test]
fn a_remote_service_stops_when_its_coordinator_is_killed() {
    let hosts = Hosts::up(2);
    let dir = TempDir::new("ssh-service-orphan");
    let h2 = hosts.ip("h2");
    let w = dir.write(
        "w.toml",
        &format!(
            r#"{agents}
[[service]]
name = "target"
hosts = ["root@{h2}"]
binary = "{{agent}}"
args = ["serve", "--listen", "0.0.0.0:8081"]
ready = {{ tcp = 8081, timeout = "20s" }}

[[phase]]
name = "load"
duration = "120s"
[phase.http]
url = "http://{{service.target.host}}:8081/"
concurrency = 2
"#,
            agents = agents_table(&hosts, &["h1"], ""),
        ),
    );
    let on_h2 = || -> Vec<u32> {
        hosts
            .pids("h2")
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.contains("serve") && c.contains("8081"))
            })
            .collect()
    };
    let mut child = std::process::Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", w.to_str().unwrap()])
        .env_remove("SSH_AUTH_SOCK")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run coordinator");
    let target: std::net::SocketAddr = (h2, 8081).into();
    wait_for("the service to serve load", Duration::from_secs(90), || {
        let served = serve_stats(target)?["served"].as_u64()?;
        (served >= 100).then_some(())
    });
    assert!(!on_h2().is_empty(), "the service runs on h2");
    child.kill().expect("SIGKILL the coordinator");
    child.wait().unwrap();
    let killed_at = Instant::now();
    wait_for(
        "the service to stop once its lease lapsed",
        Duration::from_secs(45),
        || on_h2().is_empty().then_some(()),
    );
    eprintln!(
        "the service stopped {:?} after its coordinator was killed",
        killed_at.elapsed()
    );
}

/// Where the time goes, against an injected delay: the agent's host holds
/// every packet it sends for 40 ms, so each new connection's SYN waits 40
/// ms (connect) and so does each request (time to first byte); the target,
/// on another host, is not delayed. Without the delay both read well under
/// a millisecond here.
#[test]
fn connect_and_first_byte_times_show_a_delayed_host() {
    let hosts = Hosts::up(2);
    let dir = TempDir::new("ssh-stages");
    let workload = format!(
        r#"{agents}
[[service]]
name = "target"
hosts = ["root@{h2}"]
binary = "{{agent}}"
args = ["serve", "--listen", "0.0.0.0:8080"]
ready = {{ tcp = 8080, timeout = "20s" }}

[[phase]]
name = "load"
duration = "3s"

[phase.http]
url = "http://{{service.target.host}}:8080/"
concurrency = 2
new_connection = true
"#,
        agents = agents_table(&hosts, &["h1"], ""),
        h2 = hosts.ip("h2"),
    );
    let w = dir.write("stages.toml", &workload);
    hosts.delay("h1", 40);
    let (out, _) = run(dir.path(), &w, &["--json"]);
    hosts.delay("h1", 0);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let phase = &report["phases"][0];
    let stages = &phase["stages_us"];
    let us = |stage: &str, q: &str| {
        stages[stage][q]
            .as_u64()
            .unwrap_or_else(|| panic!("{stages}"))
    };
    let requests = phase["requests"].as_u64().unwrap();
    assert!(requests >= 10, "{phase}");
    assert_eq!(
        stages["connect"]["count"].as_u64(),
        Some(requests),
        "{stages}"
    );
    assert!((40_000..70_000).contains(&us("connect", "p50")), "{stages}");
    assert!((40_000..70_000).contains(&us("ttfb", "p50")), "{stages}");
    // Each request's time holds both: its median, their sum.
    let whole = phase["latency_us"]["p50"].as_u64().unwrap();
    assert!(
        whole >= us("connect", "p50") + us("ttfb", "p50") - 2_000,
        "{whole} {stages}"
    );
    assert!(
        stages.get("tls").is_none(),
        "plain http has no handshake: {stages}"
    );
}
