//! Shared fixtures of the end-to-end tests: the real binaries, a temporary
//! data directory per test, the built-in HTTP target on a port of its own,
//! and waiting on conditions with deadlines (never sleeping as a guess).
//!
//! The binaries are those of this workspace's `target/<profile>/`; the test
//! command in the README builds them first (`cargo build --workspace`).

#![allow(dead_code)]

pub(crate) mod hosts;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary (`coordinator` or `agent`).
pub(crate) fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace`)",
        path.display()
    );
    path
}

/// A directory removed when dropped.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "fleetbench-test-{tag}-{}-{:x}",
            std::process::id(),
            rand_u64()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// Polls `cond` until it returns `Some`, or panics at the deadline.
pub(crate) fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process killed (and reaped) when dropped.
pub(crate) struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port on 127.0.0.1 free right now.
pub(crate) fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Debian's nginx with config `conf`, in the foreground and a process
/// group of its own; returns once each of `listening` (ip, port) accepts
/// connections. Dropped, it is stopped as nginx should be (SIGTERM to the
/// master, which stops its workers), and its whole group killed if it is
/// not gone within 5 s: a SIGKILLed master leaves its workers running.
pub(crate) fn nginx(conf: &Path, listening: &[(&str, u16)]) -> NginxProcess {
    use std::os::unix::process::CommandExt;
    let child = Command::new("nginx")
        .args(["-e", "stderr", "-c"])
        .arg(conf)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start nginx (Debian package nginx; .ci/run installs it)");
    let guard = NginxProcess(child);
    for &(ip, port) in listening {
        wait_for("nginx to listen", Duration::from_secs(10), || {
            TcpStream::connect((ip, port)).ok()
        });
    }
    guard
}

/// A running nginx (see [`nginx`]).
pub(crate) struct NginxProcess(pub Child);

impl NginxProcess {
    /// Its process group: the master and its workers.
    pub(crate) fn group(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0.id() as i32)
    }
}

impl Drop for NginxProcess {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill, killpg};
        let _ = kill(self.group(), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) && killpg(self.group(), None).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(self.group(), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// `agent serve` on 127.0.0.1 with an OS-picked port; killed on drop.
pub(crate) struct Target {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Target {
    pub(crate) fn start(extra: &[&str]) -> Target {
        let mut child = Command::new(bin("agent"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start agent serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from agent serve: {line:?}"))
            .parse()
            .expect("listening address");
        Target { child, addr }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Requests served so far, from the target's own count.
    pub(crate) fn served(&self) -> u64 {
        self.stats()["served"].as_u64().expect("served count")
    }

    /// The target's own stats: `served`, `h2`, `echoed`, `routes`.
    pub(crate) fn stats(&self) -> serde_json::Value {
        serve_stats(self.addr).expect("the target's stats")
    }
}

/// The stats of an `agent serve` listening at `addr` (see
/// [`Target::stats`]); None when it does not answer them.
pub(crate) fn serve_stats(addr: SocketAddr) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /__fleetbench/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split("\r\n\r\n").nth(1)?;
    serde_json::from_str(body.trim()).ok()
}

impl Target {
    /// Stops the target with SIGTERM and waits for it to exit (so that it
    /// writes what it was asked to record).
    pub(crate) fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().expect("wait for target").is_none() {
            assert!(
                Instant::now() < deadline,
                "the target did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `coordinator ARGS` with a data dir, to completion.
pub(crate) fn coordinator(data: &Path, args: &[&str]) -> Output {
    Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run coordinator")
}

/// Runs `coordinator ARGS` with a data dir in the background (its stdout
/// and stderr into files there; `SSH_AUTH_SOCK` unset, so SSH uses the
/// workload's identity file), calls `meanwhile`, then waits for it (at most
/// 60 s). Its exit status, stdout and stderr.
pub(crate) fn coordinator_while(
    data: &Path,
    args: &[&str],
    meanwhile: impl FnOnce(),
) -> (std::process::ExitStatus, String, String) {
    let (out, err) = (
        data.join("coordinator.stdout"),
        data.join("coordinator.stderr"),
    );
    let file = |p: &Path| Stdio::from(std::fs::File::create(p).expect("create output file"));
    let mut child = Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SSH_AUTH_SOCK")
        .stdout(file(&out))
        .stderr(file(&err))
        .spawn()
        .expect("start coordinator");
    meanwhile();
    let status = wait_for("the coordinator to exit", Duration::from_secs(60), || {
        child.try_wait().expect("wait for coordinator")
    });
    let read = |p: &Path| std::fs::read_to_string(p).expect("read output file");
    (status, read(&out), read(&err))
}

/// `report RUN --format json`, parsed.
pub(crate) fn report_json(data: &Path, run: &str) -> serde_json::Value {
    let out = coordinator(data, &["report", run, "--format", "json"]);
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report JSON")
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The run id in `run`'s first line of stderr.
pub(crate) fn run_id(stderr: &[u8]) -> String {
    let text = text(stderr);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("run ")
                .and_then(|r| r.split_whitespace().next())
        })
        .unwrap_or_else(|| panic!("no run id in: {text}"))
        .to_string()
}

/// Every log record of a run (`export RUN --events`), in LSN order.
pub(crate) fn events(data: &Path, run: &str) -> Vec<serde_json::Value> {
    let out = coordinator(data, &["export", run, "--events"]);
    assert!(out.status.success(), "export failed: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect()
}

/// The `stats {JSON}` line `agent serve` prints on exit, from a service's
/// output as the run logged it.
pub(crate) fn service_stats(events: &[serde_json::Value], service: &str) -> serde_json::Value {
    let output: String = events
        .iter()
        .filter(|e| e["kind"] == "service_output" && e["service"] == service)
        .map(|e| e["data"].as_str().unwrap_or("").to_string())
        .collect();
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("stats "))
        .unwrap_or_else(|| panic!("no stats line in the output of service {service}: {output}"));
    serde_json::from_str(line).expect("stats JSON")
}

/// A phase's total requests in a report, warm-up excluded.
pub(crate) fn requests(report: &serde_json::Value, phase: usize) -> u64 {
    report["phases"][phase]["requests"]
        .as_u64()
        .expect("requests")
}

/// Two local agents, one synthetic closed-loop phase of `duration` (1 ms a
/// request, 4 at a time): the workload of tests that hurt the run itself.
pub(crate) fn synthetic_workload(duration: &str) -> String {
    format!(
        "[agents]\nlocal = 2\n\n[[phase]]\nname = \"load\"\nduration = \"{duration}\"\n\n[phase.synthetic]\nlatency = \"1ms\"\nconcurrency = 4\n"
    )
}

/// Pids of the live processes whose command line holds `needle` (a test's
/// temporary directory names the agents it started). Zombies have no
/// command line, so a dead but unreaped process is not listed.
pub(crate) fn pids_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

/// Process `pid` is gone (or a zombie waiting to be reaped).
pub(crate) fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => true,
    }
}

/// A `coordinator` started in the background in a process group of its own
/// (as a shell starts a job), its stderr read line by line as it comes.
pub(crate) struct Background {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every stderr line read so far.
    pub stderr: String,
}

impl Background {
    pub(crate) fn coordinator(data: &Path, args: &[&str]) -> Background {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(bin("coordinator"))
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start coordinator");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            lines,
            stderr: String::new(),
        }
    }

    /// Reads stderr until a line holds `what`, or panics after `timeout`.
    pub(crate) fn wait_line(&mut self, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push_str(&line);
                    self.stderr.push('\n');
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {what:?} within {timeout:?}:\n{}", self.stderr),
            }
        }
    }

    /// Sends `signal` to the coordinator alone (`group`: to its whole
    /// process group, as a terminal's Ctrl-C does).
    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal, group: bool) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        if group {
            nix::sys::signal::killpg(pid, signal).expect("signal the process group");
        } else {
            nix::sys::signal::kill(pid, signal).expect("signal the coordinator");
        }
    }

    /// Waits for the exit, at most `timeout`; the exit code (None: killed
    /// by a signal) and everything left on stderr.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let status = wait_for("the coordinator to exit", timeout, || {
            self.child.try_wait().expect("wait for coordinator")
        });
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.stderr.push_str(&line);
            self.stderr.push('\n');
        }
        status.code()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
