//! A Prometheus remote-write endpoint: its URL (http or https, a
//! `user:password@` in it sent as Basic auth), the extra headers the user
//! gave (a bearer token, a tenant id), and one POST of a request body with
//! retries and backoff. One connection per push: a push is once per
//! window, and a fresh connection survives an endpoint's restart.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long one attempt (connect, send, answer) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits between attempts of one push: after these, the push has failed.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// Where pushes go.
pub(crate) struct Endpoint {
    uri: Uri,
    /// host:port to dial.
    authority: String,
    /// The server name for TLS; None for http.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Endpoint {
    /// `url` (http:// or https://) and `headers` as "Name: value".
    pub(crate) fn new(url: &str, headers: &[String]) -> Result<Endpoint> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--remote-write {url:?}: the URL must start with http:// or https://");
        }
        let (url, basic) = split_userinfo(url);
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--remote-write {url:?} is not a URL"))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("--remote-write {url:?} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tls = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .with_context(|| format!("--remote-write: {host:?} is not a server name"))?;
            Some((tokio_rustls::TlsConnector::from(client_config()?), name))
        } else {
            None
        };
        let mut parsed = Vec::new();
        if let Some(userinfo) = basic {
            let token = data_encoding::BASE64.encode(userinfo.as_bytes());
            parsed.push((
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Basic {token}"))?,
            ));
        }
        for h in headers {
            let (name, value) = h.split_once(':').ok_or_else(|| {
                anyhow!("--remote-write-header {h:?}: write it as \"Name: value\"")
            })?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("--remote-write-header {h:?}: a bad header name"))?;
            let value = HeaderValue::from_str(value.trim())
                .with_context(|| format!("--remote-write-header {h:?}: a bad header value"))?;
            parsed.push((name, value));
        }
        Ok(Endpoint {
            uri,
            authority,
            tls,
            headers: parsed,
        })
    }

    /// The URL, without any password in it.
    pub(crate) fn url(&self) -> String {
        self.uri.to_string()
    }

    /// POSTs `body` (a snappy-compressed WriteRequest), retrying with
    /// backoff on a network error, a 5xx or a 429; a 4xx other than 429 is
    /// final (the endpoint refuses what we send). The error names the last
    /// failure.
    pub(crate) async fn push(&self, body: &[u8]) -> Result<()> {
        let body = Bytes::copy_from_slice(body);
        let mut waits = BACKOFF.iter();
        loop {
            let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(body.clone()))
                .await
                .unwrap_or_else(|_| Err(Failure::Retry(anyhow!("no answer within 5s"))));
            match outcome {
                Ok(()) => return Ok(()),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Retry(e)) => match waits.next() {
                    Some(wait) => tokio::time::sleep(*wait).await,
                    None => return Err(e.context(format!("after {} attempts", BACKOFF.len() + 1))),
                },
            }
        }
    }

    async fn attempt(&self, body: Bytes) -> Result<(), Failure> {
        let tcp = TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connecting to {}", self.authority))
            .map_err(Failure::Retry)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.send(TokioIo::new(tcp), body).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake")
                    .map_err(Failure::Retry)?;
                self.send(TokioIo::new(tls), body).await
            }
        }
    }

    async fn send<T>(&self, io: T, body: Bytes) -> Result<(), Failure>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .context("HTTP handshake")
            .map_err(Failure::Retry)?;
        tokio::spawn(conn);
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let mut req = Request::post(path)
            .header(http::header::HOST, self.authority.as_str())
            .header(
                http::header::USER_AGENT,
                concat!("fleetbench/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in fleetbench_views::metrics::REMOTE_WRITE_HEADERS {
            req = req.header(k, v);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(body))
            .context("building the request")
            .map_err(Failure::Final)?;
        let resp = sender
            .send_request(req)
            .await
            .context("sending")
            .map_err(Failure::Retry)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        let e = anyhow!("{} answered {status}: {text}", self.url());
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            Err(Failure::Retry(e))
        } else {
            Err(Failure::Final(e))
        }
    }
}

/// Why an attempt failed: worth another try, or not.
enum Failure {
    Retry(anyhow::Error),
    Final(anyhow::Error),
}

/// `scheme://user:password@rest` -> (`scheme://rest`, Some("user:password")).
fn split_userinfo(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => (
            format!("{scheme}://{host}{}", &rest[authority_end..]),
            Some(userinfo.to_string()),
        ),
        None => (url.to_string(), None),
    }
}

/// TLS to the endpoint: Mozilla's roots (compiled in), TLS 1.2 and 1.3.
fn client_config() -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_becomes_basic_auth() {
        let (url, user) = split_userinfo("https://me:s3cret@mimir.example:443/api/v1/push");
        assert_eq!(url, "https://mimir.example:443/api/v1/push");
        assert_eq!(user.as_deref(), Some("me:s3cret"));
        let (url, user) = split_userinfo("http://127.0.0.1:9090/api/v1/write");
        assert_eq!(url, "http://127.0.0.1:9090/api/v1/write");
        assert_eq!(user, None);
    }

    #[test]
    fn bad_urls_and_headers_are_named() {
        let e = Endpoint::new("ftp://x/y", &[]).err().unwrap();
        assert!(e.to_string().contains("http:// or https://"), "{e}");
        let e = Endpoint::new("http://x/y", &["Authorization".into()])
            .err()
            .unwrap();
        assert!(e.to_string().contains("\"Name: value\""), "{e}");
        let ok = Endpoint::new(
            "http://u:p@127.0.0.1:9/api/v1/write",
            &["X-Scope-OrgID: t".into()],
        )
        .unwrap();
        assert_eq!(ok.url(), "http://127.0.0.1:9/api/v1/write");
        assert_eq!(ok.headers.len(), 2);
    }
}
