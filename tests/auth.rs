//! Trust, end to end: local agents attach over TLS with credentials files
//! only they can read; the secret is in no process's argv or environment
//! and never in the log; agents with a wrong or already-used secret are
//! refused by a running coordinator, which logs it and carries on.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use fleetbench::credentials::Credentials;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The newest run directory under DATA/runs.
fn run_dir(data: &Path) -> Option<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(data.join("runs"))
        .ok()?
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    runs.pop()
}

fn start_run(dir: &TempDir, duration: &str) -> Child {
    let w = dir.write("w.toml", &synthetic_workload(duration));
    Command::new(bin("coordinator"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", w.to_str().unwrap(), "--json"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start coordinator")
}

/// The live report, once at least `windows` windows are in it.
fn wait_windows(dir: &TempDir, windows: usize) -> serde_json::Value {
    wait_for("windows logged", Duration::from_secs(30), || {
        let out = coordinator(dir.path(), &["report", "latest", "--format", "json"]);
        if !out.status.success() {
            return None;
        }
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (r["phases"][0]["timeline"].as_array()?.len() >= windows).then_some(r)
    })
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Local agents attach with credentials files made 0600 from the start; the
/// fingerprint in them is the certificate's in DATA/tls (key 0600), reused
/// by the next run; no agent process carries its secret in argv or its
/// environment; and the secrets are nowhere in the log.
#[test]
fn local_agents_attach_with_private_credentials_and_the_secret_stays_private() {
    let dir = TempDir::new("auth-local");
    let child = start_run(&dir, "3s");
    wait_windows(&dir, 1);
    let run = run_dir(dir.path()).expect("a run directory");
    let addr = std::fs::read_to_string(run.join("coordinator.addr")).unwrap();
    let creds: Vec<(PathBuf, Credentials)> = ["local-1", "local-2"]
        .iter()
        .map(|id| {
            let p = run.join("agents").join(format!("{id}.creds"));
            (p.clone(), Credentials::read(&p).unwrap())
        })
        .collect();

    // The agents are running now: read their command lines and environments.
    let mut seen = 0;
    for entry in std::fs::read_dir("/proc").unwrap() {
        let proc_dir = entry.unwrap().path();
        let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
            continue;
        };
        let Some((path, c)) = creds
            .iter()
            .find(|(p, _)| contains(&cmdline, p.to_str().unwrap()))
        else {
            continue;
        };
        seen += 1;
        let argv = text(&cmdline).replace('\0', " ");
        assert!(
            argv.contains(&format!("attach --credentials {}", path.display())),
            "{argv}"
        );
        assert!(!contains(&cmdline, &c.secret), "secret in argv: {argv}");
        let environ = std::fs::read(proc_dir.join("environ")).unwrap_or_default();
        assert!(!contains(&environ, &c.secret), "secret in the environment");
    }
    assert_eq!(seen, 2, "both agent processes found");

    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "run failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "completed");
    assert_eq!(report["notices"], serde_json::json!([]), "{report}");

    let tls = dir.path().join("tls");
    assert_eq!(mode(&tls.join("key.pem")), 0o600);
    let cert = CertificateDer::from_pem_file(tls.join("cert.pem")).unwrap();
    let fingerprint = fleetbench::tls::fingerprint(cert.as_ref());
    let log = all_bytes(&run.join("log"));
    for (path, c) in &creds {
        assert_eq!(mode(path), 0o600, "{}", path.display());
        assert_eq!(c.fingerprint, fingerprint);
        assert_eq!(c.coordinator, addr.trim());
        assert!(
            !contains(&log, &c.secret),
            "{}'s secret is in the log",
            c.agent_id
        );
    }
    assert_ne!(creds[0].1.secret, creds[1].1.secret);

    // A second run keeps the identity (the pinned fingerprint) and gets new
    // secrets.
    let second = start_run(&dir, "1s").wait_with_output().unwrap();
    assert!(second.status.success());
    let run2 = run_dir(dir.path()).unwrap();
    assert_ne!(run2, run);
    let again = Credentials::read(&run2.join("agents/local-1.creds")).unwrap();
    assert_eq!(again.fingerprint, fingerprint);
    assert_ne!(again.secret, creds[0].1.secret);
}

/// Writes credentials for an agent that is not one of the run's own.
fn intruder_creds(dir: &TempDir, name: &str, creds: &Credentials) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, creds.to_json()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn agent_attach(creds: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin("agent"))
        .arg("attach")
        .arg("--credentials")
        .arg(creds)
        .args(extra)
        // Dial errors are debug: a failing assertion shows them.
        .env("RUST_LOG", "agent=debug")
        .output()
        .expect("run agent")
}

/// While a run is in progress, an agent with a wrong secret is refused (it
/// exits 3), and one with the secret of an agent that is attached is refused
/// for as long as that agent is (it retries, then gives up). The run carries
/// on and completes; its report names both refusals and holds no event of
/// the intruders.
#[test]
fn a_running_coordinator_refuses_wrong_and_live_secrets_and_carries_on() {
    let dir = TempDir::new("auth-refuse");
    // Long enough for both intruders to be turned away while it runs.
    let child = start_run(&dir, "15s");
    wait_windows(&dir, 1);
    let run = run_dir(dir.path()).unwrap();
    let real = Credentials::read(&run.join("agents/local-1.creds")).unwrap();

    let wrong = intruder_creds(
        &dir,
        "wrong.creds",
        &Credentials {
            agent_id: "intruder".into(),
            secret: "00".repeat(32),
            ..real.clone()
        },
    );
    let out = agent_attach(&wrong, &["--give-up-after", "5s"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("unknown agent id or wrong secret"),
        "{}",
        text(&out.stderr)
    );

    let stolen = intruder_creds(&dir, "stolen.creds", &real);
    let out = agent_attach(&stolen, &["--give-up-after", "1s"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("already attached"),
        "{}",
        text(&out.stderr)
    );

    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the run failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "completed");
    let notices: Vec<&str> = report["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("refused agent \"intruder\"") && n.contains("no agent of that id")),
        "{notices:?}"
    );
    assert!(
        notices
            .iter()
            .any(|n| n.contains("refused agent \"local-1\"") && n.contains("already attached")),
        "{notices:?}"
    );
    assert!(report["log"]["agent_events"].get("intruder").is_none());
    // local-1 attached once: the stolen secret never replaced its link.
    let local1 = report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "local-1")
        .unwrap();
    assert_eq!(local1["attaches"], 1, "{local1}");
    assert_eq!(local1["detaches"], 1, "{local1}");
}

/// An agent refuses to start from a credentials file others can read: it
/// holds the agent's secret.
#[test]
fn agent_refuses_credentials_readable_by_others() {
    let dir = TempDir::new("auth-mode");
    let creds = Credentials {
        coordinator: "127.0.0.1:9".into(),
        fingerprint: "ab".repeat(32),
        agent_id: "a1".into(),
        secret: "cd".repeat(32),
        run_id: String::new(),
        pool: String::new(),
    };
    let path = dir.write("a1.creds", &creds.to_json());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = agent_attach(&path, &["--give-up-after", "1s"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
}
