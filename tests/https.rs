//! https targets against a real nginx with certificates made here (rcgen):
//! counts against nginx's own access log, the protocol ALPN picked as nginx
//! logs it, a certificate from an unknown issuer as its own error class
//! with a readable reason, `insecure` working and flagged, and mutual TLS
//! with a client certificate nginx verifies.

mod common;

use std::path::Path;

use common::*;

/// Writes a CA (`NAME-ca.pem`) and a leaf it signed for localhost and
/// 127.0.0.1 (`NAME.pem`, `NAME.key`) into `dir`.
fn make_pki(dir: &Path, name: &str) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} leaf"));
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join(format!("{name}-ca.pem")), ca_cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// nginx with two TLS servers: `port` (h2 and http/1.1 by ALPN) and
/// `mtls_port` (a client certificate signed by the `client` CA required),
/// both logging status, protocol, session reuse and the client check.
struct Nginx {
    _child: NginxProcess,
    port: u16,
    mtls_port: u16,
    log: std::path::PathBuf,
}

impl Nginx {
    fn start(dir: &Path) -> Nginx {
        let (port, mtls_port) = (free_tcp_port(), free_tcp_port());
        let log = dir.join("access.log");
        let d = dir.display();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "user root root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log off;\n\
                 log_format tls '$server_port $status $server_protocol $ssl_session_reused $ssl_client_verify $connection';\n\
                 ssl_certificate {d}/server.pem;\n  ssl_certificate_key {d}/server.key;\n\
                 ssl_protocols TLSv1.2 TLSv1.3;\n\
                 server {{ listen 127.0.0.1:{port} ssl http2; access_log {log} tls; location / {{ return 200 'ok'; }} }}\n\
                 server {{ listen 127.0.0.1:{mtls_port} ssl; access_log {log} tls;\n\
                   ssl_client_certificate {d}/client-ca.pem; ssl_verify_client on;\n\
                   location / {{ return 200 'ok'; }} }}\n}}\n",
                log = log.display(),
            ),
        )
        .unwrap();
        let child = nginx(&conf, &[("127.0.0.1", port), ("127.0.0.1", mtls_port)]);
        Nginx {
            _child: child,
            port,
            mtls_port,
            log,
        }
    }

    /// Lines nginx logged for `port` that hold each of `fields` (status,
    /// protocol, session reused, client verify).
    fn count(&self, port: u16, fields: &[&str]) -> u64 {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let port = port.to_string();
        text.lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .filter(|f| f[0] == port && fields.iter().all(|want| f.contains(want)))
            .count() as u64
    }
}

impl Nginx {
    /// Requests per connection (nginx's `$connection` serial) that
    /// nginx logged for `port` with each of `fields`.
    fn per_connection(&self, port: u16, fields: &[&str]) -> Vec<u64> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let port = port.to_string();
        let mut by = std::collections::BTreeMap::<String, u64>::new();
        for f in text.lines().map(|l| l.split(' ').collect::<Vec<_>>()) {
            if f[0] == port && fields.iter().all(|want| f.contains(want)) {
                *by.entry(f[5].to_string()).or_default() += 1;
            }
        }
        by.into_values().collect()
    }
}

/// A workload of 2 s phases at 100 requests a second, one per `(name,
/// http table body)`.
fn workload(phases: &[(&str, String)]) -> String {
    let mut w = String::from("[agents]\nlocal = 1\n");
    for (name, http) in phases {
        w.push_str(&format!(
            "\n[[phase]]\nname = \"{name}\"\nduration = \"2s\"\nrate = 100\n\n[phase.http]\n{http}\n"
        ));
    }
    w
}

fn run(dir: &TempDir, text: &str) -> (std::process::Output, serde_json::Value) {
    let w = dir.write("w.toml", text);
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap(), "--json"]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", text_of(&out.stderr)));
    (out, report)
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn phase_counts(report: &serde_json::Value, i: usize) -> (u64, serde_json::Value) {
    let p = &report["phases"][i];
    (p["requests"].as_u64().unwrap(), p["errors"].clone())
}

