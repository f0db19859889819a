//! An https op's `tls = { ... }` table: which certificates to trust, a
//! client certificate, the server name, versions and resumption. The
//! files it names are read here, at parse time, relative to the workload
//! file, and travel to the agents inside the workload: an agent never
//! reads them from its own disk.

use std::path::Path;

use fleetbench::pb;
use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use crate::source::{Source, SpecError};

/// A PEM file a `tls` table names. The log records its name and digest,
/// never its bytes (it may hold a private key).
#[derive(Debug, Clone, PartialEq)]
pub struct PemFile {
    /// As written in the workload.
    pub path: String,
    /// Its contents.
    pub pem: Vec<u8>,
}

impl Serialize for PemFile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use sha2::Digest;
        let digest = fleetbench::binary::hex(&sha2::Sha256::digest(&self.pem));
        s.serialize_str(&format!("{} (sha256 {digest})", self.path))
    }
}

/// How an https op speaks TLS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tls {
    /// Certificates to trust instead of the built-in roots.
    pub ca: Option<PemFile>,
    /// Accept any certificate (the summary warns, the log records it).
    pub insecure: bool,
    /// A client certificate chain (mutual TLS).
    pub client_cert: Option<PemFile>,
    /// The client certificate's private key.
    pub client_key: Option<PemFile>,
    /// SNI and the name checked; `None`: the URL's host.
    pub server_name: Option<String>,
    /// "1.2" and/or "1.3"; empty: both.
    pub versions: Vec<String>,
    /// Session resumption (on unless written `false`).
    pub resumption: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            ca: None,
            insecure: false,
            client_cert: None,
            client_key: None,
            server_name: None,
            versions: Vec::new(),
            resumption: true,
        }
    }
}

impl Tls {
    pub(crate) fn to_pb(&self) -> pb::TlsSettings {
        let pem = |f: &Option<PemFile>| f.as_ref().map(|f| f.pem.clone()).unwrap_or_default();
        pb::TlsSettings {
            ca_pem: pem(&self.ca),
            insecure: self.insecure,
            client_cert_pem: pem(&self.client_cert),
            client_key_pem: pem(&self.client_key),
            server_name: self.server_name.clone().unwrap_or_default(),
            versions: self.versions.clone(),
            no_resumption: !self.resumption,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    ca: Option<Spanned<String>>,
    insecure: Option<bool>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
    versions: Option<Spanned<Vec<String>>>,
    resumption: Option<bool>,
}

/// The TLS an op of `what` speaks: its `tls` table, or the defaults for
/// an https URL; `None` for http:// (where a `tls` table is a mistake).
pub(crate) fn tls_for(
    src: &Source,
    raw: Option<Spanned<RawTls>>,
    https: bool,
    what: &str,
) -> Result<Option<Box<Tls>>, SpecError> {
    match raw {
        Some(t) if !https => Err(src.error(
            t.span(),
            format!("{what}: tls applies to https:// URLs, and the url is http://"),
        )),
        Some(t) => Ok(Some(Box::new(validate_tls(src, t, what)?))),
        None if https => Ok(Some(Box::default())),
        None => Ok(None),
    }
}

/// The largest PEM file a `tls` table may name.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Validates a `tls` table of op `what`, whose PEM files are read relative
/// to the workload file's directory.
pub(crate) fn validate_tls(
    src: &Source,
    raw: Spanned<RawTls>,
    what: &str,
) -> Result<Tls, SpecError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let base = Path::new(src.path).parent().unwrap_or(Path::new("."));
    let file = |f: Option<Spanned<String>>, field: &str, kind: &str| {
        f.map(|f| read_pem(src, base, f, &format!("{what}: tls.{field}"), kind))
            .transpose()
    };
    let ca = file(raw.ca, "ca", "CERTIFICATE")?;
    let client_cert = file(raw.client_cert, "client_cert", "CERTIFICATE")?;
    let client_key = file(raw.client_key, "client_key", "PRIVATE KEY")?;
    if client_cert.is_some() != client_key.is_some() {
        return Err(src.error(
            span,
            format!("{what}: tls needs both client_cert and client_key, or neither"),
        ));
    }
    let insecure = raw.insecure.unwrap_or(false);
    if insecure && ca.is_some() {
        return Err(src.error(
            span,
            format!("{what}: tls.insecure accepts any certificate, so tls.ca would not be used: give one of them"),
        ));
    }
    let server_name = match raw.server_name {
        Some(n) if n.get_ref().is_empty() || n.get_ref().contains(['/', ' ', ':']) => {
            return Err(src.error(
                n.span(),
                format!(
                    "{what}: tls.server_name {:?} is not a host name",
                    n.get_ref()
                ),
            ));
        }
        n => n.map(Spanned::into_inner),
    };
    let versions = match raw.versions {
        None => Vec::new(),
        Some(v) => {
            let vspan = v.span();
            let list = v.into_inner();
            if list.is_empty() || list.iter().any(|v| v != "1.2" && v != "1.3") {
                return Err(src.error(
                    vspan,
                    format!("{what}: tls.versions must list \"1.2\" and/or \"1.3\""),
                ));
            }
            list
        }
    };
    Ok(Tls {
        ca,
        insecure,
        client_cert,
        client_key,
        server_name,
        versions,
        resumption: raw.resumption.unwrap_or(true),
    })
}

/// Reads a PEM file named in the workload: a plain file, at most 1 MiB,
/// holding a `-----BEGIN ...{kind}-----` block.
fn read_pem(
    src: &Source,
    base: &Path,
    name: Spanned<String>,
    what: &str,
    kind: &str,
) -> Result<PemFile, SpecError> {
    let span = name.span();
    let shown = name.into_inner();
    let path = base.join(&shown);
    let fail = |why: String| src.error(span.clone(), format!("{what} {shown:?}: {why}"));
    let meta = std::fs::metadata(&path)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(fail(format!(
            "{} is not a plain file (a directory, FIFO or device)",
            path.display()
        )));
    }
    if meta.len() > MAX_PEM_BYTES {
        return Err(fail(format!(
            "{} bytes is too large for a PEM file",
            meta.len()
        )));
    }
    let pem =
        std::fs::read(&path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&pem);
    let holds = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{kind}-----")));
    if !holds {
        return Err(fail(format!(
            "holds no PEM block of a {} (a \"-----BEGIN ...{kind}-----\" line)",
            kind.to_lowercase()
        )));
    }
    Ok(PemFile { path: shown, pem })
}
