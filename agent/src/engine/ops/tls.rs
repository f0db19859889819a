//! TLS for https ops: one rustls client configuration per op (built once
//! per phase, shared by its workers), the handshake on a worker's counted
//! TCP stream, and the [`Stream`] hyper speaks over, plain or TLS.
//!
//! The trusted roots are the workload's `tls.ca` or Mozilla's, compiled
//! in: an agent never reads a host's certificate store. ALPN offers what
//! the op's `version` allows (`auto`: h2 and http/1.1); the server's pick
//! decides how the connection is spoken. A failed handshake is an error
//! class of its own (`tls_unknown_issuer`, `tls_expired`,
//! `tls_name_mismatch`, `tls_handshake`) and its reason is kept for a
//! notice.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result, anyhow, bail};
use fleetbench::pb;
use fleetbench::window::ErrorClass;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::counted::Counted;

/// Which protocols a TLS connection may speak, offered by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    Http1,
    Http2,
    Either,
}

/// An op's TLS client: its configuration and the name it dials.
pub(crate) struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl TlsClient {
    /// The client for `settings`, dialing `host` (the URL's) unless the
    /// settings name a server.
    pub(crate) fn new(settings: &pb::TlsSettings, host: &str, alpn: Alpn) -> Result<TlsClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: Vec<&'static rustls::SupportedProtocolVersion> =
            if settings.versions.is_empty() {
                vec![&rustls::version::TLS13, &rustls::version::TLS12]
            } else {
                settings
                    .versions
                    .iter()
                    .map(|v| match v.as_str() {
                        "1.2" => Ok(&rustls::version::TLS12),
                        "1.3" => Ok(&rustls::version::TLS13),
                        other => Err(anyhow!("TLS version {other:?} is not 1.2 or 1.3")),
                    })
                    .collect::<Result<_>>()?
            };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .context("TLS versions")?;
        let builder = if settings.insecure {
            // Any certificate, but the handshake's signatures still checked.
            let any = fleetbench::tls::CheckedBy::new(provider, Box::new(|_| Ok(())));
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(any))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            if settings.ca_pem.is_empty() {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            } else {
                for cert in CertificateDer::pem_slice_iter(&settings.ca_pem) {
                    roots
                        .add(cert.context("tls.ca: a certificate does not parse")?)
                        .context("tls.ca: a certificate cannot be trusted")?;
                }
                if roots.is_empty() {
                    bail!("tls.ca holds no certificate");
                }
            }
            builder.with_root_certificates(roots)
        };
        let mut config = if settings.client_cert_pem.is_empty() {
            builder.with_no_client_auth()
        } else {
            let chain = CertificateDer::pem_slice_iter(&settings.client_cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .context("tls.client_cert does not parse")?;
            let key = PrivateKeyDer::from_pem_slice(&settings.client_key_pem)
                .context("tls.client_key does not parse")?;
            builder
                .with_client_auth_cert(chain, key)
                .context("tls.client_cert and tls.client_key do not go together")?
        };
        config.alpn_protocols = match alpn {
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
            Alpn::Http2 => vec![b"h2".to_vec()],
            Alpn::Either => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        if settings.no_resumption {
            config.resumption = rustls::client::Resumption::disabled();
        }
        let name = if settings.server_name.is_empty() {
            host
        } else {
            settings.server_name.as_str()
        };
        let server_name = ServerName::try_from(name.to_string())
            .with_context(|| format!("{name:?} is not a server name TLS can check"))?;
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The handshake on `stream`: the TLS stream and whether the server
    /// picked h2, or the error class and the reason.
    pub(crate) async fn connect(
        &self,
        stream: Counted,
    ) -> Result<(Stream, bool), (ErrorClass, String)> {
        let tls = self
            .connector
            .connect(self.server_name.clone(), stream)
            .await
            .map_err(|e| classify(&e))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((Stream::Tls(Box::new(tls)), h2))
    }
}

/// A failed handshake's class and reason.
fn classify(e: &io::Error) -> (ErrorClass, String) {
    use rustls::CertificateError as C;
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return (
            ErrorClass::TlsHandshake,
            format!("TLS handshake failed: {e}"),
        );
    };
    let class = match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => ErrorClass::TlsUnknownIssuer,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => ErrorClass::TlsExpired,
            C::NotValidForName | C::NotValidForNameContext { .. } => ErrorClass::TlsNameMismatch,
            _ => ErrorClass::TlsHandshake,
        },
        _ => ErrorClass::TlsHandshake,
    };
    let hint = if matches!(
        tls,
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
    ) {
        " (is the server speaking plain HTTP on this port? then use http://)"
    } else {
        ""
    };
    (class, format!("TLS handshake failed: {tls}{hint}"))
}

/// What hyper speaks over: a worker's counted TCP stream, plain or inside
/// TLS.
pub(crate) enum Stream {
    Plain(Counted),
    Tls(Box<TlsStream<Counted>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
