//! Bare Linux hosts for the SSH tests: `tests/hosts/testhosts.sh` from Rust.
//!
//! `Hosts::up(n)` makes hosts h1..hN on this machine, each a network
//! namespace on a bridge with its own OpenSSH sshd on port 22, the login
//! (root, key only) chrooted into a rootfs with nothing but busybox-static, so
//! only truly static binaries run there. The coordinator side reaches them at
//! their IPs from the root namespace; they reach it at `coordinator_ip`.
//! Dropping the value tears everything down.
//!
//! Needs root and the packages of `tests/hosts/README.md` (`.ci/run` installs
//! them); `Hosts::up` panics saying what is missing. The fixture is one per
//! machine (fixed names, one bridge): `Hosts` holds a process-wide lock and a
//! machine-wide `flock` until it is dropped, so tests using it serialize, also
//! across test binaries and worktrees.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

/// The fixture script.
pub(crate) const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hosts/testhosts.sh");

/// One test host, as the script's hosts table gives it.
#[derive(Clone, Debug)]
pub(crate) struct Host {
    /// `h1`, `h2`, ...
    pub name: String,
    pub ip: Ipv4Addr,
    /// Always 22.
    pub port: u16,
    /// Always `root`.
    pub user: String,
    /// The host's network namespace (`ip netns exec <netns> ...`).
    pub netns: String,
    /// The host's `/` as seen from this machine: what was uploaded is here.
    pub rootfs: PathBuf,
}

impl Host {
    /// `ip:22`.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
    }
}

/// The script's resolved settings (`testhosts.sh vars`; environment
/// `FLEETBENCH_TESTHOSTS_{PREFIX,NET,DIR,LOCK}` overrides them).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Keys, tables, logs and the hosts' rootfs trees.
    pub dir: PathBuf,
    /// Prefix of the netns and link names (`<prefix>-h1`).
    pub prefix: String,
    /// The private /24, e.g. `10.213.42.0/24`.
    pub net: String,
    /// The bridge in the root namespace.
    pub bridge: String,
    pub coordinator_ip: Ipv4Addr,
    /// The machine-wide lock file.
    pub lock: PathBuf,
}

impl Settings {
    pub(crate) fn get() -> Settings {
        let out = script(&["vars"]);
        assert!(
            out.status.success(),
            "{SCRIPT} vars failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let var = |key: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("{SCRIPT} vars: no {key} in {text:?}"))
                .to_string()
        };
        Settings {
            dir: var("dir").into(),
            prefix: var("prefix"),
            net: var("net"),
            bridge: var("bridge"),
            coordinator_ip: var("coordinator_ip").parse().expect("coordinator_ip"),
            lock: var("lock").into(),
        }
    }
}

/// N hosts, up until dropped.
pub(crate) struct Hosts {
    /// h1..hN in order.
    pub hosts: Vec<Host>,
    /// The bridge's address: where the hosts reach this machine.
    pub coordinator_ip: Ipv4Addr,
    /// The client's private key (ed25519, no passphrase), authorized on every host.
    pub client_key: PathBuf,
    /// One line per host IP with its ed25519 host key.
    pub known_hosts: PathBuf,
    /// For OpenSSH by hand: `ssh -F <ssh_config> h1`.
    pub ssh_config: PathBuf,
    pub settings: Settings,
    // Released after `Drop::drop` has run `down` (fields drop after it).
    _lock: FixtureLock,
}