/// Every https request is one line in nginx's log: ALPN picks h2 under
/// `auto` (nginx logs HTTP/2.0) and http/1.1 under `version = "1.1"`.
#[test]
fn https_counts_match_nginx_and_alpn_picks_the_protocol() {
    let dir = TempDir::new("https");
    make_pki(dir.path(), "server");
    make_pki(dir.path(), "client");
    let nginx = Nginx::start(dir.path());
    let url = format!("https://127.0.0.1:{}/", nginx.port);
    let (out, report) = run(
        &dir,
        &workload(&[
            (
                "auto",
                format!("url = \"{url}\"\ntls = {{ ca = \"server-ca.pem\" }}"),
            ),
            (
                "h1",
                format!("url = \"{url}\"\nversion = \"1.1\"\ntls = {{ ca = \"server-ca.pem\" }}"),
            ),
        ]),
    );
    assert!(out.status.success(), "{}", text_of(&out.stderr));
    let (auto, errors) = phase_counts(&report, 0);
    assert_eq!(errors, serde_json::json!({}), "{report}");
    let (h1, _) = phase_counts(&report, 1);
    assert!(auto >= 150 && h1 >= 150, "{auto} {h1}");
    assert_eq!(nginx.count(nginx.port, &["200", "HTTP/2.0"]), auto);
    assert_eq!(nginx.count(nginx.port, &["200", "HTTP/1.1"]), h1);
}

