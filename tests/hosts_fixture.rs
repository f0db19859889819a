//! The bare-hosts fixture itself (`tests/common/hosts.rs` driving
//! `tests/hosts/testhosts.sh`), before the SSH bootstrap tests rely on it.
//!
//! Needs root and the packages of `tests/hosts/README.md` (`.ci/run` installs
//! them): `cargo test --test hosts_fixture` as root.

// Its test brings the slow fixture up once and checks all it offers in turn.
#![allow(clippy::too_many_lines)]

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::hosts::{self, Hosts};
use common::{text, wait_for};

/// The first bytes the server sends, if it accepts within a second.
fn banner(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn ssh_answers(addr: SocketAddr) -> bool {
    banner(addr).is_some_and(|b| b.starts_with("SSH-2.0-"))
}

/// `ssh host script` with `stdin` (a file, or nothing).
fn ssh(h: &Hosts, name: &str, script: &str, stdin: Option<&str>) -> Output {
    let stdin = match stdin {
        Some(path) => Stdio::from(File::open(path).expect("open upload")),
        None => Stdio::null(),
    };
    h.ssh(name)
        .arg(script)
        .stdin(stdin)
        .output()
        .expect("run ssh")
}

#[test]
fn hosts_answer_over_ssh_run_only_static_binaries_and_can_be_hurt() {
    let t = Instant::now();
    let h = Hosts::up(3);
    eprintln!("up 3: {:?}", t.elapsed());

    assert_eq!(h.names(), ["h1", "h2", "h3"]);
    assert!(h.client_key.is_file() && h.known_hosts.is_file());
    let known = std::fs::read_to_string(&h.known_hosts).unwrap();
    for host in &h.hosts {
        assert_eq!((host.port, host.user.as_str()), (22, "root"));
        assert!(host.rootfs.join("usr/bin/busybox").is_file());
        assert!(
            known
                .lines()
                .any(|l| l.starts_with(&format!("{} ssh-ed25519 ", host.ip))),
            "known_hosts lacks {}: {known}",
            host.ip
        );
        // Up means answering: no waiting here.
        assert!(ssh_answers(host.addr()), "{} silent after up", host.name);
        // Only the fixture's /24 exists in a host: no way out.
        let route = h.run_in(&host.name, &["ip", "route", "get", "1.1.1.1"]);
        assert!(!route.status.success(), "{} has a route out", host.name);
    }

    // Over SSH, on every host at once: a static binary uploaded with `cat >`
    // runs, a dynamic one does not; the host sees only its own processes and
    // reaches the coordinator's address.
    let listener = TcpListener::bind((h.coordinator_ip, 0)).expect("listen on the bridge");
    let port = listener.local_addr().unwrap().port();
    let t = Instant::now();
    std::thread::scope(|s| {
        for name in h.names() {
            let h = &h;
            s.spawn(move || {
                let out = ssh(
                    h,
                    name,
                    "cat > /tmp/busybox; chmod +x /tmp/busybox; /tmp/busybox echo static runs",
                    Some("/bin/busybox"),
                );
                assert!(out.status.success(), "{name}: {}", text(&out.stderr));
                assert_eq!(text(&out.stdout), "static runs\n");
                let uploaded = std::fs::read(h.rootfs(name).join("tmp/busybox")).unwrap();
                assert!(uploaded == std::fs::read("/bin/busybox").unwrap());

                let out = ssh(
                    h,
                    name,
                    "cat > /tmp/dynamic; chmod +x /tmp/dynamic; /tmp/dynamic",
                    Some("/usr/bin/true"),
                );
                assert!(!out.status.success(), "{name}: a dynamic binary ran");
                let uploaded = std::fs::read(h.rootfs(name).join("tmp/dynamic")).unwrap();
                assert!(uploaded == std::fs::read("/usr/bin/true").unwrap());

                let script = format!(
                    "hostname; ps -o pid,comm | wc -l; echo from-{name} | nc -w 5 {} {port}",
                    h.coordinator_ip
                );
                let out = ssh(h, name, &script, None);
                assert!(out.status.success(), "{name}: {}", text(&out.stderr));
                let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
                assert_eq!(lines[0], name);
                // header, sshd (PID 1), its session, sh, ps, wc, nc: a handful
                let n: usize = lines[1].trim().parse().unwrap();
                assert!(n < 10, "{name} sees {n} processes: its own pid namespace?");
            });
        }
        // Polled with a deadline: a host that never connects must not hang the test.
        listener.set_nonblocking(true).unwrap();
        let mut from = Vec::new();
        for _ in 0..3 {
            let (c, _) = wait_for(
                "a host to connect to the coordinator",
                Duration::from_secs(20),
                || listener.accept().ok(),
            );
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut msg = String::new();
            BufReader::new(c).read_line(&mut msg).unwrap();
            from.push(msg.trim().to_string());
        }
        from.sort();
        assert_eq!(from, ["from-h1", "from-h2", "from-h3"]);
    });
    eprintln!("ssh checks on 3 hosts: {:?}", t.elapsed());

    // cut: nothing reaches port 22; heal: it answers again.
    h.cut("h2");
    wait_for("h2 to be cut off", Duration::from_secs(5), || {
        TcpStream::connect_timeout(&h.addr("h2"), Duration::from_millis(300))
            .is_err()
            .then_some(())
    });
    assert!(ssh_answers(h.addr("h1")), "cutting h2 hurt h1");
    h.heal("h2");
    wait_for("h2 to answer after heal", Duration::from_secs(10), || {
        ssh_answers(h.addr("h2")).then_some(())
    });

    // delay: a connect waits for the host's SYN-ACK, held for the delay.
    let connect_time = || {
        let t = Instant::now();
        TcpStream::connect_timeout(&h.addr("h1"), Duration::from_secs(5)).expect("connect h1");
        t.elapsed()
    };
    h.delay("h1", 300);
    let slow = connect_time();
    assert!(
        slow >= Duration::from_millis(300),
        "delayed connect in {slow:?}"
    );
    h.delay("h1", 0);
    let fast = connect_time();
    assert!(
        fast < Duration::from_millis(200),
        "undelayed connect in {fast:?}"
    );

    // kill: every process of the host dies, including what a session left
    // running; its address stays, so connections are refused at once.
    let out = ssh(
        &h,
        "h3",
        "setsid sleep 1000 </dev/null >/dev/null 2>&1 &",
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let comm = |pid: &u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    // The detached child may exec `sleep` after the session has returned.
    wait_for("the detached sleep on h3", Duration::from_secs(10), || {
        h.pids("h3")
            .iter()
            .any(|p| comm(p).trim() == "sleep")
            .then_some(())
    });
    h.kill("h3");
    assert_eq!(h.pids("h3"), Vec::<u32>::new());
    let refused = TcpStream::connect_timeout(&h.addr("h3"), Duration::from_secs(1));
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    // restart: back, with its disk.
    h.restart("h3");
    assert!(ssh_answers(h.addr("h3")));
    assert!(h.rootfs("h3").join("tmp/busybox").is_file());

    let t = Instant::now();
    drop(h);
    eprintln!("down: {:?}", t.elapsed());
    // Under the lock no fixture is up (holders run `down` before letting go),
    // so whatever is there was left by ours.
    let _lock = hosts::lock();
    let left = hosts::leftovers();
    assert!(left.is_empty(), "left behind: {left:#?}");
}