impl Hosts {
    /// Makes hosts h1..hN (any left by a killed test are removed first), each
    /// answering SSH on port 22 when this returns.
    pub(crate) fn up(n: usize) -> Hosts {
        let check = script(&["check"]);
        assert!(
            check.status.success(),
            "the bare-hosts fixture cannot run here: {} (see tests/hosts/README.md)",
            String::from_utf8_lossy(&check.stderr).trim()
        );
        let _lock = lock();
        let settings = Settings::get();
        let out = script(&["up", &n.to_string()]);
        if !out.status.success() {
            let _ = script(&["down"]);
            panic!(
                "testhosts.sh up {n} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let dir = &settings.dir;
        let table = std::fs::read_to_string(dir.join("hosts.tsv")).expect("hosts.tsv");
        let hosts: Vec<Host> = table
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                assert_eq!(f.len(), 6, "hosts.tsv line {l:?}");
                Host {
                    name: f[0].to_string(),
                    ip: f[1].parse().expect("host ip"),
                    port: f[2].parse().expect("host port"),
                    user: f[3].to_string(),
                    netns: f[4].to_string(),
                    rootfs: f[5].into(),
                }
            })
            .collect();
        assert_eq!(hosts.len(), n, "hosts.tsv: {table}");
        let coordinator_ip = std::fs::read_to_string(dir.join("coordinator_ip"))
            .expect("coordinator_ip")
            .trim()
            .parse()
            .expect("coordinator_ip");
        Hosts {
            hosts,
            coordinator_ip,
            client_key: dir.join("id_ed25519"),
            known_hosts: dir.join("known_hosts"),
            ssh_config: dir.join("ssh_config"),
            settings,
            _lock,
        }
    }

    /// Host names, h1..hN.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    pub(crate) fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no test host {name:?}; there are {:?}", self.names()))
    }

    pub(crate) fn ip(&self, name: &str) -> Ipv4Addr {
        self.host(name).ip
    }

    /// `ip:22`.
    pub(crate) fn addr(&self, name: &str) -> SocketAddr {
        self.host(name).addr()
    }

    /// The host's `/` on this machine.
    pub(crate) fn rootfs(&self, name: &str) -> &Path {
        &self.host(name).rootfs
    }

    /// Cuts the host off: its link goes down (carrier loss). Packets either
    /// way are lost; connecting to it times out.
    pub(crate) fn cut(&self, name: &str) {
        self.ok(&["cut", name]);
    }

    /// Cuts the host off with iptables DROP in its netns; its link stays up.
    pub(crate) fn cut_drop(&self, name: &str) {
        self.ok(&["cut", name, "drop"]);
    }

    /// Undoes `cut`/`cut_drop` (a `delay` stays).
    pub(crate) fn heal(&self, name: &str) {
        self.ok(&["heal", name]);
    }

    /// SIGKILLs every process of the host (sshd, sessions, what they
    /// started). Its IP stays up, so connections are refused.
    pub(crate) fn kill(&self, name: &str) {
        self.ok(&["kill", name]);
    }

    /// `kill`, then starts its sshd again; the rootfs is kept.
    pub(crate) fn restart(&self, name: &str) {
        self.ok(&["restart", name]);
    }

    /// Holds each packet the host sends for `ms` milliseconds (0: off).
    pub(crate) fn delay(&self, name: &str, ms: u64) {
        self.ok(&["delay", name, &ms.to_string()]);
    }

    /// PIDs (in this machine's namespace) of the processes in the host's netns.
    pub(crate) fn pids(&self, name: &str) -> Vec<u32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.host(name).netns])
            .output()
            .expect("run ip netns pids");
        assert!(out.status.success(), "ip netns pids: {}", text(&out.stderr));
        text(&out.stdout)
            .split_whitespace()
            .map(|p| p.parse().expect("pid"))
            .collect()
    }

    /// Runs `args` in the host's network namespace (but this machine's
    /// filesystem and processes), to completion: for checks from outside.
    pub(crate) fn run_in(&self, name: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.host(name).netns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns exec")
    }

    /// The OpenSSH client, logged in as root on the host with the fixture's
    /// key and known_hosts, batch mode; add the remote command as arguments.
    pub(crate) fn ssh(&self, name: &str) -> Command {
        let h = self.host(name);
        let mut c = Command::new("ssh");
        c.arg("-i")
            .arg(&self.client_key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-F",
                "/dev/null",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
                "-p",
            ])
            .arg(h.port.to_string())
            .arg(format!("{}@{}", h.user, h.ip))
            .arg("--");
        c
    }

    /// Tears down now (as dropping does).
    pub(crate) fn down(self) {}

    fn ok(&self, args: &[&str]) {
        let out = script(args);
        assert!(
            out.status.success(),
            "testhosts.sh {} failed: {}",
            args.join(" "),
            text(&out.stderr)
        );
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let out = script(&["down"]);
        if !out.status.success() {
            // No panic here: we may be unwinding already.
            eprintln!("testhosts.sh down failed: {}", text(&out.stderr));
        }
    }
}

