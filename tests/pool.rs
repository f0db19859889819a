//! Long-lived agent pools (issue 5). Tests on bare hosts (tests/hosts: network
//! namespaces with their own sshd, chrooted into busybox) need root and share
//! the machine-wide fixture, so they run one at a time; the enroll test runs
//! on this machine alone. Each test uses a pool port of its own.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::hosts::Hosts;
use common::*;

/// `coordinator ARGS` with SSH_AUTH_SOCK unset (the identity file is used)
/// and, with `agent`, that agent binary as the local one.
fn coord(data: &Path, args: &[&str], agent: Option<&Path>) -> Output {
    let mut c = Command::new(bin("coordinator"));
    c.arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .env("RUST_LOG", "warn");
    if let Some(a) = agent {
        c.env("FLEETBENCH_AGENT", a);
    }
    c.output().expect("run coordinator")
}

fn ok(out: &Output, what: &str) -> String {
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    stderr
}

/// `pool up NAME` on the named hosts, listening on `port`.
fn pool_up(hosts: &Hosts, data: &Path, name: &str, names: &[&str], port: u16) -> Output {
    let targets: Vec<String> = names
        .iter()
        .map(|n| format!("root@{}", hosts.ip(n)))
        .collect();
    let listen = format!("0.0.0.0:{port}");
    let (key, kh) = (
        hosts.client_key.display().to_string(),
        hosts.known_hosts.display().to_string(),
    );
    let mut args = vec!["pool", "up", name, "--listen", &listen, "--identity", &key];
    args.extend(["--known-hosts", &kh, "--hosts"]);
    args.extend(targets.iter().map(String::as_str));
    coord(data, &args, None)
}

fn pool_workload(name: &str, count: usize, duration: &str, extra: &str) -> String {
    format!(
        "[agents]\npool = \"{name}\"\ncount = {count}\nattach_timeout = \"15s\"\n{extra}\n\n[[phase]]\nname = \"load\"\nduration = \"{duration}\"\n\n[phase.synthetic]\nlatency = \"1ms\"\nconcurrency = 4\n"
    )
}

/// The agent processes on a host: (pid, command line).
fn agent_processes(hosts: &Hosts, name: &str) -> Vec<(u32, String)> {
    hosts
        .pids(name)
        .into_iter()
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(" attach --credentials ").then_some((pid, cmd))
        })
        .collect()
}

/// "pool agents attached X.XXs after the run started", from run's stderr.
fn attach_seconds(stderr: &str) -> f64 {
    stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("pool agents attached ")?
                .split('s')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no attach time in:\n{stderr}"))
}

fn run_id(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id in:\n{stderr}"))
        .to_string()
}