/// A server whose certificate this op does not trust fails every request
/// with `tls_unknown_issuer`, and a notice says why; nginx never sees an
/// HTTP request. `insecure = true` gets through, and the run says it.
#[test]
fn an_unknown_issuer_is_its_own_error_and_insecure_is_flagged() {
    let dir = TempDir::new("https-trust");
    make_pki(dir.path(), "server");
    make_pki(dir.path(), "client");
    make_pki(dir.path(), "other");
    let nginx = Nginx::start(dir.path());
    let url = format!("https://127.0.0.1:{}/", nginx.port);
    let (out, report) = run(
        &dir,
        &workload(&[
            (
                "wrong-ca",
                format!("url = \"{url}\"\ntls = {{ ca = \"other-ca.pem\" }}"),
            ),
            (
                "insecure",
                format!("url = \"{url}\"\ntls = {{ insecure = true }}"),
            ),
        ]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text_of(&out.stderr));
    let (wrong, errors) = phase_counts(&report, 0);
    assert!(wrong >= 150, "{wrong}");
    assert_eq!(errors, serde_json::json!({ "tls_unknown_issuer": wrong }));
    let (insecure, errors) = phase_counts(&report, 1);
    assert_eq!(errors, serde_json::json!({}));
    assert_eq!(
        nginx.count(nginx.port, &["200"]),
        insecure,
        "only the insecure phase got through"
    );
    let notices = report["notices"].to_string();
    assert!(
        notices.contains("TLS handshake failed: invalid peer certificate: UnknownIssuer"),
        "{notices}"
    );
    assert!(
        notices.contains("tls.insecure = true") && notices.contains("is not checked"),
        "{notices}"
    );
}

/// nginx requires a client certificate signed by the client CA: the op
/// with one gets 200s (nginx logs the client verified), the op without
/// gets nginx's 400, counted as such.
#[test]
fn mutual_tls_with_a_client_certificate_nginx_verifies() {
    let dir = TempDir::new("https-mtls");
    make_pki(dir.path(), "server");
    make_pki(dir.path(), "client");
    let nginx = Nginx::start(dir.path());
    let url = format!("https://127.0.0.1:{}/", nginx.mtls_port);
    let (_, report) = run(
        &dir,
        &workload(&[
            (
                "with",
                format!(
                    "url = \"{url}\"\ntls = {{ ca = \"server-ca.pem\", client_cert = \"client.pem\", client_key = \"client.key\" }}"
                ),
            ),
            (
                "without",
                format!("url = \"{url}\"\ntls = {{ ca = \"server-ca.pem\" }}"),
            ),
        ]),
    );
    let (with, errors) = phase_counts(&report, 0);
    assert_eq!(errors, serde_json::json!({}), "{report}");
    let (without, errors) = phase_counts(&report, 1);
    assert_eq!(errors, serde_json::json!({ "status_4xx": without }));
    assert_eq!(
        nginx.count(nginx.mtls_port, &["200", "SUCCESS"]),
        with,
        "every request with the certificate, verified"
    );
    assert_eq!(nginx.count(nginx.mtls_port, &["400", "NONE"]), without);
}

/// `new_connection = true` opens a connection, with its TLS handshake, for
/// every request (resumed unless `resumption = false`, as nginx's
/// `$ssl_session_reused` tells), and `max_requests_per_connection = 10`
/// closes each connection after ten.
#[test]
fn new_connection_is_a_handshake_per_request() {
    let dir = TempDir::new("https-conns");
    make_pki(dir.path(), "server");
    make_pki(dir.path(), "client");
    let nginx = Nginx::start(dir.path());
    let url = format!("https://127.0.0.1:{}/", nginx.port);
    let ca = "tls = { ca = \"server-ca.pem\" }";
    let (out, report) = run(
        &dir,
        &workload(&[
            (
                "resumed",
                format!("url = \"{url}\"\nversion = \"1.1\"\nnew_connection = true\n{ca}"),
            ),
            (
                "full",
                format!(
                    "url = \"{url}\"\nversion = \"2\"\nnew_connection = true\ntls = {{ ca = \"server-ca.pem\", resumption = false }}"
                ),
            ),
            (
                "tens",
                format!(
                    "url = \"{url}\"\nversion = \"1.1\"\nmax_requests_per_connection = 10\n{ca}"
                ),
            ),
        ]),
    );
    assert!(out.status.success(), "{}", text_of(&out.stderr));
    let (resumed, _) = phase_counts(&report, 0);
    let (full, _) = phase_counts(&report, 1);
    let (tens, _) = phase_counts(&report, 2);
    // HTTP/1.1 with a reused session: one request per connection.
    let conns = nginx.per_connection(nginx.port, &["HTTP/1.1", "r"]);
    let first = nginx.per_connection(nginx.port, &["HTTP/1.1", "."]);
    assert!(
        first.len() <= 5,
        "full handshakes only to start with: {first:?}"
    );
    let fresh: Vec<u64> = conns
        .iter()
        .chain(&first)
        .copied()
        .filter(|&n| n == 1)
        .collect();
    assert!(
        fresh.len() as u64 >= resumed,
        "{resumed} requests, connections {conns:?}"
    );
    // HTTP/2 without resumption: a full handshake and a connection each.
    let h2 = nginx.per_connection(nginx.port, &["HTTP/2.0", "."]);
    assert_eq!(h2.len() as u64, full, "{h2:?}");
    assert!(h2.iter().all(|&n| n == 1), "{h2:?}");
    assert!(
        nginx
            .per_connection(nginx.port, &["HTTP/2.0", "r"])
            .is_empty()
    );
    // At most ten requests a connection.
    let all_h1: u64 = conns.iter().chain(&first).sum();
    assert_eq!(all_h1, resumed + tens);
    let big: Vec<u64> = conns
        .iter()
        .chain(&first)
        .copied()
        .filter(|&n| n > 1)
        .collect();
    assert!(big.iter().all(|&n| n <= 10), "{big:?}");
    assert!(
        big.iter().sum::<u64>() * 10 >= tens * 8,
        "most of {tens} in tens: {big:?}"
    );
}
