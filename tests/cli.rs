//! The command line's manners: every command ends quietly when its reader
//! goes away (`coordinator runs | head -2`), and what it says reads as
//! English, not as Rust (`1 agent attached`, no empty table for a run that
//! never ran a phase, no `Argv([...])`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A finished run of `body` in `dir`: its id.
fn finished_run(dir: &TempDir, body: &str) -> String {
    let w = dir.write("w.toml", body);
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    v["run_id"].as_str().expect("run id").to_string()
}

/// `coordinator ARGS` whose stdout reader closes after reading `lines`
/// lines (0: before the command writes anything): its exit code and
/// stderr.
fn with_reader_gone(data: &Path, args: &[&str], lines: usize) -> (Option<i32>, String) {
    let mut child = Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coordinator");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut reader = BufReader::new(stdout);
    for _ in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a line");
    }
    drop(reader);
    let stderr = child.stderr.take().expect("piped stderr");
    let said = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let status = wait_for("the command to end", Duration::from_secs(120), || {
        child.try_wait().expect("wait")
    });
    (status.code(), said.join().expect("stderr reader"))
}

/// Every command that prints, with its reader gone: at once, and (where
/// the output has lines to read) after the first line. Each ends with its
/// usual exit code (0 here) and says nothing of a panic or a broken pipe.
#[test]
fn every_command_ends_quietly_when_its_reader_goes_away() {
    let dir = TempDir::new("pipe");
    let data = dir.path();
    let w = synthetic_workload("2s");
    let first = finished_run(&dir, &w);
    let second = finished_run(&dir, &w);
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .to_string();
    let up = coordinator(data, &["pool", "up", "p", "--listen", &listen]);
    assert!(up.status.success(), "pool up: {}", text(&up.stderr));
    let workload = dir.write("w.toml", &w);
    let workload = workload.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["runs"],
        &["report", &first],
        &["report", &first, "--format", "json"],
        &["report", &first, "--format", "csv"],
        &["report", &first, "--format", "html"],
        &["replay", &first],
        &["replay", &first, "--window", "2s", "--format", "json"],
        &["compare", &first, &second],
        &["export", &first],
        &["export", &first, "--format", "csv"],
        &["export", &first, "--events"],
        &["preview", workload, "--count", "20"],
        &["pool", "ls", "--wait", "0s"],
        &["enroll", "p"],
        &["run", workload],
    ];
    let mut wrong = Vec::new();
    for args in commands {
        for lines in [0, 1] {
            let (code, stderr) = with_reader_gone(data, args, lines);
            let noisy = stderr.contains("panicked") || stderr.contains("Broken pipe");
            if code != Some(0) || noisy {
                wrong.push(format!(
                    "{args:?} (reader gone after {lines} line(s)): exit {code:?}\n{stderr}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `agent serve` prints its address and goes on serving even when nobody
/// reads its stdout any more; it stops on SIGTERM with status 0.
#[test]
fn agent_serve_keeps_serving_when_its_stdout_is_closed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let echo = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut child = Command::new(bin("agent"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--echo-listen", &format!("127.0.0.1:{echo}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start agent serve");
    drop(child.stdout.take());
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    wait_for("agent serve answers", Duration::from_secs(20), || {
        let mut s = std::net::TcpStream::connect(target).ok()?;
        std::io::Write::write_all(
            &mut s,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .ok()?;
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut s, &mut reply).ok()?;
        reply.starts_with("HTTP/1.1 200").then_some(())
    });
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = wait_for("agent serve to stop", Duration::from_secs(20), || {
        child.try_wait().expect("wait")
    });
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("served 1 request\n"), "{stderr}");
}

/// One local agent is "1 agent", not "1 agents".
#[test]
fn one_agent_is_one_agent() {
    let dir = TempDir::new("plural");
    let w = dir.write(
        "w.toml",
        "[agents]\nlocal = 1\n\n[[phase]]\nname = \"p\"\nduration = \"1s\"\n\n[phase.synthetic]\nlatency = \"1ms\"\nconcurrency = 1\n",
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("\n1 agent attached in "), "{stderr}");
    assert!(!stderr.contains("1 agents"), "{stderr}");
}

/// A run that fails before its first phase prints its failure, not an
/// empty table; an agent that said nothing is said to have an empty log.
#[test]
fn a_run_that_never_ran_a_phase_prints_its_failure_not_an_empty_table() {
    let dir = TempDir::new("no-phase");
    let w = dir.write("w.toml", &synthetic_workload("1s"));
    let out = coordinator(
        dir.path(),
        &["run", w.to_str().unwrap(), "--agent-binary", "/bin/true"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains(") failed: started "), "{table}");
    assert!(table.contains("\nno phase ran\n"), "{table}");
    assert!(
        !table.contains("requests") && !table.contains('┌'),
        "an empty table:\n{table}"
    );
    assert!(
        table.contains("exited (exit status: 0) before attaching; its log ")
            && table.contains("local-1.log is empty"),
        "{table}"
    );
}

/// A service whose program cannot start is named with its command line
/// as a shell would show it, not as Rust's Debug text.
#[test]
fn a_service_that_cannot_start_is_named_without_rust_debug_text() {
    let dir = TempDir::new("argv");
    let w = dir.write(
        "w.toml",
        "[agents]\nlocal = 1\n\n[[service]]\nname = \"db\"\ncommand = [\"/nonexistent/fleetbench-db\", \"--data\", \"a b\"]\n\n[[phase]]\nname = \"p\"\nduration = \"1s\"\n\n[phase.synthetic]\nlatency = \"1ms\"\nconcurrency = 1\n",
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("starting service \"db\" (/nonexistent/fleetbench-db --data 'a b')"),
        "{stderr}"
    );
    assert!(!stderr.contains("Argv("), "{stderr}");
}

/// `preview` streams: the first request of ten million is out at once and
/// a reader that goes away ends it quietly. It used to render them all
/// first (`-n 100000` held everything and wrote nothing for 20 s).
#[test]
fn preview_streams_its_requests() {
    let dir = TempDir::new("preview-stream");
    let w = dir.write(
        "w.toml",
        "[agents]\nlocal = 1\n\n[generator.k]\nkind = \"zipf\"\nn = 1000\n\n[[phase]]\nname = \"p\"\nduration = \"1s\"\nconcurrency = 1\n\n[phase.http]\nurl = \"http://127.0.0.1:1/k/{{k}}\"\n",
    );
    let mut child = Command::new(bin("coordinator"))
        .args(["preview", w.to_str().unwrap(), "-n", "10000000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(lines.next().map(Result::unwrap));
    });
    let first = rx.recv_timeout(Duration::from_secs(10));
    let status = wait_for(
        "preview to end once its reader is gone",
        Duration::from_secs(20),
        || child.try_wait().unwrap(),
    );
    let first = first.expect("no first line within 10 s: preview holds its output");
    assert!(first.is_some_and(|l| l.starts_with("#0 GET http://127.0.0.1:1/k/")));
    assert!(status.success(), "{status:?}");
}

/// Every subcommand's `--help` shows examples, and every option and
/// argument says what it is (an enum's values included): a test walks
/// `coordinator help` as a new user would.
#[test]
fn every_subcommand_has_examples_and_described_options() {
    let dir = TempDir::new("cli-help");
    let help = |args: &[&str]| {
        let mut all = vec!["help"];
        all.extend_from_slice(args);
        let out = coordinator(dir.path(), &all);
        assert!(out.status.success(), "help {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    // The commands a help page lists: "  NAME  text" lines under "Commands:".
    let commands = |page: &str| -> Vec<String> {
        page.split("Commands:")
            .nth(1)
            .unwrap_or("")
            .split("\n\n")
            .next()
            .unwrap_or("")
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .filter(|c| c != "help")
            .collect()
    };
    let mut pages: Vec<Vec<String>> = Vec::new();
    for c in commands(&help(&[])) {
        let sub = commands(&help(&[c.as_str()]));
        if sub.is_empty() {
            pages.push(vec![c]);
        } else {
            pages.extend(sub.into_iter().map(|s| vec![c.clone(), s]));
        }
    }
    assert!(pages.len() >= 14, "{pages:?}");
    for page in pages {
        let args: Vec<&str> = page.iter().map(String::as_str).collect();
        let text = help(&args);
        assert!(
            text.contains("Examples:\n  coordinator "),
            "{page:?} has no examples:\n{text}"
        );
        // Each option: its line says what it is, or the lines below do.
        let options = text.split("Options:").nth(1).unwrap_or("");
        let lines: Vec<&str> = options.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            if !t.starts_with('-') {
                continue;
            }
            // An enum's value: "- name: what it is".
            let value = t.starts_with("- ") && t.contains(": ");
            let inline = value || t.split("  ").skip(1).any(|p| !p.trim().is_empty());
            let below = lines
                .get(i + 1)
                .is_some_and(|next| !next.trim().is_empty() && !next.trim_start().starts_with('-'));
            assert!(
                inline || below,
                "{page:?}: {t:?} says nothing of itself:\n{text}"
            );
        }
    }
}

/// `--version` says the version, the git commit built from, and the agent
/// binary this coordinator would ship with its SHA-256 (what pool agents
/// are checked against).
#[test]
fn version_names_the_commit_and_the_agent_binary() {
    let out = std::process::Command::new(bin("coordinator"))
        .arg("--version")
        .env_remove("FLEETBENCH_AGENT")
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = text(&out.stdout);
    assert!(
        said.starts_with(&format!(
            "coordinator {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{said}"
    );
    let hash = fleetbench::binary::file_hash(&bin("agent")).unwrap();
    assert!(
        said.contains(&format!(
            "agent binary: {} (sha256 {hash})",
            bin("agent").display()
        )),
        "{said}"
    );
}