/// Agent ids in a report, sorted.
fn report_agents(report: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = report["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["id"].as_str().expect("agent id").to_string())
        .collect();
    ids.sort();
    ids
}

/// Packets that hit the REJECT rule for port 22 in a host's netns.
fn ssh_rejects(hosts: &Hosts, name: &str) -> u64 {
    let out = hosts.run_in(name, &["iptables", "-L", "INPUT", "-v", "-n", "-x"]);
    assert!(out.status.success(), "iptables -L: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter(|l| l.contains("REJECT") && l.contains("dpt:22"))
        .map(|l| l.split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// `pool up` on three hosts (again: nothing started, nothing uploaded), then
/// port 22 is blocked on every host and two runs in a row take the pool's
/// agents: both succeed, and the block was never even knocked on.
#[test]
fn pool_runs_need_no_ssh() {
    let hosts = Hosts::up(3);
    let dir = TempDir::new("pool-nossh");
    let names = ["h1", "h2", "h3"];
    let first = pool_up(&hosts, dir.path(), "p", &names, 17811);
    let stderr = ok(&first, "pool up");
    assert_eq!(
        stderr
            .matches("1 agent(s) started, 0 already running")
            .count(),
        3,
        "{stderr}"
    );
    let again = pool_up(&hosts, dir.path(), "p", &names, 17811);
    let stderr = ok(&again, "pool up again");
    assert_eq!(
        stderr
            .matches("0 agent(s) started, 1 already running (agent binary already there, nothing uploaded)")
            .count(),
        3,
        "a second pool up changes nothing:\n{stderr}"
    );
    let pids: Vec<Vec<(u32, String)>> = names.iter().map(|n| agent_processes(&hosts, n)).collect();
    assert!(
        pids.iter().all(|p| p.len() == 1),
        "one agent per host: {pids:?}"
    );

    for n in names {
        let out = hosts.run_in(
            n,
            &[
                "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "22", "-j", "REJECT",
            ],
        );
        assert!(
            out.status.success(),
            "iptables on {n}: {}",
            text(&out.stderr)
        );
        assert!(
            std::net::TcpStream::connect_timeout(&hosts.addr(n), Duration::from_secs(2)).is_err(),
            "port 22 of {n} still answers"
        );
        // Count from zero: the probe above was the only knock so far.
        assert!(
            hosts
                .run_in(n, &["iptables", "-Z", "INPUT"])
                .status
                .success()
        );
    }
    let w = dir.write("pool.toml", &pool_workload("p", 3, "2s", ""));
    for round in 1..=2 {
        let started = Instant::now();
        let out = coord(dir.path(), &["run", w.to_str().unwrap(), "--json"], None);
        let wall = started.elapsed();
        let stderr = ok(&out, &format!("pool run {round}"));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
        assert_eq!(report_agents(&report).len(), 3, "{report}");
        assert!(requests(&report, 0) > 0, "{report}");
        println!(
            "pool run {round}: all 3 agents attached {:.2}s after `run` started (whole run {:.2}s)",
            attach_seconds(&stderr),
            wall.as_secs_f64()
        );
    }
    for n in names {
        assert_eq!(ssh_rejects(&hosts, n), 0, "someone tried SSH to {n}");
    }
    let after: Vec<Vec<(u32, String)>> = names.iter().map(|n| agent_processes(&hosts, n)).collect();
    assert_eq!(pids, after, "the same agent processes served both runs");
}

/// A copy of the agent with bytes appended: another hash, still runs.
fn changed_agent(dir: &Path) -> PathBuf {
    let new = dir.join("agent");
    let mut bytes = std::fs::read(bin("agent")).unwrap();
    bytes.extend_from_slice(b"\nfleetbench pool upgrade test\n");
    std::fs::write(&new, bytes).unwrap();
    std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let v = Command::new(&new).arg("--version").output().unwrap();
    assert!(v.status.success(), "the changed agent does not run");
    new
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `pool upgrade` to a changed agent with h3 cut off: h1 and h2 end on the
/// new binary, h3 is reported and keeps its old agent, which `pool ls` and a
/// run then call stale.
#[test]
fn pool_upgrade_rolls_and_an_unreachable_host_keeps_its_agent() {
    let hosts = Hosts::up(3);
    let dir = TempDir::new("pool-upgrade");
    ok(
        &pool_up(&hosts, dir.path(), "u", &["h1", "h2", "h3"], 17812),
        "pool up",
    );
    let (old_hash, new) = (sha256(&bin("agent")), changed_agent(dir.path()));
    let new_hash = sha256(&new);
    assert_ne!(old_hash, new_hash);

    hosts.cut_drop("h3");
    let out = coord(dir.path(), &["pool", "upgrade", "u"], Some(&new));
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed host fails the upgrade:\n{stderr}"
    );
    let h3 = format!("host root@{}: connect failed", hosts.ip("h3"));
    assert!(stderr.contains(&h3), "h3 is reported:\n{stderr}");
    assert!(
        stderr.contains(&format!("it keeps agent {}", &old_hash[..12])),
        "{stderr}"
    );
    assert!(stderr.contains("2 of 3 host(s) upgraded"), "{stderr}");
    for n in ["h1", "h2"] {
        let procs = agent_processes(&hosts, n);
        assert_eq!(procs.len(), 1, "{n}: {procs:?}");
        assert!(
            procs[0].1.contains(&format!("agent-{new_hash} attach")),
            "{n}: {procs:?}"
        );
        assert!(
            !hosts
                .rootfs(n)
                .join(format!("root/.fleetbench/bin/agent-{old_hash}"))
                .exists(),
            "{n}: the old binary is removed"
        );
    }
    hosts.heal("h3");
    let procs = agent_processes(&hosts, "h3");
    assert_eq!(procs.len(), 1, "h3: {procs:?}");
    assert!(
        procs[0].1.contains(&format!("agent-{old_hash} attach")),
        "h3 keeps the old: {procs:?}"
    );

    let ls = coord(
        dir.path(),
        &["pool", "ls", "u", "--wait", "10s"],
        Some(&new),
    );
    ok(&ls, "pool ls");
    let table = text(&ls.stdout);
    let line = |host: &str| {
        table
            .lines()
            .find(|l| l.contains(&format!("root@{host}#1")))
            .unwrap_or_else(|| panic!("no line for {host}:\n{table}"))
            .to_string()
    };
    assert!(
        line(&hosts.ip("h3").to_string()).contains("STALE"),
        "{table}"
    );
    assert!(
        line(&hosts.ip("h3").to_string()).contains("attached"),
        "{table}"
    );
    assert!(
        !line(&hosts.ip("h1").to_string()).contains("STALE"),
        "{table}"
    );

    // A run shipping the new agent never uses h3's stale one, and says so.
    let w = dir.write(
        "u.toml",
        &pool_workload("u", 3, "1s", "").replace("15s", "4s"),
    );
    let out = coord(dir.path(), &["run", w.to_str().unwrap()], Some(&new));
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("agent root@{}#1 is stale", hosts.ip("h3"))),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 of the 3 agent(s) the run needs attached"),
        "{stderr}"
    );
}

/// Spawns `coordinator run` and returns it with a reader of its stderr lines.
fn spawn_run(data: &Path, workload: &Path) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(data)
        .arg("run")
        .arg(workload)
        .env_remove("SSH_AUTH_SOCK")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coordinator");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a stderr line containing `needle`; returns every line so far.
fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if seen.iter().any(|l| l.contains(needle)) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "no line with {needle:?} within 30s; got:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// `agent serve` on every interface of this machine (the hosts reach it at
/// the bridge's address), on `port`.
fn target_for_hosts(port: u16) -> Target {
    let mut child = Command::new(bin("agent"))
        .args(["serve", "--listen", &format!("0.0.0.0:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start agent serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "{line:?}");
    Target {
        child,
        addr: ([127, 0, 0, 1], port).into(),
    }
}

/// A run is SIGKILLed mid-phase: the pool agents stop loading the target
/// within their lease (5 s), and the next run, started after, finds every
/// agent of the pool back on its own (the same processes); the events the
/// dead run never acked are not logged into the new run but delivered into
/// the dead run's own log.
#[test]
fn pool_reattaches_after_the_coordinator_is_killed() {
    let hosts = Hosts::up(2);
    let dir = TempDir::new("pool-restart");
    let target = target_for_hosts(17816);
    ok(
        &pool_up(&hosts, dir.path(), "r", &["h1", "h2"], 17813),
        "pool up",
    );
    let before: Vec<Vec<(u32, String)>> = ["h1", "h2"]
        .iter()
        .map(|n| agent_processes(&hosts, n))
        .collect();

    let long = dir.write(
        "long.toml",
        &format!(
            "[agents]\npool = \"r\"\ncount = 2\n\n[[phase]]\nname = \"load\"\nduration = \"60s\"\n\n[phase.http]\nurl = \"http://{}:17816/\"\nconcurrency = 2\n",
            hosts.coordinator_ip
        ),
    );
    let (mut doomed, rx) = spawn_run(dir.path(), &long);
    let mut seen = Vec::new();
    wait_line(&rx, "pool agents attached", &mut seen);
    // The live line shows every 5 s when stderr is not a terminal.
    wait_line(&rx, "[load 1/1] 5s/", &mut seen);
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let killed = Instant::now();
    let dead_run = run_id(&seen.join("\n"));
    // No coordinator: the load stops within the lease (plus the grace of
    // requests in flight), and stays stopped.
    let mut last = target.served();
    let stopped = wait_for("the load to stop", Duration::from_secs(15), || {
        std::thread::sleep(Duration::from_millis(500)); // the sampling interval of a counter
        let now = target.served();
        let quiet = now == last;
        last = now;
        quiet.then(|| killed.elapsed())
    });
    println!(
        "load stopped {:.1}s after the coordinator was killed",
        stopped.as_secs_f64()
    );
    assert!(
        stopped < Duration::from_secs(9),
        "the lease is 5 s: {stopped:?}"
    );
    assert!(last > 0, "the target was loaded");

    let w = dir.write("short.toml", &pool_workload("r", 2, "2s", ""));
    let out = coord(dir.path(), &["run", w.to_str().unwrap(), "--json"], None);
    let stderr = ok(&out, "the run after the kill");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report_agents(&report).len(), 2, "{report}");
    println!(
        "after the kill: both agents attached {:.2}s after `run` started",
        attach_seconds(&stderr)
    );
    let after: Vec<Vec<(u32, String)>> = ["h1", "h2"]
        .iter()
        .map(|n| agent_processes(&hosts, n))
        .collect();
    assert_eq!(before, after, "no agent was restarted");

    // The dead run's late events went nowhere near the new run's log.
    let new_run = run_id(&stderr);
    let events = coord(dir.path(), &["export", &new_run, "--events"], None);
    let events = text(&events.stdout);
    assert!(
        events.contains(&format!(
            "of run {dead_run} that its coordinator never acked"
        )),
        "the agents say they keep the dead run's events aside:\n{}",
        &events[..events.len().min(4000)]
    );
    // ... and were delivered into the dead run's own log: the phase's end,
    // which only happened after the kill, is there for both agents.
    assert!(
        events.contains(&format!("into the log of run {dead_run}")),
        "{}",
        &events[..events.len().min(4000)]
    );
    let dead_events = text(&coord(dir.path(), &["export", &dead_run, "--events"], None).stdout);
    assert_eq!(
        dead_events.matches("\"event\":\"phase_ended\"").count(),
        2,
        "both agents' PhaseEnded reached the dead run's log"
    );
    assert!(
        dead_events.contains(&format!("delivered by the coordinator of run {new_run}")),
        "the dead run's log says who delivered them"
    );
    // The dead run's log opens, and reads as incomplete (no RunFinished).
    let dead = report_json(dir.path(), &dead_run);
    assert_eq!(dead["status"], "incomplete", "{dead}");
}

/// `pool down` stops every agent and leaves no file of fleetbench on the
/// hosts, and forgets the pool.
#[test]
fn pool_down_leaves_nothing_on_the_hosts() {
    let hosts = Hosts::up(2);
    let dir = TempDir::new("pool-down");
    ok(
        &pool_up(&hosts, dir.path(), "d", &["h1", "h2"], 17814),
        "pool up",
    );
    for n in ["h1", "h2"] {
        assert_eq!(agent_processes(&hosts, n).len(), 1, "{n}");
        assert!(hosts.rootfs(n).join("root/.fleetbench").exists());
    }
    let out = coord(dir.path(), &["pool", "down", "d"], None);
    let stderr = ok(&out, "pool down");
    assert_eq!(
        stderr.matches("1 agent process(es) stopped").count(),
        2,
        "{stderr}"
    );
    for n in ["h1", "h2"] {
        assert_eq!(agent_processes(&hosts, n), vec![], "{n}: an agent is left");
        let mut left = Vec::new();
        let mut stack = vec![hosts.rootfs(n).to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains("fleetbench")
                    || name.starts_with("agent-")
                    || name.ends_with(".creds")
                {
                    left.push(p.clone());
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) && !p.ends_with("proc") {
                    stack.push(p);
                }
            }
        }
        assert_eq!(left, Vec::<PathBuf>::new(), "{n}: fleetbench left files");
    }
    assert!(
        !dir.path().join("pools/d").exists(),
        "the pool is forgotten"
    );
    let ls = coord(dir.path(), &["pool", "ls"], None);
    assert!(
        text(&ls.stdout).contains("no pools"),
        "{}",
        text(&ls.stdout)
    );
}

fn attach_by_hand(creds: &Path, log: &Path) -> KillOnDrop {
    KillOnDrop(
        Command::new(bin("agent"))
            .args(["attach", "--credentials"])
            .arg(creds)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start agent"),
    )
}

/// An agent enrolled with `coordinator enroll` and started by hand takes
/// part in a run; one presenting a wrong secret is refused (exit 3) and the
/// run goes on. A second run on the same pool meanwhile fails naming the
/// run that holds it.
#[test]
fn enrolled_agent_joins_a_run_and_a_wrong_secret_is_refused() {
    let dir = TempDir::new("pool-enroll");
    let data = dir.path();
    // A port of its own: free now, fixed for the pool from here on.
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .to_string();
    ok(
        &coord(data, &["pool", "up", "e", "--listen", &listen], None),
        "pool up with no hosts",
    );
    let creds = data.join("a.creds");
    let enrolled = coord(
        data,
        &[
            "enroll",
            "e",
            "--labels",
            "zone=a",
            "--output",
            creds.to_str().unwrap(),
        ],
        None,
    );
    let said = ok(&enrolled, "enroll");
    assert!(said.contains("agent attach --credentials"), "{said}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&creds).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let _agent = attach_by_hand(&creds, &data.join("a.log"));
    // Another agent of the pool, with labels the run does not ask for.
    let other = data.join("b.creds");
    ok(
        &coord(
            data,
            &[
                "enroll",
                "e",
                "--labels",
                "zone=b",
                "--output",
                other.to_str().unwrap(),
            ],
            None,
        ),
        "enroll another",
    );
    let _other = attach_by_hand(&other, &data.join("b.log"));

    let w = dir.write(
        "e.toml",
        &pool_workload("e", 1, "3s", "labels = { zone = \"a\" }"),
    );
    let (mut run, rx) = spawn_run(data, &w);
    let mut seen = Vec::new();
    wait_line(&rx, "pool agents attached", &mut seen);
    let holder = run_id(&seen.join("\n"));

    // The pool is held: a second run fails at once, naming the first.
    let second = coord(data, &["run", w.to_str().unwrap()], None);
    let stderr = text(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("pool e is held by run {holder}")),
        "{stderr}"
    );
    // `pool ls` says who holds it, and lists both agents as last seen.
    let ls = coord(data, &["pool", "ls", "e"], None);
    let table = text(&ls.stdout);
    assert!(
        ls.status.success() && table.contains(&format!("held by run {holder}")),
        "{table}"
    );
    assert!(
        table.contains("enrolled-1") && table.contains("zone=b"),
        "{table}"
    );

    // A wrong secret is refused for good.
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    c["secret"] = "00".repeat(32).into();
    let wrong = data.join("wrong.creds");
    std::fs::write(&wrong, c.to_string()).unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut intruder = attach_by_hand(&wrong, &data.join("wrong.log"));
    let status = wait_for(
        "the wrong secret's agent to exit",
        Duration::from_secs(20),
        || intruder.0.try_wait().unwrap(),
    );
    assert_eq!(status.code(), Some(3));
    let said = std::fs::read_to_string(data.join("wrong.log")).unwrap();
    assert!(said.contains("unknown agent id or wrong secret"), "{said}");

    let status = wait_for("the run to end", Duration::from_secs(60), || {
        run.try_wait().unwrap()
    });
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        seen.push(l);
    }
    assert!(status.success(), "{}", seen.join("\n"));
    let report = report_json(data, &holder);
    assert_eq!(
        report_agents(&report),
        ["enrolled-1"],
        "only the agent with the run's labels took part: {report}"
    );
    assert!(requests(&report, 0) > 0, "{report}");
    let notices = report["notices"].to_string();
    assert!(
        notices.contains("wrong secret"),
        "the refusal is logged: {notices}"
    );
}