/// The fixture lock: a process-wide mutex and a machine-wide `flock` on
/// `Settings::lock`, held by a `flock ... cat` child until dropped (or until
/// this process dies and the child's stdin closes).
pub(crate) struct FixtureLock {
    holder: Child,
    _guard: MutexGuard<'static, ()>,
}

static PROCESS_LOCK: Mutex<()> = Mutex::new(());

/// Takes the fixture lock, waiting for whoever holds it. `Hosts::up` takes it
/// itself; a test takes it directly to look at the machine while no fixture
/// can be up (a holder always runs `down` before letting go).
pub(crate) fn lock() -> FixtureLock {
    // A test that panicked while holding it still ran `down` on unwinding.
    let guard = PROCESS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = Settings::get().lock;
    const BUSY: i32 = 75;
    // Some(holder) once locked; None if another process holds it.
    let take = |how: &str| -> Option<Child> {
        let mut holder = Command::new("flock")
            .args([how, &format!("--conflict-exit-code={BUSY}")])
            .arg(&path)
            .args(["sh", "-c", "echo locked && exec cat >/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run flock (util-linux)");
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().expect("piped stdout")).read_line(&mut line);
        if line.trim() == "locked" {
            return Some(holder);
        }
        let out = holder.wait_with_output().expect("wait for flock");
        assert_eq!(
            out.status.code(),
            Some(BUSY),
            "flock {} failed: {}",
            path.display(),
            text(&out.stderr)
        );
        None
    };
    let holder = take("--nonblock").unwrap_or_else(|| {
        eprintln!(
            "waiting for {}: another process is using the test hosts",
            path.display()
        );
        take("--wait=900").unwrap_or_else(|| panic!("{} still busy after 900 s", path.display()))
    });
    FixtureLock {
        holder,
        _guard: guard,
    }
}

impl Drop for FixtureLock {
    fn drop(&mut self) {
        drop(self.holder.stdin.take()); // cat sees EOF and exits: the lock is free
        let _ = self.holder.wait();
    }
}

/// What a fixture would have left on this machine: netns and links with the
/// prefix, the bridge, the blackhole route, the directory, live processes
/// naming the directory. Empty when all is clean. Look while holding `lock()`.
pub(crate) fn leftovers() -> Vec<String> {
    let s = Settings::get();
    let mut left = Vec::new();
    let netns = text(&cmd("ip", &["netns", "list"]).stdout);
    let ours = |name: &str| {
        name.strip_prefix(&format!("{}-h", s.prefix))
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
    };
    for ns in netns.lines().filter_map(|l| l.split_whitespace().next()) {
        if ours(ns) {
            left.push(format!("netns {ns}"));
        }
    }
    let links = text(&cmd("ip", &["-o", "link", "show"]).stdout);
    for link in links.lines().filter_map(|l| l.split(": ").nth(1)) {
        let link = link.split('@').next().unwrap_or(link);
        if ours(link) || link == s.bridge {
            left.push(format!("link {link}"));
        }
    }
    let routes = text(&cmd("ip", &["route", "show", &s.net]).stdout);
    for r in routes.lines().filter(|l| !l.trim().is_empty()) {
        left.push(format!("route {r}"));
    }
    if s.dir.exists() {
        left.push(format!("directory {}", s.dir.display()));
    }
    let needle = s.dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            left.push(format!("process {name}: {}", cmdline.trim()));
        }
    }
    left
}

fn script(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        // the caller holds the lock (up and down would take it otherwise)
        .env("FLEETBENCH_TESTHOSTS_LOCK_HELD", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run bash {SCRIPT}: {e}"))
}

fn cmd(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
