//! A target given by a host name with two addresses: the coordinator (and
//! the agents it starts) run in a mount namespace of their own whose
//! /etc/hosts gives `multi.test` 127.0.0.1 and 127.0.0.2, and nginx listens
//! on both. New connections resolve the name each time and go round-robin
//! over both addresses (nginx logs which one took each), the lookups are
//! timed as the `dns` stage, and a notice says where the connections went.
//! Needs root (unshare, mount); CI runs as root.

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_name_is_resolved_per_connection_and_its_addresses_take_turns() {
    let dir = TempDir::new("dns");
    let port = free_tcp_port();
    let d = dir.path().display();
    let log = dir.path().join("access.log");
    let conf = dir.write(
        "nginx.conf",
        &format!(
            "user root root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  log_format a '$server_addr $connection';\n\
             server {{ listen 127.0.0.1:{port}; listen 127.0.0.2:{port}; access_log {log} a;\n\
               location / {{ return 200 'ok'; }} }}\n}}\n",
            log = log.display(),
        ),
    );
    let _nginx = nginx(&conf, &[("127.0.0.1", port), ("127.0.0.2", port)]);
    let hosts = dir.write(
        "hosts",
        "127.0.0.1 localhost\n127.0.0.1 multi.test\n127.0.0.2 multi.test\n",
    );
    let w = dir.write(
        "w.toml",
        &format!(
            "[agents]\nlocal = 1\n\n[[phase]]\nname = \"load\"\nduration = \"2s\"\nrate = 100\n\n\
             [phase.http]\nurl = \"http://multi.test:{port}/\"\nnew_connection = true\n"
        ),
    );
    let script = format!(
        "mount --bind '{}' /etc/hosts && exec '{}' --data-dir '{d}' run '{}' --json",
        hosts.display(),
        bin("coordinator").display(),
        w.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("RUST_LOG", "warn")
        .output()
        .expect("unshare (util-linux)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let phase = &report["phases"][0];
    let requests = phase["requests"].as_u64().unwrap();
    assert!(requests >= 150, "{phase}");
    assert_eq!(phase["errors"], serde_json::json!({}), "{phase}");
    assert_eq!(
        phase["stages_us"]["dns"]["count"].as_u64(),
        Some(requests),
        "{phase}"
    );

    let logged = std::fs::read_to_string(&log).unwrap();
    let on = |ip: &str| {
        logged
            .lines()
            .filter(|l| l.starts_with(&format!("{ip} ")))
            .count() as u64
    };
    let (one, two) = (on("127.0.0.1"), on("127.0.0.2"));
    assert_eq!(one + two, requests, "nginx logged every request");
    assert!(
        one.abs_diff(two) <= 2,
        "round-robin: {one} on 127.0.0.1, {two} on 127.0.0.2"
    );
    let notices = report["notices"].to_string();
    assert!(
        notices.contains(&format!(
            "multi.test resolved per connection: 127.0.0.1:{port} x{one}, 127.0.0.2:{port} x{two}"
        )),
        "{notices}"
    );
}
