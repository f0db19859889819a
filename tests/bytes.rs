//! `bytes_sent` is what reached the target, judged by software no one here
//! wrote: nginx's own `$request_length` when every request is read whole,
//! and the kernel's packet counters (an iptables rule) when the server
//! answers a 10 MB upload without reading it and closes. Counting what
//! each request was built to hold had said 54 GB in 3 s there; counting
//! socket writes, 8 GB: the kernel drops a reset connection's queue.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// nginx on a port of its own, logging each request's `$request_length`
/// (request line, headers and body, as nginx read them); stopped on drop.
/// It takes PUTs (WebDAV) into a directory: it reads each body whole (a
/// body it discards unread is not in `$request_length`).
struct Nginx {
    _child: NginxProcess,
    port: u16,
    log: std::path::PathBuf,
}

impl Nginx {
    fn start(dir: &Path) -> Nginx {
        let port = free_tcp_port();
        let log = dir.join("access.log");
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "user root root;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n\
                 log_format len '$request_length';\n\
                 server {{\n    listen 127.0.0.1:{port};\n    access_log {log} len;\n\
                 client_max_body_size 0;\n    location / {{ root {dir}/www; dav_methods PUT; create_full_put_path on; }}\n  }}\n}}\n",
                dir = dir.display(),
                log = log.display(),
            ),
        )
        .unwrap();
        let child = nginx(&conf, &[("127.0.0.1", port)]);
        Nginx {
            _child: child,
            port,
            log,
        }
    }

    /// Requests nginx logged, and the sum of their lengths.
    fn logged(&self) -> (u64, u64) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| l.trim().parse::<u64>().expect("a $request_length"))
            .fold((0, 0), |(n, sum), len| (n + 1, sum + len))
    }
}

/// The phase's `bytes_sent` and requests in a run's JSON report.
fn sent(stdout: &[u8]) -> (u64, u64) {
    let report: serde_json::Value = serde_json::from_slice(stdout).expect("the JSON report");
    let phase = &report["phases"][0];
    (
        phase["bytes_sent"].as_u64().expect("bytes_sent"),
        phase["requests"].as_u64().expect("requests"),
    )
}

/// Every request read whole: `bytes_sent` is, to the byte, the sum of
/// nginx's `$request_length` (request lines, headers, templated ones
/// included, and bodies), and the request counts agree.
#[test]
fn bytes_sent_equals_what_nginx_read() {
    let dir = TempDir::new("bytes-nginx");
    let nginx = Nginx::start(dir.path());
    let w = dir.write(
        "w.toml",
        &format!(
            "[agents]\nlocal = 2\n\n[[phase]]\nname = \"upload\"\nduration = \"2s\"\nrate = 300\n\n\
             [phase.http]\nmethod = \"PUT\"\nurl = \"http://127.0.0.1:{}/items/{{{{seq}}}}\"\n\
             headers = {{ x-trace = \"t-{{{{seq}}}}\" }}\nbody = \"{}\"\n\n\
             [generator.seq]\nkind = \"sequence\"\n",
            nginx.port,
            "b".repeat(3000)
        ),
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (bytes, requests) = sent(&out.stdout);
    let (logged, lengths) = nginx.logged();
    assert_eq!(requests, logged, "requests against nginx's log");
    assert!(requests > 400, "{requests}");
    assert_eq!(bytes, lengths, "bytes_sent against nginx's $request_length");
}

/// An iptables rule counting the packets and bytes to one port on
/// loopback; removed on drop.
struct Counter {
    chain: String,
    port: u16,
}

impl Counter {
    fn new(port: u16) -> Counter {
        let chain = format!("FB{}", std::process::id());
        let c = Counter { chain, port };
        c.iptables(&["-N", &c.chain]);
        c.iptables(&["-A", &c.chain, "-j", "RETURN"]);
        c.iptables(&c.jump("-I"));
        c
    }

    fn jump(&self, op: &str) -> Vec<String> {
        [op, "INPUT", "-i", "lo", "-p", "tcp", "--dport"]
            .iter()
            .map(ToString::to_string)
            .chain([self.port.to_string(), "-j".into(), self.chain.clone()])
            .collect()
    }

    fn iptables<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> String {
        let out = Command::new("iptables")
            .args(args)
            .output()
            .expect("iptables (.ci/run installs it)");
        assert!(out.status.success(), "iptables: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// TCP payload bytes that reached the port: the rule's bytes, less
    /// each packet's IP and TCP headers (at least 40 bytes).
    fn payload_at_most(&self) -> u64 {
        let listing = self.iptables(&["-L", &self.chain, "-v", "-x", "-n"]);
        let row = listing
            .lines()
            .find(|l| l.contains("RETURN"))
            .unwrap_or_else(|| panic!("{listing}"));
        let mut f = row.split_whitespace();
        let packets: u64 = f.next().unwrap().parse().unwrap();
        let bytes: u64 = f.next().unwrap().parse().unwrap();
        bytes - 40 * packets
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        for args in [
            self.jump("-D"),
            vec!["-F".into(), self.chain.clone()],
            vec!["-X".into(), self.chain.clone()],
        ] {
            let _ = Command::new("iptables").args(&args).output();
        }
    }
}

/// A server that answers a 10 MB upload at once, without reading it, and
/// closes: `bytes_sent` is at most what reached the server's port (the
/// kernel's count), not the uploads' size, and the server did get at least
/// each request's headers.
#[test]
fn bytes_sent_is_what_reached_a_server_that_did_not_read() {
    let dir = TempDir::new("bytes-reset");
    let target = Target::start(&[]);
    let counter = Counter::new(target.addr.port());
    let body = "x".repeat(10_000_000);
    let w = dir.write(
        "w.toml",
        &format!(
            "[agents]\nlocal = 1\n\n[[phase]]\nname = \"upload\"\nduration = \"2s\"\nconcurrency = 4\n\n\
             [phase.http]\nmethod = \"POST\"\nurl = \"{}\"\nbody = \"{body}\"\n",
            target.url()
        ),
    );
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (bytes, requests) = sent(&out.stdout);
    let arrived = counter.payload_at_most();
    assert!(requests > 10, "{requests}");
    assert!(
        bytes <= arrived,
        "bytes_sent {bytes}, but only {arrived} bytes reached the server's port ({requests} requests of 10 MB)"
    );
    let served = target.served();
    assert!(
        bytes >= served * 60,
        "bytes_sent {bytes} for {served} requests the server answered"
    );
}

/// The nginx fixture stops nginx whole: no worker outlives it (a SIGKILLed
/// master leaves its workers running, holding their ports).
#[test]
fn the_nginx_fixture_leaves_no_worker_behind() {
    let dir = TempDir::new("nginx-fixture");
    let n = Nginx::start(dir.path());
    let group = n._child.group();
    assert!(
        nix::sys::signal::killpg(group, None).is_ok(),
        "nginx runs in its group"
    );
    drop(n);
    assert!(
        nix::sys::signal::killpg(group, None).is_err(),
        "processes of nginx's group outlived the fixture"
    );
}
