//! A whole workload file through the public API: `[run]`, `[agents]`
//! (local, SSH hosts, a pool), `[[service]]`, and what each rejection says.

use std::time::Duration;

use fleetbench_workload::{Command, Load, OpKind, Ready, SshHost, Workload, expand_service_hosts};

const GOOD: &str = r#"
[run]
name = "quickstart"

[agents]
local = 2

[[phase]]
name = "load"
duration = "10s"
warmup = "2s"

[phase.http]
url = "http://127.0.0.1:18080/"
concurrency = 16
"#;

fn reject(text: &str) -> String {
    match Workload::parse("w.toml", text) {
        Ok(w) => panic!("accepted: {w:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_issue_example_parses() {
    let w = Workload::parse("w.toml", GOOD).unwrap();
    assert_eq!(w.name, "quickstart");
    assert_eq!(w.agents.local, 2);
    assert_eq!(w.phases[0].duration, Duration::from_secs(10));
    assert_eq!(w.phases[0].warmup, Duration::from_secs(2));
    assert_eq!(w.phases[0].load, Load::Closed { concurrency: 16 });
}

#[test]
fn unknown_key_names_the_key_and_line() {
    let e = reject(&GOOD.replace("concurrency = 16", "concurrency = 16\nrats = 5"));
    assert!(e.starts_with("w.toml:16:1: "), "{e}");
    assert!(e.contains("rats"), "{e}");
}

#[test]
fn zero_rate_is_rejected_with_position() {
    let e = reject(&GOOD.replace("concurrency = 16", "rate = 0"));
    assert_eq!(
        e,
        "w.toml:15:8: phase \"load\": rate must be a number of requests per second above zero (at most 1e9), not 0"
    );
}

#[test]
fn bad_duration_says_how_to_write_one() {
    let e = reject(&GOOD.replace("\"10s\"", "\"ten\""));
    assert!(
        e.starts_with("w.toml:10:12: phase.duration: \"ten\" is not a duration"),
        "{e}"
    );
    assert!(e.contains("\"30s\""), "{e}");
}

#[test]
fn garbage_urls_are_rejected() {
    let e = reject(&GOOD.replace("http://127.0.0.1:18080/", "127.0.0.1:18080"));
    assert!(e.contains("must start with http:// or https://"), "{e}");
    let e = reject(&GOOD.replace("http://127.0.0.1:18080/", "http://:80/"));
    assert!(e.contains("has no host"), "{e}");
    let e = reject(&GOOD.replace("18080", "99999"));
    assert!(e.contains("bad port"), "{e}");
}

#[test]
fn missing_keys_are_named() {
    let e = reject(&GOOD.replace("duration = \"10s\"\n", ""));
    assert!(e.contains("duration"), "{e}");
    let e = reject(&GOOD.replace("concurrency = 16\n", ""));
    assert!(e.contains("needs `concurrency = N`"), "{e}");
    let e = reject(&GOOD.replace("local = 2", ""));
    assert!(e.contains("needs `local = N`"), "{e}");
}

#[test]
fn warmup_must_fit() {
    let e = reject(&GOOD.replace("\"2s\"", "\"1500ms\""));
    assert!(e.contains("whole number of 1s windows"), "{e}");
    let e = reject(&GOOD.replace("\"2s\"", "\"10s\""));
    assert!(e.contains("must be shorter than phase.duration"), "{e}");
}

#[test]
fn ssh_hosts_parse_and_bad_ones_are_named() {
    let text = GOOD.replace(
        "local = 2",
        "hosts = [\"bench@10.1.0.11\", \"bench@10.1.0.12:2222\"]\nper_host = 3",
    );
    let w = Workload::parse("w.toml", &text).unwrap();
    assert_eq!(w.agents.local, 0);
    assert_eq!(w.agents.hosts[1].port, 2222);
    assert_eq!(w.agents.count(), 6);
    assert_eq!(w.agents.min_hosts, 2);
    assert_eq!(w.agents.remote_dir, "~/.fleetbench");
    let e = reject(&GOOD.replace("local = 2", "hosts = [\"bench@:22\"]"));
    assert!(e.starts_with("w.toml:6:10: agents.hosts:"), "{e}");
    let e = reject(&GOOD.replace("local = 2", "hosts = [\"a@h\", \"a@h\"]"));
    assert!(e.contains("twice"), "{e}");
    let e = reject(&GOOD.replace("local = 2", "hosts = [\"a@h\"]\nmin_hosts = 2"));
    assert!(
        e.contains("agents.min_hosts must be between 0 and the number of hosts (1)"),
        "{e}"
    );
    let e = reject(&GOOD.replace("local = 2", "hosts = [\"a@h\"]\nremote_dir = \"relative\""));
    assert!(e.contains("remote_dir"), "{e}");
    let e = reject(&GOOD.replace("local = 2", "local = 0"));
    assert!(e.contains("between 1 and 1024"), "{e}");
}

#[test]
fn pool_agents_parse_and_bad_ones_are_named() {
    let text = GOOD.replace(
        "local = 2",
        "pool = \"nightly\"\ncount = 3\nlabels = { zone = \"a\" }",
    );
    let w = Workload::parse("w.toml", &text).unwrap();
    let pool = w.agents.pool.as_ref().unwrap();
    assert_eq!(pool.name, "nightly");
    assert_eq!(pool.count, Some(3));
    assert_eq!(pool.labels["zone"], "a");
    assert_eq!(w.agents.count(), 3);
    let e = reject(&GOOD.replace("local = 2", "pool = \"a/b\""));
    assert!(e.contains("agents.pool must be a pool name"), "{e}");
    let e = reject(&GOOD.replace("local = 2", "local = 2\npool = \"p\""));
    assert!(
        e.contains("agents.local cannot be used with agents.pool"),
        "{e}"
    );
    let e = reject(&GOOD.replace("local = 2", "hosts = [\"a@h\"]\npool = \"p\""));
    assert!(
        e.contains("agents.hosts cannot be used with agents.pool"),
        "{e}"
    );
    let e = reject(&GOOD.replace("local = 2", "pool = \"p\"\ncount = 0"));
    assert!(
        e.contains("agents.count must be between 1 and 100000, not 0"),
        "{e}"
    );
    let e = reject(&GOOD.replace("local = 2", "local = 2\ncount = 2"));
    assert!(e.contains("agents.count needs `pool"), "{e}");
    let e = reject(&GOOD.replace("local = 2", "pool = \"p\"\nsplit = [1, 2]"));
    assert!(
        e.contains("agents.split weights need agents.count with a pool"),
        "{e}"
    );
}

#[test]
fn ssh_host_strings() {
    let h: SshHost = "u@[fe80::1]:2200".parse().unwrap();
    assert_eq!((h.host.as_str(), h.port), ("fe80::1", 2200));
    assert_eq!(h.to_string(), "u@[fe80::1]:2200");
    assert!("u@h:0".parse::<SshHost>().is_err());
    assert!("u@h:x".parse::<SshHost>().is_err());
    assert!("u@fe80::1".parse::<SshHost>().is_err(), "unbracketed IPv6");
    assert!("u@h;rm".parse::<SshHost>().is_err());
    assert_eq!("root@h1".parse::<SshHost>().unwrap().to_string(), "root@h1");
}

#[test]
fn remote_services_and_url_templates() {
    let text = GOOD.replace(
        "[[phase]]",
        "[[service]]\nname = \"target\"\nhosts = [\"root@10.0.0.14\"]\nbinary = \"{agent}\"\nargs = [\"serve\", \"--listen\", \"0.0.0.0:8080\"]\nready = { tcp = 8080 }\n\n[[phase]]",
    )
    .replace("http://127.0.0.1:18080/", "http://{service.target.host}:8080/");
    let w = Workload::parse("w.toml", &text).unwrap();
    let s = &w.services[0];
    assert_eq!(s.ready, Some(Ready::TcpPort(8080)));
    assert_eq!(
        s.command,
        Command::Argv(vec![
            "{binary}".into(),
            "serve".into(),
            "--listen".into(),
            "0.0.0.0:8080".into()
        ])
    );
    let OpKind::Http(h) = &w.phases[0].ops[0].kind else {
        panic!()
    };
    assert_eq!(
        expand_service_hosts(&h.url, &w.services),
        "http://10.0.0.14:8080/"
    );
    let e = reject(&text.replace("{service.target.host}", "{service.nope.host}"));
    assert!(
        e.contains("names no service's host") && e.contains("target"),
        "{e}"
    );
    let e = reject(&text.replace("binary = \"{agent}\"\n", ""));
    assert!(e.contains("needs `command`"), "{e}");
    let e = reject(&text.replace("tcp = 8080", "tcp = 70000"));
    assert!(e.contains("1 to 65535"), "{e}");
}

#[test]
fn synthetic_phase_parses() {
    let text = GOOD.replace(
        "[phase.http]\nurl = \"http://127.0.0.1:18080/\"\nconcurrency = 16",
        "[phase.synthetic]\nlatency = { dist = \"exponential\", mean = \"2ms\" }\nerror_ratio = 0.01\nrate = 1000",
    );
    let w = Workload::parse("w.toml", &text).unwrap();
    match &w.phases[0].ops[0].kind {
        OpKind::Synthetic(s) => {
            assert_eq!(
                s.latency,
                fleetbench_gen::rng::Latency::Exponential { mean: 2000 }
            );
            assert_eq!(s.error_ratio, 0.01);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&w.phases[0].load, Load::Open { shape, .. } if shape.rate_at(3.0) == 1000.0));
}

/// A data file that is not a plain file is refused without being opened:
/// opening a FIFO blocks until something writes to it, which hung the
/// coordinator (a Ctrl-C then did nothing).
#[test]
fn a_fifo_as_a_data_file_is_refused_not_opened() {
    let dir = std::env::temp_dir().join(format!("fleetbench-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("rows.txt");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let text = format!(
        "[agents]\nlocal = 1\n\n[generator.k]\nkind = \"file\"\nfile = {:?}\n\n[[phase]]\nname = \"p\"\nduration = \"1s\"\nconcurrency = 1\n\n[phase.synthetic]\nlatency = \"1ms\"\n",
        fifo.display().to_string()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(reject(&text));
    });
    let error = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("parsing blocked on the FIFO");
    assert!(error.contains("w.toml:6:8:"), "{error}");
    assert!(error.contains("is not a plain file"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `[agents] on_loss` and `min`: accepted, and rejected with their place.
#[test]
fn on_loss_and_min_are_checked() {
    let w = Workload::parse(
        "w.toml",
        &GOOD.replace("local = 2", "local = 2\non_loss = \"fail\"\nmin = 1"),
    )
    .unwrap();
    assert_eq!(w.agents.on_loss, fleetbench_workload::OnLoss::Fail);
    assert_eq!(w.agents.min, Some(1));
    let default = Workload::parse("w.toml", GOOD).unwrap();
    assert_eq!(
        default.agents.on_loss,
        fleetbench_workload::OnLoss::Continue
    );
    let e = reject(&GOOD.replace("local = 2", "local = 2\non_loss = \"retry\""));
    assert!(
        e.contains("w.toml:7:11:") && e.contains("\"continue\" or \"fail\""),
        "{e}"
    );
    let e = reject(&GOOD.replace("local = 2", "local = 2\nmin = 3"));
    assert!(
        e.contains("w.toml:7:7:") && e.contains("between 1 and the run's 2 agent(s), not 3"),
        "{e}"
    );
}

/// An https URL speaks TLS with the defaults (built-in roots, ALPN picks
/// the protocol); a `tls` table's files are read relative to the workload
/// and travel in the workload (the log shows their names and digests, not
/// their bytes); every mistake is named at its place.
#[test]
fn https_urls_and_their_tls_tables() {
    use fleetbench_workload::{HttpVersion, OpKind};
    let https = GOOD.replace("http://127.0.0.1:18080/", "https://example.com/");
    let w = Workload::parse("w.toml", &https).unwrap();
    let OpKind::Http(h) = &w.phases[0].ops[0].kind else {
        panic!("an http op")
    };
    assert_eq!(h.version, HttpVersion::Auto);
    let tls = h.tls.as_ref().expect("https speaks TLS");
    assert!(tls.ca.is_none() && !tls.insecure && tls.resumption);

    let dir = std::env::temp_dir().join(format!("fleetbench-tls-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    std::fs::write(dir.join("ca.pem"), pem).unwrap();
    std::fs::write(dir.join("not.pem"), "hello\n").unwrap();
    let path = dir.join("w.toml");
    let path = path.to_str().unwrap();
    let with_tls = |table: &str| {
        https.replace(
            "concurrency = 16",
            &format!("concurrency = 16\ntls = {table}"),
        )
    };
    let w = Workload::parse(
        path,
        &with_tls("{ ca = \"ca.pem\", versions = [\"1.3\"], resumption = false }"),
    )
    .unwrap();
    let OpKind::Http(h) = &w.phases[0].ops[0].kind else {
        panic!("an http op")
    };
    let tls = h.tls.as_ref().unwrap();
    assert_eq!(tls.ca.as_ref().unwrap().pem, pem.as_bytes());
    assert_eq!(
        (tls.versions.clone(), tls.resumption),
        (vec!["1.3".to_string()], false)
    );
    let json = w.resolved_json();
    assert!(
        json.contains("ca.pem (sha256 ") && !json.contains("MIIB"),
        "{json}"
    );

    let rejects = |table: &str, needle: &str| {
        let e = match Workload::parse(path, &with_tls(table)) {
            Ok(_) => panic!("accepted tls = {table}"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains("w.toml:16:") && e.contains(needle),
            "{table}: {e}"
        );
    };
    rejects(
        "{ ca = \"missing.pem\" }",
        "tls.ca \"missing.pem\": cannot read",
    );
    rejects(
        "{ ca = \"not.pem\" }",
        "holds no PEM block of a certificate",
    );
    rejects(
        "{ client_cert = \"ca.pem\" }",
        "needs both client_cert and client_key",
    );
    rejects("{ versions = [\"1.1\"] }", "tls.versions must list");
    rejects("{ insecure = true, ca = \"ca.pem\" }", "give one of them");
    rejects("{ server_name = \"a b\" }", "is not a host name");
    rejects("{ colour = 1 }", "colour");
    let e = reject(&GOOD.replace(
        "concurrency = 16",
        "concurrency = 16\ntls = { insecure = true }",
    ));
    assert!(e.contains("tls applies to https:// URLs"), "{e}");
    let e = reject(&GOOD.replace("concurrency = 16", "concurrency = 16\nversion = \"auto\""));
    assert!(e.contains("needs an https:// URL"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Connection modes: `new_connection = true` is one request per
/// connection, `max_requests_per_connection` N; not both, and N at least 1.
#[test]
fn connection_modes() {
    use fleetbench_workload::OpKind;
    let max = |text: &str| {
        let w = Workload::parse(
            "w.toml",
            &GOOD.replace("concurrency = 16", &format!("concurrency = 16\n{text}")),
        )
        .unwrap();
        let OpKind::Http(h) = &w.phases[0].ops[0].kind else {
            panic!("an http op")
        };
        h.max_requests_per_connection
    };
    assert_eq!(max(""), 0);
    assert_eq!(max("new_connection = true"), 1);
    assert_eq!(max("new_connection = false"), 0);
    assert_eq!(max("max_requests_per_connection = 50"), 50);
    let e = reject(&GOOD.replace(
        "concurrency = 16",
        "concurrency = 16\nnew_connection = true\nmax_requests_per_connection = 5",
    ));
    assert!(e.contains("w.toml:16:") && e.contains("not both"), "{e}");
    let e = reject(&GOOD.replace(
        "concurrency = 16",
        "concurrency = 16\nmax_requests_per_connection = 0",
    ));
    assert!(e.contains("from 1 to 1000000000, not 0"), "{e}");
}
