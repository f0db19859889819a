//! When a service is ready, and whether it can be: a readiness check (a TCP
//! port accepting, or a GET answering 2xx), its words, and the check before
//! a service starts that nothing else answers where its readiness will
//! look. A port another server already holds would pass the readiness
//! check without our service, and the run would measure that other server.

use std::time::Duration;

use anyhow::anyhow;
use fleetbench_workload::Ready;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::BadInput;

/// What readiness means, in words, for a service reached at `host`.
pub(super) fn describe(ready: &Ready, host: &str) -> String {
    match ready {
        Ready::TcpPort(p) => format!("{host}:{p} accepting connections"),
        Ready::TcpAddr(a) => format!("{a} accepting connections"),
        Ready::Http(u) => format!("GET {u} answering 2xx"),
    }
}

/// One readiness check of a service reached at `host`.
pub(super) async fn probe(ready: &Ready, host: &str) -> bool {
    let attempt = async {
        match ready {
            Ready::TcpPort(p) => tokio::net::TcpStream::connect((host, *p)).await.is_ok(),
            Ready::TcpAddr(a) => tokio::net::TcpStream::connect(a.as_str()).await.is_ok(),
            Ready::Http(url) => http_ok(url).await,
        }
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .unwrap_or(false)
}

/// A bare HTTP/1.0 GET: does `url` answer with a 2xx status?
async fn http_ok(url: &str) -> bool {
    let Some((authority, path)) = split_url(url) else {
        return false;
    };
    let addr = with_port(authority);
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let Ok(n) = s.read(&mut head).await else {
        return false;
    };
    // "HTTP/1.x 2"
    n >= 10 && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

/// An `http://` URL's authority and path ("/" when it has none).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Some((authority, if path.is_empty() { "/" } else { path }))
}

/// `host[:port]` with port 80 when it has none.
fn with_port(authority: &str) -> String {
    let has_port = match authority.rfind(']') {
        Some(bracket) => authority[bracket..].contains(':'),
        None => authority.contains(':'),
    };
    if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    }
}

/// `d` as "2.5s".
pub(super) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The address (and its port) that the readiness check of a service on
/// `host` connects to, when it is the service's own: a TCP port or address,
/// or an HTTP URL on `host` itself or on loopback. None when readiness says
/// nothing about a port there (no check, or a URL of another machine).
pub(super) fn own_port(ready: &Ready, host: &str) -> Option<(String, u16)> {
    let addr = match ready {
        Ready::TcpPort(p) => format!("{host}:{p}"),
        Ready::TcpAddr(a) => a.clone(),
        Ready::Http(url) => {
            let (authority, _) = split_url(url)?;
            let addr = with_port(authority);
            let (name, _) = addr.rsplit_once(':')?;
            let name = name.trim_start_matches('[').trim_end_matches(']');
            let local = name == host
                || name == "localhost"
                || name == "::1"
                || name == "0.0.0.0"
                || name.starts_with("127.");
            if !local {
                return None;
            }
            addr
        }
    };
    let port = addr.rsplit_once(':')?.1.parse().ok()?;
    Some((addr, port))
}

/// `addr` accepts a TCP connection now (asked for at most 500 ms).
pub(super) async fn accepts(addr: &str) -> bool {
    tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .is_ok_and(|c| c.is_ok())
}

/// Why a service is not started when `addr` already answers: `held_by`
/// names the process, `where_` the host ("" for this machine).
pub(super) fn taken(addr: &str, port: u16, held_by: &str, where_: &str) -> String {
    format!(
        "{addr} already accepts connections before it runs (port {port} is held by \
         {held_by}{where_}), so its readiness check would pass on that other server and the \
         run would measure it; stop that process or give the service another port"
    )
}

/// The refusal to start service `name` for `why`: bad input (exit 2), like
/// a port the file names wrongly.
pub(super) fn refusal(name: &str, why: &str) -> anyhow::Error {
    BadInput(anyhow!("service \"{name}\" was not started: {why}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ports a readiness check connects to, when they are the
    /// service's own.
    #[test]
    fn own_ports_of_each_readiness() {
        let own = |r: Ready, host: &str| own_port(&r, host);
        assert_eq!(
            own(Ready::TcpPort(8080), "127.0.0.1"),
            Some(("127.0.0.1:8080".into(), 8080))
        );
        assert_eq!(
            own(Ready::TcpAddr("10.0.0.1:90".into()), "127.0.0.1"),
            Some(("10.0.0.1:90".into(), 90))
        );
        let http = |u: &str| Ready::Http(u.into());
        assert_eq!(
            own(http("http://localhost:3000/health"), "127.0.0.1"),
            Some(("localhost:3000".into(), 3000))
        );
        assert_eq!(
            own(http("http://127.0.0.1/"), "127.0.0.1"),
            Some(("127.0.0.1:80".into(), 80))
        );
        assert_eq!(
            own(http("http://[::1]:81/"), "127.0.0.1"),
            Some(("[::1]:81".into(), 81))
        );
        assert_eq!(
            own(http("http://10.1.0.14:8080/"), "10.1.0.14"),
            Some(("10.1.0.14:8080".into(), 8080))
        );
        assert_eq!(own(http("http://example.com:8080/"), "127.0.0.1"), None);
    }
}
