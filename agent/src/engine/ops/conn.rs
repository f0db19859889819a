//! Opening a worker's connection for an op that speaks HTTP (`http`,
//! `grpc`): where to (`dial`), TCP, TLS for https (ALPN picks the
//! protocol), then HTTP/2 or HTTP/1.1, each stage timed into the worker's
//! scratch. Why connections failed is kept, with counts, for a notice.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use fleetbench::pb;
use fleetbench::window::{ErrorClass, Stage};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::dial::Dial;
use super::slot::{Conn, Scratch, Slot};
use super::tls::{Alpn, Stream, TlsClient};

/// How an op opens its connections.
pub(crate) struct Opener {
    /// Where new connections go (a name resolved per connection).
    pub(crate) dial: Dial,
    /// https: the TLS client.
    pub(crate) tls: Option<TlsClient>,
    /// http://: HTTP/2 with prior knowledge (h2c) rather than HTTP/1.1.
    pub(crate) h2c: bool,
    /// Only HTTP/2 will do (gRPC): a server that picks http/1.1 fails.
    pub(crate) h2_only: bool,
    /// Limit on the TCP connect and on the TLS handshake, each.
    pub(crate) timeout: Duration,
    /// `http[s]://host:port`.
    pub(crate) origin: String,
    /// Why connections failed, with counts, since the last notice.
    failures: Mutex<BTreeMap<String, u64>>,
}

/// An http:// or https:// URL, split where an op needs it.
pub(crate) struct Target<'a> {
    pub(crate) https: bool,
    pub(crate) authority: http::uri::Authority,
    /// What follows the authority: path and query ("" when none).
    pub(crate) rest: &'a str,
}

impl Target<'_> {
    pub(crate) fn parse(url: &str) -> Result<Target<'_>> {
        let (https, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (
                false,
                url.strip_prefix("http://")
                    .with_context(|| format!("URL {url:?} is not http:// or https://"))?,
            ),
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(split);
        let authority = authority
            .parse()
            .with_context(|| format!("URL {url:?} has a bad host"))?;
        Ok(Target {
            https,
            authority,
            rest,
        })
    }

    /// `http[s]://host:port`.
    pub(crate) fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }

    /// The host, without an IPv6 address's brackets.
    pub(crate) fn host(&self) -> &str {
        self.authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
    }
}

impl Opener {
    /// How to open connections to `target`: its name resolved per
    /// connection, TLS (`tls`, the defaults when `None`) for https, ALPN
    /// offering `alpn`; `h2_only` fails a server that picks http/1.1.
    pub(crate) async fn to(
        target: &Target<'_>,
        tls: Option<&pb::TlsSettings>,
        alpn: Alpn,
        h2_only: bool,
        timeout: Duration,
    ) -> Result<Opener> {
        let port = target
            .authority
            .port_u16()
            .unwrap_or(if target.https { 443 } else { 80 });
        let dial = Dial::new(target.host(), port).await?;
        let tls = if target.https {
            let settings = tls.cloned().unwrap_or_default();
            Some(TlsClient::new(&settings, target.host(), alpn)?)
        } else {
            None
        };
        Ok(Opener {
            dial,
            h2c: tls.is_none() && alpn == Alpn::Http2,
            tls,
            h2_only,
            timeout,
            origin: target.origin(),
            failures: Mutex::new(BTreeMap::new()),
        })
    }

    /// A new connection. `Err` is the error class: no address, the connect
    /// failed or timed out, or the TLS handshake failed.
    pub(crate) async fn open(&self, s: &mut Scratch) -> Result<Slot, ErrorClass> {
        let Some(addr) = self.dial.addr(s).await else {
            self.failed(format!("{} has no address", self.origin));
            return Err(ErrorClass::Connect);
        };
        let started = Instant::now();
        let stream = match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(_)) => return Err(ErrorClass::Connect),
            Err(_) => return Err(ErrorClass::Timeout),
        };
        let connected = Instant::now();
        s.stages[Stage::Connect as usize] = Some(micros(connected - started));
        let _ = stream.set_nodelay(true);
        let counted = s.counted(stream);
        let (stream, h2) = match &self.tls {
            None => (Stream::Plain(counted), self.h2c),
            Some(tls) => match tokio::time::timeout(self.timeout, tls.connect(counted)).await {
                Ok(Ok(done)) => {
                    s.stages[Stage::Tls as usize] = Some(micros(connected.elapsed()));
                    done
                }
                Ok(Err((class, why))) => {
                    self.failed(why);
                    return Err(class);
                }
                Err(_) => return Err(ErrorClass::Timeout),
            },
        };
        if self.h2_only && !h2 {
            self.failed("the server did not offer h2 (ALPN), which gRPC needs".into());
            return Err(ErrorClass::TlsHandshake);
        }
        if h2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|_| ErrorClass::Io)?;
            // HTTP/2 multiplexes: the connection runs as its own task on
            // this thread's runtime.
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Slot::H2(sender, 0))
        } else {
            let (sender, driver) = http1::Builder::new()
                .writev(false)
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|_| ErrorClass::Io)?;
            Ok(Slot::H1(Conn {
                sender,
                driver: Box::pin(driver),
                closed: false,
                served: 0,
            }))
        }
    }

    fn failed(&self, why: String) {
        *self
            .failures
            .lock()
            .expect("never poisoned")
            .entry(why)
            .or_default() += 1;
    }

    /// Why connections failed, and how often, since the last call; and
    /// where a name's connections went.
    pub(crate) fn take_notes(&self) -> Vec<String> {
        let failures = std::mem::take(&mut *self.failures.lock().expect("never poisoned"));
        failures
            .into_iter()
            .map(|(why, n)| format!("{why} (connecting to {}, {n} time(s))", self.origin))
            .chain(self.dial.take_used())
            .collect()
    }
}

/// A duration in whole µs.
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
