//! The client side of the coordinator's TLS, shared by the agent and by
//! `report` reading a running run: dial `host:port`, complete a TLS handshake,
//! and trust the server only if the SHA-256 of its certificate's DER bytes
//! equals a pinned fingerprint. No CA, host name or validity dates take part:
//! the coordinator's certificate is self-signed, and its fingerprint reaches
//! an agent in its credentials file. The handshake signature is still checked
//! (with ring), so the server must hold the pinned certificate's key.
//!
//! tonic is given an `http://` URI and a connector that does the TLS itself,
//! so it never applies its own trust rules. The server side (creating the
//! certificate, accepting connections) belongs to the coordinator.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tonic::transport::{Channel, Endpoint, Uri};

/// The name the client asks for (SNI) and the certificate is issued to. It is
/// not what makes the server trusted: the fingerprint is.
pub const SERVER_NAME: &str = "fleetbench";

/// ALPN protocol of gRPC: HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// Hex SHA-256 of a certificate's DER bytes: what agents pin.
pub fn fingerprint(der: &[u8]) -> String {
    crate::binary::hex(&Sha256::digest(der))
}

/// Why a [`Dialer`] or an endpoint cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The pinned fingerprint is not a hex SHA-256.
    #[error("certificate fingerprint {0:?} is not 64 hex digits (a SHA-256)")]
    BadFingerprint(String),
    /// rustls refused the client configuration.
    #[error("setting up TLS")]
    Config(#[source] rustls::Error),
    /// The coordinator's address does not make a URI.
    #[error("coordinator address {addr:?} is not host:port")]
    BadAddress {
        /// The address as given.
        addr: String,
        /// What tonic said.
        #[source]
        source: tonic::transport::Error,
    },
}

/// The certificate presented is not the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("the coordinator's certificate has fingerprint {got}, not the pinned {want}")]
struct NotPinned {
    got: String,
    want: String,
}

/// Accepts exactly the certificate whose DER SHA-256 is `want`.
fn pinned_check(want: &str, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    let got = fingerprint(cert.as_ref());
    if got == want {
        Ok(())
    } else {
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(NotPinned {
                got,
                want: want.to_string(),
            }))),
        ))
    }
}

/// A server-certificate check: `Ok` to accept the end-entity certificate
/// the server showed (its chain and name are not looked at).
pub type EndEntityCheck =
    dyn Fn(&CertificateDer<'_>) -> Result<(), rustls::Error> + Send + Sync + 'static;

/// A verifier that accepts a server certificate by `check` alone (a pinned
/// fingerprint, or anything at all for an https op's `tls.insecure`), and
/// still checks the handshake's signatures with ring: the server holds the
/// key of the certificate it shows.
pub struct CheckedBy {
    check: Box<EndEntityCheck>,
    provider: Arc<CryptoProvider>,
}

impl CheckedBy {
    /// The verifier, over `provider`'s signature algorithms.
    pub fn new(provider: Arc<CryptoProvider>, check: Box<EndEntityCheck>) -> CheckedBy {
        CheckedBy { check, provider }
    }
}

impl std::fmt::Debug for CheckedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckedBy")
    }
}

impl ServerCertVerifier for CheckedBy {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        (self.check)(end_entity).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Dials the coordinator over TLS pinned to one certificate fingerprint.
#[derive(Clone, Debug)]
pub struct Dialer {
    config: Arc<rustls::ClientConfig>,
}

impl Dialer {
    /// A dialer that trusts only the certificate with this fingerprint (hex
    /// SHA-256 of its DER bytes, either case).
    pub fn new(fingerprint: &str) -> Result<Dialer, TlsError> {
        let pinned = fingerprint.to_ascii_lowercase();
        if pinned.len() != 64 || !pinned.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TlsError::BadFingerprint(fingerprint.to_string()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CheckedBy::new(
                provider,
                Box::new(move |cert| pinned_check(&pinned, cert)),
            )))
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Dialer {
            config: Arc::new(config),
        })
    }

    /// A tonic endpoint for `host:port`. The URI says `http` because the
    /// connector of [`Dialer::connect`] does the TLS, not tonic.
    pub fn endpoint(addr: &str) -> Result<Endpoint, TlsError> {
        Endpoint::from_shared(format!("http://{addr}")).map_err(|source| TlsError::BadAddress {
            addr: addr.to_string(),
            source,
        })
    }

    /// Connects `endpoint` (made by [`Dialer::endpoint`], with the caller's
    /// timeouts): TCP, then the pinned TLS handshake, then HTTP/2.
    pub async fn connect(&self, endpoint: &Endpoint) -> Result<Channel, tonic::transport::Error> {
        let config = self.config.clone();
        let connector = tower::service_fn(move |uri: Uri| {
            let config = config.clone();
            async move {
                let addr = uri
                    .authority()
                    .map(|a| a.as_str().to_string())
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!("no host:port in {uri}"),
                        )
                    })?;
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let name = ServerName::try_from(SERVER_NAME).expect("a valid, static DNS name");
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        });
        endpoint.connect_with_connector(connector).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_fingerprint_that_is_not_a_sha256() {
        assert!(Dialer::new("abc").is_err());
        assert!(Dialer::new(&"g".repeat(64)).is_err());
        assert!(Dialer::new(&"AB".repeat(32)).is_ok());
    }

    #[test]
    fn fingerprint_is_the_hex_sha256_of_the_bytes() {
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
