//! What agents trust the coordinator by, and what the coordinator trusts
//! agents by.
//!
//! The coordinator's TLS identity is a self-signed certificate (rcgen, ECDSA
//! P-256) created once in `DATA/tls/` (`cert.pem`, and `key.pem` with mode
//! 0600) and reused by every run, so its fingerprint (the hex SHA-256 of the
//! certificate's DER bytes) is stable: agents pin it (`fleetbench::tls`).
//! Each agent gets a fresh random secret per run ([`new_secret`]); both reach
//! the agent in a credentials file written with mode 0600 from the start
//! ([`write_private`]), never through argv or the environment.
//!
//! This module does not accept connections or check Hello: the hub does
//! (`hub::serve`, `Hub::admit`), with [`Trust::server_config`] and
//! [`secrets_match`].

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The coordinator's TLS identity.
pub(crate) struct Trust {
    fingerprint: String,
    server_config: Arc<rustls::ServerConfig>,
}

impl Trust {
    /// Loads the identity from `DATA/tls/`, creating it first if there is none.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Trust> {
        let dir = tls_dir(data_dir);
        let load_or_create = || {
            if !dir.join("cert.pem").exists() {
                create(data_dir, &dir)?;
            }
            load(&dir)
        };
        load_or_create().with_context(|| {
            format!(
                "loading the coordinator's TLS identity from {}",
                dir.display()
            )
        })
    }

    /// Hex SHA-256 of the certificate's DER bytes.
    pub(crate) fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// rustls server configuration: this certificate, HTTP/2 by ALPN, no
    /// client certificates (agents prove themselves with their secret).
    pub(crate) fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config.clone()
    }
}

fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// The fingerprint of the certificate in `DATA/tls/`, without creating one:
/// what `report` pins when it reads a running run through its coordinator.
pub(crate) fn existing_fingerprint(data_dir: &Path) -> Result<String> {
    let path = tls_dir(data_dir).join("cert.pem");
    let cert = CertificateDer::from_pem_file(&path)
        .with_context(|| format!("reading the coordinator certificate {}", path.display()))?;
    Ok(fleetbench::tls::fingerprint(cert.as_ref()))
}

/// Creates the identity in a fresh directory beside `dir`, then renames it
/// into place: a coordinator killed half-way leaves no half identity, and of
/// two coordinators creating one at once, the first rename wins and the other
/// uses it.
fn create(data_dir: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let tmp = data_dir.join(format!(".tls-{}", uuid::Uuid::now_v7()));
    let written = (|| -> Result<()> {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let made = rcgen::generate_simple_self_signed(vec![fleetbench::tls::SERVER_NAME.into()])
            .context("generating the coordinator's TLS certificate")?;
        write_private(&tmp.join("key.pem"), &made.signing_key.serialize_pem())?;
        write_new(&tmp.join("cert.pem"), &made.cert.pem(), 0o644)?;
        Ok(())
    })();
    let renamed = written.and_then(|()| {
        std::fs::rename(&tmp, dir).or_else(|e| {
            if dir.join("cert.pem").exists() {
                Ok(()) // another coordinator got there first: use theirs
            } else {
                Err(e).with_context(|| {
                    format!(
                        "moving the new TLS identity into {} (if it holds no cert.pem, remove it)",
                        dir.display()
                    )
                })
            }
        })
    });
    let _ = std::fs::remove_dir_all(&tmp);
    renamed
}

fn load(dir: &Path) -> Result<Trust> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let cert = CertificateDer::from_pem_file(&cert_path)
        .with_context(|| format!("reading the TLS certificate {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading the TLS key {}", key_path.display()))?;
    if let Ok(meta) = std::fs::metadata(&key_path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{} can be read by others (mode {:o}): chmod 600 it",
            key_path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let fingerprint = fleetbench::tls::fingerprint(cert.as_ref());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .with_context(|| {
            format!(
                "the TLS key {} does not fit the certificate {}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    config.alpn_protocols = vec![fleetbench::tls::ALPN_H2.to_vec()];
    Ok(Trust {
        fingerprint,
        server_config: Arc::new(config),
    })
}

/// A fresh random agent secret: 32 bytes from /dev/urandom, hex.
pub(crate) fn new_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for an agent secret")?;
    Ok(fleetbench::binary::hex(&bytes))
}

/// Compares a presented secret with the expected one in time that does not
/// depend on where they differ.
pub(crate) fn secrets_match(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    if a.is_empty() || a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Creates `path` (which must not exist) with mode 0600 from the start and
/// writes `text` to it.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<()> {
    write_new(path, text, 0o600)
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn temp(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("fleetbench-trust-{tag}-{}", uuid::Uuid::now_v7()))
    }

    /// The identity is created once, with a private key, and reused: a
    /// restarted coordinator keeps the fingerprint its agents pinned.
    #[test]
    fn identity_is_created_once_and_reused() {
        let data = temp("reuse");
        let first = Trust::load_or_create(&data).unwrap();
        let second = Trust::load_or_create(&data).unwrap();
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert_eq!(first.fingerprint().len(), 64);
        assert_eq!(
            existing_fingerprint(&data).unwrap(),
            first.fingerprint(),
            "the fingerprint is of the certificate on disk"
        );
        assert_eq!(mode_of(&data.join("tls/key.pem")), 0o600);
        // No temporary directory is left behind.
        let names: Vec<String> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tls"]);
        std::fs::remove_dir_all(&data).unwrap();
    }

    #[test]
    fn secrets_are_fresh_and_compared_exactly() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(secrets_match(&a, &a.clone()));
        assert!(!secrets_match(&a, &b));
        assert!(!secrets_match(&a, &a[..63]));
        assert!(!secrets_match(&a, ""));
        assert!(!secrets_match("", ""), "an empty secret matches nothing");
    }

    #[test]
    fn private_files_are_created_0600_and_never_overwritten() {
        let dir = temp("private");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.creds");
        write_private(&p, "secret").unwrap();
        assert_eq!(mode_of(&p), 0o600);
        assert!(write_private(&p, "other").is_err(), "overwrote a file");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "secret");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
